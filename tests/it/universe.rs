//! The universe domain: read from ADC files and the metadata server, the
//! default endpoints built from it, and credentials of another universe
//! refused before any token request; compared with Python's google.auth on
//! the same file and the same metadata server.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::adc::rsa_key;
use crate::common::examples::{example, stdout};
use crate::common::*;
use gemini_oauth::{CredentialLoader, Error};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const UNIVERSE: &str = "example.test";
const SA: &str = "sa@p.iam.gserviceaccount.com";

/// The test `name` runs again in a child process of this binary with a
/// clean ADC environment and `env`: returns false here, after checking that
/// the child passed, and true in the child.
fn in_child(name: &str, env: &[(&str, &str)]) -> bool {
    alone_in_a_process_with(name, |cmd| {
        for k in ADC_ENV {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied());
    })
}

/// A service-account key file of `universe` whose token endpoint is
/// `tokens`; its public key is in `dir`/pub.der.
fn service_account_file(dir: &Path, universe: &str, tokens: &MockServer) -> std::path::PathBuf {
    let (private_key, _) = rsa_key(dir);
    let key = json!({
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": private_key, "client_email": SA,
        "client_id": "1", "token_uri": token_uri(tokens), "universe_domain": universe,
    });
    let file = dir.join("sa.json");
    std::fs::write(&file, key.to_string()).unwrap();
    file
}

/// gcloud's authorized_user file of `universe`, refreshed at `tokens`.
fn authorized_user_file(dir: &Path, universe: &str, tokens: &MockServer) -> std::path::PathBuf {
    let file = dir.join("adc.json");
    let adc = json!({
        "account": "", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN, "type": "authorized_user",
        "universe_domain": universe, "token_uri": token_uri(tokens),
    });
    std::fs::write(&file, serde_json::to_string_pretty(&adc).unwrap()).unwrap();
    file
}

fn public_key_der(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("pub.der")).unwrap()
}

/// The header and claims of a JWT whose RS256 signature `public_key_der` verifies.
pub(crate) fn verified_jwt(
    jwt: &str,
    public_key_der: &[u8],
) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = jwt.rsplit_once('.').expect("a JWT");
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der,
    )
    .verify(signed.as_bytes(), &b64.decode(signature).unwrap())
    .expect("the key's signature");
    let (header, claims) = signed.split_once('.').unwrap();
    let part = |p: &str| serde_json::from_slice(&b64.decode(p).unwrap()).unwrap();
    (part(header), part(claims))
}

async fn service_account_tokens() -> MockServer {
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "ya29.UNIVERSE", "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(&tokens)
        .await;
    tokens
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn service_account_universe_builds_the_endpoints_and_a_mismatch_is_refused() {
    const NAME: &str =
        "universe::service_account_universe_builds_the_endpoints_and_a_mismatch_is_refused";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sa.json");
    if !in_child(
        NAME,
        &[
            ("HOME", dir.path().to_str().unwrap()),
            ("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap()),
            ("GCE_METADATA_HOST", &closed_port()),
        ],
    ) {
        return;
    }
    // In the child: its own key file, at the path the parent named.
    let named =
        std::path::PathBuf::from(std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").unwrap());
    let tokens = service_account_tokens().await;
    let file = service_account_file(named.parent().unwrap(), UNIVERSE, &tokens);
    assert_eq!(named, file);

    let creds = CredentialLoader::application_default()
        .load()
        .await
        .unwrap();
    assert_eq!(creds.universe_domain(), UNIVERSE);
    assert_eq!(
        creds.authorized_client().api_base(),
        "https://generativelanguage.example.test/v1"
    );
    // Outside googleapis.com the key signs its own token, as google-auth:
    // no token request.
    let token = creds.access_token().await.unwrap();
    let (header, claims) = verified_jwt(token.secret(), &public_key_der(named.parent().unwrap()));
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}));
    assert_eq!(claims["iss"], SA);
    assert_eq!(claims["sub"], SA);
    assert_eq!(claims["scope"], RETRIEVER);
    assert!(claims.get("aud").is_none(), "{claims}");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(requests(&tokens).await, 0);

    // An explicit API base wins over the universe's.
    let creds = CredentialLoader::application_default()
        .api_base("http://127.0.0.1:9/v1")
        .load()
        .await
        .unwrap();
    assert_eq!(
        creds.authorized_client().api_base(),
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(creds.universe_domain(), UNIVERSE);

    // The same universe, configured: accepted.
    CredentialLoader::application_default()
        .universe_domain("Example.Test")
        .load()
        .await
        .unwrap();
    let before = requests(&tokens).await;

    // Another universe: refused before any token request.
    let err = CredentialLoader::application_default()
        .universe_domain("googleapis.com")
        .load()
        .await
        .unwrap_err();
    let Error::UniverseMismatch {
        source_name,
        credentials,
        api,
        api_origin,
        ..
    } = &err
    else {
        panic!("want UniverseMismatch, got {err:?}");
    };
    assert_eq!(credentials, UNIVERSE);
    assert_eq!(api, "googleapis.com");
    assert_eq!(api_origin, "CredentialLoader::universe_domain");
    assert_eq!(source_name, &format!("service account {SA}"));
    assert_eq!(requests(&tokens).await, before);

    // A value that is not a domain is refused as such.
    let err = CredentialLoader::application_default()
        .universe_domain("evil.test/x?")
        .load()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidUniverseDomain { .. }),
        "{err:?}"
    );
    assert_eq!(requests(&tokens).await, before);
}

/// `print_access_token --adc` with a clean ADC environment plus `env`.
fn run_adc(home: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = example("print_access_token");
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    cmd.env("HOME", home)
        .env("GCE_METADATA_HOST", closed_port())
        .envs(env.iter().copied())
        .current_dir(home)
        .arg("--adc")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What Python (the venv with google-auth) prints for `code`, run with `env`.
pub(crate) fn python_prints(code: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::var("GEMINI_OAUTH_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        Path::new(&exe).exists(),
        "{exe} is missing: run `bash .ci/test`"
    );
    let mut cmd = Command::new(exe);
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(["-c", code])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    stdout(&out).trim().to_owned()
}

/// google-auth's `universe_domain` for `google.auth.default()` with `env`
/// (`compute` asks the metadata server directly, as google-auth's
/// `compute_engine.Credentials`).
fn python_universe(env: &[(&str, &str)], compute: bool) -> String {
    let code = match compute {
        true => "import google.auth.compute_engine as c; print(c.Credentials().universe_domain)",
        false => "import google.auth; print(google.auth.default()[0].universe_domain)",
    };
    python_prints(code, env)
}

#[tokio::test]
async fn env_universe_refuses_a_file_of_another_universe_as_python_reads_it() {
    let home = tempfile::tempdir().unwrap();
    let tokens = token_endpoint().await;
    let file = authorized_user_file(home.path(), UNIVERSE, &tokens);
    let file = file.to_str().unwrap();

    let out = run_adc(
        home.path(),
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", file),
            ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "googleapis.com"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the credentials from {file} belong to the universe domain {UNIVERSE}, but the API's \
             universe domain is googleapis.com (set by GOOGLE_CLOUD_UNIVERSE_DOMAIN)"
        )),
        "{err}"
    );
    assert_no_secrets(&err);
    assert_eq!(token_requests(&tokens).await, 0);

    // The universe it names is the one google-auth reads from the same file.
    assert_eq!(
        python_universe(&[("GOOGLE_APPLICATION_CREDENTIALS", file)], false),
        UNIVERSE
    );

    // Configured to the file's universe, it refreshes.
    let out = run_adc(
        home.path(),
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", file),
            ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", UNIVERSE),
        ],
    );
    assert_eq!(stdout(&out), format!("{NEW_ACCESS}\n"));
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn service_account_file_universe_and_self_signed_token_match_python() {
    let home = tempfile::tempdir().unwrap();
    let tokens = service_account_tokens().await;
    let file = service_account_file(home.path(), UNIVERSE, &tokens);
    let file = file.to_str().unwrap();
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", file)];
    assert_eq!(python_universe(&env, false), UNIVERSE);

    // Both sign their own token for the same file: compare them.
    let code = format!(
        "import google.auth, google.auth.transport.requests as r\n\
         c = google.auth.default(scopes=['{RETRIEVER}'])[0]\n\
         c.refresh(r.Request())\nprint(c.token)"
    );
    let python_jwt = python_prints(&code, &env);
    let ours = stdout(&run_adc(home.path(), &env));
    let public_key = public_key_der(home.path());
    let (py_header, py_claims) = verified_jwt(&python_jwt, &public_key);
    let (header, claims) = verified_jwt(ours.trim(), &public_key);
    assert_eq!(header, py_header);
    // The same claims; iat is the moment of signing, exp its lifetime.
    let fixed = |c: &serde_json::Value| {
        let mut c = c.clone();
        let o = c.as_object_mut().unwrap();
        let life = o["exp"].as_u64().unwrap() - o["iat"].as_u64().unwrap();
        o.remove("iat");
        o.insert("exp".into(), life.into());
        c
    };
    assert_eq!(fixed(&claims), fixed(&py_claims));
    assert_eq!(claims["scope"], RETRIEVER);
    assert_eq!(
        requests(&tokens).await,
        0,
        "neither asked the token endpoint"
    );

    let out = run_adc(
        home.path(),
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", file),
            ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "googleapis.com"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belong to the universe domain example.test"),
        "{err}"
    );
    assert!(!err.contains("BEGIN PRIVATE KEY"), "{err}");
    assert_eq!(requests(&tokens).await, 0);
}

/// A metadata server: flavored ping and token; `universe` answers
/// `universe/universe-domain` (None: wiremock's 404, as on older servers).
async fn universe_metadata(universe: Option<&str>) -> MockServer {
    let metadata = metadata_server(metadata_token()).await;
    if let Some(u) = universe {
        Mock::given(method("GET"))
            .and(path("/computeMetadata/v1/universe/universe-domain"))
            .and(header("metadata-flavor", "Google"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Metadata-Flavor", "Google")
                    .set_body_string(u),
            )
            .mount(&metadata)
            .await;
    }
    metadata
}

async fn token_calls(metadata: &MockServer) -> usize {
    requests_to(metadata, METADATA_TOKEN_PATH).await.len()
}

#[tokio::test]
async fn metadata_server_universe_is_read_and_checked_as_python_reads_it() {
    let home = tempfile::tempdir().unwrap();
    let metadata = universe_metadata(Some(UNIVERSE)).await;
    let host = metadata.address().to_string();
    assert_eq!(
        python_universe(&[("GCE_METADATA_HOST", &host)], true),
        UNIVERSE
    );

    let out = run_adc(
        home.path(),
        &[
            ("GCE_METADATA_HOST", &host),
            ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "googleapis.com"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the credentials from the metadata server at {host} belong to the universe domain \
             {UNIVERSE}"
        )),
        "{err}"
    );
    assert_eq!(token_calls(&metadata).await, 0);

    let out = run_adc(
        home.path(),
        &[
            ("GCE_METADATA_HOST", &host),
            ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", UNIVERSE),
        ],
    );
    assert_eq!(stdout(&out), "ya29.METADATA\n");
    assert_eq!(token_calls(&metadata).await, 1);
}

#[tokio::test]
async fn a_metadata_server_without_the_universe_endpoint_is_googleapis_com() {
    let home = tempfile::tempdir().unwrap();
    let metadata = universe_metadata(None).await;
    let host = metadata.address().to_string();
    assert_eq!(
        python_universe(&[("GCE_METADATA_HOST", &host)], true),
        "googleapis.com"
    );
    let env = [
        ("GCE_METADATA_HOST", host.as_str()),
        ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "googleapis.com"),
    ];
    assert_eq!(stdout(&run_adc(home.path(), &env)), "ya29.METADATA\n");
    let env = [
        ("GCE_METADATA_HOST", host.as_str()),
        ("GOOGLE_CLOUD_UNIVERSE_DOMAIN", UNIVERSE),
    ];
    let out = run_adc(home.path(), &env);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belong to the universe domain googleapis.com"),
        "{err}"
    );
}

/// Impersonating from credentials of another universe asks that universe's
/// IAM host (nothing answers it here: the error names the URL tried).
#[tokio::test]
async fn impersonation_outside_googleapis_asks_the_universes_iam_host() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = service_account_tokens().await;
    let file = service_account_file(dir.path(), UNIVERSE, &tokens);
    let err = CredentialLoader::application_default()
        .credentials_file(&file)
        .no_proxy()
        .impersonate_service_account("target@p.iam.gserviceaccount.com", [""; 0])
        .load()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "https://iamcredentials.example.test/v1/projects/-/serviceAccounts/target@p.iam.gserviceaccount.com:generateAccessToken"
        ),
        "{err}"
    );
    assert_eq!(requests(&tokens).await, 0);
}

/// google-auth's `universe_domain` of the credentials in `file`.
fn python_file_universe(file: &Path) -> String {
    python_prints(
        &format!(
            "import google.auth; print(google.auth.load_credentials_from_file({:?})[0].universe_domain)",
            file.to_str().unwrap()
        ),
        &[],
    )
}

/// An `external_account_authorized_user` file of `universe`, refreshed at `tokens`.
fn workforce_user_file(dir: &Path, universe: &str, tokens: &MockServer) -> serde_json::Value {
    let eau = json!({
        "type": "external_account_authorized_user",
        "audience": "//iam.googleapis.com/locations/global/workforcePools/p/providers/q",
        "refresh_token": REFRESH_TOKEN, "token_url": token_uri(tokens),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "universe_domain": universe,
    });
    std::fs::write(dir.join("eau.json"), eau.to_string()).unwrap();
    eau
}

#[tokio::test]
async fn a_workforce_user_file_belongs_to_its_universe_as_python_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_endpoint().await;
    workforce_user_file(dir.path(), UNIVERSE, &tokens);
    let file = dir.path().join("eau.json");
    assert_eq!(python_file_universe(&file), UNIVERSE);
    let creds = CredentialLoader::application_default()
        .credentials_file(&file)
        .universe_domain(UNIVERSE)
        .no_proxy()
        .load()
        .await
        .unwrap();
    assert_eq!(creds.universe_domain(), UNIVERSE);
    assert_eq!(
        creds.authorized_client().api_base(),
        "https://generativelanguage.example.test/v1"
    );
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&tokens).await, 1);

    let err = CredentialLoader::application_default()
        .credentials_file(&file)
        .universe_domain("googleapis.com")
        .no_proxy()
        .load()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UniverseMismatch { credentials, .. } if credentials == UNIVERSE),
        "{err:?}"
    );
    assert_eq!(token_requests(&tokens).await, 1);
}

const TARGET: &str = "target@p.iam.gserviceaccount.com";

/// An IAM Credentials API that gives `ya29.IMPERSONATED` for `TARGET`.
async fn iam_server() -> MockServer {
    let iam = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"accessToken": "ya29.IMPERSONATED", "expireTime": "2099-01-01T00:00:00Z"}),
        ))
        .mount(&iam)
        .await;
    iam
}

/// An impersonation file over `source` whose URL names `host`.
fn impersonation_file(dir: &Path, source: serde_json::Value, host: &str) -> std::path::PathBuf {
    let file = dir.join("imp.json");
    let imp = json!({
        "type": "impersonated_service_account", "delegates": [],
        "service_account_impersonation_url":
            format!("{host}/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken"),
        "source_credentials": source,
    });
    std::fs::write(&file, imp.to_string()).unwrap();
    file
}

#[tokio::test]
async fn impersonated_credentials_take_their_sources_universe_as_python_does() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = service_account_tokens().await;
    let key = service_account_file(dir.path(), UNIVERSE, &tokens);
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    let iam = iam_server().await;
    let closed = format!("http://{}", closed_port());
    let file = impersonation_file(dir.path(), key, &closed);
    assert_eq!(python_file_universe(&file), UNIVERSE);
    let creds = CredentialLoader::application_default()
        .credentials_file(&file)
        .universe_domain(UNIVERSE)
        .iam_endpoint(iam.uri())
        .no_proxy()
        .load()
        .await
        .unwrap();
    assert_eq!(creds.universe_domain(), UNIVERSE);
    assert_eq!(
        creds.authorized_client().api_base(),
        "https://generativelanguage.example.test/v1"
    );
    assert_eq!(
        creds.access_token().await.unwrap().secret(),
        "ya29.IMPERSONATED"
    );
    // The source signed its own token (its universe has no token exchange).
    let calls = iam.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    let bearer = calls[0].headers["authorization"].to_str().unwrap();
    let (_, claims) = verified_jwt(
        bearer.strip_prefix("Bearer ").unwrap(),
        &public_key_der(dir.path()),
    );
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/iam");
    assert_eq!(requests(&tokens).await, 0);

    // Without an override, the universe's IAM host, as google-auth builds it
    // (nothing answers it here: the error names the URL tried).
    let err = CredentialLoader::application_default()
        .credentials_file(&file)
        .no_proxy()
        .load()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "https://iamcredentials.example.test/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken"
        )),
        "{err}"
    );

    // A workforce user of the universe as the source: the same.
    let workforce_tokens = token_endpoint().await;
    let eau = workforce_user_file(dir.path(), UNIVERSE, &workforce_tokens);
    let file = impersonation_file(dir.path(), eau, &closed);
    assert_eq!(python_file_universe(&file), UNIVERSE);
    let creds = CredentialLoader::application_default()
        .credentials_file(&file)
        .universe_domain(UNIVERSE)
        .iam_endpoint(iam.uri())
        .no_proxy()
        .load()
        .await
        .unwrap();
    assert_eq!(creds.universe_domain(), UNIVERSE);
    assert_eq!(token_requests(&workforce_tokens).await, 1);
}
