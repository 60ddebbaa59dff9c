//! Creates Application Default Credentials without gcloud: what
//! `gcloud auth application-default login --client-id-file=FILE --scopes=A,B`
//! does. Runs the consent flow and writes an `authorized_user` file in
//! gcloud's format to the well-known location (or `--out FILE`); afterwards
//! `list_models --adc` and Python's `google.auth.default()` find it.
//!
//! ```sh
//! cargo run --example login -- --client-id-file client_secret.json
//! cargo run --example list_models -- --adc
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

use gemini_oauth::{MemoryTokenStore, scopes};

const USAGE: &str = "Usage: login --client-id-file FILE [--scopes A,B] [--out FILE] [FLAGS]\n\n\
Signs in and writes Application Default Credentials (default scopes: cloud-platform,\n\
generative-language.retriever; default file: gcloud's application_default_credentials.json).\n\
With --impersonate-service-account [DELEGATE,...,]SA the file is an\n\
impersonated_service_account file with the sign-in as its source, as gcloud's.";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = cli::Args::parse(USAGE, &["--client-id-file", "--scopes", "--out"]);
    // As gcloud: sign in as the user, then write an impersonated_service_account file.
    let impersonate = args.impersonate.take();
    cli::init_logging();
    let Some(client_file) = args
        .extra("--client-id-file")
        .or(args.client_secret.as_deref())
    else {
        eprintln!("error: --client-id-file FILE is required\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let scopes: Vec<String> = match args.extra("--scopes") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => vec![
            scopes::CLOUD_PLATFORM.into(),
            scopes::GENERATIVE_LANGUAGE_RETRIEVER.into(),
        ],
    };
    // A fresh sign-in every time, as gcloud does: nothing cached is consulted.
    let creds = cli::or_exit(
        args.load_with(|l| {
            l.token_store(MemoryTokenStore::new())
                .client_secret_file(client_file)
                .scopes(scopes)
        })
        .await,
    );
    let out = args.extra("--out").map(std::path::Path::new);
    let path = cli::or_exit(match impersonate {
        Some(list) => {
            let mut accounts: Vec<String> = list.split(',').map(|a| a.trim().to_owned()).collect();
            let target = accounts.pop().unwrap_or_default();
            gemini_oauth::adc::save_impersonated_service_account(&creds, &target, &accounts, out)
                .await
        }
        None => gemini_oauth::adc::save_authorized_user(&creds, out).await,
    });
    eprintln!("Credentials saved to file: [{}]", path.display());
    ExitCode::SUCCESS
}
