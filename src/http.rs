//! The HTTP transport shared by the token endpoint and the authorized client:
//! hyper 1 + rustls, built on first use, pooled, HTTP/2 by ALPN, through a
//! proxy when one applies (`proxy.rs`, `connect.rs`). Dead connections are
//! noticed by TCP keepalive and HTTP/2 pings, even under a long generation.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

use crate::connect::Connector;
use crate::error::{Error, Result};
use crate::proxy::Proxy;
use crate::url::redact;

/// Default limit for a whole request to the token endpoint (connect, send,
/// read the body). API calls have no whole-request limit by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for establishing a connection: TCP, a proxy's handshake
/// (`CONNECT`, SOCKS5, TLS to an `https://` proxy) and TLS, together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit between two pieces of a response body from the API.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The one request body type hyper sees: token requests and API calls (bytes
/// or streams) share one pool.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

type Hyper = Client<Connector, ReqBody>;

/// Idle time before TCP keepalive probes start, and between HTTP/2 pings.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long an HTTP/2 ping may go unanswered before the connection is closed.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// One pooled client; the TLS roots are loaded on the first request, so a
/// program whose cached token is valid pays nothing for them.
pub(crate) struct HttpClient {
    client: OnceLock<Hyper>,
    /// Trusted in addition to the webpki roots (corporate proxies, test servers).
    extra_roots: Vec<CertificateDer<'static>>,
    pub(crate) timeout: Duration,
    connect_timeout: Duration,
    proxy: Proxy,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration, connect_timeout: Duration) -> Self {
        Self::with_roots(timeout, connect_timeout, Vec::new())
    }

    pub(crate) fn with_roots(
        timeout: Duration,
        connect_timeout: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Self {
        #[cfg(any(feature = "reqwest", feature = "google-cloud-auth"))]
        install_process_provider();
        HttpClient {
            client: OnceLock::new(),
            extra_roots,
            timeout,
            connect_timeout,
            proxy: Proxy::none(),
        }
    }

    /// The same transport through `proxy` (none by default).
    pub(crate) fn with_proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// The same settings without a proxy, on connections of its own.
    pub(crate) fn direct(&self) -> Self {
        Self::with_roots(self.timeout, self.connect_timeout, self.extra_roots.clone())
    }

    fn hyper(&self) -> &Hyper {
        self.client.get_or_init(|| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(self.connect_timeout));
            http.set_keepalive(Some(KEEPALIVE));
            http.set_keepalive_interval(Some(KEEPALIVE));
            let mut tls = self.tls_config();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            let proxy_tls = TlsConnector::from(Arc::new(tls.clone()));
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let connector = Connector {
                http,
                tls: TlsConnector::from(Arc::new(tls)),
                proxy_tls,
                proxy: self.proxy.clone(),
                timeout: self.connect_timeout,
            };
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .http2_keep_alive_interval(KEEPALIVE)
                .http2_keep_alive_timeout(PING_TIMEOUT)
                .build(connector)
        })
    }

    fn tls_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // Validated when the loader parsed them.
        roots.add_parsable_certificates(self.extra_roots.iter().cloned());
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .or_else(|_| {
                tracing::warn!(
                    "the process-wide rustls CryptoProvider supports neither TLS 1.2 nor 1.3; \
                     using {BUILT_IN}'s"
                );
                rustls::ClientConfig::builder_with_provider(Arc::new(built_in_provider()))
                    .with_safe_default_protocol_versions()
            })
            // Only fails for an empty protocol set, which the built-in defaults never are.
            .unwrap_or_else(|_| unreachable!("{BUILT_IN} supports the default TLS versions"));
        builder.with_root_certificates(roots).with_no_client_auth()
    }

    /// Sends `req` and returns the answer's head; the body streams. No
    /// timeout but the connect timeout: callers set their own limits.
    pub(crate) async fn start(&self, mut req: Request<ReqBody>) -> Result<Response<Incoming>> {
        self.proxy.authorize(&mut req);
        let uri = req.uri().clone();
        self.hyper()
            .request(req)
            .await
            // Formatted only on failure: the success path allocates nothing for it.
            .map_err(|e| Error::transport(&redact(&uri.to_string()), e))
    }

    /// Sends `req` and reads at most `limit` bytes of the answer, all within the timeout.
    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<Response<Bytes>> {
        let uri = req.uri().clone();
        let endpoint = || redact(&uri.to_string());
        let req = req.map(|body| body.map_err(|never| match never {}).boxed_unsync());
        let work = async {
            let resp = self.start(req).await?;
            let (parts, body) = resp.into_parts();
            let body = match Limited::new(body, limit).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(Error::ResponseTooLarge {
                        endpoint: endpoint(),
                        limit,
                    });
                }
                Err(e) => return Err(Error::transport(&endpoint(), e)),
            };
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("request to {}", endpoint()),
                after: self.timeout,
            })?
    }
}

/// The rustls provider: the process-wide default when the application
/// installed one (`CryptoProvider::install_default`), else the built-in one.
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(built_in_provider()))
}

/// The provider this build brings: aws-lc-rs's with feature `aws-lc-rs`, else ring's.
#[cfg(feature = "aws-lc-rs")]
fn built_in_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(not(feature = "aws-lc-rs"))]
fn built_in_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

const BUILT_IN: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// reqwest built without a provider (what google-cloud-auth asks for)
/// panics unless the process has one: with the features that bring
/// reqwest in, the built-in one (ring's, or aws-lc-rs's with feature
/// `aws-lc-rs`) becomes the process default when none is installed yet. An application that wants another installs it before loading
/// credentials.
#[cfg(any(feature = "reqwest", feature = "google-cloud-auth"))]
fn install_process_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one meanwhile, which is as good.
        let _ = built_in_provider().install_default();
    }
}
