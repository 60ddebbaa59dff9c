//! `client_secret.json`: the OAuth client downloaded from the Google Cloud console.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::endpoints::{GOOGLE_AUTH_URI, GOOGLE_TOKEN_URI};
use crate::error::{Error, GET_CLIENT_SECRET, Result};
use crate::url::check_endpoint;

/// Which kind of OAuth client a secret file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientKind {
    /// A "Desktop app" client (`"installed"`), the one the quickstart uses.
    Installed,
    /// A "Web application" client (`"web"`).
    Web,
}

/// An OAuth client: the contents of `client_secret.json`.
///
/// `Debug` never shows the client secret.
///
/// ```
/// let secret = gemini_oauth::ClientSecret::from_json(br#"{"installed": {
///     "client_id": "123.apps.googleusercontent.com", "client_secret": "GOCSPX-x",
///     "project_id": "demo"}}"#)?;
/// assert_eq!(secret.project_id(), Some("demo"));
/// # Ok::<(), gemini_oauth::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientSecret {
    kind: ClientKind,
    client_id: String,
    client_secret: SecretString,
    auth_uri: String,
    token_uri: String,
    redirect_uris: Vec<String>,
    project_id: Option<String>,
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecret")
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("auth_uri", &self.auth_uri)
            .field("token_uri", &self.token_uri)
            .field("redirect_uris", &self.redirect_uris)
            .field("project_id", &self.project_id)
            .finish()
    }
}

impl ClientSecret {
    /// A Desktop-app client from its id and secret, with Google's endpoints.
    #[must_use]
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientSecret {
            kind: ClientKind::Installed,
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            auth_uri: GOOGLE_AUTH_URI.to_owned(),
            token_uri: GOOGLE_TOKEN_URI.to_owned(),
            redirect_uris: vec!["http://localhost".to_owned()],
            project_id: None,
        }
    }

    /// Reads and validates a client secret file.
    ///
    /// # Errors
    /// [`Error::ClientSecretNotFound`] when the file does not exist (the message
    /// says how to get one), [`Error::Io`] when it cannot be read, and
    /// [`Error::ClientSecret`] when its content is unusable.
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        use tokio::io::AsyncReadExt;
        let limit = crate::store::file::MAX_FILE_SIZE;
        let mut bytes = Vec::new();
        // At most `limit + 1` bytes: a link to /dev/zero is refused, not read
        // until the memory runs out.
        let read = match tokio::fs::File::open(path).await {
            Ok(file) => file.take(limit + 1).read_to_end(&mut bytes).await,
            Err(e) => Err(e),
        };
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ClientSecretNotFound {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(Error::io("read client secret file", path, e)),
        }
        if bytes.len() as u64 > limit {
            return Err(Error::ClientSecret {
                path: path.to_owned(),
                problem: ClientSecretProblem::TooLarge { limit },
            });
        }
        Self::parse(&bytes, path)
    }

    /// Parses the JSON of a client secret file held in memory.
    ///
    /// # Errors
    /// [`Error::ClientSecret`] (with path `<inline>`) when the JSON is unusable.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        Self::parse(json, Path::new("<inline>"))
    }

    fn parse(json: &[u8], path: &Path) -> Result<Self> {
        let fail = |problem| Error::ClientSecret {
            path: PathBuf::from(path),
            problem,
        };
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            fail(ClientSecretProblem::NotJson {
                line: e.line(),
                column: e.column(),
            })
        })?;
        let Value::Object(top) = value else {
            return Err(fail(ClientSecretProblem::NeitherInstalledNorWeb {
                keys: vec![],
            }));
        };
        let (kind, section) = match (top.get("installed"), top.get("web")) {
            (Some(Value::Object(s)), _) => (ClientKind::Installed, s),
            (_, Some(Value::Object(s))) => (ClientKind::Web, s),
            (Some(_), _) => return Err(fail(ClientSecretProblem::WrongType("installed"))),
            (_, Some(_)) => return Err(fail(ClientSecretProblem::WrongType("web"))),
            (None, None) => return Err(fail(misplaced_file_problem(&top))),
        };
        let client_id = required(section, "client_id").map_err(fail)?;
        let client_secret = required(section, "client_secret").map_err(fail)?;
        let auth_uri = optional(section, "auth_uri")
            .map_err(fail)?
            .unwrap_or_else(|| GOOGLE_AUTH_URI.to_owned());
        let token_uri = optional(section, "token_uri")
            .map_err(fail)?
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
        check_endpoint(&auth_uri).map_err(|_| fail(ClientSecretProblem::BadUrl("auth_uri")))?;
        check_endpoint(&token_uri).map_err(|_| fail(ClientSecretProblem::BadUrl("token_uri")))?;
        let redirect_uris = match section.get("redirect_uris") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(fail(ClientSecretProblem::WrongType("redirect_uris")))?,
            Some(_) => return Err(fail(ClientSecretProblem::WrongType("redirect_uris"))),
        };
        Ok(ClientSecret {
            kind,
            client_id,
            client_secret: SecretString::from(client_secret),
            auth_uri,
            token_uri,
            redirect_uris,
            project_id: optional(section, "project_id").map_err(fail)?,
        })
    }

    /// Replaces the token endpoint (tests, proxies, other OAuth servers).
    #[must_use]
    pub fn token_uri(mut self, uri: impl Into<String>) -> Self {
        self.token_uri = uri.into();
        self
    }

    /// Replaces the authorization endpoint.
    #[must_use]
    pub fn auth_uri(mut self, uri: impl Into<String>) -> Self {
        self.auth_uri = uri.into();
        self
    }

    /// `installed` or `web`.
    #[must_use]
    pub fn kind(&self) -> ClientKind {
        self.kind
    }

    /// The OAuth client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The OAuth client secret. Handle with care: never log it.
    #[must_use]
    pub fn client_secret(&self) -> &str {
        self.client_secret.expose_secret()
    }

    /// The authorization endpoint.
    #[must_use]
    pub fn auth_endpoint(&self) -> &str {
        &self.auth_uri
    }

    /// The token endpoint.
    #[must_use]
    pub fn token_endpoint(&self) -> &str {
        &self.token_uri
    }

    /// The redirect URIs registered for the client.
    #[must_use]
    pub fn redirect_uris(&self) -> &[String] {
        &self.redirect_uris
    }

    /// The Google Cloud project the client belongs to.
    #[must_use]
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    pub(crate) fn secret(&self) -> &SecretString {
        &self.client_secret
    }
}

/// Names the file a user most likely passed by mistake.
fn misplaced_file_problem(top: &Map<String, Value>) -> ClientSecretProblem {
    let type_is = |t: &str| top.get("type").and_then(Value::as_str) == Some(t);
    if type_is("service_account") || top.contains_key("private_key") {
        ClientSecretProblem::ServiceAccountKey
    } else if type_is("authorized_user") || top.contains_key("refresh_token") {
        ClientSecretProblem::TokenFile
    } else {
        ClientSecretProblem::NeitherInstalledNorWeb {
            keys: top.keys().cloned().collect(),
        }
    }
}

fn required(
    section: &Map<String, Value>,
    field: &'static str,
) -> std::result::Result<String, ClientSecretProblem> {
    optional(section, field)?
        .filter(|s| !s.is_empty())
        .ok_or(ClientSecretProblem::MissingField(field))
}

fn optional(
    section: &Map<String, Value>,
    field: &'static str,
) -> std::result::Result<Option<String>, ClientSecretProblem> {
    match section.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ClientSecretProblem::WrongType(field)),
    }
}

/// What is wrong with a client secret file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientSecretProblem {
    /// The file is not valid JSON.
    NotJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// The JSON has neither an `installed` nor a `web` object.
    NeitherInstalledNorWeb {
        /// The top-level keys that were found.
        keys: Vec<String>,
    },
    /// A required field is missing or empty.
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    WrongType(&'static str),
    /// The file is a service-account key, not an OAuth client.
    ServiceAccountKey,
    /// The file holds user credentials (`token.json` or an ADC file), not an OAuth client.
    TokenFile,
    /// A URL in the file is unusable.
    BadUrl(&'static str),
    /// The file is larger than any client secret file.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl fmt::Display for ClientSecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientSecretProblem::NotJson { line, column } => write!(
                f,
                "not valid JSON (syntax error at line {line}, column {column}); download the \
                 file again from the Google Cloud console"
            ),
            ClientSecretProblem::NeitherInstalledNorWeb { keys } => write!(
                f,
                "has neither an \"installed\" nor a \"web\" section (found keys: {}); it is not \
                 an OAuth client file: {GET_CLIENT_SECRET}",
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            ),
            ClientSecretProblem::MissingField(field) => write!(
                f,
                "\"{field}\" is missing or empty; download the file again from the Google Cloud console"
            ),
            ClientSecretProblem::WrongType(field) => write!(
                f,
                "\"{field}\" has the wrong type; download the file again from the Google Cloud console"
            ),
            ClientSecretProblem::ServiceAccountKey => write!(
                f,
                "this is a service-account key, not an OAuth client secret; user sign-in needs an \
                 OAuth client: {GET_CLIENT_SECRET} (service-account keys go in \
                 GOOGLE_APPLICATION_CREDENTIALS instead)"
            ),
            ClientSecretProblem::TokenFile => write!(
                f,
                "this holds saved user credentials (a token.json or ADC file), not an OAuth \
                 client secret; pass it as the token file instead, and for the client secret: \
                 {GET_CLIENT_SECRET}"
            ),
            ClientSecretProblem::BadUrl(field) => write!(
                f,
                "\"{field}\" is not a usable http(s) URL; download the file again from the Google Cloud console"
            ),
            ClientSecretProblem::TooLarge { limit } => write!(
                f,
                "the file is larger than {limit} bytes, which no client secret file is; check \
                 the path"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESKTOP: &str = r#"{"installed":{"client_id":"123-abc.apps.googleusercontent.com","project_id":"gemini-demo","auth_uri":"https://accounts.google.com/o/oauth2/auth","token_uri":"https://oauth2.googleapis.com/token","auth_provider_x509_cert_url":"https://www.googleapis.com/oauth2/v1/certs","client_secret":"GOCSPX-SECRETMARKER","redirect_uris":["http://localhost"]}}"#;

    fn problem(json: &str) -> ClientSecretProblem {
        match ClientSecret::from_json(json.as_bytes()) {
            Err(Error::ClientSecret { problem, .. }) => problem,
            other => panic!("expected a ClientSecret error, got {other:?}"),
        }
    }

    #[test]
    fn parses_desktop_client() {
        let s = ClientSecret::from_json(DESKTOP.as_bytes()).unwrap();
        assert_eq!(s.kind(), ClientKind::Installed);
        assert_eq!(s.client_id(), "123-abc.apps.googleusercontent.com");
        assert_eq!(s.client_secret(), "GOCSPX-SECRETMARKER");
        assert_eq!(s.token_endpoint(), GOOGLE_TOKEN_URI);
        assert_eq!(s.auth_endpoint(), GOOGLE_AUTH_URI);
        assert_eq!(s.redirect_uris(), ["http://localhost"]);
        assert_eq!(s.project_id(), Some("gemini-demo"));
    }

    #[test]
    fn parses_web_client_with_defaults() {
        let s =
            ClientSecret::from_json(br#"{"web":{"client_id":"a","client_secret":"b"}}"#).unwrap();
        assert_eq!(s.kind(), ClientKind::Web);
        assert_eq!(s.token_endpoint(), GOOGLE_TOKEN_URI);
        assert!(s.redirect_uris().is_empty());
        assert_eq!(s.project_id(), None);
    }

    #[test]
    fn debug_redacts_the_secret() {
        let s = ClientSecret::from_json(DESKTOP.as_bytes()).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("SECRETMARKER"), "{debug}");
        assert!(debug.contains("123-abc"), "{debug}");
    }

    #[test]
    fn not_json_reports_line_and_column() {
        assert_eq!(
            problem("{\n  \"installed\": {,\n}"),
            ClientSecretProblem::NotJson {
                line: 2,
                column: 17
            }
        );
    }

    #[test]
    fn detects_files_passed_by_mistake() {
        assert_eq!(
            problem(r#"{"type":"service_account","private_key":"-----BEGIN","client_email":"x"}"#),
            ClientSecretProblem::ServiceAccountKey
        );
        assert_eq!(
            problem(r#"{"token":"t","refresh_token":"r","client_id":"c","client_secret":"s"}"#),
            ClientSecretProblem::TokenFile
        );
        assert_eq!(
            problem(r#"{"type":"authorized_user","client_id":"c"}"#),
            ClientSecretProblem::TokenFile
        );
        assert_eq!(
            problem(r#"{"other":{}}"#),
            ClientSecretProblem::NeitherInstalledNorWeb {
                keys: vec!["other".into()]
            }
        );
        assert_eq!(
            problem("[1,2]"),
            ClientSecretProblem::NeitherInstalledNorWeb { keys: vec![] }
        );
    }

    #[test]
    fn missing_and_mistyped_fields() {
        assert_eq!(
            problem(r#"{"installed":{"client_secret":"s"}}"#),
            ClientSecretProblem::MissingField("client_id")
        );
        assert_eq!(
            problem(r#"{"installed":{"client_id":"c","client_secret":""}}"#),
            ClientSecretProblem::MissingField("client_secret")
        );
        assert_eq!(
            problem(r#"{"installed":{"client_id":7,"client_secret":"s"}}"#),
            ClientSecretProblem::WrongType("client_id")
        );
        assert_eq!(
            problem(r#"{"installed":"x"}"#),
            ClientSecretProblem::WrongType("installed")
        );
        assert_eq!(
            problem(r#"{"installed":{"client_id":"c","client_secret":"s","token_uri":"ftp://x"}}"#),
            ClientSecretProblem::BadUrl("token_uri")
        );
    }

    #[test]
    fn error_messages_name_the_file_and_never_the_secret() {
        let err = ClientSecret::parse(
            br#"{"installed":{"client_id":"c","client_secret":"SECRETMARKER","token_uri":"nope"}}"#,
            Path::new("dir/cs.json"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dir/cs.json"), "{msg}");
        assert!(!msg.contains("SECRETMARKER"), "{msg}");
        assert!(!format!("{err:?}").contains("SECRETMARKER"));
    }

    #[tokio::test]
    async fn missing_file_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = ClientSecret::from_file(dir.path().join("client_secret.json"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ClientSecretNotFound { .. }));
        let msg = err.to_string();
        assert!(msg.contains("client_secret.json"), "{msg}");
        assert!(msg.contains("Desktop app"), "{msg}");
        assert!(msg.contains("Create client"), "{msg}");
    }
}
