//! Application Default Credentials: the file or server [`adc::find`] finds,
//! turned into credentials with a first token.

use std::sync::Arc;

use super::CredentialLoader;
use super::impersonate::impersonated;
use super::kind::ApplicationDefault;
use super::user::{refreshed_credentials, user_credentials};
use crate::adc::{self, Found, ImpersonatedFile, SourceFile};
use crate::credentials::{Credentials, Kind, Settings};
use crate::credentials_file::{CredentialsFileKind, file_error};
use crate::env;
use crate::error::{Error, Result};
use crate::source::external_account::{ExternalAccount, ExternalAccountConfig};
use crate::source::external_user::ExternalUser;
use crate::source::gcloud_cli::{GCLOUD, GCLOUD_TIMEOUT, GcloudCli};
use crate::source::impersonated::Target;
use crate::source::metadata::MetadataSource;
use crate::source::user::{Outcome, UserSource};
use crate::token::TokenFileProblem;
use crate::token_cache::{CacheOptions, TokenCache, TokenSource};
use crate::universe::Universe;

impl CredentialLoader<ApplicationDefault> {
    /// Application Default Credentials instead of `client_secret.json` and a
    /// token store, looked up as google-auth does: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// then gcloud's file (`$CLOUDSDK_CONFIG/application_default_credentials.json`,
    /// else `~/.config/gcloud/…`, `%APPDATA%\gcloud\…` on Windows), then the
    /// GCE metadata server (`GCE_METADATA_HOST`; skipped when `NO_GCE_CHECK=true`).
    /// `authorized_user`, `impersonated_service_account`,
    /// `external_account` (workload and workforce identity federation),
    /// `external_account_authorized_user` and (feature `service-account`)
    /// `service_account` files are supported.
    pub fn application_default() -> Self {
        Self::of_kind(ApplicationDefault::default())
    }

    /// The universe domain of the API these credentials will call (default:
    /// `GOOGLE_CLOUD_UNIVERSE_DOMAIN`, else the credentials' own, read from
    /// the file's `universe_domain` or the metadata server). `load()` refuses
    /// credentials of another universe with
    /// [`Error::UniverseMismatch`](crate::Error::UniverseMismatch), before
    /// any token request, as Google's Cloud client libraries do.
    pub fn universe_domain(mut self, domain: impl Into<String>) -> Self {
        self.kind.universe_domain = Some(domain.into());
        self
    }

    /// The configured universe and what configured it, if any.
    fn configured_universe(&self) -> Result<Option<(Universe, String)>> {
        let (domain, origin) = match (
            &self.kind.universe_domain,
            env::nonempty(env::GOOGLE_CLOUD_UNIVERSE_DOMAIN),
        ) {
            (Some(d), _) => (d.clone(), "CredentialLoader::universe_domain".to_owned()),
            (None, Some(d)) => (d, env::GOOGLE_CLOUD_UNIVERSE_DOMAIN.to_owned()),
            (None, None) => return Ok(None),
        };
        Universe::from_origin(&domain, &origin).map(|u| Some((u, origin)))
    }

    /// The credentials' universe, checked against the configured one.
    async fn universe(&self, found: &Found) -> Result<Universe> {
        let (universe, source_name) = match found {
            Found::User { record, path } => (
                adc::user_universe(record, path)?,
                path.display().to_string(),
            ),
            #[cfg(feature = "service-account")]
            Found::ServiceAccount(key) => (key.universe().clone(), key.path_name()),
            Found::Metadata(server) => (server.universe_domain().await?, server.describe()),
            // Impersonated credentials are of their source's universe.
            Found::Impersonated(file) => (
                file.source.universe(&file.path)?,
                file.path.display().to_string(),
            ),
            Found::ExternalUser(file) => (file.universe.clone(), file.path.display().to_string()),
            Found::ExternalAccount(config) => {
                let origin = config.path.display().to_string();
                (
                    Universe::from_origin(&config.universe_domain, &origin)?,
                    origin,
                )
            }
        };
        match self.configured_universe()? {
            Some((api, origin)) if api != universe => Err(Error::UniverseMismatch {
                source_name,
                credentials: universe.domain().to_owned(),
                api: api.domain().to_owned(),
                api_origin: origin,
            }),
            _ => Ok(universe),
        }
    }

    /// Uses the credentials file at `path` (any type the lookup accepts)
    /// instead of looking: google-auth's `load_credentials_from_file`. A
    /// missing file is an error, as for `GOOGLE_APPLICATION_CREDENTIALS`.
    pub fn credentials_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.kind.file = Some(path.into());
        self
    }

    /// Finds the credentials and gets a first access token. A user's file is
    /// never rewritten, as with google-auth.
    ///
    /// # Errors
    /// [`Error::NoCredentials`](crate::Error::NoCredentials) listing every
    /// place tried; [`Error::UniverseMismatch`](crate::Error::UniverseMismatch)
    /// and [`Error::InvalidUniverseDomain`](crate::Error::InvalidUniverseDomain);
    /// the file's problems
    /// ([`Error::CredentialsFile`](crate::Error::CredentialsFile),
    /// [`Error::UnsupportedCredential`](crate::Error::UnsupportedCredential));
    /// the first token request's errors, the IAM Credentials API's for
    /// impersonation ([`Error::Impersonation`](crate::Error::Impersonation)).
    #[tracing::instrument(skip_all, name = "gemini_oauth::load_adc")]
    pub async fn load(self) -> Result<Credentials> {
        let common = self.common.clone();
        let mut plain = self.for_impersonation_source();
        if common.impersonate.is_some() {
            // What google-auth asks a service account for as a source.
            plain.common.scopes = Some(vec![crate::scopes::IAM.to_owned()]);
        }
        let creds = plain.load_found().await?;
        Self::impersonate_if_asked(&common, creds).await
    }

    /// When the lookup finds nothing, asks gcloud for its signed-in
    /// account's token (`gcloud config config-helper --format=json`, at
    /// most 30 s per run), as gcp_auth's default chain does: the token and
    /// expiry it prints are cached like any token and refreshed once, by
    /// running gcloud again. The quota project is gcloud's
    /// `billing/quota_project` (below an explicit one and
    /// `GOOGLE_CLOUD_QUOTA_PROJECT`); [`Credentials::source`](crate::Credentials::source)
    /// names gcloud's account and project. Opt-in: gcloud is a subprocess,
    /// found on `PATH`.
    ///
    /// Errors at `load()`: [`Error::NoCredentials`](crate::Error::NoCredentials)
    /// listing the lookup's places and why gcloud could not serve (not
    /// installed, not signed in, failed);
    /// [`Error::Timeout`](crate::Error::Timeout) when gcloud hangs.
    pub fn gcloud_cli_fallback(mut self) -> Self {
        self.kind.gcloud_cli = true;
        self
    }

    async fn load_found(self) -> Result<Credentials> {
        let found = match &self.kind.file {
            Some(path) => adc::from_file(path).await?,
            None => match adc::find(&self.common.scopes()).await {
                Err(Error::NoCredentials { tried }) if self.kind.gcloud_cli => {
                    return self.gcloud_cli(tried).await;
                }
                found => found?,
            },
        };
        let universe = self.universe(&found).await?;
        match found {
            Found::User { record, path } => {
                let quota = record.quota_project_id().map(str::to_owned);
                let settings = self.settings_in(quota, &universe)?;
                let mut endpoints = self.endpoints(&settings.http);
                if !universe.is_default() {
                    if record.token_uri.is_none() {
                        endpoints
                            .token_uri
                            .get_or_insert_with(|| universe.token_uri());
                    }
                    if self.common.revoke_uri.is_none() {
                        endpoints.revoke_uri = universe.kept().revoke_uri;
                    }
                }
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
                let settings = self.settings_in(None, &universe)?;
                let source = MetadataSource {
                    server,
                    // Never through a proxy: the server is on this machine's link.
                    http: Arc::new(settings.http.direct()),
                };
                first_token(Arc::new(source), settings, &self.common.cache).await
            }
            Found::ExternalAccount(config) => self.external_account(*config, &universe).await,
            #[cfg(feature = "service-account")]
            Found::ServiceAccount(key) => {
                let settings = self.settings_in(None, &universe)?;
                let source = crate::source::service_account::ServiceAccount::new(
                    *key,
                    &self.common.scopes(),
                    self.common.token_uri.clone(),
                    Arc::clone(&settings.http),
                    crate::token_endpoint::Retry::default(),
                );
                first_token(Arc::new(source), settings, &self.common.cache).await
            }
            Found::ExternalUser(file) => {
                let settings = self.settings_in(file.quota_project_id.clone(), &universe)?;
                let source = Arc::new(ExternalUser::new(
                    *file,
                    self.common.token_uri.clone(),
                    Arc::clone(&settings.http),
                ));
                match source.cached_token() {
                    Some(first) => {
                        let cache = TokenCache::new(source, first, self.common.cache.clone())?;
                        Ok(Credentials::new(
                            Kind::Token { cache, user: None },
                            settings,
                        ))
                    }
                    None => first_token(source, settings, &self.common.cache).await,
                }
            }
            Found::Impersonated(file) => self.impersonated_file(*file, &universe).await,
        }
    }

    /// An `impersonated_service_account` file: its source credentials in a
    /// cache of their own (tokens reused until they expire), then IAM.
    async fn impersonated_file(
        self,
        file: ImpersonatedFile,
        universe: &Universe,
    ) -> Result<Credentials> {
        let settings = self.settings_in(file.quota_project.clone(), universe)?;
        let http = Arc::clone(&settings.http);
        let mut first = None;
        let source: Arc<dyn TokenSource> = match file.source {
            SourceFile::User(record) => {
                let mut endpoints = self.endpoints(&http);
                if !universe.is_default() && record.token_uri.is_none() {
                    endpoints
                        .token_uri
                        .get_or_insert_with(|| universe.token_uri());
                }
                let name = file.path.display().to_string();
                Arc::new(UserSource::new(None, name, *record, endpoints))
            }
            #[cfg(feature = "service-account")]
            SourceFile::ServiceAccount(key) => {
                Arc::new(crate::source::service_account::ServiceAccount::new(
                    *key,
                    &[crate::scopes::IAM.to_owned()],
                    self.common.token_uri.clone(),
                    Arc::clone(&http),
                    crate::token_endpoint::Retry::default(),
                ))
            }
            SourceFile::ExternalUser(eau) => {
                let source =
                    ExternalUser::new(*eau, self.common.token_uri.clone(), Arc::clone(&http));
                first = source.cached_token();
                Arc::new(source)
            }
        };
        // Refresh events are the impersonated token's; the source's are not reported.
        let source_options = CacheOptions {
            on_refresh: None,
            on_failure: None,
            ..self.common.cache.clone()
        };
        let cache = match first {
            Some(first) => TokenCache::new(source, first, source_options)?,
            None => TokenCache::lazy(source, source_options)?,
        };
        // Outside googleapis.com google-auth asks the universe's IAM host,
        // whatever host the file's URL names (the account is read from it).
        let iam = match &self.common.iam_endpoint {
            Some(url) => Some(url.clone()),
            None if !universe.is_default() => Some(universe.iam_credentials()),
            None => None,
        };
        let target = Target::from_url(
            &file.url,
            file.delegates,
            self.common.scopes(),
            iam.as_deref(),
        )
        .ok_or_else(|| {
            file_error(
                &file.path,
                CredentialsFileKind::ImpersonatedServiceAccount,
                TokenFileProblem::InvalidValue("service_account_impersonation_url"),
            )
        })?;
        impersonated(cache, target, settings, &self.common.cache).await
    }
}

impl CredentialLoader<ApplicationDefault> {
    /// An `external_account` file: the STS exchange, then, when the file
    /// names `service_account_impersonation_url`, IAM over the STS tokens
    /// (kept in a cache of their own), with the file's token lifetime.
    async fn external_account(
        self,
        config: ExternalAccountConfig,
        universe: &Universe,
    ) -> Result<Credentials> {
        let settings = self.settings_in(config.quota_project_id.clone(), universe)?;
        let http = Arc::clone(&settings.http);
        let Some(url) = config.impersonation_url.clone() else {
            let source = ExternalAccount::new(
                config,
                &self.common.scopes(),
                self.common.token_uri.clone(),
                http,
                crate::token_endpoint::Retry::default(),
            );
            return first_token(Arc::new(source), settings, &self.common.cache).await;
        };
        let path = config.path.clone();
        let lifetime = config.impersonation_lifetime;
        // What google-auth asks any scoped source of impersonation for.
        let sts_scopes = [crate::scopes::IAM.to_owned()];
        let source = ExternalAccount::new(
            config,
            &sts_scopes,
            self.common.token_uri.clone(),
            http,
            crate::token_endpoint::Retry::default(),
        );
        let source_options = CacheOptions {
            on_refresh: None,
            on_failure: None,
            ..self.common.cache.clone()
        };
        let cache = TokenCache::lazy(Arc::new(source), source_options)?;
        let mut target = Target::from_url(
            &url,
            Vec::new(),
            self.common.scopes(),
            self.common.iam_endpoint.as_deref(),
        )
        .ok_or_else(|| {
            file_error(
                &path,
                CredentialsFileKind::ExternalAccount,
                TokenFileProblem::InvalidValue("service_account_impersonation_url"),
            )
        })?;
        if let Some(lifetime) = lifetime {
            target.lifetime = lifetime;
        }
        impersonated(cache, target, settings, &self.common.cache).await
    }
}

/// Credentials over `source`, whose first token is fetched now.
impl CredentialLoader<ApplicationDefault> {
    /// Credentials from a signed-in gcloud; `tried` is what the lookup tried.
    async fn gcloud_cli(&self, mut tried: Vec<String>) -> Result<Credentials> {
        let mut gcloud = GcloudCli {
            exe: GCLOUD.into(),
            timeout: GCLOUD_TIMEOUT,
            description: "gcloud".to_owned(),
        };
        let helper = match gcloud.helper().await {
            Ok(helper) => helper,
            Err(Error::NoCredentials { tried: gcloud }) => {
                tried.extend(gcloud);
                return Err(Error::NoCredentials { tried });
            }
            Err(e) => return Err(e),
        };
        let settings = self.settings_in(helper.quota_project.clone(), &Universe::default())?;
        gcloud.description = helper.describe();
        let cache = TokenCache::new(Arc::new(gcloud), helper.fetched, self.common.cache.clone())?;
        Ok(Credentials::new(
            Kind::Token { cache, user: None },
            settings,
        ))
    }
}

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
