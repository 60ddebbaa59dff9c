#![allow(dead_code, unreachable_pub)]
//! The command line shared by the examples (kept stable: other tools drive them).

use std::process::ExitCode;

use gemini_oauth::kind::OAuthKind;
use gemini_oauth::{Consent, CredentialLoader, Credentials, FileTokenStore};

pub const CREDENTIAL_FLAGS: &str = "Flags:
  --client-secret FILE   OAuth client file (default: client_secret.json)
  --token FILE           token cache (default: token.json)
  --scope URL            scope to request; repeat for several
                         (default: generative-language.retriever)
  --quota-project ID     project billed for the calls (x-goog-user-project)
  --api-base URL         Gemini API base (default: $GEMINI_API_BASE or
                         https://generativelanguage.googleapis.com/v1)
  --token-uri URL        token endpoint override
  --auth-uri URL         authorization endpoint override
  --no-browser           print the sign-in URL instead of opening a browser
  --headless             print the URL and read the redirected address from stdin
  --no-consent           never start a sign-in; fail if one would be needed
  --consent-timeout SECS how long a sign-in waits for the browser (default 300)
  --timeout SECS         limit for each HTTP request (default: 30 for the token
                         endpoint, none for API calls)
  --idle-timeout SECS    limit between pieces of an API answer (default 300)
  --adc                  use Application Default Credentials (gcloud's file,
                         GOOGLE_APPLICATION_CREDENTIALS, or the metadata server)
  --gcloud-fallback      with --adc: when no ADC is found, the token of the
                         account gcloud is signed in with (gcloud config
                         config-helper)
  --api-key              use an API key from GOOGLE_API_KEY or GEMINI_API_KEY
  --revoke-uri URL       token revocation endpoint override
  --proxy URL            send requests through this http:// proxy (default:
                         HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)
  --no-proxy             connect directly, ignoring the proxy variables
  --root-certificates FILE  also trust these PEM root certificates (a
                         TLS-inspecting proxy, a private endpoint)
  --vertex-project ID    call Gemini through Vertex AI in this project
                         (with --vertex-location; scope default: cloud-platform)
  --vertex-location LOC  the Vertex AI location, e.g. us-central1 or global
  --vertex-origin URL    Vertex AI host override (default:
                         https://LOC-aiplatform.googleapis.com)
  --keyring NAME         keep the token in the OS keyring entry gemini-oauth/NAME
                         instead of a file (feature keyring); with --token FILE,
                         that file is moved into the keyring first
  --impersonate-service-account [DELEGATE,...,]SA
                         use the credentials only to get tokens for service
                         account SA (through the delegates, if any), as
                         gcloud's flag of the same name
  --iam-endpoint URL     IAM Credentials API override (impersonation)
  -h, --help             show this help

Without --adc, --api-key or a sign-in flag (--client-secret, --token,
--keyring, --scope, --vertex-project, ...), the environment chooses as
Google's Gemini SDKs do: GOOGLE_GENAI_USE_VERTEXAI=true with
GOOGLE_CLOUD_PROJECT/GOOGLE_CLOUD_LOCATION (Vertex AI, ADC), else
GOOGLE_API_KEY/GEMINI_API_KEY (an API key), else the sign-in.";

/// Credential flags, plus whatever the example itself takes.
#[derive(Debug, Default)]
pub struct Args {
    pub client_secret: Option<String>,
    pub token: Option<String>,
    pub scopes: Vec<String>,
    pub quota_project: Option<String>,
    pub api_base: Option<String>,
    pub token_uri: Option<String>,
    pub auth_uri: Option<String>,
    pub consent: Option<Consent>,
    pub consent_timeout: Option<std::time::Duration>,
    pub timeout: Option<std::time::Duration>,
    pub idle_timeout: Option<std::time::Duration>,
    pub adc: bool,
    pub gcloud_fallback: bool,
    pub api_key: bool,
    pub revoke_uri: Option<String>,
    pub proxy: Option<String>,
    pub no_proxy: bool,
    /// The PEM text of `--root-certificates`.
    pub root_certificates: Option<Vec<u8>>,
    pub vertex_project: Option<String>,
    pub vertex_location: Option<String>,
    pub vertex_origin: Option<String>,
    pub keyring: Option<String>,
    /// `--impersonate-service-account`: delegates, then the target, comma-separated.
    pub impersonate: Option<String>,
    pub iam_endpoint: Option<String>,
    /// Flags the example handles itself, in order.
    pub rest: Vec<String>,
}

impl Args {
    /// Parses `std::env::args`; prints usage and exits on `--help` or a bad flag.
    pub fn parse(usage: &str, extra_flags_with_value: &[&str]) -> Args {
        match Self::try_parse(std::env::args().skip(1), extra_flags_with_value) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{usage}\n\n{CREDENTIAL_FLAGS}");
                std::process::exit(0);
            }
            Err(msg) => {
                eprintln!("error: {msg}\n\n{usage}\n\n{CREDENTIAL_FLAGS}");
                std::process::exit(2);
            }
        }
    }

    fn try_parse(
        mut it: impl Iterator<Item = String>,
        extra_flags_with_value: &[&str],
    ) -> Result<Option<Args>, String> {
        let mut a = Args::default();
        while let Some(flag) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--client-secret" => a.client_secret = Some(value(&flag)?),
                "--token" => a.token = Some(value(&flag)?),
                "--scope" => a.scopes.push(value(&flag)?),
                "--quota-project" => a.quota_project = Some(value(&flag)?),
                "--api-base" => a.api_base = Some(value(&flag)?),
                "--token-uri" => a.token_uri = Some(value(&flag)?),
                "--auth-uri" => a.auth_uri = Some(value(&flag)?),
                "--no-browser" => a.consent = Some(Consent::PrintUrl),
                "--headless" => a.consent = Some(Consent::PasteCode),
                "--no-consent" => a.consent = Some(Consent::Never),
                "--consent-timeout" => a.consent_timeout = Some(seconds(&flag, value(&flag)?)?),
                "--timeout" => a.timeout = Some(seconds(&flag, value(&flag)?)?),
                "--idle-timeout" => a.idle_timeout = Some(seconds(&flag, value(&flag)?)?),
                "--adc" => a.adc = true,
                "--gcloud-fallback" => a.gcloud_fallback = true,
                "--api-key" => a.api_key = true,
                "--revoke-uri" => a.revoke_uri = Some(value(&flag)?),
                "--proxy" => a.proxy = Some(value(&flag)?),
                "--no-proxy" => a.no_proxy = true,
                "--root-certificates" => {
                    let path = value(&flag)?;
                    let pem = std::fs::read(&path)
                        .map_err(|e| format!("--root-certificates {path:?}: {e}"))?;
                    a.root_certificates = Some(pem);
                }
                "--vertex-project" => a.vertex_project = Some(value(&flag)?),
                "--vertex-location" => a.vertex_location = Some(value(&flag)?),
                "--vertex-origin" => a.vertex_origin = Some(value(&flag)?),
                "--keyring" if cfg!(feature = "keyring") => a.keyring = Some(value(&flag)?),
                "--keyring" => return Err("--keyring needs the `keyring` feature".into()),
                "--impersonate-service-account" => a.impersonate = Some(value(&flag)?),
                "--iam-endpoint" => a.iam_endpoint = Some(value(&flag)?),
                f if extra_flags_with_value.contains(&f) => {
                    let v = value(f)?;
                    a.rest.push(flag);
                    a.rest.push(v);
                }
                f if f.starts_with("--") && !extra_flags_with_value.is_empty() => a.rest.push(flag),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if a.gcloud_fallback && !a.adc {
            return Err("--gcloud-fallback needs --adc".into());
        }
        if a.proxy.is_some() && a.no_proxy {
            return Err("--proxy and --no-proxy exclude each other".into());
        }
        match (&a.vertex_project, &a.vertex_location) {
            (Some(_), None) => return Err("--vertex-project needs --vertex-location".into()),
            (None, Some(_)) => return Err("--vertex-location needs --vertex-project".into()),
            (None, None) if a.vertex_origin.is_some() => {
                return Err("--vertex-origin needs --vertex-project and --vertex-location".into());
            }
            _ => {}
        }
        Ok(Some(a))
    }

    /// The value of an example-specific flag.
    pub fn extra(&self, flag: &str) -> Option<&str> {
        self.rest
            .iter()
            .position(|f| f == flag)
            .and_then(|i| self.rest.get(i.saturating_add(1)))
            .map(String::as_str)
    }

    /// Whether the example-specific switch `flag` (one without a value) was given.
    pub fn has(&self, flag: &str) -> bool {
        self.rest.iter().any(|f| f == flag)
    }

    /// The authorized client for `creds`, with `--timeout` as its
    /// per-request limit and `--idle-timeout` as its idle limit.
    pub fn client(&self, creds: &Credentials) -> gemini_oauth::AuthorizedClient {
        let mut client = creds.authorized_client();
        if let Some(t) = self.timeout {
            client = client.timeout(t);
        }
        if let Some(t) = self.idle_timeout {
            client = client.idle_timeout(t);
        }
        client
    }

    /// A loader for the user's sign-in, configured from the flags.
    pub fn loader(&self) -> CredentialLoader {
        let l = CredentialLoader::new();
        let l = match self.keyring_store() {
            Some(store) => l.token_store(store),
            None => l.token_store(FileTokenStore::new(
                self.token.as_deref().unwrap_or("token.json"),
            )),
        };
        let mut l = self.oauth(l);
        if let Some(s) = &self.client_secret {
            l = l.client_secret_file(s);
        }
        if let Some(u) = &self.auth_uri {
            l = l.auth_uri(u);
        }
        if let Some(c) = self.consent {
            l = l.consent(c);
        }
        if let Some(t) = self.consent_timeout {
            l = l.consent_timeout(t);
        }
        l
    }

    #[cfg(feature = "keyring")]
    fn keyring_store(&self) -> Option<gemini_oauth::KeyringTokenStore> {
        self.keyring
            .as_ref()
            .map(gemini_oauth::KeyringTokenStore::new)
    }

    #[cfg(not(feature = "keyring"))]
    fn keyring_store(&self) -> Option<FileTokenStore> {
        None
    }

    /// With `--keyring NAME --token FILE`: moves FILE into the keyring.
    async fn migrate(&self) -> gemini_oauth::Result<()> {
        #[cfg(feature = "keyring")]
        if let (Some(store), Some(file)) = (self.keyring_store(), &self.token)
            && store.migrate_from_file(file).await? == gemini_oauth::Migration::Moved
        {
            eprintln!(
                "moved {file} into the keyring entry gemini-oauth/{}",
                store.account()
            );
        }
        Ok(())
    }

    /// The flags every kind of credentials takes.
    fn common<K>(&self, mut l: CredentialLoader<K>) -> CredentialLoader<K> {
        if let Some(p) = &self.quota_project {
            l = l.quota_project(p);
        }
        if let Some(u) = &self.api_base {
            l = l.api_base(u);
        }
        if let Some(t) = self.timeout {
            l = l.timeout(t);
        }
        if let Some(p) = &self.proxy {
            l = l.proxy(p);
        }
        if self.no_proxy {
            l = l.no_proxy();
        }
        if let Some(pem) = &self.root_certificates {
            l = l.root_certificates_pem(pem);
        }
        l
    }

    /// The flags of the kinds that get OAuth tokens.
    fn oauth<K: OAuthKind>(&self, l: CredentialLoader<K>) -> CredentialLoader<K> {
        let mut l = self.common(l);
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
        if let Some(list) = &self.impersonate {
            // As gcloud reads it: the last account is the target.
            let mut accounts: Vec<&str> = list.split(',').map(str::trim).collect();
            let target = accounts.pop().unwrap_or_default();
            l = l.impersonate_service_account(target, accounts);
        }
        l
    }

    /// The credentials the flags ask for: `--adc`, `--api-key`, else (with
    /// no sign-in flag) Vertex AI or an API key when the environment names
    /// them as google-genai reads it (`CredentialLoader::from_env`), else
    /// the user's sign-in (`customize` adjusts that loader).
    pub async fn load_with(
        &self,
        customize: impl FnOnce(CredentialLoader) -> CredentialLoader,
    ) -> gemini_oauth::Result<Credentials> {
        if self.adc {
            self.warn_unused("--adc", &[("--api-key", self.api_key)]);
            let mut l = self.oauth(CredentialLoader::application_default());
            if self.gcloud_fallback {
                l = l.gcloud_cli_fallback();
            }
            return l.load().await;
        }
        if self.api_key {
            self.warn_unused(
                "--api-key",
                &[
                    ("--scope", !self.scopes.is_empty()),
                    ("--token-uri", self.token_uri.is_some()),
                    ("--revoke-uri", self.revoke_uri.is_some()),
                    ("--vertex-project", self.vertex_project.is_some()),
                    ("--impersonate-service-account", self.impersonate.is_some()),
                    ("--iam-endpoint", self.iam_endpoint.is_some()),
                ],
            );
            return self
                .common(CredentialLoader::api_key_from_env())
                .load()
                .await;
        }
        if !self.sign_in_flags() {
            let from_env = self.common(CredentialLoader::from_env());
            if from_env.choice()?.auth != gemini_oauth::EnvAuth::UserSignIn {
                return from_env.load().await;
            }
        }
        self.migrate().await?;
        customize(self.loader()).load().await
    }

    /// Whether a flag of the user's sign-in (or of OAuth tokens) was given:
    /// then the environment's Vertex AI or API key is not used.
    fn sign_in_flags(&self) -> bool {
        self.client_secret.is_some()
            || self.token.is_some()
            || self.keyring.is_some()
            || self.auth_uri.is_some()
            || self.consent.is_some()
            || self.consent_timeout.is_some()
            || !self.scopes.is_empty()
            || self.token_uri.is_some()
            || self.revoke_uri.is_some()
            || self.vertex_project.is_some()
            || self.impersonate.is_some()
            || self.iam_endpoint.is_some()
    }

    /// The credentials the flags ask for.
    pub async fn load(&self) -> gemini_oauth::Result<Credentials> {
        self.load_with(|l| l).await
    }

    /// Flags of the user's sign-in have no effect with `--adc` or `--api-key`.
    fn warn_unused(&self, mode: &str, more: &[(&str, bool)]) {
        let user_only = [
            ("--client-secret", self.client_secret.is_some()),
            ("--token", self.token.is_some()),
            ("--keyring", self.keyring.is_some()),
            ("--auth-uri", self.auth_uri.is_some()),
            (
                "--no-browser/--headless/--no-consent",
                self.consent.is_some(),
            ),
        ];
        for (flag, _) in user_only.iter().chain(more).filter(|(_, set)| *set) {
            eprintln!("warning: {flag} has no effect with {mode}");
        }
    }
}

/// A flag's value as whole seconds.
fn seconds(flag: &str, value: String) -> Result<std::time::Duration, String> {
    value
        .parse()
        .map(std::time::Duration::from_secs)
        .map_err(|_| format!("{flag} takes whole seconds, not {value:?}"))
}

/// The start every example shares: parse the flags (printing usage and
/// exiting on `--help` or a bad flag), set up logging, and load the
/// credentials the flags ask for; on failure, print the error and exit 1.
pub async fn start(usage: &str, extra_flags_with_value: &[&str]) -> (Args, Credentials) {
    let args = Args::parse(usage, extra_flags_with_value);
    init_logging();
    let creds = or_exit(args.load().await);
    (args, creds)
}

/// The value, or the error printed as one line and exit code 1.
pub fn or_exit<T>(result: gemini_oauth::Result<T>) -> T {
    result.unwrap_or_else(|e| {
        fail(&e);
        std::process::exit(1)
    })
}

/// Success, or the error printed as one line and exit code 1.
pub fn finish<E: std::error::Error>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// One clear line on stderr and a non-zero exit code: no panic, no backtrace.
pub fn fail(err: &dyn std::error::Error) -> ExitCode {
    let mut msg = format!("error: {err}");
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(&format!(" (caused by: {s})"));
        source = s.source();
    }
    eprintln!("{msg}");
    ExitCode::FAILURE
}
