//! google-apis-common's `GetToken` for [`Credentials`] (feature
//! `google-apis-common`): the authenticator of the google-apis-rs hubs
//! (the generated `google-*1` crates), which take any `GetToken`.
//!
//! Scopes: those the credentials were loaded with; see `requested_scopes.rs`
//! for what happens to others.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;

use ::google_apis_common::GetToken;

use crate::credentials::Credentials;
use crate::requested_scopes::note_ungranted;

/// What `GetToken::get_token` returns.
type TokenFuture<'a> = Pin<
    Box<dyn Future<Output = Result<Option<String>, Box<dyn StdError + Send + Sync>>> + Send + 'a>,
>;

impl GetToken for Credentials {
    /// `Some` current access token, as [`Credentials::access_token`]
    /// (cached, refreshed once for all callers). `scopes` do not choose the
    /// token: it carries the scopes the credentials were loaded with,
    /// whatever is asked. Errors are [`Error`](crate::Error)s (API-key
    /// credentials: [`Error::NoAccessToken`](crate::Error::NoAccessToken)),
    /// boxed; their text never holds a secret.
    fn get_token<'a>(&'a self, scopes: &'a [&str]) -> TokenFuture<'a> {
        Box::pin(async move {
            note_ungranted(self, scopes, "google-apis-common");
            let token = self.access_token().await?;
            Ok(Some(token.secret().to_owned()))
        })
    }
}
