//! A qmail installation directory (`$QMAIL_HOME`, `/var/qmail` by default) and
//! `qmail init`, which creates one.

use std::io;
use std::path::{Path, PathBuf};

use crate::env::{Env, Fs, FsFile, OpenOptions};

/// The default installation directory.
pub const DEFAULT_HOME: &str = "/var/qmail";

/// The layout of an installation, as qmail lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn control(&self) -> PathBuf {
        self.root.join("control")
    }
    pub fn control_file(&self, name: &str) -> PathBuf {
        self.control().join(name)
    }
    pub fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }
    pub fn users(&self) -> PathBuf {
        self.root.join("users")
    }
    pub fn alias(&self) -> PathBuf {
        self.root.join("alias")
    }
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    /// Mailboxes of the embedded default (`qmail run`): one maildir per local part.
    pub fn mailboxes(&self) -> PathBuf {
        self.root.join("mailboxes")
    }
}

/// What `init` did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitAction {
    Created(PathBuf),
    Kept(PathBuf),
}

/// Creates `home` with its directories and default control files. Idempotent:
/// an existing file is never overwritten, so an admin's edits stay.
/// `hostname` becomes `control/me`; `locals` and `rcpthosts` name it and
/// `localhost`, so the new server accepts local mail and relays for nobody.
pub async fn init<E: Env>(env: &E, home: &Home, hostname: &str) -> io::Result<Vec<InitAction>> {
    let fs = env.fs();
    let mut actions = Vec::new();
    for dir in [
        home.root.clone(),
        home.control(),
        home.users(),
        home.alias(),
        home.bin(),
    ] {
        fs.create_dir_all(&dir, 0o755).await?;
    }
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".to_string());
    }
    let hosts = names.join("\n") + "\n";
    let files = [
        ("me", format!("{hostname}\n")),
        ("locals", hosts.clone()),
        ("rcpthosts", hosts),
    ];
    for (name, content) in files {
        let path = home.control_file(name);
        actions.push(write_new(fs, &path, content.as_bytes()).await?);
    }
    crate::queue::Queue::new(env.clone(), home.queue())
        .create()
        .await?;
    sync_tree(fs, &home.root).await?;
    Ok(actions)
}

/// Writes a file that must not exist yet; leaves an existing one alone.
async fn write_new<F: Fs>(fs: &F, path: &Path, content: &[u8]) -> io::Result<InitAction> {
    match fs.open(path, &OpenOptions::create_new()).await {
        Ok(mut f) => {
            f.write_all(content).await?;
            f.sync_all().await?;
            Ok(InitAction::Created(path.to_path_buf()))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok(InitAction::Kept(path.to_path_buf()))
        }
        Err(e) => Err(e),
    }
}

/// Syncs a directory and its subdirectories (what `init` created is durable).
async fn sync_tree<F: Fs>(fs: &F, root: &Path) -> io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).await? {
            if e.kind == crate::env::FileKind::Dir {
                stack.push(dir.join(&e.name));
            }
        }
        fs.sync_dir(&dir).await?;
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs.sync_dir(parent).await?;
    }
    Ok(())
}
