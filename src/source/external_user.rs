//! `external_account_authorized_user` files (workforce identity federation,
//! `gcloud auth application-default login --login-config=…`): a refresh
//! token refreshed at the file's `token_url` (Google's STS) with the client
//! id and secret as HTTP Basic authentication, as google-auth's
//! `external_account_authorized_user` does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use secrecy::SecretString;
use serde_json::Value;

use crate::credentials_file::{CredentialsFileKind, file_error};
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::token::TokenFileProblem;
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::{self, Retry};
use crate::universe::Universe;

/// The file's fields, as google-auth's `from_info` reads them.
pub(crate) struct ExternalUserFile {
    refresh_token: SecretString,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    /// Where the refresh token is revoked, when the file says.
    pub(crate) revoke_url: Option<String>,
    /// The workforce pool provider (`//iam.googleapis.com/locations/…`).
    pub(crate) audience: Option<String>,
    pub(crate) quota_project_id: Option<String>,
    /// The file's `universe_domain` (default `googleapis.com`), as google-auth reads it.
    pub(crate) universe: Universe,
    /// The file's `token` and `expiry`, when it has both.
    cached: Option<(SecretString, SystemTime)>,
    pub(crate) path: PathBuf,
}

impl ExternalUserFile {
    /// Reads the object `value` of the file at `path`; `nested` when it is
    /// an impersonation file's `source_credentials` (messages then name
    /// fields as `source_credentials.…`).
    pub(crate) fn from_value(value: &Value, path: &Path, nested: bool) -> Result<Self> {
        let kind = match nested {
            true => CredentialsFileKind::ImpersonatedServiceAccount,
            false => CredentialsFileKind::ExternalAccountAuthorizedUser,
        };
        let bad = |problem| file_error(path, kind, problem);
        let name = |field: &'static str| if nested { nested_name(field) } else { field };
        let text = |field: &'static str| match value.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(_)) => Ok(None),
            Some(_) => Err(bad(TokenFileProblem::WrongType(name(field)))),
        };
        let required = |field: &'static str| {
            text(field)?.ok_or_else(|| bad(TokenFileProblem::MissingField(name(field))))
        };
        let expiry = match text("expiry")? {
            Some(e) => Some(
                crate::token::parse_expiry(&e).ok_or_else(|| bad(TokenFileProblem::BadExpiry))?,
            ),
            None => None,
        };
        let cached = text("token")?
            .zip(expiry)
            .map(|(t, e)| (SecretString::from(t), SystemTime::from(e)));
        let universe = match text("universe_domain")? {
            Some(d) => Universe::from_origin(&d, &path.display().to_string())?,
            None => Universe::default(),
        };
        // google-auth can refresh only with all four; without them a file's
        // token would be of use for an hour at most: they are required here.
        Ok(ExternalUserFile {
            refresh_token: SecretString::from(required("refresh_token")?),
            token_url: required("token_url")?,
            client_id: required("client_id")?,
            client_secret: SecretString::from(required("client_secret")?),
            revoke_url: text("revoke_url")?,
            audience: text("audience")?,
            quota_project_id: text("quota_project_id")?,
            universe,
            cached,
            path: path.to_owned(),
        })
    }
}

/// A field's name inside `source_credentials`.
fn nested_name(field: &'static str) -> &'static str {
    match field {
        "refresh_token" => "source_credentials.refresh_token",
        "token_url" => "source_credentials.token_url",
        "client_id" => "source_credentials.client_id",
        "client_secret" => "source_credentials.client_secret",
        "revoke_url" => "source_credentials.revoke_url",
        "audience" => "source_credentials.audience",
        "quota_project_id" => "source_credentials.quota_project_id",
        "universe_domain" => "source_credentials.universe_domain",
        other => other,
    }
}

/// The file's credentials as a token source.
pub(crate) struct ExternalUser {
    file: ExternalUserFile,
    /// The refresh token, replaced when the server rotates it (kept in memory only).
    refresh_token: Mutex<SecretString>,
    /// The file's `token_url`, unless the loader overrides it for this run.
    token_url: String,
    http: Arc<HttpClient>,
    retry: Retry,
}

impl ExternalUser {
    pub(crate) fn new(
        file: ExternalUserFile,
        token_url: Option<String>,
        http: Arc<HttpClient>,
    ) -> Self {
        ExternalUser {
            refresh_token: Mutex::new(file.refresh_token.clone()),
            token_url: token_url.unwrap_or_else(|| file.token_url.clone()),
            file,
            http,
            retry: Retry::default(),
        }
    }

    /// The file's own access token while it is still good for a while (as
    /// google-auth, which refreshes only an invalid token).
    pub(crate) fn cached_token(&self) -> Option<Fetched> {
        let (token, expires_at) = self.file.cached.as_ref()?;
        (SystemTime::now()
            .checked_add(crate::access_token::EXPIRY_SKEW)
            .is_some_and(|soon| *expires_at > soon))
        .then(|| Fetched {
            token: token.clone(),
            expires_at: *expires_at,
            refresh_token_rotated: false,
        })
    }

    fn current_refresh_token(&self) -> SecretString {
        self.refresh_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Revokes the refresh token at the file's `revoke_url`.
    async fn revoke(&self) -> Result<()> {
        let Some(url) = &self.file.revoke_url else {
            return Err(Error::CannotRefresh {
                source_name: self.describe(),
                reason: "the file has no revoke_url, so its refresh token cannot be revoked here",
            });
        };
        let client = token_endpoint::Client {
            id: &self.file.client_id,
            secret: &self.file.client_secret,
        };
        let token = self.current_refresh_token();
        token_endpoint::revoke_basic(&self.http, self.retry, url, &client, &token).await
    }
}

impl TokenSource for ExternalUser {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move {
            let client = token_endpoint::Client {
                id: &self.file.client_id,
                secret: &self.file.client_secret,
            };
            let token = self.current_refresh_token();
            let resp = token_endpoint::refresh_basic(
                &self.http,
                self.retry,
                &self.token_url,
                &client,
                &token,
            )
            .await
            .map_err(|e| {
                token_endpoint::invalid_grant_in(e, self.file.path.display().to_string())
            })?;
            let rotated = resp.refresh_token.clone();
            let mut fetched: Fetched = resp.into();
            if let Some(new) = rotated {
                *self
                    .refresh_token
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = new;
                fetched.refresh_token_rotated = true;
            }
            Ok(fetched)
        })
    }

    fn describe(&self) -> String {
        match &self.file.audience {
            Some(audience) => format!(
                "{} (workforce identity of {audience})",
                self.file.path.display()
            ),
            None => self.file.path.display().to_string(),
        }
    }

    fn revoke(&self) -> Option<BoxFuture<'_, Result<()>>> {
        Some(Box::pin(ExternalUser::revoke(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let path = Path::new("/adc.json");
        let full = json!({"type": "external_account_authorized_user", "refresh_token": "R",
            "token_url": "https://sts.googleapis.com/v1/oauthtoken", "client_id": "c",
            "client_secret": "S", "revoke_url": "https://sts.googleapis.com/v1/revoke",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/p/providers/q",
            "quota_project_id": "proj"});
        let file = ExternalUserFile::from_value(&full, path, false).unwrap();
        assert_eq!(file.quota_project_id.as_deref(), Some("proj"));
        assert!(file.audience.unwrap().contains("workforcePools"));
        for field in ["refresh_token", "token_url", "client_id", "client_secret"] {
            let mut v = full.clone();
            v.as_object_mut().unwrap().remove(field);
            match ExternalUserFile::from_value(&v, path, true) {
                Err(Error::CredentialsFile(crate::CredentialsFileProblem {
                    problem,
                    path: p,
                    ..
                })) => {
                    assert_eq!(p, path);
                    assert_eq!(problem, TokenFileProblem::MissingField(nested_name(field)));
                    assert!(
                        problem
                            .to_string()
                            .contains(&format!("source_credentials.{field}"))
                    );
                }
                other => panic!("{field}: {:?}", other.err()),
            }
        }
        let mut v = full.clone();
        v["token_url"] = json!(5);
        assert!(matches!(
            ExternalUserFile::from_value(&v, path, false),
            Err(Error::CredentialsFile(crate::CredentialsFileProblem {
                problem: TokenFileProblem::WrongType("token_url"),
                ..
            }))
        ));
    }
}
