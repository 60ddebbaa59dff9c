//! `upload_file`: the Files API's resumable upload, the file streamed from disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::{HeaderName, HeaderValue, Request, Uri, header};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::decode;
use super::generate::{json_request, success_or_api_error};
use crate::client::AuthorizedClient;
use crate::error::{Error, Result};
use crate::request_body::{RequestBody, open_sized};
use crate::url::redact;
use crate::vertex::is_vertex_base;

/// Size of the pieces the file is read in.
const CHUNK: usize = 64 * 1024;
/// Largest answer of the upload endpoints (a `File` resource).
const MAX_ANSWER: usize = 1024 * 1024;

const UPLOAD_PROTOCOL: HeaderName = HeaderName::from_static("x-goog-upload-protocol");
const UPLOAD_COMMAND: HeaderName = HeaderName::from_static("x-goog-upload-command");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("x-goog-upload-header-content-length");
const UPLOAD_TYPE: HeaderName = HeaderName::from_static("x-goog-upload-header-content-type");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("x-goog-upload-offset");
const UPLOAD_URL: HeaderName = HeaderName::from_static("x-goog-upload-url");

/// What went wrong in an upload, besides the errors every call has
/// ([`Error::Upload`]).
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
}

/// A file in the Files API, as the upload answers it (`name`, `uri`, …).
/// Fields this type does not name are kept in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct File {
    /// Resource name, e.g. `files/abc-123`.
    pub name: String,
    /// The name given at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes (Google sends it as a string).
    #[serde(
        default,
        deserialize_with = "u64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub size_bytes: Option<u64>,
    /// The URI to pass as `file_data.file_uri` in a request.
    #[serde(default)]
    pub uri: String,
    /// `PROCESSING`, `ACTIVE` or `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Everything else the API sent (`createTime`, `sha256Hash`, …).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn u64_or_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(u64),
        S(String),
    }
    match Option::<Num>::deserialize(d)? {
        None => Ok(None),
        Some(Num::N(n)) => Ok(Some(n)),
        Some(Num::S(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Uploads the file at `path` through the Files API's resumable protocol
/// and returns its [`File`] resource: a `start` request to
/// `{origin of the API base}/upload/v1beta/files`, then the bytes, streamed
/// from disk (never read whole), to the upload URL it answers.
///
/// ```no_run
/// # async fn f() -> gemini_oauth::Result<()> {
/// let client = gemini_oauth::load_creds().await?.authorized_client();
/// let file = gemini_oauth::gemini::upload_file(&client, "report.pdf", "application/pdf", "report")
///     .await?;
/// println!("{} {}", file.name, file.uri);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Upload`] with
/// [`UploadProblem::MissingUploadUrl`] or [`UploadProblem::SizeChanged`];
/// [`Error::InvalidHeaderValue`] for a MIME type no header can carry;
/// [`Error::Api`] for an error status; the errors of [`AuthorizedClient::request`].
pub async fn upload_file(
    client: &AuthorizedClient,
    path: impl AsRef<Path>,
    mime_type: &str,
    display_name: &str,
) -> Result<File> {
    let path = path.as_ref();
    if is_vertex_base(client.api_base()) {
        let path = path.to_owned();
        return Err(Error::Upload(UploadProblem::VertexAi { path }));
    }
    let mime = HeaderValue::from_str(mime_type).map_err(|_| Error::InvalidHeaderValue {
        what: "the MIME type",
    })?;
    let (file, size) = open_sized(path).await?;

    let start_url = format!("{}/upload/v1beta/files", origin(client.api_base())?);
    let body = serde_json::json!({"file": {"display_name": display_name}});
    let mut start = json_request(&start_url, body.to_string())?;
    let h = start.headers_mut();
    h.insert(UPLOAD_PROTOCOL, HeaderValue::from_static("resumable"));
    h.insert(UPLOAD_COMMAND, HeaderValue::from_static("start"));
    h.insert(UPLOAD_LENGTH, size.into());
    h.insert(UPLOAD_TYPE, mime);
    let answer = success_or_api_error(&start_url, client.request(start).await?).await?;
    let upload_url = answer
        .headers()
        .get(UPLOAD_URL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Upload(UploadProblem::MissingUploadUrl {
                path: path.to_owned(),
                endpoint: redact(&start_url),
            })
        })?;
    // Read what little the start answer holds, so its connection is reused.
    let _ = answer.into_body().collect_bytes(MAX_ANSWER).await;

    let progress = Arc::new(Progress::default());
    let mut req = Request::new(counted(file, size, Arc::clone(&progress)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = upload_url.parse::<Uri>().map_err(|_| Error::InvalidUrl {
        url: redact(&upload_url),
        reason: "the x-goog-upload-url header is not a valid URL",
    })?;
    let h = req.headers_mut();
    h.insert(header::CONTENT_LENGTH, size.into());
    h.insert(UPLOAD_OFFSET, HeaderValue::from_static("0"));
    h.insert(UPLOAD_COMMAND, HeaderValue::from_static("upload, finalize"));
    let result = client.request(req).await;
    if progress.changed.load(Ordering::Relaxed) {
        return Err(Error::Upload(UploadProblem::SizeChanged {
            path: path.to_owned(),
            announced: size,
            sent: progress.read.load(Ordering::Relaxed),
        }));
    }
    let resp = result?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect_bytes(MAX_ANSWER).await?;
    let answer: Value = decode(&upload_url, status, &body)?;
    let file = answer.get("file").cloned().unwrap_or(answer);
    serde_json::from_value(file).map_err(|_| {
        Error::Api(crate::api_error::ApiError::from_body(
            &upload_url,
            status,
            br#"{"error": {"message": "the upload answer is not a File resource"}}"#,
        ))
    })
}

/// How far the upload read the file, and whether its size changed.
#[derive(Default)]
struct Progress {
    read: AtomicU64,
    changed: AtomicBool,
}

/// The file streamed from disk, failing (rather than sending a different
/// file) when it is not `size` bytes. Each piece is handed on only once the
/// next one (or the end) was read, so a file that grew fails before its last
/// announced byte is sent and the server never finalizes it.
fn counted(file: tokio::fs::File, size: u64, progress: Arc<Progress>) -> RequestBody {
    use futures_util::StreamExt;
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, CHUNK);
    let state = (chunks, None::<bytes::Bytes>, false);
    let stream = futures_util::stream::unfold(state, move |(mut chunks, mut held, done)| {
        let progress = Arc::clone(&progress);
        async move {
            if done {
                return None;
            }
            let changed = |what: &str| {
                progress.changed.store(true, Ordering::Relaxed);
                Err(io::Error::other(format!(
                    "the file {what} while it was uploaded"
                )))
            };
            loop {
                let item = match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let n = chunk.len() as u64;
                        let read = progress
                            .read
                            .fetch_add(n, Ordering::Relaxed)
                            .saturating_add(n);
                        if read > size {
                            changed("grew")
                        } else if let Some(previous) = held.replace(chunk) {
                            Ok(previous)
                        } else {
                            continue;
                        }
                    }
                    Some(Err(e)) => Err(e),
                    None if progress.read.load(Ordering::Relaxed) < size => changed("shrank"),
                    None => return held.take().map(|last| (Ok(last), (chunks, None, true))),
                };
                let done = item.is_err();
                return Some((item, (chunks, held, done)));
            }
        }
    });
    RequestBody::from_stream(stream, Some(size))
}

/// `scheme://authority` of the API base: uploads live at the root, not under `/v1`.
fn origin(api_base: &str) -> Result<String> {
    let uri: Uri = api_base.parse().map_err(|_| Error::InvalidUrl {
        url: redact(api_base),
        reason: "not a valid URL",
    })?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok(format!("{scheme}://{}", authority.as_str())),
        _ => Err(Error::InvalidUrl {
            url: redact(api_base),
            reason: "the API base URL needs a scheme and a host",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_from_the_api_camel_case_with_unknown_fields() {
        let f: File = serde_json::from_str(
            r#"{"name":"files/abc","displayName":"d","mimeType":"text/plain","sizeBytes":"12",
                "uri":"https://g/v1beta/files/abc","state":"ACTIVE","sha256Hash":"aGFzaA=="}"#,
        )
        .unwrap();
        assert_eq!(f.name, "files/abc");
        assert_eq!(f.size_bytes, Some(12));
        assert_eq!(f.mime_type.as_deref(), Some("text/plain"));
        assert_eq!(f.state.as_deref(), Some("ACTIVE"));
        assert_eq!(f.other["sha256Hash"], "aGFzaA==");
        let n: File = serde_json::from_str(r#"{"name":"files/n","sizeBytes":7}"#).unwrap();
        assert_eq!(n.size_bytes, Some(7));
        assert!(serde_json::from_str::<File>(r#"{"name":"x","sizeBytes":"seven"}"#).is_err());
    }

    #[test]
    fn origin_drops_the_path() {
        assert_eq!(
            origin("https://generativelanguage.googleapis.com/v1").unwrap(),
            "https://generativelanguage.googleapis.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/v1beta/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(origin("/v1").is_err());
    }
}
