//! Endpoint URL checks shared by every HTTP caller.

use http::Uri;

use crate::error::{Error, Result};

/// Parses an endpoint URL and refuses plain `http` to anything but loopback,
/// so refresh tokens and client secrets never cross a network unencrypted.
pub(crate) fn check_endpoint(url: &str) -> Result<Uri> {
    let invalid = |reason| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
    let host = uri.host().ok_or_else(|| invalid("the URL has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(invalid(
            "plain http is only allowed for loopback hosts (127.0.0.1, [::1], localhost); use https",
        )),
        _ => Err(invalid("the URL must start with https://")),
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The URL without its query, for messages and logs.
pub(crate) fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Joins a base URL and a path with exactly one slash.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert!(check_endpoint("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_endpoint("http://[::1]:8080/token").is_ok());
        assert!(check_endpoint("http://localhost/token").is_ok());
        assert!(check_endpoint("http://example.com/token").is_err());
        assert!(check_endpoint("ftp://127.0.0.1/").is_err());
        assert!(check_endpoint("not a url").is_err());
        assert!(check_endpoint("/relative").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(without_query("https://a/b?key=secret#f"), "https://a/b");
        assert_eq!(join("https://a/v1/", "/models"), "https://a/v1/models");
        assert_eq!(join("https://a/v1", "models"), "https://a/v1/models");
    }
}
