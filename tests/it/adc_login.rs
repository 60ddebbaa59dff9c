//! `login` (our `gcloud auth application-default login`) against the real
//! OAuth server, then the file it wrote used by our resolver and by Python's
//! `google.auth.default()`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::browser;
use crate::common::examples::{example, stdout};
use crate::common::oidc::{self, OidcServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_writes_gcloud_adc_that_rust_and_python_both_use() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client_file = dir.path().join("client_secret.json");
    std::fs::write(
        &client_file,
        server.client_secret_json(oidc::CLIENT_ID, oidc::CLIENT_SECRET),
    )
    .unwrap();
    let config = dir.path().join("gcloud");
    let adc = config.join("application_default_credentials.json");
    let scopes = format!(
        "{},{}",
        gemini_oauth::scopes::CLOUD_PLATFORM,
        gemini_oauth::scopes::GENERATIVE_LANGUAGE_RETRIEVER
    );

    // No --out: the well-known location under CLOUDSDK_CONFIG, created on demand.
    let mut child = example("login")
        .env("CLOUDSDK_CONFIG", &config)
        .env("HOME", dir.path())
        .args([
            "--client-id-file",
            client_file.to_str().unwrap(),
            "--scopes",
            &scopes,
        ])
        .args(["--no-browser", "--quota-project", "my-quota"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), gemini_oauth::VISIT_PROMPT);
    let url = lines.next().unwrap().unwrap();
    let location = browser::get(&url).await.location.unwrap();
    assert_eq!(browser::get(&location).await.status, 200);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("Credentials saved to file")
            && l.contains("application_default_credentials.json")),
        "{rest:?}"
    );

    let text = std::fs::read_to_string(&adc).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "account",
            "client_id",
            "client_secret",
            "quota_project_id",
            "refresh_token",
            "type",
            "universe_domain"
        ]
    );
    assert_eq!(v["type"], "authorized_user");
    assert_eq!(v["quota_project_id"], "my-quota");
    assert!(text.starts_with("{\n  \"account\": \"\",\n"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&adc).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Our resolver finds it through CLOUDSDK_CONFIG and refreshes at the real server.
    let out = example("print_access_token")
        .env("CLOUDSDK_CONFIG", &config)
        .env("HOME", dir.path())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .args(["--adc", "--token-uri", &server.token])
        .output()
        .unwrap();
    assert!(!stdout(&out).trim().is_empty());

    // Python's google.auth.default() accepts it and refreshes it too.
    let out = crate::common::python()
        .args(["adc-default", &server.token])
        .env("CLOUDSDK_CONFIG", &config)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("NO_GCE_CHECK", "true")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["class"], "google.oauth2.credentials.Credentials");
    assert_eq!(report["refresh_token"], v["refresh_token"]);
    assert_eq!(report["client_id"], oidc::CLIENT_ID);
    assert_eq!(report["quota_project_id"], "my-quota");
    assert_eq!(report["valid_after"], true);
}
