//! [`AccessToken`] and the per-thread copies that make the hot path free of
//! locks and shared counters.

use std::cell::RefCell;
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

pub(crate) struct Published {
    /// Unique across the process: identifies this token in per-thread caches.
    pub(crate) generation: u64,
    pub(crate) secret: SecretString,
    /// `Bearer <token>`, built once so requests do not format it again.
    pub(crate) header: HeaderValue,
    pub(crate) expires_at: SystemTime,
    pub(crate) refresh_at_ms: u64,
    pub(crate) usable_until_ms: u64,
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Per-thread slots: each token cache has one, so up to this many live
/// credentials keep their copies without evicting each other.
pub(crate) const LOCAL_SLOTS: usize = 64;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// A slot for a new token cache (credentials past [`LOCAL_SLOTS`] share slots).
pub(crate) fn next_slot() -> usize {
    NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % LOCAL_SLOTS
}

thread_local! {
    /// Each thread keeps its own copy of each cache's current token, so the
    /// hot path touches no cache line that another core writes: no shared
    /// reference count, no lock. A cache always uses the same slot; the
    /// generation in the copy says whether it is still current.
    static LOCAL: RefCell<[Option<Arc<Published>>; LOCAL_SLOTS]> =
        const { RefCell::new([const { None }; LOCAL_SLOTS]) };
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
    let mut header =
        HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret())).map_err(|_| {
            Error::InvalidHeaderValue {
                what: "the access token from the token endpoint",
            }
        })?;
    header.set_sensitive(true);
    Ok(header)
}

/// This thread's copy (in `slot`) of the token of `generation`, if it is
/// still fresh.
///
/// `servable(now)` decides for a copy past its refresh point (the cache knows
/// whether a background refresh already runs).
#[inline]
pub(crate) fn local_fresh(
    slot: usize,
    generation: u64,
    servable: impl FnOnce(u64) -> bool,
) -> Option<Arc<Published>> {
    LOCAL.with(|slots| {
        let slots = slots.borrow();
        match &slots[slot % LOCAL_SLOTS] {
            Some(t) if t.generation == generation => {
                let now = now_ms();
                (now < t.refresh_at_ms || (now < t.usable_until_ms && servable(now)))
                    .then(|| Arc::clone(t))
            }
            _ => None,
        }
    })
}

/// Keeps a private copy of `current` in this thread's `slot` and returns it.
pub(crate) fn cache_locally(slot: usize, current: &Arc<Published>) -> Arc<Published> {
    let Ok(copy) = current.local_copy() else {
        return Arc::clone(current);
    };
    let copy = Arc::new(copy);
    LOCAL.with(|slots| {
        slots.borrow_mut()[slot % LOCAL_SLOTS] = Some(Arc::clone(&copy));
    });
    copy
}

/// Drops this thread's copy in `slot` (after a sign-out): the token's memory
/// is released now rather than when another cache takes the slot.
pub(crate) fn forget_locally(slot: usize) {
    let copy = LOCAL.with(|slots| slots.borrow_mut()[slot % LOCAL_SLOTS].take());
    drop(copy);
}

/// Whether this thread holds a copy in `slot`.
#[cfg(test)]
pub(crate) fn has_local_copy(slot: usize) -> bool {
    LOCAL.with(|slots| slots.borrow()[slot % LOCAL_SLOTS].is_some())
}

#[cfg(test)]
mod tests {
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
