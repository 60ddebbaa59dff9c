//! The blocking API's runtime: a current-thread tokio runtime on a thread
//! of its own, as reqwest's blocking client has. Callers hand it futures and
//! wait on a channel; it stops when the last handle to it is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll, Waker};

use tokio::sync::mpsc;

use crate::error::{Error, Result};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A handle to the runtime thread. Dropping the last one ends the thread
/// (without waiting for it, so a drop never blocks).
#[derive(Debug)]
pub(super) struct Runtime {
    jobs: mpsc::UnboundedSender<Job>,
    handle: tokio::runtime::Handle,
}

/// Blocking inside a runtime would stall its thread (or deadlock a
/// current-thread runtime): refuse, with an error saying what to do.
pub(super) fn refuse_inside_runtime(what: &'static str) -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::BlockingInAsync { what }),
        Err(_) => Ok(()),
    }
}

impl Runtime {
    /// Starts the runtime and its thread.
    pub(super) fn start(what: &'static str) -> Result<Self> {
        refuse_inside_runtime(what)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("gemini-oauth-blocking")
            .build()
            .map_err(|e| Error::BlockingRuntime {
                problem: format!("could not be built: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("gemini-oauth-blocking".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| Error::BlockingRuntime {
                problem: format!("could not start its thread: {e}"),
            })?;
        Ok(Runtime { jobs, handle })
    }

    /// Runs `fut` to completion and returns its output. A future that is
    /// ready at once (a cached token) is polled here, inside the runtime's
    /// context, without a trip to its thread; otherwise it finishes there.
    ///
    /// # Errors
    /// [`Error::BlockingInAsync`] inside an async runtime;
    /// [`Error::BlockingRuntime`] if the runtime stopped; `fut`'s own errors.
    pub(super) fn block_on<T: Send + 'static>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        refuse_inside_runtime(what)?;
        let mut fut = Box::pin(fut);
        {
            let _context = self.handle.enter();
            if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                return out;
            }
        }
        let (tx, rx) = std_mpsc::sync_channel(1);
        let job: Job = Box::pin(async move {
            let _ = tx.send(fut.await);
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        // A job that panicked or was dropped drops `tx`: an error, not a hang.
        rx.recv().map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::BlockingRuntime {
        problem: "stopped before the call completed".into(),
    }
}
