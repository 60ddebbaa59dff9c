//! What the token-provider integrations (gcp_auth, google-apis-common) do
//! with the scopes their callers ask for.
//!
//! A `Credentials`' scopes are fixed when it is loaded: a user consented to
//! them, a service account or the metadata server was asked for them. A
//! token for other scopes would need another consent (or other
//! credentials), and whether a granted scope covers a requested one (as
//! `cloud-platform` covers most) only the API server knows. So every
//! request is answered with the one current token, never an error or a
//! panic for the scopes; an API the token does not cover answers `403`
//! (`ACCESS_TOKEN_SCOPE_INSUFFICIENT`). When the granted scopes are known
//! (a user's stored token), requested scopes outside them are named in a
//! `debug` event, for the user who wonders about that `403`.

use crate::credentials::Credentials;

/// Notes (at `debug` level, when enabled) the scopes of `requested` that the
/// credentials were not granted, for `caller` (the integration's name).
pub(crate) fn note_ungranted(creds: &Credentials, requested: &[&str], caller: &'static str) {
    if requested.is_empty() || !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let Some(granted) = creds.granted_scopes() else {
        return;
    };
    let ungranted: Vec<&str> = requested
        .iter()
        .copied()
        .filter(|s| !granted.iter().any(|g| g == s))
        .collect();
    if !ungranted.is_empty() {
        tracing::debug!(
            caller,
            ?ungranted,
            ?granted,
            "scopes asked for that the credentials were not granted: serving the current token \
             (scopes are fixed when credentials are loaded; the API answers 403 if it needs them)"
        );
    }
}
