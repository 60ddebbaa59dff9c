//! Opening a path that must be a regular file, without ever waiting on a
//! FIFO: what [`RequestBody::from_path`](crate::RequestBody::from_path), the
//! Files API upload and an executable source's `output_file` share.
//!
//! A plain `open(2)` of a FIFO for reading waits until a writer comes, on a
//! thread nothing can free; the open here passes `O_NONBLOCK` (Unix), which
//! returns at once, and then asks the opened handle (not the path, which may
//! have been replaced meanwhile) what it is. `O_NONBLOCK` changes nothing
//! for the regular files that pass, so it is left set.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

/// What a path that is not a regular file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A FIFO (a named pipe).
    Fifo,
    /// A character or block device (`/dev/null`, a disk).
    Device,
    /// Any other special file (a socket, …).
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::Device => "a device",
            FileKind::Other => "a special file",
        })
    }
}

impl FileKind {
    fn of(file_type: std::fs::FileType) -> Self {
        if file_type.is_dir() {
            return FileKind::Directory;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt as _;
            if file_type.is_fifo() {
                return FileKind::Fifo;
            }
            if file_type.is_char_device() || file_type.is_block_device() {
                return FileKind::Device;
            }
        }
        FileKind::Other
    }
}

/// Why [`open`] gave no regular file.
#[derive(Debug)]
pub(crate) enum NotOpened {
    /// The open or the `fstat` failed: what was being done (`open`, `read
    /// the size of`, as [`Error::io`](crate::Error) takes it) and the OS error.
    Io {
        action: &'static str,
        source: io::Error,
    },
    /// Opened, but not a regular file.
    NotRegular(FileKind),
}

/// The regular file at `path`, opened for reading, and its size. Blocking
/// (file system calls), but never waiting on a FIFO's writer: run it off the
/// async threads, or use [`spawn_open`].
pub(crate) fn open(path: &Path) -> Result<(File, u64), NotOpened> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(path)
        .map_err(|source| match std::fs::metadata(path) {
            // Windows opens no directory for reading: say what the path is.
            Ok(meta) if meta.is_dir() => NotOpened::NotRegular(FileKind::Directory),
            _ => NotOpened::Io {
                action: "open",
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| NotOpened::Io {
        action: "read the size of",
        source,
    })?;
    match meta.is_file() {
        true => Ok((file, meta.len())),
        false => Err(NotOpened::NotRegular(FileKind::of(meta.file_type()))),
    }
}

/// [`open`] on a blocking thread.
pub(crate) async fn spawn_open(path: &Path) -> Result<(File, u64), NotOpened> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || open(&owned))
        .await
        .unwrap_or_else(|_| {
            Err(NotOpened::Io {
                action: "open",
                source: io::Error::other("the open was cancelled"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_opens_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let (_, len) = open(&path).unwrap();
        assert_eq!(len, 5);
    }

    #[test]
    fn a_missing_file_is_the_os_error_of_the_open() {
        let dir = tempfile::tempdir().unwrap();
        match open(&dir.path().join("missing")) {
            Err(NotOpened::Io { action, source }) => {
                assert_eq!(action, "open");
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Windows opens no directory for reading (without backup semantics):
    /// the refusal names the directory all the same.
    #[test]
    fn a_directory_is_named_as_one_on_every_platform() {
        let dir = tempfile::tempdir().unwrap();
        match open(dir.path()) {
            Err(NotOpened::NotRegular(kind)) => assert_eq!(kind, FileKind::Directory),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_fifo_or_device_is_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        for (path, kind) in [
            (dir.path(), FileKind::Directory),
            (fifo.as_path(), FileKind::Fifo),
            (Path::new("/dev/null"), FileKind::Device),
        ] {
            match open(path) {
                Err(NotOpened::NotRegular(k)) => assert_eq!(k, kind, "{path:?}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }
}
