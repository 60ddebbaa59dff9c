//! `gemini-oauth models`, `generate` and `upload` run as processes against
//! local servers speaking Gemini's formats, with a cached token.json.

use std::process::Output;

use crate::common::examples::{cli, stdout};
use crate::common::gemini_server::*;
use crate::common::*;
use crate::gemini_examples::gemini_server;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Runs the tool with `args` against the API at `base` (a valid token.json
/// in a temp dir, no sign-in allowed), on a task of its own so the server keeps serving.
async fn run(base: &str, args: &[&str]) -> Output {
    run_with(base, args, 3000, "warn").await
}

/// [`run`] with the cached token expiring in `in_secs` and `RUST_LOG`.
async fn run_with(base: &str, args: &[&str], in_secs: i64, log: &str) -> Output {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), in_secs));
    let mut cmd = cli();
    cmd.current_dir(dir.path())
        .env("RUST_LOG", log)
        .args(args)
        .args(["--api-base", &format!("{base}/v1"), "--no-consent"]);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    drop(dir);
    out
}

#[tokio::test]
async fn models_prints_one_name_per_line_with_the_quota_project() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-goog-user-project", "from-flag"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "models": [{"name": "models/gemini-2.5-flash"}, {"name": "models/gemini-2.5-pro"}]
        })))
        .mount(&api)
        .await;
    let out = run(&api.uri(), &["models", "--quota-project", "from-flag"]).await;
    assert_eq!(
        stdout(&out),
        "models/gemini-2.5-flash\nmodels/gemini-2.5-pro\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_stream_prints_each_text_part_and_a_mid_stream_error_is_one_line() {
    let (base, _, _) = gemini_server(
        "text/plain",
        vec![
            send(event(&json!({"candidates": [{"content": {"parts": [
                {"text": "(thinking…)", "thought": true}, {"text": "Hello"}]}}]}))),
            pause_ms(100),
            send(event(&text_chunk(" world"))),
        ],
    )
    .await;
    let out = run(&base, &["generate", "hi", "--stream"]).await;
    assert_eq!(stdout(&out), "Hello world\n");

    let (base, _, _) = gemini_server(
        "text/plain",
        vec![
            send(event(&text_chunk("partial"))),
            send(event(
                &json!({"error": {"code": 429, "message": "Quota exceeded.",
                "status": "RESOURCE_EXHAUSTED"}}),
            )),
        ],
    )
    .await;
    let out = run(&base, &["generate", "hi", "--stream"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("HTTP 429"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_file_uploads_first_and_sends_file_data() {
    let (base, uploads, requests) = gemini_server("application/pdf", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.PDF");
    let content = b"%PDF-1.7 not really".repeat(100);
    std::fs::write(&file, &content).unwrap();
    let out = run(
        &base,
        &[
            "generate",
            "What is this?",
            "--file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(stdout(&out), "It is a report.\n");
    let log = uploads.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&content).as_str()));
    assert_eq!(
        requests.lock().unwrap().clone(),
        [json!({"contents": [{"parts": [
            {"file_data": {"mime_type": "application/pdf",
                           "file_uri": format!("{base}/v1beta/files/abc-123")}},
            {"text": "What is this?"}
        ]}]})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_prints_the_name_then_the_uri_and_no_progress_bar_in_a_pipe() {
    let (base, uploads, _) = gemini_server("text/markdown", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.md");
    std::fs::write(&file, "# notes\n").unwrap();
    let out = run(
        &base,
        &[
            "upload",
            file.to_str().unwrap(),
            "--display-name",
            "My notes",
        ],
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!("files/abc-123\n{base}/v1beta/files/abc-123\n")
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = uploads.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(
        log.start_body,
        Some(json!({"file": {"display_name": "My notes"}}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_in_any_output_at_trace_level_while_refreshing() {
    let (base, _, _) = gemini_server("text/plain", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "notes").unwrap();
    let file = file.to_str().unwrap();
    for args in [
        &["generate", "hi"][..],
        &["generate", "hi", "--file", file],
        &["upload", file],
        &["print-access-token"],
        &["status", "--format", "json"],
    ] {
        // An expired token: each run refreshes it (the new token is NEW_ACCESS).
        let out = run_with(&base, args, -60, "trace").await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("TRACE"), "{args:?}: no trace output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        for secret in [CLIENT_SECRET, REFRESH_TOKEN, OLD_ACCESS, NEW_ACCESS] {
            assert!(
                !stderr.contains(secret),
                "{args:?} logged {secret}: {stderr}"
            );
            // print-access-token's stdout is the token, its whole job.
            if args[0] != "print-access-token" {
                assert!(
                    !stdout.contains(secret),
                    "{args:?} printed {secret}: {stdout}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_on_a_terminal_draws_a_progress_bar() {
    let (base, uploads, _) = gemini_server("application/octet-stream", vec![]).await;
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), 3000));
    std::fs::write(dir.path().join("data.bin"), vec![7u8; 600 * 1024]).unwrap();
    let exe = cli().get_program().to_str().unwrap().to_owned();
    // util-linux's script gives the tool a pseudo-terminal.
    let mut cmd = std::process::Command::new("script");
    cmd.arg("-qec")
        .arg(format!(
            "'{exe}' upload data.bin --chunk-size 262144 --no-consent --api-base {base}/v1"
        ))
        .arg("/dev/null")
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    for var in crate::common::examples::PROXY_VARS {
        cmd.env_remove(var);
    }
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("files/abc-123"), "{shown:?}");
    // The bar's bytes counter, drawn and then cleared.
    assert!(
        shown.contains("KiB/600.00 KiB"),
        "no progress bar: {shown:?}"
    );
    let log = uploads.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
}
