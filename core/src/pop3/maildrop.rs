//! The maildir side of qmail-pop3d: listing the messages at login and
//! applying QUIT's plan.
//!
//! Moving a message from `new/` to `cur/` is a link, one sync of `cur/`,
//! then the unlink, never a bare rename: on a filesystem without a journal
//! a crash may keep a rename's removal without its new name (docs/queue.md),
//! and a message read but not deleted must never vanish. Deletions and the
//! unlinks are synced too, so a message the client deleted does not come
//! back after a crash, but a failure there loses nothing and is only logged.

use std::io;
use std::path::Path;

use crate::env::{Clock, Env, FileKind, Fs};

use super::pop3d::{MailMessage, QuitPlan};

/// A file in `tmp/` older than this is a delivery that died: qmail-pop3d
/// removes it at login, as qmail's maildir cleaning does.
pub const TMP_STALE_SECS: u64 = 36 * 3600;

/// Lists `new/` and `cur/` of the maildir, oldest first (by modification
/// time, then name, so the order does not depend on the directory's), after
/// removing stale files from `tmp/`. Names starting with a dot are not
/// messages. A file that vanishes while being listed is left out.
pub async fn scan<E: Env>(env: &E, maildir: &Path) -> io::Result<Vec<MailMessage>> {
    let fs = env.fs();
    clean_tmp(env, &maildir.join("tmp")).await;
    let mut found = Vec::new();
    for dir in ["new", "cur"] {
        for entry in fs.read_dir(&maildir.join(dir)).await? {
            if entry.name.starts_with('.') || entry.kind == FileKind::Dir {
                continue;
            }
            let name = format!("{dir}/{}", entry.name);
            match fs.metadata(&maildir.join(&name)).await {
                Ok(m) if m.is_file() => found.push((m.mtime, name, m.len)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, name, size)| MailMessage { name, size })
        .collect())
}

async fn clean_tmp<E: Env>(env: &E, tmp: &Path) {
    let fs = env.fs();
    let Ok(entries) = fs.read_dir(tmp).await else {
        return;
    };
    let now = env.clock().unix_secs();
    for entry in entries {
        let path = tmp.join(&entry.name);
        let Ok(m) = fs.metadata(&path).await else {
            continue;
        };
        let mtime = m
            .mtime
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if m.is_file() && now.saturating_sub(mtime) > TMP_STALE_SECS {
            let _ = fs.remove_file(&path).await;
        }
    }
}

/// Applies QUIT's plan. `Ok(true)` when every deleted message is gone,
/// `Ok(false)` when some could not be removed; `Err` only when messages
/// moving to `cur/` could not be made durable there (they then stay in
/// `new/`, whole).
pub async fn commit<E: Env>(env: &E, maildir: &Path, plan: &QuitPlan) -> io::Result<bool> {
    let fs = env.fs();
    let mut linked = Vec::new();
    for name in &plan.to_cur {
        let base = &name["new/".len()..];
        let (from, to) = (maildir.join(name), maildir.join(format!("cur/{base}:2,")));
        match fs.link(&from, &to).await {
            Ok(()) => linked.push(from),
            // Linked by an earlier session that died before its unlink.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let same = match (fs.metadata(&from).await, fs.metadata(&to).await) {
                    (Ok(a), Ok(b)) => a.ino == b.ino,
                    _ => false,
                };
                if same {
                    linked.push(from);
                }
            }
            // Another session moved or deleted it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(message = %name, error = %e, "qmail-pop3d: cannot link into cur/");
            }
        }
    }
    if !linked.is_empty() {
        fs.sync_dir(&maildir.join("cur")).await?;
    }
    let mut all_deleted = true;
    for name in &plan.delete {
        match fs.remove_file(&maildir.join(name)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(message = %name, error = %e, "qmail-pop3d: cannot delete");
                all_deleted = false;
            }
        }
    }
    for from in &linked {
        if let Err(e) = fs.remove_file(from).await
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %from.display(), error = %e, "qmail-pop3d: cannot unlink from new/");
        }
    }
    let touched_new = !linked.is_empty() || plan.delete.iter().any(|n| n.starts_with("new/"));
    let touched_cur = plan.delete.iter().any(|n| n.starts_with("cur/"));
    for (dir, touched) in [("new", touched_new), ("cur", touched_cur)] {
        if touched && let Err(e) = fs.sync_dir(&maildir.join(dir)).await {
            tracing::warn!(dir, error = %e, "qmail-pop3d: cannot sync the deletions");
        }
    }
    Ok(all_deleted)
}
