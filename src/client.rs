//! [`AuthorizedClient`]: an HTTP client that signs every request.

use std::fmt;

use bytes::Bytes;
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::credentials::Credentials;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::headers::Auth;
use crate::url::{check_endpoint, join};

/// Largest response body read into memory (Gemini answers are JSON).
const MAX_RESPONSE: usize = 32 * 1024 * 1024;

impl Credentials {
    /// An HTTP client that adds this credential's headers to every request.
    #[must_use]
    pub fn authorized_client(&self) -> AuthorizedClient {
        AuthorizedClient::new(self.clone())
    }
}

/// An HTTP client (hyper 1 + rustls, pooled, HTTP/2 when offered) that adds
/// `Authorization: Bearer …` and, when set, `x-goog-user-project` to every
/// request, with the credential's timeout. After a `401` it refreshes the
/// token once and repeats the request. Cheap to clone.
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
}

impl fmt::Debug for AuthorizedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedClient")
            .field("api_base", &self.api_base())
            .finish_non_exhaustive()
    }
}

impl AuthorizedClient {
    /// The client for `creds` (same as [`Credentials::authorized_client`]).
    #[must_use]
    pub fn new(creds: Credentials) -> Self {
        AuthorizedClient { creds }
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

    /// `GET url`.
    ///
    /// # Errors
    /// Token errors as [`Credentials::access_token`], [`Error::Transport`],
    /// [`Error::Timeout`], [`Error::InvalidUrl`]. HTTP error statuses are not
    /// errors here: check `status()` (or use the [`gemini`](crate::gemini) helpers).
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>> {
        self.send(Method::GET, url, None).await
    }

    /// `POST url` with a JSON body.
    ///
    /// # Errors
    /// As [`AuthorizedClient::get`].
    pub async fn post_json(&self, url: &str, body: impl Into<Bytes>) -> Result<Response<Bytes>> {
        self.send(Method::POST, url, Some(body.into())).await
    }

    /// Sends a request with any method and an optional JSON body.
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
        let auth = self.creds.auth().await?;
        let resp = self
            .send_once(&method, uri.clone(), json_body.clone(), &auth)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // The token may have been revoked or rotated elsewhere: one retry with
        // a fresh one. Bodies are Bytes, so they can always be replayed.
        let Some(fresh) = self.creds.refresh_after(&auth).await else {
            return Ok(resp); // an API key: nothing to refresh
        };
        tracing::debug!("401 from the API, refreshing the token and retrying once");
        self.send_once(&method, uri, json_body, &fresh?).await
    }

    async fn send_once(
        &self,
        method: &Method,
        uri: http::Uri,
        json_body: Option<Bytes>,
        auth: &Auth,
    ) -> Result<Response<Bytes>> {
        let mut req = Request::new(Full::new(json_body.clone().unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        if json_body.is_some() {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        auth.apply(req.headers_mut(), self.creds.quota_project_header());
        self.creds.settings().http.send(req, MAX_RESPONSE).await
    }
}

/// The client's futures can be spawned on multi-threaded runtimes.
#[allow(dead_code)]
fn futures_are_send(client: &AuthorizedClient) {
    fn send<T: Send>(_: &T) {}
    send(&client.get(""));
    send(&client.post_json("", Bytes::new()));
}
