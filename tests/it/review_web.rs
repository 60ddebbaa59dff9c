//! Adversarial probes of the web sign-in (`WebFlow`, `UserCredentials`,
//! the keyed stores) that found defects or cover what no other test does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
#[cfg(feature = "redis")]
use std::time::SystemTime;

use gemini_oauth::web::UserCredentials;
use gemini_oauth::{
    DirectoryTokenStore, Error, FileTokenStore, KeyedTokenStore, StoreLock, StoredToken, TokenStore,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;
use crate::web_users::{loader, record};

/// A user's file store that counts its loads and makes each take a while.
#[derive(Clone)]
struct Counting {
    inner: FileTokenStore,
    loads: Arc<AtomicUsize>,
}

impl TokenStore for Counting {
    async fn load(&self) -> gemini_oauth::Result<Option<StoredToken>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.inner.load().await
    }
    async fn save(&self, token: &StoredToken) -> gemini_oauth::Result<()> {
        self.inner.save(token).await
    }
    async fn clear(&self) -> gemini_oauth::Result<()> {
        self.inner.clear().await
    }
    async fn lock(&self, wait: Duration) -> gemini_oauth::Result<Option<StoreLock>> {
        self.inner.lock(wait).await
    }
}

struct CountingUsers {
    dir: DirectoryTokenStore,
    loads: Arc<AtomicUsize>,
}

impl KeyedTokenStore for CountingUsers {
    type Store = Counting;
    fn for_user(&self, user_id: &str) -> gemini_oauth::Result<Counting> {
        Ok(Counting {
            inner: self.dir.for_user(user_id)?,
            loads: Arc::clone(&self.loads),
        })
    }
}

/// Requests arriving together for a user not held yet make one load: two
/// tasks that both found no slot must not each make one (and load twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_together_for_a_new_user_load_once() {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let plain = DirectoryTokenStore::new(dir.path());
    const TRIALS: usize = 400;
    for i in 0..TRIALS {
        plain
            .save(&format!("u{i}"), &record("u", &token_uri(&tokens), 3600))
            .await
            .unwrap();
    }
    let loads = Arc::new(AtomicUsize::new(0));
    let users = UserCredentials::new(
        CountingUsers {
            dir: plain,
            loads: Arc::clone(&loads),
        },
        loader(),
    );
    // What one get costs in loads.
    users.get("u0").await.unwrap();
    let per_get = loads.swap(0, Ordering::SeqCst);
    assert!(per_get >= 1);
    for i in 1..TRIALS {
        let user = format!("u{i}");
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (users, user, barrier) = (users.clone(), user.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    users.get(&user).await.map(|_| ())
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        per_get * (TRIALS - 1),
        "some user was loaded more than once"
    );
    assert_eq!(token_requests(&tokens).await, 0);
}

/// Signing out must not depend on the token endpoint: a user whose access
/// token expired is signed out (revoked, record deleted) while the token
/// endpoint is down, since revocation needs only the refresh token.
#[tokio::test]
async fn sign_out_works_while_the_token_endpoint_is_down() {
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&tokens)
        .await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&revoke)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    store
        .save("alice", &record("alice", &token_uri(&tokens), -60))
        .await
        .unwrap();
    let users = UserCredentials::new(
        store,
        loader().revoke_uri(format!("{}/revoke", revoke.uri())),
    );
    users.sign_out("alice").await.unwrap();
    let revoked = requests_to(&revoke, "/revoke").await;
    assert_eq!(revoked.len(), 1);
    assert!(String::from_utf8_lossy(&revoked[0].body).contains("R-alice"));
    assert!(users.store().load("alice").await.unwrap().is_none());
    assert!(matches!(
        users.get("alice").await,
        Err(Error::ConsentRequired { .. })
    ));
}

/// The example app, killed when dropped, and its base URL.
struct App(std::process::Child, String);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SESSION_KEY: &[u8] = b"review-web-session-key-0123456789";

/// The example on a free port, its users' files in `dir/users`, with a
/// web client whose token and revocation endpoints are `tokens`.
fn start_example(dir: &std::path::Path, tokens: &MockServer) -> App {
    use std::io::BufRead;
    let port = crate::common::port_to_bind_later();
    let secret = dir.join("client_secret.json");
    std::fs::write(
        &secret,
        json!({"web": {
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "auth_uri": format!("{}/auth", tokens.uri()), "token_uri": token_uri(tokens),
        }})
        .to_string(),
    )
    .unwrap();
    let key = dir.join("session.key");
    std::fs::write(&key, SESSION_KEY).unwrap();
    let mut child = crate::common::examples::example("web_sign_in")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--client-secret")
        .arg(&secret)
        .arg("--store-dir")
        .arg(dir.join("users"))
        .arg("--session-key-file")
        .arg(&key)
        .args(["--scope", RETRIEVER])
        .arg("--revoke-uri")
        .arg(format!("{}/revoke", tokens.uri()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(
        first.trim(),
        format!("listening on http://127.0.0.1:{port}")
    );
    App(child, format!("127.0.0.1:{port}"))
}

/// The session cookie the example gives `user` at its sign-in, now.
fn session_for(user: &str) -> String {
    session_issued(user, unix_now())
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs() as i64
}

/// The session cookie the example would have given `user` at `issued`
/// (Unix seconds).
fn session_issued(user: &str, issued: i64) -> String {
    sealed_session(&format!("{issued}:{user}"))
}

/// `value` in a session cookie signed as the example signs it.
fn sealed_session(value: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let value = b64.encode(value);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SESSION_KEY).unwrap();
    // The example signs the cookie's name with its value.
    mac.update(b"session=");
    mac.update(value.as_bytes());
    format!(
        "session={value}.{}",
        b64.encode(mac.finalize().into_bytes())
    )
}

/// One HTTP/1.1 request on its own connection: the status and the whole
/// answer (head and body).
async fn http(addr: &str, method: &str, target: &str, cookie: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cookie = cookie
        .map(|c| format!("cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\n{cookie}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

/// A top-level cross-site navigation (a link on another site) carries the
/// example's `SameSite=Lax` session cookie: a GET must not sign the user out
/// (revoking their grant); the sign-out is a POST, which such a request
/// cannot make with the cookie.
#[tokio::test]
async fn the_examples_sign_out_is_not_a_get() {
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&tokens)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path().join("users"));
    store
        .save("alice", &record("alice", &token_uri(&tokens), 3600))
        .await
        .unwrap();
    let app = start_example(dir.path(), &tokens);
    let cookie = session_for("alice");
    let (status, home) = http(&app.1, "GET", "/", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(home.contains("Signed in as alice"), "{home}");
    assert!(
        !home.contains("href=\"/logout\""),
        "a sign-out link: {home}"
    );
    let (status, _) = http(&app.1, "GET", "/logout", Some(&cookie)).await;
    assert_ne!(status, 200);
    assert!(requests_to(&tokens, "/revoke").await.is_empty());
    assert!(store.load("alice").await.unwrap().is_some());
    let (status, page) = http(&app.1, "POST", "/logout", Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(requests_to(&tokens, "/revoke").await.len(), 1);
    assert!(store.load("alice").await.unwrap().is_none());
}

/// Whether the example's home page, asked with `cookie`, greets alice.
async fn signed_in_as_alice(app: &App, cookie: String) -> bool {
    let (status, home) = http(&app.1, "GET", "/", Some(&cookie)).await;
    assert_eq!(status, 200, "{home}");
    home.contains("Signed in as alice")
}

/// A session cookie serves 7 days from the sign-in: an older one, one dated
/// ahead of the clock, or one from before sessions carried their date (the
/// bare user id), signs no one in, signature notwithstanding.
#[tokio::test]
async fn the_examples_session_cookie_expires_after_seven_days() {
    let tokens = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = start_example(dir.path(), &tokens);
    let day = 24 * 3600;
    assert!(signed_in_as_alice(&app, session_issued("alice", unix_now() - 6 * day)).await);
    assert!(!signed_in_as_alice(&app, session_issued("alice", unix_now() - 7 * day - 60)).await);
    assert!(!signed_in_as_alice(&app, session_issued("alice", unix_now() + day)).await);
    assert!(!signed_in_as_alice(&app, session_issued("alice", -1)).await);
    // The old format: the user id alone, signed.
    assert!(!signed_in_as_alice(&app, sealed_session("alice")).await);
}

/// Replicas' clocks differ a little, and seconds are whole: a session that
/// replica A dates 101 at 101.05 reaches replica B at its 100.9 straight
/// after the callback. A session dated a few seconds ahead serves (else the
/// sign-in ends at `/login` again); one dated far ahead still does not.
#[tokio::test]
async fn a_session_dated_a_little_ahead_by_another_replicas_clock_serves() {
    let tokens = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = start_example(dir.path(), &tokens);
    assert!(signed_in_as_alice(&app, session_issued("alice", unix_now() + 1)).await);
    assert!(signed_in_as_alice(&app, session_issued("alice", unix_now() + 30)).await);
    assert!(!signed_in_as_alice(&app, session_issued("alice", unix_now() + 3600)).await);
    // Huge, negative and malformed dates, and a user id with colons.
    for issued in [
        "18446744073709551615",
        "18446744073709551616",
        "-5",
        "x",
        "",
    ] {
        assert!(!signed_in_as_alice(&app, sealed_session(&format!("{issued}:alice"))).await);
    }
    let (_, home) = http(
        &app.1,
        "GET",
        "/",
        Some(&session_issued("a:b:alice", unix_now())),
    )
    .await;
    assert!(home.contains("Signed in as a:b:alice"), "{home}");
}

/// Anyone may start sign-ins at `/login`, and the example keeps nothing for
/// them: the pending sign-in is a signed cookie that lives 10 minutes. A
/// tampered one is refused, and one kind of cookie never passes for another.
#[tokio::test]
async fn the_examples_pending_sign_in_cookie_cannot_be_forged() {
    let tokens = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = start_example(dir.path(), &tokens);
    let (status, answer) = http(&app.1, "GET", "/login", None).await;
    assert_eq!(status, 303, "{answer}");
    let set = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: pending="))
        .unwrap();
    assert!(
        set.contains("Max-Age=600") && set.contains("HttpOnly"),
        "{set}"
    );
    let value = set.split(';').next().unwrap();
    // Taken: its state does not match this callback's, so no exchange.
    let callback = "/oauth2callback?state=s&code=c";
    let (status, page) = http(&app.1, "GET", callback, Some(&format!("pending={value}"))).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("does not answer this sign-in"), "{page}");
    // One byte of the signed value changed: refused.
    let (payload, tag) = value.split_once('.').unwrap();
    let flipped = if payload.starts_with('A') { "B" } else { "A" };
    let forged = format!("pending={flipped}{}.{tag}", &payload[1..]);
    let (status, page) = http(&app.1, "GET", callback, Some(&forged)).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("No sign-in"), "{page}");
    // The same signed value as a session cookie signs no one in.
    let (status, page) = http(&app.1, "GET", "/", Some(&format!("session={value}"))).await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("Signed in as"), "{page}");
    assert!(tokens.received_requests().await.unwrap().is_empty());
}

/// Requests for a user race that user's sign-out, while other users' requests
/// evict them (capacity 1): once `sign_out` returns, the user's record is
/// gone and no credentials come back to life, from the store or the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_outlive_a_sign_out_raced_by_requests() {
    let tokens = token_endpoint().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(30)))
        .mount(&tokens)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let users = UserCredentials::new(
        DirectoryTokenStore::new(dir.path()),
        loader().revoke_uri(format!("{}/revoke", tokens.uri())),
    )
    .capacity(1);
    for round in 0..30 {
        let user = format!("u{round}");
        users
            .sign_in(&user, record(&user, &token_uri(&tokens), 3600))
            .await
            .unwrap();
        let requests: Vec<_> = (0..6)
            .map(|i| {
                let (users, user) = (users.clone(), user.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i * 7)).await;
                    if i % 2 == 0 {
                        let _ = users.get("other").await;
                    }
                    match users.get(&user).await {
                        Ok(creds) => creds.access_token().await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                })
            })
            .collect();
        users.sign_out(&user).await.unwrap();
        for r in requests {
            match r.await.unwrap() {
                Ok(()) | Err(Error::Revoked { .. } | Error::ConsentRequired { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(
            users.store().load(&user).await.unwrap().is_none(),
            "round {round}"
        );
        assert!(
            matches!(users.get(&user).await, Err(Error::ConsentRequired { .. })),
            "round {round}"
        );
    }
}

/// Redis stops answering (a silent network, no reset) while a user's token
/// is being refreshed: the request gets the new token once the save times
/// out, and the next user's load fails in bounded time, never hangs.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_mid_refresh_bounds_every_request() {
    use crate::common::fault_proxy::{FaultProxy, Gate, Toxic};
    use crate::redis_store::RedisServer;
    let redis = RedisServer::start().await;
    let upstream = redis.url()["redis://".len()..]
        .trim_end_matches("/0")
        .parse()
        .unwrap();
    let proxy = FaultProxy::to(upstream).await;
    let client = redis::Client::open(format!("redis://{}/0", proxy.addr())).unwrap();
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"access_token": "ya29.NEW", "expires_in": 3599, "scope": RETRIEVER}),
                )
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&tokens)
        .await;
    let store = gemini_oauth::RedisKeyedTokenStore::new(client, "t:");
    store
        .save("alice", &record("alice", &token_uri(&tokens), -60))
        .await
        .unwrap();
    let users = UserCredentials::new(store, loader());
    let u = users.clone();
    let call = tokio::spawn(async move {
        let creds = u.get("alice").await?;
        creds.access_token().await.map(|t| t.secret().to_owned())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(Toxic::Silent, Gate::Accept).await;
    let token = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the refresh ends")
        .unwrap()
        .unwrap();
    assert_eq!(token, "ya29.NEW");
    let bob = tokio::time::timeout(Duration::from_secs(30), users.get("bob"))
        .await
        .expect("the load ends");
    assert!(matches!(bob, Err(Error::Store { .. })), "{bob:?}");
}

/// Every way `WebFlow::finish` can fail after the exchange (a refused code,
/// an ID token that is no JWT or is another client's, a body that is no
/// JSON, no access token), and its success: no secret (the client secret,
/// the code, tokens, the state) in `Display` or `Debug`.
#[tokio::test]
async fn finish_shows_no_secret_whatever_the_token_endpoint_answers() {
    use base64::Engine;
    use gemini_oauth::web::{SignInOptions, WebFlow};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = |claims: serde_json::Value| {
        format!(
            "{}.{}.SIGMARKER",
            b64.encode(r#"{"alg":"RS256"}"#),
            b64.encode(claims.to_string())
        )
    };
    let tokens = |id_token: Option<String>| {
        let mut body =
            json!({"access_token": "ya29.ATMARKER", "refresh_token": "1//RTMARKER", "scope": "s1"});
        if let Some(id) = id_token {
            body["id_token"] = json!(id);
        }
        ResponseTemplate::new(200).set_body_json(body)
    };
    let answers = [
        ResponseTemplate::new(400)
            .set_body_json(json!({"error": "invalid_grant", "error_description": "Bad Request"})),
        tokens(Some("IDTMARKER.notjwt".into())),
        tokens(Some(jwt(json!({"aud": "other", "sub": "1", "exp": 1})))),
        ResponseTemplate::new(200).set_body_string("ya29.BODYMARKER 1//BODYMARKER"),
        ResponseTemplate::new(200).set_body_json(json!({"refresh_token": "1//RTMARKER"})),
        tokens(Some(jwt(
            json!({"aud": ["web-client", "x"], "sub": "SUB", "exp": 1}),
        ))),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let secret = gemini_oauth::ClientSecret::from_json(
            json!({"web": {
                "client_id": "web-client", "client_secret": "CLIENTSECRETMARKER",
                "auth_uri": "https://accounts.example/o/auth",
                "token_uri": format!("{}/token", server.uri()),
            }})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let flow = WebFlow::new(secret, "http://127.0.0.1:9/cb")
            .unwrap()
            .scopes(["s1"]);
        let (url, pending) = flow.authorization_url(&SignInOptions::new()).unwrap();
        let query = url.split_once('?').unwrap().1;
        let state = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let callback = format!("state={state}&code=4%2FCODEMARKER");
        let shown = match flow.finish(&pending, &callback).await {
            Ok(done) => {
                assert_eq!((i, done.subject()), (5, Some("SUB")));
                format!("{done:?} {:?}", done.token())
            }
            Err(e) => format!("{e} {e:?}"),
        };
        let shown = format!("{shown} {pending:?} {flow:?}");
        assert!(
            !shown.contains("MARKER") && !shown.contains(&state),
            "{i}: {shown}"
        );
    }
}

/// The extreme user ids on a real file system: the longest one with every
/// byte encoded (its file, lock and temporary file names fit), NUL, emoji,
/// `.`/`..`, device names; and the map's bounds at their extremes
/// (capacity 0 is 1; an idle timeout of `Duration::MAX` evicts nothing and
/// does not overflow).
#[tokio::test]
async fn extreme_user_ids_and_bounds() {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path().join("users"));
    let longest = "é".repeat(gemini_oauth::MAX_USER_ID_LEN / 2);
    let ids = [
        longest.as_str(),
        "\0",
        "a\0b",
        "..",
        ".",
        "CON",
        "nul",
        "🦀",
        " ",
    ];
    for (i, id) in ids.iter().enumerate() {
        store
            .save(id, &record(&format!("n{i}"), &token_uri(&tokens), 3600))
            .await
            .unwrap();
        let _lock = store.lock(id, Duration::from_secs(1)).await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let got = store.load(id).await.unwrap().unwrap();
        assert_eq!(got.access_token(), Some(format!("ya29.OLD-n{i}").as_str()));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let users = UserCredentials::new(store, loader())
        .capacity(0)
        .idle_timeout(Duration::MAX);
    for id in ids {
        users.get(id).await.unwrap();
        assert_eq!(users.len(), 1);
    }
    assert_eq!(users.evict_idle(), 0);
    assert_eq!(token_requests(&tokens).await, 0);
}

/// The map over Redis, two replicas: a sign-in without a refresh token keeps
/// the stored one; a replica signs out users the other signed in (one of
/// them expired, so revoked with no refresh); two sign-ins of one user at
/// once both succeed, one record left.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replicas_sign_users_in_and_out() {
    use crate::redis_store::RedisServer;
    let redis = RedisServer::start().await;
    let tokens = token_endpoint().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&tokens)
        .await;
    let users = UserCredentials::new(
        gemini_oauth::RedisKeyedTokenStore::new(redis.client(), "w:"),
        loader().revoke_uri(format!("{}/revoke", tokens.uri())),
    );
    let other = UserCredentials::new(
        gemini_oauth::RedisKeyedTokenStore::new(redis.client(), "w:"),
        loader().revoke_uri(format!("{}/revoke", tokens.uri())),
    );
    users
        .sign_in("alice", record("alice", &token_uri(&tokens), 3600))
        .await
        .unwrap();
    let held = other.get("alice").await.unwrap();
    assert_eq!(
        held.access_token().await.unwrap().secret(),
        "ya29.OLD-alice"
    );
    // sign in again without refresh token: keeps the stored one
    let again = json!({
        "token": "ya29.AGAIN", "token_uri": token_uri(&tokens), "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "scopes": [RETRIEVER],
        "expiry": expiry(SystemTime::now() + Duration::from_secs(3600)),
    });
    let again = StoredToken::from_json(again.to_string().as_bytes()).unwrap();
    users.sign_in("alice", again).await.unwrap();
    assert_eq!(
        redis.get("w:alice").await.map(|j| j.contains("R-alice")),
        Some(true)
    );
    // expired, then sign out from the other replica
    users
        .sign_in("bob", record("bob", &token_uri(&tokens), -60))
        .await
        .unwrap();
    other.sign_out("alice").await.unwrap();
    other.sign_out("bob").await.unwrap();
    assert_eq!(redis.get("w:alice").await, None);
    assert_eq!(redis.get("w:bob").await, None);
    // two sign-ins of one user at once
    let (a, b) = tokio::join!(
        users.sign_in("carol", record("carol", &token_uri(&tokens), 3600)),
        other.sign_in("carol", record("carol", &token_uri(&tokens), 3000)),
    );
    a.unwrap();
    b.unwrap();
    assert!(redis.get("w:carol").await.is_some());
    assert_eq!(requests_to(&tokens, "/revoke").await.len(), 2);
}

/// A session key anyone can guess (an empty or short `--session-key-file`:
/// a secret mount that came up empty) would let anyone forge any user's
/// session cookie: the example refuses to start with one.
#[tokio::test]
async fn the_example_refuses_a_guessable_session_key() {
    let tokens = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret.json");
    std::fs::write(
        &secret,
        json!({"web": {
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "auth_uri": format!("{}/auth", tokens.uri()), "token_uri": token_uri(&tokens),
        }})
        .to_string(),
    )
    .unwrap();
    for key in [&b""[..], b"\n", b"short-key"] {
        let key_file = dir.path().join("session.key");
        std::fs::write(&key_file, key).unwrap();
        let child = crate::common::examples::example("web_sign_in")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--client-secret")
            .arg(&secret)
            .arg("--store-dir")
            .arg(dir.path().join("users"))
            .arg("--session-key-file")
            .arg(&key_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut app = App(child, String::new());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = app.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serving with the session key {key:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut app.0.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(stderr.contains("session key"), "{stderr}");
    }
}

/// A `PendingSignIn` read back with an empty `state` (a session row whose
/// column came back empty) made the state check pass for a callback with
/// `state=` and no secret at all: such a record is refused when read, as
/// one with a verifier RFC 7636 does not allow.
#[test]
fn a_pending_sign_in_without_state_or_verifier_is_refused() {
    use gemini_oauth::web::PendingSignIn;
    let pending = |state: &str, verifier: &str| {
        serde_json::from_value::<PendingSignIn>(json!({
            "state": state, "verifier": verifier, "scopes": [RETRIEVER],
            "redirect_uri": "http://127.0.0.1:9/cb", "started_at": 1_800_000_000u64,
        }))
    };
    let verifier = "v".repeat(43);
    assert!(pending("", &verifier).is_err());
    assert!(pending("state", "").is_err());
    assert!(pending("state", &"v".repeat(42)).is_err());
    assert!(pending("state", &"v".repeat(129)).is_err());
    let err = pending("", &verifier).err().unwrap().to_string();
    assert!(!err.contains(&verifier), "{err}");
    assert!(pending("state", &verifier).is_ok());
}
