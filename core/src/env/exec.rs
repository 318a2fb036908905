use std::future::Future;
use std::io;
use std::path::PathBuf;

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

/// What the program reads on standard input: `prefix` followed by the whole
/// file `file` (if any). Streaming from a file keeps memory bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgramInput {
    pub prefix: Vec<u8>,
    pub file: Option<PathBuf>,
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

/// Running programs.
pub trait Exec: Clone + Send + Sync + 'static {
    fn run(
        &self,
        spec: &ProgramSpec,
        input: ProgramInput,
        output_limit: usize,
    ) -> impl Future<Output = io::Result<ProgramOutput>> + Send;
}
