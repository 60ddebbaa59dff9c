//! google-genai's rules for choosing the backend, the base URL, the API
//! version and the credentials from explicit settings and the environment
//! (`BaseApiClient.__init__` and `get_base_url` of google-genai 3.6), as a
//! pure function of the settings and a variable lookup.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::universe::Universe;
use crate::vertex::{PUBLISHER, VertexAi, VertexProblem};

/// `true`/`1` (any case) selects Vertex AI; google-genai's newer name wins.
const USE_VERTEXAI: [&str; 2] = ["GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI"];
const PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
const LOCATION: &str = "GOOGLE_CLOUD_LOCATION";
const GEMINI_BASE_URL: &str = "GOOGLE_GEMINI_BASE_URL";
const VERTEX_BASE_URL: &str = "GOOGLE_VERTEX_BASE_URL";
const API_VERSION: &str = "GOOGLE_GENAI_API_VERSION";
/// google-auth's `default()` reads this project id besides `GOOGLE_CLOUD_PROJECT`.
const GCLOUD_PROJECT: &str = "GCLOUD_PROJECT";
pub(super) const GEMINI_DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com/";
const VERTEX_GLOBAL_BASE: &str = "https://aiplatform.googleapis.com/";
/// Our default API version for both backends (the quickstart's); google-genai
/// uses `v1beta1` for Vertex AI.
pub(super) const DEFAULT_VERSION: &str = "v1";

/// Settings given in code; each beats the environment as in google-genai's
/// `Client(vertexai=…, api_key=…, project=…, location=…, http_options=…)`.
#[derive(Clone, Default)]
pub(crate) struct Explicit {
    pub(crate) vertexai: Option<bool>,
    pub(crate) api_key: Option<SecretString>,
    pub(crate) project: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) api_version: Option<String>,
}

impl fmt::Debug for Explicit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Explicit")
            .field("vertexai", &self.vertexai)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("project", &self.project)
            .field("location", &self.location)
            .field(
                "base_url",
                &self.base_url.as_deref().map(crate::url::redact),
            )
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// The service [`EnvChoice`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// The Gemini API (`generativelanguage.googleapis.com`).
    GeminiApi,
    /// Vertex AI (`aiplatform.googleapis.com` and its regional hosts).
    VertexAi,
}

/// The credentials [`EnvChoice`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvAuth {
    /// An API key (`x-goog-api-key`); for Vertex AI, its express mode.
    ApiKey,
    /// Application Default Credentials (Vertex AI with a project).
    ApplicationDefault,
    /// Nothing in the environment chose: the quickstart's user sign-in
    /// (`client_secret.json`, `token.json`). google-genai raises an error here.
    UserSignIn,
}

/// What [`CredentialLoader::from_env`](crate::CredentialLoader::from_env)
/// chose, field by field as google-genai's client holds it.
#[derive(Clone)]
#[non_exhaustive]
pub struct EnvChoice {
    /// The service called.
    pub backend: Backend,
    /// The credentials used.
    pub auth: EnvAuth,
    /// The base URL before the version, as google-genai holds it
    /// (`https://generativelanguage.googleapis.com/`, or an override verbatim).
    pub base_url: String,
    /// The API version (`v1` unless asked otherwise).
    pub api_version: String,
    /// The Vertex AI project, when the path names one.
    pub project: Option<String>,
    /// The Vertex AI location, when the path names one.
    pub location: Option<String>,
    pub(crate) api_key: Option<SecretString>,
}

impl fmt::Debug for EnvChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvChoice")
            .field("backend", &self.backend)
            .field("auth", &self.auth)
            .field("base_url", &crate::url::redact(&self.base_url))
            .field("api_version", &self.api_version)
            .field("project", &self.project)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl EnvChoice {
    /// The API base the crate's client calls: `{base_url}{api_version}`, and
    /// for Vertex AI `/projects/{project}/locations/{location}` (when known)
    /// and `/publishers/google`.
    ///
    /// # Errors
    /// [`Error::VertexAi`] for a project or location that cannot be in a URL.
    pub fn api_base(&self) -> Result<String> {
        let base = self.base_url.trim_end_matches('/');
        let version = &self.api_version;
        match (self.backend, &self.project, &self.location) {
            (Backend::GeminiApi, _, _) => Ok(format!("{base}/{version}")),
            (Backend::VertexAi, Some(project), Some(location)) => VertexAi {
                project: project.clone(),
                location: location.clone(),
            }
            .versioned_api_base(Some(base), &Universe::default(), version)
            .map_err(Error::VertexAi),
            (Backend::VertexAi, _, _) => Ok(format!("{base}/{version}{PUBLISHER}")),
        }
    }
}

/// google-genai's choice for `explicit` settings and the variables `var`
/// returns (`None`: unset). `adc_project` is asked only when Vertex AI needs
/// a project the settings do not give.
pub(crate) fn choose(
    explicit: &Explicit,
    var: &dyn Fn(&str) -> Option<String>,
    adc_project: &dyn Fn() -> Option<String>,
) -> Result<EnvChoice> {
    let explicit = &given(explicit);
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let vertex = explicit
        .vertexai
        .or_else(|| env_vertexai(var))
        .unwrap_or(false);
    // google-genai reads GOOGLE_VERTEX_BASE_URL only when `vertexai=True`
    // is explicit; otherwise GOOGLE_GEMINI_BASE_URL, even for Vertex AI.
    let custom = explicit.base_url.clone().or_else(|| {
        set(if explicit.vertexai == Some(true) {
            VERTEX_BASE_URL
        } else {
            GEMINI_BASE_URL
        })
    });
    let (ex_project, ex_location) = (explicit.project.clone(), explicit.location.clone());
    if (ex_project.is_some() || ex_location.is_some()) && !vertex {
        return Err(Error::VertexAi(VertexProblem::ProjectWithoutVertexAi));
    }
    let (env_project, env_location) = (set(PROJECT), set(LOCATION));
    let env_key = env_api_key(&set);
    let mut project = ex_project.clone().or_else(|| env_project.clone());
    let mut location = ex_location.clone().or_else(|| env_location.clone());
    // google-genai strips the key it uses (a pasted newline, a space).
    let mut api_key = explicit
        .api_key
        .clone()
        .or(env_key.clone())
        .map(|k| SecretString::from(k.expose_secret().trim().to_owned()));
    let env_version = set(API_VERSION);
    if !vertex {
        let auth = if api_key.is_some() {
            EnvAuth::ApiKey
        } else {
            EnvAuth::UserSignIn
        };
        let api_version = explicit
            .api_version
            .clone()
            .unwrap_or_else(|| match env_version {
                Some(v) if v == "beta" => "v1beta".to_owned(),
                Some(v) => v,
                None => DEFAULT_VERSION.to_owned(),
            });
        return Ok(EnvChoice {
            backend: Backend::GeminiApi,
            auth,
            base_url: custom.unwrap_or_else(|| GEMINI_DEFAULT_BASE.to_owned()),
            api_version,
            project: None,
            location: None,
            api_key,
        });
    }
    let ex_place = ex_project.is_some() || ex_location.is_some();
    let env_place = env_project.is_some() || env_location.is_some();
    let ex_key = explicit.api_key.is_some();
    if ex_key && !ex_place && env_place {
        // An explicit key beats the environment's project and location.
        (project, location) = (None, None);
    } else if (ex_place && !ex_key && env_key.is_some())
        || (!ex_place && !ex_key && env_place && env_key.is_some())
    {
        // A project or location (explicit, or from the environment with
        // nothing explicit) beats the environment's key.
        api_key = None;
    }
    let custom_is_google = custom
        .as_deref()
        .is_some_and(|u| u.ends_with(".googleapis.com"));
    if location.is_none() && api_key.is_none() && (custom.is_none() || custom_is_google) {
        location = Some("global".to_owned());
    }
    if project.is_none() && api_key.is_none() && custom.is_none() {
        project = Some(adc_project().ok_or(Error::VertexAi(VertexProblem::NoProject))?);
    }
    let sufficient = (project.is_some() && location.is_some()) || api_key.is_some();
    if !sufficient && custom.is_none() {
        return Err(Error::VertexAi(VertexProblem::NoProject));
    }
    let base_url = match (&custom, location.as_deref()) {
        (Some(url), _) => {
            let ex_both = ex_project.is_some() && ex_location.is_some();
            if !(custom_is_google || ex_both || api_key.is_some()) {
                // An API gateway: the URL as given, no project in the path.
                (project, location) = (None, None);
            }
            url.clone()
        }
        (None, None) | (None, Some("global")) => VERTEX_GLOBAL_BASE.to_owned(),
        (None, Some(multi @ ("us" | "eu"))) => {
            format!("https://aiplatform.{multi}.rep.googleapis.com/")
        }
        (None, Some(region)) => format!("https://{region}-aiplatform.googleapis.com/"),
    };
    let api_version = explicit
        .api_version
        .clone()
        .unwrap_or_else(|| match env_version {
            Some(v) if v == "beta" => "v1beta1".to_owned(),
            Some(v) => v,
            None => DEFAULT_VERSION.to_owned(),
        });
    let auth = if api_key.is_some() {
        EnvAuth::ApiKey
    } else {
        EnvAuth::ApplicationDefault
    };
    Ok(EnvChoice {
        backend: Backend::VertexAi,
        auth,
        base_url,
        api_version,
        project,
        location,
        api_key,
    })
}

/// The settings actually given: google-genai takes an empty key, project,
/// location or base URL as none (`api_key or env_api_key`, …), so the
/// environment's applies. An empty API version it keeps.
fn given(explicit: &Explicit) -> Explicit {
    let text = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    Explicit {
        vertexai: explicit.vertexai,
        api_key: explicit
            .api_key
            .clone()
            .filter(|k| !k.expose_secret().is_empty()),
        project: text(&explicit.project),
        location: text(&explicit.location),
        base_url: text(&explicit.base_url),
        api_version: explicit.api_version.clone(),
    }
}

/// `GOOGLE_GENAI_USE_ENTERPRISE`, else `GOOGLE_GENAI_USE_VERTEXAI`: set
/// (even empty) means `true`/`1` or not.
fn env_vertexai(var: &dyn Fn(&str) -> Option<String>) -> Option<bool> {
    let [enterprise, vertexai] = USE_VERTEXAI
        .map(|name| var(name).map(|v| matches!(v.to_lowercase().as_str(), "true" | "1")));
    if let (Some(e), Some(v)) = (enterprise, vertexai)
        && e != v
    {
        tracing::warn!(
            "{} and {} disagree; using {}",
            USE_VERTEXAI[0],
            USE_VERTEXAI[1],
            USE_VERTEXAI[0]
        );
    }
    enterprise.or(vertexai)
}

/// `GOOGLE_API_KEY`, else `GEMINI_API_KEY`, warning when both are set.
fn env_api_key(set: &dyn Fn(&str) -> Option<String>) -> Option<SecretString> {
    let [first, second] = crate::env::API_KEYS;
    let (a, b) = (set(first), set(second));
    if a.is_some() && b.is_some() {
        tracing::warn!("both {first} and {second} are set; using {first}");
    }
    a.or(b).map(SecretString::from)
}

/// The project google-auth's `default()` finds without a network call:
/// `GCLOUD_PROJECT`; else the `project_id` of the file
/// `GOOGLE_APPLICATION_CREDENTIALS` names (a service account key); else,
/// when that variable is unset or names gcloud's own ADC file and the file
/// exists, its `project_id`, then gcloud's project (`gcloud config get
/// project`, read from gcloud's configuration: `CLOUDSDK_CORE_PROJECT`, else
/// the active configuration's `[core] project`).
pub(crate) fn adc_project(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(p) = set(GCLOUD_PROJECT) {
        return Some(p);
    }
    let config = gcloud_config_dir(var);
    let gcloud_file = config.as_ref().map(|d| d.join(crate::adc::ADC_FILE_NAME));
    match set(crate::env::GOOGLE_APPLICATION_CREDENTIALS) {
        // google-auth compares the paths as strings.
        Some(path) if gcloud_file.as_deref() != Some(std::path::Path::new(&path)) => {
            file_project(std::path::Path::new(&path))
        }
        _ => {
            let (config, file) = (config?, gcloud_file?);
            if !file.is_file() {
                // google-auth asks the metadata server next: a network call.
                return None;
            }
            file_project(&file).or_else(|| gcloud_project(var, &config))
        }
    }
}

/// The non-empty `project_id` of the JSON file at `path`.
fn file_project(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("project_id")?
        .as_str()
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
}

/// gcloud's configuration directory, as [`well_known_file`](crate::adc::well_known_file)
/// finds it, for the variables `var` returns.
fn gcloud_config_dir(var: &dyn Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(dir) = set(crate::env::CLOUDSDK_CONFIG) {
        return Some(dir.into());
    }
    #[cfg(windows)]
    let base = set("APPDATA").map(|d| std::path::PathBuf::from(d).join("gcloud"));
    #[cfg(not(windows))]
    let base = set("HOME").map(|d| std::path::PathBuf::from(d).join(".config").join("gcloud"));
    base
}

/// The project `gcloud config get project` prints: `CLOUDSDK_CORE_PROJECT`,
/// else `project` in the `[core]` section of the active configuration
/// (`CLOUDSDK_ACTIVE_CONFIG_NAME`, else the one `active_config` names, else
/// `default`).
fn gcloud_project(
    var: &dyn Fn(&str) -> Option<String>,
    config: &std::path::Path,
) -> Option<String> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    // Set but empty, it is gcloud's error ("set to the empty string"): no project.
    if let Some(p) = var("CLOUDSDK_CORE_PROJECT") {
        return Some(p).filter(|p| !p.is_empty());
    }
    let active = set("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .or_else(|| {
            std::fs::read_to_string(config.join("active_config"))
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "default".to_owned());
    let text = std::fs::read_to_string(
        config
            .join("configurations")
            .join(format!("config_{active}")),
    )
    .ok()?;
    ini_value(&text, "core", "project")
}

/// The non-empty value of `key` in `[section]` of an INI text (Python's
/// configparser: `key = value` or `key: value`, `#` and `;` comment lines).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside
            && let Some((k, v)) = line.split_once(['=', ':'])
            && k.trim() == key
        {
            return Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(explicit: &Explicit, vars: &[(&str, &str)]) -> Result<EnvChoice> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let var = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        choose(explicit, &var, &|| None)
    }

    #[test]
    fn google_api_key_wins_over_gemini_api_key() {
        let vars = [("GEMINI_API_KEY", "g"), ("GOOGLE_API_KEY", "o")];
        let c = pick(&Explicit::default(), &vars).unwrap();
        assert_eq!((c.backend, c.auth), (Backend::GeminiApi, EnvAuth::ApiKey));
        assert_eq!(c.api_key.as_ref().unwrap().expose_secret(), "o");
        assert_eq!(
            c.api_base().unwrap(),
            "https://generativelanguage.googleapis.com/v1"
        );
    }

    #[test]
    fn the_key_is_stripped_as_google_genai_strips_it() {
        let c = pick(&Explicit::default(), &[("GEMINI_API_KEY", " AIzaK\n")]).unwrap();
        assert_eq!(c.api_key.unwrap().expose_secret(), "AIzaK");
    }

    #[test]
    fn nothing_set_means_the_user_sign_in() {
        let c = pick(&Explicit::default(), &[]).unwrap();
        assert_eq!(
            (c.backend, c.auth),
            (Backend::GeminiApi, EnvAuth::UserSignIn)
        );
    }

    #[test]
    fn vertex_ai_with_a_project_defaults_to_global_and_adc() {
        let vars = [
            ("GOOGLE_GENAI_USE_VERTEXAI", "True"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
            ("GOOGLE_API_KEY", "k"),
        ];
        let c = pick(&Explicit::default(), &vars).unwrap();
        assert_eq!(
            (c.backend, c.auth),
            (Backend::VertexAi, EnvAuth::ApplicationDefault)
        );
        assert_eq!(
            c.api_base().unwrap(),
            "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google"
        );
    }

    #[test]
    fn an_explicit_key_is_vertex_express_mode() {
        let explicit = Explicit {
            vertexai: Some(true),
            api_key: Some(SecretString::from("k")),
            api_version: Some("v1beta1".into()),
            ..Explicit::default()
        };
        let c = pick(&explicit, &[("GOOGLE_CLOUD_PROJECT", "p")]).unwrap();
        assert_eq!((c.auth, c.project.as_deref()), (EnvAuth::ApiKey, None));
        assert_eq!(
            c.api_base().unwrap(),
            "https://aiplatform.googleapis.com/v1beta1/publishers/google"
        );
    }

    #[test]
    fn vertex_ai_without_project_or_key_is_an_error() {
        let err = pick(&Explicit::default(), &[("GOOGLE_GENAI_USE_VERTEXAI", "1")]).unwrap_err();
        assert!(
            matches!(err, Error::VertexAi(VertexProblem::NoProject)),
            "{err:?}"
        );
    }

    #[test]
    fn empty_explicit_settings_are_none_given() {
        // google-genai: `api_key or env_api_key`, `project or env_project`, …
        let explicit = Explicit {
            api_key: Some(SecretString::from("")),
            project: Some(String::new()),
            location: Some(String::new()),
            base_url: Some(String::new()),
            ..Explicit::default()
        };
        let c = pick(&explicit, &[("GOOGLE_API_KEY", "o")]).unwrap();
        assert_eq!((c.backend, c.auth), (Backend::GeminiApi, EnvAuth::ApiKey));
        assert_eq!(c.api_key.unwrap().expose_secret(), "o");
        assert_eq!(c.base_url, GEMINI_DEFAULT_BASE);
    }

    #[test]
    fn vertex_ai_takes_the_project_of_gcloud_s_configuration_with_gcloud_s_adc() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("configurations")).unwrap();
        let ini = "[core]\n# project = no\naccount = a@example.com\nproject = cfgproj\n";
        std::fs::write(dir.path().join("configurations/config_default"), ini).unwrap();
        let ini = "[compute]\nproject = no\n[core]\nproject: otherproj\n";
        std::fs::write(dir.path().join("configurations/config_other"), ini).unwrap();
        let project = |extra: &[(&str, &str)]| {
            let mut v = vec![("CLOUDSDK_CONFIG", config.as_str())];
            v.extend_from_slice(extra);
            adc_project(&|name: &str| {
                v.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, x)| (*x).to_owned())
            })
        };
        // No ADC file of gcloud's: google-auth would ask the metadata server.
        assert_eq!(project(&[]), None);
        let adc = dir.path().join(crate::adc::ADC_FILE_NAME);
        std::fs::write(&adc, r#"{"type": "authorized_user"}"#).unwrap();
        assert_eq!(project(&[]).as_deref(), Some("cfgproj"));
        std::fs::write(dir.path().join("active_config"), "other\n").unwrap();
        assert_eq!(project(&[]).as_deref(), Some("otherproj"));
        let named = adc.display().to_string();
        assert_eq!(
            project(&[
                ("GOOGLE_APPLICATION_CREDENTIALS", &named),
                ("CLOUDSDK_ACTIVE_CONFIG_NAME", "default")
            ])
            .as_deref(),
            Some("cfgproj")
        );
        assert_eq!(
            project(&[("CLOUDSDK_CORE_PROJECT", "envproj")]).as_deref(),
            Some("envproj")
        );
        assert_eq!(project(&[("CLOUDSDK_CORE_PROJECT", "")]), None);
        // Another file named: its project_id only.
        let other = dir.path().join("user.json");
        std::fs::write(&other, r#"{"type": "authorized_user"}"#).unwrap();
        let other = other.display().to_string();
        assert_eq!(project(&[("GOOGLE_APPLICATION_CREDENTIALS", &other)]), None);
    }

    #[test]
    fn debug_shows_no_key() {
        let c = pick(&Explicit::default(), &[("GOOGLE_API_KEY", "AIzaMARKER")]).unwrap();
        let explicit = Explicit {
            api_key: Some(SecretString::from("AIzaMARKER")),
            ..Explicit::default()
        };
        assert!(!format!("{c:?}{explicit:?}").contains("MARKER"));
    }
}
