//! The OAuth token endpoint: the `refresh_token` and `authorization_code`
//! grants and revocation, with bounded retries for transient failures, and
//! the parsing of its answers ([`OAuthError`] codes included).

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::token::StoredToken;
use crate::url::{check_endpoint, redact};

/// Longer lifetimes are clamped: no access token lives a year, and absurd
/// values must not overflow expiry arithmetic.
const MAX_EXPIRES_IN: u64 = 365 * 24 * 3600;

/// Token responses are small; anything larger is not one.
pub(crate) const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Lifetime assumed when the token endpoint sends no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A successful token endpoint answer.
pub(crate) struct TokenResponse {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Option<u64>,
    pub(crate) scope: Option<String>,
    pub(crate) refresh_token: Option<SecretString>,
    #[allow(dead_code)] // kept for callers that want the identity, never logged
    pub(crate) id_token: Option<SecretString>,
}

impl TokenResponse {
    /// When the new access token expires.
    pub(crate) fn expires_at(&self) -> SystemTime {
        let lifetime = self
            .expires_in
            .map(|s| Duration::from_secs(s.min(MAX_EXPIRES_IN)))
            .unwrap_or(DEFAULT_LIFETIME);
        let now = SystemTime::now();
        now.checked_add(lifetime).unwrap_or(now)
    }

    /// Records the answer: new token and expiry, granted scopes, and a
    /// rotated refresh token when the server sent one.
    pub(crate) fn apply_to(self, record: &mut StoredToken) {
        record.set_expiry(self.expires_at());
        record.token = Some(self.access_token);
        if let Some(scope) = self.scope {
            record.scopes = Some(scope.split_whitespace().map(str::to_owned).collect());
        }
        if let Some(rotated) = self.refresh_token {
            record.refresh_token = Some(rotated);
        }
    }
}

/// How often and how patiently transient failures are retried (see [`crate::retry`]).
pub(crate) use crate::retry::RetryPolicy as Retry;

/// The client credentials Google expects in the form body of every grant.
pub(crate) struct Client<'a> {
    pub(crate) id: &'a str,
    pub(crate) secret: &'a SecretString,
}

/// `grant_type=refresh_token`.
pub(crate) async fn refresh(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    client: &Client<'_>,
    refresh_token: &SecretString,
) -> Result<TokenResponse> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client.id),
        ("client_secret", client.secret.expose_secret()),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    post_form(http, retry, token_uri, &form).await
}

/// `e`, a refresh grant's failure, with an `invalid_grant` answer made
/// [`Error::InvalidGrant`] naming `store`, where the refresh token came from.
pub(crate) fn invalid_grant_in(e: Error, store: String) -> Error {
    match e {
        Error::OAuth {
            error: OAuthError::InvalidGrant,
            description,
            ..
        } => Error::InvalidGrant { description, store },
        other => other,
    }
}

/// The JWT bearer grant (RFC 7523) of service-account keys.
#[cfg(feature = "service-account")]
pub(crate) async fn jwt_bearer(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    assertion: &SecretString,
) -> Result<TokenResponse> {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.expose_secret()),
    ];
    post_form(http, retry, token_uri, &form).await
}

/// `grant_type=authorization_code` with the PKCE verifier.
#[allow(dead_code)] // used by the consent flow
pub(crate) async fn exchange_code(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    client: &Client<'_>,
    code: &SecretString,
    verifier: &SecretString,
    redirect_uri: &str,
) -> Result<TokenResponse> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.expose_secret()),
        ("code_verifier", verifier.expose_secret()),
        ("redirect_uri", redirect_uri),
        ("client_id", client.id),
        ("client_secret", client.secret.expose_secret()),
    ];
    // A code is single-use: a retry after the server may have seen it would
    // fail with invalid_grant and hide the real error, so only one attempt.
    let retry = Retry {
        attempts: 1,
        ..retry
    };
    post_form(http, retry, token_uri, &form).await
}

/// Revokes `token` (RFC 7009 as Google implements it). An `invalid_token`
/// answer means the server no longer knows it: already revoked.
pub(crate) async fn revoke(
    http: &HttpClient,
    retry: Retry,
    revoke_uri: &str,
    token: &SecretString,
) -> Result<()> {
    match post_form(http, retry, revoke_uri, &[("token", token.expose_secret())]).await {
        Ok(_) => Ok(()),
        Err(Error::OAuth {
            error: OAuthError::Other(code),
            ..
        }) if code == "invalid_token" => Ok(()),
        // Google's revoke answers 200 with an empty body, which is not a token response.
        Err(Error::TokenResponse { status, .. }) if (200..300).contains(&status) => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`revoke`], then, when the server asks for the client's credentials
/// (RFC 7009 §2.1: `invalid_client`, or `invalid_request` for none sent;
/// Google's endpoint never does), once more with them in the form.
pub(crate) async fn revoke_as(
    http: &HttpClient,
    retry: Retry,
    revoke_uri: &str,
    token: &SecretString,
    client: Option<&Client<'_>>,
) -> Result<()> {
    let first = revoke(http, retry, revoke_uri, token).await;
    let Some(client) = client else { return first };
    match first {
        Err(Error::OAuth {
            error: OAuthError::InvalidClient | OAuthError::InvalidRequest,
            ..
        }) => {}
        other => return other,
    }
    let form = [
        ("token", token.expose_secret()),
        ("client_id", client.id),
        ("client_secret", client.secret.expose_secret()),
    ];
    match post_form(http, retry, revoke_uri, &form).await {
        Ok(_) => Ok(()),
        Err(Error::TokenResponse { status, .. }) if (200..300).contains(&status) => Ok(()),
        Err(Error::OAuth {
            error: OAuthError::Other(code),
            ..
        }) if code == "invalid_token" => Ok(()),
        Err(e) => Err(e),
    }
}

async fn post_form(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    form: &[(&str, &str)],
) -> Result<TokenResponse> {
    post_form_with(http, retry, token_uri, form, None).await
}

/// The client's id and secret as an HTTP Basic `Authorization` value, as
/// google-auth's STS client sends them (`id:secret`, not form-encoded).
pub(crate) fn basic_auth(client: &Client<'_>) -> Result<http::HeaderValue> {
    use base64::Engine;
    let pair = format!("{}:{}", client.id, client.secret.expose_secret());
    let mut value = http::HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
    .map_err(|_| Error::InvalidHeaderValue {
        what: "the client id and secret",
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `grant_type=refresh_token` with the client in a Basic `Authorization`
/// header (`external_account_authorized_user` files at Google's STS).
pub(crate) async fn refresh_basic(
    http: &HttpClient,
    retry: Retry,
    token_url: &str,
    client: &Client<'_>,
    refresh_token: &SecretString,
) -> Result<TokenResponse> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    let auth = basic_auth(client)?;
    post_form_with(http, retry, token_url, &form, Some(&auth)).await
}

/// Revokes a refresh token at an STS endpoint, the client in a Basic
/// `Authorization` header (`token_type_hint=refresh_token`, as google-auth).
pub(crate) async fn revoke_basic(
    http: &HttpClient,
    retry: Retry,
    revoke_url: &str,
    client: &Client<'_>,
    refresh_token: &SecretString,
) -> Result<()> {
    let form = [
        ("token", refresh_token.expose_secret()),
        ("token_type_hint", "refresh_token"),
    ];
    let auth = basic_auth(client)?;
    match post_form_with(http, retry, revoke_url, &form, Some(&auth)).await {
        Ok(_) => Ok(()),
        // A successful revocation answers with an empty body.
        Err(Error::TokenResponse { status, .. }) if (200..300).contains(&status) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) async fn post_form_with(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    form: &[(&str, &str)],
    auth: Option<&http::HeaderValue>,
) -> Result<TokenResponse> {
    post_form_parsed(http, retry, token_uri, form, auth, parse_response).await
}

/// The JWT bearer grant with a `target_audience` assertion: the answer's
/// `id_token` (google-auth's `id_token_jwt_grant`).
#[cfg(feature = "service-account")]
pub(crate) async fn jwt_bearer_id_token(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    assertion: &SecretString,
) -> Result<SecretString> {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.expose_secret()),
    ];
    post_form_parsed(http, retry, token_uri, &form, None, |uri, status, body| {
        let map = success_map(uri, status, body)?;
        map.get("id_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
            .ok_or_else(|| Error::TokenResponse {
                endpoint: redact(uri),
                status,
                problem: "no id_token in the answer".into(),
            })
    })
    .await
}

/// What a parser makes of a token endpoint's answer (endpoint, status, body).
type Parse<T> = fn(&str, u16, &[u8]) -> Result<T>;

async fn post_form_parsed<T>(
    http: &HttpClient,
    retry: Retry,
    token_uri: &str,
    form: &[(&str, &str)],
    auth: Option<&http::HeaderValue>,
    parse: Parse<T>,
) -> Result<T> {
    check_endpoint(token_uri)?;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let body = Bytes::from(body);
    retry
        .run_hinted("token request", || {
            post_once(http, token_uri, body.clone(), auth, parse)
        })
        .await
}

async fn post_once<T>(
    http: &HttpClient,
    token_uri: &str,
    body: Bytes,
    auth: Option<&http::HeaderValue>,
    parse: Parse<T>,
) -> std::result::Result<T, (Error, Option<Duration>)> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(token_uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth.clone());
    }
    let req = req.body(Full::new(body)).map_err(|_| {
        let url = redact(token_uri);
        (
            Error::InvalidUrl {
                url,
                reason: "not a valid request URI",
            },
            None,
        )
    })?;
    let resp = http
        .send(req, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|e| (e, None))?;
    parse(token_uri, resp.status().as_u16(), resp.body())
        .map_err(|e| (e, crate::retry::retry_after(resp.headers())))
}

/// A successful answer's JSON object; an OAuth error (or a body that is not
/// one) otherwise. Bodies are never echoed: a success body holds tokens.
fn success_map(
    token_uri: &str,
    status: u16,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>> {
    let endpoint = redact(token_uri);
    let bad = |problem: &str| Error::TokenResponse {
        endpoint: endpoint.clone(),
        status,
        problem: problem.to_owned(),
    };
    let json: Option<serde_json::Map<String, Value>> = serde_json::from_slice(body).ok();
    let text = |map: &serde_json::Map<String, Value>, key: &str| {
        map.get(key).and_then(Value::as_str).map(str::to_owned)
    };
    if !(200..300).contains(&status) {
        return Err(
            match json.as_ref().and_then(|m| text(m, "error").map(|e| (m, e))) {
                Some((map, code)) => Error::OAuth {
                    endpoint,
                    error: OAuthError::from_code(&code),
                    description: text(map, "error_description"),
                    status,
                },
                None => bad("the body is not an OAuth error (JSON with an \"error\" field)"),
            },
        );
    }
    json.ok_or_else(|| bad("the body is not a JSON object"))
}

pub(crate) fn parse_response(token_uri: &str, status: u16, body: &[u8]) -> Result<TokenResponse> {
    let endpoint = redact(token_uri);
    let bad = |problem: &str| Error::TokenResponse {
        endpoint: endpoint.clone(),
        status,
        problem: problem.to_owned(),
    };
    let map = success_map(token_uri, status, body)?;
    let text = |map: &serde_json::Map<String, Value>, key: &str| {
        map.get(key).and_then(Value::as_str).map(str::to_owned)
    };
    let access_token = text(&map, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no access_token in the answer"))?;
    // Every use puts it in a header: one that cannot be is refused here,
    // before it is saved and would break each later load until it expires.
    if http::HeaderValue::from_str(&access_token).is_err() {
        return Err(bad(
            "the access_token cannot be sent in a header (it holds control characters)",
        ));
    }
    let expires_in = match map.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        // Some servers send the number as a string.
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => return Err(bad("expires_in is not a number")),
    };
    if let Some(t) = text(&map, "token_type")
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(bad("token_type is not Bearer"));
    }
    Ok(TokenResponse {
        access_token: SecretString::from(access_token),
        expires_in: expires_in.map(|s| s.min(MAX_EXPIRES_IN)),
        scope: text(&map, "scope"),
        refresh_token: text(&map, "refresh_token").map(SecretString::from),
        id_token: text(&map, "id_token").map(SecretString::from),
    })
}

/// OAuth 2.0 error codes (RFC 6749 §4.1.2.1 and §5.2), plus anything else a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthError {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`
    InvalidClient,
    /// `invalid_grant`
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// `access_denied`
    AccessDenied,
    /// `unsupported_response_type`
    UnsupportedResponseType,
    /// `server_error`
    ServerError,
    /// `temporarily_unavailable`
    TemporarilyUnavailable,
    /// Any other code.
    Other(String),
}

impl OAuthError {
    /// Parses an `error` value.
    pub fn from_code(code: &str) -> Self {
        match code {
            "invalid_request" => OAuthError::InvalidRequest,
            "invalid_client" => OAuthError::InvalidClient,
            "invalid_grant" => OAuthError::InvalidGrant,
            "unauthorized_client" => OAuthError::UnauthorizedClient,
            "unsupported_grant_type" => OAuthError::UnsupportedGrantType,
            "invalid_scope" => OAuthError::InvalidScope,
            "access_denied" => OAuthError::AccessDenied,
            "unsupported_response_type" => OAuthError::UnsupportedResponseType,
            "server_error" => OAuthError::ServerError,
            "temporarily_unavailable" => OAuthError::TemporarilyUnavailable,
            other => OAuthError::Other(other.to_owned()),
        }
    }

    /// The wire code.
    pub fn as_str(&self) -> &str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::UnsupportedResponseType => "unsupported_response_type",
            OAuthError::ServerError => "server_error",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::Other(code) => code,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod oauth_error_tests {
    use super::OAuthError;

    #[test]
    fn oauth_codes_round_trip() {
        for code in [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "access_denied",
            "unsupported_response_type",
            "server_error",
            "temporarily_unavailable",
            "interaction_required",
        ] {
            assert_eq!(OAuthError::from_code(code).as_str(), code);
        }
        assert_eq!(
            OAuthError::from_code("x"),
            OAuthError::Other("x".to_owned())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> Error {
        match parse_response("https://t/token", status, body.as_bytes()) {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn parses_google_success() {
        let r = parse_response(
            "https://t/token",
            200,
            br#"{"access_token":"ya29.a","expires_in":3599,"scope":"s1 s2","token_type":"Bearer","id_token":"eyJ","refresh_token":"1//new"}"#,
        )
        .unwrap();
        assert_eq!(r.access_token.expose_secret(), "ya29.a");
        assert_eq!(r.expires_in, Some(3599));
        assert_eq!(r.scope.as_deref(), Some("s1 s2"));
        assert_eq!(r.refresh_token.unwrap().expose_secret(), "1//new");
        assert!(r.id_token.is_some());
        let r = parse_response(
            "https://t/token",
            200,
            br#"{"access_token":"a","expires_in":"60"}"#,
        )
        .unwrap();
        assert_eq!(r.expires_in, Some(60));
    }

    #[test]
    fn oauth_errors_are_typed() {
        match err(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ) {
            Error::OAuth {
                error,
                description,
                status,
                ..
            } => {
                assert_eq!(error, OAuthError::InvalidGrant);
                assert_eq!(
                    description.as_deref(),
                    Some("Token has been expired or revoked.")
                );
                assert_eq!(status, 400);
            }
            other => panic!("{other:?}"),
        }
        assert!(err(503, r#"{"error":"temporarily_unavailable"}"#).is_transient());
        assert!(!err(401, r#"{"error":"invalid_client"}"#).is_transient());
    }

    #[test]
    fn garbage_is_a_clear_error_without_echoing_the_body() {
        let e = err(502, "<html>SECRETMARKER Bad Gateway</html>");
        assert!(matches!(e, Error::TokenResponse { status: 502, .. }));
        assert!(e.is_transient());
        assert!(!e.to_string().contains("SECRETMARKER"));
        let e = err(200, r#"{"access_token":"","token_type":"Bearer"}"#);
        assert!(e.to_string().contains("no access_token"), "{e}");
        let e = err(200, "not json SECRETMARKER");
        assert!(!e.to_string().contains("SECRETMARKER"));
        let e = err(200, r#"{"access_token":"SECRETMARKER","token_type":"mac"}"#);
        assert!(!format!("{e} {e:?}").contains("SECRETMARKER"));
    }

    #[test]
    fn an_access_token_that_cannot_be_a_header_is_refused() {
        // JSON escapes: the decoded token holds the control character.
        for bad in [
            r"ya29.SECRET\nMARKER",
            r"ya29.SECRET\rMARKER",
            r"ya29.SECRET\u0000MARKER",
            r"ya29.SECRET\u007fMARKER",
        ] {
            let e = err(
                200,
                &format!(r#"{{"access_token":"{bad}","token_type":"Bearer"}}"#),
            );
            assert!(
                matches!(e, Error::TokenResponse { status: 200, .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("cannot be sent in a header"), "{e}");
            assert!(!format!("{e} {e:?}").contains("SECRET"), "{e:?}");
        }
        // What a header can carry is accepted, as `Bearer` would send it.
        let ok = parse_response(
            "https://t/token",
            200,
            br#"{"access_token":"ya29.a-b_c.d~e+f/g=","token_type":"Bearer"}"#,
        );
        assert_eq!(
            ok.unwrap().access_token.expose_secret(),
            "ya29.a-b_c.d~e+f/g="
        );
    }

    mod properties {
        //! `parse_response` on whatever a token endpoint (or something posing
        //! as one) might answer.

        use super::*;
        use proptest::prelude::*;
        use proptest::sample::select;
        use serde_json::{Map, json};

        fn access() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_-]{4,16}".prop_map(|s| format!("ya29.PROPACCESS{s}"))
        }

        fn refresh() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_-]{4,16}".prop_map(|s| format!("1//PROPREFRESH{s}"))
        }

        /// Text that cannot spell a token above (no uppercase).
        fn text() -> impl Strategy<Value = Value> {
            "[a-z0-9 ._:/-]{0,24}".prop_map(Value::String)
        }

        fn other() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                Just(json!([])),
                Just(json!({})),
                text(),
            ]
        }

        fn expires_in() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                any::<u32>().prop_map(|n| Value::String(n.to_string())),
                text(),
                other(),
            ]
        }

        fn token_type() -> impl Strategy<Value = Value> {
            prop_oneof![
                4 => select(vec!["Bearer", "bearer", "BEARER", "mac", "", "DPoP"])
                    .prop_map(|s| Value::String(s.to_owned())),
                1 => other(),
            ]
        }

        fn error_code() -> impl Strategy<Value = Value> {
            prop_oneof![
                4 => select(vec![
                    "invalid_grant", "invalid_client", "invalid_request", "server_error",
                    "temporarily_unavailable", "unauthorized_client", "slow_down",
                ])
                .prop_map(|s| Value::String(s.to_owned())),
                1 => other(),
            ]
        }

        /// A token response or OAuth error with each field present or not,
        /// of the right type or not, holding the generated secrets.
        fn object(access: String, refresh: String) -> impl Strategy<Value = Value> {
            let opt = |p: f64, s: BoxedStrategy<Value>| prop::option::weighted(p, s);
            (
                opt(
                    0.8,
                    prop_oneof![
                        6 => Just(Value::String(access)),
                        1 => Just(Value::String(String::new())),
                        // Control characters: no header can carry them.
                        1 => "[a-z]{0,4}[\\x00-\\x08\\x0a-\\x1f\\x7f][a-z]{0,4}".prop_map(Value::String),
                        1 => other(),
                    ]
                    .boxed(),
                ),
                opt(
                    0.5,
                    prop_oneof![4 => Just(Value::String(refresh)), 1 => other()].boxed(),
                ),
                opt(0.7, expires_in().boxed()),
                opt(0.7, token_type().boxed()),
                opt(0.5, prop_oneof![3 => text(), 1 => other()].boxed()),
                opt(0.3, error_code().boxed()),
                opt(0.3, prop_oneof![3 => text(), 1 => other()].boxed()),
            )
                .prop_map(
                    |(access, refresh, expires, kind, scope, error, description)| {
                        let mut m = Map::new();
                        for (k, v) in [
                            ("access_token", access),
                            ("refresh_token", refresh),
                            ("expires_in", expires),
                            ("token_type", kind),
                            ("scope", scope),
                            ("error", error),
                            ("error_description", description),
                        ] {
                            if let Some(v) = v {
                                m.insert(k.to_owned(), v);
                            }
                        }
                        Value::Object(m)
                    },
                )
        }

        /// `(access, refresh, parsed body when it is that undamaged JSON, body)`.
        fn case() -> impl Strategy<Value = (String, String, Option<Value>, Vec<u8>)> {
            (access(), refresh()).prop_flat_map(|(a, r)| {
                let shaped = (object(a.clone(), r.clone()), any::<bool>(), any::<usize>())
                    .prop_map(|(v, truncate, at)| {
                        let bytes = serde_json::to_vec(&v).unwrap();
                        if truncate && !bytes.is_empty() {
                            let cut = at % bytes.len();
                            (None, bytes[..cut].to_vec())
                        } else {
                            (Some(v), bytes)
                        }
                    });
                let garbage = prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..128),
                    Just(b"<html><body>502 Bad Gateway</body></html>".to_vec()),
                    Just(b"null".to_vec()),
                    Just(b"[]".to_vec()),
                    Just(Vec::new()),
                ]
                .prop_map(|b| (None, b));
                (Just(a), Just(r), prop_oneof![4 => shaped, 1 => garbage])
                    .prop_map(|(a, r, (v, b))| (a, r, v, b))
            })
        }

        fn status() -> impl Strategy<Value = u16> {
            prop_oneof![3 => 200u16..300, 1 => 400u16..600, 1 => 100u16..600]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(
                status in 100u16..600,
                body in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                match parse_response("https://t/token?x=1", status, &body) {
                    Ok(r) => {
                        prop_assert!((200..300).contains(&status));
                        prop_assert!(!r.access_token.expose_secret().is_empty());
                    }
                    Err(e) => {
                        prop_assert!(matches!(e, Error::TokenResponse { .. } | Error::OAuth { .. }), "{:?}", e);
                    }
                }
            }

            /// Never panics; a 2xx carrying a non-empty string access_token
            /// (and no field of a wrong kind) parses to exactly that; an error
            /// status with an `error` string is a typed OAuth error; no error
            /// ever shows the tokens of the body.
            #[test]
            fn token_responses((access, refresh, value, body) in case(), status in status()) {
                let result = parse_response("https://t/token?secret=q", status, &body);
                let map = value.as_ref().and_then(Value::as_object);
                let get = |k: &str| map.and_then(|m| m.get(k));
                let success = (200..300).contains(&status);
                match &result {
                    Ok(r) => {
                        prop_assert!(success, "a {} answer was taken for tokens", status);
                        prop_assert!(!r.access_token.expose_secret().is_empty());
                        if map.is_some() {
                            prop_assert_eq!(get("access_token").and_then(Value::as_str), Some(r.access_token.expose_secret()));
                            prop_assert_eq!(
                                get("refresh_token").and_then(Value::as_str),
                                r.refresh_token.as_ref().map(|t| t.expose_secret())
                            );
                            prop_assert_eq!(get("scope").and_then(Value::as_str), r.scope.as_deref());
                        }
                    }
                    Err(e) => {
                        let shown = format!("{e} {e:?}");
                        prop_assert!(!shown.contains(&access), "access token leaked: {}", shown);
                        prop_assert!(!shown.contains(&refresh), "refresh token leaked: {}", shown);
                        prop_assert!(!shown.contains("secret=q"), "endpoint query leaked: {}", shown);
                        match e {
                            Error::TokenResponse { status: s, endpoint, .. } => {
                                prop_assert_eq!(*s, status);
                                prop_assert_eq!(endpoint.as_str(), "https://t/token");
                                prop_assert_eq!(e.is_transient(), status >= 500 || status == 429);
                            }
                            Error::OAuth { status: s, error, .. } => {
                                prop_assert!(!success);
                                prop_assert_eq!(*s, status);
                                if map.is_some() {
                                    prop_assert_eq!(Some(error.as_str()), get("error").and_then(Value::as_str));
                                }
                                let transient_code = matches!(
                                    error,
                                    OAuthError::ServerError | OAuthError::TemporarilyUnavailable
                                );
                                prop_assert_eq!(e.is_transient(), transient_code || status >= 500 || status == 429);
                            }
                            other => prop_assert!(false, "unexpected variant {:?}", other),
                        }
                    }
                }
                // The oracle for well-formed JSON bodies.
                if map.is_some() {
                    let token = get("access_token")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty() && http::HeaderValue::from_str(t).is_ok());
                    let expires_ok = matches!(
                        get("expires_in"),
                        None | Some(Value::Null | Value::Number(_) | Value::String(_))
                    );
                    let type_ok = get("token_type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
                    let error = get("error").and_then(Value::as_str);
                    if success {
                        prop_assert_eq!(result.is_ok(), token.is_some() && expires_ok && type_ok);
                    } else if let Some(code) = error {
                        let typed = matches!(&result, Err(Error::OAuth { error, .. }) if error.as_str() == code);
                        prop_assert!(typed);
                    } else {
                        let untyped = matches!(result, Err(Error::TokenResponse { .. }));
                        prop_assert!(untyped);
                    }
                }
            }
        }
    }
}
