//! What the server side of one MTA costs: its processes are gathered in a
//! cgroup v2 directory of their own, whose `cpu.stat` counts the CPU of
//! every process that ever ran in it (including the ones that exited), and
//! `perf stat -G` counts its context switches and sync system calls without
//! stopping it (unlike strace). Memory is the sum of the proportional set
//! size (PSS) of its processes, sampled: RSS would count the libraries the
//! processes of a multi-process MTA share once per process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cleanup;

/// Where the cgroup v2 hierarchy is mounted, if it is and we can make
/// groups in it (root, a delegated subtree).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let root = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
    })?;
    let probe = root.join(format!("qmail-bench-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = probe.join("cpu.stat").exists() && probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    usable.then_some(root)
}

/// Whether `perf stat` can count this cgroup's events here.
pub fn perf_usable(cgroup_root: &Path, scratch: &Path) -> bool {
    let Ok(g) = Group::new(cgroup_root, "perf-probe", scratch) else {
        return false;
    };
    let ok = PerfCounts::start(&g).and_then(PerfCounts::stop).is_some();
    g.remove();
    ok
}

/// The processes of one MTA instance.
pub struct Group {
    /// The cgroup directory.
    pub dir: PathBuf,
    /// Its path below the hierarchy's root, as `perf -G` wants it.
    name: String,
    /// Where the counters write what they counted.
    scratch: PathBuf,
}

impl Group {
    /// A new group; `scratch` is a directory of the run for its files.
    pub fn new(cgroup_root: &Path, label: &str, scratch: &Path) -> std::io::Result<Group> {
        let name = format!("qmail-bench-{}-{label}", std::process::id());
        let dir = cgroup_root.join(&name);
        cleanup::create_cgroup(&dir)?;
        Ok(Group {
            dir,
            name,
            scratch: scratch.to_path_buf(),
        })
    }

    /// `program args...` started inside the group (so are its children).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&self.dir)
            .arg(program);
        c
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// CPU used by the group so far: (user, system) in microseconds.
    pub fn cpu_usec(&self) -> (u64, u64) {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("user_usec "), field("system_usec "))
    }

    /// The sum of the PSS of its processes, in KB.
    pub fn pss_kb(&self) -> u64 {
        self.pids().into_iter().map(pss_kb).sum()
    }

    /// Kills what is left in the group and removes it.
    pub fn remove(self) {
        cleanup::remove_cgroup(&self.dir);
    }
}

/// A process's proportional set size in KB (0 once it is gone).
fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Pss:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The events counted per group.
const EVENTS: [&str; 5] = [
    "context-switches",
    "syscalls:sys_enter_fsync",
    "syscalls:sys_enter_fdatasync",
    "syscalls:sys_enter_syncfs",
    "syscalls:sys_enter_sync_file_range",
];

/// A running `perf stat -a -G group` (all CPUs, only the group's tasks).
pub struct PerfCounts {
    child: Child,
    out: PathBuf,
}

/// What it counted.
#[derive(Clone, Copy, Debug)]
pub struct Counted {
    pub context_switches: u64,
    /// fsync, fdatasync, syncfs and sync_file_range calls.
    pub syncs: u64,
}

impl PerfCounts {
    pub fn start(g: &Group) -> Option<PerfCounts> {
        let out = g.scratch.join(format!("{}.perf", g.name));
        let groups = vec![g.name.as_str(); EVENTS.len()].join(",");
        let child = cleanup::spawn_registered(|| {
            Command::new("perf")
                .args(["stat", "-x,", "-a", "-o"])
                .arg(&out)
                .args(["-e", &EVENTS.join(","), "-G", &groups])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .ok()?;
        // perf says nothing when it is ready; give it time to set up.
        std::thread::sleep(Duration::from_millis(300));
        Some(PerfCounts { child, out })
    }

    pub fn stop(mut self) -> Option<Counted> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let exited = matches!(self.child.try_wait(), Ok(Some(_)));
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        cleanup::forget_process(self.child.id());
        if !exited {
            return None;
        }
        let text = std::fs::read_to_string(&self.out).ok()?;
        let _ = std::fs::remove_file(&self.out);
        let count = |event: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                // A group none of whose tasks ran is "<not counted>".
                (f.len() > 2 && f[2] == event)
                    .then(|| f[0].parse().ok().or((f[0] == "<not counted>").then_some(0)))?
            })
        };
        Some(Counted {
            context_switches: count(EVENTS[0])?,
            syncs: EVENTS[1..].iter().map(|e| count(e)).sum::<Option<u64>>()?,
        })
    }
}

/// Samples a group's memory every 50 ms on a thread of its own, keeping
/// the peak.
pub struct PeakMemory {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakMemory {
    pub fn start(g: &Group) -> PeakMemory {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let dir = g.dir.clone();
        let probe = Group {
            dir,
            name: g.name.clone(),
            scratch: g.scratch.clone(),
        };
        let (s, p) = (stop.clone(), peak_kb.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(probe.pss_kb(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        PeakMemory {
            stop,
            peak_kb,
            thread,
        }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak_kb.load(Ordering::Relaxed)
    }
}

/// One timed measurement of a group: wall time, CPU, counted events and
/// peak memory between `begin` and `end`.
pub struct Window<'g> {
    group: &'g Group,
    perf: Option<PerfCounts>,
    memory: PeakMemory,
    cpu0: (u64, u64),
    pub t0: Instant,
}

/// Totals over a window.
#[derive(Clone, Copy, Debug)]
pub struct Totals {
    pub wall: Duration,
    pub user_usec: u64,
    pub system_usec: u64,
    pub counted: Option<Counted>,
    pub peak_pss_kb: u64,
}

impl<'g> Window<'g> {
    pub fn begin(group: &'g Group, with_perf: bool) -> Window<'g> {
        let perf = if with_perf {
            PerfCounts::start(group)
        } else {
            None
        };
        Window {
            group,
            perf,
            memory: PeakMemory::start(group),
            cpu0: group.cpu_usec(),
            t0: Instant::now(),
        }
    }

    pub fn end(self) -> Totals {
        let wall = self.t0.elapsed();
        let (u, s) = self.group.cpu_usec();
        let peak_pss_kb = self.memory.stop();
        let counted = self.perf.and_then(PerfCounts::stop);
        Totals {
            wall,
            user_usec: u - self.cpu0.0,
            system_usec: s - self.cpu0.1,
            counted,
            peak_pss_kb,
        }
    }
}
