//! One refresh for many callers, early refresh without waiting, and recovery
//! after a failed refresh, against a counting token endpoint on 127.0.0.1.

use std::time::Duration;

use crate::common::*;
use gemini_oauth::{Consent, CredentialLoader, Credentials};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

async fn endpoint(delay: Duration) -> MockServer {
    token_server([ResponseTemplate::new(200)
        .set_body_json(
            json!({"access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer"}),
        )
        .set_delay(delay)])
    .await
}

async fn load(dir: &TempLoader, server: &MockServer, expires_in: i64) -> Credentials {
    dir.write_token(&token_json(&token_uri(server), expires_in));
    dir.loader().load().await.unwrap()
}

/// Expiry of a token that is usable when loaded and inside the expiry skew
/// (10 s) after `NEARLY_EXPIRED_WAIT`. token.json keeps whole seconds, so
/// "12 s from now" is 11 to 12 s away when written: a second of margin at
/// the load, and at most 9.9 s left after the wait.
const NEARLY_EXPIRED_SECS: i64 = 12;
const NEARLY_EXPIRED_WAIT: Duration = Duration::from_millis(2100);

/// Loads a token that is still usable, then waits until it is inside the
/// expiry skew, where callers must wait for a refresh.
async fn load_nearly_expired(dir: &TempLoader, server: &MockServer) -> Credentials {
    let creds = load(dir, server, NEARLY_EXPIRED_SECS).await;
    tokio::time::sleep(NEARLY_EXPIRED_WAIT).await;
    creds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_callers_at_expiry_share_one_refresh() {
    let server = endpoint(Duration::from_millis(300)).await;
    let dir = TempLoader::empty();
    let creds = load_nearly_expired(&dir, &server).await;
    assert_eq!(token_requests(&server).await, 0);

    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = creds.clone();
            tokio::spawn(async move { c.access_token().await.map(|t| t.secret().to_owned()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), NEW_ACCESS);
    }
    assert_eq!(token_requests(&server).await, 1);
    assert_eq!(read_json(&dir.token_file())["token"], NEW_ACCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_in_the_refresh_window_get_the_old_token_while_one_refresh_runs() {
    // The endpoint takes a minute: anyone waiting on it would hit the guard below.
    let slow = endpoint(Duration::from_secs(60)).await;
    let dir = TempLoader::empty();
    let creds = load(&dir, &slow, 120).await;
    let calls = async {
        for _ in 0..200 {
            assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), calls)
        .await
        .expect("callers in the refresh window must not wait for the token endpoint");
    // Exactly one background refresh was started for all those calls.
    for _ in 0..100 {
        if token_requests(&slow).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(token_requests(&slow).await, 1);
}

#[tokio::test]
async fn the_background_refresh_result_replaces_the_old_token() {
    let server = endpoint(Duration::ZERO).await;
    let dir = TempLoader::empty();
    let creds = load(&dir, &server, 120).await;
    assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = creds.access_token().await.unwrap().secret().to_owned();
        if seen == NEW_ACCESS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 1);
    // The fresh token is outside the window: no further requests.
    for _ in 0..50 {
        creds.access_token().await.unwrap();
    }
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_refresh_reaches_every_waiter_once_backs_off_and_does_not_poison_the_next() {
    let server = token_server([
        ResponseTemplate::new(400)
            .set_body_json(json!({"error": "invalid_request", "error_description": "try later"}))
            .set_delay(Duration::from_millis(200)),
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": NEW_ACCESS, "expires_in": 3599})),
    ])
    .await;
    let dir = TempLoader::empty();
    let creds = load_nearly_expired(&dir, &server).await;

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = creds.clone();
            tokio::spawn(async move { c.access_token().await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(
            err.oauth_error(),
            Some(&gemini_oauth::OAuthError::InvalidRequest)
        );
    }
    assert_eq!(token_requests(&server).await, 1, "one shared failure");
    // During the backoff that follows (1 s), callers get the same error
    // without sending a request each.
    for _ in 0..50 {
        let err = creds.access_token().await.unwrap_err();
        assert_eq!(
            err.oauth_error(),
            Some(&gemini_oauth::OAuthError::InvalidRequest)
        );
    }
    assert_eq!(token_requests(&server).await, 1, "no request per caller");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 2);
}

/// A store whose first lock panics (a bug in user code): the refresh task
/// dies before it publishes anything.
struct PanicsOnce {
    inner: gemini_oauth::MemoryTokenStore,
    panicked: std::sync::atomic::AtomicBool,
}

impl gemini_oauth::TokenStore for PanicsOnce {
    async fn load(&self) -> gemini_oauth::Result<Option<gemini_oauth::StoredToken>> {
        gemini_oauth::TokenStore::load(&self.inner).await
    }
    async fn save(&self, token: &gemini_oauth::StoredToken) -> gemini_oauth::Result<()> {
        gemini_oauth::TokenStore::save(&self.inner, token).await
    }
    async fn lock(&self, _wait: Duration) -> gemini_oauth::Result<Option<gemini_oauth::StoreLock>> {
        if !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("store bug");
        }
        Ok(None)
    }
    async fn clear(&self) -> gemini_oauth::Result<()> {
        gemini_oauth::TokenStore::clear(&self.inner).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_task_that_dies_does_not_wedge_the_credentials() {
    let server = endpoint(Duration::ZERO).await;
    let record = gemini_oauth::StoredToken::from_json(
        token_json(&token_uri(&server), NEARLY_EXPIRED_SECS).as_bytes(),
    )
    .unwrap();
    let store = PanicsOnce {
        inner: gemini_oauth::MemoryTokenStore::with_token(record),
        panicked: std::sync::atomic::AtomicBool::new(false),
    };
    let creds = CredentialLoader::new()
        .token_store(store)
        .consent(Consent::Never)
        .load()
        .await
        .unwrap();
    tokio::time::sleep(NEARLY_EXPIRED_WAIT).await;
    // The first refresh's task panics: its waiters get an error, not a hang…
    let first = creds.access_token().await.unwrap_err();
    assert!(first.to_string().contains("token refresh"), "{first}");
    assert_eq!(token_requests(&server).await, 0);
    // …a panic is a failure like any other: the backoff after it holds
    // (issue #20), instead of one new refresh per call…
    let again = creds.access_token().await.unwrap_err();
    assert!(again.to_string().contains("token refresh"), "{again}");
    // …and once it has passed, the next caller starts a new refresh.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = creds.access_token().await.unwrap();
    assert_eq!(second.secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 1);
}
