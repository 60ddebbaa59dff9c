//! Review probes (r-cache): the wait for an answer's head on a reused
//! connection, after a `401`'s refresh, and after an upload's last byte;
//! a server's `Retry-After` past the retry policy's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use gemini_oauth::{Error, RequestBody};

use crate::common::gemini_server::*;
use crate::common::*;
use crate::gemini_stream::client_for;

const IDLE: Duration = Duration::from_millis(300);
/// A hang guard, not a performance bound.
const GUARD: Duration = Duration::from_secs(20);

/// A keep-alive HTTP/1.1 server: request `n` (from 0) gets `answer(n)`, or
/// no answer at all (`None`); counts connections and requests.
async fn silent_after(
    answer: fn(usize) -> Option<Resp>,
) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (conns, reqs) = (Arc::clone(&connections), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let reqs = Arc::clone(&reqs);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let n = reqs.fetch_add(1, Ordering::SeqCst);
                    async move {
                        // Read the whole body first, as a server does.
                        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                        match answer(n) {
                            Some(resp) => Ok::<_, std::convert::Infallible>(resp),
                            None => std::future::pending().await,
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (base, connections, requests)
}

fn assert_head_timeout(err: &Error, url: &str) {
    let Error::Timeout { what, after, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, IDLE);
    assert_eq!(what, &format!("waiting for the response head of {url}"));
}

#[tokio::test]
async fn a_reused_connection_whose_server_goes_silent_hits_the_idle_limit() {
    let (base, connections, requests) = silent_after(|n| match n {
        0 => Some(json_resp(200, &serde_json::json!({"models": []}))),
        _ => None,
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.idle_timeout(IDLE);
    let url = client.api_url("models");
    client.get(&url).await.unwrap();
    let err = tokio::time::timeout(GUARD, client.get(&url))
        .await
        .expect("the idle limit fired, not the test's guard")
        .unwrap_err();
    assert_head_timeout(&err, &url);
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the pooled one");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "a timeout is not retried"
    );
}

#[tokio::test]
async fn a_server_silent_after_a_401_hits_the_idle_limit_on_the_repeat() {
    let (base, _, requests) = silent_after(|n| match n {
        0 => Some(google_error(401, "UNAUTHENTICATED", "token expired")),
        _ => None,
    })
    .await;
    let (_dir, tokens, client) = client_for(&base).await;
    let client = client.idle_timeout(IDLE);
    let url = client.api_url("models/m:countTokens");
    let err = tokio::time::timeout(GUARD, client.post_json(&url, "{}"))
        .await
        .expect("the idle limit fired, not the test's guard")
        .unwrap_err();
    assert_head_timeout(&err, &url);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "the request and its repeat"
    );
    assert_eq!(
        token_requests(&tokens).await,
        1,
        "one refresh after the 401"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_read_whole_then_unanswered_hits_the_idle_limit_for_the_head() {
    let (base, _, requests) = silent_after(|_| None).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.idle_timeout(IDLE);
    let url = format!("{base}/upload");
    let pieces = (0..16).map(|_| Ok(Bytes::from(vec![b'x'; 64 * 1024])));
    let body = RequestBody::from_stream(stream::iter(pieces), Some(1 << 20));
    let req = http::Request::post(&url).body(body).unwrap();
    let err = tokio::time::timeout(GUARD, client.request(req))
        .await
        .expect("the idle limit fired, not the test's guard")
        .unwrap_err();
    assert_head_timeout(&err, &url);
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_zero_idle_limit_fails_or_answers_but_never_panics_nor_hangs() {
    let (base, _, _) = silent_after(|_| Some(json_resp(200, &serde_json::json!({})))).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.idle_timeout(Duration::ZERO);
    let url = client.api_url("models");
    for _ in 0..3 {
        match tokio::time::timeout(GUARD, client.get(&url))
            .await
            .expect("no hang")
        {
            Ok(resp) => assert_eq!(resp.status(), 200),
            Err(e) => assert!(
                matches!(e, Error::Timeout { after, .. } if after == Duration::ZERO),
                "{e:?}"
            ),
        }
    }
}

fn unavailable_for_a_day() -> Resp {
    let mut r = google_error(503, "UNAVAILABLE", "come back tomorrow");
    r.headers_mut()
        .insert("retry-after", "86400".parse().unwrap());
    r
}

/// A `Retry-After` past the policy's deadline (`max_elapsed`, 60 s) ends
/// the call with the server's answer instead of sleeping a day: for an API
/// `GET`, and for the recovery of an interrupted upload.
#[tokio::test]
async fn a_retry_after_past_the_deadline_ends_the_call_instead_of_sleeping() {
    let (base, _, requests) = silent_after(|_| Some(unavailable_for_a_day())).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let url = client.api_url("models");
    let resp = tokio::time::timeout(GUARD, client.get(&url))
        .await
        .expect("slept for the Retry-After")
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    let sessions = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&sessions);
    let base = serve_with_base(move |base| {
        let server = UploadServer {
            log: Arc::default(),
            base,
            omit_upload_url: false,
            mime: "text/plain".into(),
            after_first_piece: None,
        };
        move |req: http::Request<hyper::body::Incoming>| {
            let (server, count) = (server.clone(), Arc::clone(&count));
            async move {
                if req.uri().path().starts_with("/upload-session/") {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                    return unavailable_for_a_day();
                }
                match server.handle(req).await {
                    Some(resp) => resp,
                    None => google_error(404, "NOT_FOUND", "no such endpoint"),
                }
            }
        }
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"a few bytes").unwrap();
    let err = tokio::time::timeout(
        GUARD,
        gemini_oauth::gemini::upload_file(&client, &path, "text/plain", "notes"),
    )
    .await
    .expect("the upload slept for the Retry-After")
    .unwrap_err();
    assert!(matches!(&err, Error::Api(e) if e.status == 503), "{err:?}");
    assert_eq!(sessions.load(Ordering::SeqCst), 1, "no query after it");
}

/// A force_refresh waits on a slow token endpoint while another task signs
/// out: the caller is told the credentials were revoked, and the refresh
/// (left to finish under the store's lock) writes nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_racing_revoke_is_revoked_and_writes_nothing_back() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let tokens = token_server([ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"access_token": NEW_ACCESS, "expires_in": 3599}))
        .set_delay(Duration::from_millis(800))])
    .await;
    let revoke = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&revoke)
        .await;
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = dir
        .loader()
        .revoke_uri(format!("{}/revoke", revoke.uri()))
        .load()
        .await
        .unwrap();
    let c = creds.clone();
    let forcing = tokio::spawn(async move { c.force_refresh().await });
    while token_requests(&tokens).await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = creds.clone();
    let revoking = tokio::spawn(async move { c.revoke().await });
    let forced = tokio::time::timeout(GUARD, forcing)
        .await
        .expect("no hang")
        .unwrap();
    assert!(matches!(forced, Err(Error::Revoked { .. })), "{forced:?}");
    tokio::time::timeout(GUARD, revoking)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap();
    // Past the token endpoint's answer: nothing came back to disk or memory.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!dir.token_file().exists());
    assert!(creds.stored_token().is_none());
    assert!(matches!(
        creds.access_token().await,
        Err(Error::Revoked { .. })
    ));
    assert_eq!(token_requests(&tokens).await, 1);
}

/// Zero in the builder options that take a duration: an error (a timeout)
/// or an answer, never a panic nor a hang.
#[tokio::test]
async fn zero_in_every_builder_option_is_an_error_not_a_panic_nor_a_hang() {
    let tokens = token_endpoint().await;
    let (base, _, _) = silent_after(|_| Some(json_resp(200, &serde_json::json!({})))).await;
    // An expired token: loading refreshes it, within a limit of zero.
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    for loader in [
        dir.loader().timeout(Duration::ZERO),
        dir.loader().connect_timeout(Duration::ZERO),
    ] {
        let loaded = tokio::time::timeout(GUARD, loader.load())
            .await
            .expect("no hang");
        if let Err(e) = loaded {
            assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        }
    }
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = dir
        .loader()
        .refresh_margin(Duration::ZERO)
        .api_base(format!("{base}/v1"))
        .load()
        .await
        .unwrap();
    // A zero limit fires at the timer's next tick: a loopback answer may
    // come first.
    let client = creds.authorized_client().timeout(Duration::ZERO);
    for _ in 0..3 {
        match tokio::time::timeout(GUARD, client.get(&client.api_url("models")))
            .await
            .expect("no hang")
        {
            Ok(resp) => assert_eq!(resp.status(), 200),
            Err(e) => assert!(
                matches!(e, Error::Timeout { after, .. } if after == Duration::ZERO),
                "{e:?}"
            ),
        }
    }
    let zero = gemini_oauth::RetryPolicy::default()
        .attempts(3)
        .base_delay(Duration::ZERO)
        .max_delay(Duration::ZERO)
        .max_elapsed(Duration::ZERO);
    let resp = tokio::time::timeout(
        GUARD,
        creds
            .authorized_client()
            .retry(zero)
            .get(&format!("{base}/v1/models")),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert_eq!(resp.status(), 200);
}
