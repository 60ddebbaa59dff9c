//! Token sources: where each kind of credentials gets new access tokens,
//! one [`TokenSource`](crate::token_cache::TokenSource) each, under the token cache.

pub(crate) mod external_account;
pub(crate) mod external_user;
pub(crate) mod fixed;
pub(crate) mod gcloud_cli;
pub(crate) mod impersonated;
pub(crate) mod metadata;
#[cfg(feature = "service-account")]
pub(crate) mod service_account;
pub(crate) mod user;
#[cfg(feature = "yup-oauth2")]
pub(crate) mod yup;

use secrecy::SecretString;

use crate::token_cache::Fetched;
use crate::token_endpoint::TokenResponse;

impl From<TokenResponse> for Fetched {
    fn from(resp: TokenResponse) -> Self {
        Fetched {
            expires_at: resp.expires_at(),
            token: resp.access_token,
            refresh_token_rotated: false,
        }
    }
}

/// The token and expiry of a stored record (a missing token or expiry
/// counts as already expired, as in google-auth).
pub(crate) fn fetched_from_record(record: &crate::token::StoredToken) -> Fetched {
    Fetched {
        token: record
            .token
            .clone()
            .unwrap_or_else(|| SecretString::from(String::new())),
        expires_at: record.expiry().unwrap_or_else(std::time::SystemTime::now),
        refresh_token_rotated: false,
    }
}
