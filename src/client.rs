//! [`AuthorizedClient`]: an HTTP client that signs every request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use tokio::time::Instant;

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::http::{DEFAULT_IDLE_TIMEOUT, ReqBody};
use crate::request_body::{RequestBody, SendProgress};
use crate::response_body::ResponseBody;
use crate::retry::{RetryPolicy, is_retryable_status, retry_after};
use crate::url::{check_endpoint, join, redact};

/// Largest response body the buffered helpers read into memory.
pub const MAX_BUFFERED_RESPONSE: usize = 32 * 1024 * 1024;

impl Credentials {
    /// An HTTP client that adds this credential's headers to every request.
    #[must_use]
    pub fn authorized_client(&self) -> AuthorizedClient {
        AuthorizedClient::new(self.clone())
    }
}

/// An HTTP client (hyper 1 + rustls, pooled, HTTP/2 when offered) that adds
/// `Authorization: Bearer …` (or `x-goog-api-key`) and, when set,
/// `x-goog-user-project` to every request. After a `401` it refreshes the
/// token once and repeats the request, when the body can be sent again.
/// Cheap to clone; clones share the connection pool.
///
/// [`request`](Self::request) sends any `http::Request` and returns a
/// streaming [`ResponseBody`]; [`get`](Self::get), [`post_json`](Self::post_json)
/// and [`send`](Self::send) read the answer whole (at most
/// [`MAX_BUFFERED_RESPONSE`] bytes).
///
/// # Timeouts
///
/// Connecting is limited by the loader's
/// [`connect_timeout`](crate::CredentialLoader::connect_timeout) (10 s). An
/// API call has no whole-request limit unless [`timeout`](Self::timeout) sets
/// one (a generation can take minutes); a peer that sends nothing for
/// [`idle_timeout`](Self::idle_timeout) (default 5 minutes) fails the call:
/// before the answer's head, between pieces of its body, and while a
/// streamed request body sends nothing. The
/// token endpoint keeps its own whole-request limit
/// ([`CredentialLoader::timeout`](crate::CredentialLoader::timeout), 30 s).
///
/// ```no_run
/// # async fn f() -> gemini_oauth::Result<()> {
/// let creds = gemini_oauth::load_creds().await?;
/// let client = creds.authorized_client();
/// let resp = client.get(&client.api_url("models")).await?;
/// println!("{}", String::from_utf8_lossy(resp.body()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthorizedClient {
    creds: Credentials,
    timeout: Option<Duration>,
    idle_timeout: Duration,
    retry: Option<RetryPolicy>,
}

impl fmt::Debug for AuthorizedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedClient")
            .field("api_base", &self.api_base())
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl AuthorizedClient {
    /// The client for `creds` (same as [`Credentials::authorized_client`]).
    #[must_use]
    pub fn new(creds: Credentials) -> Self {
        AuthorizedClient {
            creds,
            timeout: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            retry: None,
        }
    }

    /// Retries requests of every method by `policy` (see [`crate::retry`]):
    /// after a transport error, or a `408`, `429` or `5xx` answer (waiting
    /// as its `Retry-After` says), before any of the answer's body is
    /// handed on, and only for a body that can be sent again (bytes).
    /// Without it only `GET` and `HEAD` are retried (3 attempts);
    /// `generateContent` is not, as a repeat can cost tokens twice.
    /// Retries stay inside [`timeout`](Self::timeout) when set.
    ///
    /// ```no_run
    /// # async fn f(client: gemini_oauth::AuthorizedClient) -> gemini_oauth::Result<()> {
    /// let patient = client.retry(gemini_oauth::RetryPolicy::default().attempts(4));
    /// let body = serde_json::json!({"contents": [{"parts": [{"text": "Hello"}]}]});
    /// let answer = gemini_oauth::gemini::generate_content(&patient, "gemini-2.5-flash", &body).await?;
    /// # let _ = answer; Ok(()) }
    /// ```
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Limits each request, from sending it to the last byte of the answer
    /// (token refresh and the repeat after a `401` included). Default: none.
    /// For one request, set it on a clone: `client.clone().timeout(d)`.
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Limits the wait for the answer's head (from sending the request, or
    /// an upload's last byte), for each next piece of its body, and for a
    /// streamed request body the time without a piece sent, whether its
    /// stream stalls or the peer stops reading (default
    /// [`DEFAULT_IDLE_TIMEOUT`](crate::DEFAULT_IDLE_TIMEOUT), 5 minutes).
    #[must_use]
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// The Gemini API base URL (default
    /// [`endpoints::GEMINI_API_BASE`](crate::endpoints::GEMINI_API_BASE)).
    #[must_use]
    pub fn api_base(&self) -> &str {
        &self.creds.settings().api_base
    }

    /// `api_base` joined with `path`, e.g. `api_url("models")`.
    #[must_use]
    pub fn api_url(&self, path: &str) -> String {
        join(self.api_base(), path)
    }

    /// The credentials behind this client.
    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// Sends any request and returns the answer as it arrives: its head,
    /// and a [`ResponseBody`] that streams. The caller's headers are kept;
    /// ours (`Authorization` or `x-goog-api-key`, `x-goog-user-project`)
    /// replace any of the same name. A body with a known length that is a
    /// stream gets `Content-Length` unless the caller set one.
    ///
    /// After a `401` the token is refreshed and the request sent once more
    /// when the body is bytes. A streamed body cannot be sent twice: the
    /// first `401` is returned as it is.
    ///
    /// ```no_run
    /// # async fn f(client: gemini_oauth::AuthorizedClient) -> gemini_oauth::Result<()> {
    /// let req = http::Request::post(client.api_url("models/gemini-2.5-flash:countTokens"))
    ///     .header("content-type", "application/json")
    ///     .body(r#"{"contents": [{"parts": [{"text": "hi"}]}]}"#)
    ///     .expect("a valid request");
    /// let resp = client.request(req).await?;
    /// let json = resp.into_body().collect_bytes(1 << 20).await?;
    /// # let _ = json; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Token errors as [`Credentials::access_token`], [`Error::Transport`],
    /// [`Error::Timeout`], [`Error::InvalidUrl`]. HTTP error statuses are not
    /// errors here: check `status()` (or use the [`gemini`](crate::gemini) helpers).
    pub fn request<B: Into<RequestBody>>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = Result<Response<ResponseBody>>> + Send + '_ {
        self.request_body(req.map(Into::into))
    }

    async fn request_body(&self, req: Request<RequestBody>) -> Result<Response<ResponseBody>> {
        // A limit too large to add to now is no limit (and no panic).
        let deadline = self
            .timeout
            .and_then(|limit| Some((Instant::now().checked_add(limit)?, limit)));
        let uri = req.uri().clone();
        let head = self.head_retried(req);
        let resp = match deadline {
            None => head.await?,
            Some((at, limit)) => {
                tokio::time::timeout_at(at, head)
                    .await
                    .map_err(|_| Error::Timeout {
                        what: format!("the request to {}", redact(&uri.to_string())),
                        after: limit,
                    })??
            }
        };
        let (parts, body) = resp.into_parts();
        let body = ResponseBody::new(body, uri, self.idle_timeout, deadline);
        Ok(Response::from_parts(parts, body))
    }

    /// [`head`](Self::head), repeated as the retry policy for the method says.
    async fn head_retried(&self, req: Request<RequestBody>) -> Result<Response<Incoming>> {
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        let policy = self.retry.or(safe.then(RetryPolicy::api_get));
        let Some(policy) = policy.filter(|_| req.body().is_replayable()) else {
            return self.head(req).await;
        };
        let deadline = policy.deadline(self.timeout);
        let endpoint = redact(&req.uri().to_string());
        let mut attempt = 0;
        loop {
            let again = req.body().try_clone().map(|body| {
                let mut copy = Request::new(body);
                *copy.method_mut() = req.method().clone();
                *copy.uri_mut() = req.uri().clone();
                *copy.version_mut() = req.version();
                *copy.headers_mut() = req.headers().clone();
                copy
            });
            let Some(again) = again else {
                return self.head(req).await;
            };
            let result = self.head(again).await;
            let (retryable, retry_after) = match &result {
                Ok(resp) => (
                    is_retryable_status(resp.status().as_u16()),
                    retry_after(resp.headers()),
                ),
                // The API's own transport failures; a token refresh's were retried by its policy.
                Err(e) => (
                    matches!(e, Error::Transport { endpoint: ep, .. } if *ep == endpoint),
                    None,
                ),
            };
            let wait = retryable
                .then(|| policy.next(attempt, retry_after, deadline))
                .flatten();
            let Some(wait) = wait else { return result };
            tracing::debug!(
                attempt,
                ?wait,
                "API call failed for a passing reason, retrying"
            );
            tokio::time::sleep(wait).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// Sends the request (and its repeat after a `401`) up to the answer's head.
    async fn head(&self, req: Request<RequestBody>) -> Result<Response<Incoming>> {
        let (mut parts, body) = req.into_parts();
        check_endpoint(&parts.uri.to_string())?;
        if let Some(len) = body.len()
            && !body.is_replayable()
            && !parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            parts.headers.insert(header::CONTENT_LENGTH, len.into());
        }
        let auth = self.creds.auth().await?;
        let replay = body.try_clone().map(|body| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body,
        });
        let quota = self.creds.quota_project_header();
        auth.apply(&mut parts.headers, quota);
        let (body, progress) = body.into_hyper();
        let resp = self
            .until_head(Request::from_parts(parts, body), progress)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(replay) = replay else {
            tracing::debug!("401 from the API for a streamed body, which cannot be sent again");
            return Ok(resp);
        };
        // The token may have been revoked or rotated elsewhere: one retry with a fresh one.
        let Some(fresh) = self.creds.refresh_after(&auth).await else {
            return Ok(resp); // an API key: nothing to refresh
        };
        let fresh = fresh?;
        tracing::debug!("401 from the API, refreshed the token, retrying once");
        let mut req = Request::new(replay.body.into_hyper().0);
        *req.method_mut() = replay.method;
        *req.uri_mut() = replay.uri;
        *req.version_mut() = replay.version;
        *req.headers_mut() = replay.headers;
        fresh.apply(req.headers_mut(), quota);
        self.until_head(req, None).await
    }

    /// Sends `req` and waits for the answer's head. Connecting has its own
    /// limit; from then a peer silent for the idle limit fails the call,
    /// counted for an upload from its last byte handed over.
    async fn until_head(
        &self,
        mut req: Request<ReqBody>,
        progress: Option<Arc<SendProgress>>,
    ) -> Result<Response<Incoming>> {
        let idle = self.idle_timeout;
        let uri = req.uri().clone();
        let mut connected = capture_connection(&mut req);
        let sending = self.creds.settings().http.start(req);
        let stalled = async {
            // Resolves when the connection is made or taken from the pool.
            drop(connected.wait_for_connection_metadata().await);
            match progress {
                Some(progress) => {
                    progress.touch();
                    progress.stalled(idle).await
                }
                None => {
                    // A limit too large to add to now is no limit.
                    match Instant::now().checked_add(idle) {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                    true
                }
            }
        };
        tokio::select! {
            resp = sending => resp,
            body_sent = stalled => {
                let uri = redact(&uri.to_string());
                let what = if body_sent {
                    format!("waiting for the response head of {uri}")
                } else {
                    format!("sending the request body to {uri} (nothing sent)")
                };
                Err(Error::Timeout { what, after: idle })
            }
        }
    }

    /// `GET url`, the answer read whole.
    ///
    /// # Errors
    /// As [`AuthorizedClient::request`], and [`Error::ResponseTooLarge`]
    /// past [`MAX_BUFFERED_RESPONSE`].
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>> {
        self.send(Method::GET, url, None).await
    }

    /// `POST url` with a JSON body, the answer read whole.
    ///
    /// # Errors
    /// As [`AuthorizedClient::get`].
    pub async fn post_json(&self, url: &str, body: impl Into<Bytes>) -> Result<Response<Bytes>> {
        self.send(Method::POST, url, Some(body.into())).await
    }

    /// Sends a request with any method and an optional JSON body; the
    /// answer is read whole.
    ///
    /// # Errors
    /// As [`AuthorizedClient::get`].
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        json_body: Option<Bytes>,
    ) -> Result<Response<Bytes>> {
        let uri = check_endpoint(url)?;
        let is_json = json_body.is_some();
        let mut req = Request::new(RequestBody::from(json_body.unwrap_or_default()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        if is_json {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        let (parts, body) = self.request(req).await?.into_parts();
        let body = body.collect_bytes(MAX_BUFFERED_RESPONSE).await?;
        Ok(Response::from_parts(parts, body))
    }
}

/// What is needed to send a request again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: RequestBody,
}

/// The client's futures can be spawned on multi-threaded runtimes.
#[allow(dead_code)]
fn futures_are_send(client: &AuthorizedClient) {
    fn send<T: Send>(_: &T) {}
    send(&client.get(""));
    send(&client.post_json("", Bytes::new()));
    send(&client.request(Request::new(RequestBody::empty())));
}
