//! Service-account impersonation: the source credentials' token (from a
//! token cache of their own, so it is reused until it expires) buys a token
//! for another service account from the IAM Credentials API
//! (`POST …/projects/-/serviceAccounts/{sa}:generateAccessToken`), as
//! google-auth's `impersonated_credentials` and gcloud's
//! `--impersonate-service-account` do.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::access_token::AccessToken;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::retry::retry_after;
use crate::token_cache::{BoxFuture, Fetched, TokenCache, TokenSource};
use crate::token_endpoint::{MAX_TOKEN_RESPONSE, Retry};
use crate::url::{check_endpoint, join, redact};

/// An attempt's result; a failure carries the answer's `Retry-After`.
type Hinted<T> = std::result::Result<T, (Error, Option<Duration>)>;

fn no_hint(e: Error) -> (Error, Option<Duration>) {
    (e, None)
}

/// Google's IAM Credentials API, used when nothing overrides it.
pub(crate) const IAM_CREDENTIALS_BASE: &str = "https://iamcredentials.googleapis.com";
/// The lifetime asked for, as google-auth and gcloud ask (Google's maximum
/// without an organization policy).
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The method after the account's resource name.
const GENERATE: &str = ":generateAccessToken";
/// The method that makes ID tokens instead.
const GENERATE_ID: &str = ":generateIdToken";
/// How delegates and targets are named in the request.
const ACCOUNT_PREFIX: &str = "projects/-/serviceAccounts/";

/// What is wrong with the IAM Credentials API's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImpersonationProblem {
    /// Google refused: its `error.status` (e.g. `PERMISSION_DENIED`) and
    /// `error.message`.
    Refused {
        /// `error.status`, when given.
        status: Option<String>,
        /// `error.message`, or a note that the body was not Google's error.
        message: String,
    },
    /// A field the answer must have is missing (or not a string).
    MissingField(&'static str),
    /// A field has a value that cannot be used (`expireTime` not RFC 3339,
    /// an ID `token` not a JWT).
    InvalidField(&'static str),
    /// The body is not a JSON object.
    NotJson,
}

impl fmt::Display for ImpersonationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImpersonationProblem::Refused { status, message } => {
                if let Some(s) = status {
                    write!(f, "{s}: ")?;
                }
                f.write_str(message)?;
                f.write_str(match status.as_deref() {
                    Some("NOT_FOUND") => "; check the service account's email",
                    Some("INVALID_ARGUMENT") => "; check the scopes, delegates and lifetime",
                    _ => {
                        "; the source credentials need the Service Account Token Creator role \
                         (roles/iam.serviceAccountTokenCreator) on the account (and on each \
                         delegate), and the project needs iamcredentials.googleapis.com enabled"
                    }
                })
            }
            ImpersonationProblem::MissingField(field) => {
                write!(f, "the answer has no \"{field}\"")
            }
            ImpersonationProblem::InvalidField(field @ "token") => write!(
                f,
                "\"{field}\" in the answer is not a JWT with a numeric \"exp\" claim"
            ),
            ImpersonationProblem::InvalidField(field) => write!(
                f,
                "\"{field}\" in the answer is not an RFC 3339 time (such as 2026-01-01T00:00:00Z)"
            ),
            ImpersonationProblem::NotJson => f.write_str("the answer is not a JSON object"),
        }
    }
}

/// The account to impersonate and where to ask for its tokens.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The full `…:generateAccessToken` URL.
    pub(crate) url: String,
    /// The account's email (or unique id).
    pub(crate) principal: String,
    /// Accounts in the delegation chain, each able to impersonate the next.
    pub(crate) delegates: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) lifetime: Duration,
}

impl Target {
    /// `principal` at `iam_base` (default [`IAM_CREDENTIALS_BASE`]).
    pub(crate) fn new(
        principal: &str,
        delegates: Vec<String>,
        scopes: Vec<String>,
        iam_base: Option<&str>,
    ) -> Self {
        let base = iam_base.unwrap_or(IAM_CREDENTIALS_BASE);
        Target {
            url: join(base, &format!("v1/{ACCOUNT_PREFIX}{principal}{GENERATE}")),
            principal: principal.to_owned(),
            delegates,
            scopes,
            lifetime: DEFAULT_LIFETIME,
        }
    }

    /// From a file's `service_account_impersonation_url`, whose host
    /// `iam_base` replaces when given (the path is kept). `None` when the
    /// URL names no account (`…/{sa}:generateAccessToken`), as google-auth
    /// reads it.
    pub(crate) fn from_url(
        url: &str,
        delegates: Vec<String>,
        scopes: Vec<String>,
        iam_base: Option<&str>,
    ) -> Option<Self> {
        let principal = principal_of(url)?;
        let url = match iam_base {
            Some(base) => join(base, path_of(url)?),
            None => url.to_owned(),
        };
        Some(Target {
            url,
            principal: principal.to_owned(),
            delegates,
            scopes,
            lifetime: DEFAULT_LIFETIME,
        })
    }

    /// The JSON body google-auth sends; delegates named as the API names
    /// accounts (gcloud writes bare emails).
    fn body(&self) -> Bytes {
        Bytes::from(
            json!({
                "delegates": self.delegates(),
                "scope": self.scopes,
                "lifetime": format!("{}s", self.lifetime.as_secs()),
            })
            .to_string(),
        )
    }
}

impl Target {
    fn delegates(&self) -> Vec<String> {
        self.delegates
            .iter()
            .map(|d| {
                if d.starts_with("projects/") {
                    d.clone()
                } else {
                    format!("{ACCOUNT_PREFIX}{d}")
                }
            })
            .collect()
    }

    /// The `generateIdToken` call for `audience` beside the target's
    /// `generateAccessToken` URL, with google-auth's body (`includeEmail`,
    /// as its `fetch_id_token` asks).
    fn id_call(&self, audience: &str) -> Call {
        let url = match self.url.rsplit_once(GENERATE) {
            Some((head, tail)) => format!("{head}{GENERATE_ID}{tail}"),
            None => self.url.clone(),
        };
        let body = json!({
            "audience": audience,
            "delegates": self.delegates(),
            "includeEmail": true,
        });
        Call {
            url,
            body: Bytes::from(body.to_string()),
            parse: parse_id_answer,
            name: "IAM generateIdToken",
        }
    }
}

/// One kind of IAM call: where, what, and how its answer is read.
struct Call {
    url: String,
    body: Bytes,
    parse: fn(u16, &[u8]) -> std::result::Result<Fetched, ImpersonationProblem>,
    name: &'static str,
}

/// The account in `…/{sa}:generateAccessToken` (google-auth's reading).
pub(crate) fn principal_of(url: &str) -> Option<&str> {
    let start = url.rfind('/')?.saturating_add(1);
    let end = url.find(GENERATE)?;
    (start < end).then(|| &url[start..end])
}

/// The path of an absolute URL (`/v1/projects/…`).
fn path_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    rest.find('/').map(|i| &rest[i..])
}

/// Impersonation as a token source over the source credentials' cache.
pub(crate) struct Impersonated {
    source: TokenCache,
    target: Target,
    /// `generateAccessToken`.
    access: Call,
    http: Arc<HttpClient>,
    retry: Retry,
}

impl Impersonated {
    pub(crate) fn new(source: TokenCache, target: Target, http: Arc<HttpClient>) -> Self {
        Impersonated {
            source,
            access: Call {
                url: target.url.clone(),
                body: target.body(),
                parse: parse_answer,
                name: "IAM generateAccessToken",
            },
            target,
            http,
            retry: Retry::default(),
        }
    }

    fn error(&self, call: &Call, status: u16, problem: ImpersonationProblem) -> Error {
        Error::Impersonation {
            target: self.target.principal.clone(),
            endpoint: redact(&call.url),
            status,
            problem,
        }
    }

    /// One `call` with `token`; `Ok(None)` on a 401. A failed answer's
    /// `Retry-After` comes with its error, for the retry policy.
    async fn call(&self, call: &Call, token: &AccessToken) -> Hinted<Option<Fetched>> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(&call.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, token.header_value().clone())
            .body(Full::new(call.body.clone()))
            .map_err(|_| Error::InvalidUrl {
                url: redact(&call.url),
                reason: "not a valid request URI",
            })
            .map_err(no_hint)?;
        let resp = self
            .http
            .send(req, MAX_TOKEN_RESPONSE)
            .await
            .map_err(no_hint)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        let status = resp.status().as_u16();
        (call.parse)(status, resp.body())
            .map(Some)
            .map_err(|problem| {
                (
                    self.error(call, status, problem),
                    retry_after(resp.headers()),
                )
            })
    }

    /// A call with the source's current token; after a 401 once more with a
    /// new one (the source token was revoked or rotated elsewhere).
    async fn attempt(&self, call: &Call) -> Hinted<Fetched> {
        let token = self.source.token().await.map_err(no_hint)?;
        if let Some(fetched) = self.call(call, &token).await? {
            return Ok(fetched);
        }
        let token = self.source.refresh_after(&token).await.map_err(no_hint)?;
        self.call(call, &token)
            .await?
            .ok_or_else(|| {
                self.error(
                    call,
                    401,
                    ImpersonationProblem::Refused {
                        status: Some("UNAUTHENTICATED".into()),
                        message: "the source credentials' token was not accepted".into(),
                    },
                )
            })
            .map_err(no_hint)
    }
}

/// A successful answer's JSON object, or Google's refusal.
fn answer_map(
    status: u16,
    body: &[u8],
) -> std::result::Result<serde_json::Map<String, Value>, ImpersonationProblem> {
    let json: Option<serde_json::Map<String, Value>> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let error = json.as_ref().and_then(|m| m.get("error"));
        let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
        return Err(ImpersonationProblem::Refused {
            status: text("status").map(str::to_owned),
            message: text("message")
                .map(|m| m.chars().take(1000).collect())
                .unwrap_or_else(|| "the answer is not a Google API error".to_owned()),
        });
    }
    json.ok_or(ImpersonationProblem::NotJson)
}

/// A string field of an answer.
fn field<'a>(
    map: &'a serde_json::Map<String, Value>,
    k: &'static str,
) -> std::result::Result<&'a str, ImpersonationProblem> {
    map.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(ImpersonationProblem::MissingField(k))
}

/// Parses a `generateIdToken` answer (`token`, whose `exp` is its expiry).
fn parse_id_answer(status: u16, body: &[u8]) -> std::result::Result<Fetched, ImpersonationProblem> {
    let map = answer_map(status, body)?;
    crate::id_token::fetched(field(&map, "token")?)
        .map_err(|_| ImpersonationProblem::InvalidField("token"))
}

/// Parses a `generateAccessToken` answer (`accessToken`, `expireTime`).
pub(crate) fn parse_answer(
    status: u16,
    body: &[u8],
) -> std::result::Result<Fetched, ImpersonationProblem> {
    let map = answer_map(status, body)?;
    let token = field(&map, "accessToken")?;
    let expires_at: SystemTime = OffsetDateTime::parse(field(&map, "expireTime")?, &Rfc3339)
        .map_err(|_| ImpersonationProblem::InvalidField("expireTime"))?
        .into();
    Ok(Fetched {
        token: SecretString::from(token.to_owned()),
        expires_at,
        refresh_token_rotated: false,
    })
}

impl Impersonated {
    /// `call` with the retry policy.
    async fn run(&self, call: &Call) -> Result<Fetched> {
        check_endpoint(&call.url)?;
        self.retry
            .run_hinted(call.name, || self.attempt(call))
            .await
    }
}

impl TokenSource for Impersonated {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move { self.run(&self.access).await })
    }

    fn id_token<'a>(&'a self, audience: &'a str) -> Option<BoxFuture<'a, Result<Fetched>>> {
        Some(Box::pin(async move {
            self.run(&self.target.id_call(audience)).await
        }))
    }

    fn describe(&self) -> String {
        format!(
            "service account {} impersonated by {}",
            self.target.principal,
            self.source.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_is_read_as_google_auth_reads_it() {
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken";
        assert_eq!(principal_of(url), Some("sa@p.iam.gserviceaccount.com"));
        assert_eq!(principal_of("https://x/v1/sa"), None);
        assert_eq!(principal_of("https://x/:generateAccessToken/a"), None);
        let t = Target::from_url(url, vec![], vec![], Some("http://127.0.0.1:9/iam/")).unwrap();
        assert_eq!(
            t.url,
            "http://127.0.0.1:9/iam/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
        );
        assert_eq!(
            Target::new("a@b", vec![], vec![], None).url,
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b:generateAccessToken"
        );
    }

    #[test]
    fn the_body_names_delegates_as_the_api_does() {
        let t = Target::new(
            "a@b",
            vec!["d1@p".into(), "projects/-/serviceAccounts/d2@p".into()],
            vec!["s1".into(), "s2".into()],
            None,
        );
        let body: Value = serde_json::from_slice(&t.body()).unwrap();
        assert_eq!(
            body,
            json!({"delegates": ["projects/-/serviceAccounts/d1@p", "projects/-/serviceAccounts/d2@p"],
                   "scope": ["s1", "s2"], "lifetime": "3600s"})
        );
    }

    #[test]
    fn answers_are_parsed_or_name_the_field() {
        let ok = parse_answer(
            200,
            br#"{"accessToken": "ya29.x", "expireTime": "2030-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(
            ok.expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_553_445)
        );
        let bad = |status, body: &str| parse_answer(status, body.as_bytes()).err().unwrap();
        assert_eq!(
            bad(200, r#"{"accessToken": "t", "expireTime": "tomorrow"}"#),
            ImpersonationProblem::InvalidField("expireTime")
        );
        assert_eq!(
            bad(200, r#"{"expireTime": "2030-01-02T03:04:05Z"}"#),
            ImpersonationProblem::MissingField("accessToken")
        );
        assert_eq!(
            bad(200, r#"{"accessToken": "t"}"#),
            ImpersonationProblem::MissingField("expireTime")
        );
        assert_eq!(bad(200, "<html>"), ImpersonationProblem::NotJson);
        let missing = bad(
            404,
            r#"{"error": {"code": 404, "message": "Not found; Gaia id not found for email x@y", "status": "NOT_FOUND"}}"#,
        )
        .to_string();
        assert!(
            missing.contains("check the service account's email"),
            "{missing}"
        );
        assert!(!missing.contains("Token Creator"), "{missing}");
        assert_eq!(
            bad(
                403,
                r#"{"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied", "status": "PERMISSION_DENIED"}}"#
            ),
            ImpersonationProblem::Refused {
                status: Some("PERMISSION_DENIED".into()),
                message: "Permission 'iam.serviceAccounts.getAccessToken' denied".into()
            }
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any bytes, any status: no panic, and a problem never shows the token.
            #[test]
            fn any_answer(
                status in prop_oneof![Just(200u16), 100u16..600],
                raw in prop::collection::vec(any::<u8>(), 0..64),
                expire in prop_oneof![
                    Just("2030-01-02T03:04:05Z".to_owned()),
                    Just("2030-01-02T03:04:05.123456789+02:00".to_owned()),
                    "[0-9TZ:.+-]{0,25}",
                ],
                json in any::<bool>(),
            ) {
                let body = if json {
                    serde_json::to_vec(&json!({"accessToken": "ya29.TOKENMARKER", "expireTime": expire})).unwrap()
                } else {
                    raw
                };
                match parse_answer(status, &body) {
                    Ok(f) => {
                        prop_assert!((200..300).contains(&status) && json);
                        prop_assert!(OffsetDateTime::parse(&expire, &Rfc3339).is_ok());
                        prop_assert!(f.expires_at > SystemTime::UNIX_EPOCH);
                    }
                    Err(problem) => prop_assert!(!problem.to_string().contains("TOKENMARKER")),
                }
            }
        }
    }
}
