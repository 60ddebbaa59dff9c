//! The connector under hyper: TCP (straight, or to a proxy), the proxy's
//! handshake (`CONNECT`, SOCKS5, TLS to an `https://` proxy), then TLS to the
//! endpoint, all within one connect deadline. A connection that is given up
//! on is dropped with its future, so a peer that never speaks keeps nothing
//! of ours open, even when hyper-util finishes a connect in the background.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tower_service::Service;

use crate::error::{BoxError, Error};
use crate::proxy::{Proxy, ProxyProblem, Route};
use crate::url::redact;

type BoxedError = Box<dyn std::error::Error + Send + Sync>;
/// TCP, with TLS when the peer is an `https://` proxy.
type ProxyIo = MaybeHttpsStream<TokioIo<TcpStream>>;
/// What hyper gets: TLS to the endpoint (or not) over a [`ProxyStream`].
pub(crate) type Conn = MaybeHttpsStream<ProxyStream>;
type TunnelError = <Tunnel<ToProxy> as Service<Uri>>::Error;
type SocksError = <SocksV5<ToProxy> as Service<Uri>>::Error;

/// Opens connections for hyper; cheap to clone.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) http: HttpConnector,
    /// TLS to endpoints (ALPN h2 and http/1.1).
    pub(crate) tls: TlsConnector,
    /// TLS to an `https://` proxy (ALPN http/1.1: a tunnel is HTTP/1).
    pub(crate) proxy_tls: TlsConnector,
    pub(crate) proxy: Proxy,
    /// Bounds TCP, the proxy's handshake and TLS together.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("proxy", &self.proxy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxedError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxedError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // A limit too large to add to now is no limit (and no panic).
            let deadline = Instant::now().checked_add(this.timeout);
            let after = this.timeout;
            // On expiry the connecting future, and its sockets, are dropped.
            within(deadline, this.connect(dst.clone(), deadline), || {
                Box::new(Error::Timeout {
                    what: format!(
                        "connecting to {} (TCP, proxy and TLS handshakes)",
                        redact(&dst.to_string())
                    ),
                    after,
                })
            })
            .await
        })
    }
}

impl Connector {
    async fn connect(self, dst: Uri, deadline: Option<Instant>) -> Result<Conn, BoxedError> {
        let stream = match self.proxy.route(&dst)? {
            None => ProxyStream {
                io: MaybeHttpsStream::Http(self.http.clone().call(dst.clone()).await?),
                to_proxy: false,
            },
            // A silent proxy is named as such, not as the endpoint's timeout.
            Some(route) => {
                let shown = redact(&route.uri.to_string());
                within(deadline, self.through(route, &dst), || {
                    Box::new(Error::Proxy {
                        proxy: shown,
                        problem: ProxyProblem::Unreachable,
                        source: None,
                    })
                })
                .await?
            }
        };
        if dst.scheme_str() != Some("https") {
            return Ok(MaybeHttpsStream::Http(stream));
        }
        let tls = self
            .tls
            .connect(server_name(&dst)?, TokioIo::new(stream))
            .await?;
        Ok(MaybeHttpsStream::Https(TokioIo::new(tls)))
    }

    /// To `dst` through the proxy of `route`; the proxy's failures typed.
    async fn through(&self, route: Route, dst: &Uri) -> Result<ProxyStream, BoxedError> {
        let shown = redact(&route.uri.to_string());
        let fail = |problem, source: Option<BoxError>| -> BoxedError {
            Box::new(Error::Proxy {
                proxy: shown.clone(),
                problem,
                source,
            })
        };
        let to_proxy = ToProxy {
            http: self.http.clone(),
            tls: (route.uri.scheme_str() == Some("https")).then(|| self.proxy_tls.clone()),
        };
        if route.is_socks() {
            let target = if route.remote_dns() {
                dst.clone()
            } else {
                resolve(dst)
                    .await
                    .map_err(|e| fail(ProxyProblem::TunnelFailed, Some(Arc::new(e))))?
            };
            let mut socks = SocksV5::new(route.uri.clone(), to_proxy);
            if let Some((user, pass)) = &route.socks_auth {
                socks = socks.with_auth(user.clone(), pass.clone());
            }
            let io = socks.call(target).await.map_err(|e| {
                let problem = match &e {
                    SocksError::Inner(_) => ProxyProblem::Unreachable,
                    // The proxy's answer: a rejected user name or password, or a refused target.
                    SocksError::V5(v5) if format!("{v5:?}").starts_with("Auth") => {
                        ProxyProblem::AuthenticationRequired
                    }
                    SocksError::V5(_) => ProxyProblem::TunnelRefused,
                    // Only the user name and password can outgrow hyper-util's buffer.
                    SocksError::Serialize(_) => ProxyProblem::CredentialsTooLong,
                    _ => ProxyProblem::TunnelFailed,
                };
                fail(problem, Some(Arc::new(e)))
            })?;
            return Ok(ProxyStream {
                io,
                to_proxy: false,
            });
        }
        if dst.scheme_str() == Some("http") {
            let io = to_proxy
                .clone()
                .call(route.uri.clone())
                .await
                .map_err(|e| fail(ProxyProblem::Unreachable, Some(Arc::from(e))))?;
            return Ok(ProxyStream { io, to_proxy: true });
        }
        let mut tunnel = Tunnel::new(route.uri.clone(), to_proxy);
        if let Some(auth) = route.basic_auth {
            tunnel = tunnel.with_auth(auth);
        }
        let io = tunnel.call(dst.clone()).await.map_err(|e| {
            let problem = match &e {
                TunnelError::ConnectFailed(_) => ProxyProblem::Unreachable,
                TunnelError::ProxyAuthRequired => ProxyProblem::AuthenticationRequired,
                TunnelError::TunnelUnsuccessful => ProxyProblem::TunnelRefused,
                _ => ProxyProblem::TunnelFailed,
            };
            fail(problem, Some(Arc::new(e)))
        })?;
        Ok(ProxyStream {
            io,
            to_proxy: false,
        })
    }
}

/// `work`, or `expired()` once `deadline` passes.
async fn within<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T, BoxedError>>,
    expired: impl FnOnce() -> BoxedError,
) -> Result<T, BoxedError> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, work)
            .await
            .unwrap_or_else(|_| Err(expired())),
        None => work.await,
    }
}

/// `dst` with its host resolved here (`socks5://`: the proxy gets an address).
async fn resolve(dst: &Uri) -> std::io::Result<Uri> {
    let host = dst.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = dst
        .port_u16()
        .unwrap_or(if dst.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the host name has no address"))?;
    let scheme = dst.scheme_str().unwrap_or("https");
    format!("{scheme}://{addr}/")
        .parse()
        .map_err(std::io::Error::other)
}

/// The name TLS checks the certificate against: the URL's host.
fn server_name(dst: &Uri) -> Result<ServerName<'static>, BoxedError> {
    let host = dst.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(ServerName::try_from(host.to_owned())?)
}

/// TCP to a proxy, then TLS for an `https://` one: what the `CONNECT` and
/// SOCKS handshakes run over.
#[derive(Clone)]
struct ToProxy {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl Service<Uri> for ToProxy {
    type Response = ProxyIo;
    type Error = BoxedError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyIo, BoxedError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, proxy: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            // The TCP connector speaks to the proxy's host and port, whatever its scheme.
            let tcp_uri: Uri = format!(
                "http://{}",
                proxy.authority().map(|a| a.as_str()).unwrap_or_default()
            )
            .parse()?;
            let tcp = http.call(tcp_uri).await?;
            let Some(tls) = tls else {
                return Ok(MaybeHttpsStream::Http(tcp));
            };
            let tls = tls.connect(server_name(&proxy)?, TokioIo::new(tcp)).await?;
            Ok(MaybeHttpsStream::Https(TokioIo::new(tls)))
        })
    }
}

/// A connection from [`Connector`] before TLS to the endpoint; tells hyper
/// when requests must be written in absolute form (plain http to a proxy).
#[derive(Debug)]
pub(crate) struct ProxyStream {
    io: ProxyIo,
    to_proxy: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.to_proxy)
    }
}

impl Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
