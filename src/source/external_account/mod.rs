//! `external_account` credentials (workload and workforce identity
//! federation): a subject token from the file's `credential_source` (a file,
//! a URL, an executable, or AWS), exchanged at Google's STS for an access
//! token. One file per credential source, `sts.rs` for the exchange.

pub(crate) mod aws;
mod command_line;
pub(crate) mod config;
pub(crate) mod executable;
mod file;
mod problem;
pub(crate) mod sigv4;
mod sts;
mod url;

use std::sync::Arc;

use secrecy::SecretString;

pub(crate) use config::{CredentialSource, ExternalAccountConfig};
pub use problem::ExternalAccountProblem;

use crate::error::Result;
use crate::http::HttpClient;
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::Retry;

/// An `external_account` file as a token source: each fetch gets a fresh
/// subject token and exchanges it.
pub(crate) struct ExternalAccount {
    config: ExternalAccountConfig,
    scopes: Vec<String>,
    token_url: String,
    http: Arc<HttpClient>,
    /// For credential sources on this machine's link (never proxied).
    direct: HttpClient,
    retry: Retry,
}

impl ExternalAccount {
    /// `token_url` overrides the file's STS endpoint (the loader's `token_uri`).
    pub(crate) fn new(
        config: ExternalAccountConfig,
        scopes: &[String],
        token_url: Option<String>,
        http: Arc<HttpClient>,
        retry: Retry,
    ) -> Self {
        ExternalAccount {
            token_url: token_url.unwrap_or_else(|| config.token_url.clone()),
            scopes: scopes.to_vec(),
            config,
            direct: http.direct(),
            http,
            retry,
        }
    }

    /// The subject token, fetched anew.
    async fn subject_token(&self) -> Result<String> {
        let c = &self.config;
        let clients = url::Clients {
            proxied: &self.http,
            direct: &self.direct,
        };
        match &c.source {
            CredentialSource::File(f) => f.subject_token(&c.path).await,
            CredentialSource::Url(u) => u.subject_token(&clients, &c.path).await,
            CredentialSource::Aws(a) => a.subject_token(&clients, &c.path, &c.audience).await,
            CredentialSource::Executable(e) => {
                let impersonated_email = c
                    .impersonation_url
                    .as_ref()
                    .map(|_| c.impersonated_email().unwrap_or(""));
                e.subject_token(&executable::Context {
                    config_path: &c.path,
                    audience: &c.audience,
                    token_type: &c.subject_token_type,
                    impersonated_email,
                })
                .await
            }
        }
    }
}

impl TokenSource for ExternalAccount {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move {
            let subject_token = SecretString::from(self.subject_token().await?);
            let c = &self.config;
            let resp = sts::Exchange {
                token_url: &self.token_url,
                audience: &c.audience,
                scopes: &self.scopes,
                subject_token: &subject_token,
                subject_token_type: &c.subject_token_type,
                user_project: c.workforce_pool_user_project.as_deref(),
                client: c.client.as_ref().map(|(id, secret)| (id.as_str(), secret)),
            }
            .send(&self.http, self.retry)
            .await?;
            Ok(resp.into())
        })
    }

    fn describe(&self) -> String {
        format!(
            "external account credentials {}",
            self.config.path.display()
        )
    }
}
