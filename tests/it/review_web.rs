//! Adversarial probes of the web sign-in (`WebFlow`, `UserCredentials`,
//! the keyed stores) that found defects or cover what no other test does.

use std::time::{Duration, SystemTime};

use gemini_oauth::web::UserCredentials;
use gemini_oauth::{
    Consent, CredentialLoader, DirectoryTokenStore, Error, KeyedTokenStore, StoredToken,
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
