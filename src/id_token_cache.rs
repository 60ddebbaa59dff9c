//! One token cache per audience for [`IdToken`]s, over the credentials' own
//! token source (or, for a user's sign-in, over its refreshes), so ID tokens
//! are shared, refreshed ahead of expiry and fetched once per audience like
//! access tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use crate::access_token::{EXPIRY_SKEW, REFRESH_WINDOW};
use crate::error::{Error, Result};
use crate::id_token::{self, IdToken, IdTokenProblem};
use crate::source::user::UserSource;
use crate::token_cache::{BoxFuture, CacheOptions, Fetched, TokenCache, TokenSource};

/// Audiences kept at once; past it the least recently asked for is dropped
/// (and fetched again when asked for), so audiences from outside input
/// cannot grow memory.
const MAX_AUDIENCES: usize = 64;
/// A user's last ID token is reused while it has more than this left.
const USER_ID_TOKEN_LEFT: Duration = Duration::from_secs(REFRESH_WINDOW.as_secs() + 60);

/// The ID-token caches of one [`Credentials`](crate::Credentials).
#[derive(Default)]
pub(crate) struct IdTokens {
    caches: Mutex<Audiences>,
    closed: AtomicBool,
}

/// Each audience's cache, and when it was last asked for (a count of calls).
#[derive(Default)]
struct Audiences {
    by_name: HashMap<String, (TokenCache, u64)>,
    calls: u64,
}

impl IdTokens {
    /// A valid ID token for `audience`, drawn from `access`'s source (or
    /// from `user`'s refreshes).
    pub(crate) async fn get(
        &self,
        audience: &str,
        access: &TokenCache,
        user: Option<&Arc<UserSource>>,
    ) -> Result<IdToken> {
        let error = |problem| Error::IdToken {
            source_name: access.describe(),
            problem,
        };
        if audience.is_empty() {
            return Err(error(IdTokenProblem::EmptyAudience));
        }
        #[cfg(test)]
        if let Some(between) = tests::BEFORE_LOCK.take() {
            between();
        }
        let cache = {
            let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
            // Under the lock: a close() since is seen here, or it comes after
            // and closes the cache made here. Checked before the lock, a
            // racing close() missed the new cache, which then served.
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::Revoked {
                    source_name: access.describe(),
                });
            }
            caches.calls = caches.calls.wrapping_add(1);
            let now = caches.calls;
            match caches.by_name.get_mut(audience) {
                Some((cache, used)) => {
                    *used = now;
                    cache.clone()
                }
                None => {
                    if caches.by_name.len() >= MAX_AUDIENCES
                        && let Some(old) = caches
                            .by_name
                            .iter()
                            .min_by_key(|(_, (_, used))| *used)
                            .map(|(name, _)| name.clone())
                    {
                        caches.by_name.remove(&old);
                    }
                    let source = AudienceSource {
                        access: access.clone(),
                        user: user.cloned(),
                        audience: audience.to_owned(),
                    };
                    let cache = TokenCache::lazy(Arc::new(source), CacheOptions::default())?;
                    caches
                        .by_name
                        .insert(audience.to_owned(), (cache.clone(), now));
                    cache
                }
            }
        };
        cache.token().await.map(IdToken)
    }

    /// After a sign-out: every cached ID token is dropped and every later
    /// call is [`Error::Revoked`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        for (cache, _) in caches.by_name.values() {
            // Fails only to build the empty token it publishes.
            let _ = cache.close();
        }
    }
}

/// The ID tokens of one audience.
struct AudienceSource {
    access: TokenCache,
    user: Option<Arc<UserSource>>,
    audience: String,
}

impl AudienceSource {
    fn error(&self, problem: IdTokenProblem) -> Error {
        Error::IdToken {
            source_name: self.access.describe(),
            problem,
        }
    }

    /// A user's ID token comes with each refresh of the access token (when
    /// the sign-in had `openid`), for the OAuth client as audience: the last
    /// one while it has more than the refresh window left, else a refresh's.
    async fn of_user(&self, user: &UserSource) -> Result<Fetched> {
        let client_id = user.record().client_id.unwrap_or_default();
        if self.audience != client_id {
            return Err(self.error(IdTokenProblem::NotTheClient { client_id }));
        }
        let last = || {
            let token = user.id_token()?;
            let fetched = id_token::fetched(token.expose_secret()).ok()?;
            let fresh_until = SystemTime::now().checked_add(USER_ID_TOKEN_LEFT)?;
            (fetched.expires_at > fresh_until).then_some(fetched)
        };
        if let Some(fetched) = last() {
            return Ok(fetched);
        }
        // An expired access token is refreshed here, bringing an ID token.
        let current = self.access.token().await?;
        if let Some(fetched) = last() {
            return Ok(fetched);
        }
        let grants = user.grants();
        let new = self.access.refresh_after(&current).await?;
        if user.grants() == grants {
            // The store held another process's newer token, taken instead
            // of a refresh: that process got its ID token. Refresh it.
            self.access.refresh_after(&new).await?;
        }
        let token = user
            .id_token()
            .ok_or_else(|| self.error(IdTokenProblem::NoOpenIdScope))?;
        id_token::fetched(token.expose_secret()).map_err(|p| self.error(p))
    }
}

impl TokenSource for AudienceSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move {
            let fetched = match &self.user {
                Some(user) => self.of_user(user).await?,
                None => match self.access.source_id_token(&self.audience) {
                    Some(fetching) => fetching.await?,
                    None => return Err(self.error(IdTokenProblem::NotSupported)),
                },
            };
            // Why: an expired one would be handed out once and then fetched
            // again on every call; an error backs off like any failure.
            let usable_after = SystemTime::now().checked_add(EXPIRY_SKEW);
            if usable_after.is_none_or(|t| fetched.expires_at <= t) {
                return Err(self.error(IdTokenProblem::Expired));
            }
            Ok(fetched)
        })
    }

    fn describe(&self) -> String {
        format!(
            "ID tokens for {} from {}",
            self.audience,
            self.access.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use secrecy::SecretString;

    use super::*;

    thread_local! {
        /// Runs in `get` on this thread, just before it takes the lock.
        pub(super) static BEFORE_LOCK: std::cell::Cell<Option<Box<dyn FnOnce()>>> =
            const { std::cell::Cell::new(None) };
    }

    /// Access tokens that never expire, and ID tokens it counts.
    struct Ids(AtomicUsize);

    fn an_hour() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    impl TokenSource for Ids {
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
            Box::pin(async {
                Ok(Fetched {
                    token: SecretString::from("ya29.a"),
                    expires_at: an_hour(),
                    refresh_token_rotated: false,
                })
            })
        }
        fn describe(&self) -> String {
            "ids".into()
        }
        fn id_token<'a>(&'a self, _: &'a str) -> Option<BoxFuture<'a, Result<Fetched>>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let exp = an_hour().duration_since(SystemTime::UNIX_EPOCH).unwrap();
            let claims = URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{}}}", exp.as_secs()));
            let jwt = format!("e30.{claims}.c2ln");
            Some(Box::pin(
                async move { Ok(id_token::fetched(&jwt).unwrap()) },
            ))
        }
    }

    /// A counting [`Ids`] source and an access-token cache over it, its
    /// first token valid for an hour.
    fn access_over_ids() -> (Arc<Ids>, TokenCache) {
        let source = Arc::new(Ids(AtomicUsize::new(0)));
        let first = Fetched {
            token: SecretString::from("ya29.a"),
            expires_at: an_hour(),
            refresh_token_rotated: false,
        };
        let access = TokenCache::new(
            Arc::clone(&source) as Arc<dyn TokenSource>,
            first,
            CacheOptions::default(),
        )
        .unwrap();
        (source, access)
    }

    #[tokio::test]
    async fn audiences_past_the_cap_are_dropped_least_recent_first_and_fetched_again() {
        let (source, access) = access_over_ids();
        let ids = IdTokens::default();
        for round in 0..2 {
            for i in 0..=MAX_AUDIENCES {
                ids.get(&format!("aud-{i}"), &access, None).await.unwrap();
            }
            let kept = ids.caches.lock().unwrap().by_name.len();
            assert_eq!(kept, MAX_AUDIENCES, "round {round}");
        }
        // The least recently asked for goes first: aud-1 and aud-2 were the
        // oldest; aud-1 asked for again stays when a new audience comes, and
        // aud-2, untouched since, goes.
        let has = |aud: &str| ids.caches.lock().unwrap().by_name.contains_key(aud);
        assert!(has("aud-1") && has("aud-2"));
        ids.get("aud-1", &access, None).await.unwrap();
        ids.get("new", &access, None).await.unwrap();
        assert!(has("aud-1") && has("new") && !has("aud-2"));
        // Round two fetched again at least the audiences dropped.
        let fetched = source.0.load(Ordering::SeqCst);
        assert!(fetched > MAX_AUDIENCES + 1, "{fetched}");
        ids.get("aud-0", &access, None).await.unwrap();
        ids.close();
        let err = ids.get("aud-0", &access, None).await.unwrap_err();
        assert!(matches!(err, Error::Revoked { .. }), "{err:?}");
    }

    /// A call that started before a sign-out but takes the lock after it
    /// is [`Error::Revoked`], and leaves no cache that close() missed.
    #[tokio::test]
    async fn a_call_racing_close_is_revoked_and_leaves_no_open_cache() {
        let (source, access) = access_over_ids();
        let ids = Arc::new(IdTokens::default());
        ids.get("kept", &access, None).await.unwrap();
        let closing = Arc::clone(&ids);
        BEFORE_LOCK.set(Some(Box::new(move || closing.close())));
        let err = ids.get("new", &access, None).await.unwrap_err();
        assert!(matches!(err, Error::Revoked { .. }), "{err:?}");
        assert!(!ids.caches.lock().unwrap().by_name.contains_key("new"));
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "no fetch after close");
    }
}
