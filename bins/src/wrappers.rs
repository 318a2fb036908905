//! The installation's `bin/sendmail`, `bin/qmail-inject` and `bin/mailq`:
//! small shell scripts that `qmail init` and `qmail run` write, running the
//! programs built beside the `qmail` executable on this installation
//! (`QMAIL_HOME` set to it). A user agent or a cron job of the embedded mode
//! is pointed at `HOME/bin/sendmail`; a system install puts the programs
//! themselves in `/var/qmail/bin` instead (`docs/inject.md`).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use qmail_core::home::Home;

/// Writes the wrappers whose program exists beside this executable;
/// rewrites one only if its content changed (the build moved, say).
/// Returns the wrappers written.
pub fn install(home: &Home) -> io::Result<Vec<PathBuf>> {
    let Some(dir) = std::env::current_exe()?.parent().map(Path::to_path_buf) else {
        return Ok(Vec::new());
    };
    let mut written = Vec::new();
    for (name, program, args) in [
        ("sendmail", "sendmail", ""),
        ("qmail-inject", "qmail-inject", ""),
        ("mailq", "sendmail", " -bp"),
    ] {
        let target = dir.join(program);
        if !target.is_file() {
            continue;
        }
        let script = format!(
            "#!/bin/sh\n# Written by qmail init: {name} of qmail-rs on this installation.\nQMAIL_HOME={}\nexport QMAIL_HOME\nexec {}{args} \"$@\"\n",
            sh_quote(&home.root),
            sh_quote(&target),
        );
        let path = home.bin().join(name);
        if std::fs::read(&path).ok().as_deref() == Some(script.as_bytes()) {
            continue;
        }
        // Written aside and renamed, so a running user agent never finds a
        // half-written script.
        let tmp = home.bin().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &script)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// `'path'`, with any `'` in it written as `'\''`.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote(Path::new("/a b/c")), "'/a b/c'");
        assert_eq!(sh_quote(Path::new("/it's")), r"'/it'\''s'");
    }
}
