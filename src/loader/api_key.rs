//! API keys: credentials whose header is `x-goog-api-key`, with no token and
//! no expiry.

use secrecy::{ExposeSecret, SecretString};

use super::kind::ApiKey;
use super::{CredentialLoader, api_key_header};
use crate::credentials::{Credentials, Kind};
use crate::env;
use crate::error::{Error, Result};

impl CredentialLoader<ApiKey> {
    /// Credentials that send `key` as `x-goog-api-key` (never with a bearer
    /// token): the Gemini quickstart's "easiest way".
    pub fn api_key(key: impl Into<String>) -> Self {
        Self::of_kind(ApiKey {
            key: Some(SecretString::from(key.into())),
        })
    }

    /// An API key from the environment: `GOOGLE_API_KEY`, then
    /// `GEMINI_API_KEY`, as Google's Gemini SDKs read them (with a warning
    /// when both are set).
    pub fn api_key_from_env() -> Self {
        Self::of_kind(ApiKey { key: None })
    }

    /// The credentials. No I/O happens; `async` only for the same shape as
    /// the other kinds (see [`CredentialLoader::build`]).
    ///
    /// # Errors
    /// As [`CredentialLoader::build`].
    pub async fn load(self) -> Result<Credentials> {
        self.build()
    }

    /// The credentials, without `await`.
    ///
    /// # Errors
    /// [`Error::NoCredentials`] when no key was given and none is set in the
    /// environment; [`Error::InvalidHeaderValue`] for a key that cannot be a
    /// header; [`Error::InvalidUrl`] for a bad API base.
    pub fn build(self) -> Result<Credentials> {
        let key = match &self.kind.key {
            Some(key) => key.expose_secret().to_owned(),
            None => key_from_env()?,
        };
        let header = api_key_header(&key)?;
        Ok(Credentials::new(Kind::ApiKey(header), self.settings(None)?))
    }
}

/// The first of [`env::API_KEYS`] that is set.
fn key_from_env() -> Result<String> {
    let [first, second] = env::API_KEYS;
    match (env::nonempty(first), env::nonempty(second)) {
        (Some(key), other) => {
            if other.is_some() {
                tracing::warn!("both {first} and {second} are set; using {first}");
            }
            Ok(key)
        }
        (None, Some(key)) => Ok(key),
        (None, None) => Err(Error::NoCredentials {
            tried: env::API_KEYS
                .iter()
                .map(|k| format!("{k} (not set)"))
                .collect(),
        }),
    }
}

impl Credentials {
    /// Credentials that send `key` as `x-goog-api-key`, with the default
    /// settings (API base from `GEMINI_API_BASE` or the production one). For
    /// other settings, use [`CredentialLoader::api_key`].
    ///
    /// ```
    /// let creds = gemini_oauth::Credentials::from_api_key("AIza-example")?;
    /// assert_eq!(creds.source(), "an API key");
    /// # Ok::<(), gemini_oauth::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHeaderValue`] for a key that cannot be a header.
    pub fn from_api_key(key: impl Into<String>) -> Result<Self> {
        CredentialLoader::api_key(key).build()
    }

    /// Credentials with the API key from `GOOGLE_API_KEY`, then `GEMINI_API_KEY`.
    ///
    /// # Errors
    /// [`Error::NoCredentials`] when neither is set.
    pub fn from_api_key_env() -> Result<Self> {
        CredentialLoader::api_key_from_env().build()
    }
}
