//! The Files API's resumable protocol after `start`: the file in chunks at
//! offsets, and after a failure `query` and the rest in the same session.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};

use super::problem::UploadProblem;
use super::read_ahead::{PIECE, ReadAhead};
use crate::api_error::ApiError;
use crate::client::AuthorizedClient;
use crate::error::{Error, Result};
use crate::request_body::RequestBody;
use crate::retry::{RetryPolicy, is_retryable_status, retry_after};

/// Chunks other than the last are multiples of this, as the protocol requires.
pub(super) const GRANULARITY: u64 = 256 * 1024;
/// Largest answer of the upload endpoints (a `File` resource).
pub(super) const MAX_ANSWER: usize = 1024 * 1024;

pub(super) const UPLOAD_COMMAND: HeaderName = HeaderName::from_static("x-goog-upload-command");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("x-goog-upload-offset");
const UPLOAD_STATUS: HeaderName = HeaderName::from_static("x-goog-upload-status");
const SIZE_RECEIVED: HeaderName = HeaderName::from_static("x-goog-upload-size-received");

/// The caller's progress callback: bytes sent, total.
pub(super) type OnProgress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// One upload session: its URL, the file, and how to recover.
pub(super) struct Session<'a> {
    pub(super) client: &'a AuthorizedClient,
    pub(super) url: Uri,
    pub(super) path: &'a Path,
    /// The file, opened once: a chunk after a failed one reads it too,
    /// never the path, which may name another file by now.
    pub(super) file: Arc<std::fs::File>,
    pub(super) size: u64,
    pub(super) chunk: u64,
    pub(super) policy: RetryPolicy,
    pub(super) on_progress: Option<OnProgress>,
}

/// What the server says of the session.
enum Answer {
    /// The upload is complete: the answer's status and body (the `File`).
    Final(u16, Bytes),
    /// The server holds this many bytes and waits for the rest.
    Active(u64),
}

/// A failed request, and whether the session may go on after a `query`.
struct Fail {
    error: Error,
    retry_after: Option<Duration>,
    retryable: bool,
}

impl From<Error> for Fail {
    fn from(error: Error) -> Self {
        let retryable = error.is_transient();
        Fail {
            error,
            retry_after: None,
            retryable,
        }
    }
}

/// How far the upload got, shown to the caller without ever going back.
struct Progress {
    total: u64,
    shown: AtomicU64,
    on_progress: Option<OnProgress>,
    /// The file's size changed, and at which byte that was seen.
    changed: AtomicBool,
    read: AtomicU64,
}

/// Why one chunk's body could not read the file: an error of the file, not
/// of the connection the chunk was going over. One per chunk, so a body
/// hyper still sends after its early answer cannot fail a later request.
#[derive(Clone, Default)]
struct Unreadable(Arc<Mutex<Option<io::Error>>>);

impl Unreadable {
    /// Keeps `error` for the caller and ends the chunk's body.
    fn keep(&self, error: io::Error) -> io::Result<Bytes> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get_or_insert(error);
        Err(io::Error::other("the file could not be read"))
    }

    fn take(&self) -> Option<io::Error> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.take()
    }
}

impl Progress {
    fn show(&self, at: u64) {
        let before = self.shown.fetch_max(at, Ordering::Relaxed);
        if at > before
            && let Some(f) = &self.on_progress
        {
            f(at, self.total);
        }
    }
}

impl Session<'_> {
    /// Sends the file and returns the final answer's status and body.
    pub(super) async fn run(&self) -> Result<(u16, Bytes)> {
        let progress = Arc::new(Progress {
            total: self.size,
            shown: AtomicU64::new(0),
            on_progress: self.on_progress.clone(),
            changed: AtomicBool::new(false),
            read: AtomicU64::new(0),
        });
        let handoff = Handoff::default();
        let mut offset = 0;
        // Rounds of recovery since the server last took a byte more.
        let mut stalled = 0;
        let mut deadline = None;
        loop {
            let sent = self.send_chunk(offset, &progress, &handoff).await;
            if progress.changed.load(Ordering::Relaxed) {
                return Err(Error::Upload(UploadProblem::SizeChanged {
                    path: self.path.to_owned(),
                    announced: self.size,
                    sent: progress.read.load(Ordering::Relaxed),
                }));
            }
            let mut fail = match sent {
                Ok(Answer::Final(status, body)) => return Ok(self.finish(status, body, &progress)),
                Ok(Answer::Active(received)) if received > offset => {
                    offset = received;
                    progress.show(offset);
                    stalled = 0;
                    continue;
                }
                Ok(Answer::Active(_)) => Fail {
                    error: self.problem("took none of the chunk"),
                    retry_after: None,
                    retryable: true,
                },
                Err(fail) => fail,
            };
            // Why: without a deadline a server's Retry-After (a day, a year)
            // was slept out whole. Each recovery, from its first failure
            // since the server last took more, keeps to `max_elapsed`.
            if stalled == 0 {
                deadline = self.policy.deadline(None);
            }
            // Ask the server what it holds, until it answers or the policy is spent.
            loop {
                let wait = match fail.retryable {
                    true => self.policy.next(stalled, fail.retry_after, deadline),
                    false => None,
                };
                let Some(wait) = wait else {
                    return Err(fail.error);
                };
                tracing::debug!(offset, attempt = stalled, ?wait, error = %fail.error, "upload interrupted, asking the server how far it got");
                tokio::time::sleep(wait).await;
                stalled = stalled.saturating_add(1);
                match self.query().await {
                    Ok(Answer::Final(status, body)) => {
                        return Ok(self.finish(status, body, &progress));
                    }
                    Ok(Answer::Active(received)) => {
                        if received > offset {
                            stalled = 0;
                        }
                        offset = received;
                        progress.show(offset);
                        break;
                    }
                    Err(again) => fail = again,
                }
            }
        }
    }

    fn finish(&self, status: u16, body: Bytes, progress: &Progress) -> (u16, Bytes) {
        let behind = progress.shown.swap(self.size, Ordering::Relaxed) < self.size;
        if (behind || self.size == 0)
            && let Some(f) = &progress.on_progress
        {
            f(self.size, self.size);
        }
        (status, body)
    }

    fn problem(&self, problem: &str) -> Error {
        Error::Upload(UploadProblem::Protocol {
            path: self.path.to_owned(),
            problem: problem.to_owned(),
        })
    }

    fn request(&self, command: &'static str, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.url.clone();
        req.headers_mut()
            .insert(UPLOAD_COMMAND, HeaderValue::from_static(command));
        req
    }

    /// `upload` (or `upload, finalize` for the last) of the chunk at `offset`.
    async fn send_chunk(
        &self,
        offset: u64,
        progress: &Arc<Progress>,
        handoff: &Handoff,
    ) -> Result<Answer, Fail> {
        let len = self.chunk.min(self.size.saturating_sub(offset));
        let last = offset.saturating_add(len) >= self.size;
        let left = handoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // None after a chunk whose body was dropped unfinished (a dropped
        // connection, an answer before the whole body was read).
        let reader = left.unwrap_or_else(|| ReadAhead::new(Arc::clone(&self.file)));
        let handoff = Arc::clone(handoff);
        let unreadable = Unreadable::default();
        let body = chunk_body(
            reader,
            offset,
            len,
            last,
            Arc::clone(progress),
            handoff,
            unreadable.clone(),
        );
        let command = if last { "upload, finalize" } else { "upload" };
        let mut req = self.request(command, body);
        req.headers_mut().insert(UPLOAD_OFFSET, offset.into());
        let resp = match self.client.request(req).await {
            Ok(resp) => resp,
            Err(error) => {
                return Err(match unreadable.take() {
                    // The file failed, not the connection: no retry reads it better.
                    Some(io) => Fail {
                        error: Error::io("read", self.path, io),
                        retry_after: None,
                        retryable: false,
                    },
                    None => error.into(),
                });
            }
        };
        self.answer(resp, Some(offset.saturating_add(len)), last)
            .await
    }

    /// `query`: how many bytes the server holds, or its final answer.
    async fn query(&self) -> Result<Answer, Fail> {
        let resp = self
            .client
            .request(self.request("query", RequestBody::empty()))
            .await?;
        self.answer(resp, None, false).await
    }

    /// Reads an answer; `sent_to` is where the session stands if the chunk
    /// just sent was taken whole (none for a `query`).
    async fn answer(
        &self,
        resp: http::Response<crate::response_body::ResponseBody>,
        sent_to: Option<u64>,
        finalizing: bool,
    ) -> Result<Answer, Fail> {
        let status = resp.status().as_u16();
        let header = |name: HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_ascii_lowercase())
        };
        let upload_status = header(UPLOAD_STATUS);
        let received = header(SIZE_RECEIVED);
        let wait = retry_after(resp.headers());
        let body = resp.into_body().collect_bytes(MAX_ANSWER).await?;
        // 308: the server took part of what was sent; ask how much.
        if status == 308 || !(200..300).contains(&status) {
            let url = self.url.to_string();
            return Err(Fail {
                error: Error::Api(ApiError::from_body(&url, status, &body)),
                retry_after: wait,
                retryable: status == 308 || is_retryable_status(status),
            });
        }
        let received = match received.map(|r| r.parse::<u64>()) {
            Some(Ok(n)) if n <= self.size => Some(n),
            Some(_) => {
                return Err(self
                    .problem(
                        "gives an x-goog-upload-size-received that is not a size within the file",
                    )
                    .into());
            }
            None => None,
        };
        match (upload_status.as_deref(), received.or(sent_to)) {
            (Some("final"), _) => Ok(Answer::Final(status, body)),
            (None, _) if finalizing => Ok(Answer::Final(status, body)),
            (Some("active") | None, Some(at)) => Ok(Answer::Active(at)),
            (Some("active") | None, None) => Err(self
                .problem("to a query lacks x-goog-upload-size-received")
                .into()),
            (Some(other), _) => Err(Error::Upload(UploadProblem::Ended {
                path: self.path.to_owned(),
                status: other.chars().take(40).collect(),
            })
            .into()),
        }
    }
}

/// The reader the last chunk's body left behind, its next piece already
/// being read, for the next chunk to go on with.
type Handoff = Arc<Mutex<Option<ReadAhead>>>;

/// `len` bytes of the file from `offset`, read in pieces as they are sent,
/// failing (rather than sending a different file) when the file is shorter;
/// the last chunk also fails when the file is longer, before its last piece
/// is handed on, so the server never finalizes a file that changed.
fn chunk_body(
    reader: ReadAhead,
    offset: u64,
    len: u64,
    last: bool,
    progress: Arc<Progress>,
    handoff: Handoff,
    unreadable: Unreadable,
) -> RequestBody {
    let state = (Some(reader), 0u64);
    let stream = futures_util::stream::unfold(state, move |(reader, done)| {
        let progress = Arc::clone(&progress);
        let handoff = Arc::clone(&handoff);
        let unreadable = unreadable.clone();
        async move {
            let mut reader = reader?;
            if done == len {
                return None;
            }
            let changed = |what: &str, at: u64| {
                progress.changed.store(true, Ordering::Relaxed);
                progress.read.store(at, Ordering::Relaxed);
                Err(io::Error::other(format!(
                    "the file {what} while it was uploaded"
                )))
            };
            let at = offset.saturating_add(done);
            let want = PIECE.min(len.saturating_sub(done));
            let mut piece = match reader.piece(at).await {
                Ok(piece) => piece,
                Err(e) => return Some((unreadable.keep(e), (None, done))),
            };
            if (piece.len() as u64) < want {
                return Some((changed("shrank", at), (None, done)));
            }
            let beyond = piece.len() as u64 > want;
            piece.truncate(want as usize);
            let done = done.saturating_add(want);
            if done == len && last {
                // Why the size too: the last piece may have been read ahead,
                // while the piece before it was sent; a file cut short since
                // reads nothing at `end`, as a file that kept its size does.
                let end = offset.saturating_add(done);
                let more = match beyond {
                    true => Ok(true),
                    false => reader.piece(end).await.map(|p| !p.is_empty()),
                };
                let size = reader.size().await;
                match (more, size) {
                    (Err(e), _) | (_, Err(e)) => {
                        return Some((unreadable.keep(e), (None, done)));
                    }
                    (Ok(true), _) => {
                        return Some((changed("grew", end.saturating_add(1)), (None, done)));
                    }
                    (Ok(false), Ok(now)) if now < end => {
                        return Some((changed("shrank", now), (None, done)));
                    }
                    (Ok(false), Ok(now)) if now > end => {
                        return Some((changed("grew", end.saturating_add(1)), (None, done)));
                    }
                    (Ok(false), Ok(_)) => {}
                }
            }
            progress.show(offset.saturating_add(done));
            if done == len {
                // The next chunk starts here, with the piece read ahead.
                *handoff.lock().unwrap_or_else(PoisonError::into_inner) = Some(reader);
                return Some((Ok(piece), (None, done)));
            }
            Some((Ok(piece), (Some(reader), done)))
        }
    });
    RequestBody::from_stream(stream, Some(len))
}

#[cfg(test)]
mod tests;
