//! Programs run through `/bin/sh -c`, as qmail-command does.

use std::io;
use std::process::Stdio;

use qmail_core::env::{Exec, ExitCode, ProgramInput, ProgramOutput, ProgramSpec, QueueProgram};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct RealExec;

/// A `$QMAILQUEUE` program being fed a message.
pub struct RealQueueProgram {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    envelope: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl QueueProgram for RealQueueProgram {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.stdin {
            Some(s) => s.write_all(data).await,
            None => Err(io::Error::other("queue program input already closed")),
        }
    }

    async fn finish(mut self) -> io::Result<ExitCode> {
        if let Some(mut s) = self.stdin.take() {
            // A program that exits without reading everything is judged by
            // its exit code, not by our broken pipe.
            let _ = s.shutdown().await;
        }
        let status = self.child.wait().await?;
        if let Some(t) = self.envelope.take() {
            // A writer still blocked on a program that never read its
            // envelope ends with the program; its result is moot then.
            t.abort();
        }
        Ok(match status.code() {
            Some(c) => ExitCode::Exited(c),
            None => ExitCode::Signaled,
        })
    }
}

impl Exec for RealExec {
    type QueueProgram = RealQueueProgram;

    async fn spawn_queue(&self, program: &Path, envelope: Vec<u8>) -> io::Result<RealQueueProgram> {
        // The envelope travels through a pipe that is the program's fd 1;
        // qmail-queue reads it only after the message, so it is written by
        // a separate task while the message streams in.
        let (reader, mut writer) = std::io::pipe()?;
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::piped()).stdout(reader).kill_on_drop(true);
        let mut child = cmd.spawn()?;
        drop(cmd);
        let stdin = child.stdin.take();
        let envelope = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            writer.write_all(&envelope)
        });
        Ok(RealQueueProgram {
            child,
            stdin,
            envelope: Some(envelope),
        })
    }

    async fn run(
        &self,
        spec: &ProgramSpec,
        input: ProgramInput,
        output_limit: usize,
    ) -> io::Result<ProgramOutput> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&spec.command)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .kill_on_drop(true);
        // Standard output and standard error share one pipe, as in qmail, so
        // what the program said comes back in the order it said it.
        let (mut reader, writer) = std::io::pipe()?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        if let Some((uid, gid)) = spec.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn()?;
        // Our copies of the pipe's write end must go, or it never ends.
        drop(cmd);
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin pipe"))?;

        let feed = async move {
            // A program that stops reading early (exit 99 after a header check,
            // say) closes the pipe: that is its right, not an error.
            let r = async {
                stdin.write_all(&input.prefix).await?;
                if let Some(range) = &input.file {
                    let mut f = tokio::fs::File::open(&range.path).await?;
                    f.seek(std::io::SeekFrom::Start(range.offset)).await?;
                    let copied = tokio::io::copy(&mut (&mut f).take(range.len), &mut stdin).await?;
                    if copied != range.len {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{} is shorter than its range", range.path.display()),
                        ));
                    }
                }
                stdin.shutdown().await
            }
            .await;
            match r {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
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
