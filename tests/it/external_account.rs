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

pub(crate) const STS_ACCESS: &str = "ya29.STSACCESSMARKER";
pub(crate) const SUBJECT: &str = "eyJSUBJECTTOKENMARKER.payload.sig";
pub(crate) const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const WORKLOAD: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool/providers/prov";
const WORKFORCE: &str =
    "//iam.googleapis.com/locations/global/workforcePools/wfpool/providers/prov";

/// Variables that would change what a run does; removed from every child.
const CLEARED_ENV: [&str; 18] = [
    "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
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
pub(crate) struct Fed {
    dir: tempfile::TempDir,
    server: MockServer,
}

impl Fed {
    pub(crate) async fn new() -> Fed {
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

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An `external_account` file with this `credential_source` and extra fields.
    pub(crate) fn config(&self, token_type: &str, source: Value, extra: Value) -> PathBuf {
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

    fn command(&self, cmd: Command, config: &Path, env: &[(&str, &str)]) -> Output {
        let mut cmd = self.prepare(cmd, config, env);
        cmd.stdin(Stdio::null()).output().unwrap()
    }

    /// `cmd` with a clean environment, `config` as ADC and `env`.
    pub(crate) fn prepare(&self, mut cmd: Command, config: &Path, env: &[(&str, &str)]) -> Command {
        for k in CLEARED_ENV {
            cmd.env_remove(k);
        }
        cmd.env("HOME", self.dir.path())
            .env("GOOGLE_APPLICATION_CREDENTIALS", config)
            .env("GCE_METADATA_HOST", crate::common::closed_port())
            .env("NO_PROXY", "*")
            .current_dir(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `print_access_token --adc` on `config`.
    pub(crate) fn rust(&self, config: &Path, env: &[(&str, &str)]) -> Output {
        self.rust_scoped(config, env, RETRIEVER)
    }

    fn rust_scoped(&self, config: &Path, env: &[(&str, &str)], scope: &str) -> Output {
        let mut cmd = example("print_access_token");
        cmd.args(["--adc", "--scope", scope]);
        self.command(cmd, config, env)
    }

    /// google-auth's `default()` and `refresh()` on `config`; `fixed_now`
    /// fixes its clock (`YYYYmmddTHHMMSSZ`).
    fn python(&self, config: &Path, env: &[(&str, &str)], fixed_now: Option<&str>) -> Value {
        self.python_scoped(config, env, fixed_now, RETRIEVER)
    }

    fn python_scoped(
        &self,
        config: &Path,
        env: &[(&str, &str)],
        fixed_now: Option<&str>,
        scope: &str,
    ) -> Value {
        let mut cmd = Command::new(python().get_program());
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/external_account.py"
        ))
        .args(["refresh", scope, &self.url("/v1/projects/")]);
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
        requests_to(&self.server, p).await
    }

    /// The form of every STS request, in order.
    pub(crate) async fn sts_forms(&self) -> Vec<Vec<(String, String)>> {
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
pub(crate) fn failure(out: &Output) -> String {
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
    assert_eq!(fed.sts_forms().await, std::slice::from_ref(&expected));

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

    // API calls carry the STS token and the file's quota project.
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(bearer(STS_ACCESS))
        .and(header("x-goog-user-project", "quota-proj"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/x"}]})),
        )
        .mount(&fed.server)
        .await;
    let mut cmd = example("list_models");
    cmd.args(["--adc", "--api-base", &fed.url("/v1")]);
    let out = fed.command(cmd, &config, &[]);
    assert!(stdout(&out).contains("models/x"));
}

#[tokio::test]
async fn json_file_source_workforce_options_and_client_basic_auth() {
    let fed = Fed::new().await;
    let subject = fed.path("subject.json");
    std::fs::write(
        &subject,
        json!({"id_token": SUBJECT, "other": 1}).to_string(),
    )
    .unwrap();
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

/// An executable script in `fed`'s dir that logs its environment
/// (`GOOGLE_EXTERNAL_ACCOUNT_*`, sorted, one block per run, `---` after
/// each) and arguments to `runs.log`, then runs `body`.
#[cfg(unix)]
pub(crate) fn script(fed: &Fed, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = fed.path(name);
    let log = fed.path("runs.log");
    std::fs::write(
        &file,
        format!(
            "#!/bin/sh\n{{ env | grep '^GOOGLE_EXTERNAL_ACCOUNT_' | sort; echo \"args=$*\"; echo ---; }} >> '{}'\n{body}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    file
}

/// The blocks `script` logged, one per run.
fn runs(fed: &Fed) -> Vec<String> {
    std::fs::read_to_string(fed.path("runs.log"))
        .unwrap_or_default()
        .split("---\n")
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A response as the executable protocol has it, expiring `in_secs` from now.
pub(crate) fn response(in_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"version": 1, "success": true, "token_type": JWT_TYPE, "id_token": SUBJECT,
           "expiration_time": now + in_secs})
    .to_string()
}

pub(crate) const ALLOW: (&str, &str) = ("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");

#[cfg(unix)]
#[tokio::test]
async fn executable_gets_google_auths_environment_and_its_answer_is_exchanged() {
    let fed = Fed::new().await;
    let exe = script(
        &fed,
        "get-token.sh",
        &format!("printf '%s' '{}'", response(3600)),
    );
    let config = fed.config(
        JWT_TYPE,
        json!({"executable": {"command": format!("{} --flag 'two words'", exe.display()), "timeout_millis": 5000}}),
        json!({}),
    );
    assert_eq!(
        stdout(&fed.rust(&config, &[ALLOW])),
        format!("{STS_ACCESS}\n")
    );
    let ours = runs(&fed);
    assert_eq!(
        ours,
        [format!(
            "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1\nGOOGLE_EXTERNAL_ACCOUNT_AUDIENCE={WORKLOAD}\n\
             GOOGLE_EXTERNAL_ACCOUNT_ID=\nGOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE=0\n\
             GOOGLE_EXTERNAL_ACCOUNT_REVOKE=0\nGOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE={JWT_TYPE}\n\
             args=--flag two words\n"
        )]
    );
    fed.python(&config, &[ALLOW], None);
    let all = runs(&fed);
    assert_eq!(
        all.len(),
        3,
        "google-auth ran it for each of its two refreshes"
    );
    assert!(all.iter().all(|r| *r == ours[0]), "{all:#?}");
    let expected = expected_form(WORKLOAD, SUBJECT, JWT_TYPE);
    let forms = fed.sts_forms().await;
    assert_eq!(forms.len(), 3);
    assert!(forms.iter().all(|f| *f == expected), "{forms:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn executable_output_file_is_used_while_valid_and_rerun_when_expired() {
    let fed = Fed::new().await;
    let out_file = fed.path("cache.json");
    // Writes the response to the output file and prints nothing.
    let exe = script(
        &fed,
        "cached.sh",
        &format!(
            "printf '%s' '{}' > \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\"",
            response(3600)
        ),
    );
    let config = fed.config(
        JWT_TYPE,
        json!({"executable": {"command": exe, "output_file": out_file}}),
        json!({}),
    );
    stdout(&fed.rust(&config, &[ALLOW]));
    let first = runs(&fed);
    assert_eq!(first.len(), 1);
    assert!(
        first[0].contains(&format!(
            "GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE={}\n",
            out_file.display()
        )),
        "{first:?}"
    );
    // A valid cached response: the program does not run, for us or for google-auth.
    stdout(&fed.rust(&config, &[ALLOW]));
    fed.python(&config, &[ALLOW], None);
    assert_eq!(runs(&fed).len(), 1);
    // Expired: run again.
    std::fs::write(&out_file, response(-60)).unwrap();
    stdout(&fed.rust(&config, &[ALLOW]));
    assert_eq!(runs(&fed).len(), 2);
    let expected = expected_form(WORKLOAD, SUBJECT, JWT_TYPE);
    let forms = fed.sts_forms().await;
    assert_eq!(forms.len(), 5);
    assert!(forms.iter().all(|f| *f == expected), "{forms:?}");

    // A malformed cached response is an error naming it, as in google-auth.
    std::fs::write(&out_file, r#"{"success": true}"#).unwrap();
    let err = failure(&fed.rust(&config, &[ALLOW]));
    assert!(
        err.contains("output_file") && err.contains("\"version\""),
        "{err}"
    );
    assert_eq!(runs(&fed).len(), 2);
}

#[cfg(unix)]
#[tokio::test]
async fn executable_failures_are_typed_errors_naming_the_file_and_field() {
    let fed = Fed::new().await;
    let run = |body: &str, extra: Value, env: &[(&str, &str)]| {
        let exe = script(&fed, "exe.sh", body);
        let mut exec = json!({"command": exe});
        for (k, v) in extra.as_object().unwrap() {
            exec[k] = v.clone();
        }
        let config = fed.config(JWT_TYPE, json!({"executable": exec}), json!({}));
        let err = failure(&fed.rust(&config, env));
        assert!(err.contains(config.to_str().unwrap()), "{err}");
        assert!(!err.contains("SUBJECTTOKENMARKER"), "{err}");
        err
    };
    let ok = format!("printf '%s' '{}'", response(3600));

    let err = run(&ok, json!({}), &[]);
    assert!(
        err.contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
        "{err}"
    );
    assert!(runs(&fed).is_empty(), "ran without being allowed");

    let err = run("echo 'not json'", json!({}), &[ALLOW]);
    assert!(err.contains("exe.sh") && err.contains("not JSON"), "{err}");

    let err = run(
        &format!("printf '%s' '{}'", response(-10)),
        json!({}),
        &[ALLOW],
    );
    assert!(err.contains("expired"), "{err}");

    let failed = json!({"version": 1, "success": false, "code": "401", "message": "no session"});
    let err = run(&format!("printf '%s' '{failed}'"), json!({}), &[ALLOW]);
    assert!(err.contains("code 401: no session"), "{err}");

    let err = run("exit 3", json!({}), &[ALLOW]);
    assert!(err.contains("exit status: 3"), "{err}");

    let err = run("exec sleep 30", json!({"timeout_millis": 5000}), &[ALLOW]);
    assert!(err.contains("did not finish within 5000 ms"), "{err}");

    for millis in [1000, 120_001] {
        let err = run(&ok, json!({"timeout_millis": millis}), &[ALLOW]);
        assert!(
            err.contains("credential_source.executable.timeout_millis") && err.contains("5000"),
            "{err}"
        );
    }

    // What the program writes to stderr is not part of its answer.
    let exe = script(&fed, "noisy.sh", &format!("echo 'some noise' >&2; {ok}"));
    let config = fed.config(JWT_TYPE, json!({"executable": {"command": exe}}), json!({}));
    assert_eq!(
        stdout(&fed.rust(&config, &[ALLOW])),
        format!("{STS_ACCESS}\n")
    );
}

#[tokio::test]
async fn bad_sources_and_sts_errors_are_typed_errors_naming_the_file_and_field() {
    let fed = Fed::new().await;
    let check = |source: Value, extra: Value, wanted: &[&str]| {
        let config = fed.config(JWT_TYPE, source, extra);
        let err = failure(&fed.rust(&config, &[]));
        assert!(err.contains(config.to_str().unwrap()), "{err}");
        for w in wanted {
            assert!(err.contains(w), "{w:?} not in {err}");
        }
    };
    let missing = fed.path("no-such-token");
    check(
        json!({"file": missing}),
        json!({}),
        &[
            "credential_source.file",
            missing.to_str().unwrap(),
            "does not exist",
        ],
    );
    Mock::given(method("GET"))
        .and(path("/down"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&fed.server)
        .await;
    check(
        json!({"url": fed.url("/down?secret=QUERYMARKER")}),
        json!({}),
        &["credential_source.url", "HTTP 500", "/down"],
    );
    let subject = fed.path("subject.json");
    std::fs::write(&subject, r#"{"token": "x"}"#).unwrap();
    check(
        json!({"file": subject, "format": {"type": "json", "subject_token_field_name": "id_token"}}),
        json!({}),
        &["no field \"id_token\""],
    );
    check(
        json!({"url": "http://example.com/token"}),
        json!({}),
        &["credential_source.url", "plain http"],
    );
    check(
        json!({"file": subject, "format": {"type": "xml"}}),
        json!({}),
        &["credential_source.format.type"],
    );
    check(json!({}), json!({}), &["credential_source", "no file, url"]);
    check(
        json!({"certificate": {"use_default_certificate_config": true}}),
        json!({}),
        &["credential_source.certificate", "not supported"],
    );
    check(
        json!({"file": subject}),
        json!({"workforce_pool_user_project": "1"}),
        &["workforce_pool_user_project", "workforce pools"],
    );
    check(
        json!({"file": subject}),
        json!({"audience": null}),
        &["\"audience\" is missing"],
    );

    // The file's universe is checked against the API's before any request.
    let config = fed.config(
        JWT_TYPE,
        json!({"file": subject}),
        json!({"universe_domain": "example.test"}),
    );
    let before = fed.sts_forms().await.len();
    let err = failure(&fed.rust(
        &config,
        &[("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "googleapis.com")],
    ));
    assert!(
        err.contains("universe domain example.test") && err.contains(config.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(fed.sts_forms().await.len(), before);

    // The STS endpoint's OAuth error is reported with its code.
    let sts = Fed::answering(ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_grant", "error_description": "The audience is invalid."
    })))
    .await;
    std::fs::write(sts.path("t"), SUBJECT).unwrap();
    let config = sts.config(JWT_TYPE, json!({"file": sts.path("t")}), json!({}));
    let err = failure(&sts.rust(&config, &[]));
    assert!(
        err.contains("invalid_grant")
            && err.contains("The audience is invalid.")
            && err.contains("/sts"),
        "{err}"
    );
    assert!(!err.contains("SUBJECTTOKENMARKER"), "{err}");
    assert!(
        !String::from_utf8_lossy(
            &fed.rust(
                &fed.config(
                    JWT_TYPE,
                    json!({"url": fed.url("/down?secret=QUERYMARKER")}),
                    json!({})
                ),
                &[]
            )
            .stderr
        )
        .contains("QUERYMARKER")
    );
}

const AWS_KEY_ID: &str = "ASIAKEYIDMARKER";
const AWS_SECRET: &str = "AWSSECRETMARKER/abc+def";
const AWS_SESSION: &str = "AWSSESSIONMARKER==";
const VERIFY: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";

/// The signed request inside an AWS subject token.
fn decode_aws(subject: &str) -> Value {
    let text = percent_decode(subject);
    serde_json::from_str(&text).unwrap()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// SigV4 written from AWS's documentation, independent of the crate's: the
/// `Authorization` value for `POST https://{host}/?Action=GetCallerIdentity&Version=2011-06-15`.
fn sigv4_authorization(host: &str, region: &str, amz_date: &str, session: Option<&str>) -> String {
    use ring::hmac;
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let sign = |key: &[u8], msg: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes())
            .as_ref()
            .to_vec()
    };
    let mut headers = format!("host:{host}\nx-amz-date:{amz_date}\n");
    let mut signed = "host;x-amz-date".to_owned();
    if let Some(t) = session {
        headers.push_str(&format!("x-amz-security-token:{t}\n"));
        signed.push_str(";x-amz-security-token");
    }
    let canonical = format!(
        "POST\n/\nAction=GetCallerIdentity&Version=2011-06-15\n{headers}\n{signed}\n{}",
        hex(&Sha256::digest(b""))
    );
    let day = &amz_date[..8];
    let scope = format!("{day}/{region}/sts/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = sign(format!("AWS4{AWS_SECRET}").as_bytes(), day);
    for part in [region, "sts", "aws4_request"] {
        key = sign(&key, part);
    }
    format!(
        "AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/{scope}, SignedHeaders={signed}, Signature={}",
        hex(&sign(&key, &to_sign))
    )
}

/// Checks our AWS subject token against an independent signature and
/// google-auth's token signed at the same second; returns nothing on success.
async fn check_aws_run(
    fed: &Fed,
    config: &Path,
    env: &[(&str, &str)],
    region: &str,
    session: Option<&str>,
) {
    assert_eq!(stdout(&fed.rust(config, env)), format!("{STS_ACCESS}\n"));
    let forms = fed.sts_forms().await;
    let ours = forms.last().unwrap().clone();
    let subject = ours
        .iter()
        .find(|(k, _)| k == "subject_token")
        .unwrap()
        .1
        .clone();
    assert_eq!(ours, expected_form(WORKLOAD, &subject, AWS_TYPE));
    let signed = decode_aws(&subject);
    let host = format!("sts.{region}.amazonaws.com");
    let amz_date = signed["headers"][2]["value"].as_str().unwrap().to_owned();
    let mut headers = vec![
        json!({"key": "Authorization", "value": sigv4_authorization(&host, region, &amz_date, session)}),
        json!({"key": "host", "value": host}),
        json!({"key": "x-amz-date", "value": amz_date}),
    ];
    if let Some(t) = session {
        headers.push(json!({"key": "x-amz-security-token", "value": t}));
    }
    headers.push(json!({"key": "x-goog-cloud-target-resource", "value": WORKLOAD}));
    assert_eq!(
        signed,
        json!({"headers": headers, "method": "POST",
               "url": VERIFY.replace("{region}", region)})
    );

    // google-auth, its clock at the second we signed: the same bytes.
    let report = fed.python(config, env, Some(&amz_date));
    assert_eq!(report["class"], "google.auth.aws.Credentials");
    let forms = fed.sts_forms().await;
    assert!(forms.len() >= 3);
    for f in &forms[forms.len() - 2..] {
        assert_eq!(*f, ours);
    }
}

#[tokio::test]
async fn aws_from_instance_metadata_with_imdsv2_signed_as_google_auth_signs() {
    let fed = Fed::new().await;
    let session = "IMDSV2SESSIONMARKER";
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .and(header("x-aws-ec2-metadata-token-ttl-seconds", "300"))
        .respond_with(ResponseTemplate::new(200).set_body_string(session))
        .mount(&fed.server)
        .await;
    let with_session = |p: &'static str, body: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path(p))
            .and(header("x-aws-ec2-metadata-token", session))
            .respond_with(body)
    };
    with_session(
        "/latest/meta-data/placement/availability-zone",
        ResponseTemplate::new(200).set_body_string("us-east-2b"),
    )
    .mount(&fed.server)
    .await;
    with_session(
        "/latest/meta-data/iam/security-credentials",
        ResponseTemplate::new(200).set_body_string("my-role"),
    )
    .mount(&fed.server)
    .await;
    with_session(
        "/latest/meta-data/iam/security-credentials/my-role",
        ResponseTemplate::new(200).set_body_json(json!({
            "Code": "Success", "AccessKeyId": AWS_KEY_ID, "SecretAccessKey": AWS_SECRET,
            "Token": AWS_SESSION, "Expiration": "2030-01-01T00:00:00Z"
        })),
    )
    .mount(&fed.server)
    .await;
    let config = fed.config(
        AWS_TYPE,
        json!({"environment_id": "aws1", "regional_cred_verification_url": VERIFY,
               "region_url": fed.url("/latest/meta-data/placement/availability-zone"),
               "url": fed.url("/latest/meta-data/iam/security-credentials"),
               "imdsv2_session_token_url": fed.url("/latest/api/token")}),
        json!({}),
    );
    check_aws_run(&fed, &config, &[], "us-east-2", Some(AWS_SESSION)).await;
    // Every metadata request carried the session token (unmatched ones got 404s and failed the runs).
    assert_eq!(
        fed.requests("/latest/meta-data/iam/security-credentials/my-role")
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn aws_from_environment_variables_never_asks_the_metadata() {
    let fed = Fed::new().await;
    let config = fed.config(
        AWS_TYPE,
        json!({"environment_id": "aws1", "regional_cred_verification_url": VERIFY,
               "region_url": fed.url("/region"), "url": fed.url("/creds"),
               "imdsv2_session_token_url": fed.url("/session")}),
        json!({}),
    );
    let env = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "ap-south-1"),
        ("AWS_ACCESS_KEY_ID", AWS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
    ];
    check_aws_run(&fed, &config, &env, "eu-west-1", None).await;
    let mut with_session = env.to_vec();
    with_session[0] = ("AWS_DEFAULT_REGION", "ap-south-1");
    with_session.push(("AWS_SESSION_TOKEN", AWS_SESSION));
    with_session.remove(1);
    check_aws_run(
        &fed,
        &config,
        &with_session,
        "ap-south-1",
        Some(AWS_SESSION),
    )
    .await;
    for p in ["/region", "/creds", "/session"] {
        assert!(fed.requests(p).await.is_empty(), "{p} was asked");
    }

    // No region anywhere: an error naming the field, no secret in it.
    let config = fed.config(
        AWS_TYPE,
        json!({"environment_id": "aws1", "regional_cred_verification_url": VERIFY}),
        json!({}),
    );
    let err = failure(&fed.rust(&config, &env[2..]));
    assert!(
        err.contains("credential_source.region_url") && err.contains("AWS_REGION"),
        "{err}"
    );
    assert!(!err.contains("MARKER"), "{err}");
    let config = fed.config(
        AWS_TYPE,
        json!({"environment_id": "aws2", "regional_cred_verification_url": VERIFY}),
        json!({}),
    );
    let err = failure(&fed.rust(&config, &env));
    assert!(err.contains("credential_source.environment_id"), "{err}");
}

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const SA: &str = "gemini-sa@my-project.iam.gserviceaccount.com";

#[cfg(unix)]
#[tokio::test]
async fn impersonation_after_the_exchange_with_the_files_lifetime_as_google_auth_does_it() {
    let fed = Fed::new().await;
    let iam_path = format!("/v1/projects/-/serviceAccounts/{SA}:generateAccessToken");
    Mock::given(method("POST"))
        .and(path(iam_path.as_str()))
        .and(bearer(STS_ACCESS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "accessToken": "ya29.IMPERSONATEDMARKER", "expireTime": "2030-01-02T03:04:05Z"
        })))
        .mount(&fed.server)
        .await;
    let exe = script(&fed, "exe.sh", &format!("printf '%s' '{}'", response(3600)));
    let config = fed.config(
        JWT_TYPE,
        json!({"executable": {"command": exe}}),
        json!({"service_account_impersonation_url": fed.url(&iam_path),
               "service_account_impersonation": {"token_lifetime_seconds": 600}}),
    );
    let out = fed.rust_scoped(&config, &[ALLOW], CLOUD_PLATFORM);
    assert_eq!(stdout(&out), "ya29.IMPERSONATEDMARKER\n");
    let ours = runs(&fed);
    assert!(
        ours[0].contains(&format!(
            "GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL={SA}\n"
        )) && ours[0].contains(&format!("GOOGLE_EXTERNAL_ACCOUNT_ID={SA}\n")),
        "{ours:?}"
    );
    let mut sts = expected_form(WORKLOAD, SUBJECT, JWT_TYPE);
    sts[2].1 = "https://www.googleapis.com/auth/iam".to_owned();
    assert_eq!(fed.sts_forms().await, std::slice::from_ref(&sts));
    let iam_body = |r: &Request| serde_json::from_slice::<Value>(&r.body).unwrap();
    let iam = fed.requests(&iam_path).await;
    assert_eq!(
        iam_body(&iam[0]),
        json!({"delegates": [], "scope": [CLOUD_PLATFORM], "lifetime": "600s"})
    );

    // google-auth asked for the same scope: the same requests and the same
    // environment, except that it runs the program from source credentials
    // that forgot the impersonation, so it leaves out the two variables its
    // documentation promises when impersonating.
    let report = fed.python_scoped(&config, &[ALLOW], None, CLOUD_PLATFORM);
    assert_eq!(report["token"], "ya29.IMPERSONATEDMARKER");
    let all = runs(&fed);
    let python_view = ours[0]
        .replace(
            &format!("GOOGLE_EXTERNAL_ACCOUNT_ID={SA}\n"),
            "GOOGLE_EXTERNAL_ACCOUNT_ID=\n",
        )
        .replace(
            &format!("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL={SA}\n"),
            "",
        );
    assert!(
        all.len() >= 2 && all[1..].iter().all(|r| *r == python_view),
        "{all:#?}"
    );
    let forms = fed.sts_forms().await;
    assert!(
        forms.len() >= 2 && forms.iter().all(|f| *f == sts),
        "{forms:?}"
    );
    let iam = fed.requests(&iam_path).await;
    assert!(iam.len() >= 2);
    for r in &iam {
        let mut body = iam_body(r);
        // google-auth sends `null` for no delegates, we send `[]`.
        if body["delegates"].is_null() {
            body["delegates"] = json!([]);
        }
        assert_eq!(body, iam_body(&iam[0]));
    }
}

#[tokio::test]
async fn credential_sources_on_this_machine_never_go_through_a_proxy() {
    let fed = Fed::new().await;
    Mock::given(method("GET"))
        .and(path("/subject"))
        .respond_with(ResponseTemplate::new(200).set_body_string(SUBJECT))
        .mount(&fed.server)
        .await;
    let config = fed.config(JWT_TYPE, json!({"url": fed.url("/subject")}), json!({}));
    // A proxy that is not there: whatever goes through it fails.
    let proxy = format!("http://{}", crate::common::closed_port());
    let out = fed.rust(&config, &[("HTTP_PROXY", proxy.as_str()), ("NO_PROXY", "")]);
    // The subject token was fetched directly, and STS, on loopback here, too:
    // loopback is never sent to a proxy from the environment.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fed.requests("/subject").await.len(), 1);
    assert_eq!(fed.sts_forms().await.len(), 1);
}

/// In this process, through `credentials_file`: each refresh reads the
/// subject token file anew (platforms rotate it) and exchanges it again.
#[tokio::test]
async fn each_refresh_reads_the_subject_token_file_anew() {
    let fed = Fed::new().await;
    let subject = fed.path("rotating.jwt");
    std::fs::write(&subject, "eyJFIRSTMARKER").unwrap();
    let config = fed.config(JWT_TYPE, json!({"file": subject}), json!({}));
    let creds = gemini_oauth::CredentialLoader::application_default()
        .credentials_file(&config)
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), STS_ACCESS);
    assert!(
        creds.source().contains("external_account.json"),
        "{}",
        creds.source()
    );
    std::fs::write(&subject, "eyJSECONDMARKER").unwrap();
    creds.force_refresh().await.unwrap();
    let subjects: Vec<String> = fed
        .sts_forms()
        .await
        .iter()
        .map(|f| {
            f.iter()
                .find(|(k, _)| k == "subject_token")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(subjects, ["eyJFIRSTMARKER", "eyJSECONDMARKER"]);
    assert!(!format!("{creds:?}").contains("MARKER"));
}
