//! What is wrong with a credentials file, said for its kind: a key is
//! downloaded again, a gcloud file is written again by the gcloud command
//! that wrote it, and an OAuth client file is signed in with first.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::token::TokenFileProblem;

/// What a credentials file is, as far as its `type` (or its shape) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsFileKind {
    /// `authorized_user`: a user's sign-in, as gcloud writes it.
    AuthorizedUser,
    /// `service_account`: a service-account key.
    ServiceAccount,
    /// `impersonated_service_account`.
    ImpersonatedServiceAccount,
    /// `external_account`: workload or workforce identity federation.
    ExternalAccount,
    /// `external_account_authorized_user`: a workforce identity sign-in.
    ExternalAccountAuthorizedUser,
    /// An OAuth client file (`client_secret.json`, with `installed` or
    /// `web`): it names an app, and holds no credentials.
    OAuthClient,
    /// The type could not be told (not JSON, no `type`).
    Unknown,
}

impl CredentialsFileKind {
    /// The kind of the file with this `type`.
    pub(crate) fn of_type(kind: &str) -> Self {
        match kind {
            "authorized_user" => CredentialsFileKind::AuthorizedUser,
            "service_account" => CredentialsFileKind::ServiceAccount,
            "impersonated_service_account" => CredentialsFileKind::ImpersonatedServiceAccount,
            "external_account" => CredentialsFileKind::ExternalAccount,
            "external_account_authorized_user" => {
                CredentialsFileKind::ExternalAccountAuthorizedUser
            }
            _ => CredentialsFileKind::Unknown,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            CredentialsFileKind::AuthorizedUser => "user credentials file",
            CredentialsFileKind::ServiceAccount => "service-account key file",
            CredentialsFileKind::ImpersonatedServiceAccount => "impersonation credentials file",
            CredentialsFileKind::ExternalAccount => "external account credentials file",
            CredentialsFileKind::ExternalAccountAuthorizedUser => {
                "workforce identity credentials file"
            }
            CredentialsFileKind::OAuthClient | CredentialsFileKind::Unknown => "credentials file",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            CredentialsFileKind::AuthorizedUser => {
                "sign in again with `gcloud auth application-default login` (or this crate's \
                 `login` example), which writes the file anew"
            }
            CredentialsFileKind::ServiceAccount => {
                "create a new key for the service account (Cloud console: IAM & Admin > Service \
                 Accounts > Keys > Add key > JSON) and use the downloaded file"
            }
            CredentialsFileKind::ImpersonatedServiceAccount => {
                "run `gcloud auth application-default login --impersonate-service-account=EMAIL` \
                 again, which writes the file anew"
            }
            CredentialsFileKind::ExternalAccount => {
                "create the configuration again (`gcloud iam workload-identity-pools \
                 create-cred-config`, or download it from the Cloud console)"
            }
            CredentialsFileKind::ExternalAccountAuthorizedUser => {
                "run `gcloud auth application-default login --login-config=FILE` again, which \
                 writes the file anew"
            }
            CredentialsFileKind::OAuthClient => {
                "sign in with it first, with this crate's `login` example (`login \
                 --client-id-file FILE`) or `gcloud auth application-default login \
                 --client-id-file=FILE`, and use the file that writes (gcloud's is found without \
                 GOOGLE_APPLICATION_CREDENTIALS); or load it with \
                 CredentialLoader::client_secret_file"
            }
            CredentialsFileKind::Unknown => {
                "point GOOGLE_APPLICATION_CREDENTIALS (or credentials_file) at a file written by \
                 gcloud or downloaded from the Cloud console"
            }
        }
    }
}

/// An Application Default Credentials file that cannot be used: which file,
/// what kind, what is wrong (naming the field, never its value), and, in the
/// message, what to do for that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialsFileProblem {
    /// The file.
    pub path: PathBuf,
    /// What the file is.
    pub kind: CredentialsFileKind,
    /// What is wrong with it.
    pub problem: TokenFileProblem,
}

impl fmt::Display for CredentialsFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        if self.kind == CredentialsFileKind::OAuthClient {
            write!(
                f,
                "{path} is an OAuth client file (client_secret.json), which names an app but \
                 holds no credentials"
            )?;
        } else {
            write!(f, "{} {path}: {}", self.kind.noun(), self.problem)?;
        }
        write!(f, "; {}", self.kind.advice())
    }
}

/// Whether `value` is an OAuth client file: `installed` or `web` holding a `client_id`.
pub(crate) fn is_oauth_client(value: &serde_json::Value) -> bool {
    value.get("type").is_none()
        && ["installed", "web"]
            .iter()
            .any(|k| value.get(k).and_then(|c| c.get("client_id")).is_some())
}

/// The error for the credentials file at `path`, of `kind`.
pub(crate) fn file_error(
    path: &Path,
    kind: CredentialsFileKind,
    problem: TokenFileProblem,
) -> Error {
    Error::CredentialsFile(CredentialsFileProblem {
        path: path.to_owned(),
        kind,
        problem,
    })
}
