//! [`AuthMiddleware`] (feature `reqwest`): our credentials in a
//! [`reqwest_middleware`] stack, for programs built on reqwest.

use ::reqwest::{Request, Response, StatusCode};
use ::reqwest_middleware::{Error as MiddlewareError, Middleware, Next};
use http::Extensions;

use crate::credentials::Credentials;

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: Bearer …`
/// (or `x-goog-api-key` for an API key) and, when set, `x-goog-user-project`
/// to every request, replacing headers of those names that the request
/// already has. After a `401` it refreshes the token once (one refresh
/// shared by every request that saw the same token rejected, as the
/// authorized client does) and repeats the request, when its body can be
/// cloned (not a stream); otherwise the `401` is returned as it is.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let creds = gemini_oauth::load_creds().await?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(gemini_oauth::reqwest::AuthMiddleware::new(creds))
///     .build();
/// let models = client
///     .get("https://generativelanguage.googleapis.com/v1/models")
///     .send()
///     .await?;
/// # let _ = models; Ok(()) }
/// ```
///
/// Token errors reach the caller as
/// [`reqwest_middleware::Error::Middleware`], holding a
/// [`gemini_oauth::Error`](crate::Error) (`downcast_ref` finds it).
#[derive(Clone, Debug)]
#[must_use = "add it to a client with reqwest_middleware::ClientBuilder::with"]
pub struct AuthMiddleware {
    creds: Credentials,
}

impl AuthMiddleware {
    /// A middleware authenticating with `creds` (a clone shares its token cache).
    pub fn new(creds: Credentials) -> Self {
        AuthMiddleware { creds }
    }

    /// The credentials behind this middleware.
    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }
}

impl From<Credentials> for AuthMiddleware {
    fn from(creds: Credentials) -> Self {
        AuthMiddleware::new(creds)
    }
}

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let quota = self.creds.quota_project_header();
        let auth = self
            .creds
            .auth()
            .await
            .map_err(MiddlewareError::middleware)?;
        auth.apply(req.headers_mut(), quota);
        // A streamed body cannot be sent twice: then there is no retry.
        let replay = req.try_clone();
        let resp = next.clone().run(req, extensions).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(mut replay) = replay else {
            return Ok(resp);
        };
        // An API key cannot be refreshed: the 401 is the answer.
        let Some(fresh) = self.creds.refresh_after(&auth).await else {
            return Ok(resp);
        };
        let fresh = fresh.map_err(MiddlewareError::middleware)?;
        tracing::debug!("401 from the API, refreshing the token and retrying once");
        drop(resp);
        fresh.apply(replay.headers_mut(), quota);
        next.run(replay, extensions).await
    }
}
