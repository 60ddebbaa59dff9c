//! `models`, `generate`, `upload`: Gemini calls with the credentials.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use futures_util::StreamExt;
use gemini_oauth::gemini;
use serde_json::json;

use crate::failure::Failure;
use crate::flags::Flags;
use crate::output;

/// Prints the name of each model, one per line.
pub(crate) async fn models(flags: &Flags) -> Result<(), Failure> {
    let creds = flags.load().await?;
    let models = gemini::list_models(&flags.client(&creds)).await?;
    let names: String = models.iter().map(|m| format!("{}\n", m.name)).collect();
    output::write(names.as_bytes())
}

/// What `generate` takes besides the shared flags.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The prompt
    prompt: String,
    /// The model
    #[arg(long, default_value = "gemini-2.5-flash")]
    model: String,
    /// Print each piece of the answer as it arrives
    #[arg(long)]
    stream: bool,
    /// Upload this file (Files API) and send it with the prompt; its MIME type comes from its extension
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Sends the prompt (and the file) and prints the answer's text.
pub(crate) async fn generate(flags: &Flags, args: &GenerateArgs) -> Result<(), Failure> {
    let creds = flags.load().await?;
    let client = flags.client(&creds);
    let mut parts = Vec::new();
    if let Some(path) = &args.file {
        let path = path_str(path)?;
        let mime_type = gemini::mime_type(path);
        let file = gemini::upload_file(&client, path, mime_type, file_name(path)).await?;
        parts.push(json!({"file_data": {"mime_type": mime_type, "file_uri": file.uri}}));
    }
    parts.push(json!({ "text": args.prompt }));
    let body = json!({ "contents": [{ "parts": parts }] });
    if args.stream {
        let mut chunks = gemini::stream_generate_content(&client, &args.model, &body).await?;
        while let Some(chunk) = chunks.next().await {
            for text in gemini::answer_texts(&chunk?) {
                output::write(text.as_bytes())?;
            }
        }
    } else {
        let answer = gemini::generate_content(&client, &args.model, &body).await?;
        output::write(gemini::answer_texts(&answer).collect::<String>().as_bytes())?;
    }
    output::write(b"\n")
}

/// What `upload` takes besides the shared flags.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The file to upload
    path: PathBuf,
    /// Its MIME type [default: from the extension]
    #[arg(long, value_name = "TYPE")]
    mime_type: Option<String>,
    /// The name shown for it [default: the file's name]
    #[arg(long, value_name = "NAME")]
    display_name: Option<String>,
    /// Bytes per request, rounded up to 256 KiB [default: 8 MiB]
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
}

/// Uploads the file (a progress bar on a terminal, none when piped) and
/// prints its name, then its URI.
pub(crate) async fn upload(flags: &Flags, args: &UploadArgs) -> Result<(), Failure> {
    let path = path_str(&args.path)?;
    let mime_type = args
        .mime_type
        .as_deref()
        .unwrap_or_else(|| gemini::mime_type(path));
    let display_name = args
        .display_name
        .as_deref()
        .unwrap_or_else(|| file_name(path));
    let creds = flags.load().await?;
    let mut upload = gemini::Upload::new(path, mime_type).display_name(display_name);
    if let Some(bytes) = args.chunk_size {
        upload = upload.chunk_size(bytes);
    }
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = bar.clone();
    upload = upload.on_progress(move |sent, total| {
        progress.set_length(total);
        progress.set_position(sent);
    });
    let file = upload.send(&flags.client(&creds)).await;
    bar.finish_and_clear();
    let file = file?;
    output::write(format!("{}\n{}\n", file.name, file.uri).as_bytes())
}

/// The path as UTF-8 (the library's upload helpers take `&str`).
fn path_str(path: &std::path::Path) -> Result<&str, Failure> {
    path.to_str().ok_or_else(|| {
        Failure::Usage(format!(
            "{} is not valid UTF-8; rename the file or pass a path without such characters",
            path.display()
        ))
    })
}

/// The file's name, as the display name of an upload.
fn file_name(path: &str) -> &str {
    std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}
