//! The real gcloud (google-cloud-cli, installed on the CI machine; `.ci/test`
//! fails without it) against a fake Google on 127.0.0.1: the files
//! `gcloud auth application-default login` writes load with us, and the file
//! our `login` example writes serves `gcloud auth application-default
//! print-access-token`. gcloud runs with its own temporary CLOUDSDK_CONFIG
//! and HOME, its token endpoint aimed at the fake by CLOUDSDK_AUTH_TOKEN_HOST.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gemini_oauth::{CredentialLoader, kind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::browser;
use crate::common::examples::example;
use crate::common::{requests_to, token_uri};

const CLIENT_ID: &str = "gcloud-test.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-GCLOUDSECRETMARKER";
const CODE_REFRESH: &str = "1//GCLOUDREFRESHMARKER";
const REFRESHED: &str = "ya29.REFRESHEDBYFAKE";
const SA: &str = "gemini@test-project.iam.gserviceaccount.com";
const DELEGATE: &str = "middle@test-project.iam.gserviceaccount.com";
/// Everything gcloud and our `login` ask for, granted.
const GRANTED: &str = "openid https://www.googleapis.com/auth/userinfo.email \
https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/sqlservice.login \
https://www.googleapis.com/auth/generative-language.retriever";

/// The real gcloud: `GEMINI_OAUTH_GCLOUD` (set by .ci/test), else /usr/bin/gcloud.
fn gcloud() -> Command {
    let exe = std::env::var("GEMINI_OAUTH_GCLOUD").unwrap_or_else(|_| "/usr/bin/gcloud".into());
    assert!(
        Path::new(&exe).exists(),
        "{exe} is missing: install google-cloud-cli (bash .ci/test checks for it)"
    );
    Command::new(exe)
}

/// The consent page: sends the browser straight back with a code and the state.
struct Consent;

impl Respond for Consent {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let url = req.url.as_str();
        let redirect = browser::query_param(url, "redirect_uri").unwrap();
        let state = browser::query_param(url, "state").unwrap();
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", "4/FAKECODE")
            .append_pair("state", &state)
            .append_pair("scope", GRANTED)
            .finish();
        ResponseTemplate::new(302).insert_header("location", format!("{redirect}?{query}"))
    }
}

/// The token endpoint: a code buys a refresh token, a refresh a new access token.
struct Tokens;

impl Respond for Tokens {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
        let grant = form
            .iter()
            .find(|(k, _)| k == "grant_type")
            .map(|(_, v)| v.as_str());
        let body = match grant {
            Some("authorization_code") => json!({
                "access_token": "ya29.FROMCODE", "expires_in": 3599, "token_type": "Bearer",
                "refresh_token": CODE_REFRESH, "scope": GRANTED
            }),
            _ => json!({"access_token": REFRESHED, "expires_in": 3599, "token_type": "Bearer"}),
        };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// A fake Google: `/auth`, `/token`, and `generateAccessToken` for [`SA`].
async fn fake_google() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/auth"))
        .respond_with(Consent)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Tokens)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(iam_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "accessToken": "ya29.IMPERSONATEDBYFAKE", "expireTime": "2099-01-01T00:00:00Z"
        })))
        .mount(&server)
        .await;
    server
}

fn iam_path() -> String {
    format!("/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
}

fn client_file(dir: &Path, server: &MockServer) -> PathBuf {
    let path = dir.join("client_secret.json");
    let client = json!({"installed": {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "auth_uri": format!("{}/auth", server.uri()),
        "token_uri": format!("{}/token", server.uri()),
        "redirect_uris": ["http://localhost"]
    }});
    std::fs::write(&path, client.to_string()).unwrap();
    path
}

/// gcloud with a clean environment of its own in `dir`.
fn gcloud_in(dir: &Path, server: &MockServer) -> Command {
    let mut cmd = gcloud();
    for k in [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUDSDK_ACTIVE_CONFIG_NAME",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("HOME", dir)
        .env(
            "CLOUDSDK_AUTH_TOKEN_HOST",
            format!("{}/token", server.uri()),
        )
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("OAUTHLIB_INSECURE_TRANSPORT", "1")
        .env("BROWSER", "true")
        .env("DISPLAY", ":99")
        .stdin(Stdio::null());
    cmd
}

/// Reads `child`'s stderr until a line holds a URL starting with `prefix`;
/// the URL and a thread collecting the rest.
async fn consent_url(
    child: &mut Child,
    prefix: String,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rest = std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(at) = line.find(&prefix)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line[at..].trim().to_owned());
            }
            seen.push(line);
        }
        seen
    });
    let url = tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .expect("no consent URL within 120 s")
        .unwrap_or_else(|_| panic!("the process ended without a consent URL"));
    (url, rest)
}

/// Plays the user's browser: the consent page, then the redirect to the
/// program's loopback listener.
async fn consent(url: &str) {
    let back = browser::get(url).await.location.expect("a redirect back");
    assert_eq!(browser::get(&back).await.status, 200, "{back}");
}

/// Runs `gcloud auth application-default login` with `extra` args through
/// the fake consent; the file it wrote.
async fn gcloud_login(dir: &Path, server: &MockServer, extra: &[&str]) -> Value {
    let client = client_file(dir, server);
    let mut child = gcloud_in(dir, server)
        .args(["auth", "application-default", "login"])
        .arg(format!("--client-id-file={}", client.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, rest) = consent_url(&mut child, format!("{}/auth?", server.uri())).await;
    assert_eq!(
        browser::query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    consent(&url).await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let rest = rest.join().unwrap();
    assert!(status.success(), "gcloud: {rest:?}");
    serde_json::from_str(&std::fs::read_to_string(adc_file(dir)).unwrap()).unwrap()
}

/// The ADC file a login writes in `dir`'s gcloud configuration directory.
fn adc_file(dir: &Path) -> PathBuf {
    dir.join("gcloud/application_default_credentials.json")
}

/// The loader of the ADC file in `dir`, refreshing at `server`.
fn adc_loader(dir: &Path, server: &MockServer) -> CredentialLoader<kind::ApplicationDefault> {
    CredentialLoader::application_default()
        .credentials_file(adc_file(dir))
        .token_uri(token_uri(server))
}

async fn token_forms(server: &MockServer) -> Vec<Vec<(String, String)>> {
    let tokens = requests_to(server, "/token").await;
    let form = |r: &Request| form_urlencoded::parse(&r.body).into_owned().collect();
    tokens.iter().map(form).collect()
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_login_writes_an_authorized_user_file_we_load() {
    let server = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    let file = gcloud_login(dir.path(), &server, &[]).await;
    assert_eq!(file["type"], "authorized_user");
    assert_eq!(file["refresh_token"], CODE_REFRESH);
    assert!(file.get("token_uri").is_none(), "gcloud writes none");
    let exchange = &token_forms(&server).await[0];
    assert_eq!(field(exchange, "grant_type"), Some("authorization_code"));
    assert!(field(exchange, "code_verifier").is_some());

    let creds = adc_loader(dir.path(), &server).load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), REFRESHED);
    let forms = token_forms(&server).await;
    let ours = forms.last().unwrap();
    assert_eq!(field(ours, "refresh_token"), Some(CODE_REFRESH));
    assert_eq!(field(ours, "client_id"), Some(CLIENT_ID));
    assert_eq!(field(ours, "client_secret"), Some(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_impersonated_login_file_loads_with_us() {
    let server = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    let accounts = format!("--impersonate-service-account={DELEGATE},{SA}");
    let file = gcloud_login(dir.path(), &server, &[&accounts]).await;
    assert_eq!(file["type"], "impersonated_service_account");
    assert_eq!(file["delegates"], json!([DELEGATE]));
    assert_eq!(
        file["service_account_impersonation_url"],
        format!("https://iamcredentials.googleapis.com{}", iam_path())
    );
    assert_eq!(file["source_credentials"]["type"], "authorized_user");
    assert_eq!(file["source_credentials"]["refresh_token"], CODE_REFRESH);

    let adc = adc_file(dir.path());
    let creds = adc_loader(dir.path(), &server)
        .iam_endpoint(server.uri())
        .scopes([gemini_oauth::scopes::CLOUD_PLATFORM])
        .load()
        .await
        .unwrap();
    assert_eq!(
        creds.access_token().await.unwrap().secret(),
        "ya29.IMPERSONATEDBYFAKE"
    );
    let iam = requests_to(&server, &iam_path()).await;
    assert_eq!(iam.len(), 1);
    assert_eq!(
        iam[0].headers.get("authorization").unwrap(),
        &format!("Bearer {REFRESHED}")
    );
    let body: Value = serde_json::from_slice(&iam[0].body).unwrap();
    assert_eq!(
        body,
        json!({"delegates": [format!("projects/-/serviceAccounts/{DELEGATE}")],
               "scope": [gemini_oauth::scopes::CLOUD_PLATFORM], "lifetime": "3600s"})
    );

    // Our login with the same flag writes the same bytes.
    let gcloud_bytes = std::fs::read(&adc).unwrap();
    let ours = tempfile::tempdir().unwrap();
    let accounts = format!("{DELEGATE},{SA}");
    our_login(
        ours.path(),
        &server,
        &["--impersonate-service-account", &accounts],
    )
    .await;
    let our_bytes = std::fs::read(adc_file(ours.path())).unwrap();
    assert_eq!(
        String::from_utf8(our_bytes).unwrap(),
        String::from_utf8(gcloud_bytes.clone()).unwrap()
    );

    // So does the tool's `login --adc`.
    #[cfg(feature = "cli")]
    {
        let tool_dir = tempfile::tempdir().unwrap();
        let mut tool = crate::common::examples::cli();
        tool.args(["login", "--adc"]);
        let flag = ["--impersonate-service-account", &accounts];
        login_with(tool, tool_dir.path(), &server, &flag).await;
        let tool_bytes = std::fs::read(adc_file(tool_dir.path())).unwrap();
        assert_eq!(
            String::from_utf8(tool_bytes).unwrap(),
            String::from_utf8(gcloud_bytes).unwrap()
        );
    }
}

/// Runs our `login` example with `extra` args through the fake consent,
/// writing into `dir`'s gcloud configuration directory.
async fn our_login(dir: &Path, server: &MockServer, extra: &[&str]) {
    login_with(example("login"), dir, server, extra).await;
}

/// Runs `login` (the example's or the tool's `login --adc`) with `extra`
/// args through the fake consent, writing into `dir`'s gcloud configuration directory.
async fn login_with(mut login: Command, dir: &Path, server: &MockServer, extra: &[&str]) {
    let client = client_file(dir, server);
    let mut child = login
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("HOME", dir)
        .args(["--client-id-file", client.to_str().unwrap(), "--no-browser"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, rest) = consent_url(&mut child, format!("{}/auth?", server.uri())).await;
    consent(&url).await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "login: {:?}", rest.join().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_login_file_serves_gcloud_print_access_token() {
    let server = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    our_login(dir.path(), &server, &[]).await;
    gcloud_prints_the_refreshed_token(dir.path(), &server).await;
}

/// The tool's `login --adc` writes the example's bytes, and the real gcloud
/// serves `print-access-token` from them.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_login_adc_file_serves_gcloud_print_access_token() {
    let server = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    let mut tool = crate::common::examples::cli();
    tool.arg("login").arg("--adc");
    login_with(tool, dir.path(), &server, &[]).await;
    let ours = std::fs::read_to_string(adc_file(dir.path())).unwrap();
    let example_dir = tempfile::tempdir().unwrap();
    our_login(example_dir.path(), &server, &[]).await;
    assert_eq!(
        ours,
        std::fs::read_to_string(adc_file(example_dir.path())).unwrap()
    );
    gcloud_prints_the_refreshed_token(dir.path(), &server).await;
}

/// gcloud's `auth application-default print-access-token` on the file in
/// `dir` refreshes at `server` with the file's client and refresh token.
async fn gcloud_prints_the_refreshed_token(dir: &Path, server: &MockServer) {
    let out = tokio::task::spawn_blocking({
        let mut cmd = gcloud_in(dir, server);
        move || {
            cmd.args(["auth", "application-default", "print-access-token"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "gcloud: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), REFRESHED);
    let forms = token_forms(server).await;
    let refresh = forms.last().unwrap();
    assert_eq!(field(refresh, "grant_type"), Some("refresh_token"));
    assert_eq!(field(refresh, "refresh_token"), Some(CODE_REFRESH));
    assert_eq!(field(refresh, "client_id"), Some(CLIENT_ID));
    assert_eq!(field(refresh, "client_secret"), Some(CLIENT_SECRET));
}

/// `--adc --gcloud-fallback` of an example run in gcloud's environment of
/// `dir` (no ADC file, no metadata server), tokens from `server_uri`, with
/// `path` as its PATH.
async fn example_with_gcloud(dir: &Path, server_uri: &str, path: &str) -> std::process::Output {
    run_with_gcloud("print_access_token", &[], dir, server_uri, path).await
}

/// Example `name` with `--adc --gcloud-fallback` and `args`, as [`example_with_gcloud`];
/// gcloud's project and quota project set by its environment (`gcloud config
/// set project` would look the project up on the network).
async fn run_with_gcloud(
    name: &str,
    args: &[&str],
    dir: &Path,
    server_uri: &str,
    path: &str,
) -> std::process::Output {
    let mut cmd = example(name);
    for k in crate::common::ADC_ENV {
        cmd.env_remove(k);
    }
    cmd.env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("HOME", dir)
        .env("CLOUDSDK_AUTH_TOKEN_HOST", format!("{server_uri}/token"))
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("CLOUDSDK_CORE_PROJECT", "gproj")
        .env("CLOUDSDK_BILLING_QUOTA_PROJECT", "qproj")
        .env("NO_GCE_CHECK", "true")
        .env("PATH", path)
        .current_dir(dir)
        .args(["--adc", "--gcloud-fallback"])
        .args(args)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// `PATH` with the real gcloud's directory first.
fn path_with_gcloud() -> String {
    let exe = std::env::var("GEMINI_OAUTH_GCLOUD").unwrap_or_else(|_| "/usr/bin/gcloud".into());
    let bin = Path::new(&exe).parent().unwrap().display().to_string();
    format!("{bin}:/usr/bin:/bin")
}

/// Runs gcloud in `dir` with `args`; it must succeed.
async fn gcloud_ok(dir: &Path, server: &MockServer, args: &[&str]) {
    let mut cmd = gcloud_in(dir, server);
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "gcloud {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_signed_in_serves_as_a_fallback_and_says_when_it_cannot() {
    let server = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let on_path = path_with_gcloud();
    let on_path = on_path.as_str();

    // Not signed in: the lookup's places and gcloud's reason, on one line.
    let out = example_with_gcloud(d, &server.uri(), on_path).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("GOOGLE_APPLICATION_CREDENTIALS (not set)")
            && err.contains("not signed in: run `gcloud auth login`"),
        "{err}"
    );
    // No gcloud on PATH: said so.
    let out = example_with_gcloud(d, &server.uri(), "/nonexistent").await;
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not installed: no `gcloud` on PATH"), "{err}");

    // Signed in with a service account key whose token endpoint is the fake.
    let key = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    let key_file = d.join("sa.json");
    let sa = json!({
        "type": "service_account", "project_id": "test-project", "private_key_id": "1",
        "private_key": String::from_utf8(key.stdout).unwrap(), "client_email": SA,
        "client_id": "1", "token_uri": format!("{}/token", server.uri()),
    });
    std::fs::write(&key_file, sa.to_string()).unwrap();
    let cred = format!("--cred-file={}", key_file.display());
    gcloud_ok(d, &server, &["auth", "login", cred.as_str()]).await;
    let before = requests_to(&server, "/token").await.len();
    let out = example_with_gcloud(d, &server.uri(), on_path).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), REFRESHED);
    let grants = token_forms(&server).await;
    assert!(
        grants.len() > before,
        "gcloud fetched the token from the fake"
    );
    assert_eq!(
        field(grants.last().unwrap(), "grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );

    // The API gets gcloud's token and its quota project.
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/g"}]})),
        )
        .mount(&api)
        .await;
    let base = format!("{}/v1", api.uri());
    let out = run_with_gcloud(
        "list_models",
        &["--api-base", &base],
        d,
        &server.uri(),
        &path_with_gcloud(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = api.received_requests().await.unwrap();
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {REFRESHED}")
    );
    assert_eq!(reqs[0].headers["x-goog-user-project"], "qproj");
}
