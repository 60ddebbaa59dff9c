//! The universe domain: the DNS suffix every Google endpoint of one
//! deployment shares (`googleapis.com` for Google's public cloud; another for
//! a sovereign or partner cloud). The default endpoints are built from it
//! here, in one place.

use std::borrow::Cow;

use crate::endpoints::{DEFAULT_UNIVERSE_DOMAIN, GEMINI_API_BASE, GOOGLE_REVOKE_URI};
use crate::error::{Error, Result};

/// Google's default endpoints in one universe domain.
///
/// ```
/// use gemini_oauth::universe::Universe;
/// let u = Universe::new("example.test").unwrap();
/// assert_eq!(u.token_uri(), "https://oauth2.example.test/token");
/// assert_eq!(u.gemini_api_base(), "https://generativelanguage.example.test/v1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Universe {
    domain: String,
}

impl Default for Universe {
    fn default() -> Self {
        Universe {
            domain: DEFAULT_UNIVERSE_DOMAIN.to_owned(),
        }
    }
}

impl Universe {
    /// The universe `domain` (such as `googleapis.com`).
    ///
    /// # Errors
    /// [`Error::InvalidUniverseDomain`] unless `domain` is a DNS name:
    /// dot-separated labels of ASCII letters, digits and `-`.
    pub fn new(domain: &str) -> Result<Self> {
        Self::from_origin(domain, "the universe domain given")
    }

    /// Like [`new`](Self::new); errors say the value came from `origin`.
    pub(crate) fn from_origin(domain: &str, origin: &str) -> Result<Self> {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if domain.len() > 253 || !domain.split('.').all(label_ok) {
            return Err(Error::InvalidUniverseDomain {
                origin: origin.to_owned(),
            });
        }
        Ok(Universe {
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The domain, in lower case.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether this is Google's public universe, `googleapis.com`.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.domain == DEFAULT_UNIVERSE_DOMAIN
    }

    /// The OAuth 2.0 token endpoint: `https://oauth2.{domain}/token`.
    #[must_use]
    pub fn token_uri(&self) -> String {
        format!("https://oauth2.{}/token", self.domain)
    }

    /// The token revocation endpoint: `https://oauth2.{domain}/revoke`.
    #[must_use]
    pub fn revoke_uri(&self) -> String {
        format!("https://oauth2.{}/revoke", self.domain)
    }

    /// The IAM Credentials API (service-account impersonation):
    /// `https://iamcredentials.{domain}`.
    #[must_use]
    pub fn iam_credentials(&self) -> String {
        format!("https://iamcredentials.{}", self.domain)
    }

    /// The Security Token Service's token exchange (workload identity
    /// federation): `https://sts.{domain}/v1/token`.
    #[must_use]
    pub fn sts_token_uri(&self) -> String {
        format!("https://sts.{}/v1/token", self.domain)
    }

    /// The Gemini API base URL: `https://generativelanguage.{domain}/v1`.
    #[must_use]
    pub fn gemini_api_base(&self) -> String {
        format!("https://generativelanguage.{}/v1", self.domain)
    }

    /// What credentials keep of this universe: constants for the default
    /// one, so each of many users' credentials holds no copy.
    pub(crate) fn kept(&self) -> Kept {
        if self.is_default() {
            Kept {
                domain: Cow::Borrowed(DEFAULT_UNIVERSE_DOMAIN),
                gemini_api_base: Cow::Borrowed(GEMINI_API_BASE),
                revoke_uri: Cow::Borrowed(GOOGLE_REVOKE_URI),
            }
        } else {
            Kept {
                domain: Cow::Owned(self.domain.clone()),
                gemini_api_base: Cow::Owned(self.gemini_api_base()),
                revoke_uri: Cow::Owned(self.revoke_uri()),
            }
        }
    }
}

/// A universe's domain and the endpoints credentials keep.
pub(crate) struct Kept {
    pub(crate) domain: Cow<'static, str>,
    pub(crate) gemini_api_base: Cow<'static, str>,
    pub(crate) revoke_uri: Cow<'static, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::{GEMINI_API_BASE, GOOGLE_REVOKE_URI, GOOGLE_TOKEN_URI};

    #[test]
    fn the_default_universe_gives_the_public_endpoints() {
        let u = Universe::default();
        assert!(u.is_default());
        assert_eq!(u.token_uri(), GOOGLE_TOKEN_URI);
        assert_eq!(u.revoke_uri(), GOOGLE_REVOKE_URI);
        assert_eq!(u.gemini_api_base(), GEMINI_API_BASE);
        let kept = u.kept();
        assert_eq!(kept.revoke_uri, u.revoke_uri());
        assert_eq!(kept.domain, u.domain());
        assert_eq!(u.iam_credentials(), "https://iamcredentials.googleapis.com");
        assert_eq!(u.sts_token_uri(), "https://sts.googleapis.com/v1/token");
    }

    #[test]
    fn only_dns_names_are_domains() {
        assert_eq!(
            Universe::new("Example.TEST").unwrap().domain(),
            "example.test"
        );
        for bad in [
            "",
            "a..b",
            "evil.test/x",
            "a@b.test",
            "b.test:443",
            "-a.test",
            "a b",
        ] {
            let err = Universe::new(bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidUniverseDomain { .. }),
                "{bad}: {err:?}"
            );
        }
    }
}
