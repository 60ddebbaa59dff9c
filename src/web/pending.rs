//! [`PendingSignIn`]: what an app keeps between the redirect to the
//! authorization server and the callback.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sign-in started by [`WebFlow::authorization_url`](super::WebFlow::authorization_url)
/// and not finished yet: its `state`, its PKCE verifier, the scopes asked
/// for and the redirect URI, which [`WebFlow::finish`](super::WebFlow::finish)
/// needs when the user comes back.
///
/// Keep it on the server (a session store, Redis, a database row keyed by a
/// session cookie): it is serializable for that, with serde, as a small JSON
/// object. It holds the PKCE verifier, a secret: do not put it in a cookie
/// or a URL unless encrypted, and never log it. `Debug` shows neither the
/// state nor the verifier. Reading one with an empty state, or a verifier
/// RFC 7636 does not allow (43 to 128 characters), is an error.
#[derive(Clone)]
pub struct PendingSignIn {
    pub(crate) state: SecretString,
    pub(crate) verifier: SecretString,
    pub(crate) scopes: Vec<String>,
    pub(crate) redirect_uri: String,
    /// Seconds since the Unix epoch.
    pub(crate) started_at: u64,
}

impl PendingSignIn {
    /// The scopes this sign-in asked for (with `include_granted_scopes`,
    /// the user may be granted more).
    #[must_use]
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The redirect URI the authorization URL named.
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// When the sign-in started.
    #[must_use]
    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(self.started_at))
            .unwrap_or(UNIX_EPOCH)
    }

    /// Whether the sign-in started more than `max_age` ago, or claims to
    /// start more than `max_age` from now (a clock far off, an edited
    /// record): either way it is outside the window.
    pub(crate) fn is_older_than(&self, max_age: Duration) -> bool {
        match SystemTime::now().duration_since(self.started_at()) {
            Ok(age) => age > max_age,
            Err(ahead) => ahead.duration() > max_age,
        }
    }
}

impl fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("state", &"[redacted]")
            .field("verifier", &"[redacted]")
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("started_at", &self.started_at)
            .finish()
    }
}

/// The serialized form.
#[derive(Serialize, Deserialize)]
struct Wire<S> {
    state: S,
    verifier: S,
    scopes: Vec<String>,
    redirect_uri: String,
    started_at: u64,
}

impl Serialize for PendingSignIn {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        Wire {
            state: self.state.expose_secret(),
            verifier: self.verifier.expose_secret(),
            scopes: self.scopes.clone(),
            redirect_uri: self.redirect_uri.clone(),
            started_at: self.started_at,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PendingSignIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = Wire::<String>::deserialize(deserializer)?;
        // Neither comes from `authorization_url`: an empty state would pass
        // the check for a callback with `state=`.
        if w.state.is_empty() {
            return Err(D::Error::custom("a pending sign-in's state is empty"));
        }
        if !(43..=128).contains(&w.verifier.len()) {
            return Err(D::Error::custom(
                "a pending sign-in's PKCE verifier is not 43 to 128 characters long (RFC 7636)",
            ));
        }
        Ok(PendingSignIn {
            state: SecretString::from(w.state),
            verifier: SecretString::from(w.verifier),
            scopes: w.scopes,
            redirect_uri: w.redirect_uri,
            started_at: w.started_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingSignIn {
        PendingSignIn {
            state: SecretString::from("STATEMARKER"),
            verifier: SecretString::from(format!("VERIFIERMARKER{}", "v".repeat(43))),
            scopes: vec!["s1".into()],
            redirect_uri: "https://app.example/cb".into(),
            started_at: 1_800_000_000,
        }
    }

    #[test]
    fn round_trips_through_json_and_debug_hides_the_secrets() {
        let json = serde_json::to_string(&pending()).unwrap();
        let back: PendingSignIn = serde_json::from_str(&json).unwrap();
        assert_eq!(back.state.expose_secret(), "STATEMARKER");
        assert!(back.verifier.expose_secret().starts_with("VERIFIERMARKER"));
        assert_eq!(back.scopes(), ["s1"]);
        assert_eq!(back.redirect_uri(), "https://app.example/cb");
        assert_eq!(back.started_at, 1_800_000_000);
        let shown = format!("{back:?} {:#?}", pending());
        assert!(!shown.contains("MARKER"), "{shown}");
        assert!(serde_json::from_str::<PendingSignIn>(r#"{"state":"x"}"#).is_err());
    }

    #[test]
    fn age() {
        let mut p = pending();
        p.started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(!p.is_older_than(Duration::from_secs(60)));
        p.started_at -= 120;
        assert!(p.is_older_than(Duration::from_secs(60)));
    }
}
