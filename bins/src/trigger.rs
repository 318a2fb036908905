//! qmail's trigger: a named pipe, `queue/lock/trigger`, that every commit
//! writes one byte to (the queue does it, through `Fs::pull_trigger`,
//! whoever commits), so the scheduler takes the message in at once instead
//! of at its next scan. This is the listening end.

use std::io::Read;
use std::path::{Path, PathBuf};

use qmail_core::queue::Queue;
use qmail_io_real::RealEnv;

/// The trigger's path under a queue directory.
pub fn trigger_path(queue_dir: &Path) -> PathBuf {
    queue_dir.join("lock").join("trigger")
}

/// Creates the trigger (if needed) and wakes `queue`'s scheduler whenever
/// someone pulls it. Runs on a thread of its own for the life of the
/// process.
pub fn listen(queue: Queue<RealEnv>, queue_dir: &Path) -> std::io::Result<()> {
    let path = trigger_path(queue_dir);
    std::fs::create_dir_all(path.parent().unwrap_or(queue_dir))?;
    match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    // Anyone who may inject may pull it (the umask must not narrow that).
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o622))?;
    // Opened for writing too, so the pipe never reports end-of-file when the
    // last writer goes away.
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    std::thread::Builder::new()
        .name("trigger".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok(n) = fifo.read(&mut buf) {
                if n > 0 {
                    queue.notify_committed();
                }
            }
        })?;
    Ok(())
}
