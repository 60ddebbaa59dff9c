//! Sends a prompt to `generateContent` through `authorized_client()` as raw
//! JSON: the way other crates can call any Gemini endpoint.
//!
//! ```sh
//! cargo run --example generate_content -- --prompt "Write a haiku about Rust"
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

use gemini_oauth::gemini::ApiError;

const USAGE: &str = "Usage: generate_content [FLAGS] [--model NAME] [--prompt TEXT]\n\n\
Prints the model's answer (default model: gemini-2.5-flash).";

#[tokio::main]
async fn main() -> ExitCode {
    let (args, creds) = cli::start(USAGE, &["--model", "--prompt"]).await;
    let model = args.extra("--model").unwrap_or("gemini-2.5-flash");
    let prompt = args
        .extra("--prompt")
        .unwrap_or("Say hello in one short sentence.");
    let client = creds.authorized_client();
    let url = client.api_url(&format!("models/{model}:generateContent"));
    let body = serde_json::json!({ "contents": [{ "parts": [{ "text": prompt }] }] });
    let resp = cli::or_exit(client.post_json(&url, body.to_string()).await);
    if !resp.status().is_success() {
        return cli::fail(&ApiError::from_body(
            &url,
            resp.status().as_u16(),
            resp.body(),
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    let parts = answer["candidates"][0]["content"]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for part in parts {
        if let Some(text) = part["text"].as_str() {
            print!("{text}");
        }
    }
    println!();
    ExitCode::SUCCESS
}
