//! The authentication headers, built in one place for
//! [`Credentials::headers`](crate::Credentials::headers) and the authorized client.

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::access_token::AccessToken;

/// `x-goog-user-project`: the project billed for the call.
pub(crate) const USER_PROJECT: HeaderName = HeaderName::from_static("x-goog-user-project");

/// `x-goog-api-key`: API-key credentials.
pub(crate) const API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// What authenticates a request: a bearer token, or an API key (never both:
/// Google rejects a request that carries the two).
#[derive(Clone)]
pub(crate) enum Auth {
    Bearer(AccessToken),
    ApiKey(HeaderValue),
}

impl Auth {
    /// Sets our headers on `headers`, replacing any the caller set under the
    /// same names, so none is ever sent twice.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, quota_project: Option<&HeaderValue>) {
        match self {
            Auth::Bearer(token) => {
                headers.remove(API_KEY);
                headers.insert(AUTHORIZATION, token.header_value().clone());
            }
            Auth::ApiKey(key) => {
                headers.remove(AUTHORIZATION);
                headers.insert(API_KEY, key.clone());
            }
        }
        if let Some(project) = quota_project {
            headers.insert(USER_PROJECT, project.clone());
        }
    }

    /// The bearer token, when this is one (for the refresh after a 401).
    pub(crate) fn bearer(&self) -> Option<&AccessToken> {
        match self {
            Auth::Bearer(token) => Some(token),
            Auth::ApiKey(_) => None,
        }
    }
}

/// A header value that `Debug` and hyper's logging never show.
pub(crate) fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_replaces_a_caller_bearer_and_quota_is_not_duplicated() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer caller"));
        headers.append(USER_PROJECT, HeaderValue::from_static("caller-project"));
        let key = sensitive(HeaderValue::from_static("AIzaKEY"));
        Auth::ApiKey(key).apply(&mut headers, Some(&HeaderValue::from_static("ours")));
        assert!(headers.get(AUTHORIZATION).is_none());
        assert_eq!(headers.get(API_KEY).unwrap(), "AIzaKEY");
        assert!(headers.get(API_KEY).unwrap().is_sensitive());
        let projects: Vec<_> = headers.get_all(USER_PROJECT).iter().collect();
        assert_eq!(projects, ["ours"]);
    }
}
