//! Uploads a file through the Files API (resumable protocol, streamed from
//! disk, resumed in the same session after a dropped connection or a 5xx)
//! and prints its name, then its URI, one per line: the URI goes into a
//! request's `file_data` part.
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
                   [--chunk-size BYTES] [--progress]

Uploads PATH and prints the file's name, then its URI.
  --file PATH          the file to upload
  --mime-type TYPE     its MIME type (default: from the extension)
  --display-name NAME  the name shown for it (default: the file's name)
  --chunk-size BYTES   bytes per request, rounded up to 256 KiB (default: 8 MiB)
  --progress           show the bytes sent on stderr as the upload goes";

#[tokio::main]
async fn main() -> ExitCode {
    let flags = ["--file", "--mime-type", "--display-name", "--chunk-size"];
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
        .unwrap_or_else(|| gemini_oauth::gemini::mime_type(path));
    let display_name = args
        .extra("--display-name")
        .unwrap_or_else(|| mime::file_name(path));
    let mut upload = gemini_oauth::gemini::Upload::new(path, mime_type).display_name(display_name);
    if let Some(size) = args.extra("--chunk-size") {
        let Ok(bytes) = size.parse::<u64>() else {
            eprintln!("error: --chunk-size takes a number of bytes\n\n{USAGE}");
            return ExitCode::from(2);
        };
        upload = upload.chunk_size(bytes);
    }
    if args.has("--progress") {
        upload = upload.on_progress(|sent, total| eprint!("\r{sent}/{total} bytes"));
    }
    let client = args.client(&creds);
    let file = upload.send(&client).await;
    if args.has("--progress") {
        eprintln!();
    }
    cli::finish(file.map(|file| {
        println!("{}", file.name);
        println!("{}", file.uri);
    }))
}
