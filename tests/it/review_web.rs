//! Adversarial probes of the web sign-in (`WebFlow`, `UserCredentials`,
//! the keyed stores) that found defects or cover what no other test does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use gemini_oauth::web::UserCredentials;
use gemini_oauth::{
    Consent, CredentialLoader, DirectoryTokenStore, Error, FileTokenStore, KeyedTokenStore,
    StoreLock, StoredToken, TokenStore,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

fn record(user: &str, token_uri: &str, in_secs: i64) -> StoredToken {
    let at = if in_secs >= 0 {
        SystemTime::now() + Duration::from_secs(in_secs as u64)
    } else {
        SystemTime::now() - Duration::from_secs((-in_secs) as u64)
    };
    let json = json!({
        "token": format!("ya29.OLD-{user}"), "refresh_token": format!("1//R-{user}"),
        "token_uri": token_uri, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "scopes": [RETRIEVER], "expiry": expiry(at),
    });
    StoredToken::from_json(json.to_string().as_bytes()).unwrap()
}

fn loader() -> CredentialLoader {
    CredentialLoader::new()
        .scopes([RETRIEVER])
        .consent(Consent::Never)
}

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
