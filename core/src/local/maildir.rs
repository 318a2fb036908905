//! Maildir delivery (maildir(5)): write the message under a unique name in
//! `tmp/`, sync it, link it into `new/`, sync `new/`, remove the `tmp/` name.
//! A reader never sees a partial file in `new/`: the name appears there only
//! after the data is durable.

use super::verdict::Verdict;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::message::{ByteSource, CHUNK};
use crate::env::{Clock, Env, Fs, FsFile, OpenOptions, Plant, Rng};
use crate::queue::DirSyncs;

/// A name no other delivery uses: `TIME.PpidQcountRrandom.HOST`, the
/// maildir convention's form of qmail's `time.pid.host`. The per-process
/// counter and the random part keep concurrent deliveries of one process
/// (and a process reusing a pid) apart; `counter` is the delivering agent's.
pub fn unique_name<E: Env>(env: &E, counter: &AtomicU64) -> String {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let host: String = env
        .identity()
        .hostname
        .chars()
        .map(|c| match c {
            '/' => "\\057".to_string(),
            ':' => "\\072".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "{}.P{}Q{}R{:016x}.{}",
        env.clock().unix_secs(),
        env.identity().pid,
        n,
        env.rng().next_u64(),
        host
    )
}

/// Delivers `prefix` followed by the message from `source` into the maildir
/// `dir`. Returns the name of the file in `new/`. Concurrent deliveries
/// into one maildir share the sync of its `new/` through `new_syncs`.
pub async fn deliver_maildir<E: Env, S: ByteSource>(
    env: &E,
    counter: &AtomicU64,
    new_syncs: &DirSyncs,
    dir: &Path,
    prefix: &[u8],
    source: &mut S,
) -> Result<String, Verdict> {
    let fs = env.fs();
    match fs.metadata(&dir.join("new")).await {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(Verdict::temporary("Unable to chdir to maildir. (#4.2.1)"));
        }
    }
    let (name, tmp, mut file) = create_tmp(env, counter, dir).await?;
    let written = write_and_link(env, new_syncs, dir, &name, &tmp, &mut file, prefix, source).await;
    drop(file);
    // The tmp/ name goes in every case; a crash before this leaves a stale
    // file in tmp/, which maildir readers clean up (never one in new/).
    let _ = fs.remove_file(&tmp).await;
    written.map(|()| name)
}

async fn create_tmp<E: Env>(
    env: &E,
    counter: &AtomicU64,
    dir: &Path,
) -> Result<(String, PathBuf, <E::Fs as Fs>::File), Verdict> {
    let fs = env.fs();
    for _ in 0..3 {
        let name = unique_name(env, counter);
        let tmp = dir.join("tmp").join(&name);
        match fs
            .open(&tmp, &OpenOptions::create_new().with_mode(0o600))
            .await
        {
            Ok(f) => return Ok((name, tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Verdict::temporary(format!(
                    "Unable to create a file in maildir tmp/: {e}. (#4.2.1)"
                )));
            }
        }
    }
    Err(Verdict::temporary(
        "Temporary error on maildir delivery. (#4.3.0)",
    ))
}

#[allow(clippy::too_many_arguments)]
async fn write_and_link<E: Env, F: FsFile, S: ByteSource>(
    env: &E,
    new_syncs: &DirSyncs,
    dir: &Path,
    name: &str,
    tmp: &Path,
    file: &mut F,
    prefix: &[u8],
    source: &mut S,
) -> Result<(), Verdict> {
    let fs = env.fs();
    let werr = |e: io::Error| {
        Verdict::temporary(if e.raw_os_error() == Some(122) {
            "Recipient's maildir is over quota. (#4.2.2)".into()
        } else {
            format!("Unable to write to maildir: {e}. (#4.3.0)")
        })
    };
    file.write_all(prefix).await.map_err(werr)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = source
            .read_chunk(&mut buf)
            .await
            .map_err(|e| Verdict::temporary(format!("Unable to read message: {e}. (#4.3.0)")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).await.map_err(werr)?;
    }
    if !env.planted(Plant::SkipMaildirSync) {
        file.sync_all().await.map_err(werr)?;
    }
    let new = dir.join("new");
    fs.link(tmp, &new.join(name)).await.map_err(|e| {
        Verdict::temporary(format!("Unable to link tmp/ file into new/: {e}. (#4.3.0)"))
    })?;
    new_syncs
        .sync(fs, &new)
        .await
        .map_err(|e| Verdict::temporary(format!("Unable to sync maildir new/: {e}. (#4.3.0)")))
}

/// Creates the maildir `dir` (and missing parents) with `tmp/`, `new/` and
/// `cur/`, keeping what exists, then makes the whole chain durable: `dir`
/// itself and every directory above it up to and including `top`. The
/// chain is synced even when nothing was created here, since an earlier
/// attempt (or a concurrent delivery) may have created it without syncing.
pub async fn create_maildir<F: Fs>(fs: &F, dir: &Path, top: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || fs.exists(p).await {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.into_iter().rev() {
        make_dir(fs, &p).await?;
    }
    for sub in ["tmp", "new", "cur"] {
        make_dir(fs, &dir.join(sub)).await?;
    }
    let mut p = Some(dir);
    while let Some(d) = p {
        fs.sync_dir(d).await?;
        if d == top {
            break;
        }
        p = d.parent();
    }
    Ok(())
}

async fn make_dir<F: Fs>(fs: &F, p: &Path) -> io::Result<()> {
    match fs.create_dir(p, 0o700).await {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}
