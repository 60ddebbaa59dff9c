//! OAuth scopes for the Gemini API.

/// The scope of Google's Gemini OAuth quickstart (`load_creds.py`):
/// tuned models and semantic retrieval. The default of [`load_creds`](crate::load_creds).
pub const GENERATIVE_LANGUAGE_RETRIEVER: &str =
    "https://www.googleapis.com/auth/generative-language.retriever";

/// Full Google Cloud access, what `gcloud auth application-default login` adds.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The IAM scope: what google-auth asks a service account for when it is
/// the source of an impersonation (enough to call `generateAccessToken`).
pub const IAM: &str = "https://www.googleapis.com/auth/iam";

/// OpenID Connect: a sign-in with it brings an ID token with each refresh
/// ([`Credentials::id_token`](crate::Credentials::id_token)).
pub const OPENID: &str = "openid";

/// The user's email address, in the ID token's `email` claim.
pub const USERINFO_EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
