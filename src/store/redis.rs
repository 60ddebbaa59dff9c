use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{StoreLock, TokenStore};
use crate::error::{Error, Result};
use crate::token::StoredToken;

/// Connect and response timeout of every Redis operation.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiting [`TokenStore::lock`] tries again.
const LOCK_POLL: Duration = Duration::from_millis(50);
/// Extends the lock while it is still ours.
const RENEW: &str = "if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('pexpire',KEYS[1],ARGV[2]) else return 0 end";

/// Deletes the lock only if it still holds our owner id.
const RELEASE: &str =
    "if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

/// Saves the token only while the lock (KEYS[2]) still holds our owner id.
const SAVE_IF_OWNER: &str = "if redis.call('get',KEYS[2])==ARGV[2] then redis.call('set',KEYS[1],ARGV[1]) return 1 else return 0 end";

/// Without the lock: saves the token (ARGV[1]) unless the stored one expires
/// later. Expiries are google-auth's `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, compared
/// as text once the fraction is padded to six digits; a stored record that
/// does not parse, or has no expiry or one that is not such a time (which
/// `load()` refuses too), is replaced.
const SAVE_IF_NEWER: &str = r"
local function at(e)
  if type(e) ~= 'string' then return '' end
  local mo, d, h, mi, s = string.match(e, '^%d%d%d%d%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)')
  if not mo then return '' end
  mo, d, h, mi, s = tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or s > 59 then return '' end
  local frac = string.match(e, '^%.(%d+)', 20) or ''
  return string.sub(e, 1, 19) .. string.sub(frac .. '000000', 1, 6)
end
local function expiry(json)
  local ok, t = pcall(cjson.decode, json)
  if ok and type(t) == 'table' then return at(t.expiry) end
  return ''
end
local stored = redis.call('get', KEYS[1])
if stored and expiry(stored) > expiry(ARGV[1]) then return 0 end
redis.call('set', KEYS[1], ARGV[1])
return 1
";

/// Deletes the token only while the lock (KEYS[2]) still holds our owner id.
const CLEAR_IF_OWNER: &str = "if redis.call('get',KEYS[2])==ARGV[1] then redis.call('del',KEYS[1]) return 1 else return 0 end";

/// Without the lock: deletes the token only while nobody holds the lock.
const CLEAR_IF_UNLOCKED: &str =
    "if redis.call('exists',KEYS[2])==0 then redis.call('del',KEYS[1]) return 1 else return 0 end";

/// Keeps the token in Redis, so workers on many machines share one refresh
/// token and make one refresh when it expires (feature `redis`).
///
/// Keys, for a store made with key `K`:
///
/// - `K` holds the token JSON exactly as [`StoredToken::to_json`] writes it
///   (google-auth's `token.json` format). It has no TTL: the refresh token in
///   it lives for months and is the only way back without a browser, so it
///   must not vanish because the access token next to it expired.
/// - `K:lock` holds the [`TokenStore::lock`]: a random owner id, written with
///   `SET K:lock <owner> NX PX <ttl>`, deleted on release by a Lua
///   compare-and-delete so that only its owner can release it.
///
/// The lock TTL ([`lock_ttl`](Self::lock_ttl), default
/// [`DEFAULT_LOCK_TTL`](Self::DEFAULT_LOCK_TTL), 30 s) bounds how long a
/// crashed holder blocks the others. A live holder renews the lock every
/// third of the TTL, so a long refresh or a consent flow waiting minutes for
/// a human keeps it; only a holder that stops running (crash, partition)
/// lets it expire.
///
/// Every write is fenced, in one Lua script run by the server:
///
/// - A holder of the lock saves and clears only while `K:lock` still holds
///   its owner id. A holder that lost its lock anyway (its renewal found
///   another owner) is told so: the renewal logs a warning, and its save or
///   clear fails with [`Error::Store`] instead of writing over the token that
///   the new holder may have saved.
/// - Without the lock (a store whose lock could not be taken, or a direct
///   call), a save writes only when the stored token does not expire later
///   than this one, and a clear only while nobody holds the lock; otherwise
///   they fail with [`Error::Store`] and change nothing.
///
/// The lock belongs to the store value that took it: each
/// [`lock`](TokenStore::lock) gets an owner id of its own, and a clone of
/// the store does not share it (its writes are the unlocked ones above).
///
/// What fencing does not prevent: a holder that stalls past the TTL (a long
/// garbage-collection pause, a partition) while its refresh request is on
/// the wire still makes that refresh at Google, so the token endpoint may see
/// two refreshes of one refresh token; only the first holder's token is
/// saved, the other is used from memory by its process. Both access tokens
/// are valid. The fence also cannot order writes by clients that bypass
/// these scripts (a plain `SET` on `K`).
///
/// The lock is released when the [`StoreLock`] is dropped, by a task spawned
/// on the current tokio runtime; dropped outside a runtime (or when the
/// release fails) it expires after the TTL.
///
/// Each operation opens a short connection (a load when credentials are
/// loaded, then a lock, a load and a save per refresh, about once an hour).
/// For `rediss://` URLs enable one of the `redis` crate's TLS features
/// (such as `tokio-rustls-comp`) in your own `Cargo.toml`.
///
/// ```no_run
/// use gemini_oauth::{Consent, CredentialLoader, RedisTokenStore};
/// # async fn run() -> gemini_oauth::Result<()> {
/// let store = RedisTokenStore::open("redis://:password@10.0.0.5:6379/0", "gemini-oauth:default")?;
/// let creds = CredentialLoader::new().token_store(store).consent(Consent::Never).load().await?;
/// # let _ = creds; Ok(()) }
/// ```
pub struct RedisTokenStore {
    client: Client,
    key: String,
    lock_key: String,
    lock_ttl: Duration,
    /// The owner id of the lock this store value holds, if any (not its clones').
    holding: Arc<Mutex<Option<String>>>,
}

impl Clone for RedisTokenStore {
    /// The same server and keys, without the lock this value may hold: a
    /// clone that writes is fenced as one without the lock.
    fn clone(&self) -> Self {
        RedisTokenStore {
            client: self.client.clone(),
            key: self.key.clone(),
            lock_key: self.lock_key.clone(),
            lock_ttl: self.lock_ttl,
            holding: Arc::new(Mutex::new(None)),
        }
    }
}

impl RedisTokenStore {
    /// The default lock TTL: longer than a refresh, with its three retries.
    pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);

    /// The longest lock TTL: a year.
    pub const MAX_LOCK_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

    /// A store keeping the token at `key` (and its lock at `{key}:lock`) in
    /// the Redis server that `client` connects to. Nothing is connected yet.
    #[must_use]
    pub fn new(client: Client, key: impl Into<String>) -> Self {
        let key = key.into();
        RedisTokenStore {
            client,
            lock_key: format!("{key}:lock"),
            key,
            lock_ttl: Self::DEFAULT_LOCK_TTL,
            holding: Arc::new(Mutex::new(None)),
        }
    }

    /// Like [`new`](Self::new), with a URL such as
    /// `redis://[:password@]host[:port][/db]` or `redis+unix:///path`.
    ///
    /// # Errors
    /// [`Error::Store`] when the URL cannot be parsed (the message never
    /// contains the URL).
    pub fn open(url: &str, key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        let client = Client::open(url)
            .map_err(|e| Error::store(format!("redis key {key}"), "parse the Redis URL", e))?;
        Ok(Self::new(client, key))
    }

    /// How long the lock lives if its holder never releases it (crash, lost
    /// network, a drop outside a tokio runtime). At least 1 ms, at most
    /// [`MAX_LOCK_TTL`](Self::MAX_LOCK_TTL) (Redis refuses longer ones).
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.clamp(Duration::from_millis(1), Self::MAX_LOCK_TTL);
        self
    }

    /// The key holding the token JSON.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key holding the lock: `{key}:lock`.
    #[must_use]
    pub fn lock_key(&self) -> &str {
        &self.lock_key
    }

    async fn connect(&self, action: &'static str) -> Result<MultiplexedConnection> {
        connect(&self.client)
            .await
            .map_err(|e| self.error(action, e))
    }

    fn error(&self, action: &'static str, e: RedisError) -> Error {
        Error::store(TokenStore::name(self), action, e)
    }

    /// The owner id of the lock this value holds, if any.
    fn owner(&self) -> Option<String> {
        self.holding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs a fencing `script` on the token key and the lock key with `args`;
    /// `refused` explains a `0` answer.
    async fn fenced(
        &self,
        action: &'static str,
        script: &str,
        args: &[&str],
        refused: &'static str,
    ) -> Result<()> {
        let mut con = self.connect(action).await?;
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(script).arg(2).arg(&self.key).arg(&self.lock_key);
        for a in args {
            cmd.arg(*a);
        }
        let done: i64 = cmd
            .query_async(&mut con)
            .await
            .map_err(|e| self.error(action, e))?;
        if done == 1 {
            return Ok(());
        }
        Err(Error::store(TokenStore::name(self), action, refused))
    }
}

/// Why a holder's write was refused.
const LOST_LOCK: &str = "the refresh lock expired and another holder took it, so it may have \
     saved a newer token; nothing was written (consider a longer lock_ttl)";

async fn connect(client: &Client) -> std::result::Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

impl fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Address and database only: never the username or password.
        let info = self.client.get_connection_info();
        f.debug_struct("RedisTokenStore")
            .field("addr", &format_args!("{}", info.addr()))
            .field("db", &info.redis_settings().db())
            .field("key", &self.key)
            .field("lock_ttl", &self.lock_ttl)
            .finish()
    }
}

impl TokenStore for RedisTokenStore {
    async fn load(&self) -> Result<Option<StoredToken>> {
        let mut con = self.connect("load").await?;
        let json: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("load", e))?;
        super::parse_stored(self, json)
    }

    async fn save(&self, token: &StoredToken) -> Result<()> {
        let json = token.to_json();
        match self.owner() {
            Some(owner) => {
                self.fenced(
                    "save",
                    SAVE_IF_OWNER,
                    &[json.as_str(), owner.as_str()],
                    LOST_LOCK,
                )
                .await
            }
            None => {
                self.fenced(
                    "save",
                    SAVE_IF_NEWER,
                    &[json.as_str()],
                    "a token that expires later is stored (saved by another process or \
                     machine); this older one was not saved",
                )
                .await
            }
        }
    }

    async fn clear(&self) -> Result<()> {
        match self.owner() {
            Some(owner) => {
                self.fenced("clear", CLEAR_IF_OWNER, &[owner.as_str()], LOST_LOCK)
                    .await
            }
            None => {
                self.fenced(
                    "clear",
                    CLEAR_IF_UNLOCKED,
                    &[],
                    "another process holds the lock (a refresh or sign-in is under way), so \
                     it could save the token again; take the lock (TokenStore::lock) and clear \
                     under it",
                )
                .await
            }
        }
    }

    async fn lock(&self, wait: Duration) -> Result<Option<StoreLock>> {
        let mut bytes = [0u8; 18];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::store(self.name(), "make a lock owner id", e.to_string()))?;
        let owner = URL_SAFE_NO_PAD.encode(bytes);
        let ttl_ms = u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        // No deadline for a wait too long to add to now: it is unbounded.
        let deadline = Instant::now().checked_add(wait);
        let mut con = self.connect("lock").await?;
        loop {
            let taken: Option<String> = ::redis::cmd("SET")
                .arg(&self.lock_key)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut con)
                .await
                .map_err(|e| self.error("lock", e))?;
            if taken.is_some() {
                // A holder that runs longer than the TTL (a consent flow waits
                // minutes for a human) keeps the lock by renewing it.
                let renewal = tokio::runtime::Handle::try_current().ok().map(|rt| {
                    rt.spawn(renew(
                        self.client.clone(),
                        self.lock_key.clone(),
                        owner.clone(),
                        ttl_ms,
                    ))
                });
                *self.holding.lock().unwrap_or_else(PoisonError::into_inner) = Some(owner.clone());
                return Ok(Some(StoreLock::new(RedisLockGuard {
                    client: self.client.clone(),
                    lock_key: self.lock_key.clone(),
                    owner,
                    renewal,
                    holding: Arc::clone(&self.holding),
                })));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout {
                    what: format!(
                        "waiting for another holder of the Redis lock {} (token key {})",
                        self.lock_key, self.key
                    ),
                    after: wait,
                });
            }
            let left = deadline.map_or(LOCK_POLL, |d| d.saturating_duration_since(Instant::now()));
            tokio::time::sleep(LOCK_POLL.min(left)).await;
        }
    }

    fn name(&self) -> String {
        format!("redis key {}", self.key)
    }
}

/// Renews the lock every third of its TTL until it is no longer ours.
async fn renew(client: Client, key: String, owner: String, ttl_ms: u64) {
    let period = Duration::from_millis((ttl_ms / 3).max(1));
    loop {
        tokio::time::sleep(period).await;
        let renewed = async {
            let mut con = connect(&client).await?;
            ::redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(&key)
                .arg(&owner)
                .arg(ttl_ms)
                .query_async::<i64>(&mut con)
                .await
        };
        match renewed.await {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(
                    %key,
                    "the Redis lock expired and was taken by another holder; this holder will \
                     not save its token over theirs"
                );
                return;
            }
            Err(e) => tracing::warn!(%key, error = %e, "cannot renew the Redis lock; retrying"),
        }
    }
}

/// Releases the lock when dropped, if it still holds our owner id.
struct RedisLockGuard {
    client: Client,
    lock_key: String,
    owner: String,
    renewal: Option<tokio::task::JoinHandle<()>>,
    holding: Arc<Mutex<Option<String>>>,
}

impl Drop for RedisLockGuard {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        {
            let mut holding = self.holding.lock().unwrap_or_else(PoisonError::into_inner);
            if holding.as_deref() == Some(self.owner.as_str()) {
                *holding = None;
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(key = %self.lock_key, "no tokio runtime to release the Redis lock; it expires by its TTL");
            return;
        };
        let client = self.client.clone();
        let key = std::mem::take(&mut self.lock_key);
        let owner = std::mem::take(&mut self.owner);
        runtime.spawn(async move {
            let released = async {
                let mut con = connect(&client).await?;
                ::redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(&key)
                    .arg(&owner)
                    .query_async::<i64>(&mut con)
                    .await
            };
            match released.await {
                Ok(1) => tracing::debug!(%key, "released the Redis lock"),
                Ok(_) => {
                    tracing::warn!(%key, "the Redis lock had expired before it was released; consider a longer lock TTL")
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "cannot release the Redis lock; it expires by its TTL")
                }
            }
        });
    }
}
