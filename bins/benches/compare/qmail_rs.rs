//! A qmail-rs instance for one measurement: `qmail init` in the run's
//! directory and `qmail run` on a loopback port, inside its own group.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::measure::Group;
use crate::smtp_load::{Mailing, session};

const QMAIL: &str = env!("CARGO_BIN_EXE_qmail");
const QMAIL_SMTPD: &str = env!("CARGO_BIN_EXE_qmail-smtpd");

/// The local part's address at qmail-rs (`qmail init` accepts `localhost`).
pub fn address(local: &str) -> String {
    format!("{local}@localhost")
}

/// Where qmail-rs delivers mail for `local` (no `.qmail` file: the default
/// maildir under `mailboxes/`).
pub fn delivered_dir(home: &Path, local: &str) -> PathBuf {
    home.join("mailboxes").join(local).join("Maildir/new")
}

/// `qmail init` under `dir`, with session limits high enough for the
/// loads (every session comes from 127.0.0.1).
pub fn init(dir: &Path) -> Result<PathBuf> {
    let home = dir.join("qmail-home");
    let st = std::process::Command::new(QMAIL)
        .args(["init", "--home"])
        .arg(&home)
        .stdout(Stdio::null())
        .status()
        .context("running qmail init")?;
    ensure!(st.success(), "qmail init failed: {st}");
    for (name, value) in [
        ("concurrencyincoming", "5000"),
        ("concurrencyperip", "5000"),
    ] {
        std::fs::write(home.join("control").join(name), format!("{value}\n"))?;
    }
    Ok(home)
}

/// Queues the mailing with no scheduler running: `sessions` qmail-smtpd
/// processes (qmail's inetd mode) on pipes, each serving one session.
pub async fn queue_offline(
    home: &Path,
    sessions: usize,
    mailing: Arc<Mailing>,
    limit: Duration,
) -> Result<()> {
    let left = Arc::new(AtomicUsize::new(mailing.count));
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let mut child = tokio::process::Command::new(QMAIL_SMTPD)
            .env("QMAIL_HOME", home)
            .env("TCPREMOTEIP", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting qmail-smtpd")?;
        let (r, w) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let (mailing, left) = (mailing.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let sent = session(r, w, mailing, left).await?;
            let st = child.wait().await?;
            ensure!(st.success(), "qmail-smtpd: {st}");
            anyhow::Ok(sent)
        }));
    }
    let all = async {
        let mut sent = 0;
        for t in tasks {
            sent += t.await??;
        }
        anyhow::Ok(sent)
    };
    let sent = tokio::time::timeout(limit, all)
        .await
        .context("queueing took too long")??;
    ensure!(sent == mailing.count, "queued {sent} of {}", mailing.count);
    Ok(())
}

/// `qmail run` serving SMTP on a loopback port.
pub struct QmailRun {
    child: Child,
    pub addr: SocketAddr,
}

impl QmailRun {
    /// Starts `qmail run` on `home` inside `group` and waits (up to
    /// `limit`) until it serves: recovery of what is queued comes first.
    pub fn start(home: &Path, group: &Group, limit: Duration) -> Result<QmailRun> {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .context("who am I")?;
        let mut child = group
            .command(Path::new(QMAIL))
            .args(["run", "--smtp", "127.0.0.1:0", "--home"])
            .arg(home)
            // Started as root, `qmail run` wants to be told which user
            // runs alias programs; none run here.
            .args(["--user", &user])
            // No per-message log lines: Postfix's go to syslog, outside
            // its measured processes.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qmail run")?;
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        // Reads its log for the address, then keeps draining it (the last
        // lines go to our stderr) so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !told && let Some(a) = line.split("SMTP on ").nth(1) {
                    told = tx.send(a.trim().to_string()).is_ok();
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("qmail run: {line}");
                }
            }
        });
        let addr = match rx.recv_timeout(limit) {
            Ok(a) => a.parse().with_context(|| format!("address {a:?}"))?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("qmail run did not serve within {limit:?}");
            }
        };
        Ok(QmailRun { child, addr })
    }

    /// SIGTERM, then up to 10 s for a clean exit.
    pub fn stop(mut self) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait()? {
                ensure!(st.success(), "qmail run exited with {st} on SIGTERM");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("qmail run did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for QmailRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
