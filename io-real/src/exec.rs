//! Programs run through `/bin/sh -c`, as qmail-command does.

use std::io;
use std::process::Stdio;

use qmail_core::env::{
    Exec, ExitCode, FileRange, ProgramInput, ProgramOutput, ProgramSpec, QueueProgram,
};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct RealExec;

/// How long an abandoned `$QMAILQUEUE` program gets to see its input end
/// and exit before it is killed.
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A `$QMAILQUEUE` program being fed a message.
pub struct RealQueueProgram {
    child: tokio::process::Child,
    pid: u32,
    stdin: Option<tokio::process::ChildStdin>,
    /// The write end of the pipe that is the program's fd 1.
    envelope: Option<std::io::PipeWriter>,
}

impl QueueProgram for RealQueueProgram {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.stdin {
            Some(s) => s.write_all(data).await,
            None => Err(io::Error::other("queue program input already closed")),
        }
    }

    async fn finish(mut self, envelope: Vec<u8>) -> io::Result<ExitCode> {
        if let Some(mut s) = self.stdin.take() {
            // A program that exits without reading everything is judged by
            // its exit code, not by our broken pipe.
            let _ = s.shutdown().await;
        }
        // Only now, after the whole message, does the envelope go out. A
        // large one can fill the pipe before the program reads it, so it is
        // written beside the wait; a program that exits without reading it
        // ends the writer with a broken pipe, judged by the exit code.
        let writer = self.envelope.take().map(|mut w| {
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                w.write_all(&envelope)
            })
        });
        let status = self.child.wait().await?;
        if let Some(w) = writer {
            let _ = w.await;
        }
        Ok(match status.code() {
            Some(c) => ExitCode::Exited(c),
            None => ExitCode::Signaled,
        })
    }

    async fn abort(mut self) {
        // Both ends close with no envelope: qmail-queue sees its envelope
        // end early, exits 54 and commits nothing.
        drop(self.stdin.take());
        drop(self.envelope.take());
        if tokio::time::timeout(ABORT_WAIT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A copy of `range` in a nameless file (`O_TMPFILE`) beside it,
/// positioned at its start: nothing but the process holding it sees it,
/// and it goes when the last holder closes it. `None` where the filesystem
/// makes no nameless files.
async fn private_copy(range: &FileRange) -> io::Result<Option<std::fs::File>> {
    let dir = match range.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let copy = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_TMPFILE.bits())
        .open(dir);
    let copy = match copy {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // Runs inline, as the filesystem calls do (io-real/src/fs.rs): page-cache
    // reads and writes in large blocks, no hand-off to another thread.
    let mut copy = copy;
    let mut blocks = RangeBlocks::open(range)?;
    while let Some(block) = blocks.next_block()? {
        std::io::Write::write_all(&mut copy, block)?;
    }
    std::io::Seek::seek(&mut copy, io::SeekFrom::Start(0))?;
    Ok(Some(copy))
}

/// A file's byte range, read in blocks of [`COPY_BLOCK`] bytes; a file
/// shorter than its range is an error.
struct RangeBlocks<'a> {
    range: &'a FileRange,
    file: std::fs::File,
    buf: Vec<u8>,
    copied: u64,
}

impl<'a> RangeBlocks<'a> {
    fn open(range: &'a FileRange) -> io::Result<Self> {
        Ok(RangeBlocks {
            range,
            file: std::fs::File::open(&range.path)?,
            buf: vec![0u8; COPY_BLOCK],
            copied: 0,
        })
    }

    /// The next block, or `None` at the end of the range.
    fn next_block(&mut self) -> io::Result<Option<&[u8]>> {
        use std::os::unix::fs::FileExt;
        let left = self.range.len - self.copied;
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
        let n = self
            .file
            .read_at(&mut self.buf[..want], self.range.offset + self.copied)?;
        if n == 0 {
            return Err(short_range(self.range));
        }
        self.copied += n as u64;
        Ok(Some(&self.buf[..n]))
    }
}

fn short_range(range: &FileRange) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{} is shorter than its range", range.path.display()),
    )
}

impl Exec for RealExec {
    type QueueProgram = RealQueueProgram;

    async fn spawn_queue(&self, program: &Path) -> io::Result<RealQueueProgram> {
        let (reader, writer) = std::io::pipe()?;
        let mut cmd = Command::new(program);
        // Not killed when dropped: a program whose pipes close without an
        // envelope gives up by itself, and cleans up after itself.
        cmd.stdin(Stdio::piped()).stdout(reader);
        let mut child = cmd.spawn()?;
        // Our copy of the read end must go, or the program never sees the
        // envelope end.
        drop(cmd);
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        Ok(RealQueueProgram {
            child,
            pid,
            stdin,
            envelope: Some(writer),
        })
    }

    async fn run(
        &self,
        spec: &ProgramSpec,
        input: ProgramInput,
        output_limit: usize,
    ) -> io::Result<ProgramOutput> {
        // qmail-local hands a program the message file itself, so the
        // program reads to the message's true end whatever becomes of the
        // deliverer. A queue file holds more than the message, so the
        // program gets a private copy of its range instead. A pipe would
        // end early if we died mid-feed, and the program (a forward, say)
        // could not tell that end from the message's.
        let handed = match (&input.file, input.prefix.is_empty()) {
            (Some(range), true) => private_copy(range).await?,
            _ => None,
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&spec.command)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&spec.cwd)
            .kill_on_drop(true);
        let piped = handed.is_none();
        match handed {
            Some(file) => cmd.stdin(Stdio::from(file)),
            None => cmd.stdin(Stdio::piped()),
        };
        // Standard output and standard error share one pipe, as in qmail, so
        // what the program said comes back in the order it said it.
        let (mut reader, writer) = std::io::pipe()?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        if let Some((uid, gid)) = spec.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn()?;
        // Our copies of the pipe's write end (and of the handed file) must
        // go, or it never ends.
        drop(cmd);
        let stdin = if piped {
            Some(
                child
                    .stdin
                    .take()
                    .ok_or_else(|| io::Error::other("no stdin pipe"))?,
            )
        } else {
            None
        };

        let killer = &mut child;
        let feed = async move {
            let Some(mut stdin) = stdin else {
                return Ok(());
            };
            // A program that stops reading early (exit 99 after a header check,
            // say) closes the pipe: that is its right, not an error.
            let r = async {
                stdin.write_all(&input.prefix).await?;
                if let Some(range) = &input.file {
                    copy_range(range, &mut stdin).await?;
                }
                stdin.shutdown().await
            }
            .await;
            match r {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => {
                    // The program must not take the pipe's end for the
                    // message's: it dies before its input closes.
                    let _ = killer.start_kill();
                    drop(stdin);
                    Err(e)
                }
                Ok(()) => Ok(()),
            }
        };
        // Blocking reads of the pipe run on the blocking pool.
        let collect = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok::<_, io::Error>(out);
                }
                // Keep the first `output_limit` bytes, but drain the rest so
                // the program is never blocked on a full pipe.
                let room = output_limit.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        let collect = async move {
            collect
                .await
                .map_err(|e| io::Error::other(format!("output reader failed: {e}")))?
        };
        let (fed, output) = tokio::join!(feed, collect);
        let status = child.wait().await?;
        fed?;
        let output = output?;
        let status = match status.code() {
            Some(c) => ExitCode::Exited(c),
            None => ExitCode::Signaled,
        };
        Ok(ProgramOutput { status, output })
    }
}

/// How much of the message is moved to a program at a time: a pipe's
/// default capacity, so one write can fill it.
const COPY_BLOCK: usize = 64 * 1024;

/// Writes the bytes of `range` to `to`, a block at a time. The file is read
/// inline: it is a queue file, just written or just read by the delivery,
/// so its pages are in the page cache (tokio's file type would hand every
/// read of 8 KB to the blocking pool).
async fn copy_range(
    range: &qmail_core::env::FileRange,
    to: &mut tokio::process::ChildStdin,
) -> io::Result<()> {
    let mut blocks = RangeBlocks::open(range)?;
    while let Some(block) = blocks.next_block()? {
        to.write_all(block).await?;
    }
    Ok(())
}
