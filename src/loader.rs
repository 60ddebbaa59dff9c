//! [`CredentialLoader`]: decides between the cached token, a refresh, and
//! the consent flow, as `load_creds.py` does.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use crate::adc;
use crate::client::GEMINI_API_BASE;
use crate::credentials::{Credentials, Settings, Source, refresh_user};
use crate::error::{ConsentReason, Error, Result};
use crate::flow::{self, Consent, FlowOptions};
use crate::http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpClient};
use crate::refresh::Retry;
use crate::scopes;
use crate::secret::ClientSecret;
use crate::store::{DynTokenStore, FileTokenStore, TokenStore};
use crate::token::StoredToken;
use crate::url::check_endpoint;

/// How much longer than the consent timeout a process waits for another
/// one's refresh or sign-in.
const LOCK_MARGIN: Duration = Duration::from_secs(60);

/// Google's token revocation endpoint.
pub const GOOGLE_REVOKE_URI: &str = "https://oauth2.googleapis.com/revoke";
/// Environment variables read for an API key, in this order.
pub const ENV_API_KEYS: [&str; 2] = ["GEMINI_API_KEY", "GOOGLE_API_KEY"];

/// Which kind of credentials the loader produces.
#[derive(Debug, Clone)]
enum Mode {
    /// client_secret.json + token store + consent flow (`load_creds.py`).
    User,
    /// Application Default Credentials, found as google-auth finds them.
    ApplicationDefault,
    /// An API key, given or from the environment.
    ApiKey(Option<String>),
}

/// Environment variable that overrides the Gemini API base URL.
pub const ENV_API_BASE: &str = "GEMINI_API_BASE";
/// Environment variable that sets the quota project (below an explicit value).
pub const ENV_QUOTA_PROJECT: &str = "GOOGLE_CLOUD_QUOTA_PROJECT";

enum SecretSource {
    File(PathBuf),
    Given(Box<ClientSecret>),
}

/// Builds [`Credentials`] the way `load_creds.py` does: the stored token if it
/// is valid and covers the scopes, else a refresh, else the consent flow;
/// whatever was obtained is saved to the store.
///
/// Building is cheap and does no I/O; everything happens in [`load`](Self::load).
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
pub struct CredentialLoader {
    mode: Mode,
    extra_roots_pem: Vec<u8>,
    revoke_uri: Option<String>,
    secret: SecretSource,
    store: Option<Arc<dyn DynTokenStore>>,
    scopes: Vec<String>,
    quota_project: Option<String>,
    api_base: Option<String>,
    token_uri: Option<String>,
    auth_uri: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    flow: FlowOptions,
}

impl fmt::Debug for CredentialLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialLoader")
            .field("store", &self.store.as_ref().map(|s| s.name()))
            .field("scopes", &self.scopes)
            .field("quota_project", &self.quota_project)
            .field("api_base", &self.api_base)
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

impl Default for CredentialLoader {
    fn default() -> Self {
        Self::new()
    }
}

impl CredentialLoader {
    /// The quickstart's defaults: `./client_secret.json`, `./token.json`, the
    /// `generative-language.retriever` scope, and the browser consent flow.
    pub fn new() -> Self {
        CredentialLoader {
            mode: Mode::User,
            extra_roots_pem: Vec::new(),
            revoke_uri: None,
            secret: SecretSource::File(PathBuf::from("client_secret.json")),
            store: None,
            scopes: vec![scopes::GENERATIVE_LANGUAGE_RETRIEVER.to_owned()],
            quota_project: None,
            api_base: None,
            token_uri: None,
            auth_uri: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            flow: FlowOptions::default(),
        }
    }

    /// Application Default Credentials instead of `client_secret.json` and a
    /// token store, looked up as google-auth does: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// then gcloud's file (`$CLOUDSDK_CONFIG/application_default_credentials.json`,
    /// else `~/.config/gcloud/…`, `%APPDATA%\gcloud\…` on Windows), then the
    /// GCE metadata server (`GCE_METADATA_HOST`; skipped when `NO_GCE_CHECK=true`).
    /// `authorized_user` and (feature `service-account`) `service_account`
    /// files are supported. Scopes, quota project, timeouts, `token_uri` and
    /// the API base apply; the consent flow and the token store do not.
    pub fn application_default(mut self) -> Self {
        self.mode = Mode::ApplicationDefault;
        self
    }

    /// Use an API key (sent as `x-goog-api-key`, never with a bearer token):
    /// the Gemini quickstart's "easiest way". `None` reads `GEMINI_API_KEY`,
    /// then `GOOGLE_API_KEY`.
    pub fn api_key(mut self, key: Option<String>) -> Self {
        self.mode = Mode::ApiKey(key);
        self
    }

    /// The token revocation endpoint used by [`Credentials::revoke`]
    /// (default [`GOOGLE_REVOKE_URI`]).
    pub fn revoke_uri(mut self, url: impl Into<String>) -> Self {
        self.revoke_uri = Some(url.into());
        self
    }

    /// Where the OAuth client comes from (read only when consent is needed).
    pub fn client_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret = SecretSource::File(path.into());
        self
    }

    /// An OAuth client given in code instead of a file.
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.secret = SecretSource::Given(Box::new(secret));
        self
    }

    /// Where tokens are kept (default `FileTokenStore::new("token.json")`).
    pub fn token_store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The scopes to request; a stored token that lacks any of them leads to consent.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The project billed for API calls, sent as `x-goog-user-project`.
    /// Wins over `GOOGLE_CLOUD_QUOTA_PROJECT` and the file's `quota_project_id`.
    pub fn quota_project(mut self, project: impl Into<String>) -> Self {
        self.quota_project = Some(project.into());
        self
    }

    /// The Gemini API base URL (default `GEMINI_API_BASE` from the
    /// environment, else [`GEMINI_API_BASE`]).
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = Some(url.into());
        self
    }

    /// Overrides the token endpoint of the stored token and the client secret.
    pub fn token_uri(mut self, url: impl Into<String>) -> Self {
        self.token_uri = Some(url.into());
        self
    }

    /// Overrides the authorization endpoint of the client secret.
    pub fn auth_uri(mut self, url: impl Into<String>) -> Self {
        self.auth_uri = Some(url.into());
        self
    }

    /// How consent is obtained when nothing cached can serve (default
    /// [`Consent::OpenBrowser`]); [`Consent::Never`] for servers and CI.
    pub fn consent(mut self, consent: Consent) -> Self {
        self.flow.consent = consent;
        self
    }

    /// How long the consent flow waits for the user (default 5 minutes).
    pub fn consent_timeout(mut self, timeout: Duration) -> Self {
        self.flow.timeout = timeout;
        self
    }

    /// Host and port of the loopback listener (default `127.0.0.1:0`, an ephemeral port).
    pub fn redirect_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.flow.bind = addr;
        self
    }

    /// Where the consent URL goes instead of stderr (for GUIs, chat bots and tests).
    /// With [`Consent::OpenBrowser`] it is called too, after the browser opened.
    pub fn on_consent_url(mut self, callback: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.flow.on_url = Some(Arc::new(callback));
        self
    }

    /// Trusts these PEM certificates as roots, besides the built-in Mozilla
    /// set (webpki-roots): for a TLS-inspecting corporate proxy, or a private
    /// endpoint. Checked by [`load`](Self::load).
    pub fn root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.extend_from_slice(pem.as_ref());
        self.extra_roots_pem.push(b'\n');
        self
    }

    /// Limit for each HTTP request, connect to last byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limit for establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Loads, refreshes or obtains credentials, and saves what changed.
    ///
    /// # Errors
    /// Store errors ([`Error::TokenFile`], [`Error::Io`], [`Error::Store`]) are
    /// never taken for "no token". Transient refresh errors are returned, not
    /// answered with a consent. With [`Consent::Never`], a needed consent is
    /// [`Error::ConsentRequired`] (or [`Error::InvalidGrant`]); otherwise the
    /// consent flow's errors ([`Error::AuthorizationDenied`], [`Error::Timeout`], …)
    /// and [`Error::ClientSecretNotFound`] when there is no client secret file.
    #[tracing::instrument(skip_all, name = "gemini_oauth::load")]
    pub async fn load(self) -> Result<Credentials> {
        match &self.mode {
            Mode::User => {}
            Mode::ApplicationDefault => return self.load_application_default().await,
            Mode::ApiKey(key) => {
                let key =
                    key.clone()
                        .or_else(api_key_from_env)
                        .ok_or_else(|| Error::NoCredentials {
                            tried: ENV_API_KEYS
                                .iter()
                                .map(|k| format!("{k} (not set)"))
                                .collect(),
                        })?;
                let settings = self.settings(None, Some(key))?;
                let far = SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600);
                return Credentials::new(
                    Source::ApiKey,
                    settings,
                    SecretString::from(String::new()),
                    far,
                );
            }
        }
        let store: Arc<dyn DynTokenStore> = match &self.store {
            Some(s) => Arc::clone(s),
            None => Arc::new(FileTokenStore::new("token.json")),
        };
        let store_name = store.name();
        let stored = store.load().await?;
        let file_quota = stored
            .as_ref()
            .and_then(|s| s.quota_project_id().map(str::to_owned));
        let settings = self.settings(file_quota, None)?;

        let first = self.decide(stored);
        if let Decision::Use(record) = first {
            tracing::debug!(store = %store_name, "using the cached token");
            return credentials(record, store, settings);
        }
        // Work to do: hold the store's lock and look again, since another
        // process may have refreshed or signed in while we waited.
        let wait = self.flow.timeout + LOCK_MARGIN;
        let _lock = store.lock(wait).await?;
        let decision = match _lock {
            Some(_) => self.decide(store.load().await?),
            None => first,
        };
        let reason = match decision {
            Decision::Use(record) => {
                tracing::debug!(store = %store_name, "another process refreshed the token");
                return credentials(record, store, settings);
            }
            Decision::Refresh(record) => match refresh_user(&settings, record, &store_name).await {
                Ok(fresh) => {
                    store.save(&fresh).await?;
                    return credentials(fresh, store, settings);
                }
                Err(Error::InvalidGrant { description, .. })
                    if self.flow.consent != Consent::Never =>
                {
                    ConsentReason::RefreshTokenRejected(description)
                }
                Err(e) => return Err(e),
            },
            Decision::Consent(reason) => reason,
        };

        if self.flow.consent == Consent::Never {
            return Err(Error::ConsentRequired {
                reason,
                store: store_name,
            });
        }
        tracing::info!(%reason, "starting the consent flow");
        let mut secret = match self.secret {
            SecretSource::File(path) => ClientSecret::from_file(path).await?,
            SecretSource::Given(secret) => *secret,
        };
        if let Some(uri) = self.token_uri {
            secret = secret.token_uri(uri);
        }
        if let Some(uri) = self.auth_uri {
            secret = secret.auth_uri(uri);
        }
        // A refresh token must be issued again when the old one is gone or rejected.
        let mut flow = self.flow;
        flow.force_consent = !matches!(reason, ConsentReason::NoToken);
        let record = flow::run(&secret, &self.scopes, &flow, &settings).await?;
        store.save(&record).await?;
        credentials(record, store, settings)
    }
}

impl CredentialLoader {
    /// Settings shared by every kind of credentials; the quota project is
    /// the explicit one, else `GOOGLE_CLOUD_QUOTA_PROJECT`, else the file's.
    fn settings(&self, file_quota: Option<String>, api_key: Option<String>) -> Result<Settings> {
        let api_base = self
            .api_base
            .clone()
            .or_else(|| env_nonempty(ENV_API_BASE))
            .unwrap_or_else(|| GEMINI_API_BASE.to_owned());
        check_endpoint(&api_base)?;
        let revoke_uri = self
            .revoke_uri
            .clone()
            .unwrap_or_else(|| GOOGLE_REVOKE_URI.to_owned());
        let quota_project = self
            .quota_project
            .clone()
            .or_else(|| env_nonempty(ENV_QUOTA_PROJECT))
            .or(file_quota);
        let header = |value: &str, what: &'static str| {
            let mut v = http::HeaderValue::from_str(value).map_err(|_| Error::InvalidUrl {
                url: String::from(what),
                reason: "contains characters not allowed in an HTTP header",
            })?;
            v.set_sensitive(what == "the API key");
            Ok::<_, Error>(v)
        };
        Ok(Settings {
            quota_header: quota_project
                .as_deref()
                .map(|p| header(p, "the quota project id"))
                .transpose()?,
            quota_project,
            api_key: api_key
                .as_deref()
                .map(|k| header(k, "the API key"))
                .transpose()?,
            api_base,
            revoke_uri,
            http: Arc::new(HttpClient::with_roots(
                self.timeout,
                self.connect_timeout,
                parse_pem_certificates(&self.extra_roots_pem)?,
            )),
            retry: Retry::default(),
        })
    }

    async fn load_application_default(self) -> Result<Credentials> {
        match adc::find(&self.scopes).await? {
            adc::Found::User { mut record, path } => {
                let name = path.display().to_string();
                if let Some(uri) = &self.token_uri {
                    record.token_uri = Some(uri.clone());
                }
                let settings = self.settings(record.quota_project_id().map(str::to_owned), None)?;
                // gcloud's file holds no access token: get one now. The file
                // itself is never rewritten, as with google-auth.
                let fresh = refresh_user(&settings, *record, &name).await?;
                let token = fresh.token.clone().unwrap_or_default();
                let expires_at = fresh.expiry().unwrap_or_else(SystemTime::now);
                let source = Source::User {
                    record: Mutex::new(fresh),
                    store: None,
                    store_name: name,
                };
                Credentials::new(source, settings, token, expires_at)
            }
            adc::Found::Metadata(server) => {
                let settings = self.settings(None, None)?;
                let resp = server.token(&settings.http).await?;
                first_token(Source::Metadata(server), settings, resp)
            }
            #[cfg(feature = "service-account")]
            adc::Found::ServiceAccount(sa) => {
                let settings = self.settings(None, None)?;
                let resp = sa.token().await?;
                first_token(Source::ServiceAccount(sa), settings, resp)
            }
        }
    }
}

fn first_token(
    source: Source,
    settings: Settings,
    resp: crate::refresh::TokenResponse,
) -> Result<Credentials> {
    let mut record = StoredToken::default();
    crate::credentials::apply_token_response(&mut record, resp);
    let expires_at = record.expiry().unwrap_or_else(SystemTime::now);
    Credentials::new(
        source,
        settings,
        record.token.unwrap_or_default(),
        expires_at,
    )
}

fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidCertificate(format!("the PEM cannot be read: {e}")))?;
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

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|s| !s.is_empty())
}

fn api_key_from_env() -> Option<String> {
    ENV_API_KEYS.iter().find_map(|k| env_nonempty(k))
}

/// What the stored token allows.
enum Decision {
    Use(StoredToken),
    Refresh(StoredToken),
    Consent(ConsentReason),
}

impl CredentialLoader {
    fn decide(&self, stored: Option<StoredToken>) -> Decision {
        let Some(mut record) = stored else {
            return Decision::Consent(ConsentReason::NoToken);
        };
        if let Some(uri) = &self.token_uri {
            record.token_uri = Some(uri.clone());
        }
        let missing = record.missing_scopes(&self.scopes);
        if !missing.is_empty() {
            Decision::Consent(ConsentReason::ScopesNotCovered(missing))
        } else if record.is_usable() {
            Decision::Use(record)
        } else if record.refresh_token.is_some() {
            Decision::Refresh(record)
        } else {
            Decision::Consent(ConsentReason::NoRefreshToken)
        }
    }
}

fn credentials(
    record: StoredToken,
    store: Arc<dyn DynTokenStore>,
    settings: Settings,
) -> Result<Credentials> {
    let token = record.token.clone().unwrap_or_default();
    let expires_at = record.expiry().unwrap_or_else(SystemTime::now);
    let store_name = store.name();
    Credentials::new(
        Source::User {
            record: Mutex::new(record),
            store: Some(store),
            store_name,
        },
        settings,
        token,
        expires_at,
    )
}
