//! `credential_source.url`: a subject token served over HTTP (Azure's
//! instance metadata, a local token service), with the file's headers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;

use super::ExternalAccountProblem;
use super::config::{Fields, Format};
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::url::{is_loopback, redact};

/// Subject tokens and metadata answers are small.
pub(super) const MAX_ANSWER: usize = 1024 * 1024;

pub(crate) struct UrlSource {
    url: String,
    format: Format,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl UrlSource {
    pub(super) fn new(
        url: String,
        format: Format,
        headers: BTreeMap<String, String>,
        f: &Fields<'_>,
    ) -> Result<Self> {
        check_source_url(&url, "credential_source.url", f)?;
        let headers = headers
            .into_iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes());
                let value = HeaderValue::from_str(&v);
                match (name, value) {
                    (Ok(n), Ok(mut v)) => {
                        // Values may be credentials (an API key for the token service).
                        v.set_sensitive(true);
                        Ok((n, v))
                    }
                    _ => Err(f.invalid(
                        "credential_source.headers",
                        "holds a name or value that is not a valid HTTP header",
                    )),
                }
            })
            .collect::<Result<_>>()?;
        Ok(UrlSource {
            url,
            format,
            headers,
        })
    }

    pub(super) async fn subject_token(
        &self,
        clients: &Clients<'_>,
        config_path: &Path,
    ) -> Result<String> {
        let http = clients.for_url(&self.url);
        let mut req = Request::builder().method(Method::GET).uri(&self.url);
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|_| Error::InvalidUrl {
                url: redact(&self.url),
                reason: "not a valid request URI",
            })?;
        let resp = http.send(req, MAX_ANSWER).await?;
        let status = resp.status().as_u16();
        let problem = if !(200..300).contains(&status) {
            ExternalAccountProblem::HttpStatus {
                field: "credential_source.url",
                url: redact(&self.url),
                status,
            }
        } else {
            match self.format.extract(resp.body()) {
                Ok(token) => return Ok(token),
                Err(reason) => ExternalAccountProblem::SubjectToken {
                    field: "credential_source.url",
                    location: redact(&self.url),
                    reason,
                },
            }
        };
        Err(Error::ExternalAccount {
            path: config_path.to_owned(),
            problem,
        })
    }
}

/// The transports of credential-source requests: metadata addresses on this
/// machine's link never through a proxy (as the GCE metadata server).
pub(super) struct Clients<'a> {
    pub(super) proxied: &'a HttpClient,
    pub(super) direct: &'a HttpClient,
}

impl Clients<'_> {
    pub(super) fn for_url(&self, url: &str) -> &HttpClient {
        let host = url.parse::<http::Uri>().ok();
        match host.as_ref().and_then(http::Uri::host) {
            Some(h) if is_loopback(h) || is_link_local(h) => self.direct,
            _ => self.proxied,
        }
    }
}

/// Credential-source URLs: https, or plain http only to this machine or a
/// link-local metadata address (169.254.0.0/16, fe80::/10, AWS's
/// fd00:ec2::254), which is how cloud metadata services are reached.
pub(super) fn check_source_url(url: &str, field: &'static str, f: &Fields<'_>) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| f.invalid(field, "is not a valid URL"))?;
    let Some(host) = uri.host() else {
        return Err(f.invalid(field, "has no host"));
    };
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) || is_link_local(host) => Ok(()),
        Some("http") => Err(f.invalid(
            field,
            "uses plain http to a host that is neither loopback nor a link-local metadata \
             address; use https",
        )),
        _ => Err(f.invalid(
            field,
            "must start with https:// (or http:// for a metadata address)",
        )),
    }
}

fn is_link_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => {
            (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_and_link_local_metadata() {
        let f = Fields {
            path: Path::new("ea.json"),
        };
        let ok = |u: &str| check_source_url(u, "credential_source.url", &f).is_ok();
        for u in [
            "https://example.com/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/t",
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=1",
            "http://[fd00:ec2::254]/latest/api/token",
            "http://[fe80::1]/t",
        ] {
            assert!(ok(u), "{u}");
        }
        for u in [
            "http://example.com/token",
            "http://10.0.0.1/t",
            "http://[fd00:ec2::253]/t",
            "ftp://127.0.0.1/t",
            "not a url",
        ] {
            assert!(!ok(u), "{u}");
        }
    }
}
