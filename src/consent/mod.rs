//! The installed-app consent flow: PKCE (S256), a checked `state`, and a
//! loopback listener on an ephemeral port, as google-auth-oauthlib's
//! `run_local_server(port=0)` but with a timeout and a clear answer to "Deny".

#[cfg(feature = "browser")]
mod browser;
pub(crate) mod pkce;
pub(crate) mod redirect;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::client_secret::ClientSecret;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::token::StoredToken;
use crate::token_endpoint::{self, Retry, exchange_code};
use crate::url::check_endpoint;
use pkce::{Pkce, random_token};
use redirect::{Callback, read_pasted, serve};

/// The line printed before the consent URL (the URL follows alone on the next line).
pub const VISIT_PROMPT: &str = "Please visit this URL to authorize this application:";

/// How the user is sent through Google's consent screen when no cached token serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consent {
    /// Print the URL and open the browser (feature `browser`).
    OpenBrowser,
    /// Print the URL (to stderr, or to [`CredentialLoader::on_consent_url`](crate::CredentialLoader::on_consent_url))
    /// and wait on the loopback port: for SSH with port forwarding, or a browser
    /// the user starts by hand.
    PrintUrl,
    /// Print the URL, and accept either the loopback redirect or the redirected
    /// URL (or bare code) pasted on stdin: for machines the browser cannot reach.
    PasteCode,
    /// Never ask: fail with [`Error::ConsentRequired`] (servers, CI).
    Never,
}

type UrlCallback = Arc<dyn Fn(&str) + Send + Sync>;

/// Settings of the consent flow, held by the loader.
#[derive(Clone)]
pub(crate) struct FlowOptions {
    pub(crate) consent: Consent,
    pub(crate) timeout: Duration,
    pub(crate) bind: SocketAddr,
    pub(crate) force_consent: bool,
    pub(crate) on_url: Option<UrlCallback>,
}

impl fmt::Debug for FlowOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowOptions")
            .field("consent", &self.consent)
            .field("timeout", &self.timeout)
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            consent: Consent::OpenBrowser,
            timeout: Duration::from_secs(300),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            force_consent: false,
            on_url: None,
        }
    }
}

/// The authorization URL for `redirect_uri`.
pub(crate) fn authorization_url(
    secret: &ClientSecret,
    scopes: &[String],
    redirect_uri: &str,
    state: &str,
    challenge: &str,
    force_consent: bool,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", secret.client_id())
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("access_type", "offline");
    if force_consent {
        // Google issues a refresh token again only on an explicit consent.
        query.append_pair("prompt", "consent");
    }
    let base = secret.auth_endpoint();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query.finish())
}

/// Runs the consent flow and returns the new record to store.
#[tracing::instrument(skip_all, name = "gemini_oauth::consent")]
pub(crate) async fn run(
    secret: &ClientSecret,
    scopes: &[String],
    options: &FlowOptions,
    http: &HttpClient,
    retry: Retry,
) -> Result<StoredToken> {
    check_endpoint(secret.auth_endpoint())?;
    check_endpoint(secret.token_endpoint())?;
    if !options.bind.ip().is_loopback() {
        return Err(Error::ConsentFlow(format!(
            "the redirect address {} is not a loopback address; the redirect carries the \
             authorization code, so it must stay on this machine: use 127.0.0.1 or [::1]",
            options.bind
        )));
    }
    let listener = TcpListener::bind(options.bind).await.map_err(|e| {
        Error::ConsentFlow(format!(
            "cannot listen on {} for the sign-in redirect: {e}",
            options.bind
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::ConsentFlow(format!("cannot read the listening address: {e}")))?;
    // Exactly what was bound, so the redirect cannot land elsewhere.
    let redirect_uri = format!("http://{addr}/");
    let pkce = Pkce::new()?;
    let state = random_token(24)?;
    let url = authorization_url(
        secret,
        scopes,
        &redirect_uri,
        state.expose_secret(),
        &pkce.challenge,
        options.force_consent,
    );
    let (tx, mut rx) = mpsc::channel::<Callback>(1);
    let expected = Arc::new(state);
    // The listener and the stdin reader run inside this future, not in
    // spawned tasks: when it ends or is dropped (a caller's timeout or
    // `select!`), the port is released and the reader stopped at once.
    let listening = serve(listener, Arc::clone(&expected), tx.clone());
    // Once stdin is done (answered, or closed), the redirect may still come.
    let pasted = async {
        if options.consent == Consent::PasteCode {
            read_pasted(expected, tx).await;
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    present(&url, options);
    let callback = tokio::select! {
        cb = rx.recv() => cb.ok_or_else(|| Error::ConsentFlow("the redirect listener stopped".into()))?,
        () = listening => return Err(Error::ConsentFlow("the redirect listener stopped".into())),
        never = pasted => match never {},
        () = tokio::time::sleep(options.timeout) => {
            return Err(Error::Timeout {
                what: "waiting for the sign-in in the browser".into(),
                after: options.timeout,
            });
        }
    };
    let code = match callback {
        Callback::Code(code) => code,
        Callback::Denied(e) => return Err(e),
    };
    let client = token_endpoint::Client {
        id: secret.client_id(),
        secret: secret.secret(),
    };
    let resp = exchange_code(
        http,
        retry,
        secret.token_endpoint(),
        &client,
        &code,
        &pkce.verifier,
        &redirect_uri,
    )
    .await?;
    let mut record =
        StoredToken::new_user(secret.client_id(), secret.secret(), secret.token_endpoint());
    record.scopes = Some(scopes.to_vec());
    resp.apply_to(&mut record);
    let missing = record.missing_scopes(scopes);
    if !missing.is_empty() {
        return Err(Error::ScopesNotGranted { missing });
    }
    tracing::info!("sign-in complete");
    Ok(record)
}

/// Shows the URL in every mode, as google-auth-oauthlib does: a browser that
/// "opened" may be a text browser, or on another machine (SSH, WSL), and the
/// user must still be able to sign in.
fn present(url: &str, options: &FlowOptions) {
    match &options.on_url {
        Some(callback) => callback(url),
        None => eprintln!("{VISIT_PROMPT}\n{url}"),
    }
    if options.consent == Consent::OpenBrowser {
        open_browser(url);
    }
    if options.consent == Consent::PasteCode {
        eprintln!(
            "After approving, if the browser shows an error page for 127.0.0.1, copy the address \
             of that page and paste it here, then press Enter:"
        );
    }
}

#[cfg(feature = "browser")]
fn open_browser(url: &str) {
    browser::open(url);
}

#[cfg(not(feature = "browser"))]
fn open_browser(_url: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_url_has_every_parameter() {
        let secret = ClientSecret::new("cid", "cs").auth_uri("https://a.example/auth?hd=x");
        let url = authorization_url(
            &secret,
            &["s1".into(), "s2".into()],
            "http://127.0.0.1:9/",
            "st",
            "ch",
            true,
        );
        let (base, q) = url.split_once('?').unwrap();
        assert_eq!(base, "https://a.example/auth");
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("hd"), Some("x"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("cid"));
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1:9/"));
        assert_eq!(get("scope"), Some("s1 s2"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("code_challenge"), Some("ch"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("access_type"), Some("offline"));
        assert_eq!(get("prompt"), Some("consent"));
        let url = authorization_url(&secret, &[], "r", "st", "ch", false);
        assert!(!url.contains("prompt="));
    }
}
