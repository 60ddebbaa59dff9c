//! `credential_source.file`: a subject token a platform keeps in a file
//! (Kubernetes projected service-account tokens, an OIDC token a CI job writes).

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

use super::ExternalAccountProblem;
use super::config::Format;
use crate::error::{Error, Result};

/// Subject tokens (SAML assertions included) are far smaller.
const MAX_SUBJECT_FILE: u64 = 1024 * 1024;

pub(crate) struct FileSource {
    pub(crate) file: PathBuf,
    pub(crate) format: Format,
}

impl FileSource {
    /// Reads the token anew each time: the platform rotates the file.
    pub(super) async fn subject_token(&self, config_path: &Path) -> Result<String> {
        let fail = |reason: String| Error::ExternalAccount {
            path: config_path.to_owned(),
            problem: ExternalAccountProblem::SubjectToken {
                field: "credential_source.file",
                location: self.file.display().to_string(),
                reason,
            },
        };
        let file = tokio::fs::File::open(&self.file).await.map_err(|e| {
            fail(match e.kind() {
                std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
                kind => format!("the file cannot be opened ({kind})"),
            })
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_SUBJECT_FILE + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| fail(format!("the file cannot be read ({})", e.kind())))?;
        if bytes.len() as u64 > MAX_SUBJECT_FILE {
            return Err(fail(format!(
                "the file is larger than {MAX_SUBJECT_FILE} bytes, which no subject token is"
            )));
        }
        self.format.extract(&bytes).map_err(fail)
    }
}
