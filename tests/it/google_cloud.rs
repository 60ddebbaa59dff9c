//! Our `Credentials` as google-cloud-auth's (feature `google-cloud-auth`),
//! through the real `google_cloud_auth::credentials::Credentials`.

use crate::common::*;
use gemini_oauth::Credentials;
use google_cloud_auth::credentials::{
    AccessTokenCredentials, CacheableResource, Credentials as GcpCredentials, EntityTag,
};
use http::{Extensions, HeaderMap};

fn with_tag(tag: &EntityTag) -> Extensions {
    let mut e = Extensions::new();
    e.insert(tag.clone());
    e
}

async fn new_headers(gcp: &GcpCredentials, ext: Extensions) -> (EntityTag, HeaderMap) {
    match gcp.headers(ext).await.unwrap() {
        CacheableResource::New { entity_tag, data } => (entity_tag, data),
        CacheableResource::NotModified => panic!("expected new headers"),
    }
}

#[tokio::test]
async fn headers_are_cached_by_entity_tag_and_a_refresh_is_a_new_tag() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let ours = dir.loader().quota_project("gcp-proj").load().await.unwrap();
    let gcp = GcpCredentials::from(ours.clone());

    let (tag, headers) = new_headers(&gcp, Extensions::new()).await;
    assert_eq!(
        headers["authorization"],
        format!("Bearer {OLD_ACCESS}").as_str()
    );
    assert!(headers["authorization"].is_sensitive());
    assert_eq!(headers["x-goog-user-project"], "gcp-proj");

    // Same token: the tag says the caller's copy is current.
    for _ in 0..3 {
        assert_eq!(
            gcp.headers(with_tag(&tag)).await.unwrap(),
            CacheableResource::NotModified
        );
    }
    // A tag from elsewhere gets the headers again, with our tag.
    let (again, _) = new_headers(&gcp, with_tag(&EntityTag::new())).await;
    assert_eq!(again, tag);

    // A refresh: the old tag no longer matches, and the new token comes with a new tag.
    ours.force_refresh().await.unwrap();
    let (fresh_tag, fresh) = new_headers(&gcp, with_tag(&tag)).await;
    assert_ne!(fresh_tag, tag);
    assert_eq!(
        fresh["authorization"],
        format!("Bearer {NEW_ACCESS}").as_str()
    );
    assert_eq!(
        gcp.headers(with_tag(&fresh_tag)).await.unwrap(),
        CacheableResource::NotModified
    );
    assert_eq!(token_requests(&tokens).await, 1);
    assert_eq!(
        gcp.universe_domain().await.as_deref(),
        Some("googleapis.com")
    );
}

#[tokio::test]
async fn api_keys_and_errors_come_through() {
    let gcp = GcpCredentials::from(Credentials::from_api_key("AIzaKEY").unwrap());
    let (tag, headers) = new_headers(&gcp, Extensions::new()).await;
    assert_eq!(headers["x-goog-api-key"], "AIzaKEY");
    assert!(headers.get("authorization").is_none());
    assert_eq!(
        gcp.headers(with_tag(&tag)).await.unwrap(),
        CacheableResource::NotModified
    );

    // No token: google-cloud-auth's error, permanent, with our message.
    let expired = Credentials::from_access_token(
        "ya29.X",
        std::time::SystemTime::now() - std::time::Duration::from_secs(1),
    )
    .unwrap();
    let err = GcpCredentials::from(expired)
        .headers(Extensions::new())
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("cannot be refreshed"), "{err}");
}

#[tokio::test]
async fn access_tokens_for_access_token_credentials() {
    let creds = Credentials::from_access_token(
        "ya29.FIXED",
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let gcp = AccessTokenCredentials::from(creds);
    assert_eq!(gcp.access_token().await.unwrap().token, "ya29.FIXED");
}
