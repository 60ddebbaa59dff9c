//! Review probes of the per-thread table of shared tokens (a credential
//! past the 64 slots is served the shared token kept in this thread's
//! table): never a stale, refreshed, expired or revoked token from it, no
//! `RefCell` panic when caches are dropped as threads end, a slot freed by
//! its owner is taken again, and many threads at once.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::*;
use crate::access_token::{LOCAL_SLOTS, has_local_copy, has_shared_entry};

/// `n` caches, each with a source of its own (`token-0`, then `token-1`, …).
fn many(n: usize, expires_in: Duration) -> Vec<TokenCache> {
    (0..n)
        .map(|_| cache_with(&Scripted::new(&[]), expires_in, None))
        .collect()
}

fn key(cache: &TokenCache) -> u64 {
    cache.inner.key
}

/// Three of `caches` on one per-thread slot (`a`, `b`, `c`), `b` and `c`
/// in different entries of any table of 128 entries or more (their keys
/// differ by an odd multiple of 64). Other tests take keys meanwhile, so
/// the caches' keys need not be contiguous.
fn same_slot(caches: &[TokenCache]) -> (TokenCache, TokenCache, TokenCache) {
    let slot = |c: &TokenCache| key(c) % LOCAL_SLOTS as u64;
    for b in caches {
        for c in caches {
            if key(c) <= key(b) || (key(c) - key(b)) % 128 != 64 {
                continue;
            }
            let other =
                |x: &&TokenCache| slot(x) == slot(b) && key(x) != key(b) && key(x) != key(c);
            if let Some(a) = caches.iter().find(other) {
                return (a.clone(), b.clone(), c.clone());
            }
        }
    }
    panic!("no three caches on one slot");
}

/// `a` takes this (fresh) thread's slot; `b` and `c`, called next, are
/// served from its table (made now, sized for the 200 live caches).
fn one_owner_two_shared(rt: &tokio::runtime::Runtime) -> (TokenCache, TokenCache, TokenCache) {
    let all = many(200, HOUR);
    let (a, b, c) = same_slot(&all);
    for x in [&a, &b, &c] {
        rt.block_on(x.token()).unwrap();
    }
    assert!(has_local_copy(key(&a)));
    assert!(has_shared_entry(key(&b)) && has_shared_entry(key(&c)));
    assert!(access_token::shared_entries() >= 256);
    (a, b, c)
}

/// Runs `test` on a thread of its own (fresh slots and table), with a
/// runtime and [`one_owner_two_shared`]'s caches.
fn on_a_fresh_thread(
    test: impl FnOnce(&tokio::runtime::Runtime, (TokenCache, TokenCache, TokenCache)) + Send + 'static,
) {
    std::thread::spawn(|| {
        let rt = current_thread();
        let caches = one_owner_two_shared(&rt);
        test(&rt, caches);
    })
    .join()
    .unwrap();
}

/// The slot of a credential dropped on this thread is free: a credential
/// that shares the slot takes it (a private copy, so its calls stop
/// sharing a reference count with other threads), as before the table.
/// With two such credentials called in turn, each served from the table,
/// neither ever took it.
#[test]
fn a_slot_freed_by_its_dropped_owner_is_taken_by_a_credential_served_from_the_table() {
    on_a_fresh_thread(|rt, (a, b, c)| {
        let a_key = key(&a);
        drop(a);
        assert!(!has_local_copy(a_key), "the slot is free");
        for _ in 0..4 {
            for x in [&b, &c] {
                assert_eq!(rt.block_on(x.token()).unwrap().secret(), "token-0");
            }
        }
        assert!(
            has_local_copy(key(&b)) || has_local_copy(key(&c)),
            "the free slot stays free while its credentials are served shared"
        );
    });
}

/// A refresh or a close on another thread: this thread's table entry is
/// never served again (the generation changed); after the close, the
/// entry is forgotten here on the next call.
#[test]
fn the_table_serves_no_token_refreshed_or_closed_on_another_thread() {
    on_a_fresh_thread(|rt, (a, b, c)| {
        let stale = b.fresh().expect("from the table");
        assert_eq!(stale.secret(), "token-0");
        let (b2, s2) = (b.clone(), stale.clone());
        let new = std::thread::spawn(move || current_thread().block_on(b2.refresh_after(&s2)))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(new.secret(), "token-1");
        for _ in 0..3 {
            assert!(b.fresh().is_none_or(|t| t.secret() == "token-1"));
            assert_eq!(rt.block_on(b.token()).unwrap().secret(), "token-1");
            rt.block_on(a.token()).unwrap();
        }
        assert!(c.fresh().is_some());
        let c2 = c.clone();
        std::thread::spawn(move || c2.close().unwrap())
            .join()
            .unwrap();
        assert!(c.fresh().is_none(), "a closed cache's token from the table");
        assert!(matches!(rt.block_on(c.token()), Err(Error::Revoked { .. })));
        assert!(!has_shared_entry(key(&c)), "forgotten on the next call");
    });
}

/// A token in the table past its usable point is not served: while a
/// background refresh runs (the fetch never answers) it is served inside
/// the refresh window, and not once it is within the skew of expiry.
#[test]
fn the_table_serves_no_expired_token() {
    on_a_fresh_thread(|rt, (a, b, _c)| {
        // Another cache on the slot, with an entry of its own, whose
        // fetches never answer.
        let entries = access_token::shared_entries() as u64;
        let d = loop {
            let d = cache_with(&Scripted::new(&[1, 2, 3]), Duration::from_secs(120), None);
            let (slot, entry) = (key(&d) % LOCAL_SLOTS as u64, key(&d) % entries);
            if slot == key(&a) % LOCAL_SLOTS as u64
                && entry != key(&b) % entries
                && entry != key(&_c) % entries
            {
                break d;
            }
        };
        rt.block_on(a.token()).unwrap();
        // Inside the refresh window: served shared, a refresh starts.
        assert_eq!(rt.block_on(d.token()).unwrap().secret(), "token-0");
        rt.block_on(async {
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
        });
        assert!(d.inner.machine.refreshing());
        rt.block_on(a.token()).unwrap();
        assert!(has_shared_entry(key(&d)) && !has_local_copy(key(&d)));
        assert!(
            d.fresh().is_some(),
            "served from the table while refreshing"
        );
        rt.block_on(a.token()).unwrap();
        clock::advance(Duration::from_secs(111));
        assert!(d.fresh().is_none(), "an unusable token from the table");
        // Without a refresh: one past its expiry.
        assert!(b.fresh().is_some());
        clock::advance(HOUR);
        assert!(b.fresh().is_none(), "expired an hour later");
    });
}

/// A cache dropped on another thread leaves its token in this thread's
/// entry; a new cache with the same entry is served its own token, never
/// the dead cache's.
#[test]
fn a_new_cache_in_a_dropped_caches_entry_is_served_its_own_token() {
    on_a_fresh_thread(|rt, (a, b, _c)| {
        let entries = access_token::shared_entries() as u64;
        let b_key = key(&b);
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert!(has_shared_entry(b_key), "the dead cache's token stays here");
        // Caches made and dropped until one lands in b's entry (the live
        // count, and so the table, stays as it is).
        let d = loop {
            let d = cache_with(&Scripted::new(&[]), HOUR, None);
            if key(&d) % entries == b_key % entries {
                break d;
            }
        };
        assert_eq!(access_token::shared_entries() as u64, entries);
        for _ in 0..4 {
            let got = rt.block_on(d.token()).unwrap();
            let current = d.inner.current.load_full();
            assert_eq!(
                got.0.generation, current.generation,
                "another cache's token"
            );
            assert!(
                d.fresh()
                    .is_none_or(|t| t.0.generation == current.generation)
            );
            rt.block_on(a.token()).unwrap();
        }
    });
}

thread_local! {
    static HELD: RefCell<Vec<TokenCache>> = const { RefCell::new(Vec::new()) };
    static TOKENS: RefCell<Vec<AccessToken>> = const { RefCell::new(Vec::new()) };
}

/// Caches (and their tokens) whose last owner is a thread-local dropped as
/// the thread ends, before or after this crate's per-thread slots and
/// table: no panic (a `RefCell` borrowed twice, a destroyed thread-local).
#[test]
fn caches_dropped_as_a_thread_ends_do_not_panic() {
    for held_first in [true, false] {
        std::thread::spawn(move || {
            if held_first {
                HELD.with(|_| {});
                TOKENS.with(|_| {});
            }
            let rt = current_thread();
            let (a, b, c) = one_owner_two_shared(&rt);
            let tokens: Vec<_> = [&a, &b, &c]
                .iter()
                .map(|x| rt.block_on(x.token()).unwrap())
                .collect();
            drop(rt);
            HELD.with(|held| held.borrow_mut().extend([a, b, c]));
            TOKENS.with(|held| held.borrow_mut().extend(tokens));
        })
        .join()
        .unwrap();
    }
}

/// Many tasks on a two-worker runtime (moving between workers) call 200
/// caches while one refreshes and closes some, and another makes and drops
/// caches (so the tables grow). A call that starts after a refresh or a
/// close returned never gets an older token, nor any token after a close.
#[test]
fn many_tasks_on_a_multi_thread_runtime_never_get_a_superseded_token() {
    const N: usize = 200;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let caches: Arc<Vec<TokenCache>> = Arc::new(many(N, HOUR));
    let floor: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let flags =
        || -> Arc<Vec<AtomicBool>> { Arc::new((0..N).map(|_| AtomicBool::new(false)).collect()) };
    // Set before `close()` is called, and after it returns.
    let (closing, closed) = (flags(), flags());
    let number =
        |t: &AccessToken| -> u64 { t.secret().strip_prefix("token-").unwrap().parse().unwrap() };
    rt.block_on(async {
        let mut tasks = Vec::new();
        for r in 0..6 {
            let (caches, floor) = (caches.clone(), floor.clone());
            let (closing, closed) = (closing.clone(), closed.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..40 {
                    for j in 0..N {
                        let i = (j * 7 + r * 13 + round) % N;
                        let (was_closed, least) = (
                            closed[i].load(Ordering::SeqCst),
                            floor[i].load(Ordering::SeqCst),
                        );
                        match caches[i].token().await {
                            Ok(t) => {
                                assert!(!was_closed, "a token after close()");
                                assert!(
                                    number(&t) >= least,
                                    "token-{} after token-{least}",
                                    number(&t)
                                );
                            }
                            Err(Error::Revoked { .. }) => {
                                assert!(closing[i].load(Ordering::SeqCst))
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                        if j % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }));
        }
        let (c2, f2) = (caches.clone(), floor.clone());
        let (cl1, cl2) = (closing.clone(), closed.clone());
        tasks.push(tokio::spawn(async move {
            for step in 0..300 {
                let i = (step * 31) % N;
                let Ok(t) = c2[i].token().await else { continue };
                if step % 25 == 24 {
                    cl1[i].store(true, Ordering::SeqCst);
                    c2[i].close().unwrap();
                    cl2[i].store(true, Ordering::SeqCst);
                } else if let Ok(new) = c2[i].refresh_after(&t).await {
                    f2[i].fetch_max(number(&new), Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let more = many(300, HOUR);
                for c in &more {
                    c.token().await.unwrap();
                }
                drop(more);
                tokio::task::yield_now().await;
            }
        }));
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Tokens asked for, and refreshed, from a thread-local's destructor (a log
/// flushed as a thread ends, say) once this crate's slots, table or both
/// are gone: served, not a panic (which aborts the process there).
///
/// Linux only: the tests need thread-locals destroyed in the reverse order
/// of their first use on the thread, which glibc does and std does not
/// promise elsewhere.
#[cfg(target_os = "linux")]
mod asked_as_the_thread_ends {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Gone {
        Table,
        Slots,
        Both,
    }

    type Seen = ((bool, bool), Option<Vec<String>>);

    struct AskAtExit(Vec<TokenCache>, std::sync::mpsc::Sender<Seen>);
    impl Drop for AskAtExit {
        fn drop(&mut self) {
            let alive = access_token::slots_and_table_alive();
            let caches = std::mem::take(&mut self.0);
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut seen = Vec::new();
                for cache in &caches {
                    let std::task::Poll::Ready(Ok(t0)) =
                        std::pin::pin!(cache.token()).poll(&mut cx)
                    else {
                        seen.push("token() not ready".to_owned());
                        continue;
                    };
                    seen.push(t0.secret().to_owned());
                    // A refresh (as after a 401), driven here, no runtime.
                    match std::pin::pin!(cache.refresh_after(&t0)).poll(&mut cx) {
                        std::task::Poll::Ready(Ok(t)) => seen.push(t.secret().to_owned()),
                        other => seen.push(format!("refresh: {other:?}")),
                    }
                    match std::pin::pin!(cache.token()).poll(&mut cx) {
                        std::task::Poll::Ready(Ok(t)) => seen.push(t.secret().to_owned()),
                        other => seen.push(format!("after refresh: {other:?}")),
                    }
                    // Twice more, so a credential would take a slot or entry.
                    for _ in 0..2 {
                        if let std::task::Poll::Ready(Ok(t)) =
                            std::pin::pin!(cache.token()).poll(&mut cx)
                        {
                            seen.push(t.secret().to_owned());
                        }
                    }
                }
                drop(caches);
                seen
            }));
            self.1.send((alive, served.ok())).unwrap();
        }
    }

    thread_local! {
        static ASK: RefCell<Option<AskAtExit>> = const { RefCell::new(None) };
    }

    fn asked_at_exit(gone: Gone) -> Seen {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Thread-locals are destroyed in the reverse order of their
            // first use on the thread.
            match gone {
                Gone::Table => {
                    let _ = has_local_copy(0);
                }
                Gone::Slots => {
                    let _ = access_token::shared_entries();
                }
                Gone::Both => {}
            }
            ASK.with(|_| {});
            let rt = current_thread();
            let (a, b, c) = one_owner_two_shared(&rt);
            drop(rt);
            ASK.with(|ask| *ask.borrow_mut() = Some(AskAtExit(vec![a, b, c], tx)));
        })
        .join()
        .unwrap();
        rx.recv().unwrap()
    }

    fn expected() -> Option<Vec<String>> {
        let one = ["token-0", "token-1", "token-1", "token-1", "token-1"];
        Some((0..3).flat_map(|_| one.map(str::to_owned)).collect())
    }

    #[test]
    fn only_the_table_gone() {
        assert_eq!(asked_at_exit(Gone::Table), ((true, false), expected()));
    }

    #[test]
    fn only_the_slots_gone() {
        assert_eq!(asked_at_exit(Gone::Slots), ((false, true), expected()));
    }

    /// Slots and table first used by the destructor itself.
    #[test]
    fn neither_used_before_the_thread_ends() {
        let (tx, rx) = std::sync::mpsc::channel();
        let caches = std::thread::spawn(|| {
            let rt = current_thread();
            let (a, b, c) = one_owner_two_shared(&rt);
            vec![a, b, c]
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            ASK.with(|ask| *ask.borrow_mut() = Some(AskAtExit(caches, tx)));
        })
        .join()
        .unwrap();
        let (_, served) = rx.recv().unwrap();
        assert_eq!(served, expected());
    }

    #[test]
    fn both_gone_with_a_refresh() {
        assert_eq!(asked_at_exit(Gone::Both), ((false, false), expected()));
    }
}
