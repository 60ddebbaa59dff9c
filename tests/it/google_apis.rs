//! Our `Credentials` as google-apis-common's `GetToken` (feature
//! `google-apis-common`), called as the google-apis-rs hubs call it: through
//! the `Box<dyn GetToken>` a hub keeps (and that box's `Clone`).

use crate::common::*;
use gemini_oauth::{Credentials, Error};
use google_apis_common::GetToken;

/// A hub's authenticator: `Hub::new(client, auth)` boxes what it is given.
fn hub_auth(creds: &Credentials) -> Box<dyn GetToken> {
    Box::new(creds.clone())
}

async fn token_of(auth: &dyn GetToken, scopes: &[&str]) -> Option<String> {
    auth.get_token(scopes).await.unwrap()
}

#[tokio::test]
async fn hubs_get_the_cached_token_and_then_the_refreshed_one() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let ours = dir.loader().load().await.unwrap();
    let auth = hub_auth(&ours);
    let copy = auth.clone(); // google-apis-common's Clone for Box<dyn GetToken>

    for a in [&auth, &copy] {
        assert_eq!(
            token_of(&**a, &[RETRIEVER]).await.as_deref(),
            Some(OLD_ACCESS)
        );
    }
    assert_eq!(token_requests(&tokens).await, 0);

    ours.force_refresh().await.unwrap();
    for a in [&auth, &copy] {
        assert_eq!(
            token_of(&**a, &[RETRIEVER]).await.as_deref(),
            Some(NEW_ACCESS)
        );
    }
    assert_eq!(
        token_requests(&tokens).await,
        1,
        "the copies share one cache"
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_all_callers() {
    // The load's refresh brings a token already inside the expiry skew.
    let (tokens, _dir, ours) = loaded_dying_then(new_token()).await;

    let callers: Vec<_> = (0..8)
        .map(|_| {
            let auth = hub_auth(&ours);
            tokio::spawn(async move { auth.get_token(&[RETRIEVER]).await.unwrap() })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().as_deref(), Some(NEW_ACCESS));
    }
    assert_eq!(token_requests(&tokens).await, 2, "one refresh for all");
}

#[tokio::test]
async fn scopes_the_credentials_were_not_loaded_with_get_the_same_token() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let auth = hub_auth(&dir.loader().load().await.unwrap());
    for scopes in [
        &["https://www.googleapis.com/auth/devstorage.read_only"][..],
        &[RETRIEVER, gemini_oauth::scopes::CLOUD_PLATFORM],
        &[],
    ] {
        assert_eq!(token_of(&*auth, scopes).await.as_deref(), Some(OLD_ACCESS));
    }
    assert_eq!(token_requests(&tokens).await, 0);
}

#[tokio::test]
async fn our_errors_reach_the_hub_typed_and_without_secrets() {
    let (tokens, _dir, loaded) = loaded_dying_then(invalid_grant()).await;
    let auth = hub_auth(&loaded);

    let err = auth.get_token(&[RETRIEVER]).await.unwrap_err();
    let ours = err.downcast_ref::<Error>().expect("our error, boxed");
    assert!(matches!(ours, Error::InvalidGrant { .. }), "{ours:?}");
    assert_no_secrets(&format!("{err} {err:?}"));
    assert_eq!(token_requests(&tokens).await, 2);

    // An API key is an error, not `None` (which a hub takes for "send no
    // credentials"): the request would go out unauthenticated.
    let key = hub_auth(&Credentials::from_api_key("AIzaKEYMARKER").unwrap());
    let err = key.get_token(&[RETRIEVER]).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::NoAccessToken)),
        "{err:?}"
    );
    assert_no_secrets(&format!("{err} {err:?}"));
}
