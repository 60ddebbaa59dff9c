//! [`AuthLayer`] (feature `tower`): our credentials as a [`tower_layer::Layer`],
//! for any client that is a tower service over `http::Request` (hyper-util's
//! client, axum's outbound calls, tonic channels).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::credentials::Credentials;

/// The error of an [`AuthService`]: the inner service's error, or a
/// [`gemini_oauth::Error`](crate::Error) when no token could be had
/// (`downcast_ref` tells them apart). The same type as `tower::BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`Layer`] that wraps a service in an [`AuthService`], which adds
/// `Authorization: Bearer …` (or `x-goog-api-key` for an API key) and, when
/// set, `x-goog-user-project` to every request, replacing headers of those
/// names the request already has. It does not repeat requests after a
/// `401` (a body of any type cannot be replayed): use
/// [`Credentials::force_refresh`] in your own retry, or the reqwest
/// middleware or the authorized client, which do.
///
/// ```no_run
/// # async fn f(channel: tonic::transport::Channel) -> gemini_oauth::Result<()> {
/// let creds = gemini_oauth::load_creds().await?;
/// let authed = tower::ServiceBuilder::new()
///     .layer(gemini_oauth::tower::AuthLayer::new(creds))
///     .service(channel); // then SomeGrpcClient::new(authed)
/// # let _ = authed; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "wrap a service with it, e.g. tower::ServiceBuilder::new().layer(…)"]
pub struct AuthLayer {
    creds: Credentials,
}

impl AuthLayer {
    /// A layer authenticating with `creds` (a clone shares its token cache).
    pub fn new(creds: Credentials) -> Self {
        AuthLayer { creds }
    }
}

impl From<Credentials> for AuthLayer {
    fn from(creds: Credentials) -> Self {
        AuthLayer::new(creds)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            creds: self.creds.clone(),
        }
    }
}

/// The service made by [`AuthLayer`]: `inner`, with our headers on every request.
#[derive(Clone)]
#[must_use = "a service does nothing until it is called"]
pub struct AuthService<S> {
    inner: S,
    creds: Credentials,
}

impl<S> AuthService<S> {
    /// `inner` with `creds`' headers added (same as [`AuthLayer::layer`]).
    pub fn new(inner: S, creds: Credentials) -> Self {
        AuthService { inner, creds }
    }

    /// The wrapped service.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that must take the request;
        // a fresh clone takes its place for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let creds = self.creds.clone();
        Box::pin(async move {
            let auth = creds.auth().await?;
            auth.apply(req.headers_mut(), creds.quota_project_header());
            inner.call(req).await.map_err(Into::into)
        })
    }
}
