//! [`UploadProblem`]: what can go wrong in an upload besides the errors of every call.

use std::path::PathBuf;

use crate::regular_file::FileKind;

/// What went wrong in an upload, besides the errors every call has
/// ([`Error::Upload`](crate::Error::Upload)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadProblem {
    /// The answer to the `start` request has no `x-goog-upload-url` header.
    #[error(
        "uploading {}: the answer from {endpoint} has no x-goog-upload-url header; it does not \
         speak the Files API's resumable protocol: check the API base URL",
        path.display()
    )]
    #[non_exhaustive]
    MissingUploadUrl {
        /// The file being uploaded.
        path: PathBuf,
        /// The start endpoint (without query).
        endpoint: String,
    },
    /// The API base is Vertex AI's, which has no Files API.
    #[error(
        "uploading {}: Vertex AI has no Files API; put the file in Cloud Storage and pass its \
         gs:// URI as file_data, or upload through the Gemini API",
        path.display()
    )]
    #[non_exhaustive]
    VertexAi {
        /// The file that was to be uploaded.
        path: PathBuf,
    },
    /// The `start` answer names an upload URL outside the API's origin:
    /// the credentials are not sent there.
    #[error(
        "uploading {}: the start answer sends the file to {upload_origin}, not to the API at \
         {api_origin}; credentials are never sent to another host: check the API base URL and \
         any gateway in between",
        path.display()
    )]
    #[non_exhaustive]
    ForeignUploadUrl {
        /// The file being uploaded.
        path: PathBuf,
        /// `scheme://host[:port]` of the upload URL.
        upload_origin: String,
        /// `scheme://host[:port]` of the API base.
        api_origin: String,
    },
    /// The server ended the upload session (`x-goog-upload-status` other
    /// than `active` or `final`, e.g. `cancelled`).
    #[error(
        "uploading {}: the server ended the upload session (x-goog-upload-status: {status}); \
         upload the file again",
        path.display()
    )]
    #[non_exhaustive]
    Ended {
        /// The file being uploaded.
        path: PathBuf,
        /// The session status the server gave.
        status: String,
    },
    /// An answer of the upload server breaks the resumable protocol.
    #[error(
        "uploading {}: the upload server's answer {problem}; check the API base URL",
        path.display()
    )]
    #[non_exhaustive]
    Protocol {
        /// The file being uploaded.
        path: PathBuf,
        /// What is wrong with the answer.
        problem: String,
    },
    /// The file's size changed between the `start` request and the end of the upload.
    #[error(
        "uploading {}: the file changed size while it was uploaded ({announced} bytes \
         announced, {sent} read); upload it again once nothing writes to it",
        path.display()
    )]
    #[non_exhaustive]
    SizeChanged {
        /// The file being uploaded.
        path: PathBuf,
        /// The size announced in the `start` request.
        announced: u64,
        /// The bytes read from the file when the change was seen.
        sent: u64,
    },
    /// The path is not a regular file (a directory, a FIFO, a device):
    /// only a regular file has a size to announce before it is sent.
    #[error(
        "uploading {}: it is {kind}, not a regular file; upload a regular file",
        path.display()
    )]
    #[non_exhaustive]
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },
}
