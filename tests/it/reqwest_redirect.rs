//! The reqwest adapter and redirects, against two loopback servers on
//! different ports (two origins): our credentials (the token, the API key,
//! the quota project) reach the first only; a redirect within one origin
//! keeps them.

use std::sync::{Arc, Mutex};

use http::header::HeaderMap;
use serde_json::json;

use crate::common::gemini_server::{Resp, json_resp, serve};
use crate::common::*;
use gemini_oauth::reqwest::{AuthMiddleware, redirect_policy};
use gemini_oauth::{CredentialLoader, Credentials};

const API_KEY: &str = "AIzaAPIKEYMARKER";
const QUOTA: &str = "quota-proj-marker";

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A server answering `/v1/...` with a redirect to `to` + the same path
/// (`/local` redirects within the server), anything else with 200; it
/// records every request's path and headers.
async fn server(to: Option<String>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let base = serve(move |req: http::Request<hyper::body::Incoming>| {
        let log = Arc::clone(&log);
        let to = to.clone();
        async move {
            let path = req.uri().path().to_owned();
            log.lock()
                .unwrap()
                .push((path.clone(), req.headers().clone()));
            let redirect = |location: String| -> Resp {
                let mut r = json_resp(302, &json!({}));
                r.headers_mut()
                    .insert("location", location.parse().unwrap());
                r
            };
            match (path.as_str(), to) {
                ("/local", _) => redirect("/v1/here".into()),
                (p, Some(to)) if p.starts_with("/v1/") => redirect(format!("{to}{p}")),
                _ => json_resp(200, &json!({"at": path})),
            }
        }
    })
    .await;
    (base, seen)
}

fn client(
    creds: Credentials,
    policy: reqwest::redirect::Policy,
) -> reqwest_middleware::ClientWithMiddleware {
    // No provider installed here: loading `creds` made ring's the default.
    let reqwest = reqwest::Client::builder().redirect(policy).build().unwrap();
    reqwest_middleware::ClientBuilder::new(reqwest)
        .with(AuthMiddleware::new(creds))
        .build()
}

fn carries_ours(headers: &HeaderMap) -> bool {
    ["authorization", "x-goog-api-key", "x-goog-user-project"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

async fn api_key_creds() -> Credentials {
    CredentialLoader::api_key(API_KEY)
        .quota_project(QUOTA)
        .load()
        .await
        .unwrap()
}

/// A redirect that another origin's server answers, followed by the client.
async fn cross_origin(creds: Credentials, policy: reqwest::redirect::Policy) -> (Seen, Seen) {
    let (other, other_seen) = server(None).await;
    let (first, first_seen) = server(Some(other.clone())).await;
    let resp = client(creds, policy)
        .get(format!("{first}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.url().as_str(), format!("{other}/v1/models"));
    (first_seen, other_seen)
}

#[tokio::test]
async fn a_redirect_to_another_origin_carries_none_of_our_credentials() {
    for policy in [redirect_policy(), reqwest::redirect::Policy::none()] {
        let (first, other) = cross_origin(api_key_creds().await, policy).await;
        let first = first.lock().unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1["x-goog-api-key"], API_KEY);
        assert_eq!(first[0].1["x-goog-user-project"], QUOTA);
        let other = other.lock().unwrap();
        assert_eq!(other.len(), 1);
        assert!(!carries_ours(&other[0].1), "{:?}", other[0].1);
    }
    // A token, too.
    let (dir, _tokens) = TempLoader::signed_in().await;
    let creds = dir.loader().load().await.unwrap();
    let (first, other) = cross_origin(creds, redirect_policy()).await;
    assert!(first.lock().unwrap()[0].1.contains_key("authorization"));
    assert!(!carries_ours(&other.lock().unwrap()[0].1));
}

#[tokio::test]
async fn a_redirect_within_the_origin_keeps_the_credentials_and_one_elsewhere_can_be_returned() {
    let (base, seen) = server(None).await;
    let resp = client(api_key_creds().await, redirect_policy())
        .get(format!("{base}/local"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0, "/v1/here");
    assert_eq!(seen[1].1["x-goog-api-key"], API_KEY);
    // follow_redirects(false): the caller gets the redirect.
    let (other, other_seen) = server(None).await;
    let (first, _) = server(Some(other)).await;
    let reqwest = reqwest::Client::builder()
        .redirect(redirect_policy())
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest)
        .with(AuthMiddleware::new(api_key_creds().await).follow_redirects(false))
        .build();
    let resp = client
        .get(format!("{first}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert!(other_seen.lock().unwrap().is_empty());
}

/// A server where `/hop/N` redirects to `/hop/N-1` and `/hop/0` answers 200;
/// `/post` answers a POST with its body.
async fn hops() -> String {
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().to_owned();
        if path == "/post" {
            use http_body_util::BodyExt;
            let method = req.method().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            return json_resp(
                200,
                &json!({"method": method, "body": String::from_utf8_lossy(&body)}),
            );
        }
        let n: u32 = path.trim_start_matches("/hop/").parse().unwrap_or(0);
        if n == 0 {
            return json_resp(200, &json!({}));
        }
        let mut r = json_resp(302, &json!({}));
        r.headers_mut()
            .insert("location", format!("/hop/{}", n - 1).parse().unwrap());
        r
    })
    .await
}

#[tokio::test]
async fn ten_redirects_within_the_origin_are_followed_as_reqwest_does() {
    let base = hops().await;
    for policy in [reqwest::redirect::Policy::default(), redirect_policy()] {
        let resp = client(api_key_creds().await, policy)
            .get(format!("{base}/hop/10"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.url().path().ends_with("/hop/0"));
    }
    // The eleventh is refused.
    let err = client(api_key_creds().await, redirect_policy())
        .get(format!("{base}/hop/11"))
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
}

#[tokio::test]
async fn a_307_to_another_origin_repeats_the_post_with_its_body_without_credentials() {
    let other = hops().await;
    let first = serve(move |_req: http::Request<hyper::body::Incoming>| {
        let other = other.clone();
        async move {
            let mut r = json_resp(307, &json!({}));
            r.headers_mut()
                .insert("location", format!("{other}/post").parse().unwrap());
            r
        }
    })
    .await;
    let resp = client(api_key_creds().await, redirect_policy())
        .post(format!("{first}/v1/x"))
        .body("BODY-MARKER")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], "BODY-MARKER");
}

#[tokio::test]
async fn a_304_or_300_with_a_location_elsewhere_is_returned_not_followed() {
    for status in [304u16, 300] {
        let (other, other_seen) = server(None).await;
        let first = serve(move |_req: http::Request<hyper::body::Incoming>| {
            let other = other.clone();
            async move {
                let mut r = json_resp(status, &json!({}));
                r.headers_mut()
                    .insert("location", format!("{other}/v1/x").parse().unwrap());
                r
            }
        })
        .await;
        let resp = client(api_key_creds().await, redirect_policy())
            .get(format!("{first}/v1/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert!(other_seen.lock().unwrap().is_empty(), "{status} followed");
    }
}
