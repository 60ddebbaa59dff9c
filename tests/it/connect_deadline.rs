//! The connect timeout bounds TCP, the proxy's handshake and TLS together:
//! a peer that accepts and never speaks (an API host, or a proxy after its
//! `200`) fails the call with [`Error::Timeout`] instead of hanging it, and
//! the connection is closed, also when hyper-util finishes a connect in the
//! background. Connections carry TCP keepalive.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::proxies::{AfterConnect, MapProxy, Silent};
use crate::common::tls_certs::{acceptor, make_certs};
use crate::common::*;
use gemini_oauth::{CredentialLoader, Credentials, Error};

const CONNECT: Duration = Duration::from_millis(300);
/// Hang guard: far past every deadline the tests expect to fire.
const GUARD: Duration = Duration::from_secs(20);

/// Credentials with a valid token (no refresh: the API call is the first
/// request) and `api_base`, from a loader that `tune` adjusts.
async fn creds(
    dir: &std::path::Path,
    api_base: &str,
    tune: impl FnOnce(CredentialLoader) -> CredentialLoader,
) -> Credentials {
    write_token(dir, &token_json("https://127.0.0.1:9/token", 3600));
    tune(temp_loader(dir).api_base(api_base))
        .load()
        .await
        .unwrap()
}

fn assert_connect_timeout(err: &Error, limit: Duration) {
    assert!(
        matches!(err, Error::Timeout { after, .. } if *after == limit),
        "{err:?}"
    );
    // The stage: the request's endpoint with its path, not only the origin.
    let text = err.to_string();
    assert!(
        text.starts_with("connecting to https://127.0.0.1:") && text.contains("/v1/models "),
        "{text}"
    );
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_host_that_accepts_tcp_and_never_speaks_times_out_and_is_let_go() {
    let silent = Silent::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("https://{}/v1", silent.addr);
    let creds = creds(dir.path(), &base, |l| l.connect_timeout(CONNECT)).await;
    let client = creds.authorized_client();
    let call = gemini_oauth::gemini::list_models(&client);
    let err = tokio::time::timeout(GUARD, call)
        .await
        .expect("the connect timeout fired, not the test's guard")
        .unwrap_err();
    assert_connect_timeout(&err, CONNECT);
    assert!(
        silent.a_connection_closed(Duration::from_secs(5)).await,
        "the silent host's connection is still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_opens_the_tunnel_then_goes_quiet_times_out_and_is_let_go() {
    let target = "127.0.0.1:9".parse().unwrap();
    let proxy = MapProxy::start(target, None, AfterConnect::Quiet, None).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = creds(dir.path(), "https://127.0.0.1:9/v1", |l| {
        l.connect_timeout(CONNECT).proxy(proxy.url(None))
    })
    .await;
    let client = creds.authorized_client();
    let call = gemini_oauth::gemini::list_models(&client);
    let err = tokio::time::timeout(GUARD, call)
        .await
        .expect("the connect timeout fired, not the test's guard")
        .unwrap_err();
    assert_connect_timeout(&err, CONNECT);
    assert_eq!(proxy.seen(), ["CONNECT 127.0.0.1:9 HTTP/1.1"]);
    assert!(
        proxy.a_connection_closed(Duration::from_secs(5)).await,
        "the tunnel is still open"
    );
}

/// The first connection is a slow HTTPS API (HTTP/1.1, each answer after
/// `delay`); every later one is silent and reports when it is closed.
async fn slow_then_silent(
    ca_dir: &std::path::Path,
    delay: Duration,
) -> (String, String, mpsc::UnboundedReceiver<()>) {
    let (ca, leaf, key) = make_certs(ca_dir);
    let acceptor = acceptor(&leaf, &key, &[b"http/1.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/v1", listener.local_addr().unwrap());
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) > 0 {
                let tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = tx.send(());
                });
                continue;
            }
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req: http::Request<_>| async move {
                    tokio::time::sleep(delay).await;
                    let body = json!({"models": [{"name": "models/slow"}]}).to_string();
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (ca, base, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_left_to_finish_in_the_background_is_dropped_at_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, base, mut closed) = slow_then_silent(dir.path(), Duration::from_millis(800)).await;
    let limit = Duration::from_millis(1500);
    let creds = creds(dir.path(), &base, |l| {
        l.connect_timeout(limit).root_certificates_pem(&ca)
    })
    .await;
    let client = creds.authorized_client();
    // The first call holds the one good connection for 800 ms; the second
    // starts a connection (to the silent peer) meanwhile, then takes the
    // first connection when it comes back to the pool: hyper-util leaves the
    // started connect running in the background.
    let first = gemini_oauth::gemini::list_models(&client);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        gemini_oauth::gemini::list_models(&client).await
    };
    let (first, second) = tokio::time::timeout(GUARD, async { tokio::join!(first, second) })
        .await
        .expect("both calls end");
    assert_eq!(first.unwrap()[0].name, "models/slow");
    assert_eq!(second.unwrap()[0].name, "models/slow");
    // The background connect is bounded too: the silent peer is let go.
    let let_go = tokio::time::timeout(Duration::from_secs(10), closed.recv()).await;
    assert!(
        matches!(let_go, Ok(Some(()))),
        "the background connect to the silent peer is still open"
    );
}

/// The kernel's timer for the client's end of `client_port` → `server_port`
/// on 127.0.0.1, from /proc/net/tcp (`02` is the keepalive timer).
#[cfg(target_os = "linux")]
fn tcp_timer(client_port: u16, server_port: u16) -> Option<String> {
    let local = format!("0100007F:{client_port:04X}");
    let remote = format!("0100007F:{server_port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[1] == local && f[2] == remote)
        .map(|f| f[5].to_owned())
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_carry_tcp_keepalive() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let (peer_tx, mut peer) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, from)) = listener.accept().await {
            let _ = peer_tx.send(from.port());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: http::Request<_>| async {
                    let body = json!({"models": [{"name": "models/kept"}]}).to_string();
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{server_port}/v1");
    let creds = creds(dir.path(), &base, |l| l).await;
    let models = gemini_oauth::gemini::list_models(&creds.authorized_client())
        .await
        .unwrap();
    assert_eq!(models[0].name, "models/kept");
    let client_port = peer.recv().await.unwrap();
    // The connection idles in the pool: its timer settles on keepalive.
    let mut timer = None;
    for _ in 0..40 {
        timer = tcp_timer(client_port, server_port);
        if timer.as_deref().is_some_and(|t| t.starts_with("02:")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no keepalive timer on the client's socket: {timer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_or_socks_proxy_that_never_finishes_its_handshake_is_named_unreachable() {
    let silent = Silent::start().await;
    for scheme in ["https", "socks5", "socks5h"] {
        let proxy = format!("{scheme}://u:PROXYPASSMARKER@{}", silent.addr);
        let dir = tempfile::tempdir().unwrap();
        let creds = creds(dir.path(), "https://127.0.0.1:9/v1", |l| {
            l.connect_timeout(CONNECT).proxy(&proxy)
        })
        .await;
        let client = creds.authorized_client();
        let err = tokio::time::timeout(GUARD, gemini_oauth::gemini::list_models(&client))
            .await
            .expect("the connect timeout fired, not the test's guard")
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Proxy { problem: gemini_oauth::ProxyProblem::Unreachable, proxy: p, .. }
                    if *p == format!("{scheme}://{}/", silent.addr)
            ),
            "{scheme}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("PROXYPASSMARKER"));
        assert!(
            silent.a_connection_closed(Duration::from_secs(5)).await,
            "{scheme}: the proxy connection is still open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_of_zero_or_duration_max_neither_panics_nor_hangs() {
    use crate::common::gemini_server::{json_resp, serve};
    let base = serve(|_req| async { json_resp(200, &json!({"models": []})) }).await;
    let dir = tempfile::tempdir().unwrap();
    let unlimited = creds(dir.path(), &format!("{base}/v1"), |l| {
        l.connect_timeout(Duration::MAX)
    })
    .await;
    let models = tokio::time::timeout(
        GUARD,
        gemini_oauth::gemini::list_models(&unlimited.authorized_client()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(models.is_empty());
    let zero = creds(dir.path(), &format!("{base}/v1"), |l| {
        l.connect_timeout(Duration::ZERO)
    })
    .await;
    // tokio's timer fires on its next tick, so a loopback connect may still
    // win: either answer, no panic and no hang.
    let result = tokio::time::timeout(
        GUARD,
        gemini_oauth::gemini::list_models(&zero.authorized_client()),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            &result,
            Ok(_)
                | Err(Error::Timeout {
                    after: Duration::ZERO,
                    ..
                })
        ),
        "{result:?}"
    );
}
