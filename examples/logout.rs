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
    let creds = cli::or_exit(args.load_with(|l| l.consent(Consent::Never)).await);
    cli::or_exit(creds.revoke().await);
    eprintln!("Credentials revoked.");
    ExitCode::SUCCESS
}
