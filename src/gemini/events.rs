//! [`ContentStream`]: the JSON chunks of an `alt=sse` answer, parsed by
//! `sse-stream` (CRLF or LF, multi-line `data:`, comments, events split
//! across network reads).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use serde_json::Value;
use sse_stream::SseByteStream;

use crate::api_error::ApiError;
use crate::error::{Error, Result};
use crate::response_body::ResponseBody;
use crate::url::redact;

/// Largest event: more without an event ending is not an answer chunk.
const MAX_EVENT: usize = 32 * 1024 * 1024;

type Input = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// The answer of [`stream_generate_content`](super::stream_generate_content):
/// a `Stream` of JSON chunks (`GenerateContentResponse`s), each as it arrives.
///
/// After an error the stream ends.
pub struct ContentStream {
    // A Mutex only to make the stream Sync: it is reached through `get_mut`, never locked.
    events: Mutex<Pin<Box<SseByteStream<Input>>>>,
    /// Bytes received since the last event (a bound on the parser's buffer).
    pending: Arc<AtomicUsize>,
    endpoint: String,
    done: bool,
}

impl fmt::Debug for ContentStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentStream")
            .field("endpoint", &self.endpoint)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ContentStream {
    pub(crate) fn new(body: ResponseBody, url: &str) -> Self {
        Self::from_chunks(body.into_stream(), url)
    }

    /// The events of a body that arrives as `chunks`.
    pub(crate) fn from_chunks(
        chunks: impl Stream<Item = Result<Bytes>> + Send + 'static,
        url: &str,
    ) -> Self {
        let endpoint = redact(url);
        let pending = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pending);
        let too_large = Error::EventStream {
            endpoint: endpoint.clone(),
            problem: format!("an event is larger than {MAX_EVENT} bytes"),
        };
        let input = chunks
            // A final event without its blank line is still an event (a cut
            // one then fails as JSON); without this the parser drops it.
            .chain(futures_util::stream::once(async {
                Ok(Bytes::from_static(b"\n\n"))
            }))
            .map(move |chunk| {
                let chunk = chunk?;
                let seen = counter
                    .fetch_add(chunk.len(), Ordering::Relaxed)
                    .saturating_add(chunk.len());
                if seen > MAX_EVENT {
                    return Err(too_large.clone());
                }
                Ok(chunk)
            });
        ContentStream {
            events: Mutex::new(Box::pin(SseByteStream::new(Box::pin(input) as Input))),
            pending,
            endpoint,
            done: false,
        }
    }

    fn malformed(&self, problem: String) -> Error {
        Error::EventStream {
            endpoint: self.endpoint.clone(),
            problem,
        }
    }

    /// One event's data as a chunk, an error event as [`Error::Api`].
    fn chunk(&self, data: &str) -> Result<Value> {
        let value: Value = serde_json::from_str(data).map_err(|e| {
            self.malformed(if e.is_eof() {
                "the stream ended in the middle of an event".to_owned()
            } else {
                // serde's message can quote the data; say where, not what.
                format!(
                    "an event's data is not JSON ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                )
            })
        })?;
        if let Some(error) = value.get("error") {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            return Err(Error::Api(ApiError::from_body(
                &self.endpoint,
                status,
                data.as_bytes(),
            )));
        }
        Ok(value)
    }
}

impl Stream for ContentStream {
    type Item = Result<Value>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Value>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let events = this.events.get_mut().unwrap_or_else(|p| p.into_inner());
            let item = ready!(events.as_mut().poll_next(cx));
            let result = match item {
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Some(Err(sse_stream::Error::Body(e))) => Err(match e.downcast::<Error>() {
                    Ok(ours) => *ours,
                    Err(other) => this.malformed(format!("the body failed: {other}")),
                }),
                Some(Err(sse_stream::Error::Utf8Parse(_))) => {
                    Err(this.malformed("an event is not valid UTF-8".to_owned()))
                }
                Some(Err(_)) => Err(this.malformed("an event could not be parsed".to_owned())),
                Some(Ok(event)) => {
                    this.pending.store(0, Ordering::Relaxed);
                    match event.data {
                        Some(data) if !data.trim().is_empty() => this.chunk(&data),
                        // Comments, ids, keep-alives: nothing to hand on.
                        _ => continue,
                    }
                }
            };
            this.done = result.is_err();
            return Poll::Ready(Some(result));
        }
    }
}
