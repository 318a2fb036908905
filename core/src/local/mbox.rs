//! mbox delivery: lock the file, append a `From ` line, the Return-Path and
//! Delivered-To lines and the message with `>*From ` lines quoted, end with a
//! blank line, sync; on any failure cut the file back to its old length.
//!
//! The locks are those the mail readers of a Linux system honour: a
//! dotlock, then a `fcntl` write lock and an `flock` on the file together,
//! within one bounded wait ([`super::mbox_lock`]).

use std::io;
use std::path::Path;

use memchr::memchr;

use super::mbox_lock::{Dotlock, LockWait, lock_file};
use super::message::{ByteSource, CHUNK};
use super::verdict::Verdict;
use crate::env::{Env, Fs, FsFile, OpenOptions};

/// Quotes lines matching `>*From ` with one more `>`, streaming: feed any
/// chunking of the message, get the same bytes out. Only the start of a
/// line is looked at byte by byte; the rest of it is copied in one piece.
#[derive(Debug, Default)]
pub struct FromQuoter {
    /// The start of the current line while it may still turn out to be a
    /// `>*From ` line.
    head: Vec<u8>,
    /// Whether the current line's fate is decided (its head was written).
    decided: bool,
    /// The last byte written (to end the message with a newline).
    last: Option<u8>,
}

impl FromQuoter {
    pub fn new() -> Self {
        FromQuoter::default()
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.decided {
                // The rest of a decided line goes out as it is, in one piece.
                match memchr(b'\n', rest) {
                    Some(end) => {
                        out.extend_from_slice(&rest[..=end]);
                        rest = &rest[end + 1..];
                        self.decided = false;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        rest = &[];
                    }
                }
                continue;
            }
            // The start of a line, byte by byte until its fate is known
            // (after a few bytes: `>`s and at most `From `).
            let c = rest[0];
            rest = &rest[1..];
            self.head.push(c);
            let gt = self.head.iter().take_while(|&&b| b == b'>').count();
            let tail = &self.head[gt..];
            if tail == b"From " {
                out.push(b'>');
                out.append(&mut self.head);
                self.decided = true;
            } else if !b"From ".starts_with(tail) {
                // Not a From line (a newline ends it undecided: the next
                // line starts fresh).
                out.append(&mut self.head);
                self.decided = c != b'\n';
            }
        }
        if let Some(&c) = input.last() {
            self.last = Some(c);
        }
    }

    /// Writes what is held back and the mbox's message end: a newline if
    /// the message lacks its last one, then the blank separator line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.head);
        if self.last.is_some_and(|c| c != b'\n') {
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

/// Quotes a whole message at once (tests, small messages).
pub fn quote(message: &[u8]) -> Vec<u8> {
    let mut q = FromQuoter::new();
    let mut out = Vec::new();
    q.feed(message, &mut out);
    q.finish(&mut out);
    out
}

/// Appends the message from `source` to the mbox at `path` after `prefix`
/// (the `From `, Return-Path and Delivered-To lines), under the locks of
/// [`super::mbox_lock`].
pub async fn deliver_mbox<E: Env, S: ByteSource>(
    env: &E,
    path: &Path,
    prefix: &[u8],
    source: &mut S,
) -> Result<(), Verdict> {
    let mut wait = LockWait::new();
    let dotlock = Dotlock::take(env, path, &mut wait).await?;
    // Every way out of the delivery passes here, so the dotlock goes.
    // (Were this future dropped midway, the dotlock would stay until stale.)
    let result = deliver_locked(env, path, prefix, source, &mut wait).await;
    dotlock.release(env.fs()).await;
    result
}

async fn deliver_locked<E: Env, S: ByteSource>(
    env: &E,
    path: &Path,
    prefix: &[u8],
    source: &mut S,
    wait: &mut LockWait,
) -> Result<(), Verdict> {
    let fs = env.fs();
    let shown = path.display();
    let (mut file, locked) = open_locked(fs, path, wait).await?;
    let pos = file
        .metadata()
        .await
        .map_err(|e| Verdict::temporary(format!("Unable to open {shown}: {e}. (#4.2.1)")))?
        .len;
    let written = append(&mut file, prefix, source).await;
    let wfail = |e: io::Error| format!("Unable to write {shown}: {e}. (#4.3.0)");
    let result = match written {
        Ok(()) => match file.sync_all().await {
            // The file's name must be durable too. Whether it is cannot be
            // told (an earlier attempt may have created the file and failed
            // before syncing), so the directory is always synced.
            Ok(()) => match path.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(dir) => fs.sync_dir(dir).await.map_err(wfail),
                None => Ok(()),
            },
            Err(e) => Err(wfail(e)),
        },
        Err(e) => Err(e.describe(path)),
    };
    if let Err(text) = result {
        // Without the lock someone else may have appended meanwhile:
        // cutting could destroy their message, so only the lock holder cuts.
        if locked && file.set_len(pos).await.is_ok() {
            let _ = file.sync_all().await;
        }
        return Err(Verdict::temporary(text));
    }
    Ok(())
}

/// Opens the mbox (created 0600 if missing) and takes its kernel locks.
/// A reader that rewrites an mbox may rename a new file over it while we
/// wait for the lock: the lock then guards a file no longer named `path`,
/// so it is opened again. Returns whether the file is locked.
async fn open_locked<F: Fs>(
    fs: &F,
    path: &Path,
    wait: &mut LockWait,
) -> Result<(F::File, bool), Verdict> {
    let shown = path.display();
    let open_fail =
        |e: io::Error| Verdict::temporary(format!("Unable to open {shown}: {e}. (#4.2.1)"));
    loop {
        let mut file = fs
            .open(path, &OpenOptions::append().with_mode(0o600))
            .await
            .map_err(open_fail)?;
        if !lock_file(&mut file, wait).await? {
            return Ok((file, false));
        }
        let ours = file.metadata().await.map_err(open_fail)?.ino;
        match fs.metadata(path).await {
            Ok(named) if named.ino == ours => return Ok((file, true)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(open_fail(e)),
        }
        drop(file);
        wait.pause().await?;
    }
}

enum AppendError {
    Read(io::Error),
    Write(io::Error),
}

impl AppendError {
    fn describe(&self, path: &Path) -> String {
        match self {
            AppendError::Read(e) => format!("Unable to read message: {e}. (#4.3.0)"),
            AppendError::Write(e) => format!("Unable to write {}: {e}. (#4.3.0)", path.display()),
        }
    }
}

async fn append<F: FsFile, S: ByteSource>(
    file: &mut F,
    prefix: &[u8],
    source: &mut S,
) -> Result<(), AppendError> {
    let mut out = Vec::with_capacity(CHUNK + 1024);
    out.extend_from_slice(prefix);
    let mut quoter = FromQuoter::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = source
            .read_chunk(&mut buf)
            .await
            .map_err(AppendError::Read)?;
        if n == 0 {
            break;
        }
        quoter.feed(&buf[..n], &mut out);
        if out.len() >= CHUNK {
            file.write_all(&out).await.map_err(AppendError::Write)?;
            out.clear();
        }
    }
    quoter.finish(&mut out);
    file.write_all(&out).await.map_err(AppendError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_from_lines_anywhere() {
        assert_eq!(
            quote(b"From: header\nFrom x\n>From y\n>>From z\n From w\nFro\nFrom\n"),
            b"From: header\n>From x\n>>From y\n>>>From z\n From w\nFro\nFrom\n\n".to_vec()
        );
    }

    #[test]
    fn ends_with_a_newline_and_a_blank_line() {
        assert_eq!(quote(b"a"), b"a\n\n".to_vec());
        assert_eq!(quote(b"a\n"), b"a\n\n".to_vec());
        assert_eq!(quote(b""), b"\n".to_vec());
        assert_eq!(quote(b"From "), b">From \n\n".to_vec());
        assert_eq!(quote(b">>"), b">>\n\n".to_vec());
    }

    /// The same rule, line by line, written the obvious way.
    fn model(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in message.split_inclusive(|&c| c == b'\n') {
            let gt = line.iter().take_while(|&&c| c == b'>').count();
            if line[gt..].starts_with(b"From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line);
        }
        if message.last().is_some_and(|&c| c != b'\n') {
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }

    proptest! {
        #[test]
        fn streaming_matches_the_model(
            message in proptest::collection::vec(
                prop_oneof![Just(b'>'), Just(b'\n'), Just(b'F'), Just(b'r'), Just(b'o'), Just(b'm'), Just(b' '), Just(b'x')],
                0..200,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(message.len())).collect();
            cuts.push(message.len());
            cuts.sort_unstable();
            let mut q = FromQuoter::new();
            let mut out = Vec::new();
            let mut at = 0;
            for cut in cuts {
                q.feed(&message[at..cut], &mut out);
                at = cut;
            }
            q.finish(&mut out);
            prop_assert_eq!(out, model(&message));
        }
    }
}
