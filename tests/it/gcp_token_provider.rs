//! Our `Credentials` as gcp_auth's `TokenProvider` (feature `gcp-auth`),
//! called as crates built on gcp_auth call it: through `Arc<dyn TokenProvider>`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;
use gcp_auth::TokenProvider;
use gemini_oauth::{Credentials, Error};

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// gcp_auth's token from `provider`, with the span of wall-clock time the
/// call took (its expiry is counted from a clock read inside it).
async fn timed_token(provider: &dyn TokenProvider, scopes: &[&str]) -> (Arc<gcp_auth::Token>, i64) {
    let before = SystemTime::now();
    let token = provider.token(scopes).await.unwrap();
    let took = micros(SystemTime::now()) - micros(before);
    (token, took)
}

/// gcp_auth's expiry is `expires_at` to the whole second, never earlier
/// than a second before it and never later than the call took.
fn assert_expiry(token: &gcp_auth::Token, expires_at: SystemTime, took: i64) {
    let theirs = token.expires_at().timestamp_micros();
    let ours = micros(expires_at);
    assert!(theirs > ours - 1_000_000, "{theirs} vs {ours}");
    assert!(theirs <= ours + took, "{theirs} vs {ours} (+{took})");
}

#[tokio::test]
async fn the_token_its_expiry_and_the_quota_project_come_through_a_dyn_provider() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let ours = dir.loader().quota_project("gcp-proj").load().await.unwrap();
    let provider: Arc<dyn TokenProvider> = Arc::new(ours.clone());

    let (token, took) = timed_token(&*provider, &[RETRIEVER]).await;
    assert_eq!(token.as_str(), OLD_ACCESS);
    assert!(!token.has_expired());
    assert_expiry(
        &token,
        ours.access_token().await.unwrap().expires_at(),
        took,
    );
    assert_no_secrets(&format!("{token:?}"));
    assert_eq!(&*provider.project_id().await.unwrap(), "gcp-proj");

    // Cached: no request, however often it is asked.
    for _ in 0..3 {
        assert_eq!(
            provider.token(&[RETRIEVER]).await.unwrap().as_str(),
            OLD_ACCESS
        );
    }
    assert_eq!(token_requests(&tokens).await, 0);

    // A refresh of ours is what the provider hands out next.
    ours.force_refresh().await.unwrap();
    assert_eq!(
        provider.token(&[RETRIEVER]).await.unwrap().as_str(),
        NEW_ACCESS
    );
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_all_callers() {
    // The sign-in's refresh brings a token already inside the expiry skew:
    // the provider's first callers find it expired and share one refresh.
    let (tokens, _dir, ours) = loaded_dying_then(new_token()).await;
    let provider: Arc<dyn TokenProvider> = Arc::new(ours.clone());

    let callers: Vec<_> = (0..8)
        .map(|_| {
            let provider = Arc::clone(&provider);
            tokio::spawn(async move { provider.token(&[RETRIEVER]).await.unwrap() })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().as_str(), NEW_ACCESS);
    }
    assert_eq!(token_requests(&tokens).await, 2, "one refresh for all");

    let (token, took) = timed_token(&*provider, &[RETRIEVER]).await;
    assert_expiry(
        &token,
        ours.access_token().await.unwrap().expires_at(),
        took,
    );
    assert_eq!(token_requests(&tokens).await, 2);
}

#[tokio::test]
async fn scopes_the_credentials_were_not_loaded_with_get_the_same_token() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let provider: Arc<dyn TokenProvider> = Arc::new(dir.loader().load().await.unwrap());
    for scopes in [
        &[gemini_oauth::scopes::CLOUD_PLATFORM][..],
        &[
            RETRIEVER,
            "https://www.googleapis.com/auth/devstorage.read_only",
        ],
        &[],
    ] {
        assert_eq!(provider.token(scopes).await.unwrap().as_str(), OLD_ACCESS);
    }
    assert_eq!(token_requests(&tokens).await, 0);
}

#[tokio::test]
async fn our_errors_become_gcp_auth_errors_without_secrets() {
    let (tokens, _dir, loaded) = loaded_dying_then(invalid_grant()).await;
    let provider: Arc<dyn TokenProvider> = Arc::new(loaded);

    let err = provider.token(&[RETRIEVER]).await.unwrap_err();
    let gcp_auth::Error::Other(_, source) = &err else {
        panic!("expected gcp_auth::Error::Other, got {err:?}");
    };
    let ours = source
        .downcast_ref::<Error>()
        .expect("our error as the source");
    assert!(matches!(ours, Error::InvalidGrant { .. }), "{ours:?}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert_no_secrets(&err.to_string());
    assert_no_secrets(&format!("{err:?}"));
    assert_eq!(token_requests(&tokens).await, 2);

    // No quota project: gcp_auth's typed error, not a made-up project.
    let err = provider.project_id().await.unwrap_err();
    assert!(matches!(err, gcp_auth::Error::Str(_)), "{err:?}");
    assert!(err.to_string().contains("quota project"), "{err}");

    // An API key has no token to give.
    let key: Arc<dyn TokenProvider> = Arc::new(Credentials::from_api_key("AIzaKEYMARKER").unwrap());
    let err = key.token(&[RETRIEVER]).await.unwrap_err();
    let gcp_auth::Error::Other(_, source) = &err else {
        panic!("expected gcp_auth::Error::Other, got {err:?}");
    };
    assert!(
        matches!(source.downcast_ref::<Error>(), Some(Error::NoAccessToken)),
        "{source:?}"
    );
    assert_no_secrets(&format!("{err} {err:?}"));
}
