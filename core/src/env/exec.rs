use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

/// A program to run for `|command` delivery and the qmail helper programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    /// The command line, run as `/bin/sh -c COMMAND` (qmail-command's convention).
    pub command: String,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Run as this (uid, gid); `None` keeps the current identity.
    pub user: Option<(u32, u32)>,
}

/// What the program reads on standard input: `prefix` followed by the byte
/// range `file` (if any). Streaming from a file keeps memory bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgramInput {
    pub prefix: Vec<u8>,
    pub file: Option<FileRange>,
}

/// `len` bytes of the file `path` starting at `offset` (a message inside a
/// queue file, say). A file shorter than `offset + len` is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRange {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl FileRange {
    /// A range from `offset` to `offset + len`.
    pub fn new(path: impl Into<PathBuf>, offset: u64, len: u64) -> Self {
        FileRange {
            path: path.into(),
            offset,
            len,
        }
    }
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Exited with this status.
    Exited(i32),
    /// Killed by a signal, or crashed.
    Signaled,
}

/// A finished program: how it ended and (at most the first `output_limit` bytes
/// of) what it wrote to standard output and standard error together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOutput {
    pub status: ExitCode,
    pub output: Vec<u8>,
}

/// A running program with qmail-queue's interface (`$QMAILQUEUE`): the
/// message is streamed to its file descriptor 0, then the envelope to its
/// file descriptor 1, as qmail-queue(8) says: only after the whole message.
/// A message that is abandoned closes both without an envelope, so the
/// program commits nothing.
pub trait QueueProgram: Send + 'static {
    /// The program's process id (the `qp` a commit through it reports).
    fn pid(&self) -> u32;
    /// Appends message bytes to the program's standard input.
    fn write(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Ends the message (closes fd 0), writes `envelope` to fd 1, closes
    /// it and waits for the program's exit.
    fn finish(self, envelope: Vec<u8>) -> impl Future<Output = io::Result<ExitCode>> + Send;
    /// Abandons the message: closes fd 0 and fd 1 without an envelope and
    /// waits (a bounded time) for the program to give up.
    fn abort(self) -> impl Future<Output = ()> + Send;
}

/// Running programs.
pub trait Exec: Clone + Send + Sync + 'static {
    type QueueProgram: QueueProgram;

    fn run(
        &self,
        spec: &ProgramSpec,
        input: ProgramInput,
        output_limit: usize,
    ) -> impl Future<Output = io::Result<ProgramOutput>> + Send;

    /// Starts `program` (no shell, no arguments) as qmail starts
    /// `$QMAILQUEUE`, with pipes on its file descriptors 0 and 1.
    fn spawn_queue(
        &self,
        program: &Path,
    ) -> impl Future<Output = io::Result<Self::QueueProgram>> + Send;
}
