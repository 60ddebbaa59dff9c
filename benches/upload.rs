//! A 256 MiB file uploaded through `upload_file` (the Files API's chunked,
//! resumable protocol) beside a raw hyper POST of the same file to the same
//! server on 127.0.0.1: `cargo bench --bench upload`.
//!
//! Rows of `upload_throughput`:
//! - `gemini_oauth`: `upload_file`, 8 MiB chunks (32 requests after `start`);
//! - `gemini_oauth_one_resume`: the same, with the server dropping the
//!   connection halfway through the 17th chunk: the upload asks the session
//!   what it holds (`query`) and goes on from there (retry waits set to 1 ms,
//!   so the row measures the protocol rather than the backoff);
//! - `raw_hyper`: one POST whose body streams the file from disk through
//!   tokio-util's `ReaderStream` with a 256 KiB buffer (the size ours reads
//!   in), with the same `Authorization` header.
//!
//! The server reads every byte of every body and checks the count.
#![allow(
    clippy::arithmetic_side_effects,
    reason = "benches may panic on overflow; the library may not (Cargo.toml)"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::TryStreamExt;
use gemini_oauth::gemini::{Upload, upload_file};
use gemini_oauth::{AuthorizedClient, Consent, CredentialLoader, FileTokenStore, RetryPolicy};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

const FILE_BYTES: u64 = 256 * 1024 * 1024;
const PIECE: usize = 256 * 1024;
/// Where the resume row's server drops the connection: halfway into chunk 17.
const DROP_AT: u64 = 16 * 8 * 1024 * 1024 + 4 * 1024 * 1024;

type Resp = Response<Full<Bytes>>;

/// The resumable sessions' state: bytes held per session, whether the
/// session is to lose its connection once at `DROP_AT`.
#[derive(Default)]
struct Sessions {
    next: AtomicU64,
    held: Mutex<HashMap<u64, (u64, bool)>>,
    drop_next_session: Mutex<bool>,
}

fn answer(status: &str, held: Option<u64>, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-goog-upload-status", status.parse().unwrap());
    if let Some(held) = held {
        h.insert("x-goog-upload-size-received", held.into());
    }
    r
}

const FINAL: &str = r#"{"file": {"name": "files/bench", "uri": "http://127.0.0.1/v1beta/files/bench", "state": "ACTIVE"}}"#;

/// Reads the body to its end (or to `stop_at` bytes), returning the count,
/// or `None` when the client broke off.
async fn drain(body: Incoming, stop_at: Option<u64>) -> Option<u64> {
    let mut body = body;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.ok()?.data_ref() {
            n += data.len() as u64;
            if stop_at.is_some_and(|s| n >= s) {
                return Some(n);
            }
        }
    }
    Some(n)
}

async fn handle(
    base: Arc<String>,
    sessions: Arc<Sessions>,
    req: Request<Incoming>,
) -> Result<Resp, &'static str> {
    let path = req.uri().path().to_owned();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let command = header("x-goog-upload-command");
    if path == "/raw" {
        let n = drain(req.into_body(), None).await.ok_or("broken body")?;
        assert_eq!(n, FILE_BYTES);
        return Ok(Response::new(Full::new(Bytes::from_static(b"{}"))));
    }
    if path == "/upload/v1beta/files" {
        let id = sessions.next.fetch_add(1, Ordering::Relaxed);
        let fault = std::mem::take(&mut *sessions.drop_next_session.lock().unwrap());
        sessions.held.lock().unwrap().insert(id, (0, fault));
        let _ = req.into_body().collect().await;
        let mut r = answer("active", None, "{}");
        let url = format!("{base}/session/{id}");
        r.headers_mut()
            .insert("x-goog-upload-url", url.parse().unwrap());
        return Ok(r);
    }
    let id: u64 = path
        .strip_prefix("/session/")
        .and_then(|s| s.parse().ok())
        .ok_or("no such path")?;
    let (held, fault) = sessions.held.lock().unwrap()[&id];
    if command == "query" {
        return Ok(answer("active", Some(held), "{}"));
    }
    let offset: u64 = header("x-goog-upload-offset").parse().unwrap();
    assert_eq!(
        offset, held,
        "the client sent from where the session stands"
    );
    let stop_at = (fault && held < DROP_AT).then(|| DROP_AT - held);
    let n = drain(req.into_body(), stop_at).await.ok_or("broken body")?;
    if stop_at == Some(n) {
        // Keep what arrived, down to the protocol's 256 KiB, then hang up.
        let kept = held + n - n % (256 * 1024);
        sessions.held.lock().unwrap().insert(id, (kept, false));
        return Err("dropped on purpose");
    }
    let held = held + n;
    sessions.held.lock().unwrap().insert(id, (held, fault));
    if command.contains("finalize") {
        assert_eq!(held, FILE_BYTES);
        sessions.held.lock().unwrap().remove(&id);
        return Ok(answer("final", None, FINAL));
    }
    Ok(answer("active", Some(held), "{}"))
}

/// An HTTP/1.1 server on 127.0.0.1 for both protocols; its base URL.
async fn server(sessions: Arc<Sessions>) -> String {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Arc::new(format!("http://{}", listener.local_addr().unwrap()));
    let out = base.to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (base, sessions) = (Arc::clone(&base), Arc::clone(&sessions));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(Arc::clone(&base), Arc::clone(&sessions), req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    out
}

async fn client(dir: &Path, base: &str) -> AuthorizedClient {
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let path = dir.join("token.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"token": "ya29.bench", "refresh_token": "1//r", "token_uri": "https://oauth2.googleapis.com/token", "client_id": "c", "client_secret": "s", "expiry": "{}"}}"#,
            expiry.format(&fmt).unwrap()
        ),
    )
    .unwrap();
    CredentialLoader::new()
        .token_store(FileTokenStore::new(path))
        .consent(Consent::Never)
        .api_base(format!("{base}/v1beta"))
        .load()
        .await
        .unwrap()
        .authorized_client()
}

fn upload_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("256MiB.bin");
    let content: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        f.write_all(&content).unwrap();
        // Written back now, not by the kernel during the first row.
        f.sync_all().unwrap();
    }
    drop(content);
    let sessions = Arc::<Sessions>::default();
    let base = rt.block_on(server(Arc::clone(&sessions)));
    let client = rt.block_on(client(dir.path(), &base));
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<BoxBody<Bytes, std::io::Error>>();
    let raw_uri: http::Uri = format!("{base}/raw").parse().unwrap();
    let quick = RetryPolicy::default()
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(1));

    let mut g = c.benchmark_group("upload_throughput");
    g.throughput(Throughput::Bytes(FILE_BYTES));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("gemini_oauth", |b| {
        b.to_async(&rt).iter(|| async {
            let f = upload_file(&client, &file, "application/octet-stream", "bench").await;
            black_box(f.unwrap())
        })
    });
    g.bench_function("gemini_oauth_one_resume", |b| {
        b.to_async(&rt).iter(|| async {
            *sessions.drop_next_session.lock().unwrap() = true;
            let f = Upload::new(&file, "application/octet-stream")
                .retry(quick)
                .send(&client)
                .await;
            black_box(f.unwrap())
        })
    });
    g.bench_function("raw_hyper", |b| {
        b.to_async(&rt).iter(|| async {
            let f = tokio::fs::File::open(&file).await.unwrap();
            let frames = tokio_util::io::ReaderStream::with_capacity(f, PIECE).map_ok(Frame::data);
            let req = Request::post(raw_uri.clone())
                .header("authorization", "Bearer ya29.bench")
                .header("content-length", FILE_BYTES)
                .body(StreamBody::new(frames).boxed())
                .unwrap();
            let resp = raw.request(req).await.unwrap();
            assert!(resp.status().is_success());
            black_box(resp.into_body().collect().await.unwrap().to_bytes())
        })
    });
    g.finish();
}

criterion_group!(benches, upload_throughput);
criterion_main!(benches);
