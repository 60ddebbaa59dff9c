//! A web app (axum) whose users sign in with their Google account and call
//! Gemini as themselves: a "Web application" OAuth client, one stored token
//! per user (a directory of google-auth files, or Redis), and a per-user
//! credentials map.
//!
//! ```sh
//! cargo run --example web_sign_in -- --client-secret client_secret.json \
//!     --listen 127.0.0.1:8080 --store-dir ./user-tokens
//! # then open http://127.0.0.1:8080/ and sign in
//! ```
//!
//! Routes: `/` (who is signed in), `/login` (to the consent screen),
//! `/oauth2callback` (the redirect URI: register it for the client),
//! `/models` (lists the Gemini models as the signed-in user), `POST /logout`
//! (revokes and deletes the user's token; not a GET, which a link on another
//! site could make with the user's `SameSite=Lax` cookie).
//!
//! A signed-in user's session is a cookie signed with HMAC-SHA256 (the key
//! from `--session-key-file`, shared by replicas, else a random one), so
//! any replica serves the user; it carries when it was issued and is
//! refused after 7 days (or when dated more than a minute ahead of the
//! clock: replicas' clocks differ a little), so a copied cookie does not
//! serve forever. The [`PendingSignIn`] between `/login` and
//! the callback travels the same way, in a signed cookie that lives 10
//! minutes (as Flask's signed session cookie carries google-auth-oauthlib's
//! state): the callback may reach another replica than `/login` did.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gemini_oauth::web::{PendingSignIn, SignInOptions, UserCredentials, WebFlow};
use gemini_oauth::{ClientSecret, CredentialLoader, DirectoryTokenStore, Error, scopes};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const USAGE: &str = "Usage: web_sign_in [FLAGS]

A web app whose users sign in with Google and list Gemini models as themselves.

Flags:
  --client-secret FILE  a \"Web application\" client (default: client_secret.json)
  --listen ADDR         address to serve on (default: 127.0.0.1:8080)
  --redirect-uri URL    the registered redirect URI (default:
                        http://ADDR/oauth2callback)
  --store-dir DIR       one token file per user in DIR (default: user-tokens)
  --redis-url URL       keep users' tokens in Redis instead (feature redis)
  --redis-prefix TEXT   prefix of the users' Redis keys (default: web-sign-in:)
  --session-key-file FILE  key that signs session cookies, at least 32 random
                        bytes; give replicas the same file (default: a
                        random key, sessions end when the process does)
  --scope URL           scope to ask for besides openid and email; repeat
                        (default: generative-language.retriever)
  --api-base URL        Gemini API base (default: $GEMINI_API_BASE or Google's)
  --auth-uri URL        authorization endpoint override
  --token-uri URL       token endpoint override
  --revoke-uri URL      token revocation endpoint override
  -h, --help            show this help

Prints `listening on http://ADDR` on stdout once it serves.";

/// The shortest session key taken, in bytes: HMAC-SHA256's output size.
const MIN_SESSION_KEY: usize = 32;

/// The users' credentials over the store chosen on the command line.
#[derive(Clone)]
enum Users {
    Directory(UserCredentials<DirectoryTokenStore>),
    #[cfg(feature = "redis")]
    Redis(UserCredentials<gemini_oauth::RedisKeyedTokenStore>),
}

macro_rules! each {
    ($users:expr, $u:ident => $body:expr) => {
        match $users {
            Users::Directory($u) => $body,
            #[cfg(feature = "redis")]
            Users::Redis($u) => $body,
        }
    };
}

impl Users {
    async fn get(&self, user: &str) -> gemini_oauth::Result<gemini_oauth::Credentials> {
        each!(self, u => u.get(user).await)
    }
    async fn sign_in(
        &self,
        user: &str,
        token: gemini_oauth::StoredToken,
    ) -> gemini_oauth::Result<gemini_oauth::Credentials> {
        each!(self, u => u.sign_in(user, token).await)
    }
    async fn sign_out(&self, user: &str) -> gemini_oauth::Result<()> {
        each!(self, u => u.sign_out(user).await)
    }
}

/// The cookie of a signed-in user's session: `<issued, Unix seconds>:<user id>`.
const SESSION: &str = "session";
/// How long a session cookie serves after the sign-in.
const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far ahead of this replica's clock a session may be dated: another
/// replica's clock may be a little ahead, and seconds are whole (dated 101
/// at its 101.05, the session reaches this replica at its 100.9).
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The cookie of a sign-in between `/login` and the callback.
const PENDING: &str = "pending";

#[derive(Clone)]
struct App {
    flow: WebFlow,
    users: Users,
    session_key: Arc<[u8]>,
    secure_cookies: bool,
}

#[derive(Default)]
struct Flags {
    client_secret: Option<String>,
    listen: Option<String>,
    redirect_uri: Option<String>,
    store_dir: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    session_key_file: Option<String>,
    scopes: Vec<String>,
    api_base: Option<String>,
    auth_uri: Option<String>,
    token_uri: Option<String>,
    revoke_uri: Option<String>,
}

fn parse_flags() -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--client-secret" => f.client_secret = Some(value()?),
            "--listen" => f.listen = Some(value()?),
            "--redirect-uri" => f.redirect_uri = Some(value()?),
            "--store-dir" => f.store_dir = Some(value()?),
            "--redis-url" => f.redis_url = Some(value()?),
            "--redis-prefix" => f.redis_prefix = Some(value()?),
            "--session-key-file" => f.session_key_file = Some(value()?),
            "--scope" => f.scopes.push(value()?),
            "--api-base" => f.api_base = Some(value()?),
            "--auth-uri" => f.auth_uri = Some(value()?),
            "--token-uri" => f.token_uri = Some(value()?),
            "--revoke-uri" => f.revoke_uri = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(f)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let flags = match parse_flags() {
        Ok(flags) => flags,
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(flags).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = flags
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let redirect_uri = flags
        .redirect_uri
        .clone()
        .unwrap_or_else(|| format!("http://{bound}/oauth2callback"));

    let mut secret = ClientSecret::from_file(
        flags
            .client_secret
            .as_deref()
            .unwrap_or("client_secret.json"),
    )
    .await?;
    if let Some(uri) = &flags.auth_uri {
        secret = secret.auth_uri(uri);
    }
    if let Some(uri) = &flags.token_uri {
        secret = secret.token_uri(uri);
    }
    let mut scopes = vec![scopes::OPENID.to_owned(), "email".to_owned()];
    if flags.scopes.is_empty() {
        scopes.push(scopes::GENERATIVE_LANGUAGE_RETRIEVER.to_owned());
    }
    scopes.extend(flags.scopes.iter().cloned());
    let flow = WebFlow::new(secret, &redirect_uri)?.scopes(scopes.clone());

    // How each user's credentials are loaded: the same scopes and endpoints.
    let mut loader = CredentialLoader::new().scopes(scopes);
    if let Some(base) = &flags.api_base {
        loader = loader.api_base(base);
    }
    if let Some(uri) = &flags.token_uri {
        loader = loader.token_uri(uri);
    }
    if let Some(uri) = &flags.revoke_uri {
        loader = loader.revoke_uri(uri);
    }
    let users = match &flags.redis_url {
        #[cfg(feature = "redis")]
        Some(url) => {
            let prefix = flags.redis_prefix.as_deref().unwrap_or("web-sign-in:");
            let store = gemini_oauth::RedisKeyedTokenStore::open(url, prefix)?;
            Users::Redis(UserCredentials::new(store, loader).on_refresh_failure(log_failure))
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => return Err("--redis-url needs the `redis` feature".into()),
        None => {
            let dir = flags.store_dir.as_deref().unwrap_or("user-tokens");
            let store = DirectoryTokenStore::new(dir);
            Users::Directory(UserCredentials::new(store, loader).on_refresh_failure(log_failure))
        }
    };
    let session_key: Arc<[u8]> = match &flags.session_key_file {
        Some(path) => {
            let key = std::fs::read(path)?;
            // An empty or short key (a secret mount that came up empty) would
            // let anyone sign a session cookie for any user.
            if key.len() < MIN_SESSION_KEY {
                return Err(format!(
                    "the session key in {path} is {} bytes long; it must be at least \
                     {MIN_SESSION_KEY} random bytes (head -c 32 /dev/urandom > {path})",
                    key.len()
                )
                .into());
            }
            key.into()
        }
        None => random_bytes().into(),
    };
    let app = App {
        flow,
        users,
        session_key,
        secure_cookies: redirect_uri.starts_with("https://"),
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/oauth2callback", get(callback))
        .route("/models", get(models))
        .route("/logout", post(logout))
        .with_state(app);
    println!("listening on http://{bound}");
    axum::serve(listener, router).await?;
    Ok(())
}

fn log_failure(failure: &gemini_oauth::web::RefreshFailure) {
    if failure.needs_sign_in() {
        tracing::warn!(user = %failure.user_id, "access was revoked: the user must sign in again");
    } else {
        tracing::warn!(user = %failure.user_id, error = %failure.error, "a token refresh failed");
    }
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    match app.user(&headers) {
        Some(user) => page(
            StatusCode::OK,
            "Signed in",
            &format!(
                "Signed in as {}. <a href=\"/models\">Models</a> \
                 <form method=\"post\" action=\"/logout\"><button>Sign out</button></form>",
                escape(&user)
            ),
        ),
        None => page(
            StatusCode::OK,
            "Welcome",
            "<a href=\"/login\">Sign in with Google</a>",
        ),
    }
}

async fn login(State(app): State<App>) -> Response {
    let (url, pending) = match app.flow.authorization_url(&SignInOptions::new()) {
        Ok(started) => started,
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let Ok(json) = serde_json::to_string(&pending) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in problem", "");
    };
    let sealed = app.seal(PENDING, &json);
    app.with_cookie(Redirect::to(&url).into_response(), PENDING, &sealed)
}

async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // Signed by a replica of this app; `finish` refuses one older than 10
    // minutes, and the authorization server takes each code once.
    let pending = cookie(&headers, PENDING)
        .and_then(|sealed| app.open(PENDING, &sealed))
        .and_then(|json| serde_json::from_slice::<PendingSignIn>(&json).ok());
    let Some(pending) = pending else {
        return page(
            StatusCode::BAD_REQUEST,
            "No sign-in",
            "<a href=\"/login\">Sign in</a>",
        );
    };
    let signed_in = match app
        .flow
        .finish(&pending, query.as_deref().unwrap_or(""))
        .await
    {
        Ok(signed_in) => signed_in,
        Err(e @ Error::AuthorizationDenied { .. }) => return failure(StatusCode::FORBIDDEN, &e),
        Err(e) => return failure(StatusCode::BAD_GATEWAY, &e),
    };
    let Some(user) = signed_in.subject().map(str::to_owned) else {
        return page(
            StatusCode::BAD_GATEWAY,
            "No user id",
            "The sign-in named no user (openid).",
        );
    };
    if let Err(e) = app.users.sign_in(&user, signed_in.into_token()).await {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, &e);
    }
    let session = app.seal(SESSION, format!("{}:{user}", unix_now()));
    let resp = app.with_cookie(Redirect::to("/models").into_response(), SESSION, &session);
    app.with_cookie(resp, PENDING, "")
}

async fn models(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(user) = app.user(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let creds = match app.users.get(&user).await {
        Ok(creds) => creds,
        // Never signed in here, or access revoked: sign in (again).
        Err(Error::ConsentRequired { .. } | Error::InvalidGrant { .. }) => {
            return Redirect::to("/login").into_response();
        }
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    match gemini_oauth::gemini::list_models(&creds.authorized_client()).await {
        Ok(models) => {
            let items: String = models
                .iter()
                .map(|m| format!("<li>{}</li>", escape(&m.name)))
                .collect();
            page(
                StatusCode::OK,
                "Models",
                &format!("<p>Signed in as {}</p><ul>{items}</ul>", escape(&user)),
            )
        }
        Err(e) => failure(StatusCode::BAD_GATEWAY, &e),
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(user) = app.user(&headers)
        && let Err(e) = app.users.sign_out(&user).await
    {
        return failure(StatusCode::BAD_GATEWAY, &e);
    }
    let resp = page(
        StatusCode::OK,
        "Signed out",
        "<a href=\"/login\">Sign in</a>",
    );
    app.with_cookie(resp, SESSION, "")
}

impl App {
    /// A cookie value for `name`: `value` and the HMAC-SHA256 of the name
    /// and value, base64url. The name is signed too, so one kind of cookie
    /// never passes for another.
    fn seal(&self, name: &str, value: impl AsRef<[u8]>) -> String {
        let value = URL_SAFE_NO_PAD.encode(value);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(name, &value).finalize().into_bytes());
        format!("{value}.{tag}")
    }

    /// The value sealed in a `name` cookie, if its signature holds (checked
    /// in constant time).
    fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        let (value, tag) = sealed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(name, value).verify_slice(&tag).ok()?;
        URL_SAFE_NO_PAD.decode(value).ok()
    }

    fn mac(&self, name: &str, value: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.session_key).expect("any key length");
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
        mac
    }

    /// The signed-in user, from the session cookie, if it is signed and
    /// was issued less than [`SESSION_LIFETIME`] ago (and not more than
    /// [`CLOCK_SKEW`] in the future).
    fn user(&self, headers: &HeaderMap) -> Option<String> {
        let session = String::from_utf8(self.open(SESSION, &cookie(headers, SESSION)?)?).ok()?;
        let (issued, user) = session.split_once(':')?;
        let issued: u64 = issued.parse().ok()?;
        let now = unix_now();
        let fresh = issued <= now.saturating_add(CLOCK_SKEW.as_secs())
            && now.saturating_sub(issued) < SESSION_LIFETIME.as_secs();
        fresh.then(|| user.to_owned())
    }

    fn with_cookie(&self, mut resp: Response, name: &str, value: &str) -> Response {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let expire = match (value.is_empty(), name) {
            (true, _) => 0,
            (false, PENDING) => 600,
            (false, _) => SESSION_LIFETIME.as_secs(),
        };
        let cookie =
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}; Max-Age={expire}");
        resp.headers_mut()
            .append(header::SET_COOKIE, HeaderValue::from_str(&cookie).unwrap());
        resp
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator");
    bytes
}

/// An error page: the crate's messages carry no secrets.
fn failure(status: StatusCode, e: &Error) -> Response {
    page(status, "Sign-in problem", &escape(&e.to_string()))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
