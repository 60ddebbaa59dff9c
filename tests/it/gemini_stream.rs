//! `generate_content`, `stream_generate_content` and the general request
//! against a local server speaking Gemini's formats: SSE in awkward pieces,
//! error bodies and error events, cut and malformed streams.

use std::sync::{Arc, Mutex};

use crate::common::gemini_server::*;
use crate::common::*;
use futures_util::StreamExt;
use gemini_oauth::gemini::{generate_content, stream_generate_content};
use gemini_oauth::{AuthorizedClient, Error, FileKind, RequestBody};
use serde_json::{Value, json};
use wiremock::MockServer;

/// A client for the API at `base` (its `/v1`), with a valid token.json
/// refreshed at the returned token endpoint.
pub(crate) async fn client_for(base: &str) -> (TempLoader, MockServer, AuthorizedClient) {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir
        .loader()
        .api_base(format!("{base}/v1"))
        .load()
        .await
        .unwrap();
    (dir, tokens, creds.authorized_client())
}

/// Every chunk of `client`'s stream for [`BODY`] to `model`, errors
/// included, in order.
async fn streamed(client: &AuthorizedClient, model: &str) -> Vec<Result<Value, Error>> {
    let mut s = stream_generate_content(client, model, &body())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        out.push(item);
    }
    out
}

/// [`streamed`] from a server that answers with `steps`.
async fn chunks_of(steps: Vec<Step>) -> Vec<Result<Value, Error>> {
    let base = sse_server(steps).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    streamed(&client, "m").await
}

/// The URI, headers and body of every request a [`recording`] server got.
type Seen = Arc<Mutex<Vec<(String, http::HeaderMap, bytes::Bytes)>>>;

/// A server that answers every request with `answer(uri, headers)` and
/// keeps what it got, the body read whole.
async fn recording(answer: fn(&str, &http::HeaderMap) -> Resp) -> (String, Seen) {
    let seen = Seen::default();
    let log = Arc::clone(&seen);
    let base = serve(move |req| {
        let log = Arc::clone(&log);
        async move {
            let (parts, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let uri = parts.uri.to_string();
            let resp = answer(&uri, &parts.headers);
            log.lock().unwrap().push((uri, parts.headers, body));
            resp
        }
    })
    .await;
    (base, seen)
}

/// A server that answers every request with the event stream `steps`.
pub(crate) async fn sse_server(steps: Vec<Step>) -> String {
    serve(move |_req| {
        let steps = steps.clone();
        async move { scripted(steps) }
    })
    .await
}

const BODY: &str = r#"{"contents": [{"parts": [{"text": "hi"}]}]}"#;

fn body() -> Value {
    serde_json::from_str(BODY).unwrap()
}

#[tokio::test]
async fn sse_events_split_across_pieces_crlf_lf_multiline_comments_and_no_final_blank_line() {
    let one = event(&text_chunk("one"));
    let mut steps = Vec::new();
    // The first event a byte at a time.
    for b in one.as_bytes() {
        steps.push(send([*b]));
    }
    steps.extend([
        send(": keep-alive comment\r\n\r\n"),
        pause_ms(50),
        // CRLF line ends, the CR and LF in different pieces.
        send("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"two\"}]}}]}\r"),
        pause_ms(20),
        send("\n\r\n"),
        // Multi-line data: the lines are joined with LF, still one JSON value.
        send("data: {\"candidates\": [{\"content\":\ndata:  {\"parts\": [{\"text\": \"three\"}]}}]}\n"),
        send("\nid: 4\nevent: message\n"),
        send("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"four\"}]}}]}\n\n"),
        // The last event has no blank line after it.
        send("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"five\"}]}}]}"),
    ]);
    let chunks = chunks_of(steps).await;
    let texts: Vec<String> = chunks
        .into_iter()
        .map(|c| {
            c.unwrap()["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four", "five"]);
}

#[tokio::test]
async fn stream_and_generate_use_the_model_path_and_send_the_body() {
    let (base, seen) = recording(|uri, _| {
        if uri.contains("stream") {
            scripted(vec![send(event(&text_chunk("s")))])
        } else {
            json_resp(200, &text_chunk("g"))
        }
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let answer = generate_content(&client, "models/gemini-x", &body())
        .await
        .unwrap();
    assert_eq!(answer, text_chunk("g"));
    let answer = generate_content(&client, "gemini-x", &body())
        .await
        .unwrap();
    assert_eq!(answer, text_chunk("g"));
    let chunks = streamed(&client, "gemini-x").await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].as_ref().unwrap(), &text_chunk("s"));
    let seen = seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/models/gemini-x:generateContent",
            "/v1/models/gemini-x:generateContent",
            "/v1/models/gemini-x:streamGenerateContent?alt=sse"
        ]
    );
    for (_, headers, json) in seen.iter() {
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(serde_json::from_slice::<Value>(json).unwrap(), body());
    }
}

#[tokio::test]
async fn google_error_statuses_become_typed_api_errors() {
    for (status, text) in [
        (400, "INVALID_ARGUMENT"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
    ] {
        let base =
            serve(move |_req| async move { google_error(status, text, "the server says no") })
                .await;
        let (_dir, _tokens, client) = client_for(&base).await;
        for err in [
            generate_content(&client, "m", &body()).await.unwrap_err(),
            stream_generate_content(&client, "m", &body())
                .await
                .unwrap_err(),
        ] {
            let Error::Api(api) = &err else {
                panic!("{err:?}")
            };
            assert_eq!(api.status, status);
            assert_eq!(api.status_text.as_deref(), Some(text));
            assert_eq!(api.message, "the server says no");
            assert_eq!(err.is_transient(), status != 400, "{err}");
            assert_no_secrets(&format!("{err} {err:?}"));
        }
    }
}

#[tokio::test]
async fn an_error_event_mid_stream_is_a_typed_api_error_and_ends_the_stream() {
    let chunks = chunks_of(vec![
        send(event(&text_chunk("partial"))),
        send(event(&json!({"error": {
            "code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"
        }}))),
        send(event(&text_chunk("never handed on"))),
    ])
    .await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(chunks[0].as_ref().unwrap(), &text_chunk("partial"));
    let Err(Error::Api(api)) = &chunks[1] else {
        panic!("{:?}", chunks[1])
    };
    assert_eq!(api.status, 503);
    assert_eq!(api.status_text.as_deref(), Some("UNAVAILABLE"));
    assert!(chunks[1].as_ref().unwrap_err().is_transient());
}

#[tokio::test]
async fn a_malformed_event_is_a_typed_error_without_its_content() {
    let chunks = chunks_of(vec![
        send(event(&text_chunk("ok"))),
        send("data: {\"candidates\": SECRETCONTENT}\n\n"),
        send(event(&text_chunk("never handed on"))),
    ])
    .await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    let err = chunks[1].as_ref().unwrap_err();
    assert!(
        matches!(err, Error::EventStream { problem, .. } if problem.contains("not JSON")),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("SECRETCONTENT"));

    // Invalid UTF-8 in an event is typed too.
    let chunks = chunks_of(vec![send(b"data: \xff\xfe\n\n")]).await;
    assert!(
        matches!(&chunks[..], [Err(Error::EventStream { problem, .. })] if problem.contains("UTF-8")),
        "{chunks:?}"
    );
}

#[tokio::test]
async fn a_stream_cut_mid_event_is_a_typed_error() {
    // The body ends (cleanly) in the middle of an event's JSON.
    let chunks = chunks_of(vec![
        send(event(&text_chunk("ok"))),
        send("data: {\"candidates\": [{\"content\""),
    ])
    .await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert!(
        matches!(&chunks[1], Err(Error::EventStream { problem, .. }) if problem.contains("ended in the middle")),
        "{chunks:?}"
    );

    // The connection drops in the middle of an event.
    let chunks = chunks_of(vec![
        send(event(&text_chunk("ok"))),
        send("data: {\"candi"),
        pause_ms(50),
        Step::Cut,
    ])
    .await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    let err = chunks[1].as_ref().unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn caller_headers_are_kept_and_ours_replace_theirs() {
    let (base, seen) = recording(|_, _| json_resp(200, &json!({}))).await;
    let (dir, _tokens) = TempLoader::signed_in().await;
    let client = dir
        .loader()
        .api_base(format!("{base}/v1"))
        .quota_project("ours-project")
        .load()
        .await
        .unwrap()
        .authorized_client();
    let req = http::Request::post(client.api_url("models/m:countTokens"))
        .header("x-custom", "kept")
        .header("authorization", "Bearer CALLERTOKEN")
        .header("x-goog-user-project", "caller-project")
        .header("x-goog-user-project", "caller-project-2")
        .header("content-type", "application/json")
        .body(BODY)
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (_, headers, _) = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["x-custom"], "kept");
    let auth: Vec<_> = headers.get_all("authorization").iter().collect();
    assert_eq!(auth, [format!("Bearer {OLD_ACCESS}").as_str()]);
    let projects: Vec<_> = headers.get_all("x-goog-user-project").iter().collect();
    assert_eq!(projects, ["ours-project"]);
    assert_eq!(headers["content-length"], BODY.len().to_string().as_str());
}

/// A server answering 401 to the old token and 200 to the new one,
/// counting requests.
async fn rejecting_old_token() -> (String, Seen) {
    recording(|_, headers| {
        if headers["authorization"]
            .to_str()
            .unwrap()
            .contains(OLD_ACCESS)
        {
            google_error(401, "UNAUTHENTICATED", "revoked")
        } else {
            json_resp(200, &json!({"ok": true}))
        }
    })
    .await
}

#[tokio::test]
async fn a_401_is_retried_for_bytes_and_returned_as_is_for_a_streamed_body() {
    let (base, count) = rejecting_old_token().await;
    let (_dir, tokens, client) = client_for(&base).await;
    let url = client.api_url("models/m:generateContent");
    // A streamed body cannot be sent twice: the first 401 comes back.
    let stream = futures_util::stream::iter([Ok(bytes::Bytes::from_static(BODY.as_bytes()))]);
    let req = http::Request::post(&url)
        .body(RequestBody::from_stream(stream, None))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(count.lock().unwrap().len(), 1);
    assert_eq!(token_requests(&tokens).await, 0);
    // Bytes are sent again with a new token.
    let req = http::Request::post(&url).body(BODY).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect_bytes(1024).await.unwrap();
    assert_eq!(&body[..], br#"{"ok":true}"#);
    assert_eq!(count.lock().unwrap().len(), 3);
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test]
async fn a_streamed_file_body_arrives_whole_with_its_length() {
    let (base, seen) = recording(|_, _| json_resp(200, &json!({}))).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let req = http::Request::put(client.api_url("anything"))
        .body(RequestBody::from_path(&path).await.unwrap())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
    let (_, headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        headers["content-length"],
        content.len().to_string().as_str()
    );
    assert_eq!(sha256_hex(&body), sha256_hex(&content));
    let missing = RequestBody::from_path(dir.path().join("missing")).await;
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
}

/// A FIFO with no writer is refused at once: opening it for reading would
/// wait for a writer, on a blocking thread nothing frees.
#[cfg(unix)]
#[tokio::test]
async fn a_fifo_body_is_refused_never_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let opened = RequestBody::from_path(&fifo);
    let Ok(body) = tokio::time::timeout(std::time::Duration::from_secs(5), opened).await else {
        // Free the open waiting for a writer, so the runtime can shut down.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo));
        panic!("RequestBody::from_path hung on a FIFO");
    };
    let err = body.unwrap_err();
    assert!(
        matches!(&err, Error::NotAFile { path, kind: FileKind::Fifo, .. } if path == &fifo),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("a FIFO, not a regular file"), "{text}");
    assert!(text.contains("RequestBody::from_stream"), "{text}");
}

/// A directory (or a device) is refused when the body is made, not once it
/// is sent. (Windows refuses to open a directory at all: `Error::Io`.)
#[cfg(unix)]
#[tokio::test]
async fn a_directory_or_device_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (path, want) in [
        (dir.path(), FileKind::Directory),
        (std::path::Path::new("/dev/null"), FileKind::Device),
    ] {
        let err = RequestBody::from_path(path).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotAFile { path: p, kind, .. } if p == path && *kind == want),
            "{path:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn collect_bytes_refuses_more_than_its_cap() {
    let base = serve(|_req| async { json_resp(200, &json!({"padding": "x".repeat(5000)})) }).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let resp = client
        .request(
            http::Request::get(client.api_url("models"))
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    let err = resp.into_body().collect_bytes(1000).await.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 1000, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn bodies_and_streams_never_show_url_queries_or_content() {
    let base = sse_server(vec![send(event(&text_chunk("SECRETCONTENT")))]).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let req = http::Request::get(format!("{base}/v1/models?key=KEYSECRET"))
        .body(RequestBody::from("SECRETCONTENT"))
        .unwrap();
    let debug_req = format!("{:?}", req.body());
    let resp = client.request(req).await.unwrap();
    let debug_resp = format!("{:?} {client:?}", resp.body());
    assert!(
        debug_resp.contains(&format!("{base}/v1/models")),
        "{debug_resp}"
    );
    let stream = stream_generate_content(&client, "m", &body())
        .await
        .unwrap();
    let debug_stream = format!("{stream:?}");
    for text in [debug_req, debug_resp, debug_stream] {
        assert!(!text.contains("SECRET"), "{text}");
        assert_no_secrets(&text);
    }
}

#[tokio::test]
async fn an_answer_that_is_not_an_event_stream_is_an_error_naming_what_came() {
    // A gateway that drops `alt=sse` answers one JSON document with 200.
    let base = serve(|_req| async {
        json_resp(
            200,
            &json!({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}),
        )
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let err = stream_generate_content(&client, "m", &body())
        .await
        .expect_err("a JSON answer is not a stream of chunks");
    let text = err.to_string();
    assert!(matches!(err, Error::EventStream { .. }), "{err:?}");
    assert!(text.contains("application/json"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");

    // An answer without any Content-Type is not taken for a stream either.
    let base = serve(|_req| async {
        let mut r = scripted(vec![send(event(&text_chunk("x")))]);
        r.headers_mut().remove("content-type");
        r
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let err = stream_generate_content(&client, "m", &body())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no content-type"), "{err}");

    // Parameters and case do not matter.
    let base = serve(|_req| async {
        let mut r = scripted(vec![send(event(&text_chunk("ok")))]);
        r.headers_mut().insert(
            "content-type",
            "Text/Event-Stream; charset=utf-8".parse().unwrap(),
        );
        r
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    assert_eq!(streamed(&client, "m").await.len(), 1);
}

/// A server that answers the first `failures` requests with `status` (and
/// `Retry-After: 1` when asked), then with `then`; counts requests.
async fn failing_first(
    failures: usize,
    status: u16,
    retry_after: bool,
    then: fn() -> Resp,
) -> (String, Arc<Mutex<usize>>) {
    let count = Arc::new(Mutex::new(0usize));
    let seen = Arc::clone(&count);
    let base = serve(move |_req| {
        let n = {
            let mut c = seen.lock().unwrap();
            *c += 1;
            *c
        };
        async move {
            if n > failures {
                return then();
            }
            let mut r = google_error(status, "UNAVAILABLE", "try again later");
            if retry_after {
                r.headers_mut().insert("retry-after", "1".parse().unwrap());
            }
            r
        }
    })
    .await;
    (base, count)
}

#[tokio::test]
async fn list_models_is_retried_after_a_503() {
    let (base, count) = failing_first(1, 503, false, || {
        json_resp(200, &json!({"models": [{"name": "models/m"}]}))
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let models = gemini_oauth::gemini::list_models(&client).await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(*count.lock().unwrap(), 2);
}

#[tokio::test]
async fn generation_is_retried_only_when_the_caller_opts_in_and_after_retry_after() {
    let answer = || json_resp(200, &json!({"candidates": []}));
    // Without the opt-in: one request, the 429 is the caller's.
    let (base, count) = failing_first(1, 429, true, answer).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let err = generate_content(&client, "m", &body()).await.unwrap_err();
    assert!(matches!(&err, Error::Api(e) if e.status == 429), "{err:?}");
    assert_eq!(*count.lock().unwrap(), 1);

    // With it: the 429's Retry-After (1 s) is waited out, then the answer.
    let (base, count) = failing_first(1, 429, true, answer).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client =
        client.retry(gemini_oauth::RetryPolicy::default().base_delay(std::time::Duration::ZERO));
    let started = std::time::Instant::now();
    let got = generate_content(&client, "m", &body()).await.unwrap();
    assert_eq!(got, json!({"candidates": []}));
    assert_eq!(*count.lock().unwrap(), 2);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "Retry-After honoured"
    );

    // A stream: retried before any output, by the same opt-in.
    let (base, count) = failing_first(2, 503, false, || {
        scripted(vec![send(event(&text_chunk("after two 503s")))])
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.retry(gemini_oauth::RetryPolicy::default());
    let chunks = streamed(&client, "m").await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].as_ref().unwrap(), &text_chunk("after two 503s"));
    assert_eq!(*count.lock().unwrap(), 3);

    // Attempts are bounded: the last 503 is returned.
    let (base, count) = failing_first(10, 503, false, answer).await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.retry(gemini_oauth::RetryPolicy::default().attempts(2));
    let err = generate_content(&client, "m", &body()).await.unwrap_err();
    assert!(matches!(&err, Error::Api(e) if e.status == 503), "{err:?}");
    assert_eq!(*count.lock().unwrap(), 2);
}

#[tokio::test]
async fn a_get_is_retried_after_the_api_drops_the_connection() {
    let count = Arc::new(Mutex::new(0usize));
    let seen = Arc::clone(&count);
    let base = serve(move |_req| {
        let n = {
            let mut c = seen.lock().unwrap();
            *c += 1;
            *c
        };
        async move {
            match n {
                1 => drop_connection(),
                _ => json_resp(200, &json!({"models": [{"name": "models/m"}]})),
            }
        }
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let models = gemini_oauth::gemini::list_models(&client).await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(*count.lock().unwrap(), 2);
}
