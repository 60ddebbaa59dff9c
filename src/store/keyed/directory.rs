use std::path::{Path, PathBuf};

use super::{KeyedTokenStore, encode_user_id};
use crate::error::Result;
use crate::store::FileTokenStore;

/// One google-auth `token.json`-format file per user in a directory:
/// `user-<encoded id>.json`, written as [`FileTokenStore`] writes (atomic,
/// mode 0600 on Unix, an advisory lock per user in `<file>.lock`), so a
/// Python program can read any user's file with
/// `Credentials.from_authorized_user_file`.
///
/// User ids are encoded into file names (see [`KeyedTokenStore::for_user`]):
/// ASCII lower-case letters, digits, `-` and `_` are kept, every other byte
/// becomes `%XX`, so no id (`../x`, `a/b`, `C:`) names a file outside the
/// directory, and two ids never share a file on a case-insensitive file
/// system.
///
/// ```no_run
/// use gemini_oauth::{DirectoryTokenStore, KeyedTokenStore};
/// # async fn f() -> gemini_oauth::Result<()> {
/// let users = DirectoryTokenStore::new("/var/lib/my-app/tokens");
/// let token = users.load("118234829301").await?; // user-118234829301.json
/// # let _ = token; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DirectoryTokenStore {
    dir: PathBuf,
}

impl DirectoryTokenStore {
    /// A store keeping its files in `dir` (created with the first save).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirectoryTokenStore { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `user_id`'s file.
    ///
    /// # Errors
    /// As [`KeyedTokenStore::for_user`].
    pub fn path_of(&self, user_id: &str) -> Result<PathBuf> {
        Ok(self
            .dir
            .join(format!("user-{}.json", encode_user_id(user_id)?)))
    }
}

impl KeyedTokenStore for DirectoryTokenStore {
    type Store = FileTokenStore;

    fn for_user(&self, user_id: &str) -> Result<FileTokenStore> {
        Ok(FileTokenStore::new(self.path_of(user_id)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenStore;
    use crate::token::StoredToken;
    use secrecy::SecretString;

    fn record(token: &str) -> StoredToken {
        let mut r = StoredToken::new_user("cid", &SecretString::from("cs"), "https://t.example");
        r.token = Some(SecretString::from(token.to_owned()));
        r.refresh_token = Some(SecretString::from(format!("r-{token}")));
        r
    }

    #[tokio::test]
    async fn one_file_per_user_inside_the_directory_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("users");
        let store = DirectoryTokenStore::new(&dir);
        for (user, token) in [
            ("alice", "a"),
            ("Alice", "A"),
            ("../escape", "e"),
            ("a/b", "s"),
        ] {
            store.save(user, &record(token)).await.unwrap();
        }
        for (user, token) in [
            ("alice", "a"),
            ("Alice", "A"),
            ("../escape", "e"),
            ("a/b", "s"),
        ] {
            let got = store.load(user).await.unwrap().unwrap();
            assert_eq!(got.access_token(), Some(token));
            assert_eq!(store.path_of(user).unwrap().parent(), Some(dir.as_path()));
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "user-%2E%2E%2Fescape.json",
                "user-%41lice.json",
                "user-a%2Fb.json",
                "user-alice.json"
            ]
        );
        // Nothing was written beside the directory.
        let beside: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(beside.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("user-alice.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            // The names are user ids: the directory the store made is private.
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        store.clear("alice").await.unwrap();
        assert!(store.load("alice").await.unwrap().is_none());
        assert!(store.load("Alice").await.unwrap().is_some());
        store.clear("nobody").await.unwrap();
        assert!(store.for_user("").is_err());
    }

    #[tokio::test]
    async fn a_users_lock_excludes_that_user_only() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirectoryTokenStore::new(tmp.path());
        let wait = std::time::Duration::from_millis(50);
        let held = store.lock("alice", wait).await.unwrap().unwrap();
        assert!(store.lock("alice", wait).await.is_err());
        let other = store.lock("bob", wait).await.unwrap();
        assert!(other.is_some());
        drop(held);
        assert!(store.lock("alice", wait).await.unwrap().is_some());
        let user = store.for_user("alice").unwrap();
        assert!(TokenStore::name(&user).contains("user-alice.json"));
    }
}
