//! The chunk bodies and the session against servers that fail as files and
//! networks do.

use std::io::{Read, Write};
use std::sync::mpsc;

use http_body_util::BodyExt;

use super::*;

fn progress(total: u64) -> Arc<Progress> {
    Arc::new(Progress {
        total,
        shown: AtomicU64::new(0),
        on_progress: None,
        changed: AtomicBool::new(false),
        read: AtomicU64::new(0),
    })
}

#[tokio::test]
async fn a_file_that_shrank_after_its_last_piece_was_read_ahead_fails_the_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let len = 2 * PIECE;
    std::fs::write(&path, vec![7u8; len as usize]).unwrap();
    let file = Arc::new(std::fs::File::open(&path).unwrap());
    let progress = progress(len);
    let handoff = Handoff::default();
    // A first chunk of one piece, sent whole: its reader is left in the
    // slot, the last chunk's piece read ahead.
    let first = chunk_body(
        ReadAhead::new(file),
        0,
        PIECE,
        false,
        Arc::clone(&progress),
        Arc::clone(&handoff),
        Unreadable::default(),
    );
    first.into_hyper().0.collect().await.unwrap();
    let reader = handoff.lock().unwrap().take().unwrap();
    reader.read_ahead_done().await;
    // Then the file loses its last byte, before the last chunk is sent.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 1).unwrap();
    let last = chunk_body(
        reader,
        PIECE,
        PIECE,
        true,
        Arc::clone(&progress),
        handoff,
        Unreadable::default(),
    );
    let sent = last.into_hyper().0.collect().await;
    assert!(
        sent.is_err(),
        "the last chunk went whole from a file that shrank"
    );
    assert!(progress.changed.load(Ordering::Relaxed));
    assert_eq!(progress.read.load(Ordering::Relaxed), len - 1);
}

#[tokio::test]
async fn a_read_error_mid_upload_is_an_io_error_for_the_file() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-goog-upload-status", "active")
                .insert_header("x-goog-upload-size-received", "0"),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; 2 * PIECE as usize]).unwrap();
    // Opened for writing only, every read fails, as on a failing disk.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let expires = std::time::SystemTime::now() + Duration::from_secs(3600);
    let creds = crate::Credentials::from_access_token("t", expires).unwrap();
    let client = creds.authorized_client();
    let session = Session {
        client: &client,
        url: server.uri().parse().unwrap(),
        path: &path,
        file: Arc::new(file),
        size: 2 * PIECE,
        chunk: GRANULARITY,
        policy: RetryPolicy::default()
            .attempts(3)
            .base_delay(Duration::from_millis(1)),
        on_progress: None,
    };
    let err = session.run().await.unwrap_err();
    assert!(
        matches!(&err, Error::Io { action: "read", path: p, .. } if *p == path),
        "{err:?}"
    );
}

/// Reads one request head; returns it (lowercased), or None at EOF.
fn head(s: &mut std::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        buf.push(b[0]);
    }
    Some(String::from_utf8_lossy(&buf).to_ascii_lowercase())
}

fn content_length(h: &str) -> usize {
    h.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A chunk's body still read after its request was answered early (as
/// hyper goes on sending a body after an early answer) fails to read the
/// file; the server, asked, holds every byte already and the empty
/// finalizing chunk completes the upload. The caller must get the
/// final answer, not the abandoned body's read error.
#[test]
fn a_late_read_error_of_an_abandoned_chunk_does_not_fail_a_finished_upload() {
    const SIZE: u64 = GRANULARITY;
    static FINALIZED: AtomicBool = AtomicBool::new(false);
    let (open_gate, gate) = mpsc::channel::<()>();
    let open_gate = Mutex::new(open_gate);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    let open_gate = Arc::new(open_gate);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let open_gate = Arc::clone(&open_gate);
            std::thread::spawn(move || {
                while let Some(h) = head(&mut s) {
                    if h.contains("x-goog-upload-offset: 0\r\n") {
                        // Answered before the body is read; the body is
                        // drained afterwards.
                        s.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                        )
                        .unwrap();
                        let mut sink = [0u8; 65536];
                        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                        return;
                    }
                    let mut body = vec![0u8; content_length(&h)];
                    s.read_exact(&mut body).unwrap();
                    if h.contains("x-goog-upload-command: query") {
                        // Lets the first chunk's read run (and fail) now.
                        open_gate.lock().unwrap().send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(200));
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nx-goog-upload-status: active\r\nx-goog-upload-size-received: {SIZE}\r\ncontent-length: 0\r\n\r\n"
                        );
                        s.write_all(answer.as_bytes()).unwrap();
                    } else {
                        FINALIZED.store(true, Ordering::SeqCst);
                        s.write_all(b"HTTP/1.1 200 OK\r\nx-goog-upload-status: final\r\ncontent-length: 2\r\n\r\n{}")
                            .unwrap();
                    }
                }
            });
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The one blocking thread is busy until the server opens the gate:
    // the first chunk's first read waits until then.
    drop(rt.spawn_blocking(move || gate.recv()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; SIZE as usize]).unwrap();
    // Every read fails (a failing disk); the second send reads nothing.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let result = rt.block_on(async {
        let expires = std::time::SystemTime::now() + Duration::from_secs(3600);
        let creds = crate::Credentials::from_access_token("t", expires).unwrap();
        let client = creds.authorized_client();
        let session = Session {
            client: &client,
            url: url.parse().unwrap(),
            path: &path,
            file: Arc::new(file),
            size: SIZE,
            chunk: GRANULARITY,
            policy: RetryPolicy::default()
                .attempts(3)
                .base_delay(Duration::from_millis(1)),
            on_progress: None,
        };
        session.run().await
    });
    assert!(
        FINALIZED.load(Ordering::SeqCst),
        "no finalizing chunk: {result:?}"
    );
    assert!(
        matches!(&result, Ok((200, _))),
        "the server finalized the upload, the caller got {result:?}"
    );
}
