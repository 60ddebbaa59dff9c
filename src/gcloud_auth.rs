//! The token source of yoshidan's gcloud-auth for [`Credentials`] (feature
//! `gcloud-auth`): the `gcloud-*` clients (gcloud-storage, gcloud-pubsub,
//! gcloud-spanner, …) take a `Box<dyn token_source::TokenSourceProvider>`
//! in their `ClientConfig`, which gcloud-auth's `DefaultTokenSourceProvider`
//! fills from ADC; `Credentials` fills it with a user's sign-in, this
//! crate's one shared refresh and its token stores.
//!
//! The traits are those of the [token-source](https://crates.io/crates/token-source)
//! crate, which gcloud-auth implements and the clients name; gcloud-auth
//! itself is not a dependency (it needs exactly one JWT backend chosen,
//! which the user's `gcloud-*` dependency already does, and two are a
//! compile error).
//!
//! As gcloud-auth's own source, [`TokenSource::token`] returns the whole
//! `Authorization` value, `Bearer <token>`, which the clients send as it is.
//! The clients send no `x-goog-user-project`: the quota project is not used.

use std::error::Error as StdError;
use std::sync::Arc;

use token_source::{TokenSource, TokenSourceProvider};

use crate::credentials::Credentials;

impl TokenSourceProvider for Credentials {
    /// A clone of these credentials (one `Arc`), sharing their token cache.
    fn token_source(&self) -> Arc<dyn TokenSource> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl TokenSource for Credentials {
    /// `Bearer <token>` with the current access token, as
    /// [`Credentials::access_token`] (cached, refreshed once for all callers).
    /// Errors are [`Error`](crate::Error)s, boxed (API-key credentials:
    /// [`Error::NoAccessToken`](crate::Error::NoAccessToken)); their text
    /// never holds a secret.
    async fn token(&self) -> Result<String, Box<dyn StdError + Send + Sync>> {
        let token = self.access_token().await?;
        Ok(format!("Bearer {}", token.secret()))
    }
}
