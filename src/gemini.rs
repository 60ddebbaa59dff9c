//! Thin typed helpers for Gemini API endpoints.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::client::AuthorizedClient;
use crate::error::{Error, Result};
use crate::url::without_query;

/// Guards against a server that keeps sending page tokens.
const MAX_PAGES: usize = 100;
/// Google's messages are short; a huge one is not worth carrying around.
const MAX_MESSAGE: usize = 1000;

/// A Gemini model, as `GET /v1/models` describes it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Model {
    /// Resource name, e.g. `models/gemini-2.5-flash`.
    pub name: String,
    /// The base model's id, when given.
    #[serde(default)]
    pub base_model_id: Option<String>,
    /// Version string.
    #[serde(default)]
    pub version: Option<String>,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Short description.
    #[serde(default)]
    pub description: Option<String>,
    /// Maximum input tokens.
    #[serde(default)]
    pub input_token_limit: Option<u64>,
    /// Maximum output tokens.
    #[serde(default)]
    pub output_token_limit: Option<u64>,
    /// Methods such as `generateContent`, `countTokens`, `embedContent`.
    #[serde(default)]
    pub supported_generation_methods: Vec<String>,
    /// Default temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Highest allowed temperature.
    #[serde(default)]
    pub max_temperature: Option<f64>,
    /// Default nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Default top-k.
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Whether the model supports thinking.
    #[serde(default)]
    pub thinking: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelPage {
    #[serde(default)]
    models: Vec<Model>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// Lists every model the credentials can see (`GET {api_base}/models`),
/// following `nextPageToken`.
///
/// ```no_run
/// # async fn f() -> gemini_oauth::Result<()> {
/// let client = gemini_oauth::load_creds().await?.authorized_client();
/// for model in gemini_oauth::gemini::list_models(&client).await? {
///     println!("{}", model.name);
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Api`] with a hint for Google's error reasons (missing scope,
/// API not enabled, quota project denied…), and the errors of
/// [`AuthorizedClient::get`].
pub async fn list_models(client: &AuthorizedClient) -> Result<Vec<Model>> {
    let mut models = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("pageSize", "1000");
        if let Some(t) = &page_token {
            query.append_pair("pageToken", t);
        }
        let url = format!("{}?{}", client.api_url("models"), query.finish());
        let page: ModelPage = get_json(client, &url).await?;
        models.extend(page.models);
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) if page_token.as_deref() != Some(&next) => page_token = Some(next),
            _ => return Ok(models),
        }
    }
    Ok(models)
}

/// GETs `url` and decodes a JSON answer, turning Google error bodies into [`ApiError`].
pub async fn get_json<T: for<'de> Deserialize<'de>>(
    client: &AuthorizedClient,
    url: &str,
) -> Result<T> {
    let resp = client.get(url).await?;
    decode(url, resp.status().as_u16(), resp.body())
}

/// Decodes a Gemini answer: `T` on 2xx, [`ApiError`] otherwise.
pub fn decode<T: for<'de> Deserialize<'de>>(url: &str, status: u16, body: &[u8]) -> Result<T> {
    if !(200..300).contains(&status) {
        return Err(Error::Api(ApiError::from_body(url, status, body)));
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::Api(ApiError {
            endpoint: without_query(url).to_owned(),
            status,
            code: None,
            status_text: None,
            // serde's message can quote body values; say where, not what.
            message: format!(
                "the answer is not the expected JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
            reasons: vec![],
        })
    })
}

/// A Google API error (`{"error": {"code", "message", "status", "details"}}`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub struct ApiError {
    /// The endpoint called (without query).
    pub endpoint: String,
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: Option<i64>,
    /// `error.status`, e.g. `PERMISSION_DENIED`.
    pub status_text: Option<String>,
    /// `error.message`.
    pub message: String,
    /// `error.details[].reason`, e.g. `ACCESS_TOKEN_SCOPE_INSUFFICIENT`.
    pub reasons: Vec<String>,
}

impl ApiError {
    /// Parses a Google error body; anything else becomes a generic error.
    pub fn from_body(url: &str, status: u16, body: &[u8]) -> Self {
        let error = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").cloned());
        let field = |k: &str| error.as_ref().and_then(|e| e.get(k));
        let mut message = field("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| "the answer is not a Google API error".to_owned());
        if message.len() > MAX_MESSAGE {
            let cut = (0..=MAX_MESSAGE)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        let reasons = field("details")
            .and_then(Value::as_array)
            .map(|details| {
                details
                    .iter()
                    .filter_map(|d| d.get("reason").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ApiError {
            endpoint: without_query(url).to_owned(),
            status,
            code: field("code").and_then(Value::as_i64),
            status_text: field("status").and_then(Value::as_str).map(str::to_owned),
            message,
            reasons,
        }
    }

    /// Whether Google named this `reason`.
    pub fn has_reason(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r == reason)
    }

    /// What the user can do about it, when known.
    pub fn hint(&self) -> Option<&'static str> {
        let api_disabled = self.has_reason("SERVICE_DISABLED")
            || self.has_reason("API_DISABLED")
            || self.message.contains("has not been used in project")
            || self.message.contains("is disabled");
        if self.has_reason("ACCESS_TOKEN_SCOPE_INSUFFICIENT") {
            Some(
                "the token lacks a scope this call needs: request \
                 scopes::GENERATIVE_LANGUAGE_RETRIEVER (or scopes::CLOUD_PLATFORM) and sign in \
                 again (the loader re-consents when the requested scopes change)",
            )
        } else if api_disabled {
            Some(
                "enable the Generative Language API for the project of your OAuth client (or \
                 the quota project): `gcloud services enable generativelanguage.googleapis.com` \
                 or the API Library page of the Google Cloud console",
            )
        } else if self.has_reason("USER_PROJECT_DENIED") {
            Some(
                "your account may not bill this quota project: pick a project where you have \
                 the serviceusage.services.use permission, or drop the quota project setting",
            )
        } else if self.status == 401 {
            Some("the credentials were rejected: sign in again (delete token.json)")
        } else if self.status == 429 || self.has_reason("RATE_LIMIT_EXCEEDED") {
            Some("quota or rate limit reached: wait and retry, or raise the project's quota")
        } else if self.status == 403 {
            Some(
                "permission denied: check that the Generative Language API is enabled and that \
                 the account may use the project",
            )
        } else {
            None
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered HTTP {}", self.endpoint, self.status)?;
        if let Some(s) = &self.status_text {
            write!(f, " {s}")?;
        }
        if !self.reasons.is_empty() {
            write!(f, " ({})", self.reasons.join(", "))?;
        }
        write!(f, ": {}", self.message.trim_end_matches('.'))?;
        if let Some(hint) = self.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> ApiError {
        ApiError::from_body("https://g/v1/models?pageToken=x", status, body.as_bytes())
    }

    #[test]
    fn scope_insufficient_gets_its_hint() {
        let e = api(
            403,
            r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT","domain":"googleapis.com"}]}}"#,
        );
        assert_eq!(e.code, Some(403));
        assert_eq!(e.status_text.as_deref(), Some("PERMISSION_DENIED"));
        assert!(e.has_reason("ACCESS_TOKEN_SCOPE_INSUFFICIENT"));
        let msg = e.to_string();
        assert!(msg.contains("GENERATIVE_LANGUAGE_RETRIEVER"), "{msg}");
        assert!(
            msg.starts_with("https://g/v1/models answered HTTP 403"),
            "{msg}"
        );
    }

    #[test]
    fn disabled_api_and_denied_project_get_hints() {
        let e = api(
            403,
            r#"{"error":{"code":403,"message":"Generative Language API has not been used in project 123 before or it is disabled.","status":"PERMISSION_DENIED","details":[{"reason":"SERVICE_DISABLED"}]}}"#,
        );
        assert!(
            e.to_string()
                .contains("gcloud services enable generativelanguage.googleapis.com")
        );
        let e = api(
            403,
            r#"{"error":{"code":403,"message":"Caller does not have required permission to use project x.","status":"PERMISSION_DENIED","details":[{"reason":"USER_PROJECT_DENIED"}]}}"#,
        );
        assert!(e.to_string().contains("quota project"));
    }

    #[test]
    fn non_google_bodies_and_huge_messages() {
        let e = api(502, "<html>bad gateway</html>");
        assert_eq!(e.message, "the answer is not a Google API error");
        let long = "x".repeat(10_000);
        let e = api(400, &format!(r#"{{"error":{{"message":"{long}"}}}}"#));
        assert!(e.message.len() <= MAX_MESSAGE + 3);
    }

    #[test]
    fn decodes_models() {
        let page: ModelPage = decode("u", 200, br#"{"models":[{"name":"models/gemini-2.5-flash","version":"001","displayName":"Gemini 2.5 Flash","inputTokenLimit":1048576,"outputTokenLimit":65536,"supportedGenerationMethods":["generateContent","countTokens"],"thinking":true}],"nextPageToken":"n"}"#).unwrap();
        let m = &page.models[0];
        assert_eq!(m.name, "models/gemini-2.5-flash");
        assert_eq!(m.input_token_limit, Some(1_048_576));
        assert_eq!(
            m.supported_generation_methods,
            ["generateContent", "countTokens"]
        );
        assert_eq!(page.next_page_token.as_deref(), Some("n"));
        assert!(matches!(
            decode::<ModelPage>("u", 200, b"\"x\""),
            Err(Error::Api(_))
        ));
    }
}
