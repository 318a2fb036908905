//! What the integration tests and the benchmarks share: making an
//! installation and running `qmail run` on a loopback port.
// Each test crate uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fresh installation made by `qmail init`, under `parent` (a temporary
/// directory by default). With `me`, `control/me` and `control/rcpthosts`
/// name that host.
pub fn init_home(parent: Option<&Path>, me: Option<&str>) -> tempfile::TempDir {
    let home = match parent {
        Some(p) => tempfile::Builder::new()
            .prefix("qmail-home-")
            .tempdir_in(p)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let st = Command::new(env!("CARGO_BIN_EXE_qmail"))
        .args(["init", "--home"])
        .arg(home.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "qmail init");
    if let Some(me) = me {
        set_control(home.path(), "me", me);
        set_control(home.path(), "rcpthosts", me);
    }
    home
}

/// Where a benchmark makes its files: `$BENCH_DIR`, else the system's
/// temporary directory; never the source tree. Says so if that is a tmpfs,
/// where fsync costs nothing and the figures mean little.
pub fn bench_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fs_type = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string()))
        })
        .max()
        .map(|(_, t)| t);
    if fs_type.as_deref() == Some("tmpfs") {
        eprintln!(
            "warning: {} is a tmpfs (fsync is free there); set BENCH_DIR to a directory on a disk",
            dir.display()
        );
    }
    dir
}

/// Whether `tool` can run here; in CI (which installs it) it must.
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    let uid = nix::unistd::Uid::effective();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

pub fn set_control(home: &Path, name: &str, value: &str) {
    std::fs::write(home.join("control").join(name), format!("{value}\n")).unwrap();
}

/// `qmail run` on 127.0.0.1 with an ephemeral port; killed when dropped.
pub struct QmailRun {
    pub child: Child,
    pub port: u16,
    pub home: tempfile::TempDir,
    /// What it wrote on standard error after its start line.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl QmailRun {
    pub fn start(home: tempfile::TempDir) -> QmailRun {
        QmailRun::start_logging(home, "warn")
    }

    /// Started with `RUST_LOG=level`, its log kept in [`QmailRun::log`].
    pub fn start_logging(home: tempfile::TempDir, level: &str) -> QmailRun {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qmail"))
            .args(["run", "--smtp", "127.0.0.1:0", "--home"])
            .arg(home.path())
            // Started as root (as CI runs), `qmail run` wants to be told
            // which user runs alias programs: the current one.
            .args(["--user", &current_user()])
            .env("RUST_LOG", level)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("qmail run said where it listens")
                .unwrap();
            if let Some(addr) = line.split("SMTP on ").nth(1) {
                break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        QmailRun {
            child,
            port,
            home,
            log,
        }
    }

    /// Waits up to `within` for a log line containing `text`.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} in {:#?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`HUP`, `ALRM`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Sends SIGTERM and checks that the server stops cleanly.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "qmail run exits cleanly on SIGTERM: {st}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "qmail run did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User plus system CPU time of the server so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.child.id(), "VmRSS:")
    }
}

impl Drop for QmailRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/PID/status` field in KB (`VmRSS:`, `VmHWM:`), 0 if unreadable.
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Reads one SMTP reply (all its lines) and returns its code.
pub async fn smtp_reply(
    r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
) -> u32 {
    use tokio::io::AsyncBufReadExt;
    loop {
        line.clear();
        r.read_line(line).await.unwrap();
        assert!(line.len() >= 4, "short reply {line:?}");
        if line.as_bytes()[3] == b' ' {
            return line[..3].parse().unwrap();
        }
    }
}

/// The benchmarks' message: 4 KB of text in SMTP form, final dot included.
pub fn bench_message() -> Vec<u8> {
    let mut body =
        b"From: bench@client.example\r\nTo: user@localhost\r\nSubject: bench\r\n\r\n".to_vec();
    while body.len() < 4096 {
        body.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again.\r\n",
        );
    }
    body.extend_from_slice(b".\r\n");
    body
}
