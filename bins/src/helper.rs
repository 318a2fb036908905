//! What the `.qmail` helper programs (`forward`, `condredirect`,
//! `bouncesaying`, `except`, `preline`) share: the message on standard input
//! as a rewindable file, running a child program on it, and forwarding
//! through qmail-queue's interface. The decisions themselves are in
//! `qmail_core::local::helpers`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use qmail_core::env::{Env, ExitCode};
use qmail_core::local::ByteSource;
use qmail_core::local::forward::{ForwardError, ForwardRequest, forward};
use qmail_core::queue::InvokedFrom;
use qmail_core::queue::Queue;
use qmail_io_real::RealEnv;

/// Standard input as a file that can be read more than once. qmail-local
/// hands programs a seekable message; a pipe (as from `qmail run`'s
/// delivery, or a shell) is first spooled to an unlinked temporary file.
pub fn rewindable_stdin() -> io::Result<File> {
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    let mut file = File::from(fd);
    if file.stream_position().is_ok() && file.seek(SeekFrom::Start(0)).is_ok() {
        return Ok(file);
    }
    let dir = std::env::temp_dir();
    let mut spool = None;
    for attempt in 0..100u32 {
        let path = dir.join(format!("qmail-spool.{}.{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                spool = Some(f);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    let mut spool = spool.ok_or_else(|| io::Error::other("no free spool file name"))?;
    io::copy(&mut file, &mut spool)?;
    spool.seek(SeekFrom::Start(0))?;
    Ok(spool)
}

/// Runs `argv` (no shell) with `stdin` as its standard input and waits.
/// A program that cannot be started for a permanent reason (missing, not
/// executable) counts as exit 100, as qmail's helpers' children do.
pub fn run_child(argv: &[String], stdin: &File) -> io::Result<ExitCode> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("no program"))?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::from(stdin.try_clone()?))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(ExitCode::Exited(100));
        }
        Err(e) => return Err(e),
    };
    let status = child.wait()?;
    Ok(match status.code() {
        Some(c) => ExitCode::Exited(c),
        None => ExitCode::Signaled,
    })
}

/// A file read front to back as message bytes.
pub struct FileSource(pub File);

impl ByteSource for FileSource {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Forwards the message in `message` (from its current position) to
/// `recipients` with envelope sender `sender`, the Delivered-To line `dtline`
/// on top: through `$QMAILQUEUE` if set, else the queue of `$QMAIL_HOME`.
/// Returns the qp to report.
pub fn forward_file(
    message: File,
    dtline: &str,
    sender: &str,
    recipients: &[String],
) -> Result<u32, ForwardError> {
    let rt =
        crate::runtime().map_err(|e| ForwardError::Temporary(format!("unable to start: {e}")))?;
    let env = RealEnv::new();
    let home = crate::home();
    let queue = Queue::new(env.clone(), home.queue());
    let uid = env.identity().uid;
    let req = ForwardRequest {
        dtline,
        sender,
        recipients,
        invoked: InvokedFrom::Uid(uid),
        uid,
    };
    let program = crate::queue_program();
    rt.block_on(forward(
        &queue,
        program.as_deref(),
        &req,
        &mut FileSource(message),
    ))
}

/// Says `text` on standard error and exits with `code` (qmail's strerr_die).
pub fn die(code: u8, text: &str) -> std::process::ExitCode {
    eprintln!("{text}");
    std::process::ExitCode::from(code)
}

/// condredirect's and bouncesaying's common step: spool the message, run
/// the condition program `argv` on it and read its exit. Returns the
/// message (to be rewound) when the program said to act; otherwise the exit
/// code the helper ends with (0 to let the `.qmail` file go on, 111 to try
/// again later), its reason already printed.
pub fn run_condition(fatal: &str, argv: &[String]) -> Result<File, std::process::ExitCode> {
    use qmail_core::local::helpers::{Condition, condition};
    let message =
        rewindable_stdin().map_err(|e| die(111, &format!("{fatal}unable to read message: {e}")))?;
    let status = run_child(argv, &message)
        .map_err(|e| die(111, &format!("{fatal}unable to run {}: {e}", argv[0])))?;
    match condition(status) {
        Condition::Act => Ok(message),
        Condition::Continue => Err(std::process::ExitCode::SUCCESS),
        Condition::Retry if status == ExitCode::Signaled => {
            Err(die(111, &format!("{fatal}child crashed")))
        }
        Condition::Retry => Err(die(111, &format!("{fatal}temporary child error"))),
    }
}
