//! A local HTTP/1.1 server on 127.0.0.1 that speaks Gemini's wire formats:
//! JSON answers and Google's error bodies, server-sent events sent in
//! scripted pieces with pauses (or cut off), and the Files API's resumable
//! upload with every header checked and the body hashed as it arrives.
//! It lives as long as the test's runtime.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Resp = Response<Body>;

/// Serves `handler` on an ephemeral port; returns `http://127.0.0.1:PORT`.
pub async fn serve<F, Fut>(handler: F) -> String
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    serve_with_base(|_| handler).await
}

pub fn json_resp(status: u16, body: &Value) -> Resp {
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
pub fn google_error(status: u16, status_text: &str, message: &str) -> Resp {
    json_resp(
        status,
        &json!({"error": {"code": status, "message": message, "status": status_text}}),
    )
}

/// One step of a scripted body.
#[derive(Clone, Debug)]
pub enum Step {
    Send(Bytes),
    Pause(Duration),
    /// Abort the connection (no end of body).
    Cut,
}

pub fn send(s: impl AsRef<[u8]>) -> Step {
    Step::Send(Bytes::copy_from_slice(s.as_ref()))
}

pub fn pause_ms(ms: u64) -> Step {
    Step::Pause(Duration::from_millis(ms))
}

/// A `text/event-stream` answer sent as `steps` say.
pub fn scripted(steps: Vec<Step>) -> Resp {
    let stream = futures_util::stream::iter(steps).filter_map(|step| async move {
        match step {
            Step::Send(b) => Some(Ok(Frame::data(b))),
            Step::Pause(d) => {
                tokio::time::sleep(d).await;
                None
            }
            Step::Cut => Some(Err(std::io::Error::other("cut"))),
        }
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

/// An SSE event carrying `value`, LF line ends.
pub fn event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The text chunk Gemini streams.
pub fn text_chunk(text: &str) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]})
}

/// What the upload endpoints saw.
#[derive(Debug, Default, Clone)]
pub struct UploadLog {
    /// Each header or body check that failed.
    pub problems: Vec<String>,
    pub start_body: Option<Value>,
    pub bytes: u64,
    pub sha256: Option<String>,
    /// Upload requests whose body arrived whole.
    pub finalized: usize,
    pub start_requests: usize,
    /// Faults for the next session requests (chunks and queries), in order.
    pub faults: std::collections::VecDeque<Fault>,
    /// Every body byte that arrived, kept or not (a resume from zero shows here).
    pub bytes_arrived: u64,
    /// The `x-goog-upload-command` and offset of every session request.
    pub commands: Vec<String>,
    /// How many bytes the session holds (a prefix of the file), and their hash.
    pub held: u64,
    pub hasher: Sha256,
    /// Distinct upload-session URLs requests went to.
    pub session_urls: std::collections::BTreeSet<String>,
}

/// A fault of the upload session, as the resumable protocol allows them.
#[derive(Debug, Clone)]
pub enum Fault {
    /// No fault for this request.
    Pass,
    /// Answer this status (with `x-goog-upload-status: active`) and keep nothing.
    Status(u16),
    /// Read this many bytes of the chunk, keep them down to 256 KiB, drop the connection.
    DropAfter(u64),
    /// Read the whole chunk, keep this many bytes (down to 256 KiB), answer 308.
    Take308(u64),
    /// Read the whole chunk, keep exactly this many bytes (off the 256 KiB
    /// grid too), answer 308.
    Keep308Exact(u64),
}

/// The protocol's granularity: the server keeps whole multiples of it.
pub const GRANULARITY: u64 = 256 * 1024;

/// An answer that makes the test server drop the connection instead.
pub fn drop_connection() -> Resp {
    let mut r = json_resp(500, &json!({}));
    r.headers_mut()
        .insert("x-test-drop-connection", "1".parse().unwrap());
    r
}

/// The Files API's two endpoints, checking what the issue specifies.
#[derive(Clone)]
pub struct UploadServer {
    pub log: Arc<Mutex<UploadLog>>,
    pub base: String,
    /// Leave out `x-goog-upload-url` from the start answer.
    pub omit_upload_url: bool,
    /// Expected `X-Goog-Upload-Header-Content-Type`.
    pub mime: String,
    /// Called after the first piece of the body arrived (to change the file).
    pub after_first_piece: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl UploadServer {
    /// Answers `POST /upload/v1beta/files` and `POST /upload-session/…`;
    /// `None` for other paths.
    pub async fn handle(&self, req: Request<Incoming>) -> Option<Resp> {
        let path = req.uri().path().to_owned();
        if path == "/upload/v1beta/files" {
            return Some(self.start(req).await);
        }
        if path.starts_with("/upload-session/") {
            return Some(self.upload(req).await);
        }
        None
    }

    fn check(&self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.log.lock().unwrap().problems.push(what.into());
        }
    }

    fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
    }

    async fn start(&self, req: Request<Incoming>) -> Resp {
        self.log.lock().unwrap().start_requests += 1;
        let h = |n| Self::header(&req, n).to_owned();
        self.check(req.method() == "POST", "start: method");
        self.check(
            h("x-goog-upload-protocol") == "resumable",
            format!("start: protocol {}", h("x-goog-upload-protocol")),
        );
        self.check(h("x-goog-upload-command") == "start", "start: command");
        self.check(
            h("x-goog-upload-header-content-type") == self.mime,
            format!("start: type {}", h("x-goog-upload-header-content-type")),
        );
        self.check(
            h("content-type") == "application/json",
            "start: content-type",
        );
        self.check(
            h("authorization").starts_with("Bearer "),
            "start: authorization",
        );
        self.check(
            req.headers().get_all("authorization").iter().count() == 1,
            "start: one authorization",
        );
        let length = h("x-goog-upload-header-content-length");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        {
            let mut log = self.log.lock().unwrap();
            log.start_body = Some(json);
        }
        let mut r = json_resp(200, &json!({}));
        r.headers_mut()
            .insert("x-goog-upload-status", "active".parse().unwrap());
        if !self.omit_upload_url {
            let url = format!(
                "{}/upload-session/abc?upload_id=UPLOADIDMARKER&length={length}",
                self.base
            );
            r.headers_mut()
                .insert("x-goog-upload-url", url.parse().unwrap());
        }
        r
    }

    async fn upload(&self, req: Request<Incoming>) -> Resp {
        let h = |n| Self::header(&req, n).to_owned();
        self.check(req.method() == "POST", "upload: method");
        self.check(
            h("authorization").starts_with("Bearer "),
            "upload: authorization",
        );
        let command = h("x-goog-upload-command");
        let offset = h("x-goog-upload-offset");
        let fault = {
            let mut log = self.log.lock().unwrap();
            log.commands.push(format!("{command} @{offset}"));
            log.session_urls.insert(req.uri().to_string());
            log.faults.pop_front()
        };
        if let Some(Fault::Status(code)) = fault {
            let mut r = google_error(code, "UNAVAILABLE", "try again");
            r.headers_mut()
                .insert("x-goog-upload-status", "active".parse().unwrap());
            return r;
        }
        if command == "query" {
            return self.status_answer();
        }
        let announced: u64 = req
            .uri()
            .query()
            .and_then(|q| q.split("length=").nth(1))
            .and_then(|l| l.parse().ok())
            .unwrap_or(u64::MAX);
        let held = self.log.lock().unwrap().held;
        self.check(
            offset == held.to_string(),
            format!("upload: offset {offset} but the session holds {held}"),
        );
        let finalize = command == "upload, finalize";
        self.check(
            finalize || command == "upload",
            format!("upload: command {command}"),
        );
        let length: u64 = h("content-length").parse().unwrap_or(u64::MAX - 1);
        if finalize {
            self.check(
                held + length == announced,
                format!(
                    "upload: last chunk ends at {} vs announced {announced}",
                    held + length
                ),
            );
        } else {
            self.check(
                length.is_multiple_of(GRANULARITY),
                format!("upload: chunk of {length} bytes is not a multiple of 256 KiB"),
            );
        }
        let mut body = req.into_body();
        let mut chunk = Vec::new();
        let mut first = true;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                // The client gave up mid-body: nothing is finalized.
                return google_error(400, "INVALID_ARGUMENT", "incomplete upload");
            };
            if let Some(data) = frame.data_ref() {
                chunk.extend_from_slice(data);
                self.log.lock().unwrap().bytes_arrived += data.len() as u64;
                if first {
                    first = false;
                    if let Some(f) = &self.after_first_piece {
                        f();
                    }
                }
                if let Some(Fault::DropAfter(n)) = &fault
                    && chunk.len() as u64 >= *n
                {
                    self.keep(&chunk, *n);
                    return drop_connection();
                }
            }
        }
        if let Some(Fault::Keep308Exact(n)) = fault {
            let n = n.min(chunk.len() as u64) as usize;
            let mut log = self.log.lock().unwrap();
            log.held += n as u64;
            log.hasher.update(&chunk[..n]);
            drop(log);
            let mut r = self.status_answer();
            *r.status_mut() = hyper::StatusCode::PERMANENT_REDIRECT;
            return r;
        }
        if let Some(Fault::Take308(n)) = fault {
            self.keep(&chunk, n);
            let mut r = self.status_answer();
            *r.status_mut() = hyper::StatusCode::PERMANENT_REDIRECT;
            return r;
        }
        self.keep(&chunk, u64::MAX);
        if !finalize {
            return self.status_answer();
        }
        self.final_answer()
    }

    /// Keeps the first `n` bytes of `chunk`, down to the granularity unless all of it.
    fn keep(&self, chunk: &[u8], n: u64) {
        let n = if n >= chunk.len() as u64 {
            chunk.len()
        } else {
            (n - n % GRANULARITY) as usize
        };
        let mut log = self.log.lock().unwrap();
        log.held += n as u64;
        log.hasher.update(&chunk[..n]);
    }

    /// `active` (or the final answer) with the size the session holds.
    fn status_answer(&self) -> Resp {
        if self.log.lock().unwrap().finalized > 0 {
            return self.final_answer();
        }
        let held = self.log.lock().unwrap().held;
        let mut r = json_resp(200, &json!({}));
        r.headers_mut()
            .insert("x-goog-upload-status", "active".parse().unwrap());
        r.headers_mut().insert(
            "x-goog-upload-size-received",
            held.to_string().parse().unwrap(),
        );
        r
    }

    fn final_answer(&self) -> Resp {
        let (n, sha) = {
            let mut log = self.log.lock().unwrap();
            let sha = hex(&log.hasher.clone().finalize());
            log.bytes = log.held;
            log.sha256 = Some(sha.clone());
            log.finalized = 1;
            (log.bytes, sha)
        };
        let mime = self.mime.clone();
        let mut r = json_resp(
            200,
            &json!({"file": {
                "name": "files/abc-123",
                "displayName": "shown",
                "mimeType": mime,
                "sizeBytes": n.to_string(),
                "createTime": "2026-12-02T07:00:00.000000Z",
                "sha256Hash": sha,
                "uri": format!("{}/v1beta/files/abc-123", self.base),
                "state": "ACTIVE",
                "source": "UPLOADED"
            }}),
        );
        r.headers_mut()
            .insert("x-goog-upload-status", "final".parse().unwrap());
        r
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The base URL of a server whose handler is built from the server's own
/// base (for answers that point back at it, like upload URLs).
pub async fn serve_with_base<F, Fut>(make: impl FnOnce(String) -> F) -> String
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handler = Arc::new(make(base.clone()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move {
                        let resp = fut.await;
                        // An error from the service makes hyper drop the connection.
                        match resp.headers().contains_key("x-test-drop-connection") {
                            true => Err(std::io::Error::other("dropped")),
                            false => Ok(resp),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    base
}
