//! The load_creds decision against a real token endpoint on 127.0.0.1 and
//! real files: cached → refresh → (consent), with request counts.

use crate::common::*;
use gemini_oauth::{Consent, ConsentReason, Error, OAuthError};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

/// A token.json that expired a second ago, in a temp dir, and its token
/// endpoint, which gives `answers` (see `token_server_answering`).
async fn expired_token_answered(answers: &[(u16, serde_json::Value)]) -> (MockServer, TempLoader) {
    let server = token_server_answering(answers).await;
    let dir = TempLoader::with_token(&token_uri(&server), -1);
    (server, dir)
}

#[tokio::test]
async fn valid_cached_token_is_served_without_any_request() {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let file = dir.token_file();
    let before = std::fs::read(&file).unwrap();
    let creds = dir.loader().load().await.unwrap();
    for _ in 0..3 {
        assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    }
    assert_eq!(token_requests(&server).await, 0);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a cache hit must not rewrite the file"
    );
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_saved() {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&server), -60);
    let mut original = read_json(&dir.token_file());
    original["quota_project_id"] = json!("kept-project");
    let file = dir.write_token(&original.to_string());

    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(creds.quota_project(), Some("kept-project"));
    assert_eq!(token_requests(&server).await, 1);

    let req = &server.received_requests().await.unwrap()[0];
    let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("grant_type"), Some("refresh_token"));
    assert_eq!(get("refresh_token"), Some(REFRESH_TOKEN));
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    assert_eq!(get("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(
        req.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );

    let saved = read_json(&file);
    assert_eq!(saved["token"], NEW_ACCESS);
    assert_eq!(saved["refresh_token"], REFRESH_TOKEN);
    assert_eq!(
        saved["quota_project_id"], "kept-project",
        "unknown keys survive"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(r#"{"token": ""#), "{text}");
    assert!(
        text.contains(r#", "expiry": ""#) && text.ends_with("Z\"}"),
        "{text}"
    );

    // A second load uses what the first one saved.
    let again = dir.loader().load().await.unwrap();
    assert_eq!(again.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn missing_expiry_counts_as_expired_like_google_auth() {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let mut v = read_json(&dir.token_file());
    v.as_object_mut().unwrap().remove("expiry");
    dir.write_token(&v.to_string());
    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn rotated_refresh_token_is_saved() {
    let (server, dir) = expired_token_answered(&[(
        200,
        json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer",
            "refresh_token": "1//ROTATEDMARKER", "scope": format!("{RETRIEVER} openid")
        }),
    )])
    .await;
    let creds = dir.loader().load().await.unwrap();
    let saved = read_json(&dir.token_file());
    assert_eq!(saved["refresh_token"], "1//ROTATEDMARKER");
    assert_eq!(saved["scopes"], json!([RETRIEVER, "openid"]));
    assert_eq!(
        creds.granted_scopes().unwrap(),
        vec![RETRIEVER.to_owned(), "openid".into()]
    );
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn token_uri_override_wins_over_the_file() {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token("https://oauth2.googleapis.com/token", -1);
    let creds = dir
        .loader()
        .token_uri(token_uri(&server))
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn invalid_grant_without_consent_explains_what_to_do() {
    let (server, dir) = expired_token_answered(&[(
        400,
        json!({
            "error": "invalid_grant", "error_description": "Token has been expired or revoked."
        }),
    )])
    .await;
    let err = dir.loader().load().await.unwrap_err();
    let Error::InvalidGrant {
        description, store, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        description.as_deref(),
        Some("Token has been expired or revoked.")
    );
    assert!(store.ends_with("token.json"));
    let msg = err.to_string();
    assert!(
        msg.contains("7 days") && msg.contains("token.json"),
        "{msg}"
    );
    assert_no_secrets(&format!("{msg} {err:?}"));
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn other_oauth_errors_are_typed_and_not_retried() {
    let (server, dir) = expired_token_answered(&[(
        401,
        json!({
            "error": "invalid_client", "error_description": "The OAuth client was not found."
        }),
    )])
    .await;
    // Consent is allowed here: a non-grant error must still not start it
    // (which would fail with ClientSecretNotFound in this empty directory).
    let err = dir
        .loader()
        .consent(Consent::PrintUrl)
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some(&OAuthError::InvalidClient));
    assert!(err.to_string().contains("client_secret.json"), "{err}");
    assert_no_secrets(&format!("{err} {err:?}"));
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn transient_failures_are_retried_then_succeed() {
    let server = token_server([
        ResponseTemplate::new(503).set_body_string("<html>busy</html>"),
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer"
        })),
    ])
    .await;
    let dir = TempLoader::with_token(&token_uri(&server), -1);
    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn persistent_transient_failure_never_starts_a_consent() {
    let (server, dir) = expired_token_answered(&[(500, json!({"error": "server_error"}))]).await;
    let err = dir
        .loader()
        .consent(Consent::PrintUrl)
        .load()
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.oauth_error(), Some(&OAuthError::ServerError));
    assert_eq!(token_requests(&server).await, 3, "bounded retries");
}

#[tokio::test]
async fn unreachable_endpoint_is_a_transport_error() {
    let uri = format!("http://{}/token", crate::common::closed_port());
    let dir = TempLoader::with_token(&uri, -1);
    let err = dir.loader().load().await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("/token"), "{err}");
}

#[tokio::test]
async fn no_token_and_no_consent_says_what_to_run() {
    let dir = TempLoader::empty();
    let err = dir.loader().load().await.unwrap_err();
    let Error::ConsentRequired { reason, store, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(reason, &ConsentReason::NoToken);
    assert!(store.ends_with("token.json"));
    assert!(err.to_string().contains("interactively"), "{err}");
}

#[tokio::test]
async fn scopes_not_covered_lead_to_consent() {
    let server = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let err = dir
        .loader()
        .scopes([RETRIEVER, gemini_oauth::scopes::CLOUD_PLATFORM])
        .load()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ConsentRequired { reason: ConsentReason::ScopesNotCovered(m), .. } if m == &[gemini_oauth::scopes::CLOUD_PLATFORM]),
        "{err:?}"
    );
    assert_eq!(token_requests(&server).await, 0);
}

#[tokio::test]
async fn expired_without_refresh_token_needs_consent() {
    let dir = TempLoader::empty();
    dir.write_token(
        r#"{"token": "ya29.x", "client_id": "c", "client_secret": "s", "expiry": "2001-01-01T00:00:00Z"}"#,
    );
    let err = dir.loader().load().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConsentRequired {
                reason: ConsentReason::NoRefreshToken,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn corrupt_token_file_is_an_error_not_a_consent() {
    let dir = TempLoader::empty();
    let file = dir.write_token(r#"{"token": "ya29.TRUNCATEDMARKER", "refre"#);
    let err = dir
        .loader()
        .consent(Consent::PrintUrl)
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenFile { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()));
    assert_no_secrets(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn plain_http_token_endpoint_off_loopback_is_refused() {
    let dir = TempLoader::with_token("http://oauth.example.com/token", -1);
    let err = dir.loader().load().await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn on_refresh_hears_refreshes_and_rotations_but_no_secret() {
    let server = token_server_answering(&[(
        200,
        json!({"access_token": NEW_ACCESS, "expires_in": 3599, "refresh_token": "1//ROTATEDMARKER"}),
    )])
    .await;
    // Expired: load() itself refreshes, and the server rotates the refresh token.
    let dir = TempLoader::with_token(&token_uri(&server), -60);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&events);
    let creds = dir
        .loader()
        .on_refresh(move |e: &gemini_oauth::RefreshEvent| seen.lock().unwrap().push(e.clone()))
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].refresh_token_rotated);
    assert!(events[0].source.ends_with("token.json"));
    let left = events[0]
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > std::time::Duration::from_secs(3000), "{left:?}");
    assert_no_secrets(&format!("{events:?}"));
}

#[tokio::test]
async fn a_wider_refresh_margin_refreshes_earlier() {
    let server = token_endpoint().await;
    // Five minutes left: outside the default window, inside a 10 minute margin.
    let dir = TempLoader::with_token(&token_uri(&server), 300);
    let default = dir.loader().load().await.unwrap();
    assert_eq!(default.access_token().await.unwrap().secret(), OLD_ACCESS);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(token_requests(&server).await, 0);

    let wide = dir
        .loader()
        .refresh_margin(std::time::Duration::from_secs(600))
        .load()
        .await
        .unwrap();
    // The still-valid token is served while one background refresh runs.
    assert_eq!(wide.access_token().await.unwrap().secret(), OLD_ACCESS);
    for _ in 0..100 {
        if wide.access_token().await.unwrap().secret() == NEW_ACCESS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(wide.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 1);
}
