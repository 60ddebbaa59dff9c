//! [`UserCredentials`]: the credentials of a web app's signed-in users, one
//! per user id, loaded on demand from a [`KeyedTokenStore`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::consent::Consent;
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::loader::CredentialLoader;
use crate::store::{KeyedTokenStore, TokenStore};
use crate::token::StoredToken;
use crate::token_endpoint::OAuthError;

/// How long [`UserCredentials::sign_in`] waits for the user's lock (another
/// replica refreshing that user).
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A refresh of one user's token that failed, as the
/// [`on_refresh_failure`](UserCredentials::on_refresh_failure) observer
/// hears of it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RefreshFailure {
    /// The user whose token could not be refreshed.
    pub user_id: String,
    /// What every caller waiting for the refresh got.
    pub error: Error,
}

impl RefreshFailure {
    /// Whether only a new sign-in helps: the refresh token was refused
    /// (`invalid_grant`: the user revoked the app's access, changed their
    /// password, or the token expired). Other failures (the network, the
    /// server) pass; the next call tries again.
    #[must_use]
    pub fn needs_sign_in(&self) -> bool {
        self.error.oauth_error() == Some(&OAuthError::InvalidGrant)
    }
}

type Observer = Arc<dyn Fn(&RefreshFailure) + Send + Sync>;
type Slot = Arc<OnceCell<Result<Credentials>>>;

struct Entry {
    slot: Slot,
    last_used: Instant,
}

struct Inner<S> {
    store: S,
    loader: CredentialLoader,
    capacity: usize,
    idle: Duration,
    observer: Option<Observer>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// The credentials of a web app's users, by user id, over a
/// [`KeyedTokenStore`]:
///
/// - [`get`](Self::get) loads a user's credentials from the store on first
///   use, once however many requests ask at the same time, and hands out
///   clones afterwards (each refreshes itself, once per expiry, under the
///   user's store lock, so replicas sharing a Redis store refresh each user
///   once);
/// - at most [`capacity`](Self::capacity) users are held; a new one
///   evicts those idle longer than [`idle_timeout`](Self::idle_timeout),
///   else the least recently used (evicted credentials are only forgotten:
///   the store keeps the token);
/// - [`sign_in`](Self::sign_in) saves a finished [`WebFlow`](super::WebFlow)
///   sign-in under the user id, [`sign_out`](Self::sign_out) revokes it and
///   deletes the user's record;
/// - [`on_refresh_failure`](Self::on_refresh_failure) hears of failed
///   refreshes, `invalid_grant` above all (the user revoked access), so the
///   app can ask that user to sign in again.
///
/// Cheap to clone (an `Arc` inside): put it in the app's state.
pub struct UserCredentials<S: KeyedTokenStore> {
    inner: Arc<Inner<S>>,
}

impl<S: KeyedTokenStore> Clone for UserCredentials<S> {
    fn clone(&self) -> Self {
        UserCredentials {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: KeyedTokenStore + fmt::Debug> fmt::Debug for UserCredentials<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("store", &self.inner.store)
            .field("capacity", &self.inner.capacity)
            .field("idle_timeout", &self.inner.idle)
            .field("live", &self.len())
            .finish_non_exhaustive()
    }
}

impl<S: KeyedTokenStore> UserCredentials<S> {
    /// The default [`capacity`](Self::capacity).
    pub const DEFAULT_CAPACITY: usize = 10_000;
    /// The default [`idle_timeout`](Self::idle_timeout).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

    /// A map over `store`, each user's credentials loaded as `loader` says
    /// (its API base, quota project, scopes, token and revocation endpoints,
    /// proxy, timeouts…) with the user's store, [`Consent::Never`], and this
    /// map's refresh failure observer. No I/O.
    #[must_use]
    pub fn new(store: S, loader: CredentialLoader) -> Self {
        UserCredentials {
            inner: Arc::new(Inner {
                store,
                loader,
                capacity: Self::DEFAULT_CAPACITY,
                idle: Self::DEFAULT_IDLE_TIMEOUT,
                observer: None,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Inner<S>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => panic!("UserCredentials is configured before it is cloned"),
        }
        self
    }

    /// At most this many users' credentials are held (default
    /// [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY); at least 1).
    ///
    /// # Panics
    /// When called on a clone (configure the map before sharing it).
    #[must_use]
    pub fn capacity(self, capacity: usize) -> Self {
        self.configure(|i| i.capacity = capacity.max(1))
    }

    /// Credentials unused this long are evicted when room is needed, or by
    /// [`evict_idle`](Self::evict_idle) (default
    /// [`DEFAULT_IDLE_TIMEOUT`](Self::DEFAULT_IDLE_TIMEOUT)).
    ///
    /// # Panics
    /// When called on a clone.
    #[must_use]
    pub fn idle_timeout(self, idle: Duration) -> Self {
        self.configure(|i| i.idle = idle)
    }

    /// Calls `observer` after each failed refresh of a user's token: a
    /// background refresh, one a request waited for, or one [`get`](Self::get)
    /// made loading an expired token. When
    /// [`needs_sign_in`](RefreshFailure::needs_sign_in), the user's
    /// credentials are dropped from the map too. Keep it short; a panic in
    /// it is logged and ignored.
    ///
    /// # Panics
    /// When called on a clone.
    #[must_use]
    pub fn on_refresh_failure(
        self,
        observer: impl Fn(&RefreshFailure) + Send + Sync + 'static,
    ) -> Self {
        self.configure(|i| i.observer = Some(Arc::new(observer)))
    }

    /// The keyed store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// How many users' credentials are held (loaded or loading).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no user's credentials are held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The credentials of `user_id`: held ones, else loaded from the store
    /// (once, for every request that asks meanwhile).
    ///
    /// # Errors
    /// [`Error::ConsentRequired`] when the user has no stored token (or one
    /// that lacks the loader's scopes): send them through the sign-in;
    /// [`Error::InvalidGrant`] when their stored token was refused; the
    /// store's errors. A failed load is not kept: the next call tries again.
    pub async fn get(&self, user_id: &str) -> Result<Credentials> {
        let slot = self.slot(user_id);
        self.fill(user_id, &slot).await
    }

    /// Saves `token` (from [`SignedIn::into_token`](super::SignedIn::into_token))
    /// as `user_id`'s record, under the user's lock, and returns the user's
    /// fresh credentials; credentials held for the user before are dropped
    /// from the map. A token without a refresh token (Google sends one only
    /// at the first consent, or with `prompt=consent`) keeps the refresh
    /// token stored for the user, if any.
    ///
    /// # Errors
    /// The store's errors, and those of [`get`](Self::get).
    pub async fn sign_in(&self, user_id: &str, mut token: StoredToken) -> Result<Credentials> {
        let store = self.inner.store.for_user(user_id)?;
        {
            let _lock = store.lock(LOCK_WAIT).await?;
            if token.refresh_token.is_none()
                && let Some(stored) = store.load().await?
            {
                token.refresh_token = stored.refresh_token;
            }
            store.save(&token).await?;
        }
        let slot: Slot = Arc::new(OnceCell::new());
        self.insert(user_id, Arc::clone(&slot));
        self.fill(user_id, &slot).await
    }

    /// Signs `user_id` out: revokes their refresh token at the revocation
    /// endpoint (see [`Credentials::revoke`]), deletes their record and drops
    /// their credentials (clones still held answer
    /// [`Error::Revoked`]). A stored token that lacks the map's scopes, or
    /// that cannot be refreshed now (the token endpoint is down), is revoked
    /// all the same; a user with no stored token, or one the server already
    /// refused, only has the record deleted.
    ///
    /// Other processes sharing the store (replicas over Redis) keep the
    /// credentials they hold for the user: they serve the access token they
    /// have (which the revocation invalidated at Google) until it is due
    /// for a refresh, which Google then refuses (`invalid_grant`, told to
    /// their [`on_refresh_failure`](Self::on_refresh_failure)). An app that
    /// needs the sign-out seen at once everywhere tells its replicas to
    /// [`remove`](Self::remove) the user.
    ///
    /// # Errors
    /// The revocation endpoint's errors (the user then stays signed in) and
    /// the store's.
    pub async fn sign_out(&self, user_id: &str) -> Result<()> {
        let result = match self.get(user_id).await {
            Ok(creds) => creds.revoke().await,
            // Refused: nothing left to revoke.
            Err(Error::InvalidGrant { .. }) => self.inner.store.clear(user_id).await,
            // No token, one that lacks the map's scopes, or one that could
            // not be refreshed (the token endpoint is down): the stored
            // refresh token is revoked as it is, with no refresh.
            Err(_) => {
                let store = self.inner.store.for_user(user_id)?;
                let loader = self.inner.loader.clone().token_store(store);
                match loader.load_stored().await? {
                    Some(creds) => creds.revoke().await,
                    None => self.inner.store.clear(user_id).await,
                }
            }
        };
        if result.is_ok() {
            self.remove(user_id);
        }
        result
    }

    /// Forgets `user_id`'s credentials (the stored token stays). Returns
    /// whether any were held.
    pub fn remove(&self, user_id: &str) -> bool {
        self.entries().remove(user_id).is_some()
    }

    /// Forgets every user's credentials unused for longer than
    /// [`idle_timeout`](Self::idle_timeout); returns how many. The map also
    /// does this by itself when it is full; call it from a timer to free
    /// memory sooner.
    pub fn evict_idle(&self) -> usize {
        let idle = self.inner.idle;
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, e| e.last_used.elapsed() <= idle);
        before.saturating_sub(entries.len())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The user's slot, made (room made for it) if there is none.
    fn slot(&self, user_id: &str) -> Slot {
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(user_id) {
            entry.last_used = Instant::now();
            return Arc::clone(&entry.slot);
        }
        // Made under the same lock as the look-up: two requests that both
        // found none would otherwise each make one, and load twice.
        let slot: Slot = Arc::new(OnceCell::new());
        self.insert_locked(&mut entries, user_id, Arc::clone(&slot));
        slot
    }

    fn insert(&self, user_id: &str, slot: Slot) {
        self.insert_locked(&mut self.entries(), user_id, slot);
    }

    fn insert_locked(&self, entries: &mut HashMap<String, Entry>, user_id: &str, slot: Slot) {
        if !entries.contains_key(user_id) && entries.len() >= self.inner.capacity {
            let idle = self.inner.idle;
            entries.retain(|_, e| e.last_used.elapsed() <= idle);
            if entries.len() >= self.inner.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let entry = Entry {
            slot,
            last_used: Instant::now(),
        };
        entries.insert(user_id.to_owned(), entry);
    }

    /// The slot's credentials, loading them if it is empty; a failed load
    /// leaves the map (if the slot is still the user's).
    async fn fill(&self, user_id: &str, slot: &Slot) -> Result<Credentials> {
        let result = slot.get_or_init(|| self.load(user_id)).await.clone();
        if let Err(e) = &result {
            let mut entries = self.entries();
            if entries
                .get(user_id)
                .is_some_and(|entry| Arc::ptr_eq(&entry.slot, slot))
            {
                entries.remove(user_id);
            }
            drop(entries);
            if e.oauth_error() == Some(&OAuthError::InvalidGrant) {
                tell(self.inner.observer.as_ref(), user_id, e);
            }
        }
        result
    }

    async fn load(&self, user_id: &str) -> Result<Credentials> {
        let loader = self.inner.loader.clone();
        let store = self.inner.store.for_user(user_id)?;
        let weak: Weak<Inner<S>> = Arc::downgrade(&self.inner);
        let user = user_id.to_owned();
        loader
            .token_store(store)
            .consent(Consent::Never)
            .on_refresh_failure(move |e| {
                let Some(inner) = weak.upgrade() else { return };
                if e.oauth_error() == Some(&OAuthError::InvalidGrant) {
                    inner
                        .entries
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&user);
                }
                tell(inner.observer.as_ref(), &user, e);
            })
            .load()
            .await
    }
}

fn tell(observer: Option<&Observer>, user_id: &str, error: &Error) {
    if let Some(observe) = observer {
        let failure = RefreshFailure {
            user_id: user_id.to_owned(),
            error: error.clone(),
        };
        let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observe(&failure)));
        if told.is_err() {
            tracing::warn!("the refresh failure observer panicked");
        }
    }
}
