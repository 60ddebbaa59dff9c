//! A yup-oauth2 `Authenticator` as a token source (feature `yup-oauth2`):
//! yup-oauth2 signs in (its installed, device, service-account, ADC flows
//! and its token storage); this crate's cache hands its tokens out, with one
//! shared refresh, and its authorized client uses them.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use hyper_util::client::legacy::connect::Connect;
use secrecy::SecretString;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::error::Error as YupError;

use crate::error::{BoxError, Error, Result};
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::OAuthError;

/// What the messages call yup-oauth2's token endpoint (it does not say which it is).
const ENDPOINT: &str = "yup-oauth2's token endpoint";

/// How long a token whose expiry yup-oauth2 does not know is used before
/// it is asked again (Google's access tokens live an hour).
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(3600);

/// An authenticator and the scopes its tokens are asked for.
pub(crate) struct YupSource<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    auth: Authenticator<C>,
    scopes: Vec<String>,
}

impl<C> YupSource<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(auth: Authenticator<C>, scopes: Vec<String>) -> Self {
        YupSource { auth, scopes }
    }

    /// The first token: yup-oauth2's cached one while it holds one it
    /// deems valid (no request), else one it fetches. Not bounded: a flow
    /// may wait for the user's sign-in.
    pub(crate) async fn first(&self) -> Result<Fetched> {
        // Why: yup-oauth2 panics on an `expires_in` past the `time` crate's
        // range (it adds it to its clock unchecked); a refresh's panic is
        // caught by the cache, the first token's here.
        match AssertUnwindSafe(self.auth.token(&self.scopes))
            .catch_unwind()
            .await
        {
            Ok(answer) => fetched(answer),
            Err(_) => Err(Error::Store {
                store: "yup-oauth2".to_owned(),
                action: "give an access token",
                source: fixed("yup-oauth2 panicked (an expiry out of its range?)"),
            }),
        }
    }
}

/// A token source whose every fetch ends within `after`: yup-oauth2's
/// client has no timeout of its own, and one refresh that never ends would
/// keep every caller of the cache waiting. A flow that falls back to asking
/// the user when a refresh fails ends with [`Error::Timeout`] too.
pub(crate) struct Bounded {
    pub(crate) source: Arc<dyn TokenSource>,
    pub(crate) after: Duration,
}

impl TokenSource for Bounded {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        let source = Arc::clone(&self.source);
        let mut fetch = Box::pin(async move { source.fetch().await });
        Box::pin(async move {
            match tokio::time::timeout(self.after, &mut fetch).await {
                Ok(fetched) => fetched,
                Err(_) => {
                    // Why: not dropped at once, as the cache leaves a fetch
                    // to finish: yup-oauth2 may be writing its token file
                    // (truncated, then written), which a drop would leave
                    // empty. It gets as long again, then is dropped.
                    if let Ok(here) = tokio::runtime::Handle::try_current() {
                        drop(here.spawn(tokio::time::timeout(self.after, fetch)));
                    }
                    Err(Error::Timeout {
                        what: format!("a token from {ENDPOINT}"),
                        after: self.after,
                    })
                }
            }
        })
    }

    fn describe(&self) -> String {
        self.source.describe()
    }
}

impl<C> TokenSource for YupSource<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A new token, never yup-oauth2's cached one: the cache calls this
    /// when its token is due (yup-oauth2 would hand back the same one until
    /// a minute before expiry) or was refused with a `401`.
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move { fetched(self.auth.force_refreshed_token(&self.scopes).await) })
    }

    fn describe(&self) -> String {
        format!("a yup-oauth2 authenticator for {:?}", self.scopes)
    }
}

/// Our token from yup-oauth2's answer (whose `Debug` shows the token: never
/// formatted here).
fn fetched(answer: Result<yup_oauth2::AccessToken, YupError>) -> Result<Fetched> {
    let token = answer.map_err(error)?;
    let Some(secret) = token.token() else {
        return Err(Error::Store {
            store: "yup-oauth2".to_owned(),
            action: "give an access token",
            source: fixed("yup-oauth2's answer holds no access token"),
        });
    };
    let expires_at = match token.expiration_time() {
        Some(at) => system_time(at.unix_timestamp_nanos()),
        None => SystemTime::now()
            .checked_add(UNKNOWN_LIFETIME)
            .unwrap_or_else(SystemTime::now),
    };
    Ok(Fetched {
        token: SecretString::from(secret.to_owned()),
        expires_at,
        refresh_token_rotated: false,
    })
}

/// Nanoseconds since the epoch as a `SystemTime` (before the epoch, or
/// beyond what the platform holds: the epoch, a token already expired).
fn system_time(nanos: i128) -> SystemTime {
    u64::try_from(nanos / 1_000_000_000)
        .ok()
        .and_then(|secs| {
            let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
            UNIX_EPOCH.checked_add(Duration::new(secs, sub))
        })
        .unwrap_or(UNIX_EPOCH)
}

/// yup-oauth2's error as ours. Its texts are kept only where they cannot
/// hold a secret: an OAuth error's code and description, transport errors.
/// A JSON error may quote the answer, a user error the input: those keep
/// only what kind of error it was.
fn error(e: YupError) -> Error {
    match e {
        YupError::AuthError(auth) => Error::OAuth {
            endpoint: ENDPOINT.to_owned(),
            error: OAuthError::from_code(auth.error.as_str()),
            description: auth.error_description,
            // yup-oauth2 does not keep the status; RFC 6749 §5.2 errors are 400s.
            status: 400,
        },
        e @ (YupError::HttpError(_) | YupError::HttpClientError(_)) => Error::Transport {
            endpoint: ENDPOINT.to_owned(),
            source: std::sync::Arc::new(e),
        },
        e @ (YupError::LowLevelError(_) | YupError::StorageError(_)) => Error::Store {
            store: "yup-oauth2".to_owned(),
            action: "give an access token",
            source: std::sync::Arc::new(e),
        },
        other => Error::Store {
            store: "yup-oauth2".to_owned(),
            action: "give an access token",
            source: fixed(match other {
                YupError::JSONError(_) => "yup-oauth2 could not read the token endpoint's answer",
                YupError::UserError(_) => "yup-oauth2 refused its input (a user error)",
                YupError::MissingAccessToken => "the token endpoint's answer holds no access token",
                YupError::CredentialSourceError(_) => "yup-oauth2's credential source is invalid",
                _ => "yup-oauth2 failed",
            }),
        },
    }
}

/// An error with a fixed text.
fn fixed(text: &'static str) -> BoxError {
    std::sync::Arc::new(std::io::Error::other(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_outside_what_a_system_time_holds_do_not_panic() {
        assert_eq!(system_time(-1), UNIX_EPOCH);
        assert_eq!(system_time(i128::MIN), UNIX_EPOCH);
        assert_eq!(system_time(i128::MAX), UNIX_EPOCH);
        assert_eq!(
            system_time(1_700_000_000_500_000_000),
            UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000)
        );
    }

    #[test]
    fn errors_that_may_quote_an_answer_keep_only_their_kind() {
        let json = serde_json::from_str::<u8>("\"ya29.SECRETMARKER\"").unwrap_err();
        let e = error(YupError::JSONError(json));
        let text = format!("{e} {e:?} {}", std::error::Error::source(&e).unwrap());
        assert!(!text.contains("MARKER"), "{text}");
        let e = error(YupError::UserError("ya29.SECRETMARKER".into()));
        let text = format!("{e} {e:?} {}", std::error::Error::source(&e).unwrap());
        assert!(!text.contains("MARKER"), "{text}");
    }
}
