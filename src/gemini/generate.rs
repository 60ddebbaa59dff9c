//! `generateContent` and `streamGenerateContent`, raw JSON in and out.

use http::{HeaderValue, Request, header};
use serde_json::Value;

use super::decode;
use super::events::ContentStream;
use crate::api_error::ApiError;
use crate::client::AuthorizedClient;
use crate::error::{Error, Result};
use crate::request_body::RequestBody;
use crate::response_body::ResponseBody;
use crate::url::redact;
use crate::vertex::{self, encode_path, is_vertex_base};

/// Largest error body read before it becomes an [`ApiError`].
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// `models/{model}` for `gemini-2.5-flash` or `models/gemini-2.5-flash`;
/// other resource names (`tunedModels/…`) as given; each segment
/// percent-encoded.
pub(crate) fn model_path(model: &str) -> String {
    if model.contains('/') {
        encode_path(model)
    } else {
        format!("models/{}", encode_path(model))
    }
}

/// `{model's URL}:{method}`, on the Gemini API or Vertex AI.
fn model_url(client: &AuthorizedClient, model: &str, method: &str) -> String {
    let base = client.api_base();
    match is_vertex_base(base) {
        true => format!("{}:{method}", vertex::model_url(base, model)),
        false => client.api_url(&format!("{}:{method}", model_path(model))),
    }
}

/// Sends `body` to `{api_base}/models/{model}:generateContent` and returns
/// the answer as JSON. `model` is `gemini-2.5-flash` or `models/gemini-2.5-flash`.
///
/// The call has no time limit unless the client sets one
/// ([`AuthorizedClient::timeout`]): generations with thinking take minutes.
///
/// ```no_run
/// # async fn f() -> gemini_oauth::Result<()> {
/// let client = gemini_oauth::load_creds().await?.authorized_client();
/// let body = serde_json::json!({"contents": [{"parts": [{"text": "Hello"}]}]});
/// let answer = gemini_oauth::gemini::generate_content(&client, "gemini-2.5-flash", &body).await?;
/// println!("{}", answer["candidates"][0]["content"]["parts"][0]["text"]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Api`] (Google's error, with a hint) for an error status, and the
/// errors of [`AuthorizedClient::post_json`].
pub async fn generate_content(
    client: &AuthorizedClient,
    model: &str,
    body: &Value,
) -> Result<Value> {
    let url = model_url(client, model, "generateContent");
    let resp = client.post_json(&url, body.to_string()).await?;
    decode(&url, resp.status().as_u16(), resp.body())
}

/// Sends `body` to `{api_base}/models/{model}:streamGenerateContent?alt=sse`
/// and returns the answer's chunks as they arrive: a [`ContentStream`] of
/// JSON values, one per server-sent event. Memory stays flat however long
/// the answer.
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn f() -> gemini_oauth::Result<()> {
/// let client = gemini_oauth::load_creds().await?.authorized_client();
/// let body = serde_json::json!({"contents": [{"parts": [{"text": "A long story"}]}]});
/// let mut chunks =
///     gemini_oauth::gemini::stream_generate_content(&client, "gemini-2.5-flash", &body).await?;
/// while let Some(chunk) = chunks.next().await {
///     print!("{}", chunk?["candidates"][0]["content"]["parts"][0]["text"]);
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Api`] for an error status (here) or an error event (from the
/// stream); [`Error::EventStream`] from the stream for an event that is not
/// JSON or a stream cut in the middle of one; [`Error::Timeout`] from the
/// stream when nothing arrives for the client's idle limit; and the errors
/// of [`AuthorizedClient::request`].
pub async fn stream_generate_content(
    client: &AuthorizedClient,
    model: &str,
    body: &Value,
) -> Result<ContentStream> {
    let url = format!(
        "{}?alt=sse",
        model_url(client, model, "streamGenerateContent")
    );
    let req = json_request(&url, body.to_string())?;
    let resp = client.request(req).await?;
    let resp = success_or_api_error(&url, resp).await?;
    check_event_stream(&url, resp.headers())?;
    Ok(ContentStream::new(resp.into_body(), &url))
}

/// A 2xx answer that is not `text/event-stream` (a gateway that dropped
/// `alt=sse` answers one JSON document) would parse as an empty stream.
fn check_event_stream(url: &str, headers: &http::HeaderMap) -> Result<()> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = kind
        .as_deref()
        .map(|k| k.split(';').next().unwrap_or("").trim());
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("text/event-stream")) {
        return Ok(());
    }
    let came = match kind {
        Some(k) => format!("content-type {:?}", k.chars().take(100).collect::<String>()),
        None => "no content-type".to_owned(),
    };
    Err(Error::EventStream {
        endpoint: redact(url),
        problem: format!(
            "the answer has {came}, not text/event-stream: something between here and the API \
             (a proxy or gateway) dropped alt=sse; check the API base URL"
        ),
    })
}

/// A `POST url` with a JSON body.
pub(crate) fn json_request(url: &str, json: String) -> Result<Request<RequestBody>> {
    let mut req = Request::new(RequestBody::from(json));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = url.parse().map_err(|_| Error::InvalidUrl {
        url: redact(url),
        reason: "not a valid URL",
    })?;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(req)
}

/// The response when its status is 2xx; otherwise its body (capped) as an [`ApiError`].
pub(crate) async fn success_or_api_error(
    url: &str,
    resp: http::Response<ResponseBody>,
) -> Result<http::Response<ResponseBody>> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.into_body().collect_bytes(MAX_ERROR_BODY).await?;
    Err(Error::Api(ApiError::from_body(url, status, &body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_with_and_without_prefix() {
        assert_eq!(model_path("gemini-2.5-flash"), "models/gemini-2.5-flash");
        assert_eq!(
            model_path("models/gemini-2.5-flash"),
            "models/gemini-2.5-flash"
        );
        assert_eq!(model_path("tunedModels/mine"), "tunedModels/mine");
    }
}
