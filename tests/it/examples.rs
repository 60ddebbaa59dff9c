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
fn one_clear_error_line(out: &Output) -> String {
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
    std::fs::write(
        dir.join("client_secret.json"),
        server.client_secret_json(oidc::CLIENT_ID, oidc::CLIENT_SECRET),
    )
    .unwrap();
    let mut child = example("print_access_token")
        .current_dir(dir)
        .arg(mode)
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
