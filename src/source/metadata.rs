//! The GCE metadata server: the last Application Default Credentials source.
//!
//! It speaks plain HTTP on a link-local address by design, so it bypasses the
//! https-only endpoint check, and it is only ever asked with the
//! `Metadata-Flavor: Google` header that keeps browsers and proxies out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::Full;

use crate::env;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::retry::RetryPolicy;
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::{MAX_TOKEN_RESPONSE, TokenResponse, parse_response};
use crate::universe::Universe;

/// The link-local address, not `metadata.google.internal`: a spoofed DNS
/// answer must not choose the identity (Go's metadata client does the same).
const DEFAULT_HOST: &str = "169.254.169.254";
/// google-auth's ping: 3 tries of 3 s each (`GCE_METADATA_TIMEOUT`,
/// `GCE_METADATA_DETECT_RETRIES`), 1 s backoff, doubling.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
const PING_TRIES: u32 = 3;
/// Where Linux names the machine's product; `Google…` on Compute Engine.
const DMI_PRODUCT_NAME: &str = "/sys/class/dmi/id/product_name";
const FLAVOR: &str = "metadata-flavor";
/// The universe request is one small answer from a local server, as
/// google-auth's 3 s metadata timeout.
const UNIVERSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A metadata server that answered the ping.
#[derive(Debug, Clone)]
pub(crate) struct MetadataServer {
    host: String,
    scopes: Vec<String>,
}

/// `GCE_METADATA_HOST`, else `GCE_METADATA_IP`, else the link-local address.
pub(crate) fn host() -> String {
    env::nonempty(env::GCE_METADATA_HOST)
        .or_else(|| env::nonempty(env::GCE_METADATA_IP))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

fn is_flavored<B>(resp: &http::Response<B>) -> bool {
    resp.headers().get(FLAVOR).is_some_and(|v| v == "Google")
}

fn request(url: &str) -> Result<Request<Full<Bytes>>> {
    Request::get(url)
        .header(FLAVOR, HeaderValue::from_static("Google"))
        .body(Full::new(Bytes::new()))
        .map_err(|_| Error::InvalidUrl {
            url: crate::url::redact(url),
            reason: "GCE_METADATA_HOST is not a valid host[:port]",
        })
}

impl MetadataServer {
    /// google-auth's `is_on_gce`: a [`ping`](Self::ping), else the DMI
    /// product name on Linux.
    pub(crate) async fn detect(host: &str, scopes: &[String]) -> Option<Self> {
        let server = MetadataServer {
            host: host.to_owned(),
            scopes: scopes.to_vec(),
        };
        (Self::ping(host).await || on_gce_by_dmi()).then_some(server)
    }

    /// Asks `http://{host}/` and checks the answer carries
    /// `Metadata-Flavor: Google`; no answer is tried again, an answer is not.
    async fn ping(host: &str) -> bool {
        let secs = env::nonempty(env::GCE_METADATA_TIMEOUT).and_then(|s| s.trim().parse().ok());
        let timeout = secs.map_or(PING_TIMEOUT, Duration::from_secs);
        let tries = env::nonempty(env::GCE_METADATA_DETECT_RETRIES)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(PING_TRIES);
        if tries == 0 {
            return false;
        }
        let http = HttpClient::new(timeout, timeout);
        let policy = RetryPolicy::default()
            .attempts(tries)
            .base_delay(Duration::from_secs(1));
        let url = format!("http://{host}/");
        let answer = policy
            .run("metadata server ping", || async {
                http.send(request(&url)?, MAX_TOKEN_RESPONSE).await
            })
            .await;
        answer.is_ok_and(|resp| is_flavored(&resp))
    }

    /// `GET url` with google-auth's metadata retries (transport errors,
    /// 408, 429, 5xx); the last answer whatever its status.
    async fn get(http: &HttpClient, url: &str) -> Result<http::Response<Bytes>> {
        RetryPolicy::metadata()
            .run("metadata server request", || async {
                let resp = http.send(request(url)?, MAX_TOKEN_RESPONSE).await?;
                match crate::retry::is_retryable_status(resp.status().as_u16()) {
                    true => Err(Error::TokenResponse {
                        endpoint: crate::url::redact(url),
                        status: resp.status().as_u16(),
                        problem: "the metadata server is unavailable".into(),
                    }),
                    false => Ok(resp),
                }
            })
            .await
    }

    /// The default service account's access token.
    pub(crate) async fn token(&self, http: &HttpClient) -> Result<TokenResponse> {
        let mut url = format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
            self.host
        );
        if !self.scopes.is_empty() {
            let scopes: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("scopes", &self.scopes.join(","))
                .finish();
            url = format!("{url}?{scopes}");
        }
        let resp = Self::get(http, &url).await?;
        // Whatever answers without the header is not the metadata server.
        if !is_flavored(&resp) {
            return Err(Error::TokenResponse {
                endpoint: crate::url::redact(&url),
                status: resp.status().as_u16(),
                problem: "the answer lacks the Metadata-Flavor: Google header".into(),
            });
        }
        parse_response(&url, resp.status().as_u16(), resp.body())
    }

    /// The default service account's ID token for `audience`, as
    /// google-auth's `fetch_id_token` asks for it (`format=full`: the token
    /// carries the instance's details).
    pub(crate) async fn id_token(&self, http: &HttpClient, audience: &str) -> Result<Fetched> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("audience", audience)
            .append_pair("format", "full")
            .finish();
        let url = format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/identity?{query}",
            self.host
        );
        let resp = Self::get(http, &url).await?;
        let status = resp.status().as_u16();
        let bad = |problem: &str| Error::TokenResponse {
            endpoint: crate::url::redact(&url),
            status,
            problem: problem.into(),
        };
        match (status, is_flavored(&resp)) {
            (200, true) => {}
            (200, false) => return Err(bad("the answer lacks the Metadata-Flavor: Google header")),
            _ => {
                return Err(bad(
                    "the metadata server gave no ID token for this audience",
                ));
            }
        }
        let text = std::str::from_utf8(resp.body()).unwrap_or_default();
        crate::id_token::fetched(text).map_err(|problem| Error::IdToken {
            source_name: self.describe(),
            problem,
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!("the metadata server at {}", self.host)
    }

    /// The instance's universe domain, as google-auth's
    /// `_metadata.get_universe_domain`: `universe/universe-domain`, where a
    /// 404 or an empty answer means `googleapis.com`.
    pub(crate) async fn universe_domain(&self) -> Result<Universe> {
        let url = format!(
            "http://{}/computeMetadata/v1/universe/universe-domain",
            self.host
        );
        let http = HttpClient::new(UNIVERSE_TIMEOUT, UNIVERSE_TIMEOUT);
        let resp = Self::get(&http, &url).await?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(Universe::default());
        }
        let problem = match (status, is_flavored(&resp)) {
            (200, true) => None,
            (200, false) => Some("the answer lacks the Metadata-Flavor: Google header"),
            _ => Some("the universe domain could not be read"),
        };
        if let Some(problem) = problem {
            return Err(Error::TokenResponse {
                endpoint: url,
                status,
                problem: problem.into(),
            });
        }
        let domain = String::from_utf8_lossy(resp.body());
        match domain.trim() {
            "" => Ok(Universe::default()),
            d => Universe::from_origin(d, &self.describe()),
        }
    }
}

/// google-auth's `detect_gce_residency_linux`: the product name starts with `Google`.
fn on_gce_by_dmi() -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let path = env::nonempty(env::GEMINI_OAUTH_DMI_PRODUCT_NAME)
        .unwrap_or_else(|| DMI_PRODUCT_NAME.to_owned());
    std::fs::read_to_string(path).is_ok_and(|name| name.trim().starts_with("Google"))
}

/// The metadata server as a token source, with the transport it is reached by.
pub(crate) struct MetadataSource {
    pub(crate) server: MetadataServer,
    pub(crate) http: Arc<HttpClient>,
}

impl TokenSource for MetadataSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move { Ok(self.server.token(&self.http).await?.into()) })
    }

    fn id_token<'a>(&'a self, audience: &'a str) -> Option<BoxFuture<'a, Result<Fetched>>> {
        Some(Box::pin(self.server.id_token(&self.http, audience)))
    }

    fn describe(&self) -> String {
        self.server.describe()
    }
}
