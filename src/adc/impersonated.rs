//! `impersonated_service_account` files, as gcloud writes them
//! (`gcloud auth application-default login --impersonate-service-account`)
//! and google-auth reads them: `source_credentials` (a user, a service
//! account, or an external account's user), `service_account_impersonation_url`,
//! `delegates`, `quota_project_id`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::credentials::Credentials;
use crate::credentials_file::{CredentialsFileKind, file_error};
use crate::endpoints::DEFAULT_UNIVERSE_DOMAIN;
use crate::error::{Error, Result};
use crate::source::external_user::ExternalUserFile;
use crate::source::impersonated::principal_of;
use crate::store::file::write_atomically;
use crate::token::{StoredToken, TokenFileProblem};

/// The source credentials of an impersonation file.
pub(crate) enum SourceFile {
    User(Box<StoredToken>),
    #[cfg(feature = "service-account")]
    ServiceAccount(Box<crate::source::service_account::ServiceAccountKey>),
    ExternalUser(Box<ExternalUserFile>),
}

impl SourceFile {
    /// The source's universe domain, which the impersonated credentials
    /// take (google-auth's `source_credentials.universe_domain`).
    pub(crate) fn universe(&self, path: &Path) -> Result<crate::universe::Universe> {
        match self {
            SourceFile::User(record) => super::user_universe(record, path),
            #[cfg(feature = "service-account")]
            SourceFile::ServiceAccount(key) => Ok(key.universe().clone()),
            SourceFile::ExternalUser(file) => Ok(file.universe.clone()),
        }
    }
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
    let bad = |problem| {
        file_error(
            path,
            CredentialsFileKind::ImpersonatedServiceAccount,
            problem,
        )
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
    let bad = |problem| {
        file_error(
            path,
            CredentialsFileKind::ImpersonatedServiceAccount,
            problem,
        )
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

/// Writes an `impersonated_service_account` ADC file exactly as `gcloud
/// auth application-default login --impersonate-service-account` does
/// (sorted keys, two-space indent): `creds` (a user's sign-in) as
/// `source_credentials`, the IAM Credentials URL of `account` in the
/// credentials' universe, and `delegates` (gcloud writes bare emails);
/// `quota_project_id` when the credentials have one (gcloud writes none;
/// google-auth reads it). Atomic, mode 0600. Returns the path written
/// (`path`, else [`well_known_file`](super::well_known_file)).
///
/// # Errors
/// As [`save_authorized_user`](super::save_authorized_user).
pub async fn save_impersonated_service_account(
    creds: &Credentials,
    account: &str,
    delegates: &[String],
    path: Option<&Path>,
) -> Result<PathBuf> {
    let not_user = || Error::NotUserCredentials {
        what: "writing an impersonated_service_account file",
        source_name: creds.source(),
    };
    let record = creds.stored_token().ok_or_else(not_user)?;
    let source = super::authorized_user_object(&record, None).ok_or_else(not_user)?;
    let universe = record
        .universe_domain
        .as_deref()
        .unwrap_or(DEFAULT_UNIVERSE_DOMAIN);
    let mut file = Map::new();
    file.insert("delegates".into(), json!(delegates));
    if let Some(q) = creds.quota_project() {
        file.insert("quota_project_id".into(), json!(q));
    }
    file.insert(
        "service_account_impersonation_url".into(),
        json!(format!(
            "https://iamcredentials.{universe}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
        )),
    );
    file.insert("source_credentials".into(), Value::Object(source));
    file.insert("type".into(), json!("impersonated_service_account"));
    let path = match path {
        Some(p) => p.to_owned(),
        None => super::well_known_file().ok_or_else(|| Error::NoCredentials {
            tried: vec!["HOME, APPDATA and CLOUDSDK_CONFIG are all unset".into()],
        })?,
    };
    let text = serde_json::to_string_pretty(&Value::Object(file)).map_err(|_| not_user())?;
    write_atomically(path.clone(), text.into_bytes()).await?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    //! The file reader on whatever an impersonation file might hold.

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const URL: &str = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken";

    fn text() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => "[a-z0-9._/-]{0,12}".prop_map(|s| json!(format!("SECRETMARKER{s}"))),
            1 => Just(Value::Null),
            1 => any::<i64>().prop_map(Value::from),
            1 => Just(json!([])),
        ]
    }

    fn url() -> impl Strategy<Value = Value> {
        prop_oneof![
            2 => Just(json!(URL)),
            1 => "[a-z:/.-]{0,30}".prop_map(Value::from),
            1 => Just(Value::Null),
            1 => Just(json!(7)),
        ]
    }

    fn delegates() -> impl Strategy<Value = Value> {
        prop_oneof![
            2 => prop::collection::vec("[a-z@.]{1,10}", 0..3).prop_map(|d| json!(d)),
            1 => Just(json!([1, 2])),
            1 => Just(json!("d@p")),
            1 => Just(Value::Null),
        ]
    }

    fn source() -> impl Strategy<Value = Value> {
        let kind = prop_oneof![
            Just(json!("authorized_user")),
            Just(json!("external_account_authorized_user")),
            Just(json!("external_account")),
            Just(Value::Null),
            Just(json!(3)),
        ];
        let fields = ["refresh_token", "client_id", "client_secret", "token_url"];
        (
            kind,
            prop::collection::vec(prop::option::of(text()), fields.len()),
        )
            .prop_map(move |(kind, values)| {
                let mut map = serde_json::Map::new();
                map.insert("type".into(), kind);
                for (k, v) in fields.iter().zip(values) {
                    if let Some(v) = v {
                        map.insert((*k).into(), v);
                    }
                }
                Value::Object(map)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Never panics; accepted only with a URL naming an account, a
        /// string list of delegates and a source of a supported type with
        /// what it needs; every error names the file and shows no value.
        #[test]
        fn any_impersonation_file(
            url in prop::option::of(url()),
            delegates in prop::option::of(delegates()),
            source in prop::option::of(prop_oneof![4 => source(), 1 => text()]),
        ) {
            let mut map = serde_json::Map::new();
            map.insert("type".into(), json!("impersonated_service_account"));
            for (k, v) in [("service_account_impersonation_url", &url), ("delegates", &delegates), ("source_credentials", &source)] {
                if let Some(v) = v {
                    map.insert(k.into(), v.clone());
                }
            }
            let path = Path::new("/creds/imp.json");
            match parse(&Value::Object(map), path) {
                Ok(file) => {
                    prop_assert_eq!(url.as_ref(), Some(&json!(URL)));
                    prop_assert!(delegates.as_ref().is_none_or(|d| d.is_null() || d.as_array().is_some_and(|a| a.iter().all(Value::is_string))));
                    let kind = source.as_ref().and_then(|s| s.get("type")).and_then(Value::as_str);
                    match file.source {
                        SourceFile::User(_) => prop_assert_eq!(kind, Some("authorized_user")),
                        SourceFile::ExternalUser(_) => prop_assert_eq!(kind, Some("external_account_authorized_user")),
                        #[cfg(feature = "service-account")]
                        SourceFile::ServiceAccount(_) => prop_assert!(false, "no key is generated"),
                    }
                }
                Err(e) => {
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains("SECRETMARKER"), "{}", text);
                    prop_assert!(text.contains("/creds/imp.json"), "{}", text);
                }
            }
        }
    }
}
