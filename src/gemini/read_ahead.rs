//! A file read in fixed pieces at offsets, on tokio's blocking pool, the
//! next piece read while the last one is sent.
//!
//! Why: an upload read piece after piece waited for the disk before each
//! send, and at each chunk's start for an open, a seek and a read. Reading
//! one piece ahead, and handing the reader from one chunk to the next,
//! hides those waits behind the network.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

/// Pieces are read at multiples of this; 256 KiB, as
/// [`GRANULARITY`](super::resumable::GRANULARITY): chunks start on a piece.
pub(super) const PIECE: u64 = 256 * 1024;

/// An open file and the read of the piece after the last one handed out.
pub(super) struct ReadAhead {
    file: Arc<File>,
    ahead: Option<(u64, JoinHandle<io::Result<Bytes>>)>,
}

impl ReadAhead {
    /// A reader of `file`, the upload's one open file: never the path
    /// again, which may name another file by now.
    pub(super) fn new(file: Arc<File>) -> Self {
        ReadAhead { file, ahead: None }
    }

    /// The [`PIECE`] bytes at `at`, fewer only where the file ends; then
    /// starts reading the piece after them.
    pub(super) async fn piece(&mut self, at: u64) -> io::Result<Bytes> {
        let piece = match self.ahead.take() {
            Some((from, read)) if from == at => flatten(read.await)?,
            // Elsewhere (after a resume): that read ends on its own, unused.
            _ => read_at(Arc::clone(&self.file), at).await?,
        };
        if piece.len() as u64 == PIECE
            && let Some(next) = at.checked_add(PIECE)
        {
            let file = Arc::clone(&self.file);
            let read = tokio::task::spawn_blocking(move || read_piece(&file, next));
            self.ahead = Some((next, read));
        }
        Ok(piece)
    }

    /// The file's size now.
    pub(super) async fn size(&self) -> io::Result<u64> {
        let file = Arc::clone(&self.file);
        blocking(move || file.metadata().map(|m| m.len())).await
    }
}

#[cfg(test)]
impl ReadAhead {
    /// Waits until the piece read ahead, if any, has been read.
    pub(super) async fn read_ahead_done(&self) {
        if let Some((_, read)) = &self.ahead {
            while !read.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }
}

async fn read_at(file: Arc<File>, at: u64) -> io::Result<Bytes> {
    blocking(move || read_piece(&file, at)).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    flatten(tokio::task::spawn_blocking(f).await)
}

fn flatten<T>(joined: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    joined.map_err(|_| io::Error::other("the file read was cancelled"))?
}

/// Up to [`PIECE`] bytes at `at`: short only at the end of the file.
fn read_piece(file: &File, at: u64) -> io::Result<Bytes> {
    let mut piece = Vec::with_capacity(PIECE as usize);
    while piece.len() < piece.capacity() {
        let from = at.saturating_add(piece.len() as u64);
        if read_into_spare(file, &mut piece, from)? == 0 {
            break;
        }
    }
    Ok(Bytes::from(piece))
}

/// Reads at `at` into `piece`'s spare capacity (not zeroed first: it is
/// overwritten) and returns how many bytes came.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_into_spare(file: &File, piece: &mut Vec<u8>, at: u64) -> io::Result<usize> {
    loop {
        match rustix::io::pread(file, rustix::buffer::spare_capacity(piece), at) {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
fn read_into_spare(file: &File, piece: &mut Vec<u8>, at: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    positional(piece, |buf| file.read_at(buf, at))
}

#[cfg(windows)]
fn read_into_spare(file: &File, piece: &mut Vec<u8>, at: u64) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    positional(piece, |buf| file.seek_read(buf, at))
}

/// Zero-fills the spare capacity, reads into it and keeps what came.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn positional(
    piece: &mut Vec<u8>,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let start = piece.len();
    piece.resize(piece.capacity(), 0);
    let got = read(&mut piece[start..]);
    piece.truncate(start.saturating_add(*got.as_ref().unwrap_or(&0)));
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pieces_anywhere_ahead_or_not_and_a_short_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = PIECE as usize * 2 + 1000;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut r = ReadAhead::new(Arc::new(File::open(&path).unwrap()));
        let p = PIECE as usize;
        assert_eq!(r.piece(0).await.unwrap(), data[..p]);
        assert!(r.ahead.is_some(), "the next piece is being read");
        assert_eq!(r.piece(PIECE).await.unwrap(), data[p..2 * p]);
        assert_eq!(r.piece(2 * PIECE).await.unwrap(), data[2 * p..]);
        assert!(r.ahead.is_none(), "nothing after a short piece");
        // Back to a piece read before (a resume), and one off the grid.
        assert_eq!(r.piece(PIECE).await.unwrap(), data[p..2 * p]);
        assert_eq!(r.piece(1).await.unwrap(), data[1..=p]);
        assert!(r.piece(10 * PIECE).await.unwrap().is_empty());
    }
}
