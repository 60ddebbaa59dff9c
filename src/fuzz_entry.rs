//! Entry points of the fuzz targets in `fuzz/` (compiled only under
//! `--cfg fuzzing`, which `cargo fuzz` sets): each hands outside input to
//! the parser that reads it in real use, and checks the few properties that
//! hold for every input. Not part of the API.

// A test harness: its arithmetic is on constants and fuzzer-sized lengths.
#![allow(clippy::arithmetic_side_effects)]

use std::borrow::Cow;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_core::Stream;
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::consent::redirect;
use crate::gemini::events::ContentStream;
use crate::proxy::Proxy;
use crate::source::external_account::{aws, config::Format, executable, sigv4};
use crate::{ApiError, ClientSecret, StoredToken};

/// Secrets in the seed corpora contain this; a parsed secret that does must
/// not show in `Debug` unless a shown field holds it too.
const MARKER: &str = "FUZZSECRET";
/// The `state` the redirect and the pasted line are checked against.
const STATE: &str = "fuzzstate";
/// A fixed "now" (2027-01-15), so that a finding replays the same way.
const NOW_SECS: u64 = 1_800_000_000;

fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The input's NUL-separated parts (JSON and URLs hold no raw NUL), with
/// `""` for the missing ones.
fn parts<const N: usize>(data: &[u8]) -> [Cow<'_, str>; N] {
    let mut split = data.split(|&b| b == 0);
    std::array::from_fn(|_| text(split.next().unwrap_or_default()))
}

fn assert_hidden(debug: &str, secret: Option<&str>, shown: &[&str]) {
    if let Some(s) = secret
        && s.contains(MARKER)
        && !shown.iter().any(|f| f.contains(MARKER))
    {
        assert!(!debug.contains(MARKER), "a secret shows in {debug}");
    }
}

/// `client_secret.json`.
pub fn client_secret(data: &[u8]) {
    match ClientSecret::from_json(data) {
        Ok(c) => {
            let mut shown = vec![c.client_id(), c.auth_endpoint(), c.token_endpoint()];
            shown.extend(c.redirect_uris().iter().map(String::as_str));
            shown.extend(c.project_id());
            assert_hidden(&format!("{c:?}"), Some(c.client_secret()), &shown);
        }
        Err(e) => drop(e.to_string()),
    }
}

/// `token.json`: what is read is written back in a form that reads the same.
pub fn token_json(data: &[u8]) {
    let record = match StoredToken::from_json(data) {
        Ok(r) => r,
        Err(e) => return drop(e.to_string()),
    };
    let debug = format!("{record:?}");
    let mut shown: Vec<&str> = [record.client_id(), record.token_uri()]
        .into_iter()
        .flatten()
        .collect();
    shown.extend(
        record
            .scopes()
            .unwrap_or_default()
            .iter()
            .map(String::as_str),
    );
    shown.extend(record.extra_keys().map(String::as_str));
    for secret in [
        record.access_token(),
        record.refresh_token(),
        record.client_secret(),
    ] {
        assert_hidden(&debug, secret, &shown);
    }
    let _ = record.is_usable();
    let _ = record.missing_scopes(&[crate::scopes::CLOUD_PLATFORM.to_owned()]);
    let written = record.to_json();
    let again = StoredToken::from_json(written.as_bytes())
        .unwrap_or_else(|e| panic!("token.json written from a read file does not read: {e}"));
    assert_eq!(
        again.to_json(),
        written,
        "token.json changes on a second round"
    );
}

/// An Application Default Credentials file of any type.
pub fn adc(data: &[u8]) {
    if let Err(e) = crate::adc::parse(data, Path::new("fuzz.json")) {
        drop(e.to_string());
    }
}

/// What a credential-source executable prints.
pub fn executable_output(data: &[u8]) {
    if data.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for now in [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(NOW_SECS),
        UNIX_EPOCH + Duration::from_secs(1 << 40),
    ] {
        let _ = executable::parse_response(&value, now);
    }
}

/// The first two bytes as an HTTP status, the rest as the body.
fn status_and_body(data: &[u8]) -> (u16, &[u8]) {
    match data {
        [a, b, body @ ..] => (u16::from_be_bytes([*a, *b]) % 600, body),
        _ => (200, data),
    }
}

/// The token endpoint's, STS's and the metadata server's answers.
pub fn token_response(data: &[u8]) {
    let (status, body) = status_and_body(data);
    let uri = "https://oauth2.googleapis.com/token";
    match crate::token_endpoint::parse_response(uri, status, body) {
        Ok(answer) => {
            let _ = answer.expires_at();
            let secret = SecretString::from("s");
            let mut record = StoredToken::new_user("id", &secret, uri);
            answer.apply_to(&mut record);
            let _ = record.to_json();
        }
        Err(e) => drop(e.to_string()),
    }
    // The metadata server's `universe/universe-domain` answer.
    let domain = text(body);
    let _ = crate::universe::Universe::from_origin(domain.trim(), "the metadata server");
}

/// The IAM Credentials `generateAccessToken` answer.
pub fn iam_response(data: &[u8]) {
    let (status, body) = status_and_body(data);
    match crate::source::impersonated::parse_answer(status, body) {
        Ok(fetched) => drop(fetched.token.expose_secret().len()),
        Err(e) => drop(e.to_string()),
    }
}

/// A Google API error body.
pub fn api_error(data: &[u8]) {
    let (status, body) = status_and_body(data);
    let e = ApiError::from_body(
        "https://generativelanguage.googleapis.com/v1/x",
        status,
        body,
    );
    assert!(
        e.message.len() <= 1000 + '…'.len_utf8(),
        "message not capped"
    );
    let _ = e.hint();
    drop(e.to_string());
}

/// The subject token in a file's or a URL's answer: the first byte picks
/// the `format` (text, or JSON with the field named by the first part).
pub fn subject_token(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        let _ = Format::Text.extract(rest);
    } else {
        let (field, content) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (text(&rest[..i]).into_owned(), &rest[i + 1..]),
            None => ("access_token".to_owned(), rest),
        };
        let _ = Format::Json { field }.extract(content);
    }
}

/// Server-sent events, cut into pieces at every `1 + data[0]` bytes: the
/// events must not depend on where the network cut the body.
pub fn sse(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = events(vec![Bytes::copy_from_slice(body)]);
    let pieces = events(
        body.chunks(usize::from(step) + 1)
            .map(Bytes::copy_from_slice)
            .collect(),
    );
    assert_eq!(whole, pieces, "the events depend on how the body was cut");
}

fn events(chunks: Vec<Bytes>) -> Vec<Result<Value, String>> {
    let input = futures_util::stream::iter(chunks.into_iter().map(Ok));
    let mut stream = ContentStream::from_chunks(input, "https://example.com/v1/x:stream");
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    // Every piece is there already: the stream never waits.
    while let Poll::Ready(Some(item)) = Pin::new(&mut stream).poll_next(&mut cx) {
        out.push(item.map_err(|e| e.to_string()));
    }
    out
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// The bytes a browser sends to the consent flow's loopback redirect, read
/// by the real server (hyper's request parsing, then ours), and the same
/// bytes as a line pasted on a machine without a browser.
pub fn redirect(data: &[u8]) {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let (mut browser, server) = tokio::io::duplex(64 * 1024);
            let expected = Arc::new(SecretString::from(STATE));
            let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let served = redirect::serve_one(TokioIo::new(server), expected, &asked);
            let sent = async move {
                let _ = browser.write_all(data).await;
                let _ = browser.shutdown().await;
                let mut page = Vec::new();
                let _ = browser.read_to_end(&mut page).await;
                page
            };
            let (_callback, _page) = tokio::join!(served, sent);
        });
    });
    let _ = redirect::parse_pasted(&text(data), STATE);
}

/// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, a destination and
/// a proxy URL given to the loader, as NUL-separated parts.
pub fn proxy(data: &[u8]) {
    let [https, http, all, no, dst, one] = parts::<6>(data);
    // Values too long for SOCKS5 credentials are refused: an error is an answer too.
    let proxy = Proxy::from_vars(|name| {
        match name {
            "HTTPS_PROXY" => Some(&https),
            "HTTP_PROXY" => Some(&http),
            "ALL_PROXY" => Some(&all),
            "NO_PROXY" => Some(&no),
            _ => None,
        }
        .map(|v| v.to_string())
    });
    let proxy = match proxy {
        Ok(proxy) => proxy,
        Err(e) => return drop(e.to_string()),
    };
    let _ = format!("{proxy:?}");
    for dst in [
        dst.as_ref(),
        "https://oauth2.googleapis.com/token",
        "http://127.0.0.1:8080/token",
        "http://[::1]/",
    ] {
        let Ok(uri) = dst.parse::<http::Uri>() else {
            continue;
        };
        let _ = proxy.intercept(&uri);
        let mut req = http::Request::new(());
        *req.uri_mut() = uri;
        proxy.authorize(&mut req);
    }
    if let Err(e) = Proxy::from_url(&one) {
        drop(e.to_string());
    }
}

/// URLs as messages show them, and the endpoint check: the userinfo, query
/// and fragment never show.
pub fn url(data: &[u8]) {
    let url = text(data);
    let shown = crate::url::redact(&url);
    assert!(!shown.contains(['?', '#']), "{shown:?} shows a query");
    if let Some((scheme, rest)) = shown.split_once("://")
        && !scheme.contains('/')
    {
        let authority = rest.split('/').next().unwrap_or_default();
        assert!(!authority.contains('@'), "{shown:?} shows userinfo");
    }
    if let Err(e) = crate::url::check_endpoint(&url) {
        drop(e.to_string());
    }
    let _ = crate::url::is_loopback(&url);
    let _ = crate::url::join(&url, &url);
}

/// The AWS instance metadata's answers (availability zone, role name, the
/// role's credentials), then the signed request they feed, with the file's
/// verification URL and audience: NUL-separated parts.
pub fn aws(data: &[u8]) {
    let [zone, role, creds, verification_url, audience] = parts::<5>(data);
    let region = aws::region_of_zone(&zone).unwrap_or("us-east-1");
    let _ = aws::role_name(&role);
    let keys = aws::keys_from_json(&creds).unwrap_or_else(|_| sigv4::AwsKeys {
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: SecretString::from("secret"),
        session_token: None,
    });
    let url = verification_url.replace("{region}", region);
    let now = time::OffsetDateTime::from_unix_timestamp(NOW_SECS as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let _ = sigv4::signed_get_caller_identity(&keys, region, &url, &audience, now);
}
