//! The loopback listener of the consent flow, in process: state check, stray
//! requests, timeout, port release, PKCE and granted scopes. The test plays
//! the browser by calling the redirect URI itself.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::browser::{self, query_param};
use crate::common::*;
use base64::Engine;
use gemini_oauth::{Consent, CredentialLoader, Error, MemoryTokenStore};
use sha2::Digest;
use tokio::sync::mpsc;
use wiremock::MockServer;

fn loader(
    tokens: &MockServer,
    store: &MemoryTokenStore,
) -> (CredentialLoader, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let l = CredentialLoader::new()
        .client_secret(consent_client(tokens))
        .token_store(store.clone())
        .consent(Consent::PrintUrl)
        .consent_timeout(Duration::from_secs(10))
        .on_consent_url(move |url| tx.send(url.to_owned()).unwrap());
    (l, rx)
}

fn redirect_addr(url: &str) -> SocketAddr {
    let redirect = query_param(url, "redirect_uri").unwrap();
    redirect
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[tokio::test]
async fn wrong_state_and_stray_requests_are_rejected_then_the_real_answer_completes() {
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (l, mut urls) = loader(&tokens, &store);
    let flow = tokio::spawn(l.load());

    let url = urls.recv().await.unwrap();
    assert!(url.starts_with("https://accounts.example.com/o/oauth2/auth?"));
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let addr = redirect_addr(&url);
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    assert_eq!(
        redirect,
        format!("http://{addr}/"),
        "redirect_uri is exactly what was bound"
    );
    let state = query_param(&url, "state").unwrap();
    assert!(state.len() >= 32);

    let page = browser::get(&format!("{redirect}?state=FORGED&code=EVILCODEMARKER")).await;
    assert_eq!(page.status, 400);
    assert!(!page.body.contains("EVILCODEMARKER") && !page.body.contains("FORGED"));
    assert_eq!(
        browser::get(&format!("http://{addr}/favicon.ico"))
            .await
            .status,
        404
    );
    assert_eq!(
        browser::get(&format!("{redirect}?code=nostate"))
            .await
            .status,
        400
    );
    assert!(!flow.is_finished(), "stray requests do not end the flow");

    let page = browser::get(&format!(
        "{redirect}?state={state}&code=4%2FGOODCODE&iss=https%3A%2F%2Faccounts.google.com"
    ))
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Authorization complete"));
    let creds = flow.await.unwrap().unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(store.get().unwrap().refresh_token(), Some(REFRESH_TOKEN));

    // The exchange carried the code, the PKCE verifier matching the challenge,
    // the same redirect_uri, and the client credentials.
    let reqs = tokens.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let form: Vec<(String, String)> = form_urlencoded::parse(&reqs[0].body).into_owned().collect();
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("code"), "4/GOODCODE");
    assert_eq!(get("redirect_uri"), redirect);
    assert_eq!(get("client_id"), CLIENT_ID);
    assert_eq!(get("client_secret"), CLIENT_SECRET);
    let verifier = get("code_verifier");
    assert!((43..=128).contains(&verifier.len()));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(query_param(&url, "code_challenge").unwrap(), challenge);
    assert_eq!(query_param(&url, "code_challenge_method").unwrap(), "S256");
    assert_eq!(query_param(&url, "access_type").unwrap(), "offline");
    assert_eq!(query_param(&url, "scope").unwrap(), RETRIEVER);

    // The port is released once the flow is over.
    std::net::TcpListener::bind(addr).expect("port released after success");
}

#[tokio::test]
async fn denial_is_immediate_and_never_echoes_query_values() {
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (l, mut urls) = loader(&tokens, &store);
    let flow = tokio::spawn(l.load());
    let url = urls.recv().await.unwrap();
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let page = browser::get(&format!(
        "{redirect}?error=access_denied&error_description=%3Cscript%3EHTMLMARKER&state={state}"
    ))
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("refused")
            && !page.body.contains("HTMLMARKER")
            && !page.body.contains("<script>")
    );
    let err = tokio::time::timeout(Duration::from_secs(5), flow)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::AuthorizationDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("choose Allow"), "{err}");
    assert!(tokens.received_requests().await.unwrap().is_empty());
    assert!(store.get().is_none());
    std::net::TcpListener::bind(redirect_addr(&url)).expect("port released after denial");
}

#[tokio::test]
async fn nobody_answering_times_out_and_releases_the_fixed_port() {
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], crate::common::port_to_bind_later()));
    let (l, mut urls) = loader(&tokens, &store);
    let err = l
        .redirect_addr(port)
        .consent_timeout(Duration::from_millis(300))
        .load()
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("sign-in"), "{err}");
    let url = urls.recv().await.unwrap();
    assert_eq!(redirect_addr(&url), port, "the configured port was used");
    std::net::TcpListener::bind(port).expect("port released after timeout");
}

#[tokio::test]
async fn fewer_granted_scopes_than_requested_is_an_error_naming_them() {
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (l, mut urls) = loader(&tokens, &store);
    let flow = tokio::spawn(
        l.scopes([RETRIEVER, gemini_oauth::scopes::CLOUD_PLATFORM])
            .load(),
    );
    let url = urls.recv().await.unwrap();
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    browser::get(&format!("{redirect}?state={state}&code=c")).await;
    let err = flow.await.unwrap().unwrap_err();
    match &err {
        Error::ScopesNotGranted { missing, .. } => {
            assert_eq!(missing, &[gemini_oauth::scopes::CLOUD_PLATFORM])
        }
        other => panic!("{other:?}"),
    }
    assert!(store.get().is_none(), "a partial grant is not saved");
}

#[tokio::test]
async fn missing_client_secret_file_is_reported_when_consent_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let err = CredentialLoader::new()
        .client_secret_file(dir.path().join("client_secret.json"))
        .token_store(MemoryTokenStore::new())
        .consent(Consent::PrintUrl)
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ClientSecretNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn sixteen_idle_connections_do_not_keep_the_redirect_out() {
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (l, mut urls) = loader(&tokens, &store);
    // Shorter than the listener's 10 s header-read timeout: no idle
    // connection ends by itself before the flow would give up.
    let flow = tokio::spawn(l.consent_timeout(Duration::from_secs(5)).load());
    let url = urls.recv().await.unwrap();
    let addr = redirect_addr(&url);
    // Another local process fills the listener's 16 connection slots and
    // sends nothing.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let answer = format!("{redirect}?state={state}&code=4%2FGOODCODE");
    let page = tokio::spawn(async move { browser::get(&answer).await });
    // Hang guard only: the flow ends by success or by its own 5 s timeout.
    let outcome = tokio::time::timeout(Duration::from_secs(20), flow)
        .await
        .unwrap()
        .unwrap();
    let creds = outcome.expect("the redirect was served despite the idle connections");
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(page.await.unwrap().status, 200);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_sent_requests_does_not_keep_the_redirect_out() {
    use tokio::io::AsyncWriteExt;
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (l, mut urls) = loader(&tokens, &store);
    let flow = tokio::spawn(l.consent_timeout(Duration::from_secs(8)).load());
    let url = urls.recv().await.unwrap();
    let addr = redirect_addr(&url);
    // Another local process opens 100 connections, each sending half a
    // request line, before and while the browser comes back.
    async fn half(addr: SocketAddr) -> Option<tokio::net::TcpStream> {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /?state=x&co").await.ok()?;
        Some(s)
    }
    let mut held = Vec::new();
    for _ in 0..100 {
        held.extend(half(addr).await);
    }
    let flood = tokio::spawn(async move {
        let mut more = Vec::new();
        for _ in 0..100 {
            more.extend(half(addr).await);
        }
        more
    });
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let answer = format!("{redirect}?state={state}&code=4%2FGOODCODE");
    let page = browser::get(&answer).await;
    assert_eq!(page.status, 200);
    let outcome = tokio::time::timeout(Duration::from_secs(20), flow)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    drop((held, flood.await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_request_body_do_not_keep_the_redirect_out() {
    use tokio::io::AsyncWriteExt;
    let tokens = code_endpoint(RETRIEVER).await;
    let store = MemoryTokenStore::new();
    let (l, mut urls) = loader(&tokens, &store);
    let flow = tokio::spawn(l.consent_timeout(Duration::from_secs(5)).load());
    let url = urls.recv().await.unwrap();
    let addr = redirect_addr(&url);
    // Complete request heads (so they are not silent) whose bodies never come.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = query_param(&url, "state").unwrap();
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let answer = format!("{redirect}?state={state}&code=4%2FGOODCODE");
    let page = tokio::spawn(async move { browser::get(&answer).await });
    let outcome = tokio::time::timeout(Duration::from_secs(20), flow)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(page.await.unwrap().status, 200);
    drop(held);
}
