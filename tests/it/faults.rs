//! A token endpoint on 127.0.0.1 that misbehaves: drops connections, cuts
//! answers short, rate-limits, stalls, answers garbage with 200, or rejects
//! the client. Each test checks the outcome, how many requests reached the
//! endpoint (transient faults: a bounded number of retries; anything else:
//! exactly one), that the token file is left as it was, and that no fault
//! ever starts a consent flow.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use gemini_oauth::{Consent, CredentialLoader, Credentials, Error, OAuthError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::{MockServer, ResponseTemplate};

/// Attempts the token endpoint gets for a refresh that keeps failing transiently.
const ATTEMPTS: usize = 3;
/// Only guards against a hang; every load here ends in a few seconds at most.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// A loader for `dir` that would have to start a consent with no
/// client_secret.json (so it would fail with `ClientSecretNotFound`) and that
/// records whether a consent URL was ever produced.
fn loader(dir: &Path, consent: Consent, consent_started: &Arc<AtomicBool>) -> CredentialLoader {
    let flag = Arc::clone(consent_started);
    temp_loader(dir)
        .consent(consent)
        .on_consent_url(move |_| flag.store(true, Ordering::SeqCst))
}

async fn guarded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, work)
        .await
        .expect("finished before the hang guard")
}

/// Loads an expired token.json whose token_uri is `uri`, with `consent`.
/// Returns the result and whether the file is byte-for-byte unchanged.
async fn load_expired(
    uri: &str,
    consent: Consent,
    configure: impl FnOnce(CredentialLoader) -> CredentialLoader,
) -> (gemini_oauth::Result<Credentials>, bool) {
    let dir = TempLoader::with_token(uri, -60);
    let file = dir.token_file();
    let before = std::fs::read(&file).unwrap();
    let consent_started = Arc::new(AtomicBool::new(false));
    let result = guarded(configure(loader(dir.path(), consent, &consent_started)).load()).await;
    assert!(
        !consent_started.load(Ordering::SeqCst),
        "a consent flow was started"
    );
    if let Err(e) = &result {
        assert!(
            !matches!(e, Error::ClientSecretNotFound { .. }),
            "a consent flow was started: {e:?}"
        );
        assert_no_secrets(&format!("{e} {e:?}"));
    }
    let unchanged = std::fs::read(&file).unwrap() == before;
    (result, unchanged)
}

/// A raw TCP endpoint on 127.0.0.1 that counts connections, reads the
/// request, writes `reply` (possibly nothing) and closes.
async fn raw_endpoint(reply: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(reply).await;
                // Dropping the stream closes the connection.
            });
        }
    });
    (format!("http://{addr}/token"), accepted)
}

fn ok_body() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer", "scope": RETRIEVER
    }))
}

// ------------------------------------------------------------ transient faults

#[tokio::test]
async fn dropped_connections_are_transport_errors_retried_a_bounded_number_of_times() {
    for consent in [Consent::Never, Consent::PrintUrl] {
        let (uri, accepted) = raw_endpoint(b"").await;
        let (result, unchanged) = load_expired(&uri, consent, |l| l).await;
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("/token"), "{err}");
        assert_eq!(accepted.load(Ordering::SeqCst), ATTEMPTS, "{consent:?}");
        assert!(
            unchanged,
            "the token file is kept after a transient failure"
        );
    }
}

#[tokio::test]
async fn an_answer_cut_off_mid_body_is_transient_and_retried() {
    let (uri, accepted) = raw_endpoint(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"access_token\": \"ya29.CUTMARKER",
    )
    .await;
    let (result, unchanged) = load_expired(&uri, Consent::PrintUrl, |l| l).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(accepted.load(Ordering::SeqCst), ATTEMPTS);
    assert!(unchanged);
}

#[tokio::test]
async fn rate_limited_then_ok_succeeds_on_the_second_request() {
    let server = token_server([
        ResponseTemplate::new(429).insert_header("retry-after", "0"),
        ok_body(),
    ])
    .await;
    let (result, unchanged) = load_expired(&token_uri(&server), Consent::Never, |l| l).await;
    let creds = result.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 2);
    assert!(!unchanged, "the new token was saved");
}

#[tokio::test]
async fn temporarily_unavailable_then_ok_succeeds_on_the_second_request() {
    let server = token_server([
        ResponseTemplate::new(503).set_body_json(json!({"error": "temporarily_unavailable"})),
        ok_body(),
    ])
    .await;
    let (result, _) = load_expired(&token_uri(&server), Consent::PrintUrl, |l| l).await;
    let creds = result.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn persistent_rate_limit_gives_up_after_bounded_attempts() {
    let too_many = ResponseTemplate::new(429).set_body_string("<html>Too Many Requests</html>");
    let server = token_server([too_many]).await;
    let (result, unchanged) = load_expired(&token_uri(&server), Consent::PrintUrl, |l| l).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::TokenResponse { status: 429, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(token_requests(&server).await, ATTEMPTS);
    assert!(unchanged);
}

#[tokio::test]
async fn an_endpoint_slower_than_the_timeout_is_a_timeout_retried_a_bounded_number_of_times() {
    for consent in [Consent::Never, Consent::PrintUrl] {
        let server = token_server([ok_body().set_delay(Duration::from_secs(10))]).await;
        let (result, unchanged) = load_expired(&token_uri(&server), consent, |l| {
            l.timeout(Duration::from_millis(300))
        })
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("/token"), "{err}");
        assert_eq!(token_requests(&server).await, ATTEMPTS, "{consent:?}");
        assert!(unchanged);
    }
}

/// The authorized client's 401 path: the refresh it forces meets a dropped
/// connection; the error comes back, the API call is not repeated.
#[tokio::test]
async fn a_401_whose_refresh_hits_a_dead_endpoint_returns_the_transport_error() {
    let (uri, accepted) = raw_endpoint(b"").await;
    let api = api_answering(ResponseTemplate::new(401).set_body_json(
        json!({"error": {"code": 401, "message": "revoked", "status": "UNAUTHENTICATED"}}),
    ))
    .await;
    let dir = TempLoader::with_token(&uri, 3000);
    let consent_started = Arc::new(AtomicBool::new(false));
    let creds = guarded(
        loader(dir.path(), Consent::PrintUrl, &consent_started)
            .api_base(format!("{}/v1", api.uri()))
            .load(),
    )
    .await
    .unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the cached token served"
    );
    let client = creds.authorized_client();
    let err = guarded(client.get(&client.api_url("models")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), ATTEMPTS);
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
    assert!(!consent_started.load(Ordering::SeqCst));
    assert_no_secrets(&format!("{err} {err:?}"));
}

// ------------------------------------------------------------ not transient: one request

/// A 200 whose body is not a token response is the server's mistake, not
/// the network's: one request, a `TokenResponse` error that quotes nothing.
#[tokio::test]
async fn garbage_with_200_is_a_token_response_error_after_one_request() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "text/html",
            "<html><body>Sign in to continue MARKER</body></html>",
            "not a JSON object",
        ),
        (
            "application/json",
            r#"{"access_token": "ya29.TRUNCATEDMARKER", "expires_in": 35"#,
            "not a JSON object",
        ),
        (
            "application/json",
            r#"{"expires_in": 3599, "token_type": "Bearer", "refresh_token": "1//NOACCESSMARKER"}"#,
            "no access_token",
        ),
        (
            "application/json",
            r#"{"access_token": "ya29.MACMARKER", "token_type": "mac"}"#,
            "not Bearer",
        ),
    ];
    for (content_type, body, problem) in cases {
        let server =
            token_server([ResponseTemplate::new(200).set_body_raw(body, content_type)]).await;
        for consent in [Consent::Never, Consent::PrintUrl] {
            let (result, unchanged) = load_expired(&token_uri(&server), consent, |l| l).await;
            let err = result.unwrap_err();
            assert!(
                matches!(&err, Error::TokenResponse { status: 200, problem: p, .. } if p.contains(problem)),
                "{body}: {err:?}"
            );
            assert!(!err.is_transient(), "{err:?}");
            assert!(unchanged);
        }
        assert_eq!(token_requests(&server).await, 2, "one per load: {body}");
    }
}

async fn huge_body_endpoint() -> MockServer {
    let body = format!(
        r#"{{"access_token": "ya29.HUGEMARKER", "padding": "{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    token_server([ResponseTemplate::new(200).set_body_raw(body, "application/json")]).await
}

/// A 5 MB answer is cut off at the token-response limit (64 KiB), never read
/// whole, and fails naming the limit, without quoting the body.
#[tokio::test]
async fn a_huge_200_body_is_refused_without_reading_it_whole() {
    let server = huge_body_endpoint().await;
    let (result, unchanged) = load_expired(&token_uri(&server), Consent::PrintUrl, |l| l).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 65536, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("HUGEMARKER"));
    assert!(unchanged);
}

/// The same answer again next time: a 200 that is too large is not a
/// network fault and is not retried.
#[tokio::test]
async fn a_huge_200_body_is_not_retried() {
    let server = huge_body_endpoint().await;
    let (result, _) = load_expired(&token_uri(&server), Consent::PrintUrl, |l| l).await;
    let err = result.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn invalid_client_is_one_request_and_no_retry() {
    for consent in [Consent::Never, Consent::PrintUrl] {
        let server = token_server_answering(&[(
            400,
            json!({
                "error": "invalid_client", "error_description": "The OAuth client was not found."
            }),
        )])
        .await;
        let (result, unchanged) = load_expired(&token_uri(&server), consent, |l| l).await;
        let err = result.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::OAuth {
                    error: OAuthError::InvalidClient,
                    status: 400,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .contains("download client_secret.json again"),
            "{err}"
        );
        assert_eq!(token_requests(&server).await, 1, "{consent:?}");
        assert!(unchanged);
    }
}

/// An absurd `expires_in` (beyond what `SystemTime` or the expiry format can
/// hold) must be clamped or refused, never panic: today it panics in
/// `StoredToken::expire_in`, and a panic inside a `Credentials` refresh
/// leaves the credentials refusing every later refresh without a request.
#[tokio::test]
async fn an_absurd_expires_in_never_panics() {
    for expires_in in ["18446744073709551615", "1e300", "1000000000000"] {
        let server = token_server([
            ResponseTemplate::new(200).set_body_raw(
                format!(r#"{{"access_token": "ya29.x", "expires_in": {expires_in}}}"#),
                "application/json",
            ),
            ok_body(),
        ])
        .await;
        let dir = TempLoader::with_token(&token_uri(&server), -60);
        let consent_started = Arc::new(AtomicBool::new(false));
        let load = loader(dir.path(), Consent::Never, &consent_started).load();
        let joined = guarded(tokio::spawn(load)).await;
        assert!(
            joined.is_ok(),
            "expires_in {expires_in}: the load panicked: {joined:?}"
        );
        assert_eq!(token_requests(&server).await, 1);
    }

    // Through Credentials: a 401 forces a refresh that meets the absurd
    // answer; a later 401 must reach the (now sane) endpoint again.
    let server = token_server([
        ResponseTemplate::new(200).set_body_raw(
            r#"{"access_token": "ya29.x", "expires_in": 1000000000000}"#,
            "application/json",
        ),
        ok_body(),
    ])
    .await;
    let api = api_answering(ResponseTemplate::new(401)).await;
    let dir = TempLoader::with_token(&token_uri(&server), 3000);
    let consent_started = Arc::new(AtomicBool::new(false));
    let creds = guarded(
        loader(dir.path(), Consent::Never, &consent_started)
            .api_base(format!("{}/v1", api.uri()))
            .load(),
    )
    .await
    .unwrap();
    let client = creds.authorized_client();
    let _ = guarded(client.get(&client.api_url("models"))).await;
    let _ = guarded(client.get(&client.api_url("models"))).await;
    assert_eq!(
        token_requests(&server).await,
        2,
        "the second 401 refreshed again"
    );
}
