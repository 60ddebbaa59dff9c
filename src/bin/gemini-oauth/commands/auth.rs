//! `login`, `print-access-token`, `logout`: gcloud's ADC commands.

use std::path::PathBuf;

use clap::Args;
use gemini_oauth::{Consent, MemoryTokenStore, scopes};

use crate::failure::Failure;
use crate::flags::Flags;

/// What `login` takes besides the shared flags.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// With --adc: write the file here instead of gcloud's well-known place
    #[arg(long, value_name = "FILE", requires = "adc")]
    out: Option<PathBuf>,
}

/// Signs in. Without `--adc`, as `load_creds.py`: the cached token in
/// token.json serves when it is still good, else a sign-in fills it. With
/// `--adc`, as `gcloud auth application-default login`: a fresh sign-in
/// every time, written in gcloud's format (an `impersonated_service_account`
/// file with `--impersonate-service-account`).
pub(crate) async fn login(flags: &Flags, args: &LoginArgs) -> Result<(), Failure> {
    if flags.api_key {
        return Err(Failure::Usage(
            "login signs a person in; an API key needs no sign-in: set GOOGLE_API_KEY and pass \
             --api-key to the other commands"
                .into(),
        ));
    }
    if !flags.adc {
        let creds = flags.load().await?;
        eprintln!("Signed in; credentials saved in {}.", creds.source());
        return Ok(());
    }
    if flags.no_consent {
        return Err(Failure::Usage(
            "login --adc always signs in afresh, as gcloud does, which --no-consent forbids: \
             drop --no-consent"
                .into(),
        ));
    }
    let Some(client_file) = &flags.client_secret else {
        return Err(Failure::Usage(
            "login --adc needs --client-id-file FILE (a Desktop app's OAuth client, from \
             https://console.cloud.google.com/apis/credentials)"
                .into(),
        ));
    };
    // As gcloud: sign in as the user, then write an impersonated_service_account file.
    let mut user = flags.clone();
    user.adc = false;
    user.impersonate_service_account = None;
    let scopes: Vec<String> = if flags.scopes.is_empty() {
        vec![
            scopes::CLOUD_PLATFORM.into(),
            scopes::GENERATIVE_LANGUAGE_RETRIEVER.into(),
        ]
    } else {
        flags.scopes.clone()
    };
    // A fresh sign-in every time, as gcloud does: nothing cached is consulted.
    let creds = user
        .load_with(|l| {
            l.token_store(MemoryTokenStore::new())
                .client_secret_file(client_file)
                .scopes(scopes)
        })
        .await?;
    let out = args.out.as_deref();
    let path = match flags.impersonation() {
        Some((target, delegates)) => {
            gemini_oauth::adc::save_impersonated_service_account(&creds, &target, &delegates, out)
                .await?
        }
        None => gemini_oauth::adc::save_authorized_user(&creds, out).await?,
    };
    eprintln!("Credentials saved to file: [{}]", path.display());
    Ok(())
}

/// Prints a valid access token and nothing else on stdout; never signs in
/// (exit code 3 when a sign-in would be needed).
pub(crate) async fn print_access_token(flags: &Flags) -> Result<(), Failure> {
    if flags.api_key {
        return Err(Failure::Usage(
            "an API key is not an access token: send $GOOGLE_API_KEY as the x-goog-api-key \
             header, or leave out --api-key for an OAuth token"
                .into(),
        ));
    }
    let creds = flags.load_with(|l| l.consent(Consent::Never)).await?;
    let token = creds.access_token().await?;
    // Printing the token is this command's whole job.
    crate::output::line(token.secret())
}

/// What `print-identity-token` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct IdentityArgs {
    /// The audience the token is for: a Cloud Run URL, an IAP client id (for a
    /// user's sign-in: its OAuth client id)
    #[arg(long, value_name = "AUDIENCE")]
    audiences: String,
}

/// Prints a valid ID token for the audience and nothing else on stdout;
/// never signs in (exit code 3 when a sign-in would be needed).
pub(crate) async fn print_identity_token(
    flags: &Flags,
    args: &IdentityArgs,
) -> Result<(), Failure> {
    if flags.api_key {
        return Err(Failure::Usage(
            "an API key gives no ID token: leave out --api-key".into(),
        ));
    }
    if args.audiences.trim().is_empty() {
        return Err(Failure::Usage(
            "--audiences is empty: name the audience".into(),
        ));
    }
    let creds = flags.load_with(|l| l.consent(Consent::Never)).await?;
    let token = creds.id_token(&args.audiences).await?;
    // Printing the token is this command's whole job.
    crate::output::line(token.secret())
}

/// Revokes the credentials and deletes them; with `--adc`, also deletes
/// gcloud's well-known ADC file (as `gcloud auth application-default revoke`).
pub(crate) async fn logout(flags: &Flags) -> Result<(), Failure> {
    if flags.api_key {
        return Err(Failure::Usage(
            "logout revokes a sign-in; an API key is deleted at \
             https://aistudio.google.com/apikey (unset GOOGLE_API_KEY here), or leave out \
             --api-key"
                .into(),
        ));
    }
    let creds = flags.load_with(|l| l.consent(Consent::Never)).await?;
    creds.revoke().await?;
    if flags.adc
        && std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_none_or(|v| v.is_empty())
        && let Some(file) = gemini_oauth::adc::well_known_file()
    {
        match std::fs::remove_file(&file) {
            Ok(()) => eprintln!("Removed {}.", file.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Failure::Other(format!(
                    "the credentials were revoked but {} could not be removed ({e}); delete it",
                    file.display()
                )));
            }
        }
    }
    eprintln!("Credentials revoked.");
    Ok(())
}
