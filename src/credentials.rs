//! [`Credentials`]: the cached access token, refreshed early and once.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::error::{ConsentReason, Error, OAuthError, Result};
use crate::http::HttpClient;
use crate::refresh::{self, Retry};
use crate::store::DynTokenStore;
use crate::token::StoredToken;

/// How long before expiry a background refresh starts (google-auth's
/// `REFRESH_THRESHOLD`). Callers keep getting the old token meanwhile.
pub const REFRESH_WINDOW: Duration = Duration::from_secs(3 * 60 + 45);
/// A token this close to expiry is not handed out: callers wait for the
/// refresh instead, so a request never leaves with a token that dies in flight.
pub const EXPIRY_SKEW: Duration = Duration::from_secs(10);
/// Lifetime assumed when the token endpoint sends no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Background refreshes that failed are retried no sooner than this, doubling up to the max.
const BACKGROUND_BACKOFF: Duration = Duration::from_secs(1);
const BACKGROUND_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An OAuth access token. Cheap to clone; `Debug` never shows it.
#[derive(Clone)]
pub struct AccessToken(Arc<Published>);

struct Published {
    secret: SecretString,
    /// `Bearer <token>`, built once so requests do not format it again.
    header: HeaderValue,
    expires_at: SystemTime,
    refresh_at: SystemTime,
    usable_until: SystemTime,
}

impl AccessToken {
    /// The token itself, for an `Authorization: Bearer` header. Never log it.
    pub fn secret(&self) -> &str {
        self.0.secret.expose_secret()
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.0.expires_at
    }

    /// The ready-made `Authorization` header value (marked sensitive).
    pub fn header_value(&self) -> &HeaderValue {
        &self.0.header
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

impl Published {
    fn new(secret: SecretString, expires_at: SystemTime) -> Result<Self> {
        let mut header = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
            .map_err(|_| Error::TokenResponse {
                endpoint: "token endpoint".into(),
                status: 200,
                problem: "the access token contains characters not allowed in an HTTP header"
                    .into(),
            })?;
        header.set_sensitive(true);
        let now = SystemTime::now();
        let lifetime = expires_at.duration_since(now).unwrap_or_default();
        // Short-lived tokens (tests, other servers) refresh at half-life
        // rather than immediately.
        let window = REFRESH_WINDOW.min(lifetime / 2);
        Ok(Published {
            secret,
            header,
            expires_at,
            refresh_at: expires_at - window,
            usable_until: expires_at.checked_sub(EXPIRY_SKEW).unwrap_or(UNIX_EPOCH),
        })
    }
}

/// Where new access tokens come from.
pub(crate) enum Source {
    /// A user's refresh token (token.json, an `authorized_user` ADC file).
    User {
        record: Mutex<StoredToken>,
        store: Option<Arc<dyn DynTokenStore>>,
        store_name: String,
    },
}

pub(crate) struct Settings {
    pub(crate) quota_project: Option<String>,
    pub(crate) api_base: String,
    pub(crate) http: Arc<HttpClient>,
    pub(crate) retry: Retry,
}

/// Loaded credentials: an access token kept fresh, plus what is needed to
/// refresh it. Cheap to clone (an `Arc` inside); share one per program.
///
/// The token is refreshed in the background during the last
/// [`REFRESH_WINDOW`] (3 min 45 s) of its life, while callers keep getting
/// the still-valid one; once it is within [`EXPIRY_SKEW`] of expiry, callers
/// wait for a refresh. Concurrent callers always share a single refresh.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Published>,
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
        Ok(Credentials {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(Published::new(token, expires_at)?),
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
        let current = self.inner.current.load_full();
        let now = SystemTime::now();
        if now < current.refresh_at {
            return Ok(AccessToken(current));
        }
        if now < current.usable_until {
            self.inner.start_background_refresh(&current);
            return Ok(AccessToken(current));
        }
        self.inner.refresh_and_wait(current).await
    }

    /// Refreshes now unless a newer token than `stale` was already obtained
    /// (used after a 401: the server no longer accepts `stale`).
    pub(crate) async fn refresh_after_rejection(&self, stale: &AccessToken) -> Result<AccessToken> {
        self.inner.refresh_and_wait(stale.0.clone()).await
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
        let token = self.access_token().await?;
        let mut headers = http::HeaderMap::with_capacity(2);
        headers.insert(http::header::AUTHORIZATION, token.header_value().clone());
        if let Some(value) = self.quota_project_header() {
            headers.insert(crate::client::USER_PROJECT, value);
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
        }
    }

    pub(crate) fn quota_project_header(&self) -> Option<HeaderValue> {
        self.quota_project()
            .and_then(|p| HeaderValue::from_str(p).ok())
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

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Flight = watch::Receiver<Option<Result<()>>>;

impl Inner {
    fn start_background_refresh(self: &Arc<Self>, seen: &Arc<Published>) {
        if unix_ms(SystemTime::now()) < self.quiet_until_ms.load(Ordering::Relaxed) {
            return;
        }
        // Dropping the receiver is fine: the spawned refresh runs to the end.
        let _ = self.join_flight(seen);
    }

    async fn refresh_and_wait(self: &Arc<Self>, seen: Arc<Published>) -> Result<AccessToken> {
        let Some(mut flight) = self.join_flight(&seen) else {
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
    /// token already differs from `seen` (someone refreshed meanwhile).
    fn join_flight(self: &Arc<Self>, seen: &Arc<Published>) -> Option<Flight> {
        let mut slot = lock(&self.flight);
        if let Some(rx) = slot.as_ref() {
            if rx.borrow().is_none() {
                return Some(rx.clone());
            }
        }
        // Published before a flight completes, so this cannot miss one.
        if !Arc::ptr_eq(&self.current.load(), seen) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        *slot = Some(rx.clone());
        drop(slot);
        let inner = Arc::clone(self);
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
                        .store(unix_ms(SystemTime::now() + backoff), Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "token refresh failed");
                }
            }
            tx.send_replace(Some(result));
        });
        Some(rx)
    }

    #[tracing::instrument(skip_all, name = "gemini_oauth::refresh")]
    async fn refresh(&self) -> Result<()> {
        match &self.source {
            Source::User {
                record,
                store,
                store_name,
            } => {
                let snapshot = lock(record).clone();
                let fresh = refresh_user(&self.settings, snapshot, store_name).await?;
                let expires_at = fresh
                    .expiry()
                    .unwrap_or_else(|| SystemTime::now() + DEFAULT_LIFETIME);
                let token = fresh.token.clone().unwrap_or_default();
                self.current
                    .store(Arc::new(Published::new(token, expires_at)?));
                *lock(record) = fresh.clone();
                if let Some(store) = store {
                    // The new token is already usable in memory; a failed save only
                    // means the next process refreshes again.
                    if let Err(e) = store.save(&fresh).await {
                        tracing::warn!(error = %e, "could not save the refreshed token");
                    }
                }
                Ok(())
            }
        }
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
