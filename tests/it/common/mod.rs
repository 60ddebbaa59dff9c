//! Helpers shared by the integration tests: counting token endpoints on
//! 127.0.0.1 (wiremock), token files on disk and loaders that use them.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod examples;
pub mod fault_proxy;
pub mod gemini_server;
pub mod oidc;
pub mod ports;
pub mod proxies;
pub mod tinyproxy;
pub mod tls_certs;

pub use ports::{closed_port, port_to_bind_later};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use gemini_oauth::{ClientSecret, Consent, CredentialLoader, FileTokenStore};
use serde_json::{Value, json};
use wiremock::matchers::{HeaderExactMatcher, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CLIENT_ID: &str = "test-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-CLIENTSECRETMARKER";
pub const REFRESH_TOKEN: &str = "1//REFRESHTOKENMARKER";
pub const OLD_ACCESS: &str = "ya29.OLDACCESSMARKER";
pub const NEW_ACCESS: &str = "ya29.NEWACCESSMARKER";
pub const RETRIEVER: &str = "https://www.googleapis.com/auth/generative-language.retriever";

/// A token endpoint that answers every refresh with `NEW_ACCESS`.
pub async fn token_endpoint() -> MockServer {
    token_server_answering(&[(
        200,
        json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "scope": RETRIEVER, "token_type": "Bearer"
        }),
    )])
    .await
}

/// A token endpoint (`POST /token` with a refresh grant; anything else gets
/// wiremock's 404) that gives `answers` in order, then repeats the last one.
/// [`token_requests`] counts the requests that reached it.
pub async fn token_server(answers: impl IntoIterator<Item = ResponseTemplate>) -> MockServer {
    let answers: Vec<ResponseTemplate> = answers.into_iter().collect();
    assert!(!answers.is_empty(), "a token server needs an answer");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(InOrder {
            answers,
            served: AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    server
}

/// [`token_server`] for answers that are a status and a JSON body.
pub async fn token_server_answering(answers: &[(u16, Value)]) -> MockServer {
    token_server(
        answers
            .iter()
            .map(|(status, body)| ResponseTemplate::new(*status).set_body_json(body)),
    )
    .await
}

struct InOrder {
    answers: Vec<ResponseTemplate>,
    served: AtomicUsize,
}

impl Respond for InOrder {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        self.answers[n.min(self.answers.len() - 1)].clone()
    }
}

/// Matches requests that carry `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> HeaderExactMatcher {
    header("authorization", format!("Bearer {token}").as_str())
}

/// An API server that answers every GET with `response`.
pub async fn api_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// Variables that choose credentials or endpoints, for a child process with
/// a clean ADC environment to clear.
pub const ADC_ENV: [&str; 11] = [
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "NO_GCE_CHECK",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
    "GEMINI_API_BASE",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "APPDATA",
];

/// The metadata server's path of the default account's token.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// A metadata server (`GCE_METADATA_HOST`): to requests with
/// `Metadata-Flavor: Google`, the ping answers with that header, the default
/// account's token endpoint with `token_answer`.
pub async fn metadata_server(token_answer: ResponseTemplate) -> MockServer {
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .and(header("metadata-flavor", "Google"))
        .respond_with(ResponseTemplate::new(200).insert_header("Metadata-Flavor", "Google"))
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path(METADATA_TOKEN_PATH))
        .and(header("metadata-flavor", "Google"))
        .respond_with(token_answer)
        .mount(&metadata)
        .await;
    metadata
}

/// The metadata server's token answer, `ya29.METADATA`, with the
/// `Metadata-Flavor: Google` header the real one sends.
pub fn metadata_token() -> ResponseTemplate {
    unflavored_metadata_token().insert_header("Metadata-Flavor", "Google")
}

/// [`metadata_token`] without the header: not the metadata server's.
pub fn unflavored_metadata_token() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"access_token": "ya29.METADATA", "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// The test OAuth client, with `tokens` as its token endpoint: what a
/// consent flow signs in with.
pub fn consent_client(tokens: &MockServer) -> ClientSecret {
    ClientSecret::new(CLIENT_ID, CLIENT_SECRET)
        .auth_uri("https://accounts.example.com/o/oauth2/auth")
        .token_uri(token_uri(tokens))
}

/// A token endpoint that grants an authorization code (the consent flow's
/// exchange) with `NEW_ACCESS`, `REFRESH_TOKEN` and `scope`.
pub async fn code_endpoint(scope: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer",
            "refresh_token": REFRESH_TOKEN, "scope": scope
        })))
        .mount(&server)
        .await;
    server
}

pub fn token_uri(server: &MockServer) -> String {
    format!("{}/token", server.uri())
}

/// The requests `server` received at `at`, in order.
pub async fn requests_to(server: &MockServer, at: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
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

/// A loader on `dir`: token.json there in a `FileTokenStore`, and
/// client_secret.json there (which no test writes: a consent would fail with
/// `ClientSecretNotFound`), with `Consent::Never`.
pub fn temp_loader(dir: &Path) -> CredentialLoader {
    CredentialLoader::new()
        .client_secret_file(dir.join("client_secret.json"))
        .token_store(FileTokenStore::new(dir.join("token.json")))
        .consent(Consent::Never)
}

/// A temp dir, removed on drop, with [`temp_loader`]s on it.
pub struct TempLoader {
    dir: tempfile::TempDir,
}

impl TempLoader {
    /// With no token.json yet.
    pub fn empty() -> Self {
        TempLoader {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// With a token.json valid for 50 minutes, refreshed at the returned
    /// [`token_endpoint`].
    pub async fn signed_in() -> (Self, MockServer) {
        let tokens = token_endpoint().await;
        (Self::with_token(&token_uri(&tokens), 3000), tokens)
    }

    /// With the token.json of [`token_json`]`(token_uri, in_secs)`.
    pub fn with_token(token_uri: &str, in_secs: i64) -> Self {
        let t = Self::empty();
        t.write_token(&token_json(token_uri, in_secs));
        t
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn token_file(&self) -> PathBuf {
        self.path().join("token.json")
    }

    /// Replaces token.json; returns its path.
    pub fn write_token(&self, json: &str) -> PathBuf {
        write_token(self.path(), json)
    }

    pub fn loader(&self) -> CredentialLoader {
        temp_loader(self.path())
    }
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
    alone_in_a_process_with(name, |_| {})
}

/// [`alone_in_this_process`], with `setup` applied to the child process's
/// command first (to set its environment: this process never sets variables).
pub fn alone_in_a_process_with(name: &str, setup: impl FnOnce(&mut std::process::Command)) -> bool {
    if std::env::var_os(ALONE).is_some_and(|v| v == name) {
        return true;
    }
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    setup(&mut cmd);
    let out = cmd
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

/// A token answer living 1 s: already inside the expiry skew.
pub fn dying_token() -> (u16, Value) {
    (
        200,
        json!({"access_token": "ya29.SHORTMARKER", "expires_in": 1, "token_type": "Bearer"}),
    )
}

/// A token answer with [`NEW_ACCESS`] for an hour.
pub fn new_token() -> (u16, Value) {
    (
        200,
        json!({"access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// A refresh token rejected (`invalid_grant`).
pub fn invalid_grant() -> (u16, Value) {
    (
        400,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    )
}

/// Credentials whose load refreshed (one request) into a [`dying_token`],
/// at a token endpoint whose next answer is `next`: their first callers
/// find the token expired and share one refresh.
pub async fn loaded_dying_then(
    next: (u16, Value),
) -> (MockServer, TempLoader, gemini_oauth::Credentials) {
    loaded_dying_then_answers(&[next]).await
}

/// [`loaded_dying_then`], the endpoint answering `next` in turn.
pub async fn loaded_dying_then_answers(
    next: &[(u16, Value)],
) -> (MockServer, TempLoader, gemini_oauth::Credentials) {
    let answers: Vec<_> = std::iter::once(dying_token())
        .chain(next.iter().cloned())
        .collect();
    let tokens = token_server_answering(&answers).await;
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let creds = dir.loader().load().await.unwrap();
    assert_eq!(token_requests(&tokens).await, 1);
    (tokens, dir, creds)
}
