//! Starts the real third-party OAuth server (panva/oidc-provider) from
//! tests/oidc on 127.0.0.1; it stops when this handle is dropped.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

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
        Self::spawn(env, Stdio::null())
    }

    /// [`OidcServer::start_with`], with the server's stderr in the file `log`:
    /// one line per rejected request and, with `OIDC_INTERACTIVE=1`, per
    /// interaction page started and ended (see tests/oidc/README.md).
    pub fn start_logging_to(env: &[(&str, &str)], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        Self::spawn(env, Stdio::from(file))
    }

    fn spawn(env: &[(&str, &str)], stderr: Stdio) -> Self {
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
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut auth, mut token, mut revoke) = (String::new(), String::new(), String::new());
        let issuer = loop {
            let line = lines
                .next()
                .expect("oidc-provider exited before it was ready")
                .unwrap();
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
        OidcServer {
            child,
            auth,
            token,
            revoke,
            issuer,
        }
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
