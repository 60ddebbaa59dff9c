use std::fmt;
use std::time::Duration;

use ::redis::Client;

use super::{KeyedTokenStore, encode_user_id};
use crate::error::{Error, Result};
use crate::store::RedisTokenStore;

/// One Redis key per user, each a [`RedisTokenStore`] with its own fenced
/// refresh lock (feature `redis`): app replicas sharing the server make one
/// refresh per user when that user's token expires.
///
/// User `U` is kept at `{prefix}{encoded U}` and locked at
/// `{prefix}{encoded U}:lock`, the id encoded as by
/// [`DirectoryTokenStore`](crate::DirectoryTokenStore) (`:` and `%` are
/// encoded, so no id names another id's lock). The value is the token JSON
/// in google-auth's `token.json` format.
///
/// ```no_run
/// use gemini_oauth::{KeyedTokenStore, RedisKeyedTokenStore};
/// # async fn f() -> gemini_oauth::Result<()> {
/// let users = RedisKeyedTokenStore::open("redis://10.0.0.5:6379/0", "my-app:tokens:")?;
/// let token = users.load("118234829301").await?; // key my-app:tokens:118234829301
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisKeyedTokenStore {
    client: Client,
    prefix: String,
    lock_ttl: Duration,
}

impl fmt::Debug for RedisKeyedTokenStore {
    /// The prefix, never the server's URL (it may hold a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyedTokenStore")
            .field("prefix", &self.prefix)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisKeyedTokenStore {
    /// Users' keys start with `prefix` in the server `client` connects to.
    #[must_use]
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        RedisKeyedTokenStore {
            client,
            prefix: prefix.into(),
            lock_ttl: RedisTokenStore::DEFAULT_LOCK_TTL,
        }
    }

    /// Like [`new`](Self::new), with a URL such as
    /// `redis://[:password@]host[:port][/db]`.
    ///
    /// # Errors
    /// [`Error::Store`] when the URL cannot be parsed (the message never
    /// contains the URL).
    pub fn open(url: &str, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        let client = Client::open(url)
            .map_err(|e| Error::store(format!("redis keys {prefix}*"), "parse the Redis URL", e))?;
        Ok(Self::new(client, prefix))
    }

    /// Each user's lock TTL (see [`RedisTokenStore::lock_ttl`]).
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// The key holding `user_id`'s token.
    ///
    /// # Errors
    /// As [`KeyedTokenStore::for_user`].
    pub fn key_of(&self, user_id: &str) -> Result<String> {
        Ok(format!("{}{}", self.prefix, encode_user_id(user_id)?))
    }
}

impl KeyedTokenStore for RedisKeyedTokenStore {
    type Store = RedisTokenStore;

    fn for_user(&self, user_id: &str) -> Result<RedisTokenStore> {
        Ok(
            RedisTokenStore::new(self.client.clone(), self.key_of(user_id)?)
                .lock_ttl(self.lock_ttl),
        )
    }
}
