//! Application Default Credentials: the file or server [`adc::find`] finds,
//! turned into credentials with a first token.

use std::sync::Arc;

use super::CredentialLoader;
use super::kind::ApplicationDefault;
use super::user::{refreshed_credentials, user_credentials};
use crate::adc::{self, Found};
use crate::credentials::{Credentials, Kind, Settings};
use crate::error::Result;
use crate::source::metadata::MetadataSource;
use crate::source::user::{Outcome, UserSource};
use crate::token_cache::{CacheOptions, TokenCache, TokenSource};

impl CredentialLoader<ApplicationDefault> {
    /// Application Default Credentials instead of `client_secret.json` and a
    /// token store, looked up as google-auth does: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// then gcloud's file (`$CLOUDSDK_CONFIG/application_default_credentials.json`,
    /// else `~/.config/gcloud/…`, `%APPDATA%\gcloud\…` on Windows), then the
    /// GCE metadata server (`GCE_METADATA_HOST`; skipped when `NO_GCE_CHECK=true`).
    /// `authorized_user` and (feature `service-account`) `service_account`
    /// files are supported.
    pub fn application_default() -> Self {
        Self::of_kind(ApplicationDefault::default())
    }

    /// Finds the credentials and gets a first access token. A user's file is
    /// never rewritten, as with google-auth.
    ///
    /// # Errors
    /// [`Error::NoCredentials`](crate::Error::NoCredentials) listing every
    /// place tried; the file's problems
    /// ([`Error::TokenFile`](crate::Error::TokenFile),
    /// [`Error::UnsupportedCredential`](crate::Error::UnsupportedCredential));
    /// the first token request's errors.
    #[tracing::instrument(skip_all, name = "gemini_oauth::load_adc")]
    pub async fn load(self) -> Result<Credentials> {
        match adc::find(&self.common.scopes).await? {
            Found::User { record, path } => {
                let settings = self.settings(record.quota_project_id().map(str::to_owned))?;
                let endpoints = self.endpoints(&settings.http);
                let name = path.display().to_string();
                let user = Arc::new(UserSource::new(None, name, *record, endpoints));
                // gcloud's file holds no access token: get one now.
                let (outcome, _) = user
                    .resolve(Some(user.record()), &[], None, Default::default())
                    .await?;
                match outcome {
                    Outcome::Token(_) => user_credentials(user, settings, &self.common.cache),
                    Outcome::Refreshed { rotated, .. } => {
                        refreshed_credentials(user, settings, &self.common.cache, rotated)
                    }
                    Outcome::Consent(reason) => Err(user.consent_error(reason)),
                }
            }
            Found::Metadata(server) => {
                let settings = self.settings(None)?;
                let source = MetadataSource {
                    server,
                    http: Arc::clone(&settings.http),
                };
                first_token(Arc::new(source), settings, &self.common.cache).await
            }
            Found::ExternalAccount(config) => {
                let settings = self.settings(config.quota_project_id.clone())?;
                let source = crate::source::external_account::ExternalAccount::new(
                    *config,
                    &self.common.scopes,
                    self.common.token_uri.clone(),
                    Arc::clone(&settings.http),
                    crate::token_endpoint::Retry::default(),
                );
                first_token(Arc::new(source), settings, &self.common.cache).await
            }
            #[cfg(feature = "service-account")]
            Found::ServiceAccount(key) => {
                let settings = self.settings(None)?;
                let source = crate::source::service_account::ServiceAccount::new(
                    *key,
                    &self.common.scopes,
                    self.common.token_uri.clone(),
                    Arc::clone(&settings.http),
                    crate::token_endpoint::Retry::default(),
                );
                first_token(Arc::new(source), settings, &self.common.cache).await
            }
        }
    }
}

/// Credentials over `source`, whose first token is fetched now.
async fn first_token(
    source: Arc<dyn TokenSource>,
    settings: Settings,
    options: &CacheOptions,
) -> Result<Credentials> {
    let first = source.fetch().await?;
    let cache = TokenCache::new(source, first, options.clone())?;
    Ok(Credentials::new(
        Kind::Token { cache, user: None },
        settings,
    ))
}
