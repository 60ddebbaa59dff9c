//! Helpers for Gemini API endpoints, raw JSON in and out (typed request
//! models are the SDKs' job): [`list_models`], [`generate_content`],
//! [`stream_generate_content`] (server-sent events) and [`upload_file`]
//! (the Files API's resumable upload, recovered after a failure; [`Upload`]
//! adds a progress callback).

pub(crate) mod events;
mod generate;
mod mime;
mod problem;
mod read_ahead;
mod resumable;
mod upload;

use serde::Deserialize;

pub use crate::api_error::ApiError;
use crate::client::AuthorizedClient;
use crate::error::{Error, Result};
use crate::url::redact;
pub use events::ContentStream;
pub use generate::{generate_content, stream_generate_content};
pub use mime::{answer_texts, mime_type};
pub use problem::UploadProblem;
pub use upload::{File, Upload, upload_file};

/// Guards against a server that keeps sending page tokens.
const MAX_PAGES: usize = 100;

/// A Gemini model, as `GET /v1/models` describes it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Model {
    /// Resource name, e.g. `models/gemini-2.5-flash`.
    pub name: String,
    /// The base model's id, when given.
    #[serde(default)]
    pub base_model_id: Option<String>,
    /// Version string.
    #[serde(default)]
    pub version: Option<String>,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Short description.
    #[serde(default)]
    pub description: Option<String>,
    /// Maximum input tokens.
    #[serde(default)]
    pub input_token_limit: Option<u64>,
    /// Maximum output tokens.
    #[serde(default)]
    pub output_token_limit: Option<u64>,
    /// Methods such as `generateContent`, `countTokens`, `embedContent`.
    #[serde(default)]
    pub supported_generation_methods: Vec<String>,
    /// Default temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Highest allowed temperature.
    #[serde(default)]
    pub max_temperature: Option<f64>,
    /// Default nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Default top-k.
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Whether the model supports thinking.
    #[serde(default)]
    pub thinking: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelPage {
    #[serde(default)]
    models: Vec<Model>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// Lists every model the credentials can see (`GET {api_base}/models`),
/// following `nextPageToken`.
///
/// ```no_run
/// # async fn f() -> gemini_oauth::Result<()> {
/// let client = gemini_oauth::load_creds().await?.authorized_client();
/// for model in gemini_oauth::gemini::list_models(&client).await? {
///     println!("{}", model.name);
/// }
/// # Ok(()) }
/// ```
///
/// The future is `Send`: it can be spawned on a multi-threaded runtime.
///
/// # Errors
/// [`Error::Api`] with a hint for Google's error reasons (missing scope,
/// API not enabled, quota project denied…), and the errors of
/// [`AuthorizedClient::get`].
pub async fn list_models(client: &AuthorizedClient) -> Result<Vec<Model>> {
    let mut models = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        // Built in a block: the serializer is not Sync, and holding it across
        // the await below would make this future impossible to spawn.
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("pageSize", "1000");
            if let Some(t) = &page_token {
                query.append_pair("pageToken", t);
            }
            query.finish()
        };
        let url = format!("{}?{query}", client.api_url("models"));
        let page: ModelPage = get_json(client, &url).await?;
        models.extend(page.models);
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) if page_token.as_deref() != Some(&next) => page_token = Some(next),
            _ => return Ok(models),
        }
    }
    Ok(models)
}

/// GETs `url` and decodes a JSON answer, turning Google error bodies into [`ApiError`].
pub async fn get_json<T: for<'de> Deserialize<'de>>(
    client: &AuthorizedClient,
    url: &str,
) -> Result<T> {
    let resp = client.get(url).await?;
    decode(url, resp.status().as_u16(), resp.body())
}

/// Decodes a Gemini answer: `T` on 2xx, [`ApiError`] otherwise.
pub fn decode<T: for<'de> Deserialize<'de>>(url: &str, status: u16, body: &[u8]) -> Result<T> {
    if !(200..300).contains(&status) {
        return Err(Error::Api(ApiError::from_body(url, status, body)));
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::Api(ApiError {
            endpoint: redact(url),
            status,
            code: None,
            status_text: None,
            // serde's message can quote body values; say where, not what.
            message: format!(
                "the answer is not the expected JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
            reasons: vec![],
        })
    })
}

/// The helpers' futures can be spawned on multi-threaded runtimes.
#[allow(dead_code)]
fn futures_are_send(client: &AuthorizedClient) {
    fn send<T: Send>(_: &T) {}
    send(&list_models(client));
    send(&get_json::<serde_json::Value>(client, ""));
    let v = serde_json::Value::Null;
    send(&generate_content(client, "", &v));
    send(&stream_generate_content(client, "", &v));
    send(&upload_file(client, "", "", ""));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_models() {
        let page: ModelPage = decode("u", 200, br#"{"models":[{"name":"models/gemini-2.5-flash","version":"001","displayName":"Gemini 2.5 Flash","inputTokenLimit":1048576,"outputTokenLimit":65536,"supportedGenerationMethods":["generateContent","countTokens"],"thinking":true}],"nextPageToken":"n"}"#).unwrap();
        let m = &page.models[0];
        assert_eq!(m.name, "models/gemini-2.5-flash");
        assert_eq!(m.input_token_limit, Some(1_048_576));
        assert_eq!(
            m.supported_generation_methods,
            ["generateContent", "countTokens"]
        );
        assert_eq!(page.next_page_token.as_deref(), Some("n"));
        assert!(matches!(
            decode::<ModelPage>("u", 200, b"\"x\""),
            Err(Error::Api(_))
        ));
    }
}
