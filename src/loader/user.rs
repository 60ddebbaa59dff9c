//! A user's sign-in, as `load_creds.py` does it: the stored token, else a
//! refresh, else the consent flow.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::CredentialLoader;
use super::kind::{SecretSource, UserFlow};
use crate::client_secret::ClientSecret;
use crate::consent::{self, Consent, FlowOptions};
use crate::consent_reason::ConsentReason;
use crate::credentials::{Credentials, Kind, Settings};
use crate::error::Result;
use crate::source::fetched_from_record;
use crate::source::user::{Decision, Outcome, UserSource, decide};
use crate::store::{DynTokenStore, FileTokenStore, TokenStore};
use crate::token::StoredToken;
use crate::token_cache::{CacheOptions, Fetched, TokenCache, TokenSource};
use crate::token_endpoint::Retry;

/// How much longer than the consent timeout a process waits for another
/// one's refresh or sign-in.
const LOCK_MARGIN: Duration = Duration::from_secs(60);

impl Default for CredentialLoader<UserFlow> {
    fn default() -> Self {
        Self::new()
    }
}

impl CredentialLoader<UserFlow> {
    /// The quickstart's defaults: `./client_secret.json`, `./token.json`, the
    /// `generative-language.retriever` scope, and the browser consent flow.
    pub fn new() -> Self {
        Self::of_kind(UserFlow {
            secret: SecretSource::File(PathBuf::from("client_secret.json")),
            store: None,
            auth_uri: None,
            flow: FlowOptions::default(),
        })
    }

    /// Where the OAuth client comes from (read only when consent is needed).
    pub fn client_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.kind.secret = SecretSource::File(path.into());
        self
    }

    /// An OAuth client given in code instead of a file.
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.kind.secret = SecretSource::Given(Box::new(secret));
        self
    }

    /// Where tokens are kept (default `FileTokenStore::new("token.json")`).
    pub fn token_store(mut self, store: impl TokenStore) -> Self {
        self.kind.store = Some(Arc::new(store));
        self
    }

    /// Overrides the authorization endpoint of the client secret.
    pub fn auth_uri(mut self, url: impl Into<String>) -> Self {
        self.kind.auth_uri = Some(url.into());
        self
    }

    /// How consent is obtained when nothing cached can serve (default
    /// [`Consent::OpenBrowser`]); [`Consent::Never`] for servers and CI.
    pub fn consent(mut self, consent: Consent) -> Self {
        self.kind.flow.consent = consent;
        self
    }

    /// How long the consent flow waits for the user (default 5 minutes).
    pub fn consent_timeout(mut self, timeout: Duration) -> Self {
        self.kind.flow.timeout = timeout;
        self
    }

    /// Host and port of the loopback listener (default `127.0.0.1:0`, an
    /// ephemeral port). It must be a loopback address: `load()` refuses
    /// others with [`Error::ConsentFlow`](crate::Error::ConsentFlow), since
    /// the redirect carries the authorization code.
    pub fn redirect_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.kind.flow.bind = addr;
        self
    }

    /// Where the consent URL goes instead of stderr (for GUIs, chat bots and
    /// tests). Called in every consent mode; with [`Consent::OpenBrowser`]
    /// the browser is opened too.
    pub fn on_consent_url(mut self, callback: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.kind.flow.on_url = Some(Arc::new(callback));
        self
    }

    /// Loads, refreshes or obtains credentials, and saves what changed.
    ///
    /// A refreshed token that cannot be saved is still used (a warning is
    /// logged once); a sign-in that cannot be saved is an error.
    ///
    /// # Errors
    /// Store errors ([`Error::TokenFile`](crate::Error::TokenFile),
    /// [`Error::Io`](crate::Error::Io), [`Error::Store`](crate::Error::Store))
    /// are never taken for "no token". Transient refresh errors are returned,
    /// not answered with a consent. With [`Consent::Never`], a needed consent
    /// is [`Error::ConsentRequired`](crate::Error::ConsentRequired) (or
    /// [`Error::InvalidGrant`](crate::Error::InvalidGrant)); otherwise the
    /// consent flow's errors
    /// ([`Error::AuthorizationDenied`](crate::Error::AuthorizationDenied),
    /// [`Error::Timeout`](crate::Error::Timeout), …) and
    /// [`Error::ClientSecretNotFound`](crate::Error::ClientSecretNotFound)
    /// when there is no client secret file.
    /// With [`impersonate_service_account`](Self::impersonate_service_account),
    /// also the IAM Credentials API's
    /// ([`Error::Impersonation`](crate::Error::Impersonation)).
    #[tracing::instrument(skip_all, name = "gemini_oauth::load")]
    pub async fn load(self) -> Result<Credentials> {
        let common = self.common.clone();
        let creds = self.for_impersonation_source().load_user().await?;
        Self::impersonate_if_asked(&common, creds).await
    }

    /// The stored token's credentials as they are: no refresh, no scope
    /// check, no consent (`None` when the store holds no token). For
    /// revoking a token when the token endpoint cannot refresh it.
    pub(crate) async fn load_stored(self) -> Result<Option<Credentials>> {
        let store: Arc<dyn DynTokenStore> = match &self.kind.store {
            Some(s) => Arc::clone(s),
            None => Arc::new(FileTokenStore::new("token.json")),
        };
        let name = store.name();
        let Some(record) = store.load().await? else {
            return Ok(None);
        };
        let file_quota = record.quota_project_id().map(str::to_owned);
        let settings = self.settings(file_quota)?;
        let endpoints = self.endpoints(&settings.http);
        let user = Arc::new(
            UserSource::new(Some(store), name, record, endpoints)
                .requested_scopes(self.common.scopes()),
        );
        user_credentials(user, settings, &self.common.cache).map(Some)
    }

    async fn load_user(self) -> Result<Credentials> {
        let store: Arc<dyn DynTokenStore> = match &self.kind.store {
            Some(s) => Arc::clone(s),
            None => Arc::new(FileTokenStore::new("token.json")),
        };
        let name = store.name();
        let stored = store.load().await?;
        let file_quota = stored
            .as_ref()
            .and_then(|s| s.quota_project_id().map(str::to_owned));
        let settings = self.settings(file_quota)?;
        let endpoints = self.endpoints(&settings.http);
        let scopes = self.common.scopes();
        if decide(stored.as_ref(), &scopes, None) == Decision::Use
            && let Some(record) = stored
        {
            tracing::debug!(store = %name, "using the cached token");
            let user = Arc::new(
                UserSource::new(Some(store), name, record, endpoints).requested_scopes(scopes),
            );
            return user_credentials(user, settings, &self.common.cache);
        }
        let user = Arc::new(
            UserSource::new(
                Some(store),
                name,
                stored.clone().unwrap_or_default(),
                endpoints,
            )
            .requested_scopes(scopes.clone()),
        );
        // Work to do, under the store's lock: another process may have
        // refreshed or signed in while we waited for it.
        let wait = self.kind.flow.timeout.saturating_add(LOCK_MARGIN);
        // Why boxed: the refresh and the consent flow are large futures, and
        // the common path (a cached token) should not carry and move them.
        let (outcome, _lock) = Box::pin(user.resolve(stored, &scopes, None, wait)).await?;
        let reason = match outcome {
            Outcome::Token(_) => return user_credentials(user, settings, &self.common.cache),
            Outcome::Refreshed { rotated, .. } => {
                return refreshed_credentials(user, settings, &self.common.cache, rotated);
            }
            Outcome::Consent(reason) => reason,
        };
        if self.kind.flow.consent == Consent::Never {
            return Err(user.consent_error(reason));
        }
        tracing::info!(%reason, "starting the consent flow");
        let cache = self.common.cache.clone();
        let record = Box::pin(self.sign_in(&reason, &settings)).await?;
        user.save_signed_in(record).await?;
        user_credentials(user, settings, &cache)
    }

    /// Runs the consent flow and returns the record to store.
    async fn sign_in(self, reason: &ConsentReason, settings: &Settings) -> Result<StoredToken> {
        let scopes = self.common.scopes();
        let mut secret = match self.kind.secret {
            SecretSource::File(path) => ClientSecret::from_file(path).await?,
            SecretSource::Given(secret) => *secret,
        };
        // The client's own endpoint is what the store keeps; an override is for this run.
        let stored_token_uri = secret.token_endpoint().to_owned();
        if let Some(uri) = self.common.token_uri {
            secret = secret.token_uri(uri);
        }
        if let Some(uri) = self.kind.auth_uri {
            secret = secret.auth_uri(uri);
        }
        // A refresh token must be issued again when the old one is gone or rejected.
        let mut flow = self.kind.flow;
        flow.force_consent = !matches!(reason, ConsentReason::NoToken);
        let mut record =
            consent::run(&secret, &scopes, &flow, &settings.http, Retry::default()).await?;
        record.token_uri = Some(stored_token_uri);
        Ok(record)
    }
}

/// Credentials over a user's refresh token, starting from its current record.
pub(super) fn user_credentials(
    user: Arc<UserSource>,
    settings: Settings,
    options: &CacheOptions,
) -> Result<Credentials> {
    let source: Arc<dyn TokenSource> = Arc::clone(&user) as Arc<dyn TokenSource>;
    let cache = TokenCache::new(source, fetched_from_record(&user.record()), options.clone())?;
    Ok(Credentials::new(
        Kind::Token {
            cache,
            user: Some(user),
        },
        settings,
    ))
}

/// As [`user_credentials`], after `load()` itself refreshed: the observer hears of it.
pub(super) fn refreshed_credentials(
    user: Arc<UserSource>,
    settings: Settings,
    options: &CacheOptions,
    rotated: bool,
) -> Result<Credentials> {
    let fetched = Fetched {
        refresh_token_rotated: rotated,
        ..fetched_from_record(&user.record())
    };
    let describe = Arc::clone(&user);
    let creds = user_credentials(user, settings, options)?;
    // Told only once the token is published and served.
    options.tell(&fetched, || describe.describe());
    Ok(creds)
}
