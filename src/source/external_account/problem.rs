//! What can be wrong with an `external_account` file or with getting its
//! subject token: plain data naming the field, the file or URL involved,
//! never a token, a secret or a header value.

use std::fmt;

/// A problem of an `external_account` credentials file (workload or
/// workforce identity federation), found when it is read or when its
/// subject token is fetched. Carried by
/// [`Error::ExternalAccount`](crate::Error::ExternalAccount), which names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalAccountProblem {
    /// A field is missing or holds a value that cannot be used.
    InvalidField {
        /// The field, as a path (`credential_source.executable.command`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file asks to run a program, which is off unless
    /// `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1` (as in google-auth).
    ExecutablesNotAllowed,
    /// The subject token could not be read from the place `field` names.
    SubjectToken {
        /// The field naming the place (`credential_source.file`, `credential_source.url`, …).
        field: &'static str,
        /// The file, or the URL without query and userinfo.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A credential source URL answered with an HTTP error status.
    HttpStatus {
        /// The field naming the URL.
        field: &'static str,
        /// The URL without query and userinfo.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The executable of `credential_source.executable` failed.
    Executable {
        /// The program (the command's first word; its arguments are not shown).
        program: String,
        /// What went wrong.
        reason: String,
    },
}

impl ExternalAccountProblem {
    /// Whether trying again later may help (a credential source URL answered 5xx or 429).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, ExternalAccountProblem::HttpStatus { status, .. } if *status >= 500 || *status == 429)
    }
}

impl fmt::Display for ExternalAccountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalAccountProblem::InvalidField { field, reason } => {
                write!(
                    f,
                    "\"{field}\" {reason}; fix the file (gcloud iam workload-identity-pools create-cred-config writes it)"
                )
            }
            ExternalAccountProblem::ExecutablesNotAllowed => f.write_str(
                "\"credential_source.executable\" runs a program, which is not allowed unless \
                 GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1 is set; set it if you trust the file",
            ),
            ExternalAccountProblem::SubjectToken {
                field,
                location,
                reason,
            } => write!(
                f,
                "no subject token from \"{field}\" ({location}): {reason}"
            ),
            ExternalAccountProblem::HttpStatus { field, url, status } => write!(
                f,
                "no subject token from \"{field}\": {url} answered HTTP {status}; check that \
                 the URL and its headers are right and the service is up"
            ),
            ExternalAccountProblem::Executable { program, reason } => write!(
                f,
                "the executable {program} of \"credential_source.executable.command\" {reason}"
            ),
        }
    }
}
