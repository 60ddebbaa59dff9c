//! Several processes (the `print_access_token` example) sharing one expired
//! token.json make exactly one refresh; two loaders (in one process, and in
//! two processes) needing consent open one consent screen.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::browser::{self, query_param};
use crate::common::examples::{example, stdout};
use crate::common::*;
use gemini_oauth::{Consent, CredentialLoader, FileTokenStore, StoredToken};
use serde_json::json;
use wiremock::ResponseTemplate;

const PROCESSES: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_an_expired_token_file_refresh_once() {
    let server = token_server([ResponseTemplate::new(200)
        .set_body_json(
            json!({"access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer"}),
        )
        .set_delay(Duration::from_millis(400))])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_token(dir.path(), &token_json(&token_uri(&server), -120));

    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            example("print_access_token")
                .args(["--no-consent", "--token", path.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for out in &outputs {
        assert_eq!(stdout(out), format!("{NEW_ACCESS}\n"));
    }
    assert_eq!(
        token_requests(&server).await,
        1,
        "{PROCESSES} processes, one refresh"
    );
    let saved = StoredToken::from_json(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved.access_token(), Some(NEW_ACCESS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_loader_waits_for_the_first_sign_in_instead_of_opening_another() {
    let server = code_endpoint(RETRIEVER).await;
    let dir = tempfile::tempdir().unwrap();
    let shown = Arc::new(AtomicUsize::new(0));
    let make = |shown: Arc<AtomicUsize>| {
        CredentialLoader::new()
            .client_secret(consent_client(&server))
            .token_store(FileTokenStore::new(dir.path().join("token.json")))
            .consent(Consent::PrintUrl)
            .consent_timeout(Duration::from_secs(20))
            .on_consent_url(move |url| {
                shown.fetch_add(1, Ordering::SeqCst);
                // The user approves after a moment; meanwhile the other loader waits.
                let url = url.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let redirect = query_param(&url, "redirect_uri").unwrap();
                    let state = query_param(&url, "state").unwrap();
                    browser::get(&format!("{redirect}?state={state}&code=4%2Fcode123")).await;
                });
            })
    };
    let a = tokio::spawn(make(shown.clone()).load());
    let b = tokio::spawn(make(shown.clone()).load());
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(a.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(b.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(
        shown.load(Ordering::SeqCst),
        1,
        "one consent screen for two loaders"
    );
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_needing_consent_show_one_consent_screen() {
    use std::io::BufRead;
    let server = code_endpoint(RETRIEVER).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("client_secret.json"),
        json!({"installed": {
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "auth_uri": "https://accounts.example.com/o/oauth2/auth",
            "token_uri": token_uri(&server),
        }})
        .to_string(),
    )
    .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut child = example("print_access_token")
                .current_dir(dir.path())
                .args(["--no-browser", "--consent-timeout", "60"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
            let tx = lines_tx.clone();
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            child
        })
        .collect();
    drop(lines_tx);
    let url = lines
        .iter()
        .find(|l| l.starts_with("https://accounts.example.com/"))
        .expect("one process shows the consent URL");
    // The user approves in the browser; the redirect reaches that process.
    let redirect = query_param(&url, "redirect_uri").unwrap();
    let state = query_param(&url, "state").unwrap();
    let page = browser::get(&format!("{redirect}?state={state}&code=4%2Fcode123")).await;
    assert_eq!(page.status, 200);
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| stdout(&c.wait_with_output().unwrap()))
        .collect();
    assert_eq!(
        tokens,
        [format!("{NEW_ACCESS}\n"), format!("{NEW_ACCESS}\n")]
    );
    let more_urls = lines
        .iter()
        .filter(|l| l.starts_with("https://accounts.example.com/"))
        .count();
    assert_eq!(
        more_urls, 0,
        "the other process never showed a consent screen"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "one code exchange"
    );
}
