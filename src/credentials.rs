//! [`Credentials`]: the cached access token, refreshed early and once.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::SecretString;
use tokio::sync::watch;

use crate::access_token::{self, AccessToken, Published};
use crate::clock::now_ms;
use crate::error::{ConsentReason, Error, OAuthError, Result};
use crate::http::HttpClient;
use crate::refresh::{self, Retry};
use crate::store::DynTokenStore;
use crate::token::StoredToken;

/// How long a refresh waits for another process's refresh of the same store.
const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(60);
/// Lifetime assumed when the token endpoint sends no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Background refreshes that failed are retried no sooner than this, doubling up to the max.
const BACKGROUND_BACKOFF: Duration = Duration::from_secs(1);
const BACKGROUND_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where new access tokens come from.
#[allow(clippy::large_enum_variant)] // one per Credentials, behind an Arc
pub(crate) enum Source {
    /// A user's refresh token (token.json, an `authorized_user` ADC file).
    User {
        record: Mutex<StoredToken>,
        store: Option<Arc<dyn DynTokenStore>>,
        store_name: String,
    },
    /// The GCE metadata server's default service account.
    Metadata(crate::metadata::MetadataServer),
    /// A service-account key (JWT bearer grant, signed by yup-oauth2).
    #[cfg(feature = "service-account")]
    ServiceAccount(Box<crate::service_account::ServiceAccount>),
    /// An API key: no token at all, `x-goog-api-key` instead.
    ApiKey,
}

pub(crate) struct Settings {
    pub(crate) quota_project: Option<String>,
    /// `x-goog-user-project`, built once.
    pub(crate) quota_header: Option<HeaderValue>,
    pub(crate) api_base: String,
    /// `x-goog-api-key`, for API-key credentials.
    pub(crate) api_key: Option<HeaderValue>,
    pub(crate) revoke_uri: String,
    pub(crate) http: Arc<HttpClient>,
    pub(crate) retry: Retry,
}

/// Loaded credentials: an access token kept fresh, plus what is needed to
/// refresh it. Cheap to clone (an `Arc` inside); share one per program.
///
/// The token is refreshed in the background during the last
/// [`REFRESH_WINDOW`](crate::REFRESH_WINDOW) (3 min 45 s) of its life, while callers keep getting
/// the still-valid one; once it is within [`EXPIRY_SKEW`](crate::EXPIRY_SKEW) of expiry, callers
/// wait for a refresh. Concurrent callers always share a single refresh.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Published>,
    /// The generation of `current`, published after it.
    generation: AtomicU64,
    refreshing: AtomicBool,
    source: Source,
    settings: Settings,
    flight: Mutex<Option<watch::Receiver<Option<Result<()>>>>>,
    /// Unix millis before which no background refresh starts (after failures).
    quiet_until_ms: AtomicU64,
    failures: AtomicU64,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("expires_at", &self.inner.current.load().expires_at)
            .field("quota_project", &self.inner.settings.quota_project)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<Credentials>();
    assert_send_sync_clone::<AccessToken>();
};

impl Credentials {
    /// Credentials from a stored record that holds a current access token.
    pub(crate) fn new(
        source: Source,
        settings: Settings,
        token: SecretString,
        expires_at: SystemTime,
    ) -> Result<Self> {
        let published = Published::new(token, expires_at, None)?;
        Ok(Credentials {
            inner: Arc::new(Inner {
                generation: AtomicU64::new(published.generation),
                current: ArcSwap::from_pointee(published),
                refreshing: AtomicBool::new(false),
                source,
                settings,
                flight: Mutex::new(None),
                quiet_until_ms: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        })
    }

    /// A valid access token: the cached one while it is fresh (no I/O, no
    /// lock), otherwise the result of the one shared refresh.
    ///
    /// # Errors
    /// The refresh's error when the token has expired and could not be
    /// refreshed: [`Error::InvalidGrant`], [`Error::Transport`], ….
    pub async fn access_token(&self) -> Result<AccessToken> {
        if self.inner.settings.api_key.is_some() {
            return Err(Error::NoAccessToken);
        }
        match self.inner.local_fresh() {
            Some(token) => Ok(AccessToken(token)),
            None => self.inner.access_token_slow().await,
        }
    }

    /// Refreshes now unless a newer token than `stale` was already obtained
    /// (used after a 401: the server no longer accepts `stale`).
    pub(crate) async fn refresh_after_rejection(&self, stale: &AccessToken) -> Result<AccessToken> {
        self.inner.refresh_and_wait(stale.0.generation).await
    }

    /// The headers to add to a Google API request: `Authorization: Bearer …`
    /// and, when a quota project is set, `x-goog-user-project`. For users of
    /// other HTTP clients (reqwest, ureq, …).
    ///
    /// ```no_run
    /// # async fn f(creds: gemini_oauth::Credentials) -> gemini_oauth::Result<()> {
    /// for (name, value) in creds.headers().await?.iter() {
    ///     // request = request.header(name, value);
    /// #   let _ = (name, value);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Credentials::access_token`].
    pub async fn headers(&self) -> Result<http::HeaderMap> {
        let mut headers = http::HeaderMap::with_capacity(2);
        match &self.inner.settings.api_key {
            Some(key) => {
                headers.insert(crate::client::API_KEY, key.clone());
            }
            None => {
                let token = self.access_token().await?;
                headers.insert(http::header::AUTHORIZATION, token.header_value().clone());
            }
        }
        if let Some(value) = self.quota_project_header() {
            headers.insert(crate::client::USER_PROJECT, value.clone());
        }
        Ok(headers)
    }

    /// The project billed for API calls (`x-goog-user-project`), if any.
    pub fn quota_project(&self) -> Option<&str> {
        self.inner.settings.quota_project.as_deref()
    }

    /// The scopes the stored token was granted, when known.
    pub fn granted_scopes(&self) -> Option<Vec<String>> {
        match &self.inner.source {
            Source::User { record, .. } => lock(record).scopes.clone(),
            _ => None,
        }
    }

    /// The user credentials behind these credentials (what a token store
    /// holds), or `None` for other kinds. Holds secrets: never log it.
    pub fn stored_token(&self) -> Option<StoredToken> {
        match &self.inner.source {
            Source::User { record, .. } => Some(lock(record).clone()),
            _ => None,
        }
    }

    /// Where the credentials came from: a token file path, a service
    /// account, the metadata server, or an API key.
    pub fn source(&self) -> String {
        match &self.inner.source {
            Source::User { store_name, .. } => store_name.clone(),
            Source::Metadata(m) => m.describe(),
            #[cfg(feature = "service-account")]
            Source::ServiceAccount(sa) => sa.describe(),
            Source::ApiKey => "an API key".to_owned(),
        }
    }

    /// Signs out: revokes the refresh token (or the access token when there
    /// is none) at Google's revocation endpoint, as `gcloud auth
    /// application-default revoke` does, then clears the token store.
    /// A token the server no longer knows counts as revoked.
    ///
    /// # Errors
    /// [`Error::NoAccessToken`] for credentials other than user credentials,
    /// the endpoint's errors, and the store's.
    pub async fn revoke(&self) -> Result<()> {
        let Source::User { record, store, .. } = &self.inner.source else {
            return Err(Error::NoAccessToken);
        };
        let token = {
            let r = lock(record);
            r.refresh_token.clone().or_else(|| r.token.clone())
        };
        if let Some(token) = token {
            let s = &self.inner.settings;
            refresh::revoke(&s.http, s.retry, &s.revoke_uri, &token).await?;
        }
        if let Some(store) = store {
            store.clear().await?;
        }
        tracing::info!("credentials revoked");
        Ok(())
    }

    pub(crate) fn quota_project_header(&self) -> Option<&HeaderValue> {
        self.inner.settings.quota_header.as_ref()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// An HTTP client that adds this credential's headers to every request.
    pub fn authorized_client(&self) -> crate::AuthorizedClient {
        crate::AuthorizedClient::new(self.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Flight = watch::Receiver<Option<Result<()>>>;

/// Ends a flight on every path: with its result, or, if the refresh task
/// panicked or was cancelled, with an error, so waiters never hang and the
/// next caller starts a new refresh.
struct FlightGuard {
    inner: Arc<Inner>,
    tx: Option<watch::Sender<Option<Result<()>>>>,
}

impl FlightGuard {
    fn finish(&mut self, result: Result<()>) {
        self.inner.refreshing.store(false, Ordering::Relaxed);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(result));
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.finish(Err(Error::transport(
                "token refresh",
                "the refresh task stopped unexpectedly",
            )));
        }
    }
}

impl Inner {
    /// The hot path: this thread's copy of the current token, if fresh.
    #[inline]
    fn local_fresh(&self) -> Option<Arc<Published>> {
        access_token::local_fresh(self.generation.load(Ordering::Acquire))
    }

    async fn access_token_slow(self: &Arc<Self>) -> Result<AccessToken> {
        let current = self.current.load_full();
        let now = now_ms();
        if now < current.refresh_at_ms {
            return Ok(AccessToken(access_token::cache_locally(&current)));
        }
        if now < current.usable_until_ms {
            self.start_background_refresh(current.generation);
            return Ok(AccessToken(current));
        }
        self.refresh_and_wait(current.generation).await
    }

    fn start_background_refresh(self: &Arc<Self>, seen: u64) {
        if self.refreshing.load(Ordering::Relaxed)
            || now_ms() < self.quiet_until_ms.load(Ordering::Relaxed)
        {
            return;
        }
        // Dropping the receiver is fine: the spawned refresh runs to the end.
        let _ = self.join_flight(seen);
    }

    async fn refresh_and_wait(self: &Arc<Self>, seen: u64) -> Result<AccessToken> {
        let Some(mut flight) = self.join_flight(seen) else {
            return Ok(AccessToken(self.current.load_full()));
        };
        let outcome = flight
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .unwrap_or_else(|_| {
                Some(Err(Error::transport(
                    "token refresh",
                    "the refresh task stopped",
                )))
            });
        match outcome {
            Some(Err(e)) => Err(e),
            _ => Ok(AccessToken(self.current.load_full())),
        }
    }

    /// Joins the refresh in flight or starts one. `None` when the published
    /// token is already newer than generation `seen`.
    fn join_flight(self: &Arc<Self>, seen: u64) -> Option<Flight> {
        let mut slot = lock(&self.flight);
        // In flight: no outcome yet and its task still alive.
        if let Some(rx) = slot.as_ref()
            && rx.borrow().is_none()
            && rx.has_changed().is_ok()
        {
            return Some(rx.clone());
        }
        // Published before a flight completes, so this cannot miss one.
        if self.generation.load(Ordering::Acquire) != seen {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        *slot = Some(rx.clone());
        self.refreshing.store(true, Ordering::Relaxed);
        drop(slot);
        let inner = Arc::clone(self);
        let mut guard = FlightGuard {
            inner: Arc::clone(self),
            tx: Some(tx),
        };
        tokio::spawn(async move {
            let result = inner.refresh().await;
            match &result {
                Ok(()) => {
                    inner.failures.store(0, Ordering::Relaxed);
                    inner.quiet_until_ms.store(0, Ordering::Relaxed);
                }
                Err(e) => {
                    let n = inner.failures.fetch_add(1, Ordering::Relaxed).min(16) as u32;
                    let backoff =
                        (BACKGROUND_BACKOFF * 2u32.saturating_pow(n)).min(BACKGROUND_BACKOFF_MAX);
                    inner
                        .quiet_until_ms
                        .store(now_ms() + backoff.as_millis() as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "token refresh failed");
                }
            }
            guard.finish(result);
        });
        Some(rx)
    }

    fn publish(&self, record: &StoredToken) -> Result<()> {
        let expires_at = record
            .expiry()
            .unwrap_or_else(|| SystemTime::now() + DEFAULT_LIFETIME);
        let lifetime = expires_at.duration_since(SystemTime::now()).ok();
        let token = record.token.clone().unwrap_or_default();
        let published = Published::new(token, expires_at, lifetime)?;
        let generation = published.generation;
        self.current.store(Arc::new(published));
        self.generation.store(generation, Ordering::Release);
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "gemini_oauth::refresh")]
    async fn refresh(&self) -> Result<()> {
        match &self.source {
            Source::User {
                record,
                store,
                store_name,
            } => {
                // Other processes sharing the store refresh under the same lock.
                let held = match store {
                    Some(store) => store.lock(REFRESH_LOCK_WAIT).await?,
                    None => None,
                };
                let mut snapshot = lock(record).clone();
                if let (Some(_), Some(store)) = (&held, store)
                    && let Some(latest) = store.load().await?
                {
                    let newer = latest.expiry() > snapshot.expiry();
                    let token_uri = snapshot.token_uri.take();
                    snapshot = latest;
                    // Keep an explicit override (the loader's token_uri).
                    snapshot.token_uri = token_uri.or(snapshot.token_uri.take());
                    if newer && snapshot.is_usable() {
                        tracing::debug!("another process refreshed the token");
                        self.publish(&snapshot)?;
                        *lock(record) = snapshot;
                        return Ok(());
                    }
                }
                let fresh = refresh_user(&self.settings, snapshot, store_name).await?;
                self.publish(&fresh)?;
                *lock(record) = fresh.clone();
                if let Some(store) = store {
                    // The new token is already usable in memory; a failed save only
                    // means the next process refreshes again.
                    if let Err(e) = store.save(&fresh).await {
                        tracing::warn!(error = %e, "could not save the refreshed token");
                    }
                }
                drop(held);
                Ok(())
            }
            Source::Metadata(server) => {
                let resp = server.token(&self.settings.http).await?;
                self.publish_response(resp)
            }
            #[cfg(feature = "service-account")]
            Source::ServiceAccount(sa) => {
                let resp = sa.token().await?;
                self.publish_response(resp)
            }
            Source::ApiKey => Ok(()),
        }
    }

    fn publish_response(&self, resp: refresh::TokenResponse) -> Result<()> {
        let mut record = StoredToken::default();
        apply_token_response(&mut record, resp);
        self.publish(&record)
    }
}

/// Runs the refresh_token grant for `record` and returns the updated record
/// (new token and expiry, granted scopes, rotated refresh token).
pub(crate) async fn refresh_user(
    settings: &Settings,
    mut record: StoredToken,
    store_name: &str,
) -> Result<StoredToken> {
    let refresh_token = record
        .refresh_token
        .clone()
        .ok_or_else(|| Error::ConsentRequired {
            reason: ConsentReason::NoRefreshToken,
            store: store_name.to_owned(),
        })?;
    let (Some(client_id), Some(client_secret)) =
        (record.client_id.clone(), record.client_secret.clone())
    else {
        return Err(Error::TokenFile {
            path: store_name.into(),
            problem: crate::error::TokenFileProblem::MissingField(if record.client_id.is_none() {
                "client_id"
            } else {
                "client_secret"
            }),
        });
    };
    let token_uri = record
        .token_uri
        .clone()
        .unwrap_or_else(|| crate::secret::GOOGLE_TOKEN_URI.to_owned());
    let client = refresh::Client {
        id: &client_id,
        secret: &client_secret,
    };
    let resp = refresh::refresh(
        &settings.http,
        settings.retry,
        &token_uri,
        &client,
        &refresh_token,
    )
    .await
    .map_err(|e| match e {
        Error::OAuth {
            error: OAuthError::InvalidGrant,
            description,
            ..
        } => Error::InvalidGrant {
            description,
            store: store_name.to_owned(),
        },
        other => other,
    })?;
    apply_token_response(&mut record, resp);
    tracing::debug!("access token refreshed");
    Ok(record)
}

pub(crate) fn apply_token_response(record: &mut StoredToken, resp: refresh::TokenResponse) {
    record.token = Some(resp.access_token);
    record.expire_in(resp.expires_in.unwrap_or(DEFAULT_LIFETIME.as_secs()));
    if let Some(scope) = resp.scope {
        record.scopes = Some(scope.split_whitespace().map(str::to_owned).collect());
    }
    if let Some(rotated) = resp.refresh_token {
        record.refresh_token = Some(rotated);
    }
}
