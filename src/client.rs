//! [`AuthorizedClient`]: an HTTP client that signs every request.

use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::url::{check_endpoint, join};

/// `x-goog-user-project`: the project billed for the call.
pub(crate) const USER_PROJECT: HeaderName = HeaderName::from_static("x-goog-user-project");

/// `x-goog-api-key`: API-key credentials.
pub(crate) const API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// Largest response body read into memory (Gemini answers are JSON).
const MAX_RESPONSE: usize = 32 * 1024 * 1024;

/// Production Gemini API base URL.
pub const GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com/v1";

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
    pub(crate) fn new(creds: Credentials) -> Self {
        AuthorizedClient { creds }
    }

    /// The Gemini API base URL (default [`GEMINI_API_BASE`]).
    pub fn api_base(&self) -> &str {
        &self.creds.settings().api_base
    }

    /// `api_base` joined with `path`, e.g. `api_url("models")`.
    pub fn api_url(&self, path: &str) -> String {
        join(self.api_base(), path)
    }

    /// The credentials behind this client.
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
        if let Some(key) = &self.creds.settings().api_key {
            // Never both a key and a bearer token: Google rejects that.
            return self.send_once(&method, uri, json_body, key).await;
        }
        let token = self.creds.access_token().await?;
        let resp = self
            .send_once(
                &method,
                uri.clone(),
                json_body.clone(),
                token.header_value(),
            )
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // The token may have been revoked or rotated elsewhere: one retry with
        // a fresh one. Bodies are Bytes, so they can always be replayed.
        tracing::debug!("401 from the API, refreshing the token and retrying once");
        let token = self.creds.refresh_after_rejection(&token).await?;
        self.send_once(&method, uri, json_body, token.header_value())
            .await
    }

    async fn send_once(
        &self,
        method: &Method,
        uri: http::Uri,
        json_body: Option<Bytes>,
        credential: &http::HeaderValue,
    ) -> Result<Response<Bytes>> {
        let name = match self.creds.settings().api_key {
            Some(_) => API_KEY,
            None => header::AUTHORIZATION,
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(name, credential.clone());
        if let Some(project) = self.creds.quota_project_header() {
            req = req.header(USER_PROJECT, project.clone());
        }
        if json_body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(json_body.unwrap_or_default()))
            .map_err(|_| Error::InvalidUrl {
                url: String::from("(request)"),
                reason: "the request could not be built",
            })?;
        self.creds.settings().http.send(req, MAX_RESPONSE).await
    }
}
