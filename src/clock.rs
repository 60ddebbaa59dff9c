//! A cheap wall clock for the token hot path.
//!
//! Linux's `CLOCK_REALTIME_COARSE` is read from the vDSO without a system
//! call and without the TSC arithmetic of the precise clock; its resolution
//! (a scheduler tick, at most a few milliseconds) is far below
//! [`EXPIRY_SKEW`](crate::EXPIRY_SKEW). Being a wall clock, it also counts the
//! time a laptop slept, so a token that expired during suspend is never served.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[inline]
pub(crate) fn now_ms() -> u64 {
    #[cfg(test)]
    return system_ms() + test_clock::OFFSET_MS.with(std::cell::Cell::get);
    #[cfg(not(test))]
    system_ms()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn system_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    timespec_ms(t.tv_sec, t.tv_nsec)
}

/// Milliseconds since the epoch of a `timespec`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn timespec_ms(sec: i64, nsec: impl TryInto<u64>) -> u64 {
    // A clock set before 1970 (a board without a battery-backed clock) reads
    // as the epoch: every token is then fresh until the clock is set.
    let Ok(sec) = u64::try_from(sec) else {
        return 0;
    };
    let ms = nsec.try_into().unwrap_or(0) / 1_000_000;
    sec.saturating_mul(1000).saturating_add(ms)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
fn system_ms() -> u64 {
    to_ms(SystemTime::now())
}

/// Unit tests move the crate's clock forward on their own thread (tokio's
/// paused time moves only tokio's clock, and the cache reads the wall clock).
#[cfg(test)]
mod test_clock {
    thread_local! {
        pub(super) static OFFSET_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
}

/// Moves this thread's view of the crate's clock forward by `by`.
#[cfg(test)]
pub(crate) fn advance(by: std::time::Duration) {
    test_clock::OFFSET_MS.with(|o| o.set(o.get() + by.as_millis() as u64));
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        // Saturating, not wrapping, for a time past u64::MAX ms.
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clock_tracks_the_system_clock() {
        let precise = super::to_ms(std::time::SystemTime::now());
        let coarse = super::now_ms();
        assert!(coarse.abs_diff(precise) < 1000, "{coarse} vs {precise}");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_clock_before_1970_or_past_the_range_saturates_instead_of_panicking() {
        assert_eq!(
            super::timespec_ms(1_700_000_000, 5_000_000),
            1_700_000_000_005
        );
        assert_eq!(super::timespec_ms(-1, 999_999_999), 0);
        assert_eq!(super::timespec_ms(i64::MIN, 0), 0);
        assert_eq!(super::timespec_ms(i64::MAX, 999_999_999), u64::MAX);
    }
}
