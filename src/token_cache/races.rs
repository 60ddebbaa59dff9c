//! The races of issue #20 (items 2 and 3), each against a fake source: a
//! refresh answered while the cache closes, waiters woken after a close, a
//! refresh whose runtime is dropped or left idle, and a panicking observer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use super::*;
use crate::clock;

const HOUR: Duration = Duration::from_secs(3600);
/// A hang guard, not a performance bound.
const GUARD: Duration = Duration::from_secs(20);

/// Fetch `n` returns `token-n`; the fetches listed in `hang` never answer.
struct Scripted {
    calls: AtomicUsize,
    hang: &'static [usize],
}

impl Scripted {
    fn new(hang: &'static [usize]) -> Arc<Self> {
        Arc::new(Scripted {
            calls: AtomicUsize::new(0),
            hang,
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for Scripted {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let hang = self.hang.contains(&n);
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(Fetched {
                token: SecretString::from(format!("token-{n}")),
                expires_at: SystemTime::now() + HOUR,
                refresh_token_rotated: false,
            })
        })
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

fn cache_with(
    source: &Arc<Scripted>,
    expires_in: Duration,
    on_refresh: Option<RefreshObserver>,
) -> TokenCache {
    let first = Fetched {
        token: SecretString::from("token-0"),
        expires_at: SystemTime::now() + expires_in,
        refresh_token_rotated: false,
    };
    let options = CacheOptions {
        on_refresh,
        ..CacheOptions::default()
    };
    TokenCache::new(Arc::clone(source) as Arc<dyn TokenSource>, first, options).unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Race 2a: the refresh's answer arrives while the cache closes (the
/// observer runs between the two, and closes it): nothing is published,
/// and the waiter is told the credentials were revoked.
#[tokio::test]
async fn a_refresh_answered_while_closing_is_not_published() {
    let source = Scripted::new(&[]);
    let this: Arc<OnceLock<TokenCache>> = Arc::default();
    let closer = Arc::clone(&this);
    let observer: RefreshObserver = Arc::new(move |_: &RefreshEvent| {
        closer.get().unwrap().close().unwrap();
    });
    let cache = cache_with(&source, HOUR, Some(observer));
    let _ = this.set(cache.clone());
    let stale = cache.token().await.unwrap();
    let after = cache.refresh_after(&stale).await;
    assert!(
        matches!(after, Err(Error::Revoked { .. })),
        "a token published after close: {after:?}"
    );
    assert_eq!(source.calls(), 1);
    assert!(matches!(cache.token().await, Err(Error::Revoked { .. })));
    assert_eq!(cache.expires_at(), SystemTime::UNIX_EPOCH);
}

/// Race 2b: two waiters share one refresh; the first to wake closes the
/// cache. The second must not get `Ok` with the dead token (empty, 1970).
#[tokio::test]
async fn waiters_woken_after_close_get_revoked_not_an_empty_token() {
    let source = Scripted::new(&[]);
    let cache = cache_with(&source, HOUR, None);
    let stale = cache.token().await.unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (c, s) = (cache.clone(), stale.clone());
            tokio::spawn(async move {
                let got = c.refresh_after(&s).await;
                c.close().unwrap();
                got
            })
        })
        .collect();
    let mut tokens = 0;
    for waiter in waiters {
        match waiter.await.unwrap() {
            Ok(token) => {
                assert_eq!(token.secret(), "token-1");
                assert!(token.expires_at() > SystemTime::now());
                tokens += 1;
            }
            Err(e) => assert!(matches!(e, Error::Revoked { .. }), "{e:?}"),
        }
    }
    assert!(tokens >= 1);
    assert_eq!(source.calls(), 1);
}

/// Item 3: a current-thread runtime drives a refresh and is dropped while a
/// caller on another runtime waits for it: that caller takes over.
#[test]
fn a_waiter_takes_over_when_the_refreshing_runtime_is_dropped() {
    // The first fetch never answers: only a take-over can produce a token.
    let source = Scripted::new(&[1]);
    let cache = cache_with(&source, Duration::ZERO, None);
    let a = current_thread();
    a.block_on(async {
        let c = cache.clone();
        tokio::spawn(async move { c.token().await });
        while source.calls() == 0 {
            tokio::task::yield_now().await;
        }
    });
    let (joined, joining) = std::sync::mpsc::channel();
    let c = cache.clone();
    let waiter = std::thread::spawn(move || {
        current_thread().block_on(async {
            joined.send(()).unwrap();
            tokio::time::timeout(GUARD, c.token()).await
        })
    });
    joining.recv().unwrap();
    // Let the waiter join the flight that runtime `a` drives, then drop `a`.
    std::thread::sleep(Duration::from_millis(200));
    drop(a);
    let got = waiter.join().unwrap().expect("the waiter hung");
    assert_eq!(got.unwrap().secret(), "token-2");
    assert_eq!(source.calls(), 2);
}

/// Item 3: a background refresh spawned on a current-thread runtime that is
/// never run again; once the token expires, a caller on another runtime
/// refreshes instead of waiting forever.
#[test]
fn a_background_refresh_left_on_an_idle_runtime_is_taken_over() {
    let source = Scripted::new(&[]);
    // Inside the refresh window: the call starts a background refresh.
    let cache = cache_with(&source, Duration::from_secs(60), None);
    let a = current_thread();
    let old = a.block_on(cache.token()).unwrap();
    assert_eq!(old.secret(), "token-0");
    // `a` stays alive, idle: its spawned refresh never runs.
    let c = cache.clone();
    let got = std::thread::spawn(move || {
        clock::advance(Duration::from_secs(61));
        current_thread().block_on(async { tokio::time::timeout(GUARD, c.token()).await })
    })
    .join()
    .unwrap()
    .expect("the caller waited for the idle runtime");
    assert_eq!(got.unwrap().secret(), "token-1");
    // When `a` runs again, its superseded refresh publishes nothing.
    a.block_on(async {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(source.calls(), 1);
    assert_eq!(a.block_on(cache.token()).unwrap().secret(), "token-1");
    drop(a);
}

/// Item 3: an observer that panics is a failed refresh: it backs off
/// instead of sending one token request per call.
#[tokio::test]
async fn a_panicking_observer_backs_off() {
    let source = Scripted::new(&[]);
    let observer: RefreshObserver = Arc::new(|_: &RefreshEvent| panic!("observer bug"));
    let cache = cache_with(&source, Duration::ZERO, Some(observer));
    // Told only once the token is published (#20 item 5): the token is
    // served, and the panic costs no further token request.
    for _ in 0..10 {
        assert_eq!(cache.token().await.unwrap().secret(), "token-1");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(
        cache.inner.machine.failures(),
        1,
        "the next refresh backs off"
    );
}

/// Item 11: after a close, this thread's copy of the token is dropped, and
/// another thread's on its next call.
#[tokio::test]
async fn close_drops_the_per_thread_copies() {
    let source = Scripted::new(&[]);
    let cache = cache_with(&source, HOUR, None);
    cache.token().await.unwrap();
    assert!(access_token::has_local_copy(cache.inner.key));
    let (warmed, warm) = std::sync::mpsc::channel();
    let (closed, close) = std::sync::mpsc::channel::<()>();
    let c = cache.clone();
    let other = std::thread::spawn(move || {
        let rt = current_thread();
        rt.block_on(c.token()).unwrap();
        warmed
            .send(access_token::has_local_copy(c.inner.key))
            .unwrap();
        close.recv().unwrap();
        let after = rt.block_on(c.token());
        (after, access_token::has_local_copy(c.inner.key))
    });
    assert!(warm.recv().unwrap(), "the other thread kept a copy");
    cache.close().unwrap();
    assert!(!access_token::has_local_copy(cache.inner.key));
    closed.send(()).unwrap();
    let (after, kept) = other.join().unwrap();
    assert!(matches!(after, Err(Error::Revoked { .. })));
    assert!(!kept);
}

/// Past the per-thread slots a token is kept shared in this thread's table;
/// dropping the cache releases it there, not when another credential
/// takes the entry.
#[test]
fn dropping_a_cache_releases_its_shared_entry_on_this_thread() {
    std::thread::spawn(|| {
        let rt = current_thread();
        let source = Scripted::new(&[]);
        let cache = cache_with(&source, HOUR, None);
        let key = cache.inner.key;
        // Another credential holds this thread's slot for `key`.
        let holder = crate::access_token::tests::published();
        let other = key + crate::access_token::LOCAL_SLOTS as u64;
        drop(access_token::serve(other, Arc::clone(&holder)));
        let token = rt.block_on(cache.token()).unwrap();
        assert!(!access_token::has_local_copy(key));
        assert!(access_token::has_shared_entry(key));
        assert!(
            Arc::strong_count(&token.0) > 2,
            "shared with the cache and the table"
        );
        let weak = Arc::downgrade(&token.0);
        drop((token, cache));
        assert!(!access_token::has_shared_entry(key));
        assert!(weak.upgrade().is_none(), "the token's memory is released");
    })
    .join()
    .unwrap();
}

/// Review probe: the cache closes while the caller that drives the refresh
/// waits on a fetch that never answers. Every caller, the driver included,
/// is told the credentials were revoked at once; nothing is published.
#[tokio::test(start_paused = true)]
async fn close_releases_the_caller_driving_a_fetch_that_never_answers() {
    let source = Scripted::new(&[1]);
    let told = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&told);
    let observer: RefreshObserver = Arc::new(move |_: &RefreshEvent| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    let cache = cache_with(&source, Duration::ZERO, Some(observer));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { tokio::time::timeout(GUARD, c.token()).await })
        })
        .collect();
    while source.calls() == 0 {
        tokio::task::yield_now().await;
    }
    cache.close().unwrap();
    for caller in callers {
        let got = caller
            .await
            .unwrap()
            .expect("a caller still waits on the fetch after close()");
        assert!(matches!(got, Err(Error::Revoked { .. })), "{got:?}");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(told.load(Ordering::SeqCst), 0);
    assert_eq!(cache.expires_at(), SystemTime::UNIX_EPOCH);
}

/// Review probe: a caller's refresh runs in a task spawned on a
/// current-thread runtime that is then left idle (alive, never run again):
/// a caller on another runtime takes over instead of waiting for it.
#[test]
fn a_callers_refresh_left_on_an_idle_runtime_is_taken_over() {
    // The first fetch never answers: only a take-over can produce a token.
    let source = Scripted::new(&[1]);
    let cache = cache_with(&source, Duration::ZERO, None);
    let a = current_thread();
    a.block_on(async {
        let c = cache.clone();
        tokio::spawn(async move { c.token().await });
        while source.calls() == 0 {
            tokio::task::yield_now().await;
        }
    });
    // `a` stays alive, idle: the task driving the refresh is never polled again.
    let c = cache.clone();
    let got = std::thread::spawn(move || {
        current_thread().block_on(async { tokio::time::timeout(GUARD, c.token()).await })
    })
    .join()
    .unwrap()
    .expect("the caller waited for the idle runtime");
    assert_eq!(got.unwrap().secret(), "token-2");
    assert_eq!(source.calls(), 2);
    drop(a);
}

fn cache_with_margin(source: &Arc<Scripted>, margin: Duration) -> TokenCache {
    let first = Fetched {
        token: SecretString::from("token-0"),
        expires_at: SystemTime::now() + HOUR,
        refresh_token_rotated: false,
    };
    let options = CacheOptions {
        refresh_margin: margin,
        ..CacheOptions::default()
    };
    TokenCache::new(Arc::clone(source) as Arc<dyn TokenSource>, first, options).unwrap()
}

/// Review probe: refresh margins at the edges of `Duration`. A margin
/// longer than the token's life refreshes it at once (in the background,
/// the valid token served meanwhile), and the new one at half-life, not
/// on every call; a zero margin never refreshes a valid token early. A
/// margin past `u64::MAX` milliseconds is as long as any, not wrapped.
#[tokio::test]
async fn refresh_margins_at_the_edges_neither_panic_nor_wrap() {
    for margin in [Duration::MAX, Duration::from_secs(18_446_744_073_709_552)] {
        let source = Scripted::new(&[]);
        let cache = cache_with_margin(&source, margin);
        assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(source.calls(), 1, "margin {margin:?}: one refresh at once");
        for _ in 0..10 {
            assert_eq!(cache.token().await.unwrap().secret(), "token-1");
        }
        assert_eq!(source.calls(), 1, "margin {margin:?}: then at half-life");
    }
    let source = Scripted::new(&[]);
    let cache = cache_with_margin(&source, Duration::ZERO);
    for _ in 0..10 {
        assert_eq!(cache.token().await.unwrap().secret(), "token-0");
        tokio::task::yield_now().await;
    }
    assert_eq!(source.calls(), 0);
}

/// Review probe: the task driving a refresh is aborted (its caller gave
/// up) while another caller on the same runtime waits: that caller takes
/// over and gets a token.
#[tokio::test]
async fn a_waiter_takes_over_from_an_aborted_driver() {
    let source = Scripted::new(&[1]);
    let cache = cache_with(&source, Duration::ZERO, None);
    let c = cache.clone();
    let driver = tokio::spawn(async move { c.token().await });
    while source.calls() == 0 {
        tokio::task::yield_now().await;
    }
    let c = cache.clone();
    let waiter = tokio::spawn(async move { tokio::time::timeout(GUARD, c.token()).await });
    tokio::task::yield_now().await;
    driver.abort();
    let got = waiter.await.unwrap().expect("the waiter hung");
    assert_eq!(got.unwrap().secret(), "token-2");
    assert_eq!(source.calls(), 2);
}

/// Takes 50 ms per fetch, on tokio's clock of the runtime that polls it.
struct Slow(AtomicUsize);

impl TokenSource for Slow {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Fetched {
                token: SecretString::from(format!("token-{n}")),
                expires_at: SystemTime::now() + HOUR,
                refresh_token_rotated: false,
            })
        })
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

/// Review probe (against the take-over of a caller's pinned refresh): tasks
/// on two busy current-thread runtimes need a token at once. One refresh
/// serves both; they do not take it from each other in turn forever.
#[test]
fn callers_on_two_busy_current_thread_runtimes_share_one_refresh() {
    let source = Arc::new(Slow(AtomicUsize::new(0)));
    let first = Fetched {
        token: SecretString::from("token-0"),
        expires_at: SystemTime::now(),
        refresh_token_rotated: false,
    };
    let cache = TokenCache::new(
        Arc::clone(&source) as Arc<dyn TokenSource>,
        first,
        CacheOptions::default(),
    )
    .unwrap();
    let start = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (cache, start) = (cache.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                current_thread().block_on(async move {
                    start.wait();
                    let tasks: Vec<_> = (0..4)
                        .map(|_| {
                            let c = cache.clone();
                            tokio::spawn(
                                async move { tokio::time::timeout(GUARD, c.token()).await },
                            )
                        })
                        .collect();
                    let mut got = Vec::new();
                    for task in tasks {
                        let token = task.await.unwrap().expect("the callers livelocked");
                        got.push(token.unwrap().secret().to_owned());
                    }
                    got
                })
            })
        })
        .collect();
    for thread in threads {
        for token in thread.join().unwrap() {
            assert_ne!(token, "token-0");
        }
    }
    assert_eq!(source.0.load(Ordering::SeqCst), 1);
}

/// Review probe: a fetch whose flight is closed is not dropped midway (it
/// may hold the store's lock while a blocking write runs): it finishes on
/// its own, and what it fetched is neither published nor told.
#[tokio::test]
async fn a_closed_flights_fetch_runs_to_its_end_unpublished() {
    struct Gated {
        open: tokio::sync::Notify,
        finished: AtomicUsize,
    }
    impl TokenSource for Gated {
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
            Box::pin(async move {
                self.open.notified().await;
                self.finished.fetch_add(1, Ordering::SeqCst);
                Ok(Fetched {
                    token: SecretString::from("late"),
                    expires_at: SystemTime::now() + HOUR,
                    refresh_token_rotated: false,
                })
            })
        }
        fn describe(&self) -> String {
            "gated".into()
        }
    }
    let source = Arc::new(Gated {
        open: tokio::sync::Notify::new(),
        finished: AtomicUsize::new(0),
    });
    let first = Fetched {
        token: SecretString::from("token-0"),
        expires_at: SystemTime::now(),
        refresh_token_rotated: false,
    };
    let told = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&told);
    let options = CacheOptions {
        on_refresh: Some(Arc::new(move |_: &RefreshEvent| {
            count.fetch_add(1, Ordering::SeqCst);
        })),
        ..CacheOptions::default()
    };
    let cache =
        TokenCache::new(Arc::clone(&source) as Arc<dyn TokenSource>, first, options).unwrap();
    let c = cache.clone();
    let caller = tokio::spawn(async move { c.token().await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    cache.close().unwrap();
    let got = tokio::time::timeout(GUARD, caller)
        .await
        .expect("no hang")
        .unwrap();
    assert!(matches!(got, Err(Error::Revoked { .. })), "{got:?}");
    source.open.notify_waiters();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        source.finished.load(Ordering::SeqCst),
        1,
        "the fetch ran to its end"
    );
    assert_eq!(told.load(Ordering::SeqCst), 0);
    assert_eq!(cache.expires_at(), SystemTime::UNIX_EPOCH);
    assert!(matches!(cache.token().await, Err(Error::Revoked { .. })));
}

/// Review probes of the per-thread table of shared tokens.
mod table;
