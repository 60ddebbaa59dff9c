//! The one retry policy: which calls are tried again, how often, how long
//! apart, and never past their deadline.
//!
//! | call | retried? | attempts | first backoff |
//! |---|---|---|---|
//! | token refresh, service-account JWT grant, revocation | on transport errors, `5xx`, `429` | 3 | 200 ms |
//! | STS exchange (`external_account`), IAM `generateAccessToken` | as the token refresh | 3 | 200 ms |
//! | metadata server ping (detection) | on transport errors and timeouts | `GCE_METADATA_DETECT_RETRIES` (3), each under `GCE_METADATA_TIMEOUT` (3 s) | 1 s |
//! | metadata server token and universe domain | on transport errors, `5xx`, `429`, `408` | 5, each under 3 s | 1 s |
//! | authorization-code exchange | **never**: a code is single-use | 1 | — |
//! | `GET` API calls ([`list_models`](crate::gemini::list_models), [`AuthorizedClient::get`](crate::AuthorizedClient::get)) | on transport errors, `5xx`, `429` | 3 | 500 ms |
//! | upload `query` and resume ([`upload_file`](crate::gemini::upload_file)) | on transport errors, `5xx`, `429`, `308` | 5 rounds without progress | 500 ms |
//! | `generateContent`, `streamGenerateContent`, other `POST`s | only with [`AuthorizedClient::retry`](crate::AuthorizedClient::retry), and only before any output | the policy's | the policy's |
//!
//! Backoff doubles after every attempt with up to 50 % random jitter, so
//! clients that failed together do not come back together, and is capped at
//! [`RetryPolicy::max_delay`] (10 s). A `Retry-After` answer (seconds or an
//! HTTP-date) replaces the computed backoff. No sleep ever passes the call's
//! deadline ([`RetryPolicy::max_elapsed`], and the client's
//! [`timeout`](crate::AuthorizedClient::timeout) when set): when the next
//! attempt could not start in time, the last error is returned.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{Error, Result};

/// How often and how patiently a call that failed for a passing reason is
/// tried again. See the [module docs](self) for which calls use it.
///
/// ```
/// use std::time::Duration;
/// let policy = gemini_oauth::RetryPolicy::default()
///     .attempts(4)
///     .base_delay(Duration::from_millis(250))
///     .max_elapsed(Duration::from_secs(30));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms first backoff, at most 10 s between attempts, all
    /// within 60 s: the token endpoint's policy.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once: no retries.
    #[must_use]
    pub fn never() -> Self {
        RetryPolicy::default().attempts(1)
    }

    /// The policy of API `GET`s: 3 attempts, 500 ms first backoff.
    pub(crate) fn api_get() -> Self {
        RetryPolicy::default().base_delay(Duration::from_millis(500))
    }

    /// google-auth's metadata `get()`: 5 attempts, backoff from 1 s.
    pub(crate) fn metadata() -> Self {
        RetryPolicy::default()
            .attempts(5)
            .base_delay(Duration::from_secs(1))
    }

    /// How many times the call is made at most, the first included (at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The wait before the second attempt; it doubles after each one.
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest computed backoff (a server's `Retry-After` is honoured
    /// as it is, within the deadline).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The deadline of the whole call, retries included, from its start:
    /// no attempt starts after it.
    #[must_use]
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = limit;
        self
    }

    /// The wait after attempt `attempt` (0-based) failed: exponential, with
    /// up to 50 % jitter, capped at `max_delay`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let jitter = getrandom::u32().unwrap_or(0) % 1000;
        exp.saturating_add(exp.mul_f64(f64::from(jitter) / 2000.0))
            .min(self.max_delay)
    }

    /// The deadline of a call starting now, capped by `limit` (the client's timeout).
    pub(crate) fn deadline(&self, limit: Option<Duration>) -> Option<Instant> {
        let budget = limit.map_or(self.max_elapsed, |l| l.min(self.max_elapsed));
        Instant::now().checked_add(budget)
    }

    /// The wait before attempt `attempt + 1`, or `None` when there is none:
    /// the attempts are used up, or it would start past `deadline`.
    pub(crate) fn next(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Option<Duration> {
        if attempt.saturating_add(1) >= self.attempts {
            return None;
        }
        // The server's word beats the formula; the deadline bounds both.
        let wait = retry_after.unwrap_or_else(|| self.delay(attempt));
        match deadline {
            // A wait too large for the clock (a huge Retry-After) passes any deadline.
            Some(at) if Instant::now().checked_add(wait).is_none_or(|t| t >= at) => None,
            _ => Some(wait),
        }
    }

    /// Runs `op` until it succeeds, fails for good, or the policy is spent.
    /// `op` answers its error with the server's `Retry-After`, if any.
    pub(crate) async fn run_hinted<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, (Error, Option<Duration>)>>,
    {
        let deadline = self.deadline(None);
        let mut attempt = 0;
        loop {
            let (e, retry_after) = match op().await {
                Ok(v) => return Ok(v),
                Err(failed) => failed,
            };
            let wait = match e.is_transient() {
                true => self.next(attempt, retry_after, deadline),
                false => None,
            };
            let Some(wait) = wait else { return Err(e) };
            tracing::debug!(attempt, ?wait, error = %e, "{what} failed, retrying");
            tokio::time::sleep(wait).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// [`run_hinted`](Self::run_hinted) for calls with no `Retry-After` to read.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_hinted(what, || {
            let fut = op();
            async move { fut.await.map_err(|e| (e, None)) }
        })
        .await
    }
}

/// Whether an answer's status is worth another attempt of a call that is
/// safe to repeat: `408`, `429` and `5xx` (google-auth's list, and every 5xx).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status)
}

/// A `Retry-After` header: seconds, or an HTTP-date (a date past is `0`).
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let r = RetryPolicy::default();
        for attempt in 0..4 {
            let d = r.delay(attempt);
            let base = r.base_delay * 2u32.pow(attempt);
            assert!(d >= base && d <= base + base / 2, "{d:?} vs {base:?}");
        }
        assert_eq!(r.delay(30), r.max_delay);
        assert_eq!(RetryPolicy::default().attempts(0).attempts, 1);
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            http::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_past_the_deadline() {
        let policy = RetryPolicy::default()
            .attempts(100)
            .base_delay(Duration::from_secs(1))
            .max_elapsed(Duration::from_secs(10));
        let start = Instant::now();
        let mut calls = 0;
        let result: Result<()> = policy
            .run("test", || {
                calls += 1;
                async {
                    Err(Error::Timeout {
                        what: "x".into(),
                        after: Duration::ZERO,
                    })
                }
            })
            .await;
        assert!(result.is_err());
        assert!(start.elapsed() < Duration::from_secs(10));
        // 1 + 2 + 4 s (with jitter) fit in 10 s; 8 more do not.
        assert!((3..=4).contains(&calls), "{calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_backoff_and_lasting_errors_are_not_retried() {
        let policy = RetryPolicy::default();
        let start = Instant::now();
        let mut calls = 0;
        let _ = policy
            .run_hinted("test", || {
                calls += 1;
                let e = Error::Timeout {
                    what: "x".into(),
                    after: Duration::ZERO,
                };
                async move { Err::<(), _>((e, Some(Duration::from_secs(3)))) }
            })
            .await;
        assert_eq!(calls, 3);
        assert!(start.elapsed() >= Duration::from_secs(6));
        let mut calls = 0;
        let _ = policy
            .run("test", || {
                calls += 1;
                async { Err::<(), _>(Error::InvalidHeaderValue { what: "x" }) }
            })
            .await;
        assert_eq!(calls, 1);
    }

    #[test]
    fn statuses_worth_a_retry() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 308, 400, 401, 403, 404] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    /// Review probe: the edges. No panic, no overflow, no sleep past the
    /// deadline, whatever the policy's durations or the server's header.
    #[tokio::test(start_paused = true)]
    async fn extreme_delays_and_headers_neither_panic_nor_sleep_past_the_deadline() {
        let timeout = || Error::Timeout {
            what: "x".into(),
            after: Duration::ZERO,
        };
        let huge = RetryPolicy::default()
            .attempts(u32::MAX)
            .base_delay(Duration::MAX)
            .max_delay(Duration::MAX)
            .max_elapsed(Duration::from_secs(10));
        for attempt in [0, 1, 16, u32::MAX] {
            assert!(huge.delay(attempt) >= Duration::from_secs(u64::MAX / 2));
        }
        let far = Some(Duration::from_secs(u64::MAX));
        let deadline = huge.deadline(None);
        assert_eq!(huge.next(0, None, deadline), None);
        assert_eq!(huge.next(0, far, deadline), None);
        assert_eq!(huge.next(u32::MAX, Some(Duration::ZERO), deadline), None);
        // A deadline already passed: the first attempt only, no sleep.
        let spent = RetryPolicy::default().max_elapsed(Duration::ZERO);
        for (policy, hint) in [(huge, None), (spent, None), (RetryPolicy::default(), far)] {
            let start = Instant::now();
            let mut calls = 0;
            let result: Result<()> = policy
                .run_hinted("test", || {
                    calls += 1;
                    async move { Err((timeout(), hint)) }
                })
                .await;
            assert!(result.is_err());
            assert_eq!(calls, 1, "{policy:?} {hint:?}");
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
        // Garbage and extreme headers: ignored, or a date past is now.
        let mut h = http::HeaderMap::new();
        for (value, want) in [
            ("-5", None),
            ("1.5", None),
            ("", None),
            ("99999999999999999999999", None),
            ("18446744073709551615", far),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(Duration::ZERO)),
        ] {
            h.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            assert_eq!(retry_after(&h), want, "{value:?}");
        }
        h.insert(
            http::header::RETRY_AFTER,
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        assert!(retry_after(&h).unwrap() > Duration::from_secs(200 * 365 * 86400));
    }
}
