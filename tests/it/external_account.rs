//! `external_account` files (workload and workforce identity federation)
//! through `print_access_token --adc`, each run in its own process with its
//! own environment: the STS exchange, every credential source against local
//! endpoints that check each field, the bad inputs, and Python's google-auth
//! on the same file sending the same requests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::examples::{example, stdout};
use crate::common::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const STS_ACCESS: &str = "ya29.STSACCESSMARKER";
const SUBJECT: &str = "eyJSUBJECTTOKENMARKER.payload.sig";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const WORKLOAD: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool/providers/prov";
const WORKFORCE: &str = "//iam.googleapis.com/locations/global/workforcePools/wfpool/providers/prov";

/// Variables that would change what a run does; removed from every child.
const CLEARED_ENV: [&str; 17] = [
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
];

/// A temp dir, an STS endpoint (`POST /sts`) and a stand-in for
/// cloudresourcemanager (which google-auth's `default()` asks for the project).
struct Fed {
    dir: tempfile::TempDir,
    server: MockServer,
}

impl Fed {
    async fn new() -> Fed {
        Self::answering(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": STS_ACCESS, "expires_in": 3600, "token_type": "Bearer",
            "issued_token_type": ACCESS_TYPE
        })))
        .await
    }

    async fn answering(sts: ResponseTemplate) -> Fed {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/sts"))
            .respond_with(sts)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/v1/projects/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"projectId": "p"})))
            .mount(&server)
            .await;
        Fed {
            dir: tempfile::tempdir().unwrap(),
            server,
        }
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.server.uri())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An `external_account` file with this `credential_source` and extra fields.
    fn config(&self, token_type: &str, source: Value, extra: Value) -> PathBuf {
        let mut v = json!({
            "type": "external_account", "audience": WORKLOAD, "subject_token_type": token_type,
            "token_url": self.url("/sts"), "credential_source": source,
            "universe_domain": "googleapis.com"
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        let file = self.path("external_account.json");
        std::fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        file
    }

    fn command(&self, mut cmd: Command, config: &Path, env: &[(&str, &str)]) -> Output {
        for k in CLEARED_ENV {
            cmd.env_remove(k);
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        cmd.env("HOME", self.dir.path())
            .env("GOOGLE_APPLICATION_CREDENTIALS", config)
            .env("GCE_METADATA_HOST", closed.local_addr().unwrap().to_string())
            .env("NO_PROXY", "*")
            .current_dir(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).output().unwrap()
    }

    /// `print_access_token --adc` on `config`.
    fn rust(&self, config: &Path, env: &[(&str, &str)]) -> Output {
        let mut cmd = example("print_access_token");
        cmd.arg("--adc");
        self.command(cmd, config, env)
    }

    /// google-auth's `default()` and `refresh()` on `config`; `fixed_now`
    /// fixes its clock (`YYYYmmddTHHMMSSZ`).
    fn python(&self, config: &Path, env: &[(&str, &str)], fixed_now: Option<&str>) -> Value {
        let mut cmd = Command::new(python().get_program());
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/external_account.py"
        ))
        .args(["refresh", RETRIEVER, &self.url("/v1/projects/")]);
        if let Some(now) = fixed_now {
            cmd.arg(now);
        }
        let out = self.command(cmd, config, env);
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn requests(&self, p: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == p)
            .collect()
    }

    /// The form of every STS request, in order.
    async fn sts_forms(&self) -> Vec<Vec<(String, String)>> {
        self.requests("/sts")
            .await
            .iter()
            .map(|r| form_urlencoded::parse(&r.body).into_owned().collect())
            .collect()
    }
}

/// The form google-auth sends for `subject_token` with the default scope.
fn expected_form(audience: &str, subject: &str, token_type: &str) -> Vec<(String, String)> {
    [
        ("grant_type", GRANT),
        ("audience", audience),
        ("scope", RETRIEVER),
        ("requested_token_type", ACCESS_TYPE),
        ("subject_token", subject),
        ("subject_token_type", token_type),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The stderr of a run that must have failed cleanly (exit 1, no panic).
fn failure(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "printed a token: {err}");
    err
}

#[tokio::test]
async fn file_source_is_exchanged_at_sts_with_every_field_as_google_auth_sends_it() {
    let fed = Fed::new().await;
    let subject = fed.path("subject.jwt");
    std::fs::write(&subject, SUBJECT).unwrap();
    let config = fed.config(
        JWT_TYPE,
        json!({"file": subject}),
        json!({"quota_project_id": "quota-proj", "token_info_url": fed.url("/introspect")}),
    );
    assert_eq!(stdout(&fed.rust(&config, &[])), format!("{STS_ACCESS}\n"));
    let ours = &fed.requests("/sts").await[0];
    assert_eq!(
        ours.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert!(ours.headers.get("authorization").is_none());
    let expected = expected_form(WORKLOAD, SUBJECT, JWT_TYPE);
    assert_eq!(fed.sts_forms().await, [expected.clone()]);

    let report = fed.python(&config, &[], None);
    assert_eq!(report["class"], "google.auth.identity_pool.Credentials");
    assert_eq!(report["token"], STS_ACCESS);
    // Python's default() refreshes once for the project id, then once more.
    let forms = fed.sts_forms().await;
    assert_eq!(forms.len(), 3);
    assert!(forms.iter().all(|f| *f == expected), "{forms:?}");

    // A trailing newline (as `echo` writes) is not part of the token.
    std::fs::write(&subject, format!("{SUBJECT}\n")).unwrap();
    stdout(&fed.rust(&config, &[]));
    assert_eq!(fed.sts_forms().await[3], expected);
}

#[tokio::test]
async fn json_file_source_workforce_options_and_client_basic_auth() {
    let fed = Fed::new().await;
    let subject = fed.path("subject.json");
    std::fs::write(&subject, json!({"id_token": SUBJECT, "other": 1}).to_string()).unwrap();
    let source = json!({"file": subject, "format": {"type": "json", "subject_token_field_name": "id_token"}});
    let workforce = json!({"audience": WORKFORCE, "workforce_pool_user_project": "987654"});
    let config = fed.config(JWT_TYPE, source.clone(), workforce.clone());
    stdout(&fed.rust(&config, &[]));
    fed.python(&config, &[], None);
    let mut expected = expected_form(WORKFORCE, SUBJECT, JWT_TYPE);
    // google-auth: quote(json.dumps({"userProject": …})), form-encoded once more.
    expected.push((
        "options".into(),
        "%7B%22userProject%22%3A%20%22987654%22%7D".into(),
    ));
    let forms = fed.sts_forms().await;
    assert_eq!(forms.len(), 3);
    assert!(forms.iter().all(|f| *f == expected), "{forms:?}");

    // With a client, it authenticates by HTTP Basic and sends no options.
    let mut with_client = workforce.clone();
    with_client["client_id"] = json!("wf-client");
    with_client["client_secret"] = json!("WFSECRETMARKER");
    let config = fed.config(JWT_TYPE, source, with_client);
    stdout(&fed.rust(&config, &[]));
    fed.python(&config, &[], None);
    let requests = fed.requests("/sts").await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "wf-client:WFSECRETMARKER"
        )
    );
    let expected = expected_form(WORKFORCE, SUBJECT, JWT_TYPE);
    for r in &requests[3..] {
        assert_eq!(r.headers.get("authorization").unwrap(), basic.as_str());
        let form: Vec<(String, String)> = form_urlencoded::parse(&r.body).into_owned().collect();
        assert_eq!(form, expected);
    }
    assert_eq!(requests.len(), 6);
}

#[tokio::test]
async fn url_source_sends_the_files_headers_and_reads_text_or_json() {
    let fed = Fed::new().await;
    Mock::given(method("GET"))
        .and(path("/subject.json"))
        .and(header("metadata", "True"))
        .and(header("x-extra", "two words"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": SUBJECT})))
        .mount(&fed.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/subject.txt"))
        .respond_with(ResponseTemplate::new(200).set_body_string(SUBJECT))
        .mount(&fed.server)
        .await;
    let config = fed.config(
        JWT_TYPE,
        json!({"url": fed.url("/subject.json?api-version=2018-02-01"),
               "headers": {"Metadata": "True", "X-Extra": "two words"},
               "format": {"type": "json", "subject_token_field_name": "access_token"}}),
        json!({}),
    );
    assert_eq!(stdout(&fed.rust(&config, &[])), format!("{STS_ACCESS}\n"));
    fed.python(&config, &[], None);
    let gets = fed.requests("/subject.json").await;
    assert_eq!(gets.len(), 3, "one for us, two for google-auth");
    for g in &gets {
        assert_eq!(g.url.query(), Some("api-version=2018-02-01"));
    }
    let expected = expected_form(WORKLOAD, SUBJECT, JWT_TYPE);
    let forms = fed.sts_forms().await;
    assert_eq!(forms.len(), 3);
    assert!(forms.iter().all(|f| *f == expected), "{forms:?}");

    let config = fed.config(JWT_TYPE, json!({"url": fed.url("/subject.txt")}), json!({}));
    stdout(&fed.rust(&config, &[]));
    fed.python(&config, &[], None);
    let forms = fed.sts_forms().await;
    assert!(forms[3..].iter().all(|f| *f == expected), "{forms:?}");
}
