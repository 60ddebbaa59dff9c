//! The examples' command lines, run as processes: what users and tools see.

use std::io::{BufRead, BufReader, Write};
use std::process::{Output, Stdio};

use crate::common::browser::{self, query_param};
use crate::common::examples::{example, stdout};
use crate::common::oidc::{self, OidcServer};
use crate::common::*;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The stderr of a run that failed (exit code 1) with one clear error line.
pub(crate) fn one_clear_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr
}

#[test]
fn list_models_without_client_secret_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = example("list_models")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = one_clear_error_line(&out);
    assert!(stderr.contains("client_secret.json not found"), "{stderr}");
    assert!(
        stderr.contains("Create client") && stderr.contains("Desktop app"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_flags_exit_with_usage() {
    let out = example("list_models").arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--client-secret FILE"));
    let out = example("print_access_token")
        .arg("--help")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("--no-consent"));
}

#[tokio::test]
async fn list_models_prints_one_name_per_line_using_gemini_api_base() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-goog-user-project", "from-flag"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "models": [{"name": "models/gemini-2.5-flash"}, {"name": "models/gemini-2.5-pro"}]
        })))
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), 3000));
    let out = example("list_models")
        .current_dir(dir.path())
        .env("GEMINI_API_BASE", format!("{}/v1", api.uri()))
        .args(["--quota-project", "from-flag", "--no-consent"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "models/gemini-2.5-flash\nmodels/gemini-2.5-pro\n"
    );
}

#[test]
fn no_consent_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = example("print_access_token")
        .current_dir(dir.path())
        .args(["--no-consent", "--token", "nested/tok.json"])
        .output()
        .unwrap();
    let stderr = one_clear_error_line(&out);
    assert!(
        stderr.contains("no cached token") && stderr.contains("nested/tok.json"),
        "{stderr}"
    );
}

/// Starts `print_access_token` against oidc-provider and returns the child
/// and the consent URL it printed on stderr.
fn start_sign_in(
    server: &OidcServer,
    dir: &std::path::Path,
    mode: &str,
) -> (std::process::Child, String) {
    let mut cmd = example("print_access_token");
    cmd.arg(mode);
    start_sign_in_with(server, dir, cmd)
}

/// Starts `cmd` (a sign-in against oidc-provider, in `dir`) and returns the
/// child and the consent URL: the prompt line, then the URL alone on the next.
fn start_sign_in_with(
    server: &OidcServer,
    dir: &std::path::Path,
    mut cmd: std::process::Command,
) -> (std::process::Child, String) {
    std::fs::write(
        dir.join("client_secret.json"),
        server.client_secret_json(oidc::CLIENT_ID, oidc::CLIENT_SECRET),
    )
    .unwrap();
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let prompt = lines.next().unwrap().unwrap();
    assert_eq!(prompt, gemini_oauth::VISIT_PROMPT);
    let url = lines.next().unwrap().unwrap();
    assert!(
        url.starts_with(&server.auth) && !url.contains(' '),
        "the URL is alone and whole on its line: {url}"
    );
    std::thread::spawn(move || lines.for_each(drop));
    (child, url)
}

/// Plays the user's browser: consent at oidc-provider, then the redirect
/// to the program's loopback port.
async fn consent_in_browser(url: &str) {
    let location = browser::get(url).await.location.unwrap();
    let page = browser::get(&location).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Authorization complete"),
        "{}",
        page.body
    );
}

/// A `BROWSER` program that "opens" the URL and says nothing: success, with
/// nothing on screen (WSL, SSH, a text browser elsewhere). With `block`, it
/// keeps running as a text browser does until the user quits it; its pid is
/// written to `pid` so the test can end it.
fn fake_browser(dir: &std::path::Path, block: bool) -> (String, std::path::PathBuf) {
    let script = dir.join("browser.sh");
    let pid = dir.join("browser.pid");
    let body = if block {
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 120 </dev/null >/dev/null 2>&1\n",
            pid.display()
        )
    } else {
        "#!/bin/sh\nexit 0\n".to_owned()
    };
    std::fs::write(&script, body).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    (script.display().to_string(), pid)
}

/// Signs in with the default `Consent::OpenBrowser` and a fake `BROWSER`
/// (see [`fake_browser`]); the user consents through the printed URL.
async fn sign_in_with_fake_browser(block: bool) -> (std::process::Output, tempfile::TempDir) {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (browser_cmd, pid_file) = fake_browser(dir.path(), block);
    let mut cmd = example("print_access_token");
    cmd.env("BROWSER", &browser_cmd)
        .args(["--consent-timeout", "60"]);
    let (child, url) = start_sign_in_with(&server, dir.path(), cmd);
    consent_in_browser(&url).await;
    let out = child.wait_with_output().unwrap();
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    (out, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_is_printed_even_when_the_browser_opened() {
    let (out, dir) = sign_in_with_fake_browser(false).await;
    assert!(out.status.success());
    let saved = read_json(&dir.path().join("token.json"));
    assert_eq!(
        saved["token"].as_str().unwrap(),
        String::from_utf8(out.stdout).unwrap().trim_end()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_blocks_holds_neither_the_redirect_nor_the_exit() {
    let (out, dir) = sign_in_with_fake_browser(true).await;
    assert!(out.status.success());
    assert!(dir.path().join("token.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_finished_by_the_redirect_leaves_the_next_stdin_line_alone() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = crate::common::examples::example_path("print_access_token");
    // The example, then whoever reads stdin next in the same terminal.
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "\"$0\" --headless --consent-timeout 60 && read next && echo \"after:$next\"",
        exe.to_str().unwrap(),
    ])
    .env("RUST_LOG", "warn");
    let (mut child, url) = start_sign_in_with(&server, dir.path(), cmd);
    consent_in_browser(&url).await;
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let token = out.next().unwrap().unwrap();
    assert!(!token.is_empty());
    // The sign-in is over: this line belongs to the shell, not to it.
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "NEXT").unwrap();
    drop(stdin);
    assert_eq!(out.next().unwrap().unwrap(), "after:NEXT");
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn a_token_file_on_a_read_only_mount_still_refreshes_in_memory() {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("token.json");
    std::fs::write(&source, token_json(&token_uri(&tokens), -60)).unwrap();
    let mount = dir.path().join("secret-volume");
    std::fs::create_dir(&mount).unwrap();
    let exe = crate::common::examples::example_path("print_access_token");
    // A private mount namespace: a read-only tmpfs holding token.json, as a
    // Kubernetes Secret or a `:ro` volume does.
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs tmpfs \"$1\" && cp \"$2\" \"$1/token.json\" && \
             mount -o remount,ro \"$1\" && exec \"$3\" --no-consent --token \"$1/token.json\"",
            "sh",
            mount.to_str().unwrap(),
            source.to_str().unwrap(),
            exe.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect(
            "unshare (util-linux) runs the example in its own mount namespace; tests run as root",
        );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{NEW_ACCESS}\n")
    );
    assert!(stderr.contains("read-only"), "{stderr}");
    assert_eq!(
        stderr.matches("read-only").count(),
        1,
        "warned once: {stderr}"
    );
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_browser_prints_the_url_and_the_second_run_uses_the_cache() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = start_sign_in(&server, dir.path(), "--no-browser");
    let location = browser::get(&url).await.location.unwrap();
    assert_eq!(browser::get(&location).await.status, 200);
    let out = child.wait_with_output().unwrap();
    let token = stdout(&out);
    assert_eq!(token.trim_end().lines().count(), 1);
    let saved = read_json(&dir.path().join("token.json"));
    assert_eq!(saved["token"].as_str().unwrap(), token.trim_end());

    let again = example("print_access_token")
        .current_dir(dir.path())
        .arg("--no-consent")
        .output()
        .unwrap();
    assert_eq!(stdout(&again), token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_accepts_the_pasted_redirect_url() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start_sign_in(&server, dir.path(), "--headless");
    // The browser is elsewhere: the redirect never reaches this machine's
    // port; the user copies the address bar instead.
    let location = browser::get(&url).await.location.unwrap();
    assert!(query_param(&location, "code").is_some());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "not a url").unwrap();
    writeln!(stdin, "{location}").unwrap();
    let out = child.wait_with_output().unwrap();
    let token = stdout(&out);
    let saved = read_json(&dir.path().join("token.json"));
    assert_eq!(saved["token"].as_str().unwrap(), token.trim_end());
}

#[tokio::test]
async fn custom_store_example_keeps_tokens_through_a_credential_helper() {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault.json");
    std::fs::write(&vault, token_json(&token_uri(&tokens), -30)).unwrap();
    let helper = dir.path().join("helper.sh");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nset -e\ncase \"$1\" in\n  get) cat '{v}' 2>/dev/null || true ;;\n  store) cat > '{v}' ;;\n  erase) rm -f '{v}' ;;\n  *) exit 3 ;;\nesac\n",
            v = vault.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let out = example("custom_store")
        .current_dir(dir.path())
        .args(["--helper", helper.to_str().unwrap(), "--no-consent"])
        .output()
        .unwrap();
    assert!(stdout(&out).starts_with("access token valid for 35"));
    assert_eq!(token_requests(&tokens).await, 1);
    assert_eq!(
        read_json(&vault)["token"],
        NEW_ACCESS,
        "the refreshed token went back to the helper"
    );

    // A failing helper is an error, not "no token".
    std::fs::write(&helper, "#!/bin/sh\nexit 7\n").unwrap();
    let out = example("custom_store")
        .args(["--helper", helper.to_str().unwrap(), "--no-consent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("credential helper") && stderr.contains("exited with"),
        "{stderr}"
    );
}

#[tokio::test]
async fn generate_content_posts_raw_json_through_the_authorized_client() {
    use wiremock::matchers::body_json;
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path("/v1/models/gemini-test:generateContent"))
        .and(bearer(OLD_ACCESS))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"contents": [{"parts": [{"text": "hi there"}]}]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": "Hello"}, {"text": ", Rust!"}]}}]
        })))
        .expect(1)
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), 3000));
    let out = example("generate_content")
        .current_dir(dir.path())
        .args([
            "--api-base",
            &format!("{}/v1", api.uri()),
            "--model",
            "gemini-test",
            "--prompt",
            "hi there",
            "--no-consent",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "Hello, Rust!\n");

    // An API error is one clear line naming the cause.
    let api_err = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {"code": 403,
            "message": "Generative Language API has not been used in project 1 before or it is disabled.",
            "status": "PERMISSION_DENIED", "details": [{"reason": "SERVICE_DISABLED"}]}})))
        .mount(&api_err)
        .await;
    let out = example("generate_content")
        .current_dir(dir.path())
        .args([
            "--api-base",
            &format!("{}/v1", api_err.uri()),
            "--no-consent",
        ])
        .output()
        .unwrap();
    let stderr = one_clear_error_line(&out);
    assert!(
        stderr.contains("gcloud services enable generativelanguage.googleapis.com"),
        "{stderr}"
    );
}
