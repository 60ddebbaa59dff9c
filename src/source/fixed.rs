//! A fixed access token that is never refreshed: the token source behind
//! [`Credentials::from_access_token`](crate::Credentials::from_access_token),
//! a test double for users' own tests (no files, no server).

use crate::error::{Error, Result};
use crate::token_cache::{BoxFuture, Fetched, TokenSource};

/// Where the token came from, for messages.
const DESCRIPTION: &str = "a fixed access token (Credentials::from_access_token, a test double)";

/// Refuses every refresh with [`Error::CannotRefresh`]: when the fixed token
/// expires, or a caller forces a refresh, that error is the answer.
pub(crate) struct FixedSource;

impl TokenSource for FixedSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched>> {
        Box::pin(std::future::ready(Err(Error::CannotRefresh {
            source_name: DESCRIPTION.to_owned(),
            reason: "its token is fixed and is never refreshed; give it a later expiry, or load \
                     real credentials",
        })))
    }

    fn describe(&self) -> String {
        DESCRIPTION.to_owned()
    }
}
