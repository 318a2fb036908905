//! qmail-queue: queues one message. The message is read from file descriptor
//! 0 and the envelope (`F<sender>\0T<rcpt>\0...\0`) from file descriptor 1,
//! which is read up to the envelope's terminator and no further. The exit
//! code says what happened, with qmail 1.03's numbers (`docs/queue.md` lists
//! each case): 0 queued; 11 address too long; 51 envelope too large; 52
//! timeout; 53 write error or disk full; 54 unable to read the message or
//! envelope; 66 trouble creating files in the queue; 91 envelope format
//! error. Nothing is printed.

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use qmail_core::env::{Env, Users};
use qmail_core::queue::{
    EnvelopeReader, InvokedFrom, QqExit, Queue, QueueError, ReadSource, Submission, Submitter,
};
use qmail_io_real::RealEnv;
use tokio::io::AsyncReadExt;

/// qmail-queue gives up after a day, as qmail's does.
const TIMEOUT: Duration = Duration::from_secs(86_400);

/// What `--help` prints.
const HELP: &str = "usage: qmail-queue\n\
\n\
Queues one message into the queue of $QMAIL_HOME (default /var/qmail): the\n\
message on file descriptor 0, the envelope (F<sender>\\0T<rcpt>\\0...\\0) on\n\
file descriptor 1. Prints nothing; the exit code says what happened, with\n\
qmail's numbers: 0 queued, 11 address too long, 53 write error or disk\n\
full, 54 unable to read the message or envelope, 66 trouble creating files\n\
in the queue, 91 envelope format error, 52 timeout.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let home = qmail_bins::home();
    let Ok(rt) = qmail_bins::runtime() else {
        return ExitCode::from(QqExit::BUG.code());
    };
    let env = RealEnv::new();
    let queue = Queue::new(env.clone(), home.queue());
    let code = rt.block_on(async {
        match tokio::time::timeout(TIMEOUT, queue_one(&env, &queue)).await {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => e.code(),
            Err(_) => QqExit::TIMEOUT.code(),
        }
    });
    // Standard input is read on a blocking thread; do not wait for it.
    rt.shutdown_background();
    ExitCode::from(code)
}

/// Who runs us, as qmail-queue tells from its real uid: the SMTP server's
/// user (`qmaild`), the alias user or the scheduler's (`qmails`), else a
/// uid. In the embedded default everything runs as one user: `by uid N`.
async fn invoked(env: &RealEnv) -> InvokedFrom {
    let uid = env.identity().uid;
    let is = |name: &'static str| async move {
        matches!(env.users().by_name(name).await, Ok(Some(u)) if u.uid == uid)
    };
    if is("qmaild").await {
        InvokedFrom::Network
    } else if is("alias").await {
        InvokedFrom::Alias
    } else if is("qmails").await {
        InvokedFrom::Bounce
    } else {
        InvokedFrom::Uid(uid)
    }
}

async fn queue_one(env: &RealEnv, queue: &Queue<RealEnv>) -> Result<(), QqExit> {
    let by = Submitter::me(env, invoked(env).await);
    let mut sub = Submission::open(queue, None, by).await;
    sub.copy_from(&mut ReadSource(tokio::io::stdin())).await;
    if let Some(e) = sub.failed() {
        sub.abort().await;
        return Err(e);
    }
    match read_envelope().await {
        Ok(envelope) => sub.close(&envelope).await.map(|_| ()),
        Err(e) => {
            sub.abort().await;
            Err(e.exit())
        }
    }
}

/// Reads the envelope from file descriptor 1, up to its terminator.
async fn read_envelope() -> Result<qmail_core::queue::Envelope, QueueError> {
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(QueueError::ReadInput)?;
    let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut reader = EnvelopeReader::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = file.read(&mut buf).await.map_err(QueueError::ReadInput)?;
        if n == 0 {
            return Err(reader.end());
        }
        if let Some(envelope) = reader.feed(&buf[..n])? {
            return Ok(envelope);
        }
    }
}
