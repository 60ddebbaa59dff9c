#![allow(dead_code, unreachable_pub)]
//! The command line shared by the examples (kept stable: other tools drive them).

use std::process::ExitCode;

use gemini_oauth::{Consent, CredentialLoader, FileTokenStore};

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
  --adc                  use Application Default Credentials (gcloud's file,
                         GOOGLE_APPLICATION_CREDENTIALS, or the metadata server)
  --api-key              use an API key from GEMINI_API_KEY or GOOGLE_API_KEY
  --revoke-uri URL       token revocation endpoint override
  -h, --help             show this help";

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
    pub adc: bool,
    pub api_key: bool,
    pub revoke_uri: Option<String>,
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
                "--adc" => a.adc = true,
                "--api-key" => a.api_key = true,
                "--revoke-uri" => a.revoke_uri = Some(value(&flag)?),
                f if extra_flags_with_value.contains(&f) => {
                    let v = value(f)?;
                    a.rest.push(flag);
                    a.rest.push(v);
                }
                f if f.starts_with("--") && !extra_flags_with_value.is_empty() => a.rest.push(flag),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(a))
    }

    /// The value of an example-specific flag.
    pub fn extra(&self, flag: &str) -> Option<&str> {
        self.rest
            .iter()
            .position(|f| f == flag)
            .and_then(|i| self.rest.get(i + 1))
            .map(String::as_str)
    }

    /// A loader configured from the flags (the token store is left to the caller
    /// when `store` is false).
    pub fn loader(&self) -> CredentialLoader {
        let mut l = CredentialLoader::new().token_store(FileTokenStore::new(
            self.token.as_deref().unwrap_or("token.json"),
        ));
        if let Some(s) = &self.client_secret {
            l = l.client_secret_file(s);
        }
        if !self.scopes.is_empty() {
            l = l.scopes(self.scopes.clone());
        }
        if let Some(p) = &self.quota_project {
            l = l.quota_project(p);
        }
        if let Some(u) = &self.api_base {
            l = l.api_base(u);
        }
        if let Some(u) = &self.token_uri {
            l = l.token_uri(u);
        }
        if let Some(u) = &self.auth_uri {
            l = l.auth_uri(u);
        }
        if let Some(c) = self.consent {
            l = l.consent(c);
        }
        if let Some(u) = &self.revoke_uri {
            l = l.revoke_uri(u);
        }
        if self.adc {
            l = l.application_default();
        }
        if self.api_key {
            l = l.api_key(None);
        }
        l
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
