use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{StoreLock, TokenStore};
use crate::error::{Error, Result};
use crate::token::{StoredToken, TokenFileProblem};

/// Token and credentials files are a few KiB; anything this large is not one.
pub(crate) const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// A temporary file this old was left by a writer that died mid-save.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// Keeps the token in a JSON file in google-auth's `token.json` format, so a
/// Python program and a Rust program can share it.
///
/// Writes are atomic: the new content goes to a temporary file in the same
/// directory (mode 0600 on Unix), is flushed to disk, then renamed over the
/// old file, so a crash never leaves a half-written token. A corrupt file is
/// reported as [`Error::TokenFile`] naming the path, and never overwritten by
/// a load (unless [`replace_corrupt`](Self::replace_corrupt) says so).
///
/// Processes sharing the file coordinate through an advisory lock on a
/// sidecar file `<name>.lock` (see [`TokenStore::lock`]). Where the file
/// system has no locks (NFS without lockd, some 9p and virtiofs mounts) the
/// store works without one, as on a read-only mount, and says so once in a
/// warning: processes sharing the file may then refresh at the same time.
///
/// A `token.json` that is a symbolic link (a dotfile manager's) stays one:
/// saves go to the file it points to, as google-auth's writes do, through a
/// temporary file beside that target (mode 0600), and the lock file sits
/// beside the target too. A link to a file that does not exist yet gets it
/// on the first save; [`clear`](TokenStore::clear) removes the target and
/// leaves the link.
///
/// On a read-only file system (a Kubernetes Secret, a `:ro` volume) the file
/// is still read and refreshed tokens are used from memory: the lock is
/// skipped and the failed save is reported once as a warning.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
    replace_corrupt: bool,
    /// The read-only warning is logged once per store (and its clones).
    warned_read_only: Arc<AtomicBool>,
    /// So is the warning that the file system cannot lock.
    warned_no_lock: Arc<AtomicBool>,
}

impl FileTokenStore {
    /// A store backed by `path` (created on first save, parent directories too).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore {
            path: path.into(),
            replace_corrupt: false,
            warned_read_only: Arc::new(AtomicBool::new(false)),
            warned_no_lock: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Treat a corrupt file as empty (with a warning) instead of failing, so
    /// the next save replaces it. Off by default: a corrupt file may hold the
    /// only copy of a refresh token worth rescuing by hand.
    #[must_use]
    pub fn replace_corrupt(mut self, replace: bool) -> Self {
        self.replace_corrupt = replace;
        self
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TokenStore for FileTokenStore {
    async fn load(&self) -> Result<Option<StoredToken>> {
        let bytes = match read_capped(&self.path, true) {
            Ok(bytes) => bytes,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match StoredToken::from_json(&bytes) {
            Ok(token) => Ok(Some(token)),
            Err(problem) if self.replace_corrupt => {
                tracing::warn!(path = %self.path.display(), %problem, "ignoring a corrupt token file; it will be replaced");
                Ok(None)
            }
            Err(problem) => Err(Error::TokenFile {
                path: self.path.clone(),
                problem,
            }),
        }
    }

    async fn save(&self, token: &StoredToken) -> Result<()> {
        write_atomically(self.path.clone(), token.to_json().into_bytes()).await
    }

    async fn clear(&self) -> Result<()> {
        // A link's target holds the token: it goes, the link stays.
        let target = regular_target(&self.path, "delete token file")?;
        match tokio::fs::remove_file(&target).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete token file", &target, e)),
        }
    }

    async fn lock(&self, wait: Duration) -> Result<Option<StoreLock>> {
        let link = self.path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let path = lock_path(&resolve_links(&link)?);
            open_lock_file(&path).map(|file| (file, path))
        })
        .await
        .map_err(|e| Error::io("open lock file", &self.path, std::io::Error::other(e)))?;
        let (file, path) = match opened {
            Ok(file) => file,
            // Nothing can be written there, so no other process can write
            // either: the token is refreshed in memory, without a lock.
            Err(Error::Io { source, .. }) if is_read_only(&source) => {
                if !self.warned_read_only.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        path = %self.path.display(),
                        "the token file's directory is read-only; refreshed tokens are kept in \
                         memory and not saved"
                    );
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // No deadline for a wait too long to add to now: it is unbounded.
        let deadline = Instant::now().checked_add(wait);
        loop {
            match try_lock(&file) {
                Ok(()) => return Ok(Some(StoreLock::new(file))),
                Err(std::fs::TryLockError::WouldBlock) => {}
                // No locks on this file system (ENOLCK, EOPNOTSUPP…): failing
                // here would fail every refresh, so go on without one.
                Err(std::fs::TryLockError::Error(e)) => {
                    if !self.warned_no_lock.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            path = %path.display(),
                            error = %e,
                            "the token file cannot be locked on this file system; processes \
                             sharing it may refresh at the same time"
                        );
                    }
                    return Ok(None);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout {
                    what: format!(
                        "waiting for another process to finish with {} (lock {})",
                        self.path.display(),
                        path.display()
                    ),
                    after: wait,
                });
            }
            // Polling keeps the wait cancellable; contention is rare and short.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// `<target>.lock`, beside the file the token is written to.
fn lock_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    target.with_file_name(name)
}

/// The file `path` names, its symbolic links followed to the end as
/// `open()` follows them, also when that end does not exist yet.
pub(crate) fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_owned();
    // Linux's own limit on links in a row.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = std::fs::read_link(&current)
                    .map_err(|e| Error::io("follow the symbolic link", &current, e))?;
                // A relative target is relative to the link's directory.
                current = match current.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(not_a_directory(path, &current, e));
            }
            Err(e) => return Err(Error::io("follow the symbolic links of", path, e)),
        }
    }
    Err(Error::io(
        "follow the symbolic links of",
        path,
        std::io::Error::other("too many levels of symbolic links (do they form a loop?)"),
    ))
}

/// ENOTDIR on the way to `current` (`path`, or where its links lead): a
/// file stands where a directory should, and the error names that file.
fn not_a_directory(path: &Path, current: &Path, e: std::io::Error) -> Error {
    let file = current
        .ancestors()
        .skip(1)
        .find(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()));
    let source = match file {
        Some(file) => std::io::Error::new(
            e.kind(),
            format!("{} is a file, not a directory", file.display()),
        ),
        None => e,
    };
    Error::io("reach the directory of", path, source)
}

/// [`resolve_links`], refusing an end that is there but is neither a file
/// nor a directory: a link to `/dev/null` is never renamed over or deleted.
fn regular_target(path: &Path, action: &'static str) -> Result<PathBuf> {
    let target = resolve_links(path)?;
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => Err(Error::io(
            action,
            &target,
            std::io::Error::other(
                "not a regular file (a device, FIFO or socket); point the path at a file",
            ),
        )),
        _ => Ok(target),
    }
}

/// `File::try_lock`; unit tests may make it fail on their thread.
fn try_lock(file: &std::fs::File) -> std::result::Result<(), std::fs::TryLockError> {
    #[cfg(test)]
    if let Some(errno) = tests::LOCK_ERRNO.with(std::cell::Cell::get) {
        return Err(std::fs::TryLockError::Error(
            std::io::Error::from_raw_os_error(errno),
        ));
    }
    file.try_lock()
}

/// Errors that mean "this place cannot be written", not "something broke".
fn is_read_only(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(1) // EPERM
}

/// Reads a token or credentials file of at most [`MAX_FILE_SIZE`] bytes;
/// with `warn_if_shared`, warns when others may read it.
///
/// The read is direct, not on tokio's blocking pool: these files are a few
/// KiB and read once per process, and the hop to the pool would cost more
/// than the read (the start of every program that prints a token).
pub(crate) fn read_capped(path: &Path, warn_if_shared: bool) -> Result<Vec<u8>> {
    let too_large = || Error::TokenFile {
        path: path.to_owned(),
        problem: TokenFileProblem::TooLarge {
            limit: MAX_FILE_SIZE,
        },
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io("read", path, e))?;
    // One fstat serves the size check, the buffer size and the mode warning.
    let meta = file.metadata().map_err(|e| Error::io("read", path, e))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large());
    }
    if warn_if_shared {
        warn_if_readable_by_others(path, &meta);
    }
    let mut bytes = Vec::with_capacity((meta.len() as usize).saturating_add(1));
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    // The file may have grown since the fstat.
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Creates `dir` and its missing parents, readable by the owner only on
/// Unix (0700, as `umask` allows): their names (a directory store's user
/// ids) are nobody else's business. Directories already there are left as
/// they are.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

fn open_lock_file(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))
}

/// Temp file in the same directory (so the rename cannot cross file systems),
/// fsync, rename, fsync the directory. A symbolic link at `path` is written
/// through: the rename replaces its target, and the link stays.
pub(crate) async fn write_atomically(path: PathBuf, contents: Vec<u8>) -> Result<()> {
    let blocking_path = path.clone();
    tokio::task::spawn_blocking(move || {
        let path = regular_target(&blocking_path, "write token file")?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir)?;
        if path.is_dir() {
            return Err(Error::io(
                "write token file",
                &path,
                std::io::Error::other("the path is a directory"),
            ));
        }
        let prefix = temp_prefix(&path);
        remove_stale_temp_files(&dir, &prefix);
        // tempfile creates the file with mode 0600 on Unix.
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(&dir)
            .map_err(|e| Error::io("create temporary file in", &dir, e))?;
        tmp.write_all(&contents)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io("write temporary file for", &path, e))?;
        tmp.persist(&path)
            .map_err(|e| Error::io("replace", &path, e.error))?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(&dir) {
            // Makes the rename itself durable; failure here loses nothing already written.
            let _ = d.sync_all();
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::io("write", &path, std::io::Error::other(e)))?
}

/// `.token.json.tmp-`: names this file's temporary copies, and only them.
fn temp_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.tmp-")
}

/// A writer killed mid-save leaves its temporary file, which holds secrets:
/// remove those old enough that no live writer can own them.
fn remove_stale_temp_files(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let is_ours = entry.file_name().to_string_lossy().starts_with(prefix);
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_TEMP_AGE));
        if is_ours && stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(file = %entry.path().display(), "removed a stale temporary token file")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not remove a stale temporary token file")
                }
            }
        }
    }
}

fn warn_if_readable_by_others(path: &Path, meta: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "token file is readable by other users; it will be rewritten with mode 0600 on the next save"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_file_is_none_and_save_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("sub/dir/token.json"));
        assert!(store.load().await.unwrap().is_none());
        let t = StoredToken::from_json(br#"{"client_id": "c", "refresh_token": "r"}"#).unwrap();
        store.save(&t).await.unwrap();
        let back = store.load().await.unwrap().unwrap();
        assert_eq!(back.refresh_token(), Some("r"));
        assert_eq!(
            std::fs::read_to_string(store.path()).unwrap(),
            r#"{"refresh_token": "r", "client_id": "c"}"#
        );
        // Only the token file is left behind: no temp files.
        assert_eq!(
            std::fs::read_dir(store.path().parent().unwrap())
                .unwrap()
                .count(),
            1
        );
        store.clear().await.unwrap();
        assert!(store.load().await.unwrap().is_none());
        store.clear().await.unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn saved_file_has_mode_0600_even_when_it_was_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = FileTokenStore::new(&path);
        store.save(&StoredToken::default()).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    thread_local! {
        /// An errno that `try_lock` fails with on this thread.
        pub(super) static LOCK_ERRNO: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
    }

    #[cfg(unix)]
    fn captured_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test]
    async fn an_unbounded_lock_wait_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("token.json"));
        assert!(store.lock(Duration::MAX).await.unwrap().is_some());
    }

    /// ENOLCK (NFS without lockd, some 9p and virtiofs mounts) cannot be
    /// had here without such a mount: it is injected into `try_lock`.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_lock_error_degrades_to_no_lock_with_one_warning() {
        const ENOLCK: i32 = 37;
        let (logs, _guard) = captured_logs();
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("token.json"));
        LOCK_ERRNO.with(|e| e.set(Some(ENOLCK)));
        let first = store.lock(Duration::from_secs(1)).await;
        let second = store.clone().lock(Duration::from_secs(1)).await;
        LOCK_ERRNO.with(|e| e.set(None));
        assert!(matches!(first, Ok(None)), "{first:?}");
        assert!(matches!(second, Ok(None)), "{second:?}");
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("WARN").count(), 1, "{text}");
        assert!(text.contains("cannot be locked"), "{text}");
        // The store still saves; the lock works again once the error is gone.
        store.save(&StoredToken::default()).await.unwrap();
        assert!(store.lock(Duration::from_secs(1)).await.unwrap().is_some());
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A save through `link` keeps it a link, writes the target with mode
    /// 0600 and locks beside the target.
    #[cfg(unix)]
    async fn saves_through(link: &Path, target: &Path) {
        let store = FileTokenStore::new(link);
        let token = StoredToken::from_json(br#"{"refresh_token": "r", "client_id": "c"}"#).unwrap();
        let held = store.lock(Duration::from_secs(1)).await.unwrap();
        assert!(held.is_some());
        store.save(&token).await.unwrap();
        assert!(
            std::fs::symlink_metadata(link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(target).unwrap(), token.to_json());
        assert_eq!(mode(target), 0o600);
        let mut lock = target.as_os_str().to_owned();
        lock.push(".lock");
        assert!(Path::new(&lock).exists(), "the lock is beside the target");
        let back = store.load().await.unwrap().unwrap();
        assert_eq!(back.refresh_token(), Some("r"));
        for d in [link.parent().unwrap(), target.parent().unwrap()] {
            let temps: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect();
            assert!(temps.is_empty(), "{temps:?}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlinked_token_file_stays_a_link_relative_absolute_chained() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        std::fs::create_dir(&dotfiles).unwrap();
        let target = dotfiles.join("token.json");
        std::fs::write(&target, "{}").unwrap();
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();

        let relative = dir.path().join("relative.json");
        symlink("dotfiles/token.json", &relative).unwrap();
        saves_through(&relative, &target).await;

        let absolute = dir.path().join("absolute.json");
        symlink(&target, &absolute).unwrap();
        saves_through(&absolute, &target).await;

        let chained = dir.path().join("chained.json");
        symlink("relative.json", &chained).unwrap();
        saves_through(&chained, &target).await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_dangling_link_gets_its_target_and_clear_removes_the_target_only() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("token.json");
        let target = dir.path().join("elsewhere/real.json");
        std::os::unix::fs::symlink("elsewhere/real.json", &link).unwrap();
        let store = FileTokenStore::new(&link);
        assert!(store.load().await.unwrap().is_none());
        saves_through(&link, &target).await;
        store.clear().await.unwrap();
        assert!(!target.exists(), "the token is gone");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(store.load().await.unwrap().is_none());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_loop_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("token.json");
        let b = dir.path().join("other.json");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let store = FileTokenStore::new(&a);
        for err in [
            store.save(&StoredToken::default()).await.unwrap_err(),
            store.load().await.unwrap_err(),
            store.lock(Duration::from_secs(1)).await.unwrap_err(),
        ] {
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            let text = format!("{err} {:?}", std::error::Error::source(&err));
            assert!(text.contains("token.json"), "{text}");
            assert!(text.contains("symbolic links"), "{text}");
        }
        assert!(
            std::fs::symlink_metadata(&a)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    /// A file where a directory should be (`file.txt/token.json`) is
    /// named as such, not taken for a symbolic link.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_in_the_middle_of_the_path_is_not_a_directory_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "not a directory").unwrap();
        let store = FileTokenStore::new(file.join("token.json"));
        for err in [
            store.load().await.unwrap_err(),
            store.save(&StoredToken::default()).await.unwrap_err(),
            store.lock(Duration::from_secs(1)).await.unwrap_err(),
            store.clear().await.unwrap_err(),
        ] {
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            let text = format!("{err} {}", std::error::Error::source(&err).unwrap()).to_lowercase();
            assert!(text.contains("file.txt"), "{text}");
            assert!(text.contains("not a directory"), "{text}");
            assert!(!text.contains("symbolic link"), "{text}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
    }

    #[cfg(unix)]
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    #[cfg(unix)]
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let (logs, _guard) = captured_logs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, r#"{"refresh_token": "r"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        FileTokenStore::new(&path).load().await.unwrap();
        assert!(logs.0.lock().unwrap().is_empty(), "no warning for 0600");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        FileTokenStore::new(&path).load().await.unwrap();
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("WARN")
                && text.contains("readable by other users")
                && text.contains("644"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, r#"{"token": "ya29.trunc"#).unwrap();
        let err = FileTokenStore::new(&path).load().await.unwrap_err();
        match &err {
            Error::TokenFile { path: p, problem } => {
                assert_eq!(p, &path);
                assert!(matches!(problem, TokenFileProblem::NotJson { .. }));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("token.json"));
        assert!(!err.to_string().contains("ya29.trunc"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            r#"{"token": "ya29.trunc"#
        );
    }

    #[tokio::test]
    async fn replace_corrupt_is_an_explicit_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, "{garbage").unwrap();
        let store = FileTokenStore::new(&path).replace_corrupt(true);
        assert!(store.load().await.unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{garbage");
    }

    #[tokio::test]
    async fn the_lock_excludes_other_holders_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileTokenStore::new(dir.path().join("t/token.json"));
        let b = FileTokenStore::new(dir.path().join("t/token.json"));
        let held = a.lock(Duration::from_secs(1)).await.unwrap().unwrap();
        let err = b.lock(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("token.json.lock"), "{err}");
        drop(held);
        assert!(b.lock(Duration::from_millis(100)).await.unwrap().is_some());
        assert!(dir.path().join("t/token.json.lock").exists());
    }

    #[tokio::test]
    async fn directory_at_the_path_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path());
        assert!(matches!(store.load().await, Err(Error::Io { .. })));
        assert!(matches!(
            store.save(&StoredToken::default()).await,
            Err(Error::Io { .. })
        ));
    }

    #[tokio::test]
    async fn stale_temporary_files_of_this_file_are_removed_on_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("token.json"));
        let stale = dir.path().join(".token.json.tmp-dead1");
        let fresh = dir.path().join(".token.json.tmp-live1");
        let other = dir.path().join(".other.json.tmp-dead2");
        for f in [&stale, &fresh, &other] {
            std::fs::write(f, "SECRET").unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(3600);
        for f in [&stale, &other] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        store.save(&StoredToken::default()).await.unwrap();
        assert!(
            !stale.exists(),
            "a stale temp file of token.json is removed"
        );
        assert!(fresh.exists(), "a live writer's temp file is left alone");
        assert!(other.exists(), "another file's temp file is left alone");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".token.json.tmp-") && !n.ends_with("live1"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn an_oversized_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, vec![b' '; MAX_FILE_SIZE as usize + 1]).unwrap();
        match FileTokenStore::new(&path).load().await {
            Err(Error::TokenFile { path: p, problem }) => {
                assert_eq!(p, path);
                assert_eq!(
                    problem,
                    TokenFileProblem::TooLarge {
                        limit: MAX_FILE_SIZE
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is read (and then judged as JSON).
        std::fs::write(&path, vec![b' '; MAX_FILE_SIZE as usize]).unwrap();
        assert!(matches!(
            FileTokenStore::new(&path).load().await,
            Err(Error::TokenFile {
                problem: TokenFileProblem::Empty | TokenFileProblem::NotJson { .. },
                ..
            })
        ));
    }
}
