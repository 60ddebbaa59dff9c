//! Prints a valid access token and nothing else on stdout, like
//! `gcloud auth application-default print-access-token`:
//!
//! ```sh
//! curl -H "Authorization: Bearer $(cargo run -q --example print_access_token)" \
//!   https://generativelanguage.googleapis.com/v1/models
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

const USAGE: &str =
    "Usage: print_access_token [FLAGS]\n\nPrints only a valid access token on stdout.";

#[tokio::main]
async fn main() -> ExitCode {
    let (_, creds) = cli::start(USAGE, &[]).await;
    // Printing the token is this example's whole job.
    cli::finish(
        creds
            .access_token()
            .await
            .map(|t| println!("{}", t.secret())),
    )
}
