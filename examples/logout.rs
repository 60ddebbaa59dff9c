//! Signs out: revokes the refresh token at Google and deletes the cached
//! credentials, like `gcloud auth application-default revoke`.
//!
//! ```sh
//! cargo run --example logout                 # token.json
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

use gemini_oauth::Consent;

const USAGE: &str = "Usage: logout [FLAGS]\n\nRevokes the cached credentials and deletes them.";

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse(USAGE, &[]);
    cli::init_logging();
    // Signing out must never start a sign-in.
    let result = match args.loader().consent(Consent::Never).load().await {
        Ok(creds) => creds.revoke().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            eprintln!("Credentials revoked.");
            ExitCode::SUCCESS
        }
        Err(e) => cli::fail(&e),
    }
}
