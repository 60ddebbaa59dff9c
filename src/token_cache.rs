//! The token cache: one current access token, handed out without locks, and
//! renewed by a [`TokenSource`] through a single shared refresh.
//!
//! - **Hot path**: this thread's private copy of the current token
//!   ([`access_token`](crate::access_token)), checked against one atomic
//!   generation number; no lock, no shared reference count.
//! - **Refresh window**: during the last [`REFRESH_WINDOW`] of a token's life
//!   one background refresh starts while callers keep the valid token.
//! - **Expired**: callers wait for the one refresh in flight and share its
//!   result, error included ([`Error`] is `Clone`).
//! - **Failures**: after a failed refresh, no new one starts sooner than
//!   1 s, doubling up to 30 s; meanwhile callers that need a token get the
//!   last error at once instead of sending one token request each.
//! - **Closed** (signed out): every call is [`Error::Revoked`], the
//!   per-thread copies are stale, and a refresh in flight is not published.
//!
//! The transitions between these (start a flight, publish, fail and back
//! off, close) are a small state machine of their own (`machine.rs`), under
//! one lock and model-checked with loom (`model/`). A flight is driven by
//! the caller that needs the token, on its own runtime, or by a task spawned
//! for a refresh ahead of expiry. It always ends: a panic in the source or
//! the observer is a failure (with backoff); a driver dropped before the end
//! (its runtime dropped) abandons it and a waiter takes over; a refresh
//! left to a task on a current-thread runtime (a background one, or a
//! caller's) is taken over by a waiter from another runtime, since that
//! runtime may never run it again (two such callers join, not take over,
//! each other's). A flight ended without its driver (closed, taken over)
//! stops its fetch at once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use secrecy::SecretString;
use tokio::runtime;
use tokio::sync::Notify;

use crate::access_token::{self, AccessToken, Published};
use crate::clock::now_ms;
use crate::error::{Error, Result};

mod machine;

use machine::{Begin, Ended, Machine, Settled, Who};

#[cfg(doc)]
use crate::access_token::REFRESH_WINDOW;

/// Refreshes that failed are retried no sooner than this, doubling up to the max.
#[cfg(test)]
const BACKGROUND_BACKOFF: Duration = machine::BACKOFF;

/// A boxed future, for the object-safe [`TokenSource`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A new access token from a source.
pub(crate) struct Fetched {
    pub(crate) token: SecretString,
    pub(crate) expires_at: SystemTime,
    /// The server sent a new refresh token with it.
    pub(crate) refresh_token_rotated: bool,
}

/// What a refresh observer is told after each successful refresh: never a
/// token, only when the new one expires and whether the server rotated the
/// refresh token (see [`CredentialLoader::on_refresh`](crate::CredentialLoader::on_refresh)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshEvent {
    /// When the new access token expires.
    pub expires_at: SystemTime,
    /// Whether the token endpoint sent a new refresh token (which was kept,
    /// and saved when the store allows).
    pub refresh_token_rotated: bool,
    /// Where the credentials come from (a file path, a store's name).
    pub source: String,
}

/// A callback for [`RefreshEvent`]s.
pub(crate) type RefreshObserver = Arc<dyn Fn(&RefreshEvent) + Send + Sync>;

/// A callback for failed refreshes: the error every waiter got.
pub(crate) type FailureObserver = Arc<dyn Fn(&Error) + Send + Sync>;

/// How a cache refreshes: how early, and whom it tells.
#[derive(Clone)]
pub(crate) struct CacheOptions {
    /// How long before expiry a background refresh starts.
    pub(crate) refresh_margin: Duration,
    pub(crate) on_refresh: Option<RefreshObserver>,
    /// Told of each failed refresh (once per refresh, not per waiter).
    pub(crate) on_failure: Option<FailureObserver>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            refresh_margin: crate::access_token::REFRESH_WINDOW,
            on_refresh: None,
            on_failure: None,
        }
    }
}

impl CacheOptions {
    /// Tells the observer, if any, about a new token from `source`.
    pub(crate) fn tell(&self, fetched: &Fetched, source: impl FnOnce() -> String) {
        if let Some(observe) = &self.on_refresh {
            observe(&RefreshEvent {
                expires_at: fetched.expires_at,
                refresh_token_rotated: fetched.refresh_token_rotated,
                source: source(),
            });
        }
    }
}

/// Where new access tokens come from: one implementation per credential kind
/// (a user's refresh token, the metadata server, a service-account key…).
pub(crate) trait TokenSource: Send + Sync + 'static {
    /// Obtains a new access token (the cache makes sure only one call runs at a time).
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>>;

    /// Where the tokens come from, for messages: a file path, an account.
    fn describe(&self) -> String;

    /// Revokes what the source refreshes with, when it can revoke anything
    /// itself (a user's refresh token at a revocation endpoint).
    fn revoke(&self) -> Option<BoxFuture<'_, Result<()>>> {
        None
    }

    /// A new ID token for `audience` (its expiry from its `exp` claim), when
    /// this kind of credentials can get one.
    fn id_token<'a>(&'a self, _audience: &'a str) -> Option<BoxFuture<'a, Result<Fetched>>> {
        None
    }
}

/// The cache; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub(crate) struct TokenCache {
    inner: Arc<Inner>,
}

/// Wakes a flight's waiters.
type Flight = machine::Flight<Error, runtime::Id, Notify>;

impl machine::Signal for Notify {
    fn notify(&self) {
        self.notify_waiters();
    }
}

// Why `repr(C)`: the hot path reads `key`, `generation` and `current`
// first, so they share the allocation's first cache line.
#[repr(C)]
struct Inner {
    /// This cache's key in every thread's copies.
    key: u64,
    /// The generation of `current`, published after it (under the machine's lock).
    generation: AtomicU64,
    current: ArcSwap<Published>,
    source: Arc<dyn TokenSource>,
    machine: Machine<Error, runtime::Id, Notify>,
    options: CacheOptions,
}

// Why: this thread's shared-table entry would otherwise keep the token
// (and its secret) in memory until another credential takes the entry.
impl Drop for Inner {
    fn drop(&mut self) {
        access_token::retire(self.key);
    }
}

impl TokenCache {
    /// A cache whose first token is `first` (from a file, or fetched by the loader).
    pub(crate) fn new(
        source: Arc<dyn TokenSource>,
        first: Fetched,
        options: CacheOptions,
    ) -> Result<Self> {
        let published =
            Published::new(first.token, first.expires_at, None, options.refresh_margin)?;
        Ok(TokenCache {
            inner: Arc::new(Inner {
                key: access_token::next_key(),
                generation: AtomicU64::new(published.generation),
                current: ArcSwap::from_pointee(published),
                source,
                machine: Machine::default(),
                options,
            }),
        })
    }

    /// A cache that holds no token yet: the first call fetches one. For a
    /// source that another source draws on (impersonation's source
    /// credentials), so its token is fetched when first needed and reused.
    pub(crate) fn lazy(source: Arc<dyn TokenSource>, options: CacheOptions) -> Result<Self> {
        let none = Fetched {
            token: SecretString::from(String::new()),
            expires_at: SystemTime::UNIX_EPOCH,
            refresh_token_rotated: false,
        };
        Self::new(source, none, options)
    }

    /// A valid token: this thread's fresh copy (no I/O, no lock), otherwise
    /// the result of the one shared refresh. (`Credentials` inlines the two
    /// steps itself, so its hot path holds no nested future.)
    pub(crate) async fn token(&self) -> Result<AccessToken> {
        match self.fresh() {
            Some(token) => Ok(token),
            None => self.token_slow().await,
        }
    }

    /// The hot path: this thread's copy of the current token, if fresh, or
    /// inside the refresh window while a background refresh already runs (or
    /// backs off): nothing to start, so nothing to do but hand it out.
    #[inline]
    pub(crate) fn fresh(&self) -> Option<AccessToken> {
        let inner = &*self.inner;
        access_token::local_fresh(inner.key, inner.generation.load(Ordering::Acquire), |now| {
            inner.machine.refreshing() || now < inner.machine.quiet_until_ms()
        })
        .map(AccessToken)
    }

    /// Everything but the hot path: a shared copy, a background refresh, or
    /// waiting for the refresh in flight.
    pub(crate) async fn token_slow(&self) -> Result<AccessToken> {
        self.inner.token_slow().await
    }

    /// Refreshes now unless a token newer than `stale` was already obtained
    /// (after a 401: the server no longer accepts `stale`).
    pub(crate) async fn refresh_after(&self, stale: &AccessToken) -> Result<AccessToken> {
        self.inner.refresh_and_wait(stale.0.generation).await
    }

    /// Ends the session (after a sign-out): every later call is
    /// [`Error::Revoked`] naming the source, every thread's copy stops
    /// matching (a dead token is published), this thread's copy is dropped
    /// at once and another thread's on its next call, and a refresh in
    /// flight is not published: closing and publishing take one lock.
    pub(crate) fn close(&self) -> Result<()> {
        let inner = &self.inner;
        let dead = Published::new(
            SecretString::from(String::new()),
            SystemTime::UNIX_EPOCH,
            None,
            inner.options.refresh_margin,
        )?;
        inner.machine.close(|| inner.publish(dead));
        access_token::forget_locally(inner.key);
        Ok(())
    }

    /// When the current token expires.
    pub(crate) fn expires_at(&self) -> SystemTime {
        self.inner.current.load().expires_at
    }

    /// Revokes the source's own credentials, if it can (see [`TokenSource::revoke`]).
    pub(crate) fn revoke_source(&self) -> Option<BoxFuture<'_, Result<()>>> {
        self.inner.source.revoke()
    }

    /// The source's ID token for `audience`, if it can get one (see
    /// [`TokenSource::id_token`]).
    pub(crate) fn source_id_token<'a>(
        &'a self,
        audience: &'a str,
    ) -> Option<BoxFuture<'a, Result<Fetched>>> {
        self.inner.source.id_token(audience)
    }

    /// Where the tokens come from.
    pub(crate) fn describe(&self) -> String {
        self.inner.source.describe()
    }
}

/// Abandons a flight whose driver stops before the end (its task was
/// cancelled, or its runtime dropped), so a waiter takes over at once.
struct DriveGuard<'a> {
    inner: &'a Inner,
    flight: &'a Flight,
    done: bool,
}

impl Drop for DriveGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner.machine.abandon(self.flight);
        }
    }
}

/// The current runtime, if any, and whether a task spawned there may wait
/// for a `block_on` that never comes (a current-thread runtime).
fn place() -> Option<(runtime::Id, bool)> {
    let handle = runtime::Handle::try_current().ok()?;
    let may_idle = handle.runtime_flavor() == runtime::RuntimeFlavor::CurrentThread;
    Some((handle.id(), may_idle))
}

/// Waits until `flight` has ended.
async fn ended(flight: &Flight) -> Ended<Error> {
    loop {
        let notified = flight.signal.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if let Some(how) = flight.ended() {
            return how;
        }
        notified.await;
    }
}

impl Inner {
    fn closed_error(&self) -> Error {
        Error::Revoked {
            source_name: self.source.describe(),
        }
    }

    /// Makes `published` the current token (called under the machine's lock).
    fn publish(&self, published: Published) {
        let generation = published.generation;
        self.current.store(Arc::new(published));
        self.generation.store(generation, Ordering::Release);
    }

    async fn token_slow(self: &Arc<Self>) -> Result<AccessToken> {
        let current = self.current.load_full();
        let now = now_ms();
        if now < current.refresh_at_ms {
            return Ok(AccessToken(access_token::serve(self.key, current)));
        }
        if now < current.usable_until_ms {
            self.start_background_refresh(current.generation);
            // Later calls on this thread take the hot path while it runs.
            return Ok(AccessToken(access_token::serve(self.key, current)));
        }
        // Expired, or closed (a closed cache's token expired in 1970).
        self.refresh_and_wait(current.generation).await
    }

    fn start_background_refresh(self: &Arc<Self>, seen: u64) {
        if self.machine.refreshing() || now_ms() < self.machine.quiet_until_ms() {
            return;
        }
        // No runtime to run it on: the caller that needs a token refreshes.
        let Some((id, may_idle)) = place() else {
            return;
        };
        let who = Who::Background {
            pinned: may_idle.then_some(id),
        };
        let generation = || self.generation.load(Ordering::Acquire);
        if let Begin::Drive(flight) = self.machine.begin(who, seen, generation, now_ms()) {
            let inner = Arc::clone(self);
            tokio::spawn(async move { inner.drive(&flight).await });
        }
    }

    async fn refresh_and_wait(self: &Arc<Self>, seen: u64) -> Result<AccessToken> {
        let place = place();
        // Why: a task on a current-thread runtime may never be polled again
        // (the runtime left idle), so a refresh it drives is pinned there
        // and a caller from elsewhere takes over, as for a background one.
        // `block_on`'s own future is no task: it ends with its caller.
        let who = Who::Waiter {
            at: place.map(|(id, _)| id),
            pinned: place.is_some_and(|(_, may_idle)| may_idle) && tokio::task::try_id().is_some(),
        };
        loop {
            let generation = || self.generation.load(Ordering::Acquire);
            let how = match self.machine.begin(who, seen, generation, now_ms()) {
                Begin::Closed => break Err(self.closed_error()),
                Begin::Newer => Ended::Published,
                Begin::BackingOff(e) => break Err(e),
                Begin::Join(flight) => ended(&flight).await,
                Begin::Drive(flight) => self.drive(&flight).await,
            };
            // Re-checked under the lock: closed meanwhile means no token.
            match self.machine.settle(how, || self.current.load_full()) {
                Settled::Token(token) => break Ok(AccessToken(token)),
                Settled::Failed(e) => break Err(e),
                Settled::Closed => break Err(self.closed_error()),
                Settled::Again => {}
            }
        }
        .inspect_err(|e| {
            if matches!(e, Error::Revoked { .. }) {
                access_token::forget_locally(self.key);
            }
        })
    }

    /// Runs one refresh to its end. A panic in the source or the observer
    /// is a failure like any other (the backoff applies); if this future is
    /// dropped first, the flight is abandoned and a waiter takes over.
    async fn drive(self: &Arc<Self>, flight: &Flight) -> Ended<Error> {
        // Superseded or closed before its task first ran: nothing to fetch.
        if let Some(how) = flight.ended() {
            return how;
        }
        let mut guard = DriveGuard {
            inner: self,
            flight,
            done: false,
        };
        let inner = Arc::clone(self);
        let mut refresh =
            Box::pin(AssertUnwindSafe(async move { inner.refresh().await }).catch_unwind());
        // Why: a close (or a take-over) ends the flight without its driver;
        // a driver still awaiting its fetch (one that may never answer)
        // returns then, so every caller hears of the close at once. The
        // fetch is left to finish on its own, not dropped: it may be saving
        // a token under the store's lock (a blocking write that a drop would
        // not stop, but would unlock), which a sign-out then clears.
        let result = tokio::select! {
            biased;
            how = ended(flight) => {
                guard.done = true;
                if let Ok(here) = runtime::Handle::try_current() {
                    drop(here.spawn(refresh));
                }
                return how;
            }
            result = &mut refresh => result,
        };
        let result = result.unwrap_or_else(|_| {
            Err(Error::transport(
                "token refresh",
                "the token source or the refresh observer panicked",
            ))
        });
        guard.done = true;
        // The observer hears of a token only once it is served (never of one
        // that a close kept from being published), outside the machine's lock.
        let mut told = None;
        let how = self
            .machine
            .finish(flight, result, now_ms(), |(p, fetched)| {
                self.publish(p);
                told = Some(fetched);
            });
        if let Some(fetched) = told {
            let tell = || self.options.tell(&fetched, || self.source.describe());
            if std::panic::catch_unwind(AssertUnwindSafe(tell)).is_err() {
                // Served all the same; the next refresh backs off like any failure.
                let e = Error::transport("token refresh", "the refresh observer panicked");
                tracing::warn!(error = %e, "the new token is served all the same");
                self.machine.fail_after_publish(e, now_ms());
            }
        }
        if let Ended::Failed(e) = &how {
            tracing::warn!(error = %e, "token refresh failed");
            if let Some(observe) = &self.options.on_failure
                && std::panic::catch_unwind(AssertUnwindSafe(|| observe(e))).is_err()
            {
                tracing::warn!("the refresh failure observer panicked");
            }
        }
        how
    }

    #[tracing::instrument(skip_all, name = "gemini_oauth::refresh")]
    async fn refresh(&self) -> Result<(Published, Fetched)> {
        let fetched = self.source.fetch().await?;
        let lifetime = fetched.expires_at.duration_since(SystemTime::now()).ok();
        let published = Published::new(
            fetched.token.clone(),
            fetched.expires_at,
            lifetime,
            self.options.refresh_margin,
        )?;
        Ok((published, fetched))
    }
}

#[cfg(test)]
mod races;

#[cfg(test)]
mod tests {
    //! The cache against a fake source: no network, no files; tokio's paused
    //! time for the source's delays, the test clock for expiry.

    use super::*;
    use crate::clock;
    use secrecy::ExposeSecret;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Counts fetches; each returns `token-N` living `lifetime`, after `delay`.
    struct Fake {
        calls: AtomicUsize,
        lifetime: Duration,
        delay: Duration,
        fail: AtomicBool,
    }

    impl Fake {
        fn new(lifetime: Duration, delay: Duration) -> Arc<Self> {
            Arc::new(Fake {
                calls: AtomicUsize::new(0),
                lifetime,
                delay,
                fail: AtomicBool::new(false),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl TokenSource for Fake {
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(self.delay).await;
                if self.fail.load(Ordering::SeqCst) {
                    return Err(Error::transport("fake", "down"));
                }
                Ok(Fetched {
                    token: SecretString::from(format!("token-{n}")),
                    expires_at: SystemTime::now() + self.lifetime,
                    refresh_token_rotated: false,
                })
            })
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn cache(source: &Arc<Fake>, first_expires_in: Duration) -> TokenCache {
        let first = Fetched {
            token: SecretString::from("token-0"),
            expires_at: SystemTime::now() + first_expires_in,
            refresh_token_rotated: false,
        };
        TokenCache::new(
            Arc::clone(source) as Arc<dyn TokenSource>,
            first,
            CacheOptions::default(),
        )
        .unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn fresh_token_is_served_without_fetching() {
        let source = Fake::new(HOUR, Duration::ZERO);
        let cache = cache(&source, HOUR);
        for _ in 0..10 {
            assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        }
        assert_eq!(source.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_token_waits_for_one_shared_fetch() {
        let source = Fake::new(HOUR, Duration::from_secs(5));
        let cache = cache(&source, Duration::ZERO);
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.token().await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().secret(), "token-1");
        }
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_window_serves_the_old_token_while_one_refresh_runs() {
        // 60 s left: inside the 3 min 45 s window, outside the 10 s skew.
        let source = Fake::new(HOUR, Duration::from_secs(30));
        let cache = cache(&source, Duration::from_secs(60));
        for _ in 0..20 {
            assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        }
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(cache.token().await.unwrap().secret(), "token-1");
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_hot_path_serves_the_window_once_a_refresh_runs() {
        let source = Fake::new(HOUR, Duration::from_secs(30));
        let cache = cache(&source, Duration::from_secs(60));
        // Past the refresh point with nothing running: the slow path must
        // start the refresh.
        assert!(cache.fresh().is_none());
        assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        tokio::task::yield_now().await;
        assert_eq!(source.calls(), 1);
        // While it runs, this thread's copy is handed out without a lock.
        for _ in 0..10 {
            assert_eq!(cache.fresh().unwrap().secret(), "token-0");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_caches_keep_their_own_copies_on_one_thread() {
        let source = Fake::new(HOUR, Duration::ZERO);
        let caches: Vec<_> = (0..16).map(|_| cache(&source, HOUR)).collect();
        for c in &caches {
            c.token().await.unwrap();
        }
        // Round-robin over all sixteen: every one still has its copy.
        for _ in 0..3 {
            for c in &caches {
                assert!(c.fresh().is_some());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresh_margin_is_configurable() {
        // Five minutes left: outside the default 3 min 45 s window...
        let source = Fake::new(HOUR, Duration::ZERO);
        let default = cache(&source, Duration::from_secs(300));
        default.token().await.unwrap();
        tokio::task::yield_now().await;
        assert!(default.fresh().is_some());
        assert_eq!(source.calls(), 0);
        // ...but inside a 10 minute margin: the first call starts a refresh.
        let wide = TokenCache::new(
            Arc::clone(&source) as Arc<dyn TokenSource>,
            Fetched {
                token: SecretString::from("token-0"),
                expires_at: SystemTime::now() + Duration::from_secs(300),
                refresh_token_rotated: false,
            },
            CacheOptions {
                refresh_margin: Duration::from_secs(600),
                ..CacheOptions::default()
            },
        )
        .unwrap();
        assert!(wide.fresh().is_none());
        assert_eq!(wide.token().await.unwrap().secret(), "token-0");
        tokio::task::yield_now().await;
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_observer_hears_every_successful_refresh_and_no_failure() {
        let source = Fake::new(HOUR, Duration::ZERO);
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let cache = TokenCache::new(
            Arc::clone(&source) as Arc<dyn TokenSource>,
            Fetched {
                token: SecretString::from("token-0"),
                expires_at: SystemTime::now(),
                refresh_token_rotated: false,
            },
            CacheOptions {
                refresh_margin: crate::access_token::REFRESH_WINDOW,
                on_refresh: Some(Arc::new(move |e: &RefreshEvent| {
                    seen.lock().unwrap().push(e.clone())
                })),
                on_failure: None,
            },
        )
        .unwrap();
        assert_eq!(cache.token().await.unwrap().secret(), "token-1");
        let stale = cache.token().await.unwrap();
        source.fail.store(true, Ordering::SeqCst);
        assert!(cache.refresh_after(&stale).await.is_err());
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1, "one success, the failure is not reported");
        assert_eq!(events[0].source, "fake");
        assert!(!events[0].refresh_token_rotated);
        assert!(events[0].expires_at > SystemTime::now() + Duration::from_secs(3000));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_background_refresh_backs_off() {
        let source = Fake::new(HOUR, Duration::ZERO);
        source.fail.store(true, Ordering::SeqCst);
        let cache = cache(&source, Duration::from_secs(60));
        for _ in 0..20 {
            assert_eq!(cache.token().await.unwrap().secret(), "token-0");
            tokio::task::yield_now().await;
        }
        // One attempt, then quiet for BACKGROUND_BACKOFF of wall-clock time.
        assert_eq!(source.calls(), 1);
        let quiet = cache.inner.machine.quiet_until_ms();
        let wait = quiet.saturating_sub(now_ms());
        assert!(
            wait > 0 && wait <= BACKGROUND_BACKOFF.as_millis() as u64,
            "{wait}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_failure_observer_hears_each_failed_refresh_once() {
        let source = Fake::new(HOUR, Duration::from_secs(1));
        source.fail.store(true, Ordering::SeqCst);
        let told = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&told);
        let cache = TokenCache::new(
            Arc::clone(&source) as Arc<dyn TokenSource>,
            Fetched {
                token: SecretString::from("token-0"),
                expires_at: SystemTime::now(),
                refresh_token_rotated: false,
            },
            CacheOptions {
                on_failure: Some(Arc::new(move |e: &Error| {
                    seen.lock().unwrap().push(e.to_string());
                    panic!("an observer bug is logged, not spread");
                })),
                ..CacheOptions::default()
            },
        )
        .unwrap();
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.token().await })
            })
            .collect();
        for call in calls {
            assert!(matches!(call.await.unwrap(), Err(Error::Transport { .. })));
        }
        assert_eq!(told.lock().unwrap().len(), 1);
        // The backoff's answers are that failure again, not new ones.
        assert!(cache.token().await.is_err());
        assert_eq!(
            told.lock().unwrap().as_slice(),
            [Error::transport("fake", "down").to_string()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_error_reaches_every_waiter_and_the_next_call_retries() {
        let source = Fake::new(HOUR, Duration::from_secs(1));
        source.fail.store(true, Ordering::SeqCst);
        let cache = cache(&source, Duration::ZERO);
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.token().await })
            })
            .collect();
        for call in calls {
            assert!(matches!(call.await.unwrap(), Err(Error::Transport { .. })));
        }
        assert_eq!(source.calls(), 1);
        source.fail.store(false, Ordering::SeqCst);
        // During the backoff, callers get the last error without a fetch.
        for _ in 0..50 {
            assert!(matches!(cache.token().await, Err(Error::Transport { .. })));
        }
        assert_eq!(source.calls(), 1);
        // After it, the next caller refreshes.
        clock::advance(BACKGROUND_BACKOFF);
        assert_eq!(cache.token().await.unwrap().secret(), "token-2");
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_from_1_s_to_30_s_and_resets_on_success() {
        let source = Fake::new(HOUR, Duration::ZERO);
        source.fail.store(true, Ordering::SeqCst);
        let cache = cache(&source, Duration::ZERO);
        for (n, want_secs) in [1u64, 2, 4, 8, 16, 30, 30].into_iter().enumerate() {
            assert!(cache.token().await.is_err());
            assert_eq!(source.calls(), n + 1, "one fetch per backoff period");
            let quiet = cache.inner.machine.quiet_until_ms();
            let wait = quiet.saturating_sub(now_ms());
            let want = want_secs * 1000;
            assert!(
                wait <= want && wait + 100 >= want,
                "{wait} ms, want {want} ms"
            );
            // Inside the period: the same error, no fetch.
            assert!(cache.token().await.is_err());
            assert_eq!(source.calls(), n + 1);
            clock::advance(Duration::from_millis(wait + 1));
        }
        source.fail.store(false, Ordering::SeqCst);
        assert!(cache.token().await.is_ok());
        assert_eq!(cache.inner.machine.failures(), 0);
        assert_eq!(cache.inner.machine.quiet_until_ms(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_cache_serves_nothing_and_publishes_no_late_refresh() {
        let source = Fake::new(HOUR, Duration::from_secs(5));
        let cache = cache(&source, Duration::from_secs(60));
        // Warm this thread's copy, and start a background refresh.
        assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        tokio::task::yield_now().await;
        cache.close().unwrap();
        for _ in 0..3 {
            assert!(matches!(cache.token().await, Err(Error::Revoked { .. })));
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(source.calls(), 1);
        assert!(matches!(cache.token().await, Err(Error::Revoked { .. })));
        let stale = AccessToken(cache.inner.current.load_full());
        assert!(matches!(
            cache.refresh_after(&stale).await,
            Err(Error::Revoked { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_token_is_refreshed_once_for_many_callers() {
        let source = Fake::new(HOUR, Duration::from_secs(1));
        let cache = cache(&source, HOUR);
        let stale = cache.token().await.unwrap();
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let (c, s) = (cache.clone(), stale.clone());
                tokio::spawn(async move { c.refresh_after(&s).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().secret(), "token-1");
        }
        // A late caller holding the old token gets the new one without a fetch.
        assert_eq!(
            cache.refresh_after(&stale).await.unwrap().secret(),
            "token-1"
        );
        assert_eq!(source.calls(), 1);
        assert_eq!(stale.0.secret.expose_secret(), "token-0");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_source_backs_off_like_any_failure() {
        struct Panics(AtomicUsize);
        impl TokenSource for Panics {
            fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
                Box::pin(async move {
                    if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("source bug");
                    }
                    Ok(Fetched {
                        token: SecretString::from("after-panic"),
                        expires_at: SystemTime::now() + HOUR,
                        refresh_token_rotated: false,
                    })
                })
            }
            fn describe(&self) -> String {
                "panics".into()
            }
        }
        let first = Fetched {
            token: SecretString::from("old"),
            expires_at: SystemTime::now(),
            refresh_token_rotated: false,
        };
        let source = Arc::new(Panics(AtomicUsize::new(0)));
        let cache = TokenCache::new(
            Arc::clone(&source) as Arc<dyn TokenSource>,
            first,
            CacheOptions::default(),
        )
        .unwrap();
        assert!(cache.token().await.is_err());
        // Not one fetch per call: the panic backs off as a failure does.
        for _ in 0..10 {
            assert!(matches!(cache.token().await, Err(Error::Transport { .. })));
        }
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
        clock::advance(BACKGROUND_BACKOFF);
        assert_eq!(cache.token().await.unwrap().secret(), "after-panic");
    }
}
