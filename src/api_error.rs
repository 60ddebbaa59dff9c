//! [`ApiError`]: a Google API's error answer (`{"error": {...}}`), with
//! hints for the reasons Gemini users meet.

use std::fmt;

use serde_json::Value;

use crate::url::redact;

/// Google's messages are short; a huge one is not worth carrying around.
const MAX_MESSAGE: usize = 1000;

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
    #[must_use]
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
            endpoint: redact(url),
            status,
            code: field("code").and_then(Value::as_i64),
            status_text: field("status").and_then(Value::as_str).map(str::to_owned),
            message,
            reasons,
        }
    }

    /// Whether Google named this `reason`.
    #[must_use]
    pub fn has_reason(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r == reason)
    }

    /// What the user can do about it, when known.
    #[must_use]
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
}
