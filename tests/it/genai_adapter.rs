//! `gemini_oauth::genai::auth_resolver` (feature `genai`) in the real genai
//! client: its Vertex AI adapter calls a Gemini server on 127.0.0.1 with our
//! bearer token; its Gemini API adapter, which sends `x-goog-api-key`, gets
//! an API key or an error, never an OAuth token.

use genai::Client;
use genai::adapter::AdapterKind;
use genai::chat::{ChatMessage, ChatRequest, ChatStreamEvent};
use genai::resolver::Endpoint;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::*;
use futures_util::StreamExt;
use gemini_oauth::Credentials;

const VERTEX_MODEL: &str = "vertex::gemini-2.5-flash";
const VERTEX_PATH: &str =
    "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash";

/// A Gemini server answering every POST with a one-part generation.
async fn gemini_server() -> MockServer {
    let server = MockServer::start().await;
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hello from 127.0.0.1"}]},
                        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash"
    });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    server
}

/// A genai client with our resolver and both Google adapters' endpoints on `server`.
fn genai_client(creds: &Credentials, server: &MockServer) -> Client {
    let vertex = format!("{}/v1/projects/proj/locations/us-central1/", server.uri());
    let gemini = format!("{}/v1beta/", server.uri());
    Client::builder()
        // No proxy from the environment for 127.0.0.1.
        .with_reqwest(reqwest::Client::builder().no_proxy().build().unwrap())
        .with_auth_resolver(gemini_oauth::genai::auth_resolver(creds.clone()))
        .append_provider_config(AdapterKind::Vertex, Endpoint::from_owned(vertex))
        .append_provider_config(AdapterKind::Gemini, Endpoint::from_owned(gemini))
        .build()
        .unwrap()
}

fn chat() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user("say hello")])
}

/// The credential headers of each request the server received.
async fn credentials_sent(server: &MockServer) -> Vec<(String, Option<String>, Option<String>)> {
    let value =
        |r: &Request, name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.url.path().to_owned(),
                value(r, "authorization"),
                value(r, "x-goog-api-key"),
            )
        })
        .collect()
}

fn bearer_of(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test]
async fn vertex_calls_carry_our_bearer_token_then_the_refreshed_one() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    let server = gemini_server().await;
    let client = genai_client(&creds, &server);

    let answer = client.exec_chat(VERTEX_MODEL, chat(), None).await.unwrap();
    assert_eq!(answer.first_text(), Some("hello from 127.0.0.1"));
    client.exec_chat(VERTEX_MODEL, chat(), None).await.unwrap();
    assert_eq!(token_requests(&tokens).await, 0, "the cached token, twice");

    creds.force_refresh().await.unwrap();
    client.exec_chat(VERTEX_MODEL, chat(), None).await.unwrap();
    let generate = format!("{VERTEX_PATH}:generateContent");
    assert_eq!(
        credentials_sent(&server).await,
        vec![
            (generate.clone(), bearer_of(OLD_ACCESS), None),
            (generate.clone(), bearer_of(OLD_ACCESS), None),
            (generate, bearer_of(NEW_ACCESS), None),
        ]
    );
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_concurrent_calls() {
    // The load's refresh brings a token already inside the expiry skew.
    let (tokens, _dir, creds) = loaded_dying_then(new_token()).await;
    let server = gemini_server().await;
    let client = genai_client(&creds, &server);

    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.exec_chat(VERTEX_MODEL, chat(), None).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let sent = credentials_sent(&server).await;
    assert_eq!(sent.len(), 8);
    for (_, authorization, api_key) in sent {
        assert_eq!(authorization, bearer_of(NEW_ACCESS));
        assert_eq!(api_key, None);
    }
    assert_eq!(token_requests(&tokens).await, 2, "one refresh for all");
}

#[tokio::test]
async fn a_vertex_stream_carries_the_bearer_token() {
    let (dir, _tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    let server = MockServer::start().await;
    let event = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "streamed"}]},
                                       "finishReason": "STOP"}]});
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(format!("data: {event}\n\n")),
        )
        .mount(&server)
        .await;
    let client = genai_client(&creds, &server);

    let mut stream = client
        .exec_chat_stream(VERTEX_MODEL, chat(), None)
        .await
        .unwrap()
        .stream;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        if let ChatStreamEvent::Chunk(chunk) = event.unwrap() {
            text.push_str(&chunk.content);
        }
    }
    assert_eq!(text, "streamed");
    assert_eq!(
        credentials_sent(&server).await,
        vec![(
            format!("{VERTEX_PATH}:streamGenerateContent"),
            bearer_of(OLD_ACCESS),
            None
        )]
    );
}

#[tokio::test]
async fn the_gemini_api_adapter_gets_an_api_key_never_an_oauth_token() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    let server = gemini_server().await;

    // OAuth credentials: genai would send the token as x-goog-api-key.
    let err = genai_client(&creds, &server)
        .exec_chat("gemini-2.5-flash", chat(), None)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, genai::Error::Resolver { .. }), "{text}");
    assert!(text.contains("x-goog-api-key"), "{text}");
    assert!(text.contains("vertex::"), "{text}");
    assert_no_secrets(&text);

    // API-key credentials: the key, as the adapter sends it.
    let key = Credentials::from_api_key("AIzaKEYMARKER").unwrap();
    let answer = genai_client(&key, &server)
        .exec_chat("gemini-2.5-flash", chat(), None)
        .await
        .unwrap();
    assert_eq!(answer.first_text(), Some("hello from 127.0.0.1"));
    assert_eq!(
        credentials_sent(&server).await,
        vec![(
            "/v1beta/models/gemini-2.5-flash:generateContent".to_owned(),
            None,
            Some("AIzaKEYMARKER".to_owned())
        )],
        "one call, the key's"
    );

    // An API key cannot serve Vertex, which would send it as a bearer token.
    let err = genai_client(&key, &server)
        .exec_chat(VERTEX_MODEL, chat(), None)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("bearer token"), "{text}");
    assert_no_secrets(&text);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(token_requests(&tokens).await, 0);
}

#[tokio::test]
async fn a_failed_refresh_is_a_resolver_error_and_no_call() {
    let (tokens, _dir, creds) = loaded_dying_then(invalid_grant()).await;
    let server = gemini_server().await;
    let client = genai_client(&creds, &server);

    let err = client
        .exec_chat(VERTEX_MODEL, chat(), None)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, genai::Error::Resolver { .. }), "{text}");
    assert!(text.contains("invalid_grant"), "{text}");
    assert_no_secrets(&text);
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(token_requests(&tokens).await, 2);
}

#[tokio::test]
async fn a_token_endpoint_that_fails_once_is_retried_within_the_call() {
    // The load's token is dying; the next refresh answers 503, then a token.
    let (tokens, _dir, creds) =
        loaded_dying_then_answers(&[(503, json!({"error": "unavailable"})), new_token()]).await;
    let server = gemini_server().await;

    genai_client(&creds, &server)
        .exec_chat(VERTEX_MODEL, chat(), None)
        .await
        .unwrap();
    let sent = credentials_sent(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, bearer_of(NEW_ACCESS));
    assert_eq!(token_requests(&tokens).await, 3);
}
