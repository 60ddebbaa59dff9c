//! [`Credentials`]: the public face over the token cache (or an API key),
//! with what the authorized client needs to call Google APIs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;

use crate::access_token::{AccessToken, EXPIRY_SKEW};
use crate::error::{Error, Result};
use crate::headers::Auth;
use crate::http::HttpClient;
use crate::id_token::{IdToken, IdTokenProblem};
use crate::id_token_cache::IdTokens;
use crate::source::user::UserSource;
use crate::token::StoredToken;
use crate::token_cache::TokenCache;

/// Loaded credentials: an access token kept fresh (or an API key), plus
/// what is needed to refresh it and to call the API. Cheap to clone (an
/// `Arc` inside); share one per program.
///
/// The token is refreshed in the background during the last
/// [`REFRESH_WINDOW`](crate::REFRESH_WINDOW) (3 min 45 s) of its life, while callers keep getting
/// the still-valid one; once it is within [`EXPIRY_SKEW`](crate::EXPIRY_SKEW) of expiry, callers
/// wait for a refresh. Concurrent callers always share a single refresh.
///
/// Made by [`CredentialLoader`](crate::CredentialLoader) (a user's sign-in,
/// Application Default Credentials) or [`Credentials::from_api_key`].
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
    /// The token cache of `inner.kind`, held here too. Why: with thousands
    /// of live credentials `inner` is rarely in the CPU's cache, and the hot
    /// path then skips one cache miss by not reading it.
    cache: Option<TokenCache>,
}

struct Inner {
    kind: Kind,
    settings: Settings,
    /// ID tokens, one cache per audience.
    id_tokens: IdTokens,
    /// The entity tag of the headers last given to google-cloud-auth, and
    /// the token generation it stands for (0: an API key).
    #[cfg(feature = "google-cloud-auth")]
    entity_tag: std::sync::Mutex<Option<(u64, google_cloud_auth::credentials::EntityTag)>>,
}

/// What authenticates the requests.
pub(crate) enum Kind {
    /// OAuth access tokens from a token source; `user` when that source is
    /// a user's refresh token (for `stored_token` and `revoke`).
    Token {
        cache: TokenCache,
        user: Option<Arc<UserSource>>,
    },
    /// An API key (`x-goog-api-key`): no token, no expiry.
    ApiKey(HeaderValue),
}

/// What every kind of credentials carries for the calls it authorizes.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The universe domain of the credentials (and so of the API base).
    pub(crate) universe_domain: Cow<'static, str>,
    pub(crate) quota_project: Option<String>,
    /// `x-goog-user-project`, built once.
    pub(crate) quota_header: Option<HeaderValue>,
    pub(crate) api_base: Cow<'static, str>,
    pub(crate) http: Arc<HttpClient>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credentials");
        match &self.inner.kind {
            Kind::Token { cache, .. } => d
                .field("source", &cache.describe())
                .field("expires_at", &cache.expires_at()),
            Kind::ApiKey(_) => d.field("source", &"an API key"),
        };
        d.field("quota_project", &self.inner.settings.quota_project)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub(crate) fn new(kind: Kind, settings: Settings) -> Self {
        let cache = match &kind {
            Kind::Token { cache, .. } => Some(cache.clone()),
            Kind::ApiKey(_) => None,
        };
        Credentials {
            cache,
            inner: Arc::new(Inner {
                kind,
                settings,
                id_tokens: IdTokens::default(),
                #[cfg(feature = "google-cloud-auth")]
                entity_tag: std::sync::Mutex::new(None),
            }),
        }
    }

    /// A valid access token: the cached one while it is fresh (no I/O, no
    /// lock), otherwise the result of the one shared refresh.
    ///
    /// # Errors
    /// [`Error::NoAccessToken`] for API-key credentials; the refresh's error
    /// when the token has expired and could not be refreshed:
    /// [`Error::InvalidGrant`], [`Error::Transport`], ….
    pub async fn access_token(&self) -> Result<AccessToken> {
        match &self.cache {
            Some(cache) => match cache.fresh() {
                Some(token) => Ok(token),
                None => cache.token_slow().await,
            },
            None => Err(Error::NoAccessToken),
        }
    }

    /// A new access token now, even if the cached one is still valid: for
    /// callers with their own HTTP client whose request was answered `401`
    /// (the token was revoked or rotated elsewhere). The same mechanism as
    /// the authorized client's retry after a `401`: concurrent callers share
    /// one refresh, and a caller that arrives after a refresh completed gets
    /// its token without another one. While refreshes back off after a
    /// failure (1 s doubling to 30 s), the last failure is returned at once.
    ///
    /// ```no_run
    /// # async fn f(creds: gemini_oauth::Credentials) -> gemini_oauth::Result<()> {
    /// let token = creds.force_refresh().await?;
    /// # let _ = token; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::CannotRefresh`] for API keys and fixed tokens
    /// ([`Credentials::from_access_token`]); [`Error::Revoked`] after a
    /// sign-out; otherwise the refresh's errors, as for
    /// [`Credentials::access_token`].
    pub async fn force_refresh(&self) -> Result<AccessToken> {
        let cache = match &self.inner.kind {
            Kind::Token { cache, .. } => cache,
            Kind::ApiKey(_) => {
                return Err(Error::CannotRefresh {
                    source_name: self.source(),
                    reason: "an API key has no token to refresh; it is sent as it is, as \
                             x-goog-api-key",
                });
            }
        };
        let current = match cache.fresh() {
            Some(token) => token,
            // Expired: the shared refresh this starts (or joins) is the new token.
            None if SystemTime::now()
                .checked_add(EXPIRY_SKEW)
                .is_none_or(|soon| cache.expires_at() <= soon) =>
            {
                return cache.token_slow().await;
            }
            None => cache.token_slow().await?,
        };
        cache.refresh_after(&current).await
    }

    /// A Google-signed ID token for `audience` (a JWT whose `aud` claim it
    /// is), for services that take ID tokens instead of access tokens: Cloud
    /// Run, Cloud Functions, IAP, a Gemini agent's own tools behind them.
    /// Cached per audience and refreshed once, as access tokens are.
    ///
    /// Where it comes from, as google-auth's `fetch_id_token` and
    /// `IDTokenCredentials` get it:
    /// - a service-account key: the JWT-bearer grant with `target_audience`;
    /// - the metadata server: `…/service-accounts/default/identity?audience=…&format=full`;
    /// - an impersonated service account: IAM `generateIdToken` with
    ///   `includeEmail`;
    /// - a user's sign-in that included [`scopes::OPENID`](crate::scopes::OPENID)
    ///   (gcloud's ADC login does): the `id_token` of each refresh, whose
    ///   audience is the OAuth client id, the only audience it serves.
    ///
    /// ```no_run
    /// # async fn f(creds: gemini_oauth::Credentials) -> gemini_oauth::Result<()> {
    /// let id = creds.id_token("https://my-tool-abc123-uc.a.run.app").await?;
    /// // request.header(http::header::AUTHORIZATION, id.header_value())
    /// # let _ = id; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::IdToken`] when these credentials cannot get one for this
    /// audience ([`IdTokenProblem`] says why and what to use instead);
    /// [`Error::Revoked`] after a sign-out; otherwise the endpoint's errors,
    /// as for [`Credentials::access_token`].
    pub async fn id_token(&self, audience: &str) -> Result<IdToken> {
        match &self.inner.kind {
            Kind::Token { cache, user } => {
                self.inner
                    .id_tokens
                    .get(audience, cache, user.as_ref())
                    .await
            }
            Kind::ApiKey(_) => Err(Error::IdToken {
                source_name: self.source(),
                problem: IdTokenProblem::NotSupported,
            }),
        }
    }

    /// What to authenticate the next request with.
    pub(crate) async fn auth(&self) -> Result<Auth> {
        match &self.inner.kind {
            Kind::Token { .. } => Ok(Auth::Bearer(self.access_token().await?)),
            Kind::ApiKey(key) => Ok(Auth::ApiKey(key.clone())),
        }
    }

    /// The key of API-key credentials (no I/O); `None` for token credentials.
    #[cfg(feature = "genai")]
    pub(crate) fn api_key(&self) -> Option<&HeaderValue> {
        match &self.inner.kind {
            Kind::ApiKey(key) => Some(key),
            Kind::Token { .. } => None,
        }
    }

    /// A new token unless one newer than `stale` was already obtained (after
    /// a 401: the server no longer accepts `stale`). `None` for API keys,
    /// which cannot be refreshed.
    pub(crate) async fn refresh_after(&self, stale: &Auth) -> Option<Result<Auth>> {
        match (&self.inner.kind, stale.bearer()) {
            (Kind::Token { cache, .. }, Some(token)) => {
                Some(cache.refresh_after(token).await.map(Auth::Bearer))
            }
            _ => None,
        }
    }

    /// The headers to add to a Google API request: `Authorization: Bearer …`
    /// (or `x-goog-api-key` for an API key) and, when a quota project is set,
    /// `x-goog-user-project`. For users of other HTTP clients (reqwest, ureq, …).
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
    /// As [`Credentials::access_token`], except that API keys succeed.
    pub async fn headers(&self) -> Result<http::HeaderMap> {
        let mut headers = http::HeaderMap::with_capacity(2);
        self.auth()
            .await?
            .apply(&mut headers, self.quota_project_header());
        Ok(headers)
    }

    /// The project billed for API calls (`x-goog-user-project`), if any.
    #[must_use]
    pub fn quota_project(&self) -> Option<&str> {
        self.inner.settings.quota_project.as_deref()
    }

    /// The universe domain these credentials belong to: the ADC file's
    /// `universe_domain` or the metadata server's, else `googleapis.com`
    /// (as google-auth's `credentials.universe_domain`).
    #[must_use]
    pub fn universe_domain(&self) -> &str {
        &self.inner.settings.universe_domain
    }

    /// The scopes the stored token was granted, when known.
    #[must_use]
    pub fn granted_scopes(&self) -> Option<Vec<String>> {
        self.stored_token().and_then(|r| r.scopes)
    }

    /// The user credentials behind these credentials (what a token store
    /// holds), or `None` for other kinds and after [`revoke`](Self::revoke).
    /// Holds secrets: never log it.
    #[must_use]
    pub fn stored_token(&self) -> Option<StoredToken> {
        self.user().and_then(UserSource::signed_in_record)
    }

    /// Where the credentials came from: a token file path, a service
    /// account, the metadata server, or an API key.
    #[must_use]
    pub fn source(&self) -> String {
        match &self.inner.kind {
            Kind::Token { cache, .. } => cache.describe(),
            Kind::ApiKey(_) => "an API key".to_owned(),
        }
    }

    /// Signs out: revokes the refresh token (or the access token when there
    /// is none) at Google's revocation endpoint, as `gcloud auth
    /// application-default revoke` does, then clears the token store (under
    /// its lock). A token the server no longer knows counts as revoked. An
    /// `external_account_authorized_user` file's refresh token is revoked at
    /// its `revoke_url` (the file is left as it is).
    ///
    /// Afterwards these credentials (and their clones) hold no token:
    /// `access_token()` and `headers()` are [`Error::Revoked`],
    /// `stored_token()` is `None`, and a refresh that was in flight is
    /// neither used nor saved: publishing a token and signing out take one
    /// lock, and a caller woken by a refresh checks again under it.
    ///
    /// Each thread that used the credentials keeps a private copy of the
    /// token (the lock-free hot path). This thread's copy is dropped here;
    /// another thread's when it next calls these credentials, or when a
    /// later credential takes its slot, or when the thread exits. Until then
    /// it stays in that thread's memory (never served: it no longer matches
    /// the current generation). The same holds for credentials that are
    /// dropped without `revoke()`.
    ///
    /// # Errors
    /// [`Error::NotUserCredentials`] for credentials other than a user's,
    /// the endpoint's errors (the credentials then stay usable), and the
    /// store's.
    pub async fn revoke(&self) -> Result<()> {
        match &self.inner.kind {
            Kind::Token {
                cache,
                user: Some(user),
            } => {
                user.revoke(|| {
                    self.inner.id_tokens.close();
                    cache.close()
                })
                .await
            }
            Kind::Token { cache, user: None } => match cache.revoke_source() {
                Some(revoking) => {
                    revoking.await?;
                    self.inner.id_tokens.close();
                    cache.close()
                }
                None => Err(Error::NotUserCredentials {
                    what: "revoking",
                    source_name: self.source(),
                }),
            },
            Kind::ApiKey(_) => Err(Error::NotUserCredentials {
                what: "revoking",
                source_name: self.source(),
            }),
        }
    }

    /// The token cache, for credentials that get OAuth tokens (another
    /// source can draw on it: impersonation).
    pub(crate) fn token_cache(&self) -> Option<&TokenCache> {
        match &self.inner.kind {
            Kind::Token { cache, .. } => Some(cache),
            Kind::ApiKey(_) => None,
        }
    }

    fn user(&self) -> Option<&UserSource> {
        match &self.inner.kind {
            Kind::Token { user, .. } => user.as_deref(),
            Kind::ApiKey(_) => None,
        }
    }

    pub(crate) fn quota_project_header(&self) -> Option<&HeaderValue> {
        self.inner.settings.quota_header.as_ref()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    #[cfg(feature = "google-cloud-auth")]
    pub(crate) fn entity_tag_slot(
        &self,
    ) -> &std::sync::Mutex<Option<(u64, google_cloud_auth::credentials::EntityTag)>> {
        &self.inner.entity_tag
    }
}

/// Every future these credentials return can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(creds: &Credentials) {
    fn send<T: Send>(_: &T) {}
    send(&creds.access_token());
    send(&creds.headers());
    send(&creds.revoke());
    send(&creds.force_refresh());
    send(&creds.id_token("aud"));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;
    use crate::token_cache::{BoxFuture, Fetched, TokenSource};

    /// Hands out `token-N`, living an hour, and counts the calls.
    struct Counting(AtomicUsize);

    impl TokenSource for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(std::future::ready(Ok(Fetched {
                token: SecretString::from(format!("token-{n}")),
                expires_at: SystemTime::now() + Duration::from_secs(3600),
                refresh_token_rotated: false,
            })))
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    fn creds(first_expires_at: SystemTime) -> (Credentials, Arc<Counting>) {
        let source = Arc::new(Counting(AtomicUsize::new(0)));
        let first = Fetched {
            token: SecretString::from("token-0"),
            expires_at: first_expires_at,
            refresh_token_rotated: false,
        };
        let cache = TokenCache::new(
            Arc::clone(&source) as Arc<dyn TokenSource>,
            first,
            crate::token_cache::CacheOptions::default(),
        )
        .unwrap();
        let settings = Settings {
            universe_domain: crate::endpoints::DEFAULT_UNIVERSE_DOMAIN.into(),
            quota_project: None,
            quota_header: None,
            api_base: crate::endpoints::GEMINI_API_BASE.into(),
            http: Arc::new(HttpClient::new(
                Duration::from_secs(1),
                Duration::from_secs(1),
            )),
        };
        (
            Credentials::new(Kind::Token { cache, user: None }, settings),
            source,
        )
    }

    #[tokio::test]
    async fn force_refresh_of_an_expired_token_makes_one_refresh_not_two() {
        let (creds, source) = creds(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(creds.force_refresh().await.unwrap().secret(), "token-1");
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
        // Now fresh: forcing refreshes anyway, once.
        assert_eq!(creds.force_refresh().await.unwrap().secret(), "token-2");
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
        assert_eq!(creds.access_token().await.unwrap().secret(), "token-2");
    }

    #[tokio::test]
    async fn force_refresh_of_a_fresh_token_on_a_warm_thread_refreshes() {
        let (creds, source) = creds(SystemTime::now() + Duration::from_secs(3600));
        // Warm this thread's copy, so the hot path is the one force_refresh reads.
        assert_eq!(creds.access_token().await.unwrap().secret(), "token-0");
        assert_eq!(creds.access_token().await.unwrap().secret(), "token-0");
        assert_eq!(creds.force_refresh().await.unwrap().secret(), "token-1");
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
    }
}
