//! The kinds of credentials a [`CredentialLoader`](crate::CredentialLoader)
//! builds, as its type parameter: each kind has only the builder options that
//! apply to it, so an option that would be ignored does not compile.
//!
//! ```compile_fail
//! // The consent flow does not apply to Application Default Credentials.
//! let loader = gemini_oauth::CredentialLoader::application_default()
//!     .consent(gemini_oauth::Consent::Never);
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;

use crate::client_secret::ClientSecret;
use crate::consent::FlowOptions;
use crate::store::DynTokenStore;

/// A user's sign-in, as `load_creds.py` does it: `client_secret.json`, a
/// token store, and the consent flow when nothing stored can serve.
/// [`CredentialLoader::new`](crate::CredentialLoader::new).
#[derive(Clone)]
pub struct UserFlow {
    pub(super) secret: SecretSource,
    pub(super) store: Option<Arc<dyn DynTokenStore>>,
    pub(super) auth_uri: Option<String>,
    pub(super) flow: FlowOptions,
}

/// Application Default Credentials, found as google-auth finds them.
/// [`CredentialLoader::application_default`](crate::CredentialLoader::application_default).
#[derive(Debug, Default, Clone)]
pub struct ApplicationDefault {
    /// The API's universe domain, when set by `.universe_domain()`.
    pub(super) universe_domain: Option<String>,
    /// A credentials file instead of the lookup.
    pub(super) file: Option<PathBuf>,
    /// Ask a signed-in gcloud when the lookup finds nothing.
    pub(super) gcloud_cli: bool,
}

/// An API key, sent as `x-goog-api-key`.
/// [`CredentialLoader::api_key`](crate::CredentialLoader::api_key).
#[derive(Clone)]
pub struct ApiKey {
    /// `None`: read from the environment at load.
    pub(super) key: Option<SecretString>,
}

/// Whatever Google's Gemini SDKs would choose from the environment: an API
/// key, Application Default Credentials for Vertex AI, or the user's sign-in.
/// [`CredentialLoader::from_env`](crate::CredentialLoader::from_env).
#[derive(Debug, Default, Clone)]
pub struct FromEnv {
    pub(super) explicit: super::sdk_env::Explicit,
}

/// A fixed access token and its expiry, never refreshed: a test double.
/// [`CredentialLoader::fixed_token`](crate::CredentialLoader::fixed_token).
#[derive(Clone)]
pub struct FixedToken {
    pub(super) token: SecretString,
    pub(super) expires_at: std::time::SystemTime,
}

/// A yup-oauth2 `Authenticator` as the token source: yup-oauth2 signs in,
/// this crate hands out and refreshes the tokens.
/// [`CredentialLoader::yup_oauth2`](crate::CredentialLoader::yup_oauth2).
#[cfg(feature = "yup-oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "yup-oauth2")))]
#[derive(Clone)]
pub struct YupOauth2 {
    pub(super) source: Arc<dyn super::yup::FirstToken>,
}

#[cfg(feature = "yup-oauth2")]
impl fmt::Debug for YupOauth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YupOauth2")
            .field("source", &self.source.describe())
            .finish()
    }
}

#[derive(Clone)]
pub(super) enum SecretSource {
    File(PathBuf),
    Given(Box<ClientSecret>),
}

/// The kinds that obtain OAuth access tokens (scopes, token endpoint, revocation apply).
pub trait OAuthKind: sealed::Sealed {}
impl OAuthKind for UserFlow {}
impl OAuthKind for ApplicationDefault {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::UserFlow {}
    impl Sealed for super::ApplicationDefault {}
}

impl fmt::Debug for UserFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = match &self.secret {
            SecretSource::File(path) => path.display().to_string(),
            SecretSource::Given(_) => "(given)".to_owned(),
        };
        f.debug_struct("UserFlow")
            .field("client_secret", &secret)
            .field("store", &self.store.as_ref().map(|s| s.name()))
            .field("auth_uri", &self.auth_uri)
            .field("flow", &self.flow)
            .finish()
    }
}

impl fmt::Debug for FixedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.key {
            Some(_) => "[redacted]",
            None => "(from the environment)",
        };
        f.debug_struct("ApiKey").field("key", &key).finish()
    }
}
