//! What must not outlive the benchmark: the MTAs' process groups and the
//! run's temporary directory. Each is registered here when made, so Ctrl-C,
//! SIGTERM or a panic removes it as surely as a normal end does.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Things to remove, in the order they were registered.
static REGISTERED: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());

#[derive(Clone, PartialEq)]
enum Leftover {
    /// A cgroup whose processes are killed before it is removed.
    Cgroup(PathBuf),
    /// A private Postfix instance (its configuration directory), stopped
    /// with `postfix abort` when no cgroup holds its processes.
    Postfix(PathBuf),
    /// A directory tree.
    Dir(PathBuf),
}

fn register(l: Leftover) {
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner()).push(l);
}

fn forget(l: &Leftover) {
    REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|x| x != l);
}

pub fn register_cgroup(dir: &Path) {
    register(Leftover::Cgroup(dir.to_path_buf()));
}

pub fn register_postfix(config_dir: &Path) {
    register(Leftover::Postfix(config_dir.to_path_buf()));
}

pub fn register_dir(dir: &Path) {
    register(Leftover::Dir(dir.to_path_buf()));
}

/// Kills every process in the cgroup `dir` (waiting up to 10 s for them to
/// go) and removes it. Safe to call twice.
pub fn remove_cgroup(dir: &Path) {
    if dir.exists() {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = std::fs::remove_dir(dir) {
            eprintln!("warning: cannot remove cgroup {}: {e}", dir.display());
        }
    }
    forget(&Leftover::Cgroup(dir.to_path_buf()));
}

/// `postfix abort` on a private instance (stops it at once, without
/// waiting for deliveries). Safe to call twice.
pub fn abort_postfix(config_dir: &Path) {
    if config_dir.join("main.cf").exists() {
        let _ = std::process::Command::new("postfix")
            .arg("-c")
            .arg(config_dir)
            .arg("abort")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    forget(&Leftover::Postfix(config_dir.to_path_buf()));
}

pub fn remove_dir(dir: &Path) {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        eprintln!("warning: cannot remove {}: {e}", dir.display());
    }
    forget(&Leftover::Dir(dir.to_path_buf()));
}

/// Removes everything still registered, newest first (processes before the
/// directories they live in).
pub fn remove_all() {
    let all: Vec<Leftover> =
        std::mem::take(&mut *REGISTERED.lock().unwrap_or_else(|e| e.into_inner()));
    for l in all.iter().rev() {
        match l {
            Leftover::Cgroup(d) => remove_cgroup(d),
            Leftover::Postfix(d) => abort_postfix(d),
            Leftover::Dir(d) => remove_dir(d),
        }
    }
}

/// On SIGINT or SIGTERM: remove everything, then exit 130.
pub fn on_signal_remove_all() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("\ninterrupted: stopping the MTAs and removing the run directory");
        remove_all();
        std::process::exit(130);
    });
}
