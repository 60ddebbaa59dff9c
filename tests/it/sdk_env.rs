//! `CredentialLoader::from_env()` against Python google-genai itself (pinned
//! in tests/python/requirements.txt): for each row of environment variables
//! and explicit settings, the backend, base URL, API version, project,
//! location and use of a key that google-genai's `Client()` picks
//! (tests/python/genai_choice.py, which refuses and reports any connection)
//! are what we pick. Nothing is sent anywhere.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use gemini_oauth::{Backend, CredentialLoader, EnvAuth, EnvChoice};
use serde_json::{Value, json};

struct Row {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    /// google-genai's `Client(...)` arguments (`base_url`, `api_version` in its `http_options`).
    explicit: Value,
}

fn row(name: &'static str, env: &[(&'static str, &str)], explicit: Value) -> Row {
    Row {
        name,
        env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        explicit,
    }
}

const V: &str = "GOOGLE_GENAI_USE_VERTEXAI";
const P: &str = "GOOGLE_CLOUD_PROJECT";
const L: &str = "GOOGLE_CLOUD_LOCATION";
const GK: &str = "GOOGLE_API_KEY";
const MK: &str = "GEMINI_API_KEY";
const ADC: &str = "GOOGLE_APPLICATION_CREDENTIALS";

fn rows(user_adc: &str, sa_adc: &str) -> Vec<Row> {
    let none = json!({});
    vec![
        row("google key only", &[(GK, "AIzaG")], none.clone()),
        row("gemini key only", &[(MK, "AIzaM")], none.clone()),
        row("both keys", &[(GK, "AIzaG"), (MK, "AIzaM")], none.clone()),
        row(
            "vertex, project, no location",
            &[(V, "true"), (P, "proj")],
            none.clone(),
        ),
        row(
            "vertex, region",
            &[(V, "1"), (P, "proj"), (L, "us-central1")],
            none.clone(),
        ),
        row(
            "vertex, global",
            &[(V, "TRUE"), (P, "proj"), (L, "global")],
            none.clone(),
        ),
        row(
            "vertex, us",
            &[(V, "true"), (P, "proj"), (L, "us")],
            none.clone(),
        ),
        row(
            "vertex, eu",
            &[(V, "true"), (P, "proj"), (L, "eu")],
            none.clone(),
        ),
        row(
            "vertex, project from GCLOUD_PROJECT",
            &[(V, "true"), (ADC, user_adc), ("GCLOUD_PROJECT", "gproj")],
            none.clone(),
        ),
        row(
            "vertex, project from the key file",
            &[(V, "true"), (ADC, sa_adc), (L, "europe-west4")],
            none.clone(),
        ),
        row(
            "vertex, no project anywhere",
            &[(V, "true"), (ADC, user_adc)],
            none.clone(),
        ),
        row(
            "vertex, key only: express mode",
            &[(V, "true"), (GK, "AIzaG")],
            none.clone(),
        ),
        row(
            "vertex, env project beats env key",
            &[(V, "true"), (P, "proj"), (GK, "AIzaG")],
            none.clone(),
        ),
        row(
            "vertex, env location beats env key",
            &[(V, "true"), (L, "us"), (MK, "AIzaM"), (ADC, sa_adc)],
            none.clone(),
        ),
        row(
            "explicit key beats env project",
            &[(P, "proj"), (L, "us")],
            json!({"vertexai": true, "api_key": "AIzaX"}),
        ),
        row(
            "explicit project beats env key",
            &[(V, "true"), (GK, "AIzaG")],
            json!({"project": "xproj", "location": "asia-east1"}),
        ),
        row(
            "explicit vertexai=false beats env",
            &[(V, "true"), (P, "proj"), (GK, "AIzaG")],
            json!({"vertexai": false}),
        ),
        row(
            "USE_VERTEXAI=false",
            &[(V, "false"), (GK, "AIzaG"), (P, "proj")],
            none.clone(),
        ),
        row(
            "ENTERPRISE beats USE_VERTEXAI",
            &[
                ("GOOGLE_GENAI_USE_ENTERPRISE", "true"),
                (V, "false"),
                (P, "proj"),
            ],
            none.clone(),
        ),
        row(
            "explicit project for the Gemini API",
            &[(GK, "AIzaG")],
            json!({"project": "xproj"}),
        ),
        row(
            "gemini base URL",
            &[
                (GK, "AIzaG"),
                ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/"),
            ],
            none.clone(),
        ),
        row(
            "vertex from env reads the gemini base URL: a gateway",
            &[
                (V, "true"),
                (P, "proj"),
                ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/gw/"),
            ],
            none.clone(),
        ),
        row(
            "vertex from env ignores the vertex base URL",
            &[
                (V, "true"),
                (P, "proj"),
                (L, "us-east5"),
                ("GOOGLE_VERTEX_BASE_URL", "http://127.0.0.1:9/"),
            ],
            none.clone(),
        ),
        row(
            "explicit vertex reads the vertex base URL",
            &[
                (P, "proj"),
                ("GOOGLE_VERTEX_BASE_URL", "http://127.0.0.1:9/"),
            ],
            json!({"vertexai": true, "project": "xproj", "location": "us-central1"}),
        ),
        row(
            "explicit base URL beats env",
            &[
                (GK, "AIzaG"),
                ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/"),
            ],
            json!({"base_url": "http://127.0.0.1:8/"}),
        ),
        row(
            "googleapis base URL keeps the project",
            &[
                (V, "true"),
                (P, "proj"),
                ("GOOGLE_GEMINI_BASE_URL", "https://private.googleapis.com"),
            ],
            none.clone(),
        ),
        row(
            "api version beta, gemini",
            &[(GK, "AIzaG"), ("GOOGLE_GENAI_API_VERSION", "beta")],
            none.clone(),
        ),
        row(
            "api version beta, vertex",
            &[
                (V, "true"),
                (P, "proj"),
                ("GOOGLE_GENAI_API_VERSION", "beta"),
            ],
            none.clone(),
        ),
        row(
            "api version v1beta1 asked, vertex",
            &[
                (V, "true"),
                (P, "proj"),
                ("GOOGLE_GENAI_API_VERSION", "v1beta1"),
            ],
            none.clone(),
        ),
        row(
            "explicit api version beats env",
            &[(GK, "AIzaG"), ("GOOGLE_GENAI_API_VERSION", "v1")],
            json!({"api_version": "v1beta"}),
        ),
        // google-genai takes an empty argument as none given (`x or env_x`).
        row(
            "explicit empty key: the environment's",
            &[(GK, "AIzaG")],
            json!({"api_key": ""}),
        ),
        row(
            "explicit empty project and location for the Gemini API",
            &[(GK, "AIzaG")],
            json!({"project": "", "location": ""}),
        ),
        row(
            "explicit empty base URL: the environment's",
            &[
                (GK, "AIzaG"),
                ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/"),
            ],
            json!({"base_url": ""}),
        ),
        row(
            "vertex, explicit empty project and location: the environment's",
            &[(V, "true"), (P, "proj"), (L, "us")],
            json!({"project": "", "location": ""}),
        ),
        row(
            "vertex, explicit empty key: env project beats env key",
            &[(V, "true"), (P, "proj"), (GK, "AIzaG")],
            json!({"api_key": ""}),
        ),
        row("nothing set", &[], none),
    ]
}

/// The real gcloud: `GEMINI_OAUTH_GCLOUD` (set by .ci/test), else /usr/bin/gcloud.
fn gcloud_exe() -> Option<std::path::PathBuf> {
    let exe = std::env::var("GEMINI_OAUTH_GCLOUD").unwrap_or_else(|_| "/usr/bin/gcloud".into());
    Some(std::path::PathBuf::from(exe)).filter(|p| p.exists())
}

/// Rows whose project google-auth asks gcloud for (`gcloud config get
/// project`): ADC is gcloud's own file, in a gcloud configuration directory
/// under `dir` holding `user`'s credentials and two configurations. None
/// without gcloud (.ci/test warns that the gcloud tests are skipped).
fn gcloud_rows(dir: &std::path::Path, user: &std::path::Path) -> Vec<Row> {
    let Some(exe) = gcloud_exe() else {
        eprintln!("WARNING: no gcloud, skipping the rows that need it");
        return Vec::new();
    };
    let config = dir.join("gcloud");
    std::fs::create_dir_all(config.join("configurations")).unwrap();
    let adc = config.join("application_default_credentials.json");
    std::fs::copy(user, &adc).unwrap();
    std::fs::write(config.join("active_config"), "default").unwrap();
    let ini = |project: &str| format!("[core]\naccount = a@example.com\nproject = {project}\n");
    std::fs::write(config.join("configurations/config_default"), ini("cfgproj")).unwrap();
    std::fs::write(config.join("configurations/config_other"), ini("otherproj")).unwrap();
    let path = format!("{}:/usr/bin:/bin", exe.parent().unwrap().display());
    let at = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut env = vec![
            (V, "true".to_owned()),
            ("CLOUDSDK_CONFIG", config.display().to_string()),
            // gcloud asks no metadata server.
            ("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false".to_owned()),
            ("PATH", path.clone()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let adc = adc.display().to_string();
    vec![
        Row {
            name: "vertex, project from gcloud's configuration",
            env: at(&[]),
            explicit: json!({}),
        },
        Row {
            name: "vertex, gcloud's file named by GOOGLE_APPLICATION_CREDENTIALS",
            env: at(&[(ADC, &adc), (L, "us")]),
            explicit: json!({}),
        },
        Row {
            name: "vertex, CLOUDSDK_CORE_PROJECT over gcloud's configuration",
            env: at(&[("CLOUDSDK_CORE_PROJECT", "envproj")]),
            explicit: json!({}),
        },
        Row {
            name: "vertex, CLOUDSDK_CORE_PROJECT empty: gcloud's error, no project",
            env: at(&[("CLOUDSDK_CORE_PROJECT", "")]),
            explicit: json!({}),
        },
        Row {
            name: "vertex, gcloud's other configuration",
            env: at(&[("CLOUDSDK_ACTIVE_CONFIG_NAME", "other")]),
            explicit: json!({}),
        },
    ]
}

/// What google-genai picks for each row, from one Python process.
fn python_choices(rows: &[Row], home: &str) -> Vec<Value> {
    let exe = std::env::var("GEMINI_OAUTH_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let input: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut env: HashMap<&str, &str> =
                r.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            // No gcloud config, no metadata server beyond loopback.
            env.insert("HOME", home);
            env.insert("GCE_METADATA_HOST", "127.0.0.1:9");
            json!({"env": env, "explicit": r.explicit})
        })
        .collect();
    let mut child = Command::new(&exe)
        .arg(format!(
            "{}/tests/python/genai_choice.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{exe}: {e}; run `bash .ci/test`, which installs google-genai in .venv")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "genai_choice.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ours(r: &Row) -> gemini_oauth::Result<EnvChoice> {
    let mut l = CredentialLoader::from_env();
    let e = &r.explicit;
    if let Some(v) = e["vertexai"].as_bool() {
        l = l.vertexai(v);
    }
    let text = |k: &str| e[k].as_str().map(str::to_owned);
    if let Some(v) = text("api_key") {
        l = l.key(v);
    }
    if let Some(v) = text("project") {
        l = l.project(v);
    }
    if let Some(v) = text("location") {
        l = l.location(v);
    }
    if let Some(v) = text("base_url") {
        l = l.base_url(v);
    }
    if let Some(v) = text("api_version") {
        l = l.api_version(v);
    }
    let env = r.env.clone();
    l.choice_in(move |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
}

/// A service account key file with a project id, which google-auth parses
/// (so the key is a real RSA key, made with openssl).
fn service_account_file(dir: &std::path::Path) -> String {
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl (bash .ci/test installs it)");
    assert!(key.status.success());
    let path = dir.join("sa.json");
    let file = json!({
        "type": "service_account", "project_id": "saproj", "private_key_id": "1",
        "private_key": String::from_utf8(key.stdout).unwrap(),
        "client_email": "sa@saproj.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    });
    std::fs::write(&path, file.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn from_env_picks_what_google_genai_picks_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user.json");
    std::fs::write(&user, r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}"#).unwrap();
    let sa = service_account_file(dir.path());
    let mut rows = rows(user.to_str().unwrap(), &sa);
    rows.extend(gcloud_rows(dir.path(), &user));
    assert!(rows.len() >= 12);
    let python = python_choices(&rows, dir.path().to_str().unwrap());
    let (mut both_ok, mut both_refuse) = (0, 0);
    for (r, py) in rows.iter().zip(&python) {
        let name = r.name;
        assert_eq!(
            py["connects"],
            json!([]),
            "{name}: google-genai tried to connect"
        );
        let ours = ours(r);
        if py["ok"] == json!(false) {
            if name == "nothing set" {
                // google-genai raises; we fall back to the quickstart's sign-in.
                assert!(
                    py["error"].as_str().unwrap().contains("No API key"),
                    "{name}: {py}"
                );
                assert_eq!(ours.unwrap().auth, EnvAuth::UserSignIn, "{name}");
                continue;
            }
            assert!(
                ours.is_err(),
                "{name}: google-genai refused ({}), we chose {ours:?}",
                py["error"]
            );
            both_refuse += 1;
            continue;
        }
        let c = ours.unwrap_or_else(|e| panic!("{name}: google-genai chose {py}, we failed: {e}"));
        assert_eq!(
            c.backend == Backend::VertexAi,
            py["vertexai"] == json!(true),
            "{name}: backend, {py}"
        );
        assert_eq!(json!(c.base_url), py["base_url"], "{name}: base URL");
        if c.backend == Backend::VertexAi {
            // For the Gemini API google-genai keeps but never uses them.
            assert_eq!(json!(c.project), py["project"], "{name}: project");
            assert_eq!(json!(c.location), py["location"], "{name}: location");
        }
        assert_eq!(
            json!(c.auth == EnvAuth::ApiKey),
            py["api_key"],
            "{name}: key or not"
        );
        let asked = r.env.iter().any(|(k, _)| *k == "GOOGLE_GENAI_API_VERSION")
            || r.explicit.get("api_version").is_some();
        if c.backend == Backend::VertexAi && !asked {
            // Our one deliberate difference: v1 (the quickstart's) over google-genai's v1beta1.
            assert_eq!(
                (c.api_version.as_str(), &py["api_version"]),
                ("v1", &json!("v1beta1")),
                "{name}"
            );
        } else {
            assert_eq!(
                json!(c.api_version),
                py["api_version"],
                "{name}: API version"
            );
        }
        c.api_base().unwrap_or_else(|e| panic!("{name}: {e}"));
        both_ok += 1;
    }
    // The table exercises both outcomes.
    assert!(
        both_ok >= 20 && both_refuse >= 2,
        "{both_ok} chosen, {both_refuse} refused"
    );
}

#[test]
fn the_chosen_api_base_names_project_location_and_version() {
    let vars = [
        (V, "true"),
        (P, "proj"),
        (L, "eu"),
        ("GOOGLE_GENAI_API_VERSION", "v1beta1"),
    ];
    let c = CredentialLoader::from_env()
        .choice_in(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
    assert_eq!(
        c.api_base().unwrap(),
        "https://aiplatform.eu.rep.googleapis.com/v1beta1/projects/proj/locations/eu/publishers/google"
    );
}

#[tokio::test]
async fn an_env_key_is_loaded_with_the_chosen_base_and_never_shown() {
    // choice_in is the process-free twin of load(); load() reads the real
    // environment, which tests must not change, so build what it builds.
    let c = CredentialLoader::from_env()
        .key("AIzaSECRETMARKER")
        .base_url("http://127.0.0.1:9/")
        .choice_in(|_| None)
        .unwrap();
    assert_eq!(c.api_base().unwrap(), "http://127.0.0.1:9/v1");
    assert!(!format!("{c:?}").contains("SECRETMARKER"));
    let creds = CredentialLoader::from_env()
        .vertexai(false)
        .key("AIzaSECRETMARKER")
        .load()
        .await
        .unwrap();
    assert_eq!(creds.source(), "an API key");
    assert!(!format!("{creds:?}").contains("SECRETMARKER"));
}

/// An example run with only the SDKs' variables uses the key and base URL
/// they name; any sign-in flag keeps the sign-in, as before.
#[tokio::test]
async fn examples_without_credential_flags_follow_the_environment() {
    use wiremock::matchers::{header_exists, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1beta/models"))
        .and(header_exists("x-goog-api-key"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/k"}]})),
        )
        .mount(&api)
        .await;
    let home = tempfile::tempdir().unwrap();
    let base = format!("{}/", api.uri());
    let run = |args: &[&str]| {
        let mut cmd = crate::common::examples::example("list_models");
        for k in crate::common::ADC_ENV {
            cmd.env_remove(k);
        }
        cmd.current_dir(home.path())
            .env("HOME", home.path())
            .env("GEMINI_API_KEY", "AIzaENVKEYMARKER")
            .env("GOOGLE_GEMINI_BASE_URL", &base)
            .env("GOOGLE_GENAI_API_VERSION", "v1beta")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(crate::common::examples::stdout(&out), "models/k\n");
    let reqs = api.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers["x-goog-api-key"], "AIzaENVKEYMARKER");
    assert!(reqs[0].headers.get("authorization").is_none());
    // A sign-in flag means the sign-in: no client secret here, so it fails, and says why.
    let out = run(&["--token", "token.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("client_secret.json") && !err.contains("MARKER"),
        "{err}"
    );
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
}

/// An example run in a Vertex AI environment (google-genai's variables and
/// an ADC file) calls Vertex AI with the ADC token, at the base URL the
/// environment names (a gateway: no project in the path, as google-genai).
#[tokio::test]
async fn an_example_in_a_vertex_environment_calls_vertex_ai_with_adc() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let tokens = crate::common::token_endpoint().await;
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/v1/publishers/google/models/gemini-x:generateContent",
        ))
        .and(header(
            "authorization",
            format!("Bearer {}", crate::common::NEW_ACCESS),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"candidates": [{"content": {"parts": [{"text": "from vertex"}]}}]}),
        ))
        .mount(&api)
        .await;
    let home = tempfile::tempdir().unwrap();
    let adc = home.path().join("adc.json");
    let file = json!({
        "type": "authorized_user", "client_id": crate::common::CLIENT_ID,
        "client_secret": crate::common::CLIENT_SECRET, "refresh_token": "1//R",
        "token_uri": crate::common::token_uri(&tokens),
    });
    std::fs::write(&adc, file.to_string()).unwrap();
    let mut cmd = crate::common::examples::example("generate_content");
    for k in crate::common::ADC_ENV {
        cmd.env_remove(k);
    }
    let out = cmd
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", crate::common::closed_port())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &adc)
        .env("GOOGLE_GENAI_USE_VERTEXAI", "true")
        .env("GOOGLE_CLOUD_PROJECT", "proj")
        .env("GOOGLE_GEMINI_BASE_URL", format!("{}/", api.uri()))
        .args(["--model", "gemini-x", "--prompt", "hi"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(crate::common::examples::stdout(&out), "from vertex\n");
    assert_eq!(crate::common::requests_to(&tokens, "/token").await.len(), 1);
}

/// google-genai puts its paths before a base URL's query; ours would go
/// after it (`/gw/?x=1/v1/models`), so such a base is refused, not misrouted.
#[tokio::test]
async fn a_base_url_with_a_query_is_refused_not_misrouted() {
    for base in [
        "http://127.0.0.1:9/gw/?key=AIzaQUERYMARKER",
        "http://127.0.0.1:9/gw#MARKER",
    ] {
        let err = CredentialLoader::from_env()
            .key("AIzaKEYMARKER")
            .base_url(base)
            .load()
            .await
            .unwrap_err();
        assert!(
            matches!(err, gemini_oauth::Error::InvalidUrl { .. }),
            "{base}: {err:?}"
        );
        assert!(err.to_string().contains("query"), "{err}");
        assert!(!format!("{err} {err:?}").contains("MARKER"), "{err:?}");
        let err = CredentialLoader::api_key("AIzaKEYMARKER")
            .api_base(base)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, gemini_oauth::Error::InvalidUrl { .. }),
            "{base}: {err:?}"
        );
    }
}
