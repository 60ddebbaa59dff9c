//! Our `Credentials` as the token source of yoshidan's gcloud-* clients
//! (feature `gcloud-auth`): through `Box<dyn TokenSourceProvider>` and the
//! `Arc<dyn TokenSource>` it hands out, as the clients hold them, and in a
//! real gcloud-storage client calling a storage server on 127.0.0.1.

use std::sync::Arc;

use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::buckets::get::GetBucketRequest;
use gemini_oauth::{Credentials, Error};
use serde_json::json;
use token_source::{TokenSource, TokenSourceProvider};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

/// What a gcloud-* `ClientConfig` holds, and what its client takes from it.
fn client_source(creds: &Credentials) -> Arc<dyn TokenSource> {
    let provider: Box<dyn TokenSourceProvider> = Box::new(creds.clone());
    provider.token_source()
}

fn bearer_value(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_source_gives_the_authorization_value_then_the_refreshed_one() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let ours = dir.loader().load().await.unwrap();
    let source = client_source(&ours);
    assert_no_secrets(&format!("{source:?}"));

    for _ in 0..3 {
        assert_eq!(source.token().await.unwrap(), bearer_value(OLD_ACCESS));
    }
    assert_eq!(token_requests(&tokens).await, 0, "cached");

    ours.force_refresh().await.unwrap();
    assert_eq!(source.token().await.unwrap(), bearer_value(NEW_ACCESS));
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_all_callers() {
    // The load's refresh brings a token already inside the expiry skew.
    let (tokens, _dir, ours) = loaded_dying_then(new_token()).await;
    let source = client_source(&ours);

    let callers: Vec<_> = (0..8)
        .map(|_| {
            let source = Arc::clone(&source);
            tokio::spawn(async move { source.token().await.unwrap() })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), bearer_value(NEW_ACCESS));
    }
    assert_eq!(token_requests(&tokens).await, 2, "one refresh for all");
}

#[tokio::test]
async fn our_errors_reach_the_client_typed_and_without_secrets() {
    let (tokens, _dir, loaded) = loaded_dying_then(invalid_grant()).await;
    let err = client_source(&loaded).token().await.unwrap_err();
    let ours = err.downcast_ref::<Error>().expect("our error, boxed");
    assert!(matches!(ours, Error::InvalidGrant { .. }), "{ours:?}");
    assert_no_secrets(&format!("{err} {err:?}"));
    assert_eq!(token_requests(&tokens).await, 2);

    // An API key has no token: an error, not an empty header.
    let key = Credentials::from_api_key("AIzaKEYMARKER").unwrap();
    let err = client_source(&key).token().await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::NoAccessToken)),
        "{err:?}"
    );
    assert_no_secrets(&format!("{err} {err:?}"));
}

/// A storage server on 127.0.0.1 that knows one bucket, asked with `token`.
async fn storage_server(token: &str) -> MockServer {
    let server = MockServer::start().await;
    let bucket = json!({
        "id": "b1", "name": "b1", "projectNumber": "123", "metageneration": "1",
        "location": "US", "locationType": "multi-region", "storageClass": "STANDARD", "etag": "CAE="
    });
    Mock::given(method("GET"))
        .and(path("/storage/v1/b/b1"))
        .and(bearer(token))
        .respond_with(ResponseTemplate::new(200).set_body_json(bucket))
        .mount(&server)
        .await;
    server
}

fn storage_client(creds: &Credentials, server: &MockServer) -> Client {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Client::new(ClientConfig {
        http: Some(reqwest_middleware::ClientBuilder::new(http).build()),
        storage_endpoint: server.uri(),
        token_source_provider: Some(Box::new(creds.clone())),
        ..ClientConfig::default()
    })
}

fn get_b1() -> GetBucketRequest {
    GetBucketRequest {
        bucket: "b1".to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_gcloud_storage_client_calls_with_the_refreshed_token() {
    let (tokens, _dir, ours) = loaded_dying_then(new_token()).await;
    let server = storage_server(NEW_ACCESS).await;
    let client = storage_client(&ours, &server);

    for _ in 0..2 {
        assert_eq!(client.get_bucket(&get_b1()).await.unwrap().name, "b1");
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert_eq!(token_requests(&tokens).await, 2, "one refresh, then cached");

    // A failed refresh: the client's TokenSource error, and no call.
    let (_tokens, _dir, failing) = loaded_dying_then(invalid_grant()).await;
    let err = storage_client(&failing, &server)
        .get_bucket(&get_b1())
        .await
        .unwrap_err();
    let gcloud_storage::http::Error::TokenSource(source) = &err else {
        panic!("expected the client's TokenSource error, got {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<Error>(),
            Some(Error::InvalidGrant { .. })
        ),
        "{source:?}"
    );
    assert_no_secrets(&format!("{err} {err:?}"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_token_endpoint_that_fails_once_is_retried_within_the_call() {
    // The load's token is dying; the next refresh answers 503, then a token.
    let (tokens, _dir, ours) =
        loaded_dying_then_answers(&[(503, json!({"error": "unavailable"})), new_token()]).await;
    assert_eq!(
        client_source(&ours).token().await.unwrap(),
        bearer_value(NEW_ACCESS)
    );
    assert_eq!(token_requests(&tokens).await, 3);
}
