//! Adversarial probes of the stores review: huge durations, odd token
//! endpoint answers, symbolic links, and a flooded consent listener.

use std::time::Duration;

use crate::common::*;
use gemini_oauth::{FileTokenStore, StoredToken, TokenStore};
use serde_json::json;
use wiremock::ResponseTemplate;

#[tokio::test]
async fn duration_max_in_every_builder_option_does_not_panic() {
    let tokens = token_endpoint().await;
    let api = api_answering(ResponseTemplate::new(200).set_body_json(json!({"models": []}))).await;
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let creds = dir
        .loader()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .refresh_margin(Duration::MAX)
        .consent_timeout(Duration::MAX)
        .api_base(format!("{}/v1", api.uri()))
        .load()
        .await
        .unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    let resp = creds
        .authorized_client()
        .timeout(Duration::MAX)
        .idle_timeout(Duration::MAX)
        .get(&format!("{}/v1/models", api.uri()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_negative_expires_in_does_not_make_a_refresh_storm() {
    let tokens = token_server_answering(&[(
        200,
        json!({"access_token": NEW_ACCESS, "expires_in": -5, "token_type": "Bearer"}),
    )])
    .await;
    let dir = TempLoader::with_token(&token_uri(&tokens), -60);
    let creds = tokio::time::timeout(Duration::from_secs(20), dir.loader().load())
        .await
        .expect("load ends");
    let outcome = match creds {
        Ok(c) => tokio::time::timeout(Duration::from_secs(20), c.access_token())
            .await
            .expect("access_token ends")
            .map(|t| t.secret().to_owned()),
        Err(e) => Err(e),
    };
    // Whatever the outcome, the endpoint is not hammered.
    let n = token_requests(&tokens).await;
    assert!(n <= 4, "{n} token requests ({outcome:?})");
}

#[tokio::test]
async fn a_non_ascii_or_long_access_token_does_not_panic() {
    for token in ["ya29.\u{e9}t\u{e9}", &"x".repeat(8192)] {
        let tokens = token_server_answering(&[(
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        )])
        .await;
        let dir = TempLoader::with_token(&token_uri(&tokens), -60);
        let outcome = dir.loader().load().await;
        if let Ok(c) = outcome {
            let _ = c.headers().await;
            // A second load reads what was saved.
            let _ = dir.loader().load().await.map(|_| ());
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_to_a_directory_is_an_error_everywhere_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::os::unix::fs::symlink("d", dir.path().join("token.json")).unwrap();
    let store = FileTokenStore::new(dir.path().join("token.json"));
    let t = StoredToken::from_json(br#"{"refresh_token": "r"}"#).unwrap();
    assert!(store.load().await.is_err());
    assert!(store.save(&t).await.is_err());
    assert!(store.clear().await.is_err());
    assert!(dir.path().join("d").is_dir());
}

#[cfg(unix)]
#[tokio::test]
async fn a_relative_link_in_a_symlinked_directory_resolves_from_the_real_directory() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("dotfiles/gemini");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(root.path().join("dotfiles/store")).unwrap();
    std::fs::create_dir_all(root.path().join("home/.config")).unwrap();
    // ~/.config/gemini -> ../../dotfiles/gemini; its token.json -> ../store/token.json
    std::os::unix::fs::symlink(real.as_path(), root.path().join("home/.config/gemini")).unwrap();
    std::os::unix::fs::symlink("../store/token.json", real.join("token.json")).unwrap();
    let store = FileTokenStore::new(root.path().join("home/.config/gemini/token.json"));
    let t = StoredToken::from_json(br#"{"refresh_token": "r"}"#).unwrap();
    let _lock = store.lock(Duration::from_secs(1)).await.unwrap();
    store.save(&t).await.unwrap();
    let target = root.path().join("dotfiles/store/token.json");
    assert!(target.is_file());
    assert!(
        std::fs::symlink_metadata(real.join("token.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(root.path().join("dotfiles/store/token.json.lock").exists());
    assert_eq!(
        store.load().await.unwrap().unwrap().refresh_token(),
        Some("r")
    );
    store.clear().await.unwrap();
    assert!(!target.exists());
    assert!(std::fs::symlink_metadata(real.join("token.json")).is_ok());
}

/// A link to something that is not a file (`ln -s /dev/null token.json` to
/// keep nothing on disk; here a FIFO, which a test may make).
#[cfg(unix)]
#[tokio::test]
async fn a_link_to_a_device_or_fifo_is_never_replaced_nor_deleted() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("sink");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("sink", dir.path().join("token.json")).unwrap();
    let store = FileTokenStore::new(dir.path().join("token.json"));
    let t = StoredToken::from_json(br#"{"refresh_token": "1//SECRETMARKER"}"#).unwrap();
    let chain = |e: &gemini_oauth::Error| {
        let mut text = e.to_string();
        let mut next = std::error::Error::source(e);
        while let Some(cause) = next {
            text.push_str(&format!(": {cause}"));
            next = cause.source();
        }
        text
    };
    let err = store.save(&t).await.unwrap_err();
    assert!(
        chain(&err).contains("not a regular file"),
        "{}",
        chain(&err)
    );
    assert!(!chain(&err).contains("SECRETMARKER"));
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let err = store.clear().await.unwrap_err();
    assert!(
        chain(&err).contains("not a regular file"),
        "{}",
        chain(&err)
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        std::fs::symlink_metadata(dir.path().join("token.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
