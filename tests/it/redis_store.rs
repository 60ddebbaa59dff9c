//! `RedisTokenStore` against a real `redis-server` started per test on
//! 127.0.0.1 (Debian package `redis-server`): storage, errors, the lock, and
//! one refresh for workers that share a token only through Redis.
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use gemini_oauth::{
    Consent, CredentialLoader, Error, RedisTokenStore, StoreLock, StoredToken, TokenStore,
};
use serde_json::json;
use wiremock::ResponseTemplate;

const KEY: &str = "gemini-oauth:test";
const PASSWORD: &str = "s3cretREDISPASS";

/// A `redis-server` on a free loopback port, killed on drop (also used by
/// the web sign-in tests).
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
    password: Option<&'static str>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(password: Option<&'static str>) -> Self {
        let port = crate::common::port_to_bind_later();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server is needed: apt-get install redis-server");
        let server = RedisServer {
            child,
            port,
            password,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.ping().await.is_ok() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn url(&self) -> String {
        match self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// A store with its own client, as on another machine.
    fn store(&self) -> RedisTokenStore {
        RedisTokenStore::new(self.client(), KEY)
    }

    async fn ping(&self) -> redis::RedisResult<String> {
        let mut con = self.client().get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async(&mut con).await
    }

    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let mut con = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        cmd.query_async(&mut con).await.unwrap()
    }

    pub(crate) async fn get(&self, key: &str) -> Option<String> {
        self.cmd(redis::cmd("GET").arg(key)).await
    }

    async fn pttl(&self, key: &str) -> i64 {
        self.cmd::<i64>(redis::cmd("PTTL").arg(key)).await
    }

    async fn del(&self, key: &str) {
        self.cmd::<i64>(redis::cmd("DEL").arg(key)).await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn lock(store: &RedisTokenStore, wait: Duration) -> StoreLock {
    store
        .lock(wait)
        .await
        .unwrap()
        .expect("a Redis store locks")
}

/// Waits until `key` holds `want` (the release runs in a spawned task).
async fn wait_for(server: &RedisServer, key: &str, want: Option<&str>) {
    for _ in 0..100 {
        if server.get(key).await.as_deref() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.get(key).await.as_deref(), want, "{key}");
}

#[tokio::test]
async fn empty_key_round_trip_and_clear() {
    let server = RedisServer::start().await;
    let store = server.store();
    assert!(store.load().await.unwrap().is_none());

    let json = token_json("https://oauth2.googleapis.com/token", 3600);
    let token = StoredToken::from_json(json.as_bytes()).unwrap();
    store.save(&token).await.unwrap();
    // Exactly what google-auth writes, with no TTL on the key.
    let raw = server.get(KEY).await.unwrap();
    assert_eq!(raw, token.to_json());
    assert_eq!(raw, json);
    assert_eq!(server.cmd::<i64>(redis::cmd("TTL").arg(KEY)).await, -1);
    let back = store.load().await.unwrap().unwrap();
    assert_eq!(back.to_json(), raw);

    store.clear().await.unwrap();
    assert!(store.load().await.unwrap().is_none());
    assert_eq!(server.get(KEY).await, None);
    store.clear().await.unwrap();
}

#[tokio::test]
async fn the_password_works_and_never_shows() {
    let server = RedisServer::start_with(Some(PASSWORD)).await;
    let store = RedisTokenStore::open(&server.url(), KEY).unwrap();
    assert_eq!(store.name(), format!("redis key {KEY}"));
    let debug = format!("{store:?}");
    assert!(debug.contains(KEY), "{debug}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    store.save(&StoredToken::default()).await.unwrap();
    assert!(store.load().await.unwrap().is_some());

    // A wrong password is an error that names neither password.
    let wrong = format!("redis://:WRONGPASS@127.0.0.1:{}/0", server.port);
    let err = RedisTokenStore::open(&wrong, KEY)
        .unwrap()
        .load()
        .await
        .unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(
        !text.contains(PASSWORD) && !text.contains("WRONGPASS"),
        "{text}"
    );
}

fn error_chain(err: &Error) -> String {
    let mut text = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" / {s}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_an_empty_store() {
    let port = crate::common::port_to_bind_later(); // nothing listens there any more
    let store = RedisTokenStore::open(&format!("redis://127.0.0.1:{port}"), KEY).unwrap();
    let err = store.load().await.unwrap_err();
    assert!(
        matches!(&err, Error::Store { store, action: "load", .. } if store.contains(KEY)),
        "{err:?}"
    );
    assert!(store.save(&StoredToken::default()).await.is_err());
    assert!(store.lock(Duration::from_millis(100)).await.is_err());
}

#[tokio::test]
async fn corrupt_json_is_an_error_naming_the_key_and_is_left_alone() {
    let server = RedisServer::start().await;
    server
        .cmd::<()>(redis::cmd("SET").arg(KEY).arg(r#"{"token": "ya29.trunc"#))
        .await;
    let err = server.store().load().await.unwrap_err();
    assert!(matches!(err, Error::TokenFile { .. }), "{err:?}");
    assert!(err.to_string().contains(KEY), "{err}");
    assert!(!err.to_string().contains("ya29.trunc"), "{err}");
    assert_eq!(
        server.get(KEY).await.as_deref(),
        Some(r#"{"token": "ya29.trunc"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_owner_waits_until_the_first_drops_the_lock() {
    let server = RedisServer::start().await;
    let (a, b) = (server.store(), server.store());
    let held = lock(&a, Duration::from_secs(1)).await;
    let lock_key = format!("{KEY}:lock");
    assert_eq!(a.lock_key(), lock_key);
    assert!(server.get(&lock_key).await.is_some());
    // Default TTL: 30 s.
    let pttl: i64 = server.cmd(redis::cmd("PTTL").arg(&lock_key)).await;
    assert!((29_000..=30_000).contains(&pttl), "{pttl}");

    let err = b.lock(Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&lock_key), "{err}");

    drop(held);
    // Waiting 5 s, far less than the 30 s TTL: only a release lets B in.
    let _second = lock(&b, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_owner_vanished_expires_by_its_ttl() {
    let server = RedisServer::start().await;
    let a = server.store().lock_ttl(Duration::from_millis(500));
    let held = lock(&a, Duration::from_secs(1)).await;
    // Dropped outside any tokio runtime: nothing can release it, as when the
    // process died.
    std::thread::spawn(move || drop(held)).join().unwrap();
    let lock_key = format!("{KEY}:lock");
    assert!(server.get(&lock_key).await.is_some());

    let b = server.store();
    let start = Instant::now();
    let _second = lock(&b, Duration::from_secs(5)).await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_the_lock_beyond_its_ttl() {
    let server = RedisServer::start().await;
    let lock_key = format!("{KEY}:lock");
    let a = server.store().lock_ttl(Duration::from_millis(300));
    let held = lock(&a, Duration::from_secs(1)).await;
    // Four TTLs later the holder still has it: it was renewed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(server.pttl(&lock_key).await > 0);
    let b = server.store();
    let err = b.lock(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    drop(held);
    let _second = lock(&b, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_releases_the_lock() {
    let server = RedisServer::start().await;
    let lock_key = format!("{KEY}:lock");
    let a = server.store().lock_ttl(Duration::from_millis(200));
    let stale = lock(&a, Duration::from_secs(1)).await;
    // A's lock is lost (as when A was partitioned past the TTL); B takes it over.
    server.del(&lock_key).await;
    let b = server.store();
    let current = lock(&b, Duration::from_secs(1)).await;
    let owner_b = server.get(&lock_key).await.unwrap();

    drop(stale);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.get(&lock_key).await.as_deref(), Some(&*owner_b));
    let err = a.lock(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    drop(current);
    wait_for(&server, &lock_key, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_machines_sharing_an_expired_token_make_one_refresh() {
    let redis = RedisServer::start().await;
    let endpoint = token_server([ResponseTemplate::new(200)
        .set_body_json(json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer"
        }))
        .set_delay(Duration::from_millis(300))])
    .await;
    let expired = token_json(&token_uri(&endpoint), -60);
    let seed = StoredToken::from_json(expired.as_bytes()).unwrap();
    redis.store().save(&seed).await.unwrap();

    let url = redis.url();
    let machines: Vec<_> = (0..8)
        .map(|_| {
            // Its own client and connections: nothing shared but Redis.
            let store = RedisTokenStore::open(&url, KEY).unwrap();
            tokio::spawn(async move {
                let creds = CredentialLoader::new()
                    .token_store(store)
                    .consent(Consent::Never)
                    .load()
                    .await?;
                creds.access_token().await.map(|t| t.secret().to_owned())
            })
        })
        .collect();
    for m in machines {
        assert_eq!(m.await.unwrap().unwrap(), NEW_ACCESS);
    }
    assert_eq!(token_requests(&endpoint).await, 1);

    let stored: serde_json::Value = serde_json::from_str(&redis.get(KEY).await.unwrap()).unwrap();
    assert_eq!(stored["token"], NEW_ACCESS);
    assert_eq!(stored["refresh_token"], REFRESH_TOKEN);
    wait_for(&redis, &format!("{KEY}:lock"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_lock_does_not_save_over_the_new_holders_token() {
    let server = RedisServer::start().await;
    let lock_key = format!("{KEY}:lock");
    let a = server.store();
    let held = lock(&a, Duration::from_secs(1)).await;
    // A's lock is lost (partitioned past its TTL); B takes it and saves.
    server.del(&lock_key).await;
    let b = server.store();
    let b_lock = lock(&b, Duration::from_secs(1)).await;
    let newer = StoredToken::from_json(token_json("https://t/token", 3000).as_bytes()).unwrap();
    b.save(&newer).await.unwrap();
    let saved_by_b = server.get(KEY).await.unwrap();

    let older = StoredToken::from_json(token_json("https://t/token", 10).as_bytes()).unwrap();
    let err = a.save(&older).await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("another holder"),
        "{}",
        error_chain(&err)
    );
    assert_eq!(
        server.get(KEY).await.unwrap(),
        saved_by_b,
        "B's token stays"
    );

    // Without a lock held, a save still never replaces a newer token.
    drop(held);
    drop(b_lock);
    wait_for(&server, &lock_key, None).await;
    assert!(a.save(&older).await.is_err());
    assert_eq!(server.get(KEY).await.unwrap(), saved_by_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_lock_wait_does_not_panic() {
    let server = RedisServer::start().await;
    let _held = lock(&server.store(), Duration::MAX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_lock_ttl_is_clamped_to_one_that_redis_takes() {
    let server = RedisServer::start().await;
    let store = server.store().lock_ttl(Duration::MAX);
    let _held = lock(&store, Duration::from_secs(1)).await;
    let pttl = server.pttl(&format!("{KEY}:lock")).await;
    assert!(pttl > 0, "{pttl}");
}

fn expiring_in(secs: i64) -> StoredToken {
    StoredToken::from_json(token_json("https://t/token", secs).as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_never_saves_under_another_clones_lock() {
    let server = RedisServer::start().await;
    let lock_key = format!("{KEY}:lock");
    let a = server.store();
    let a2 = a.clone();
    let _lost = lock(&a, Duration::from_secs(1)).await;
    // A's lock expires (a long pause); its clone takes the lock and saves.
    server.del(&lock_key).await;
    let _held = lock(&a2, Duration::from_secs(1)).await;
    let newer = expiring_in(3000);
    a2.save(&newer).await.unwrap();

    let err = a.save(&expiring_in(10)).await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("another holder"),
        "{}",
        error_chain(&err)
    );
    assert_eq!(server.get(KEY).await.unwrap(), newer.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lock_a_save_never_replaces_a_newer_token() {
    let server = RedisServer::start().await;
    let (here, there) = (server.store(), server.store());
    let newer = expiring_in(3000);
    there.save(&newer).await.unwrap();

    let err = here.save(&expiring_in(10)).await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("expires later"),
        "{}",
        error_chain(&err)
    );
    assert_eq!(server.get(KEY).await.unwrap(), newer.to_json());

    // The same token again, or a newer one, is written.
    here.save(&newer).await.unwrap();
    let newest = expiring_in(3500);
    here.save(&newest).await.unwrap();
    assert_eq!(server.get(KEY).await.unwrap(), newest.to_json());
    // Fractions of a second count, though "03Z" sorts after "03.5Z" as text.
    let at = |expiry: &str| {
        StoredToken::from_json(
            format!(r#"{{"refresh_token": "r", "expiry": "{expiry}"}}"#).as_bytes(),
        )
        .unwrap()
    };
    let stored = at("2030-01-01T00:00:03.5Z");
    server
        .cmd::<()>(redis::cmd("SET").arg(KEY).arg(stored.to_json()))
        .await;
    assert!(here.save(&at("2030-01-01T00:00:03Z")).await.is_err());
    assert_eq!(server.get(KEY).await.unwrap(), stored.to_json());
    let later = at("2030-01-01T00:00:03.600001Z");
    here.save(&later).await.unwrap();
    assert_eq!(server.get(KEY).await.unwrap(), later.to_json());
    // So is anything over a record without an expiry or a corrupt one.
    for old in [r#"{"refresh_token": "r"}"#, r#"{"token": "ya29.trunc"#] {
        server.cmd::<()>(redis::cmd("SET").arg(KEY).arg(old)).await;
        here.save(&expiring_in(10)).await.unwrap();
        assert_eq!(server.get(KEY).await.unwrap(), expiring_in(10).to_json());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_is_fenced_by_the_lock() {
    let server = RedisServer::start().await;
    let lock_key = format!("{KEY}:lock");
    let a = server.store();
    let _lost = lock(&a, Duration::from_secs(1)).await;
    server.del(&lock_key).await;
    let b = server.store();
    let b_lock = lock(&b, Duration::from_secs(1)).await;
    let saved = expiring_in(3000);
    b.save(&saved).await.unwrap();

    // A lost its lock: its clear must not remove B's token.
    let err = a.clear().await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("another holder"),
        "{}",
        error_chain(&err)
    );
    // Nor may a clear without the lock while B holds it.
    let c = server.store();
    let err = c.clear().await.unwrap_err();
    assert!(
        error_chain(&err).contains("holds the lock"),
        "{}",
        error_chain(&err)
    );
    assert_eq!(server.get(KEY).await.unwrap(), saved.to_json());

    drop(b_lock);
    wait_for(&server, &lock_key, None).await;
    c.clear().await.unwrap();
    assert_eq!(server.get(KEY).await, None);
    // Under its own lock, a holder clears.
    b.save(&saved).await.unwrap();
    let _held = lock(&b, Duration::from_secs(1)).await;
    b.clear().await.unwrap();
    assert_eq!(server.get(KEY).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_does_not_stop_a_refresh_with_the_token_in_memory() {
    let mut server = RedisServer::start().await;
    let endpoint = token_endpoint().await;
    // 100 s left: loaded from Redis, then refreshed in the background window.
    let seed = StoredToken::from_json(token_json(&token_uri(&endpoint), 100).as_bytes()).unwrap();
    server.store().save(&seed).await.unwrap();
    let creds = CredentialLoader::new()
        .token_store(server.store())
        .consent(Consent::Never)
        .load()
        .await
        .unwrap();
    // Redis goes away.
    let _ = server.child.kill();
    let _ = server.child.wait();
    assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    let mut token = String::new();
    for _ in 0..200 {
        token = creds.access_token().await.unwrap().secret().to_owned();
        if token == NEW_ACCESS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(token, NEW_ACCESS, "refreshed with the token in memory");
    assert_eq!(token_requests(&endpoint).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlocked_save_replaces_a_record_whose_expiry_is_not_a_date() {
    let server = RedisServer::start().await;
    let here = server.store();
    // Records `load()` refuses as corrupt (BadExpiry): nothing can use them,
    // so a save must not be fenced out by them.
    for old in [
        r#"{"refresh_token": "r", "expiry": "soon"}"#,
        r#"{"refresh_token": "r", "expiry": "never expires"}"#,
        r#"{"refresh_token": "r", "expiry": "99999-01-01T00:00:00Z"}"#,
        r#"{"refresh_token": "r", "expiry": "9999-99-99T99:99:99Z"}"#,
    ] {
        server.cmd::<()>(redis::cmd("SET").arg(KEY).arg(old)).await;
        assert!(here.load().await.is_err(), "{old} is corrupt");
        here.save(&expiring_in(10)).await.unwrap();
        assert_eq!(server.get(KEY).await.unwrap(), expiring_in(10).to_json());
    }
}
