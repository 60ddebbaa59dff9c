//! `Credentials::force_refresh` and the fixed-token test double
//! (`Credentials::from_access_token`).

use std::time::{Duration, SystemTime};

use crate::common::*;
use gemini_oauth::{CredentialLoader, Credentials, Error};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIXED: &str = "ya29.FIXEDMARKER";

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

#[tokio::test]
async fn force_refresh_replaces_a_valid_token_with_one_shared_refresh() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    assert_eq!(token_requests(&tokens).await, 0);

    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c = creds.clone();
            tokio::spawn(async move { c.force_refresh().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().secret(), NEW_ACCESS);
    }
    assert_eq!(token_requests(&tokens).await, 1);
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    // The new token was saved like any refresh.
    let saved = read_json(&dir.token_file());
    assert_eq!(saved["token"], NEW_ACCESS);

    // Forced again: another request, though the token is fresh.
    creds.force_refresh().await.unwrap();
    assert_eq!(token_requests(&tokens).await, 2);
}

#[tokio::test]
async fn api_keys_cannot_be_refreshed() {
    let creds = Credentials::from_api_key("AIzaKEYMARKER").unwrap();
    let err = creds.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::CannotRefresh { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("API key") && text.contains("x-goog-api-key"),
        "{text}"
    );
    assert!(!format!("{text} {err:?}").contains("KEYMARKER"));
}

#[tokio::test]
async fn a_fixed_token_is_served_and_never_refreshed() {
    let creds = Credentials::from_access_token(FIXED, in_an_hour()).unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), FIXED);
    let headers = creds.headers().await.unwrap();
    assert_eq!(headers["authorization"], format!("Bearer {FIXED}").as_str());
    assert!(creds.source().contains("test double"), "{}", creds.source());
    assert!(creds.stored_token().is_none());
    assert!(!format!("{creds:?}").contains("MARKER"));

    let err = creds.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::CannotRefresh { .. }), "{err:?}");
    assert!(err.to_string().contains("later expiry"), "{err}");
    // The fixed token is still served after the refused refresh.
    assert_eq!(creds.access_token().await.unwrap().secret(), FIXED);
}

#[tokio::test]
async fn an_expired_fixed_token_is_a_clear_error_not_a_refresh() {
    let creds =
        Credentials::from_access_token(FIXED, SystemTime::now() - Duration::from_secs(1)).unwrap();
    for _ in 0..3 {
        let err = creds.access_token().await.unwrap_err();
        assert!(matches!(err, Error::CannotRefresh { .. }), "{err:?}");
        assert!(err.to_string().contains("from_access_token"), "{err}");
    }
    assert!(matches!(
        creds.headers().await,
        Err(Error::CannotRefresh { .. })
    ));
}

#[tokio::test]
async fn a_fixed_token_rejected_by_the_api_is_an_error_after_one_request() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(bearer(FIXED))
        .and(header("x-goog-user-project", "double-proj"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&api)
        .await;
    let creds = CredentialLoader::fixed_token(FIXED, in_an_hour())
        .api_base(format!("{}/v1", api.uri()))
        .quota_project("double-proj")
        .build()
        .unwrap();
    let client = creds.authorized_client();
    let err = client.get(&client.api_url("models")).await.unwrap_err();
    assert!(matches!(err, Error::CannotRefresh { .. }), "{err:?}");
}

#[test]
fn a_token_that_cannot_be_a_header_is_refused() {
    let err = Credentials::from_access_token("bad\nTOKEN", in_an_hour()).unwrap_err();
    assert!(matches!(err, Error::InvalidHeaderValue { .. }), "{err:?}");
}
