//! `upload_file` against a local server speaking the Files API's resumable
//! protocol, every header checked and the body hashed as it arrives.

use std::sync::{Arc, Mutex};

use crate::common::assert_no_secrets;
use crate::common::gemini_server::*;
use crate::gemini_stream::client_for;
use gemini_oauth::gemini::upload_file;
use gemini_oauth::{Error, FileKind, UploadProblem};
use serde_json::json;

/// An upload server at its own base, with `configure` applied.
async fn upload_server(configure: impl FnOnce(&mut UploadServer)) -> (String, UploadServer) {
    let slot = Arc::new(Mutex::new(None::<UploadServer>));
    let out = Arc::clone(&slot);
    let base = serve_with_base(move |base| {
        let mut server = UploadServer {
            log: Arc::default(),
            base,
            omit_upload_url: false,
            mime: "text/plain".into(),
            after_first_piece: None,
        };
        configure(&mut server);
        *out.lock().unwrap() = Some(server.clone());
        move |req| {
            let server = server.clone();
            async move {
                match server.handle(req).await {
                    Some(resp) => resp,
                    None => google_error(404, "NOT_FOUND", "no such endpoint"),
                }
            }
        }
    })
    .await;
    let server = slot.lock().unwrap().clone().unwrap();
    (base, server)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

#[tokio::test]
async fn upload_file_speaks_the_resumable_protocol() {
    let (base, server) = upload_server(|_| {}).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = pattern(1_500_000);
    std::fs::write(&path, &content).unwrap();
    let file = upload_file(&client, &path, "text/plain", "my notes")
        .await
        .unwrap();
    let log = server.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(
        log.start_body,
        Some(json!({"file": {"display_name": "my notes"}}))
    );
    assert_eq!(log.bytes, content.len() as u64);
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&content).as_str()));
    assert_eq!(log.finalized, 1);
    assert_eq!(file.name, "files/abc-123");
    assert_eq!(file.uri, format!("{base}/v1beta/files/abc-123"));
    assert_eq!(file.mime_type.as_deref(), Some("text/plain"));
    assert_eq!(file.size_bytes, Some(content.len() as u64));
    assert_eq!(file.state.as_deref(), Some("ACTIVE"));
    assert_eq!(file.other["sha256Hash"], sha256_hex(&content));
}

#[tokio::test]
async fn a_start_answer_without_upload_url_is_a_typed_error() {
    let (base, server) = upload_server(|s| s.omit_upload_url = true).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    let err = upload_error(&base, &path).await;
    assert!(
        matches!(&err, Error::Upload(UploadProblem::MissingUploadUrl { path: p, endpoint, .. })
            if endpoint == &format!("{base}/upload/v1beta/files") && p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("x-goog-upload-url"), "{err}");
    assert_eq!(server.log.lock().unwrap().finalized, 0);
}

/// The error of uploading `path` as `text/plain` to the API at `base`.
async fn upload_error(base: &str, path: &std::path::Path) -> Error {
    let (_dir, _tokens, client) = client_for(base).await;
    upload_file(&client, path, "text/plain", "a")
        .await
        .unwrap_err()
}

/// Uploads 64 MiB (8 chunks), changing the file once the first piece
/// reached the server.
async fn upload_while(
    change: fn(&std::path::Path),
) -> (Result<gemini_oauth::gemini::File, Error>, UploadServer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    // Larger than what the socket buffers hold, so most is read after the change.
    std::fs::write(&path, pattern(64 * 1024 * 1024)).unwrap();
    let changed = path.clone();
    let (base, server) = upload_server(move |s| {
        s.mime = "application/octet-stream".into();
        s.after_first_piece = Some(Arc::new(move || change(&changed)));
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let uploaded = upload_file(&client, &path, "application/octet-stream", "big").await;
    (uploaded, server)
}

#[tokio::test]
async fn a_file_replaced_by_another_during_upload_is_sent_as_it_was_opened() {
    // An editor's save: a new file of the same size renamed over the path.
    let replace: fn(&std::path::Path) = |p| {
        let new = p.with_extension("new");
        std::fs::write(&new, vec![9u8; 64 * 1024 * 1024]).unwrap();
        std::fs::rename(&new, p).unwrap();
    };
    let (uploaded, server) = upload_while(replace).await;
    uploaded.unwrap();
    let log = server.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    // Chunks after the first are not read from the new file: no mix of two files.
    let opened = pattern(64 * 1024 * 1024);
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&opened).as_str()));
    assert_eq!(log.finalized, 1);
}

#[tokio::test]
async fn a_file_replaced_during_upload_is_not_read_after_a_chunk_that_failed() {
    // A chunk's body dropped unfinished (the connection dropped in its
    // middle; an answer before the body was read) must not make the next
    // chunk open the path again: it names the new file by then.
    let interrupted = [
        vec![Fault::DropAfter(600 * 1024)],
        vec![Fault::Pass, Fault::Status(503)],
    ];
    for fs in interrupted {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        // 4 chunks, each larger than what the socket buffers hold.
        let len = 32 * 1024 * 1024;
        let opened = pattern(len);
        std::fs::write(&path, &opened).unwrap();
        let changed = path.clone();
        let once = std::sync::Once::new();
        let (base, server) = upload_server(move |s| {
            s.mime = "application/octet-stream".into();
            s.after_first_piece = Some(Arc::new(move || {
                once.call_once(|| {
                    let new = changed.with_extension("new");
                    std::fs::write(&new, vec![9u8; len]).unwrap();
                    std::fs::rename(&new, &changed).unwrap();
                });
            }));
        })
        .await;
        faults(&server, fs.clone());
        let (_dir, _tokens, client) = client_for(&base).await;
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            upload_file(&client, &path, "application/octet-stream", "big"),
        )
        .await
        .expect("no hang")
        .unwrap();
        let log = server.log.lock().unwrap().clone();
        assert!(log.problems.is_empty(), "{fs:?}: {:?}", log.problems);
        assert!(
            log.commands.iter().any(|c| c.starts_with("query")),
            "{fs:?}: {:?}",
            log.commands
        );
        assert_eq!(
            log.sha256.as_deref(),
            Some(sha256_hex(&opened).as_str()),
            "{fs:?}: {:?}",
            log.commands
        );
    }
}

#[tokio::test]
async fn a_file_that_grows_or_shrinks_during_upload_is_a_typed_error_and_not_finalized() {
    let grow: fn(&std::path::Path) = |p| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(&[1u8; 1024 * 1024]).unwrap();
    };
    let shrink: fn(&std::path::Path) = |p| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(40 * 1024 * 1024).unwrap();
    };
    for change in [grow, shrink] {
        let (uploaded, server) = upload_while(change).await;
        let err = uploaded.unwrap_err();
        let Error::Upload(UploadProblem::SizeChanged {
            announced, sent, ..
        }) = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*announced, 64 * 1024 * 1024);
        assert_ne!(sent, announced);
        assert_eq!(server.log.lock().unwrap().finalized, 0, "{err}");
    }
}

#[tokio::test]
async fn error_statuses_of_both_steps_are_typed_api_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    // The start request refused.
    let base =
        serve(|_req| async { google_error(403, "PERMISSION_DENIED", "Files API not allowed") })
            .await;
    let err = upload_error(&base, &path).await;
    assert!(
        matches!(&err, Error::Api(e) if e.status == 403 && e.message == "Files API not allowed"),
        "{err:?}"
    );
    // The upload itself fails on the server.
    let base = serve_with_base(|base| {
        move |req: hyper::Request<hyper::body::Incoming>| {
            let base = base.clone();
            async move {
                if req.uri().path().starts_with("/upload-session/") {
                    return google_error(500, "INTERNAL", "storage failed");
                }
                let mut r = json_resp(200, &json!({}));
                r.headers_mut().insert(
                    "x-goog-upload-url",
                    format!("{base}/upload-session/x?upload_id=UPLOADIDMARKER")
                        .parse()
                        .unwrap(),
                );
                r
            }
        }
    })
    .await;
    let err = upload_error(&base, &path).await;
    assert!(
        matches!(&err, Error::Api(e) if e.status == 500 && e.status_text.as_deref() == Some("INTERNAL")),
        "{err:?}"
    );
    assert!(err.is_transient());
    // The upload URL's query (an upload id) never shows.
    let text = format!("{err} {err:?}");
    assert!(!text.contains("UPLOADIDMARKER"), "{text}");
    assert_no_secrets(&text);
}

#[tokio::test]
async fn a_missing_file_or_bad_mime_type_fails_before_any_request() {
    let (base, server) = upload_server(|_| {}).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let err = upload_file(&client, dir.path().join("missing"), "text/plain", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { action: "open", .. }), "{err:?}");
    let path = dir.path().join("a.txt");
    std::fs::write(&path, b"x").unwrap();
    let err = upload_file(&client, &path, "text/plain\n", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidHeaderValue { .. }), "{err:?}");
    assert_eq!(server.log.lock().unwrap().start_requests, 0);
}

/// The faults a session request meets, in order.
fn faults(server: &UploadServer, faults: impl IntoIterator<Item = Fault>) {
    server.log.lock().unwrap().faults.extend(faults);
}

#[tokio::test]
async fn an_interrupted_upload_resumes_in_the_same_session_where_the_server_stopped() {
    let (base, server) = upload_server(|_| {}).await;
    // The connection drops 600 KiB into the upload (the server keeps 512 KiB),
    // then the first query meets a 503.
    faults(&server, [Fault::DropAfter(600 * 1024), Fault::Status(503)]);
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = pattern(1_500_000);
    std::fs::write(&path, &content).unwrap();
    let file = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        upload_file(&client, &path, "text/plain", "my notes"),
    )
    .await
    .expect("no hang")
    .unwrap();
    let log = server.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.start_requests, 1, "one session");
    assert_eq!(log.session_urls.len(), 1, "{:?}", log.session_urls);
    assert_eq!(
        log.commands,
        [
            "upload, finalize @0",
            "query @<missing>",
            "query @<missing>",
            "upload, finalize @524288",
        ]
    );
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&content).as_str()));
    assert_eq!(file.size_bytes, Some(content.len() as u64));
    // Resumed at the server's offset, not from zero: what arrived is the
    // file plus the part of the first try the server did not keep (from
    // zero it would be the file plus at least the 600 KiB of the first try).
    assert!(
        log.bytes_arrived < content.len() as u64 + 600 * 1024,
        "{} bytes arrived for a file of {}",
        log.bytes_arrived,
        content.len()
    );
}

#[tokio::test]
async fn chunked_upload_with_progress_recovers_from_503_308_and_a_drop() {
    use gemini_oauth::gemini::Upload;
    let (base, server) = upload_server(|s| s.mime = "application/octet-stream".into()).await;
    faults(
        &server,
        [
            Fault::Status(503),         // chunk @0
            Fault::Pass,                // query: holds 0
            Fault::Take308(300 * 1024), // chunk @0 again: keeps 256 KiB
            Fault::Pass,                // query: holds 256 KiB
            Fault::Pass,                // chunk @256 KiB
            Fault::DropAfter(10),       // chunk @1280 KiB: keeps nothing
        ],
    );
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let content = pattern(3 * 1024 * 1024 + 1234);
    std::fs::write(&path, &content).unwrap();
    let total = content.len() as u64;
    let seen = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let log_progress = Arc::clone(&seen);
    let upload = Upload::new(&path, "application/octet-stream")
        .display_name("data")
        .chunk_size(1024 * 1024)
        .on_progress(move |sent, total| log_progress.lock().unwrap().push((sent, total)));
    let file = tokio::time::timeout(std::time::Duration::from_secs(60), upload.send(&client))
        .await
        .expect("no hang")
        .unwrap();
    let log = server.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.start_requests, 1);
    assert_eq!(log.session_urls.len(), 1);
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&content).as_str()));
    assert_eq!(file.size_bytes, Some(total));
    assert_eq!(
        log.commands,
        [
            "upload @0",
            "query @<missing>",
            "upload @0",
            "query @<missing>",
            "upload @262144",
            "upload @1310720",
            "query @<missing>",
            "upload @1310720",
            "upload, finalize @2359296",
        ]
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 4, "{seen:?}");
    assert!(seen.iter().all(|&(_, t)| t == total));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert_eq!(seen.last(), Some(&(total, total)));
}

#[tokio::test]
async fn credentials_never_follow_an_upload_url_to_another_origin() {
    // The start answer names an upload URL on another server.
    let (elsewhere, seen_elsewhere) = {
        let seen = Arc::new(Mutex::new(0usize));
        let count = Arc::clone(&seen);
        let base = serve(move |_req| {
            *count.lock().unwrap() += 1;
            async { json_resp(200, &json!({"file": {"name": "files/x"}})) }
        })
        .await;
        (base, seen)
    };
    let base = serve(move |_req| {
        let url = format!("{elsewhere}/upload-session/x?upload_id=UPLOADIDMARKER");
        async move {
            let mut r = json_resp(200, &json!({}));
            r.headers_mut()
                .insert("x-goog-upload-url", url.parse().unwrap());
            r
        }
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, b"hello").unwrap();
    let err = upload_file(&client, &path, "text/plain", "a")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Upload(UploadProblem::ForeignUploadUrl { .. })),
        "{err:?}"
    );
    assert_eq!(
        *seen_elsewhere.lock().unwrap(),
        0,
        "nothing went to the other host"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("UPLOADIDMARKER"), "{text}");
}

#[tokio::test]
async fn the_upload_example_shows_progress_and_resumes_in_chunks() {
    let (base, server) = upload_server(|_| {}).await;
    faults(&server, [Fault::Pass, Fault::DropAfter(100 * 1024)]);
    let tokens = crate::common::token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    crate::common::write_token(
        dir.path(),
        &crate::common::token_json(&crate::common::token_uri(&tokens), 3000),
    );
    let path = dir.path().join("notes.txt");
    let content = pattern(1_000_000);
    std::fs::write(&path, &content).unwrap();
    let mut cmd = crate::common::examples::example("upload_file");
    cmd.current_dir(dir.path())
        .args(["--api-base", &format!("{base}/v1"), "--no-consent"])
        .args([
            "--file",
            path.to_str().unwrap(),
            "--chunk-size",
            "262144",
            "--progress",
        ]);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("files/abc-123\n{base}/v1beta/files/abc-123\n")
    );
    assert!(stderr.contains("\r1000000/1000000 bytes"), "{stderr}");
    let log = server.log.lock().unwrap().clone();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.sha256.as_deref(), Some(sha256_hex(&content).as_str()));
    assert_eq!(
        log.commands,
        [
            "upload @0",
            "upload @262144",
            "query @<missing>",
            "upload @262144",
            "upload @524288",
            "upload, finalize @786432",
        ]
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_directory_fifo_or_device_is_a_typed_error_before_any_request_never_a_hang() {
    let (base, server) = upload_server(|_| {}).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    for (path, want) in [
        (dir.path().to_owned(), FileKind::Directory),
        (fifo.clone(), FileKind::Fifo),
        ("/dev/null".into(), FileKind::Device),
    ] {
        let upload = upload_file(&client, &path, "text/plain", "x");
        let Ok(uploaded) = tokio::time::timeout(std::time::Duration::from_secs(30), upload).await
        else {
            // Free the open waiting for a writer, so the test ends.
            drop(std::fs::OpenOptions::new().write(true).open(&fifo));
            panic!("{path:?}: the upload hung");
        };
        let err = uploaded.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Upload(UploadProblem::NotAFile { path: p, kind, .. })
                    if p == &path && *kind == want
            ),
            "{path:?}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("not a regular file"), "{text}");
        assert!(text.contains(&format!("it is {want},")), "{text}");
    }
    assert_eq!(server.log.lock().unwrap().start_requests, 0);
}

const PIECE: usize = 256 * 1024;

/// Uploads `content` in chunks of `chunk` (default 8 MiB), the session
/// requests meeting `fs`; the result and the server's log.
async fn upload_with(
    content: &[u8],
    chunk: Option<u64>,
    fs: Vec<Fault>,
) -> (
    Result<gemini_oauth::gemini::File, Error>,
    crate::common::gemini_server::UploadLog,
) {
    use gemini_oauth::gemini::Upload;
    let (base, server) = upload_server(|s| s.mime = "application/octet-stream".into()).await;
    faults(&server, fs);
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    std::fs::write(&path, content).unwrap();
    let no_wait = gemini_oauth::RetryPolicy::default().base_delay(std::time::Duration::ZERO);
    let mut upload = Upload::new(&path, "application/octet-stream").retry(no_wait);
    if let Some(c) = chunk {
        upload = upload.chunk_size(c);
    }
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), upload.send(&client))
        .await
        .expect("no hang");
    let log = server.log.lock().unwrap().clone();
    (r, log)
}

#[tokio::test]
async fn sizes_around_pieces_and_chunks_upload_whole() {
    let mib = 1024 * 1024;
    for (len, chunk) in [
        (0, None),
        (1, None),
        (PIECE - 1, None),
        (PIECE, None),
        (PIECE + 1, None),
        (2 * PIECE, None),
        (PIECE, Some(PIECE as u64)),
        (PIECE + 1, Some(PIECE as u64)),
        (3 * PIECE, Some(PIECE as u64)),
        (mib, Some(mib as u64)),
        (3 * mib, Some(mib as u64)),
        (3 * mib + 1, Some(mib as u64)),
        (3 * mib - 1, Some(mib as u64)),
        (5 * PIECE + 17, Some(3 * PIECE as u64)),
        (5 * PIECE + 17, Some(u64::MAX)),
    ] {
        let content = pattern(len);
        let (r, log) = upload_with(&content, chunk, vec![]).await;
        let f = r.unwrap_or_else(|e| panic!("{len} {chunk:?}: {e:?}"));
        assert!(
            log.problems.is_empty(),
            "{len} {chunk:?}: {:?}",
            log.problems
        );
        assert_eq!(
            log.sha256.as_deref(),
            Some(sha256_hex(&content).as_str()),
            "{len} {chunk:?}"
        );
        assert_eq!(f.size_bytes, Some(len as u64));
        assert_eq!(log.finalized, 1);
    }
}

#[tokio::test]
async fn a_resume_off_the_256_kib_grid_sends_the_rest_from_there() {
    let mib = 1024 * 1024;
    let content = pattern(3 * mib + 1234);
    for keep in [1u64, PIECE as u64 + 1, mib as u64 - 1] {
        let (r, log) = upload_with(
            &content,
            Some(mib as u64),
            vec![Fault::Keep308Exact(keep), Fault::Pass],
        )
        .await;
        r.unwrap_or_else(|e| panic!("{keep}: {e:?}"));
        assert!(log.problems.is_empty(), "{keep}: {:?}", log.problems);
        let resumed = format!("upload @{keep}");
        assert!(log.commands.contains(&resumed), "{:?}", log.commands);
        assert_eq!(
            log.sha256.as_deref(),
            Some(sha256_hex(&content).as_str()),
            "{keep}"
        );
        // The same on the last chunk.
        let (r, log) = upload_with(
            &content,
            Some(mib as u64),
            vec![
                Fault::Pass,
                Fault::Pass,
                Fault::Pass,
                Fault::Keep308Exact(keep.min(1234)),
                Fault::Pass,
            ],
        )
        .await;
        r.unwrap_or_else(|e| panic!("{keep}: {e:?}"));
        let resumed = format!("upload, finalize @{}", 3 * mib as u64 + keep.min(1234));
        assert!(log.commands.contains(&resumed), "{:?}", log.commands);
        assert!(
            log.problems.is_empty(),
            "{keep}: {:?} {:?}",
            log.problems,
            log.commands
        );
        assert_eq!(
            log.sha256.as_deref(),
            Some(sha256_hex(&content).as_str()),
            "{keep}"
        );
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_upload_dropped_mid_chunk_closes_its_file() {
    use gemini_oauth::gemini::Upload;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, pattern(32 * 1024 * 1024)).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let (base, server) = upload_server(move |s| {
        s.mime = "application/octet-stream".into();
        s.after_first_piece = Some(Arc::new(move || {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }));
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let upload = Upload::new(&path, "application/octet-stream");
    let open_fds = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == &path)
            .count()
    };
    tokio::select! {
        r = upload.send(&client) => panic!("finished before it was dropped: {r:?}"),
        _ = rx => {}
    }
    assert!(open_fds() > 0, "the upload reads the file it opened");
    // The upload future is dropped: its file is closed once the
    // connection lets go of the body.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while open_fds() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the file is still open after the upload was dropped");
    assert_eq!(server.log.lock().unwrap().finalized, 0);
}
