//! ID tokens (`Credentials::id_token`, `gemini-oauth print-identity-token`)
//! from each kind of credentials that has them, against endpoints on
//! 127.0.0.1; each request compared with what Python google-auth's
//! `fetch_id_token_credentials` (or a user's `Credentials.id_token`) sends
//! on the same file and endpoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gemini_oauth::{Credentials, Error, IdTokenProblem};
use serde_json::{Value, json};
#[cfg(feature = "cli")]
use wiremock::matchers::{header, query_param};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::*;
use crate::impersonation::{SA, adc, eaau, google, user_file, user_source, write_json};

const AUD: &str = "https://tool-abc123-uc.a.run.app";
const OTHER_AUD: &str = "https://other-abc123-uc.a.run.app";

/// The `exp` every test ID token carries: an hour from now, whole seconds.
fn exp_in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// An ID token for `aud` (unsigned: the signature is the audience's to
/// check), numbered `n` in its `sub`.
fn id_jwt(aud: &str, n: usize, exp: u64) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        part(json!({"aud": aud, "exp": exp, "iat": exp - 3600,
                    "iss": "https://accounts.google.com", "sub": n.to_string()})),
        URL_SAFE_NO_PAD.encode(b"IDTOKENSIGNATUREMARKER")
    )
}

fn claims(jwt: &str, part: usize) -> Value {
    let text = jwt.split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

/// Asserts `err` is [`Error::IdToken`] for `problem`.
fn assert_problem(err: &Error, problem: IdTokenProblem) {
    match err {
        Error::IdToken { problem: p, .. } => assert_eq!(*p, problem, "{err}"),
        other => panic!("{other:?}"),
    }
}

fn form(req: &Request) -> BTreeMap<String, String> {
    form_urlencoded::parse(&req.body).into_owned().collect()
}

/// Python's `fetch_id_token_credentials(AUD)` refreshed, with `env`.
fn python_id_token(env: &[(&str, &str)]) -> Value {
    let mut cmd = python();
    cmd.args(["id-token", AUD]);
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A token endpoint for a service-account key: a `target_audience`
/// assertion gets `id_token` N for that audience, any other an access token.
struct SaTokens(AtomicUsize);

impl Respond for SaTokens {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let assertion = form(req).remove("assertion").unwrap_or_default();
        match claims(&assertion, 1)["target_audience"].as_str() {
            Some(aud) => {
                let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id_token": id_jwt(aud, n, exp_in_an_hour())}))
            }
            None => ResponseTemplate::new(200).set_body_json(
                json!({"access_token": "ya29.SA", "expires_in": 3599, "token_type": "Bearer"}),
            ),
        }
    }
}

/// The ID-token requests `server` received (assertions with an audience).
async fn id_requests(server: &MockServer) -> Vec<Request> {
    requests_to(server, "/token")
        .await
        .into_iter()
        .filter(|r| {
            let assertion = form(r).remove("assertion").unwrap_or_default();
            claims(&assertion, 1).get("target_audience").is_some()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_gets_id_tokens_as_google_auth_does() {
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(SaTokens(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    let file = write_json(
        dir.path(),
        "sa.json",
        &json!({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                "private_key": private_key, "client_email": SA, "client_id": "1",
                "token_uri": token_uri(&server)}),
    );
    let creds = adc(&file).load().await.unwrap();
    let first = creds.id_token(AUD).await.unwrap();
    assert_eq!(claims(first.secret(), 1)["aud"], AUD);
    assert_eq!(claims(first.secret(), 1)["sub"], "1");
    let exp = claims(first.secret(), 1)["exp"].as_u64().unwrap();
    assert_eq!(first.expires_at(), UNIX_EPOCH + Duration::from_secs(exp));
    assert_eq!(
        first.header_value().to_str().unwrap(),
        format!("Bearer {}", first.secret())
    );
    // Cached per audience: the same token again, a new one for another.
    assert_eq!(creds.id_token(AUD).await.unwrap().secret(), first.secret());
    let other = creds.id_token(OTHER_AUD).await.unwrap();
    assert_eq!(claims(other.secret(), 1)["aud"], OTHER_AUD);
    assert_eq!(id_requests(&server).await.len(), 2);
    assert_no_secrets(&format!("{first:?} {creds:?}"));
    // Eight tasks asking at once for a new audience share one request.
    let third = "https://third-abc123-uc.a.run.app";
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let creds = creds.clone();
            tokio::spawn(async move { creds.id_token(third).await.unwrap().secret().to_owned() })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.dedup();
    assert_eq!(got.len(), 1, "one token for all");
    assert_eq!(id_requests(&server).await.len(), 3);

    let report = python_id_token(&[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())]);
    assert_eq!(
        report["class"],
        "google.oauth2.service_account.IDTokenCredentials"
    );
    assert_eq!(claims(report["token"].as_str().unwrap(), 1)["sub"], "4");
    let requests = id_requests(&server).await;
    let (ours, theirs) = (form(&requests[0]), form(&requests[3]));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    assert_eq!(ours["grant_type"], theirs["grant_type"]);
    let (ours, theirs) = (&ours["assertion"], &theirs["assertion"]);
    assert_eq!(claims(ours, 0), claims(theirs, 0), "the JWT headers");
    let (mut ours, mut theirs) = (claims(ours, 1), claims(theirs, 1));
    let life = |c: &Value| c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(life(&ours), life(&theirs));
    for c in [&mut ours, &mut theirs] {
        let map = c.as_object_mut().unwrap();
        map.remove("iat");
        map.remove("exp");
    }
    assert_eq!(ours, theirs, "the assertion's claims but its times");
    assert_eq!(ours["aud"], gemini_oauth::endpoints::GOOGLE_TOKEN_URI);
}

/// Answers `generateIdToken` with an ID token for the body's audience,
/// expiring at `exp` (fixed: two calls a second apart get the same token).
struct IamId(u64);

impl Respond for IamId {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let aud = body["audience"].as_str().unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(json!({"token": id_jwt(aud, 7, self.0)}))
    }
}

fn iam_id_path() -> String {
    format!("/v1/projects/-/serviceAccounts/{SA}:generateIdToken")
}

#[tokio::test]
async fn an_impersonated_service_account_asks_iam_as_google_auth_does() {
    let server = google().await;
    Mock::given(method("POST"))
        .and(path(iam_id_path()))
        .respond_with(IamId(exp_in_an_hour()))
        .mount(&server)
        .await;
    let (_dir, file) = user_file(&server);
    let creds = adc(&file).load().await.unwrap();
    let id = creds.id_token(AUD).await.unwrap();
    assert_eq!(claims(id.secret(), 1)["aud"], AUD);
    creds.id_token(AUD).await.unwrap();

    let endpoint = format!("{}{}", server.uri(), iam_id_path());
    let report = python_id_token(&[
        ("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap()),
        ("IAM_IDTOKEN_ENDPOINT", &endpoint),
        ("NO_GCE_CHECK", "true"),
    ]);
    assert_eq!(
        report["class"],
        "google.auth.impersonated_credentials.IDTokenCredentials"
    );
    assert_eq!(report["token"], id.secret());
    let calls = requests_to(&server, &iam_id_path()).await;
    assert_eq!(calls.len(), 2, "one call each, the second ID token cached");
    for h in ["authorization", "content-type"] {
        assert_eq!(calls[0].headers.get(h), calls[1].headers.get(h), "{h}");
    }
    let body = |r: &Request| serde_json::from_slice::<Value>(&r.body).unwrap();
    let (ours, theirs) = (body(&calls[0]), body(&calls[1]));
    assert_eq!(ours["audience"], theirs["audience"]);
    assert_eq!(ours["includeEmail"], true);
    assert_eq!(ours["includeEmail"], theirs["includeEmail"]);
    crate::impersonation::assert_same_delegates(&ours, &theirs);
}

/// A token endpoint whose refresh answers carry `id_token` (a sign-in with
/// `openid`), the same one each time.
async fn openid_token_server(id_token: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer",
            "scope": "openid https://www.googleapis.com/auth/cloud-platform",
            "id_token": id_token
        })))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_user_sign_in_with_openid_gives_the_refresh_s_id_token_for_its_client() {
    let id = id_jwt(CLIENT_ID, 1, exp_in_an_hour());
    let server = openid_token_server(&id).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_json(dir.path(), "adc.json", &user_source(&server));
    // Loading refreshes (the file has no token): that refresh brought the ID token.
    let creds = adc(&file).load().await.unwrap();
    assert_eq!(creds.id_token(CLIENT_ID).await.unwrap().secret(), id);
    assert_eq!(token_requests(&server).await, 1);

    let err = creds.id_token(AUD).await.unwrap_err();
    match &err {
        Error::IdToken {
            problem: IdTokenProblem::NotTheClient { client_id },
            ..
        } => assert_eq!(client_id, CLIENT_ID),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("impersonate"), "{err}");

    // google-auth keeps the same refresh answer's id_token.
    let mut cmd = python();
    let out = cmd
        .args(["user-id-token", file.to_str().unwrap(), &token_uri(&server)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["id_token"], id);
    let refreshes = requests_to(&server, "/token").await;
    assert_eq!(form(&refreshes[0]), form(&refreshes[1]));
}

#[tokio::test]
async fn an_expiring_user_id_token_is_renewed_by_a_refresh() {
    // The refresh answer's ID token has less than the refresh window left:
    // each ID token asked for past it takes a new refresh.
    let soon = exp_in_an_hour() - 3600 + 120;
    let server = openid_token_server(&id_jwt(CLIENT_ID, 1, soon)).await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = dir.loader().load().await.unwrap();
    assert_eq!(token_requests(&server).await, 0);
    let id = creds.id_token(CLIENT_ID).await.unwrap();
    assert_eq!(claims(id.secret(), 1)["exp"], soon);
    assert_eq!(token_requests(&server).await, 1, "one forced refresh");
}

#[tokio::test]
async fn a_user_sign_in_without_openid_says_to_add_the_scope() {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = dir.loader().load().await.unwrap();
    let err = creds.id_token(CLIENT_ID).await.unwrap_err();
    assert_problem(&err, IdTokenProblem::NoOpenIdScope);
    assert!(err.to_string().contains("openid"), "{err}");
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn credentials_without_id_tokens_and_empty_audiences_are_typed_errors() {
    let not_supported = |e: Error| {
        assert_problem(&e, IdTokenProblem::NotSupported);
    };
    not_supported(
        Credentials::from_api_key("AIzaKEYMARKER")
            .unwrap()
            .id_token(AUD)
            .await
            .unwrap_err(),
    );
    let fixed =
        Credentials::from_access_token("ya29.FIXED", SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
    not_supported(fixed.id_token(AUD).await.unwrap_err());
    let err = fixed.id_token("").await.unwrap_err();
    assert_problem(&err, IdTokenProblem::EmptyAudience);
}

#[tokio::test]
async fn after_a_sign_out_no_id_token_is_handed_out() {
    let id = id_jwt(CLIENT_ID, 1, exp_in_an_hour());
    let server = openid_token_server(&id).await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = dir
        .loader()
        .revoke_uri(format!("{}/revoke", server.uri()))
        .load()
        .await
        .unwrap();
    assert_eq!(creds.id_token(CLIENT_ID).await.unwrap().secret(), id);
    creds.revoke().await.unwrap();
    for aud in [CLIENT_ID, AUD] {
        let err = creds.id_token(aud).await.unwrap_err();
        assert!(matches!(err, Error::Revoked { .. }), "{aud}: {err:?}");
    }
}

/// A metadata server whose identity endpoint answers an ID token for the
/// audience asked (with `format=full`, the flavor header), as plain text.
#[cfg(feature = "cli")]
async fn identity_metadata(id: &str) -> MockServer {
    let metadata = metadata_server(metadata_token()).await;
    // google-auth reads the account's email first.
    Mock::given(method("GET"))
        .and(path(
            "/computeMetadata/v1/instance/service-accounts/default/",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Metadata-Flavor", "Google")
                .set_body_json(json!({"email": SA, "aliases": ["default"], "scopes": []})),
        )
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/computeMetadata/v1/instance/service-accounts/default/identity",
        ))
        .and(query_param("audience", AUD))
        .and(query_param("format", "full"))
        .and(header("metadata-flavor", "Google"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Metadata-Flavor", "Google")
                .set_body_string(id),
        )
        .mount(&metadata)
        .await;
    metadata
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_metadata_server_s_identity_endpoint_as_google_auth_asks_it() {
    let id = id_jwt(AUD, 1, exp_in_an_hour());
    let metadata = identity_metadata(&id).await;
    let host = metadata.address().to_string();
    let home = tempfile::tempdir().unwrap();
    let out = print_identity_token(home.path(), &host, AUD);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{id}\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    let report = python_id_token(&[("GCE_METADATA_HOST", &host), ("GCE_METADATA_IP", &host)]);
    assert_eq!(
        report["class"],
        "google.auth.compute_engine.credentials.IDTokenCredentials"
    );
    assert_eq!(report["token"], id);
    let exp = claims(&id, 1)["exp"].as_u64().unwrap();
    assert_eq!(report["expiry"].as_f64().unwrap() as u64, exp);
    let calls: Vec<Request> = metadata
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/identity"))
        .collect();
    assert_eq!(calls.len(), 2);
    let query =
        |r: &Request| -> BTreeMap<String, String> { r.url.query_pairs().into_owned().collect() };
    assert_eq!(query(&calls[0]), query(&calls[1]));
    assert_eq!(
        calls[0].headers.get("metadata-flavor"),
        calls[1].headers.get("metadata-flavor")
    );

    // An audience the server refuses: exit 1, one line naming the endpoint, no token.
    let out = print_identity_token(home.path(), &host, OTHER_AUD);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no ID token"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `gemini-oauth print-identity-token --adc --audiences AUD` with the
/// metadata server at `host` and nothing else to find.
#[cfg(feature = "cli")]
fn print_identity_token(home: &Path, host: &str, aud: &str) -> std::process::Output {
    let mut cmd = crate::common::examples::cli();
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    // The default log filter: the error line alone.
    cmd.env_remove("RUST_LOG")
        .env("HOME", home)
        .env("GCE_METADATA_HOST", host)
        .env("GEMINI_OAUTH_DMI_PRODUCT_NAME", home.join("no-dmi-here"))
        .current_dir(home)
        .args(["print-identity-token", "--adc", "--audiences", aud])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A token endpoint for a service-account key that answers every
/// `target_audience` assertion with `answer`, any other with an access token.
struct SaAnswer(ResponseTemplate);

impl Respond for SaAnswer {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let assertion = form(req).remove("assertion").unwrap_or_default();
        match claims(&assertion, 1).get("target_audience") {
            Some(_) => self.0.clone(),
            None => ResponseTemplate::new(200).set_body_json(
                json!({"access_token": "ya29.SA", "expires_in": 3599, "token_type": "Bearer"}),
            ),
        }
    }
}

/// A service-account key file (with `private_key`) in `dir` whose token
/// endpoint answers ID-token requests with `answer`.
async fn sa_key_answering(
    dir: &Path,
    private_key: &str,
    answer: ResponseTemplate,
) -> (MockServer, std::path::PathBuf) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(SaAnswer(answer))
        .mount(&server)
        .await;
    let file = write_json(
        dir,
        "sa.json",
        &json!({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                "private_key": private_key, "client_email": SA, "client_id": "1",
                "token_uri": token_uri(&server)}),
    );
    (server, file)
}

/// Seconds since the epoch, `by` seconds from now (negative: past).
fn exp_from_now(by: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now.checked_add_signed(by).unwrap()
}

/// What a token endpoint answers, and whether the error it makes is right.
type Case = (&'static str, ResponseTemplate, fn(&Error) -> bool);

#[tokio::test]
async fn answers_that_are_no_usable_id_token_are_typed_errors_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    let ok = id_jwt(AUD, 1, exp_in_an_hour());
    let (head, rest) = ok.split_once('.').unwrap();
    let id_answer =
        |token: String| ResponseTemplate::new(200).set_body_json(json!({"id_token": token}));
    let cases: Vec<Case> = vec![
        (
            "HTML with 200",
            ResponseTemplate::new(200).set_body_raw("<html>IDTOKENMARKER</html>", "text/html"),
            |e| matches!(e, Error::TokenResponse { status: 200, .. }),
        ),
        (
            "no id_token",
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "ya29.SAMARKER"})),
            |e| matches!(e, Error::TokenResponse { status: 200, .. }),
        ),
        (
            "a huge token",
            id_answer(format!("{ok}{}", "A".repeat(20 * 1024))),
            |e| {
                matches!(
                    e,
                    Error::IdToken {
                        problem: IdTokenProblem::NotJwt,
                        ..
                    }
                )
            },
        ),
        (
            "a control character in the token",
            id_answer(format!("{head}\u{7}.{rest}")),
            |e| {
                matches!(
                    e,
                    Error::IdToken {
                        problem: IdTokenProblem::NotJwt,
                        ..
                    }
                )
            },
        ),
        (
            "an exp in the past",
            id_answer(id_jwt(AUD, 1, exp_from_now(-60))),
            |e| {
                matches!(
                    e,
                    Error::IdToken {
                        problem: IdTokenProblem::Expired,
                        ..
                    }
                )
            },
        ),
    ];
    for (what, answer, expected) in cases {
        let case = tempfile::tempdir().unwrap();
        let (_server, file) = sa_key_answering(case.path(), &private_key, answer).await;
        let creds = adc(&file).load().await.unwrap();
        let err = creds.id_token(AUD).await.unwrap_err();
        assert!(expected(&err), "{what}: {err:?}");
        assert_no_secrets(&format!("{err} {err:?}"));
    }
}

#[tokio::test]
async fn an_exp_far_ahead_is_taken_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    // Year ~5000, and the largest exp SystemTime holds past u64 ms.
    for exp in [95_617_584_000, 1 << 62] {
        let case = tempfile::tempdir().unwrap();
        let answer =
            ResponseTemplate::new(200).set_body_json(json!({"id_token": id_jwt(AUD, 1, exp)}));
        let (server, file) = sa_key_answering(case.path(), &private_key, answer).await;
        let creds = adc(&file).load().await.unwrap();
        let id = creds.id_token(AUD).await.unwrap();
        assert_eq!(id.expires_at(), UNIX_EPOCH + Duration::from_secs(exp));
        creds.id_token(AUD).await.unwrap();
        assert_eq!(id_requests(&server).await.len(), 1, "exp {exp}");
    }
}

#[tokio::test]
async fn an_expired_user_id_token_is_an_error_not_a_refresh_per_call() {
    let server = openid_token_server(&id_jwt(CLIENT_ID, 1, exp_from_now(-60))).await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = dir.loader().load().await.unwrap();
    let err = creds.id_token(CLIENT_ID).await.unwrap_err();
    assert_problem(&err, IdTokenProblem::Expired);
    assert!(err.to_string().contains("clock"), "{err}");
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn a_user_id_token_when_another_process_refreshed_the_store() {
    let id = id_jwt(CLIENT_ID, 1, exp_in_an_hour());
    let server = openid_token_server(&id).await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = dir.loader().load().await.unwrap();
    // Another process refreshed meanwhile: the store holds a newer token
    // (whose refresh brought that process, not this one, an ID token).
    dir.write_token(&token_json(&token_uri(&server), 3500));
    let got = creds.id_token(CLIENT_ID).await;
    assert_eq!(got.unwrap().secret(), id);
    assert_eq!(
        token_requests(&server).await,
        1,
        "one refresh, of the adopted token"
    );
}

#[tokio::test]
async fn a_quiet_token_or_iam_endpoint_ends_the_id_token_call_with_a_timeout() {
    let quiet = || ResponseTemplate::new(200).set_delay(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    let (_server, file) = sa_key_answering(dir.path(), &private_key, quiet()).await;
    let creds = adc(&file)
        .timeout(Duration::from_millis(200))
        .load()
        .await
        .unwrap();
    let err = creds.id_token(AUD).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    let server = google().await;
    Mock::given(method("POST"))
        .and(path(iam_id_path()))
        .respond_with(quiet())
        .mount(&server)
        .await;
    let (_dir, file) = user_file(&server);
    let creds = adc(&file)
        .timeout(Duration::from_millis(200))
        .load()
        .await
        .unwrap();
    let err = creds.id_token(AUD).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn a_user_id_token_right_after_an_access_token_refresh_takes_no_other() {
    let id = id_jwt(CLIENT_ID, 1, exp_in_an_hour());
    let server = openid_token_server(&id).await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = dir.loader().load().await.unwrap();
    creds.force_refresh().await.unwrap();
    assert_eq!(creds.id_token(CLIENT_ID).await.unwrap().secret(), id);
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn a_key_outside_googleapis_and_an_external_account_say_why_they_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    let (server, file) =
        sa_key_answering(dir.path(), &private_key, ResponseTemplate::new(500)).await;
    let mut key: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    key["universe_domain"] = json!("example.test");
    let file = write_json(dir.path(), "sa.json", &key);
    let creds = adc(&file).load().await.unwrap();
    let err = creds.id_token(AUD).await.unwrap_err();
    assert_problem(&err, IdTokenProblem::OtherUniverse);
    assert!(id_requests(&server).await.is_empty());

    let server = google().await;
    let file = write_json(dir.path(), "eaau.json", &eaau(&server));
    let creds = adc(&file).load().await.unwrap();
    let err = creds.id_token(AUD).await.unwrap_err();
    assert_problem(&err, IdTokenProblem::NotSupported);
}
