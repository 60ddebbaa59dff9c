//! [`CredentialLoader`]: builds [`Credentials`] of one [`kind`]: a user's
//! sign-in ([`kind::UserFlow`], `load_creds.py`'s way), Application Default
//! Credentials, or an API key. Options shared by every kind live here; each
//! kind's own options and `load` live in a file of their own.

mod adc;
mod api_key;
mod fixed;
mod from_env;
mod impersonate;
pub mod kind;
mod sdk_env;
mod user;
#[cfg(feature = "yup-oauth2")]
mod yup;

pub use sdk_env::{Backend, EnvAuth, EnvChoice};

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use tokio::runtime;

use crate::credentials::Settings;
use crate::env;
use crate::error::{Error, Result};
use crate::headers::sensitive;
use crate::http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpClient};
use crate::proxy::Proxy;
use crate::scopes;
use crate::source::user::Endpoints;
use crate::token_cache::{CacheOptions, RefreshEvent};
use crate::token_endpoint::Retry;
use crate::universe::Universe;
use crate::url::{check_endpoint, redact};
use crate::vertex::{VertexAi, VertexProblem};

/// Builds [`Credentials`](crate::Credentials). Building is cheap and does no
/// I/O; everything happens in `load()`.
///
/// - [`CredentialLoader::new`]: the way `load_creds.py` does it: the stored
///   token if it is valid and covers the scopes, else a refresh, else the
///   consent flow; whatever was obtained is saved to the store.
/// - [`CredentialLoader::application_default`]: Application Default
///   Credentials, as google-auth finds them.
/// - [`CredentialLoader::api_key`] and [`CredentialLoader::api_key_from_env`]:
///   an API key.
/// - [`CredentialLoader::from_env`]: whatever Google's Gemini SDKs would
///   choose from the environment (Vertex AI, an API key, or the sign-in).
/// - [`CredentialLoader::fixed_token`]: a fixed access token, a test double
///   for your own tests.
///
/// Each kind accepts only the options that apply to it (see [`kind`]).
///
/// ```no_run
/// use gemini_oauth::{CredentialLoader, Consent, FileTokenStore, scopes};
/// # async fn f() -> gemini_oauth::Result<()> {
/// let creds = CredentialLoader::new()
///     .client_secret_file("client_secret.json")
///     .token_store(FileTokenStore::new("token.json"))
///     .scopes([scopes::GENERATIVE_LANGUAGE_RETRIEVER, scopes::CLOUD_PLATFORM])
///     .consent(Consent::PrintUrl)
///     .load()
///     .await?;
/// # Ok(()) }
/// ```
///
/// A loader is `Clone`: `load()` consumes it, so clone a configured one to
/// load again. Credentials loaded from clones of one loader on one tokio
/// runtime share one HTTP client, and so one pool of connections (a server
/// holding many users' credentials opens one connection to Google, not one
/// per user); the proxy variables are then read by the first `load()`. A
/// load on another runtime gets a client of its own. Changing the timeouts,
/// roots or proxy of a clone gives it a client of its own.
#[derive(Clone)]
#[must_use = "a CredentialLoader does nothing until `.load()` is awaited"]
pub struct CredentialLoader<K = kind::UserFlow> {
    common: Common,
    kind: K,
}

/// Options more than one kind shares.
#[derive(Clone)]
struct Common {
    extra_roots_pem: Vec<u8>,
    /// `None`: the default for the service (cloud-platform for Vertex AI).
    scopes: Option<Vec<String>>,
    vertex: Option<VertexAi>,
    vertex_origin: Option<String>,
    quota_project: Option<String>,
    api_base: Option<String>,
    token_uri: Option<String>,
    revoke_uri: Option<String>,
    /// The IAM Credentials API's base URL, for impersonation.
    iam_endpoint: Option<String>,
    /// A service account to impersonate with the loaded credentials.
    impersonate: Option<impersonate::Impersonation>,
    timeout: Duration,
    connect_timeout: Duration,
    proxy: ProxySetting,
    cache: CacheOptions,
    /// The HTTP client of the first `load()` among this loader's clones
    /// (one connection pool for many users' credentials), and the runtime
    /// it ran on; the transport setters start a new one.
    http: Arc<OnceLock<(runtime::Id, Arc<HttpClient>)>>,
}

/// Where the proxy comes from.
#[derive(Clone)]
enum ProxySetting {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read at `load()`.
    Env,
    /// May hold a password.
    Url(SecretString),
    Off,
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::Env => f.write_str("(from the environment)"),
            ProxySetting::Url(url) => f.write_str(&redact(url.expose_secret())),
            ProxySetting::Off => f.write_str("(none)"),
        }
    }
}

impl Default for Common {
    fn default() -> Self {
        Common {
            extra_roots_pem: Vec::new(),
            scopes: None,
            vertex: None,
            vertex_origin: None,
            quota_project: None,
            api_base: None,
            token_uri: None,
            revoke_uri: None,
            iam_endpoint: None,
            impersonate: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            proxy: ProxySetting::Env,
            cache: CacheOptions::default(),
            http: Arc::default(),
        }
    }
}

impl Common {
    /// The HTTP client these options describe: the one an earlier `load()`
    /// of a clone built on this runtime, else a new one (the proxy variables
    /// read now).
    ///
    /// Why only on the same runtime: a pooled connection is driven by a task
    /// of the runtime that opened it. Another runtime's request sent over it
    /// waits, for the whole timeout, while that runtime is idle (a
    /// current-thread runtime kept per thread and not driven).
    fn http(&self) -> Result<Arc<HttpClient>> {
        let here = runtime::Handle::try_current().ok().map(|h| h.id());
        if let Some((at, http)) = self.http.get()
            && here == Some(*at)
        {
            return Ok(Arc::clone(http));
        }
        let proxy = match &self.proxy {
            ProxySetting::Env => Proxy::from_env()?,
            ProxySetting::Url(url) => Proxy::from_url(url.expose_secret())?,
            ProxySetting::Off => Proxy::none(),
        };
        let http = Arc::new(
            HttpClient::with_roots(
                self.timeout,
                self.connect_timeout,
                parse_pem_certificates(&self.extra_roots_pem)?,
            )
            .with_proxy(proxy),
        );
        let Some(here) = here else {
            return Ok(http);
        };
        match self.http.get_or_init(|| (here, Arc::clone(&http))) {
            (at, shared) if *at == here => Ok(Arc::clone(shared)),
            _ => Ok(http),
        }
    }

    /// The scopes set, else cloud-platform for Vertex AI (which accepts no
    /// narrower scope), else the quickstart's generative-language.retriever.
    fn scopes(&self) -> Vec<String> {
        match (&self.scopes, &self.vertex) {
            (Some(s), _) => s.clone(),
            (None, Some(_)) => vec![scopes::CLOUD_PLATFORM.to_owned()],
            (None, None) => vec![scopes::GENERATIVE_LANGUAGE_RETRIEVER.to_owned()],
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for CredentialLoader<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.common;
        f.debug_struct("CredentialLoader")
            .field("kind", &self.kind)
            .field("scopes", &c.scopes())
            .field("vertex_ai", &c.vertex)
            .field("vertex_ai_origin", &c.vertex_origin.as_deref().map(redact))
            .field("quota_project", &c.quota_project)
            .field("api_base", &c.api_base.as_deref().map(redact))
            .field("token_uri", &c.token_uri.as_deref().map(redact))
            .field("iam_endpoint", &c.iam_endpoint.as_deref().map(redact))
            .field("impersonate", &c.impersonate)
            .field("timeout", &c.timeout)
            .field("connect_timeout", &c.connect_timeout)
            .field("proxy", &c.proxy)
            .field("refresh_margin", &c.cache.refresh_margin)
            .field("on_refresh", &c.cache.on_refresh.is_some())
            .finish_non_exhaustive()
    }
}

impl<K> CredentialLoader<K> {
    fn of_kind(kind: K) -> Self {
        CredentialLoader {
            common: Common::default(),
            kind,
        }
    }

    /// The project billed for API calls, sent as `x-goog-user-project`.
    /// Wins over `GOOGLE_CLOUD_QUOTA_PROJECT` and a file's `quota_project_id`.
    pub fn quota_project(mut self, project: impl Into<String>) -> Self {
        self.common.quota_project = Some(project.into());
        self
    }

    /// The Gemini API base URL (default `GEMINI_API_BASE` from the
    /// environment, else [`endpoints::GEMINI_API_BASE`](crate::endpoints::GEMINI_API_BASE)),
    /// with no query or fragment (`load()` refuses one: the API's paths go after it).
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.common.api_base = Some(url.into());
        self
    }

    /// Trusts these PEM certificates as roots, besides the built-in Mozilla
    /// set (webpki-roots): for a TLS-inspecting corporate proxy, or a private
    /// endpoint. Checked by `load()`: PEM that holds no certificate, or one
    /// that is not a valid trust anchor, is [`Error::InvalidCertificate`].
    pub fn root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.common.extra_roots_pem.extend_from_slice(pem.as_ref());
        self.common.extra_roots_pem.push(b'\n');
        self.common.http = Arc::default();
        self
    }

    /// Limit for each request to the token endpoint (and revocation, the
    /// metadata server's token), connect to last byte (default 30 s). API
    /// calls have none by default: see [`AuthorizedClient::timeout`](crate::AuthorizedClient::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.common.timeout = timeout;
        self.common.http = Arc::default();
        self
    }

    /// Limit for establishing a connection (default 10 s): TCP, a proxy's
    /// handshake (`CONNECT`, SOCKS5, TLS to an `https://` proxy) and TLS to
    /// the endpoint, together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.common.connect_timeout = timeout;
        self.common.http = Arc::default();
        self
    }

    /// Sends every request through this proxy (the token endpoint,
    /// revocation and the API, loopback included; never the metadata
    /// server), instead of the proxies named by `HTTPS_PROXY`, `HTTP_PROXY`
    /// and `ALL_PROXY`; `NO_PROXY` is not read then. `http://` and
    /// `https://` proxies get a `CONNECT` (TLS to the proxy first for
    /// `https://`); `socks5://` resolves names here, `socks5h://` lets the
    /// proxy resolve them. A user name and password in the URL
    /// (`http://user:pass@proxy:3128`, percent-encoded) are sent as
    /// `Proxy-Authorization: Basic` (or in the SOCKS5 handshake) and never
    /// shown. Checked by `load()` ([`Error::Proxy`](crate::Error::Proxy)).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.common.proxy = ProxySetting::Url(SecretString::from(url.into()));
        self.common.http = Arc::default();
        self
    }

    /// Connects directly, ignoring the proxy variables of the environment.
    pub fn no_proxy(mut self) -> Self {
        self.common.proxy = ProxySetting::Off;
        self.common.http = Arc::default();
        self
    }

    /// What every kind of credentials carries for its calls. The quota
    /// project is the explicit one, else `GOOGLE_CLOUD_QUOTA_PROJECT`, else
    /// the file's.
    fn settings(&self, file_quota: Option<String>) -> Result<Settings> {
        self.settings_in(file_quota, &Universe::default())
    }

    /// [`settings`](Self::settings) for credentials of `universe`, whose
    /// Gemini endpoint is the default API base.
    fn settings_in(&self, file_quota: Option<String>, universe: &Universe) -> Result<Settings> {
        let c = &self.common;
        // `None`: the universe's Gemini API.
        let api_base = match (&c.vertex, &c.api_base) {
            (Some(_), Some(_)) => return Err(Error::VertexAi(VertexProblem::ConflictsWithApiBase)),
            // GEMINI_API_BASE names the Gemini API, not Vertex AI: not read here.
            (Some(vertex), None) => Some(
                vertex
                    .api_base(c.vertex_origin.as_deref(), universe)
                    .map_err(Error::VertexAi)?,
            ),
            (None, Some(base)) => Some(base.clone()),
            (None, None) => env::nonempty(env::GEMINI_API_BASE),
        };
        let kept = universe.kept();
        let api_base = api_base.map_or(kept.gemini_api_base, Cow::Owned);
        check_endpoint(&api_base)?;
        // Why: the API's paths are appended to the base as text, so they
        // would land in the query (`/gw?x=1/v1/models`): misrouted calls.
        if api_base.contains(['?', '#']) {
            return Err(Error::InvalidUrl {
                url: redact(&api_base),
                reason: "an API base takes no query or fragment (the API's paths go after it)",
            });
        }
        let quota_project = c
            .quota_project
            .clone()
            .or_else(|| env::nonempty(env::GOOGLE_CLOUD_QUOTA_PROJECT))
            .or(file_quota);
        let quota_header = quota_project
            .as_deref()
            .map(|p| {
                http::HeaderValue::from_str(p).map_err(|_| Error::InvalidHeaderValue {
                    what: "the quota project id",
                })
            })
            .transpose()?;
        Ok(Settings {
            universe_domain: kept.domain,
            quota_project,
            quota_header,
            api_base,
            http: c.http()?,
        })
    }
}

impl<K: kind::OAuthKind> CredentialLoader<K> {
    /// The scopes to request. For a user's sign-in, a stored token that lacks
    /// any of them leads to consent; for ADC they are what service accounts
    /// and the metadata server are asked for.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.common.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Calls Gemini models through Vertex AI instead of the Gemini API: the
    /// API base becomes
    /// `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google`
    /// (`https://aiplatform.googleapis.com/…` for `global`), and the scopes,
    /// unless set, become [`scopes::CLOUD_PLATFORM`](crate::scopes::CLOUD_PLATFORM).
    /// `GEMINI_API_BASE` is not read then, and an explicit
    /// [`api_base`](Self::api_base) is an error at `load()`
    /// ([`VertexProblem::ConflictsWithApiBase`](crate::VertexProblem::ConflictsWithApiBase)):
    /// use [`vertex_ai_origin`](Self::vertex_ai_origin) to aim at another host.
    /// The project and location are checked by `load()`
    /// ([`Error::VertexAi`](crate::Error::VertexAi)).
    pub fn vertex_ai(mut self, project: impl Into<String>, location: impl Into<String>) -> Self {
        self.common.vertex = Some(VertexAi {
            project: project.into(),
            location: location.into(),
        });
        self
    }

    /// The scheme and host Vertex AI is reached at, instead of
    /// `https://{location}-aiplatform.googleapis.com` (a private endpoint, a
    /// local test server); the `/v1/projects/…` path is kept. Has effect only
    /// with [`vertex_ai`](Self::vertex_ai), in either order.
    pub fn vertex_ai_origin(mut self, origin: impl Into<String>) -> Self {
        self.common.vertex_origin = Some(origin.into());
        self
    }

    /// The token endpoint for this run's refreshes and sign-in, instead of
    /// the one the stored token or the client secret names. Never written to
    /// the token store: later runs use the stored endpoint again.
    pub fn token_uri(mut self, url: impl Into<String>) -> Self {
        self.common.token_uri = Some(url.into());
        self
    }

    /// The token revocation endpoint used by
    /// [`Credentials::revoke`](crate::Credentials::revoke) (default
    /// [`endpoints::GOOGLE_REVOKE_URI`](crate::endpoints::GOOGLE_REVOKE_URI)).
    pub fn revoke_uri(mut self, url: impl Into<String>) -> Self {
        self.common.revoke_uri = Some(url.into());
        self
    }

    /// How long before expiry a background refresh starts (default
    /// [`REFRESH_WINDOW`](crate::REFRESH_WINDOW), google-auth's 3 min 45 s).
    /// Callers keep the still-valid token meanwhile. A token that lives less
    /// than twice the margin refreshes at half its life; none is handed out
    /// in its last [`EXPIRY_SKEW`](crate::EXPIRY_SKEW).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.common.cache.refresh_margin = margin;
        self
    }

    /// Calls `observer` after every successful refresh: the new expiry and
    /// whether the refresh token was rotated, never a secret
    /// ([`RefreshEvent`](crate::RefreshEvent)). Covers the background and
    /// waited-for refreshes of the credentials, and a refresh `load()` itself
    /// makes for an expired cached token; not a sign-in, nor the first token
    /// of a service account or the metadata server. With impersonation, only
    /// the impersonated token's refreshes, not those of the credentials it
    /// draws on. It runs on the task that refreshed: keep it short; a panic
    /// in it fails that refresh (the token is not used, and the backoff after
    /// failures applies).
    pub fn on_refresh(mut self, observer: impl Fn(&RefreshEvent) + Send + Sync + 'static) -> Self {
        self.common.cache.on_refresh = Some(Arc::new(observer));
        self
    }

    /// Calls `observer` after every failed refresh of the credentials (a
    /// background refresh, or one a caller waited for), once per refresh
    /// however many callers waited for it, with the error they got. An
    /// [`Error::InvalidGrant`](crate::Error::InvalidGrant) (or an
    /// [`oauth_error`](crate::Error::oauth_error) of
    /// [`OAuthError::InvalidGrant`](crate::OAuthError::InvalidGrant)) means
    /// the user revoked access or the refresh token expired: only a new
    /// sign-in helps. A failure of `load()` itself is its `Err`, not told
    /// here. It runs on the task that refreshed: keep it short; a panic in it
    /// is logged and ignored.
    pub fn on_refresh_failure(
        mut self,
        observer: impl Fn(&crate::Error) + Send + Sync + 'static,
    ) -> Self {
        self.common.cache.on_failure = Some(Arc::new(observer));
        self
    }

    /// How a user's refresh token reaches its endpoints.
    fn endpoints(&self, http: &Arc<HttpClient>) -> Endpoints {
        Endpoints {
            http: Arc::clone(http),
            retry: Retry::default(),
            token_uri: self.common.token_uri.clone(),
            revoke_uri: self
                .common
                .revoke_uri
                .clone()
                .map_or(Universe::default().kept().revoke_uri, Cow::Owned),
        }
    }
}

/// An API key as a header value that is never shown.
fn api_key_header(key: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(key)
        .map(sensitive)
        .map_err(|_| Error::InvalidHeaderValue {
            what: "the API key",
        })
}

fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::InvalidCertificate(format!("the PEM cannot be read: {}", pem_problem(&e)))
        })?;
    // Why: roots asked for but none found (an empty file, DER, a key) would
    // only show at the first handshake, as an unknown issuer.
    if certs.is_empty() && !pem.is_empty() {
        return Err(Error::InvalidCertificate(
            "the PEM holds no certificate (no -----BEGIN CERTIFICATE----- block)".into(),
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    let (_, rejected) = store.add_parsable_certificates(certs.iter().cloned());
    if rejected > 0 {
        return Err(Error::InvalidCertificate(format!(
            "{rejected} of {} certificates are not valid X.509 trust anchors",
            certs.len()
        )));
    }
    Ok(certs)
}

/// What is wrong with PEM, without the PEM: the parser's own errors carry
/// the offending line or label, which may be a private key that lost its
/// line breaks (`-----BEGIN PRIVATE KEY-----MIIE…`).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error as Pem;
    match e {
        Pem::MissingSectionEnd { .. } => {
            "a -----BEGIN line has no -----END line after it (are its line breaks lost?)"
        }
        Pem::IllegalSectionStart { .. } => {
            "a -----BEGIN line is malformed (is the block on one line?)"
        }
        Pem::Base64Decode(_) => "a block is not valid base64",
        Pem::SectionTooLarge => "a block is larger than 256 MB",
        _ => "it is not valid PEM",
    }
}

/// `load()` can be spawned on a multi-threaded runtime, for every kind.
#[allow(dead_code)]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    send(&CredentialLoader::new().load());
    send(&CredentialLoader::application_default().load());
    send(&CredentialLoader::api_key("k").load());
    send(&CredentialLoader::from_env().load());
    send(&CredentialLoader::fixed_token("t", std::time::SystemTime::UNIX_EPOCH).load());
    send(&crate::load_creds());
}
