//! A private Postfix instance for one measurement. Everything it owns is in
//! the run's directory: `config_directory` (`etc/`), `queue_directory`
//! (`spool/`), `data_directory` (`data/`) and the mail store (`mail/`). It
//! listens on its own loopback port and delivers with virtual(8) into one
//! maildir per recipient under `mail/`, as a fixed uid and gid (nobody's),
//! fsyncing each file as Postfix always does. It never reads or changes the
//! system's /etc/postfix, and it stops with the measurement.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::cleanup;
use crate::measure::Group;

/// The Postfix programs found on this machine.
#[derive(Clone)]
pub struct Tools {
    pub postfix: PathBuf,
    pub postconf: PathBuf,
    pub version: String,
}

/// Postfix, if installed (`/usr/sbin` or `$PATH`) and it says its version.
pub fn find() -> Option<Tools> {
    let find = |name: &str| -> Option<PathBuf> {
        let sbin = Path::new("/usr/sbin").join(name);
        if sbin.is_file() {
            return Some(sbin);
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    let postfix = find("postfix")?;
    let postconf = find("postconf")?;
    let out = Command::new(&postconf)
        .args(["-d", "-h", "mail_version"])
        .output()
        .ok()?;
    let version = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(Tools {
        postfix,
        postconf,
        version,
    })
}

/// The recipient domain of the private instance.
const DOMAIN: &str = "bench.test";

pub fn address(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

/// The uid and gid virtual(8) delivers as: nobody's, which needs no
/// account of its own (virtual(8) refuses uids below 100, such as root's).
const MAIL_ID: u32 = 65534;

/// What answers on `public/qmgr` while the queue manager is left out.
pub struct QmgrStandIn {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// A running private instance.
pub struct Postfix {
    tools: Tools,
    config: PathBuf,
    mail: PathBuf,
    pub addr: SocketAddr,
}

/// The services of master.cf the loads need (no chroot: the instance's
/// files are all in the run directory). `with_qmgr = false` leaves the
/// queue manager out, so mail stays in `incoming/` until it is added.
fn master_cf(port: u16, with_qmgr: bool) -> String {
    let mut m = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    if with_qmgr {
        m.push_str(QMGR_LINE);
        m.push('\n');
    }
    for line in [
        "cleanup unix n - n - 0 cleanup",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "smtp unix - - n - - smtp",
        "relay unix - - n - - smtp",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "virtual unix - n n - - virtual",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ] {
        m.push_str(line);
        m.push('\n');
    }
    m
}

const QMGR_LINE: &str = "qmgr unix n - n 300 1 qmgr";

/// main.cf: Postfix's defaults except where the loads need otherwise.
fn main_cf(base: &Path, process_limit: usize, log: bool, with_qmgr: bool) -> String {
    let b = base.display();
    let mut m = format!(
        "compatibility_level = 3.6
queue_directory = {b}/spool
data_directory = {b}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {b}/mail
virtual_mailbox_maps = texthash:{b}/etc/mailboxes
virtual_uid_maps = static:{MAIL_ID}
virtual_gid_maps = static:{MAIL_ID}
# 10 MB messages and 1,024 recipients: above the defaults (10240000 bytes,
# 1000 recipients).
message_size_limit = 0
virtual_mailbox_limit = 0
smtpd_recipient_limit = 5000
# One smtpd process per session: room for the idle connections.
default_process_limit = {process_limit}
smtpd_client_connection_count_limit = 0
biff = no
"
    );
    if !with_qmgr {
        // cleanup(8) waits in_flow_delay (1 s) for each message when the
        // queue manager hands out no tokens, which it cannot while it is
        // left out.
        m.push_str("in_flow_delay = 0\n");
    }
    if log {
        m.push_str(&format!(
            "maillog_file_prefixes = {b}\nmaillog_file = {b}/maillog\n"
        ));
    }
    m
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Postfix {
    /// Makes the instance under `base` (which must exist, readable by the
    /// Postfix users), with a maildir map for `locals`, and starts it in
    /// `group`; waits up to `limit` until it answers on its port.
    pub fn start(
        tools: &Tools,
        base: &Path,
        group: &Group,
        locals: &[String],
        process_limit: usize,
        with_qmgr: bool,
        limit: Duration,
    ) -> Result<Postfix> {
        let config = base.join("etc");
        let mail = base.join("mail");
        for d in [&config, &base.join("spool"), &base.join("data"), &mail] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755))?;
        nix::unistd::chown(&mail, Some(MAIL_ID.into()), Some(MAIL_ID.into()))?;
        let postfix_user = nix::unistd::User::from_name("postfix")?.context("no user postfix")?;
        nix::unistd::chown(&base.join("data"), Some(postfix_user.uid), None)?;
        let port = free_port()?;
        let log = std::env::var_os("BENCH_POSTFIX_LOG").is_some();
        std::fs::write(
            config.join("main.cf"),
            main_cf(base, process_limit, log, with_qmgr),
        )?;
        std::fs::write(config.join("master.cf"), master_cf(port, with_qmgr))?;
        let map: String = locals
            .iter()
            .map(|l| format!("{} {l}/Maildir/\n", address(l)))
            .collect();
        std::fs::write(config.join("mailboxes"), map)?;
        cleanup::register_postfix(&tools.postfix, &config);
        let out = group
            .command(&tools.postfix)
            .arg("-c")
            .arg(&config)
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .context("running postfix start")?;
        ensure!(
            out.status.success(),
            "postfix start failed ({}): {}{} (set BENCH_POSTFIX_LOG=1 for its log)",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + limit;
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("Postfix did not listen on {addr} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Postfix {
            tools: tools.clone(),
            config,
            mail,
            addr,
        })
    }

    pub fn delivered_dir(&self, local: &str) -> PathBuf {
        self.mail.join(local).join("Maildir/new")
    }

    /// Messages waiting for the queue manager.
    pub fn incoming(&self) -> usize {
        let spool = self.config.parent().unwrap().join("spool/incoming");
        walk_count(&spool)
    }

    /// Listens in the queue manager's place while it is left out: every
    /// cleanup(8) that queues a message wakes it through `public/qmgr`, and
    /// finding no socket there costs seconds a message.
    pub fn stand_in_for_qmgr(&self) -> Result<QmgrStandIn> {
        let path = self.config.parent().unwrap().join("spool/public/qmgr");
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    // The wake-up is a byte or two; the sender waits for
                    // us to close.
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                        let _ = std::io::Read::read(&mut c, &mut [0; 64]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(QmgrStandIn { path, stop, thread })
    }

    /// Replaces the stand-in by the queue manager and reloads: it starts
    /// and takes what is in `incoming/`.
    pub fn start_qmgr(&self, stand_in: QmgrStandIn) -> Result<()> {
        stand_in.stop.store(true, Ordering::Relaxed);
        let _ = stand_in.thread.join();
        std::fs::remove_file(&stand_in.path)?;
        let st = Command::new(&self.tools.postconf)
            .arg("-c")
            .arg(&self.config)
            .arg("-M")
            .arg(format!("qmgr/unix={QMGR_LINE}"))
            .status()?;
        ensure!(st.success(), "postconf -M qmgr/unix failed: {st}");
        self.postfix("reload")
    }

    fn postfix(&self, cmd: &str) -> Result<()> {
        let out = Command::new(&self.tools.postfix)
            .arg("-c")
            .arg(&self.config)
            .arg(cmd)
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "postfix {cmd} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// `postfix stop`; the caller removes the group, which kills whatever
    /// did not stop.
    pub fn stop(self) -> Result<()> {
        let r = self.postfix("stop");
        cleanup::abort_postfix(&self.tools.postfix, &self.config);
        r
    }
}

/// Files below `dir` (Postfix hashes queue files into subdirectories).
fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
