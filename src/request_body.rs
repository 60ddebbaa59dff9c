//! [`RequestBody`]: what [`AuthorizedClient::request`](crate::AuthorizedClient::request)
//! sends: bytes (which can be sent again after a `401`) or a stream (sent once).

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::TryStreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::http::ReqBody;
use crate::regular_file::{self, NotOpened};

/// Size of the pieces a file is read in.
const FILE_CHUNK: usize = 64 * 1024;

type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The body of a request: bytes, or a stream of bytes read as it is sent.
///
/// Bytes can be replayed, so the client repeats such a request once with a
/// new token after a `401`. A stream is read once: the first `401` is
/// returned as it is.
///
/// ```
/// use gemini_oauth::RequestBody;
/// let json = RequestBody::from(r#"{"contents": []}"#);
/// assert!(json.is_replayable());
/// let stream = RequestBody::from_stream(
///     futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"abc"))]),
///     Some(3),
/// );
/// assert_eq!(stream.len(), Some(3));
/// assert!(!stream.is_replayable());
/// ```
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    Bytes(Bytes),
    // A Mutex only to make the body Sync: it is reached through `get_mut`, never locked.
    Stream {
        stream: Mutex<ByteStream>,
        len: Option<u64>,
    },
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the content: it can be anything the caller sends.
        let mut d = f.debug_struct("RequestBody");
        match &self.kind {
            Kind::Bytes(b) => d.field("bytes", &b.len()),
            Kind::Stream { len, .. } => d.field("stream_len", len),
        };
        d.finish()
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::empty()
    }
}

impl RequestBody {
    /// No body.
    #[must_use]
    pub fn empty() -> Self {
        Bytes::new().into()
    }

    /// A body read from `stream` while it is sent. With `len`, the request
    /// carries `Content-Length: len` (unless the caller set one) and the
    /// stream must yield exactly that many bytes; without it, HTTP/1.1 sends
    /// it chunked.
    #[must_use]
    pub fn from_stream<S>(stream: S, len: Option<u64>) -> Self
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        RequestBody {
            kind: Kind::Stream {
                stream: Mutex::new(Box::pin(stream)),
                len,
            },
        }
    }

    /// A body streamed from an open file, from its current position, in
    /// 64 KiB pieces; never read whole into memory. `len` as in
    /// [`RequestBody::from_stream`].
    #[must_use]
    pub fn from_file(file: tokio::fs::File, len: Option<u64>) -> Self {
        Self::from_stream(
            tokio_util::io::ReaderStream::with_capacity(file, FILE_CHUNK),
            len,
        )
    }

    /// The regular file at `path`, streamed, with its size as `Content-Length`.
    ///
    /// Opened without waiting: a FIFO is refused at once, never waited on
    /// for a writer. For a pipe or a device, open it yourself and pass it to
    /// [`RequestBody::from_file`] with no length.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or its size read;
    /// [`Error::NotAFile`] when `path` is a directory, a FIFO or a device.
    pub async fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let (file, len) = open_sized(path.as_ref()).await?;
        Ok(Self::from_file(file, Some(len)))
    }

    /// The length in bytes, when known.
    #[must_use]
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes(b) => Some(b.len() as u64),
            Kind::Stream { len, .. } => *len,
        }
    }

    /// Whether the body is known to be empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Whether the body can be sent again (bytes can, streams cannot).
    #[must_use]
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Bytes(_))
    }

    /// A copy that can be sent again, for bytes; `None` for a stream.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Bytes(b) => Some(b.clone().into()),
            Kind::Stream { .. } => None,
        }
    }

    /// The body as hyper sends it, and for a stream what tells when it
    /// last handed hyper some bytes.
    pub(crate) fn into_hyper(self) -> (ReqBody, Option<Arc<SendProgress>>) {
        match self.kind {
            Kind::Bytes(b) => (
                Full::new(b).map_err(|never| match never {}).boxed_unsync(),
                None,
            ),
            Kind::Stream { stream, len } => {
                // A poisoned lock still holds the stream: nothing panics while it is held.
                let mut stream = stream.into_inner().unwrap_or_else(|p| p.into_inner());
                let progress = Arc::new(SendProgress::new());
                let seen = Arc::clone(&progress);
                // Why: with a Content-Length, hyper's HTTP/1 sends the last
                // byte and never asks for the stream's end: the body is
                // done once `len` bytes went (else a wait for the head
                // would be reported as a stalled send).
                let mut left = len;
                if len == Some(0) {
                    progress.finish();
                }
                let watched = futures_util::stream::poll_fn(move |cx| {
                    let next = stream.as_mut().poll_next(cx);
                    match &next {
                        Poll::Ready(Some(Ok(piece))) => {
                            let piece = u64::try_from(piece.len()).unwrap_or(u64::MAX);
                            left = left.map(|n| n.saturating_sub(piece));
                            match left {
                                Some(0) => seen.finish(),
                                _ => seen.touch(),
                            }
                        }
                        Poll::Ready(_) => seen.finish(),
                        Poll::Pending => {}
                    }
                    next
                });
                let body = StreamBody::new(watched.map_ok(Frame::data).map_err(Into::into));
                (body.boxed_unsync(), Some(progress))
            }
        }
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody {
            kind: Kind::Bytes(bytes),
        }
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for RequestBody {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for RequestBody {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for RequestBody {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

impl From<()> for RequestBody {
    fn from((): ()) -> Self {
        RequestBody::empty()
    }
}

/// When a streamed body last handed bytes to hyper. hyper asks for more only
/// as the connection takes them, so this stalls both when the stream has
/// nothing to give and when the peer stops reading.
#[derive(Debug)]
pub(crate) struct SendProgress {
    last: Mutex<Instant>,
    done: AtomicBool,
}

impl SendProgress {
    fn new() -> Self {
        SendProgress {
            last: Mutex::new(Instant::now()),
            done: AtomicBool::new(false),
        }
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn finish(&self) {
        self.touch();
        self.done.store(true, Ordering::Relaxed);
    }

    /// Resolves once `idle` passes with no bytes handed over: `false` while
    /// the body is being sent, `true` once it has ended (then the wait is for
    /// the answer's head, from the last byte sent).
    pub(crate) async fn stalled(&self, idle: Duration) -> bool {
        loop {
            let done = self.done.load(Ordering::Relaxed);
            // A limit too large to add is no limit.
            let Some(at) = self.last().checked_add(idle) else {
                return std::future::pending().await;
            };
            if Instant::now() >= at {
                return done;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

/// The regular file at `path`, opened without waiting on a FIFO, and its size.
async fn open_sized(path: &Path) -> Result<(tokio::fs::File, u64)> {
    match regular_file::spawn_open(path).await {
        Ok((file, len)) => Ok((tokio::fs::File::from_std(file), len)),
        Err(NotOpened::Io { action, source }) => Err(Error::io(action, path, source)),
        Err(NotOpened::NotRegular(kind)) => Err(Error::NotAFile {
            path: path.to_owned(),
            kind,
        }),
    }
}
