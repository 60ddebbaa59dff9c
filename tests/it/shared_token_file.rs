//! A token.json shared with other programs (issue #20 item 1): a refresh
//! re-reads the file under its lock, and takes another program's newer
//! record only when it is the same OAuth client's and covers the scopes
//! asked for; otherwise it refreshes with the refresh token in memory.

use crate::common::*;
use serde_json::json;

const THEIRS: &str = "ya29.OTHERPROGRAMMARKER";
const THEIR_REFRESH: &str = "1//OTHERREFRESHMARKER";
const DRIVE: &str = "https://www.googleapis.com/auth/drive";

/// What another program (Python's `load_creds.py` with its own scopes, or
/// another client) writes into token.json: a token valid for two hours.
fn their_record(client_id: &str, scopes: &[&str]) -> String {
    json!({
        "token": THEIRS, "refresh_token": THEIR_REFRESH,
        "token_uri": "https://oauth2.googleapis.com/token",
        "client_id": client_id, "client_secret": "GOCSPX-OTHER",
        "scopes": scopes, "universe_domain": "googleapis.com", "account": "",
        "expiry": expiry(std::time::SystemTime::now() + std::time::Duration::from_secs(7200)),
    })
    .to_string()
}

async fn refresh_after_another_program_wrote(theirs: String) {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), OLD_ACCESS);
    dir.write_token(&theirs);

    let token = creds.force_refresh().await.unwrap();
    assert_eq!(
        token.secret(),
        NEW_ACCESS,
        "another program's token adopted"
    );
    assert_eq!(creds.access_token().await.unwrap().secret(), NEW_ACCESS);
    assert_eq!(creds.granted_scopes(), Some(vec![RETRIEVER.to_owned()]));
    // Refreshed with our refresh token, once.
    let sent = requests_to(&tokens, "/token").await;
    assert_eq!(sent.len(), 1);
    let body = String::from_utf8_lossy(&sent[0].body).into_owned();
    assert!(body.contains("REFRESHTOKENMARKER"), "{body}");
    assert!(!body.contains("OTHERREFRESHMARKER"));
    let record = creds.stored_token().unwrap();
    assert_eq!(record.client_id(), Some(CLIENT_ID));
}

#[tokio::test]
async fn a_record_with_other_scopes_is_not_adopted() {
    refresh_after_another_program_wrote(their_record(CLIENT_ID, &[DRIVE])).await;
}

#[tokio::test]
async fn another_clients_record_is_not_adopted() {
    refresh_after_another_program_wrote(their_record(
        "other.apps.googleusercontent.com",
        &[RETRIEVER],
    ))
    .await;
}

#[tokio::test]
async fn a_newer_record_of_the_same_client_and_scopes_is_still_shared() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    dir.write_token(&their_record(CLIENT_ID, &[RETRIEVER, DRIVE]));
    // Another process of ours refreshed: its token is taken, no request.
    assert_eq!(creds.force_refresh().await.unwrap().secret(), THEIRS);
    assert_eq!(token_requests(&tokens).await, 0);
}
