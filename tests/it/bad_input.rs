//! Property tests: no input, however malformed, makes the public parsers
//! panic, and what they accept they describe faithfully.
//!
//! Inputs are arbitrary bytes, arbitrary JSON, JSON shaped like the real
//! files (the real field names with values of every type) so that the
//! parsers' deeper branches run, and byte-level mutations of all of these.

use gemini_oauth::gemini::{self, ApiError};
use gemini_oauth::{ClientKind, ClientSecret, Error, StoredToken};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

const CASES: u32 = 512;

/// Secrets generated below all contain this; no other generator can produce it
/// (the random strings are lowercase or drawn from `\PC`, vanishingly unlikely to spell it).
const MARKER: &str = "SECRETMARKER";

// ---------------------------------------------------------------- generators

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9._/:-]{0,16}",
        2 => "\\PC{0,24}",
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => select(vec![" ", "\u{0}", "\"", "\\", "\u{7f}", "\u{fffd}", "😀", "\u{2028}"])
            .prop_map(str::to_owned),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "installed", "web", "client_id", "client_secret", "auth_uri", "token_uri",
            "redirect_uris", "project_id", "type", "private_key", "token", "refresh_token",
            "scopes", "expiry", "rapt_token", "universe_domain", "account", "quota_project_id",
            "error", "message", "code", "status", "details", "reason",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_@]{1,12}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // non-finite becomes null
        any_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Mostly a value of the right kind, sometimes any JSON at all.
fn mostly(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![12 => good, 1 => json_value()].boxed()
}

fn string_value() -> impl Strategy<Value = Value> {
    any_string().prop_map(Value::String)
}

fn secret_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[A-Za-z0-9_-]{0,12}".prop_map(|s| Value::String(format!("GOCSPX-{MARKER}{s}"))),
        1 => Just(Value::String(String::new())),
    ]
}

fn uri_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => select(vec![
            "https://oauth2.googleapis.com/token",
            "https://accounts.google.com/o/oauth2/auth",
            "http://127.0.0.1:9/token",
            "http://[::1]/token",
            "http://localhost/t",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        2 => select(vec![
            "http://example.com/token",
            "ftp://127.0.0.1/",
            "https://",
            "/relative",
            "not a url",
            "",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        1 => string_value(),
    ]
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v);
    }
}

/// The `installed`/`web` section of a client secret file.
fn section() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.9, mostly(string_value())),
        prop::option::weighted(0.9, mostly(secret_value())),
        prop::option::weighted(0.5, mostly(uri_value())),
        prop::option::weighted(0.5, mostly(uri_value())),
        prop::option::weighted(
            0.5,
            mostly(prop::collection::vec(uri_value(), 0..3).prop_map(Value::Array)),
        ),
        prop::option::weighted(0.5, mostly(string_value())),
        prop::collection::vec((key(), json_value()), 0..3),
    )
        .prop_map(|(id, secret, auth, token, redirects, project, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            put(&mut m, "client_id", id);
            put(&mut m, "client_secret", secret);
            put(&mut m, "auth_uri", auth);
            put(&mut m, "token_uri", token);
            put(&mut m, "redirect_uris", redirects);
            put(&mut m, "project_id", project);
            Value::Object(m)
        })
}

/// Something shaped like `client_secret.json` (or a file passed by mistake).
fn client_secret_json() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.6, prop_oneof![6 => section(), 1 => json_value()]),
        prop::option::weighted(0.4, prop_oneof![6 => section(), 1 => json_value()]),
        prop::option::weighted(
            0.2,
            mostly(
                select(vec![
                    "service_account",
                    "authorized_user",
                    "external_account",
                ])
                .prop_map(|s| Value::String(s.to_owned())),
            ),
        ),
        prop::option::weighted(0.1, string_value()),
        prop::option::weighted(0.1, secret_value()),
        prop::collection::vec((key(), json_value()), 0..3),
    )
        .prop_map(|(installed, web, kind, private_key, refresh, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            put(&mut m, "installed", installed);
            put(&mut m, "web", web);
            put(&mut m, "type", kind);
            put(&mut m, "private_key", private_key);
            put(&mut m, "refresh_token", refresh);
            Value::Object(m)
        })
}

/// `expiry` values: google-auth's format with every component out of range
/// now and then, optional fractions and suffixes, or anything else.
fn expiry_value() -> impl Strategy<Value = Value> {
    let part = |valid: std::ops::Range<u8>| prop_oneof![9 => valid, 1 => 0u8..100];
    let formatted = (
        prop_oneof![8 => 1970i32..2200, 1 => 0i32..10_000, 1 => -20i32..0],
        part(1..13),
        part(1..29),
        part(0..24),
        part(0..60),
        part(0..61),
        prop_oneof![2 => Just(String::new()), 2 => "\\.[0-9]{1,9}", 1 => "\\.[0-9]{0,12}"],
        prop_oneof![
            6 => select(vec!["Z", "", "+00:00"]),
            1 => select(vec!["+01:00", " ", "Z ", "z", "ZZ"]),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, suffix)| {
            Value::String(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{suffix}"
            ))
        });
    prop_oneof![6 => formatted, 1 => string_value(), 1 => json_value()]
}

fn scopes_value() -> impl Strategy<Value = Value> {
    let scope = select(vec![
        "https://www.googleapis.com/auth/generative-language.retriever",
        "https://www.googleapis.com/auth/cloud-platform",
        "openid",
        "",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        3 => prop::collection::vec(scope.clone(), 0..4)
            .prop_map(|s| Value::Array(s.into_iter().map(Value::String).collect())),
        2 => prop::collection::vec(prop_oneof![scope, any_string()], 0..4)
            .prop_map(|s| Value::String(s.join(" "))),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        1 => any::<i64>().prop_map(Value::from),
        1 => json_value(),
    ]
}

/// Something shaped like `token.json` / an `authorized_user` ADC file.
fn token_json() -> impl Strategy<Value = Value> {
    let secret = || {
        mostly(prop_oneof![
            "[A-Za-z0-9./_-]{0,12}".prop_map(|s| Value::String(format!("ya29.{MARKER}{s}"))),
            "[A-Za-z0-9./_-]{0,12}".prop_map(|s| Value::String(format!("1//{MARKER}{s}"))),
        ])
    };
    let opt = |p: f64, s: BoxedStrategy<Value>| prop::option::weighted(p, s);
    (
        (
            opt(0.8, secret()),
            opt(0.8, secret()),
            opt(0.7, mostly(uri_value())),
            opt(0.7, mostly(string_value())),
            opt(0.7, mostly(secret_value())),
        ),
        (
            opt(0.7, scopes_value().boxed()),
            opt(0.2, secret()),
            opt(0.5, mostly(string_value())),
            opt(0.5, mostly(string_value())),
            opt(0.8, expiry_value().boxed()),
        ),
        opt(
            0.3,
            mostly(
                select(vec![
                    "authorized_user",
                    "service_account",
                    "external_account",
                ])
                .prop_map(|s| Value::String(s.to_owned())),
            ),
        ),
        opt(0.2, mostly(string_value())),
        prop::collection::vec((key(), json_value()), 0..3),
    )
        .prop_map(
            |(
                (token, refresh, uri, id, cs),
                (scopes, rapt, universe, account, expiry),
                kind,
                quota,
                extra,
            )| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                put(&mut m, "token", token);
                put(&mut m, "refresh_token", refresh);
                put(&mut m, "token_uri", uri);
                put(&mut m, "client_id", id);
                put(&mut m, "client_secret", cs);
                put(&mut m, "scopes", scopes);
                put(&mut m, "rapt_token", rapt);
                put(&mut m, "universe_domain", universe);
                put(&mut m, "account", account);
                put(&mut m, "expiry", expiry);
                put(&mut m, "type", kind);
                put(&mut m, "quota_project_id", quota);
                Value::Object(m)
            },
        )
}

/// Something shaped like a Google API error body.
fn api_error_json() -> impl Strategy<Value = Value> {
    let message = prop_oneof![
        4 => any_string(),
        1 => "\\PC{990,1010}",
        1 => "[é😀a]{300,1200}",
        1 => Just("Generative Language API has not been used in project 1 before or it is disabled.".to_owned()),
    ];
    let reason = select(vec![
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "SERVICE_DISABLED",
        "API_DISABLED",
        "USER_PROJECT_DENIED",
        "RATE_LIMIT_EXCEEDED",
        "OTHER",
    ])
    .prop_map(|s| Value::String(s.to_owned()));
    let detail = prop_oneof![
        4 => mostly(reason).prop_map(|r| serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": r
        })),
        1 => json_value(),
    ];
    let error = (
        prop::option::weighted(0.8, mostly(any::<i64>().prop_map(Value::from))),
        prop::option::weighted(0.9, mostly(message.prop_map(Value::String))),
        prop::option::weighted(0.8, mostly(string_value())),
        prop::option::weighted(
            0.6,
            mostly(prop::collection::vec(detail, 0..4).prop_map(Value::Array)),
        ),
    )
        .prop_map(|(code, message, status, details)| {
            let mut m = Map::new();
            put(&mut m, "code", code);
            put(&mut m, "message", message);
            put(&mut m, "status", status);
            put(&mut m, "details", details);
            Value::Object(m)
        });
    prop_oneof![
        6 => error.prop_map(|e| serde_json::json!({ "error": e })),
        1 => json_value(),
    ]
}

/// Byte-level damage: truncation, flipped, inserted and deleted bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let interesting = prop_oneof![any::<u8>(), select(b"{}[]\",:\\0-.eE \n\xff\xc3".to_vec()),];
    let one = prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), interesting.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ];
    prop::collection::vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
    bytes
}

/// Compact or pretty JSON text of `v`, sometimes damaged.
fn text_of(
    json: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = (Option<Value>, Vec<u8>)> {
    (
        json,
        any::<bool>(),
        prop::option::weighted(0.25, mutations()),
    )
        .prop_map(|(v, pretty, damage)| {
            let text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            match damage {
                None => (Some(v), text),
                Some(m) => (None, mutate(text, &m)),
            }
        })
}

/// Arbitrary bytes, arbitrary JSON, or file-shaped JSON; `Some(value)` when
/// the bytes are exactly that JSON, undamaged.
fn input(
    shaped: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = (Option<Value>, Vec<u8>)> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| (None, b)),
        1 => text_of(json_value()),
        4 => text_of(shaped),
    ]
}

// ---------------------------------------------------------------- helpers

fn no_marker(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!text.contains(MARKER), "a secret leaked into: {}", text);
    Ok(())
}

fn str_field<'a>(section: &'a Value, key: &str) -> Option<&'a str> {
    section.get(key).and_then(Value::as_str)
}

/// Whether `v` holds a number that is not an integer.
fn has_fraction(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_fraction),
        Value::Object(map) => map.values().any(has_fraction),
        _ => false,
    }
}

/// Equal, except that floats may differ in their last bit.
fn nearly_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 2.0
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| nearly_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && nearly_equal(vx, vy))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// `ClientSecret::from_json` never panics, fails only with
    /// `Error::ClientSecret` for `<inline>`, never shows the secret, and what
    /// it accepts is what the file says.
    #[test]
    fn client_secret_from_json((value, bytes) in input(client_secret_json())) {
        match ClientSecret::from_json(&bytes) {
            Ok(secret) => {
                no_marker(&format!("{secret:?}"))?;
                prop_assert!(!secret.client_id().is_empty());
                prop_assert!(!secret.client_secret().is_empty());
                for uri in [secret.auth_endpoint(), secret.token_endpoint()] {
                    prop_assert!(uri.starts_with("https://") || uri.starts_with("http://"), "{}", uri);
                }
                if let Some(Value::Object(top)) = &value {
                    let (kind, section) = match top.get("installed") {
                        Some(s @ Value::Object(_)) => (ClientKind::Installed, s),
                        _ => (ClientKind::Web, &top["web"]),
                    };
                    prop_assert_eq!(secret.kind(), kind);
                    prop_assert_eq!(Some(secret.client_id()), str_field(section, "client_id"));
                    prop_assert_eq!(Some(secret.client_secret()), str_field(section, "client_secret"));
                    prop_assert_eq!(secret.project_id(), str_field(section, "project_id"));
                }
            }
            Err(err) => {
                let is_client_secret_error = matches!(&err, Error::ClientSecret { path, .. } if path.as_os_str() == "<inline>");
                prop_assert!(is_client_secret_error, "{:?}", err);
                prop_assert!(!err.is_transient());
                no_marker(&format!("{err} {err:?}"))?;
            }
        }
    }

    /// `StoredToken::from_json` never panics; what it accepts is written as
    /// ASCII JSON that reads back to the same text; secrets stay out of Debug
    /// and of error messages.
    #[test]
    fn stored_token_from_json_round_trips((value, bytes) in input(token_json())) {
        match StoredToken::from_json(&bytes) {
            Ok(token) => {
                no_marker(&format!("{token:?}"))?;
                let json = token.to_json();
                prop_assert!(json.is_ascii(), "{}", json);
                let reparsed: Value = serde_json::from_str(&json)
                    .map_err(|e| TestCaseError::fail(format!("to_json wrote invalid JSON ({e}): {json}")))?;
                prop_assert!(reparsed.is_object());
                let again = StoredToken::from_json(json.as_bytes())
                    .map_err(|e| TestCaseError::fail(format!("to_json output rejected ({e}): {json}")))?;
                if has_fraction(&reparsed) {
                    // serde_json (without its float_roundtrip feature) may read a
                    // float 1 ULP off: see unknown_float_values_round_trip_exactly.
                    let again: Value = serde_json::from_str(&again.to_json()).unwrap();
                    prop_assert!(nearly_equal(&again, &reparsed), "{} vs {}", again, reparsed);
                } else {
                    prop_assert_eq!(again.to_json(), json.clone());
                }
                let keys: Vec<&String> = reparsed.as_object().unwrap().keys().collect();
                if let Some(at) = keys.iter().position(|k| *k == "expiry") {
                    prop_assert_eq!(at + 1, keys.len(), "expiry is last: {}", json);
                    prop_assert!(json.ends_with("Z\"}"), "{}", json);
                }
                if let Some(v) = &value {
                    prop_assert_eq!(token.access_token(), str_field(v, "token"));
                    prop_assert_eq!(token.refresh_token(), str_field(v, "refresh_token"));
                    prop_assert_eq!(token.client_id(), str_field(v, "client_id"));
                    prop_assert_eq!(token.token_uri(), str_field(v, "token_uri"));
                    prop_assert_eq!(token.quota_project_id(), str_field(v, "quota_project_id"));
                }
            }
            Err(problem) => no_marker(&format!("{problem} {problem:?}"))?,
        }
    }

    /// `ApiError::from_body` never panics, keeps messages bounded (cut on a
    /// character boundary), reads Google's fields faithfully, and names the
    /// endpoint without its query.
    #[test]
    fn api_error_from_body(
        (value, bytes) in input(api_error_json()),
        status in 100u16..600,
        url in select(vec![
            "https://generativelanguage.googleapis.com/v1/models?pageToken=p&key=K",
            "http://127.0.0.1:1/v1/models#frag",
            "https://g/v1/models",
            "",
        ]),
    ) {
        let e = ApiError::from_body(url, status, &bytes);
        let endpoint = url.split(['?', '#']).next().unwrap();
        prop_assert_eq!(&e.endpoint, endpoint);
        prop_assert_eq!(e.status, status);
        prop_assert!(e.message.len() <= 1000 + '…'.len_utf8(), "{}", e.message.len());
        let display = e.to_string();
        let prefix = format!("{endpoint} answered HTTP {status}");
        prop_assert!(display.starts_with(&prefix), "{}", display);
        let _ = e.hint();
        if let Some(v) = &value {
            let error = v.get("error");
            let field = |k: &str| error.and_then(|e| e.get(k));
            match field("message").and_then(Value::as_str) {
                Some(m) if m.len() <= 1000 => prop_assert_eq!(&e.message, m),
                Some(m) => {
                    let kept = e.message.strip_suffix('…').expect("a cut message ends with …");
                    prop_assert!(m.starts_with(kept));
                    prop_assert!(kept.len() > 1000 - 4, "cut at most one character short of the limit");
                }
                None => prop_assert_eq!(e.message.as_str(), "the answer is not a Google API error"),
            }
            prop_assert_eq!(e.code, field("code").and_then(Value::as_i64));
            prop_assert_eq!(e.status_text.as_deref(), field("status").and_then(Value::as_str));
            let reasons: Vec<&str> = field("details")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(|d| d.get("reason").and_then(Value::as_str)).collect())
                .unwrap_or_default();
            prop_assert_eq!(&e.reasons, &reasons);
        }
    }

    /// `gemini::decode` never panics: 2xx with JSON decodes, anything else is
    /// an `Error::Api` carrying the status (Google's error fields for non-2xx).
    #[test]
    fn gemini_decode(
        (_value, bytes) in input(api_error_json()),
        status in prop_oneof![3 => 200u16..300, 2 => 100u16..600],
    ) {
        let url = "https://g/v1/models?pageToken=p";
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        match gemini::decode::<Value>(url, status, &bytes) {
            Ok(v) => {
                prop_assert!((200..300).contains(&status));
                prop_assert_eq!(Some(v), parsed);
            }
            Err(Error::Api(api)) => {
                prop_assert_eq!(api.status, status);
                prop_assert_eq!(api.endpoint.as_str(), "https://g/v1/models");
                if (200..300).contains(&status) {
                    prop_assert!(parsed.is_none());
                    prop_assert!(api.message.contains("not the expected JSON"), "{}", api.message);
                } else {
                    prop_assert_eq!(api, ApiError::from_body(url, status, &bytes));
                }
            }
            Err(other) => prop_assert!(false, "unexpected error variant {:?}", other),
        }
        // A typed target must not panic either.
        let _ = gemini::decode::<gemini::Model>(url, status, &bytes);
    }
}

/// A float under an unknown key should survive a read-modify-write of
/// token.json unchanged, as google-auth keeps it. serde_json's default float
/// parser is not exact (it can read a value 1 ULP off); its `float_roundtrip`
/// feature makes it exact.
#[test]
fn unknown_float_values_round_trip_exactly() {
    let json = r#"{"client_id": "c", "x": [-1.0689743781720359e-35]}"#;
    let token = StoredToken::from_json(json.as_bytes()).unwrap();
    assert_eq!(token.to_json(), json);
}

/// Error messages never quote response bodies (README, "Secrets"); a typed
/// decode that fails today repeats the offending value in its message.
#[test]
fn typed_decode_errors_do_not_quote_the_body() {
    let err = gemini::decode::<gemini::Model>(
        "https://g/v1/models/m",
        200,
        br#"{"name": "models/m", "inputTokenLimit": "BODYSECRETMARKER"}"#,
    )
    .unwrap_err();
    assert!(
        !format!("{err} {err:?}").contains("BODYSECRETMARKER"),
        "{err}"
    );
}
