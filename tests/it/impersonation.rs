//! Service-account impersonation (`impersonated_service_account` files and
//! `CredentialLoader::impersonate_service_account`) and
//! `external_account_authorized_user` files, against a token endpoint, an
//! IAM Credentials API and an STS on 127.0.0.1; the same files through
//! Python's google.auth.default(), whose requests must match ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use gemini_oauth::{
    CredentialLoader, Credentials, CredentialsFileKind, Error, ImpersonationProblem,
    MemoryTokenStore, StoredToken, TokenFileProblem, TokenStore, kind, scopes,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::*;

pub(crate) const SA: &str = "gemini@test-project.iam.gserviceaccount.com";
pub(crate) const DELEGATE: &str = "middle@test-project.iam.gserviceaccount.com";
const SOURCE_ACCESS: &str = "ya29.SOURCEACCESSMARKER";
const EAAU_ACCESS: &str = "ya29.WORKFORCEACCESSMARKER";
const EAAU_REFRESH: &str = "WORKFORCEREFRESHMARKER";
const EAAU_CLIENT: &str = "workforce-client";
const EAAU_SECRET: &str = "WORKFORCESECRETMARKER";

/// The IAM path of `generateAccessToken` for [`SA`].
pub(crate) fn iam_path() -> String {
    format!("/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
}

/// Answers `generateAccessToken` with `ya29.IMPERSONATED-N`, living an hour.
struct Iam(AtomicUsize);

impl Respond for Iam {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        // Whole seconds, as Google sends it (and as google-auth insists).
        let expire = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
            .replace_nanosecond(0)
            .unwrap();
        let expire = expire
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        ResponseTemplate::new(200).set_body_json(
            json!({"accessToken": format!("ya29.IMPERSONATED-{n}"), "expireTime": expire}),
        )
    }
}

/// One server for every endpoint: `/token` (refresh grant →
/// [`SOURCE_ACCESS`]), the IAM path of [`SA`], `/sts/token` (→
/// [`EAAU_ACCESS`]) and `/sts/revoke`.
pub(crate) async fn google() -> MockServer {
    let server = source_token_server().await;
    Mock::given(method("POST"))
        .and(path(iam_path()))
        .respond_with(Iam(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/sts/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": EAAU_ACCESS, "expires_in": 3600, "token_type": "Bearer",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/sts/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// A server whose `/token` answers a refresh grant with [`SOURCE_ACCESS`].
async fn source_token_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": SOURCE_ACCESS, "expires_in": 3599, "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    server
}

fn form(req: &Request) -> BTreeMap<String, String> {
    form_urlencoded::parse(&req.body).into_owned().collect()
}

/// The form `pairs` as [`form`] reads it.
fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The loader of Application Default Credentials from `file`.
pub(crate) fn adc(file: &Path) -> CredentialLoader<kind::ApplicationDefault> {
    CredentialLoader::application_default().credentials_file(file)
}

/// The access token `creds` gets (which must not fail).
async fn token(creds: &Credentials) -> String {
    creds.access_token().await.unwrap().secret().to_owned()
}

/// Writes `json` to `dir/name`; returns its path.
pub(crate) fn write_json(dir: &Path, name: &str, json: &Value) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, json.to_string()).unwrap();
    file
}

/// A temp dir holding an [`impersonated`] file with a [`user_source`], both aimed at `server`.
pub(crate) fn user_file(server: &MockServer) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = impersonated(dir.path(), user_source(server), server);
    (dir, file)
}

/// [`eaau`] with a token `ya29.FILETOKENMARKER` valid for an hour.
fn eaau_with_token(server: &MockServer) -> Value {
    let mut v = eaau(server);
    v["token"] = json!("ya29.FILETOKENMARKER");
    let in_an_hour = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    v["expiry"] = json!(expiry(in_an_hour));
    v
}

fn header(req: &Request, name: &str) -> String {
    req.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// gcloud's `authorized_user` source (with `token_uri` aimed at `server`).
pub(crate) fn user_source(server: &MockServer) -> Value {
    json!({
        "account": "", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN, "type": "authorized_user",
        "universe_domain": "googleapis.com", "token_uri": token_uri(server)
    })
}

pub(crate) fn eaau(server: &MockServer) -> Value {
    json!({
        "type": "external_account_authorized_user",
        "audience": "//iam.googleapis.com/locations/global/workforcePools/pool/providers/idp",
        "refresh_token": EAAU_REFRESH, "client_id": EAAU_CLIENT, "client_secret": EAAU_SECRET,
        "token_url": format!("{}/sts/token", server.uri()),
        "token_info_url": format!("{}/sts/introspect", server.uri()),
        "revoke_url": format!("{}/sts/revoke", server.uri()),
        "quota_project_id": "workforce-project", "universe_domain": "googleapis.com"
    })
}

/// An `impersonated_service_account` file as gcloud writes it, with the
/// impersonation URL aimed at `server`.
pub(crate) fn impersonated(dir: &Path, source: Value, server: &MockServer) -> PathBuf {
    let file = json!({
        "delegates": [DELEGATE],
        "quota_project_id": "billed-project",
        "service_account_impersonation_url": format!("{}{}", server.uri(), iam_path()),
        "source_credentials": source,
        "type": "impersonated_service_account"
    });
    let path = dir.join("impersonated.json");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    path
}

/// Python's google.auth.default(scopes) on `file` (see tests/python/interop.py).
fn python_adc(file: &Path, scopes: &[&str], revoke: bool) -> Value {
    let mut cmd = python();
    cmd.args(["adc-file", &serde_json::to_string(scopes).unwrap()]);
    if revoke {
        cmd.arg("revoke");
    }
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("GOOGLE_APPLICATION_CREDENTIALS", file)
        .env("NO_GCE_CHECK", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn iam_body(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

/// The `Authorization` of the `n`th call `server`'s IAM path received.
async fn iam_auth(server: &MockServer, n: usize) -> String {
    header(&requests_to(server, &iam_path()).await[n], "authorization")
}

/// Loads an [`impersonated`] file in `dir` with `source`: asserts the
/// first impersonated token; returns the file and the bearer IAM got.
async fn load_impersonated(dir: &Path, server: &MockServer, source: Value) -> (PathBuf, String) {
    let file = impersonated(dir, source, server);
    let creds = adc(&file).load().await.unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
    (file, iam_auth(server, 0).await)
}

/// Asserts `server`'s IAM path got two calls, ours then Python's, alike as
/// [`assert_same_iam_call`] says.
async fn assert_same_iam_calls(server: &MockServer) {
    let iam = requests_to(server, &iam_path()).await;
    assert_eq!(iam.len(), 2);
    assert_same_iam_call(&iam[0], &iam[1]);
}

/// Asserts our `generateAccessToken` call `ours` is Python's `theirs`:
/// same bearer, same JSON type, same scopes and lifetime; delegates named
/// `projects/-/serviceAccounts/…` by us (the API's form), as gcloud wrote
/// them by google-auth.
fn assert_same_iam_call(ours: &Request, theirs: &Request) {
    for h in ["authorization", "content-type"] {
        assert_eq!(header(ours, h), header(theirs, h), "{h}");
    }
    let (ours, theirs) = (iam_body(ours), iam_body(theirs));
    assert_eq!(ours["scope"], theirs["scope"]);
    assert_eq!(ours["lifetime"], theirs["lifetime"]);
    assert_same_delegates(&ours, &theirs);
    assert_eq!(
        ours.as_object().unwrap().keys().collect::<Vec<_>>(),
        theirs.as_object().unwrap().keys().collect::<Vec<_>>()
    );
}

/// Asserts the IAM bodies `ours` and `theirs` (Python's) name the same
/// delegates: ours as the API names accounts, Python's as gcloud's file has
/// them (bare emails).
pub(crate) fn assert_same_delegates(ours: &Value, theirs: &Value) {
    let named: Vec<String> = theirs["delegates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("projects/-/serviceAccounts/{}", d.as_str().unwrap()))
        .collect();
    assert_eq!(ours["delegates"], json!(named));
}

#[tokio::test]
async fn impersonated_user_file_sends_what_google_auth_sends() {
    let server = google().await;
    let (_dir, file) = user_file(&server);
    let creds = adc(&file)
        .scopes([scopes::CLOUD_PLATFORM])
        .load()
        .await
        .unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
    assert_eq!(creds.quota_project(), Some("billed-project"));
    assert!(creds.source().contains(SA), "{}", creds.source());

    let refresh = requests_to(&server, "/token").await;
    assert_eq!(refresh.len(), 1);
    assert_eq!(
        form(&refresh[0]),
        pairs(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
        ])
    );
    let iam = requests_to(&server, &iam_path()).await;
    assert_eq!(iam.len(), 1);
    assert_eq!(
        header(&iam[0], "authorization"),
        format!("Bearer {SOURCE_ACCESS}")
    );
    assert_eq!(header(&iam[0], "content-type"), "application/json");
    assert_eq!(
        iam_body(&iam[0]),
        json!({"delegates": [format!("projects/-/serviceAccounts/{DELEGATE}")],
               "scope": [scopes::CLOUD_PLATFORM], "lifetime": "3600s"})
    );

    // google-auth on the same file, at the same endpoints.
    let report = python_adc(&file, &[scopes::CLOUD_PLATFORM], false);
    assert_eq!(
        report["class"],
        "google.auth.impersonated_credentials.Credentials"
    );
    assert_eq!(report["token"], "ya29.IMPERSONATED-2");
    assert_eq!(report["quota_project_id"], "billed-project");
    let refresh = requests_to(&server, "/token").await;
    assert_eq!(refresh.len(), 2, "Python refreshed the source once");
    assert_eq!(form(&refresh[0]), form(&refresh[1]));
    assert_same_iam_calls(&server).await;
}

#[tokio::test]
async fn the_source_token_is_reused_across_impersonated_refreshes() {
    let server = google().await;
    let (_dir, file) = user_file(&server);
    let creds = adc(&file).load().await.unwrap();
    assert_eq!(
        creds.force_refresh().await.unwrap().secret(),
        "ya29.IMPERSONATED-2"
    );
    assert_eq!(
        creds.force_refresh().await.unwrap().secret(),
        "ya29.IMPERSONATED-3"
    );
    assert_eq!(requests_to(&server, &iam_path()).await.len(), 3);
    assert_eq!(
        requests_to(&server, "/token").await.len(),
        1,
        "the source's hour-long token served all three"
    );
}

#[tokio::test]
async fn external_account_authorized_user_sends_what_google_auth_sends() {
    let server = google().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_json(dir.path(), "workforce.json", &eaau(&server));
    let creds = adc(&file).load().await.unwrap();
    assert_eq!(token(&creds).await, EAAU_ACCESS);
    assert_eq!(creds.quota_project(), Some("workforce-project"));
    assert!(creds.source().contains("workforcePools/pool"));
    let sts = requests_to(&server, "/sts/token").await;
    assert_eq!(sts.len(), 1);
    let basic = header(&sts[0], "authorization");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{EAAU_CLIENT}:{EAAU_SECRET}")
    );
    assert_eq!(
        form(&sts[0]),
        pairs(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", EAAU_REFRESH)
        ])
    );
    assert_eq!(
        header(&sts[0], "content-type"),
        "application/x-www-form-urlencoded"
    );

    // Revocation at the file's revoke_url, the client in Basic auth.
    creds.revoke().await.unwrap();
    assert!(matches!(
        creds.access_token().await,
        Err(Error::Revoked { .. })
    ));
    let revoke = requests_to(&server, "/sts/revoke").await;
    assert_eq!(revoke.len(), 1);
    assert_eq!(header(&revoke[0], "authorization"), basic);
    assert_eq!(
        form(&revoke[0]),
        pairs(&[
            ("token", EAAU_REFRESH),
            ("token_type_hint", "refresh_token")
        ])
    );

    let report = python_adc(&file, &[scopes::CLOUD_PLATFORM], true);
    assert_eq!(
        report["class"],
        "google.auth.external_account_authorized_user.Credentials"
    );
    assert_eq!(report["token"], EAAU_ACCESS);
    assert_eq!(report["quota_project_id"], "workforce-project");
    let sts = requests_to(&server, "/sts/token").await;
    let revoke = requests_to(&server, "/sts/revoke").await;
    assert_eq!((sts.len(), revoke.len()), (2, 2));
    for (ours, theirs) in [(&sts[0], &sts[1]), (&revoke[0], &revoke[1])] {
        assert_eq!(form(ours), form(theirs));
        for h in ["authorization", "content-type"] {
            assert_eq!(header(ours, h), header(theirs, h), "{h}");
        }
    }
}

#[tokio::test]
async fn impersonated_file_with_an_external_user_source() {
    let server = google().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, bearer) = load_impersonated(dir.path(), &server, eaau(&server)).await;
    assert_eq!(bearer, format!("Bearer {EAAU_ACCESS}"));
    let report = python_adc(&file, &[RETRIEVER], false);
    assert_eq!(report["token"], "ya29.IMPERSONATED-2");
    assert_same_iam_calls(&server).await;
}

#[tokio::test]
async fn impersonate_service_account_from_any_credentials() {
    let server = google().await;
    let iam = server.uri();
    // A user's sign-in (a valid stored token: no refresh, no consent).
    let store = MemoryTokenStore::new();
    let record = StoredToken::from_json(token_json(&token_uri(&server), 3000).as_bytes()).unwrap();
    store.save(&record).await.unwrap();
    let creds = CredentialLoader::new()
        .token_store(store)
        .consent(gemini_oauth::Consent::Never)
        .impersonate_service_account(SA, [DELEGATE])
        .iam_endpoint(&iam)
        .load()
        .await
        .unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
    let calls = requests_to(&server, &iam_path()).await;
    assert_eq!(iam_auth(&server, 0).await, format!("Bearer {OLD_ACCESS}"));
    assert_eq!(
        iam_body(&calls[0]),
        json!({"delegates": [format!("projects/-/serviceAccounts/{DELEGATE}")],
               "scope": [RETRIEVER], "lifetime": "3600s"})
    );
    assert!(
        creds.stored_token().is_none(),
        "not a user's credentials any more"
    );

    // Application Default Credentials: an authorized_user file.
    let dir = tempfile::tempdir().unwrap();
    let file = write_json(dir.path(), "adc.json", &user_source(&server));
    let creds = adc(&file)
        .impersonate_service_account(SA, [""; 0])
        .iam_endpoint(&iam)
        .load()
        .await
        .unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-2");
    let calls = requests_to(&server, &iam_path()).await;
    assert_eq!(
        iam_auth(&server, 1).await,
        format!("Bearer {SOURCE_ACCESS}")
    );
    assert_eq!(iam_body(&calls[1])["delegates"], json!([]));
    assert_eq!(iam_body(&calls[1])["scope"], json!([RETRIEVER]));
}

#[tokio::test]
async fn the_iam_endpoint_option_replaces_the_files_host() {
    let server = google().await;
    let (dir, file) = user_file(&server);
    let mut file = read_json(&file);
    // What gcloud writes: Google's host.
    file["service_account_impersonation_url"] = json!(format!(
        "https://iamcredentials.googleapis.com{}",
        iam_path()
    ));
    let path = write_json(dir.path(), "gcloud.json", &file);
    let creds = adc(&path).iam_endpoint(server.uri()).load().await.unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
}

/// An IAM server answering every call with `status` and `body`.
pub(crate) async fn iam_answering(status: u16, body: Value) -> MockServer {
    let server = source_token_server().await;
    Mock::given(method("POST"))
        .and(path(iam_path()))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

async fn impersonation_error(status: u16, body: Value) -> (Error, MockServer) {
    let server = iam_answering(status, body).await;
    let (_dir, file) = user_file(&server);
    let err = adc(&file).load().await.unwrap_err();
    let text = format!("{err} {err:?}");
    for secret in [SOURCE_ACCESS, REFRESH_TOKEN, CLIENT_SECRET] {
        assert!(!text.contains(secret), "{text}");
    }
    (err, server)
}

#[tokio::test]
async fn iam_refusals_and_bad_answers_are_typed_errors() {
    let (err, server) = impersonation_error(
        403,
        json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
            "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."}}),
    )
    .await;
    match &err {
        Error::Impersonation {
            target,
            status: 403,
            problem: ImpersonationProblem::Refused { status, message },
            ..
        } => {
            assert_eq!(target, SA);
            assert_eq!(status.as_deref(), Some("PERMISSION_DENIED"));
            assert!(message.starts_with("Permission 'iam.serviceAccounts.getAccessToken' denied"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("Service Account Token Creator"),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(
        requests_to(&server, &iam_path()).await.len(),
        1,
        "a 403 is not retried"
    );

    let expire_bad = json!({"accessToken": "ya29.X", "expireTime": "next tuesday"});
    let (err, _) = impersonation_error(200, expire_bad).await;
    assert!(
        matches!(
            err,
            Error::Impersonation {
                problem: ImpersonationProblem::InvalidField("expireTime"),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("expireTime"), "{err}");
    let (err, _) = impersonation_error(200, json!({"expireTime": "2030-01-01T00:00:00Z"})).await;
    assert!(matches!(
        err,
        Error::Impersonation {
            problem: ImpersonationProblem::MissingField("accessToken"),
            ..
        }
    ));
}

#[tokio::test]
async fn a_401_from_iam_gets_a_new_source_token_and_one_more_try() {
    let server = iam_first_answering(ResponseTemplate::new(401)).await;
    let (_dir, file) = user_file(&server);
    let creds = adc(&file).load().await.unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
    assert_eq!(requests_to(&server, &iam_path()).await.len(), 2);
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
}

/// The problem `load()` reports for the file `json`, which must name the file.
async fn file_problem(json: Value) -> TokenFileProblem {
    let dir = tempfile::tempdir().unwrap();
    let path = write_json(dir.path(), "adc.json", &json);
    match adc(&path).load().await {
        Err(Error::CredentialsFile(file)) => {
            let text = file.to_string();
            let (p, problem) = (file.path, file.problem);
            assert_ne!(file.kind, CredentialsFileKind::Unknown);
            assert_eq!(p, path);
            assert!(text.contains("adc.json"), "{text}");
            for secret in [REFRESH_TOKEN, CLIENT_SECRET, EAAU_SECRET, EAAU_REFRESH] {
                assert!(!text.contains(secret), "{text}");
            }
            problem
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn bad_files_are_errors_naming_the_file_and_field() {
    let server = MockServer::start().await;
    let good = || {
        json!({"type": "impersonated_service_account",
            "service_account_impersonation_url": format!("{}{}", server.uri(), iam_path()),
            "delegates": [], "source_credentials": user_source(&server)})
    };
    let without = |field: &str| {
        let mut v = good();
        v.as_object_mut().unwrap().remove(field);
        v
    };
    assert_eq!(
        file_problem(without("service_account_impersonation_url")).await,
        TokenFileProblem::MissingField("service_account_impersonation_url")
    );
    assert_eq!(
        file_problem(without("source_credentials")).await,
        TokenFileProblem::MissingField("source_credentials")
    );
    let mut v = good();
    v["service_account_impersonation_url"] = json!("https://iamcredentials.googleapis.com/v1/x");
    assert_eq!(
        file_problem(v).await,
        TokenFileProblem::InvalidValue("service_account_impersonation_url")
    );
    let mut v = good();
    v["delegates"] = json!("not-a-list");
    assert_eq!(
        file_problem(v).await,
        TokenFileProblem::WrongType("delegates")
    );
    for field in ["refresh_token", "client_id", "client_secret"] {
        let mut v = good();
        v["source_credentials"]
            .as_object_mut()
            .unwrap()
            .remove(field);
        let problem = file_problem(v).await;
        assert_eq!(
            problem.to_string(),
            format!("\"source_credentials.{field}\" is missing")
        );
    }
    let mut v = good();
    v["source_credentials"]["type"] = json!("external_account");
    let dir = tempfile::tempdir().unwrap();
    let path = write_json(dir.path(), "adc.json", &v);
    let err = adc(&path).load().await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedCredential { kind, .. } if kind.starts_with("external_account")),
        "{err:?}"
    );
    let mut v = eaau(&server);
    v.as_object_mut().unwrap().remove("token_url");
    assert_eq!(
        file_problem(v).await,
        TokenFileProblem::MissingField("token_url")
    );
}

/// `print_access_token` with `args`, a clean ADC environment, `HOME` at
/// `dir` and `GOOGLE_APPLICATION_CREDENTIALS` at `file`, off the runtime.
async fn print_access_token(dir: &Path, file: &Path, args: &[&str]) -> String {
    let (dir, file) = (dir.to_owned(), file.to_owned());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || run_print_access_token(&dir, &file, &args))
        .await
        .unwrap()
}

fn run_print_access_token(dir: &Path, file: &Path, args: &[String]) -> String {
    let mut cmd = crate::common::examples::example("print_access_token");
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("HOME", dir)
        .env("NO_GCE_CHECK", "true")
        .env("GOOGLE_APPLICATION_CREDENTIALS", file)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    crate::common::examples::stdout(&out).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_take_the_new_files_and_impersonate_flag() {
    let server = google().await;
    // --adc picks an impersonated_service_account file up with no new flag.
    let (dir, file) = user_file(&server);
    let printed = print_access_token(dir.path(), &file, &["--adc"]).await;
    assert_eq!(printed, "ya29.IMPERSONATED-1");

    // --impersonate-service-account DELEGATE,SA over an authorized_user file,
    // as gcloud's flag reads it; --iam-endpoint aims IAM at the server.
    let file = write_json(dir.path(), "user.json", &user_source(&server));
    let accounts = format!("{DELEGATE},{SA}");
    let flags: [&str; 5] = [
        "--adc",
        "--impersonate-service-account",
        &accounts,
        "--iam-endpoint",
        &server.uri(),
    ];
    let printed = print_access_token(dir.path(), &file, &flags).await;
    assert_eq!(printed, "ya29.IMPERSONATED-2");
    let calls = requests_to(&server, &iam_path()).await;
    assert_eq!(
        iam_body(&calls[1])["delegates"],
        json!([format!("projects/-/serviceAccounts/{DELEGATE}")])
    );
}

/// The JSON of one part (0: header, 1: claims) of a JWT.
#[cfg(feature = "service-account")]
fn jwt_part(jwt: &str, n: usize) -> Value {
    let part = jwt.split('.').nth(n).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[cfg(feature = "service-account")]
#[tokio::test]
async fn impersonated_file_with_a_service_account_source_matches_google_auth() {
    let server = google().await;
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    let source = json!({
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1",
        "private_key": private_key, "client_email": "source@test-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri(&server), "universe_domain": "googleapis.com"
    });
    let file = impersonated(dir.path(), source, &server);
    let creds = adc(&file)
        .scopes([scopes::CLOUD_PLATFORM])
        .load()
        .await
        .unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
    let report = python_adc(&file, &[scopes::CLOUD_PLATFORM], false);
    assert_eq!(report["token"], "ya29.IMPERSONATED-2");

    let grants = requests_to(&server, "/token").await;
    assert_eq!(grants.len(), 2);
    let (ours, theirs) = (form(&grants[0]), form(&grants[1]));
    assert_eq!(ours["grant_type"], theirs["grant_type"]);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    let (ours, theirs) = (&ours["assertion"], &theirs["assertion"]);
    let header = |jwt| {
        let mut h = jwt_part(jwt, 0);
        h.as_object_mut().unwrap().remove("typ");
        h
    };
    assert_eq!(header(ours), header(theirs));
    let (ours, theirs) = (jwt_part(ours, 1), jwt_part(theirs, 1));
    for claim in ["iss", "scope"] {
        assert_eq!(ours[claim], theirs[claim], "{claim}");
    }
    // The one difference: google-auth's audience is always Google's token
    // endpoint, ours the key file's token_uri (as Go's); the same for a real key.
    assert_eq!(theirs["aud"], gemini_oauth::endpoints::GOOGLE_TOKEN_URI);
    assert_eq!(ours["aud"], token_uri(&server));
    assert_eq!(
        ours["scope"],
        scopes::IAM,
        "the source asks for the IAM scope"
    );
    let lifetime = |c: &Value| c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert_eq!(lifetime(&ours), lifetime(&theirs));
    assert_same_iam_calls(&server).await;
}

#[tokio::test]
async fn an_external_user_files_valid_token_is_used_and_an_expired_one_refreshed() {
    let server = google().await;
    let dir = tempfile::tempdir().unwrap();
    let mut v = eaau_with_token(&server);
    let file = write_json(dir.path(), "workforce.json", &v);
    let creds = adc(&file).load().await.unwrap();
    assert_eq!(token(&creds).await, "ya29.FILETOKENMARKER");
    assert!(requests_to(&server, "/sts/token").await.is_empty());

    v["expiry"] = json!("2020-01-02T03:04:05Z");
    write_json(dir.path(), "workforce.json", &v);
    assert_eq!(token(&adc(&file).load().await.unwrap()).await, EAAU_ACCESS);
    assert_eq!(requests_to(&server, "/sts/token").await.len(), 1);

    v["expiry"] = json!("soon");
    write_json(dir.path(), "workforce.json", &v);
    match adc(&file).load().await {
        Err(Error::CredentialsFile(f)) => {
            assert_eq!(f.path, file);
            assert_eq!(f.problem, TokenFileProblem::BadExpiry);
            assert!(f.to_string().contains("--login-config"), "{f}");
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn an_external_user_source_with_a_valid_token_buys_the_impersonated_one_with_it() {
    let server = google().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, bearer) = load_impersonated(dir.path(), &server, eaau_with_token(&server)).await;
    assert_eq!(bearer, "Bearer ya29.FILETOKENMARKER");
    assert!(requests_to(&server, "/sts/token").await.is_empty());
}

/// Issue #20 item 9: `on_refresh` set on impersonating credentials reports
/// their own refreshes only, not those of the user's token they draw on
/// (here the one `load()` makes for the expired stored token).
#[tokio::test]
async fn on_refresh_reports_the_impersonated_refreshes_only() {
    let server = google().await;
    let store = MemoryTokenStore::new();
    let record = StoredToken::from_json(token_json(&token_uri(&server), -60).as_bytes()).unwrap();
    store.save(&record).await.unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&events);
    let creds = CredentialLoader::new()
        .token_store(store)
        .consent(gemini_oauth::Consent::Never)
        .impersonate_service_account(SA, [""; 0])
        .iam_endpoint(server.uri())
        .on_refresh(move |e| seen.lock().unwrap().push(e.source.clone()))
        .load()
        .await
        .unwrap();
    assert_eq!(token(&creds).await, "ya29.IMPERSONATED-1");
    // The user's token was refreshed by load(): not these credentials' refresh.
    assert_eq!(token_requests(&server).await, 1);
    assert_eq!(*events.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        creds.force_refresh().await.unwrap().secret(),
        "ya29.IMPERSONATED-2"
    );
    assert_eq!(*events.lock().unwrap(), vec![creds.source()]);
}

/// IAM's `Retry-After` is honoured: an hour past the retry deadline (60 s)
/// ends the call with that answer instead of trying again after the
/// policy's own 200 ms backoff (which the second mock would answer).
#[tokio::test]
async fn iam_retry_after_beyond_the_deadline_ends_the_call() {
    let server = iam_first_answering(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "3600")
            .set_body_json(
                json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": "Quota exceeded"}}),
            ),
    )
    .await;
    let (_dir, file) = user_file(&server);
    let err = adc(&file).load().await.unwrap_err();
    assert!(
        matches!(err, Error::Impersonation { status: 429, .. }),
        "{err:?}"
    );
    assert_eq!(requests_to(&server, &iam_path()).await.len(), 1);
}

/// IAM answers `first` once, then tokens as [`Iam`] does.
async fn iam_first_answering(first: ResponseTemplate) -> MockServer {
    let server = source_token_server().await;
    Mock::given(method("POST"))
        .and(path(iam_path()))
        .respond_with(first)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(iam_path()))
        .respond_with(Iam(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    server
}
