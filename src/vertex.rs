//! Vertex AI: the API base for a project and location, where ADC users call
//! the same Gemini models as through the Gemini API.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::universe::Universe;

/// The location served by the one global endpoint.
const GLOBAL: &str = "global";
/// Multi-regions, served by `aiplatform.{location}.rep.{universe}`.
const MULTI_REGIONS: [&str; 2] = ["us", "eu"];
/// What a path segment keeps as it is: RFC 3986's unreserved characters
/// and `@` (model versions: `gemini-2.5-flash@001`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// A Vertex AI project and location, as given to
/// [`CredentialLoader::vertex_ai`](crate::CredentialLoader::vertex_ai).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VertexAi {
    pub(crate) project: String,
    pub(crate) location: String,
}

/// Why a Vertex AI project or location cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VertexProblem {
    /// The project id is empty or holds a character project ids never hold.
    InvalidProject(String),
    /// The location is empty or not a region name such as `us-central1` or `global`.
    InvalidLocation(String),
    /// Both an explicit API base and Vertex AI were set: they name two
    /// different services.
    ConflictsWithApiBase,
    /// Vertex AI was chosen (`GOOGLE_GENAI_USE_VERTEXAI`) with neither a
    /// project nor an API key, and none could be found.
    NoProject,
    /// A project or location was given explicitly for the Gemini API, which
    /// takes neither (google-genai refuses this too).
    ProjectWithoutVertexAi,
}

impl fmt::Display for VertexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VertexProblem::InvalidProject(p) => write!(
                f,
                "the Vertex AI project {p:?} is not a project id; use the id shown in the Google \
                 Cloud console (lowercase letters, digits, hyphens; `domain.com:name` for \
                 domain-scoped projects)"
            ),
            VertexProblem::InvalidLocation(l) => write!(
                f,
                "the Vertex AI location {l:?} is not a location; use a region such as \
                 \"us-central1\" or \"global\""
            ),
            VertexProblem::ConflictsWithApiBase => f.write_str(
                "both an API base and Vertex AI were set; keep one of them (use \
                 `vertex_ai_origin` to aim Vertex AI at another host)",
            ),
            VertexProblem::NoProject => f.write_str(
                "Vertex AI needs a project or an API key; set GOOGLE_CLOUD_PROJECT (and \
                 GOOGLE_CLOUD_LOCATION), or GOOGLE_API_KEY for express mode",
            ),
            VertexProblem::ProjectWithoutVertexAi => f.write_str(
                "a project or location was set for the Gemini API, which takes neither; \
                 choose Vertex AI (GOOGLE_GENAI_USE_VERTEXAI=true) or drop them",
            ),
        }
    }
}

impl std::error::Error for VertexProblem {}

impl VertexAi {
    /// `{origin}/v1/projects/{project}/locations/{location}/publishers/google`;
    /// the origin is `https://{location}-aiplatform.{universe}`,
    /// `https://aiplatform.{universe}` for `global` and
    /// `https://aiplatform.{us|eu}.rep.{universe}` for the multi-regions, as
    /// Google's SDKs build it; `origin` replaces it (tests, private endpoints).
    pub(crate) fn api_base(
        &self,
        origin: Option<&str>,
        universe: &Universe,
    ) -> Result<String, VertexProblem> {
        self.versioned_api_base(origin, universe, "v1")
    }

    /// [`api_base`](Self::api_base) with API `version` (`v1`, `v1beta1`).
    pub(crate) fn versioned_api_base(
        &self,
        origin: Option<&str>,
        universe: &Universe,
        version: &str,
    ) -> Result<String, VertexProblem> {
        check_project(&self.project)?;
        check_location(&self.location)?;
        let (location, domain) = (self.location.as_str(), universe.domain());
        let origin = match origin {
            Some(o) => o.trim_end_matches('/').to_owned(),
            None if location == GLOBAL => format!("https://aiplatform.{domain}"),
            None if MULTI_REGIONS.contains(&location) => {
                format!("https://aiplatform.{location}.rep.{domain}")
            }
            None => format!("https://{location}-aiplatform.{domain}"),
        };
        Ok(format!(
            "{origin}/{version}/projects/{}/locations/{location}{PUBLISHER}",
            self.project
        ))
    }
}

/// The URL of `model` on the Vertex AI base `api_base`, its names resolved
/// as google-genai resolves them: `projects/…` (a tuned model's endpoint)
/// from `/v1/`; `publishers/x/models/y` under the project and location;
/// `x/y` as publisher `x`'s model `y`; `models/y` and `y` as Google's.
pub(crate) fn model_url(api_base: &str, model: &str) -> String {
    let base = api_base.trim_end_matches('/');
    let located = base.strip_suffix(PUBLISHER).unwrap_or(base);
    let version = located
        .rfind("/projects/")
        .map_or(located, |i| &located[..i]);
    if model.starts_with("projects/") {
        format!("{version}/{}", encode_path(model))
    } else if model.starts_with("publishers/") {
        format!("{located}/{}", encode_path(model))
    } else if let Some(name) = model.strip_prefix("models/") {
        format!("{base}/models/{}", encode_path(name))
    } else if let Some((publisher, name)) = model.split_once('/') {
        let (publisher, name) = (encode_path(publisher), encode_path(name));
        format!("{located}/publishers/{publisher}/models/{name}")
    } else {
        format!("{base}/models/{}", encode_path(model))
    }
}

/// `path` with each `/`-separated segment percent-encoded, so a name can
/// never add a query, a fragment or a `..` step to the URL.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "." => "%2E".to_owned(),
            ".." => "%2E%2E".to_owned(),
            s => utf8_percent_encode(s, SEGMENT).to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The end of every Vertex AI base [`VertexAi::api_base`] builds.
pub(crate) const PUBLISHER: &str = "/publishers/google";

/// Whether `api_base` is a Vertex AI base (which has no Files API).
pub(crate) fn is_vertex_base(api_base: &str) -> bool {
    api_base.trim_end_matches('/').ends_with(PUBLISHER)
}

/// Project ids are lowercase letters, digits and hyphens; older
/// domain-scoped ones are `example.com:name`; numbers also name a project.
fn check_project(p: &str) -> Result<(), VertexProblem> {
    let ok = !p.is_empty()
        && p.len() <= 100
        && p.starts_with(|c: char| c.is_ascii_alphanumeric())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
    ok.then_some(())
        .ok_or_else(|| VertexProblem::InvalidProject(p.to_owned()))
}

/// Locations are lowercase region names (`us-central1`, `europe-west4`, `us`, `global`).
fn check_location(l: &str) -> Result<(), VertexProblem> {
    let ok = !l.is_empty()
        && l.len() <= 63
        && l.starts_with(|c: char| c.is_ascii_lowercase())
        && !l.ends_with('-')
        && l.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(())
        .ok_or_else(|| VertexProblem::InvalidLocation(l.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(project: &str, location: &str) -> Result<String, VertexProblem> {
        VertexAi {
            project: project.into(),
            location: location.into(),
        }
        .api_base(None, &Universe::default())
    }

    #[test]
    fn a_region_has_its_own_host() {
        assert_eq!(
            base("my-project", "us-central1").unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google"
        );
    }

    #[test]
    fn global_uses_the_host_without_a_region() {
        assert_eq!(
            base("my-project", "global").unwrap(),
            "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/publishers/google"
        );
    }

    #[test]
    fn an_origin_replaces_the_host_and_keeps_the_path() {
        let v = VertexAi {
            project: "p".into(),
            location: "europe-west4".into(),
        };
        assert_eq!(
            v.api_base(Some("http://127.0.0.1:9/"), &Universe::default())
                .unwrap(),
            "http://127.0.0.1:9/v1/projects/p/locations/europe-west4/publishers/google"
        );
    }

    #[test]
    fn names_cannot_leave_their_segment() {
        assert_eq!(encode_path("a b/../c?d#e"), "a%20b/%2E%2E/c%3Fd%23e");
        assert_eq!(encode_path("gemini-2.5-flash@001"), "gemini-2.5-flash@001");
        let base = "https://h/v1/projects/p/locations/l/publishers/google";
        assert_eq!(
            model_url(base, "projects/p/locations/l/endpoints/1"),
            "https://h/v1/projects/p/locations/l/endpoints/1"
        );
    }

    #[test]
    fn domain_scoped_and_numeric_projects_are_accepted() {
        assert!(base("example.com:my-project", "us").is_ok());
        assert!(base("123456789012", "us").is_ok());
    }

    #[test]
    fn bad_projects_and_locations_are_typed_errors() {
        for p in [
            "",
            "a/b",
            "my project",
            "../x",
            "p?x=1",
            "P#",
            "-lead",
            "Upper",
        ] {
            assert_eq!(
                base(p, "us-central1"),
                Err(VertexProblem::InvalidProject(p.into())),
                "{p:?}"
            );
        }
        for l in [
            "",
            "us/central1",
            "us-central1/",
            "US",
            "1us",
            "us-",
            "a b",
            "x.y",
        ] {
            assert_eq!(
                base("p", l),
                Err(VertexProblem::InvalidLocation(l.into())),
                "{l:?}"
            );
        }
    }
}
