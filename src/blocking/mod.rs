//! The blocking API (feature `blocking`): credentials for synchronous code
//! (CLIs, build scripts, `main` without `async`), used as Python's
//! `load_creds()` is.
//!
//! ```no_run
//! # fn main() -> gemini_oauth::Result<()> {
//! let creds = gemini_oauth::blocking::load_creds()?; // ./client_secret.json, ./token.json
//! let headers = creds.headers()?;                    // for ureq, a blocking reqwest, …
//! # let _ = headers; Ok(()) }
//! ```
//!
//! Each [`Credentials`] (and its clones) drives a current-thread tokio
//! runtime on a thread of its own, as reqwest's blocking client does: the
//! background refresh, the consent flow's listener and the HTTP pool live
//! there. A cached token is served on the caller's thread without a trip
//! to it.
//!
//! Called from inside a tokio runtime (an async task, `block_on`, or
//! `spawn_blocking`), every function here returns
//! [`Error::BlockingInAsync`](crate::Error::BlockingInAsync): blocking
//! there would stall the runtime, or deadlock a current-thread one. Use the
//! async API in async code.

mod runtime;

use std::fmt;
use std::sync::Arc;

use runtime::Runtime;

use crate::access_token::AccessToken;
use crate::error::Result;
use crate::loader::CredentialLoader;
use crate::loader::kind::{ApiKey, ApplicationDefault, FixedToken, UserFlow};

/// [`crate::Credentials`] with blocking methods. Cheap to clone; clones
/// share the token cache and the runtime thread, which ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Credentials {
    creds: crate::Credentials,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Credentials")
            .field(&self.creds)
            .finish()
    }
}

/// Loads credentials with the quickstart's defaults, blocking: the same as
/// [`crate::load_creds`] (`./client_secret.json`, `./token.json`, the
/// browser consent flow when needed).
///
/// # Errors
/// [`Error::BlockingInAsync`](crate::Error::BlockingInAsync) inside an
/// async runtime; otherwise as [`CredentialLoader::load`].
pub fn load_creds() -> Result<Credentials> {
    CredentialLoader::new().load_blocking()
}

impl Credentials {
    /// Blocking methods for `creds`, on a runtime thread of their own.
    ///
    /// # Errors
    /// [`Error::BlockingInAsync`](crate::Error::BlockingInAsync) inside an
    /// async runtime; [`Error::BlockingRuntime`](crate::Error::BlockingRuntime)
    /// when the thread cannot be started.
    pub fn new(creds: crate::Credentials) -> Result<Self> {
        Ok(Credentials {
            creds,
            runtime: Arc::new(Runtime::start("blocking::Credentials::new")?),
        })
    }

    fn load(
        what: &'static str,
        load: impl Future<Output = Result<crate::Credentials>> + Send + 'static,
    ) -> Result<Self> {
        let runtime = Runtime::start(what)?;
        let creds = runtime.block_on(what, load)?;
        Ok(Credentials {
            creds,
            runtime: Arc::new(runtime),
        })
    }

    /// A valid access token, as [`crate::Credentials::access_token`].
    ///
    /// # Errors
    /// [`Error::BlockingInAsync`](crate::Error::BlockingInAsync) inside an
    /// async runtime; otherwise as [`crate::Credentials::access_token`].
    pub fn access_token(&self) -> Result<AccessToken> {
        let creds = self.creds.clone();
        self.runtime
            .block_on("blocking::Credentials::access_token", async move {
                creds.access_token().await
            })
    }

    /// The headers for a Google API request, as [`crate::Credentials::headers`].
    ///
    /// # Errors
    /// As [`Credentials::access_token`], except that API keys succeed.
    pub fn headers(&self) -> Result<http::HeaderMap> {
        let creds = self.creds.clone();
        self.runtime
            .block_on("blocking::Credentials::headers", async move {
                creds.headers().await
            })
    }

    /// A new access token now, as [`crate::Credentials::force_refresh`].
    ///
    /// # Errors
    /// As [`crate::Credentials::force_refresh`], and
    /// [`Error::BlockingInAsync`](crate::Error::BlockingInAsync).
    pub fn force_refresh(&self) -> Result<AccessToken> {
        let creds = self.creds.clone();
        self.runtime
            .block_on("blocking::Credentials::force_refresh", async move {
                creds.force_refresh().await
            })
    }

    /// Signs out, as [`crate::Credentials::revoke`].
    ///
    /// # Errors
    /// As [`crate::Credentials::revoke`], and
    /// [`Error::BlockingInAsync`](crate::Error::BlockingInAsync).
    pub fn revoke(&self) -> Result<()> {
        let creds = self.creds.clone();
        self.runtime
            .block_on("blocking::Credentials::revoke", async move {
                creds.revoke().await
            })
    }

    /// The async credentials inside, for async code (a clone shares the
    /// token cache).
    #[must_use]
    pub fn as_async(&self) -> &crate::Credentials {
        &self.creds
    }

    /// The project billed for API calls (`x-goog-user-project`), if any.
    #[must_use]
    pub fn quota_project(&self) -> Option<&str> {
        self.creds.quota_project()
    }

    /// Where the credentials came from.
    #[must_use]
    pub fn source(&self) -> String {
        self.creds.source()
    }
}

macro_rules! load_blocking {
    ($($kind:ty),*) => {$(
        impl CredentialLoader<$kind> {
            /// [`load`](Self::load), blocking: for synchronous code. The
            /// credentials keep a runtime thread of their own (see
            /// [`blocking`](crate::blocking)).
            ///
            /// # Errors
            /// [`Error::BlockingInAsync`](crate::Error::BlockingInAsync)
            /// inside an async runtime; otherwise as [`load`](Self::load).
            pub fn load_blocking(self) -> Result<Credentials> {
                Credentials::load("CredentialLoader::load_blocking", self.load())
            }
        }
    )*};
}

load_blocking!(UserFlow, ApplicationDefault, ApiKey, FixedToken);
