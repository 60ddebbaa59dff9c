//! [`CredentialLoader::from_env`]: credentials, backend and base URL chosen
//! as Google's Gemini SDKs choose them (see [`guide::environment`](crate::guide::environment)).

use secrecy::SecretString;

use super::CredentialLoader;
use super::kind::{ApiKey, ApplicationDefault, FromEnv};
use super::sdk_env::{EnvAuth, EnvChoice, adc_project, choose};
use crate::credentials::Credentials;
use crate::error::Result;
use crate::scopes;

impl CredentialLoader<FromEnv> {
    /// Credentials, backend and base URL as google-genai's `Client()` picks
    /// them from the environment: `GOOGLE_GENAI_USE_VERTEXAI=true` (or `1`)
    /// with `GOOGLE_CLOUD_PROJECT` and `GOOGLE_CLOUD_LOCATION` (default
    /// `global`) selects Vertex AI with Application Default Credentials;
    /// else `GOOGLE_API_KEY` (over `GEMINI_API_KEY`, with a warning) selects
    /// the Gemini API with that key; `GOOGLE_GEMINI_BASE_URL` /
    /// `GOOGLE_VERTEX_BASE_URL` replace the base URL and
    /// `GOOGLE_GENAI_API_VERSION` the version (default `v1`). With none of
    /// them, the quickstart's user sign-in (`client_secret.json`,
    /// `token.json`), where google-genai raises an error.
    ///
    /// The setters below are google-genai's `Client(...)` arguments and beat
    /// the environment in the same order; as there, an empty key, project,
    /// location or base URL counts as not given. [`choice`](Self::choice) tells what
    /// was chosen without loading anything.
    ///
    /// ```no_run
    /// # async fn f() -> gemini_oauth::Result<()> {
    /// let creds = gemini_oauth::CredentialLoader::from_env().load().await?;
    /// let models = gemini_oauth::gemini::list_models(&creds.authorized_client()).await?;
    /// # let _ = models; Ok(()) }
    /// ```
    pub fn from_env() -> Self {
        Self::of_kind(FromEnv::default())
    }

    /// Vertex AI (`true`) or the Gemini API (`false`), whatever
    /// `GOOGLE_GENAI_USE_VERTEXAI` says (`Client(vertexai=…)`).
    pub fn vertexai(mut self, vertexai: bool) -> Self {
        self.kind.explicit.vertexai = Some(vertexai);
        self
    }

    /// An API key, over `GOOGLE_API_KEY` / `GEMINI_API_KEY`
    /// (`Client(api_key=…)`); with Vertex AI and no explicit project, its
    /// express mode.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.kind.explicit.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// The Vertex AI project, over `GOOGLE_CLOUD_PROJECT` (`Client(project=…)`).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.kind.explicit.project = Some(project.into());
        self
    }

    /// The Vertex AI location, over `GOOGLE_CLOUD_LOCATION` (`Client(location=…)`).
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.kind.explicit.location = Some(location.into());
        self
    }

    /// The base URL before the version, over `GOOGLE_GEMINI_BASE_URL` /
    /// `GOOGLE_VERTEX_BASE_URL` (`HttpOptions(base_url=…)`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.kind.explicit.base_url = Some(url.into());
        self
    }

    /// The API version (`v1`, `v1beta` for the Gemini API, `v1beta1` for
    /// Vertex AI), over `GOOGLE_GENAI_API_VERSION` (`HttpOptions(api_version=…)`).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.kind.explicit.api_version = Some(version.into());
        self
    }

    /// What [`load`](Self::load) will use, read from the process's
    /// environment. No network call and no gcloud run; when Vertex AI needs
    /// a project and neither `GOOGLE_CLOUD_PROJECT` nor `GCLOUD_PROJECT`
    /// names one, it is found where google-auth finds it: the `project_id`
    /// of the credentials file `GOOGLE_APPLICATION_CREDENTIALS` names, or,
    /// with gcloud's ADC file (`gcloud auth application-default login`), that
    /// file's, then gcloud's project (`CLOUDSDK_CORE_PROJECT`, else the
    /// active gcloud configuration's, as `gcloud config get project`).
    ///
    /// # Errors
    /// [`Error::VertexAi`](crate::Error::VertexAi): a project or location
    /// given for the Gemini API
    /// ([`VertexProblem::ProjectWithoutVertexAi`](crate::VertexProblem::ProjectWithoutVertexAi)),
    /// or Vertex AI with neither a project nor a key
    /// ([`VertexProblem::NoProject`](crate::VertexProblem::NoProject)).
    pub fn choice(&self) -> Result<EnvChoice> {
        self.choice_in(|name| std::env::var(name).ok())
    }

    /// [`choice`](Self::choice) for the variables `var` returns (`None`:
    /// unset) instead of the process's: to test or explain a configuration.
    ///
    /// ```
    /// use gemini_oauth::{Backend, CredentialLoader};
    /// let vars = [("GOOGLE_GENAI_USE_VERTEXAI", "true"), ("GOOGLE_CLOUD_PROJECT", "p"),
    ///             ("GOOGLE_CLOUD_LOCATION", "eu")];
    /// let var = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// let choice = CredentialLoader::from_env().choice_in(var)?;
    /// assert_eq!(choice.backend, Backend::VertexAi);
    /// assert_eq!(choice.base_url, "https://aiplatform.eu.rep.googleapis.com/");
    /// # Ok::<(), gemini_oauth::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`choice`](Self::choice).
    pub fn choice_in(&self, var: impl Fn(&str) -> Option<String>) -> Result<EnvChoice> {
        choose(&self.kind.explicit, &var, &|| adc_project(&var))
    }

    /// Loads the credentials [`choice`](Self::choice) names, with its API
    /// base: an API key (no I/O), Application Default Credentials with the
    /// cloud-platform scope, or the user's sign-in with the quickstart's
    /// defaults. An explicit [`api_base`](CredentialLoader::api_base) wins
    /// over the chosen one; `GEMINI_API_BASE` is read only for the Gemini
    /// API when neither a base URL nor a version was chosen.
    ///
    /// # Errors
    /// As [`choice`](Self::choice), then as the chosen kind's `load()`.
    pub async fn load(self) -> Result<Credentials> {
        let choice = self.choice()?;
        let mut common = self.common;
        let default_gemini = choice.backend == super::sdk_env::Backend::GeminiApi
            && choice.base_url == super::sdk_env::GEMINI_DEFAULT_BASE
            && choice.api_version == super::sdk_env::DEFAULT_VERSION;
        if common.api_base.is_none() && !default_gemini {
            common.api_base = Some(choice.api_base()?);
        }
        match choice.auth {
            EnvAuth::ApiKey => CredentialLoader {
                common,
                kind: ApiKey {
                    key: choice.api_key,
                },
            }
            .build(),
            EnvAuth::ApplicationDefault => {
                common.scopes = Some(vec![scopes::CLOUD_PLATFORM.to_owned()]);
                CredentialLoader {
                    common,
                    kind: ApplicationDefault::default(),
                }
                .load()
                .await
            }
            EnvAuth::UserSignIn => {
                let mut loader = CredentialLoader::new();
                loader.common = common;
                loader.load().await
            }
        }
    }
}
