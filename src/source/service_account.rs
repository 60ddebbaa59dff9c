//! Service-account keys: the JWT bearer grant (RFC 7523), signed RS256 with
//! `ring` and sent through the crate's own token endpoint client, so it has
//! the same timeouts, body cap, TLS roots and retries as every other token
//! request.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::credentials_file::{CredentialsFileKind, file_error};
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::id_token::IdTokenProblem;
use crate::token::TokenFileProblem;
use crate::token_cache::{BoxFuture, Fetched, TokenSource};
use crate::token_endpoint::{self, Retry};
use crate::universe::Universe;

/// The assertion's lifetime; Google accepts at most an hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// A parsed service-account key file (the JSON google-auth reads).
pub(crate) struct ServiceAccountKey {
    email: String,
    key_id: Option<String>,
    key: RsaKeyPair,
    token_uri: String,
    universe: Universe,
}

impl ServiceAccountKey {
    /// Parses the key file's JSON; problems name `path` and the field.
    pub(crate) fn from_json(json: &[u8], path: &Path) -> Result<Self> {
        let bad = |problem| file_error(path, CredentialsFileKind::ServiceAccount, problem);
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            bad(TokenFileProblem::NotJson {
                line: e.line(),
                column: e.column(),
            })
        })?;
        let text = |field: &'static str| match value.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(bad(TokenFileProblem::WrongType(field))),
        };
        let required = |field: &'static str| {
            text(field)?.ok_or_else(|| bad(TokenFileProblem::MissingField(field)))
        };
        let pem = required("private_key")?;
        // PKCS#8 as the Cloud console writes it, or PKCS#1 (`BEGIN RSA
        // PRIVATE KEY`, what `openssl rsa` and older tools write), as
        // google-auth accepts both.
        let key = match PrivateKeyDer::from_pem_slice(tidy_pem(&pem).as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(der)) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok(),
            Ok(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der()).ok(),
            _ => None,
        }
        .ok_or_else(|| bad(TokenFileProblem::BadPrivateKey))?;
        let universe = match text("universe_domain")? {
            Some(d) => Universe::from_origin(&d, &path.display().to_string())?,
            None => Universe::default(),
        };
        Ok(ServiceAccountKey {
            email: required("client_email")?,
            key_id: text("private_key_id")?,
            key,
            token_uri: text("token_uri")?.unwrap_or_else(|| universe.token_uri()),
            universe,
        })
    }

    /// The key as messages name it.
    pub(crate) fn path_name(&self) -> String {
        format!("service account {}", self.email)
    }

    /// The key's `universe_domain` (default `googleapis.com`).
    pub(crate) fn universe(&self) -> &Universe {
        &self.universe
    }

    /// The signed assertion for `scopes` at `token_uri`, issued `now`.
    fn assertion(&self, scopes: &[String], token_uri: &str, now: SystemTime) -> Result<String> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.sign(&json!({
            "iss": self.email,
            "scope": scopes.join(" "),
            "aud": token_uri,
            "iat": iat,
            "exp": iat.saturating_add(ASSERTION_LIFETIME.as_secs()),
        }))
    }

    /// The signed assertion for an ID token for `audience`, as google-auth's
    /// `IDTokenCredentials` makes it: `aud` is always Google's token
    /// endpoint, whichever endpoint it is sent to.
    fn id_assertion(&self, audience: &str, now: SystemTime) -> Result<String> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.sign(&json!({
            "iat": iat,
            "exp": iat.saturating_add(ASSERTION_LIFETIME.as_secs()),
            "iss": self.email,
            "aud": crate::endpoints::GOOGLE_TOKEN_URI,
            "target_audience": audience,
        }))
    }

    /// A self-signed JWT used as the access token itself, as google-auth
    /// does outside `googleapis.com` (AIP-4111: `iss` and `sub` the
    /// account, the scopes in `scope`, no audience, an hour's life).
    fn self_signed(&self, scopes: &[String], now: SystemTime) -> Result<Fetched> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = json!({
            "iss": self.email,
            "sub": self.email,
            "iat": iat,
            "exp": iat.saturating_add(ASSERTION_LIFETIME.as_secs()),
            "scope": scopes.join(" "),
        });
        Ok(Fetched {
            token: SecretString::from(self.sign(&claims)?),
            expires_at: UNIX_EPOCH
                .checked_add(Duration::from_secs(
                    iat.saturating_add(ASSERTION_LIFETIME.as_secs()),
                ))
                .unwrap_or(now),
            refresh_token_rotated: false,
        })
    }

    /// `claims` as a JWT signed RS256 with the key (`kid`: its id).
    fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = json!(kid);
        }
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::ServiceAccount {
                account: self.email.clone(),
                source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                    "the key could not sign the assertion",
                )),
            })?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A service account as a token source.
pub(crate) struct ServiceAccount {
    key: ServiceAccountKey,
    scopes: Vec<String>,
    /// The key file's endpoint, unless the loader overrides it for this run.
    token_uri: String,
    http: Arc<HttpClient>,
    retry: Retry,
}

impl ServiceAccount {
    pub(crate) fn new(
        key: ServiceAccountKey,
        scopes: &[String],
        token_uri: Option<String>,
        http: Arc<HttpClient>,
        retry: Retry,
    ) -> Self {
        ServiceAccount {
            token_uri: token_uri.unwrap_or_else(|| key.token_uri.clone()),
            key,
            scopes: scopes.to_vec(),
            http,
            retry,
        }
    }
}

impl TokenSource for ServiceAccount {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(async move {
            // Outside Google's public universe the signed JWT is the token
            // (google-auth's always_use_jwt_access), when it has scopes to
            // claim; without any (and with no audience to name, which this
            // crate never has) google-auth takes the JWT-bearer grant.
            if !self.key.universe.is_default() && !self.scopes.is_empty() {
                return self.key.self_signed(&self.scopes, SystemTime::now());
            }
            let assertion = self
                .key
                .assertion(&self.scopes, &self.token_uri, SystemTime::now())?;
            let resp = token_endpoint::jwt_bearer(
                &self.http,
                self.retry,
                &self.token_uri,
                &SecretString::from(assertion),
            )
            .await?;
            Ok(resp.into())
        })
    }

    fn describe(&self) -> String {
        format!("service account {}", self.key.email)
    }

    fn id_token<'a>(&'a self, audience: &'a str) -> Option<BoxFuture<'a, Result<Fetched>>> {
        Some(Box::pin(async move {
            let error = |problem| Error::IdToken {
                source_name: self.describe(),
                problem,
            };
            if !self.key.universe.is_default() {
                return Err(error(IdTokenProblem::OtherUniverse));
            }
            let assertion = self.key.id_assertion(audience, SystemTime::now())?;
            let jwt = token_endpoint::jwt_bearer_id_token(
                &self.http,
                self.retry,
                &self.token_uri,
                &SecretString::from(assertion),
            )
            .await?;
            crate::id_token::fetched(jwt.expose_secret()).map_err(error)
        }))
    }
}

/// `pem` with each `-----BEGIN …-----` and `-----END …-----` on a line of
/// its own and no blanks around lines: a key pasted indented, padded or on
/// one line, which google-auth's PEM reader takes.
fn tidy_pem(pem: &str) -> String {
    let mut out = String::with_capacity(pem.len());
    for (i, part) in pem.split("-----").enumerate() {
        if i % 2 == 1 {
            out.push_str("\n-----");
            out.push_str(part.trim());
            out.push_str("-----\n");
        } else {
            for line in part.lines().map(str::trim).filter(|l| !l.is_empty()) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_errors_naming_the_field_never_the_key() {
        let path = Path::new("sa.json");
        let problem = |json: &str| match ServiceAccountKey::from_json(json.as_bytes(), path) {
            Err(Error::CredentialsFile(crate::CredentialsFileProblem {
                problem, path: p, ..
            })) => {
                assert_eq!(p, path);
                problem
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted {json}"),
        };
        assert_eq!(
            problem(r#"{"type": "service_account", "client_email": "a@b"}"#),
            TokenFileProblem::MissingField("private_key")
        );
        assert_eq!(
            problem(r#"{"private_key": 5}"#),
            TokenFileProblem::WrongType("private_key")
        );
        let garbage = r#"{"private_key": "-----BEGIN PRIVATE KEY-----\nSECRETKEYMARKER\n-----END PRIVATE KEY-----\n", "client_email": "a@b"}"#;
        let p = problem(garbage);
        assert_eq!(p, TokenFileProblem::BadPrivateKey);
        assert!(!p.to_string().contains("SECRETKEYMARKER"));
        assert!(matches!(problem("{"), TokenFileProblem::NotJson { .. }));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                3 => "[A-Za-z0-9+/=._@-]{0,40}".prop_map(|s| json!(format!("KEYMARKER{s}"))),
                1 => "[A-Za-z0-9+/=]{0,200}".prop_map(|s| json!(format!(
                    "-----BEGIN PRIVATE KEY-----\nKEYMARKER{s}\n-----END PRIVATE KEY-----\n"
                ))),
                1 => Just(Value::Null),
                1 => any::<i64>().prop_map(Value::from),
                1 => Just(json!({})),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Never panics, never accepts a key that is not one, and never
            /// shows a field's value.
            #[test]
            fn any_service_account_file(
                fields in prop::collection::vec(prop::option::of(value()), 4),
                garbage in prop::collection::vec(any::<u8>(), 0..64),
                raw in any::<bool>(),
            ) {
                let bytes = if raw {
                    garbage
                } else {
                    let mut map = serde_json::Map::new();
                    for (key, v) in ["private_key", "client_email", "private_key_id", "token_uri"]
                        .iter()
                        .zip(fields)
                    {
                        if let Some(v) = v {
                            map.insert((*key).into(), v);
                        }
                    }
                    serde_json::to_vec(&Value::Object(map)).unwrap()
                };
                match ServiceAccountKey::from_json(&bytes, Path::new("sa.json")) {
                    Ok(_) => prop_assert!(false, "random bytes made an RSA key"),
                    Err(e) => {
                        let text = format!("{e} {e:?}");
                        prop_assert!(!text.contains("KEYMARKER"), "{}", text);
                        prop_assert!(matches!(e, Error::CredentialsFile(_)), "{:?}", e);
                    }
                }
            }
        }
    }
}
