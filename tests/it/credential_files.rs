//! Credentials files as google-auth reads them: service-account keys in
//! PKCS#1 PEM as well as PKCS#8, keys outside googleapis.com asked for no
//! scopes (the JWT-bearer grant, not a self-signed token without a claim to
//! check), and errors that say what kind of file failed and what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use crate::universe::{python_prints, verified_jwt};
use gemini_oauth::CredentialLoader;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SA: &str = "keys@p.iam.gserviceaccount.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A PKCS#1 (`BEGIN RSA PRIVATE KEY`) key as `openssl genrsa -traditional`
/// writes it, and its public key (DER).
fn pkcs1_key(dir: &Path) -> (String, Vec<u8>) {
    let pem = dir.join("pkcs1.pem");
    let der = dir.join("pkcs1.der");
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl {args:?}");
    };
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        pem.to_str().unwrap(),
        "2048",
    ]);
    openssl(&[
        "rsa",
        "-in",
        pem.to_str().unwrap(),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let pem_text = std::fs::read_to_string(&pem).unwrap();
    assert!(
        pem_text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{}",
        pem_text.lines().next().unwrap_or("")
    );
    (pem_text, std::fs::read(&der).unwrap())
}

async fn key_tokens() -> MockServer {
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "ya29.KEYGRANT", "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(&tokens)
        .await;
    tokens
}

fn key_file(dir: &Path, private_key: &str, universe: &str, tokens: &MockServer) -> PathBuf {
    let key = json!({
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": private_key, "client_email": SA, "client_id": "1",
        "token_uri": token_uri(tokens), "universe_domain": universe,
    });
    let file = dir.join("sa.json");
    std::fs::write(&file, serde_json::to_string_pretty(&key).unwrap()).unwrap();
    file
}

/// The form of a token request.
fn form(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&req.body).into_owned().collect()
}

fn field(form: &[(String, String)], key: &str) -> String {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// google-auth on `file` with `scopes`: refreshes and prints the token.
fn python_token(file: &Path, scopes: &str) -> String {
    let code = format!(
        "import google.auth, google.auth.transport.requests as r\n\
         c = google.auth.load_credentials_from_file({file:?}, scopes={scopes})[0]\n\
         c.refresh(r.Request())\nprint(c.token)",
        file = file.to_str().unwrap()
    );
    python_prints(&code, &[("NO_PROXY", "*")])
}

#[tokio::test]
async fn a_pkcs1_key_is_accepted_as_google_auth_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, public_key) = pkcs1_key(dir.path());
    let tokens = key_tokens().await;
    let file = key_file(dir.path(), &pem, "googleapis.com", &tokens);
    let creds = CredentialLoader::application_default()
        .credentials_file(&file)
        .no_proxy()
        .load()
        .await
        .unwrap();
    assert_eq!(
        creds.access_token().await.unwrap().secret(),
        "ya29.KEYGRANT"
    );
    assert_eq!(
        python_token(&file, &format!("[{RETRIEVER:?}]")),
        "ya29.KEYGRANT"
    );
    let reqs = tokens.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2, "ours, then google-auth's");
    for req in &reqs {
        let form = form(req);
        assert_eq!(field(&form, "grant_type"), JWT_BEARER);
        let (header, claims) = verified_jwt(&field(&form, "assertion"), &public_key);
        assert_eq!(header["kid"], "k1");
        assert_eq!(claims["iss"], SA);
        assert_eq!(claims["scope"], RETRIEVER);
    }
}

/// Keys pasted indented, padded, on one line or with CRLF and trailing
/// blanks: google-auth (its PEM reader) signs with each, so must we.
#[tokio::test]
async fn a_key_laid_out_otherwise_is_read_as_google_auth_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = pkcs1_key(dir.path());
    let tokens = key_tokens().await;
    let layouts = [
        (
            "indented",
            pem.lines().map(|l| format!("  {l}\n")).collect(),
        ),
        ("padded", format!("\n \t{pem}\n  ")),
        ("one line", pem.lines().collect()),
        ("crlf", pem.lines().map(|l| format!("{l} \r\n")).collect()),
    ];
    for (layout, key) in layouts {
        let file = key_file(dir.path(), &key, "googleapis.com", &tokens);
        let ours = CredentialLoader::application_default()
            .credentials_file(&file)
            .no_proxy()
            .load()
            .await
            .unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert_eq!(
            ours.access_token().await.unwrap().secret(),
            "ya29.KEYGRANT",
            "{layout}"
        );
        assert_eq!(
            python_token(&file, &format!("[{RETRIEVER:?}]")),
            "ya29.KEYGRANT",
            "{layout}"
        );
    }
}

#[tokio::test]
async fn no_scopes_outside_googleapis_take_the_jwt_bearer_grant_as_google_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, public_key) = crate::adc::rsa_key(dir.path());
    let tokens = key_tokens().await;
    let file = key_file(dir.path(), &pem, "example.test", &tokens);
    let creds = CredentialLoader::application_default()
        .credentials_file(&file)
        .scopes(Vec::<String>::new())
        .no_proxy()
        .load()
        .await
        .unwrap();
    assert_eq!(creds.universe_domain(), "example.test");
    assert_eq!(
        creds.access_token().await.unwrap().secret(),
        "ya29.KEYGRANT"
    );
    assert_eq!(python_token(&file, "[]"), "ya29.KEYGRANT");
    let reqs = tokens.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2, "ours, then google-auth's");
    let claims: Vec<Value> = reqs
        .iter()
        .map(|req| {
            let form = form(req);
            assert_eq!(field(&form, "grant_type"), JWT_BEARER);
            let (_, claims) = verified_jwt(&field(&form, "assertion"), &public_key);
            claims
        })
        .collect();
    // The same claims but the moment of signing and the audience (ours: the
    // token endpoint asked; google-auth's: always oauth2.googleapis.com).
    let fixed = |c: &Value| {
        let mut c = c.clone();
        let o = c.as_object_mut().unwrap();
        let life = o["exp"].as_u64().unwrap() - o["iat"].as_u64().unwrap();
        assert!(o.remove("aud").is_some(), "{o:?}");
        o.remove("iat");
        o.insert("exp".into(), life.into());
        c
    };
    assert_eq!(fixed(&claims[0]), fixed(&claims[1]));
    assert_eq!(claims[0]["scope"], "");
    assert_eq!(claims[0]["iss"], SA);
}

/// The error `credentials_file(file)` gets, with the checks every one passes.
async fn load_error(file: &Path) -> String {
    let err = CredentialLoader::application_default()
        .credentials_file(file)
        .no_proxy()
        .load()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(!err.contains("token file"), "{err}");
    assert!(!err.contains("signing in again"), "{err}");
    assert!(!err.contains("SECRETMARKER"), "{err}");
    assert_no_secrets(&err);
    err
}

#[tokio::test]
async fn errors_about_credentials_files_name_the_kind_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: Value| {
        let file = dir.path().join(name);
        std::fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        file
    };

    let err = load_error(&write(
        "sa.json",
        json!({"type": "service_account", "client_email": SA, "private_key":
               "-----BEGIN PRIVATE KEY-----\nSECRETMARKER\n-----END PRIVATE KEY-----\n"}),
    ))
    .await;
    assert!(err.contains("service-account key file"), "{err}");
    assert!(err.contains("\"private_key\""), "{err}");
    assert!(err.contains("create a new key"), "{err}");

    let err = load_error(&write(
        "user.json",
        json!({"type": "authorized_user", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    ))
    .await;
    assert!(err.contains("\"refresh_token\" is missing"), "{err}");
    assert!(
        err.contains("gcloud auth application-default login"),
        "{err}"
    );

    let err = load_error(&write(
        "imp.json",
        json!({"type": "impersonated_service_account", "source_credentials": {}}),
    ))
    .await;
    assert!(err.contains("--impersonate-service-account"), "{err}");

    let err = load_error(&write(
        "eau.json",
        json!({"type": "external_account_authorized_user", "refresh_token": "SECRETMARKER"}),
    ))
    .await;
    assert!(err.contains("--login-config"), "{err}");

    let not_json = dir.path().join("broken.json");
    std::fs::write(&not_json, "{\"type\": \"service_acc").unwrap();
    let err = load_error(&not_json).await;
    assert!(err.contains("not valid JSON"), "{err}");
    assert!(err.contains("credentials file"), "{err}");

    // The quickstart's client_secret.json where credentials were expected.
    for kind in ["installed", "web"] {
        let file = write(
            &format!("client_secret_{kind}.json"),
            json!({ kind: {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "project_id": "p", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "https://oauth2.googleapis.com/token",
                "redirect_uris": ["http://localhost"]}}),
        );
        let err = load_error(&file).await;
        assert!(!err.contains("\"type\" is missing"), "{err}");
        assert!(err.contains("OAuth client"), "{err}");
        assert!(err.contains("login --client-id-file"), "{err}");
        assert!(
            err.contains("gcloud auth application-default login --client-id-file"),
            "{err}"
        );
    }
}
