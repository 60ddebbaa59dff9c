//! The token cache's state machine, free of async and of tokio: which
//! refresh is in flight, who drives it, what it publishes, the backoff after
//! failures, and sign-out. Every transition takes one lock, so publishing a
//! token and closing the cache exclude each other (close wins), and a waiter
//! woken by a flight re-checks under that lock before it trusts the outcome.
//!
//! The sync types are loom's under `cfg(loom)`: `model/` explores the
//! interleavings of these transitions (see `model.rs` beside this file).

use std::time::Duration;

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::{Arc, Mutex, MutexGuard};

/// Refreshes that failed are retried no sooner than this, doubling up to the max.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Wakes the waiters of a flight once it has ended (tokio's `Notify` in the
/// cache; nothing in the model, whose waiters poll).
pub(crate) trait Signal: Default {
    fn notify(&self);
}

impl Signal for () {
    fn notify(&self) {}
}

/// How a flight ended.
#[derive(Clone, Debug)]
pub(crate) enum Ended<E> {
    /// Its token is the current one (or was, before a newer one).
    Published,
    Failed(E),
    /// Its driver went away (cancelled, its runtime dropped) or a waiter
    /// superseded it: a waiter starts the next one.
    Abandoned,
    /// The cache was closed: nothing was published.
    Closed,
}

/// One refresh. Its driver ends it with [`Machine::finish`] or
/// [`Machine::abandon`]; its waiters wait for [`Flight::ended`].
#[derive(Debug)]
pub(crate) struct Flight<E, K, S> {
    /// Set for a refresh left to a runtime that may go idle (a task on a
    /// current-thread one): a waiter from elsewhere starts its own instead.
    background_on: Option<K>,
    /// Driven by a caller that begins again when superseded (not a
    /// background refresh, which just stops).
    by_waiter: bool,
    ended: Mutex<Option<Ended<E>>>,
    pub(crate) signal: S,
}

impl<E: Clone, K, S: Signal> Flight<E, K, S> {
    /// How it ended, once it has.
    pub(crate) fn ended(&self) -> Option<Ended<E>> {
        lock(&self.ended).clone()
    }

    fn end(&self, how: Ended<E>) {
        *lock(&self.ended) = Some(how);
        self.signal.notify();
    }
}

/// Who asks to begin a refresh.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Who<K> {
    /// A caller that needs a new token and waits for it, from place `at`
    /// (its runtime); `pinned` when a refresh it drives may never be polled
    /// again (a task on a current-thread runtime, which may go idle).
    Waiter { at: Option<K>, pinned: bool },
    /// A refresh ahead of expiry that nobody waits for; `pinned` when it
    /// runs where it may never be polled again (a current-thread runtime).
    Background { pinned: Option<K> },
}

/// What [`Machine::begin`] decided.
pub(crate) enum Begin<E, K, S> {
    /// Signed out.
    Closed,
    /// A token newer than the one the caller saw is already current.
    Newer,
    /// The last refresh failed and the backoff after it lasts: its error.
    BackingOff(E),
    /// Wait for this flight.
    Join(Arc<Flight<E, K, S>>),
    /// Drive this new flight, then end it with `finish` or `abandon`.
    Drive(Arc<Flight<E, K, S>>),
}

/// What a woken waiter may hand out.
#[derive(Debug, PartialEq)]
pub(crate) enum Settled<T, E> {
    Token(T),
    Failed(E),
    Closed,
    /// Nobody refreshes any more: begin again.
    Again,
}

struct State<E, K, S> {
    closed: bool,
    flight: Option<Arc<Flight<E, K, S>>>,
    failures: u32,
    quiet_until_ms: u64,
    /// Boxed: an error is rare, and a cache is held for each of many users.
    last_error: Option<Box<E>>,
}

/// The state machine; `E` is the error shared with waiters, `K` a place
/// (a runtime), `S` how waiters are woken.
pub(crate) struct Machine<E, K, S> {
    state: Mutex<State<E, K, S>>,
    /// Mirrors for the lock-free hot path, written under the lock.
    refreshing: AtomicBool,
    quiet_until_ms: AtomicU64,
}

impl<E, K, S> std::fmt::Debug for Machine<E, K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").finish_non_exhaustive()
    }
}

impl<E: Clone, K: PartialEq + Copy, S: Signal> Default for Machine<E, K, S> {
    fn default() -> Self {
        Machine {
            state: Mutex::new(State {
                closed: false,
                flight: None,
                failures: 0,
                quiet_until_ms: 0,
                last_error: None,
            }),
            refreshing: AtomicBool::new(false),
            quiet_until_ms: AtomicU64::new(0),
        }
    }
}

impl<E: Clone, K: PartialEq + Copy, S: Signal> Machine<E, K, S> {
    /// A refresh runs (for the hot path: nothing to start).
    #[inline]
    pub(crate) fn refreshing(&self) -> bool {
        self.refreshing.load(Ordering::Relaxed)
    }

    /// Unix millis before which no refresh starts (for the hot path).
    #[inline]
    pub(crate) fn quiet_until_ms(&self) -> u64 {
        self.quiet_until_ms.load(Ordering::Relaxed)
    }

    /// Failures in a row since the last success.
    #[cfg(test)]
    pub(crate) fn failures(&self) -> u32 {
        lock(&self.state).failures
    }

    /// A caller that saw the token of generation `seen` wants a newer one;
    /// `generation()` reads the current one (under the lock, so no publish
    /// slips in between).
    pub(crate) fn begin(
        &self,
        who: Who<K>,
        seen: u64,
        generation: impl FnOnce() -> u64,
        now_ms: u64,
    ) -> Begin<E, K, S> {
        let mut state = lock(&self.state);
        if state.closed {
            return Begin::Closed;
        }
        if generation() != seen {
            return Begin::Newer;
        }
        if let Some(flight) = &state.flight {
            match (flight.background_on, who) {
                // Left to a runtime that may never run it again: take over.
                // Why not when both are pinned callers: each would take
                // over from the other in turn, and neither fetch would end.
                (Some(there), Who::Waiter { at, pinned })
                    if at != Some(there) && !(pinned && flight.by_waiter) =>
                {
                    flight.end(Ended::Abandoned);
                    state.flight = None;
                }
                _ => return Begin::Join(Arc::clone(flight)),
            }
        }
        if now_ms < state.quiet_until_ms
            && let Some(e) = &state.last_error
        {
            return Begin::BackingOff(E::clone(e));
        }
        let flight = Arc::new(Flight {
            background_on: match who {
                Who::Background { pinned } => pinned,
                Who::Waiter { at, pinned } => at.filter(|_| pinned),
            },
            by_waiter: matches!(who, Who::Waiter { .. }),
            ended: Mutex::new(None),
            signal: S::default(),
        });
        state.flight = Some(Arc::clone(&flight));
        self.refreshing.store(true, Ordering::Relaxed);
        Begin::Drive(flight)
    }

    /// Ends `flight` with the refresh's result: `publish` runs under the
    /// lock, only if the flight is still the current one and the cache is
    /// open. Returns how the flight ended (for a flight that was closed or
    /// superseded meanwhile, how that happened).
    pub(crate) fn finish<T>(
        &self,
        flight: &Flight<E, K, S>,
        result: Result<T, E>,
        now_ms: u64,
        publish: impl FnOnce(T),
    ) -> Ended<E> {
        let mut state = lock(&self.state);
        if !is_current(&state, flight) {
            // Closed or superseded: whoever did it ended the flight.
            return flight.ended().unwrap_or(Ended::Abandoned);
        }
        state.flight = None;
        self.refreshing.store(false, Ordering::Relaxed);
        let how = match result {
            Ok(token) => {
                publish(token);
                state.failures = 0;
                state.quiet_until_ms = 0;
                state.last_error = None;
                Ended::Published
            }
            Err(e) => {
                back_off(&mut state, e.clone(), now_ms);
                Ended::Failed(e)
            }
        };
        self.quiet_until_ms
            .store(state.quiet_until_ms, Ordering::Relaxed);
        flight.end(how.clone());
        how
    }

    /// A failure found after a token was published (its observer panicked):
    /// the token stays served, and the next refresh waits out the backoff.
    pub(crate) fn fail_after_publish(&self, e: E, now_ms: u64) {
        let mut state = lock(&self.state);
        back_off(&mut state, e, now_ms);
        self.quiet_until_ms
            .store(state.quiet_until_ms, Ordering::Relaxed);
    }

    /// Ends `flight` without a result (its driver went away): no backoff,
    /// and a waiter starts the next one.
    pub(crate) fn abandon(&self, flight: &Flight<E, K, S>) {
        let mut state = lock(&self.state);
        if is_current(&state, flight) {
            state.flight = None;
            self.refreshing.store(false, Ordering::Relaxed);
            flight.end(Ended::Abandoned);
        }
    }

    /// Signs out: `kill` (publishing a dead token) runs under the lock, the
    /// flight in progress ends as closed, and nothing is published after.
    pub(crate) fn close(&self, kill: impl FnOnce()) {
        let mut state = lock(&self.state);
        state.closed = true;
        kill();
        if let Some(flight) = state.flight.take() {
            self.refreshing.store(false, Ordering::Relaxed);
            flight.end(Ended::Closed);
        }
    }

    /// What a waiter woken by a flight that ended as `how` may hand out,
    /// checked again under the lock: `current` reads the token then.
    pub(crate) fn settle<T>(&self, how: Ended<E>, current: impl FnOnce() -> T) -> Settled<T, E> {
        let state = lock(&self.state);
        if state.closed {
            return Settled::Closed;
        }
        match how {
            Ended::Published => Settled::Token(current()),
            Ended::Failed(e) => Settled::Failed(e),
            Ended::Closed => Settled::Closed,
            Ended::Abandoned => Settled::Again,
        }
    }
}

/// One more failure: the next refresh waits 1 s, doubling to 30 s.
fn back_off<E, K, S>(state: &mut State<E, K, S>, e: E, now_ms: u64) {
    let n = state.failures.min(16);
    state.failures = state.failures.saturating_add(1);
    let backoff = BACKOFF
        .saturating_mul(2u32.saturating_pow(n))
        .min(BACKOFF_MAX);
    state.quiet_until_ms = now_ms.saturating_add(backoff.as_millis() as u64);
    state.last_error = Some(Box::new(e));
}

fn is_current<E, K, S>(state: &State<E, K, S>, flight: &Flight<E, K, S>) -> bool {
    state
        .flight
        .as_ref()
        .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), flight))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(loom)]
    return m.lock().unwrap();
    #[cfg(not(loom))]
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
