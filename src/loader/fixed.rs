//! Fixed access tokens: credentials for users' own tests, with a token and
//! expiry they choose, no files and no server. Never refreshed.

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;

use super::CredentialLoader;
use super::kind::FixedToken;
use crate::credentials::{Credentials, Kind};
use crate::error::Result;
use crate::source::fixed::FixedSource;
use crate::token_cache::{CacheOptions, Fetched, TokenCache};

impl CredentialLoader<FixedToken> {
    /// Credentials that hand out `token` until `expires_at`, and then fail
    /// with [`Error::CannotRefresh`](crate::Error::CannotRefresh) instead of
    /// refreshing: a **test double** for code that takes [`Credentials`],
    /// with the builder's other options (quota project, API base,
    /// timeouts). See [`Credentials::from_access_token`].
    pub fn fixed_token(token: impl Into<String>, expires_at: SystemTime) -> Self {
        Self::of_kind(FixedToken {
            token: SecretString::from(token.into()),
            expires_at,
        })
    }

    /// The credentials. No I/O happens; `async` only for the same shape as
    /// the other kinds (see [`CredentialLoader::<FixedToken>::build`]).
    ///
    /// # Errors
    /// As [`CredentialLoader::<FixedToken>::build`].
    pub async fn load(self) -> Result<Credentials> {
        self.build()
    }

    /// The credentials, without `await`.
    ///
    /// # Errors
    /// [`Error::InvalidHeaderValue`](crate::Error::InvalidHeaderValue) for a
    /// token that cannot be a header; [`Error::InvalidUrl`](crate::Error::InvalidUrl)
    /// for a bad API base.
    pub fn build(self) -> Result<Credentials> {
        let settings = self.settings(None)?;
        let first = Fetched {
            token: self.kind.token,
            expires_at: self.kind.expires_at,
            refresh_token_rotated: false,
        };
        let cache = TokenCache::new(Arc::new(FixedSource), first, CacheOptions::default())?;
        Ok(Credentials::new(
            Kind::Token { cache, user: None },
            settings,
        ))
    }
}

impl Credentials {
    /// **A test double**: credentials with a fixed access token and expiry,
    /// for tests of code that takes [`Credentials`]; no files, no token
    /// endpoint, no browser. `access_token()` and `headers()` serve `token`
    /// (as `Authorization: Bearer …`) until `expires_at`; after that, and for
    /// [`force_refresh`](Credentials::force_refresh) or a `401` to the
    /// authorized client, the answer is
    /// [`Error::CannotRefresh`](crate::Error::CannotRefresh), never a refresh.
    /// As with real tokens, the last 10 s before `expires_at`
    /// ([`EXPIRY_SKEW`](crate::EXPIRY_SKEW)) count as expired, and during
    /// the last 3 min 45 s a background refresh is tried once and fails
    /// quietly (a `tracing` warning). For a quota project or another API
    /// base, use [`CredentialLoader::fixed_token`].
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// # async fn f() -> gemini_oauth::Result<()> {
    /// let creds = gemini_oauth::Credentials::from_access_token(
    ///     "ya29.test-token",
    ///     SystemTime::now() + Duration::from_secs(3600),
    /// )?;
    /// assert_eq!(creds.access_token().await?.secret(), "ya29.test-token");
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHeaderValue`](crate::Error::InvalidHeaderValue) for a
    /// token that cannot be a header.
    pub fn from_access_token(token: impl Into<String>, expires_at: SystemTime) -> Result<Self> {
        CredentialLoader::fixed_token(token, expires_at).build()
    }
}
