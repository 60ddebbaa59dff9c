//! Small proxies and peers written for the network-fault tests, all on
//! 127.0.0.1 and stopped with the test's runtime:
//! - [`MapProxy`]: an HTTP proxy (`CONNECT` and absolute-form requests), in
//!   plain text or TLS (an `https://` proxy), that sends every tunnel to one
//!   local address whatever host it names (so an endpoint can be named
//!   `gemini.test`, which is not loopback and resolves nowhere), or answers
//!   `200` to `CONNECT` and then goes quiet;
//! - [`Socks5`]: a SOCKS5 server (RFC 1928, with RFC 1929 user/password) that
//!   maps the same way and records the target it was asked for;
//! - [`Silent`]: accepts connections, never speaks, and reports when the
//!   client closes them.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What [`MapProxy`] does after answering a `CONNECT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterConnect {
    /// Carry bytes both ways to the target.
    Tunnel,
    /// Nothing: hold the connection until the client closes it.
    Quiet,
}

/// An HTTP proxy that tunnels every request to `target`.
pub struct MapProxy {
    port: u16,
    tls: bool,
    seen: Arc<Mutex<Vec<String>>>,
    closed: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

impl MapProxy {
    /// A proxy on 127.0.0.1 sending tunnels to `target`; with `tls`, it
    /// speaks TLS first (an `https://` proxy); with `auth`, it wants that
    /// `Proxy-Authorization` value (else `407`).
    pub async fn start(
        target: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        after: AfterConnect,
        auth: Option<String>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let is_tls = tls.is_some();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, log, auth, closed_tx) = (
                    tls.clone(),
                    Arc::clone(&log),
                    auth.clone(),
                    closed_tx.clone(),
                );
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(tls) => Box::new(tls),
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    serve_proxy(io, target, after, auth.as_deref(), &log).await;
                    let _ = closed_tx.send(());
                });
            }
        });
        MapProxy {
            port,
            tls: is_tls,
            seen,
            closed: tokio::sync::Mutex::new(closed),
        }
    }

    /// `http://` (or `https://`) `[userinfo@]127.0.0.1:PORT`.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match userinfo {
            Some(u) => format!("{scheme}://{u}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The request lines received (`CONNECT gemini.test:443 HTTP/1.1`, …).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to `limit` for a client connection to end; whether one did.
    pub async fn a_connection_closed(&self, limit: Duration) -> bool {
        let mut rx = self.closed.lock().await;
        matches!(tokio::time::timeout(limit, rx.recv()).await, Ok(Some(())))
    }
}

async fn serve_proxy(
    mut io: Box<dyn Io>,
    target: SocketAddr,
    after: AfterConnect,
    auth: Option<&str>,
    log: &Mutex<Vec<String>>,
) {
    let Some(head) = read_head(&mut io).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    log.lock().unwrap().push(line.clone());
    if let Some(want) = auth {
        let given = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("proxy-authorization")
                .then(|| v.trim().to_owned())
        });
        if given.as_deref() != Some(want) {
            let _ = io
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    }
    if line.starts_with("CONNECT ") {
        if io
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        if after == AfterConnect::Quiet {
            drain_until_closed(&mut io).await;
            return;
        }
        let Ok(mut up) = TcpStream::connect(target).await else {
            return;
        };
        let _ = tokio::io::copy_bidirectional(&mut io, &mut up).await;
        return;
    }
    // Absolute form: pass the head on as it is (hyper's server takes it).
    let Ok(mut up) = TcpStream::connect(target).await else {
        return;
    };
    if up.write_all(&head).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut io, &mut up).await;
    }
}

/// Reads up to the end of an HTTP head (`\r\n\r\n`), at most 16 KiB.
async fn read_head(io: &mut Box<dyn Io>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Reads and discards until the peer closes (or the connection fails).
async fn drain_until_closed(io: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// A SOCKS5 server that connects every request to `target`.
pub struct Socks5 {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Socks5 {
    /// On 127.0.0.1; with `auth`, only that user name and password pass.
    pub async fn start(target: SocketAddr, auth: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let auth = auth.map(|(u, p)| (u.as_bytes().to_vec(), p.as_bytes().to_vec()));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (log, auth) = (Arc::clone(&log), auth.clone());
                tokio::spawn(async move {
                    let _ = serve_socks(tcp, target, auth, &log).await;
                });
            }
        });
        Socks5 { port, seen }
    }

    /// `scheme://[userinfo@]127.0.0.1:PORT` (`socks5` or `socks5h`).
    pub fn url(&self, scheme: &str, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("{scheme}://{u}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The targets asked for, as `name:port` or `address:port`, and
    /// `auth-failed` for a refused user name or password.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_socks(
    mut tcp: TcpStream,
    target: SocketAddr,
    auth: Option<(Vec<u8>, Vec<u8>)>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut two = [0u8; 2];
    tcp.read_exact(&mut two).await?;
    let mut methods = vec![0u8; usize::from(two[1])];
    tcp.read_exact(&mut methods).await?;
    let method = if auth.is_some() { 2 } else { 0 };
    if two[0] != 5 || !methods.contains(&method) {
        tcp.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    tcp.write_all(&[5, method]).await?;
    if let Some((user, pass)) = auth {
        tcp.read_exact(&mut two).await?;
        let mut got_user = vec![0u8; usize::from(two[1])];
        tcp.read_exact(&mut got_user).await?;
        let mut len = [0u8; 1];
        tcp.read_exact(&mut len).await?;
        let mut got_pass = vec![0u8; usize::from(len[0])];
        tcp.read_exact(&mut got_pass).await?;
        if got_user != user || got_pass != pass {
            log.lock().unwrap().push("auth-failed".into());
            tcp.write_all(&[1, 1]).await?;
            return Ok(());
        }
        tcp.write_all(&[1, 0]).await?;
    }
    let mut head = [0u8; 4];
    tcp.read_exact(&mut head).await?;
    let host = match head[3] {
        1 => {
            let mut ip = [0u8; 4];
            tcp.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        4 => {
            let mut ip = [0u8; 16];
            tcp.read_exact(&mut ip).await?;
            format!("[{}]", std::net::Ipv6Addr::from(ip))
        }
        _ => {
            let mut len = [0u8; 1];
            tcp.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            tcp.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
    };
    tcp.read_exact(&mut two).await?;
    let port = u16::from_be_bytes(two);
    log.lock().unwrap().push(format!("{host}:{port}"));
    let mut up = TcpStream::connect(target).await?;
    tcp.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut up).await?;
    Ok(())
}

/// A peer that accepts TCP and never sends a byte.
pub struct Silent {
    pub addr: SocketAddr,
    closed: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

impl Silent {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    drain_until_closed(&mut tcp).await;
                    let _ = tx.send(());
                });
            }
        });
        Silent {
            addr,
            closed: tokio::sync::Mutex::new(closed),
        }
    }

    /// Waits up to `limit` for a client to close its connection; whether one did.
    pub async fn a_connection_closed(&self, limit: Duration) -> bool {
        let mut rx = self.closed.lock().await;
        matches!(tokio::time::timeout(limit, rx.recv()).await, Ok(Some(())))
    }
}
