use std::fmt;
use std::path::Path;
use std::time::Duration;

use ::keyring::Entry;

use super::TokenStore;
use super::file::{FileTokenStore, read_capped, resolve_links};
use crate::error::{Error, Result};
use crate::token::StoredToken;

/// Why a save finds "no entry": on Linux, keyring links the key into the
/// user's persistent keyring, which a process without a session keyring of
/// its own may not write.
const NO_SESSION_KEYRING: &str = "the store refused the entry; on Linux the process needs a \
     session keyring of its own, as a login session has (in a container or a service, run it \
     under `keyctl session -`)";

/// How long [`KeyringTokenStore::migrate_from_file`] waits for another
/// process that holds the token file's lock (a refresh in progress).
const MIGRATE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Keeps the whole `token.json` record (refresh token included) in the
/// operating system's credential store, so no refresh token sits in a plain
/// file (feature `keyring`).
///
/// The entry is named by a *service* and an *account*: the service is
/// [`DEFAULT_SERVICE`](Self::DEFAULT_SERVICE) (`gemini-oauth`) unless
/// [`service`](Self::service) says otherwise, and the account is the name
/// given to [`new`](Self::new) (one per signed-in user or app, such as
/// `"default"` or an e-mail address). Its value is the token JSON exactly as
/// [`StoredToken::to_json`] writes it, the same bytes a [`FileTokenStore`]
/// writes to `token.json`.
///
/// The store is chosen when the `keyring` crate is compiled:
///
/// - macOS: the login Keychain (a generic password; service and account as
///   above);
/// - Windows: the Credential Manager (a generic credential whose target is
///   `account.service`; at most 2,560 bytes, enough for a token.json);
/// - Linux: the kernel keyring (keyutils), as a `user` key described
///   `keyring-rs:account@service`, linked to the session keyring and the
///   user's persistent keyring. It needs no daemon and works headless, but
///   the kernel keeps it in memory: it is gone after a reboot (and after the
///   persistent keyring expires, a few days after the user's last login
///   session ends); the next load then finds no token and signs in again.
///   The process needs a session keyring of its own, as every login
///   session has (pam_keyinit); in a container or a service without one,
///   run the program under `keyctl session -`, else saving fails with
///   [`Error::Store`] saying so.
///   For the desktop's Secret Service (GNOME Keyring, KWallet), which keeps
///   it on disk, add `keyring = { version = "3.6", features =
///   ["sync-secret-service", "crypto-rust"] }` to your own `Cargo.toml`:
///   cargo builds one `keyring` crate for both, and with that feature it
///   makes Secret Service its store.
///
/// Each call is blocking in the OS and runs on tokio's blocking pool. The
/// store takes no cross-process lock (the default of [`TokenStore::lock`]).
/// Nothing secret reaches `Debug` or an error: errors name the service and
/// account only.
///
/// ```no_run
/// use gemini_oauth::{CredentialLoader, KeyringTokenStore};
/// # async fn run() -> gemini_oauth::Result<()> {
/// let store = KeyringTokenStore::new("default");
/// // Once: move an existing token.json into the keyring (the file is removed).
/// store.migrate_from_file("token.json").await?;
/// let creds = CredentialLoader::new().token_store(store).load().await?;
/// # let _ = creds; Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeyringTokenStore {
    service: String,
    account: String,
}

/// What [`KeyringTokenStore::migrate_from_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migration {
    /// The file's token is now in the keyring and the file is gone.
    Moved,
    /// There was no file: nothing changed.
    NoFile,
}

impl KeyringTokenStore {
    /// The service name entries get unless [`service`](Self::service) sets another.
    pub const DEFAULT_SERVICE: &'static str = "gemini-oauth";

    /// A store for the entry (`gemini-oauth`, `account`). Nothing is read yet.
    #[must_use]
    pub fn new(account: impl Into<String>) -> Self {
        KeyringTokenStore {
            service: Self::DEFAULT_SERVICE.to_owned(),
            account: account.into(),
        }
    }

    /// Another service name, such as your application's.
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// The entry's service name.
    #[must_use]
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The entry's account name.
    #[must_use]
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Moves the token in the `token.json` at `path` into this entry, then
    /// deletes the file. When `path` is a symbolic link (a dotfile
    /// manager's), the file it points to is deleted, then the link: no
    /// plaintext copy of the refresh token is left behind.
    ///
    /// The file is parsed first, saved, read back and compared; only when
    /// the keyring holds the same token is the file removed. The file's
    /// token replaces whatever the entry held. The file's lock (the one
    /// [`FileTokenStore`] takes) is held meanwhile, so a process refreshing
    /// through the file cannot write a newer token that would be lost.
    ///
    /// # Errors
    /// [`Error::TokenFile`] when the file is corrupt, [`Error::Io`] when it
    /// cannot be read or deleted, [`Error::Store`] when the keyring fails or
    /// gives back something else; in every case the file is left where it
    /// was (the keyring may already hold the token).
    pub async fn migrate_from_file(&self, path: impl AsRef<Path>) -> Result<Migration> {
        let path = path.as_ref();
        let file = FileTokenStore::new(path);
        let _lock = file.lock(MIGRATE_LOCK_WAIT).await?;
        let bytes = match read_capped(path, false) {
            Ok(bytes) => bytes,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Migration::NoFile);
            }
            Err(e) => return Err(e),
        };
        let token = StoredToken::from_json(&bytes).map_err(|problem| Error::TokenFile {
            path: path.to_owned(),
            problem,
        })?;
        self.save(&token).await?;
        let back = self.load().await?;
        if back.as_ref().map(StoredToken::to_json) != Some(token.to_json()) {
            return Err(Error::store(
                self.name(),
                "verify the migrated token",
                format!(
                    "the keyring gave back a different token; {} was kept",
                    path.display()
                ),
            ));
        }
        let target = resolve_links(path)?;
        std::fs::remove_file(&target).map_err(|e| Error::io("delete token file", &target, e))?;
        if target != path {
            std::fs::remove_file(path)
                .map_err(|e| Error::io("delete the link to the token file", path, e))?;
        }
        tracing::info!(path = %path.display(), store = %self.name(), "moved the token file into the keyring");
        Ok(Migration::Moved)
    }

    /// Runs `op` on the entry on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        action: &'static str,
        op: impl FnOnce(&Entry) -> ::keyring::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (service, account) = (self.service.clone(), self.account.clone());
        let name = self.name();
        let outcome = tokio::task::spawn_blocking(move || {
            let entry = Entry::new(&service, &account)?;
            op(&entry)
        })
        .await
        .map_err(|e| Error::store(name.clone(), action, e.to_string()))?;
        outcome.map_err(|e| Error::store(name, action, describe(e)))
    }
}

/// The keyring error's text, without anything it may carry from the entry
/// (`BadEncoding` holds the stored bytes; `Ambiguous` lists credentials).
fn describe(e: ::keyring::Error) -> String {
    match e {
        ::keyring::Error::BadEncoding(_) => "the entry is not UTF-8 text".to_owned(),
        ::keyring::Error::Ambiguous(found) => format!(
            "{} entries match this service and account; remove the extra ones",
            found.len()
        ),
        ::keyring::Error::NoStorageAccess(source) => format!(
            "cannot access the OS credential store (is it locked or not running?): {source}"
        ),
        other => other.to_string(),
    }
}

impl fmt::Debug for KeyringTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringTokenStore")
            .field("service", &self.service)
            .field("account", &self.account)
            .finish()
    }
}

impl TokenStore for KeyringTokenStore {
    async fn load(&self) -> Result<Option<StoredToken>> {
        let json = self
            .blocking("load", |entry| match entry.get_secret() {
                Ok(json) => Ok(Some(json)),
                Err(::keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        super::parse_stored(self, json)
    }

    async fn save(&self, token: &StoredToken) -> Result<()> {
        // Bytes, not a password: Windows would store a password as UTF-16,
        // twice the size, against its 2,560-byte limit.
        let json = token.to_json();
        self.blocking("save", move |entry| {
            match entry.set_secret(json.as_bytes()) {
                // The kernel keyring's "access denied" comes back as NoEntry.
                Err(::keyring::Error::NoEntry) => {
                    Err(::keyring::Error::NoStorageAccess(NO_SESSION_KEYRING.into()))
                }
                other => other,
            }
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.blocking("clear", |entry| match entry.delete_credential() {
            Err(::keyring::Error::NoEntry) => Ok(()),
            other => other,
        })
        .await
    }

    fn name(&self) -> String {
        format!("keyring entry {}/{}", self.service, self.account)
    }
}

/// Windows Credential Manager (keyring's `windows-native`): the Linux tests
/// in tests/it/keyring_store.rs use the kernel keyring instead.
#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;

    #[tokio::test]
    async fn credential_manager_round_trip_and_clear() {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let store = KeyringTokenStore::new(format!("windows-test-{nonce}"))
            .service("gemini-oauth-unit-test");
        assert!(store.load().await.unwrap().is_none());
        let token = StoredToken::from_json(
            br#"{"token": "ya29.WINDOWSMARKER", "refresh_token": "1//WINDOWSREFRESH", "client_id": "c"}"#,
        )
        .unwrap();
        store.save(&token).await.unwrap();
        let loaded = store.load().await.unwrap().expect("the saved token");
        assert_eq!(loaded.to_json(), token.to_json());
        assert_eq!(loaded.refresh_token(), Some("1//WINDOWSREFRESH"));
        store.clear().await.unwrap();
        assert!(store.load().await.unwrap().is_none());
        store.clear().await.unwrap();
    }
}
