//! Credentials over a real yup-oauth2 `Authenticator` (feature `yup-oauth2`):
//! its installed flow with its token file, and its service-account flow,
//! against token endpoints on 127.0.0.1.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;
use gemini_oauth::{CredentialLoader, Credentials, Error, OAuthError};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::authenticator_delegate::InstalledFlowDelegate;

type Connector =
    yup_oauth2::hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// Fails at once where yup-oauth2 would send the user to a browser: a
/// failed refresh must not wait for a person.
struct NoBrowser;

impl InstalledFlowDelegate for NoBrowser {
    fn present_user_url<'a>(
        &'a self,
        _url: &'a str,
        _need_code: bool,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async { Err("no browser in tests".to_owned()) })
    }
}

/// yup-oauth2's installed flow, its token file holding `OLD_ACCESS` (with
/// `REFRESH_TOKEN`) for `RETRIEVER`, valid for an hour; refreshes go to `tokens`.
async fn installed(dir: &TempLoader, tokens: &MockServer) -> (Authenticator<Connector>, i64) {
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let info = yup_oauth2::storage::TokenInfo {
        access_token: Some(OLD_ACCESS.into()),
        refresh_token: Some(REFRESH_TOKEN.into()),
        expires_at: Some(expiry),
        id_token: None,
    };
    let file = dir.path().join("yup-tokens.json");
    std::fs::write(
        &file,
        json!([{ "scopes": [RETRIEVER], "token": info }]).to_string(),
    )
    .unwrap();
    let secret = yup_oauth2::ApplicationSecret {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        token_uri: token_uri(tokens),
        auth_uri: format!("{}/auth", tokens.uri()),
        redirect_uris: vec!["http://127.0.0.1".into()],
        ..Default::default()
    };
    let auth = yup_oauth2::InstalledFlowAuthenticator::builder(
        secret,
        yup_oauth2::InstalledFlowReturnMethod::Interactive,
    )
    .flow_delegate(Box::new(NoBrowser))
    .persist_tokens_to_disk(file)
    .build()
    .await
    .unwrap();
    (auth, expiry.unix_timestamp())
}

/// Answers every `POST /token` (any grant) with `answers` in order, then the last again.
struct InOrder(Vec<(u16, Value)>, AtomicUsize);

impl Respond for InOrder {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.1.fetch_add(1, Ordering::SeqCst).min(self.0.len() - 1);
        ResponseTemplate::new(self.0[n].0).set_body_json(&self.0[n].1)
    }
}

async fn any_grant_server(answers: &[(u16, Value)]) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(InOrder(answers.to_vec(), AtomicUsize::new(0)))
        .mount(&server)
        .await;
    server
}

/// yup-oauth2's service-account flow with a new key, its token endpoint at `token_uri`.
async fn service_account(dir: &TempLoader, token_uri: String) -> Authenticator<Connector> {
    let (private_key, _) = crate::adc::rsa_key(dir.path());
    let key = yup_oauth2::ServiceAccountKey {
        key_type: Some("service_account".into()),
        project_id: Some("test-project".into()),
        private_key_id: Some("k1".into()),
        private_key,
        client_email: "sa@test-project.iam.gserviceaccount.com".into(),
        client_id: None,
        auth_uri: None,
        token_uri,
        auth_provider_x509_cert_url: None,
        client_x509_cert_url: None,
    };
    yup_oauth2::ServiceAccountAuthenticator::builder(key)
        .build()
        .await
        .unwrap()
}

fn short_then_new() -> [(u16, Value); 2] {
    [dying_token(), new_token()]
}

#[tokio::test]
async fn yup_oauth2_s_cached_token_is_served_and_a_forced_refresh_asks_it_for_a_new_one() {
    let tokens = token_endpoint().await;
    let dir = TempLoader::empty();
    let (auth, expiry) = installed(&dir, &tokens).await;
    let creds = CredentialLoader::yup_oauth2(auth, [RETRIEVER])
        .quota_project("yup-proj")
        .load()
        .await
        .unwrap();

    let token = creds.access_token().await.unwrap();
    assert_eq!(token.secret(), OLD_ACCESS);
    let secs = token
        .expires_at()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(secs as i64, expiry);
    let headers = creds.headers().await.unwrap();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {OLD_ACCESS}").as_str()
    );
    assert_eq!(headers["x-goog-user-project"], "yup-proj");
    assert_eq!(
        token_requests(&tokens).await,
        0,
        "yup-oauth2's cached token"
    );

    // After a 401 (or when due), yup-oauth2 refreshes, not hands back its copy.
    assert_eq!(creds.force_refresh().await.unwrap().secret(), NEW_ACCESS);
    for _ in 0..3 {
        assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    }
    assert_eq!(token_requests(&tokens).await, 1);
    let form = String::from_utf8(requests_to(&tokens, "/token").await[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=refresh_token"), "{form}");

    let shown = format!(
        "{creds:?} {:?}",
        CredentialLoader::yup_oauth2(installed(&dir, &tokens).await.0, [RETRIEVER])
    );
    assert!(shown.contains("yup-oauth2"), "{shown}");
    assert_no_secrets(&shown);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_all_callers() {
    let tokens = any_grant_server(&short_then_new()).await;
    let dir = TempLoader::empty();
    let auth = service_account(&dir, token_uri(&tokens)).await;
    let creds = Credentials::from_yup_oauth2(auth, [RETRIEVER])
        .await
        .unwrap();
    assert_eq!(token_requests(&tokens).await, 1);

    // The first token is already inside the expiry skew.
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let creds = creds.clone();
            tokio::spawn(async move { creds.access_token().await.unwrap() })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().secret(), NEW_ACCESS);
    }
    assert_eq!(token_requests(&tokens).await, 2, "one refresh for all");
    let token = creds.access_token().await.unwrap();
    assert!(token.expires_at() > SystemTime::now());
    let grants = requests_to(&tokens, "/token").await;
    let form = String::from_utf8(grants[1].body.clone()).unwrap();
    assert!(
        form.contains("jwt-bearer"),
        "a service-account grant: {form}"
    );
}

#[tokio::test]
async fn yup_oauth2_s_errors_become_ours_without_secrets() {
    // invalid_grant on the refresh after the first token.
    let tokens = any_grant_server(&[
        short_then_new()[0].clone(),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ),
    ])
    .await;
    let dir = TempLoader::empty();
    let creds =
        Credentials::from_yup_oauth2(service_account(&dir, token_uri(&tokens)).await, [RETRIEVER])
            .await
            .unwrap();
    let err = creds.access_token().await.unwrap_err();
    assert_eq!(
        err.oauth_error(),
        Some(&OAuthError::InvalidGrant),
        "{err:?}"
    );
    assert!(matches!(err, Error::OAuth { .. }), "{err:?}");
    assert!(err.to_string().contains("Invalid JWT Signature"), "{err}");
    assert!(!err.is_transient());
    assert_no_secrets(&format!("{err} {err:?}"));

    // Nothing listening: a transport error, worth retrying.
    let dir = TempLoader::empty();
    let auth = service_account(&dir, format!("http://{}/token", closed_port())).await;
    let err = Credentials::from_yup_oauth2(auth, [RETRIEVER])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s}"));
        source = s.source();
    }
    assert_no_secrets(&chain);
}

/// A token endpoint on 127.0.0.1 that answers its first connection with
/// [`dying_token`] (a token already inside the expiry skew), then accepts
/// every connection and never answers; its token URI.
async fn dying_then_silent() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut held, mut answered) = (Vec::new(), false);
        while let Ok((mut socket, _)) = listener.accept().await {
            if answered {
                held.push(socket);
                continue;
            }
            answered = true;
            let _ = socket.read(&mut vec![0; 64 * 1024]).await;
            let body = dying_token().1.to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{addr}/token")
}

#[tokio::test]
async fn a_refresh_at_a_silent_token_endpoint_ends_with_the_loader_s_timeout() {
    let dir = TempLoader::empty();
    let auth = service_account(&dir, dying_then_silent().await).await;
    let limit = std::time::Duration::from_millis(300);
    let creds = CredentialLoader::yup_oauth2(auth, [RETRIEVER])
        .timeout(limit)
        .load()
        .await
        .unwrap();
    // The first token is dying: the next caller refreshes, and yup-oauth2
    // (with no timeout of its own) waits on the silent endpoint.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), creds.access_token())
        .await
        .expect("the refresh ends within the loader's timeout, not never");
    let err = ended.unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { after, .. } if *after == limit),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_no_secrets(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn an_expiry_yup_oauth2_cannot_hold_is_an_error_not_a_panic() {
    // yup-oauth2 adds expires_in to its clock with an addition that panics
    // past the `time` crate's range.
    let huge =
        json!({"access_token": "ya29.HUGEMARKER", "expires_in": i64::MAX, "token_type": "Bearer"});
    let tokens = any_grant_server(&[(200, huge)]).await;
    let dir = TempLoader::empty();
    let auth = service_account(&dir, token_uri(&tokens)).await;
    let loaded = tokio::spawn(Credentials::from_yup_oauth2(auth, [RETRIEVER]))
        .await
        .expect("load() does not panic");
    let err = loaded.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(err.to_string().contains("yup-oauth2"), "{err}");
    assert_no_secrets(&format!("{err} {err:?}"));
    assert_eq!(token_requests(&tokens).await, 1);
}
