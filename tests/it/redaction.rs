//! No secret ever reaches a log line or an error message.
//!
//! A process-wide `tracing` subscriber at TRACE writes every event and span
//! (with their fields, and `log` records from dependencies) into a buffer.
//! One test, run in a process of its own so that nothing but its own paths
//! reach that subscriber, then walks through every path that handles a
//! secret: a cached load, a refresh that rotates the refresh token,
//! `invalid_grant`, `invalid_client`, a transient failure, the authorized
//! client's 401 retry (and a refresh failing there), a Gemini 403, a corrupt
//! token file, the consent flow through the loopback listener (a forged
//! redirect, the real one, and a code the server rejects), sign-out, a
//! dropped connection, API keys, a Redis store that cannot be reached, and
//! the examples at `RUST_LOG=trace` on ADC files (authorized_user,
//! service_account, and external_account with AWS keys, a URL source's
//! header and a failing executable), the metadata server and API keys,
//! impersonation and an external account's user (`external_account_authorized_user`).
//! Every error's `Display`, `Debug` and source chain, the `Debug` of every
//! value handed out, and the whole log are then searched for each secret.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::common::browser::{self, query_param};
use crate::common::*;
use gemini_oauth::{Consent, CredentialLoader, Error, FileTokenStore, MemoryTokenStore};
use serde_json::json;
use tracing_subscriber::fmt::format::FmtSpan;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ROTATED_REFRESH: &str = "1//ROTATEDREFRESHMARKER";
const CONSENT_ACCESS: &str = "ya29.CONSENTACCESSMARKER";
const CONSENT_REFRESH: &str = "1//CONSENTREFRESHMARKER";
const CODE: &str = "4/CODEMARKER";
const FORGED_CODE: &str = "4/FORGEDCODEMARKER";
const REJECTED_CODE: &str = "4/REJECTEDCODEMARKER";
const HANG_GUARD: Duration = Duration::from_secs(20);

/// Everything the subscriber wrote.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&buffer);
            tracing_subscriber::fmt()
                .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
                .with_span_events(FmtSpan::FULL)
                .with_ansi(false)
                .with_writer(move || Capture(Arc::clone(&sink)))
                .try_init()
                .expect("the only global subscriber of this test binary");
            buffer
        })
        .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the test saw: texts to search, and secrets only known at run time.
#[derive(Default)]
struct Seen {
    texts: Vec<(String, String)>,
    runtime_secrets: Vec<String>,
}

impl Seen {
    fn error(&mut self, scenario: &str, err: &Error) {
        let mut text = format!("{err}\n{err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            text.push_str(&format!("\n{s}\n{s:?}"));
            source = s.source();
        }
        self.texts.push((scenario.to_owned(), text));
    }

    fn text(&mut self, scenario: &str, text: String) {
        self.texts.push((scenario.to_owned(), text));
    }
}

async fn guarded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, work)
        .await
        .expect("finished before the hang guard")
}

async fn expect_load_error(seen: &mut Seen, scenario: &str, loader: CredentialLoader) -> Error {
    let err = guarded(loader.load()).await.unwrap_err();
    seen.error(scenario, &err);
    err
}

/// Loads an expired token from a token endpoint that answers `status` and
/// `body`; returns the error and the endpoint.
async fn refresh_error(
    seen: &mut Seen,
    scenario: &str,
    status: u16,
    body: serde_json::Value,
) -> (Error, MockServer) {
    let server = token_server_answering(&[(status, body)]).await;
    let dir = TempLoader::with_token(&token_uri(&server), -60);
    let err = expect_load_error(seen, scenario, dir.loader()).await;
    (err, server)
}

async fn cached_load(seen: &mut Seen) {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = guarded(dir.loader().load()).await.unwrap();
    let token = creds.access_token().await.unwrap();
    assert_eq!(token.secret(), OLD_ACCESS);
    let headers = creds.headers().await.unwrap();
    seen.text(
        "cached load",
        format!(
            "{creds:?} {token:?} {headers:?} {:?} {:?} {:?}",
            creds.authorized_client(),
            creds.stored_token(),
            dir.loader()
        ),
    );
}

async fn refresh_with_rotation(seen: &mut Seen) {
    let server = token_server_answering(&[(
        200,
        json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer",
            "refresh_token": ROTATED_REFRESH, "scope": RETRIEVER, "id_token": "eyJIDTOKENMARKER"
        }),
    )])
    .await;
    let dir = TempLoader::with_token(&token_uri(&server), -60);
    let creds = guarded(dir.loader().load()).await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(
        read_json(&dir.token_file())["refresh_token"],
        ROTATED_REFRESH
    );
    seen.text(
        "refresh with rotation",
        format!("{creds:?} {:?}", creds.stored_token()),
    );
}

async fn invalid_grant(seen: &mut Seen) {
    let (err, _) = refresh_error(
        seen,
        "invalid_grant",
        400,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    )
    .await;
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
}

async fn invalid_client(seen: &mut Seen) {
    let (err, _) = refresh_error(
        seen,
        "invalid_client",
        401,
        json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
    )
    .await;
    assert!(matches!(err, Error::OAuth { .. }), "{err:?}");
}

async fn transient_failure(seen: &mut Seen) {
    let (err, server) = refresh_error(
        seen,
        "transient",
        503,
        json!({"error": "temporarily_unavailable"}),
    )
    .await;
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(token_requests(&server).await, 3);
}

/// The authorized client: a 401 forces a refresh (rotating the refresh
/// token) and one retry; a 403 from Gemini; then a 401 whose forced
/// refresh is rejected with invalid_grant.
async fn authorized_client(seen: &mut Seen) {
    let tokens = token_server_answering(&[(
        200,
        json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer",
            "refresh_token": ROTATED_REFRESH, "scope": RETRIEVER
        }),
    )])
    .await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(bearer(OLD_ACCESS))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        ))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/ok"}]})),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/tunedModels"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": 403, "message": "Request had insufficient authentication scopes.",
            "status": "PERMISSION_DENIED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]
        }})))
        .mount(&api)
        .await;
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = guarded(dir.loader().api_base(format!("{}/v1", api.uri())).load())
        .await
        .unwrap();
    let client = creds.authorized_client();
    let models = guarded(gemini_oauth::gemini::list_models(&client))
        .await
        .unwrap();
    assert_eq!(models[0].name, "models/ok");
    assert_eq!(
        token_requests(&tokens).await,
        1,
        "the 401 forced one refresh"
    );

    let err = guarded(gemini_oauth::gemini::get_json::<serde_json::Value>(
        &client,
        &client.api_url("tunedModels"),
    ))
    .await
    .unwrap_err();
    assert!(matches!(&err, Error::Api(e) if e.status == 403), "{err:?}");
    seen.error("gemini 403", &err);
    seen.text("authorized client", format!("{client:?} {creds:?}"));

    // A 401 whose forced refresh is refused.
    let rejecting = token_server_answering(&[(
        400,
        json!({"error": "invalid_grant", "error_description": "Bad Request"}),
    )])
    .await;
    let api = api_answering(ResponseTemplate::new(401)).await;
    let dir = TempLoader::with_token(&token_uri(&rejecting), 3000);
    let creds = guarded(dir.loader().api_base(format!("{}/v1", api.uri())).load())
        .await
        .unwrap();
    let client = creds.authorized_client();
    let err = guarded(client.get(&client.api_url("models")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    seen.error("401 then invalid_grant", &err);
}

async fn corrupt_token_file(seen: &mut Seen) {
    let truncated = format!(
        r#"{{"token": "{OLD_ACCESS}", "refresh_token": "{REFRESH_TOKEN}", "client_secret": "{CLIENT_SECRET}", "expi"#
    );
    let dir = TempLoader::empty();
    dir.write_token(&truncated);
    let err = expect_load_error(seen, "corrupt token file", dir.loader()).await;
    assert!(matches!(err, Error::TokenFile { .. }), "{err:?}");

    // Wrong types and a bad expiry, around real secrets.
    dir.write_token(&format!(
        r#"{{"token": "{OLD_ACCESS}", "refresh_token": "{REFRESH_TOKEN}", "expiry": "{CLIENT_SECRET}"}}"#
    ));
    let err = expect_load_error(seen, "bad expiry", dir.loader()).await;
    assert!(matches!(err, Error::TokenFile { .. }), "{err:?}");

    // Opted in to replacing it: a warning (logged) and no token.
    dir.write_token(&truncated);
    let err = expect_load_error(
        seen,
        "corrupt token file replaced",
        dir.loader()
            .token_store(FileTokenStore::new(dir.token_file()).replace_corrupt(true)),
    )
    .await;
    assert!(matches!(err, Error::ConsentRequired { .. }), "{err:?}");
}

/// The consent flow through the loopback listener, playing the browser:
/// a forged redirect, then the real one; then a flow whose code the token
/// endpoint rejects.
async fn consent_flow(seen: &mut Seen) {
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("REJECTEDCODEMARKER"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": "Malformed auth code."}),
        ))
        .mount(&tokens)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": CONSENT_ACCESS, "expires_in": 3599, "token_type": "Bearer",
            "refresh_token": CONSENT_REFRESH, "scope": RETRIEVER, "id_token": "eyJIDTOKENMARKER"
        })))
        .mount(&tokens)
        .await;

    for (code, succeeds) in [(CODE, true), (REJECTED_CODE, false)] {
        let (tx, mut urls) = tokio::sync::mpsc::unbounded_channel();
        let secret = consent_client(&tokens);
        let store = MemoryTokenStore::new();
        let loader = CredentialLoader::new()
            .client_secret(secret.clone())
            .token_store(store.clone())
            .consent(Consent::PrintUrl)
            .consent_timeout(Duration::from_secs(15))
            .on_consent_url(move |url| tx.send(url.to_owned()).unwrap());
        seen.text("consent loader", format!("{loader:?} {secret:?}"));
        let flow = tokio::spawn(loader.load());
        let url = guarded(urls.recv()).await.unwrap();
        let state = query_param(&url, "state").unwrap();
        let redirect = query_param(&url, "redirect_uri").unwrap();
        seen.runtime_secrets.push(state.clone());

        let forged = browser::get(&format!(
            "{redirect}?state=FORGED&code={}",
            FORGED_CODE.replace('/', "%2F")
        ))
        .await;
        assert_eq!(forged.status, 400);
        seen.text("forged redirect page", forged.body);
        let page = browser::get(&format!(
            "{redirect}?state={state}&code={}&scope={RETRIEVER}",
            code.replace('/', "%2F")
        ))
        .await;
        assert_eq!(page.status, 200);
        seen.text("redirect page", page.body);

        let result = guarded(flow).await.unwrap();
        if succeeds {
            let creds = result.unwrap();
            assert_eq!(creds.access_token().await.unwrap().secret(), CONSENT_ACCESS);
            assert_eq!(store.get().unwrap().refresh_token(), Some(CONSENT_REFRESH));
            seen.text(
                "consent",
                format!("{creds:?} {:?} {:?}", store.get(), creds.stored_token()),
            );
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::OAuth { .. }), "{err:?}");
            seen.error("consent with a rejected code", &err);
        }
    }
    // The PKCE verifiers, as the token endpoint received them.
    let requests = tokens.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    for req in requests {
        let verifier = form_urlencoded::parse(&req.body)
            .find(|(k, _)| k == "code_verifier")
            .map(|(_, v)| v.into_owned())
            .expect("a code_verifier was sent");
        assert!(verifier.len() >= 43);
        seen.runtime_secrets.push(verifier);
    }
}

async fn sign_out(seen: &mut Seen) {
    let server = token_endpoint().await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_request", "error_description": "Bad Request"}),
            ),
        )
        .mount(&revoke)
        .await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let creds = guarded(
        dir.loader()
            .revoke_uri(format!("{}/revoke", revoke.uri()))
            .load(),
    )
    .await
    .unwrap();
    let err = guarded(creds.revoke()).await.unwrap_err();
    seen.error("revoke refused", &err);
    let form = &revoke.received_requests().await.unwrap()[0].body;
    assert!(
        String::from_utf8_lossy(form).contains("REFRESHTOKENMARKER"),
        "the refresh token is what gets revoked"
    );
}

/// A web app's sign-in (`WebFlow`): a forged callback, a code the server
/// rejects, the real one; then the user's credentials map.
async fn web_sign_in(seen: &mut Seen) {
    use gemini_oauth::web::{SignInOptions, UserCredentials, WebFlow};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("code=4%2FREJECTEDWEBCODEMARKER"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": "Malformed auth code."}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": CONSENT_ACCESS, "refresh_token": CONSENT_REFRESH, "expires_in": 3599,
            "scope": RETRIEVER, "token_type": "Bearer",
        })))
        .mount(&server)
        .await;
    let secret = gemini_oauth::ClientSecret::from_json(
        json!({"web": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "token_uri": token_uri(&server)}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let flow = WebFlow::new(secret, "http://127.0.0.1:9/cb").unwrap();
    let (url, pending) = flow.authorization_url(&SignInOptions::new()).unwrap();
    let state = query_param(&url, "state").unwrap();
    seen.runtime_secrets.push(state.clone());
    let verifier = serde_json::to_value(&pending).unwrap()["verifier"]
        .as_str()
        .unwrap()
        .to_owned();
    seen.runtime_secrets.push(verifier);
    seen.text("web pending sign-in", format!("{pending:?} {flow:?}"));
    let forged = format!("state=forged&code={}", "4%2FFORGEDWEBCODEMARKER");
    let err = guarded(flow.finish(&pending, &forged)).await.unwrap_err();
    seen.error("web forged callback", &err);
    let rejected = format!("state={state}&code=4%2FREJECTEDWEBCODEMARKER");
    let err = guarded(flow.finish(&pending, &rejected)).await.unwrap_err();
    seen.error("web rejected code", &err);
    let good = format!("state={state}&code=4%2FWEBCODEMARKER");
    let signed_in = guarded(flow.finish(&pending, &good)).await.unwrap();
    seen.text("web signed in", format!("{signed_in:?}"));
    let dir = tempfile::tempdir().unwrap();
    let users = UserCredentials::new(
        gemini_oauth::DirectoryTokenStore::new(dir.path()),
        CredentialLoader::new().scopes([RETRIEVER]),
    );
    let creds = guarded(users.sign_in("user-1", signed_in.into_token()))
        .await
        .unwrap();
    seen.text("web user credentials", format!("{creds:?} {users:?}"));
}

const API_KEY: &str = "AIzaAPIKEYMARKER";
const REDIS_PASSWORD: &str = "REDISPASSMARKER";
const METADATA_ACCESS: &str = "ya29.METADATAMARKER";
const SA_ACCESS: &str = "ya29.SERVICEACCOUNTMARKER";

async fn dropped_connection(seen: &mut Seen) {
    // Accepts, then hangs up without a word: every attempt fails.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let dir = TempLoader::with_token(&format!("http://{addr}/token?key=QUERYMARKER"), -60);
    expect_load_error(seen, "dropped connection", dir.loader()).await;
}

const PROXY_PASSWORD: &str = "PROXYPASSMARKER";

/// A proxy URL with a password, unreachable: the loader, the client, the
/// error, and an example at trace level with the same proxy in HTTPS_PROXY.
async fn proxy_password(seen: &mut Seen) {
    use base64::Engine;
    let closed = crate::common::closed_port();
    let proxy = format!("http://user:{PROXY_PASSWORD}@{closed}");
    seen.runtime_secrets
        .push(base64::engine::general_purpose::STANDARD.encode(format!("user:{PROXY_PASSWORD}")));
    let tokens = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    seen.text("proxy loader", format!("{:?}", dir.loader().proxy(&proxy)));
    let err = expect_load_error(seen, "proxy unreachable", dir.loader().proxy(&proxy)).await;
    assert!(matches!(err, Error::Proxy { .. }), "{err:?}");
    // SOCKS5 and https:// proxies, the password percent-encoded, at trace level.
    for scheme in ["socks5h", "socks5", "https"] {
        let other = format!("{scheme}://us%2Fer:pre%2F{PROXY_PASSWORD}@{closed}");
        let err = expect_load_error(seen, scheme, dir.loader().proxy(&other)).await;
        assert!(matches!(err, Error::Proxy { .. }), "{err:?}");
    }
    let fresh = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = fresh.loader().proxy(&proxy).load().await.unwrap();
    seen.text(
        "proxied client",
        format!("{creds:?} {:?}", creds.authorized_client()),
    );
    example_at_trace(
        seen,
        "example through an unreachable proxy",
        &[
            ("HTTPS_PROXY", &proxy),
            ("HTTP_PROXY", &proxy),
            ("GEMINI_API_KEY", API_KEY),
        ],
        &[
            "list_models",
            "--api-key",
            "--api-base",
            "https://127.0.0.1:9/v1",
        ],
    );
}

async fn api_key(seen: &mut Seen) {
    let api = api_answering(ResponseTemplate::new(403).set_body_json(json!({"error": {
        "code": 403, "message": "API key not valid.", "status": "PERMISSION_DENIED"
    }})))
    .await;
    let creds = CredentialLoader::api_key(API_KEY)
        .api_base(format!("{}/v1", api.uri()))
        .load()
        .await
        .unwrap();
    let client = creds.authorized_client();
    let headers = creds.headers().await.unwrap();
    seen.text(
        "api key",
        format!(
            "{creds:?} {client:?} {headers:?} {:?}",
            CredentialLoader::api_key(API_KEY)
        ),
    );
    let err = gemini_oauth::gemini::list_models(&client)
        .await
        .unwrap_err();
    seen.error("api key rejected", &err);
    let err = creds.access_token().await.unwrap_err();
    seen.error("api key has no token", &err);
}

#[cfg(feature = "redis")]
async fn unreachable_redis(seen: &mut Seen) {
    let closed = crate::common::closed_port();
    let store =
        gemini_oauth::RedisTokenStore::open(&format!("redis://:{REDIS_PASSWORD}@{closed}/0"), "k")
            .unwrap();
    seen.text("redis store", format!("{store:?}"));
    let err = expect_load_error(
        seen,
        "redis unreachable",
        CredentialLoader::new()
            .token_store(store)
            .consent(Consent::Never),
    )
    .await;
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
}

/// Runs an example at `RUST_LOG=trace` with `env` and records its stderr
/// (its stdout is the token it was asked to print).
fn example_at_trace(seen: &mut Seen, scenario: &str, env: &[(&str, &str)], args: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = crate::common::examples::example(args[0]);
    for k in [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUDSDK_CONFIG",
        "GCE_METADATA_HOST",
        "GCE_METADATA_IP",
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
    ] {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("HOME", home.path())
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .args(&args[1..])
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "{scenario}: the example logged at trace level: {stderr}"
    );
    seen.text(scenario, stderr);
}

/// Impersonation (a file, IAM refusing) and an external account's user
/// (refresh, revocation), with the loader's and the credentials' `Debug`.
async fn impersonation(seen: &mut Seen) {
    use crate::impersonation as imp;
    let server = imp::google().await;
    let (dir, file) = imp::user_file(&server);
    let loader = imp::adc(&file)
        .impersonate_service_account(imp::SA, [imp::DELEGATE])
        .iam_endpoint(format!("{}/?key=QUERYMARKER", server.uri()))
        .token_uri(format!("{}/token?key=QUERYMARKER", server.uri()))
        .api_base(format!("{}/v1?key=QUERYMARKER", server.uri()));
    seen.text("impersonation loader", format!("{loader:?}"));
    let creds = guarded(imp::adc(&file).load()).await.unwrap();
    let token = creds.access_token().await.unwrap();
    seen.text("impersonation", format!("{creds:?} {token:?}"));
    let refused = imp::iam_answering(
        403,
        json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied"}}),
    )
    .await;
    let (_refused_dir, file) = imp::user_file(&refused);
    let err = guarded(imp::adc(&file).load()).await.unwrap_err();
    seen.error("impersonation refused", &err);

    let eaau = imp::write_json(dir.path(), "workforce.json", &imp::eaau(&server));
    let creds = guarded(imp::adc(&eaau).load()).await.unwrap();
    let token = creds.access_token().await.unwrap();
    seen.text("external account user", format!("{creds:?} {token:?}"));
    guarded(creds.revoke()).await.unwrap();
    let err = creds.access_token().await.unwrap_err();
    seen.error("external account user revoked", &err);
}

async fn examples_on_adc_and_api_keys(seen: &mut Seen) {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    // gcloud's authorized_user file.
    let adc = dir.path().join("adc.json");
    std::fs::write(
        &adc,
        json!({"type": "authorized_user", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
               "refresh_token": REFRESH_TOKEN, "token_uri": token_uri(&tokens)})
        .to_string(),
    )
    .unwrap();
    example_at_trace(
        seen,
        "adc authorized_user",
        &[("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap())],
        &["print_access_token", "--adc"],
    );
    // A service-account key (a real one, so that it signs).
    let pem = dir.path().join("sa.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (bash .ci/test installs it)");
    assert!(made.success());
    let private_key = std::fs::read_to_string(&pem).unwrap();
    let sa_tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("jwt-bearer"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": SA_ACCESS, "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(&sa_tokens)
        .await;
    let sa = dir.path().join("sa.json");
    std::fs::write(
        &sa,
        json!({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
               "private_key_id": "k1", "private_key": private_key,
               "token_uri": token_uri(&sa_tokens)})
        .to_string(),
    )
    .unwrap();
    example_at_trace(
        seen,
        "adc service_account",
        &[("GOOGLE_APPLICATION_CREDENTIALS", sa.to_str().unwrap())],
        &["print_access_token", "--adc"],
    );
    assert_eq!(sa_tokens.received_requests().await.unwrap().len(), 1);
    // The key itself must not show either.
    let body_line = private_key.lines().nth(1).unwrap().to_owned();
    seen.runtime_secrets.push(body_line);
    // The metadata server.
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Metadata-Flavor", "Google")
                .set_body_json(json!({"access_token": METADATA_ACCESS, "expires_in": 3599})),
        )
        .mount(&metadata)
        .await;
    // Its answer to the universe request is a token, not a domain.
    example_at_trace(
        seen,
        "metadata server with a bad universe answer",
        &[("GCE_METADATA_HOST", &metadata.address().to_string())],
        &["print_access_token", "--adc"],
    );
    Mock::given(method("GET"))
        .and(wiremock::matchers::path(
            "/computeMetadata/v1/universe/universe-domain",
        ))
        .respond_with(ResponseTemplate::new(404))
        .with_priority(1)
        .mount(&metadata)
        .await;
    example_at_trace(
        seen,
        "metadata server",
        &[("GCE_METADATA_HOST", &metadata.address().to_string())],
        &["print_access_token", "--adc"],
    );
    // An API key the API rejects.
    let api = api_answering(ResponseTemplate::new(400).set_body_json(json!({"error": {
        "code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"
    }})))
    .await;
    let base = format!("{}/v1", api.uri());
    example_at_trace(
        seen,
        "api key example",
        &[("GOOGLE_API_KEY", API_KEY), ("GEMINI_API_KEY", API_KEY)],
        &["list_models", "--api-key", "--api-base", &base],
    );
}

/// `external_account` files at trace: AWS keys from the environment (their
/// signature and session token go into the subject token), a URL source
/// with a credential in its headers, a client secret for STS, the STS token.
async fn examples_on_external_accounts(seen: &mut Seen) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "ya29.STSACCESSMARKER", "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/subject"))
        .and(wiremock::matchers::header("x-api-key", "HEADERVALUEMARKER"))
        .respond_with(ResponseTemplate::new(200).set_body_string("eyJSUBJECTMARKER"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, source: serde_json::Value, token_type: &str| {
        let path = dir.path().join(name);
        let audience = "//iam.googleapis.com/locations/global/workforcePools/p/providers/x";
        std::fs::write(
            &path,
            json!({"type": "external_account", "audience": audience,
                   "subject_token_type": token_type, "token_url": format!("{}/sts", server.uri()),
                   "client_id": "c", "client_secret": "CLIENTSECRETSTSMARKER",
                   "credential_source": source})
            .to_string(),
        )
        .unwrap();
        path
    };
    let aws = file(
        "aws.json",
        json!({"environment_id": "aws1",
               "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}),
        "urn:ietf:params:aws:token-type:aws4_request",
    );
    example_at_trace(
        seen,
        "external_account aws",
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", aws.to_str().unwrap()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDMARKER"),
            ("AWS_SECRET_ACCESS_KEY", "AWSSECRETMARKER"),
            ("AWS_SESSION_TOKEN", "AWSSESSIONMARKER"),
        ],
        &["print_access_token", "--adc"],
    );
    let url = file(
        "url.json",
        json!({"url": format!("{}/subject?sig=QUERYMARKER", server.uri()),
               "headers": {"x-api-key": "HEADERVALUEMARKER"}}),
        "urn:ietf:params:oauth:token-type:jwt",
    );
    example_at_trace(
        seen,
        "external_account url",
        &[("GOOGLE_APPLICATION_CREDENTIALS", url.to_str().unwrap())],
        &["print_access_token", "--adc"],
    );
    let sts: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/sts")
        .collect();
    assert_eq!(sts.len(), 2, "both runs reached STS");
    assert!(String::from_utf8_lossy(&sts[0].body).contains("AWSSESSIONMARKER"));
    // A failing executable's error, at trace too.
    let exe = file(
        "exe.json",
        json!({"executable": {"command": "/nonexistent/get-token --password=ARGMARKER"}}),
        "urn:ietf:params:oauth:token-type:jwt",
    );
    example_at_trace(
        seen,
        "external_account executable",
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", exe.to_str().unwrap()),
            ("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1"),
        ],
        &["print_access_token", "--adc"],
    );
}

#[tokio::test]
async fn no_secret_reaches_logs_or_errors() {
    // The subscriber is process-wide and the whole log is searched: no other
    // test may run beside this one.
    if !alone_in_this_process("redaction::no_secret_reaches_logs_or_errors") {
        return;
    }
    let logs = log_buffer();
    let mut seen = Seen::default();
    cached_load(&mut seen).await;
    refresh_with_rotation(&mut seen).await;
    invalid_grant(&mut seen).await;
    invalid_client(&mut seen).await;
    transient_failure(&mut seen).await;
    authorized_client(&mut seen).await;
    corrupt_token_file(&mut seen).await;
    consent_flow(&mut seen).await;
    sign_out(&mut seen).await;
    web_sign_in(&mut seen).await;
    dropped_connection(&mut seen).await;
    api_key(&mut seen).await;
    proxy_password(&mut seen).await;
    #[cfg(feature = "redis")]
    unreachable_redis(&mut seen).await;
    examples_on_adc_and_api_keys(&mut seen).await;
    impersonation(&mut seen).await;
    examples_on_external_accounts(&mut seen).await;

    let log = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    // The log is real, and covers the paths that handle secrets.
    for expected in [
        "gemini_oauth::load",
        "gemini_oauth::refresh",
        "gemini_oauth::consent",
        "using the cached token",
        "access token refreshed",
        "token request failed, retrying",
        "401 from the API",
        "token refresh failed",
        "ignoring a corrupt token file",
        "starting the consent flow",
        "sign-in complete",
        "gemini_oauth::web::finish",
        "web sign-in complete",
        // Field values are captured too, so a secret in a field would be seen.
        "store=",
        "error=the OAuth server at",
        "problem=not valid JSON",
    ] {
        assert!(
            log.contains(expected),
            "the log has no {expected:?}:\n{log}"
        );
    }
    assert!(seen.texts.len() >= 25, "{}", seen.texts.len());
    assert_eq!(
        seen.runtime_secrets.len(),
        8,
        "3 states, 3 verifiers, 1 private key, 1 proxy credential"
    );

    let mut secrets: Vec<String> = [
        CLIENT_SECRET,
        REFRESH_TOKEN,
        ROTATED_REFRESH,
        CONSENT_REFRESH,
        OLD_ACCESS,
        NEW_ACCESS,
        CONSENT_ACCESS,
        CODE,
        FORGED_CODE,
        REJECTED_CODE,
        "IDTOKENMARKER",
        API_KEY,
        REDIS_PASSWORD,
        PROXY_PASSWORD,
        METADATA_ACCESS,
        SA_ACCESS,
        // The impersonated tokens the fake IAM hands out.
        "IMPERSONATED-",
        "QUERYMARKER",
        "PRIVATE KEY",
        // Every secret above, in any encoding (percent-encoded, JSON-escaped).
        "MARKER",
    ]
    .map(str::to_owned)
    .into();
    secrets.extend(seen.runtime_secrets.iter().cloned());
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "secret {secret:?} is in the log:\n{log}"
        );
        for (scenario, text) in &seen.texts {
            assert!(
                !text.contains(secret.as_str()),
                "secret {secret:?} leaked in {scenario}: {text}"
            );
        }
    }
}
