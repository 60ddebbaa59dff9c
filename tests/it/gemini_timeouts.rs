//! Timeouts that fit model calls (a 35 s generation and a 35 s pause pass
//! with the defaults; the old 30 s whole-request limit failed them), limits
//! a caller sets, and a streamed answer that is never buffered whole.

use std::sync::Arc;
use std::time::Duration;

use crate::common::gemini_server::*;
use crate::gemini_stream::{client_for, sse_server};
use futures_util::StreamExt;
use gemini_oauth::Error;
use gemini_oauth::gemini::{generate_content, stream_generate_content};
use serde_json::json;

fn body() -> serde_json::Value {
    json!({"contents": [{"parts": [{"text": "think hard"}]}]})
}

/// A stream server: the event `before`, a pause of `secs`, the event `after`.
async fn pausing(secs: u64, after: &str) -> String {
    sse_server(vec![
        send(event(&text_chunk("before"))),
        Step::Pause(Duration::from_secs(secs)),
        send(event(&text_chunk(after))),
    ])
    .await
}

#[tokio::test]
async fn a_35_s_generation_succeeds_with_the_default_limits() {
    let base = serve(|_req| async {
        tokio::time::sleep(Duration::from_secs(35)).await;
        json_resp(200, &text_chunk("done thinking"))
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let answer = generate_content(&client, "m", &body()).await.unwrap();
    assert_eq!(answer, text_chunk("done thinking"));
    // Limits too large to add to the clock mean none, not a panic.
    let answer = generate_content(
        &client.timeout(Duration::MAX).idle_timeout(Duration::MAX),
        "m",
        &body(),
    )
    .await
    .unwrap();
    assert_eq!(answer, text_chunk("done thinking"));
}

#[tokio::test]
async fn a_stream_with_a_35_s_pause_succeeds_with_the_default_limits() {
    let base = pausing(35, "after").await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let chunks: Vec<_> = stream_generate_content(&client, "m", &body())
        .await
        .unwrap()
        .collect()
        .await;
    let chunks: Vec<_> = chunks.into_iter().map(Result::unwrap).collect();
    assert_eq!(chunks, [text_chunk("before"), text_chunk("after")]);
}

#[tokio::test]
async fn the_idle_limit_bounds_the_wait_for_the_response_head() {
    let base = serve(|_req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        json_resp(200, &text_chunk("too late"))
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.idle_timeout(Duration::from_millis(300));
    let body = body();
    let call = generate_content(&client, "m", &body);
    let err = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the idle limit fired, not the test's guard")
        .unwrap_err();
    let Error::Timeout { what, after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, Duration::from_millis(300));
    assert_eq!(
        what,
        &format!("waiting for the response head of {base}/v1/models/m:generateContent")
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_idle_limit_fires_between_pieces_of_a_stream() {
    let base = pausing(20, "too late").await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.idle_timeout(Duration::from_millis(300));
    let mut chunks = stream_generate_content(&client, "m", &body())
        .await
        .unwrap();
    assert_eq!(chunks.next().await.unwrap().unwrap(), text_chunk("before"));
    let err = chunks.next().await.unwrap().unwrap_err();
    let Error::Timeout { what, after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, Duration::from_millis(300));
    assert_eq!(
        what,
        &format!(
            "waiting for the next bytes of the answer from {base}/v1/models/m:streamGenerateContent"
        )
    );
    assert!(err.is_transient());
    assert!(
        chunks.next().await.is_none(),
        "the stream ends after an error"
    );
}

#[tokio::test]
async fn a_per_request_limit_fires_during_the_head_and_during_the_body() {
    // Pieces keep coming (so the idle limit never fires) for longer than the limit.
    let base = serve(|req| async move {
        if req.uri().path().contains("slow-head") {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        let mut steps = Vec::new();
        for _ in 0..200 {
            steps.push(send(event(&text_chunk("tick"))));
            steps.push(pause_ms(100));
        }
        scripted(steps)
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let client = client.timeout(Duration::from_millis(800));
    let mut chunks = stream_generate_content(&client, "m", &body())
        .await
        .unwrap();
    let mut ticks = 0;
    let err = loop {
        match chunks.next().await.unwrap() {
            Ok(_) => ticks += 1,
            Err(e) => break e,
        }
    };
    assert!(ticks >= 1, "some pieces arrived before the limit");
    assert!(
        matches!(&err, Error::Timeout { what, after, .. }
            if what.starts_with("the request to ") && *after == Duration::from_millis(800)),
        "{err:?}"
    );
    // Before the answer's head, the same limit.
    let err = stream_generate_content(&client, "slow-head", &body())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { what, .. } if what.contains("slow-head")),
        "{err:?}"
    );
    // And the buffered helpers too.
    let err = generate_content(&client, "slow-head", &body())
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Timeout { .. }), "{err:?}");
}

/// The server sends 64 MiB in 1 MiB pieces, each only after the reader has
/// received the one before: a client that buffered the whole body before
/// handing it on would wait forever (the test's own timeout fails it).
#[tokio::test]
async fn a_response_streamed_to_its_end_is_not_buffered() {
    const MIB: usize = 1024 * 1024;
    const PIECES: usize = 64;
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let server_permits = Arc::clone(&permits);
    let base = serve(move |_req| {
        let permits = Arc::clone(&server_permits);
        async move {
            let piece = bytes::Bytes::from(vec![b'x'; MIB]);
            let stream = futures_util::stream::iter(0..PIECES).then(move |_| {
                let permits = Arc::clone(&permits);
                let piece = piece.clone();
                async move {
                    permits.acquire().await.unwrap().forget();
                    Ok::<_, std::io::Error>(hyper::body::Frame::data(piece))
                }
            });
            http::Response::new(http_body_util::BodyExt::boxed(
                http_body_util::StreamBody::new(stream),
            ))
        }
    })
    .await;
    let (_dir, _tokens, client) = client_for(&base).await;
    let resp = client
        .request(http::Request::get(client.api_url("big")).body(()).unwrap())
        .await
        .unwrap();
    let mut stream = resp.into_body().into_stream();
    let mut received = 0usize;
    let mut released = 1usize;
    let read_all = async {
        while let Some(piece) = stream.next().await {
            received += piece.unwrap().len();
            while received >= released * MIB && released < PIECES {
                permits.add_permits(1);
                released += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read_all)
        .await
        .expect("the body was handed on as it arrived");
    assert_eq!(received, PIECES * MIB);
    assert_eq!(released, PIECES);
}
