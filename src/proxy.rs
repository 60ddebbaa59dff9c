//! Proxies as curl and reqwest read them (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY`, either case), or one given to the loader: the
//! connector under the TLS layer, built on hyper-util's matcher and `CONNECT`
//! tunnel. HTTPS goes through a tunnel with TLS to the endpoint inside it;
//! plain http (loopback only, see `url::check_endpoint`) is sent to the proxy
//! in absolute form.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::error::{BoxError, Error, Result};
use crate::url::redact;

type TunnelError = <Tunnel<HttpConnector> as Service<Uri>>::Error;

/// Why a proxy could not carry a request. The proxy is named by the
/// [`Error::Proxy`](crate::Error::Proxy) that holds this, without its
/// user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyProblem {
    /// No connection to the proxy could be made (nothing listens there, the
    /// connection was refused), or the proxy did not answer the `CONNECT`
    /// within the connect timeout.
    Unreachable,
    /// The proxy answered `407 Proxy Authentication Required`: the user
    /// name or password in the proxy URL is missing or wrong.
    AuthenticationRequired,
    /// The proxy refused to open a tunnel to the endpoint (its rules forbid
    /// the host or port).
    TunnelRefused,
    /// The proxy closed the connection or answered something that is not
    /// HTTP while the tunnel was being opened.
    TunnelFailed,
    /// The proxy URL is not an `http://` URL with a host.
    InvalidUrl,
    /// The proxy's scheme (`https`, `socks5`, …) is not supported; use an
    /// `http://` proxy.
    UnsupportedScheme(String),
}

impl fmt::Display for ProxyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyProblem::Unreachable => f.write_str("cannot be reached"),
            ProxyProblem::AuthenticationRequired => f.write_str(
                "asks for credentials (407): the user name or password in the proxy URL is \
                 missing or wrong",
            ),
            ProxyProblem::TunnelRefused => f.write_str("refused to open a tunnel to the endpoint"),
            ProxyProblem::TunnelFailed => {
                f.write_str("closed the connection while opening a tunnel")
            }
            ProxyProblem::InvalidUrl => f.write_str("is not a valid http:// proxy URL"),
            ProxyProblem::UnsupportedScheme(s) => {
                write!(
                    f,
                    "uses the scheme {s:?}; only http:// proxies are supported"
                )
            }
        }
    }
}

/// Which proxies a transport uses: none, or the rules of a matcher.
#[derive(Clone, Default)]
pub(crate) struct Proxy {
    matcher: Option<Arc<Matcher>>,
}

impl fmt::Debug for Proxy {
    // The matcher's own Debug shows proxy URLs without their credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Some(m) => m.fmt(f),
            None => f.write_str("no proxy"),
        }
    }
}

/// The first of these variables that is set (empty counts as unset).
fn first(get: &impl Fn(&str) -> Option<String>, names: [&str; 2]) -> String {
    names
        .into_iter()
        .find_map(|n| get(n).filter(|v| !v.trim().is_empty()))
        .unwrap_or_default()
}

impl Proxy {
    /// No proxy at all: the metadata server, or `.no_proxy()`.
    pub(crate) fn none() -> Self {
        Proxy::default()
    }

    /// The process environment, as curl and reqwest read it.
    pub(crate) fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// `get` answers for the environment: `ALL_PROXY`, `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `NO_PROXY`, upper case before lower case.
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let no = first(&get, ["NO_PROXY", "no_proxy"]);
        // curl's `*`: hyper-util's matcher applies it to names, not to IP addresses.
        if no.split(',').any(|e| e.trim() == "*") {
            return Self::none();
        }
        // A CGI program's HTTP_PROXY may come from a request header (httpoxy).
        let http = match get("REQUEST_METHOD") {
            Some(_) => String::new(),
            None => first(&get, ["HTTP_PROXY", "http_proxy"]),
        };
        let builder = Matcher::builder()
            .all(first(&get, ["ALL_PROXY", "all_proxy"]))
            .https(first(&get, ["HTTPS_PROXY", "https_proxy"]))
            .http(http)
            .no(no);
        Proxy {
            matcher: Some(Arc::new(builder.build())),
        }
    }

    /// One proxy for every endpoint (`NO_PROXY` is not read, as with
    /// reqwest's `Proxy::all`). Checked here, so a bad URL fails `load()`.
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let invalid = |problem| Error::Proxy {
            proxy: redact(url),
            problem,
            source: None,
        };
        let uri: Uri = url.parse().map_err(|_| invalid(ProxyProblem::InvalidUrl))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(invalid(ProxyProblem::UnsupportedScheme(other.to_owned()))),
            None => return Err(invalid(ProxyProblem::InvalidUrl)),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid(ProxyProblem::InvalidUrl));
        }
        Ok(Proxy {
            matcher: Some(Arc::new(Matcher::builder().all(url).build())),
        })
    }

    pub(crate) fn intercept(&self, dst: &Uri) -> Option<Intercept> {
        self.matcher.as_ref()?.intercept(dst)
    }

    /// Plain-http requests through a proxy carry its credentials themselves
    /// (`Proxy-Authorization`), as reqwest sends them; a tunnel carries them
    /// in its `CONNECT`.
    pub(crate) fn authorize<B>(&self, req: &mut http::Request<B>) {
        if req.uri().scheme_str() != Some("http") {
            return;
        }
        if let Some(auth) = self
            .intercept(req.uri())
            .as_ref()
            .and_then(Intercept::basic_auth)
        {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
    }
}

/// The TCP connector under the TLS layer: straight to the endpoint, through a
/// `CONNECT` tunnel for https, or to the proxy itself for plain http.
#[derive(Clone, Debug)]
pub(crate) struct ProxyConnector {
    pub(crate) http: HttpConnector,
    pub(crate) proxy: Proxy,
    /// Also bounds the `CONNECT` exchange, which the TCP connector's own
    /// timeout does not cover.
    pub(crate) connect_timeout: Duration,
}

/// A connection from [`ProxyConnector`]; tells hyper when requests must be
/// written in absolute form.
#[derive(Debug)]
pub(crate) struct ProxyStream {
    io: TokioIo<TcpStream>,
    to_proxy: bool,
}

type Connecting = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxedError>> + Send>>;
type BoxedError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxedError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let Some(intercept) = self.proxy.intercept(&dst) else {
            return Box::pin(async move {
                let io = http.call(dst).await?;
                Ok(ProxyStream {
                    io,
                    to_proxy: false,
                })
            });
        };
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let proxy_uri = intercept.uri().clone();
            let fail = |problem, source: Option<BoxError>| -> BoxedError {
                Box::new(Error::Proxy {
                    proxy: redact(&proxy_uri.to_string()),
                    problem,
                    source,
                })
            };
            match proxy_uri.scheme_str() {
                Some("http") => {}
                other => {
                    let scheme = other.unwrap_or_default().to_owned();
                    return Err(fail(ProxyProblem::UnsupportedScheme(scheme), None));
                }
            }
            if dst.scheme_str() == Some("http") {
                let io = http
                    .call(proxy_uri.clone())
                    .await
                    .map_err(|e| fail(ProxyProblem::Unreachable, Some(Arc::new(e))))?;
                return Ok(ProxyStream { io, to_proxy: true });
            }
            let mut tunnel = Tunnel::new(proxy_uri.clone(), http);
            if let Some(auth) = intercept.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let io = match tokio::time::timeout(timeout, tunnel.call(dst)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    let problem = match &e {
                        TunnelError::ConnectFailed(_) => ProxyProblem::Unreachable,
                        TunnelError::ProxyAuthRequired => ProxyProblem::AuthenticationRequired,
                        TunnelError::TunnelUnsuccessful => ProxyProblem::TunnelRefused,
                        _ => ProxyProblem::TunnelFailed,
                    };
                    return Err(fail(problem, Some(Arc::new(e))));
                }
                Err(_) => return Err(fail(ProxyProblem::Unreachable, None)),
            };
            Ok(ProxyStream {
                io,
                to_proxy: false,
            })
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Proxy {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Proxy::from_vars(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn via(p: &Proxy, url: &str) -> Option<String> {
        p.intercept(&url.parse().unwrap())
            .map(|i| i.uri().to_string())
    }

    #[test]
    fn https_http_and_all_proxy_pick_by_scheme() {
        let p = vars(&[("HTTPS_PROXY", "http://s:1"), ("http_proxy", "http://h:2")]);
        assert_eq!(
            via(&p, "https://a.example/x").as_deref(),
            Some("http://s:1/")
        );
        assert_eq!(
            via(&p, "http://a.example/x").as_deref(),
            Some("http://h:2/")
        );
        let p = vars(&[("all_proxy", "http://all:3")]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://all:3/")
        );
        assert_eq!(
            via(&p, "http://a.example/").as_deref(),
            Some("http://all:3/")
        );
        assert_eq!(via(&vars(&[]), "https://a.example/"), None);
    }

    #[test]
    fn upper_case_wins_and_empty_counts_as_unset() {
        let p = vars(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://upper:1/")
        );
        let p = vars(&[("HTTPS_PROXY", ""), ("https_proxy", "http://lower:2")]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://lower:2/")
        );
    }

    #[test]
    fn no_proxy_takes_suffixes_ips_cidrs_and_a_star() {
        let base = [("ALL_PROXY", "http://p:1")];
        let p = vars(&[
            base[0],
            ("NO_PROXY", "googleapis.com, 10.0.0.0/8,192.168.1.5"),
        ]);
        assert_eq!(via(&p, "https://oauth2.googleapis.com/"), None);
        assert_eq!(via(&p, "https://googleapis.com/"), None);
        assert!(via(&p, "https://notgoogleapis.com/").is_some());
        assert_eq!(via(&p, "https://10.1.2.3/"), None);
        assert_eq!(via(&p, "http://192.168.1.5/"), None);
        assert!(via(&p, "http://192.168.1.6/").is_some());
        let p = vars(&[base[0], ("no_proxy", "*")]);
        assert_eq!(via(&p, "https://127.0.0.1/"), None);
        assert_eq!(via(&p, "https://a.example/"), None);
    }

    #[test]
    fn cgi_programs_ignore_http_proxy() {
        let p = vars(&[("HTTP_PROXY", "http://h:2"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(via(&p, "http://a.example/"), None);
    }

    #[test]
    fn credentials_stay_out_of_debug_and_errors() {
        let p = Proxy::from_url("http://user:PROXYPASSMARKER@proxy.example:3128").unwrap();
        assert!(!format!("{p:?}").contains("PROXYPASSMARKER"), "{p:?}");
        let mut req = http::Request::get("http://127.0.0.1:1/x").body(()).unwrap();
        p.authorize(&mut req);
        let auth = &req.headers()[http::header::PROXY_AUTHORIZATION];
        assert!(auth.is_sensitive());
        assert!(!format!("{req:?}").contains("PROXYPASSMARKER"));
        for bad in [
            "socks5://user:PROXYPASSMARKER@p:1",
            "http://user:PROXYPASSMARKER@",
            "user:PROXYPASSMARKER@p:1",
        ] {
            let err = Proxy::from_url(bad).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("PROXYPASSMARKER"), "{text}");
            assert!(matches!(err, Error::Proxy { .. }), "{text}");
        }
    }

    #[test]
    fn https_requests_carry_no_proxy_authorization() {
        let p = Proxy::from_url("http://u:pw@proxy.example:3128").unwrap();
        let mut req = http::Request::get("https://a.example/").body(()).unwrap();
        p.authorize(&mut req);
        assert!(
            req.headers()
                .get(http::header::PROXY_AUTHORIZATION)
                .is_none()
        );
    }
}
