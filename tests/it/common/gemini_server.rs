//! A local HTTP/1.1 server on 127.0.0.1 that speaks Gemini's wire formats:
//! JSON answers and Google's error bodies, server-sent events sent in
//! scripted pieces with pauses (or cut off), and the Files API's resumable
//! upload with every header checked and the body hashed as it arrives.
//! It lives as long as the test's runtime.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
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
        self.check(h("x-goog-upload-offset") == "0", "upload: offset");
        self.check(
            h("x-goog-upload-command") == "upload, finalize",
            format!("upload: command {}", h("x-goog-upload-command")),
        );
        self.check(
            h("authorization").starts_with("Bearer "),
            "upload: authorization",
        );
        let announced: u64 = req
            .uri()
            .query()
            .and_then(|q| q.split("length=").nth(1))
            .and_then(|l| l.parse().ok())
            .unwrap_or(u64::MAX);
        let length: u64 = h("content-length").parse().unwrap_or(u64::MAX - 1);
        self.check(
            length == announced,
            format!("upload: content-length {length} vs announced {announced}"),
        );
        let mut body = req.into_body();
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        let mut first = true;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                // The client gave up mid-body: nothing is finalized.
                return google_error(400, "INVALID_ARGUMENT", "incomplete upload");
            };
            if let Some(data) = frame.data_ref() {
                hasher.update(data);
                n += data.len() as u64;
                if first {
                    first = false;
                    if let Some(f) = &self.after_first_piece {
                        f();
                    }
                }
            }
        }
        let sha = hex(&hasher.finalize());
        let mime = self.mime.clone();
        {
            let mut log = self.log.lock().unwrap();
            log.bytes = n;
            log.sha256 = Some(sha.clone());
            log.finalized += 1;
        }
        json_resp(
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
        )
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
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    base
}
