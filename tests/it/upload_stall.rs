//! The send-side idle limit: a streamed request body whose source stops
//! producing, or that a peer stops reading, fails with [`Error::Timeout`]
//! after the client's idle timeout instead of hanging the call.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;

use crate::common::*;
use gemini_oauth::{Error, RequestBody};

const IDLE: Duration = Duration::from_millis(300);
const GUARD: Duration = Duration::from_secs(20);

/// A plain-http peer on 127.0.0.1 that accepts, then `read`s the request or not.
async fn peer(read: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            if read {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            } else {
                held.push(tcp);
            }
        }
    });
    url
}

async fn upload(url: &str, body: RequestBody) -> Error {
    let (dir, _tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    let client = creds.authorized_client().idle_timeout(IDLE);
    let req = http::Request::post(url).body(body).unwrap();
    tokio::time::timeout(GUARD, client.request(req))
        .await
        .expect("the idle limit fired, not the test's guard")
        .unwrap_err()
}

fn assert_send_timeout(err: &Error) {
    assert!(
        matches!(err, Error::Timeout { after, .. } if *after == IDLE),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("sending the request body to http://127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_source_stops_producing_times_out() {
    let url = peer(true).await;
    let first = stream::iter([Ok(Bytes::from_static(b"first piece"))]);
    let body = RequestBody::from_stream(
        futures_util::StreamExt::chain(first, stream::pending()),
        Some(1 << 20),
    );
    assert_send_timeout(&upload(&url, body).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_the_peer_stops_reading_times_out() {
    let url = peer(false).await;
    // Far more than the socket buffers hold, handed over as fast as taken.
    let piece = Bytes::from(vec![b'x'; 64 * 1024]);
    let endless = stream::repeat_with(move || Ok(piece.clone()));
    let body = RequestBody::from_stream(endless, None);
    assert_send_timeout(&upload(&url, body).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upload_that_the_peer_stops_reading_times_out() {
    use crate::common::tls_certs::{acceptor, make_certs};
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_certs(dir.path());
    let tls = acceptor(&leaf, &key, &[b"h2"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(tls) = tls.accept(tcp).await else {
                    return;
                };
                // Takes the request, never reads its body, never answers.
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let _held = req;
                        std::future::pending::<
                            Result<http::Response<String>, std::convert::Infallible>,
                        >()
                        .await
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
            });
        }
    });
    let (signed_in, _tokens) = TempLoader::signed_in().await;
    let creds = signed_in
        .loader()
        .root_certificates_pem(&ca)
        .load()
        .await
        .unwrap();
    let client = creds.authorized_client().idle_timeout(IDLE);
    let piece = Bytes::from(vec![b'x'; 64 * 1024]);
    let endless = stream::repeat_with(move || Ok(piece.clone()));
    let req = http::Request::post(format!("https://{addr}/upload"))
        .body(RequestBody::from_stream(endless, None))
        .unwrap();
    let err = tokio::time::timeout(GUARD, client.request(req))
        .await
        .expect("the idle limit fired, not the test's guard")
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == IDLE),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("sending the request body to https://127.0.0.1:"),
        "{err}"
    );
}
