//! Google's endpoints, used when nothing overrides them. Every one of them
//! can be overridden (builder options, the files' own fields), which is how
//! the tests aim the crate at local servers.

/// Google's authorization endpoint, used when a client secret file names none.
pub const GOOGLE_AUTH_URI: &str = "https://accounts.google.com/o/oauth2/auth";
/// Google's token endpoint, used when a file names none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Google's token revocation endpoint.
pub const GOOGLE_REVOKE_URI: &str = "https://oauth2.googleapis.com/revoke";
/// The production Gemini API base URL.
pub const GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com/v1";
/// The universe Google's public APIs live in.
pub const DEFAULT_UNIVERSE_DOMAIN: &str = "googleapis.com";
