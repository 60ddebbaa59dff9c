//! [`AccessToken`] and the per-thread copies that make the hot path free of
//! locks and shared counters.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::{now_ms, to_ms};
use crate::error::{Error, Result};

/// How long before expiry a background refresh starts (google-auth's
/// `REFRESH_THRESHOLD`). Callers keep getting the old token meanwhile.
pub const REFRESH_WINDOW: Duration = Duration::from_secs(3 * 60 + 45);
/// A token this close to expiry is not handed out: callers wait for the
/// refresh instead, so a request never leaves with a token that dies in flight.
pub const EXPIRY_SKEW: Duration = Duration::from_secs(10);

/// An OAuth access token. Cheap to clone; `Debug` never shows it.
#[derive(Clone)]
pub struct AccessToken(pub(crate) Arc<Published>);

// Why `repr(C)`: what a call checks comes first, next to the `Arc`'s
// counts, so a call touches one cache line of a token it does not own.
#[repr(C)]
pub(crate) struct Published {
    /// Unique across the process: identifies this token in per-thread caches.
    pub(crate) generation: u64,
    pub(crate) refresh_at_ms: u64,
    pub(crate) usable_until_ms: u64,
    pub(crate) secret: SecretString,
    /// `Bearer <token>`, built once so requests do not format it again.
    pub(crate) header: HeaderValue,
    pub(crate) expires_at: SystemTime,
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Per-thread slots: a token cache's copies live in slot `key % LOCAL_SLOTS`
/// of every thread, so up to this many live credentials keep their copies
/// without evicting each other.
pub(crate) const LOCAL_SLOTS: usize = 64;

/// 0 marks a slot that no cache owns.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Token caches alive in the process: the size a thread's shared table aims at.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A new token cache's key in the per-thread slots, unique in the process.
pub(crate) fn next_key() -> u64 {
    LIVE.fetch_add(1, Ordering::Relaxed);
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// The cache of `key` is gone: this thread forgets its token now (other
/// threads when another credential takes the slot or the entry).
pub(crate) fn retire(key: u64) {
    LIVE.fetch_sub(1, Ordering::Relaxed);
    forget_locally(key);
}

/// One thread's slot (or entry of its table of shared tokens): its owner's
/// token, and the cache that missed here since the owner's token was last
/// served (0: none).
struct Slot {
    /// A private copy in a slot; the cache's token itself in the table.
    token: Option<Arc<Published>>,
    owner: u64,
    contender: Cell<u64>,
}

impl Slot {
    const fn free() -> Slot {
        Slot {
            token: None,
            owner: 0,
            contender: Cell::new(0),
        }
    }

    /// Whether `key` takes this slot: when it is free, already `key`'s, or
    /// missed by `key` twice with no call of its owner between.
    fn takes(&self, key: u64) -> bool {
        self.token.is_none() || self.owner == key || self.contender.replace(key) == key
    }

    /// Gives the slot to `key`'s `token`; returns the token it held.
    fn hold(&mut self, key: u64, token: Arc<Published>) -> Option<Arc<Published>> {
        self.owner = key;
        self.contender.set(0);
        self.token.replace(token)
    }

    /// Empties the slot if it is `key`'s; returns the token it held.
    fn release(&mut self, key: u64) -> Option<Arc<Published>> {
        match self.owner == key {
            true => self.token.take(),
            false => None,
        }
    }
}

thread_local! {
    /// Each thread keeps its own copy of a cache's current token, so the
    /// hot path touches no cache line that another core writes: no shared
    /// reference count, no lock. The generation in the copy says whether it
    /// is still current.
    static LOCAL: RefCell<[Slot; LOCAL_SLOTS]> = const { RefCell::new([const { Slot::free() }; LOCAL_SLOTS]) };
}

/// The most entries in a thread's table of shared tokens. The table is made
/// when the thread first serves a credential past its slots, with an entry
/// per live cache rounded up to a power of two (at least `LOCAL_SLOTS`), and
/// made again, larger, when more caches live.
const MAX_SHARED_ENTRIES: usize = 16_384;

thread_local! {
    /// Past the slots, a credential's entry holds the shared token itself
    /// (no copy): a call skips the cache's `ArcSwap` but shares the
    /// reference count.
    static SHARED: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

#[inline]
fn shared_index(key: u64, entries: usize) -> usize {
    // Why: `as usize` of a remainder below `entries` cannot truncate.
    key.checked_rem(entries as u64).unwrap_or(0) as usize
}

#[inline]
fn index(key: u64) -> usize {
    // Why: `as usize` of a remainder below 64 cannot truncate.
    key.checked_rem(LOCAL_SLOTS as u64).unwrap_or(0) as usize
}

impl AccessToken {
    /// The token itself, for an `Authorization: Bearer` header. Never log it.
    pub fn secret(&self) -> &str {
        self.0.secret.expose_secret()
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.0.expires_at
    }

    /// The ready-made `Authorization` header value (marked sensitive).
    pub fn header_value(&self) -> &HeaderValue {
        &self.0.header
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

impl Published {
    /// `lifetime` is known for fresh tokens (`expires_in`); short-lived ones
    /// then refresh at half-life rather than at once.
    pub(crate) fn new(
        secret: SecretString,
        expires_at: SystemTime,
        lifetime: Option<Duration>,
        margin: Duration,
    ) -> Result<Self> {
        let window = match lifetime {
            Some(l) => margin.min(l.checked_div(2).unwrap_or(l)),
            None => margin,
        };
        let usable_until_ms = to_ms(expires_at).saturating_sub(EXPIRY_SKEW.as_millis() as u64);
        Ok(Published {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            header: bearer(&secret)?,
            secret,
            expires_at,
            // A token living less than twice the skew would otherwise be
            // served from the per-thread copies after it stopped being usable.
            // Why: `as u64` would wrap a margin past u64::MAX ms to a short one.
            refresh_at_ms: to_ms(expires_at)
                .saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
                .min(usable_until_ms),
            usable_until_ms,
        })
    }

    /// A private copy (own allocations) for one thread's cache.
    fn local_copy(&self) -> Result<Self> {
        Ok(Published {
            generation: self.generation,
            secret: self.secret.clone(),
            header: bearer(&self.secret)?,
            expires_at: self.expires_at,
            refresh_at_ms: self.refresh_at_ms,
            usable_until_ms: self.usable_until_ms,
        })
    }
}

fn bearer(secret: &SecretString) -> Result<HeaderValue> {
    let token = secret.expose_secret();
    // Exactly sized, so the header takes the buffer over without a copy.
    let mut value = String::with_capacity(token.len().saturating_add(7));
    value.push_str("Bearer ");
    value.push_str(token);
    let mut header = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).map_err(|_| {
        Error::InvalidHeaderValue {
            what: "the access token from the token endpoint",
        }
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// This thread's copy (in `key`'s slot) of the token of `generation`, if it
/// is still fresh; past the slots, this thread's entry for `key` in its
/// table of shared tokens.
///
/// `servable(now)` decides for a copy past its refresh point (the cache knows
/// whether a background refresh already runs).
#[inline]
pub(crate) fn local_fresh(
    key: u64,
    generation: u64,
    servable: impl Fn(u64) -> bool,
) -> Option<Arc<Published>> {
    let own = LOCAL.try_with(|slots| {
        let slots = slots.borrow();
        let slot = &slots[index(key)];
        match &slot.token {
            Some(t) if t.generation == generation => Some(fresh(t, &servable).then(|| {
                slot.contender.set(0);
                Arc::clone(t)
            })),
            _ => None,
        }
    });
    match own {
        Ok(Some(served)) => served,
        Ok(None) => shared_fresh(key, generation, &servable),
        // The thread is ending (a thread-local's destructor asks): the slow
        // path serves the cache's token.
        Err(_) => None,
    }
}

#[inline]
fn fresh(t: &Published, servable: impl Fn(u64) -> bool) -> bool {
    let now = now_ms();
    now < t.refresh_at_ms || (now < t.usable_until_ms && servable(now))
}

/// `key`'s token from this thread's table of shared tokens, if fresh,
/// unless the slot is free (its owner dropped or signed out here) or `key`
/// misses it a second time with no call of the slot's owner between: then
/// the slow path gives `key` the slot (see [`serve`]).
#[cold]
#[inline(never)]
fn shared_fresh(
    key: u64,
    generation: u64,
    servable: impl Fn(u64) -> bool,
) -> Option<Arc<Published>> {
    let shared = SHARED
        .try_with(|table| {
            let table = table.borrow();
            let entry = table.get(shared_index(key, table.len()))?;
            match &entry.token {
                Some(t) if t.generation == generation && fresh(t, servable) => {
                    entry.contender.set(0);
                    Some(Arc::clone(t))
                }
                _ => None,
            }
        })
        .ok()??;
    // Why the free slot: two credentials served from the table in turn
    // would otherwise replace each other as contender, and never take it.
    LOCAL
        .try_with(|slots| {
            let slot = &slots.borrow()[index(key)];
            slot.token.is_some() && slot.contender.replace(key) != key
        })
        .ok()?
        .then_some(shared)
}

/// Hands out `current` after a miss of this thread's copy: in a private copy
/// kept in `key`'s slot when the slot is free, already `key`'s, or missed
/// by `key` twice with no call of the owner between; otherwise `current`
/// itself, shared.
///
/// Why: with more live credentials than slots, evicting on every miss would
/// allocate a copy on every call of a round-robin over them; sharing costs a
/// reference count on a line other threads may touch, and no allocation.
pub(crate) fn serve(key: u64, current: Arc<Published>) -> Arc<Published> {
    let adopted = LOCAL.try_with(|slots| {
        let mut slots = slots.borrow_mut();
        let slot = &mut slots[index(key)];
        if !slot.takes(key) {
            return None;
        }
        let copy = Arc::new(current.local_copy().ok()?);
        let old = slot.hold(key, Arc::clone(&copy));
        drop((slots, old));
        Some(copy)
    });
    match adopted {
        Ok(Some(copy)) => copy,
        Ok(None) => {
            share(key, &current);
            current
        }
        // The thread is ending: nothing is kept for it.
        Err(_) => current,
    }
}

/// Keeps `current` (shared, not copied) in `key`'s entry of this thread's
/// table, by the slots' rule: when the entry is free, already `key`'s, or
/// missed by `key` twice with no call of its owner between.
fn share(key: u64, current: &Arc<Published>) {
    let entries = LIVE
        .load(Ordering::Relaxed)
        .checked_next_power_of_two()
        .unwrap_or(MAX_SHARED_ENTRIES)
        .clamp(LOCAL_SLOTS, MAX_SHARED_ENTRIES);
    // Dropped after the borrow ends: the tokens a smaller table held.
    let _dropped = SHARED.try_with(|table| {
        let mut table = table.borrow_mut();
        let smaller = (table.len() < entries)
            .then(|| std::mem::replace(&mut *table, (0..entries).map(|_| Slot::free()).collect()));
        let len = table.len();
        let replaced = table
            .get_mut(shared_index(key, len))
            .filter(|entry| entry.takes(key))
            .and_then(|entry| entry.hold(key, Arc::clone(current)));
        (smaller, replaced)
    });
}

/// Drops this thread's copy of `key`'s token and its shared-table entry
/// (after a sign-out, or when the cache is dropped): the token's memory is
/// released now rather than when another cache takes the slot.
pub(crate) fn forget_locally(key: u64) {
    // Why `try_with`: a cache may be dropped while this thread's locals are
    // being destroyed; there is then nothing left to forget.
    let copy = LOCAL
        .try_with(|slots| slots.borrow_mut()[index(key)].release(key))
        .ok()
        .flatten();
    let shared = SHARED
        .try_with(|table| {
            let mut table = table.borrow_mut();
            let len = table.len();
            table.get_mut(shared_index(key, len))?.release(key)
        })
        .ok()
        .flatten();
    drop((copy, shared));
}

/// Whether this thread's shared table holds `key`'s token.
#[cfg(test)]
pub(crate) fn has_shared_entry(key: u64) -> bool {
    SHARED.with(|table| {
        table
            .borrow()
            .get(shared_index(key, table.borrow().len()))
            .is_some_and(|e| e.owner == key && e.token.is_some())
    })
}

/// The entries in this thread's table of shared tokens (0: not made yet).
#[cfg(test)]
pub(crate) fn shared_entries() -> usize {
    SHARED.with(|table| table.borrow().len())
}

/// Whether this thread's slots and its table are still alive (not yet
/// destroyed as the thread ends).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn slots_and_table_alive() -> (bool, bool) {
    (
        LOCAL.try_with(|_| ()).is_ok(),
        SHARED.try_with(|_| ()).is_ok(),
    )
}

/// Whether this thread holds a copy of `key`'s token.
#[cfg(test)]
pub(crate) fn has_local_copy(key: u64) -> bool {
    LOCAL.with(|slots| {
        let slots = slots.borrow();
        let slot = &slots[index(key)];
        slot.owner == key && slot.token.is_some()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn short_lived_tokens_are_never_served_inside_the_skew() {
        // expires_in 12: half-life 6 s would land after the 10 s skew point.
        let expires_at = SystemTime::now() + Duration::from_secs(12);
        let p = Published::new(
            SecretString::from("t"),
            expires_at,
            Some(Duration::from_secs(12)),
            REFRESH_WINDOW,
        )
        .unwrap();
        assert!(p.refresh_at_ms <= p.usable_until_ms);
        assert_eq!(
            p.usable_until_ms,
            to_ms(expires_at) - EXPIRY_SKEW.as_millis() as u64
        );
        let long = Published::new(
            SecretString::from("t"),
            SystemTime::now() + Duration::from_secs(3600),
            Some(Duration::from_secs(3600)),
            REFRESH_WINDOW,
        )
        .unwrap();
        assert_eq!(
            long.usable_until_ms - long.refresh_at_ms,
            (REFRESH_WINDOW - EXPIRY_SKEW).as_millis() as u64
        );
    }

    pub(crate) fn published() -> Arc<Published> {
        let expires_at = SystemTime::now() + Duration::from_secs(3600);
        Arc::new(Published::new(SecretString::from("t"), expires_at, None, REFRESH_WINDOW).unwrap())
    }

    #[test]
    fn a_slot_is_taken_when_free_or_missed_twice_without_its_owner_between_else_shared() {
        // Two caches with the same slot, on a thread of their own.
        std::thread::spawn(|| {
            let (a, b) = (next_key(), next_key() + LOCAL_SLOTS as u64 - 1);
            assert_eq!(index(a), index(b));
            let (ta, tb) = (published(), published());
            let copy = serve(a, Arc::clone(&ta));
            assert!(!Arc::ptr_eq(&copy, &ta), "a free slot: a private copy");
            assert!(has_local_copy(a));
            // b and a alternate (a round-robin over 65 to 128 caches): b is
            // served the shared token, a keeps the slot.
            for _ in 0..3 {
                assert!(Arc::ptr_eq(&serve(b, Arc::clone(&tb)), &tb));
                assert!(local_fresh(a, ta.generation, |_| false).is_some());
                assert!(!has_local_copy(b));
            }
            // b's shared token is kept in this thread's table: b's next
            // call is served it without the cache, a's call between.
            assert!(has_shared_entry(b));
            for _ in 0..3 {
                let from_table = local_fresh(b, tb.generation, |_| false).unwrap();
                assert!(Arc::ptr_eq(&from_table, &tb), "shared, not copied");
                assert!(local_fresh(a, ta.generation, |_| false).is_some());
            }
            assert!(local_fresh(b, tb.generation + 1, |_| false).is_none());
            // Twice from the table with no call of a between: the second
            // goes to the slow path, which gives b the slot.
            assert!(local_fresh(b, tb.generation, |_| false).is_some());
            assert!(local_fresh(b, tb.generation, |_| false).is_none());
            assert!(!Arc::ptr_eq(&serve(b, Arc::clone(&tb)), &tb));
            assert!(has_local_copy(b) && !has_local_copy(a));
            // a, back, is shared in its turn.
            assert!(Arc::ptr_eq(&serve(a, Arc::clone(&ta)), &ta));
            assert!(local_fresh(b, tb.generation, |_| false).is_some());
            // A sign-out of a does not drop b's copy.
            forget_locally(a);
            assert!(has_local_copy(b));
            forget_locally(b);
            assert!(!has_local_copy(b) && !has_shared_entry(b));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_a_clear_error() {
        let e = Published::new(
            SecretString::from("bad\nSECRET"),
            SystemTime::now(),
            None,
            REFRESH_WINDOW,
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::InvalidHeaderValue { .. }));
        assert!(!format!("{e} {e:?}").contains("SECRET"));
    }
}
