//! A user-written `TokenStore`: tokens kept by an external credential helper
//! (a password manager, the OS keychain, a vault CLI…), in the style of git's
//! credential helpers. `PROGRAM get` prints the stored JSON (nothing when
//! empty), `PROGRAM store` reads it on stdin, `PROGRAM erase` forgets it.
//!
//! ```sh
//! cargo run --example custom_store -- --helper ./my-helper.sh --no-browser
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::{ExitCode, Stdio};

use gemini_oauth::{Error, Result, StoredToken, TokenStore};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The whole store: about twenty lines of trait impl.
struct HelperStore {
    program: String,
}

impl HelperStore {
    async fn run(&self, action: &'static str, input: Option<String>) -> Result<Vec<u8>> {
        let fail = |e: String| Error::store(self.name(), action, e);
        let mut child = Command::new(&self.program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.program)))?;
        let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
        stdin
            .write_all(input.unwrap_or_default().as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail(e.to_string()))?;
        match out.status.success() {
            true => Ok(out.stdout),
            false => Err(fail(format!(
                "{} {action} exited with {}",
                self.program, out.status
            ))),
        }
    }
}

impl TokenStore for HelperStore {
    async fn load(&self) -> Result<Option<StoredToken>> {
        let json = self.run("get", None).await?;
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let token = StoredToken::from_json(&json)
            .map_err(|p| Error::store(self.name(), "parse", p.to_string()))?;
        Ok(Some(token))
    }

    async fn save(&self, token: &StoredToken) -> Result<()> {
        self.run("store", Some(token.to_json())).await.map(drop)
    }

    async fn clear(&self) -> Result<()> {
        self.run("erase", None).await.map(drop)
    }

    fn name(&self) -> String {
        format!("credential helper {}", self.program)
    }
}

const USAGE: &str = "Usage: custom_store --helper PROGRAM [FLAGS]\n\n\
Loads credentials through a credential-helper token store and reports the token's lifetime.";

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse(USAGE, &["--helper"]);
    cli::init_logging();
    let Some(program) = args.extra("--helper") else {
        eprintln!("error: --helper PROGRAM is required\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let store = HelperStore {
        program: program.to_owned(),
    };
    let creds = cli::or_exit(args.load_with(|l| l.token_store(store)).await);
    let token = cli::or_exit(creds.access_token().await);
    let left = token
        .expires_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    println!("access token valid for {} more seconds", left.as_secs());
    ExitCode::SUCCESS
}
