//! The reqwest-middleware adapter (feature `reqwest`) with the real
//! `reqwest_middleware::ClientBuilder` against local servers.

use crate::common::*;
use gemini_oauth::reqwest::AuthMiddleware;
use gemini_oauth::{Credentials, Error};
use serde_json::json;
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GENERATE: &str = "/v1/models/m:generateContent";

fn client(creds: Credentials) -> reqwest_middleware::ClientWithMiddleware {
    // With every feature on, google-cloud-auth builds reqwest with rustls but
    // no crypto provider; loading the credentials made ring's the process
    // default, as none was installed.
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(creds))
        .build()
}

/// An API that rejects `OLD_ACCESS` and accepts `NEW_ACCESS` with the quota
/// project and the body `{"q":1}`.
async fn api_rejecting_the_old_token() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .and(bearer(OLD_ACCESS))
        .respond_with(ResponseTemplate::new(401))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .and(bearer(NEW_ACCESS))
        .and(header("x-goog-user-project", "mw-proj"))
        .and(body_string(r#"{"q":1}"#))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&api)
        .await;
    api
}

fn bearers(requests: &[wiremock::Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_and_the_request_repeated() {
    let (tokens, api) = (token_endpoint().await, api_rejecting_the_old_token().await);
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = dir.loader().quota_project("mw-proj").load().await.unwrap();
    let client = client(creds);
    let url = format!("{}{GENERATE}", api.uri());

    let resp = client
        .post(&url)
        .header("authorization", "Bearer caller-token")
        .body(r#"{"q":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"ok":true}"#);
    assert_eq!(token_requests(&tokens).await, 1);
    let seen = api.received_requests().await.unwrap();
    assert_eq!(
        bearers(&seen),
        [
            format!("Bearer {OLD_ACCESS}"),
            format!("Bearer {NEW_ACCESS}")
        ]
    );
    assert_eq!(seen[0].headers["x-goog-user-project"], "mw-proj");

    // The next request goes out with the new token: no 401, no refresh.
    let resp = client.post(&url).body(r#"{"q":1}"#).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(token_requests(&tokens).await, 1);
    assert_eq!(api.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_failed_refresh_after_a_401_is_the_error() {
    let tokens = token_server_answering(&[(400, json!({"error": "invalid_grant"}))]).await;
    let api = api_rejecting_the_old_token().await;
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let client = client(dir.loader().load().await.unwrap());
    let err = client
        .post(format!("{}{GENERATE}", api.uri()))
        .body(r#"{"q":1}"#)
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(e) = &err else {
        panic!("{err:?}")
    };
    let ours = e.downcast_ref::<Error>().expect("our error inside");
    assert!(matches!(ours, Error::InvalidGrant { .. }), "{ours:?}");
    assert_no_secrets(&format!("{err} {err:?}"));
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_api_key_is_sent_as_x_goog_api_key_and_a_401_is_returned_as_it_is() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("x-goog-api-key", "AIzaKEY"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&api)
        .await;
    let client = client(Credentials::from_api_key("AIzaKEY").unwrap());
    let resp = client
        .get(format!("{}/v1/models", api.uri()))
        .bearer_auth("caller-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let seen = api.received_requests().await.unwrap();
    assert!(seen[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn reqwest_needs_no_crypto_provider_installed_by_hand() {
    if !alone_in_this_process(
        "reqwest_middleware::reqwest_needs_no_crypto_provider_installed_by_hand",
    ) {
        return;
    }
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    let (tokens, api) = (token_endpoint().await, api_rejecting_the_old_token().await);
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = dir.loader().quota_project("mw-proj").load().await.unwrap();
    // reqwest as google-cloud-auth builds it (rustls without a provider)
    // would panic here without a process default.
    let resp = client(creds)
        .post(format!("{}{GENERATE}", api.uri()))
        .body(r#"{"q":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
