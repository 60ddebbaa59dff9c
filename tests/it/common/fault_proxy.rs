//! A fault-injecting TCP proxy on 127.0.0.1, modelled on toxiproxy's
//! toxics (latency, timeout, reset_peer, slicer, limit_data), since
//! toxiproxy itself is not installable here. It forwards to an upstream
//! loopback server, or acts as an HTTP `CONNECT` proxy that routes by host
//! name. One toxic at a time, switched at runtime; it acts on live
//! connections too, from the moment the toxic's [`Gate`] opens on each.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toxic {
    /// Nothing listens: new connections are refused, live ones reset.
    Refuse,
    /// toxiproxy's `reset_peer`: accept, then reset (SO_LINGER 0); live
    /// connections are reset too.
    ResetPeer,
    /// toxiproxy's `timeout` with no timeout: nothing is forwarded either
    /// way, the connection stays open.
    Silent,
    /// toxiproxy's `slicer`: bytes to the client one at a time, `every` apart.
    Slicer { every: Duration },
    /// toxiproxy's `limit_data`: the connection is reset once this many
    /// bytes went to the client.
    LimitData { bytes: usize },
    /// toxiproxy's `latency`: each piece to the client is held this long.
    Latency(Duration),
}

/// From when on a connection a toxic acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gate {
    /// From the TCP accept.
    Accept,
    /// After the `CONNECT` answer (in a `CONNECT` proxy; else as `Accept`).
    Tunnel,
    /// After the TLS handshake: once the client sent its first
    /// application-data record (TLS 1.3 encrypts its `Finished` as one).
    Tls,
}

/// The toxic in force, and a generation that closes the connections of
/// the one before: each toxic meets fresh connections, as after a clear.
#[derive(Debug, Clone, Copy, Default)]
struct Armed {
    toxic: Option<(Toxic, Gate)>,
    generation: u64,
}

/// Where connections go: one upstream, or a `CONNECT` proxy's routes.
#[derive(Debug, Clone)]
enum Route {
    To(SocketAddr),
    Connect(Arc<HashMap<String, SocketAddr>>),
}

/// A running proxy; it stops (with its connections) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    toxic: watch::Sender<Armed>,
    route: Route,
    accepting: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// While refusing: the port bound but not listening (a connection is
    /// refused), so that no other server of the test run is given it.
    held: std::sync::Mutex<Option<tokio::net::TcpSocket>>,
}

impl FaultProxy {
    /// A proxy on an ephemeral port that forwards every connection to `upstream`.
    pub async fn to(upstream: SocketAddr) -> Self {
        Self::start(Route::To(upstream)).await
    }

    /// [`FaultProxy::to`] listening on `at` (a port reserved for it, which
    /// the previous cell's proxy, just dropped, may not have closed yet).
    pub async fn to_at(at: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = retry_bind(|| TcpListener::bind(at)).await;
        Self::start_on(listener, Route::To(upstream))
    }

    /// An HTTP `CONNECT` proxy on an ephemeral port: `CONNECT host:port`
    /// goes to `routes[host]` (the port is ignored), so test names such as
    /// `faulted.test` reach loopback servers without DNS.
    pub async fn connect_proxy(routes: HashMap<String, SocketAddr>) -> Self {
        Self::start(Route::Connect(Arc::new(routes))).await
    }

    async fn start(route: Route) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), route)
    }

    fn start_on(listener: TcpListener, route: Route) -> Self {
        let (toxic, _) = watch::channel(Armed::default());
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            toxic,
            route,
            accepting: std::sync::Mutex::new(None),
            held: std::sync::Mutex::new(None),
        };
        proxy.accept_on(listener);
        proxy
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Puts `toxic` in force from `gate` on, on new connections; live ones
    /// are closed (reset for `Refuse` and `ResetPeer`).
    pub async fn set(&self, toxic: Toxic, gate: Gate) {
        let accepting = (toxic == Toxic::Refuse)
            .then(|| self.accepting.lock().unwrap().take())
            .flatten();
        if let Some(task) = accepting {
            task.abort();
            // The listener is dropped with the task; wait for the port to close.
            let _ = task.await;
            *self.held.lock().unwrap() = Some(self.hold_port().await);
        }
        self.arm(Some((toxic, gate)));
    }

    fn arm(&self, toxic: Option<(Toxic, Gate)>) {
        self.toxic.send_modify(|armed| {
            armed.toxic = toxic;
            armed.generation += 1;
        });
    }

    /// Removes the toxic and closes the connections it held: new
    /// connections flow again (listening again after `Refuse`).
    pub async fn clear(&self) {
        self.arm(None);
        let stopped = self.accepting.lock().unwrap().is_none();
        if stopped {
            drop(self.held.lock().unwrap().take());
            let listener = retry_bind(|| TcpListener::bind(self.addr)).await;
            self.accept_on(listener);
        }
    }

    /// The proxy's port, bound and not listening.
    async fn hold_port(&self) -> tokio::net::TcpSocket {
        retry_bind(|| async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(self.addr)?;
            Ok(socket)
        })
        .await
    }

    fn accept_on(&self, listener: TcpListener) {
        let toxic = self.toxic.clone();
        let route = self.route.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(Connection::run(client, route.clone(), toxic.subscribe()));
            }
        });
        *self.accepting.lock().unwrap() = Some(task);
    }
}

/// Binds the port that was the proxy's a moment ago (with SO_REUSEADDR):
/// a connection of another test may hold it as its local port for a moment.
async fn retry_bind<T, F>(bind: impl Fn() -> F) -> T
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    let mut tries = 0;
    loop {
        match bind().await {
            Ok(bound) => return bound,
            Err(e) if tries == 100 => panic!("the proxy's port stays taken: {e}"),
            Err(_) => tries += 1,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.accepting.lock().unwrap().take() {
            task.abort();
        }
        // Dropping `toxic` ends every connection's `changed()`.
    }
}

/// One proxied connection's state.
struct Connection {
    toxic: watch::Receiver<Armed>,
    generation: u64,
    gate: Gate,
    /// Bytes sent to the client since the `Tunnel` gate.
    sent: usize,
    tls: TlsScan,
}

/// Scans the client's TLS records for the first application-data record.
#[derive(Default)]
struct TlsScan {
    header: Vec<u8>,
    body_left: usize,
    done: bool,
}

impl TlsScan {
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !self.done && !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if self.header.len() == 5 {
                self.done = self.header[0] == 23;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header.clear();
            }
        }
        self.done
    }
}

/// What to do with a piece of data, given the toxic in force.
enum Act {
    Forward,
    Drop,
    Kill,
}

impl Connection {
    async fn run(mut client: TcpStream, route: Route, toxic: watch::Receiver<Armed>) {
        let generation = toxic.borrow().generation;
        let mut conn = Connection {
            toxic,
            generation,
            gate: Gate::Accept,
            sent: 0,
            tls: TlsScan::default(),
        };
        if conn.act_now() {
            return reset(client);
        }
        let upstream = match route {
            Route::To(addr) => {
                conn.gate = Gate::Tunnel;
                addr
            }
            Route::Connect(routes) => {
                let Some(addr) = conn.answer_connect(&mut client, &routes).await else {
                    return reset(client);
                };
                conn.gate = Gate::Tunnel;
                addr
            }
        };
        let Ok(upstream) = TcpStream::connect(upstream).await else {
            return reset(client);
        };
        let _ = upstream.set_nodelay(true);
        conn.pipe(client, upstream).await;
    }

    /// The toxic in force for this connection now, if its gate is open.
    fn current(&self) -> Option<Toxic> {
        match self.toxic.borrow().toxic {
            Some((toxic, gate)) if gate <= self.gate => Some(toxic),
            _ => None,
        }
    }

    /// Whether the connection must be reset right away.
    fn act_now(&self) -> bool {
        matches!(self.current(), Some(Toxic::Refuse | Toxic::ResetPeer))
    }

    /// Reads the `CONNECT` head and answers it (through the toxics);
    /// `None` when the connection is to be dropped.
    async fn answer_connect(
        &mut self,
        client: &mut TcpStream,
        routes: &HashMap<String, SocketAddr>,
    ) -> Option<SocketAddr> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            tokio::select! {
                n = client.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                },
                changed = self.toxic.changed() => {
                    if changed.is_err() || self.stale() { return None }
                }
            }
        }
        let head = String::from_utf8_lossy(&head);
        let target = head.lines().next()?.split(' ').nth(1)?;
        let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
        let addr = *routes.get(host)?;
        let answer = b"HTTP/1.1 200 Connection established\r\n\r\n";
        self.deliver(client, answer, Instant::now())
            .await
            .then_some(addr)
    }

    /// Writes `bytes` to the client as the toxic says; false when the
    /// connection is to end.
    async fn deliver(&mut self, client: &mut TcpStream, bytes: &[u8], arrived: Instant) -> bool {
        match self.current() {
            None => client.write_all(bytes).await.is_ok(),
            Some(Toxic::Refuse | Toxic::ResetPeer) => false,
            Some(Toxic::Silent) => true,
            Some(Toxic::Latency(d)) => {
                tokio::time::sleep_until((arrived + d).into()).await;
                client.write_all(bytes).await.is_ok()
            }
            Some(Toxic::Slicer { every }) => {
                for b in bytes {
                    // A new toxic (or none) ends the slow delivery.
                    if self.stale() || client.write_all(&[*b]).await.is_err() {
                        return false;
                    }
                    tokio::time::sleep(every).await;
                }
                true
            }
            Some(Toxic::LimitData { bytes: limit }) => {
                let room = limit.saturating_sub(self.sent);
                let n = room.min(bytes.len());
                self.sent += n;
                client.write_all(&bytes[..n]).await.is_ok() && n == bytes.len()
            }
        }
    }

    /// Whether the toxic changed since this connection was accepted.
    fn stale(&self) -> bool {
        self.toxic.borrow().generation != self.generation
    }

    fn upstream_act(&self) -> Act {
        match self.current() {
            Some(Toxic::Refuse | Toxic::ResetPeer) => Act::Kill,
            Some(Toxic::Silent) => Act::Drop,
            _ => Act::Forward,
        }
    }

    async fn pipe(&mut self, mut client: TcpStream, upstream: TcpStream) {
        let (mut from_upstream, mut upstream) = upstream.into_split();
        // Read as it arrives, stamped, so latency delays each piece from
        // its arrival (pipelined, as toxiproxy's) rather than adding up.
        let (tx, mut pieces) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut down = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = from_upstream.read(&mut down).await {
                if tx.send((Instant::now(), down[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        let _stop_reader = AbortOnDrop(reader);
        let mut up = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                n = client.read(&mut up) => {
                    let Ok(n @ 1..) = n else { return };
                    // The piece that ends the handshake still goes through.
                    let act = self.upstream_act();
                    if self.tls.feed(&up[..n]) {
                        self.gate = Gate::Tls;
                    }
                    match act {
                        Act::Kill => return reset(client),
                        Act::Drop => {}
                        Act::Forward => {
                            if upstream.write_all(&up[..n]).await.is_err() { return }
                        }
                    }
                }
                piece = pieces.recv() => {
                    let Some((arrived, bytes)) = piece else { return };
                    if !self.deliver(&mut client, &bytes, arrived).await {
                        return reset(client);
                    }
                }
                changed = self.toxic.changed() => {
                    if changed.is_err() { return }
                    if self.act_now() { return reset(client) }
                    if self.stale() { return }
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Closes `stream` with a TCP reset.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
