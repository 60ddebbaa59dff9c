//! The blocking API (feature `blocking`): from synchronous code it loads,
//! refreshes and serves tokens; from inside a runtime it is an error, never
//! a panic or a deadlock.

use std::time::{Duration, SystemTime};

use crate::common::*;
use gemini_oauth::{CredentialLoader, Credentials, Error, blocking};

/// A runtime for the local servers, driven from this (synchronous) thread.
fn servers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn fixed() -> Credentials {
    Credentials::from_access_token("ya29.FIXED", SystemTime::now() + Duration::from_secs(3600))
        .unwrap()
}

#[test]
fn load_blocking_refreshes_and_serves_tokens_to_sync_code() {
    let rt = servers();
    let tokens = rt.block_on(token_endpoint());
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let creds = dir
        .loader()
        .quota_project("sync-proj")
        .load_blocking()
        .unwrap();
    assert_eq!(rt.block_on(token_requests(&tokens)), 1);
    assert_eq!(creds.access_token().unwrap().secret(), NEW_ACCESS);
    let headers = creds.headers().unwrap();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {NEW_ACCESS}").as_str()
    );
    assert_eq!(headers["x-goog-user-project"], "sync-proj");
    assert_eq!(creds.quota_project(), Some("sync-proj"));

    // A forced refresh goes through the runtime thread to the endpoint.
    assert_eq!(creds.force_refresh().unwrap().secret(), NEW_ACCESS);
    assert_eq!(rt.block_on(token_requests(&tokens)), 2);

    // Clones share the cache; the async face is the same credentials.
    let clone = creds.clone();
    drop(creds);
    assert_eq!(clone.access_token().unwrap().secret(), NEW_ACCESS);
    assert_eq!(
        clone.as_async().stored_token().unwrap().access_token(),
        Some(NEW_ACCESS)
    );
    assert_eq!(rt.block_on(token_requests(&tokens)), 2);
}

#[test]
fn errors_come_back_through_the_runtime_thread() {
    let rt = servers();
    let tokens = rt.block_on(token_server_answering(&[(
        400,
        serde_json::json!({"error": "invalid_grant"}),
    )]));
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let err = dir.loader().load_blocking().unwrap_err();
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    let key = CredentialLoader::api_key("AIzaKEY")
        .load_blocking()
        .unwrap();
    assert!(matches!(key.access_token(), Err(Error::NoAccessToken)));
    assert_eq!(key.headers().unwrap()["x-goog-api-key"], "AIzaKEY");
}

#[tokio::test]
async fn inside_a_runtime_every_entry_point_is_an_error() {
    let blocked = |e: Error| match e {
        Error::BlockingInAsync { .. } => assert!(e.to_string().contains("await"), "{e}"),
        other => panic!("{other:?}"),
    };
    blocked(blocking::load_creds().unwrap_err());
    blocked(CredentialLoader::api_key("k").load_blocking().unwrap_err());
    blocked(
        CredentialLoader::application_default()
            .load_blocking()
            .unwrap_err(),
    );
    blocked(blocking::Credentials::new(fixed()).unwrap_err());
    // spawn_blocking runs inside the runtime's context too.
    let err = tokio::task::spawn_blocking(|| CredentialLoader::api_key("k").load_blocking())
        .await
        .unwrap()
        .unwrap_err();
    blocked(err);
}

#[test]
fn a_handle_made_outside_then_used_inside_a_runtime_is_an_error_and_dropping_it_there_is_fine() {
    let creds = blocking::Credentials::new(fixed()).unwrap();
    assert_eq!(creds.access_token().unwrap().secret(), "ya29.FIXED");
    // A current-thread runtime: blocking here would deadlock it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        assert!(matches!(
            creds.access_token(),
            Err(Error::BlockingInAsync { .. })
        ));
        assert!(matches!(
            creds.force_refresh(),
            Err(Error::BlockingInAsync { .. })
        ));
        // The async face works here.
        assert_eq!(
            creds.as_async().access_token().await.unwrap().secret(),
            "ya29.FIXED"
        );
        drop(creds); // ends the runtime thread without waiting for it
    });
}
