//! `gemini-oauth`: gcloud's Application Default Credentials commands and
//! Gemini calls from a shell, without gcloud. A thin face over the library:
//! each command is a few calls of its public API.
//!
//! Exit codes: 0 success, 1 error, 2 usage, 3 sign-in required.

mod commands;
mod failure;
mod flags;
mod output;
mod status;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::failure::Failure;
use crate::flags::Flags;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 error, 2 usage, 3 sign-in required (run `gemini-oauth login`).
Logs: RUST_LOG=debug (stderr). Colour only on a terminal, never with NO_COLOR.";

/// Google sign-in and Application Default Credentials for the Gemini API, without gcloud.
#[derive(Debug, Parser)]
#[command(name = "gemini-oauth", version, after_help = AFTER_HELP)]
#[command(propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in: into token.json (as load_creds.py), or with --adc into gcloud's ADC file
    #[command(after_help = "Examples:
  gemini-oauth login --client-id-file client_secret.json
  gemini-oauth login --adc --client-id-file client_secret.json --scopes https://www.googleapis.com/auth/cloud-platform")]
    Login(commands::LoginArgs),
    /// Print a valid access token, and nothing else, on stdout
    #[command(after_help = "Example:
  curl -H \"Authorization: Bearer $(gemini-oauth print-access-token --adc)\" \\
    https://generativelanguage.googleapis.com/v1/models")]
    PrintAccessToken,
    /// Print a Google-signed ID token for an audience, and nothing else, on stdout
    #[command(after_help = "Example:
  curl -H \"Authorization: Bearer $(gemini-oauth print-identity-token --adc \\
    --audiences https://my-tool-abc123-uc.a.run.app)\" https://my-tool-abc123-uc.a.run.app/")]
    PrintIdentityToken(commands::IdentityArgs),
    /// Show which credentials are found and why (never a secret)
    #[command(after_help = "Example:
  gemini-oauth status --adc --format json")]
    Status(status::StatusArgs),
    /// Revoke the credentials at Google and delete them (with --adc: gcloud's ADC file)
    #[command(
        visible_alias = "revoke",
        after_help = "Example:
  gemini-oauth logout --adc"
    )]
    Logout,
    /// List the Gemini models the credentials can use, one name per line
    #[command(after_help = "Example:
  gemini-oauth models --adc")]
    Models,
    /// Send a prompt to a model and print its answer
    #[command(after_help = "Examples:
  gemini-oauth generate \"Write a haiku about Rust\" --stream
  gemini-oauth generate \"Summarize this\" --file report.pdf")]
    Generate(commands::GenerateArgs),
    /// Upload a file through the Files API; prints its name, then its URI
    #[command(after_help = "Example:
  gemini-oauth upload report.pdf")]
    Upload(commands::UploadArgs),
    /// Print a shell completion script
    #[command(after_help = "Example:
  gemini-oauth completions bash > ~/.local/share/bash-completion/completions/gemini-oauth")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // A bug is still one line on stderr, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        // `info` is "panicked at FILE:LINE:COL:\nMESSAGE": two lines.
        let info = failure::one_line(&info.to_string());
        eprintln!("error: internal error ({info}); please report it");
    }));
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "gemini-oauth", &mut script);
        return match output::write(&script) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => f.report(),
        };
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Failure::Other(format!("cannot start the async runtime: {e}")).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let flags = &cli.flags;
    match cli.command {
        Command::Login(args) => commands::login(flags, &args).await,
        Command::PrintAccessToken => commands::print_access_token(flags).await,
        Command::PrintIdentityToken(args) => commands::print_identity_token(flags, &args).await,
        Command::Status(args) => status::run(flags, &args).await,
        Command::Logout => commands::logout(flags).await,
        Command::Models => commands::models(flags).await,
        Command::Generate(args) => commands::generate(flags, &args).await,
        Command::Upload(args) => commands::upload(flags, &args).await,
        Command::Completions { .. } => Ok(()),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings, but not
/// the token cache's "refresh failed", which the error line says again).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,gemini_oauth::token_cache=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(failure::color_on_stderr())
        .init();
}
