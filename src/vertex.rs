//! Vertex AI: the API base for a project and location, where ADC users call
//! the same Gemini models as through the Gemini API.

use std::fmt;

/// Vertex AI's regional origins follow `https://{location}-aiplatform.googleapis.com`.
const HOST_SUFFIX: &str = "aiplatform.googleapis.com";
/// The location served by the one global endpoint.
const GLOBAL: &str = "global";

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
        }
    }
}

impl std::error::Error for VertexProblem {}

impl VertexAi {
    /// `{origin}/v1/projects/{project}/locations/{location}/publishers/google`;
    /// `origin` replaces `https://{location}-aiplatform.googleapis.com`
    /// (tests, private endpoints).
    pub(crate) fn api_base(&self, origin: Option<&str>) -> Result<String, VertexProblem> {
        check_project(&self.project)?;
        check_location(&self.location)?;
        let origin = match origin {
            Some(o) => o.trim_end_matches('/').to_owned(),
            None if self.location == GLOBAL => format!("https://{HOST_SUFFIX}"),
            None => format!("https://{}-{HOST_SUFFIX}", self.location),
        };
        Ok(format!(
            "{origin}/v1/projects/{}/locations/{}{PUBLISHER}",
            self.project, self.location
        ))
    }
}

/// The end of every Vertex AI base [`VertexAi::api_base`] builds.
const PUBLISHER: &str = "/publishers/google";

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
        .api_base(None)
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
            v.api_base(Some("http://127.0.0.1:9/")).unwrap(),
            "http://127.0.0.1:9/v1/projects/p/locations/europe-west4/publishers/google"
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
