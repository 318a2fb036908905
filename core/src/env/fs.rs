use std::future::Future;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// How to open a file; mirrors `std::fs::OpenOptions` plus the creation mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    pub truncate: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Create the file, failing with `AlreadyExists` if the name exists (O_EXCL).
    pub create_new: bool,
    /// Permission bits for a newly created file.
    pub mode: u32,
}

impl OpenOptions {
    /// Open an existing file for reading.
    pub fn read() -> Self {
        OpenOptions {
            read: true,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o644,
        }
    }

    /// Open an existing file for reading and writing.
    pub fn read_write() -> Self {
        OpenOptions {
            write: true,
            ..Self::read()
        }
    }

    /// Create a new file for writing, failing if the name exists.
    pub fn create_new() -> Self {
        OpenOptions {
            read: false,
            write: true,
            create_new: true,
            ..Self::read()
        }
    }

    /// Create or truncate a file for writing.
    pub fn create_truncate() -> Self {
        OpenOptions {
            read: false,
            write: true,
            create: true,
            truncate: true,
            ..Self::read()
        }
    }

    /// Open (creating if needed) for appending.
    pub fn append() -> Self {
        OpenOptions {
            read: false,
            write: true,
            append: true,
            create: true,
            ..Self::read()
        }
    }

    /// The same options with another creation mode.
    pub fn with_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// What a directory entry or a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Dir,
    Other,
}

/// What `metadata` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    pub len: u64,
    pub mtime: SystemTime,
    /// Permission bits (the low 12 bits of `st_mode`).
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Owner user id.
    pub uid: u32,
    /// Inode number: the same file has the same number under all its names.
    pub ino: u64,
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub kind: FileKind,
}

/// An open file. Positions are kept by the handle, as with a file descriptor.
pub trait FsFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at the current position; 0 means end of file.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Writes all of `buf` at the current position (the end, for append handles).
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Moves the position to `pos` bytes from the start.
    fn seek(&mut self, pos: u64) -> impl Future<Output = io::Result<()>> + Send;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> impl Future<Output = io::Result<()>> + Send;
    /// Makes the file's data and metadata durable (fsync). Its name is durable
    /// only once its directory is synced too.
    fn sync_all(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    fn metadata(&self) -> impl Future<Output = io::Result<Metadata>> + Send;
    /// Tries to take an exclusive advisory lock on the file (`flock`) without
    /// waiting: `Ok(false)` when someone else holds it. The lock lasts until
    /// this handle is dropped. Locks of two handles conflict even within
    /// one process.
    fn try_lock(&mut self) -> impl Future<Output = io::Result<bool>> + Send;
    /// Tries to take the exclusive lock other mail tools honour on a
    /// mailbox without waiting: a `fcntl` write lock on the whole file
    /// (the kind Python's `mailbox`, mutt and movemail take) together with
    /// [`FsFile::try_lock`]'s `flock`. `Ok(false)` when anyone holds either;
    /// both last until this handle is dropped.
    fn try_lock_mailbox(&mut self) -> impl Future<Output = io::Result<bool>> + Send;

    /// Reads everything from the current position to the end.
    fn read_to_end(&mut self, out: &mut Vec<u8>) -> impl Future<Output = io::Result<usize>> + Send {
        async move {
            let start = out.len();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = self.read(&mut buf).await?;
                if n == 0 {
                    return Ok(out.len() - start);
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// The filesystem, with POSIX semantics: data and directory entries are durable
/// only after the matching sync (`FsFile::sync_all` for data, [`Fs::sync_dir`]
/// for names).
pub trait Fs: Clone + Send + Sync + 'static {
    type File: FsFile;

    fn open(
        &self,
        path: &Path,
        opts: &OpenOptions,
    ) -> impl Future<Output = io::Result<Self::File>> + Send;
    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// Creates the hard link `dst` to `src`; fails if `dst` exists.
    fn link(&self, src: &Path, dst: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// Atomically renames `src` to `dst`, replacing a file at `dst`.
    fn rename(&self, src: &Path, dst: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn remove_file(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn create_dir(&self, path: &Path, mode: u32) -> impl Future<Output = io::Result<()>> + Send;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// The entries of a directory (without `.` and `..`), in no particular order.
    fn read_dir(&self, path: &Path) -> impl Future<Output = io::Result<Vec<DirEntry>>> + Send;
    fn metadata(&self, path: &Path) -> impl Future<Output = io::Result<Metadata>> + Send;
    fn set_permissions(
        &self,
        path: &Path,
        mode: u32,
    ) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes one byte to the named pipe `path` if some process has it open
    /// for reading, without ever waiting; does nothing otherwise (qmail's
    /// trigger: a missed pull only delays work until the next scan).
    fn pull_trigger(&self, path: &Path) -> impl Future<Output = ()> + Send;

    /// Reads a whole file.
    fn read(&self, path: &Path) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        async move {
            let mut f = self.open(path, &OpenOptions::read()).await?;
            let mut out = Vec::new();
            f.read_to_end(&mut out).await?;
            Ok(out)
        }
    }

    /// Reads a whole file, `Ok(None)` if it does not exist.
    fn read_if_exists(
        &self,
        path: &Path,
    ) -> impl Future<Output = io::Result<Option<Vec<u8>>>> + Send {
        async move {
            match self.read(path).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    /// Creates a directory and its missing parents (none of them synced).
    fn create_dir_all(
        &self,
        path: &Path,
        mode: u32,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            let mut missing = Vec::new();
            let mut cur = Some(path);
            while let Some(p) = cur {
                if p.as_os_str().is_empty() {
                    break;
                }
                match self.metadata(p).await {
                    Ok(m) if m.is_dir() => break,
                    Ok(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a directory", p.display()),
                        ));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(p),
                    Err(e) => return Err(e),
                }
                cur = p.parent();
            }
            for p in missing.into_iter().rev() {
                match self.create_dir(p, mode).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }

    /// Whether a path exists (a read error other than not-found counts as existing).
    fn exists(&self, path: &Path) -> impl Future<Output = bool> + Send {
        async move {
            match self.metadata(path).await {
                Ok(_) => true,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            }
        }
    }
}
