//! A writer process killed at random moments while saving token.json never
//! leaves a torn file: every kill leaves a complete old or new version.
//! Runs itself as the writer (harness = false).

#![allow(
    clippy::arithmetic_side_effects,
    reason = "tests may panic on overflow; the library may not (Cargo.toml)"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use gemini_oauth::{FileTokenStore, StoredToken, TokenStore};

const CHILD_ENV: &str = "GEMINI_OAUTH_KILL_TEST_FILE";
const KILLS: usize = 25;

fn version(n: usize) -> StoredToken {
    // A large extra key widens the write window, so kills land inside it.
    let padding = "x".repeat(512 * 1024);
    let json = format!(
        r#"{{"token": "version-{n}", "refresh_token": "r", "client_id": "c", "client_secret": "s", "padding": "{padding}"}}"#
    );
    StoredToken::from_json(json.as_bytes()).unwrap()
}

#[tokio::main]
async fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let store = FileTokenStore::new(path);
        for n in 1.. {
            store.save(&version(n)).await.unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let store = FileTokenStore::new(&path);
    store.save(&version(0)).await.unwrap();
    let mut seen_versions = std::collections::BTreeSet::new();
    for kill in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30 + (kill as u64 * 37) % 300)).await;
        child.kill().unwrap(); // SIGKILL: no destructors, no cleanup
        child.wait().unwrap();
        let token = match store.load().await {
            Ok(Some(t)) => t,
            other => {
                eprintln!("kill {kill}: token file damaged: {other:?}");
                println!("0 passed, 1 failed");
                std::process::exit(1);
            }
        };
        let v = token.access_token().unwrap_or_default().to_owned();
        assert!(
            v.starts_with("version-"),
            "kill {kill}: unexpected content {v}"
        );
        assert_eq!(
            token
                .extra("padding")
                .and_then(|p| p.as_str())
                .map(str::len),
            Some(512 * 1024)
        );
        seen_versions.insert(v);
    }
    assert!(
        seen_versions.len() > 1,
        "the writer never got to write: {seen_versions:?}"
    );
    println!(
        "kill_during_write: {KILLS} SIGKILLs during saves, file intact every time ({} distinct versions seen)",
        seen_versions.len()
    );
    println!("1 passed, 0 failed");
}
