//! Starts the real third-party OAuth server (panva/oidc-provider) from
//! tests/oidc on 127.0.0.1; it stops when this handle is dropped.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "gemini-oauth-test";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const DENY_CLIENT_ID: &str = "gemini-oauth-deny";
pub const DENY_CLIENT_SECRET: &str = "deny-client-secret";

pub struct OidcServer {
    child: Child,
    pub auth: String,
    pub token: String,
    pub revoke: String,
    pub issuer: String,
}

impl OidcServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::spawn(env, Stdio::null)
    }

    /// [`OidcServer::start_with`], with the server's stderr in the file `log`:
    /// one line per rejected request and, with `OIDC_INTERACTIVE=1`, per
    /// interaction page started and ended (see tests/oidc/README.md).
    pub fn start_logging_to(env: &[(&str, &str)], log: &std::path::Path) -> Self {
        Self::spawn(env, || Stdio::from(std::fs::File::create(log).unwrap()))
    }

    /// Starts the server; a start that hangs (node has been seen to deadlock
    /// at start-up on a loaded machine, printing nothing) is killed and tried
    /// again, up to 3 attempts.
    fn spawn(env: &[(&str, &str)], stderr: impl Fn() -> Stdio) -> Self {
        for attempt in 1..=3 {
            match Self::spawn_once(env, stderr()) {
                Ok(server) => return server,
                Err(why) => eprintln!("oidc-provider start {attempt} of 3: {why}"),
            }
        }
        panic!("oidc-provider did not start in 3 attempts");
    }

    fn spawn_once(env: &[(&str, &str)], stderr: Stdio) -> Result<Self, String> {
        let script = std::env::var("GEMINI_OAUTH_OIDC_SERVER")
            .unwrap_or_else(|_| format!("{}/tests/oidc/server.mjs", env!("CARGO_MANIFEST_DIR")));
        let modules = std::path::Path::new(&script)
            .parent()
            .unwrap()
            .join("node_modules/oidc-provider");
        assert!(
            modules.exists(),
            "oidc-provider is not installed: run `bash .ci/test` (or `npm ci --prefix tests/oidc`)"
        );
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .env("OIDC_MAX_LIFETIME_SECS", "300")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("node must be installed (bash .ci/test installs it)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut auth, mut token, mut revoke) = (String::new(), String::new(), String::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        let issuer = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(wait) {
                Ok(line) => line.unwrap(),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("not ready after 60 s".into());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("oidc-provider exited before it was ready")
                }
            };
            if let Some(v) = line.strip_prefix("OIDC_AUTH=") {
                auth = v.to_owned();
            } else if let Some(v) = line.strip_prefix("OIDC_TOKEN=") {
                token = v.to_owned();
            } else if let Some(v) = line.strip_prefix("OIDC_REVOKE=") {
                revoke = v.to_owned();
            } else if let Some(v) = line.strip_prefix("OIDC_ISSUER=") {
                break v.to_owned();
            }
        };
        Ok(OidcServer {
            child,
            auth,
            token,
            revoke,
            issuer,
        })
    }

    /// The client_secret.json of a Desktop-app client registered on this server.
    pub fn client_secret_json(&self, id: &str, secret: &str) -> String {
        serde_json::json!({"installed": {
            "client_id": id, "client_secret": secret, "project_id": "oidc-test",
            "auth_uri": self.auth, "token_uri": self.token,
            "redirect_uris": ["http://127.0.0.1"]
        }})
        .to_string()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        // Closing stdin stops the server; kill in case it hangs.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
