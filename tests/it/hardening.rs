//! What breaks outside the happy path, in process: a caller that gives up on
//! a consent, a redirect address that is not loopback, other methods on the
//! redirect, a one-off token endpoint, signing out while a refresh runs, and
//! many callers after a refresh failed.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::browser::{self, query_param};
use crate::common::*;
use gemini_oauth::{Consent, CredentialLoader, Error, MemoryTokenStore};
use serde_json::json;
use tokio::sync::mpsc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::common::port_to_bind_later()))
}

/// A sign-in loader whose consent URLs arrive on the receiver.
fn consent_loader(tokens: &MockServer) -> (CredentialLoader, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let loader = CredentialLoader::new()
        .client_secret(consent_client(tokens))
        .token_store(MemoryTokenStore::new())
        .consent(Consent::PrintUrl)
        .consent_timeout(Duration::from_secs(30))
        .on_consent_url(move |url| tx.send(url.to_owned()).unwrap());
    (loader, rx)
}

#[tokio::test]
async fn dropping_load_during_consent_releases_the_port_at_once() {
    let tokens = code_endpoint(RETRIEVER).await;
    let port = free_port();
    let (loader, mut urls) = consent_loader(&tokens);
    // The caller's own deadline, far shorter than the consent timeout.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        loader.redirect_addr(port).load(),
    )
    .await;
    assert!(gave_up.is_err(), "the flow was still waiting for the user");
    assert!(urls.try_recv().is_ok(), "the URL was shown");
    std::net::TcpListener::bind(port).expect("the port is free once load() is dropped");
}

#[tokio::test]
async fn the_redirect_address_must_be_loopback() {
    let tokens = code_endpoint(RETRIEVER).await;
    let (loader, mut urls) = consent_loader(&tokens);
    let err = loader
        .redirect_addr("0.0.0.0:0".parse().unwrap())
        .consent_timeout(Duration::from_millis(500))
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConsentFlow(_)), "{err:?}");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(urls.try_recv().is_err(), "no URL was shown");
}

#[tokio::test]
async fn methods_other_than_get_are_refused_and_the_flow_keeps_waiting() {
    let tokens = code_endpoint(RETRIEVER).await;
    let (loader, mut urls) = consent_loader(&tokens);
    let flow = tokio::spawn(loader.load());
    let url = urls.recv().await.unwrap();
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let answer = format!("{redirect}?state={state}&code=4%2FCODE");
    for m in [http::Method::POST, http::Method::PUT, http::Method::DELETE] {
        let page = browser::send(m.clone(), &answer).await;
        assert_eq!(page.status, 405, "{m}");
    }
    assert!(!flow.is_finished());
    assert!(tokens.received_requests().await.unwrap().is_empty());
    assert_eq!(browser::get(&answer).await.status, 200);
    let creds = flow.await.unwrap().unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
}

#[tokio::test]
async fn a_one_off_token_uri_is_used_but_never_saved() {
    // Refresh: the file keeps its own endpoint.
    let files_own = token_endpoint().await;
    let one_off = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&files_own), -60);
    let creds = dir
        .loader()
        .token_uri(token_uri(&one_off))
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&one_off).await, 1);
    assert_eq!(token_requests(&files_own).await, 0);
    let saved = read_json(&dir.token_file());
    assert_eq!(saved["token"], NEW_ACCESS);
    assert_eq!(saved["token_uri"], token_uri(&files_own).as_str());

    // Sign-in: the file gets the client's endpoint, not the override.
    let clients_own = MockServer::start().await;
    let exchange = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (tx, mut urls) = mpsc::unbounded_channel();
    let flow = tokio::spawn(
        CredentialLoader::new()
            .client_secret(consent_client(&clients_own))
            .token_store(store.clone())
            .token_uri(token_uri(&exchange))
            .consent(Consent::PrintUrl)
            .on_consent_url(move |u| tx.send(u.to_owned()).unwrap())
            .load(),
    );
    let url = urls.recv().await.unwrap();
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    browser::get(&format!("{redirect}?state={state}&code=c")).await;
    flow.await.unwrap().unwrap();
    assert_eq!(exchange.received_requests().await.unwrap().len(), 1);
    assert!(clients_own.received_requests().await.unwrap().is_empty());
    assert_eq!(
        store.get().unwrap().token_uri(),
        Some(token_uri(&clients_own).as_str())
    );
}

async fn revoke_endpoint() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_ends_the_session_in_memory_for_every_clone_and_thread() {
    let tokens = token_endpoint().await;
    let revoke = revoke_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = dir
        .loader()
        .revoke_uri(format!("{}/revoke", revoke.uri()))
        .load()
        .await
        .unwrap();
    let clone = creds.clone();
    // Warm the per-thread copies, here and on the workers.
    assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    for _ in 0..4 {
        let c = clone.clone();
        tokio::spawn(async move { c.access_token().await.unwrap() })
            .await
            .unwrap();
    }
    creds.revoke().await.unwrap();

    for c in [&creds, &clone] {
        let err = c.access_token().await.unwrap_err();
        assert!(matches!(err, Error::Revoked { .. }), "{err:?}");
        assert!(err.to_string().contains("revoked"), "{err}");
        assert!(matches!(c.headers().await, Err(Error::Revoked { .. })));
        assert!(c.stored_token().is_none());
        assert!(c.granted_scopes().is_none());
        assert_no_secrets(&format!("{err} {err:?} {c:?}"));
    }
    for _ in 0..4 {
        let c = clone.clone();
        let on_worker = tokio::spawn(async move { c.access_token().await })
            .await
            .unwrap();
        assert!(matches!(on_worker, Err(Error::Revoked { .. })));
    }
    assert!(!dir.token_file().exists());
    assert_eq!(token_requests(&tokens).await, 0);
    assert_eq!(revoke.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_refresh_in_flight_at_sign_out_writes_nothing_back() {
    let tokens = token_server([ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": NEW_ACCESS, "expires_in": 3599}))
        .set_delay(Duration::from_millis(800))])
    .await;
    let revoke = revoke_endpoint().await;
    // 100 s left: inside the refresh window, still served.
    let dir = TempLoader::with_token(&token_uri(&tokens), 100);
    let creds = dir
        .loader()
        .revoke_uri(format!("{}/revoke", revoke.uri()))
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    while token_requests(&tokens).await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The background refresh holds the store's lock and waits for its answer.
    creds.revoke().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !dir.token_file().exists(),
        "the refreshed token was not written back"
    );
    assert!(matches!(
        creds.access_token().await,
        Err(Error::Revoked { .. })
    ));
}

#[tokio::test]
async fn callers_past_expiry_share_the_backoff_after_a_rejected_refresh() {
    let tokens = token_server_answering(&[(
        400,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    )])
    .await;
    // Served at load (14 s left > the 10 s skew), unusable a few seconds later.
    let dir = TempLoader::with_token(&token_uri(&tokens), 14);
    let creds = dir.loader().load().await.unwrap();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for _ in 0..50 {
        let err = creds.access_token().await.unwrap_err();
        assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    }
    assert_eq!(
        token_requests(&tokens).await,
        1,
        "50 callers, 1 token request"
    );
}

#[tokio::test]
async fn an_authorization_code_is_never_retried() {
    // A transient answer (503) would be retried for a refresh; a code is
    // single-use, so its exchange makes exactly one attempt.
    let tokens = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": "temporarily_unavailable"})),
        )
        .mount(&tokens)
        .await;
    let (loader, mut urls) = consent_loader(&tokens);
    let flow = tokio::spawn(loader.load());
    let url = urls.recv().await.unwrap();
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    browser::get(&format!("{redirect}?state={state}&code=4%2FCODEMARKER")).await;
    let err = flow.await.unwrap().unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(tokens.received_requests().await.unwrap().len(), 1);
    assert_no_secrets(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn a_silent_connection_to_the_redirect_port_is_closed_by_the_listener() {
    use tokio::io::AsyncReadExt;
    let tokens = code_endpoint(RETRIEVER).await;
    let (loader, mut urls) = consent_loader(&tokens);
    let flow = tokio::spawn(loader.load());
    let url = urls.recv().await.unwrap();
    let addr = query_param(&url, "redirect_uri").unwrap();
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    // Connects and never sends a request line: the header-read timeout (10 s)
    // ends it, instead of holding a connection slot for the whole flow.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    // A hang guard, not a timing assertion: without the timeout it never ends.
    let closed = tokio::time::timeout(Duration::from_secs(60), idle.read(&mut buf)).await;
    assert!(closed.is_ok(), "the listener closed the silent connection");
    assert!(
        !flow.is_finished(),
        "the flow still waits for the real redirect"
    );
    flow.abort();
}

#[tokio::test]
async fn an_unbounded_consent_timeout_does_not_panic_when_a_refresh_is_due() {
    let tokens = token_endpoint().await;
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let creds = dir
        .loader()
        .consent_timeout(Duration::MAX)
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn an_access_token_that_cannot_be_a_header_is_never_saved_nor_announced() {
    let tokens = token_server_answering(&[(
        200,
        json!({"access_token": "ya29.BAD\nHEADERMARKER", "expires_in": 3599, "token_type": "Bearer"}),
    )])
    .await;
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let before = std::fs::read_to_string(dir.token_file()).unwrap();
    let told = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&told);
    let err = dir
        .loader()
        .on_refresh(move |_| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenResponse { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("HEADERMARKER"),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(dir.token_file()).unwrap(), before);
    assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[cfg(unix)]
#[tokio::test]
async fn a_refresh_through_a_symlinked_token_file_updates_the_target_and_keeps_the_link() {
    let tokens = token_endpoint().await;
    let dir = TempLoader::empty();
    let dotfiles = dir.path().join("dotfiles");
    std::fs::create_dir(&dotfiles).unwrap();
    let target = write_token(&dotfiles, &token_json(&token_uri(&tokens), -60));
    std::os::unix::fs::symlink("dotfiles/token.json", dir.token_file()).unwrap();

    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    let link = std::fs::symlink_metadata(dir.token_file()).unwrap();
    assert!(link.file_type().is_symlink(), "token.json is still a link");
    assert_eq!(read_json(&target)["token"], NEW_ACCESS);
    assert!(dotfiles.join("token.json.lock").exists());
    assert!(!dir.path().join("token.json.lock").exists());
}
