//! Credentials over a yup-oauth2 `Authenticator` (feature `yup-oauth2`):
//! yup-oauth2 users keep their sign-in and get this crate's single shared
//! refresh, its authorized client and its integrations.

use std::sync::Arc;

use hyper_util::client::legacy::connect::Connect;
use yup_oauth2::authenticator::Authenticator;

use super::CredentialLoader;
use super::kind::YupOauth2;
use crate::credentials::{Credentials, Kind};
use crate::error::Result;
use crate::source::yup::{Bounded, YupSource};
use crate::token_cache::{BoxFuture, Fetched, TokenCache, TokenSource};

/// A token source that also gives the first token its own way (yup-oauth2's
/// cached one), for the kind to hold without its connector type.
pub(super) trait FirstToken: TokenSource {
    fn first(&self) -> BoxFuture<'_, Result<Fetched>>;
    fn source(self: Arc<Self>) -> Arc<dyn TokenSource>;
}

impl<C> FirstToken for YupSource<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn first(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(YupSource::first(self))
    }

    fn source(self: Arc<Self>) -> Arc<dyn TokenSource> {
        self
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "yup-oauth2")))]
impl CredentialLoader<YupOauth2> {
    /// Credentials whose tokens come from a yup-oauth2 `Authenticator`
    /// (any of its flows, with its token storage) for `scopes`: yup-oauth2
    /// signs in; these credentials hand the token out from memory, refresh
    /// it once for all callers before it expires (asking yup-oauth2 for a
    /// new one, not its cached one) and after a `401`, and drive the
    /// authorized client and the other integrations. The builder's
    /// quota project, API base, proxy and timeouts apply; each refresh
    /// ends within the [`timeout`](CredentialLoader::timeout) (yup-oauth2's
    /// own client has none), with [`Error::Timeout`](crate::Error::Timeout)
    /// past it, also when the flow falls back to asking the user. The first
    /// token, in `load()`, is not bounded: it may be the user's sign-in.
    pub fn yup_oauth2<C, I, S>(auth: Authenticator<C>, scopes: I) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes = scopes.into_iter().map(Into::into).collect();
        Self::of_kind(YupOauth2 {
            source: Arc::new(YupSource::new(auth, scopes)),
        })
    }

    /// The credentials, with the authenticator's current token (its cached
    /// one when it holds a valid one, else one it fetches).
    ///
    /// # Errors
    /// yup-oauth2's failure as ours: [`Error::OAuth`](crate::Error::OAuth)
    /// for the token endpoint's OAuth errors (`invalid_grant`, …),
    /// [`Error::Transport`](crate::Error::Transport) when it cannot be
    /// reached, otherwise [`Error::Store`](crate::Error::Store) naming
    /// yup-oauth2; [`Error::InvalidUrl`](crate::Error::InvalidUrl) for a bad
    /// API base.
    pub async fn load(self) -> Result<Credentials> {
        let settings = self.settings(None)?;
        let first = self.kind.source.first().await?;
        let source = Arc::new(Bounded {
            source: Arc::clone(&self.kind.source).source(),
            after: self.common.timeout,
        });
        let cache = TokenCache::new(source, first, self.common.cache.clone())?;
        Ok(Credentials::new(
            Kind::Token { cache, user: None },
            settings,
        ))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "yup-oauth2")))]
impl Credentials {
    /// [`CredentialLoader::yup_oauth2`]`(auth, scopes).load()`: credentials
    /// over a yup-oauth2 `Authenticator`, with its single shared refresh.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let secret = yup_oauth2::read_application_secret("client_secret.json").await?;
    /// let method = yup_oauth2::InstalledFlowReturnMethod::HTTPRedirect;
    /// let auth = yup_oauth2::InstalledFlowAuthenticator::builder(secret, method)
    ///     .persist_tokens_to_disk("yup-tokens.json")
    ///     .build()
    ///     .await?;
    /// let scopes = [gemini_oauth::scopes::GENERATIVE_LANGUAGE_RETRIEVER];
    /// let creds = gemini_oauth::Credentials::from_yup_oauth2(auth, scopes).await?;
    /// let models = gemini_oauth::gemini::list_models(&creds.authorized_client()).await?;
    /// # let _ = models; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`CredentialLoader::<YupOauth2>::load`].
    pub async fn from_yup_oauth2<C, I, S>(auth: Authenticator<C>, scopes: I) -> Result<Self>
    where
        C: Connect + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CredentialLoader::yup_oauth2(auth, scopes).load().await
    }
}
