//! `upload_file`: the Files API's resumable upload, the file streamed from disk.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::decode;
use super::generate::{json_request, success_or_api_error};
use super::problem::UploadProblem;
use super::resumable::{GRANULARITY, MAX_ANSWER, OnProgress, Session, UPLOAD_COMMAND};
use crate::client::AuthorizedClient;
use crate::error::{Error, Result};
use crate::regular_file::{self, NotOpened};
use crate::retry::RetryPolicy;
use crate::url::redact;
use crate::vertex::is_vertex_base;

/// google-genai's chunk size.
const DEFAULT_CHUNK: u64 = 8 * 1024 * 1024;

const UPLOAD_PROTOCOL: HeaderName = HeaderName::from_static("x-goog-upload-protocol");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("x-goog-upload-header-content-length");
const UPLOAD_TYPE: HeaderName = HeaderName::from_static("x-goog-upload-header-content-type");
const UPLOAD_URL: HeaderName = HeaderName::from_static("x-goog-upload-url");

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
/// from disk (never read whole), to the upload URL it answers. An
/// interrupted chunk is recovered in the same session (see [`Upload`]);
/// `Upload` also takes a progress callback.
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
/// As [`Upload::send`].
pub async fn upload_file(
    client: &AuthorizedClient,
    path: impl AsRef<Path>,
    mime_type: &str,
    display_name: &str,
) -> Result<File> {
    Upload::new(path.as_ref(), mime_type)
        .display_name(display_name)
        .send(client)
        .await
}

/// An upload with options: [`upload_file`] with a progress callback, a
/// chunk size, a retry policy.
///
/// The file goes in chunks (8 MiB by default, always a multiple of the
/// protocol's 256 KiB), read from disk as it is sent, 256 KiB ahead. The
/// file is opened once: a file saved over its path meanwhile (renamed over
/// it) is not read, so the server never gets a mix of two files. When a chunk
/// fails (a dropped connection, a `5xx`, `429` or `308`), the session is
/// asked how much it holds (`x-goog-upload-command: query`) and the upload
/// goes on from there, in the same session; after 5 rounds in a row
/// without progress (backoff from 500 ms, doubling, jittered, honouring
/// `Retry-After`) the last error is returned.
///
/// ```no_run
/// # async fn f() -> gemini_oauth::Result<()> {
/// use gemini_oauth::gemini::Upload;
/// let client = gemini_oauth::load_creds().await?.authorized_client();
/// let file = Upload::new("video.mp4", "video/mp4")
///     .display_name("holiday")
///     .on_progress(|sent, total| eprint!("\r{sent}/{total} bytes"))
///     .send(&client)
///     .await?;
/// println!("{}", file.uri);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Upload {
    path: PathBuf,
    mime_type: String,
    display_name: Option<String>,
    chunk: u64,
    on_progress: Option<OnProgress>,
    retry: RetryPolicy,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("mime_type", &self.mime_type)
            .field("chunk", &self.chunk)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// An upload of the file at `path`, of MIME type `mime_type`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, mime_type: impl Into<String>) -> Self {
        Upload {
            path: path.into(),
            mime_type: mime_type.into(),
            display_name: None,
            chunk: DEFAULT_CHUNK,
            on_progress: None,
            retry: RetryPolicy::default()
                .attempts(5)
                .base_delay(std::time::Duration::from_millis(500)),
        }
    }

    /// The name shown for the file (default: none).
    #[must_use]
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Bytes per request, rounded up to a multiple of 256 KiB (default 8 MiB).
    #[must_use]
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk = bytes
            .max(1)
            .div_ceil(GRANULARITY)
            .saturating_mul(GRANULARITY);
        self
    }

    /// Called with (bytes sent, total) as the upload goes, never going back,
    /// and with (total, total) once the server has the whole file.
    #[must_use]
    pub fn on_progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(f));
        self
    }

    /// How an interrupted upload is recovered: `attempts` counts rounds in
    /// a row in which the server took nothing more, and `max_elapsed`
    /// bounds each recovery from its first failure (a `Retry-After` past it
    /// ends the upload with the server's answer).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Uploads the file and returns its [`File`] resource.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Upload`] with
    /// [`UploadProblem::MissingUploadUrl`], [`UploadProblem::ForeignUploadUrl`],
    /// [`UploadProblem::NotAFile`] (a directory, FIFO or device, refused
    /// before any request), [`UploadProblem::SizeChanged`], [`UploadProblem::Ended`] or
    /// [`UploadProblem::Protocol`]; [`Error::InvalidHeaderValue`] for a MIME
    /// type no header can carry; [`Error::Api`] for an error status; the
    /// errors of [`AuthorizedClient::request`].
    pub async fn send(&self, client: &AuthorizedClient) -> Result<File> {
        let path = self.path.as_path();
        if is_vertex_base(client.api_base()) {
            let path = path.to_owned();
            return Err(Error::Upload(UploadProblem::VertexAi { path }));
        }
        let mime =
            HeaderValue::from_str(&self.mime_type).map_err(|_| Error::InvalidHeaderValue {
                what: "the MIME type",
            })?;
        // Opened once: every chunk, resumed ones too, reads this file.
        let (file, size) = open_regular(path).await?;
        let file = Arc::new(file);

        let api_origin = origin(client.api_base())?;
        let start_url = format!("{api_origin}/upload/v1beta/files");
        let body = match &self.display_name {
            Some(name) => serde_json::json!({"file": {"display_name": name}}),
            None => serde_json::json!({"file": {}}),
        };
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
        let url = upload_url.parse::<Uri>().map_err(|_| Error::InvalidUrl {
            url: redact(&upload_url),
            reason: "the x-goog-upload-url header is not a valid URL",
        })?;
        check_upload_origin(path, client, &api_origin, &url)?;

        let session = Session {
            client,
            url,
            path,
            file,
            size,
            chunk: self.chunk,
            policy: self.retry,
            on_progress: self.on_progress.clone(),
        };
        let (status, body) = session.run().await?;
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
}

/// The regular file at `path` and its size, refused (before any request)
/// unless it is one: a FIFO would wait for a writer, a directory fails only
/// once read, a device has no size.
async fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    regular_file::spawn_open(path)
        .await
        .map_err(|not| match not {
            NotOpened::Io { action, source } => Error::io(action, path, source),
            NotOpened::NotRegular(kind) => Error::Upload(UploadProblem::NotAFile {
                path: path.to_owned(),
                kind,
            }),
        })
}

/// The upload URL must be the API's origin, or an https host of the same
/// universe as the API's host (`*.googleapis.com` for Google's): the
/// credentials go with every chunk.
fn check_upload_origin(
    path: &Path,
    client: &AuthorizedClient,
    api_origin: &str,
    url: &Uri,
) -> Result<()> {
    let upload_origin = match (url.scheme_str(), url.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{}", authority.as_str()),
        _ => String::new(),
    };
    let universe = format!(".{}", client.credentials().universe_domain());
    let api_host = api_origin.parse::<Uri>().ok();
    let api_host = api_host.as_ref().and_then(Uri::host).unwrap_or_default();
    let in_universe = |host: &str| host.to_ascii_lowercase().ends_with(&universe);
    let same_universe = url.scheme_str() == Some("https")
        && url.port().is_none()
        && url.host().is_some_and(in_universe)
        && in_universe(api_host);
    if upload_origin.eq_ignore_ascii_case(api_origin) || same_universe {
        return Ok(());
    }
    Err(Error::Upload(UploadProblem::ForeignUploadUrl {
        path: path.to_owned(),
        upload_origin: redact(&upload_origin),
        api_origin: redact(api_origin),
    }))
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
