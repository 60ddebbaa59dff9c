//! A web app's users sign in, end to end with the real parts: the
//! `web_sign_in` example (axum) as the app, oidc-provider as the
//! authorization server with a "web" client whose redirect URI is the app's,
//! and headless Chromium (tests/browser/consent.mjs) signing in two users on
//! oidc-provider's own login and consent pages. Each user's `/models` call
//! reaches the local Gemini server with that user's own token; one user's
//! sign-out revokes and deletes that user's token and leaves the other
//! signed in. With feature `redis`: two replicas of the app sharing a real
//! redis-server (and the session key) make one refresh per user when the
//! users' tokens have expired.

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
use crate::common::port_to_bind_later;
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
    let session = cookies
        .iter()
        .find(|c| c["name"] == "session")
        .unwrap_or_else(|| panic!("no session cookie: {report:#}"));
    // The browser keeps it the example's 7 days (Max-Age), not for ever.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let left = session["expires"].as_f64().unwrap() - now.unwrap().as_secs_f64();
    let week = 7.0 * 24.0 * 3600.0;
    assert!(left > week - 3600.0 && left <= week + 60.0, "{session}");
    format!("session={}", session["value"].as_str().unwrap())
}

/// The local Gemini API: lists one model, and notes each bearer token.
async fn gemini_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = Arc::clone(&seen);
    let url = serve(move |req| {
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
    (url, seen)
}

/// The web client's client_secret.json on `oidc`, in `dir`.
fn web_client_secret(dir: &Path, oidc: &OidcServer, redirect: &str) -> PathBuf {
    let secret = dir.join("client_secret.json");
    let web = json!({"web": {
        "client_id": WEB_CLIENT_ID, "client_secret": WEB_CLIENT_SECRET,
        "auth_uri": oidc.auth, "token_uri": oidc.token, "redirect_uris": [redirect],
    }});
    std::fs::write(&secret, web.to_string()).unwrap();
    secret
}

/// Starts the example on `port` (0: any free port) with `args`, once it
/// serves; returns it and the port it serves on.
fn start_app(port: u16, args: &[&str]) -> (Killed, u16) {
    let mut app = Killed(
        example("web_sign_in")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(app.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let bound = first
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not serving: {first:?}"));
    assert!(port == 0 || port == bound, "{first}");
    (app, bound)
}

/// Signs `user` in in Chromium, starting at `app`'s `/login`, and checks the
/// pages it went through, to the end at the redirect URI's app `lands`;
/// returns the app's session cookie.
async fn sign_in_at(
    dir: &Path,
    (app, lands): (&str, &str),
    oidc: &OidcServer,
    log: &Path,
    user: &str,
) -> String {
    let report = sign_in_in_chromium(dir, app, &oidc.issuer, user).await;
    let ctx = format!(
        "report: {report:#}\noidc log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
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
    assert_eq!(
        format!("http://{}", last["host"].as_str().unwrap()),
        lands,
        "{ctx}"
    );
    assert_eq!(last["path"], "/models", "{ctx}");
    assert_eq!(last["status"], 200, "{ctx}");
    let text = last["text"].as_str().unwrap();
    assert!(text.contains(&format!("Signed in as {user}")), "{ctx}");
    assert!(text.contains("models/gemini-web-test"), "{ctx}");
    session_cookie(&report)
}

async fn sign_in(dir: &Path, app: &str, oidc: &OidcServer, log: &Path, user: &str) -> String {
    sign_in_at(dir, (app, app), oidc, log, user).await
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
    let port = port_to_bind_later();
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

    let (gemini, seen) = gemini_server().await;
    let secret = web_client_secret(dir.path(), &oidc, &redirect);
    let store = dir.path().join("users");
    let _app = start_app(
        port,
        &[
            "--client-secret",
            secret.to_str().unwrap(),
            "--store-dir",
            store.to_str().unwrap(),
            "--api-base",
            &format!("{gemini}/v1beta"),
            "--revoke-uri",
            &oidc.revoke,
        ],
    );
    let mut cookies = Vec::new();
    for user in ["alice", "bob"] {
        cookies.push(sign_in(dir.path(), &app, &oidc, &log, user).await);
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

/// Two replicas of the app share the users' tokens in a real redis-server
/// and the key that signs sessions. Both users sign in (Chromium): alice
/// through replica A, bob starting at replica B with the callback reaching
/// replica A (the pending sign-in travels in a signed cookie); their tokens
/// then expire (in Redis, while no replica holds
/// them in memory), and replicas B and C serve many concurrent `/models`
/// calls of both users: each user's token is refreshed once. The proof is
/// at the Gemini server: oidc-provider hands out a new access token per
/// refresh, and every call of a user carries the same new one, the one in
/// Redis.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_refresh_each_user_once_per_expiry() {
    use crate::redis_store::RedisServer;

    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start().await;
    let redis_url = redis.url();
    let port_a = port_to_bind_later();
    let app_a = format!("http://127.0.0.1:{port_a}");
    let redirect = format!("{app_a}/oauth2callback");
    let log = dir.path().join("oidc.log");
    let oidc = OidcServer::start_logging_to(
        &[
            ("OIDC_INTERACTIVE", "1"),
            ("OIDC_WEB_REDIRECT_URIS", &redirect),
        ],
        &log,
    );
    let (gemini, seen) = gemini_server().await;
    let secret = web_client_secret(dir.path(), &oidc, &redirect);
    let key_file = dir.path().join("session.key");
    std::fs::write(&key_file, b"a key shared by the replicas, 32+ bytes long").unwrap();
    let api_base = format!("{gemini}/v1beta");
    let args = [
        "--client-secret",
        secret.to_str().unwrap(),
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        "app:users:",
        "--session-key-file",
        key_file.to_str().unwrap(),
        "--api-base",
        &api_base,
        "--revoke-uri",
        &oidc.revoke,
        "--redirect-uri",
        &redirect,
    ];

    let replica_a = start_app(port_a, &args);
    let (replica_b, port_b) = start_app(0, &args);
    let alice = sign_in(dir.path(), &app_a, &oidc, &log, "alice").await;
    // Bob's sign-in starts at replica B; the callback reaches replica A.
    let app_b = format!("http://127.0.0.1:{port_b}");
    let bob = sign_in_at(dir.path(), (&app_b, &app_a), &oidc, &log, "bob").await;
    drop((replica_a, replica_b));

    // Both tokens expire in Redis.
    let mut con = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut signed_in_tokens = Vec::new();
    for user in ["alice", "bob"] {
        let key = format!("app:users:{user}");
        let json: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        let mut record: Value = serde_json::from_str(&json).unwrap();
        signed_in_tokens.push(record["token"].as_str().unwrap().to_owned());
        record["expiry"] = json!("2020-01-01T00:00:00Z");
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(record.to_string())
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let before = seen.lock().unwrap().len();

    let (_replica_b, port_b) = start_app(0, &args);
    let (_replica_c, port_c) = start_app(0, &args);
    let mut calls = Vec::new();
    for round in 0..3 {
        for port in [port_b, port_c] {
            for (user, cookie) in [("alice", &alice), ("bob", &bob)] {
                let url = format!("http://127.0.0.1:{port}/models");
                let cookie = cookie.clone();
                calls.push(tokio::spawn(async move {
                    let (status, page) = call("GET", &url, Some(&cookie), None).await;
                    (round, user, status, page)
                }));
            }
        }
    }
    for c in calls {
        let (round, user, status, page) = c.await.unwrap();
        assert_eq!(status, 200, "round {round}, {user}: {page}");
        assert!(page.contains(&format!("Signed in as {user}")), "{page}");
    }

    let mut expected = Vec::new();
    for (user, old) in ["alice", "bob"].iter().zip(&signed_in_tokens) {
        let json = redis.get(&format!("app:users:{user}")).await.unwrap();
        let record: Value = serde_json::from_str(&json).unwrap();
        let new = record["token"].as_str().unwrap().to_owned();
        assert_ne!(&new, old, "{user}'s expired token was refreshed");
        expected.push(format!("Bearer {new}"));
    }
    assert!(redis.get("app:users:alice:lock").await.is_none());
    let mut after: Vec<String> = seen.lock().unwrap()[before..].to_vec();
    after.sort();
    let mut want: Vec<String> = [&expected[0]; 6]
        .into_iter()
        .chain([&expected[1]; 6])
        .cloned()
        .collect();
    want.sort();
    assert_eq!(
        after, want,
        "12 calls, each with its user's one refreshed token"
    );
}
