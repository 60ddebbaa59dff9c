//! loom models of the token cache's state machine (`machine.rs`), built by
//! the `model/` crate: `RUSTFLAGS="--cfg loom" cargo test --release
//! --manifest-path model/Cargo.toml`.
//!
//! Each scenario runs the cache's glue as the async code does it (begin,
//! drive or wait, settle; close; abandon on cancellation; a panic as a
//! failure), with loom threads in place of tasks and a fake source, and loom
//! explores every interleaving. The same scenarios run against a port of
//! the logic before issue #20 (`model/src/old.rs`) and must fail there:
//! that is how we know the model finds races 2a and 2b.

use loom::sync::Arc;
use loom::sync::Mutex;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::machine::{Begin, Ended, Machine, Settled, Who};

/// A token as the model sees it: its generation, and whether it is the
/// dead one that `close` publishes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Token {
    pub(crate) generation: u64,
    pub(crate) dead: bool,
}

/// Why a caller got no token.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NoToken {
    Revoked,
    Failed(&'static str),
}

/// What a fetch does.
#[derive(Clone, Copy)]
pub(crate) enum Fetch {
    Ok,
    Fail,
    /// The observer panics (the glue turns that into a failure).
    Panic,
    /// The driver's task is dropped mid-fetch (its runtime went away).
    Cancelled,
}

/// The cache glue, over the new machine or the old logic.
pub(crate) trait Cache: Send + Sync + 'static {
    fn new() -> Self;
    /// The current token (generation 1 at the start, live).
    fn current(&self) -> Token;
    /// A new token unless one newer than `seen` is current (`refresh_after`,
    /// `force_refresh`, an expired token), from runtime `here`.
    fn refresh(&self, seen: u64, here: u8, fetch: Fetch) -> Result<Token, NoToken>;
    /// [`refresh`](Self::refresh) from a task on a current-thread runtime
    /// (its refresh is pinned there).
    fn refresh_pinned(&self, seen: u64, here: u8, fetch: Fetch) -> Result<Token, NoToken> {
        self.refresh(seen, here, fetch)
    }
    /// A refresh ahead of expiry on runtime `on`, pinned when that runtime
    /// may idle; `None`: the runtime never runs it (it went idle).
    fn background(&self, seen: u64, on: u8, pinned: bool, fetch: Option<Fetch>);
    fn close(&self);
    /// Fetches so far.
    fn fetches(&self) -> usize;
}

/// The new glue, as `token_cache.rs` has it.
pub(crate) struct New {
    machine: Machine<&'static str, u8, ()>,
    current: Mutex<Token>,
    next_generation: AtomicUsize,
    fetches: AtomicUsize,
}

impl New {
    fn publish(&self, dead: bool) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) as u64;
        *self.current.lock().unwrap() = Token { generation, dead };
    }

    fn generation(&self) -> u64 {
        self.current.lock().unwrap().generation
    }

    fn drive(
        &self,
        flight: &crate::machine::Flight<&'static str, u8, ()>,
        fetch: Fetch,
    ) -> Ended<&'static str> {
        if let Some(how) = flight.ended() {
            return how;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match fetch {
            Fetch::Ok => Ok(()),
            Fetch::Fail => Err("down"),
            Fetch::Panic => {
                std::panic::catch_unwind(|| -> Result<(), &'static str> { panic!("observer bug") })
                    .unwrap_or(Err("panicked"))
            }
            Fetch::Cancelled => {
                self.machine.abandon(flight);
                return Ended::Abandoned;
            }
        };
        self.machine
            .finish(flight, result, 0, |()| self.publish(false))
    }
}

fn wait(flight: &crate::machine::Flight<&'static str, u8, ()>) -> Ended<&'static str> {
    loop {
        if let Some(how) = flight.ended() {
            return how;
        }
        thread::yield_now();
    }
}

impl Cache for New {
    fn new() -> Self {
        New {
            machine: Machine::default(),
            current: Mutex::new(Token {
                generation: 1,
                dead: false,
            }),
            next_generation: AtomicUsize::new(2),
            fetches: AtomicUsize::new(0),
        }
    }

    fn current(&self) -> Token {
        *self.current.lock().unwrap()
    }

    fn refresh(&self, seen: u64, here: u8, fetch: Fetch) -> Result<Token, NoToken> {
        self.refresh_as(seen, here, false, fetch)
    }

    fn refresh_pinned(&self, seen: u64, here: u8, fetch: Fetch) -> Result<Token, NoToken> {
        self.refresh_as(seen, here, true, fetch)
    }

    fn background(&self, seen: u64, on: u8, pinned: bool, fetch: Option<Fetch>) {
        let who = Who::Background {
            pinned: pinned.then_some(on),
        };
        if let Begin::Drive(flight) = self.machine.begin(who, seen, || self.generation(), 0)
            && let Some(fetch) = fetch
        {
            self.drive(&flight, fetch);
        }
    }

    fn close(&self) {
        self.machine.close(|| self.publish(true));
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl New {
    fn refresh_as(
        &self,
        seen: u64,
        here: u8,
        pinned: bool,
        fetch: Fetch,
    ) -> Result<Token, NoToken> {
        loop {
            let how = match self.machine.begin(
                Who::Waiter {
                    at: Some(here),
                    pinned,
                },
                seen,
                || self.generation(),
                0,
            ) {
                Begin::Closed => return Err(NoToken::Revoked),
                Begin::Newer => Ended::Published,
                Begin::BackingOff(e) => return Err(NoToken::Failed(e)),
                Begin::Join(flight) => wait(&flight),
                Begin::Drive(flight) => match self.drive(&flight, fetch) {
                    // This caller's future is gone: it returns nothing.
                    Ended::Abandoned if matches!(fetch, Fetch::Cancelled) => {
                        return Err(NoToken::Failed("cancelled"));
                    }
                    how => how,
                },
            };
            match self.machine.settle(how, || self.current()) {
                Settled::Token(t) => return Ok(t),
                Settled::Failed(e) => return Err(NoToken::Failed(e)),
                Settled::Closed => return Err(NoToken::Revoked),
                Settled::Again => {}
            }
        }
    }
}

/// A waiter's answer is a live token or a clear error, never the dead token.
fn live_or_error(got: &Result<Token, NoToken>) {
    if let Ok(token) = got {
        assert!(!token.dead, "a waiter got the dead token: {got:?}");
    }
}

/// Race 2a: a refresh (force_refresh) and a close (revoke). Once both are
/// done, the dead token is current (close wins: nothing is published after
/// it). (What the refresh's caller gets is race 2b's property.)
pub(crate) fn force_refresh_and_revoke<C: Cache>() {
    loom::model(|| {
        let cache = Arc::new(C::new());
        let c = Arc::clone(&cache);
        let refresh = thread::spawn(move || c.refresh(1, 0, Fetch::Ok));
        cache.close();
        let _ = refresh.join().unwrap();
        assert!(cache.current().dead, "a token was published after close");
        // Once close returned, every caller is told so.
        assert_eq!(cache.refresh(1, 0, Fetch::Ok), Err(NoToken::Revoked));
    });
}

/// Race 2b: two callers share one refresh; each closes the cache once it
/// has its answer. No one gets the dead token, and there is one fetch.
pub(crate) fn waiters_then_close<C: Cache>() {
    loom::model(|| {
        let cache = Arc::new(C::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&cache);
                thread::spawn(move || {
                    let got = c.refresh(1, 0, Fetch::Ok);
                    c.close();
                    got
                })
            })
            .collect();
        for t in threads {
            live_or_error(&t.join().unwrap());
        }
        assert!(cache.fetches() <= 1, "{} fetches", cache.fetches());
    });
}

/// A driver cancelled mid-fetch (its runtime dropped): the other caller
/// takes over and gets a token; nobody hangs (loom fails a spinning model).
pub(crate) fn cancelled_driver_is_taken_over<C: Cache>() {
    loom::model(|| {
        let cache = Arc::new(C::new());
        let c = Arc::clone(&cache);
        let dropped = thread::spawn(move || c.refresh(1, 0, Fetch::Cancelled));
        let got = cache.refresh(1, 1, Fetch::Ok);
        assert!(got.as_ref().is_ok_and(|t| !t.dead), "{got:?}");
        // The cancelled caller itself (were it still awaited) gets the
        // token too, or takes over and gets one of its own.
        let _ = dropped.join().unwrap();
    });
}

/// A background refresh pinned to a runtime that goes idle and never runs
/// it: a waiter on another runtime supersedes it instead of waiting forever.
pub(crate) fn idle_background_is_superseded<C: Cache>() {
    loom::model(|| {
        let cache = Arc::new(C::new());
        let c = Arc::clone(&cache);
        let idle = thread::spawn(move || c.background(1, 0, true, None));
        let got = cache.refresh(1, 1, Fetch::Ok);
        assert!(got.as_ref().is_ok_and(|t| !t.dead), "{got:?}");
        idle.join().unwrap();
        assert_eq!(Ok(cache.current()), got);
    });
}

/// A background refresh pinned to a runtime that does run it, late: it
/// publishes nothing over the token of the waiter that superseded it.
pub(crate) fn late_background_publishes_nothing_over_a_newer_token<C: Cache>() {
    loom::model(|| {
        let cache = Arc::new(C::new());
        let c = Arc::clone(&cache);
        let late = thread::spawn(move || c.background(1, 0, true, Some(Fetch::Ok)));
        let got = cache.refresh(1, 1, Fetch::Ok);
        assert!(got.as_ref().is_ok_and(|t| !t.dead), "{got:?}");
        late.join().unwrap();
        assert_eq!(Ok(cache.current()), got);
    });
}

/// Two callers in tasks on two current-thread runtimes (both pinned, both
/// running): one refresh serves both; neither takes it from the other, in
/// turn, forever (loom fails a model that spins).
pub(crate) fn pinned_callers_share_one_refresh<C: Cache>() {
    loom::model(|| {
        let cache = Arc::new(C::new());
        let c = Arc::clone(&cache);
        let other = thread::spawn(move || c.refresh_pinned(1, 0, Fetch::Ok));
        let got = cache.refresh_pinned(1, 1, Fetch::Ok);
        assert!(got.as_ref().is_ok_and(|t| !t.dead), "{got:?}");
        let theirs = other.join().unwrap();
        assert!(theirs.as_ref().is_ok_and(|t| !t.dead), "{theirs:?}");
        assert_eq!(cache.fetches(), 1);
    });
}

/// A failed or panicking refresh backs off: a second caller that begins
/// after it gets its error rather than a fetch of its own.
pub(crate) fn failures_back_off<C: Cache>(fetch: Fetch) {
    loom::model(move || {
        let cache = Arc::new(C::new());
        let c = Arc::clone(&cache);
        let first = thread::spawn(move || c.refresh(1, 0, fetch));
        let second = cache.refresh(1, 0, fetch);
        let first = first.join().unwrap();
        assert!(matches!(first, Err(NoToken::Failed(_))), "{first:?}");
        assert!(matches!(second, Err(NoToken::Failed(_))), "{second:?}");
        assert_eq!(cache.fetches(), 1);
        // And again, after both: still backing off.
        assert!(cache.refresh(1, 0, Fetch::Ok).is_err());
        assert_eq!(cache.fetches(), 1);
    });
}

mod new {
    use super::*;

    #[test]
    fn race_2a_close_wins_over_publish() {
        force_refresh_and_revoke::<New>();
    }

    #[test]
    fn race_2b_waiters_recheck_after_close() {
        waiters_then_close::<New>();
    }

    #[test]
    fn a_cancelled_driver_is_taken_over() {
        cancelled_driver_is_taken_over::<New>();
    }

    #[test]
    fn an_idle_background_refresh_is_superseded() {
        idle_background_is_superseded::<New>();
    }

    #[test]
    fn a_late_background_refresh_publishes_nothing_newer() {
        late_background_publishes_nothing_over_a_newer_token::<New>();
    }

    #[test]
    fn pinned_callers_on_two_runtimes_share_one_refresh() {
        pinned_callers_share_one_refresh::<New>();
    }

    #[test]
    fn a_failure_backs_off() {
        failures_back_off::<New>(Fetch::Fail);
    }

    #[test]
    fn a_panicking_observer_backs_off() {
        failures_back_off::<New>(Fetch::Panic);
    }
}
