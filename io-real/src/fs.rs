//! The real filesystem. Reads and writes of an open file go to the page cache
//! and run inline; everything that can wait on the disk or the journal (open,
//! fsync, directory operations) runs through [`blocking`], which keeps it off
//! the async worker threads of a multi-threaded runtime.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qmail_core::env::{DirEntry, FileKind, Fs, FsFile, Metadata, OpenOptions};

#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

/// An open file on the real filesystem.
#[derive(Debug)]
pub struct RealFile {
    file: Arc<File>,
}

/// Runs a call that may wait on the disk. On a multi-threaded runtime the
/// worker first hands its other tasks to another thread (`block_in_place`),
/// which costs far less than a round trip through the blocking pool (a
/// thread wake-up per call, measured at a third of the injection rate). On a
/// current-thread runtime (the short-lived programs, one task each) the call
/// simply runs, as it would in a synchronous program.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn convert_metadata(m: &fs::Metadata) -> Metadata {
    let kind = if m.is_dir() {
        FileKind::Dir
    } else if m.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    Metadata {
        kind,
        len: m.len(),
        mtime: m.modified().unwrap_or(std::time::UNIX_EPOCH),
        mode: m.permissions().mode() & 0o7777,
        nlink: m.nlink(),
        uid: m.uid(),
        ino: m.ino(),
    }
}

impl FsFile for RealFile {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.file).read(buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self.file).write_all(buf)
    }

    async fn seek(&mut self, pos: u64) -> io::Result<()> {
        (&*self.file).seek(SeekFrom::Start(pos)).map(|_| ())
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    async fn sync_all(&mut self) -> io::Result<()> {
        let f = Arc::clone(&self.file);
        blocking(move || f.sync_all()).await
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        let f = Arc::clone(&self.file);
        blocking(move || f.sync_data()).await
    }

    async fn metadata(&self) -> io::Result<Metadata> {
        self.file.metadata().map(|m| convert_metadata(&m))
    }

    async fn try_lock(&mut self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    async fn try_lock_mailbox(&mut self) -> io::Result<bool> {
        // flock first: it serialises deliveries within this process, which
        // fcntl locks (owned by the process) would not.
        if !self.try_lock().await? {
            return Ok(false);
        }
        let got = crate::record_lock::try_write_lock(&self.file);
        if !matches!(got, Ok(true)) {
            // Give the flock back: a holder of only half the lock must not
            // keep the other tools waiting.
            let _ = self.file.unlock();
        }
        got
    }
}

impl Fs for RealFs {
    type File = RealFile;

    async fn pull_trigger(&self, path: &Path) {
        // Non-blocking: opening a pipe nobody reads fails at once (ENXIO)
        // instead of waiting for a reader, and a full pipe already holds
        // a wake-up.
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path);
        if let Ok(mut f) = opened {
            let _ = f.write(&[0]);
        }
    }

    async fn open(&self, path: &Path, opts: &OpenOptions) -> io::Result<RealFile> {
        let path = path.to_path_buf();
        let opts = opts.clone();
        blocking(move || {
            let file = fs::OpenOptions::new()
                .read(opts.read)
                .write(opts.write)
                .append(opts.append)
                .truncate(opts.truncate)
                .create(opts.create)
                .create_new(opts.create_new)
                .mode(opts.mode)
                .open(&path)?;
            Ok(RealFile {
                file: Arc::new(file),
            })
        })
        .await
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || File::open(&path)?.sync_all()).await
    }

    async fn link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
        blocking(move || fs::hard_link(src, dst)).await
    }

    async fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
        blocking(move || fs::rename(src, dst)).await
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || fs::remove_file(path)).await
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new().mode(mode).create(path)
        })
        .await
    }

    async fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || fs::remove_dir(path)).await
    }

    async fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let path: PathBuf = path.to_path_buf();
        blocking(move || {
            let mut out = Vec::new();
            for entry in fs::read_dir(path)? {
                let entry = entry?;
                let ft = entry.file_type()?;
                let kind = if ft.is_dir() {
                    FileKind::Dir
                } else if ft.is_file() {
                    FileKind::File
                } else {
                    FileKind::Other
                };
                // Names that are not UTF-8 are not ours (the queue and maildirs
                // only create ASCII names); list them lossily so they stay visible.
                out.push(DirEntry {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    kind,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let path = path.to_path_buf();
        blocking(move || fs::metadata(path).map(|m| convert_metadata(&m))).await
    }

    async fn set_permissions(&self, path: &Path, mode: u32) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || fs::set_permissions(path, fs::Permissions::from_mode(mode))).await
    }
}
