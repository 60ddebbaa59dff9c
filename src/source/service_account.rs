//! Service-account keys, signed and exchanged by yup-oauth2 (JWT bearer grant).

use std::path::Path;
use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::hyper_rustls::HttpsConnector;

use crate::error::{Error, Result};
use crate::token::TokenFileProblem;
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::TokenResponse;

/// A service account key and yup-oauth2's authenticator for it.
pub(crate) struct ServiceAccount {
    auth: Authenticator<HttpsConnector<HttpConnector>>,
    scopes: Vec<String>,
    name: String,
}

impl ServiceAccount {
    /// Parses the key (the same JSON google-auth reads) and prepares the flow.
    pub(crate) async fn from_json(json: &[u8], path: &Path, scopes: &[String]) -> Result<Self> {
        let key = yup_oauth2::parse_service_account_key(json).map_err(|e| Error::TokenFile {
            path: path.to_owned(),
            problem: TokenFileProblem::UnsupportedType(format!(
                "service_account (the key cannot be read: {})",
                e.kind()
            )),
        })?;
        let name = key.client_email.clone();
        let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
            .build()
            .await
            .map_err(|e| Error::io("prepare the service account flow for", path, e))?;
        Ok(ServiceAccount {
            auth,
            scopes: scopes.to_vec(),
            name,
        })
    }

    pub(crate) async fn token(&self) -> Result<TokenResponse> {
        let token = self
            .auth
            .force_refreshed_token(&self.scopes)
            .await
            .map_err(|e| Error::ServiceAccount {
                account: self.name.clone(),
                source: Arc::new(e),
            })?;
        let access = token.token().unwrap_or_default().to_owned();
        let expires_in = token.expiration_time().map(|at| {
            (at - time::OffsetDateTime::now_utc())
                .whole_seconds()
                .max(0) as u64
        });
        Ok(TokenResponse {
            access_token: access.into(),
            expires_in,
            scope: None,
            refresh_token: None,
            id_token: None,
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!("service account {}", self.name)
    }
}

impl TokenSource for ServiceAccount {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move { Ok(self.token().await?.into()) })
    }

    fn describe(&self) -> String {
        ServiceAccount::describe(self)
    }
}
