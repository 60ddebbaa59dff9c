//! End-to-end consent flow against a real third-party OAuth 2.0 server
//! (panva/oidc-provider, run locally): authorization code + PKCE + state,
//! refresh, revocation, denial and a wrong client secret. The test plays the
//! browser: it requests the consent URL and delivers the redirect's
//! `Location` to our loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::browser::{self, query_param};
use crate::common::oidc::{self, OidcServer};
use gemini_oauth::{
    ClientSecret, Consent, CredentialLoader, Error, FileTokenStore, OAuthError, scopes,
};
use tokio::sync::mpsc;

const SCOPES: [&str; 2] = [
    scopes::GENERATIVE_LANGUAGE_RETRIEVER,
    scopes::CLOUD_PLATFORM,
];

/// A loader whose consent URLs go to a "browser" task that approves them.
/// Returns the loader and a counter of consent screens shown.
fn loader(
    server: &OidcServer,
    dir: &std::path::Path,
    id: &str,
    secret: &str,
) -> (
    CredentialLoader,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<String>,
) {
    let secret = ClientSecret::from_json(server.client_secret_json(id, secret).as_bytes()).unwrap();
    let shown = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let counter = Arc::clone(&shown);
    let loader = CredentialLoader::new()
        .client_secret(secret)
        .token_store(FileTokenStore::new(dir.join("token.json")))
        .scopes(SCOPES)
        .consent(Consent::PrintUrl)
        .consent_timeout(Duration::from_secs(20))
        .on_consent_url(move |url| {
            counter.fetch_add(1, Ordering::SeqCst);
            let url = url.to_owned();
            let tx = tx.clone();
            // Plays the browser: the server redirects, we follow to our loopback.
            tokio::spawn(async move {
                let page = browser::get(&url).await;
                let location = page.location.unwrap_or_else(|| {
                    panic!(
                        "authorization server answered {} without redirect: {}",
                        page.status, page.body
                    )
                });
                let landing = browser::get(&location).await;
                tx.send(format!("{} {}", landing.status, landing.body))
                    .unwrap();
                tx.send(url).unwrap();
            });
        });
    (loader, shown, rx)
}

fn set_expiry_past(path: &std::path::Path) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["expiry"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(path, v.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_cache_refresh_revoke_and_consent_again() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token.json");

    // 1. First run: consent, code exchange with PKCE, token.json written.
    let (l, shown, mut pages) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
    let creds = l.load().await.unwrap();
    assert_eq!(shown.load(Ordering::SeqCst), 1);
    let landing = pages.recv().await.unwrap();
    assert!(
        landing.starts_with("200 ") && landing.contains("Authorization complete"),
        "{landing}"
    );
    let url = pages.recv().await.unwrap();
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(
        query_param(&url, "prompt").is_none(),
        "first consent needs no prompt=consent"
    );
    let first = creds.access_token().await.unwrap().secret().to_owned();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&token_path).unwrap()).unwrap();
    assert_eq!(stored["token"], first.as_str());
    assert!(
        stored["refresh_token"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(stored["client_id"], oidc::CLIENT_ID);
    assert_eq!(stored["token_uri"], server.token.as_str());
    assert_eq!(stored["scopes"], serde_json::json!(SCOPES));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // 2. Second run: the cache serves, no consent.
    let (l, shown, _) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
    let creds = l.load().await.unwrap();
    assert_eq!(shown.load(Ordering::SeqCst), 0);
    assert_eq!(creds.access_token().await.unwrap().secret(), first);

    // 3. Expired access token: refreshed by oidc-provider, no consent.
    set_expiry_past(&token_path);
    let (l, shown, _) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
    let creds = l.load().await.unwrap();
    assert_eq!(shown.load(Ordering::SeqCst), 0);
    let refreshed = creds.access_token().await.unwrap().secret().to_owned();
    assert_ne!(refreshed, first);

    // 4. Revoke the refresh token at the server.
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&token_path).unwrap()).unwrap();
    let refresh_token = stored["refresh_token"].as_str().unwrap().to_owned();
    revoke(&server, &refresh_token).await;
    set_expiry_past(&token_path);

    // 4a. Without consent allowed: the invalid_grant error, explained.
    let (l, shown, _) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
    let err = l.consent(Consent::Never).load().await.unwrap_err();
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    assert!(err.to_string().contains("sign in again"), "{err}");
    assert_eq!(shown.load(Ordering::SeqCst), 0);

    // 4b. With consent allowed: a new consent with prompt=consent, new refresh token.
    let (l, shown, mut pages) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
    let creds = l.load().await.unwrap();
    assert_eq!(shown.load(Ordering::SeqCst), 1);
    let _landing = pages.recv().await.unwrap();
    let url = pages.recv().await.unwrap();
    assert_eq!(query_param(&url, "prompt").as_deref(), Some("consent"));
    assert!(!creds.access_token().await.unwrap().secret().is_empty());
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&token_path).unwrap()).unwrap();
    assert_ne!(stored["refresh_token"].as_str().unwrap(), refresh_token);
}

async fn revoke(server: &OidcServer, token: &str) {
    use http_body_util::{BodyExt, Full};
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("client_id", oidc::CLIENT_ID)
        .append_pair("client_secret", oidc::CLIENT_SECRET)
        .finish();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(&server.revoke)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(body))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    assert!(status.is_success(), "revocation answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_consent_is_a_prompt_typed_error() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (l, shown, mut pages) = loader(
        &server,
        dir.path(),
        oidc::DENY_CLIENT_ID,
        oidc::DENY_CLIENT_SECRET,
    );
    let err = l.load().await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::AuthorizationDenied {
                error: OAuthError::AccessDenied,
                ..
            }
        ),
        "{err:?}"
    );
    // AuthorizationDenied, not Timeout: answered when the redirect arrived.
    assert_eq!(shown.load(Ordering::SeqCst), 1);
    let landing = pages.recv().await.unwrap();
    assert!(landing.contains("Authorization refused"), "{landing}");
    assert!(!dir.path().join("token.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_secret_is_invalid_client() {
    let server = OidcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (l, _, _) = loader(&server, dir.path(), oidc::CLIENT_ID, "WRONGSECRETMARKER");
    let err = l.load().await.unwrap_err();
    assert_eq!(
        err.oauth_error(),
        Some(&OAuthError::InvalidClient),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("WRONGSECRETMARKER"));
    assert!(!dir.path().join("token.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_are_kept() {
    let server = OidcServer::start_with(&[("OIDC_ROTATE_REFRESH", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token.json");
    let (l, _, _) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
    l.load().await.unwrap();
    let mut previous = String::new();
    for _ in 0..3 {
        set_expiry_past(&token_path);
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&token_path).unwrap()).unwrap();
        let before = stored["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(before, previous);
        let (l, shown, _) = loader(&server, dir.path(), oidc::CLIENT_ID, oidc::CLIENT_SECRET);
        l.consent(Consent::Never).load().await.unwrap();
        assert_eq!(shown.load(Ordering::SeqCst), 0);
        previous = before;
    }
}
