//! `gemini-oauth login --adc`, then `print-access-token`, `status --format
//! json` and `logout`, against a real OAuth server (oidc-provider), each
//! process with `RUST_LOG=trace`: nothing secret in any output but the
//! token `print-access-token` is asked for.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::browser;
use crate::common::examples::cli;
use crate::common::oidc::{self, OidcServer};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The tool with gcloud's configuration in `dir`, no metadata server, full tracing.
fn tool(dir: &Path) -> Command {
    let dead = crate::common::closed_port();
    let mut cmd = cli();
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("GCE_METADATA_HOST", &dead)
        .env("GCE_METADATA_IP", &dead)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null());
    cmd
}

/// Every output of every step, for the secret check at the end.
#[derive(Default)]
struct Seen(String);

impl Seen {
    fn add(&mut self, out: &Output) {
        self.0.push_str(&String::from_utf8_lossy(&out.stdout));
        self.0.push_str(&String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_adc_then_print_access_token_status_and_logout() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client_file = dir.path().join("client_secret.json");
    std::fs::write(
        &client_file,
        server.client_secret_json(oidc::CLIENT_ID, oidc::CLIENT_SECRET),
    )
    .unwrap();
    let adc = dir
        .path()
        .join("gcloud/application_default_credentials.json");
    let mut seen = Seen::default();

    // login --adc: the consent URL on stderr, the file in gcloud's place.
    let mut login = tool(dir.path());
    login
        .args([
            "login",
            "--adc",
            "--no-browser",
            "--quota-project",
            "my-quota",
        ])
        .args(["--client-id-file", client_file.to_str().unwrap()]);
    let login_stderr = sign_in(login, &server).await;
    assert!(
        login_stderr.contains("Credentials saved to file: [")
            && login_stderr.contains("application_default_credentials.json"),
        "{login_stderr}"
    );
    seen.0.push_str(&login_stderr);
    let file: Value = serde_json::from_slice(&std::fs::read(&adc).unwrap()).unwrap();
    assert_eq!(file["type"], "authorized_user");
    assert_eq!(file["quota_project_id"], "my-quota");
    let refresh_token = file["refresh_token"].as_str().unwrap().to_owned();
    assert!(!refresh_token.is_empty());

    // print-access-token --adc: the token alone on stdout.
    let out = tool(dir.path())
        .args(["print-access-token", "--adc", "--token-uri", &server.token])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let access_token = stdout.trim().to_owned();
    assert!(access_token.len() > 10, "{stdout}");
    seen.0.push_str(&String::from_utf8_lossy(&out.stderr));

    // status --format json: what was found and why, no secret.
    let out = tool(dir.path())
        .args([
            "status",
            "--adc",
            "--format",
            "json",
            "--token-uri",
            &server.token,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen.add(&out);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["credentials"], "adc");
    assert_eq!(status["type"], "authorized_user");
    assert_eq!(status["quota_project"], "my-quota");
    assert_eq!(status["universe_domain"], "googleapis.com");
    assert_eq!(
        status["search"],
        serde_json::json!([
            {"place": "GOOGLE_APPLICATION_CREDENTIALS", "found": false},
            {"place": adc.display().to_string(), "found": true}
        ])
    );
    let expiry = status["expiry"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339).is_ok(),
        "{expiry}"
    );
    assert!(
        status["source"]
            .as_str()
            .unwrap()
            .contains("application_default_credentials.json"),
        "{status}"
    );

    // logout --adc: revoked as Google revokes (oidc-provider's revocation
    // wants client authentication, Google's takes the token alone), gcloud's file gone.
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&revoke)
        .await;
    let out = tool(dir.path())
        .args(["logout", "--adc", "--token-uri", &server.token])
        .args(["--revoke-uri", &format!("{}/revoke", revoke.uri())])
        .output()
        .unwrap();
    seen.add(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!adc.exists(), "the ADC file is still there");

    // Afterwards a sign-in is required: exit code 3, one line.
    let out = tool(dir.path())
        .env("RUST_LOG", "warn")
        .args(["print-access-token", "--adc", "--token-uri", &server.token])
        .output()
        .unwrap();
    seen.add(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // The refresh token was what logout revoked.
    let body = revoke.received_requests().await.unwrap()[0].body.clone();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    assert_eq!(form, [("token".to_owned(), refresh_token.clone())]);

    assert!(
        seen.0.contains("TRACE") || seen.0.contains("DEBUG"),
        "no trace output at all"
    );
    for secret in [
        refresh_token.as_str(),
        oidc::CLIENT_SECRET,
        access_token.as_str(),
    ] {
        assert!(
            !seen.0.contains(secret),
            "a secret in the output: {}",
            seen.0
        );
    }
}

/// Runs a `login` command through the consent at `server` (playing the
/// browser); its whole stderr, once it has succeeded.
async fn sign_in(mut login: Command, server: &OidcServer) -> String {
    let mut child = login
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with("http://127.0.0.1:")
                && line.contains("code_challenge=")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line.trim().to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = tokio::time::timeout(std::time::Duration::from_secs(60), rx)
        .await
        .expect("a consent URL within 60 s")
        .expect("login ended without a consent URL");
    assert!(url.starts_with(&server.auth), "{url}");
    let location = browser::get(&url).await.location.unwrap();
    assert_eq!(browser::get(&location).await.status, 200);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_fills_token_json_as_load_creds_py_and_the_next_commands_use_it() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client_file = dir.path().join("client_secret.json");
    std::fs::write(
        &client_file,
        server.client_secret_json(oidc::CLIENT_ID, oidc::CLIENT_SECRET),
    )
    .unwrap();
    let mut login = tool(dir.path());
    login.args([
        "login",
        "--no-browser",
        "--client-secret",
        client_file.to_str().unwrap(),
    ]);
    let stderr = sign_in(login, &server).await;
    assert!(
        stderr.contains("Signed in; credentials saved in"),
        "{stderr}"
    );
    let token_json = dir.path().join("token.json");
    let record: Value = serde_json::from_slice(&std::fs::read(&token_json).unwrap()).unwrap();
    let cached = record["token"].as_str().unwrap().to_owned();
    let refresh_token = record["refresh_token"].as_str().unwrap().to_owned();

    // A second login serves the cached token: no consent, no token request.
    let out = tool(dir.path())
        .args([
            "login",
            "--no-consent",
            "--token-uri",
            "http://127.0.0.1:9/token",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // print-access-token prints the cached token, status (text) says where it came from.
    let out = tool(dir.path()).arg("print-access-token").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{cached}\n")
    );
    let out = tool(dir.path()).arg("status").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("credentials: user\nsearch:\n  token.json: found\n"),
        "{text}"
    );
    assert!(text.contains("type: authorized_user\n"), "{text}");
    assert!(text.contains("universe_domain: googleapis.com\n"), "{text}");
    let everything = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    for secret in [cached.as_str(), refresh_token.as_str(), oidc::CLIENT_SECRET] {
        assert!(
            !everything.contains(secret),
            "a secret in status: {everything}"
        );
    }
}
