//! Where tokens live between runs: the [`TokenStore`] trait and its
//! file, memory, (feature `redis`) Redis and (feature `keyring`) OS keyring
//! implementations.

pub(crate) mod file;
mod keyed;
#[cfg(feature = "keyring")]
mod keyring;
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "keyring")]
pub use self::keyring::{KeyringTokenStore, Migration};
#[cfg(feature = "redis")]
pub use self::redis::RedisTokenStore;
pub use file::FileTokenStore;
#[cfg(feature = "redis")]
pub use keyed::RedisKeyedTokenStore;
pub use keyed::{DirectoryTokenStore, KeyedTokenStore, MAX_USER_ID_LEN};
pub use memory::MemoryTokenStore;

use crate::error::Result;
use crate::token::StoredToken;

/// The token `json` a store holds, if any; one that does not parse is an
/// [`Error::TokenFile`](crate::Error::TokenFile) naming `store`.
#[cfg(any(feature = "keyring", feature = "redis"))]
fn parse_stored(store: &impl TokenStore, json: Option<Vec<u8>>) -> Result<Option<StoredToken>> {
    json.map(|json| {
        StoredToken::from_json(&json).map_err(|problem| crate::Error::TokenFile {
            path: store.name().into(),
            problem,
        })
    })
    .transpose()
}

/// A place to keep [`StoredToken`]s between runs.
///
/// Implement it with plain `async fn`s. A failure to read is an error, never
/// "no token": return `Ok(None)` only when the store is really empty, so a
/// broken store cannot silently send the user through consent again.
///
/// ```
/// use gemini_oauth::{Error, Result, StoredToken, TokenStore};
///
/// /// Keeps the token JSON in an environment-like key/value map.
/// struct KvStore(std::sync::Mutex<std::collections::HashMap<String, String>>);
///
/// impl TokenStore for KvStore {
///     async fn load(&self) -> Result<Option<StoredToken>> {
///         let json = self.0.lock().unwrap().get("token").cloned();
///         json.map(|j| StoredToken::from_json(j.as_bytes())
///                 .map_err(|p| Error::store(self.name(), "parse", p.to_string())))
///             .transpose()
///     }
///     async fn save(&self, token: &StoredToken) -> Result<()> {
///         self.0.lock().unwrap().insert("token".into(), token.to_json());
///         Ok(())
///     }
///     async fn clear(&self) -> Result<()> {
///         self.0.lock().unwrap().remove("token");
///         Ok(())
///     }
/// }
/// ```
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, or `None` when the store is empty.
    fn load(&self) -> impl Future<Output = Result<Option<StoredToken>>> + Send;

    /// Replaces the stored token.
    fn save(&self, token: &StoredToken) -> impl Future<Output = Result<()>> + Send;

    /// Removes the stored token (sign-out). Clearing an empty store succeeds.
    fn clear(&self) -> impl Future<Output = Result<()>> + Send;

    /// Takes a lock shared by every process (or machine) that uses this
    /// store, waiting at most `wait`; it is held until the returned
    /// [`StoreLock`] is dropped. The loader holds it while it refreshes or
    /// runs the consent flow, and re-reads the store once it has it, so N
    /// processes sharing one expired token make one refresh and open one
    /// browser window.
    ///
    /// The default takes no lock (`Ok(None)`): right for stores used by one
    /// process only.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout) when another holder keeps the
    /// lock longer than `wait`, or the store's own errors.
    fn lock(&self, wait: Duration) -> impl Future<Output = Result<Option<StoreLock>>> + Send {
        let _ = wait;
        std::future::ready(Ok(None))
    }

    /// A short name for messages, such as the file path.
    fn name(&self) -> String {
        std::any::type_name::<Self>()
            .rsplit("::")
            .next()
            .unwrap_or("token store")
            .to_owned()
    }
}

/// A held [`TokenStore::lock`]; dropping it releases the lock.
#[must_use = "the lock is released as soon as the StoreLock is dropped"]
pub struct StoreLock {
    _guard: Box<dyn Send + Sync>,
}

impl StoreLock {
    /// Wraps whatever releases the lock when dropped (a locked file, a
    /// handle whose `Drop` deletes a key…).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        StoreLock {
            _guard: Box::new(guard),
        }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreLock")
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe twin of [`TokenStore`], so the loader can hold `Arc<dyn …>`.
pub(crate) trait DynTokenStore: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<Option<StoredToken>>>;
    fn save<'a>(&'a self, token: &'a StoredToken) -> BoxFuture<'a, Result<()>>;
    #[allow(dead_code)] // used by revoke
    fn clear(&self) -> BoxFuture<'_, Result<()>>;
    fn lock(&self, wait: Duration) -> BoxFuture<'_, Result<Option<StoreLock>>>;
    fn name(&self) -> String;
}

impl<T: TokenStore> DynTokenStore for T {
    fn load(&self) -> BoxFuture<'_, Result<Option<StoredToken>>> {
        Box::pin(TokenStore::load(self))
    }
    fn save<'a>(&'a self, token: &'a StoredToken) -> BoxFuture<'a, Result<()>> {
        Box::pin(TokenStore::save(self, token))
    }
    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(TokenStore::clear(self))
    }
    fn lock(&self, wait: Duration) -> BoxFuture<'_, Result<Option<StoreLock>>> {
        Box::pin(TokenStore::lock(self, wait))
    }
    fn name(&self) -> String {
        TokenStore::name(self)
    }
}
