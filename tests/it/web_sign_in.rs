//! A web app's users sign in, end to end with the real parts: the
//! `web_sign_in` example (axum) as the app, oidc-provider as the
//! authorization server with a "web" client whose redirect URI is the app's,
//! and headless Chromium (tests/browser/consent.mjs) signing in two users on
//! oidc-provider's own login and consent pages. Each user's `/models` call
//! reaches the local Gemini server with that user's own token; one user's
//! sign-out revokes and deletes that user's token and leaves the other
//! signed in.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::common::examples::example;
use crate::common::gemini_server::{json_resp, serve};
use crate::common::oidc::OidcServer;
use crate::common::read_json;

const WEB_CLIENT_ID: &str = "gemini-oauth-web";
const WEB_CLIENT_SECRET: &str = "web-client-secret";
const DRIVER_TIMEOUT_SECS: u64 = 90;

/// A child process, killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn driver() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/consent.mjs");
    assert!(
        script
            .parent()
            .unwrap()
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `bash .ci/test` (or `npm ci --prefix tests/browser`)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is not installed: run `bash .ci/test` (or `apt-get install chromium`)"
    );
    script
}

/// Chromium, with a profile of its own, signs `login` in at the app's
/// `/login` and answers oidc-provider's pages; returns the driver's report.
async fn sign_in_in_chromium(dir: &Path, app: &str, issuer: &str, login: &str) -> Value {
    let report = dir.join(format!("report-{login}.json"));
    let child = Command::new("node")
        .arg(driver())
        .arg(format!("{app}/login"))
        .env("CONSENT_REPORT", &report)
        .env("CONSENT_BROWSER_DIR", dir.join(format!("chromium-{login}")))
        .env("CONSENT_ISSUER", issuer)
        .env("CONSENT_LOGIN", login)
        .env("CONSENT_ACTION", "consent")
        .env("CONSENT_REPORT_COOKIES", "1")
        .env(
            "CONSENT_DRIVER_TIMEOUT_SECS",
            DRIVER_TIMEOUT_SECS.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let mut child = Killed(child);
    let give_up = Instant::now() + Duration::from_secs(DRIVER_TIMEOUT_SECS + 30);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < give_up,
            "the browser driver did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    read_json(&report)
}

/// The app's session cookie, from a driver report.
fn session_cookie(report: &Value) -> String {
    let cookies = report["cookies"].as_array().expect("cookies in the report");
    let sid = cookies
        .iter()
        .find(|c| c["name"] == "sid")
        .unwrap_or_else(|| panic!("no session cookie: {report:#}"));
    format!("sid={}", sid["value"].as_str().unwrap())
}

/// A request to the app (or any server) as a browser holding `cookie`.
async fn call(method: &str, url: &str, cookie: Option<&str>, form: Option<&str>) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = Full::new(Bytes::from(form.unwrap_or("").to_owned()));
    let resp = client.request(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_sign_in_in_chromium_call_gemini_as_themselves_and_sign_out_alone() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let app = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("oidc.log");
    let redirect = format!("{app}/oauth2callback");
    let oidc = OidcServer::start_logging_to(
        &[
            ("OIDC_INTERACTIVE", "1"),
            ("OIDC_WEB_REDIRECT_URIS", &redirect),
        ],
        &log,
    );

    // The local Gemini API: lists one model, and notes each bearer token.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = Arc::clone(&seen);
    let gemini = serve(move |req| {
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        noted.lock().unwrap().push(auth.unwrap_or_default());
        async move {
            json_resp(
                200,
                &json!({"models": [{"name": "models/gemini-web-test"}]}),
            )
        }
    })
    .await;

    let secret = dir.path().join("client_secret.json");
    let web = json!({"web": {
        "client_id": WEB_CLIENT_ID, "client_secret": WEB_CLIENT_SECRET,
        "auth_uri": oidc.auth, "token_uri": oidc.token, "redirect_uris": [redirect],
    }});
    std::fs::write(&secret, web.to_string()).unwrap();
    let store = dir.path().join("users");
    let mut server = Killed(
        example("web_sign_in")
            .args(["--client-secret", secret.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--store-dir", store.to_str().unwrap()])
            .args(["--api-base", &format!("{gemini}/v1beta")])
            .args(["--revoke-uri", &oidc.revoke])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), format!("listening on {app}"));

    let context = |report: &Value| {
        format!(
            "report: {report:#}\noidc log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let mut cookies = Vec::new();
    for user in ["alice", "bob"] {
        let report = sign_in_in_chromium(dir.path(), &app, &oidc.issuer, user).await;
        let ctx = context(&report);
        assert!(report["error"].is_null(), "{ctx}");
        // Chromium went through the server's login and consent pages...
        let steps = report["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{ctx}");
        assert_eq!(steps[0]["page"], "login", "{ctx}");
        assert_eq!(
            steps[0]["action"],
            format!("filled the login form as {user} and clicked Sign-in"),
            "{ctx}"
        );
        assert_eq!(steps[1]["page"], "consent", "{ctx}");
        assert_eq!(steps[1]["action"], "clicked Continue", "{ctx}");
        // ...then back through the app's callback to its /models page, where
        // the app called Gemini as this user.
        let last = &report["final"];
        assert_eq!(last["host"], format!("127.0.0.1:{port}"), "{ctx}");
        assert_eq!(last["path"], "/models", "{ctx}");
        assert_eq!(last["status"], 200, "{ctx}");
        let text = last["text"].as_str().unwrap();
        assert!(text.contains(&format!("Signed in as {user}")), "{ctx}");
        assert!(text.contains("models/gemini-web-test"), "{ctx}");
        cookies.push(session_cookie(&report));
    }
    let (alice_cookie, bob_cookie) = (&cookies[0], &cookies[1]);

    // One google-auth file per user, keyed by the ID token's sub, each with
    // its own tokens; each user's call carried that user's own token.
    let file = |user: &str| store.join(format!("user-{user}.json"));
    let (alice, bob) = (read_json(&file("alice")), read_json(&file("bob")));
    for (saved, user) in [(&alice, "alice"), (&bob, "bob")] {
        assert_eq!(saved["client_id"], WEB_CLIENT_ID);
        assert_eq!(saved["account"], format!("{user}@example.test"));
        assert!(
            saved["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        let scopes = saved["scopes"].as_array().unwrap();
        assert!(scopes.contains(&json!(crate::common::RETRIEVER)), "{saved}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file(user)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    assert_ne!(alice["token"], bob["token"]);
    assert_ne!(alice["refresh_token"], bob["refresh_token"]);
    let bearer = |saved: &Value| format!("Bearer {}", saved["token"].as_str().unwrap());
    assert_eq!(
        *seen.lock().unwrap(),
        [bearer(&alice), bearer(&bob)],
        "one call per user, each with the user's own token"
    );

    // The app serves each user by their session.
    let (status, page) = call("GET", &format!("{app}/models"), Some(bob_cookie), None).await;
    assert_eq!(
        (status, page.contains("Signed in as bob")),
        (200, true),
        "{page}"
    );

    // Alice signs out: her refresh token is revoked at the server, her file
    // is gone, and her session no longer reaches Gemini.
    let (status, page) = call("POST", &format!("{app}/logout"), Some(alice_cookie), None).await;
    assert_eq!((status, page.contains("Signed out")), (200, true), "{page}");
    assert!(!file("alice").exists());
    let refresh = |saved: &Value| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", saved["refresh_token"].as_str().unwrap())
            .append_pair("client_id", WEB_CLIENT_ID)
            .append_pair("client_secret", WEB_CLIENT_SECRET)
            .finish()
    };
    let (status, answer) = call("POST", &oidc.token, None, Some(&refresh(&alice))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("invalid_grant"), "{answer}");
    let (status, _) = call("GET", &format!("{app}/models"), Some(alice_cookie), None).await;
    assert_eq!(status, 303, "alice is sent to sign in again");

    // Bob is still signed in: his file, his refresh token and his calls.
    assert!(file("bob").exists());
    let (status, page) = call("GET", &format!("{app}/models"), Some(bob_cookie), None).await;
    assert_eq!(
        (status, page.contains("Signed in as bob")),
        (200, true),
        "{page}"
    );
    assert_eq!(seen.lock().unwrap().last(), Some(&bearer(&bob)));
    let (status, answer) = call("POST", &oidc.token, None, Some(&refresh(&bob))).await;
    assert_eq!(status, 200, "{answer}");
}
