//! Sends a prompt to `generateContent` (or, with `--stream`,
//! `streamGenerateContent`) through `authorized_client()` as raw JSON: the
//! way other crates can call any Gemini endpoint. `--file` uploads a file
//! through the Files API first and asks about it.
//!
//! ```sh
//! cargo run --example generate_content -- --prompt "Write a haiku about Rust" --stream
//! cargo run --example generate_content -- --file report.pdf --prompt "Summarize this"
//! ```

#[path = "common/cli.rs"]
mod cli;
#[path = "common/mime.rs"]
mod mime;

use std::io::Write;
use std::process::ExitCode;

use futures_util::StreamExt;
use gemini_oauth::gemini;
use serde_json::json;

const USAGE: &str =
    "Usage: generate_content [FLAGS] [--model NAME] [--prompt TEXT] [--stream] [--file PATH]

Prints the model's answer (default model: gemini-2.5-flash).
  --stream     print each piece of the answer as it arrives
  --file PATH  upload PATH (Files API) and send it with the prompt; its MIME
               type comes from its extension";

#[tokio::main]
async fn main() -> ExitCode {
    let (args, creds) = cli::start(USAGE, &["--model", "--prompt", "--file"]).await;
    let model = args.extra("--model").unwrap_or("gemini-2.5-flash");
    let prompt = args
        .extra("--prompt")
        .unwrap_or("Say hello in one short sentence.");
    let client = args.client(&creds);
    let mut parts = Vec::new();
    if let Some(path) = args.extra("--file") {
        let mime_type = gemini::mime_type(path);
        let file = cli::or_exit(
            gemini::upload_file(&client, path, mime_type, mime::file_name(path)).await,
        );
        parts.push(json!({"file_data": {"mime_type": mime_type, "file_uri": file.uri}}));
    }
    parts.push(json!({ "text": prompt }));
    let body = json!({ "contents": [{ "parts": parts }] });
    let mut out = std::io::stdout().lock();
    if args.has("--stream") {
        let mut chunks = cli::or_exit(gemini::stream_generate_content(&client, model, &body).await);
        while let Some(chunk) = chunks.next().await {
            let chunk = cli::or_exit(chunk);
            for text in gemini::answer_texts(&chunk) {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
    } else {
        let answer = cli::or_exit(gemini::generate_content(&client, model, &body).await);
        for text in gemini::answer_texts(&answer) {
            let _ = out.write_all(text.as_bytes());
        }
    }
    let _ = writeln!(out);
    ExitCode::SUCCESS
}
