//! token.json shared with Python's real google-auth (installed from PyPI into
//! .venv by .ci/test), in both directions, against a token endpoint on 127.0.0.1.

use crate::common::*;
use gemini_oauth::StoredToken;
use serde_json::json;
use wiremock::MockServer;

fn python(args: &[&str]) -> String {
    let out = crate::common::python().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What Python's google-auth reports on loading and refreshing `path` (see
/// tests/python/interop.py) against `server`.
fn python_refresh(path: &std::path::Path, server: &MockServer) -> serde_json::Value {
    serde_json::from_str(&python(&[
        "refresh",
        path.to_str().unwrap(),
        &token_uri(server),
    ]))
    .unwrap()
}

/// What Rust writes for the content of `text` is `text`, byte for byte.
fn assert_rust_writes_back(text: &str) {
    assert_eq!(
        StoredToken::from_json(text.as_bytes()).unwrap().to_json(),
        text
    );
}

async fn endpoint(access: &str) -> MockServer {
    token_server_answering(&[(
        200,
        json!({
            "access_token": access, "expires_in": 3599, "token_type": "Bearer", "scope": RETRIEVER
        }),
    )])
    .await
}

#[tokio::test]
async fn python_written_file_is_refreshed_by_rust_without_consent() {
    let server = endpoint("ya29.RUSTNEW").await;
    let dir = TempLoader::empty();
    let path = dir.token_file();
    python(&["write-expired", path.to_str().unwrap(), &token_uri(&server)]);
    let python_bytes = std::fs::read_to_string(&path).unwrap();

    // Byte-for-byte: what Rust would write for this content is what Python wrote.
    assert_rust_writes_back(&python_bytes);

    let creds = dir.loader().load().await.unwrap();
    assert_eq!(creds.access_token().await.unwrap().secret(), "ya29.RUSTNEW");
    assert_eq!(token_requests(&server).await, 1);
    let req = &server.received_requests().await.unwrap()[0];
    let body = String::from_utf8_lossy(&req.body);
    assert!(
        body.contains("refresh_token=1%2F%2FPYTHONREFRESH"),
        "{body}"
    );
    assert!(
        body.contains("client_id=python-client.apps.googleusercontent.com"),
        "{body}"
    );

    // And Python reads back what Rust saved.
    let report = python_refresh(&path, &server);
    assert_eq!(report["token_before"], "ya29.RUSTNEW");
    assert_eq!(report["valid_before"], true);
}

#[tokio::test]
async fn python_refreshed_file_with_microseconds_is_served_from_cache() {
    let server = endpoint("ya29.PYTHONFRESH").await;
    let dir = TempLoader::empty();
    let path = dir.token_file();
    python(&[
        "write-refreshed",
        path.to_str().unwrap(),
        &token_uri(&server),
    ]);
    assert_eq!(token_requests(&server).await, 1);
    let python_bytes = std::fs::read_to_string(&path).unwrap();
    assert!(
        python_bytes.contains(r#""token": "ya29.PYTHONFRESH""#),
        "{python_bytes}"
    );
    assert_rust_writes_back(&python_bytes);

    let creds = dir.loader().load().await.unwrap();
    assert_eq!(
        creds.access_token().await.unwrap().secret(),
        "ya29.PYTHONFRESH"
    );
    assert_eq!(
        token_requests(&server).await,
        1,
        "Rust used Python's fresh token"
    );
}

#[tokio::test]
async fn rust_written_file_is_loaded_and_refreshed_by_python() {
    let server = endpoint(NEW_ACCESS).await;
    // Rust refreshes an expired token and writes token.json.
    let dir = TempLoader::with_token(&token_uri(&server), -10);
    let path = dir.token_file();
    dir.loader().load().await.unwrap();
    assert_eq!(token_requests(&server).await, 1);
    let rust_bytes = std::fs::read_to_string(&path).unwrap();

    let report = python_refresh(&path, &server);
    assert_eq!(report["token_before"], NEW_ACCESS);
    assert_eq!(report["refresh_token"], REFRESH_TOKEN);
    assert_eq!(report["client_id"], CLIENT_ID);
    assert_eq!(
        report["valid_before"], true,
        "Python sees Rust's expiry as valid"
    );
    assert_eq!(report["valid_after"], true);
    assert_eq!(
        token_requests(&server).await,
        2,
        "Python refreshed against the same endpoint"
    );

    // Python's re-serialization of Rust's file equals it, except that
    // google-auth drops the expiry's fraction and resets token_uri on read.
    let mut expected: serde_json::Value = serde_json::from_str(&rust_bytes).unwrap();
    expected["token_uri"] = json!("https://oauth2.googleapis.com/token");
    let expiry = expected["expiry"].as_str().unwrap();
    expected["expiry"] = json!(format!("{}Z", &expiry[..19]));
    let rust_side = StoredToken::from_json(expected.to_string().as_bytes()).unwrap();
    let python_bytes = python(&["roundtrip", path.to_str().unwrap()]);
    assert_eq!(python_bytes, rust_side.to_json());
    // Whole-second expiries survive exactly in both directions.
    assert_rust_writes_back(&python_bytes);
}

#[test]
fn non_ascii_values_round_trip_byte_for_byte_through_google_auth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    // Accents, an emoji (a surrogate pair in JSON), DEL, quotes, a backslash,
    // and a control character, in every field google-auth writes back.
    let odd = "jos\u{e9} \u{1F600} \u{7f} \"q\" \\ \u{1}";
    let source = json!({
        "token": format!("ya29.{odd}"),
        "refresh_token": format!("1//{odd}"),
        "token_uri": "https://oauth2.googleapis.com/token",
        "client_id": format!("{odd}.apps.googleusercontent.com"),
        "client_secret": format!("GOCSPX-{odd}"),
        "scopes": [RETRIEVER, format!("https://example.com/{odd}")],
        "universe_domain": "googleapis.com",
        "account": odd,
        "expiry": "2030-01-02T03:04:05Z",
    });
    let rust_bytes = StoredToken::from_json(source.to_string().as_bytes())
        .unwrap()
        .to_json();
    assert!(rust_bytes.is_ascii(), "escaped as json.dumps does");
    std::fs::write(&path, &rust_bytes).unwrap();
    let python_bytes = python(&["roundtrip", path.to_str().unwrap()]);
    assert_eq!(
        python_bytes, rust_bytes,
        "google-auth writes the same bytes"
    );
    assert_rust_writes_back(&python_bytes);
    let parsed = StoredToken::from_json(python_bytes.as_bytes()).unwrap();
    assert_eq!(parsed.refresh_token(), Some(format!("1//{odd}").as_str()));
}
