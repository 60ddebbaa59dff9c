//! The `generate_content --stream`, `generate_content --file` and
//! `upload_file` examples, run as processes against a local server speaking
//! Gemini's formats; the 256 MiB upload's peak memory measured by
//! `/usr/bin/time -v` (installed by `.ci/test`).

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use crate::common::examples::{example, stdout};
use crate::common::gemini_server::*;
use crate::common::*;
use crate::examples::one_clear_error_line;
use serde_json::{Value, json};

/// Runs example `name` with `args` against the API at `base` (a valid
/// token.json in a temp dir), on a thread of its own so the server keeps
/// serving.
async fn run(name: &str, base: &str, args: &[&str]) -> Output {
    run_with(name, base, args, None).await
}

async fn run_with(name: &str, base: &str, args: &[&str], wrapper: Option<&str>) -> Output {
    let tokens = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), 3000));
    let exe = crate::common::examples::example_path(name);
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = std::process::Command::new(w);
            c.arg("-v").arg(exe);
            c
        }
        None => example(name),
    };
    cmd.current_dir(dir.path())
        .env_remove("GEMINI_API_BASE")
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT")
        .env("RUST_LOG", "warn")
        .args(["--api-base", &format!("{base}/v1"), "--no-consent"])
        .args(args);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    drop(dir);
    out
}

/// A server answering uploads (checked by an [`UploadServer`]) and
/// `generateContent`/`streamGenerateContent` (bodies recorded).
pub(crate) async fn gemini_server(
    mime: &str,
    answer: Vec<Step>,
) -> (String, UploadServer, Arc<Mutex<Vec<Value>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let slot = Arc::new(Mutex::new(None::<UploadServer>));
    let (log, out, mime) = (Arc::clone(&requests), Arc::clone(&slot), mime.to_owned());
    let base = serve_with_base(move |base| {
        let uploads = UploadServer {
            log: Arc::default(),
            base,
            omit_upload_url: false,
            mime,
            after_first_piece: None,
        };
        *out.lock().unwrap() = Some(uploads.clone());
        move |req: hyper::Request<hyper::body::Incoming>| {
            let (uploads, log, answer) = (uploads.clone(), Arc::clone(&log), answer.clone());
            async move {
                use http_body_util::BodyExt;
                let uri = req.uri().to_string();
                if req.uri().path().starts_with("/upload") {
                    return uploads.handle(req).await.unwrap();
                }
                if uri.ends_with(":streamGenerateContent?alt=sse") {
                    return scripted(answer);
                }
                if !uri.ends_with(":generateContent") {
                    return google_error(404, "NOT_FOUND", "no such endpoint");
                }
                let body = req.into_body().collect().await.unwrap().to_bytes();
                log.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                json_resp(200, &text_chunk("It is a report."))
            }
        }
    })
    .await;
    let uploads = slot.lock().unwrap().clone().unwrap();
    (base, uploads, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_content_stream_prints_each_text_part_as_it_arrives() {
    let (base, _, _) = gemini_server(
        "text/plain",
        vec![
            send(event(&json!({"candidates": [{"content": {"parts": [
                {"text": "(thinking…)", "thought": true}, {"text": "Hello"}]}}]}))),
            pause_ms(200),
            send("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \", streaming\"}]}}]}\r\n\r\n"),
            pause_ms(200),
            send(event(&text_chunk(" world"))),
        ],
    )
    .await;
    let out = run("generate_content", &base, &["--stream", "--prompt", "hi"]).await;
    assert_eq!(stdout(&out), "Hello, streaming world\n");

    // An error event mid-stream: the text so far, then one clear line and exit 1.
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
    let out = run("generate_content", &base, &["--stream"]).await;
    let stderr = one_clear_error_line(&out);
    assert!(stderr.contains("HTTP 429"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_content_file_uploads_first_and_sends_file_data() {
    let (base, uploads, requests) = gemini_server("application/pdf", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.PDF");
    let content = b"%PDF-1.7 not really".repeat(1000);
    std::fs::write(&path, &content).unwrap();
    let out = run(
        "generate_content",
        &base,
        &[
            "--file",
            path.to_str().unwrap(),
            "--prompt",
            "What is this?",
        ],
    )
    .await;
    assert_eq!(stdout(&out), "It is a report.\n");
    let log = uploads.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&content).as_str()));
    assert_eq!(
        log.start_body,
        Some(json!({"file": {"display_name": "report.PDF"}}))
    );
    let requests = requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [json!({"contents": [{"parts": [
            {"file_data": {"mime_type": "application/pdf",
                           "file_uri": format!("{base}/v1beta/files/abc-123")}},
            {"text": "What is this?"}
        ]}]})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_file_prints_the_name_then_the_uri() {
    let (base, uploads, _) = gemini_server("text/markdown", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.md");
    std::fs::write(&path, "# notes\n").unwrap();
    let out = run(
        "upload_file",
        &base,
        &[
            "--file",
            path.to_str().unwrap(),
            "--display-name",
            "My notes",
        ],
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!("files/abc-123\n{base}/v1beta/files/abc-123\n")
    );
    let log = uploads.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(
        log.start_body,
        Some(json!({"file": {"display_name": "My notes"}}))
    );

    // --mime-type wins over the extension.
    let (base, uploads, _) = gemini_server("application/x-custom", vec![]).await;
    let out = run(
        "upload_file",
        &base,
        &[
            "--file",
            path.to_str().unwrap(),
            "--mime-type",
            "application/x-custom",
        ],
    )
    .await;
    assert!(stdout(&out).starts_with("files/abc-123\n"));
    assert!(uploads.log.lock().unwrap().problems.is_empty());

    // Without --file: usage and exit code 2, before any request.
    let out = run("upload_file", &base, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--file PATH is required"));
    // A missing file: one clear line.
    let out = run("upload_file", &base, &["--file", "/nonexistent/x.txt"]).await;
    let stderr = one_clear_error_line(&out);
    assert!(stderr.contains("/nonexistent/x.txt"), "{stderr}");
}

/// Peak resident memory of the process `time -v` measured, in KiB.
fn max_rss_kib(time_output: &str) -> u64 {
    time_output
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {time_output}"))
}

fn write_pattern(path: &Path, mib: usize) -> String {
    use sha2::Digest;
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 1024 * 1024];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i * 31 + j * 7) as u8;
        }
        hasher.update(&block);
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
    hex(&hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_256_mib_keeps_the_example_under_64_mib_of_memory() {
    const TIME: &str = "/usr/bin/time";
    assert!(
        Path::new(TIME).exists(),
        "{TIME} is missing: `bash .ci/test` installs Debian's `time`"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let sha = write_pattern(&path, 256);
    let (base, uploads, _) = gemini_server("application/octet-stream", vec![]).await;
    let out = run_with(
        "upload_file",
        &base,
        &["--file", path.to_str().unwrap()],
        Some(TIME),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{report}");
    let log = uploads.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.bytes, 256 * 1024 * 1024);
    assert_eq!(log.sha256.as_deref(), Some(sha.as_str()));
    let rss = max_rss_kib(&report);
    eprintln!("upload_file, 256 MiB: peak RSS {rss} KiB");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB for a 256 MiB upload");
}
