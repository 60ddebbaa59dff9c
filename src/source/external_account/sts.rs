//! The OAuth 2.0 token exchange (RFC 8693) at Google's STS, with the form
//! fields google-auth's `sts.py` sends, in its order.

use percent_encoding::utf8_percent_encode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::sigv4::{QUOTE_SAFE, ascii_json};
use crate::error::Result;
use crate::http::HttpClient;
use crate::token_endpoint::{Client, Retry, TokenResponse, basic_auth, post_form_with};

pub(super) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(super) const REQUESTED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// One exchange of a subject token for a Google access token.
pub(super) struct Exchange<'a> {
    pub(super) token_url: &'a str,
    pub(super) audience: &'a str,
    pub(super) scopes: &'a [String],
    pub(super) subject_token: &'a SecretString,
    pub(super) subject_token_type: &'a str,
    /// `workforce_pool_user_project`, sent only without client authentication.
    pub(super) user_project: Option<&'a str>,
    /// `client_id` and `client_secret`, sent as HTTP Basic auth.
    pub(super) client: Option<(&'a str, &'a SecretString)>,
}

impl Exchange<'_> {
    pub(super) async fn send(&self, http: &HttpClient, retry: Retry) -> Result<TokenResponse> {
        let scope = self.scopes.join(" ");
        // google-auth: quote(json.dumps({"userProject": …})), then form-encoded again.
        let options = self
            .user_project
            .filter(|_| self.client.is_none())
            .map(|p| {
                let json = format!("{{\"userProject\": {}}}", ascii_json(&json!(p)));
                utf8_percent_encode(&json, QUOTE_SAFE).to_string()
            });
        let mut form = vec![("grant_type", GRANT_TYPE), ("audience", self.audience)];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        form.extend([
            ("requested_token_type", REQUESTED_TOKEN_TYPE),
            ("subject_token", self.subject_token.expose_secret()),
            ("subject_token_type", self.subject_token_type),
        ]);
        if let Some(o) = &options {
            form.push(("options", o));
        }
        let authorization = match self.client {
            Some((id, secret)) => Some(basic_auth(&Client { id, secret })?),
            None => None,
        };
        post_form_with(http, retry, self.token_url, &form, authorization.as_ref()).await
    }
}
