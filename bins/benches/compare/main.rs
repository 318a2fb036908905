//! qmail-rs beside Postfix: the same loads against both, in alternating
//! rounds, on this machine, with the medians printed as a Markdown table.
//!
//! Run with `cargo bench -p qmail-bins --bench compare` (as root: the
//! servers run in cgroups of their own, and Postfix needs root to start).
//! It installs nothing; if Postfix is not installed it measures qmail-rs
//! alone and says so. Everything runs under a fresh temporary directory
//! (`$BENCH_DIR`, default the system's), removed at the end, on failure and
//! on Ctrl-C. `docs/performance.md` says what each column measures and
//! lists the settings (`BENCH_FULL=1` for the sizes).

mod cleanup;
mod measure;
mod postfix;
mod qmail_rs;
mod report;
mod smtp_load;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use measure::{Group, Window};
use report::{Medians, Sample};
use smtp_load::{Mailing, idle_connections, message, send, wait_delivered};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    QmailRs,
    Postfix,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::QmailRs => "qmail-rs",
            System::Postfix => "Postfix",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Load {
    /// Messages of 4 KB to one mailbox over this many sessions, until the
    /// last one is delivered.
    EndToEnd(usize),
    /// The same over 20 sessions, until the last `250`.
    Acceptance,
    /// One message to many local recipients, each its own mailbox.
    Recipients,
    /// Messages queued with nothing delivering, then delivered.
    QueuedThenDrained,
    /// 10 MB messages, one per session.
    BigMessages,
    /// Connections that only take the greeting.
    IdleConnections,
}

/// What to run, from the environment (see `docs/performance.md`).
struct Settings {
    rounds: usize,
    loads: Vec<Load>,
    end_to_end: usize,
    acceptance: usize,
    recipients: usize,
    queued: usize,
    big: usize,
    big_mb: usize,
    idle: usize,
    /// Bound on each measurement.
    limit: Duration,
    parent: PathBuf,
    with_postfix: bool,
}

fn var(name: &str, small: usize, full: usize) -> Result<usize> {
    let is_full = std::env::var_os("BENCH_FULL").is_some_and(|v| v != "0");
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(if is_full { full } else { small }),
    }
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let all = [
            ("e2e1", Load::EndToEnd(1)),
            ("e2e20", Load::EndToEnd(20)),
            ("e2e100", Load::EndToEnd(100)),
            ("accept", Load::Acceptance),
            ("rcpts", Load::Recipients),
            ("drain", Load::QueuedThenDrained),
            ("big", Load::BigMessages),
            ("idle", Load::IdleConnections),
        ];
        let loads = match std::env::var("BENCH_LOADS") {
            Ok(list) => list
                .split(',')
                .map(|k| {
                    all.iter()
                        .find(|(key, _)| *key == k.trim())
                        .map(|(_, l)| *l)
                        .with_context(|| format!("unknown load {k:?} in BENCH_LOADS"))
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => all.iter().map(|(_, l)| *l).collect(),
        };
        let s = Settings {
            rounds: var("BENCH_ROUNDS", 3, 3)?,
            loads,
            end_to_end: var("BENCH_MESSAGES", 300, 2000)?,
            acceptance: var("BENCH_ACCEPT_MESSAGES", 1000, 5000)?,
            recipients: var("BENCH_RECIPIENTS", 1024, 1024)?,
            queued: var("BENCH_QUEUED", 2000, 20000)?,
            big: var("BENCH_BIG_MESSAGES", 20, 20)?,
            big_mb: var("BENCH_BIG_MB", 10, 10)?,
            idle: var("BENCH_IDLE", 200, 1000)?,
            limit: Duration::from_secs(var("BENCH_LIMIT_SECS", 600, 1800)? as u64),
            parent: std::env::var_os("BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            with_postfix: std::env::var_os("BENCH_NO_POSTFIX").is_none(),
        };
        ensure!(s.rounds >= 1, "BENCH_ROUNDS must be at least 1");
        Ok(s)
    }

    fn label(&self, load: Load) -> String {
        match load {
            Load::EndToEnd(1) => format!("{} msgs, 1 session", self.end_to_end),
            Load::EndToEnd(n) => format!("{} msgs, {n} sessions", self.end_to_end),
            Load::Acceptance => format!("accept only, {} msgs, 20 sessions", self.acceptance),
            Load::Recipients => format!("1 msg to {} mailboxes", self.recipients),
            Load::QueuedThenDrained => format!("{} queued, then drained", self.queued),
            Load::BigMessages => format!("{} × {} MB", self.big, self.big_mb),
            Load::IdleConnections => format!("{} idle connections", self.idle),
        }
    }
}

/// What every measurement shares.
struct Bench {
    settings: Settings,
    cgroup_root: PathBuf,
    perf: bool,
    postfix: Option<postfix::Tools>,
    rt: tokio::runtime::Runtime,
    run_dir: PathBuf,
}

/// The mailboxes of the recipients load.
fn recipient_locals(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i:04}")).collect()
}

impl Bench {
    /// One measurement on a fresh instance, which is then stopped and
    /// removed whatever happened.
    fn measure(&self, system: System, load: Load, round: usize) -> Result<Sample> {
        let key = format!("{}-{round}-{load:?}", system.name())
            .replace(['(', ')'], "")
            .to_lowercase();
        let dir = self.run_dir.join(&key);
        std::fs::create_dir(&dir)?;
        let group = Group::new(&self.cgroup_root, &key, &self.run_dir)?;
        let result = match system {
            System::QmailRs => self.measure_qmail(&dir, &group, load),
            System::Postfix => self.measure_postfix(&dir, &group, load),
        };
        group.remove();
        cleanup::remove_dir(&dir);
        result
    }

    fn measure_qmail(&self, dir: &Path, group: &Group, load: Load) -> Result<Sample> {
        let home = qmail_rs::init(dir)?;
        let limit = self.settings.limit;
        if load == Load::QueuedThenDrained {
            let mailing = self.mailing(load, &qmail_rs::address);
            let n = mailing.count;
            self.rt
                .block_on(qmail_rs::queue_offline(&home, 20, Arc::new(mailing), limit))?;
            let window = Window::begin(group, self.perf);
            let server = qmail_rs::QmailRun::start(&home, group, limit);
            let done = server
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|_| {
                    wait_delivered(
                        &[qmail_rs::delivered_dir(&home, "user")],
                        n,
                        window.t0 + limit,
                    )
                });
            // Ended whatever happened, so its sampler and counter stop.
            let totals = window.end();
            done?;
            server?.stop()?;
            return Ok(Sample {
                units: n,
                totals,
                kb_per_connection: None,
            });
        }
        let server = qmail_rs::QmailRun::start(&home, group, limit)?;
        let sample = self.measure_serving(group, load, server.addr, &qmail_rs::address, &|l| {
            qmail_rs::delivered_dir(&home, l)
        })?;
        server.stop()?;
        Ok(sample)
    }

    fn measure_postfix(&self, dir: &Path, group: &Group, load: Load) -> Result<Sample> {
        let tools = self.postfix.as_ref().context("no Postfix")?;
        let mut locals = vec!["user".to_string()];
        locals.extend(recipient_locals(self.settings.recipients));
        // Postfix's default, unless the idle connections need more smtpd
        // processes (one per connection).
        let process_limit = match load {
            Load::IdleConnections => self.settings.idle + 100,
            _ => 100,
        };
        let drain = load == Load::QueuedThenDrained;
        let limit = self.settings.limit;
        let server = postfix::Postfix::start(
            tools,
            dir,
            group,
            &locals,
            process_limit,
            !drain,
            Duration::from_secs(30),
        )?;
        let sample = if drain {
            let mailing = self.mailing(load, &postfix::address);
            let n = mailing.count;
            let stand_in = server.stand_in_for_qmgr()?;
            self.rt
                .block_on(send(server.addr, 20, Arc::new(mailing), limit))?;
            // Every `250` came after cleanup synced its file into incoming/.
            ensure!(
                server.incoming() == n,
                "{} of {n} in incoming/",
                server.incoming()
            );
            let window = Window::begin(group, self.perf);
            let done = server.start_qmgr(stand_in).and_then(|()| {
                wait_delivered(&[server.delivered_dir("user")], n, window.t0 + limit)
            });
            let totals = window.end();
            done?;
            Sample {
                units: n,
                totals,
                kb_per_connection: None,
            }
        } else {
            self.measure_serving(group, load, server.addr, &postfix::address, &|l| {
                server.delivered_dir(l)
            })?
        };
        server.stop()?;
        Ok(sample)
    }

    /// The loads' messages, addressed with `address`.
    fn mailing(&self, load: Load, address: &dyn Fn(&str) -> String) -> Mailing {
        let s = &self.settings;
        let (locals, count, size) = match load {
            Load::EndToEnd(_) => (vec!["user".into()], s.end_to_end, 4096),
            Load::Acceptance => (vec!["user".into()], s.acceptance, 4096),
            Load::Recipients => (recipient_locals(s.recipients), 1, 4096),
            Load::QueuedThenDrained => (vec!["user".into()], s.queued, 4096),
            Load::BigMessages => (vec!["user".into()], s.big, s.big_mb << 20),
            Load::IdleConnections => (vec![], 0, 0),
        };
        Mailing {
            recipients: locals.iter().map(|l| address(l)).collect(),
            body: message(size),
            count,
        }
    }

    /// A load against a serving MTA at `addr`, measured on `group`.
    fn measure_serving(
        &self,
        group: &Group,
        load: Load,
        addr: std::net::SocketAddr,
        address: &dyn Fn(&str) -> String,
        delivered_dir: &dyn Fn(&str) -> PathBuf,
    ) -> Result<Sample> {
        let limit = self.settings.limit;
        if load == Load::IdleConnections {
            // Let the server settle before the baseline.
            std::thread::sleep(Duration::from_millis(500));
            let before = group.pss_kb();
            let window = Window::begin(group, self.perf);
            let held = self
                .rt
                .block_on(idle_connections(addr, self.settings.idle, limit));
            let opened = window.t0.elapsed();
            if held.is_ok() {
                std::thread::sleep(Duration::from_secs(1));
            }
            let after = group.pss_kb();
            let mut totals = window.end();
            totals.wall = opened;
            drop(held?);
            return Ok(Sample {
                units: self.settings.idle,
                totals,
                kb_per_connection: Some(
                    after.saturating_sub(before) as f64 / self.settings.idle as f64,
                ),
            });
        }
        let mailing = Arc::new(self.mailing(load, address));
        let sessions = match load {
            Load::EndToEnd(n) => n,
            Load::Acceptance => 20,
            Load::Recipients => 1,
            Load::BigMessages => mailing.count.clamp(1, 20),
            _ => unreachable!("handled above"),
        };
        let dirs: Vec<PathBuf> = match load {
            Load::Recipients => recipient_locals(self.settings.recipients)
                .iter()
                .map(|l| delivered_dir(l))
                .collect(),
            _ => vec![delivered_dir("user")],
        };
        let each = if load == Load::Recipients {
            1
        } else {
            mailing.count
        };
        let units = mailing.count * mailing.recipients.len();
        let window = Window::begin(group, self.perf);
        let sent = self.rt.block_on(send(addr, sessions, mailing, limit));
        let done = if load == Load::Acceptance {
            Ok(Instant::now())
        } else {
            sent.as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|_| wait_delivered(&dirs, each, window.t0 + limit))
        };
        let totals = window.end();
        sent?;
        done?;
        Ok(Sample {
            units,
            totals,
            kb_per_connection: None,
        })
    }
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Compilers running now (other people's builds make figures noisy).
fn compilers_running() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .filter(|c| matches!(c.trim(), "rustc" | "cc1" | "cc1plus" | "ld" | "cargo"))
                .count()
        })
        .unwrap_or(0)
}

fn machine_state() -> String {
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        })
        .map_or(0, |kb| kb >> 20);
    format!(
        "{} cores, {mem_gib} GiB, Linux {}, load average {}, {} compiler processes running",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        load_average(),
        compilers_running()
    )
}

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    raise_fd_limit();
    let Some(cgroup_root) = measure::cgroup2_root() else {
        bail!(
            "this benchmark needs a cgroup v2 hierarchy it can make groups in (run it as root): \
             it measures each MTA's processes as one group"
        );
    };
    let postfix = if settings.with_postfix {
        postfix::find()
    } else {
        None
    };
    let parent = &settings.parent;
    let run_dir = tempfile::Builder::new()
        .prefix("qmail-compare-")
        .tempdir_in(parent)
        .with_context(|| format!("making a directory in {}", parent.display()))?
        .keep();
    cleanup::register_dir(&run_dir);
    // Postfix's processes and virtual(8), running as postfix and nobody,
    // must reach their directories below it.
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755))?;
    let perf = measure::perf_usable(&cgroup_root, &run_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bench = Bench {
        settings,
        cgroup_root,
        perf,
        postfix,
        rt,
        run_dir,
    };
    let s = &bench.settings;

    let mut systems = vec![System::QmailRs];
    match &bench.postfix {
        Some(t) => {
            systems.push(System::Postfix);
            println!(
                "Postfix {} found ({}): both systems, alternating.",
                t.version,
                t.postfix.display()
            );
        }
        None if !s.with_postfix => println!("BENCH_NO_POSTFIX is set: qmail-rs alone."),
        None => println!("Postfix is not installed here: qmail-rs alone, no ratios."),
    }
    if !bench.perf {
        println!("`perf stat -G` is not usable here: no syncs or context switches.");
    }
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let state_before = machine_state();
    println!(
        "{date}; {} rounds; run directory {}",
        s.rounds,
        bench.run_dir.display()
    );
    println!("machine: {state_before}");

    // samples[load][system][round]
    let mut samples = vec![vec![Vec::new(); systems.len()]; s.loads.len()];
    for round in 0..s.rounds {
        for (li, &load) in s.loads.iter().enumerate() {
            // Alternate which system goes first, round by round.
            let mut order: Vec<usize> = (0..systems.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for si in order {
                let system = systems[si];
                let t = Instant::now();
                let r = bench.measure(system, load, round);
                match &r {
                    Ok(sample) => println!(
                        "round {}/{}  {:<34} {:<9} {:>9.1} /s  {:>7.2} s  ({:.1} s in all)",
                        round + 1,
                        s.rounds,
                        s.label(load),
                        system.name(),
                        sample.units as f64 / sample.totals.wall.as_secs_f64(),
                        sample.totals.wall.as_secs_f64(),
                        t.elapsed().as_secs_f64()
                    ),
                    Err(e) => println!(
                        "round {}/{}  {:<34} {:<9} FAILED: {e:#}",
                        round + 1,
                        s.rounds,
                        s.label(load),
                        system.name()
                    ),
                }
                samples[li][si].push(r.ok());
            }
        }
    }

    println!();
    println!("### {date}");
    println!();
    println!(
        "{} rounds, alternating; machine before: {state_before}; after: load average {}.{}",
        s.rounds,
        load_average(),
        match &bench.postfix {
            Some(t) => format!(" Postfix {}.", t.version),
            None => " No Postfix.".into(),
        }
    );
    println!();
    println!("{}", report::FLOW_HEADER);
    let mut idle = Vec::new();
    for (li, &load) in s.loads.iter().enumerate() {
        let medians: Vec<(&str, Medians)> = systems
            .iter()
            .enumerate()
            .map(|(si, sys)| (sys.name(), Medians::of(&samples[li][si])))
            .collect();
        if load == Load::IdleConnections {
            idle = report::idle_rows(&s.label(load), &medians);
        } else {
            for row in report::flow_rows(&s.label(load), &medians) {
                println!("{row}");
            }
        }
    }
    if !idle.is_empty() {
        println!();
        println!("{}", report::IDLE_HEADER);
        for row in idle {
            println!("{row}");
        }
    }
    println!();
    println!("{}", report::PER_ROUND_HEADER);
    for (li, &load) in s.loads.iter().enumerate() {
        if load == Load::IdleConnections {
            continue;
        }
        for (si, sys) in systems.iter().enumerate() {
            println!(
                "{}",
                report::per_round_row(&s.label(load), sys.name(), &samples[li][si])
            );
        }
    }
    let failed = samples
        .iter()
        .flatten()
        .flatten()
        .filter(|s| s.is_none())
        .count();
    cleanup::remove_all();
    ensure!(failed == 0, "{failed} measurements failed (see above)");
    Ok(())
}

fn main() {
    cleanup::on_signal_remove_all();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        cleanup::remove_all();
    }));
    if let Err(e) = run() {
        cleanup::remove_all();
        eprintln!("compare: {e:#}");
        std::process::exit(1);
    }
}
