//! AWS credential sources (`environment_id: aws1`): the region and role
//! credentials from the environment (`AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`) or the
//! EC2 instance metadata (with an IMDSv2 session token when the file names
//! its URL), then a signed `GetCallerIdentity` request as the subject token.

use std::path::Path;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::ExternalAccountProblem;
use super::config::Fields;
use super::sigv4::{AwsKeys, signed_get_caller_identity};
use super::url::{Clients, MAX_ANSWER, check_source_url};
use crate::env;
use crate::error::{Error, Result};
use crate::url::redact;

const SESSION_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const SESSION_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

pub(crate) struct AwsSource {
    region_url: Option<String>,
    credentials_url: Option<String>,
    session_token_url: Option<String>,
    /// `regional_cred_verification_url`, with `{region}` still in it.
    verification_url: String,
    /// Found once, as google-auth does.
    region: OnceCell<String>,
}

impl AwsSource {
    pub(super) fn from_json(source: &Map<String, Value>, f: &Fields<'_>) -> Result<Self> {
        let field = "credential_source.environment_id";
        let env_id = f.text(source, "environment_id", field)?.unwrap_or_default();
        let version = env_id
            .strip_prefix("aws")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| f.invalid(field, "is not \"aws1\""))?;
        let verification_url = f.required(
            source,
            "regional_cred_verification_url",
            "credential_source.regional_cred_verification_url",
        )?;
        if version.parse::<u32>() != Ok(1) {
            return Err(f.invalid(
                field,
                "names an AWS version other than 1, which is not supported",
            ));
        }
        let url = |key, field| -> Result<Option<String>> {
            let v = f.text(source, key, field)?;
            if let Some(u) = &v {
                check_source_url(u, field, f)?;
            }
            Ok(v)
        };
        Ok(AwsSource {
            region_url: url("region_url", "credential_source.region_url")?,
            credentials_url: url("url", "credential_source.url")?,
            session_token_url: url(
                "imdsv2_session_token_url",
                "credential_source.imdsv2_session_token_url",
            )?,
            verification_url,
            region: OnceCell::new(),
        })
    }

    pub(super) async fn subject_token(
        &self,
        clients: &Clients<'_>,
        config_path: &Path,
        audience: &str,
    ) -> Result<String> {
        let meta = Metadata {
            clients,
            config_path,
            session: OnceCell::new(),
            session_url: self.session_token_url.as_deref(),
        };
        let region = self
            .region
            .get_or_try_init(|| async {
                if let Some(r) = env::AWS_REGION_VARS.iter().find_map(|k| env::nonempty(k)) {
                    return Ok(r);
                }
                let Some(url) = &self.region_url else {
                    return Err(invalid(
                        config_path,
                        "credential_source.region_url",
                        "is missing and neither AWS_REGION nor AWS_DEFAULT_REGION is set",
                    ));
                };
                // The availability zone (us-east-1b): the region is all but its last letter.
                let zone = meta.get(url, "credential_source.region_url").await?;
                match region_of_zone(&zone) {
                    None => Err(bad_answer(
                        config_path,
                        "credential_source.region_url",
                        url,
                        "the availability zone is empty",
                    )),
                    Some(region) => Ok(region.to_owned()),
                }
            })
            .await?;
        let [id_var, secret_var, session_var] = env::AWS_KEY_VARS;
        let keys = match (env::nonempty(id_var), env::nonempty(secret_var)) {
            (Some(id), Some(secret)) => AwsKeys {
                access_key_id: id,
                secret_access_key: SecretString::from(secret),
                session_token: env::nonempty(session_var).map(SecretString::from),
            },
            _ => self.metadata_keys(&meta).await?,
        };
        let url = self.verification_url.replace("{region}", region);
        signed_get_caller_identity(&keys, region, &url, audience, OffsetDateTime::now_utc())
            .map_err(|reason| {
                invalid(
                    config_path,
                    "credential_source.regional_cred_verification_url",
                    reason,
                )
            })
    }

    /// The role's credentials: the role name from `url`, then `url/{role}`.
    async fn metadata_keys(&self, meta: &Metadata<'_>) -> Result<AwsKeys> {
        let field = "credential_source.url";
        let Some(url) = &self.credentials_url else {
            return Err(invalid(
                meta.config_path,
                field,
                "is missing and AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set",
            ));
        };
        let role = meta.get(url, field).await?;
        let Some(role) = role_name(&role) else {
            return Err(bad_answer(
                meta.config_path,
                field,
                url,
                "the answer is not a role name",
            ));
        };
        let role_url = format!("{}/{role}", url.trim_end_matches('/'));
        let body = SecretString::from(meta.get(&role_url, field).await?);
        keys_from_json(body.expose_secret())
            .map_err(|reason| bad_answer(meta.config_path, field, &role_url, reason))
    }
}

/// The region of an availability zone (`us-east-1b`): all but its last letter.
pub(crate) fn region_of_zone(zone: &str) -> Option<&str> {
    let mut chars = zone.trim().chars();
    chars.next_back();
    Some(chars.as_str()).filter(|region| !region.is_empty())
}

/// The role name in the answer of `credential_source.url`.
pub(crate) fn role_name(answer: &str) -> Option<&str> {
    let role = answer.trim();
    (!role.is_empty() && !role.contains('/')).then_some(role)
}

/// A role's credentials as the instance metadata answers them
/// (`AccessKeyId`, `SecretAccessKey`, `Token`), or why they are unusable.
pub(crate) fn keys_from_json(body: &str) -> std::result::Result<AwsKeys, &'static str> {
    let creds: Value =
        serde_json::from_str(body).map_err(|_| "the role's credentials are not JSON")?;
    let text = |k: &str| {
        creds
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match (text("AccessKeyId"), text("SecretAccessKey")) {
        (Some(id), Some(secret)) => Ok(AwsKeys {
            access_key_id: id,
            secret_access_key: SecretString::from(secret),
            session_token: text("Token").map(SecretString::from),
        }),
        _ => Err("the role's credentials lack AccessKeyId or SecretAccessKey"),
    }
}

/// Requests to the instance metadata, with one IMDSv2 session token per refresh.
struct Metadata<'a> {
    clients: &'a Clients<'a>,
    config_path: &'a Path,
    session_url: Option<&'a str>,
    session: OnceCell<Option<SecretString>>,
}

impl Metadata<'_> {
    async fn session_token(&self) -> Result<Option<&SecretString>> {
        let token = self
            .session
            .get_or_try_init(|| async {
                let Some(url) = self.session_url else {
                    return Ok::<_, Error>(None);
                };
                let req = Request::builder()
                    .method(Method::PUT)
                    .uri(url)
                    .header(SESSION_TTL_HEADER, "300");
                let body = self
                    .send(req, url, "credential_source.imdsv2_session_token_url")
                    .await?;
                Ok(Some(SecretString::from(body)))
            })
            .await?;
        Ok(token.as_ref())
    }

    async fn get(&self, url: &str, field: &'static str) -> Result<String> {
        let mut req = Request::builder().method(Method::GET).uri(url);
        if let Some(token) = self.session_token().await? {
            let mut value = http::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                bad_answer(
                    self.config_path,
                    "credential_source.imdsv2_session_token_url",
                    self.session_url.unwrap_or(""),
                    "the session token is not a header value",
                )
            })?;
            value.set_sensitive(true);
            req = req.header(SESSION_TOKEN_HEADER, value);
        }
        self.send(req, url, field).await
    }

    async fn send(
        &self,
        req: http::request::Builder,
        url: &str,
        field: &'static str,
    ) -> Result<String> {
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|_| Error::InvalidUrl {
                url: redact(url),
                reason: "not a valid request URI",
            })?;
        let resp = self.clients.for_url(url).send(req, MAX_ANSWER).await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Error::ExternalAccount {
                path: self.config_path.to_owned(),
                problem: ExternalAccountProblem::HttpStatus {
                    field,
                    url: redact(url),
                    status,
                },
            });
        }
        String::from_utf8(resp.into_body().to_vec())
            .map_err(|_| bad_answer(self.config_path, field, url, "the answer is not UTF-8 text"))
    }
}

fn invalid(path: &Path, field: &'static str, reason: &'static str) -> Error {
    Error::ExternalAccount {
        path: path.to_owned(),
        problem: ExternalAccountProblem::InvalidField { field, reason },
    }
}

fn bad_answer(path: &Path, field: &'static str, url: &str, reason: &str) -> Error {
    Error::ExternalAccount {
        path: path.to_owned(),
        problem: ExternalAccountProblem::SubjectToken {
            field,
            location: redact(url),
            reason: reason.to_owned(),
        },
    }
}
