//! The authorized client and the Gemini helpers against local servers.

use crate::common::*;
use gemini_oauth::{CredentialLoader, Credentials, Error};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Credentials from a valid token.json (refreshed at `token_server`) in a
/// temp dir, for the API at `api`; the dir lives as long as the TempLoader.
async fn creds(
    token_server: &MockServer,
    api: &MockServer,
    quota: Option<&str>,
) -> (TempLoader, Credentials) {
    let dir = TempLoader::with_token(&token_uri(token_server), 3000);
    let mut l = dir.loader().api_base(format!("{}/v1", api.uri()));
    if let Some(q) = quota {
        l = l.quota_project(q);
    }
    let c = l.load().await.unwrap();
    (dir, c)
}

async fn list_models(c: &Credentials) -> gemini_oauth::Result<Vec<gemini_oauth::gemini::Model>> {
    gemini_oauth::gemini::list_models(&c.authorized_client()).await
}

#[tokio::test]
async fn adds_bearer_and_quota_project_headers() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(bearer(OLD_ACCESS))
        .and(header("x-goog-user-project", "billing-proj"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/a"}]})),
        )
        .expect(1)
        .mount(&api)
        .await;
    let (_dir, c) = creds(&tokens, &api, Some("billing-proj")).await;
    let models = list_models(&c).await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].name, "models/a");

    let headers = c.headers().await.unwrap();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {OLD_ACCESS}").as_str()
    );
    assert_eq!(headers["x-goog-user-project"], "billing-proj");
    assert!(headers["authorization"].is_sensitive());
}

#[tokio::test]
async fn no_quota_header_without_quota_project() {
    let tokens = token_endpoint().await;
    let api = api_answering(ResponseTemplate::new(200).set_body_json(json!({"models": []}))).await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    list_models(&c).await.unwrap();
    let reqs = api.received_requests().await.unwrap();
    assert!(reqs[0].headers.get("x-goog-user-project").is_none());
    assert!(
        c.headers()
            .await
            .unwrap()
            .get("x-goog-user-project")
            .is_none()
    );
}

#[tokio::test]
async fn list_models_follows_page_tokens() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    Mock::given(method("GET"))
        .and(query_param("pageToken", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "models": [{"name": "models/c", "displayName": "C", "inputTokenLimit": 10,
                        "supportedGenerationMethods": ["generateContent"]}]
        })))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "models": [{"name": "models/a"}, {"name": "models/b"}], "nextPageToken": "p2"
        })))
        .mount(&api)
        .await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    let models = list_models(&c).await.unwrap();
    let names: Vec<_> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["models/a", "models/b", "models/c"]);
    assert_eq!(models[2].display_name.as_deref(), Some("C"));
    assert_eq!(models[2].input_token_limit, Some(10));
    assert_eq!(api.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn google_errors_become_typed_api_errors_with_hints() {
    let tokens = token_endpoint().await;
    let api = api_answering(ResponseTemplate::new(403).set_body_json(json!({"error": {
        "code": 403, "message": "Request had insufficient authentication scopes.",
        "status": "PERMISSION_DENIED",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}]
    }})))
    .await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    let err = list_models(&c).await.unwrap_err();
    let Error::Api(api_err) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api_err.status, 403);
    assert!(api_err.has_reason("ACCESS_TOKEN_SCOPE_INSUFFICIENT"));
    assert!(err.to_string().contains("scope"), "{err}");
    assert_no_secrets(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn a_401_forces_one_refresh_and_one_retry() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    Mock::given(method("GET"))
        .and(bearer(OLD_ACCESS))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": 401, "message": "revoked", "status": "UNAUTHENTICATED"}}),
        ))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(bearer(NEW_ACCESS))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/ok"}]})),
        )
        .mount(&api)
        .await;
    let (dir, c) = creds(&tokens, &api, None).await;
    let models = list_models(&c).await.unwrap();
    assert_eq!(models[0].name, "models/ok");
    assert_eq!(token_requests(&tokens).await, 1);
    assert_eq!(api.received_requests().await.unwrap().len(), 2);
    // The refreshed token was saved for the next run.
    assert_eq!(read_json(&dir.token_file())["token"], NEW_ACCESS);
}

#[tokio::test]
async fn a_401_that_persists_is_returned_after_one_retry() {
    let tokens = token_endpoint().await;
    let api = api_answering(ResponseTemplate::new(401).set_body_json(
        json!({"error": {"code": 401, "message": "no", "status": "UNAUTHENTICATED"}}),
    ))
    .await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    let err = list_models(&c).await.unwrap_err();
    assert!(matches!(&err, Error::Api(e) if e.status == 401), "{err:?}");
    assert_eq!(api.received_requests().await.unwrap().len(), 2);
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn request_timeout_is_a_timeout_error() {
    let tokens = token_endpoint().await;
    let api =
        api_answering(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(5)))
            .await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    let err = c
        .authorized_client()
        .timeout(std::time::Duration::from_millis(200))
        .get(&format!("{}/v1/models?key=SECRETQUERY", api.uri()))
        .await
        .unwrap_err();
    let Error::Timeout { what, after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, std::time::Duration::from_millis(200));
    assert_eq!(what, &format!("the request to {}/v1/models", api.uri()));
    assert!(!format!("{err} {err:?}").contains("SECRETQUERY"));
    assert!(err.is_transient());
}

#[tokio::test]
async fn debug_output_of_every_public_type_hides_secrets() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    let (_dir, c) = creds(&tokens, &api, Some("p")).await;
    let token = c.access_token().await.unwrap();
    let stored =
        gemini_oauth::StoredToken::from_json(token_json("https://x/token", 5).as_bytes()).unwrap();
    let secret = gemini_oauth::ClientSecret::new(CLIENT_ID, CLIENT_SECRET);
    let text = format!(
        "{c:?} {token:?} {:?} {stored:?} {secret:?} {:?}",
        c.authorized_client(),
        CredentialLoader::new().client_secret(secret.clone())
    );
    assert_no_secrets(&text);
    assert_eq!(
        token.secret(),
        OLD_ACCESS,
        "the getter still gives the real value"
    );
}

/// A keep-alive server on 127.0.0.1 that counts TCP connections.
async fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(br#"{"models": []}"#)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/v1"), connections)
}

#[tokio::test]
async fn one_pooled_connection_serves_many_requests() {
    let tokens = token_endpoint().await;
    let (api_base, connections) = counting_server().await;
    let dir = TempLoader::with_token(&token_uri(&tokens), 3000);
    let c = dir.loader().api_base(&api_base).load().await.unwrap();
    let client = c.authorized_client();
    for _ in 0..10 {
        gemini_oauth::gemini::list_models(&client).await.unwrap();
        // A clone of the client shares the pool too.
        gemini_oauth::gemini::list_models(&client.clone())
            .await
            .unwrap();
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn gemini_bodies_are_capped_at_32_mib() {
    const LIMIT: usize = 32 * 1024 * 1024;
    let tokens = token_endpoint().await;
    let api = api_answering(ResponseTemplate::new(200).set_body_bytes(vec![b' '; LIMIT + 1])).await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    let client = c.authorized_client();
    let err = client.get(&client.api_url("models")).await.unwrap_err();
    match &err {
        Error::ResponseTooLarge { limit, .. } => assert_eq!(*limit, LIMIT),
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient(), "an oversized answer is not retried");

    let api = api_answering(ResponseTemplate::new(200).set_body_bytes(vec![b' '; LIMIT])).await;
    let (_dir, c) = creds(&tokens, &api, None).await;
    let client = c.authorized_client();
    let resp = client.get(&client.api_url("models")).await.unwrap();
    assert_eq!(resp.body().len(), LIMIT, "exactly the cap is read whole");
}

#[test]
fn default_timeouts_are_10_s_to_connect_and_30_s_per_request() {
    assert_eq!(
        gemini_oauth::DEFAULT_CONNECT_TIMEOUT,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        gemini_oauth::DEFAULT_TIMEOUT,
        std::time::Duration::from_secs(30)
    );
    // The loaders start from them.
    for debug in [
        format!("{:?}", CredentialLoader::new()),
        format!("{:?}", CredentialLoader::application_default()),
        format!("{:?}", CredentialLoader::api_key("AIzaKEYMARKER")),
    ] {
        assert!(debug.contains("timeout: 30s"), "{debug}");
        assert!(debug.contains("connect_timeout: 10s"), "{debug}");
        assert_no_secrets(&debug);
    }
}
