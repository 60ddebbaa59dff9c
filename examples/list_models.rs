//! Lists the Gemini models your Google account can use, one name per line,
//! like the Python quickstart's script. Signs you in on first use.
//!
//! ```sh
//! cargo run --example list_models -- --help
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

const USAGE: &str =
    "Usage: list_models [FLAGS]\n\nPrints the name of each Gemini model, one per line.";

#[tokio::main]
async fn main() -> ExitCode {
    let (_, creds) = cli::start(USAGE, &[]).await;
    let models = gemini_oauth::gemini::list_models(&creds.authorized_client()).await;
    cli::finish(models.map(|models| {
        for m in models {
            println!("{}", m.name);
        }
    }))
}
