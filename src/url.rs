//! Endpoint URL checks shared by every HTTP caller.

use http::Uri;

use crate::error::{Error, Result};

/// Parses an endpoint URL and refuses plain `http` to anything but loopback,
/// so refresh tokens and client secrets never cross a network unencrypted.
pub(crate) fn check_endpoint(url: &str) -> Result<Uri> {
    let invalid = |reason| Error::InvalidUrl {
        url: redact(url),
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

/// `localhost` (`localhost.` too), `127.0.0.0/8`, `::1` and `::ffff:127.x.y.z`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The URL as messages and logs may show it: without query, fragment and
/// userinfo, which can hold an API key (`?key=`) or a password (`user:pass@`).
pub(crate) fn redact(url: &str) -> String {
    // Whatever comes before the first `://` is the scheme, valid or not (a
    // stray space or quote must not expose the password after it), minus
    // anything up to an `@` in it (`user:pass@://host`).
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.contains(['/', '?', '#']) => (
            Some(scheme.rsplit_once('@').map_or(scheme, |(_, s)| s)),
            rest,
        ),
        _ => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // `user:pa/ss@host`: a `/`, `?` or `#` in the userinfo ends the authority
    // early, leaving `user:pa` as the "host" and the rest in the path.
    let port = authority.rsplit(']').next().unwrap_or_default();
    let bad_port = port
        .split_once(':')
        .is_some_and(|(_, p)| !p.chars().all(|c| c.is_ascii_digit()));
    let cut = match tail.find('@') {
        Some(at) if !authority.contains('@') && (bad_port || tail[..at].contains(':')) => {
            tail.rfind('@').map(|at| &tail[at.saturating_add(1)..])
        }
        _ => None,
    };
    let rest = cut.unwrap_or(rest);
    let base = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = base.split_at(base.find('/').unwrap_or(base.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
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
        assert_eq!(redact("https://a/b?key=secret#f"), "https://a/b");
        assert_eq!(
            redact("http://user:pa@ss@proxy:8080/x?k=v"),
            "http://proxy:8080/x"
        );
        assert_eq!(redact("user:pass@host/p"), "host/p");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(redact("USER:PASS@://x"), "://x");
        assert_eq!(join("https://a/v1/", "/models"), "https://a/v1/models");
    }

    #[test]
    fn a_password_with_an_unencoded_slash_question_mark_or_hash_never_shows() {
        for url in [
            "https://USER:PA/SECRET@host/token",
            "https://USER:PA?SECRET@host/token?key=KEY",
            "https://USER:PA#SECRET@host/token",
            "https://USER:PA/SE@CRET@host/token",
            "https://USER/NAME:PASSWORD@host/token",
            "USER:PA/SECRET@host/token",
        ] {
            let shown = redact(url);
            for secret in ["USER", "PA", "SECRET", "KEY", "CRET"] {
                assert!(!shown.contains(secret), "{url} shown as {shown}");
            }
            assert!(shown.contains("host"), "{url} shown as {shown}");
            if let Err(e) = check_endpoint(url) {
                let text = format!("{e} {e:?}");
                assert!(!text.contains("SECRET") && !text.contains("PA"), "{text}");
            }
        }
        // An '@' in a path is not userinfo: the host and path still show.
        let sa = "https://iam.example/v1/serviceAccounts/sa@p.iam.example:generateAccessToken";
        assert_eq!(redact(sa), sa);
        let sa = "http://127.0.0.1:8080/v1/serviceAccounts/sa@p:generateAccessToken?k=v";
        assert_eq!(
            redact(sa),
            "http://127.0.0.1:8080/v1/serviceAccounts/sa@p:generateAccessToken"
        );
        assert_eq!(redact("http://[::1]:80/a@b"), "http://[::1]:80/a@b");
        assert_eq!(join("https://a/v1", "models"), "https://a/v1/models");
    }

    /// Found by the `url` fuzz target: a value that does not start with a
    /// valid scheme (a leading space or quote from a `.env` file) showed its
    /// password.
    #[test]
    fn userinfo_never_shows_after_a_malformed_scheme() {
        for url in [
            " http://user:SECRETMARKER@proxy:3128",
            "'http://user:SECRETMARKER@proxy:3128/'",
            "h\u{6}p://user:SECRETMARKER@proxy/x",
            "1http://user:SECRETMARKER@proxy",
        ] {
            let shown = redact(url);
            assert!(
                !shown.contains("SECRETMARKER"),
                "{url:?} shown as {shown:?}"
            );
        }
        assert_eq!(redact(" http://u:p@proxy:3128/x?k"), " http://proxy:3128/x");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever the URL looks like, its userinfo and query never show,
            /// in `redact` or in `check_endpoint`'s error.
            #[test]
            fn secrets_in_urls_never_show(
                scheme in prop::sample::select(vec!["https://", "http://", "ftp://", ""]),
                host in "[a-z0-9.:\\[\\]-]{0,20}",
                path in "(/[a-zA-Z0-9._~%-]{0,8}){0,3}",
                user in prop::bool::ANY,
                query in prop::bool::ANY,
            ) {
                let mut url = scheme.to_owned();
                if user {
                    url.push_str("USERSECRET:PASSSECRET@");
                }
                url.push_str(&host);
                url.push_str(&path);
                if query {
                    url.push_str("?key=KEYSECRET&x=1#FRAGSECRET");
                }
                let shown = redact(&url);
                prop_assert!(!shown.contains("SECRET"), "{}", shown);
                if let Err(e) = check_endpoint(&url) {
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains("SECRET"), "{}", text);
                }
            }
        }
    }
}
