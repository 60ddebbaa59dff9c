//! The fault proxy itself, on raw TCP: each toxic does what its name says
//! (so a cell that passes is not passing because a fault never happened).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::fault_proxy::{FaultProxy, Gate, Toxic};

/// An upstream that answers each piece it reads with `answer`.
async fn upstream(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(1..) = s.read(&mut buf).await {
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `ask`, reads until `want` bytes, EOF, an error or 1.5 s; returns
/// what came and whether the read ended in an error.
async fn exchange(proxy: &FaultProxy, ask: &[u8], want: usize) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(ask).await.unwrap();
    read_some(&mut s, want).await
}

async fn read_some(s: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while got.len() < want {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return (got, true),
        }
    }
    (got, false)
}

#[tokio::test]
async fn each_toxic_acts_and_clearing_restores_the_path() {
    let proxy = FaultProxy::to(upstream(b"0123456789").await).await;
    assert_eq!(
        exchange(&proxy, b"hi", 10).await,
        (b"0123456789".to_vec(), false)
    );

    proxy.set(Toxic::Refuse, Gate::Accept).await;
    let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    proxy.clear().await;
    assert_eq!(exchange(&proxy, b"hi", 10).await.0, b"0123456789");

    proxy.set(Toxic::ResetPeer, Gate::Accept).await;
    let (got, error) = exchange(&proxy, b"hi", 10).await;
    assert!(got.is_empty() && error, "reset: {got:?} {error}");

    proxy.set(Toxic::Silent, Gate::Accept).await;
    assert_eq!(exchange(&proxy, b"hi", 10).await, (Vec::new(), false));

    proxy.set(Toxic::LimitData { bytes: 3 }, Gate::Accept).await;
    let (got, _) = exchange(&proxy, b"hi", 10).await;
    assert_eq!(got, b"012");

    let every = Duration::from_millis(100);
    proxy.set(Toxic::Slicer { every }, Gate::Accept).await;
    let started = Instant::now();
    let (got, _) = exchange(&proxy, b"hi", 5).await;
    assert_eq!(got, b"01234");
    assert!(started.elapsed() >= every * 4, "{:?}", started.elapsed());

    let d = Duration::from_millis(400);
    proxy.set(Toxic::Latency(d), Gate::Accept).await;
    let started = Instant::now();
    assert_eq!(exchange(&proxy, b"hi", 10).await.0, b"0123456789");
    assert!(started.elapsed() >= d, "{:?}", started.elapsed());

    proxy.clear().await;
    assert_eq!(
        exchange(&proxy, b"hi", 10).await,
        (b"0123456789".to_vec(), false)
    );
}

/// A TLS record header and body of `kind` (22 handshake, 23 application data).
fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn the_tls_gate_opens_at_the_clients_first_application_data_record() {
    let proxy = FaultProxy::to(upstream(b"ok").await).await;
    proxy.set(Toxic::Silent, Gate::Tls).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(&record(22, b"hello")).await.unwrap();
    assert_eq!(read_some(&mut s, 2).await.0, b"ok", "the handshake flows");
    s.write_all(&record(22, b"more")).await.unwrap();
    assert_eq!(
        read_some(&mut s, 2).await.0,
        b"ok",
        "however many records it takes"
    );
    // TLS 1.3's encrypted Finished: from here on, nothing comes back.
    s.write_all(&record(23, b"finished")).await.unwrap();
    assert_eq!(
        read_some(&mut s, 2).await,
        (Vec::new(), false),
        "then silence"
    );
}

#[tokio::test]
async fn the_connect_proxy_routes_by_host_and_its_gate_opens_after_the_answer() {
    let routes = HashMap::from([("up.test".to_owned(), upstream(b"ok").await)]);
    let proxy = FaultProxy::connect_proxy(routes).await;
    let (got, _) = exchange(&proxy, b"CONNECT up.test:443 HTTP/1.1\r\n\r\n", 39).await;
    assert_eq!(got, b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (got, _) = exchange(&proxy, b"CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n", 1).await;
    assert!(got.is_empty(), "an unknown host gets no tunnel");

    proxy.set(Toxic::Silent, Gate::Tunnel).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"CONNECT up.test:443 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_some(&mut s, 39).await.0.len(),
        39,
        "the CONNECT is answered"
    );
    s.write_all(b"through").await.unwrap();
    assert_eq!(
        read_some(&mut s, 2).await,
        (Vec::new(), false),
        "the tunnel is silent"
    );
}
