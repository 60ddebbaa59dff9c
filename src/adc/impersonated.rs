//! `impersonated_service_account` files, as gcloud writes them
//! (`gcloud auth application-default login --impersonate-service-account`)
//! and google-auth reads them: `source_credentials` (a user, a service
//! account, or an external account's user), `service_account_impersonation_url`,
//! `delegates`, `quota_project_id`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::source::external_user::ExternalUserFile;
use crate::source::impersonated::principal_of;
use crate::token::{StoredToken, TokenFileProblem};

/// The source credentials of an impersonation file.
pub(crate) enum SourceFile {
    User(Box<StoredToken>),
    #[cfg(feature = "service-account")]
    ServiceAccount(Box<crate::source::service_account::ServiceAccountKey>),
    ExternalUser(Box<ExternalUserFile>),
}

/// A parsed `impersonated_service_account` file.
pub(crate) struct ImpersonatedFile {
    pub(crate) source: SourceFile,
    /// `service_account_impersonation_url`, checked to name an account.
    pub(crate) url: String,
    pub(crate) delegates: Vec<String>,
    pub(crate) quota_project: Option<String>,
    pub(crate) path: PathBuf,
}

/// Reads the file's object `value`; problems name `path` and the field.
pub(crate) fn parse(value: &Value, path: &Path) -> Result<ImpersonatedFile> {
    let bad = |problem| Error::TokenFile {
        path: path.to_owned(),
        problem,
    };
    const URL: &str = "service_account_impersonation_url";
    let url = match value.get(URL) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(bad(TokenFileProblem::MissingField(URL)));
        }
        Some(_) => return Err(bad(TokenFileProblem::WrongType(URL))),
    };
    if principal_of(&url).is_none() {
        return Err(bad(TokenFileProblem::InvalidValue(URL)));
    }
    let delegates = match value.get("delegates") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| d.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(TokenFileProblem::WrongType("delegates")))?,
        Some(_) => return Err(bad(TokenFileProblem::WrongType("delegates"))),
    };
    let quota_project = match value.get("quota_project_id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => None,
        Some(_) => return Err(bad(TokenFileProblem::WrongType("quota_project_id"))),
    };
    let source = match value.get("source_credentials") {
        Some(source @ Value::Object(_)) => source_file(source, path)?,
        None | Some(Value::Null) => {
            return Err(bad(TokenFileProblem::MissingField("source_credentials")));
        }
        Some(_) => return Err(bad(TokenFileProblem::WrongType("source_credentials"))),
    };
    Ok(ImpersonatedFile {
        source,
        url,
        delegates,
        quota_project,
        path: path.to_owned(),
    })
}

fn source_file(source: &Value, path: &Path) -> Result<SourceFile> {
    let bad = |problem| Error::TokenFile {
        path: path.to_owned(),
        problem,
    };
    let kind = match source.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        None | Some(Value::Null) => {
            return Err(bad(TokenFileProblem::MissingField(
                "source_credentials.type",
            )));
        }
        Some(_) => return Err(bad(TokenFileProblem::WrongType("source_credentials.type"))),
    };
    // Serialized again only to reuse each type's own reader.
    let bytes = || serde_json::to_vec(source).unwrap_or_default();
    match kind {
        "authorized_user" => {
            let record = StoredToken::from_json(&bytes()).map_err(bad)?;
            super::check_authorized_user(&record, true).map_err(bad)?;
            Ok(SourceFile::User(Box::new(record)))
        }
        #[cfg(feature = "service-account")]
        "service_account" => Ok(SourceFile::ServiceAccount(Box::new(
            crate::source::service_account::ServiceAccountKey::from_json(&bytes(), path)?,
        ))),
        #[cfg(not(feature = "service-account"))]
        "service_account" => Err(Error::UnsupportedCredential {
            path: path.to_owned(),
            kind: "service_account (as source_credentials)".to_owned(),
            hint: "; enable the crate feature `service-account`",
        }),
        "external_account_authorized_user" => Ok(SourceFile::ExternalUser(Box::new(
            ExternalUserFile::from_value(source, path, true)?,
        ))),
        other => Err(Error::UnsupportedCredential {
            path: path.to_owned(),
            kind: format!("{other} (as source_credentials)"),
            hint: "; the source of an impersonation may be authorized_user, service_account or \
                   external_account_authorized_user",
        }),
    }
}
