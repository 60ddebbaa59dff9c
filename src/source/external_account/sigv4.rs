//! AWS Signature Version 4 for the `GetCallerIdentity` request whose signed
//! form is the subject token of AWS credential sources, serialized exactly
//! as google-auth's `aws.py` does (Google's STS checks the signature by
//! replaying the request to AWS).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

/// What Python's `urllib.parse.quote(s, safe="-_.~")` leaves alone.
const QUERY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// What Python's `urllib.parse.quote(s)` leaves alone (its default `safe="/"`).
pub(super) const QUOTE_SAFE: &AsciiSet = &QUERY_SAFE.remove(b'/');

/// AWS credentials: from the environment or the instance metadata.
pub(crate) struct AwsKeys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub(crate) session_token: Option<SecretString>,
}

/// The serialized, signed `POST url` request google-auth sends as the
/// subject token: URL-encoded compact JSON with sorted keys,
/// `{"headers": [{"key", "value"}…], "method", "url"}`, the headers being
/// `Authorization`, `host`, `x-amz-date`, `x-amz-security-token` (with a
/// session token) and `x-goog-cloud-target-resource` (the audience).
pub(crate) fn signed_get_caller_identity(
    keys: &AwsKeys,
    region: &str,
    url: &str,
    target_resource: &str,
    now: OffsetDateTime,
) -> Result<String, &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a valid URL")?;
    if uri.scheme_str() != Some("https") {
        return Err("must be an https URL");
    }
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("has no host")?;
    let method = "POST";
    let amz_date = now
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|_| "cannot be signed at this date")?;
    let date_stamp = &amz_date[..8];
    let service = host.split('.').next().unwrap_or(host);
    let service = service.strip_suffix("-fips").unwrap_or(service);

    let mut signed: Vec<(&str, &str)> = vec![("host", host), ("x-amz-date", &amz_date)];
    if let Some(t) = &keys.session_token {
        signed.push(("x-amz-security-token", t.expose_secret()));
    }
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = signed.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        normalize_path(uri.path()),
        canonical_query(uri.query().unwrap_or("")),
        hex(&Sha256::digest(b""))
    );
    let scope = format!("{date_stamp}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", keys.secret_access_key.expose_secret()).as_bytes(),
        date_stamp,
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex(&hmac(&key, &string_to_sign));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        keys.access_key_id
    );

    let mut headers = vec![
        ("Authorization", authorization.as_str()),
        ("host", host),
        ("x-amz-date", amz_date.as_str()),
    ];
    if let Some(t) = &keys.session_token {
        headers.push(("x-amz-security-token", t.expose_secret()));
    }
    headers.push(("x-goog-cloud-target-resource", target_resource));
    // Keys inserted in sorted order; the crate's serde_json keeps insertion order.
    let headers: Vec<Value> = headers
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut request = Map::new();
    request.insert("headers".into(), Value::Array(headers));
    request.insert("method".into(), json!(method));
    request.insert("url".into(), json!(url));
    let text = ascii_json(&Value::Object(request));
    Ok(utf8_percent_encode(&text, QUOTE_SAFE).to_string())
}

/// Compact JSON with non-ASCII escaped as `\uXXXX`, as Python's `json.dumps` writes it.
pub(super) fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Python's `posixpath.normpath`, `/` for an empty path.
fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// google-auth's canonical query: `parse_qs` (blank values dropped), keys
/// and values quoted, values sorted per key, keys sorted.
fn canonical_query(query: &str) -> String {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        map.entry(utf8_percent_encode(&k, QUERY_SAFE).to_string())
            .or_default()
            .push(utf8_percent_encode(&v, QUERY_SAFE).to_string());
    }
    map.into_iter()
        .flat_map(|(k, mut vs)| {
            vs.sort();
            vs.into_iter().map(move |v| format!("{k}={v}"))
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_as_google_auth_canonicalizes_them() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/a//b/./c/../d/"), "/a/b/d");
        assert_eq!(
            canonical_query("Version=2011-06-15&Action=GetCallerIdentity&e=&b=x y&b=a"),
            "Action=GetCallerIdentity&Version=2011-06-15&b=a&b=x%20y"
        );
        assert_eq!(ascii_json(&json!({"a": "é/"})), r#"{"a":"\u00e9/"}"#);
    }

    /// AWS's published SigV4 example key (not a credential), checked against
    /// google-auth's signer run on the same inputs.
    #[test]
    fn signs_as_aws_documents() {
        let keys = AwsKeys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let now = time::macros::datetime!(2015-08-30 12:36:00 UTC);
        let encoded = signed_get_caller_identity(
            &keys,
            "us-east-1",
            "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "//iam.googleapis.com/x",
            now,
        )
        .unwrap();
        let text = percent_encoding::percent_decode_str(&encoded)
            .decode_utf8()
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(
            v["headers"][1],
            json!({"key": "host", "value": "sts.us-east-1.amazonaws.com"})
        );
        assert_eq!(
            v["headers"][2],
            json!({"key": "x-amz-date", "value": "20150830T123600Z"})
        );
        // google-auth's RequestSigner on the same inputs printed this.
        assert_eq!(
            v["headers"][0]["value"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5d0127c0c30e5d37ec488220bd15b058e0dbf1c17f31d2da6f73a1626d2fc696"
        );
        assert!(encoded.starts_with("%7B%22headers%22%3A%5B%7B%22key%22%3A%22Authorization%22"));
    }
}
