//! gcloud, already signed in, as a token source: the access token and its
//! expiry from `gcloud config config-helper --format=json` (which refreshes
//! gcloud's own credentials when due), with the account, project and quota
//! project of gcloud's active configuration. Opt-in, as
//! [`CredentialLoader::gcloud_cli_fallback`](crate::CredentialLoader::gcloud_cli_fallback).

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::token_cache::{BoxFuture, Fetched, TokenSource};

/// How long one `gcloud config config-helper` may run (it may refresh).
pub(crate) const GCLOUD_TIMEOUT: Duration = Duration::from_secs(30);
/// The command's name on `PATH`.
pub(crate) const GCLOUD: &str = if cfg!(windows) {
    "gcloud.cmd"
} else {
    "gcloud"
};
/// What the error messages call the command.
const COMMAND: &str = "gcloud config config-helper --format=json";

/// gcloud's answer: a token and what its configuration names.
pub(crate) struct Helper {
    pub(crate) fetched: Fetched,
    pub(crate) account: Option<String>,
    pub(crate) project: Option<String>,
    pub(crate) quota_project: Option<String>,
}

/// Runs gcloud for tokens.
pub(crate) struct GcloudCli {
    /// [`GCLOUD`], or a path.
    pub(crate) exe: std::path::PathBuf,
    pub(crate) timeout: Duration,
    /// For messages: `gcloud (account …, project …)`.
    pub(crate) description: String,
}

impl GcloudCli {
    /// Runs `gcloud config config-helper --format=json` once.
    ///
    /// Errors: [`Error::NoCredentials`] naming what is wrong (gcloud missing,
    /// not signed in, failed, or unreadable output), [`Error::Timeout`].
    pub(crate) async fn helper(&self) -> Result<Helper> {
        let timeout = self.timeout;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(["config", "config-helper", "--format=json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(timeout, cmd.output()).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: COMMAND.to_owned(),
                    after: timeout,
                });
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(tried(
                    "not installed: no `gcloud` on PATH; install the Google Cloud CLI",
                ));
            }
            Ok(Err(e)) => return Err(tried(&format!("cannot be run: {e}"))),
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            return Err(tried(&failure(&String::from_utf8_lossy(&out.stderr))));
        }
        parse(&out.stdout).ok_or_else(|| tried("its output has no access token and expiry"))
    }
}

/// gcloud's first `ERROR:` line, as a reason with what to do.
fn failure(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ERROR:"))
        .unwrap_or_else(|| stderr.lines().next().unwrap_or(""));
    let line: String = line.chars().take(300).collect();
    if line.contains("do not currently have an active account") {
        "not signed in: run `gcloud auth login`".to_owned()
    } else {
        format!("failed ({line}); check `gcloud auth list`")
    }
}

/// An entry for [`Error::NoCredentials`].
fn tried(reason: &str) -> Error {
    Error::NoCredentials {
        tried: vec![format!("{COMMAND} ({reason})")],
    }
}

/// The token, expiry and configuration in config-helper's JSON.
fn parse(stdout: &[u8]) -> Option<Helper> {
    let v: Value = serde_json::from_slice(stdout).ok()?;
    let token = v.pointer("/credential/access_token")?.as_str()?;
    let expiry = v.pointer("/credential/token_expiry")?.as_str()?;
    let expires_at: SystemTime = OffsetDateTime::parse(expiry, &Rfc3339).ok()?.into();
    let property = |p: &str| {
        v.pointer(&format!("/configuration/properties/{p}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some(Helper {
        fetched: Fetched {
            token: SecretString::from(token.to_owned()),
            expires_at,
            refresh_token_rotated: false,
        },
        account: property("core/account"),
        project: property("core/project"),
        quota_project: property("billing/quota_project"),
    })
}

impl Helper {
    /// `gcloud (account a, project p)`, for messages.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.account {
            parts.push(format!("account {a}"));
        }
        if let Some(p) = &self.project {
            parts.push(format!("project {p}"));
        }
        format!("gcloud ({})", parts.join(", "))
    }
}

impl TokenSource for GcloudCli {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move { Ok(self.helper().await?.fetched) })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn config_helper_output_gives_token_expiry_account_and_projects() {
        let out = br#"{"configuration": {"properties": {"core": {"account": "a@b.c",
            "project": "p"}, "billing": {"quota_project": "q"}}},
            "credential": {"access_token": "ya29.x", "id_token": null,
            "token_expiry": "2030-01-02T03:04:05Z"}}"#;
        let h = parse(out).unwrap();
        assert_eq!(h.fetched.token.expose_secret(), "ya29.x");
        assert_eq!(
            OffsetDateTime::from(h.fetched.expires_at).unix_timestamp(),
            1_893_553_445
        );
        assert_eq!(h.describe(), "gcloud (account a@b.c, project p)");
        assert_eq!(h.quota_project.as_deref(), Some("q"));
        assert!(parse(br#"{"credential": {"token_expiry": "2030-01-02T03:04:05Z"}}"#).is_none());
    }

    /// A gcloud that is `script`, run by sh.
    #[cfg(unix)]
    fn fake(dir: &std::path::Path, script: &str) -> GcloudCli {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("gcloud");
        std::fs::write(&exe, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        GcloudCli {
            exe,
            timeout: Duration::from_millis(500),
            description: "gcloud".into(),
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_hanging_gcloud_times_out_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = fake(dir.path(), "sleep 30").helper().await.err().unwrap();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        let mut missing = fake(dir.path(), "");
        missing.exe = dir.path().join("absent");
        let err = missing.helper().await.err().unwrap().to_string();
        assert!(err.contains("not installed"), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_token_is_refreshed_by_one_gcloud_run_for_all_callers() {
        use crate::token_cache::{CacheOptions, TokenCache};
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("runs");
        let mut gcloud = fake(
            dir.path(),
            &format!(
                "echo run >> {}\nsleep 0.2\necho '{{\"credential\": {{\"access_token\": \
                 \"ya29.f\", \"token_expiry\": \"2099-01-01T00:00:00Z\"}}}}'",
                count.display()
            ),
        );
        gcloud.timeout = Duration::from_secs(20);
        let expired = Fetched {
            token: SecretString::from("old".to_owned()),
            expires_at: SystemTime::UNIX_EPOCH,
            refresh_token_rotated: false,
        };
        let cache = TokenCache::new(
            std::sync::Arc::new(gcloud),
            expired,
            CacheOptions::default(),
        )
        .unwrap();
        let callers = (0..8).map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await })
        });
        for caller in callers.collect::<Vec<_>>() {
            assert_eq!(caller.await.unwrap().unwrap().secret(), "ya29.f");
        }
        // And the refreshed token is then served without running gcloud.
        assert_eq!(cache.token().await.unwrap().secret(), "ya29.f");
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
    }

    #[test]
    fn not_signed_in_says_what_to_run() {
        let stderr = "ERROR: (gcloud.config.config-helper) You do not currently have an \
                      active account selected.\nPlease run:\n\n  $ gcloud auth login\n";
        assert_eq!(failure(stderr), "not signed in: run `gcloud auth login`");
        assert!(failure("ERROR: boom\nmore").starts_with("failed (ERROR: boom)"));
    }
}
