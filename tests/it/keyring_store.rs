//! `KeyringTokenStore` against the real OS credential store: on Linux the
//! kernel keyring (keyutils), which needs no daemon, so it runs headless in
//! CI. Where `add_key`/`keyctl` are blocked (a container's seccomp profile)
//! these tests fail; they never skip.
#![cfg(feature = "keyring")]

use std::process::Stdio;

use crate::common::examples::{example, stdout};
use crate::common::*;
use gemini_oauth::{
    Error, FileTokenStore, KeyringTokenStore, Migration, StoredToken, TokenFileProblem, TokenStore,
};

/// A keyring entry of its own for one test, deleted when dropped.
struct TestEntry {
    store: KeyringTokenStore,
}

impl TestEntry {
    fn new(test: &str) -> Self {
        let account = format!("it-{test}-{}-{}", std::process::id(), nonce());
        let entry = TestEntry {
            store: KeyringTokenStore::new(account),
        };
        // The backend must work here: a clear failure, not a skip. On Linux
        // the process needs a session keyring of its own, as a login has.
        entry.raw().set_secret(b"probe").unwrap_or_else(|e| {
            panic!(
                "the OS keyring is not usable here: {e}; on Linux run the tests under \
                 `keyctl session -` (bash .ci/test does) and check that seccomp allows add_key/keyctl"
            )
        });
        entry.raw().delete_credential().unwrap();
        entry
    }

    /// The same entry, through the `keyring` crate directly.
    fn raw(&self) -> keyring::Entry {
        keyring::Entry::new(self.store.service_name(), self.store.account()).unwrap()
    }

    fn store(&self) -> KeyringTokenStore {
        self.store.clone()
    }
}

impl Drop for TestEntry {
    fn drop(&mut self) {
        let _ = self.raw().delete_credential();
    }
}

fn nonce() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

fn token() -> StoredToken {
    StoredToken::from_json(token_json("https://oauth2.example.test/token", 3000).as_bytes())
        .unwrap()
}

#[tokio::test]
async fn keyring_store_holds_the_same_json_as_token_json() {
    let entry = TestEntry::new("roundtrip");
    let store = entry.store();
    let token = token();
    store.save(&token).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = FileTokenStore::new(dir.path().join("token.json"));
    file.save(&token).await.unwrap();
    let file_bytes = std::fs::read(dir.path().join("token.json")).unwrap();
    assert_eq!(entry.raw().get_secret().unwrap(), file_bytes);
    assert!(
        String::from_utf8(file_bytes)
            .unwrap()
            .contains(REFRESH_TOKEN)
    );

    let loaded = store.load().await.unwrap().expect("a token");
    assert_eq!(loaded.to_json(), token.to_json());
    assert_eq!(loaded.refresh_token(), Some(REFRESH_TOKEN));
}

#[tokio::test]
async fn keyring_store_absent_entry_is_none_and_clear_empties_it() {
    let entry = TestEntry::new("absent");
    let store = entry.store();
    assert!(store.load().await.unwrap().is_none());
    store.clear().await.unwrap(); // clearing an empty store succeeds
    store.save(&token()).await.unwrap();
    assert!(store.load().await.unwrap().is_some());
    store.clear().await.unwrap();
    assert!(store.load().await.unwrap().is_none());
    assert!(matches!(
        entry.raw().get_secret(),
        Err(keyring::Error::NoEntry)
    ));
}

#[tokio::test]
async fn keyring_store_corrupt_entry_is_a_typed_error_without_secrets() {
    let entry = TestEntry::new("corrupt");
    let store = entry.store();
    let truncated = format!(r#"{{"token": "{OLD_ACCESS}", "refresh_token": "{REFRESH_TOKEN}"#);
    let end = truncated.len(); // the parser stops at the end of the input
    for (bytes, want) in [
        (
            truncated.into_bytes(),
            TokenFileProblem::NotJson {
                line: 1,
                column: end,
            },
        ),
        (
            b"\xff\xfe not text".to_vec(),
            TokenFileProblem::NotJson { line: 1, column: 1 },
        ),
    ] {
        entry.raw().set_secret(&bytes).unwrap();
        let err = store.load().await.unwrap_err();
        let Error::TokenFile { path, problem, .. } = &err else {
            panic!("want TokenFile, got {err:?}");
        };
        assert_eq!(problem, &want);
        assert_eq!(
            path.to_str().unwrap(),
            format!("keyring entry gemini-oauth/{}", store.account())
        );
        assert!(err.to_string().contains(store.account()), "{err}");
        assert_no_secrets(&format!("{err} {err:?} {store:?}"));
        // The load reported it and left it alone.
        assert_eq!(entry.raw().get_secret().unwrap(), bytes);
    }
}

#[tokio::test]
async fn keyring_migration_moves_token_json_and_deletes_the_file() {
    let entry = TestEntry::new("migrate");
    let store = entry.store();
    let dir = tempfile::tempdir().unwrap();
    let json = token_json("https://oauth2.example.test/token", 3000);
    let path = write_token(dir.path(), &json);

    assert_eq!(
        store.migrate_from_file(&path).await.unwrap(),
        Migration::Moved
    );
    assert!(!path.exists(), "the file was removed");
    let moved = store.load().await.unwrap().unwrap();
    assert_eq!(moved.to_json(), json);
    assert_eq!(entry.raw().get_secret().unwrap(), json.as_bytes());

    // Nothing left to move: the keyring keeps what it has.
    assert_eq!(
        store.migrate_from_file(&path).await.unwrap(),
        Migration::NoFile
    );
    assert_eq!(store.load().await.unwrap().unwrap().to_json(), json);
}

#[cfg(unix)]
#[tokio::test]
async fn keyring_migration_of_a_symlinked_token_json_removes_the_target_too() {
    let entry = TestEntry::new("migrate-link");
    let store = entry.store();
    let dir = tempfile::tempdir().unwrap();
    let dotfiles = dir.path().join("dotfiles");
    std::fs::create_dir(&dotfiles).unwrap();
    let json = token_json("https://oauth2.example.test/token", 3000);
    let target = write_token(&dotfiles, &json);
    let link = dir.path().join("token.json");
    std::os::unix::fs::symlink("dotfiles/token.json", &link).unwrap();

    assert_eq!(
        store.migrate_from_file(&link).await.unwrap(),
        Migration::Moved
    );
    assert!(
        !target.exists(),
        "the plaintext target with the refresh token is gone"
    );
    assert!(std::fs::symlink_metadata(&link).is_err(), "so is the link");
    assert_eq!(store.load().await.unwrap().unwrap().to_json(), json);
}

#[tokio::test]
async fn keyring_migration_failure_keeps_the_file() {
    let entry = TestEntry::new("migrate-fail");
    let store = entry.store();
    let dir = tempfile::tempdir().unwrap();

    // A corrupt file: reported, kept, and the keyring is not touched.
    let corrupt = r#"{"refresh_token": "1//REFRESHTOKENMARKER", "token": "#;
    let path = write_token(dir.path(), corrupt);
    let err = store.migrate_from_file(&path).await.unwrap_err();
    assert!(
        matches!(&err, Error::TokenFile { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);
    assert!(store.load().await.unwrap().is_none());

    // The keyring refuses the token (a kernel key holds at most 32,767
    // bytes; macOS and Windows have limits too): the file stays.
    let mut big: serde_json::Value =
        serde_json::from_str(&token_json("https://oauth2.example.test/token", 3000)).unwrap();
    big["padding"] = "x".repeat(40_000).into();
    let big = big.to_string();
    std::fs::write(&path, &big).unwrap();
    let err = store.migrate_from_file(&path).await.unwrap_err();
    assert!(
        matches!(&err, Error::Store { action: "save", .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), big);
    assert_no_secrets(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn keyring_store_serves_the_loader_and_keeps_refreshed_tokens() {
    let entry = TestEntry::new("loader");
    let tokens = token_endpoint().await;
    let store = entry.store();
    store
        .save(&StoredToken::from_json(token_json(&token_uri(&tokens), -60).as_bytes()).unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = temp_loader(dir.path())
        .token_store(store.clone())
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(token_requests(&tokens).await, 1);
    let saved = store.load().await.unwrap().unwrap();
    assert_eq!(saved.access_token(), Some(NEW_ACCESS));
    assert_eq!(saved.refresh_token(), Some(REFRESH_TOKEN));
    assert!(
        !dir.path().join("token.json").exists(),
        "no token file written"
    );
}

#[tokio::test]
async fn keyring_flag_moves_the_token_file_then_serves_from_the_keyring() {
    let entry = TestEntry::new("example");
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_token(dir.path(), &token_json(&token_uri(&tokens), 3000));
    let run = |with_file: bool| {
        let mut cmd = example("print_access_token");
        cmd.current_dir(dir.path())
            .args(["--no-consent", "--keyring", entry.store.account()])
            .stdin(Stdio::null());
        if with_file {
            cmd.args(["--token", "token.json"]);
        }
        cmd.output().unwrap()
    };
    let first = run(true);
    assert_eq!(stdout(&first), format!("{OLD_ACCESS}\n"));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("moved token.json into the keyring entry gemini-oauth/it-example-"),
        "{stderr}"
    );
    assert!(!path.exists());
    // Served from the keyring alone.
    assert_eq!(stdout(&run(false)), format!("{OLD_ACCESS}\n"));
    assert_eq!(token_requests(&tokens).await, 0);
}
