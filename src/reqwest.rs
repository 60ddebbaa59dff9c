//! [`AuthMiddleware`] (feature `reqwest`): our credentials in a
//! [`reqwest_middleware`] stack, for programs built on reqwest, and
//! [`redirect_policy`], which keeps them from following a redirect to
//! another origin.

use ::reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use ::reqwest::{Method, Request, Response, StatusCode, Url, redirect};
use ::reqwest_middleware::{Error as MiddlewareError, Middleware, Next};
use http::Extensions;

use crate::credentials::Credentials;

/// Most redirects followed for one request, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// Headers that never go to another origin: ours (the token, the API key,
/// and the quota project, which names the user's project) and what reqwest
/// itself drops.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "x-goog-api-key",
    "x-goog-user-project",
    "cookie",
    "proxy-authorization",
];

/// A reqwest redirect policy for clients that carry [`AuthMiddleware`]:
/// redirects within one origin (scheme, host and port) are followed, up to
/// 10, as reqwest's default does; a redirect to another origin is left to
/// the middleware, which follows it without our headers.
///
/// reqwest's default policy drops `Authorization` on such a redirect but
/// carries `x-goog-api-key` and `x-goog-user-project` to the other host:
/// build the client with this policy.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let creds = gemini_oauth::load_creds().await?;
/// let reqwest = reqwest::Client::builder()
///     .redirect(gemini_oauth::reqwest::redirect_policy())
///     .build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest)
///     .with(gemini_oauth::reqwest::AuthMiddleware::new(creds))
///     .build();
/// # let _ = client; Ok(()) }
/// ```
#[must_use]
pub fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let cross = attempt
            .previous()
            .last()
            .is_some_and(|prev| !same_origin(prev, attempt.url()));
        if cross {
            attempt.stop()
        // `previous` starts with the first URL, which is no redirect.
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Where a redirect that leaves `resp`'s origin points, if it is one.
fn cross_origin_location(resp: &Response) -> Option<Url> {
    // The statuses reqwest follows; a 304 or a 300 is an answer, not a redirect.
    if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = resp.headers().get(LOCATION)?.to_str().ok()?;
    let next = resp.url().join(location).ok()?;
    (matches!(next.scheme(), "http" | "https") && !same_origin(resp.url(), &next)).then_some(next)
}

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: Bearer …`
/// (or `x-goog-api-key` for an API key) and, when set, `x-goog-user-project`
/// to every request, replacing headers of those names that the request
/// already has. After a `401` it refreshes the token once (one refresh
/// shared by every request that saw the same token rejected, as the
/// authorized client does) and repeats the request, when its body can be
/// cloned (not a stream); otherwise the `401` is returned as it is.
///
/// A redirect to another origin (scheme, host or port) that reaches the
/// middleware is followed (up to 10 times) without `Authorization`,
/// `x-goog-api-key`, `x-goog-user-project` and cookies, when the body can be
/// cloned; [`follow_redirects(false)`](Self::follow_redirects) returns it
/// instead. Build the reqwest client with [`redirect_policy`] so that such
/// redirects reach the middleware: reqwest's default policy follows them
/// itself, carrying `x-goog-api-key`.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let creds = gemini_oauth::load_creds().await?;
/// let reqwest = reqwest::Client::builder()
///     .redirect(gemini_oauth::reqwest::redirect_policy())
///     .build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest)
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
    follow_redirects: bool,
}

impl AuthMiddleware {
    /// A middleware authenticating with `creds` (a clone shares its token cache).
    pub fn new(creds: Credentials) -> Self {
        AuthMiddleware {
            creds,
            follow_redirects: true,
        }
    }

    /// Whether to follow a redirect to another origin (without our headers)
    /// or return it to the caller; default: follow.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
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
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // Taken before our headers go in: what a redirect elsewhere is built from.
        let mut template = self.follow_redirects.then(|| req.try_clone()).flatten();
        let mut resp = self.authorized(req, extensions, next.clone()).await?;
        for _ in 0..MAX_REDIRECTS {
            let Some(url) = cross_origin_location(&resp) else {
                break;
            };
            let Some(mut req) = template.as_ref().and_then(Request::try_clone) else {
                break;
            };
            let status = resp.status();
            // As browsers and reqwest: 303, and 301/302 after a POST, become a GET without body.
            if status == StatusCode::SEE_OTHER && req.method() != Method::HEAD
                || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && req.method() == Method::POST
            {
                *req.method_mut() = Method::GET;
                *req.body_mut() = None;
                req.headers_mut().remove(CONTENT_TYPE);
                req.headers_mut().remove(CONTENT_LENGTH);
            }
            *req.url_mut() = url;
            for name in CREDENTIAL_HEADERS {
                req.headers_mut().remove(name);
            }
            tracing::debug!("following a redirect to another origin without our credentials");
            template = req.try_clone();
            drop(resp);
            resp = next.clone().run(req, extensions).await?;
        }
        Ok(resp)
    }
}

impl AuthMiddleware {
    /// The request with our headers, and its repeat after a `401`.
    async fn authorized(
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
