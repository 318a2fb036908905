//! The `fcntl` record lock mail readers take on a mailbox. An open file
//! description lock (`F_OFD_SETLK`) rather than a classic POSIX one: it
//! conflicts with the classic locks other processes take (Python's
//! `fcntl.lockf`, movemail, mutt) in the same way, but it belongs to this
//! open file rather than to the whole process, so it is not dropped when
//! another delivery in this process closes its own handle on the mailbox.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

/// Tries to write-lock all of `file` without waiting: `Ok(false)` when
/// another holder has any part of it.
pub(crate) fn try_write_lock(file: &File) -> io::Result<bool> {
    let whole = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        // 0: to the end of the file, however far it grows.
        l_len: 0,
        // Must be 0 for open file description locks.
        l_pid: 0,
    };
    match fcntl(file, FcntlArg::F_OFD_SETLK(&whole)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
