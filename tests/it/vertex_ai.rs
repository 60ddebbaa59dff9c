//! Vertex AI: the API base it builds reaches a local server with Vertex's
//! path, the scope default, and bad projects, locations and flags refused.

use crate::common::examples::{example, stdout};
use crate::common::*;
use gemini_oauth::{Error, VertexProblem, scopes};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VERTEX_PATH: &str = "/v1/projects/my-proj/locations/us-central1/publishers/google";

#[tokio::test]
async fn generate_content_example_reaches_the_vertex_path_at_the_given_origin() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path(format!(
            "{VERTEX_PATH}/models/gemini-2.5-flash:generateContent"
        )))
        .and(header("authorization", format!("Bearer {OLD_ACCESS}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": "from vertex"}]}}]
        })))
        .expect(1)
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let with_cloud_platform = token_json(&token_uri(&tokens), 3000).replace(
        &format!("\"{RETRIEVER}\""),
        &format!("\"{}\"", scopes::CLOUD_PLATFORM),
    );
    write_token(dir.path(), &with_cloud_platform);
    let out = example("generate_content")
        .current_dir(dir.path())
        // Not read under Vertex AI: it names the Gemini API.
        .env("GEMINI_API_BASE", "http://127.0.0.1:9/wrong")
        .args(["--no-consent", "--prompt", "hi"])
        .args([
            "--vertex-project",
            "my-proj",
            "--vertex-location",
            "us-central1",
        ])
        .args(["--vertex-origin", &api.uri()])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "from vertex\n");
}

#[tokio::test]
async fn vertex_ai_defaults_the_scopes_to_cloud_platform() {
    let tokens = token_endpoint().await;
    // The stored token has only generative-language.retriever.
    let t = TempLoader::with_token(&token_uri(&tokens), 3000);
    let err = t
        .loader()
        .vertex_ai("my-proj", "global")
        .load()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ConsentRequired { .. }) && err.to_string().contains("cloud-platform"),
        "{err}"
    );
    // Without Vertex AI, the same token serves the quickstart's scope.
    assert!(t.loader().load().await.is_ok());
    // Scopes set explicitly still win under Vertex AI.
    let creds = t
        .loader()
        .vertex_ai("my-proj", "global")
        .scopes([RETRIEVER])
        .load()
        .await
        .unwrap();
    assert_eq!(
        creds.authorized_client().api_url("models"),
        "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/google/models"
    );
}

#[tokio::test]
async fn a_regional_location_gets_its_own_host() {
    let (t, _tokens) = TempLoader::signed_in().await;
    let creds = t
        .loader()
        .scopes([RETRIEVER])
        .vertex_ai("my-proj", "europe-west4")
        .load()
        .await
        .unwrap();
    assert_eq!(
        creds.authorized_client().api_url("models"),
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west4/publishers/google/models"
    );
}

#[tokio::test]
async fn bad_projects_locations_and_an_explicit_api_base_are_typed_errors() {
    let (t, _tokens) = TempLoader::signed_in().await;
    let err = t.loader().vertex_ai("a/b", "us").load().await.unwrap_err();
    assert!(
        matches!(&err, Error::VertexAi(VertexProblem::InvalidProject(p)) if p == "a/b"),
        "{err:?}"
    );
    let err = t.loader().vertex_ai("p", "").load().await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::VertexAi(VertexProblem::InvalidLocation(l)) if l.is_empty()
        ),
        "{err:?}"
    );
    let err = t
        .loader()
        .vertex_ai("p", "us")
        .api_base("https://example.com/v1")
        .load()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::VertexAi(VertexProblem::ConflictsWithApiBase)),
        "{err:?}"
    );
    assert!(err.to_string().contains("vertex_ai_origin"), "{err}");
}

#[test]
fn a_vertex_flag_without_its_partner_is_a_usage_error() {
    for (args, missing) in [
        (&["--vertex-project", "p"][..], "--vertex-location"),
        (&["--vertex-location", "us"][..], "--vertex-project"),
    ] {
        for name in ["list_models", "generate_content", "print_access_token"] {
            let out = example(name).args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with("error: ") && stderr.contains(missing),
                "{name}: {stderr}"
            );
        }
    }
}

#[test]
fn vertex_flags_have_no_effect_with_an_api_key_and_say_so() {
    let out = example("list_models")
        .env("GEMINI_API_KEY", "AIzaTEST")
        .args(["--api-key", "--api-base", "http://127.0.0.1:9/v1"])
        .args(["--vertex-project", "p", "--vertex-location", "us"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: --vertex-project has no effect with --api-key"),
        "{stderr}"
    );
}

#[tokio::test]
async fn generate_and_stream_generate_content_work_against_a_vertex_base() {
    use futures_util::StreamExt;
    use gemini_oauth::gemini::{generate_content, stream_generate_content};
    use wiremock::matchers::query_param;

    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    let model = format!("{VERTEX_PATH}/models/gemini-2.5-flash");
    Mock::given(method("POST"))
        .and(path(format!("{model}:generateContent")))
        .and(header("authorization", format!("Bearer {OLD_ACCESS}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"candidates": []})))
        .expect(1)
        .mount(&api)
        .await;
    let sse = "data: {\"n\": 1}\r\n\r\ndata: {\"n\": 2}\n\n";
    Mock::given(method("POST"))
        .and(path(format!("{model}:streamGenerateContent")))
        .and(query_param("alt", "sse"))
        .and(header("authorization", format!("Bearer {OLD_ACCESS}")))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .expect(1)
        .mount(&api)
        .await;
    let t = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = t
        .loader()
        .scopes([RETRIEVER])
        .vertex_ai("my-proj", "us-central1")
        .vertex_ai_origin(api.uri())
        .load()
        .await
        .unwrap();
    let client = creds.authorized_client();
    let body = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let answer = generate_content(&client, "models/gemini-2.5-flash", &body)
        .await
        .unwrap();
    assert_eq!(answer, json!({"candidates": []}));
    let chunks: Vec<_> = stream_generate_content(&client, "gemini-2.5-flash", &body)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(chunks, [json!({"n": 1}), json!({"n": 2})]);
}

#[tokio::test]
async fn upload_file_on_vertex_ai_is_a_typed_error_before_any_request() {
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    let t = TempLoader::with_token(&token_uri(&tokens), 3000);
    let creds = t
        .loader()
        .scopes([RETRIEVER])
        .vertex_ai("my-proj", "us-central1")
        .vertex_ai_origin(api.uri())
        .load()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    let err =
        gemini_oauth::gemini::upload_file(&creds.authorized_client(), &file, "text/plain", "notes")
            .await
            .unwrap_err();
    assert!(
        matches!(&err, Error::Upload(gemini_oauth::UploadProblem::VertexAi { path, .. }) if *path == file),
        "{err:?}"
    );
    assert!(err.to_string().contains("gs://"), "{err}");
    assert!(api.received_requests().await.unwrap().is_empty());
}

/// Credentials from an `authorized_user` file of `universe`, for Vertex AI
/// at `location`, refreshed at `tokens`.
async fn vertex_base_in(universe: &str, location: &str, tokens: &MockServer) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("adc.json");
    let adc = json!({
        "type": "authorized_user", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN, "token_uri": token_uri(tokens),
        "universe_domain": universe,
    });
    std::fs::write(&file, adc.to_string()).unwrap();
    let creds = gemini_oauth::CredentialLoader::application_default()
        .credentials_file(&file)
        .vertex_ai("my-proj", location)
        .load()
        .await
        .unwrap();
    creds.authorized_client().api_base().to_owned()
}

#[tokio::test]
async fn vertex_ai_hosts_follow_the_universe_and_the_multi_regions() {
    let tokens = token_endpoint().await;
    let cases = [
        (
            "example.test",
            "us-central1",
            "https://us-central1-aiplatform.example.test",
        ),
        (
            "googleapis.com",
            "us",
            "https://aiplatform.us.rep.googleapis.com",
        ),
        (
            "googleapis.com",
            "eu",
            "https://aiplatform.eu.rep.googleapis.com",
        ),
        (
            "googleapis.com",
            "global",
            "https://aiplatform.googleapis.com",
        ),
        ("example.test", "global", "https://aiplatform.example.test"),
        (
            "example.test",
            "eu",
            "https://aiplatform.eu.rep.example.test",
        ),
    ];
    for (universe, location, origin) in cases {
        assert_eq!(
            vertex_base_in(universe, location, &tokens).await,
            format!("{origin}/v1/projects/my-proj/locations/{location}/publishers/google"),
            "{universe} {location}"
        );
    }
}

#[tokio::test]
async fn vertex_ai_resource_names_and_encoded_model_names_reach_their_paths() {
    use gemini_oauth::gemini::generate_content;
    let (tokens, api) = (token_endpoint().await, MockServer::start().await);
    let location = "/v1/projects/my-proj/locations/us-central1";
    let paths = [
        // A tuned model's endpoint: the full resource name from /v1.
        (
            "projects/my-proj/locations/us-central1/endpoints/123",
            format!("{location}/endpoints/123"),
        ),
        // Another publisher's model, full or short.
        (
            "publishers/meta/models/llama-3",
            format!("{location}/publishers/meta/models/llama-3"),
        ),
        (
            "meta/llama-4",
            format!("{location}/publishers/meta/models/llama-4"),
        ),
        // Google's, with a version.
        (
            "models/gemini-2.5-flash@001",
            format!("{VERTEX_PATH}/models/gemini-2.5-flash@001"),
        ),
        // A name that is not a path segment as it stands is percent-encoded.
        (
            "gemini 2.5?alt=json#x",
            format!("{VERTEX_PATH}/models/gemini%202.5%3Falt%3Djson%23x"),
        ),
    ];
    for (_, p) in &paths {
        Mock::given(method("POST"))
            .and(path(format!("{p}:generateContent")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"at": p})))
            .expect(1)
            .mount(&api)
            .await;
    }
    let t = TempLoader::with_token(&token_uri(&tokens), 3000);
    let client = t
        .loader()
        .scopes([RETRIEVER])
        .vertex_ai("my-proj", "us-central1")
        .vertex_ai_origin(api.uri())
        .load()
        .await
        .unwrap()
        .authorized_client();
    let body = json!({"contents": []});
    for (model, p) in &paths {
        let answer = generate_content(&client, model, &body).await;
        assert_eq!(answer.ok(), Some(json!({"at": p})), "{model}");
    }
}
