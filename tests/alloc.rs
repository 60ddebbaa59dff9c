//! Once warm, `Credentials::access_token()` allocates nothing, for one
//! credential and for sixteen used round-robin. A binary of its own: it
//! installs a counting global allocator.

#![allow(
    clippy::arithmetic_side_effects,
    reason = "tests may panic on overflow; the library may not (Cargo.toml)"
)]

use std::alloc::System;
use std::time::SystemTime;

use gemini_oauth::{Consent, CredentialLoader, Credentials, MemoryTokenStore, StoredToken};
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
    let stored = StoredToken::from_json(token_json().as_bytes()).unwrap();
    CredentialLoader::new()
        .token_store(MemoryTokenStore::with_token(stored))
        .consent(Consent::Never)
        .load()
        .await
        .unwrap()
}

/// Bytes allocated by `rounds` passes over `creds` after one warm-up pass.
/// The counter is process-wide: the test runs alone in this binary, on a
/// current-thread runtime, with nothing else running.
async fn bytes_for(creds: &[Credentials], rounds: usize) -> usize {
    for c in creds {
        assert!(c.access_token().await.unwrap().expires_at() > SystemTime::now());
    }
    let region = Region::new(GLOBAL);
    for _ in 0..rounds {
        for c in creds {
            let token = c.access_token().await.unwrap();
            std::hint::black_box(&token);
            drop(token);
        }
    }
    region.change().bytes_allocated
}

#[test]
fn a_warm_hot_path_allocates_nothing_for_one_and_for_sixteen_credentials() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let one = [credentials().await];
        assert_eq!(bytes_for(&one, 10_000).await, 0, "one credential");
        let mut sixteen = Vec::new();
        for _ in 0..16 {
            sixteen.push(credentials().await);
        }
        assert_eq!(bytes_for(&sixteen, 1_000).await, 0, "sixteen round-robin");
        // The counter counts: a cold start allocates.
        let region = Region::new(GLOBAL);
        let cold = credentials().await;
        cold.access_token().await.unwrap();
        assert!(region.change().bytes_allocated > 0);
    });
}
