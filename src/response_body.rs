//! [`ResponseBody`]: the streaming body of an API answer, with the idle
//! limit between its pieces and the request's deadline.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyDataStream, BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};
use crate::url::redact;

/// The body of a response from [`AuthorizedClient::request`](crate::AuthorizedClient::request):
/// read as it arrives, never buffered whole unless asked
/// ([`collect_bytes`](Self::collect_bytes)).
///
/// It implements [`http_body::Body`] (`Data = Bytes`, `Error = gemini_oauth::Error`),
/// and [`into_stream`](Self::into_stream) turns it into a `Stream` of bytes.
/// Reading fails with [`Error::Timeout`] when no byte arrives within the
/// client's [idle limit](crate::AuthorizedClient::idle_timeout), or when the
/// request's [whole limit](crate::AuthorizedClient::timeout) (if set) passes.
pub struct ResponseBody {
    inner: Incoming,
    uri: Uri,
    idle: Idle,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
    done: bool,
}

/// One timer for the idle limit, moved only when it fires: the hot path
/// reads the clock and nothing else.
struct Idle {
    limit: Duration,
    /// Set the first time the answer makes us wait: a body that is already
    /// there (most JSON answers) never touches the timer.
    sleep: Option<Pin<Box<Sleep>>>,
    last_data: Instant,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("endpoint", &redact(&self.uri.to_string()))
            .field("idle_timeout", &self.idle.limit)
            .field("timeout", &self.deadline.as_ref().map(|(_, d)| d))
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(crate) fn new(
        inner: Incoming,
        uri: Uri,
        idle: Duration,
        deadline: Option<(Instant, Duration)>,
    ) -> Self {
        ResponseBody {
            inner,
            uri,
            idle: Idle {
                limit: idle,
                sleep: None,
                last_data: Instant::now(),
            },
            deadline: deadline.map(|(at, limit)| (Box::pin(tokio::time::sleep_until(at)), limit)),
            done: false,
        }
    }

    /// Reads the whole body into memory, refusing more than `limit` bytes.
    ///
    /// # Errors
    /// [`Error::ResponseTooLarge`] past `limit`; the errors of reading
    /// ([`Error::Transport`], [`Error::Timeout`]).
    pub async fn collect_bytes(self, limit: usize) -> Result<Bytes> {
        let uri = self.uri.clone();
        match Limited::new(self, limit).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) => match e.downcast::<Error>() {
                Ok(ours) => Err(*ours),
                Err(_) => Err(Error::ResponseTooLarge {
                    endpoint: redact(&uri.to_string()),
                    limit,
                }),
            },
        }
    }

    /// The body as a `Stream` of byte pieces, as they arrive (trailers are skipped).
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + Sync + Unpin + 'static {
        BodyDataStream::new(self)
    }

    fn timeout(&self, what: &str, after: Duration) -> Error {
        Error::Timeout {
            what: format!("{what} {}", redact(&self.uri.to_string())),
            after,
        }
    }
}

fn deadline_after(now: Instant, limit: Duration) -> Instant {
    // A limit too large to add means no limit; a year is as good.
    now.checked_add(limit)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.last_data = Instant::now();
                if frame.is_none() {
                    this.done = true;
                }
                return Poll::Ready(
                    frame.map(|f| {
                        f.map_err(|e| Error::transport(&redact(&this.uri.to_string()), e))
                    }),
                );
            }
            Poll::Pending => {}
        }
        if let Some((sleep, limit)) = &mut this.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let limit = *limit;
            this.done = true;
            return Poll::Ready(Some(Err(this.timeout("the request to", limit))));
        }
        let (limit, last_data) = (this.idle.limit, this.idle.last_data);
        let sleep = this.idle.sleep.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(deadline_after(last_data, limit)))
        });
        loop {
            ready!(sleep.as_mut().poll(cx));
            let due = deadline_after(last_data, limit);
            if due <= Instant::now() {
                this.done = true;
                return Poll::Ready(Some(Err(
                    this.timeout("waiting for the next bytes of the answer from", limit)
                )));
            }
            // Data came since the timer was set: wait for the rest of the limit.
            sleep.as_mut().reset(due);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
