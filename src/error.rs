//! The crate's one error type: the ground every other module stands on.
//!
//! Display texts are lowercase, name the file or endpoint involved, say what
//! to do next, and never contain a token, refresh token, client secret,
//! authorization code, URL query or URL userinfo. The underlying cause is
//! reachable through [`std::error::Error::source`], not repeated in the text.
//! Problem types live beside the code that finds them, held here by their root names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    ApiError, ClientSecretProblem, ConsentReason, CredentialsFileProblem, ExternalAccountProblem,
    FileKind, IdTokenProblem, ImpersonationProblem, OAuthError, ProxyProblem, TokenFileProblem,
    UploadProblem, VertexProblem,
};

/// A boxed, shareable error from a lower layer (I/O, HTTP, a user's store).
pub type BoxError = Arc<dyn std::error::Error + Send + Sync>;

/// `Result<T, gemini_oauth::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to get a client secret file; shared by the messages that need it.
pub(crate) const GET_CLIENT_SECRET: &str = "create one in the Google Cloud console: Google Auth \
platform > Clients > Create client > Application type \"Desktop app\" > Create, then download \
the JSON and save it as client_secret.json";

/// Everything that can go wrong while loading, refreshing or using credentials.
///
/// Errors are `Clone` so that one failed refresh can be handed to every caller
/// that was waiting for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client secret file does not exist.
    #[error("client secret file {} not found; {GET_CLIENT_SECRET}", path.display())]
    #[non_exhaustive]
    ClientSecretNotFound {
        /// The path that was tried.
        path: PathBuf,
    },

    /// The client secret file exists but cannot be used.
    #[error("client secret file {}: {problem}", path.display())]
    #[non_exhaustive]
    ClientSecret {
        /// The file (or `<inline>` for JSON given in memory).
        path: PathBuf,
        /// What is wrong with it.
        problem: ClientSecretProblem,
    },

    /// An Application Default Credentials file cannot be used.
    #[error("{0}")]
    CredentialsFile(CredentialsFileProblem),

    /// A stored token (`token.json`, a token store's record) cannot be used.
    #[error(
        "token file {}: {problem}; fix or delete the file (deleting it means signing in again)",
        path.display()
    )]
    #[non_exhaustive]
    TokenFile {
        /// The file, or the store's name for stores that are not files.
        path: PathBuf,
        /// What is wrong with it.
        problem: TokenFileProblem,
    },

    /// Reading or writing a file failed.
    #[error("cannot {action} {}; check that the path exists and is accessible", path.display())]
    #[non_exhaustive]
    Io {
        /// What was being done (`read`, `write`, …).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// A path given as a file to send ([`RequestBody::from_path`](crate::RequestBody::from_path))
    /// is not a regular file: a directory, a FIFO or a device has no length
    /// to announce (and a FIFO is never waited on).
    #[error(
        "cannot send {} as a request body: it is {kind}, not a regular file; pass a regular \
         file, or stream it with RequestBody::from_stream and no length",
        path.display()
    )]
    #[non_exhaustive]
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },

    /// A [`TokenStore`](crate::TokenStore) failed.
    #[error("token store {store} failed to {action}")]
    #[non_exhaustive]
    Store {
        /// The store's name.
        store: String,
        /// What was being done.
        action: &'static str,
        /// The store's error.
        #[source]
        source: BoxError,
    },

    /// The token endpoint answered `invalid_grant` to a refresh.
    #[error(
        "the refresh token was rejected (invalid_grant{}); it was revoked, has expired \
         (apps whose OAuth consent screen is in \"Testing\" get refresh tokens that expire \
         after 7 days), or the password changed; sign in again: allow consent on the loader \
         or delete {store} and rerun interactively",
        describe(description)
    )]
    #[non_exhaustive]
    InvalidGrant {
        /// Google's `error_description`, if any.
        description: Option<String>,
        /// Where the rejected refresh token came from.
        store: String,
    },

    /// The OAuth server answered with an error other than `invalid_grant`.
    #[error(
        "the OAuth server at {endpoint} answered {error}{}{}",
        describe(description),
        hint_for(error)
    )]
    #[non_exhaustive]
    OAuth {
        /// The endpoint that answered (without query).
        endpoint: String,
        /// The RFC 6749 error code.
        error: OAuthError,
        /// The server's `error_description`, if any.
        description: Option<String>,
        /// The HTTP status.
        status: u16,
    },

    /// The token endpoint answered something that is not a token response.
    #[error("unexpected answer from the token endpoint {endpoint} (HTTP {status}): {problem}")]
    #[non_exhaustive]
    TokenResponse {
        /// The endpoint that answered.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong with the body.
        problem: String,
    },

    /// The request could not be sent or its answer not received.
    #[error("request to {endpoint} failed; check the network connection and the URL")]
    #[non_exhaustive]
    Transport {
        /// The endpoint (without query or userinfo).
        endpoint: String,
        /// The underlying transport error.
        #[source]
        source: BoxError,
    },

    /// The answer was larger than anything this endpoint legitimately sends.
    #[error(
        "the answer from {endpoint} is larger than {limit} bytes; it is not what this endpoint sends, check the URL"
    )]
    #[non_exhaustive]
    ResponseTooLarge {
        /// The endpoint (without query or userinfo).
        endpoint: String,
        /// The limit in bytes.
        limit: usize,
    },

    /// Extra root certificates given to the loader cannot be used.
    #[error("invalid root certificate: {0}; pass PEM \"CERTIFICATE\" blocks")]
    InvalidCertificate(String),

    /// An operation took longer than its timeout.
    #[error("{what} timed out after {after:?}")]
    #[non_exhaustive]
    Timeout {
        /// What timed out.
        what: String,
        /// The configured limit.
        after: Duration,
    },

    /// A URL given to the crate is unusable.
    #[error("invalid URL {url:?}: {reason}")]
    #[non_exhaustive]
    InvalidUrl {
        /// The URL, without query or userinfo.
        url: String,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A value meant for an HTTP header (a quota project id, an API key, an
    /// access token from a server) holds characters no header may carry.
    #[error("{what} contains characters not allowed in an HTTP header; check the value")]
    #[non_exhaustive]
    InvalidHeaderValue {
        /// Which value (never the value itself).
        what: &'static str,
    },

    /// No usable cached token, and interactive consent is not allowed.
    #[error(
        "{reason}; interactive sign-in is needed but was not allowed (Consent::Never): run the \
         program once interactively, with Consent::OpenBrowser (or Consent::PrintUrl to get a \
         URL), to sign in and fill {store}"
    )]
    #[non_exhaustive]
    ConsentRequired {
        /// Why consent would be needed.
        reason: ConsentReason,
        /// The token store's name.
        store: String,
    },

    /// The user denied access on the consent screen (or the server refused the request).
    #[error(
        "authorization was refused by the OAuth server ({error}{}); {}",
        describe(description),
        denied_hint(error)
    )]
    #[non_exhaustive]
    AuthorizationDenied {
        /// The `error` parameter of the redirect.
        error: OAuthError,
        /// The `error_description` parameter, if any.
        description: Option<String>,
    },

    /// The consent flow failed for a reason other than the user's answer.
    #[error("consent flow failed: {0}")]
    ConsentFlow(String),

    /// The user granted fewer scopes than were requested.
    #[error(
        "the user did not grant all requested scopes (missing: {}); run the sign-in again and \
         tick every permission on the consent screen",
        missing.join(", ")
    )]
    #[non_exhaustive]
    ScopesNotGranted {
        /// The requested scopes that were not granted.
        missing: Vec<String>,
    },

    /// No Application Default Credentials (or API key) were found.
    #[error(
        "no Google credentials found (tried: {}); sign in with `gcloud auth application-default \
         login --client-id-file=client_secret.json --scopes=...` or this crate's `login` example, \
         point GOOGLE_APPLICATION_CREDENTIALS at a credentials file, or set GOOGLE_API_KEY",
        tried.join("; ")
    )]
    #[non_exhaustive]
    NoCredentials {
        /// Every place that was looked at, and what was found there.
        tried: Vec<String>,
    },

    /// A credentials file holds a credential type this crate does not handle (yet).
    #[error("credentials file {}: type {kind:?} is not supported yet{hint}", path.display())]
    #[non_exhaustive]
    UnsupportedCredential {
        /// The file.
        path: PathBuf,
        /// Its `type`.
        kind: String,
        /// What to do instead.
        hint: &'static str,
    },

    /// An `external_account` file (workload or workforce identity
    /// federation) cannot be used, or its subject token cannot be had.
    #[error("external account credentials {}: {problem}", path.display())]
    #[non_exhaustive]
    ExternalAccount {
        /// The credentials file.
        path: PathBuf,
        /// What is wrong, naming the field.
        problem: ExternalAccountProblem,
    },

    /// A service-account token request failed.
    #[error(
        "could not get a token for service account {account}; check that the key is valid and not disabled"
    )]
    #[non_exhaustive]
    ServiceAccount {
        /// The account's email.
        account: String,
        /// yup-oauth2's error.
        #[source]
        source: BoxError,
    },

    /// The IAM Credentials API gave no token for the service account being
    /// impersonated (`generateAccessToken`).
    #[error(
        "could not impersonate service account {target} at {endpoint} (HTTP {status}): {problem}"
    )]
    #[non_exhaustive]
    Impersonation {
        /// The service account to impersonate.
        target: String,
        /// The endpoint that answered (without query).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong: Google's refusal, or the field of the answer that
        /// is missing or malformed.
        problem: ImpersonationProblem,
    },

    /// These credentials (an API key) have no OAuth access token.
    #[error(
        "API-key credentials have no OAuth access token; use headers() or authorized_client(), which send x-goog-api-key"
    )]
    NoAccessToken,

    /// No ID token for the audience asked for
    /// ([`Credentials::id_token`](crate::Credentials::id_token)).
    #[error("no ID token from {source_name}: {problem}")]
    #[non_exhaustive]
    IdToken {
        /// Where the credentials came from.
        source_name: String,
        /// Why.
        problem: IdTokenProblem,
    },

    /// These credentials cannot get a new access token: an API key (which has
    /// none), or a fixed token from
    /// [`Credentials::from_access_token`](crate::Credentials::from_access_token)
    /// (a test double) that expired or was asked to refresh.
    #[error("{source_name} cannot be refreshed: {reason}")]
    #[non_exhaustive]
    CannotRefresh {
        /// Where the credentials came from.
        source_name: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },

    /// These credentials hold no user sign-in (a refresh token), which the
    /// operation needs: revoking, or writing an `authorized_user` file.
    #[error(
        "{what} needs user credentials (a refresh token from a sign-in); these come from {source_name}"
    )]
    #[non_exhaustive]
    NotUserCredentials {
        /// What was asked.
        what: &'static str,
        /// Where these credentials came from.
        source_name: String,
    },

    /// The credentials belong to another universe domain than the API they
    /// would be sent to: their tokens would be rejected there (or reach the
    /// wrong cloud). Found at load, before any token request.
    #[error(
        "the credentials from {source_name} belong to the universe domain {credentials}, but the \
         API's universe domain is {api} (set by {api_origin}); use credentials of {api}, or set \
         the universe domain to {credentials}"
    )]
    #[non_exhaustive]
    UniverseMismatch {
        /// Where the credentials came from.
        source_name: String,
        /// The credentials' universe domain.
        credentials: String,
        /// The universe domain configured for the API.
        api: String,
        /// What configured it (`.universe_domain()`, `GOOGLE_CLOUD_UNIVERSE_DOMAIN`).
        api_origin: String,
    },

    /// A universe domain is not a DNS name. The value is not shown: it may
    /// be whatever a server answered.
    #[error("{origin}: the universe domain is not a DNS name (such as googleapis.com); fix it")]
    #[non_exhaustive]
    InvalidUniverseDomain {
        /// Where it came from (a file, the metadata server, a setting).
        origin: String,
    },

    /// These credentials were signed out ([`Credentials::revoke`](crate::Credentials::revoke)).
    #[error(
        "the credentials from {source_name} were revoked (signed out); load credentials again \
         to sign in"
    )]
    #[non_exhaustive]
    Revoked {
        /// Where the credentials came from.
        source_name: String,
    },

    /// A blocking function (feature `blocking`) was called from inside a
    /// tokio runtime, where blocking would stall it (or deadlock it).
    #[error(
        "{what} blocks, and was called from inside a tokio runtime (an async task, block_on or \
         spawn_blocking); there, await the async API instead (CredentialLoader::load, \
         Credentials::access_token), or call it from a thread outside the runtime"
    )]
    #[non_exhaustive]
    BlockingInAsync {
        /// The function that was called.
        what: &'static str,
    },

    /// The blocking API's runtime thread (feature `blocking`) could not be
    /// started, or stopped during a call.
    #[error(
        "the blocking API's background runtime {problem}; the process may be out of threads or \
         memory: retry, or use the async API"
    )]
    #[non_exhaustive]
    BlockingRuntime {
        /// What went wrong.
        problem: String,
    },

    /// A Gemini (Google API) call failed.
    #[error(transparent)]
    Api(#[from] ApiError),

    /// A streamed answer (server-sent events) is not JSON events, or ends inside one.
    #[error("the event stream from {endpoint} is malformed: {problem}; send the request again")]
    #[non_exhaustive]
    EventStream {
        /// The endpoint (without query or userinfo).
        endpoint: String,
        /// What is wrong (never the event's content).
        problem: String,
    },

    /// Uploading a file (the Files API's resumable protocol) failed.
    #[error("{0}")]
    Upload(UploadProblem),
    /// A proxy could not carry the request.
    #[error(
        "proxy {proxy} {problem}; check the proxy URL (the loader's proxy option, HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) or bypass it with NO_PROXY"
    )]
    #[non_exhaustive]
    Proxy {
        /// The proxy's URL, without its user name and password.
        proxy: String,
        /// What went wrong.
        problem: ProxyProblem,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The Vertex AI project or location cannot be used, or conflicts with
    /// an explicit API base.
    #[error("{0}")]
    VertexAi(VertexProblem),
}

impl Error {
    /// Wraps a custom [`TokenStore`](crate::TokenStore)'s error.
    #[must_use]
    pub fn store(
        store: impl Into<String>,
        action: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Store {
            store: store.into(),
            action,
            source: Arc::from(source.into()),
        }
    }

    /// Whether retrying the same operation later may succeed (network trouble,
    /// timeouts, 5xx/429 answers, `server_error`, `temporarily_unavailable`).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Proxy { problem, .. } => *problem == ProxyProblem::Unreachable,
            Error::OAuth { error, status, .. } => {
                matches!(
                    error,
                    OAuthError::ServerError | OAuthError::TemporarilyUnavailable
                ) || *status >= 500
                    || *status == 429
            }
            Error::TokenResponse { status, .. } | Error::Impersonation { status, .. } => {
                *status >= 500 || *status == 429
            }
            Error::Api(api) => api.status >= 500 || api.status == 429,
            Error::ExternalAccount { problem, .. } => problem.is_transient(),
            _ => false,
        }
    }

    /// The OAuth error code, for errors that carry one.
    #[must_use]
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match self {
            Error::OAuth { error, .. } | Error::AuthorizationDenied { error, .. } => Some(error),
            Error::InvalidGrant { .. } => Some(&OAuthError::InvalidGrant),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// A failed request; a proxy's failure or the connect timeout anywhere in the chain of
    /// causes (from the connector under hyper) is kept, the timeout named for `endpoint`.
    pub(crate) fn transport(
        endpoint: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*source);
        while let Some(e) = cause {
            match e.downcast_ref::<Error>() {
                Some(proxy @ Error::Proxy { .. }) => return proxy.clone(),
                Some(&Error::Timeout { after, .. }) => {
                    let what = format!("connecting to {endpoint} (TCP, proxy and TLS handshakes)");
                    return Error::Timeout { what, after };
                }
                _ => cause = e.source(),
            }
        }
        Error::Transport {
            endpoint: endpoint.to_owned(),
            source: Arc::from(source),
        }
    }
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

fn hint_for(error: &OAuthError) -> &'static str {
    match error {
        OAuthError::InvalidClient => {
            "; the client_id or client_secret is wrong or the client was deleted: download \
             client_secret.json again from the Google Cloud console"
        }
        OAuthError::InvalidScope => "; check the requested scopes",
        OAuthError::UnauthorizedClient => {
            "; the OAuth client may not use this grant: use a \"Desktop app\" client"
        }
        OAuthError::ServerError | OAuthError::TemporarilyUnavailable => {
            "; this is on the server's side, try again later"
        }
        _ => "",
    }
}

fn denied_hint(error: &OAuthError) -> &'static str {
    match error {
        OAuthError::AccessDenied => {
            "the consent screen was declined; run again and choose Allow, or, if the app is in \
             \"Testing\", ask its owner to add your account as a test user"
        }
        _ => "check the client configuration and requested scopes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let oauth = |error, status| Error::OAuth {
            endpoint: "e".into(),
            error,
            description: None,
            status,
        };
        assert!(oauth(OAuthError::ServerError, 400).is_transient());
        assert!(oauth(OAuthError::Other("x".into()), 503).is_transient());
        assert!(!oauth(OAuthError::InvalidClient, 401).is_transient());
        let grant = Error::InvalidGrant {
            description: None,
            store: "token.json".into(),
        };
        assert!(!grant.is_transient());
        assert_eq!(grant.oauth_error(), Some(&OAuthError::InvalidGrant));
    }

    #[test]
    fn invalid_grant_message_explains_causes_and_fix() {
        let msg = Error::InvalidGrant {
            description: Some("Token has been expired or revoked.".into()),
            store: "token.json".into(),
        }
        .to_string();
        assert!(msg.contains("7 days"), "{msg}");
        assert!(msg.contains("Testing"), "{msg}");
        assert!(msg.contains("delete token.json"), "{msg}");
        assert!(msg.contains("Token has been expired or revoked."), "{msg}");
    }
}
