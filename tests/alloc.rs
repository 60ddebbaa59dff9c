//! Once warm, `Credentials::access_token()` allocates nothing, for one
//! credential, and for 16, 100 and 10,000 used round-robin (past 64, the
//! per-thread slots are shared, and most calls miss them), and nor does a web
//! app's warm `UserCredentials::get` for 1,000 users; a live credential
//! holds at most 2 KiB. A binary of its own: it installs a counting global
//! allocator.

#![allow(
    clippy::arithmetic_side_effects,
    reason = "tests may panic on overflow; the library may not (Cargo.toml)"
)]

use std::alloc::System;
use std::sync::Arc;
use std::time::SystemTime;

use gemini_oauth::{
    Consent, CredentialLoader, Credentials, MemoryTokenStore, StoredToken, TokenStore,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn token_json() -> String {
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    format!(
        r#"{{"token": "ya29.alloc", "refresh_token": "1//r", "token_uri": "https://oauth2.googleapis.com/token", "client_id": "c", "client_secret": "s", "scopes": ["https://www.googleapis.com/auth/generative-language.retriever"], "expiry": "{}"}}"#,
        expiry.format(&fmt).unwrap()
    )
}

async fn credentials() -> Credentials {
    credentials_from(CredentialLoader::new()).await
}

/// One user's credentials, loaded by a clone of `loader` (as a server holding
/// many users' credentials does: they share its HTTP client).
async fn credentials_from(loader: CredentialLoader) -> Credentials {
    let stored = StoredToken::from_json(token_json().as_bytes()).unwrap();
    loader
        .token_store(MemoryTokenStore::with_token(stored))
        .consent(Consent::Never)
        .load()
        .await
        .unwrap()
}

/// A store that keeps its record elsewhere (as a file or Redis store
/// does): it holds a handle, here one shared JSON text.
#[derive(Clone)]
struct Elsewhere(Arc<str>);

impl TokenStore for Elsewhere {
    async fn load(&self) -> gemini_oauth::Result<Option<StoredToken>> {
        Ok(Some(StoredToken::from_json(self.0.as_bytes()).unwrap()))
    }
    async fn save(&self, _: &StoredToken) -> gemini_oauth::Result<()> {
        Ok(())
    }
    async fn clear(&self) -> gemini_oauth::Result<()> {
        Ok(())
    }
}

/// Bytes allocated by `rounds` passes over `creds` after two warm-up passes
/// (the second: a per-thread slot whose owner is no longer called goes to
/// one that misses it twice), on a current-thread runtime with nothing else
/// running.
async fn bytes_for(creds: &[Credentials], rounds: usize) -> usize {
    for _ in 0..2 {
        for c in creds {
            assert!(c.access_token().await.unwrap().expires_at() > SystemTime::now());
        }
    }
    // The counter is process-wide: another thread of the process may
    // allocate meanwhile. The least of three measurements is ours alone (a
    // hot path that allocates does so in each of them).
    let mut least = usize::MAX;
    for _ in 0..3 {
        let region = Region::new(GLOBAL);
        for _ in 0..rounds {
            for c in creds {
                let token = c.access_token().await.unwrap();
                std::hint::black_box(&token);
                drop(token);
            }
        }
        least = least.min(region.change().bytes_allocated);
    }
    least
}

/// The counter is process-wide: one test at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` on a current-thread runtime, with no other test running.
fn alone(test: impl Future<Output = ()>) {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test);
}

#[test]
fn a_warm_hot_path_allocates_nothing_for_one_sixteen_and_a_hundred_credentials() {
    alone(async {
        let one = [credentials().await];
        assert_eq!(bytes_for(&one, 10_000).await, 0, "one credential");
        let mut sixteen = Vec::new();
        for _ in 0..16 {
            sixteen.push(credentials().await);
        }
        assert_eq!(bytes_for(&sixteen, 1_000).await, 0, "sixteen round-robin");
        // 100: two caches on most per-thread slots, called in turn.
        let mut hundred = sixteen;
        for _ in 16..100 {
            hundred.push(credentials().await);
        }
        // The first pass keeps 64 private copies, and a table of shared
        // tokens sized to the live credentials (128 entries, not 16,384).
        let ((), kept) = bytes_kept(async || {
            for c in &hundred {
                c.access_token().await.unwrap();
            }
        })
        .await;
        assert!(kept > 0, "the counter counts");
        assert!(
            kept < 64 * 1024,
            "{kept} bytes kept by a first pass over 100"
        );
        assert_eq!(bytes_for(&hundred, 100).await, 0, "a hundred round-robin");
        // The counter counts: a cold start allocates.
        let region = Region::new(GLOBAL);
        let cold = credentials().await;
        cold.access_token().await.unwrap();
        assert!(region.change().bytes_allocated > 0);
    });
}

/// Bytes still allocated after `f` returns (what it keeps alive).
async fn bytes_kept<T>(f: impl AsyncFnOnce() -> T) -> (T, isize) {
    let region = Region::new(GLOBAL);
    let kept = f().await;
    let s = region.change();
    // Why not `+ bytes_reallocated`: stats_alloc already counts a realloc's
    // growth in `bytes_allocated` (and its shrinking in `bytes_deallocated`).
    let net = s.bytes_allocated as isize - s.bytes_deallocated as isize;
    (kept, net)
}

#[test]
fn ten_thousand_live_credentials_allocate_nothing_per_call_and_hold_2_kib_each() {
    const N: usize = 10_000;
    alone(async {
        let mut all = Vec::with_capacity(N);
        let loader = CredentialLoader::new();
        let json: Arc<str> = token_json().into();
        let load = async |loader: CredentialLoader| {
            loader
                .token_store(Elsewhere(Arc::clone(&json)))
                .consent(Consent::Never)
                .load()
                .await
                .unwrap()
        };
        all.push(load(loader.clone()).await);
        let ((), kept) = bytes_kept(async || {
            for _ in 1..N {
                all.push(load(loader.clone()).await);
            }
            // The first call on this thread: 64 of them keep a copy here.
            for c in &all {
                c.access_token().await.unwrap();
            }
        })
        .await;
        let per_credential = kept / (N - 1) as isize;
        println!("{per_credential} bytes per live credential");
        assert!(per_credential > 0, "the counter counts");
        assert!(
            per_credential <= 2048,
            "{per_credential} bytes per credential"
        );
        assert_eq!(bytes_for(&all, 3).await, 0, "ten thousand round-robin");
        drop(all);

        // The issue's probe: fixed tokens.
        let expires = SystemTime::now() + std::time::Duration::from_secs(3600);
        let (fixed, kept) = bytes_kept(async || {
            let mut fixed = Vec::with_capacity(N);
            for i in 0..N {
                fixed.push(Credentials::from_access_token(format!("ya29.{i}"), expires).unwrap());
            }
            fixed
        })
        .await;
        let per_fixed = (kept - (N * std::mem::size_of::<Credentials>()) as isize) / N as isize;
        println!("{per_fixed} bytes per fixed-token credential");
        assert!(
            per_fixed <= 2048,
            "{per_fixed} bytes per fixed-token credential"
        );
        assert_eq!(bytes_for(&fixed, 3).await, 0, "ten thousand fixed tokens");
    });
}

/// Every user's record in memory, as a keyed store (a directory or Redis
/// store would do I/O only on a load, which a warm `get` does not).
#[derive(Clone)]
struct Users(Arc<str>);

impl gemini_oauth::KeyedTokenStore for Users {
    type Store = Elsewhere;
    fn for_user(&self, _: &str) -> gemini_oauth::Result<Elsewhere> {
        Ok(Elsewhere(Arc::clone(&self.0)))
    }
}

#[test]
fn a_web_apps_warm_get_and_token_for_a_thousand_users_allocate_nothing() {
    alone(async {
        let users = gemini_oauth::web::UserCredentials::new(
            Users(token_json().into()),
            CredentialLoader::new(),
        );
        let ids: Vec<String> = (0..1_000).map(|i| format!("user-{i}")).collect();
        // What a request handler does: the user's credentials, then a token.
        let pass = async || {
            for id in &ids {
                let creds = users.get(id).await.unwrap();
                let token = creds.access_token().await.unwrap();
                std::hint::black_box(&token);
            }
        };
        // Warm: every user loaded, the per-thread slots settled.
        pass().await;
        pass().await;
        assert_eq!(users.len(), ids.len());
        let mut least = usize::MAX;
        for _ in 0..3 {
            let region = Region::new(GLOBAL);
            pass().await;
            least = least.min(region.change().bytes_allocated);
        }
        assert_eq!(least, 0, "a thousand users' warm get + access_token");
        // The counter counts: a user not yet held allocates (a load).
        let region = Region::new(GLOBAL);
        users.get("someone-new").await.unwrap();
        assert!(region.change().bytes_allocated > 0);
    });
}

/// Review probe: round-robins over 65, 129 and 200 credentials (one, two
/// and three on a per-thread slot besides its owner), and over what is left
/// of 200 when every third (among them slot owners) is dropped, allocate
/// nothing once warm.
#[test]
fn round_robins_over_65_to_200_credentials_allocate_nothing_even_when_slot_owners_go() {
    alone(async {
        for n in [65, 129, 200] {
            let mut creds = Vec::new();
            for _ in 0..n {
                creds.push(credentials().await);
            }
            assert_eq!(bytes_for(&creds, 20).await, 0, "{n} round-robin");
            let mut i = 0;
            creds.retain(|_| {
                i += 1;
                i % 3 != 0
            });
            assert_eq!(
                bytes_for(&creds, 20).await,
                0,
                "{n} round-robin, a third dropped"
            );
        }
    });
}

/// Review probe: credentials made, used and dropped again and again, 100
/// alive besides: the per-thread table (sized to the live credentials)
/// stops growing, and nothing is kept per credential that came and went.
/// (One JSON text for all: formatting it keeps 24 bytes a time, in `time`.)
#[test]
fn credentials_coming_and_going_keep_nothing() {
    alone(async {
        let loader = CredentialLoader::new();
        let json: Arc<str> = token_json().into();
        let load = async || {
            loader
                .clone()
                .token_store(Elsewhere(Arc::clone(&json)))
                .consent(Consent::Never)
                .load()
                .await
                .unwrap()
        };
        let mut live = Vec::new();
        for _ in 0..100 {
            live.push(load().await);
        }
        let churn = async || {
            let mut passing = Vec::new();
            for _ in 0..150 {
                passing.push(load().await);
            }
            for c in passing.iter().chain(&live) {
                c.access_token().await.unwrap();
                c.access_token().await.unwrap();
            }
        };
        churn().await;
        churn().await;
        let ((), kept) = bytes_kept(async || {
            for _ in 0..40 {
                churn().await;
            }
        })
        .await;
        assert!(
            kept < 1024,
            "{kept} bytes kept by 6,000 credentials that came and went"
        );
    });
}
