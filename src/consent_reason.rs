//! [`ConsentReason`]: why a consent flow would be needed.

use std::fmt;

/// Why a consent flow would be needed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentReason {
    /// The store holds no token.
    NoToken,
    /// The stored token has no refresh token and its access token has expired.
    NoRefreshToken,
    /// The stored token does not cover these requested scopes.
    ScopesNotCovered(Vec<String>),
    /// The refresh token was rejected (`invalid_grant`).
    RefreshTokenRejected(Option<String>),
}

impl fmt::Display for ConsentReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsentReason::NoToken => f.write_str("no cached token"),
            ConsentReason::NoRefreshToken => {
                f.write_str("the cached access token expired and there is no refresh token")
            }
            ConsentReason::ScopesNotCovered(missing) => write!(
                f,
                "the cached token does not cover the requested scopes {}",
                missing.join(", ")
            ),
            ConsentReason::RefreshTokenRejected(d) => write!(
                f,
                "the refresh token was rejected (invalid_grant{}): revoked, or expired after 7 \
                 days because the app's consent screen is in \"Testing\"",
                d.as_deref()
                    .filter(|d| !d.is_empty())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        }
    }
}
