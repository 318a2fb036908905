//! The real filesystem.
//!
//! Every call runs inline on the caller's thread except the ones that wait
//! for the disk by design: `fsync` and `fdatasync` (of files and of
//! directories) go to a few dedicated threads ([`crate::sync_threads`]) on a
//! multi-threaded runtime. Reads and writes of an open file, opening and
//! creating files, renames, links, removals, directory listings and
//! metadata work in the page cache and the dentry and inode caches of a
//! local filesystem: they cost CPU, not waiting, and a hand-off to another
//! thread for each of them costs more than the call (a context switch or
//! two and a futex call every time). When a cache is cold one of them can
//! wait for a read from the disk; that holds up one worker for the time of
//! one read, never for a flush.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use qmail_core::env::{DirEntry, FileKind, Fs, FsFile, Metadata, OpenOptions};

#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

/// An open file on the real filesystem.
#[derive(Debug)]
pub struct RealFile {
    file: Arc<File>,
}

/// Runs a sync (it waits on the disk). On a multi-threaded runtime it goes
/// to a sync thread and the task waits for the answer, so the worker runs
/// other tasks meanwhile. On a current-thread runtime (the short-lived
/// programs, one task each) or outside a runtime it simply runs, as it
/// would in a synchronous program.
async fn sync(f: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => crate::sync_threads::run(f).await,
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
        sync(move || f.sync_all()).await
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        let f = Arc::clone(&self.file);
        sync(move || f.sync_data()).await
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
        let file = fs::OpenOptions::new()
            .read(opts.read)
            .write(opts.write)
            .append(opts.append)
            .truncate(opts.truncate)
            .create(opts.create)
            .create_new(opts.create_new)
            .mode(opts.mode)
            .open(path)?;
        Ok(RealFile {
            file: Arc::new(file),
        })
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // Opening is a lookup in the caches; only the flush waits.
        let dir = File::open(path)?;
        sync(move || dir.sync_all()).await
    }

    async fn link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        fs::hard_link(src, dst)
    }

    async fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        fs::rename(src, dst)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(mode).create(path)
    }

    async fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    async fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
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
    }

    async fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        fs::metadata(path).map(|m| convert_metadata(&m))
    }

    async fn set_permissions(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
}
