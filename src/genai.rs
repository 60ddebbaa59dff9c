//! An `AuthResolver` for the [genai](https://crates.io/crates/genai) crate
//! (feature `genai`): its Vertex AI adapter calls Gemini with this crate's
//! access token, refreshed as needed, one refresh for all callers.
//!
//! What genai (0.7) does with the `AuthData` a resolver gives, by adapter:
//!
//! - **Vertex** (`vertex::gemini-…`, `vertex::claude-…`): the key becomes
//!   `Authorization: Bearer <key>`. Given the current access token, that is
//!   OAuth as Vertex AI wants it. Its endpoint is
//!   `https://{VERTEX_LOCATION}-aiplatform.googleapis.com/v1/projects/{VERTEX_PROJECT_ID}/locations/{VERTEX_LOCATION}/`
//!   from the environment, or set with genai's
//!   `ClientBuilder::append_provider_config(AdapterKind::Vertex, Endpoint)`
//!   (or a `ServiceTargetResolver`).
//! - **Gemini** and **GeminiIx** (the Gemini API,
//!   `generativelanguage.googleapis.com`): the key becomes
//!   `x-goog-api-key: <key>`, an API-key header, which takes no OAuth
//!   token. genai has no way to make these adapters send a bearer token: its
//!   `AuthData::RequestOverride` replaces the whole URL and headers of
//!   every call, and a resolver is not told whether the call is a
//!   generation, a stream or an embedding, whose URLs differ. So
//!   OAuth credentials are an error for these adapters (the API would
//!   refuse the token, and a token has no business in an API-key header);
//!   API-key credentials ([`Credentials::from_api_key`]) are given as the
//!   key, which is what these adapters send.
//! - **Every other adapter** (OpenAI, Anthropic, …): `None`, so genai uses
//!   its own default for them (their environment variable), and one genai
//!   `Client` serves them beside Google's.
//!
//! genai's Vertex adapter sends no `x-goog-user-project`: the project in
//! the endpoint's path is the one billed. A caller who needs the header
//! adds it with genai's `ChatOptions::with_extra_headers`.

use std::future::Future;
use std::pin::Pin;

use ::genai::ModelIden;
use ::genai::adapter::AdapterKind;
use ::genai::resolver::{AuthData, AuthResolver, Error as ResolverError};

use crate::credentials::Credentials;
use crate::error::Error;

/// What genai's async resolver functions return.
type Resolved = Pin<Box<dyn Future<Output = Result<Option<AuthData>, ResolverError>> + Send>>;

/// A genai `AuthResolver` that hands genai's Vertex AI adapter the current
/// access token of `creds` (cached, refreshed once for all callers when
/// due), which genai sends as `Authorization: Bearer`.
///
/// For genai's Gemini API adapters (`Gemini`, `GeminiIx`), which send
/// their credential as an API key (`x-goog-api-key`), API-key credentials
/// give their key and OAuth credentials are an error that says so; other
/// adapters get `None` (genai's own default). See the [module](self) for why.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use genai::chat::{ChatMessage, ChatRequest};
/// let creds = gemini_oauth::CredentialLoader::application_default().load().await?;
/// let client = genai::Client::builder()
///     .with_auth_resolver(gemini_oauth::genai::auth_resolver(creds))
///     .build()?; // endpoint: VERTEX_PROJECT_ID and VERTEX_LOCATION, or append_provider_config
/// let chat = ChatRequest::new(vec![ChatMessage::user("Tell a story")]);
/// let answer = client.exec_chat("vertex::gemini-2.5-flash", chat, None).await?;
/// println!("{}", answer.first_text().unwrap_or_default());
/// # Ok(()) }
/// ```
///
/// # Errors
/// The resolver answers genai with `genai::resolver::Error::Custom`, which
/// genai returns as `genai::Error::Resolver`: the text of this crate's
/// error when no token could be had (an `invalid_grant`, an unreachable
/// token endpoint, …; never a secret), or a sentence on why the
/// credentials cannot serve the adapter (OAuth for the Gemini API
/// adapters, an API key for Vertex). No request reaches the model's
/// endpoint then.
#[must_use]
pub fn auth_resolver(creds: Credentials) -> AuthResolver {
    AuthResolver::from_resolver_async_fn(move |model: ModelIden| -> Resolved {
        let creds = creds.clone();
        Box::pin(async move { auth_data(&creds, model.adapter_kind).await })
    })
}

/// The `AuthData` for one call to `kind`'s adapter.
async fn auth_data(
    creds: &Credentials,
    kind: AdapterKind,
) -> Result<Option<AuthData>, ResolverError> {
    match kind {
        AdapterKind::Vertex => match creds.access_token().await {
            Ok(token) => Ok(Some(AuthData::Key(token.secret().to_owned()))),
            Err(Error::NoAccessToken) => Err(ResolverError::Custom(
                "gemini-oauth: API-key credentials cannot serve genai's Vertex adapter, which \
                 sends its key as a bearer token; load OAuth credentials (a user's sign-in or ADC)"
                    .to_owned(),
            )),
            Err(e) => Err(resolver_error(&e)),
        },
        AdapterKind::Gemini | AdapterKind::GeminiIx => match creds.api_key() {
            Some(key) => match key.to_str() {
                Ok(key) => Ok(Some(AuthData::Key(key.to_owned()))),
                Err(_) => Err(ResolverError::Custom(
                    "gemini-oauth: the API key is not visible ASCII, which genai's headers take"
                        .to_owned(),
                )),
            },
            None => Err(ResolverError::Custom(format!(
                "gemini-oauth: genai's {kind} adapter sends its credential as an API key \
                 (x-goog-api-key), which takes no OAuth access token; call the model through \
                 genai's Vertex adapter (\"vertex::MODEL\"), or use API-key credentials"
            ))),
        },
        _ => Ok(None),
    }
}

/// Our error as genai's: its text (which never holds a secret). genai's
/// resolver error carries a string only, so the error itself cannot ride along.
fn resolver_error(e: &Error) -> ResolverError {
    ResolverError::Custom(format!("gemini-oauth could not get an access token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    async fn resolve(creds: &Credentials, kind: AdapterKind) -> Option<AuthData> {
        let AuthResolver::ResolverAsyncFn(f) = auth_resolver(creds.clone()) else {
            panic!("an async resolver");
        };
        f.exec_fn(ModelIden::new(kind, "gemini-2.5-flash"))
            .await
            .unwrap()
    }

    fn key_of(data: Option<AuthData>) -> String {
        data.expect("some AuthData").single_key_value().unwrap()
    }

    #[tokio::test]
    async fn vertex_gets_the_token_other_adapters_genai_s_default() {
        let at = SystemTime::now() + Duration::from_secs(3600);
        let creds = Credentials::from_access_token("ya29.TOKENMARKER", at).unwrap();
        assert_eq!(
            key_of(resolve(&creds, AdapterKind::Vertex).await),
            "ya29.TOKENMARKER"
        );
        for other in [
            AdapterKind::OpenAI,
            AdapterKind::Anthropic,
            AdapterKind::Ollama,
        ] {
            assert!(resolve(&creds, other).await.is_none(), "{other}");
        }
    }

    #[tokio::test]
    async fn an_api_key_serves_the_gemini_adapters_and_not_vertex() {
        let creds = Credentials::from_api_key("AIzaKEYMARKER").unwrap();
        for kind in [AdapterKind::Gemini, AdapterKind::GeminiIx] {
            assert_eq!(key_of(resolve(&creds, kind).await), "AIzaKEYMARKER");
        }
        let AuthResolver::ResolverAsyncFn(f) = auth_resolver(creds) else {
            panic!("an async resolver");
        };
        let err = f
            .exec_fn(ModelIden::new(AdapterKind::Vertex, "gemini-2.5-flash"))
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("bearer token"), "{text}");
        assert!(!text.contains("MARKER"), "{text}");
    }
}
