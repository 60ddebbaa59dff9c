//! Application Default Credentials through the examples, each run in its own
//! process with its own environment (temp CLOUDSDK_CONFIG/HOME; no test reads
//! the real user's files): lookup order, file types, the metadata server,
//! quota precedence, API keys, login/logout, and Python's google.auth.default().

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::examples::{example, stdout};
use crate::common::*;
use serde_json::json;
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// An example run with a clean ADC environment: HOME is `home`, nothing else set,
/// and the metadata server pointed at a closed local port unless overridden.
fn run(name: &str, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = example(name);
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    // The machine's own DMI product name must not count (CI may run on GCE).
    cmd.env("HOME", home)
        .env("GCE_METADATA_HOST", closed_port())
        .env("GEMINI_OAUTH_DMI_PRODUCT_NAME", home.join("no-dmi-here"))
        .current_dir(home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

/// gcloud's authorized_user file (sorted keys, indent 2, no token_uri).
fn gcloud_adc(refresh_token: &str, quota: Option<&str>) -> String {
    let mut v = json!({
        "account": "", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token, "type": "authorized_user", "universe_domain": "googleapis.com"
    });
    if let Some(q) = quota {
        v["quota_project_id"] = json!(q);
    }
    serde_json::to_string_pretty(&v).unwrap()
}

async fn sent_refresh_tokens(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            form_urlencoded::parse(&r.body)
                .find(|(k, _)| k == "refresh_token")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

/// Header `name` of every request `server` received, in order (each must have it).
async fn header_values(server: &MockServer, name: &str) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers.get(name).unwrap().to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn gcloud_file_in_cloudsdk_config_is_used_and_left_untouched() {
    let tokens = token_endpoint().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("gcloud-config");
    std::fs::create_dir_all(&config).unwrap();
    let file = config.join("application_default_credentials.json");
    std::fs::write(&file, gcloud_adc("1//FROMCLOUDSDK", None)).unwrap();
    let out = run(
        "print_access_token",
        home.path(),
        &[("CLOUDSDK_CONFIG", config.to_str().unwrap())],
        &["--adc", "--token-uri", &token_uri(&tokens)],
    );
    assert_eq!(stdout(&out), format!("{NEW_ACCESS}\n"));
    assert_eq!(sent_refresh_tokens(&tokens).await, ["1//FROMCLOUDSDK"]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        gcloud_adc("1//FROMCLOUDSDK", None)
    );
}

#[tokio::test]
async fn lookup_order_env_var_then_cloudsdk_config_then_home() {
    let tokens = token_endpoint().await;
    let home = tempfile::tempdir().unwrap();
    let home_file = home
        .path()
        .join(".config/gcloud/application_default_credentials.json");
    std::fs::create_dir_all(home_file.parent().unwrap()).unwrap();
    std::fs::write(&home_file, gcloud_adc("1//FROMHOME", None)).unwrap();
    let config = home.path().join("cfg");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("application_default_credentials.json"),
        gcloud_adc("1//FROMCONFIG", None),
    )
    .unwrap();
    let explicit = home.path().join("explicit.json");
    std::fs::write(&explicit, gcloud_adc("1//FROMENV", None)).unwrap();
    let uri = token_uri(&tokens);
    let args = ["--adc", "--token-uri", uri.as_str()];

    stdout(&run(
        "print_access_token",
        home.path(),
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", explicit.to_str().unwrap()),
            ("CLOUDSDK_CONFIG", config.to_str().unwrap()),
        ],
        &args,
    ));
    stdout(&run(
        "print_access_token",
        home.path(),
        &[("CLOUDSDK_CONFIG", config.to_str().unwrap())],
        &args,
    ));
    stdout(&run("print_access_token", home.path(), &[], &args));
    assert_eq!(
        sent_refresh_tokens(&tokens).await,
        ["1//FROMENV", "1//FROMCONFIG", "1//FROMHOME"]
    );

    // An explicit file that does not exist is an error, not a reason to look elsewhere.
    let out = run(
        "print_access_token",
        home.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")],
        &args,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/key.json"));
}

#[tokio::test]
async fn metadata_server_by_its_ip_variable_and_only_with_the_flavor_header() {
    // GCE_METADATA_IP is used when GCE_METADATA_HOST is not set.
    let flavored = metadata_server(metadata_token()).await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = example("print_access_token");
    for k in ADC_ENV {
        cmd.env_remove(k);
    }
    let out = cmd
        .env("HOME", home.path())
        .env("GCE_METADATA_IP", flavored.address().to_string())
        .current_dir(home.path())
        .arg("--adc")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "ya29.METADATA\n");

    // A token answer without the header is not the metadata server's.
    let impostor = metadata_server(unflavored_metadata_token()).await;
    let host = impostor.address().to_string();
    let out = run(
        "print_access_token",
        home.path(),
        &[("GCE_METADATA_HOST", &host)],
        &["--adc"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("Metadata-Flavor"), "{err}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_slow_metadata_server_is_given_up_on_after_google_auth_s_limits() {
    // Answers the ping, but only after 5 s: longer than GCE_METADATA_TIMEOUT
    // (1 s here) allows, on each of GCE_METADATA_DETECT_RETRIES (2) tries.
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Metadata-Flavor", "Google")
                .set_delay(std::time::Duration::from_secs(5)),
        )
        .mount(&slow)
        .await;
    let home = tempfile::tempdir().unwrap();
    let host = slow.address().to_string();
    let out = run(
        "print_access_token",
        home.path(),
        &[
            ("GCE_METADATA_HOST", &host),
            ("GCE_METADATA_TIMEOUT", "1"),
            ("GCE_METADATA_DETECT_RETRIES", "2"),
        ],
        &["--adc"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("the metadata server at {host} (no answer)")),
        "{err}"
    );
    let pings = slow.received_requests().await.unwrap().len();
    assert_eq!(pings, 2, "one ping per try");
}

#[tokio::test]
async fn a_starting_metadata_server_slow_to_ping_and_503_once_gives_a_token() {
    // A GKE pod just started: the ping answers after 2 s (within google-auth's
    // 3 s), and the first token request meets a 503.
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Metadata-Flavor", "Google")
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path(METADATA_TOKEN_PATH))
        .respond_with(ResponseTemplate::new(503).insert_header("Metadata-Flavor", "Google"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path(METADATA_TOKEN_PATH))
        .respond_with(metadata_token())
        .with_priority(2)
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/universe/universe-domain"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/universe/universe-domain"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Metadata-Flavor", "Google")
                .set_body_string("googleapis.com"),
        )
        .with_priority(2)
        .mount(&metadata)
        .await;
    let home = tempfile::tempdir().unwrap();
    let host = metadata.address().to_string();
    let out = run(
        "print_access_token",
        home.path(),
        &[("GCE_METADATA_HOST", &host)],
        &["--adc"],
    );
    assert_eq!(stdout(&out), "ya29.METADATA\n");
    let token_requests = metadata
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == METADATA_TOKEN_PATH)
        .count();
    assert_eq!(token_requests, 2, "the 503 was tried again");
}

#[tokio::test]
async fn a_google_dmi_product_name_means_compute_engine_when_the_ping_fails() {
    // The ping's answer lacks the flavor header (not the metadata server by
    // the ping), but the machine's DMI product name says Google: as
    // google-auth, the metadata server is used.
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(METADATA_TOKEN_PATH))
        .respond_with(metadata_token())
        .mount(&metadata)
        .await;
    let home = tempfile::tempdir().unwrap();
    let host = metadata.address().to_string();
    let dmi = home.path().join("product_name");
    std::fs::write(&dmi, "Google Compute Engine\n").unwrap();
    let out = run(
        "print_access_token",
        home.path(),
        &[
            ("GCE_METADATA_HOST", &host),
            ("GEMINI_OAUTH_DMI_PRODUCT_NAME", dmi.to_str().unwrap()),
        ],
        &["--adc"],
    );
    assert_eq!(stdout(&out), "ya29.METADATA\n");
    // Another product name: no credentials.
    std::fs::write(&dmi, "VirtualBox\n").unwrap();
    let out = run(
        "print_access_token",
        home.path(),
        &[
            ("GCE_METADATA_HOST", &host),
            ("GEMINI_OAUTH_DMI_PRODUCT_NAME", dmi.to_str().unwrap()),
        ],
        &["--adc"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("(no answer)"), "{err}");
}

#[tokio::test]
async fn metadata_server_is_the_last_resort() {
    let metadata = metadata_server(metadata_token()).await;
    let home = tempfile::tempdir().unwrap();
    let host = metadata.address().to_string();
    let out = run(
        "print_access_token",
        home.path(),
        &[("GCE_METADATA_HOST", &host)],
        &[
            "--adc",
            "--scope",
            RETRIEVER,
            "--scope",
            gemini_oauth::scopes::CLOUD_PLATFORM,
        ],
    );
    assert_eq!(stdout(&out), "ya29.METADATA\n");
    // One token request, for exactly the requested scopes.
    let asked: Vec<_> = metadata
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/default/token"))
        .map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "scopes")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(
        asked,
        [Some(format!(
            "{RETRIEVER},{}",
            gemini_oauth::scopes::CLOUD_PLATFORM
        ))]
    );
}

#[test]
fn nothing_found_lists_every_place_tried_and_what_to_run() {
    let home = tempfile::tempdir().unwrap();
    let out = run("print_access_token", home.path(), &[], &["--adc"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for needle in [
        "GOOGLE_APPLICATION_CREDENTIALS (not set)",
        &format!(
            "{}/.config/gcloud/application_default_credentials.json (no such file)",
            home.path().display()
        ),
        "the metadata server at 127.0.0.1:",
        "gcloud auth application-default login",
        "GOOGLE_API_KEY",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    let out = run(
        "print_access_token",
        home.path(),
        &[("NO_GCE_CHECK", "true")],
        &["--adc"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped: NO_GCE_CHECK=true"));
}

#[test]
fn other_credential_types_are_named_as_unsupported() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("ext.json");
    std::fs::write(
        &file,
        r#"{"type": "gdch_service_account", "audience": "x"}"#,
    )
    .unwrap();
    let out = run(
        "print_access_token",
        home.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())],
        &["--adc"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("\"gdch_service_account\" is not supported yet") && err.contains("ext.json"),
        "{err}"
    );
}

#[tokio::test]
async fn quota_project_precedence_flag_then_env_then_file() {
    let tokens = token_endpoint().await;
    let api = api_answering(
        ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/x"}]})),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("adc.json");
    std::fs::write(&file, gcloud_adc("1//Q", Some("file-proj"))).unwrap();
    let base = format!("{}/v1", api.uri());
    let uri = token_uri(&tokens);
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())];
    let args = [
        "--adc",
        "--token-uri",
        uri.as_str(),
        "--api-base",
        base.as_str(),
    ];
    stdout(&run("list_models", home.path(), &env, &args));
    let with_env = [env[0], ("GOOGLE_CLOUD_QUOTA_PROJECT", "env-proj")];
    stdout(&run("list_models", home.path(), &with_env, &args));
    let mut with_flag = args.to_vec();
    with_flag.extend(["--quota-project", "flag-proj"]);
    stdout(&run("list_models", home.path(), &with_env, &with_flag));
    assert_eq!(
        header_values(&api, "x-goog-user-project").await,
        ["file-proj", "env-proj", "flag-proj"]
    );
}

#[tokio::test]
async fn api_keys_from_google_then_gemini_env_never_with_a_bearer() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header_exists("x-goog-api-key"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/k"}]})),
        )
        .mount(&api)
        .await;
    let home = tempfile::tempdir().unwrap();
    let base = format!("{}/v1", api.uri());
    let args = ["--api-key", "--api-base", base.as_str()];
    let out = run(
        "list_models",
        home.path(),
        &[
            ("GEMINI_API_KEY", "AIzaGEMINIKEY"),
            ("GOOGLE_API_KEY", "AIzaGOOGLEKEY"),
        ],
        &args,
    );
    assert_eq!(stdout(&out), "models/k\n");
    // Both set: GOOGLE_API_KEY wins, as in Google's SDKs, with a warning.
    let warned = String::from_utf8(out.stderr).unwrap();
    assert!(
        warned.contains("both GOOGLE_API_KEY and GEMINI_API_KEY are set"),
        "{warned}"
    );
    assert!(!warned.contains("AIza"), "{warned}");
    let out = run(
        "list_models",
        home.path(),
        &[("GEMINI_API_KEY", "AIzaGEMINIKEY")],
        &args,
    );
    assert_eq!(stdout(&out), "models/k\n");
    assert!(out.stderr.is_empty(), "one key: no warning");
    assert_eq!(
        header_values(&api, "x-goog-api-key").await,
        ["AIzaGOOGLEKEY", "AIzaGEMINIKEY"]
    );
    let reqs = api.received_requests().await.unwrap();
    assert!(
        reqs.iter()
            .all(|r| r.headers.get("authorization").is_none())
    );

    let out = run("list_models", home.path(), &[], &args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("GEMINI_API_KEY (not set)") && err.contains("GOOGLE_API_KEY (not set)"),
        "{err}"
    );
    // print_access_token has no token to print for a key, and says so.
    let out = run(
        "print_access_token",
        home.path(),
        &[("GEMINI_API_KEY", "AIzaSECRETKEYMARKER")],
        &["--api-key"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("x-goog-api-key") && !err.contains("SECRETKEYMARKER"),
        "{err}"
    );
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_and_deletes_the_file() {
    let tokens = token_endpoint().await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&revoke)
        .await;
    let home = tempfile::tempdir().unwrap();
    let file = write_token(home.path(), &token_json(&token_uri(&tokens), 3000));
    let out = run(
        "logout",
        home.path(),
        &[],
        &[
            "--token",
            file.to_str().unwrap(),
            "--revoke-uri",
            &format!("{}/revoke", revoke.uri()),
        ],
    );
    stdout(&out);
    let body =
        String::from_utf8(revoke.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert_eq!(body, format!("token={}", REFRESH_TOKEN.replace('/', "%2F")));
    assert!(!file.exists());
}

/// Verifies the service-account JWT bearer assertion with the public key.
struct JwtChecker {
    public_key_der: Vec<u8>,
    email: String,
}

impl Respond for JwtChecker {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"error": "unsupported_grant_type"}));
        }
        let jwt = get("assertion");
        let parts: Vec<&str> = jwt.split('.').collect();
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key_der,
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        // Decoded leniently: the signature's encoding is the signer's business.
        let sig = b64
            .decode(
                parts
                    .get(2)
                    .copied()
                    .unwrap_or_default()
                    .trim_end_matches('='),
            )
            .unwrap_or_default();
        if parts.len() != 3 || key.verify(signed.as_bytes(), &sig).is_err() {
            return ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_grant", "error_description": "bad signature"}),
            );
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1].trim_end_matches('=')).unwrap()).unwrap();
        if claims["iss"] != self.email.as_str()
            || !claims["scope"]
                .as_str()
                .unwrap_or("")
                .contains("generative-language")
        {
            return ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_grant", "error_description": "bad claims"}),
            );
        }
        ResponseTemplate::new(200).set_body_json(json!({"access_token": "ya29.SERVICEACCOUNT", "expires_in": 3599, "token_type": "Bearer"}))
    }
}

/// A fresh RSA key made with openssl: the PKCS#8 PEM and the public key (DER).
pub(crate) fn rsa_key(dir: &Path) -> (String, Vec<u8>) {
    let pem = dir.join("key.pem");
    let der = dir.join("pub.der");
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (bash .ci/test installs it)");
        assert!(st.success(), "openssl {args:?}");
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pem.to_str().unwrap(),
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
    (
        std::fs::read_to_string(&pem).unwrap(),
        std::fs::read(&der).unwrap(),
    )
}

const SA_EMAIL: &str = "bench@test-project.iam.gserviceaccount.com";

/// A service-account key file in `dir` whose token endpoint is `tokens`.
fn service_account_file(dir: &Path, private_key: &str, tokens: &MockServer) -> String {
    let key = json!({
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1",
        "private_key": private_key, "client_email": SA_EMAIL,
        "client_id": "1", "token_uri": token_uri(tokens),
    });
    let key_file = dir.join("sa.json");
    std::fs::write(&key_file, key.to_string()).unwrap();
    key_file.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn service_account_key_signs_a_jwt_the_endpoint_verifies() {
    let home = tempfile::tempdir().unwrap();
    let (private_key, public_key_der) = rsa_key(home.path());
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(JwtChecker {
            public_key_der,
            email: SA_EMAIL.into(),
        })
        .mount(&tokens)
        .await;
    let key_file = service_account_file(home.path(), &private_key, &tokens);
    let out = run(
        "print_access_token",
        home.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)],
        &["--adc"],
    );
    assert_eq!(stdout(&out), "ya29.SERVICEACCOUNT\n");
    assert_eq!(tokens.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stalled_service_account_token_endpoint_times_out() {
    let home = tempfile::tempdir().unwrap();
    let (private_key, _) = rsa_key(home.path());
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30)))
        .mount(&tokens)
        .await;
    let key_file = service_account_file(home.path(), &private_key, &tokens);
    let out = run(
        "print_access_token",
        home.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)],
        &["--adc", "--timeout", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("timed out"), "{err}");
    assert!(!err.contains("BEGIN PRIVATE KEY"), "{err}");
    // A transient failure: the same retries as every token request.
    assert_eq!(tokens.received_requests().await.unwrap().len(), 3);
}

#[test]
fn sign_in_flags_say_they_have_no_effect_with_adc() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        "print_access_token",
        home.path(),
        &[("NO_GCE_CHECK", "true")],
        &["--adc", "--token", "elsewhere.json", "--no-browser"],
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("warning: --token has no effect with --adc"),
        "{err}"
    );
    assert!(
        err.contains("warning: --no-browser/--headless/--no-consent has no effect with --adc"),
        "{err}"
    );
}
