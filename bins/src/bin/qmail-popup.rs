//! qmail-popup: the authorization half of a POP3 session on standard input
//! and output, for tcpserver. It greets, reads USER and PASS (or APOP), and
//! runs `subprogram...` (a checkpassword program) with the login name, the
//! password and the greeting's timestamp on descriptor 3, each ended by a
//! NUL, and the client's connection as its standard input and output. On
//! success checkpassword runs qmail-pop3d as the user, which serves the rest
//! of the session; otherwise the client is told and the session ends.
//!
//! Input is read straight from descriptor 0, never ahead of what the client
//! has sent, so the lines the client sends after PASS reach the mailbox
//! server and not this process.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use qmail_core::pop3::popup::{self, after_checkpassword};
use qmail_core::pop3::{CheckpasswordEnd, Credentials, LineReader, Popup, PopupStep};

const HELP: &str = "usage: qmail-popup hostname subprogram [arg ...]\n\
\n\
Greets a POP3 client on standard input and output as hostname, reads USER\n\
and PASS (or APOP), and runs subprogram (a checkpassword program) with\n\
\"user\\0password\\0<timestamp>\\0\" on descriptor 3. Each read and write\n\
waits at most 1200 seconds.\n\
";

/// qmail's bound on each read and write.
const TIMEOUT: Duration = Duration::from_secs(1200);

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    if args.len() < 2 {
        let _ = out.write_all(b"-ERR usage: popup hostname subprogram\r\n");
        let _ = out.flush();
        return ExitCode::from(1);
    }
    match serve(&args[0], &args[1..], &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("qmail-popup: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn send(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to the client")
}

/// Serves the authorization state; `Ok(true)` if checkpassword served the
/// session.
fn serve(hostname: &str, subprogram: &[String], out: &mut impl Write) -> Result<bool> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let timestamp = popup::timestamp(std::process::id(), now, hostname);
    send(out, &popup::greeting(&timestamp))?;
    let mut input = File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("standard input")?,
    );
    let mut machine = Popup::new(timestamp);
    let mut lines = LineReader::default();
    let mut buf = [0u8; 512];
    loop {
        let line = loop {
            if let Some(line) = lines.next_line() {
                break line;
            }
            let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(TIMEOUT).unwrap_or(PollTimeout::MAX);
            if poll(&mut fds, ms).context("waiting for the client")? == 0 {
                return Ok(false);
            }
            match input.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => lines.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the client"),
            }
        };
        match machine.on_line(line) {
            PopupStep::Reply(r) => send(out, &r)?,
            PopupStep::Quit(r) => {
                send(out, &r)?;
                return Ok(false);
            }
            PopupStep::Authenticate(credentials) => {
                drop(input);
                let end = checkpassword(subprogram, credentials)?;
                if let Some(last) = after_checkpassword(end) {
                    send(out, last)?;
                }
                return Ok(end == CheckpasswordEnd::Served);
            }
        }
    }
}

/// Runs checkpassword with the credentials on descriptor 3 and waits for it.
fn checkpassword(subprogram: &[String], credentials: Credentials) -> Result<CheckpasswordEnd> {
    // Descriptor 3 must be the pipe's read end in the child: free it, and
    // the pipe takes the lowest free descriptors.
    let _ = nix::unistd::close(3);
    let (read_end, write_end) = nix::unistd::pipe().context("unable to open pipe")?;
    if read_end.as_raw_fd() != 3 {
        bail!("unable to open pipe on descriptor 3");
    }
    fcntl(&write_end, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("unable to open pipe")?;
    let spawned = Command::new(&subprogram[0]).args(&subprogram[1..]).spawn();
    drop(read_end);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qmail-popup: cannot run {}: {e}", subprogram[0]);
            return Ok(CheckpasswordEnd::Refused);
        }
    };
    let mut pipe = File::from(write_end);
    // A checkpassword that exits without reading makes this write fail:
    // its exit status says what happened, not the write.
    let mut bytes = credentials.fd3_bytes();
    let _ = pipe.write_all(&bytes);
    drop(pipe);
    // The password does not outlive its use in this process's memory.
    bytes.fill(0);
    drop(credentials);
    let status = child.wait().context("waiting for checkpassword")?;
    Ok(if status.signal().is_some() {
        CheckpasswordEnd::Crashed
    } else if status.code() == Some(0) {
        CheckpasswordEnd::Served
    } else {
        CheckpasswordEnd::Refused
    })
}
