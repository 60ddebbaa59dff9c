//! Google OAuth user credentials for the Gemini API: what Google's Python
//! `load_creds.py` quickstart does, for Rust.
//!
//! Read a Desktop-app `client_secret.json`, keep tokens in a `token.json` that
//! Python's google-auth can share, refresh them before they expire, run the
//! browser consent flow (PKCE, checked `state`, loopback redirect) only when
//! nothing cached can serve, and call Gemini endpoints with
//! `Authorization: Bearer …` (and `x-goog-user-project` when a quota project is set).
//!
//! # Quickstart
//!
//! ```no_run
//! # async fn run() -> gemini_oauth::Result<()> {
//! // ./client_secret.json, ./token.json, the generative-language.retriever scope,
//! // and the browser consent flow when needed.
//! let creds = gemini_oauth::load_creds().await?;
//! let client = creds.authorized_client();
//! for model in gemini_oauth::gemini::list_models(&client).await? {
//!     println!("{}", model.name);
//! }
//! # Ok(()) }
//! ```
//!
//! The builder sets every part:
//!
//! ```no_run
//! use gemini_oauth::{Consent, CredentialLoader, FileTokenStore, scopes};
//! # async fn run() -> gemini_oauth::Result<()> {
//! let creds = CredentialLoader::new()
//!     .client_secret_file("client_secret.json")
//!     .token_store(FileTokenStore::new("token.json")) // or any impl TokenStore
//!     .scopes([scopes::GENERATIVE_LANGUAGE_RETRIEVER, scopes::CLOUD_PLATFORM])
//!     .quota_project("my-project")
//!     .consent(Consent::PrintUrl) // headless / SSH
//!     .load()
//!     .await?;
//! let token = creds.access_token().await?; // cached; refreshed early, once
//! # let _ = token; Ok(()) }
//! ```
//!
//! # Calling Gemini
//!
//! [`AuthorizedClient::request`] sends any `http::Request` (a bytes or
//! streamed [`RequestBody`]) and returns a streaming [`ResponseBody`]. The
//! [`gemini`] helpers speak raw JSON: [`gemini::generate_content`],
//! [`gemini::stream_generate_content`] (server-sent events as a `Stream` of
//! JSON chunks) and [`gemini::upload_file`] (the Files API's resumable
//! upload, streamed from disk).
//!
//! Timeouts fit model calls: 10 s to connect, 30 s for a token request, and
//! for API calls no whole-request limit unless [`AuthorizedClient::timeout`]
//! sets one, plus an idle limit between pieces of a response body
//! ([`AuthorizedClient::idle_timeout`], default 5 minutes).
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # async fn run() -> gemini_oauth::Result<()> {
//! let client = gemini_oauth::load_creds().await?.authorized_client();
//! let body = serde_json::json!({"contents": [{"parts": [{"text": "Tell a story"}]}]});
//! let mut chunks =
//!     gemini_oauth::gemini::stream_generate_content(&client, "gemini-2.5-flash", &body).await?;
//! while let Some(chunk) = chunks.next().await {
//!     print!("{}", chunk?["candidates"][0]["content"]["parts"][0]["text"]);
//! }
//! # Ok(()) }
//! ```
//!
//! Other HTTP clients take the headers from [`Credentials::headers`] (and a
//! new token after a `401` from [`Credentials::force_refresh`]), or use the
//! reqwest, tower, google-cloud-auth, gcp_auth, google-apis-common, genai
//! or gcloud-auth integrations (see Features).
//!
//! # Web apps
//!
//! A web app's users sign in with a "Web application" OAuth client through
//! [`web::WebFlow`] (state, PKCE, offline access, incremental scopes), and
//! [`web::UserCredentials`] hands out each user's credentials by user id
//! over a [`KeyedTokenStore`]: [`DirectoryTokenStore`] (one google-auth file
//! per user) or, for replicas, [`RedisKeyedTokenStore`] (one key and one
//! refresh lock per user). The `web_sign_in` example is a whole axum app.
//!
//! # Features
//!
//! - `browser` (default): open the consent URL with `$BROWSER` when it is
//!   set, else with the `open` crate (which knows WSL). Without it the URL
//!   is printed (it is printed in every case).
//! - `service-account`: `service_account` key files in Application Default
//!   Credentials (the JWT bearer grant, signed RS256 with `ring`).
//! - `redis`: [`RedisTokenStore`], one token and one refresh shared by
//!   workers on many machines, and [`RedisKeyedTokenStore`], one per user.
//! - `keyring`: [`KeyringTokenStore`], the token in the OS credential store
//!   (macOS Keychain, Windows Credential Manager, the Linux kernel keyring)
//!   instead of a file, with a migration from `token.json`.
//! - `reqwest`: `reqwest::AuthMiddleware`, a reqwest-middleware middleware
//!   that adds the headers and retries once after a `401`.
//! - `tower`: `tower::AuthLayer`, a tower layer that adds the headers to any
//!   `http::Request` (hyper-util, axum, tonic channels).
//! - `google-cloud-auth`: google-cloud-auth's `CredentialsProvider` for
//!   [`Credentials`], so `google_cloud_auth::credentials::Credentials::from(creds)`
//!   drives the google-cloud-rust clients.
//! - `gcp-auth`: gcp_auth's `TokenProvider` for [`Credentials`], for crates
//!   that take an `Arc<dyn gcp_auth::TokenProvider>`.
//! - `google-apis-common`: google-apis-common's `GetToken` for
//!   [`Credentials`], the authenticator of the google-apis-rs hubs
//!   (`google-storage1`, `google-drive3`, …).
//! - `yup-oauth2`: `Credentials::from_yup_oauth2` and
//!   `CredentialLoader::yup_oauth2`: a yup-oauth2 `Authenticator` as the
//!   token source, with this crate's single shared refresh and client.
//! - `genai`: `genai::auth_resolver`, an `AuthResolver` for the genai
//!   crate: its Vertex AI adapter sends the current access token as
//!   `Authorization: Bearer` (its Gemini API adapter sends only API keys).
//! - `gcloud-auth`: the `token_source::TokenSourceProvider` and
//!   `TokenSource` that yoshidan's gcloud-auth implements, for
//!   [`Credentials`], which the `gcloud-*` clients (gcloud-storage,
//!   gcloud-pubsub, …) take in their `ClientConfig`.
//! - `aws-lc-rs`: TLS by aws-lc-rs's rustls provider instead of ring's
//!   (see [`guide::platforms`]).
//! - `blocking`: `blocking::load_creds`, `CredentialLoader::load_blocking`
//!   and `blocking::Credentials`, for synchronous code.
//! - `cli`: the `gemini-oauth` command line tool (`cargo install
//!   gemini-oauth --features cli`), a thin face over this API; it adds no
//!   public item to the library.
//!
//! # Testing your code
//!
//! [`Credentials::from_access_token`] is a test double: a fixed token and
//! expiry, no files, no server, never refreshed.
//!
//! # Application Default Credentials and API keys
//!
//! [`CredentialLoader::application_default`] finds credentials as google-auth
//! does (see [`adc`]); [`Credentials::from_api_key`] (or
//! [`CredentialLoader::api_key`]) uses an API key;
//! [`CredentialLoader::from_env`] chooses between them (and Vertex AI) as
//! Google's Gemini SDKs do (see [`guide::environment`]). All give the same
//! [`Credentials`] and [`AuthorizedClient`].
//!
//! # Proxies and Vertex AI
//!
//! Requests go through the proxies `HTTPS_PROXY`, `HTTP_PROXY` and
//! `ALL_PROXY` name (`http://`, `https://`, `socks5://`, `socks5h://`),
//! except for the hosts in `NO_PROXY` and loopback, as curl chooses them;
//! [`CredentialLoader::proxy`] and [`CredentialLoader::no_proxy`] override
//! them. The metadata server is never proxied.
//! [`CredentialLoader::vertex_ai`] calls the same models through Vertex AI.
//!
//! # Security
//!
//! - Tokens, refresh tokens, client secrets, API keys and authorization codes
//!   never appear in `Debug`, `Display`, errors or `tracing` events, nor do
//!   URL queries and userinfo (proxy passwords included). The `secrecy` strings holding them are zeroed
//!   on drop; the ready-made `Authorization` header values, hyper's buffers
//!   and the JSON text of `token.json` while it is read or written are not.
//! - The consent flow uses PKCE (S256) and a random `state`, listens on
//!   `127.0.0.1` only, never echoes query values into its pages, and times out.
//! - `token.json` is written atomically (temporary file, fsync, rename) with
//!   mode 0600 on Unix.
//! - Plain `http://` endpoints are refused except on loopback.
//!
//! # Guides
//!
//! The [`guide`] pages hold the reference, one topic each: the loader's
//! decisions, the consent flow, stores, ADC, workload identity, calling
//! Gemini, proxies, Vertex AI, integrations, security, performance and the
//! design.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    test,
    allow(
        clippy::arithmetic_side_effects,
        reason = "unit tests may panic on overflow; the library may not (Cargo.toml)"
    )
)]

// Layers, each naming only those below it: the face (loader, adc) → parts
// (client_secret, token, store, consent, token_endpoint, source) → the token
// cache (token_cache, access_token, clock) → credentials and headers → the
// calls (client, gemini). error, url, http, env and endpoints are the ground.
mod access_token;
pub mod adc;
mod api_error;
mod audit;
#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
mod client_secret;
mod clock;
mod connect;
mod consent;
mod consent_reason;
mod credentials;
mod credentials_file;
pub mod endpoints;
pub mod env;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_entry;
#[cfg(feature = "gcloud-auth")]
mod gcloud_auth;
#[cfg(feature = "gcp-auth")]
mod gcp_token_provider;
pub mod gemini;
#[cfg(feature = "genai")]
pub mod genai;
#[cfg(feature = "google-apis-common")]
mod google_apis;
#[cfg(feature = "google-cloud-auth")]
mod google_cloud;
pub mod guide;
mod headers;
mod http;
mod id_token;
mod id_token_cache;
mod json;
mod loader;
mod proxy;
mod regular_file;
mod request_body;
#[cfg(any(feature = "gcp-auth", feature = "google-apis-common"))]
mod requested_scopes;
#[cfg(feature = "reqwest")]
pub mod reqwest;
mod response_body;
pub mod retry;
pub mod scopes;
mod source;
mod store;
mod token;
mod token_cache;
mod token_endpoint;
#[cfg(feature = "tower")]
pub mod tower;
pub mod universe;
mod url;
mod vertex;
pub mod web;

pub use access_token::{AccessToken, EXPIRY_SKEW, REFRESH_WINDOW};
pub use api_error::ApiError;
pub use client::{AuthorizedClient, MAX_BUFFERED_RESPONSE};
pub use client_secret::{ClientKind, ClientSecret, ClientSecretProblem};
pub use consent::{Consent, VISIT_PROMPT};
pub use consent_reason::ConsentReason;
pub use credentials::Credentials;
pub use credentials_file::{CredentialsFileKind, CredentialsFileProblem};
pub use error::{BoxError, Error, Result};
pub use gemini::UploadProblem;
pub use http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_TIMEOUT};
pub use id_token::{IdToken, IdTokenProblem};
pub use loader::{Backend, CredentialLoader, EnvAuth, EnvChoice, kind};
pub use proxy::ProxyProblem;
pub use regular_file::FileKind;
pub use request_body::RequestBody;
pub use response_body::ResponseBody;
pub use retry::RetryPolicy;
pub use source::external_account::ExternalAccountProblem;
pub use source::impersonated::ImpersonationProblem;
pub use store::{
    DirectoryTokenStore, FileTokenStore, KeyedTokenStore, MAX_USER_ID_LEN, MemoryTokenStore,
    StoreLock, TokenStore,
};
#[cfg(feature = "keyring")]
pub use store::{KeyringTokenStore, Migration};
#[cfg(feature = "redis")]
pub use store::{RedisKeyedTokenStore, RedisTokenStore};
pub use token::{StoredToken, TokenFileProblem};
pub use token_cache::RefreshEvent;
pub use token_endpoint::OAuthError;
pub use vertex::VertexProblem;

/// Loads credentials with the quickstart's defaults: `./client_secret.json`,
/// `./token.json`, scope [`scopes::GENERATIVE_LANGUAGE_RETRIEVER`], and the
/// browser consent flow when no cached token serves. Same as
/// `CredentialLoader::new().load()`.
///
/// # Errors
/// See [`CredentialLoader::load`].
pub async fn load_creds() -> Result<Credentials> {
    CredentialLoader::new().load().await
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
