//! Compile-time checks of what every public type promises (issue 14's
//! audit). A type that loses one of these traits fails the build here, not
//! in a user's program.
//!
//! | promise | types |
//! |---|---|
//! | `Debug` (secrets redacted) + `Send` + `Sync` | every public type |
//! | `Clone` | all but [`StoreLock`] (a held lock is not copied) and the bodies and streams, read once ([`RequestBody`](crate::RequestBody), [`ResponseBody`](crate::ResponseBody), [`ContentStream`](crate::gemini::ContentStream)) |
//! | `#[must_use]` | [`CredentialLoader`] (does nothing until `load()`), the adapters' layer and middleware, getters without side effects |
//!
//! `Credentials`, `AccessToken`, `AuthorizedClient` and the stores are cheap
//! to clone (an `Arc` inside); clones share one token cache.

use std::fmt::Debug;

use crate::loader::kind::{ApiKey, ApplicationDefault, FixedToken, UserFlow};
use crate::{
    AccessToken, ApiError, AuthorizedClient, ClientKind, ClientSecret, ClientSecretProblem,
    Consent, ConsentReason, CredentialLoader, Credentials, Error, FileTokenStore,
    ImpersonationProblem, MemoryTokenStore, OAuthError, ProxyProblem, StoreLock, StoredToken,
    TokenFileProblem, VertexProblem, gemini::Model,
};

const fn shared<T: Debug + Send + Sync + Clone + 'static>() {}
const fn owned<T: Debug + Send + Sync + 'static>() {}

const _: () = {
    shared::<Credentials>();
    shared::<AccessToken>();
    shared::<AuthorizedClient>();
    shared::<CredentialLoader<UserFlow>>();
    shared::<CredentialLoader<ApplicationDefault>>();
    shared::<CredentialLoader<ApiKey>>();
    shared::<CredentialLoader<FixedToken>>();
    shared::<UserFlow>();
    shared::<ApplicationDefault>();
    shared::<ApiKey>();
    shared::<FixedToken>();
    shared::<ClientSecret>();
    shared::<ClientKind>();
    shared::<StoredToken>();
    shared::<FileTokenStore>();
    shared::<MemoryTokenStore>();
    shared::<Consent>();
    shared::<crate::universe::Universe>();
    shared::<Model>();
    shared::<crate::RefreshEvent>();
    // Errors are Clone so one failed refresh reaches every waiter.
    shared::<Error>();
    shared::<ApiError>();
    shared::<ConsentReason>();
    shared::<OAuthError>();
    shared::<ClientSecretProblem>();
    shared::<TokenFileProblem>();
    shared::<VertexProblem>();
    shared::<ProxyProblem>();
    shared::<ImpersonationProblem>();
    shared::<crate::ExternalAccountProblem>();
    shared::<crate::CredentialsFileProblem>();
    shared::<crate::CredentialsFileKind>();
    shared::<crate::FileKind>();
    owned::<StoreLock>();
    // Bodies and streams are read once: not Clone.
    owned::<crate::RequestBody>();
    owned::<crate::ResponseBody>();
    owned::<crate::gemini::ContentStream>();
    shared::<crate::gemini::File>();
    shared::<crate::UploadProblem>();
    shared::<crate::DirectoryTokenStore>();
    shared::<crate::web::WebFlow>();
    shared::<crate::web::SignInOptions>();
    shared::<crate::web::PendingSignIn>();
    shared::<crate::web::SignedIn>();
    shared::<crate::web::RefreshFailure>();
    shared::<crate::web::UserCredentials<crate::DirectoryTokenStore>>();
    #[cfg(feature = "redis")]
    shared::<crate::RedisTokenStore>();
    #[cfg(feature = "redis")]
    shared::<crate::RedisKeyedTokenStore>();
    #[cfg(feature = "redis")]
    shared::<crate::web::UserCredentials<crate::RedisKeyedTokenStore>>();
    #[cfg(feature = "keyring")]
    shared::<crate::KeyringTokenStore>();
    #[cfg(feature = "keyring")]
    shared::<crate::Migration>();
    #[cfg(feature = "reqwest")]
    shared::<crate::reqwest::AuthMiddleware>();
    #[cfg(feature = "tower")]
    shared::<crate::tower::AuthLayer>();
    // Clone + Send + Sync whenever the wrapped service is.
    #[cfg(feature = "tower")]
    shared::<crate::tower::AuthService<MemoryTokenStore>>();
    #[cfg(feature = "blocking")]
    shared::<crate::blocking::Credentials>();
    #[cfg(feature = "yup-oauth2")]
    shared::<crate::kind::YupOauth2>();
    #[cfg(feature = "yup-oauth2")]
    shared::<CredentialLoader<crate::kind::YupOauth2>>();
};
