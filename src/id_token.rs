//! [`IdToken`]: a Google-signed OpenID Connect ID token (a JWT) for one
//! audience, what Cloud Run, Cloud Functions and IAP take instead of an
//! access token; and [`IdTokenProblem`], why one could not be had.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use secrecy::SecretString;

use crate::access_token::AccessToken;
use crate::token_cache::Fetched;

/// An ID token from [`Credentials::id_token`](crate::Credentials::id_token).
/// Cheap to clone; `Debug` never shows it.
#[derive(Clone)]
pub struct IdToken(pub(crate) AccessToken);

impl IdToken {
    /// The JWT itself, for an `Authorization: Bearer` header. Never log it.
    #[must_use]
    pub fn secret(&self) -> &str {
        self.0.secret()
    }

    /// When it expires (its `exp` claim).
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        self.0.expires_at()
    }

    /// The ready-made `Authorization: Bearer …` value (marked sensitive).
    #[must_use]
    pub fn header_value(&self) -> &HeaderValue {
        self.0.header_value()
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdToken")
            .field("secret", &"[redacted]")
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

/// Why no ID token could be had ([`Error::IdToken`](crate::Error::IdToken)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenProblem {
    /// These credentials cannot get ID tokens (an API key, a fixed token,
    /// an `external_account` or `external_account_authorized_user` file,
    /// gcloud's token).
    NotSupported,
    /// The audience is empty.
    EmptyAudience,
    /// A user's sign-in gives ID tokens for its own OAuth client only.
    NotTheClient {
        /// The OAuth client id: the only audience these credentials serve.
        client_id: String,
    },
    /// The user's refresh brought no ID token: the sign-in lacked the
    /// `openid` scope.
    NoOpenIdScope,
    /// A service-account key outside `googleapis.com` (google-auth signs
    /// through IAM there, which this crate does not).
    OtherUniverse,
    /// The answer has no ID token in this field.
    Missing(&'static str),
    /// The ID token is not a JWT with a numeric `exp` claim.
    NotJwt,
    /// The ID token had expired, or was about to, when it came (its
    /// `exp` claim): most likely this machine's clock is wrong.
    Expired,
}

impl fmt::Display for IdTokenProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdTokenProblem::NotSupported => f.write_str(
                "these credentials cannot get ID tokens; use a service-account key, the \
                 metadata server, an impersonated service account or a user's sign-in with \
                 the openid scope",
            ),
            IdTokenProblem::EmptyAudience => f.write_str("the audience is empty"),
            IdTokenProblem::NotTheClient { client_id } => write!(
                f,
                "a user's sign-in gives ID tokens for its own OAuth client only: ask for \
                 audience {client_id}, or impersonate a service account for any other audience"
            ),
            IdTokenProblem::NoOpenIdScope => f.write_str(
                "the refresh brought no ID token: sign in again with the openid scope \
                 (gemini_oauth::scopes::OPENID)",
            ),
            IdTokenProblem::OtherUniverse => f.write_str(
                "ID tokens from a service-account key are supported in googleapis.com only",
            ),
            IdTokenProblem::Missing(field) => write!(f, "the answer has no \"{field}\""),
            IdTokenProblem::NotJwt => {
                f.write_str("the ID token is not a JWT with a numeric \"exp\" claim")
            }
            IdTokenProblem::Expired => f.write_str(
                "the ID token had expired, or was about to, when it came (its \"exp\" \
                 claim): check this machine's clock",
            ),
        }
    }
}

/// The largest ID token taken (Google's are about 1 KiB).
const MAX_JWT: usize = 16 * 1024;

/// An ID token and its expiry, read from its unverified `exp` claim as
/// google-auth reads it (the signature is the audience's to check).
pub(crate) fn fetched(jwt: &str) -> Result<Fetched, IdTokenProblem> {
    let jwt = jwt.trim();
    let claims = claims(jwt)?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_u64)
        .ok_or(IdTokenProblem::NotJwt)?;
    let expires_at = UNIX_EPOCH
        .checked_add(Duration::from_secs(exp))
        .ok_or(IdTokenProblem::NotJwt)?;
    Ok(Fetched {
        token: SecretString::from(jwt.to_owned()),
        expires_at,
        refresh_token_rotated: false,
    })
}

/// The unverified claims of a JWT: right only for one that came straight
/// from the token endpoint over TLS (OpenID Connect Core 3.1.3.7), or whose
/// signature its audience checks.
pub(crate) fn claims(jwt: &str) -> Result<serde_json::Value, IdTokenProblem> {
    let jwt = jwt.trim();
    // Why: a JWT is base64url parts; anything else (a control character)
    // could not go in a header either.
    let jwt_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=');
    if jwt.len() > MAX_JWT || !jwt.bytes().all(jwt_byte) {
        return Err(IdTokenProblem::NotJwt);
    }
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenProblem::NotJwt);
    };
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(IdTokenProblem::NotJwt)?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn the_expiry_is_the_exp_claim() {
        let f = fetched(&jwt(r#"{"aud":"a","exp":1893553445}"#)).unwrap();
        assert_eq!(
            f.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_893_553_445)
        );
    }

    #[test]
    fn anything_else_is_not_a_jwt() {
        for bad in [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            "a.!!!.c".into(),
            jwt(r#"{"aud":"a"}"#),
            jwt(r#"{"exp":"soon"}"#),
            jwt(r#"{"exp":-5}"#),
            jwt(r#"{"exp":18446744073709551615}"#),
            jwt("not json"),
            "x".repeat(MAX_JWT + 1),
            format!("{}\u{7}", jwt(r#"{"exp":1893553445}"#)),
            jwt(r#"{"exp":1893553445}"#).replace(".sig", ".s g"),
        ] {
            assert_eq!(
                fetched(&bad).err(),
                Some(IdTokenProblem::NotJwt),
                "{bad:.40}"
            );
        }
    }
}
