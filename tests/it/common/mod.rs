//! Helpers shared by the integration tests: a counting token endpoint on
//! 127.0.0.1 (wiremock) and token files on disk.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod examples;
pub mod oidc;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const CLIENT_ID: &str = "test-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-CLIENTSECRETMARKER";
pub const REFRESH_TOKEN: &str = "1//REFRESHTOKENMARKER";
pub const OLD_ACCESS: &str = "ya29.OLDACCESSMARKER";
pub const NEW_ACCESS: &str = "ya29.NEWACCESSMARKER";
pub const RETRIEVER: &str = "https://www.googleapis.com/auth/generative-language.retriever";

/// A token endpoint that answers every refresh with `NEW_ACCESS`.
pub async fn token_endpoint() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "scope": RETRIEVER, "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    server
}

pub fn token_uri(server: &MockServer) -> String {
    format!("{}/token", server.uri())
}

pub async fn token_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/token")
        .count()
}

/// google-auth's expiry format for `at`.
pub fn expiry(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A Python-style token.json whose access token expires `in_secs` from now
/// (negative: already expired).
pub fn token_json(token_uri: &str, in_secs: i64) -> String {
    let at = if in_secs >= 0 {
        SystemTime::now() + Duration::from_secs(in_secs as u64)
    } else {
        SystemTime::now() - Duration::from_secs((-in_secs) as u64)
    };
    format!(
        r#"{{"token": "{OLD_ACCESS}", "refresh_token": "{REFRESH_TOKEN}", "token_uri": "{token_uri}", "client_id": "{CLIENT_ID}", "client_secret": "{CLIENT_SECRET}", "scopes": ["{RETRIEVER}"], "universe_domain": "googleapis.com", "account": "", "expiry": "{}"}}"#,
        expiry(at)
    )
}

pub fn write_token(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("token.json");
    std::fs::write(&path, json).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The venv Python with google-auth that `bash .ci/test` installs.
pub fn python() -> std::process::Command {
    let exe = std::env::var("GEMINI_OAUTH_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&exe).exists(),
        "{exe} is missing: run `bash .ci/test`, which installs google-auth in .venv"
    );
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(format!(
        "{}/tests/python/interop.py",
        env!("CARGO_MANIFEST_DIR")
    ));
    cmd
}

/// Set, to the test's name, in a child process that runs one test alone.
const ALONE: &str = "GEMINI_OAUTH_IT_ALONE";

/// For a test that needs this process to itself: one that installs something
/// process-wide (a global `tracing` subscriber) and then reads what every
/// thread did. Call it first in the test named `name` (its path as
/// `cargo test -- --list` shows it). In the shared test process it runs this
/// binary again with only that test selected, fails if that run did not pass
/// exactly one test, and returns false: the caller returns. In that child
/// process it returns true: the caller goes on with the test.
pub fn alone_in_this_process(name: &str) -> bool {
    if std::env::var_os(ALONE).is_some_and(|v| v == name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1"])
        .env(ALONE, name)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "{name} in a process of its own: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Fails the test if `text` contains any secret used by the tests.
pub fn assert_no_secrets(text: &str) {
    for marker in [
        CLIENT_SECRET,
        REFRESH_TOKEN,
        OLD_ACCESS,
        NEW_ACCESS,
        "MARKER",
    ] {
        assert!(
            !text.contains(marker),
            "secret {marker:?} leaked into: {text}"
        );
    }
}
