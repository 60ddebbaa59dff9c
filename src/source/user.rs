//! A user's refresh token (`token.json`, any token store, an
//! `authorized_user` ADC file): the decision between the stored token, a
//! refresh and a consent, and the one locked-refresh path that the loader
//! and the background refresh share.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use crate::consent_reason::ConsentReason;
use crate::endpoints::GOOGLE_TOKEN_URI;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::store::{DynTokenStore, StoreLock};
use crate::token::{StoredToken, TokenFileProblem};
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::{self, Retry};

/// How long a background refresh waits for another process's refresh of the same store.
const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(60);

/// What a stored record allows.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    Use,
    Refresh,
    Consent(ConsentReason),
}

/// Pure: what `stored` allows for `scopes`. With `newer_than`, a usable
/// token is taken only when it expires later than that (a background
/// refresh must not settle for the token it is replacing).
pub(crate) fn decide(
    stored: Option<&StoredToken>,
    scopes: &[String],
    newer_than: Option<SystemTime>,
) -> Decision {
    let Some(record) = stored else {
        return Decision::Consent(ConsentReason::NoToken);
    };
    let missing = record.missing_scopes(scopes);
    let newer = newer_than.is_none_or(|have| record.expiry().is_some_and(|e| e > have));
    if !missing.is_empty() {
        Decision::Consent(ConsentReason::ScopesNotCovered(missing))
    } else if record.is_usable() && newer {
        Decision::Use
    } else if record.refresh_token.is_some() {
        Decision::Refresh
    } else {
        Decision::Consent(ConsentReason::NoRefreshToken)
    }
}

/// The outcome of [`UserSource::resolve`].
#[allow(clippy::large_enum_variant)] // short-lived, returned once per resolve
pub(crate) enum Outcome {
    /// A usable stored token (saved by this or another process).
    Token(StoredToken),
    /// A token this call just refreshed (and saved, when it could).
    Refreshed {
        record: StoredToken,
        /// The server sent a new refresh token.
        rotated: bool,
    },
    /// Only a new consent can help.
    Consent(ConsentReason),
}

/// A user's credentials and where they are kept.
pub(crate) struct UserSource {
    record: Mutex<StoredToken>,
    store: Option<Arc<dyn DynTokenStore>>,
    name: String,
    /// A token endpoint for this run only; never written to the store.
    token_uri: Option<String>,
    http: Arc<HttpClient>,
    retry: Retry,
    revoke_uri: Cow<'static, str>,
    save_warned: AtomicBool,
    /// Signed out: nothing is saved or handed out any more.
    revoked: AtomicBool,
    /// The scopes asked for: a record in the store that does not cover them
    /// is another program's, never adopted by a refresh.
    scopes: Vec<String>,
    /// The ID token of the last refresh that brought one (sign-ins with `openid`).
    id_token: Mutex<Option<SecretString>>,
    /// Refresh grants answered so far: a refresh of the cache that took
    /// another process's token instead brought no ID token.
    grants: AtomicU64,
}

/// How a [`UserSource`] reaches its endpoints.
pub(crate) struct Endpoints {
    pub(crate) http: Arc<HttpClient>,
    pub(crate) retry: Retry,
    /// Overrides the record's `token_uri` for this run.
    pub(crate) token_uri: Option<String>,
    pub(crate) revoke_uri: Cow<'static, str>,
}

impl UserSource {
    /// `name` is the store's (or the file's) name for messages.
    pub(crate) fn new(
        store: Option<Arc<dyn DynTokenStore>>,
        name: String,
        record: StoredToken,
        endpoints: Endpoints,
    ) -> Self {
        UserSource {
            record: Mutex::new(record),
            store,
            name,
            token_uri: endpoints.token_uri,
            http: endpoints.http,
            retry: endpoints.retry,
            revoke_uri: endpoints.revoke_uri,
            save_warned: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            scopes: Vec::new(),
            id_token: Mutex::new(None),
            grants: AtomicU64::new(0),
        }
    }

    /// The scopes the credentials were loaded for (none: any record serves).
    pub(crate) fn requested_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    /// Whether a refresh may take `theirs`, found in the store, in place of
    /// `ours`: the same OAuth client and account, and the scopes asked for.
    /// Anything else is another program's sign-in (Python's quickstart with
    /// other scopes, another client), and adopting it would make every API
    /// call fail with 403.
    fn adoptable(&self, theirs: &StoredToken, ours: &StoredToken) -> bool {
        let account = |r: &StoredToken| r.account.clone().filter(|a| !a.is_empty());
        let same_account = match (account(theirs), account(ours)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        theirs.client_id == ours.client_id
            && same_account
            && theirs.missing_scopes(&self.scopes).is_empty()
    }

    /// A copy of the current record. Holds secrets: never log it.
    pub(crate) fn record(&self) -> StoredToken {
        lock(&self.record).clone()
    }

    /// The current record, unless signed out.
    pub(crate) fn signed_in_record(&self) -> Option<StoredToken> {
        (!self.revoked.load(Ordering::SeqCst)).then(|| self.record())
    }

    /// The ID token the last refresh brought, if any.
    pub(crate) fn id_token(&self) -> Option<SecretString> {
        lock(&self.id_token).clone()
    }

    /// How many refresh grants were answered (see [`Self::id_token`]).
    pub(crate) fn grants(&self) -> u64 {
        self.grants.load(Ordering::SeqCst)
    }

    pub(crate) fn set_record(&self, record: StoredToken) {
        *lock(&self.record) = record;
    }

    /// The one locked-refresh path. Takes the store's cross-process lock
    /// (when it has one), re-reads the store under it (another process may
    /// have refreshed or signed in meanwhile), then uses the stored token,
    /// refreshes and saves it, or says that consent is needed. Without a
    /// lock, `current` is what is decided on. The lock is handed back so the
    /// loader can hold it through a consent flow.
    ///
    /// `replacing` is the record a refresh replaces (the loader has none): a
    /// stored record is then taken only if it is newer and
    /// [adoptable](Self::adoptable), and `replacing` is refreshed otherwise.
    ///
    /// A refreshed token that cannot be saved is still used: the failure is
    /// logged once as a warning, and the next process refreshes again.
    pub(crate) async fn resolve(
        &self,
        current: Option<StoredToken>,
        scopes: &[String],
        replacing: Option<&StoredToken>,
        wait: Duration,
    ) -> Result<(Outcome, Option<StoreLock>)> {
        let held = match &self.store {
            Some(store) => match store.lock(wait).await {
                Ok(held) => held,
                // A store that is down (Redis unreachable) must not stop a
                // refresh with the refresh token already in memory.
                Err(e @ Error::Store { .. }) if current.is_some() => {
                    tracing::warn!(error = %e, "the token store cannot be locked; refreshing with the token in memory");
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let stored = match (&held, &self.store) {
            (Some(_), Some(store)) => match store.load().await {
                Ok(stored) => stored,
                Err(e @ Error::Store { .. }) if current.is_some() => {
                    tracing::warn!(error = %e, "the token store cannot be read; refreshing with the token in memory");
                    current
                }
                Err(e) => return Err(e),
            },
            _ => current,
        };
        let (stored, scopes) = match replacing {
            None => (stored, scopes),
            // Ours covers what was asked for (the loader made sure of it).
            Some(ours) => match stored {
                Some(theirs) if self.adoptable(&theirs, ours) => (Some(theirs), &[][..]),
                theirs => {
                    if theirs.is_some() {
                        tracing::warn!(
                            store = %self.name,
                            "the store holds another program's sign-in (another client, account \
                             or scopes); refreshing with the refresh token in memory"
                        );
                    }
                    (Some(ours.clone()), &[][..])
                }
            },
        };
        let newer_than = replacing.and_then(StoredToken::expiry);
        let decision = decide(stored.as_ref(), scopes, newer_than);
        let outcome = match (decision, stored) {
            (Decision::Use, Some(record)) => {
                tracing::debug!(store = %self.name, "using the stored token");
                Outcome::Token(record)
            }
            (Decision::Refresh, Some(record)) => match self.refresh_grant(record.clone()).await {
                // Signed out while refreshing: the new token is neither saved nor used.
                Ok(_) if self.revoked.load(Ordering::SeqCst) => {
                    return Err(Error::Revoked {
                        source_name: self.name.clone(),
                    });
                }
                Ok(fresh) => {
                    self.save_refreshed(&fresh).await;
                    let rotated = fresh.refresh_token() != record.refresh_token();
                    Outcome::Refreshed {
                        record: fresh,
                        rotated,
                    }
                }
                Err(Error::InvalidGrant { description, .. }) => {
                    Outcome::Consent(ConsentReason::RefreshTokenRejected(description))
                }
                Err(e) => return Err(e),
            },
            (Decision::Consent(reason), _) => Outcome::Consent(reason),
            // decide() says Use or Refresh only for a stored record.
            (_, None) => Outcome::Consent(ConsentReason::NoToken),
        };
        if let Outcome::Token(record) | Outcome::Refreshed { record, .. } = &outcome {
            self.set_record(record.clone());
        }
        Ok((outcome, held))
    }

    /// The error for a consent that may not (or cannot) happen here.
    pub(crate) fn consent_error(&self, reason: ConsentReason) -> Error {
        match reason {
            ConsentReason::RefreshTokenRejected(description) => Error::InvalidGrant {
                description,
                store: self.name.clone(),
            },
            reason => Error::ConsentRequired {
                reason,
                store: self.name.clone(),
            },
        }
    }

    /// Runs the refresh_token grant for `record` and returns the updated
    /// record (new token and expiry, granted scopes, rotated refresh token).
    async fn refresh_grant(&self, mut record: StoredToken) -> Result<StoredToken> {
        let refresh_token = record
            .refresh_token
            .clone()
            .ok_or_else(|| self.consent_error(ConsentReason::NoRefreshToken))?;
        let (Some(client_id), Some(client_secret)) =
            (record.client_id.clone(), record.client_secret.clone())
        else {
            let field = if record.client_id.is_none() {
                "client_id"
            } else {
                "client_secret"
            };
            return Err(Error::TokenFile {
                path: self.name.clone().into(),
                problem: TokenFileProblem::MissingField(field),
            });
        };
        let token_uri = self
            .token_uri
            .as_deref()
            .or(record.token_uri.as_deref())
            .unwrap_or(GOOGLE_TOKEN_URI);
        let client = token_endpoint::Client {
            id: &client_id,
            secret: &client_secret,
        };
        let resp =
            token_endpoint::refresh(&self.http, self.retry, token_uri, &client, &refresh_token)
                .await
                .map_err(|e| token_endpoint::invalid_grant_in(e, self.name.clone()))?;
        if let Some(id_token) = &resp.id_token {
            *lock(&self.id_token) = Some(id_token.clone());
        }
        self.grants.fetch_add(1, Ordering::SeqCst);
        resp.apply_to(&mut record);
        tracing::debug!("access token refreshed");
        Ok(record)
    }

    async fn save_refreshed(&self, record: &StoredToken) {
        let Some(store) = &self.store else { return };
        match store.save(record).await {
            Ok(()) => self.save_warned.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.save_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "the refreshed token cannot be saved; it is used from memory, and the \
                         next process will refresh again"
                    );
                }
            }
        }
    }

    /// Saves a record obtained by consent; unlike a refresh, a failure here
    /// is an error, since the sign-in would otherwise be lost unnoticed.
    pub(crate) async fn save_signed_in(&self, record: StoredToken) -> Result<()> {
        if let Some(store) = &self.store {
            store.save(&record).await?;
        }
        self.set_record(record);
        Ok(())
    }

    /// Revokes the refresh token (or the access token when there is none)
    /// at the endpoint, then forgets it: from here on nothing is saved or
    /// handed out. `then` runs right after (the cache closes there), and the
    /// store is cleared last, under its lock, so a refresh that held the lock
    /// cannot write the token back after it.
    pub(crate) async fn revoke(&self, then: impl FnOnce() -> Result<()>) -> Result<()> {
        let (token, client_id, client_secret) = {
            let r = lock(&self.record);
            let token = r.refresh_token.clone().or_else(|| r.token.clone());
            (token, r.client_id.clone(), r.client_secret.clone())
        };
        if let Some(token) = token {
            let client = match (&client_id, &client_secret) {
                (Some(id), Some(secret)) => Some(token_endpoint::Client { id, secret }),
                _ => None,
            };
            token_endpoint::revoke_as(
                &self.http,
                self.retry,
                &self.revoke_uri,
                &token,
                client.as_ref(),
            )
            .await?;
        }
        self.revoked.store(true, Ordering::SeqCst);
        self.set_record(StoredToken::default());
        *lock(&self.id_token) = None;
        then()?;
        if let Some(store) = &self.store {
            let _lock = store.lock(REFRESH_LOCK_WAIT).await?;
            store.clear().await?;
        }
        tracing::info!("credentials revoked");
        Ok(())
    }
}

impl TokenSource for UserSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move {
            let current = self.record();
            let (outcome, _lock) = self
                .resolve(
                    Some(current.clone()),
                    &self.scopes,
                    Some(&current),
                    REFRESH_LOCK_WAIT,
                )
                .await?;
            match outcome {
                Outcome::Token(record) => Ok(super::fetched_from_record(&record)),
                Outcome::Refreshed { record, rotated } => Ok(Fetched {
                    refresh_token_rotated: rotated,
                    ..super::fetched_from_record(&record)
                }),
                Outcome::Consent(reason) => Err(self.consent_error(reason)),
            }
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    //! The pure decision: cached → refresh → consent.

    use super::*;

    const SCOPE: &str = "https://www.googleapis.com/auth/generative-language.retriever";

    fn record(expires_in: i64, refresh: bool, scopes: Option<&[&str]>) -> StoredToken {
        let mut r = StoredToken {
            token: Some(SecretString::from("ya29.t")),
            refresh_token: refresh.then(|| SecretString::from("1//r")),
            scopes: scopes.map(|s| s.iter().map(|s| s.to_string()).collect()),
            ..StoredToken::default()
        };
        let now = SystemTime::now();
        r.set_expiry(if expires_in >= 0 {
            now + Duration::from_secs(expires_in as u64)
        } else {
            now - Duration::from_secs((-expires_in) as u64)
        });
        r
    }

    fn scopes() -> Vec<String> {
        vec![SCOPE.to_owned()]
    }

    #[test]
    fn nothing_stored_needs_consent() {
        assert!(matches!(
            decide(None, &scopes(), None),
            Decision::Consent(ConsentReason::NoToken)
        ));
    }

    #[test]
    fn valid_token_is_used_expired_one_refreshed() {
        let s = scopes();
        assert!(matches!(
            decide(Some(&record(3000, true, Some(&[SCOPE]))), &s, None),
            Decision::Use
        ));
        assert!(matches!(
            decide(Some(&record(-10, true, Some(&[SCOPE]))), &s, None),
            Decision::Refresh
        ));
        // Inside the 10 s skew counts as expired.
        assert!(matches!(
            decide(Some(&record(5, true, Some(&[SCOPE]))), &s, None),
            Decision::Refresh
        ));
        assert!(matches!(
            decide(Some(&record(-10, false, Some(&[SCOPE]))), &s, None),
            Decision::Consent(ConsentReason::NoRefreshToken)
        ));
    }

    #[test]
    fn missing_scopes_need_consent_even_with_a_valid_token() {
        let wanted = vec![SCOPE.to_owned(), "https://extra".to_owned()];
        match decide(Some(&record(3000, true, Some(&[SCOPE]))), &wanted, None) {
            Decision::Consent(ConsentReason::ScopesNotCovered(missing)) => {
                assert_eq!(missing, ["https://extra"]);
            }
            other => panic!("{other:?}"),
        }
        // gcloud's ADC file records no scopes: taken to cover all.
        assert!(matches!(
            decide(Some(&record(3000, true, None)), &wanted, None),
            Decision::Use
        ));
    }

    #[test]
    fn a_background_refresh_only_takes_a_newer_token() {
        let s = scopes();
        let ours = record(100, true, Some(&[SCOPE]));
        let have = ours.expiry();
        assert!(matches!(
            decide(Some(&ours.clone()), &s, have),
            Decision::Refresh
        ));
        let theirs = record(3000, true, Some(&[SCOPE]));
        assert!(matches!(decide(Some(&theirs), &s, have), Decision::Use));
    }
}
