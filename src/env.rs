//! The environment variables the crate reads, by their own names.

/// Names a credentials file to use before anything else (ADC).
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// gcloud's configuration directory, when not the default (ADC).
pub const CLOUDSDK_CONFIG: &str = "CLOUDSDK_CONFIG";
/// Overrides the metadata server's `host[:port]`.
pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
/// The metadata server's IP, when `GCE_METADATA_HOST` is not set.
pub const GCE_METADATA_IP: &str = "GCE_METADATA_IP";
/// Seconds each metadata server ping may take (default 3, as google-auth).
pub const GCE_METADATA_TIMEOUT: &str = "GCE_METADATA_TIMEOUT";
/// How many times the metadata server is pinged (default 3, as google-auth).
pub const GCE_METADATA_DETECT_RETRIES: &str = "GCE_METADATA_DETECT_RETRIES";
/// The file whose content names the machine's product, read when the
/// metadata server does not answer its ping: `Google…` there means Google
/// Compute Engine, as google-auth reads `/sys/class/dmi/id/product_name`
/// (default). Set it for tests and for containers that hide `/sys`.
pub const GEMINI_OAUTH_DMI_PRODUCT_NAME: &str = "GEMINI_OAUTH_DMI_PRODUCT_NAME";
/// When `true`, the metadata server is not tried (as in google-auth).
pub const NO_GCE_CHECK: &str = "NO_GCE_CHECK";
/// Overrides the Gemini API base URL (below an explicit builder value).
pub const GEMINI_API_BASE: &str = "GEMINI_API_BASE";
/// Sets the quota project (below an explicit builder value).
pub const GOOGLE_CLOUD_QUOTA_PROJECT: &str = "GOOGLE_CLOUD_QUOTA_PROJECT";
/// The universe domain of the APIs called, when not `googleapis.com` (below
/// an explicit builder value), as Google's Cloud client libraries read it.
pub const GOOGLE_CLOUD_UNIVERSE_DOMAIN: &str = "GOOGLE_CLOUD_UNIVERSE_DOMAIN";
/// The browser command for the consent URL (feature `browser`): a
/// `:`-separated list (`;` on Windows), `%s` for the URL, as Python's `webbrowser` reads it.
pub const BROWSER: &str = "BROWSER";
/// Read for an API key, in this order (as Google's Gemini SDKs read them;
/// a warning is logged when both are set).
pub const API_KEYS: [&str; 2] = ["GOOGLE_API_KEY", "GEMINI_API_KEY"];

/// A variable's value, treating empty as unset.
pub(crate) fn nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|s| !s.is_empty())
}

/// Must be `1` before an `external_account` file's `credential_source.executable`
/// runs (as in google-auth).
pub const GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES: &str =
    "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
/// AWS credential sources of `external_account` files read the region from
/// these, in this order, before the instance metadata.
pub const AWS_REGION_VARS: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];
/// AWS credential sources read the keys from these (access key id, secret
/// access key, optional session token) before the instance metadata.
pub const AWS_KEY_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
