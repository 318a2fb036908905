//! Programs run through `/bin/sh -c`, as qmail-command does.

use std::io;
use std::process::Stdio;

use qmail_core::env::{Exec, ExitCode, ProgramInput, ProgramOutput, ProgramSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct RealExec;

impl Exec for RealExec {
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
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = spec.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin pipe"))?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr pipe"))?;

        let feed = async move {
            // A program that stops reading early (exit 99 after a header check,
            // say) closes the pipe: that is its right, not an error.
            let r = async {
                stdin.write_all(&input.prefix).await?;
                if let Some(path) = &input.file {
                    let mut f = tokio::fs::File::open(path).await?;
                    tokio::io::copy(&mut f, &mut stdin).await?;
                }
                stdin.shutdown().await
            }
            .await;
            match r {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        };
        let collect = async move {
            let mut out = Vec::new();
            let mut a = [0u8; 4096];
            let mut b = [0u8; 4096];
            let (mut a_open, mut b_open) = (true, true);
            while a_open || b_open {
                let n = tokio::select! {
                    r = stdout.read(&mut a), if a_open => {
                        let n = r?;
                        if n == 0 { a_open = false; }
                        &a[..n]
                    }
                    r = stderr.read(&mut b), if b_open => {
                        let n = r?;
                        if n == 0 { b_open = false; }
                        &b[..n]
                    }
                };
                let room = output_limit.saturating_sub(out.len());
                out.extend_from_slice(&n[..n.len().min(room)]);
            }
            Ok::<_, io::Error>(out)
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
