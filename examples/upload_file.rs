//! Uploads a file through the Files API (resumable protocol, streamed from
//! disk) and prints its name, then its URI, one per line: the URI goes into
//! a request's `file_data` part.
//!
//! ```sh
//! cargo run --example upload_file -- --file report.pdf
//! ```

#[path = "common/cli.rs"]
mod cli;
#[path = "common/mime.rs"]
mod mime;

use std::process::ExitCode;

const USAGE: &str =
    "Usage: upload_file [FLAGS] --file PATH [--mime-type TYPE] [--display-name NAME]

Uploads PATH and prints the file's name, then its URI.
  --file PATH          the file to upload
  --mime-type TYPE     its MIME type (default: from the extension)
  --display-name NAME  the name shown for it (default: the file's name)";

#[tokio::main]
async fn main() -> ExitCode {
    let flags = ["--file", "--mime-type", "--display-name"];
    let (args, creds) = cli::start(USAGE, &flags).await;
    let Some(path) = args.extra("--file") else {
        eprintln!(
            "error: --file PATH is required\n\n{USAGE}\n\n{}",
            cli::CREDENTIAL_FLAGS
        );
        return ExitCode::from(2);
    };
    let mime_type = args
        .extra("--mime-type")
        .unwrap_or_else(|| mime::guess(path));
    let display_name = args
        .extra("--display-name")
        .unwrap_or_else(|| mime::file_name(path));
    let client = args.client(&creds);
    let file = gemini_oauth::gemini::upload_file(&client, path, mime_type, display_name).await;
    cli::finish(file.map(|file| {
        println!("{}", file.name);
        println!("{}", file.uri);
    }))
}
