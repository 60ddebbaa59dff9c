//! Which proxy carries a request: the variables curl reads (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case), or one proxy given to
//! the loader; built on hyper-util's matcher. `connect.rs` opens the
//! connection: a `CONNECT` tunnel (over TLS for an `https://` proxy) or a
//! SOCKS5 one, with TLS to the endpoint inside it; plain http (loopback only,
//! see `url::check_endpoint`) is sent to an HTTP proxy in absolute form.

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

use crate::error::{Error, Result};
use crate::url::{is_loopback, redact};

/// The proxy schemes this crate speaks.
const SCHEMES: [&str; 4] = ["http", "https", "socks5", "socks5h"];

/// Why a proxy could not carry a request. The proxy is named by the
/// [`Error::Proxy`](crate::Error::Proxy) that holds this, without its
/// user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyProblem {
    /// No connection to the proxy could be made (nothing listens there, the
    /// connection was refused), or the proxy did not finish its handshake
    /// (`CONNECT`, SOCKS, TLS to an `https://` proxy) within the connect timeout.
    Unreachable,
    /// The proxy answered `407 Proxy Authentication Required`, or a SOCKS5
    /// proxy refused the user name and password: they are missing or wrong.
    AuthenticationRequired,
    /// The proxy refused to open a tunnel to the endpoint (its rules forbid
    /// the host or port).
    TunnelRefused,
    /// The proxy closed the connection or answered something that is not
    /// HTTP (or SOCKS5) while the tunnel was being opened.
    TunnelFailed,
    /// The proxy URL is not a URL with a host.
    InvalidUrl,
    /// The proxy's scheme (`socks4`, `ftp`, …) is not supported; use
    /// `http://`, `https://`, `socks5://` or `socks5h://`.
    UnsupportedScheme(String),
    /// A `/`, `?` or `#` in the user name or password is not percent-encoded,
    /// so the URL cannot be split safely (the error shows none of it).
    UnencodedUserinfo,
    /// A SOCKS5 user name or password is longer than the handshake carries
    /// (RFC 1929: 255 bytes each; hyper-util fits them, with the endpoint's
    /// name, in about 250 bytes together).
    CredentialsTooLong,
}

impl fmt::Display for ProxyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyProblem::Unreachable => f.write_str("cannot be reached"),
            ProxyProblem::AuthenticationRequired => f.write_str(
                "asks for credentials (407): the user name or password in the proxy URL is \
                 missing or wrong",
            ),
            ProxyProblem::TunnelRefused => f.write_str("refused to open a tunnel to the endpoint"),
            ProxyProblem::TunnelFailed => {
                f.write_str("closed the connection while opening a tunnel")
            }
            ProxyProblem::InvalidUrl => f.write_str("is not a valid proxy URL"),
            ProxyProblem::UnsupportedScheme(s) => write!(
                f,
                "uses the scheme {s:?}; use an http://, https://, socks5:// or socks5h:// proxy"
            ),
            ProxyProblem::CredentialsTooLong => f.write_str(
                "has a user name or password too long for SOCKS5 (at most 255 bytes each, \
                 and about 250 together with the endpoint's name): shorten them",
            ),
            ProxyProblem::UnencodedUserinfo => f.write_str(
                "has a '/', '?' or '#' before its '@': percent-encode them in the user name \
                 and password (%2F, %3F, %23)",
            ),
        }
    }
}

/// Which proxies a transport uses: none, or the rules of a matcher.
#[derive(Clone, Default)]
pub(crate) struct Proxy {
    matcher: Option<Arc<Matcher>>,
    /// Read from the environment: loopback is then never proxied (a proxy
    /// elsewhere cannot reach this machine's loopback).
    spare_loopback: bool,
    /// `NO_PROXY` entries with a port: (host or address, port).
    no_ports: Arc<[(String, u16)]>,
}

impl fmt::Debug for Proxy {
    // The matcher's own Debug shows proxy URLs without their credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Some(m) => m.fmt(f),
            None => f.write_str("no proxy"),
        }
    }
}

/// The proxy chosen for one endpoint.
pub(crate) struct Route {
    /// Without user name and password.
    pub(crate) uri: Uri,
    /// For an HTTP(S) proxy: `Proxy-Authorization`, marked sensitive.
    pub(crate) basic_auth: Option<HeaderValue>,
    /// For a SOCKS5 proxy: user name and password.
    pub(crate) socks_auth: Option<(String, String)>,
}

impl Route {
    pub(crate) fn is_socks(&self) -> bool {
        self.uri
            .scheme_str()
            .is_some_and(|s| s.starts_with("socks"))
    }

    /// `socks5h://`: the proxy resolves the name (`socks5://`: we do).
    pub(crate) fn remote_dns(&self) -> bool {
        self.uri.scheme_str() == Some("socks5h")
    }
}

/// The first of these variables that is set, trimmed (empty counts as unset).
fn first(
    get: &impl Fn(&str) -> Option<String>,
    names: [&'static str; 2],
) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|n| {
        let v = get(n)?.trim().to_owned();
        (!v.is_empty()).then_some((n, v))
    })
}

/// Refuses a proxy URL this crate cannot use, naming it by `shown` (never
/// the URL itself when its user name or password cannot be split off).
fn check(url: &str, shown: impl Fn(&str) -> String) -> Result<()> {
    let refuse = |proxy: String, problem| {
        Err(Error::Proxy {
            proxy,
            problem,
            source: None,
        })
    };
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // `user:pa/ss@host`: the authority would end at the `/`, and the rest of
    // the password would be shown as a path.
    if let Some(at) = rest.rfind('@')
        && rest[..at].contains(['/', '?', '#'])
    {
        return refuse(shown(""), ProxyProblem::UnencodedUserinfo);
    }
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let Ok(uri) = full.parse::<Uri>() else {
        return refuse(shown(url), ProxyProblem::InvalidUrl);
    };
    let scheme = uri.scheme_str().unwrap_or_default();
    if !SCHEMES.contains(&scheme) {
        return refuse(
            shown(url),
            ProxyProblem::UnsupportedScheme(scheme.to_owned()),
        );
    }
    if uri.host().is_none_or(str::is_empty) {
        return refuse(shown(url), ProxyProblem::InvalidUrl);
    }
    // RFC 1929 gives each a one-byte length; found here, not mid-handshake.
    let any = Uri::from_static("https://example.com/");
    if let Some(i) = Matcher::builder().all(full).build().intercept(&any)
        && i.raw_auth()
            .is_some_and(|(u, p)| u.len() > 255 || p.len() > 255)
    {
        return refuse(shown(url), ProxyProblem::CredentialsTooLong);
    }
    Ok(())
}

/// `NO_PROXY` as curl reads it, split into what hyper-util's matcher takes
/// (`.example.com`, addresses, ranges) and entries limited to a port.
fn no_proxy(list: &str) -> (String, Vec<(String, u16)>) {
    let mut plain = Vec::new();
    let mut ports = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // `*.example.com` means what `.example.com` does.
        let entry = entry
            .strip_prefix('*')
            .filter(|e| e.starts_with('.'))
            .unwrap_or(entry);
        let (host, port) = match entry.strip_prefix('[') {
            // `[::1]`, `[::1]:8080`
            Some(v6) => match v6.split_once(']') {
                Some((host, rest)) => (host, rest.strip_prefix(':')),
                None => (v6, None),
            },
            // `host:port`, but not a bare IPv6 address (`::1`).
            None => match entry.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                _ => (entry, None),
            },
        };
        // A name with a trailing dot is the same name (curl ignores the dot on
        // both sides); the matcher compares strings, so it gets both spellings.
        let host = host.strip_suffix('.').unwrap_or(host);
        match port.map(str::parse::<u16>) {
            Some(Ok(port)) => ports.push((host.to_owned(), port)),
            _ if host.parse::<std::net::IpAddr>().is_ok() || host.contains('/') => {
                plain.push(host.to_owned());
            }
            _ => plain.extend([host.to_owned(), format!("{host}.")]),
        }
    }
    (plain.join(","), ports)
}

/// Whether `rule` (a name, `.name` or an address) covers `host`.
fn covers(rule: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host);
    if let (Ok(a), Ok(b)) = (
        rule.parse::<std::net::IpAddr>(),
        host.parse::<std::net::IpAddr>(),
    ) {
        return a == b;
    }
    let rule = rule.trim_start_matches('.').to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    host == rule || host.ends_with(&format!(".{rule}"))
}

impl Proxy {
    /// No proxy at all: the metadata server, or `.no_proxy()`.
    pub(crate) fn none() -> Self {
        Proxy::default()
    }

    /// The process environment, as curl reads it.
    pub(crate) fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// `get` answers for the environment: `ALL_PROXY`, `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `NO_PROXY`, upper case before lower case, trimmed. A
    /// proxy URL this crate cannot use is an error, not a direct connection.
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let no = first(&get, ["NO_PROXY", "no_proxy"])
            .map(|(_, v)| v)
            .unwrap_or_default();
        // curl's `*`: hyper-util's matcher applies it to names, not to IP addresses.
        if no.split(',').any(|e| e.trim() == "*") {
            return Ok(Self::none());
        }
        // A CGI program's HTTP_PROXY may come from a request header (httpoxy).
        let http = match get("REQUEST_METHOD") {
            Some(_) => None,
            None => first(&get, ["HTTP_PROXY", "http_proxy"]),
        };
        let all = first(&get, ["ALL_PROXY", "all_proxy"]);
        let https = first(&get, ["HTTPS_PROXY", "https_proxy"]);
        for (var, url) in [&all, &https, &http].into_iter().flatten() {
            check(url, |u| match u {
                "" => format!("URL in {var}"),
                u => format!("{} (from {var})", redact(u)),
            })?;
        }
        // No proxy set (most machines): nothing to match, nothing to build.
        if all.is_none() && https.is_none() && http.is_none() {
            return Ok(Self::none());
        }
        let value = |v: Option<(&str, String)>| v.map(|(_, v)| v).unwrap_or_default();
        let (no, no_ports) = no_proxy(&no);
        let builder = Matcher::builder()
            .all(value(all))
            .https(value(https))
            .http(value(http))
            .no(no);
        Ok(Proxy {
            matcher: Some(Arc::new(builder.build())),
            spare_loopback: true,
            no_ports: no_ports.into(),
        })
    }

    /// One proxy for every endpoint, loopback included (`NO_PROXY` is not
    /// read, as with reqwest's `Proxy::all`). Checked here, so a bad URL
    /// fails `load()`.
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let url = url.trim();
        check(url, |u| match u {
            "" => "URL given to the loader".to_owned(),
            u => redact(u),
        })?;
        Ok(Proxy {
            matcher: Some(Arc::new(Matcher::builder().all(url).build())),
            ..Proxy::default()
        })
    }

    pub(crate) fn intercept(&self, dst: &Uri) -> Option<Intercept> {
        let host = dst.host()?;
        if self.spare_loopback && is_loopback(host) {
            return None;
        }
        let port = dst
            .port_u16()
            .unwrap_or(if dst.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        if self
            .no_ports
            .iter()
            .any(|(rule, p)| *p == port && covers(rule, host))
        {
            return None;
        }
        self.matcher.as_ref()?.intercept(dst)
    }

    /// The proxy for `dst`, if any.
    ///
    /// # Errors
    /// A proxy whose scheme this crate does not speak (`socks4://` from the
    /// environment passes hyper-util's matcher).
    pub(crate) fn route(
        &self,
        dst: &Uri,
    ) -> std::result::Result<Option<Route>, Box<dyn std::error::Error + Send + Sync>> {
        let Some(intercept) = self.intercept(dst) else {
            return Ok(None);
        };
        let uri = intercept.uri().clone();
        match uri.scheme_str() {
            Some("http" | "https") => Ok(Some(Route {
                basic_auth: intercept.basic_auth().cloned(),
                socks_auth: None,
                uri,
            })),
            Some("socks5" | "socks5h") => Ok(Some(Route {
                basic_auth: None,
                socks_auth: intercept
                    .raw_auth()
                    .map(|(u, p)| (u.to_owned(), p.to_owned())),
                uri,
            })),
            other => Err(Box::new(Error::Proxy {
                proxy: redact(&uri.to_string()),
                problem: ProxyProblem::UnsupportedScheme(other.unwrap_or_default().to_owned()),
                source: None,
            })),
        }
    }

    /// Plain-http requests through an HTTP proxy carry its credentials
    /// themselves (`Proxy-Authorization`), as reqwest sends them; a tunnel
    /// carries them in its `CONNECT`, and a SOCKS proxy in its handshake.
    pub(crate) fn authorize<B>(&self, req: &mut http::Request<B>) {
        if req.uri().scheme_str() != Some("http") {
            return;
        }
        if let Ok(Some(Route {
            basic_auth: Some(auth),
            ..
        })) = self.route(req.uri())
        {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_vars(pairs: &[(&str, &str)]) -> Result<Proxy> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Proxy::from_vars(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn vars(pairs: &[(&str, &str)]) -> Proxy {
        try_vars(pairs).unwrap()
    }

    fn via(p: &Proxy, url: &str) -> Option<String> {
        p.intercept(&url.parse().unwrap())
            .map(|i| i.uri().to_string())
    }

    #[test]
    fn https_http_and_all_proxy_pick_by_scheme() {
        let p = vars(&[("HTTPS_PROXY", "http://s:1"), ("http_proxy", "http://h:2")]);
        assert_eq!(
            via(&p, "https://a.example/x").as_deref(),
            Some("http://s:1/")
        );
        assert_eq!(
            via(&p, "http://a.example/x").as_deref(),
            Some("http://h:2/")
        );
        let p = vars(&[("all_proxy", "http://all:3")]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://all:3/")
        );
        assert_eq!(
            via(&p, "http://a.example/").as_deref(),
            Some("http://all:3/")
        );
        assert_eq!(via(&vars(&[]), "https://a.example/"), None);
    }

    #[test]
    fn upper_case_wins_and_empty_counts_as_unset() {
        let p = vars(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://upper:1/")
        );
        let p = vars(&[("HTTPS_PROXY", ""), ("https_proxy", "http://lower:2")]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://lower:2/")
        );
    }

    #[test]
    fn no_proxy_takes_suffixes_ips_cidrs_and_a_star() {
        let base = [("ALL_PROXY", "http://p:1")];
        let p = vars(&[
            base[0],
            ("NO_PROXY", "googleapis.com, 10.0.0.0/8,192.168.1.5"),
        ]);
        assert_eq!(via(&p, "https://oauth2.googleapis.com/"), None);
        assert_eq!(via(&p, "https://googleapis.com/"), None);
        assert!(via(&p, "https://notgoogleapis.com/").is_some());
        assert_eq!(via(&p, "https://10.1.2.3/"), None);
        assert_eq!(via(&p, "http://192.168.1.5/"), None);
        assert!(via(&p, "http://192.168.1.6/").is_some());
        let p = vars(&[base[0], ("no_proxy", "*")]);
        assert_eq!(via(&p, "https://127.0.0.1/"), None);
        assert_eq!(via(&p, "https://a.example/"), None);
    }

    #[test]
    fn cgi_programs_ignore_http_proxy() {
        let p = vars(&[("HTTP_PROXY", "http://h:2"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(via(&p, "http://a.example/"), None);
    }

    #[test]
    fn credentials_stay_out_of_debug_and_errors() {
        let p = Proxy::from_url("http://user:PROXYPASSMARKER@proxy.example:3128").unwrap();
        assert!(!format!("{p:?}").contains("PROXYPASSMARKER"), "{p:?}");
        let mut req = http::Request::get("http://127.0.0.1:1/x").body(()).unwrap();
        p.authorize(&mut req);
        let auth = &req.headers()[http::header::PROXY_AUTHORIZATION];
        assert!(auth.is_sensitive());
        assert!(!format!("{req:?}").contains("PROXYPASSMARKER"));
        for bad in [
            "socks4://user:PROXYPASSMARKER@p:1",
            "http://user:PROXYPASSMARKER@",
            "http://user:PROXYPASSMARKER@:1",
        ] {
            let err = Proxy::from_url(bad).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("PROXYPASSMARKER"), "{text}");
            assert!(matches!(err, Error::Proxy { .. }), "{text}");
        }
    }

    #[test]
    fn https_requests_carry_no_proxy_authorization() {
        let p = Proxy::from_url("http://u:pw@proxy.example:3128").unwrap();
        let mut req = http::Request::get("https://a.example/").body(()).unwrap();
        p.authorize(&mut req);
        assert!(
            req.headers()
                .get(http::header::PROXY_AUTHORIZATION)
                .is_none()
        );
    }

    #[test]
    fn whitespace_around_variables_is_trimmed() {
        let p = vars(&[
            ("HTTPS_PROXY", "  http://s:1 \n"),
            ("NO_PROXY", " b.example "),
        ]);
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://s:1/")
        );
        assert_eq!(via(&p, "https://b.example/"), None);
        let p = Proxy::from_url(" http://s:1\t").unwrap();
        assert_eq!(
            via(&p, "https://a.example/").as_deref(),
            Some("http://s:1/")
        );
    }

    #[test]
    fn an_unusable_variable_is_an_error_not_a_direct_connection() {
        for (var, url, problem) in [
            (
                "HTTPS_PROXY",
                "ftp://u:PROXYPASSMARKER@p:1",
                ProxyProblem::UnsupportedScheme("ftp".into()),
            ),
            (
                "ALL_PROXY",
                "socks4://u:PROXYPASSMARKER@p:1",
                ProxyProblem::UnsupportedScheme("socks4".into()),
            ),
            (
                "http_proxy",
                "http://u:PROXYPASSMARKER@",
                ProxyProblem::InvalidUrl,
            ),
        ] {
            let err = try_vars(&[(var, url)]).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("PROXYPASSMARKER"), "{text}");
            assert!(text.contains(var), "{text}");
            assert!(
                matches!(&err, Error::Proxy { problem: p, .. } if *p == problem),
                "{text}"
            );
        }
    }

    #[test]
    fn an_unencoded_slash_question_mark_or_hash_in_the_password_is_refused_unseen() {
        for pass in [
            "ZZPW/PASSMARKER",
            "ZZPW?PASSMARKER",
            "ZZPW#PASSMARKER",
            "1234/PASSMARKER",
        ] {
            let url = format!("http://USERMARKER:{pass}@proxy.example:3128");
            let from_env = try_vars(&[("HTTPS_PROXY", url.as_str())]).unwrap_err();
            let given = Proxy::from_url(&url).unwrap_err();
            for err in [from_env, given] {
                let text = format!("{err} {err:?}");
                assert!(
                    matches!(
                        err,
                        Error::Proxy {
                            problem: ProxyProblem::UnencodedUserinfo,
                            ..
                        }
                    ),
                    "{text}"
                );
                for part in ["PASSMARKER", "USERMARKER", "ZZPW", "1234", "proxy.example"] {
                    assert!(!text.contains(part), "{part} shown: {text}");
                }
            }
        }
        // Percent-encoded, the same password is fine.
        assert!(Proxy::from_url("http://u:PROXY%2FPASS%3F%23@proxy.example:3128").is_ok());
    }

    #[test]
    fn loopback_is_never_proxied_from_the_environment() {
        let p = vars(&[("ALL_PROXY", "http://p:1")]);
        for url in [
            "http://127.0.0.1:8080/token",
            "http://localhost/x",
            "https://[::1]:9/",
            "http://127.0.0.2/",
        ] {
            assert_eq!(via(&p, url), None, "{url}");
        }
        assert!(via(&p, "https://a.example/").is_some());
        // A proxy given to the loader carries every request, as asked.
        let p = Proxy::from_url("http://p:1").unwrap();
        assert!(via(&p, "http://127.0.0.1:8080/token").is_some());
    }

    #[test]
    fn loopback_spelled_otherwise_is_never_proxied_from_the_environment() {
        let p = vars(&[("HTTPS_PROXY", "http://p:1"), ("HTTP_PROXY", "http://p:1")]);
        for url in [
            "http://localhost.:8080/token",
            "http://LOCALHOST./x",
            "https://[::ffff:127.0.0.1]:9/",
            "http://[::FFFF:7f00:1]/",
        ] {
            assert_eq!(via(&p, url), None, "{url}");
        }
        assert!(via(&p, "https://localhost.example/").is_some());
        assert!(via(&p, "https://[::ffff:10.0.0.1]/").is_some());
    }

    #[test]
    fn no_proxy_entries_in_upper_case_with_trailing_dots_or_blanks() {
        let p = vars(&[
            ("ALL_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                " , UPPER.Example ,,\t trail.example. ,*.Star.Example., Ported.Example:8443 ,",
            ),
        ]);
        assert_eq!(via(&p, "https://upper.example/"), None);
        assert_eq!(via(&p, "https://a.UPPER.example/"), None);
        assert_eq!(via(&p, "https://trail.example/"), None);
        assert_eq!(via(&p, "https://trail.example./"), None);
        assert_eq!(via(&p, "https://upper.example./"), None);
        assert_eq!(via(&p, "https://x.star.example/"), None);
        assert_eq!(via(&p, "https://ported.example:8443/"), None);
        assert_eq!(via(&p, "https://ported.example.:8443/"), None);
        assert!(via(&p, "https://ported.example/").is_some());
        assert!(via(&p, "https://other.example/").is_some());
    }

    #[test]
    fn no_proxy_takes_the_forms_curl_takes() {
        let p = vars(&[
            ("ALL_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "[2001:db8::1], *.wild.example, .dot.example, ported.example:8443, [2001:db8::2]:444, 10.9.9.9:80",
            ),
        ]);
        assert_eq!(via(&p, "https://[2001:db8::1]/"), None);
        assert_eq!(via(&p, "https://a.wild.example/"), None);
        assert_eq!(via(&p, "https://wild.example/"), None);
        assert_eq!(via(&p, "https://b.dot.example/"), None);
        assert_eq!(via(&p, "https://ported.example:8443/"), None);
        assert_eq!(via(&p, "https://x.ported.example:8443/"), None);
        assert!(via(&p, "https://ported.example/").is_some(), "another port");
        assert_eq!(via(&p, "https://[2001:db8::2]:444/"), None);
        assert!(via(&p, "https://[2001:db8::2]/").is_some());
        assert_eq!(via(&p, "http://10.9.9.9/"), None);
        assert!(via(&p, "https://10.9.9.9/").is_some());
        assert!(via(&p, "https://unwild.example/").is_some());
    }

    #[test]
    fn socks_and_https_proxies_route_with_their_credentials() {
        let dst: Uri = "https://a.example/".parse().unwrap();
        let p = Proxy::from_url("socks5h://USER:PROXYPASSMARKER@127.0.0.1:1080").unwrap();
        let route = p.route(&dst).unwrap().unwrap();
        assert!(route.is_socks() && route.remote_dns());
        assert_eq!(
            route.socks_auth,
            Some(("USER".into(), "PROXYPASSMARKER".into()))
        );
        assert!(route.basic_auth.is_none());
        assert!(!route.uri.to_string().contains("PROXYPASSMARKER"));
        let p = vars(&[("HTTPS_PROXY", "socks5://127.0.0.1:1080")]);
        let route = p.route(&dst).unwrap().unwrap();
        assert!(route.is_socks() && !route.remote_dns());
        // A SOCKS proxy's password never becomes a header of a plain-http request.
        let p = Proxy::from_url("socks5://u:PROXYPASSMARKER@127.0.0.1:1080").unwrap();
        let mut req = http::Request::get("http://127.0.0.1:1/x").body(()).unwrap();
        p.authorize(&mut req);
        assert!(req.headers().is_empty());
        let p = Proxy::from_url("https://u:PROXYPASSMARKER@proxy.example:443").unwrap();
        let route = p.route(&dst).unwrap().unwrap();
        assert!(!route.is_socks() && route.basic_auth.is_some());
    }
}
