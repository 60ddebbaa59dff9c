//! The stored token and its `token.json` format, byte-compatible with
//! google-auth's `Credentials.to_json()`.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::endpoints::DEFAULT_UNIVERSE_DOMAIN;
use crate::json::to_python_json;

mod fields;

use fields::{Document, Field};

const EXPIRY_SECONDS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
const EXPIRY_PARSE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");

/// 9999-12-31T23:59:59Z, the last expiry google-auth's format can hold.
const MAX_EXPIRY_UNIX_SECS: u64 = 253_402_300_799;

/// Saved user credentials: what `token.json` (or a gcloud ADC file) holds.
///
/// Reading is tolerant (missing `token`/`expiry`/`universe_domain`/`account`,
/// scopes as a list or a space-separated string, expiry with or without
/// fraction, extra keys such as `type` and `quota_project_id`); writing
/// produces exactly what google-auth's `Credentials.to_json()` writes, with
/// unknown keys kept. `Debug` never shows a token or secret.
#[derive(Clone, Default)]
pub struct StoredToken {
    pub(crate) token: Option<SecretString>,
    pub(crate) refresh_token: Option<SecretString>,
    pub(crate) token_uri: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<SecretString>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) rapt_token: Option<SecretString>,
    pub(crate) universe_domain: Option<String>,
    pub(crate) account: Option<String>,
    pub(crate) expiry: Option<OffsetDateTime>,
    /// Keys this crate does not interpret; `None` when there are none (a
    /// record is held for each of many users).
    pub(crate) extra: Option<Box<Map<String, Value>>>,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<SecretString>| s.as_ref().map(|_| "[redacted]");
        f.debug_struct("StoredToken")
            .field("token", &redact(&self.token))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("token_uri", &self.token_uri)
            .field("client_id", &self.client_id)
            .field("client_secret", &redact(&self.client_secret))
            .field("scopes", &self.scopes)
            .field("expiry", &self.expiry_string())
            .field("extra_keys", &self.extra_keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StoredToken {
    /// Parses `token.json` (or an `authorized_user` ADC file).
    ///
    /// # Errors
    /// The [`TokenFileProblem`] found; callers attach the file name.
    pub fn from_json(json: &[u8]) -> Result<Self, TokenFileProblem> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(TokenFileProblem::Empty);
        }
        let document = serde_json::from_slice(json).map_err(|e| TokenFileProblem::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        let Document(Some(mut fields)) = document else {
            return Err(TokenFileProblem::NotAnObject);
        };
        // `type` stays among the other keys, and is written back.
        if let Some(t) = fields.extra.get("type").and_then(Value::as_str)
            && t != "authorized_user"
        {
            return Err(TokenFileProblem::UnsupportedType(t.to_owned()));
        }
        let mut take = |field: Field| -> Result<Option<String>, TokenFileProblem> {
            match fields.take(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(TokenFileProblem::WrongType(field.name())),
            }
        };
        let secret = |s: Option<String>| s.map(SecretString::from);
        let token = secret(take(Field::Token)?);
        let refresh_token = secret(take(Field::RefreshToken)?);
        let token_uri = take(Field::TokenUri)?;
        let client_id = take(Field::ClientId)?;
        let client_secret = secret(take(Field::ClientSecret)?);
        let rapt_token = secret(take(Field::RaptToken)?);
        let universe_domain = take(Field::UniverseDomain)?;
        let account = take(Field::Account)?;
        let expiry = take(Field::Expiry)?
            .map(|s| parse_expiry(&s).ok_or(TokenFileProblem::BadExpiry))
            .transpose()?;
        let scopes = match fields.take(Field::Scopes) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.split_whitespace().map(str::to_owned).collect()),
            Some(Value::Array(items)) => Some(
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(TokenFileProblem::WrongType("scopes")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(TokenFileProblem::WrongType("scopes")),
        };
        Ok(StoredToken {
            token,
            refresh_token,
            token_uri,
            client_id,
            client_secret,
            scopes,
            rapt_token,
            universe_domain,
            account,
            expiry,
            extra: (!fields.extra.is_empty()).then(|| Box::new(fields.extra)),
        })
    }

    /// Serializes exactly as google-auth's `Credentials.to_json()` does:
    /// `json.dumps` separators, its key order, absent values left out,
    /// unknown keys kept (before `expiry`, which is always last).
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut map = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                map.insert(key.to_owned(), v);
            }
        };
        let secret = |s: &Option<SecretString>| {
            s.as_ref()
                .map(|s| Value::String(s.expose_secret().to_owned()))
        };
        let string = |s: &Option<String>| s.clone().map(Value::String);
        put("token", secret(&self.token));
        put("refresh_token", secret(&self.refresh_token));
        put("token_uri", string(&self.token_uri));
        put("client_id", string(&self.client_id));
        put("client_secret", secret(&self.client_secret));
        put(
            "scopes",
            self.scopes
                .as_ref()
                .map(|s| Value::Array(s.iter().cloned().map(Value::String).collect())),
        );
        put("rapt_token", secret(&self.rapt_token));
        put("universe_domain", string(&self.universe_domain));
        put("account", string(&self.account));
        for (k, v) in self.extra.iter().flat_map(|m| m.iter()) {
            if !map.contains_key(k) && k != "expiry" {
                map.insert(k.clone(), v.clone());
            }
        }
        if let Some(expiry) = self.expiry_string() {
            map.insert("expiry".to_owned(), Value::String(expiry));
        }
        to_python_json(&Value::Object(map))
    }

    /// A new record for a freshly granted token.
    pub(crate) fn new_user(client_id: &str, client_secret: &SecretString, token_uri: &str) -> Self {
        StoredToken {
            token_uri: Some(token_uri.to_owned()),
            client_id: Some(client_id.to_owned()),
            client_secret: Some(client_secret.clone()),
            universe_domain: Some(DEFAULT_UNIVERSE_DOMAIN.to_owned()),
            account: Some(String::new()),
            ..StoredToken::default()
        }
    }

    /// The access token, if one is stored. Handle with care: never log it.
    #[must_use]
    pub fn access_token(&self) -> Option<&str> {
        self.token.as_ref().map(|s| s.expose_secret())
    }

    /// The refresh token, if one is stored. Handle with care: never log it.
    #[must_use]
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(|s| s.expose_secret())
    }

    /// The OAuth client secret recorded with the tokens. Never log it.
    #[must_use]
    pub fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_ref().map(|s| s.expose_secret())
    }

    /// The OAuth client id the tokens were issued to.
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The token endpoint recorded in the file.
    #[must_use]
    pub fn token_uri(&self) -> Option<&str> {
        self.token_uri.as_deref()
    }

    /// The granted scopes recorded in the file.
    #[must_use]
    pub fn scopes(&self) -> Option<&[String]> {
        self.scopes.as_deref()
    }

    /// When the access token expires, if known.
    #[must_use]
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry.map(SystemTime::from)
    }

    /// The `quota_project_id` key of gcloud's ADC files, if present.
    #[must_use]
    pub fn quota_project_id(&self) -> Option<&str> {
        self.extra("quota_project_id").and_then(Value::as_str)
    }

    /// A value of a key this crate does not interpret (kept on write).
    #[must_use]
    pub fn extra(&self, key: &str) -> Option<&Value> {
        self.extra.as_ref()?.get(key)
    }

    /// The keys this crate does not interpret.
    pub(crate) fn extra_keys(&self) -> impl Iterator<Item = &String> {
        self.extra.iter().flat_map(|m| m.keys())
    }

    /// Whether the access token can still be handed out: present, with an
    /// expiry more than [`EXPIRY_SKEW`](crate::access_token::EXPIRY_SKEW) away. google-auth
    /// treats a missing expiry as expired; so do we.
    pub(crate) fn is_usable(&self) -> bool {
        match (&self.token, self.expiry()) {
            (Some(_), Some(expiry)) => expiry
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > crate::access_token::EXPIRY_SKEW),
            _ => false,
        }
    }

    /// Scopes among `requested` that the stored token does not cover.
    /// A file without scopes (such as gcloud's ADC file) is taken to cover all.
    pub(crate) fn missing_scopes(&self, requested: &[String]) -> Vec<String> {
        match &self.scopes {
            None => vec![],
            Some(have) => requested
                .iter()
                .filter(|s| !have.contains(s))
                .cloned()
                .collect(),
        }
    }

    pub(crate) fn set_expiry(&mut self, at: SystemTime) {
        // Dates past year 9999 cannot be written; no real token lives that long.
        let latest = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(MAX_EXPIRY_UNIX_SECS));
        let at = latest.map_or(at, |latest| at.min(latest));
        let at = OffsetDateTime::from(at);
        // google-auth keeps microseconds; anything finer would not round-trip.
        let micros = at.microsecond();
        self.expiry = at.replace_nanosecond(micros.saturating_mul(1000)).ok();
    }

    fn expiry_string(&self) -> Option<String> {
        let e = self.expiry?.to_offset(time::UtcOffset::UTC);
        let seconds = e.format(EXPIRY_SECONDS).ok()?;
        Some(match e.microsecond() {
            0 => format!("{seconds}Z"),
            us => format!("{seconds}.{us:06}Z"),
        })
    }
}

pub(crate) fn parse_expiry(s: &str) -> Option<OffsetDateTime> {
    // google-auth writes naive UTC with "Z"; accept a missing "Z" or "+00:00" too.
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let parsed = time::PrimitiveDateTime::parse(s, EXPIRY_PARSE).ok()?;
    let utc = parsed.assume_utc();
    utc.replace_nanosecond(utc.microsecond().saturating_mul(1000))
        .ok()
}

/// What is wrong with a stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFileProblem {
    /// The file is empty.
    Empty,
    /// The file is not valid JSON (often a truncated write).
    NotJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// The JSON is not an object.
    NotAnObject,
    /// A field has the wrong JSON type.
    WrongType(&'static str),
    /// `expiry` is not `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    BadExpiry,
    /// The file has a credential `type` this crate does not handle here.
    UnsupportedType(String),
    /// The file is missing a field needed to refresh.
    MissingField(&'static str),
    /// A field holds a value that cannot be used (a URL that names no
    /// service account, …).
    InvalidValue(&'static str),
    /// A service-account key's `private_key` is not an RSA key in PEM
    /// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    BadPrivateKey,
    /// The file is larger than any token or credentials file.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
}

impl fmt::Display for TokenFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFileProblem::Empty => f.write_str("the file is empty"),
            TokenFileProblem::NotJson { line, column } => write!(
                f,
                "not valid JSON (syntax error at line {line}, column {column}; truncated?)"
            ),
            TokenFileProblem::NotAnObject => f.write_str("the JSON is not an object"),
            TokenFileProblem::WrongType(field) => write!(f, "\"{field}\" has the wrong type"),
            TokenFileProblem::BadExpiry => {
                f.write_str("\"expiry\" is not of the form YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
            }
            TokenFileProblem::UnsupportedType(t) => {
                write!(f, "credential type {t:?} is not supported here")
            }
            TokenFileProblem::MissingField(field) => write!(f, "\"{field}\" is missing"),
            TokenFileProblem::InvalidValue(field) => write!(
                f,
                "\"{field}\" has a value that cannot be used (for a URL: one ending in \
                 /projects/-/serviceAccounts/EMAIL:generateAccessToken)"
            ),
            TokenFileProblem::TooLarge { limit } => write!(
                f,
                "the file is larger than {limit} bytes, which no token or credentials file is; \
                 check the path"
            ),
            TokenFileProblem::BadPrivateKey => {
                f.write_str("\"private_key\" is not an RSA private key in PEM (PKCS#8 or PKCS#1)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON: &str = r#"{"token": "ya29.TOKENMARKER", "refresh_token": "1//REFRESHMARKER", "token_uri": "https://oauth2.googleapis.com/token", "client_id": "123.apps.googleusercontent.com", "client_secret": "GOCSPX-SECRETMARKER", "scopes": ["https://www.googleapis.com/auth/generative-language.retriever"], "universe_domain": "googleapis.com", "account": "", "expiry": "2026-11-25T20:11:03.123456Z"}"#;

    #[test]
    fn python_file_round_trips_byte_for_byte() {
        let t = StoredToken::from_json(PYTHON.as_bytes()).unwrap();
        assert_eq!(t.access_token(), Some("ya29.TOKENMARKER"));
        assert_eq!(t.refresh_token(), Some("1//REFRESHMARKER"));
        assert_eq!(t.to_json(), PYTHON);
    }

    #[test]
    fn expiry_fraction_only_when_nonzero() {
        let mut t = StoredToken {
            expiry: parse_expiry("2026-01-02T03:04:05Z"),
            ..StoredToken::default()
        };
        assert_eq!(t.to_json(), r#"{"expiry": "2026-01-02T03:04:05Z"}"#);
        t.expiry = parse_expiry("2026-01-02T03:04:05.000100Z");
        assert_eq!(t.to_json(), r#"{"expiry": "2026-01-02T03:04:05.000100Z"}"#);
        // Nanoseconds beyond microseconds are dropped, as Python has none.
        t.expiry = parse_expiry("2026-01-02T03:04:05.123456789");
        assert_eq!(t.to_json(), r#"{"expiry": "2026-01-02T03:04:05.123456Z"}"#);
        t.expiry = parse_expiry("2026-01-02T03:04:05+00:00");
        assert_eq!(t.to_json(), r#"{"expiry": "2026-01-02T03:04:05Z"}"#);
    }

    #[test]
    fn tolerant_read_keeps_unknown_keys_and_orders_rapt_token() {
        let json = r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r", "quota_project_id": "proj", "scopes": "a b", "rapt_token": "rapt", "universe_domain": "googleapis.com"}"#;
        let t = StoredToken::from_json(json.as_bytes()).unwrap();
        assert_eq!(t.scopes(), Some(&["a".to_owned(), "b".to_owned()][..]));
        assert_eq!(t.quota_project_id(), Some("proj"));
        assert_eq!(t.expiry(), None);
        assert_eq!(
            t.to_json(),
            r#"{"refresh_token": "r", "client_id": "c", "client_secret": "s", "scopes": ["a", "b"], "rapt_token": "rapt", "universe_domain": "googleapis.com", "type": "authorized_user", "quota_project_id": "proj"}"#
        );
    }

    #[test]
    fn bad_files_give_problems_not_panics() {
        let p = |s: &str| StoredToken::from_json(s.as_bytes()).unwrap_err();
        assert_eq!(p(""), TokenFileProblem::Empty);
        assert_eq!(p("  \n"), TokenFileProblem::Empty);
        assert_eq!(
            p(r#"{"token": "ab"#),
            TokenFileProblem::NotJson {
                line: 1,
                column: 13
            }
        );
        assert_eq!(p("[]"), TokenFileProblem::NotAnObject);
        assert_eq!(p(r#"{"token": 5}"#), TokenFileProblem::WrongType("token"));
        assert_eq!(
            p(r#"{"scopes": [1]}"#),
            TokenFileProblem::WrongType("scopes")
        );
        assert_eq!(p(r#"{"expiry": "tomorrow"}"#), TokenFileProblem::BadExpiry);
        assert_eq!(
            p(r#"{"type": "service_account"}"#),
            TokenFileProblem::UnsupportedType("service_account".into())
        );
    }

    #[test]
    fn debug_shows_no_secrets() {
        let t = StoredToken::from_json(PYTHON.as_bytes()).unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains("MARKER"), "{debug}");
        assert!(debug.contains("123.apps"), "{debug}");
    }

    #[test]
    fn non_ascii_is_escaped_like_python() {
        let t = StoredToken {
            account: Some("jos\u{e9} \u{1F600}\u{7f}".into()),
            ..StoredToken::default()
        };
        assert_eq!(
            t.to_json(),
            r#"{"account": "jos\u00e9 \ud83d\ude00\u007f"}"#
        );
    }

    #[test]
    fn missing_scopes() {
        let t = StoredToken::from_json(br#"{"scopes": ["a", "b"]}"#).unwrap();
        assert!(t.missing_scopes(&["a".into()]).is_empty());
        assert_eq!(t.missing_scopes(&["a".into(), "c".into()]), vec!["c"]);
        assert!(
            StoredToken::default()
                .missing_scopes(&["x".into()])
                .is_empty()
        );
    }
}
