//! Application Default Credentials: found as google-auth finds them, and
//! written as gcloud writes them.

mod impersonated;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::credentials::Credentials;
use crate::credentials_file::{CredentialsFileKind, file_error, is_oauth_client};
use crate::endpoints::DEFAULT_UNIVERSE_DOMAIN;
use crate::env::{self, CLOUDSDK_CONFIG, GOOGLE_APPLICATION_CREDENTIALS, NO_GCE_CHECK};
use crate::error::{Error, Result};
use crate::source::external_user::ExternalUserFile;
use crate::source::metadata::{self, MetadataServer};
use crate::store::file::write_atomically;
use crate::token::{StoredToken, TokenFileProblem};
use crate::universe::Universe;

pub use impersonated::save_impersonated_service_account;
pub(crate) use impersonated::{ImpersonatedFile, SourceFile};

/// The file name gcloud uses for Application Default Credentials.
pub const ADC_FILE_NAME: &str = "application_default_credentials.json";

/// Where `gcloud auth application-default login` writes its file:
/// `$CLOUDSDK_CONFIG/`, else `~/.config/gcloud/` (`%APPDATA%\gcloud\` on Windows).
pub fn well_known_file() -> Option<PathBuf> {
    let nonempty = |k| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty(CLOUDSDK_CONFIG) {
        return Some(PathBuf::from(dir).join(ADC_FILE_NAME));
    }
    #[cfg(windows)]
    let base = nonempty("APPDATA").map(|d| PathBuf::from(d).join("gcloud"));
    #[cfg(not(windows))]
    let base = nonempty("HOME").map(|d| PathBuf::from(d).join(".config").join("gcloud"));
    base.map(|d| d.join(ADC_FILE_NAME))
}

/// What the search found.
pub(crate) enum Found {
    User {
        record: Box<StoredToken>,
        path: PathBuf,
    },
    #[cfg(feature = "service-account")]
    ServiceAccount(Box<crate::source::service_account::ServiceAccountKey>),
    Metadata(MetadataServer),
    Impersonated(Box<ImpersonatedFile>),
    ExternalUser(Box<ExternalUserFile>),
    ExternalAccount(Box<crate::source::external_account::ExternalAccountConfig>),
}

/// Looks where google-auth looks, in its order; the error lists every place.
pub(crate) async fn find(scopes: &[String]) -> Result<Found> {
    let mut tried = Vec::new();
    match std::env::var_os(GOOGLE_APPLICATION_CREDENTIALS).filter(|v| !v.is_empty()) {
        // An explicit file that is missing is an error, not a reason to look elsewhere.
        Some(path) => return from_file(Path::new(&path)).await,
        None => tried.push(format!("{GOOGLE_APPLICATION_CREDENTIALS} (not set)")),
    }
    match well_known_file() {
        Some(path) if path.exists() => return from_file(&path).await,
        Some(path) => tried.push(format!("{} (no such file)", path.display())),
        None => tried.push("gcloud's configuration directory (no HOME or APPDATA)".to_owned()),
    }
    let skip =
        env::nonempty(NO_GCE_CHECK).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let host = metadata::host();
    if skip {
        tried.push(format!(
            "the metadata server (skipped: {NO_GCE_CHECK}=true)"
        ));
    } else if let Some(server) = MetadataServer::detect(&host, scopes).await {
        return Ok(Found::Metadata(server));
    } else {
        tried.push(format!("the metadata server at {host} (no answer)"));
    }
    Err(Error::NoCredentials { tried })
}

/// Reads the credentials file at `path`, whatever its type.
pub(crate) async fn from_file(path: &Path) -> Result<Found> {
    let bytes = crate::store::file::read_capped(path, false).map_err(|e| match e {
        Error::TokenFile { path, problem } => {
            file_error(&path, CredentialsFileKind::Unknown, problem)
        }
        other => other,
    })?;
    parse(&bytes, path)
}

/// Dispatches on the file's `type`; problems name `path` and the field.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Found> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let problem = TokenFileProblem::NotJson {
            line: e.line(),
            column: e.column(),
        };
        file_error(path, CredentialsFileKind::Unknown, problem)
    })?;
    let unknown = |problem| file_error(path, CredentialsFileKind::Unknown, problem);
    let kind = match value.get("type") {
        _ if !value.is_object() => return Err(unknown(TokenFileProblem::NotAnObject)),
        None | Some(Value::Null) => "",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(unknown(TokenFileProblem::WrongType("type"))),
    };
    let bad = |problem| file_error(path, CredentialsFileKind::of_type(kind), problem);
    match kind {
        "authorized_user" => {
            let record = StoredToken::from_json(bytes).map_err(bad)?;
            check_authorized_user(&record, false).map_err(bad)?;
            Ok(Found::User {
                record: Box::new(record),
                path: path.to_owned(),
            })
        }
        #[cfg(feature = "service-account")]
        "service_account" => Ok(Found::ServiceAccount(Box::new(
            crate::source::service_account::ServiceAccountKey::from_json(bytes, path)?,
        ))),
        #[cfg(not(feature = "service-account"))]
        "service_account" => Err(Error::UnsupportedCredential {
            path: path.to_owned(),
            kind: kind.to_owned(),
            hint: "; enable the crate feature `service-account`",
        }),
        "impersonated_service_account" => Ok(Found::Impersonated(Box::new(impersonated::parse(
            &value, path,
        )?))),
        "external_account_authorized_user" => Ok(Found::ExternalUser(Box::new(
            ExternalUserFile::from_value(&value, path, false)?,
        ))),
        "external_account" => Ok(Found::ExternalAccount(Box::new(
            crate::source::external_account::ExternalAccountConfig::from_json(&value, path)?,
        ))),
        "" => {
            let kind = match is_oauth_client(&value) {
                true => CredentialsFileKind::OAuthClient,
                false => CredentialsFileKind::Unknown,
            };
            Err(file_error(
                path,
                kind,
                TokenFileProblem::MissingField("type"),
            ))
        }
        other => Err(Error::UnsupportedCredential {
            path: path.to_owned(),
            kind: other.to_owned(),
            hint: "; supported: authorized_user, service_account, \
                   impersonated_service_account, external_account and \
                   external_account_authorized_user (use `gcloud auth application-default \
                   login` for user credentials)",
        }),
    }
}

/// The `universe_domain` of a user's file at `path` (default `googleapis.com`).
pub(crate) fn user_universe(record: &StoredToken, path: &Path) -> Result<Universe> {
    match record.universe_domain.as_deref() {
        Some(d) if !d.is_empty() => Universe::from_origin(d, &path.display().to_string()),
        _ => Ok(Universe::default()),
    }
}

/// The fields a user's file needs to refresh (`source_credentials.…` when `nested`).
fn check_authorized_user(record: &StoredToken, nested: bool) -> Result<(), TokenFileProblem> {
    for (field, nested_field, present) in [
        (
            "refresh_token",
            "source_credentials.refresh_token",
            record.refresh_token.is_some(),
        ),
        (
            "client_id",
            "source_credentials.client_id",
            record.client_id.is_some(),
        ),
        (
            "client_secret",
            "source_credentials.client_secret",
            record.client_secret.is_some(),
        ),
    ] {
        if !present {
            let name = if nested { nested_field } else { field };
            return Err(TokenFileProblem::MissingField(name));
        }
    }
    Ok(())
}

/// Writes `creds` as an `authorized_user` ADC file exactly as gcloud does
/// (sorted keys, two-space indent): `client_id`, `client_secret`,
/// `refresh_token`, `type`, `quota_project_id` when set, `account`,
/// `universe_domain`. Atomic, mode 0600. Returns the path written
/// (`path`, else [`well_known_file`]).
///
/// # Errors
/// [`Error::NotUserCredentials`] when `creds` are not user credentials with
/// a refresh token, [`Error::NoCredentials`] when no path can be determined,
/// and I/O errors.
pub async fn save_authorized_user(creds: &Credentials, path: Option<&Path>) -> Result<PathBuf> {
    let not_user = || Error::NotUserCredentials {
        what: "writing an authorized_user file",
        source_name: creds.source(),
    };
    let record = creds.stored_token().ok_or_else(not_user)?;
    let path = match path {
        Some(p) => p.to_owned(),
        None => well_known_file().ok_or_else(|| Error::NoCredentials {
            tried: vec!["HOME, APPDATA and CLOUDSDK_CONFIG are all unset".into()],
        })?,
    };
    let json = authorized_user_json(&record, creds.quota_project()).ok_or_else(not_user)?;
    write_atomically(path.clone(), json.into_bytes()).await?;
    Ok(path)
}

fn authorized_user_json(record: &StoredToken, quota_project: Option<&str>) -> Option<String> {
    serde_json::to_string_pretty(&Value::Object(authorized_user_object(
        record,
        quota_project,
    )?))
    .ok()
}

/// gcloud's `authorized_user` object, keys sorted; `None` without a refresh token.
fn authorized_user_object(
    record: &StoredToken,
    quota_project: Option<&str>,
) -> Option<Map<String, Value>> {
    let mut fields = vec![
        ("account", record.account.clone().unwrap_or_default()),
        ("client_id", record.client_id.clone()?),
        ("client_secret", record.client_secret()?.to_owned()),
        ("refresh_token", record.refresh_token()?.to_owned()),
        ("type", "authorized_user".to_owned()),
        (
            "universe_domain",
            record
                .universe_domain
                .clone()
                .unwrap_or_else(|| DEFAULT_UNIVERSE_DOMAIN.to_owned()),
        ),
    ];
    if let Some(q) = quota_project {
        fields.push(("quota_project_id", q.to_owned()));
    }
    fields.sort_by_key(|(k, _)| *k);
    Some(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcloud_format_sorted_and_indented() {
        let record = StoredToken::from_json(
            br#"{"refresh_token": "r", "client_id": "c", "client_secret": "s", "account": ""}"#,
        )
        .unwrap();
        assert_eq!(
            authorized_user_json(&record, Some("proj")).unwrap(),
            "{\n  \"account\": \"\",\n  \"client_id\": \"c\",\n  \"client_secret\": \"s\",\n  \"quota_project_id\": \"proj\",\n  \"refresh_token\": \"r\",\n  \"type\": \"authorized_user\",\n  \"universe_domain\": \"googleapis.com\"\n}"
        );
        let no_refresh =
            StoredToken::from_json(br#"{"client_id": "c", "client_secret": "s"}"#).unwrap();
        assert!(authorized_user_json(&no_refresh, None).is_none());
    }

    #[test]
    fn a_file_of_another_shape_says_so() {
        let problem = |json: &str| match parse(json.as_bytes(), Path::new("adc.json")) {
            Err(Error::CredentialsFile(p)) => p.problem,
            other => panic!("{json}: {:?}", other.err()),
        };
        for json in ["[1]", "42", "null", "\"text\""] {
            assert_eq!(problem(json), TokenFileProblem::NotAnObject, "{json}");
        }
        for json in [r#"{"type": ["authorized_user"]}"#, r#"{"type": 7}"#] {
            assert_eq!(problem(json), TokenFileProblem::WrongType("type"), "{json}");
        }
        assert_eq!(problem("{}"), TokenFileProblem::MissingField("type"));
    }

    mod properties {
        //! The file-type dispatch on whatever a credentials file might hold.

        use super::*;
        use proptest::prelude::*;
        use serde_json::json;

        fn field() -> impl Strategy<Value = Value> {
            prop_oneof![
                4 => "[a-z0-9._/-]{0,12}".prop_map(|s| json!(format!("SECRETMARKER{s}"))),
                1 => Just(Value::Null),
                1 => any::<i64>().prop_map(Value::from),
                1 => Just(json!([])),
                1 => Just(json!({})),
            ]
        }

        fn kind() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(json!("authorized_user")),
                Just(json!("service_account")),
                Just(json!("external_account")),
                Just(json!("impersonated_service_account")),
                Just(json!("external_account_authorized_user")),
                Just(json!("")),
                Just(json!(7)),
                Just(Value::Null),
                "[a-z_]{1,20}".prop_map(Value::from),
            ]
        }

        fn file() -> impl Strategy<Value = Vec<u8>> {
            let keys = [
                "refresh_token",
                "client_id",
                "client_secret",
                "token_uri",
                "private_key",
                "client_email",
                "private_key_id",
                "quota_project_id",
            ];
            let object = (
                prop::option::of(kind()),
                prop::collection::vec(prop::option::of(field()), keys.len()),
            )
                .prop_map(move |(kind, values)| {
                    let mut map = Map::new();
                    if let Some(kind) = kind {
                        map.insert("type".into(), kind);
                    }
                    for (key, value) in keys.iter().zip(values) {
                        if let Some(v) = value {
                            map.insert((*key).into(), v);
                        }
                    }
                    serde_json::to_vec(&Value::Object(map)).unwrap()
                });
            prop_oneof![
                4 => object,
                1 => prop::collection::vec(any::<u8>(), 0..64),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Never panics; an `authorized_user` file with the three
            /// strings it needs is a user's credentials, other types are
            /// named; every error names the file and shows no field value.
            #[test]
            fn any_credentials_file(bytes in file()) {
                let path = Path::new("/creds/adc.json");
                let value: Option<Value> = serde_json::from_slice(&bytes).ok();
                let get = |k: &str| value.as_ref().and_then(|v| v.get(k));
                let is_str = |k: &str| get(k).is_some_and(Value::is_string);
                let complete_user = get("type").and_then(Value::as_str) == Some("authorized_user")
                    && ["refresh_token", "client_id", "client_secret"].iter().all(|k| is_str(k))
                    && (get("token_uri").is_none() || is_str("token_uri"));
                let result = parse(&bytes, path);
                if complete_user {
                    prop_assert!(matches!(result, Ok(Found::User { .. })), "{:?}", result.as_ref().err());
                }
                match result {
                    Ok(Found::User { record, path: p }) => {
                        prop_assert_eq!(get("type").and_then(Value::as_str), Some("authorized_user"));
                        prop_assert_eq!(p.as_path(), path);
                        prop_assert!(record.refresh_token().is_some());
                    }
                    #[cfg(feature = "service-account")]
                    Ok(Found::ServiceAccount(_)) => prop_assert!(false, "no valid key is generated"),
                    Ok(Found::Metadata(_)) => prop_assert!(false, "a file is never the metadata server"),
                    Ok(Found::Impersonated(_)) => prop_assert!(false, "no source_credentials is generated"),
                    Ok(Found::ExternalUser(_)) => prop_assert!(false, "no token_url is generated"),
                    Ok(Found::ExternalAccount(_)) => prop_assert!(false, "no file has an audience"),
                    Err(e) => {
                        let text = format!("{e} {e:?}");
                        prop_assert!(!text.contains("SECRETMARKER"), "{}", text);
                        prop_assert!(text.contains("/creds/adc.json"), "{}", text);
                        if let Some(kind) = get("type").and_then(Value::as_str) {
                            let known = ["authorized_user", "service_account", "impersonated_service_account",
                                "external_account_authorized_user", "external_account", ""].contains(&kind);
                            if !known {
                                let named = matches!(&e, Error::UnsupportedCredential { kind: k, .. } if k == kind);
                                prop_assert!(named, "{:?}", e);
                            }
                        }
                    }
                }
            }
        }
    }
}
