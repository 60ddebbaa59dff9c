//! The `external_account` file, read as google-auth reads it
//! (`external_account.py`, `identity_pool.py`, `aws.py`, `pluggable.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::ExternalAccountProblem as P;
use super::aws::AwsSource;
use super::executable::ExecutableSource;
use super::file::FileSource;
use super::url::UrlSource;
use crate::endpoints::DEFAULT_UNIVERSE_DOMAIN;
use crate::error::{Error, Result};
use crate::source::impersonated::principal_of;
use crate::token::TokenFileProblem;

/// The subject token type of AWS credential sources.
pub(super) const AWS_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

/// A parsed `external_account` file.
pub(crate) struct ExternalAccountConfig {
    /// The file, for messages.
    pub(crate) path: PathBuf,
    pub(crate) audience: String,
    pub(crate) subject_token_type: String,
    pub(crate) token_url: String,
    pub(crate) source: CredentialSource,
    /// `service_account_impersonation_url`.
    pub(crate) impersonation_url: Option<String>,
    /// `service_account_impersonation.token_lifetime_seconds`.
    pub(crate) impersonation_lifetime: Option<Duration>,
    pub(crate) quota_project_id: Option<String>,
    pub(crate) workforce_pool_user_project: Option<String>,
    /// Kept for callers; never used to send a token.
    #[allow(dead_code)]
    pub(crate) token_info_url: Option<String>,
    /// `client_id` and `client_secret`: HTTP Basic auth to the STS endpoint.
    pub(crate) client: Option<(String, SecretString)>,
    /// `googleapis.com` unless the file names another.
    pub(crate) universe_domain: String,
}

/// Where the subject token comes from.
pub(crate) enum CredentialSource {
    File(FileSource),
    Url(UrlSource),
    Executable(ExecutableSource),
    Aws(AwsSource),
}

/// `format` of a file or URL source: the whole text, or one field of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json { field: String },
}

/// Typed access to the file's JSON; every problem names the file.
pub(super) struct Fields<'a> {
    pub(super) path: &'a Path,
}

impl Fields<'_> {
    pub(super) fn invalid(&self, field: &'static str, reason: &'static str) -> Error {
        Error::ExternalAccount {
            path: self.path.to_owned(),
            problem: P::InvalidField { field, reason },
        }
    }

    /// A string field; empty and `null` count as absent, as google-auth's `if not x` does.
    pub(super) fn text(
        &self,
        map: &Map<String, Value>,
        key: &str,
        field: &'static str,
    ) -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(field, "is not a string")),
        }
    }

    pub(super) fn required(
        &self,
        map: &Map<String, Value>,
        key: &str,
        field: &'static str,
    ) -> Result<String> {
        self.text(map, key, field)?
            .ok_or_else(|| self.invalid(field, "is missing"))
    }

    pub(super) fn object<'v>(
        &self,
        map: &'v Map<String, Value>,
        key: &str,
        field: &'static str,
    ) -> Result<Option<&'v Map<String, Value>>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.invalid(field, "is not a JSON object")),
        }
    }

    /// A whole number of milliseconds or seconds.
    pub(super) fn number(
        &self,
        map: &Map<String, Value>,
        key: &str,
        field: &'static str,
    ) -> Result<Option<u64>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.invalid(field, "is not a whole number")),
            Some(_) => Err(self.invalid(field, "is not a number")),
        }
    }

    /// `format`: `{"type": "text"}` (the default) or
    /// `{"type": "json", "subject_token_field_name": …}`.
    pub(super) fn format(&self, source: &Map<String, Value>) -> Result<Format> {
        let Some(format) = self.object(source, "format", "credential_source.format")? else {
            return Ok(Format::Text);
        };
        match self
            .text(format, "type", "credential_source.format.type")?
            .as_deref()
        {
            None | Some("text") => Ok(Format::Text),
            Some("json") => Ok(Format::Json {
                field: self.required(
                    format,
                    "subject_token_field_name",
                    "credential_source.format.subject_token_field_name",
                )?,
            }),
            Some(_) => Err(self.invalid(
                "credential_source.format.type",
                "is neither \"text\" nor \"json\"",
            )),
        }
    }

    /// `headers`: string names to string values.
    pub(super) fn headers(&self, source: &Map<String, Value>) -> Result<BTreeMap<String, String>> {
        let field = "credential_source.headers";
        let Some(headers) = self.object(source, "headers", field)? else {
            return Ok(BTreeMap::new());
        };
        headers
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(self.invalid(field, "holds a value that is not a string")),
            })
            .collect()
    }
}

impl ExternalAccountConfig {
    /// Parses the file's JSON (already known to be an object of type
    /// `external_account`); problems name `path` and the field.
    pub(crate) fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let f = Fields { path };
        let Some(map) = value.as_object() else {
            return Err(Error::TokenFile {
                path: path.to_owned(),
                problem: TokenFileProblem::NotAnObject,
            });
        };
        let audience = f.required(map, "audience", "audience")?;
        let subject_token_type = f.required(map, "subject_token_type", "subject_token_type")?;
        let universe_domain = f
            .text(map, "universe_domain", "universe_domain")?
            .unwrap_or_else(|| DEFAULT_UNIVERSE_DOMAIN.to_owned());
        let token_url = f
            .text(map, "token_url", "token_url")?
            .unwrap_or_else(|| format!("https://sts.{universe_domain}/v1/token"));
        let source_map = f
            .object(map, "credential_source", "credential_source")?
            .ok_or_else(|| f.invalid("credential_source", "is missing"))?;
        // google-auth's dispatch: the AWS token type, else an executable, else a file or URL.
        let source = if subject_token_type == AWS_TOKEN_TYPE {
            CredentialSource::Aws(AwsSource::from_json(source_map, &f)?)
        } else if source_map.get("executable").is_some_and(|v| !v.is_null()) {
            CredentialSource::Executable(ExecutableSource::from_json(source_map, &f)?)
        } else {
            if source_map.contains_key("environment_id") {
                return Err(f.invalid(
                    "credential_source.environment_id",
                    "is only valid with the AWS subject_token_type",
                ));
            }
            let file = f.text(source_map, "file", "credential_source.file")?;
            let url = f.text(source_map, "url", "credential_source.url")?;
            if source_map.get("certificate").is_some_and(|v| !v.is_null()) {
                return Err(f.invalid(
                    "credential_source.certificate",
                    "(X.509 workload certificates, mTLS) is not supported by this crate",
                ));
            }
            match (file, url) {
                (Some(file), None) => CredentialSource::File(FileSource {
                    file: PathBuf::from(file),
                    format: f.format(source_map)?,
                }),
                (None, Some(url)) => CredentialSource::Url(UrlSource::new(
                    url,
                    f.format(source_map)?,
                    f.headers(source_map)?,
                    &f,
                )?),
                (Some(_), Some(_)) => {
                    return Err(
                        f.invalid("credential_source", "names both a file and a url; keep one")
                    );
                }
                (None, None) => {
                    return Err(f.invalid(
                        "credential_source",
                        "has no file, url, executable or AWS environment_id",
                    ));
                }
            }
        };
        let impersonation_url = f.text(
            map,
            "service_account_impersonation_url",
            "service_account_impersonation_url",
        )?;
        if impersonation_url
            .as_deref()
            .is_some_and(|u| principal_of(u).is_none())
        {
            return Err(f.invalid(
                "service_account_impersonation_url",
                "names no service account (…/serviceAccounts/EMAIL:generateAccessToken)",
            ));
        }
        let impersonation_lifetime = match f.object(
            map,
            "service_account_impersonation",
            "service_account_impersonation",
        )? {
            Some(o) => f
                .number(
                    o,
                    "token_lifetime_seconds",
                    "service_account_impersonation.token_lifetime_seconds",
                )?
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            None => None,
        };
        let workforce_pool_user_project = f.text(
            map,
            "workforce_pool_user_project",
            "workforce_pool_user_project",
        )?;
        if workforce_pool_user_project.is_some() && !is_workforce_pool(&audience) {
            return Err(f.invalid(
                "workforce_pool_user_project",
                "is only valid for workforce pools (an audience of \
                 //iam.googleapis.com/locations/…/workforcePools/…)",
            ));
        }
        let client = match f.text(map, "client_id", "client_id")? {
            Some(id) => {
                let secret = f.text(map, "client_secret", "client_secret")?;
                Some((id, SecretString::from(secret.unwrap_or_default())))
            }
            None => None,
        };
        Ok(ExternalAccountConfig {
            path: path.to_owned(),
            audience,
            subject_token_type,
            token_url,
            source,
            impersonation_url,
            impersonation_lifetime,
            quota_project_id: f.text(map, "quota_project_id", "quota_project_id")?,
            workforce_pool_user_project,
            token_info_url: f.text(map, "token_info_url", "token_info_url")?,
            client,
            universe_domain,
        })
    }

    /// The service account named by `service_account_impersonation_url`.
    pub(crate) fn impersonated_email(&self) -> Option<&str> {
        principal_of(self.impersonation_url.as_deref()?)
    }
}

/// google-auth's test: the audience names a workforce pool.
pub(super) fn is_workforce_pool(audience: &str) -> bool {
    let Some(rest) = audience.strip_prefix("//iam.googleapis.com/locations/") else {
        return false;
    };
    rest.split_once('/')
        .is_some_and(|(location, rest)| !location.is_empty() && rest.starts_with("workforcePools/"))
}

impl Format {
    /// The subject token in `content` (a file's or a URL's answer), or why
    /// there is none. Surrounding whitespace (a file's trailing newline) is
    /// not part of a token.
    pub(crate) fn extract(&self, content: &[u8]) -> std::result::Result<String, String> {
        let token = match self {
            Format::Text => std::str::from_utf8(content)
                .map_err(|_| "the content is not UTF-8 text".to_owned())?
                .trim()
                .to_owned(),
            Format::Json { field } => {
                let value: Value = serde_json::from_slice(content)
                    .map_err(|_| "the content is not JSON (format.type is \"json\")".to_owned())?;
                match value.get(field) {
                    Some(Value::String(s)) => s.trim().to_owned(),
                    Some(_) => return Err(format!("the JSON field {field:?} is not a string")),
                    None => {
                        return Err(format!(
                            "the JSON has no field {field:?} (format.subject_token_field_name)"
                        ));
                    }
                }
            }
        };
        if token.is_empty() {
            return Err("the subject token is empty".to_owned());
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => "[a-z0-9:/._{}-]{0,16}".prop_map(|s| json!(format!("SECRETMARKER{s}"))),
            1 => Just(json!("")),
            1 => Just(Value::Null),
            1 => (-10i64..200_000).prop_map(Value::from),
            1 => Just(json!({})),
        ]
    }

    fn object(keys: &'static [&'static str], inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
        prop::collection::vec(prop::option::of(inner), keys.len())
            .prop_map(move |values| {
                let map: Map<String, Value> = keys
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v)))
                    .collect();
                Value::Object(map)
            })
            .boxed()
    }

    fn config() -> impl Strategy<Value = Value> {
        let exe = object(
            &[
                "command",
                "timeout_millis",
                "output_file",
                "interactive_timeout_millis",
            ],
            scalar().boxed(),
        );
        let format = object(
            &["type", "subject_token_field_name"],
            prop_oneof![Just(json!("json")), Just(json!("text")), scalar()].boxed(),
        );
        let source_field = prop_oneof![
            scalar(),
            exe,
            format,
            Just(json!("aws1")),
            Just(json!("https://sts.{region}.amazonaws.com"))
        ]
        .boxed();
        let source = object(
            &[
                "file",
                "url",
                "executable",
                "format",
                "headers",
                "environment_id",
                "regional_cred_verification_url",
                "region_url",
                "certificate",
            ],
            source_field,
        );
        let top = prop_oneof![
            3 => scalar(),
            1 => Just(json!("urn:ietf:params:aws:token-type:aws4_request")),
            1 => Just(json!("//iam.googleapis.com/locations/global/workforcePools/p/providers/x")),
            2 => source,
        ]
        .boxed();
        object(
            &[
                "audience",
                "subject_token_type",
                "token_url",
                "credential_source",
                "service_account_impersonation_url",
                "service_account_impersonation",
                "workforce_pool_user_project",
                "client_id",
                "client_secret",
                "quota_project_id",
            ],
            top,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Never panics; an error names the file and shows no value of it.
        #[test]
        fn any_external_account_file(value in config()) {
            let path = Path::new("/creds/ea.json");
            match ExternalAccountConfig::from_json(&value, path) {
                Ok(c) => {
                    prop_assert!(!c.audience.is_empty());
                    prop_assert!(!c.subject_token_type.is_empty());
                }
                Err(e) => {
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains("SECRETMARKER"), "{}", text);
                    prop_assert!(text.contains("/creds/ea.json"), "{}", text);
                }
            }
        }
    }

    #[test]
    fn workforce_audiences_as_google_auth_matches_them() {
        assert!(is_workforce_pool(
            "//iam.googleapis.com/locations/global/workforcePools/p/providers/x"
        ));
        assert!(!is_workforce_pool(
            "//iam.googleapis.com/locations//workforcePools/p"
        ));
        assert!(!is_workforce_pool(
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p"
        ));
    }
}
