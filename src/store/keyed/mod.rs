//! Tokens of many users, one record per user id: the [`KeyedTokenStore`]
//! trait, [`DirectoryTokenStore`] (one google-auth file per user) and, with
//! feature `redis`, [`RedisKeyedTokenStore`] (one key and one refresh lock
//! per user).

mod directory;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::time::Duration;

pub use directory::DirectoryTokenStore;
#[cfg(feature = "redis")]
pub use redis::RedisKeyedTokenStore;

use super::{StoreLock, TokenStore};
use crate::error::{Error, Result};
use crate::token::StoredToken;

/// The longest user id taken, in bytes (an encoded id must fit a file name).
pub const MAX_USER_ID_LEN: usize = 64;

/// Where the tokens of many users live: one [`TokenStore`] per user id, each
/// with its own record and its own lock, so the loader and the token cache
/// work on one user's store exactly as on a single `token.json`.
///
/// Implement [`for_user`](Self::for_user); the rest are shorthands for the
/// user's store.
pub trait KeyedTokenStore: Send + Sync + 'static {
    /// One user's store.
    type Store: TokenStore + Clone;

    /// The store of `user_id` (no I/O).
    ///
    /// # Errors
    /// [`Error::Store`] when `user_id` is empty or longer than
    /// [`MAX_USER_ID_LEN`] bytes.
    fn for_user(&self, user_id: &str) -> Result<Self::Store>;

    /// The user's stored token, or `None` when the user has none.
    fn load(&self, user_id: &str) -> impl Future<Output = Result<Option<StoredToken>>> + Send {
        async move { self.for_user(user_id)?.load().await }
    }

    /// Replaces the user's stored token.
    fn save(&self, user_id: &str, token: &StoredToken) -> impl Future<Output = Result<()>> + Send {
        async move { self.for_user(user_id)?.save(token).await }
    }

    /// Removes the user's stored token; clearing an absent one succeeds.
    fn clear(&self, user_id: &str) -> impl Future<Output = Result<()>> + Send {
        async move { self.for_user(user_id)?.clear().await }
    }

    /// Takes the user's lock (see [`TokenStore::lock`]).
    fn lock(
        &self,
        user_id: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<StoreLock>>> + Send {
        async move { self.for_user(user_id)?.lock(wait).await }
    }
}

/// `user_id` as a name that is safe as a file name on every system and as
/// part of a Redis key: ASCII lower-case letters, digits, `-` and `_` stay,
/// every other byte becomes `%XX` (upper-case hex). Upper-case letters are
/// encoded too, so two ids never share a file on a case-insensitive file
/// system; `.`, `/`, `\` and `:` can never appear, so no id climbs out of
/// its directory or names another id's lock.
pub(crate) fn encode_user_id(user_id: &str) -> Result<String> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
        return Err(Error::store(
            "keyed token store",
            "name a user's record",
            format!("a user id must be 1 to {MAX_USER_ID_LEN} bytes long"),
        ));
    }
    let mut out = String::with_capacity(user_id.len());
    for b in user_id.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_become_safe_distinct_names() {
        let enc = |s| encode_user_id(s).unwrap();
        assert_eq!(enc("1234567890"), "1234567890");
        assert_eq!(enc("alice"), "alice");
        assert_eq!(enc("Alice"), "%41lice");
        assert_eq!(enc("a@b.com"), "a%40b%2Ecom");
        assert_eq!(enc(".."), "%2E%2E");
        assert_eq!(enc("../x"), "%2E%2E%2Fx");
        assert_eq!(enc("a\\b"), "a%5Cb");
        assert_eq!(enc("x:lock"), "x%3Alock");
        assert_eq!(enc("%41lice"), "%2541lice");
        assert_eq!(enc("é"), "%C3%A9");
        assert!(encode_user_id("").is_err());
        assert!(encode_user_id(&"a".repeat(MAX_USER_ID_LEN + 1)).is_err());
        // The longest id, all encoded, still fits a file name with its suffix.
        let longest = enc(&"\u{7f}".repeat(MAX_USER_ID_LEN));
        assert!(longest.len() + "user-.json.lock".len() < 255);
    }

    proptest::proptest! {
        #[test]
        fn encoding_is_injective_and_safe(a in "\\PC{1,16}", b in "\\PC{1,16}") {
            let (ea, eb) = (encode_user_id(&a), encode_user_id(&b));
            if let (Ok(ea), Ok(eb)) = (ea, eb) {
                proptest::prop_assert_eq!(a == b, ea == eb);
                // Distinct even where the file system ignores case.
                proptest::prop_assert_eq!(a == b, ea.eq_ignore_ascii_case(&eb));
                for e in [&ea, &eb] {
                    proptest::prop_assert!(e.bytes().all(|c| c.is_ascii_alphanumeric() || b"%-_".contains(&c)));
                }
            }
        }
    }
}
