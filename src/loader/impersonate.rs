//! Impersonating a service account with whatever credentials were loaded:
//! what gcloud's `--impersonate-service-account` does at run time.

use std::sync::Arc;

use super::{CredentialLoader, kind};
use crate::credentials::{Credentials, Kind, Settings};
use crate::error::{Error, Result};
use crate::source::impersonated::{Impersonated, Target};
use crate::token_cache::{CacheOptions, TokenCache, TokenSource};
use crate::universe::Universe;

/// The account to impersonate and its delegation chain.
#[derive(Debug, Clone)]
pub(super) struct Impersonation {
    account: String,
    delegates: Vec<String>,
}

impl<K: kind::OAuthKind> CredentialLoader<K> {
    /// Uses the loaded credentials only to obtain tokens for the service
    /// account `account` from the IAM Credentials API, as gcloud's
    /// `--impersonate-service-account` does. `delegates` is the chain of
    /// accounts in between (each may impersonate the next; empty for
    /// none), as emails or `projects/-/serviceAccounts/…` names.
    ///
    /// The tokens are asked for with [`scopes`](Self::scopes) and live an
    /// hour. The loaded credentials need the Service Account Token Creator
    /// role on the account; a user's sign-in must include
    /// [`scopes::CLOUD_PLATFORM`](crate::scopes::CLOUD_PLATFORM) (for
    /// Application Default Credentials a service account or the metadata
    /// server is asked for [`scopes::IAM`](crate::scopes::IAM)).
    ///
    /// ```no_run
    /// # async fn f() -> gemini_oauth::Result<()> {
    /// let creds = gemini_oauth::CredentialLoader::application_default()
    ///     .impersonate_service_account("gemini@my-project.iam.gserviceaccount.com", [""; 0])
    ///     .load()
    ///     .await?;
    /// # let _ = creds; Ok(()) }
    /// ```
    pub fn impersonate_service_account<I, S>(
        mut self,
        account: impl Into<String>,
        delegates: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.common.impersonate = Some(Impersonation {
            account: account.into(),
            delegates: delegates.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// The IAM Credentials API's base URL (default
    /// `https://iamcredentials.googleapis.com`) for impersonation: for the
    /// account of [`impersonate_service_account`](Self::impersonate_service_account),
    /// and instead of the host of an `impersonated_service_account` file's
    /// `service_account_impersonation_url` (its path is kept).
    pub fn iam_endpoint(mut self, url: impl Into<String>) -> Self {
        self.common.iam_endpoint = Some(url.into());
        self
    }

    /// The loader of the credentials that impersonation draws on, when it
    /// was asked for: their refreshes are not the impersonated credentials'
    /// own, so [`on_refresh`](Self::on_refresh) does not hear of them.
    pub(super) fn for_impersonation_source(mut self) -> Self {
        if self.common.impersonate.is_some() {
            self.common.cache.on_refresh = None;
        }
        self
    }

    /// `creds`, or, when impersonation was asked for, credentials for the
    /// service account that draw on them.
    pub(super) async fn impersonate_if_asked(
        common: &super::Common,
        creds: Credentials,
    ) -> Result<Credentials> {
        let Some(imp) = &common.impersonate else {
            return Ok(creds);
        };
        let source = creds
            .token_cache()
            .cloned()
            .ok_or_else(|| Error::NotUserCredentials {
                what: "impersonating a service account",
                source_name: creds.source(),
            })?;
        // Outside Google's universe, the source's universe has its own IAM host.
        let universe = Universe::new(creds.universe_domain())?;
        let iam = match &common.iam_endpoint {
            Some(url) => Some(url.clone()),
            None if !universe.is_default() => Some(universe.iam_credentials()),
            None => None,
        };
        let target = Target::new(
            &imp.account,
            imp.delegates.clone(),
            common.scopes(),
            iam.as_deref(),
        );
        impersonated(source, target, creds.settings().clone(), &common.cache).await
    }
}

/// Credentials for `target`, drawing on `source`'s tokens; the first token
/// is fetched now.
pub(super) async fn impersonated(
    source: TokenCache,
    target: Target,
    settings: Settings,
    options: &CacheOptions,
) -> Result<Credentials> {
    let imp: Arc<dyn TokenSource> = Arc::new(Impersonated::new(
        source,
        target,
        Arc::clone(&settings.http),
    ));
    let first = imp.fetch().await?;
    let cache = TokenCache::new(imp, first, options.clone())?;
    Ok(Credentials::new(
        Kind::Token { cache, user: None },
        settings,
    ))
}
