//! qmail-queue: queues one message. The message is read from file descriptor
//! 0 and the envelope (`F<sender>\0T<rcpt>\0...\0`) from file descriptor 1.
//! The exit code says what happened, with qmail's numbers: 0 queued; 11
//! address too long; 53 write error or disk full; 54 unable to read the
//! message or envelope; 66 trouble creating files in the queue; 91 envelope
//! format error; 52 timeout. Nothing is printed.

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use qmail_core::date;
use qmail_core::env::{Clock, Env};
use qmail_core::queue::{Envelope, Queue, QueueError};
use qmail_io_real::RealEnv;
use tokio::io::AsyncReadExt;

/// qmail-queue gives up after a day, as qmail's does.
const TIMEOUT: Duration = Duration::from_secs(86_400);
/// An envelope larger than this is refused rather than read into memory.
const MAX_ENVELOPE: u64 = 64 << 20;

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
        return ExitCode::from(81);
    };
    let env = RealEnv::new();
    let queue = Queue::new(env.clone(), home.queue());
    let code = rt.block_on(async {
        match tokio::time::timeout(TIMEOUT, queue_one(&env, &queue)).await {
            Ok(Ok(())) => {
                qmail_bins::trigger::pull(&home.queue());
                0
            }
            Ok(Err(e)) => e.exit_code(),
            Err(_) => 52,
        }
    });
    ExitCode::from(code)
}

async fn queue_one(env: &RealEnv, queue: &Queue<RealEnv>) -> Result<(), QueueError> {
    let id = env.identity();
    let received = format!(
        "Received: (qmail {} invoked by uid {}); {}\n",
        id.pid,
        id.uid,
        date::rfc822(env.clock().unix_secs())
    );
    let mut inj = queue.begin().await?;
    let body = async {
        inj.write(received.as_bytes()).await?;
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdin.read(&mut buf).await.map_err(QueueError::ReadInput)?;
            if n == 0 {
                break;
            }
            inj.write(&buf[..n]).await?;
        }
        read_envelope().await
    }
    .await;
    match body {
        Ok(envelope) => inj.commit(&envelope, id.uid, id.pid).await.map(|_| ()),
        Err(e) => {
            inj.abort().await;
            Err(e)
        }
    }
}

/// Reads the envelope from file descriptor 1.
async fn read_envelope() -> Result<Envelope, QueueError> {
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(QueueError::ReadInput)?;
    let file = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut raw = Vec::new();
    file.take(MAX_ENVELOPE + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(QueueError::ReadInput)?;
    if raw.len() as u64 > MAX_ENVELOPE {
        return Err(QueueError::BadEnvelope("envelope too large".into()));
    }
    Envelope::decode(&raw)
}
