//! Scripted programs for the `Exec` trait.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::path::Path;

use qmail_core::env::{Exec, ExitCode, Fs, ProgramInput, ProgramOutput, ProgramSpec, QueueProgram};

use crate::fs::SimFs;

/// What a scripted program is handed: the spec it was run with and everything
/// it read on standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCall {
    pub spec: ProgramSpec,
    pub stdin: Vec<u8>,
}

type Behaviour = Arc<dyn Fn(&ProgramCall) -> ProgramOutput + Send + Sync>;

struct Script {
    /// Matches a command that equals this or starts with it followed by a space.
    command: String,
    delay: Duration,
    behaviour: Behaviour,
}

/// Programs are closures registered by command name; the filesystem is the
/// host's, so a program's standard input can stream from a queue file. Every
/// call is recorded.
#[derive(Clone)]
pub struct SimExec {
    fs: SimFs,
    scripts: Arc<Mutex<Vec<Script>>>,
    calls: Arc<Mutex<Vec<ProgramCall>>>,
}

impl fmt::Debug for SimExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimExec").finish_non_exhaustive()
    }
}

impl SimExec {
    pub fn new(fs: SimFs) -> Self {
        SimExec {
            fs,
            scripts: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Registers a program. `delay` is simulated run time.
    pub fn script(
        &self,
        command: &str,
        delay: Duration,
        behaviour: impl Fn(&ProgramCall) -> ProgramOutput + Send + Sync + 'static,
    ) {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Script {
                command: command.to_string(),
                delay,
                behaviour: Arc::new(behaviour),
            });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<ProgramCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn find(&self, command: &str) -> Option<(Duration, Behaviour)> {
        let scripts = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        scripts
            .iter()
            .find(|s| {
                command == s.command
                    || command
                        .strip_prefix(s.command.as_str())
                        .is_some_and(|rest| rest.starts_with(' '))
            })
            .map(|s| (s.delay, Arc::clone(&s.behaviour)))
    }
}

/// A finished program's result.
pub fn exited(code: i32, output: &str) -> ProgramOutput {
    ProgramOutput {
        status: ExitCode::Exited(code),
        output: output.as_bytes().to_vec(),
    }
}

/// A scripted `$QMAILQUEUE` program: collects the message, then (given the
/// envelope) runs the script registered under its path with the message as
/// stdin and the envelope in `ProgramCall::spec.env` as `("ENVELOPE", ...)`
/// (lossy text). An aborted one runs nothing: it never saw an envelope.
pub struct SimQueueProgram {
    exec: SimExec,
    program: String,
    message: Vec<u8>,
}

/// The process id scripted queue programs report.
pub const SIM_QUEUE_PID: u32 = 4242;

impl QueueProgram for SimQueueProgram {
    fn pid(&self) -> u32 {
        SIM_QUEUE_PID
    }

    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.message.extend_from_slice(data);
        Ok(())
    }

    async fn abort(self) {}

    async fn finish(self, envelope: Vec<u8>) -> io::Result<ExitCode> {
        let spec = ProgramSpec {
            command: self.program.clone(),
            env: vec![(
                "ENVELOPE".into(),
                String::from_utf8_lossy(&envelope).into_owned(),
            )],
            cwd: "/".into(),
            user: None,
        };
        let input = ProgramInput {
            prefix: self.message,
            file: None,
        };
        Ok(self.exec.run(&spec, input, 4096).await?.status)
    }
}

impl Exec for SimExec {
    type QueueProgram = SimQueueProgram;

    async fn spawn_queue(&self, program: &Path) -> io::Result<SimQueueProgram> {
        Ok(SimQueueProgram {
            exec: self.clone(),
            program: program.display().to_string(),
            message: Vec::new(),
        })
    }

    async fn run(
        &self,
        spec: &ProgramSpec,
        input: ProgramInput,
        output_limit: usize,
    ) -> io::Result<ProgramOutput> {
        let mut stdin = input.prefix;
        if let Some(range) = &input.file {
            let whole = self.fs.read(&range.path).await?;
            let part = usize::try_from(range.offset)
                .ok()
                .zip(usize::try_from(range.offset + range.len).ok())
                .and_then(|(a, b)| whole.get(a..b))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than its range", range.path.display()),
                    )
                })?;
            stdin.extend_from_slice(part);
        }
        let call = ProgramCall {
            spec: spec.clone(),
            stdin,
        };
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call.clone());
        let Some((delay, behaviour)) = self.find(&spec.command) else {
            return Ok(exited(127, &format!("sh: {}: not found\n", spec.command)));
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut out = behaviour(&call);
        out.output.truncate(output_limit);
        Ok(out)
    }
}
