//! The flags every command shares, defined once (the examples' flags, same
//! names and meanings), and the loader they configure.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use gemini_oauth::kind::OAuthKind;
use gemini_oauth::{Consent, CredentialLoader, Credentials, FileTokenStore};

use crate::failure::Failure;

/// Where the credentials come from and how requests travel.
#[derive(Debug, Default, Clone, Args)]
#[command(next_help_heading = "Credentials and network")]
pub(crate) struct Flags {
    /// OAuth client file (a Desktop app's client_secret.json)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        visible_alias = "client-id-file"
    )]
    pub(crate) client_secret: Option<PathBuf>,
    /// Token cache of the user's sign-in [default: token.json]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) token: Option<PathBuf>,
    /// Scopes to request, comma-separated or repeated [default: generative-language.retriever]
    #[arg(
        long = "scopes",
        visible_alias = "scope",
        global = true,
        value_name = "URL,...",
        value_delimiter = ',',
        value_parser = scope
    )]
    pub(crate) scopes: Vec<String>,
    /// Project billed for the calls (x-goog-user-project)
    #[arg(long, global = true, value_name = "ID")]
    pub(crate) quota_project: Option<String>,
    /// Gemini API base [default: $GEMINI_API_BASE or https://generativelanguage.googleapis.com/v1]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) api_base: Option<String>,
    /// Token endpoint override
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) token_uri: Option<String>,
    /// Authorization endpoint override
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) auth_uri: Option<String>,
    /// Token revocation endpoint override
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) revoke_uri: Option<String>,
    /// Print the sign-in URL instead of opening a browser
    #[arg(long, global = true, conflicts_with_all = ["headless", "no_consent"])]
    pub(crate) no_browser: bool,
    /// Print the URL and read the redirected address from stdin
    #[arg(long, global = true, conflicts_with = "no_consent")]
    pub(crate) headless: bool,
    /// Never start a sign-in; fail (exit code 3) if one would be needed
    #[arg(long, global = true)]
    pub(crate) no_consent: bool,
    /// How long a sign-in waits for the browser [default: 300]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) consent_timeout: Option<u64>,
    /// Limit for each HTTP request [default: 30 for the token endpoint, none for API calls]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout: Option<u64>,
    /// Limit between pieces of an API answer [default: 300]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) idle_timeout: Option<u64>,
    /// Use Application Default Credentials (gcloud's file, GOOGLE_APPLICATION_CREDENTIALS, or the metadata server)
    #[arg(long, global = true, conflicts_with = "api_key")]
    pub(crate) adc: bool,
    /// With --adc: when no ADC is found, the token of the account gcloud is signed in with
    #[arg(long, global = true, requires = "adc")]
    pub(crate) gcloud_fallback: bool,
    /// Use an API key from GOOGLE_API_KEY or GEMINI_API_KEY
    #[arg(long, global = true)]
    pub(crate) api_key: bool,
    /// Send requests through this proxy [default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY]
    #[arg(long, global = true, value_name = "URL", conflicts_with = "no_proxy")]
    pub(crate) proxy: Option<String>,
    /// Connect directly, ignoring the proxy variables
    #[arg(long, global = true)]
    pub(crate) no_proxy: bool,
    /// Also trust these PEM root certificates
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) root_certificates: Option<PathBuf>,
    /// Call Gemini through Vertex AI in this project (with --vertex-location)
    #[arg(long, global = true, value_name = "ID", requires = "vertex_location")]
    pub(crate) vertex_project: Option<String>,
    /// The Vertex AI location, e.g. us-central1 or global
    #[arg(long, global = true, value_name = "LOC", requires = "vertex_project")]
    pub(crate) vertex_location: Option<String>,
    /// Vertex AI host override [default: https://LOC-aiplatform.googleapis.com]
    #[arg(long, global = true, value_name = "URL", requires = "vertex_project")]
    pub(crate) vertex_origin: Option<String>,
    /// Keep the token in the OS keyring entry gemini-oauth/NAME instead of a file (feature keyring); with --token FILE, that file is moved into the keyring first
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) keyring: Option<String>,
    /// Use the credentials only to get tokens for service account SA (through the delegates), as gcloud's flag
    #[arg(long, global = true, value_name = "[DELEGATE,...,]SA", value_parser = accounts)]
    pub(crate) impersonate_service_account: Option<String>,
    /// IAM Credentials API override (impersonation)
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) iam_endpoint: Option<String>,
}

/// One scope of `--scopes`: not empty.
fn scope(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("an empty scope; pass URLs separated by commas, e.g. \
                    https://www.googleapis.com/auth/cloud-platform"
            .into());
    }
    Ok(s.to_owned())
}

/// `--impersonate-service-account`: no account in the list may be empty
/// (found before a sign-in, not after it).
fn accounts(list: &str) -> Result<String, String> {
    if list.split(',').any(|a| a.trim().is_empty()) {
        return Err(
            "an account in the list is empty; pass [DELEGATE,...,]SA, e.g. \
                    sa@PROJECT.iam.gserviceaccount.com"
                .into(),
        );
    }
    Ok(list.to_owned())
}

impl Flags {
    /// The consent the flags ask for, if any.
    pub(crate) fn consent(&self) -> Option<Consent> {
        if self.no_consent {
            Some(Consent::Never)
        } else if self.headless {
            Some(Consent::PasteCode)
        } else if self.no_browser {
            Some(Consent::PrintUrl)
        } else {
            None
        }
    }

    /// `--impersonate-service-account` as gcloud reads it: the last account
    /// is the target, the ones before it the delegates.
    pub(crate) fn impersonation(&self) -> Option<(String, Vec<String>)> {
        let list = self.impersonate_service_account.as_ref()?;
        let mut accounts: Vec<String> = list.split(',').map(|a| a.trim().to_owned()).collect();
        let target = accounts.pop().unwrap_or_default();
        Some((target, accounts))
    }

    /// The authorized client for `creds`, with the flags' time limits.
    pub(crate) fn client(&self, creds: &Credentials) -> gemini_oauth::AuthorizedClient {
        let mut client = creds.authorized_client();
        if let Some(t) = self.timeout {
            client = client.timeout(Duration::from_secs(t));
        }
        if let Some(t) = self.idle_timeout {
            client = client.idle_timeout(Duration::from_secs(t));
        }
        client
    }

    /// The token file of the user's sign-in.
    pub(crate) fn token_file(&self) -> PathBuf {
        self.token.clone().unwrap_or_else(|| "token.json".into())
    }

    /// A loader for the user's sign-in, configured from the flags.
    pub(crate) fn user_loader(&self) -> Result<CredentialLoader, Failure> {
        let mut l = self.oauth(CredentialLoader::new())?;
        l = match &self.keyring {
            Some(name) => keyring::loader(l, name)?,
            None => l.token_store(FileTokenStore::new(self.token_file())),
        };
        if let Some(s) = &self.client_secret {
            l = l.client_secret_file(s);
        }
        if let Some(u) = &self.auth_uri {
            l = l.auth_uri(u);
        }
        if let Some(c) = self.consent() {
            l = l.consent(c);
        }
        if let Some(t) = self.consent_timeout {
            l = l.consent_timeout(Duration::from_secs(t));
        }
        Ok(l)
    }

    /// The flags every kind of credentials takes.
    fn common<K>(&self, mut l: CredentialLoader<K>) -> Result<CredentialLoader<K>, Failure> {
        if let Some(p) = &self.quota_project {
            l = l.quota_project(p);
        }
        if let Some(u) = &self.api_base {
            l = l.api_base(u);
        }
        if let Some(t) = self.timeout {
            l = l.timeout(Duration::from_secs(t));
        }
        if let Some(p) = &self.proxy {
            l = l.proxy(p);
        }
        if self.no_proxy {
            l = l.no_proxy();
        }
        if let Some(path) = &self.root_certificates {
            l = l.root_certificates_pem(&read_pem(path)?);
        }
        Ok(l)
    }

    /// The flags of the kinds that get OAuth tokens.
    fn oauth<K: OAuthKind>(&self, l: CredentialLoader<K>) -> Result<CredentialLoader<K>, Failure> {
        let mut l = self.common(l)?;
        if !self.scopes.is_empty() {
            l = l.scopes(self.scopes.clone());
        }
        if let Some(u) = &self.token_uri {
            l = l.token_uri(u);
        }
        if let Some(u) = &self.revoke_uri {
            l = l.revoke_uri(u);
        }
        if let (Some(p), Some(loc)) = (&self.vertex_project, &self.vertex_location) {
            l = l.vertex_ai(p, loc);
        }
        if let Some(o) = &self.vertex_origin {
            l = l.vertex_ai_origin(o);
        }
        if let Some(u) = &self.iam_endpoint {
            l = l.iam_endpoint(u);
        }
        if let Some((target, delegates)) = self.impersonation() {
            l = l.impersonate_service_account(target, delegates);
        }
        Ok(l)
    }

    /// The credentials the flags ask for: `--adc`, `--api-key`, or the
    /// user's sign-in (`customize` adjusts that loader).
    pub(crate) async fn load_with(
        &self,
        customize: impl FnOnce(CredentialLoader) -> CredentialLoader,
    ) -> Result<Credentials, Failure> {
        if self.adc {
            self.warn_unused("--adc", &[("--api-key", self.api_key)]);
            let mut loader = self.oauth(CredentialLoader::application_default())?;
            if self.gcloud_fallback {
                loader = loader.gcloud_cli_fallback();
            }
            return loader.load().await.map_err(Failure::from);
        }
        if self.api_key {
            self.warn_unused(
                "--api-key",
                &[
                    ("--scopes", !self.scopes.is_empty()),
                    ("--token-uri", self.token_uri.is_some()),
                    ("--revoke-uri", self.revoke_uri.is_some()),
                    ("--vertex-project", self.vertex_project.is_some()),
                    (
                        "--impersonate-service-account",
                        self.impersonate_service_account.is_some(),
                    ),
                    ("--iam-endpoint", self.iam_endpoint.is_some()),
                ],
            );
            return self
                .common(CredentialLoader::api_key_from_env())?
                .load()
                .await
                .map_err(Failure::from);
        }
        if let (Some(name), Some(file)) = (&self.keyring, &self.token) {
            keyring::migrate(name, file).await?;
        }
        Ok(customize(self.user_loader()?).load().await?)
    }

    /// The credentials the flags ask for.
    pub(crate) async fn load(&self) -> Result<Credentials, Failure> {
        self.load_with(|l| l).await
    }
}

impl Flags {
    /// Flags of the user's sign-in have no effect with `--adc` or `--api-key`:
    /// a warning on stderr says so, as the examples do.
    fn warn_unused(&self, mode: &str, more: &[(&str, bool)]) {
        let user_only = [
            ("--client-secret", self.client_secret.is_some()),
            ("--token", self.token.is_some()),
            ("--keyring", self.keyring.is_some()),
            ("--auth-uri", self.auth_uri.is_some()),
            (
                "--no-browser/--headless/--no-consent",
                self.no_browser || self.headless || self.no_consent,
            ),
        ];
        for (flag, _) in user_only.iter().chain(more).filter(|(_, set)| *set) {
            eprintln!("warning: {flag} has no effect with {mode}");
        }
    }
}

/// The largest `--root-certificates` file read (as the library's token files).
const MAX_PEM: u64 = 1024 * 1024;

/// Reads `--root-certificates`, at most [`MAX_PEM`] bytes: a link to
/// /dev/zero is refused, not read until the memory runs out.
fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let fail = |why: String| {
        Failure::Other(format!(
            "cannot read --root-certificates {} ({why}); check the path",
            path.display()
        ))
    };
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM + 1).read_to_end(&mut pem))
        .map_err(|e| fail(e.to_string()))?;
    if pem.len() as u64 > MAX_PEM {
        return Err(fail(format!(
            "the file is larger than {MAX_PEM} bytes, which no certificate file is"
        )));
    }
    Ok(pem)
}

/// `--keyring NAME`: the token in the OS keyring (feature `keyring`).
#[cfg(feature = "keyring")]
mod keyring {
    use gemini_oauth::{CredentialLoader, KeyringTokenStore, Migration};

    use crate::failure::Failure;

    pub(super) fn loader(l: CredentialLoader, name: &str) -> Result<CredentialLoader, Failure> {
        Ok(l.token_store(KeyringTokenStore::new(name)))
    }

    /// Moves `file` into the keyring entry `name`, as the examples do.
    pub(super) async fn migrate(name: &str, file: &std::path::Path) -> Result<(), Failure> {
        let store = KeyringTokenStore::new(name);
        if store.migrate_from_file(file).await? == Migration::Moved {
            eprintln!(
                "moved {} into the keyring entry gemini-oauth/{}",
                file.display(),
                store.account()
            );
        }
        Ok(())
    }
}

/// `--keyring NAME` without the feature: a usage error that names it.
#[cfg(not(feature = "keyring"))]
mod keyring {
    use gemini_oauth::CredentialLoader;

    use crate::failure::Failure;

    fn missing() -> Failure {
        Failure::Usage(
            "--keyring needs the `keyring` feature: cargo install gemini-oauth --features cli,keyring"
                .into(),
        )
    }

    pub(super) fn loader(_: CredentialLoader, _: &str) -> Result<CredentialLoader, Failure> {
        Err(missing())
    }

    pub(super) async fn migrate(_: &str, _: &std::path::Path) -> Result<(), Failure> {
        Err(missing())
    }
}
