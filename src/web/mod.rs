//! Signing in a web app's users: the authorization-code flow of a "Web
//! application" OAuth client ([`WebFlow`], [`PendingSignIn`], [`SignedIn`]),
//! and a per-user map of credentials ([`UserCredentials`]) over a
//! [`KeyedTokenStore`](crate::KeyedTokenStore).
//!
//! ```no_run
//! use gemini_oauth::web::{SignInOptions, WebFlow};
//! use gemini_oauth::{ClientSecret, scopes};
//! # async fn f(callback_query: &str) -> gemini_oauth::Result<()> {
//! let flow = WebFlow::new(
//!     ClientSecret::from_file("client_secret.json").await?,
//!     "https://app.example/oauth2callback",
//! )?
//! .scopes([scopes::OPENID, scopes::GENERATIVE_LANGUAGE_RETRIEVER]);
//! // GET /login: keep `pending` server-side, send the user to `url`.
//! let (url, pending) = flow.authorization_url(&SignInOptions::new())?;
//! // GET /oauth2callback?state=…&code=…: the query as it came.
//! let signed_in = flow.finish(&pending, callback_query).await?;
//! let user_id = signed_in.subject().expect("openid was asked for");
//! # let _ = (url, user_id); Ok(()) }
//! ```

mod pending;
mod users;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;

pub use pending::PendingSignIn;
pub use users::{RefreshFailure, UserCredentials};

use crate::client_secret::{ClientKind, ClientSecret};
use crate::consent::pkce::{Pkce, random_token};
use crate::consent::redirect::{Callback, parse_callback};
use crate::error::{Error, Result};
use crate::http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpClient};
use crate::proxy::Proxy;
use crate::token::StoredToken;
use crate::token_endpoint::{self, Retry, exchange_code};
use crate::url::check_endpoint;

/// How long a started sign-in may take by default: Google's authorization
/// codes live 10 minutes.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// The sign-in of a web app's users with a "Web application" OAuth client
/// (`client_secret.json` with `"web"`): an authorization URL for the app's
/// own registered `redirect_uri` with `state`, PKCE (S256),
/// `access_type=offline` and, on request, `prompt`, `login_hint` and
/// `include_granted_scopes`; then the exchange of the returned code.
///
/// The endpoints are the client secret's (override them with
/// [`ClientSecret::auth_uri`] and [`ClientSecret::token_uri`]); the token
/// endpoint is reached through the proxy the environment names
/// (`HTTPS_PROXY`, …), never for loopback. Building does no I/O; a flow is
/// cheap to clone and serves any number of sign-ins at once.
#[derive(Clone)]
pub struct WebFlow {
    secret: ClientSecret,
    redirect_uri: String,
    scopes: Vec<String>,
    max_age: Duration,
    http: Arc<HttpClient>,
}

impl fmt::Debug for WebFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebFlow")
            .field("client_id", &self.secret.client_id())
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl WebFlow {
    /// A flow for `secret`, a "Web application" client, whose users come
    /// back to `redirect_uri` (registered for the client in the Google Cloud
    /// console). The scopes default to
    /// [`scopes::GENERATIVE_LANGUAGE_RETRIEVER`](crate::scopes::GENERATIVE_LANGUAGE_RETRIEVER).
    ///
    /// # Errors
    /// [`Error::ConsentFlow`] for a client that is not a web client;
    /// [`Error::InvalidUrl`] when an endpoint or the redirect URI is not
    /// `https` (plain `http` is for loopback only); [`Error::Proxy`] when the
    /// proxy variables cannot be used.
    pub fn new(secret: ClientSecret, redirect_uri: impl Into<String>) -> Result<Self> {
        if secret.kind() != ClientKind::Web {
            return Err(Error::ConsentFlow(
                "a web app's sign-in needs a \"Web application\" OAuth client (client_secret.json \
                 with \"web\"); create one in the Google Cloud console under APIs & Services > \
                 Credentials and register the app's redirect URI"
                    .into(),
            ));
        }
        let redirect_uri = redirect_uri.into();
        check_endpoint(&redirect_uri)?;
        check_endpoint(secret.auth_endpoint())?;
        check_endpoint(secret.token_endpoint())?;
        if !secret.redirect_uris().is_empty() && !secret.redirect_uris().contains(&redirect_uri) {
            tracing::warn!(
                %redirect_uri,
                "the redirect URI is not among the client's redirect_uris in its client secret \
                 file; Google refuses a redirect URI that is not registered for the client"
            );
        }
        let http = HttpClient::new(DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)
            .with_proxy(Proxy::from_env()?);
        Ok(WebFlow {
            secret,
            redirect_uri,
            scopes: vec![crate::scopes::GENERATIVE_LANGUAGE_RETRIEVER.to_owned()],
            max_age: DEFAULT_MAX_AGE,
            http: Arc::new(http),
        })
    }

    /// The scopes every sign-in asks for. Add
    /// [`scopes::OPENID`](crate::scopes::OPENID) (and `email`) for an ID
    /// token naming the user ([`SignedIn::subject`]).
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How long after [`authorization_url`](Self::authorization_url) the
    /// callback is still taken (default [`DEFAULT_MAX_AGE`], 10 minutes).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The redirect URI.
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The OAuth client.
    #[must_use]
    pub fn client_secret(&self) -> &ClientSecret {
        &self.secret
    }

    /// Starts a sign-in: the URL to send the user's browser to, and what the
    /// app keeps until the callback (server-side: it holds the PKCE verifier).
    ///
    /// # Errors
    /// [`Error::ConsentFlow`] when the OS random number generator fails.
    pub fn authorization_url(&self, options: &SignInOptions) -> Result<(String, PendingSignIn)> {
        let mut scopes = self.scopes.clone();
        for s in &options.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let pkce = Pkce::new()?;
        let state = random_token(24)?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", self.secret.client_id())
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state.expose_secret())
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("access_type", "offline");
        if options.include_granted_scopes {
            query.append_pair("include_granted_scopes", "true");
        }
        if let Some(prompt) = &options.prompt {
            query.append_pair("prompt", prompt);
        }
        if let Some(hint) = &options.login_hint {
            query.append_pair("login_hint", hint);
        }
        let base = self.secret.auth_endpoint();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}{}", query.finish());
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pending = PendingSignIn {
            state,
            verifier: pkce.verifier,
            scopes,
            redirect_uri: self.redirect_uri.clone(),
            started_at,
        };
        Ok((url, pending))
    }

    /// Finishes a sign-in: checks the callback's `state` against `pending`
    /// (in constant time), exchanges its code (with the PKCE verifier) and
    /// returns the user's new token record. Use each `pending` once: drop it
    /// from where it was kept before calling this.
    ///
    /// `callback_query` is the query string of the request to the redirect
    /// URI, as it came (`state=…&code=…&scope=…`, or `error=access_denied…`).
    ///
    /// # Errors
    /// [`Error::AuthorizationDenied`] when the user (or the server) refused;
    /// [`Error::ConsentFlow`] when the callback does not answer this sign-in
    /// (another `state`, no code) or came after [`max_age`](Self::max_age);
    /// [`Error::ScopesNotGranted`] when the user unticked requested scopes;
    /// the token endpoint's errors ([`Error::OAuth`] with `invalid_grant`
    /// for a code used twice or expired).
    #[tracing::instrument(skip_all, name = "gemini_oauth::web::finish")]
    pub async fn finish(&self, pending: &PendingSignIn, callback_query: &str) -> Result<SignedIn> {
        if pending.is_older_than(self.max_age) {
            return Err(Error::ConsentFlow(format!(
                "the sign-in is outside its {} s window (it started too long ago, \
                 or its start time is ahead of this clock); start it again",
                self.max_age.as_secs()
            )));
        }
        let query = callback_query.strip_prefix('?').unwrap_or(callback_query);
        let code = match parse_callback(query, pending.state.expose_secret()) {
            Some(Callback::Code(code)) => code,
            Some(Callback::Denied(e)) => return Err(e),
            None => {
                return Err(Error::ConsentFlow(
                    "the callback does not answer this sign-in (its state does not match, or it \
                     carries no code); start the sign-in again"
                        .into(),
                ));
            }
        };
        let client = token_endpoint::Client {
            id: self.secret.client_id(),
            secret: self.secret.secret(),
        };
        let mut resp = exchange_code(
            &self.http,
            Retry::default(),
            self.secret.token_endpoint(),
            &client,
            &code,
            &pending.verifier,
            &pending.redirect_uri,
        )
        .await?;
        let id_token = resp.id_token.take();
        let mut record = StoredToken::new_user(
            self.secret.client_id(),
            self.secret.secret(),
            self.secret.token_endpoint(),
        );
        record.scopes = Some(pending.scopes.clone());
        resp.apply_to(&mut record);
        let missing = record.missing_scopes(&pending.scopes);
        if !missing.is_empty() {
            return Err(Error::ScopesNotGranted { missing });
        }
        let (subject, email) = match id_token {
            Some(jwt) => identity(jwt.expose_secret(), self.secret.client_id())?,
            None => (None, None),
        };
        if let Some(email) = &email {
            record.account = Some(email.clone());
        }
        tracing::info!("web sign-in complete");
        Ok(SignedIn {
            token: record,
            subject,
            email,
        })
    }
}

/// The `sub` and `email` claims of the ID token the token endpoint sent,
/// which must be meant for this client.
fn identity(jwt: &str, client_id: &str) -> Result<(Option<String>, Option<String>)> {
    let claims = crate::id_token::claims(jwt).map_err(|problem| Error::IdToken {
        source_name: "the sign-in's token endpoint".into(),
        problem,
    })?;
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == client_id,
        Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(Error::ConsentFlow(
            "the ID token from the token endpoint is not meant for this client (its aud claim)"
                .into(),
        ));
    }
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok((text("sub"), text("email")))
}

/// What a sign-in asks for besides the flow's scopes.
#[derive(Debug, Clone)]
pub struct SignInOptions {
    prompt: Option<String>,
    login_hint: Option<String>,
    include_granted_scopes: bool,
    scopes: Vec<String>,
}

impl Default for SignInOptions {
    fn default() -> Self {
        SignInOptions {
            prompt: None,
            login_hint: None,
            include_granted_scopes: true,
            scopes: Vec::new(),
        }
    }
}

impl SignInOptions {
    /// No prompt, no hint, `include_granted_scopes=true`, the flow's scopes.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `prompt`: `consent` (Google issues a refresh token again only on an
    /// explicit consent), `select_account`, `none`, or several separated by
    /// spaces.
    #[must_use]
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// `login_hint`: the email address or `sub` of the account to sign in.
    #[must_use]
    pub fn login_hint(mut self, hint: impl Into<String>) -> Self {
        self.login_hint = Some(hint.into());
        self
    }

    /// `include_granted_scopes` (default `true`): the new token also covers
    /// what the user granted the app before (incremental authorization).
    #[must_use]
    pub fn include_granted_scopes(mut self, include: bool) -> Self {
        self.include_granted_scopes = include;
        self
    }

    /// Scopes asked for in this sign-in besides the flow's (incremental
    /// authorization: ask for more when a feature needs it).
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// A finished sign-in: the user's token record (google-auth's format) and
/// who they are, from the ID token the token endpoint sent when `openid`
/// was asked for. `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    token: StoredToken,
    subject: Option<String>,
    email: Option<String>,
}

impl SignedIn {
    /// The ID token's `sub`: the user's stable id at the authorization
    /// server (Google's account id), the natural key for
    /// [`UserCredentials`]. `None` without the `openid` scope.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The ID token's `email`, with the `email` scope. It can change; key
    /// users by [`subject`](Self::subject).
    #[must_use]
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The new token record.
    #[must_use]
    pub fn token(&self) -> &StoredToken {
        &self.token
    }

    /// The new token record, to save with
    /// [`UserCredentials::sign_in`] or a [`KeyedTokenStore`](crate::KeyedTokenStore).
    #[must_use]
    pub fn into_token(self) -> StoredToken {
        self.token
    }
}

#[cfg(test)]
mod tests;
