//! `UserCredentials`, the per-user credentials map of a web app: one load
//! and one refresh per user however many requests (and replicas sharing a
//! real redis-server) ask, bounded memory, sign-in and sign-out of one user
//! leaving the others alone, and `invalid_grant` reaching the observer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gemini_oauth::web::{RefreshFailure, UserCredentials};
use gemini_oauth::{
    Consent, CredentialLoader, DirectoryTokenStore, Error, KeyedTokenStore, StoredToken,
};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

/// A record of `user` in google-auth's format, expiring `in_secs` from now.
pub(crate) fn record(user: &str, token_uri: &str, in_secs: i64) -> StoredToken {
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

/// A token endpoint that answers user `u`'s refresh (`R-u`) with
/// `ya29.NEW-u` after `delay`.
async fn per_user_token_endpoint(users: &[&str], delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    for user in users {
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(format!(
                "refresh_token=1%2F%2FR-{user}"
            )))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({
                        "access_token": format!("ya29.NEW-{user}"), "expires_in": 3599,
                        "scope": RETRIEVER, "token_type": "Bearer",
                    }))
                    .set_delay(delay),
            )
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn refreshes_of(server: &MockServer, user: &str) -> usize {
    let needle = format!("refresh_token=1%2F%2FR-{user}");
    requests_to(server, "/token")
        .await
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&needle))
        .count()
}

/// How every user's credentials are loaded in these tests.
pub(crate) fn loader() -> CredentialLoader {
    CredentialLoader::new()
        .scopes([RETRIEVER])
        .consent(Consent::Never)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_load_and_one_refresh_per_user_for_many_requests() {
    let tokens = per_user_token_endpoint(&["alice", "bob"], Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    for user in ["alice", "bob"] {
        store
            .save(user, &record(user, &token_uri(&tokens), -60))
            .await
            .unwrap();
    }
    let users = UserCredentials::new(store, loader());
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let users = users.clone();
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            tokio::spawn(async move {
                let token = users.get(user).await?.access_token().await?;
                Ok::<_, Error>((user, token.secret().to_owned()))
            })
        })
        .collect();
    for call in calls {
        let (user, token) = call.await.unwrap().unwrap();
        assert_eq!(token, format!("ya29.NEW-{user}"));
    }
    assert_eq!(refreshes_of(&tokens, "alice").await, 1);
    assert_eq!(refreshes_of(&tokens, "bob").await, 1);
    assert_eq!(users.len(), 2);
    // Saved for the next process, in the user's own file.
    let saved = users.store().load("alice").await.unwrap().unwrap();
    assert_eq!(saved.access_token(), Some("ya29.NEW-alice"));
}

#[tokio::test]
async fn a_user_never_signed_in_is_told_to_sign_in_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let users = UserCredentials::new(DirectoryTokenStore::new(dir.path()), loader());
    assert!(matches!(
        users.get("nobody").await,
        Err(Error::ConsentRequired { .. })
    ));
    assert!(users.is_empty());
    assert!(users.get("").await.is_err());
    assert!(users.get(&"x".repeat(65)).await.is_err());
}

#[tokio::test]
async fn capacity_and_idle_time_bound_the_map() {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    for user in ["u1", "u2", "u3"] {
        store
            .save(user, &record(user, &token_uri(&tokens), 3600))
            .await
            .unwrap();
    }
    let users = UserCredentials::new(store, loader())
        .capacity(2)
        .idle_timeout(Duration::from_millis(200));
    users.get("u1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    users.get("u2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    users.get("u1").await.unwrap(); // u2 is now the least recently used
    users.get("u3").await.unwrap();
    assert_eq!(users.len(), 2);
    assert!(
        !users.remove("u2"),
        "the least recently used one was evicted"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(users.evict_idle(), 2);
    assert!(users.is_empty());
    // Evicted is only forgotten: the next request loads the user again.
    let token = users.get("u2").await.unwrap().access_token().await.unwrap();
    assert_eq!(token.secret(), "ya29.OLD-u2");
    assert_eq!(token_requests(&tokens).await, 0);
}

#[tokio::test]
async fn sign_in_replaces_the_users_token_and_keeps_a_refresh_token_google_did_not_resend() {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let users = UserCredentials::new(DirectoryTokenStore::new(dir.path()), loader());
    let first = users
        .sign_in("alice", record("alice", &token_uri(&tokens), 3600))
        .await
        .unwrap();
    assert_eq!(
        first.access_token().await.unwrap().secret(),
        "ya29.OLD-alice"
    );
    // An incremental sign-in: a new access token, no refresh token.
    let again = json!({
        "token": "ya29.AGAIN", "token_uri": token_uri(&tokens), "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "scopes": [RETRIEVER], "expiry": expiry(SystemTime::now() + Duration::from_secs(3600)),
    });
    let again = StoredToken::from_json(again.to_string().as_bytes()).unwrap();
    let creds = users.sign_in("alice", again).await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), "ya29.AGAIN");
    let got = users.get("alice").await.unwrap();
    assert_eq!(got.access_token().await.unwrap().secret(), "ya29.AGAIN");
    let saved = users.store().load("alice").await.unwrap().unwrap();
    assert_eq!(saved.refresh_token(), Some("1//R-alice"));
}

#[tokio::test]
async fn sign_out_revokes_and_deletes_one_user_only() {
    let tokens = token_endpoint().await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&revoke)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    for user in ["alice", "bob"] {
        store
            .save(user, &record(user, &token_uri(&tokens), 3600))
            .await
            .unwrap();
    }
    let users = UserCredentials::new(
        store,
        loader().revoke_uri(format!("{}/revoke", revoke.uri())),
    );
    let alice = users.get("alice").await.unwrap();
    users.get("bob").await.unwrap();
    users.sign_out("alice").await.unwrap();
    let revoked = requests_to(&revoke, "/revoke").await;
    assert_eq!(revoked.len(), 1);
    assert!(String::from_utf8_lossy(&revoked[0].body).contains("R-alice"));
    assert!(users.store().load("alice").await.unwrap().is_none());
    assert!(matches!(
        alice.access_token().await,
        Err(Error::Revoked { .. })
    ));
    assert!(matches!(
        users.get("alice").await,
        Err(Error::ConsentRequired { .. })
    ));
    let bob = users.get("bob").await.unwrap();
    assert_eq!(bob.access_token().await.unwrap().secret(), "ya29.OLD-bob");
    assert!(users.store().load("bob").await.unwrap().is_some());
    // Signing out a user with nothing stored succeeds and revokes nothing.
    users.sign_out("alice").await.unwrap();
    assert_eq!(requests_to(&revoke, "/revoke").await.len(), 1);
}

#[tokio::test]
async fn invalid_grant_reaches_the_observer_for_that_user() {
    // alice: refreshed at load into a dying token, whose refresh is refused
    // (a background refresh's failure); bob: refused at load.
    let alice_tokens = token_server_answering(&[dying_token(), invalid_grant()]).await;
    let bob_tokens = token_server_answering(&[invalid_grant()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    store
        .save("alice", &record("alice", &token_uri(&alice_tokens), -60))
        .await
        .unwrap();
    store
        .save("bob", &record("bob", &token_uri(&bob_tokens), -60))
        .await
        .unwrap();
    let told = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let seen = Arc::clone(&told);
    let users =
        UserCredentials::new(store, loader()).on_refresh_failure(move |f: &RefreshFailure| {
            seen.lock()
                .unwrap()
                .push((f.user_id.clone(), f.needs_sign_in()));
        });

    let alice = users.get("alice").await.unwrap();
    assert!(matches!(
        alice.access_token().await,
        Err(Error::InvalidGrant { .. })
    ));
    assert_eq!(*told.lock().unwrap(), [("alice".to_owned(), true)]);
    assert!(
        !users.remove("alice"),
        "alice's dead credentials left the map"
    );

    assert!(matches!(
        users.get("bob").await,
        Err(Error::InvalidGrant { .. })
    ));
    assert_eq!(told.lock().unwrap().last(), Some(&("bob".to_owned(), true)));
    assert_eq!(told.lock().unwrap().len(), 2);
    assert!(users.is_empty());
}

#[cfg(feature = "redis")]
mod replicas {
    use super::*;
    use crate::redis_store::RedisServer;
    use gemini_oauth::RedisKeyedTokenStore;

    /// Two app replicas, each with its own map and its own Redis client,
    /// share users' tokens only through a real redis-server. Every token is
    /// expired; many concurrent requests for both users on both replicas
    /// make exactly one refresh per user.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_sharing_redis_refresh_each_user_once() {
        let redis = RedisServer::start().await;
        let tokens = per_user_token_endpoint(&["alice", "bob"], Duration::from_millis(300)).await;
        let prefix = "web-test:users:";
        let seed = RedisKeyedTokenStore::new(redis.client(), prefix);
        for user in ["alice", "bob"] {
            seed.save(user, &record(user, &token_uri(&tokens), -60))
                .await
                .unwrap();
        }
        let revoke = format!("{}/revoke", tokens.uri());
        let replica = || {
            let loader = loader().revoke_uri(&revoke);
            UserCredentials::new(RedisKeyedTokenStore::new(redis.client(), prefix), loader)
        };
        let (a, b) = (replica(), replica());
        let mut calls = Vec::new();
        for i in 0..24 {
            let users = if i % 2 == 0 { a.clone() } else { b.clone() };
            let user = if (i / 2) % 2 == 0 { "alice" } else { "bob" };
            calls.push(tokio::spawn(async move {
                let token = users.get(user).await?.access_token().await?;
                Ok::<_, Error>((user, token.secret().to_owned()))
            }));
        }
        for call in calls {
            let (user, token) = call.await.unwrap().unwrap();
            assert_eq!(token, format!("ya29.NEW-{user}"));
        }
        assert_eq!(refreshes_of(&tokens, "alice").await, 1);
        assert_eq!(refreshes_of(&tokens, "bob").await, 1);
        // One key per user, in google-auth's format, and no lock left.
        let key = seed.key_of("alice").unwrap();
        assert_eq!(key, "web-test:users:alice");
        let saved = redis.get(&key).await.unwrap();
        assert!(saved.contains("\"token\": \"ya29.NEW-alice\""), "{saved}");
        assert!(redis.get(&format!("{key}:lock")).await.is_none());

        // One replica signs bob out: the other no longer finds him, alice stays.
        a.sign_out("bob").await.unwrap();
        assert_eq!(requests_to(&tokens, "/revoke").await.len(), 1);
        assert!(redis.get(&seed.key_of("bob").unwrap()).await.is_none());
        b.remove("bob");
        assert!(matches!(
            b.get("bob").await,
            Err(Error::ConsentRequired { .. })
        ));
        assert!(b.get("alice").await.is_ok());
    }
}

/// Google's revocation endpoint takes the token alone; an RFC 7009 server
/// (oidc-provider) wants the client authenticated too: asked for it, the
/// sign-out sends the client's id and secret once more.
#[tokio::test]
async fn sign_out_authenticates_the_client_when_the_server_asks() {
    let tokens = token_endpoint().await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains("client_secret="))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&revoke)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request", "error_description": "no client authentication mechanism provided",
        })))
        .mount(&revoke)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    store
        .save("alice", &record("alice", &token_uri(&tokens), 3600))
        .await
        .unwrap();
    let users = UserCredentials::new(
        store,
        loader().revoke_uri(format!("{}/revoke", revoke.uri())),
    );
    users.sign_out("alice").await.unwrap();
    let sent = requests_to(&revoke, "/revoke").await;
    assert_eq!(sent.len(), 2);
    let first = String::from_utf8_lossy(&sent[0].body).into_owned();
    assert!(!first.contains("client_secret"), "{first}");
    let second = String::from_utf8_lossy(&sent[1].body).into_owned();
    assert!(
        second.contains("token=1%2F%2FR-alice") && second.contains("client_id="),
        "{second}"
    );
    assert!(users.store().load("alice").await.unwrap().is_none());
}

/// The map asks for more scopes than a user's stored token has (the app
/// added a feature): that user is asked to sign in again, and signing them
/// out still revokes the refresh token they have.
#[tokio::test]
async fn sign_out_revokes_a_token_that_lacks_the_maps_scopes() {
    let tokens = token_endpoint().await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&revoke)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    store
        .save("alice", &record("alice", &token_uri(&tokens), 3600))
        .await
        .unwrap();
    let loader = loader()
        .scopes([RETRIEVER, "https://www.googleapis.com/auth/cloud-platform"])
        .revoke_uri(format!("{}/revoke", revoke.uri()));
    let users = UserCredentials::new(store, loader);
    assert!(matches!(
        users.get("alice").await,
        Err(Error::ConsentRequired { .. })
    ));
    users.sign_out("alice").await.unwrap();
    let revoked = requests_to(&revoke, "/revoke").await;
    assert_eq!(revoked.len(), 1);
    assert!(String::from_utf8_lossy(&revoked[0].body).contains("R-alice"));
    assert!(users.store().load("alice").await.unwrap().is_none());
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1 answering every request with an
/// empty model list; counts the connections it accepts.
async fn counting_api() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(br#"{"models": []}"#),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
            );
        }
    });
    (base, accepted)
}

#[tokio::test]
async fn the_users_credentials_share_one_connection_pool() {
    let tokens = per_user_token_endpoint(&["alice", "bob"], Duration::ZERO).await;
    let (base, accepted) = counting_api().await;
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryTokenStore::new(dir.path());
    for user in ["alice", "bob"] {
        store
            .save(user, &record(user, &token_uri(&tokens), 3600))
            .await
            .unwrap();
    }
    let users = UserCredentials::new(store, loader().api_base(&base));
    for user in ["alice", "bob", "alice"] {
        let client = users.get(user).await.unwrap().authorized_client();
        gemini_oauth::gemini::list_models(&client).await.unwrap();
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "bob's call reused alice's connection"
    );
}
