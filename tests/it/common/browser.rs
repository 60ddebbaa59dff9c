//! A stand-in for the user's browser: plain HTTP GETs that do not follow redirects.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

pub async fn get(url: &str) -> Page {
    send(http::Method::GET, url).await
}

/// A request with any method and no body.
pub async fn send(method: http::Method, url: &str) -> Page {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .body(Empty::new())
        .expect("a valid request");
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        location,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Query parameter `key` of `url`.
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}
