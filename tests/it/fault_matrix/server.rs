//! The upstream of the matrix: one HTTPS server on 127.0.0.1 that plays
//! every Google endpoint the crate calls (token, revoke, STS, IAM, a
//! subject-token URL, the Gemini API with its SSE stream and resumable
//! upload), over HTTP/1.1 or HTTP/2 as its ALPN offers. The status-level
//! faults live here, counter-based: a 5xx burst, a `429` with
//! `Retry-After`, an answer cut in the middle of its body.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::json;

use crate::common::NEW_ACCESS;
use crate::common::gemini_server::{
    Resp, UploadLog, UploadServer, event, google_error, json_resp, text_chunk,
};

/// The HTTP version a server speaks (by ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    H1,
    H2,
    /// Plain HTTP/1.1, as the metadata server speaks.
    Plain,
}

impl Proto {
    pub(super) fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
            Proto::Plain => "plain HTTP/1.1",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Proto::H1 | Proto::Plain => b"http/1.1",
            Proto::H2 => b"h2",
        }
    }

    fn version(self) -> http::Version {
        match self {
            Proto::H1 | Proto::Plain => http::Version::HTTP_11,
            Proto::H2 => http::Version::HTTP_2,
        }
    }
}

/// A status-level fault, in force until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Misbehave {
    /// The next `n` requests get `503` with Google's error body.
    Burst5xx(usize),
    /// The next `n` requests get `429` with `Retry-After: 1`.
    TooMany(usize),
    /// Every answer announces its length and stops halfway.
    CutBody,
}

#[derive(Default)]
struct State {
    misbehave: Mutex<Option<Misbehave>>,
    only_on: Mutex<Option<&'static str>>,
    /// Requests answered at the row's HTTP version.
    at_version: AtomicUsize,
    requests: AtomicUsize,
}

/// A running server; it lives as long as the test's runtime.
#[derive(Clone)]
pub(super) struct Upstream {
    state: Arc<State>,
}

impl Upstream {
    /// A listener on 127.0.0.1 for [`Upstream::serve`].
    pub(super) async fn bind() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// Serves on `listener` with `leaf`/`key`; `origin` is the base URL the
    /// client sees (upload URLs point back at it).
    pub(super) fn serve(
        proto: Proto,
        (leaf, key): (&str, &str),
        listener: tokio::net::TcpListener,
        origin: String,
    ) -> Self {
        let acceptor = acceptor(leaf, key, proto.alpn());
        let state = Arc::new(State::default());
        let uploads = UploadServer {
            log: Arc::new(Mutex::new(UploadLog::default())),
            base: origin,
            omit_upload_url: false,
            mime: "application/octet-stream".into(),
            after_first_piece: None,
        };
        let (st, version) = (Arc::clone(&state), proto.version());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, st, uploads) = (acceptor.clone(), Arc::clone(&st), uploads.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (st, uploads) = (Arc::clone(&st), uploads.clone());
                        async move {
                            st.requests.fetch_add(1, Ordering::SeqCst);
                            if req.version() == version {
                                st.at_version.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok::<_, Infallible>(answer(&st, &uploads, req).await)
                        }
                    });
                    let http = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    if proto == Proto::Plain {
                        let io = hyper_util::rt::TokioIo::new(tcp);
                        let _ = http.serve_connection(io, svc).await;
                    } else if let Ok(tls) = acceptor.accept(tcp).await {
                        let io = hyper_util::rt::TokioIo::new(tls);
                        let _ = http.serve_connection(io, svc).await;
                    }
                });
            }
        });
        Upstream { state }
    }

    pub(super) fn misbehave(&self, how: Option<Misbehave>) {
        *self.state.misbehave.lock().unwrap() = how;
    }

    /// Limits the status faults to paths that start with `prefix`.
    pub(super) fn only_on(&self, prefix: &'static str) {
        *self.state.only_on.lock().unwrap() = Some(prefix);
    }

    /// Requests answered at this server's HTTP version, and in all.
    pub(super) fn requests(&self) -> (usize, usize) {
        (
            self.state.at_version.load(Ordering::SeqCst),
            self.state.requests.load(Ordering::SeqCst),
        )
    }
}

/// A TLS acceptor offering only `alpn`, and no session tickets (so a
/// toxic that starts after the handshake meets the HTTP answer first).
fn acceptor(leaf: &str, key: &str, alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
    let mut config = crate::common::tls_certs::server_config(leaf, key, &[alpn]);
    config.send_tls13_tickets = 0;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Takes one from a burst, if one is in force.
fn burst(st: &State) -> Option<Resp> {
    let mut m = st.misbehave.lock().unwrap();
    match &mut *m {
        Some(Misbehave::Burst5xx(n)) if *n > 0 => {
            *n -= 1;
            Some(google_error(
                503,
                "UNAVAILABLE",
                "the service is unavailable",
            ))
        }
        Some(Misbehave::TooMany(n)) if *n > 0 => {
            *n -= 1;
            let mut r = google_error(429, "RESOURCE_EXHAUSTED", "quota exceeded");
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
            Some(r)
        }
        _ => None,
    }
}

/// Every answer carries the metadata server's header (others ignore it).
async fn answer(st: &State, uploads: &UploadServer, req: Request<Incoming>) -> Resp {
    let mut r = answer_unflavored(st, uploads, req).await;
    r.headers_mut()
        .insert("metadata-flavor", http::HeaderValue::from_static("Google"));
    r
}

async fn answer_unflavored(st: &State, uploads: &UploadServer, req: Request<Incoming>) -> Resp {
    let applies = st
        .only_on
        .lock()
        .unwrap()
        .is_none_or(|p| req.uri().path().starts_with(p));
    if let Some(r) = applies.then(|| burst(st)).flatten() {
        // The request is read whole, as a real server would.
        let _ = req.into_body().collect().await;
        return r;
    }
    let cut = applies && *st.misbehave.lock().unwrap() == Some(Misbehave::CutBody);
    let resp = route(uploads, req).await;
    if cut { cut_halfway(resp).await } else { resp }
}

async fn route(uploads: &UploadServer, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let req = if path.starts_with("/upload") {
        match uploads.handle(req).await {
            Some(r) => return r,
            None => return google_error(404, "NOT_FOUND", "no such upload endpoint"),
        }
    } else {
        req
    };
    let token = json!({
        "access_token": NEW_ACCESS, "expires_in": 3599, "token_type": "Bearer",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
    });
    match path.as_str() {
        "/token" => {
            let form = req.into_body().collect().await.unwrap().to_bytes();
            let mut token = token;
            // A service account's ID-token grant reads this (its audience
            // is inside the assertion); the other grants ignore it.
            token["id_token"] = json!(id_token());
            if String::from_utf8_lossy(&form).contains("grant_type=authorization_code") {
                token["refresh_token"] = json!(crate::common::REFRESH_TOKEN);
                token["scope"] = json!(crate::common::RETRIEVER);
            }
            json_resp(200, &token)
        }
        "/revoke" => json_resp(200, &json!({})),
        "/subject" => with_body(ok(), "eyJ.SUBJECTMARKER", "text/plain"),
        "/" => ok(),
        "/computeMetadata/v1/universe/universe-domain" => {
            with_body(ok(), "googleapis.com", "application/text")
        }
        "/computeMetadata/v1/instance/service-accounts/default/token" => json_resp(200, &token),
        "/latest/api/token" => with_body(ok(), "IMDSSESSIONMARKER", "text/plain"),
        "/latest/meta-data/placement/availability-zone" => {
            with_body(ok(), "us-east-2b", "text/plain")
        }
        "/latest/meta-data/iam/security-credentials" => with_body(ok(), "my-role", "text/plain"),
        "/latest/meta-data/iam/security-credentials/my-role" => json_resp(
            200,
            &json!({
                "Code": "Success", "AccessKeyId": "ASIAMATRIX", "SecretAccessKey": "AWSSECRETMARKER",
                "Token": "AWSSESSIONMARKER", "Expiration": "2099-01-01T00:00:00Z"
            }),
        ),
        "/v1/models" => json_resp(200, &json!({"models": [{"name": "models/matrix"}]})),
        p if p.ends_with(":generateAccessToken") => json_resp(
            200,
            &json!({"accessToken": NEW_ACCESS, "expireTime": "2099-01-01T00:00:00Z"}),
        ),
        p if p.ends_with(":generateIdToken") => json_resp(200, &json!({"token": id_token()})),
        p if p.ends_with(":generateContent") => json_resp(200, &text_chunk("hello")),
        p if p.ends_with(":streamGenerateContent") => {
            let events: String = ["one ", "two ", "three"]
                .iter()
                .map(|t| event(&text_chunk(t)))
                .collect();
            with_body(json_resp(200, &json!({})), events, "text/event-stream")
        }
        _ => google_error(404, "NOT_FOUND", "no such endpoint in the matrix"),
    }
}

/// An ID token: a JWT whose `exp` is in 2099 (signature unchecked).
fn id_token() -> String {
    use base64::Engine;
    let claims = json!({"exp": 4_070_908_800u64, "aud": "https://tool-matrix.a.run.app"});
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("e30.{claims}.IDTOKENSIGMARKER")
}

fn ok() -> Resp {
    json_resp(200, &json!({}))
}

fn with_body(mut r: Resp, body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    *r.body_mut() = http_body_util::Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    r
}

/// `resp` with its length announced and only its first half sent.
async fn cut_halfway(resp: Resp) -> Resp {
    let (mut parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    let half = body.slice(..body.len() / 2);
    // The head and the first half reach the client before the cut.
    let frames = futures_util::stream::iter([Ok(Frame::data(half))]).chain(
        futures_util::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(std::io::Error::other("cut halfway"))
        }),
    );
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(frames)))
}
