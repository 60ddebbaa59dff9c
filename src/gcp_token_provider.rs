//! gcp_auth's `TokenProvider` for [`Credentials`] (feature `gcp-auth`), so
//! crates built on gcp_auth (they take an `Arc<dyn gcp_auth::TokenProvider>`)
//! use a user's sign-in, this crate's shared refresh and its token stores.
//!
//! Scopes: those the credentials were loaded with; see
//! `requested_scopes.rs` for what happens to others.

use std::sync::Arc;
use std::time::SystemTime;

use ::gcp_auth::{Error as GcpError, Token, TokenProvider};
use serde::Deserialize as _;

use crate::credentials::Credentials;
use crate::error::Error;
use crate::requested_scopes::note_ungranted;

#[async_trait::async_trait]
impl TokenProvider for Credentials {
    /// The current access token, as [`Credentials::access_token`] (cached,
    /// refreshed once for all callers), with its expiry to the second.
    /// `scopes` do not choose the token: it carries the scopes the
    /// credentials were loaded with, whatever is asked. API-key credentials
    /// have no token: an error.
    async fn token(&self, scopes: &[&str]) -> Result<Arc<Token>, GcpError> {
        note_ungranted(self, scopes, "gcp_auth");
        let token = self.access_token().await.map_err(gcp_error)?;
        Ok(Arc::new(gcp_token(token.secret(), token.expires_at())?))
    }

    /// The quota project ([`Credentials::quota_project`]), as gcp_auth's
    /// authorized-user provider answers; an error when there is none.
    async fn project_id(&self) -> Result<Arc<str>, GcpError> {
        self.quota_project().map(Arc::from).ok_or(GcpError::Str(
            "the gemini-oauth credentials have no quota project; set one with \
             CredentialLoader::quota_project or quota_project_id in the token or ADC file",
        ))
    }
}

/// The longest lifetime given to gcp_auth (100 years): it adds the
/// lifetime to its clock with an addition that panics past chrono's range,
/// which a `SystemTime` (say, a test double's far expiry) can exceed.
const MAX_EXPIRES_IN: u64 = 100 * 365 * 24 * 3600;

/// gcp_auth's `Token`, which it builds only from a token response: the
/// expiry is the whole seconds left until `expires_at`, counted from the
/// clock gcp_auth reads (so never later than ours by more than the moment
/// between the two readings).
fn gcp_token(secret: &str, expires_at: SystemTime) -> Result<Token, GcpError> {
    let expires_in = expires_at
        .duration_since(SystemTime::now())
        .map_or(0, |left| left.as_secs().min(MAX_EXPIRES_IN));
    let response = serde_json::json!({ "access_token": secret, "expires_in": expires_in });
    // Its error would name the value; the value holds the token.
    Token::deserialize(response)
        .map_err(|_| GcpError::Str("the access token could not be given to gcp_auth as a Token"))
}

/// Our error as gcp_auth's: its text (which never holds a secret) after
/// gcp_auth's message, and the error itself as the source.
fn gcp_error(e: Error) -> GcpError {
    GcpError::Other("gemini-oauth could not get an access token", Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_expiry_in_the_past_is_now_and_a_far_one_does_not_overflow() {
        let past = gcp_token("ya29.x", SystemTime::UNIX_EPOCH).unwrap();
        assert!(past.has_expired());
        let far = SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let token = gcp_token("ya29.x", far).unwrap();
        assert!(!token.has_expired());
        assert_eq!(token.as_str(), "ya29.x");
        // Past chrono's range (±262,000 years), within a SystemTime's.
        if let Some(beyond) = SystemTime::now().checked_add(Duration::from_secs(1 << 45)) {
            assert!(!gcp_token("ya29.x", beyond).unwrap().has_expired());
        }
    }
}
