//! What must not outlive the benchmark: the MTAs' cgroups (with their
//! processes), the Postfix instances, the `perf` counters and the run's
//! temporary directory. Each is registered here as it is made, under one
//! lock, so Ctrl-C, SIGTERM or a panic removes it as surely as a normal
//! end does: the signal path takes the lock and keeps it until the process
//! exits, so nothing new can be made meanwhile.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Things to remove, in the order they were registered.
static REGISTERED: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());

#[derive(Clone, PartialEq)]
enum Leftover {
    /// A cgroup whose processes are killed before it is removed.
    Cgroup(PathBuf),
    /// A private Postfix instance: the `postfix` program and the instance's
    /// configuration directory. Aborted (its processes are in a cgroup
    /// too; this is for its own files).
    Postfix(PathBuf, PathBuf),
    /// A process of ours that runs until it is told to stop (`perf`).
    Process(u32),
    /// A directory tree.
    Dir(PathBuf),
}

fn registry() -> MutexGuard<'static, Vec<Leftover>> {
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner())
}

fn forget(l: &Leftover) {
    registry().retain(|x| x != l);
}

/// Makes the cgroup `dir` and registers it, under the lock.
pub fn create_cgroup(dir: &Path) -> std::io::Result<()> {
    let mut r = registry();
    std::fs::create_dir(dir)?;
    r.push(Leftover::Cgroup(dir.to_path_buf()));
    Ok(())
}

pub fn register_postfix(postfix: &Path, config_dir: &Path) {
    registry().push(Leftover::Postfix(
        postfix.to_path_buf(),
        config_dir.to_path_buf(),
    ));
}

/// Registers a process started by `spawn`, under the lock.
pub fn spawn_registered(
    spawn: impl FnOnce() -> std::io::Result<std::process::Child>,
) -> std::io::Result<std::process::Child> {
    let mut r = registry();
    let child = spawn()?;
    r.push(Leftover::Process(child.id()));
    Ok(child)
}

pub fn forget_process(pid: u32) {
    forget(&Leftover::Process(pid));
}

pub fn register_dir(dir: &Path) {
    registry().push(Leftover::Dir(dir.to_path_buf()));
}

pub fn remove_cgroup(dir: &Path) {
    kill_and_remove_cgroup(dir);
    forget(&Leftover::Cgroup(dir.to_path_buf()));
}

pub fn abort_postfix(postfix: &Path, config_dir: &Path) {
    postfix_abort(postfix, config_dir);
    forget(&Leftover::Postfix(
        postfix.to_path_buf(),
        config_dir.to_path_buf(),
    ));
}

pub fn remove_dir(dir: &Path) {
    remove_tree(dir);
    forget(&Leftover::Dir(dir.to_path_buf()));
}

/// Kills every process in the cgroup `dir` (waiting up to 10 s for them to
/// go) and removes it; once it is gone nothing more can start in it.
fn kill_and_remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                eprintln!("warning: cannot remove cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `postfix abort` on a private instance (stops it at once).
fn postfix_abort(postfix: &Path, config_dir: &Path) {
    if config_dir.join("main.cf").exists() {
        let _ = std::process::Command::new(postfix)
            .arg("-c")
            .arg(config_dir)
            .arg("abort")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Removes a tree, trying again a few times if something was still being
/// written into it.
fn remove_tree(dir: &Path) {
    for attempt in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == 4 => eprintln!("warning: cannot remove {}: {e}", dir.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn remove(all: &[Leftover]) {
    for l in all.iter().rev() {
        match l {
            Leftover::Cgroup(d) => kill_and_remove_cgroup(d),
            Leftover::Postfix(p, d) => postfix_abort(p, d),
            Leftover::Process(pid) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Leftover::Dir(d) => remove_tree(d),
        }
    }
}

/// Removes everything still registered, newest first (processes before the
/// directories they live in).
pub fn remove_all() {
    let all = std::mem::take(&mut *registry());
    remove(&all);
}

/// On SIGINT or SIGTERM: remove everything, then exit 130, holding the
/// lock throughout.
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
        let held = registry();
        remove(&held);
        std::process::exit(130);
    });
}
