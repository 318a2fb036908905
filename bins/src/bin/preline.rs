//! preline: `|preline [-frdFRD] command [arg...]` feeds the message to the
//! command with `$UFLINE`, `$RPLINE` and `$DTLINE` on top (`-f`, `-r`, `-d`
//! leave one out), for programs that want an mbox-style message. Exits with
//! the command's exit code; 111 if it crashed.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use qmail_bins::helper::die;
use qmail_core::local::helpers::PrelineFlags;

const FATAL: &str = "preline: fatal: ";
const USAGE: &str = "preline: usage: preline cmd [ arg ... ]";

/// What `--help` prints.
const HELP: &str = "usage: preline [-frdFRD] PROGRAM [ARG...]\n\
\n\
In a .qmail file: feeds the message to PROGRAM with $UFLINE, $RPLINE and\n\
$DTLINE on top (-f, -r, -d leave one out; -F, -R, -D put it back), for\n\
programs that want an mbox-style message. Exits with PROGRAM's exit code,\n\
111 if it crashed.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let (Ok(uf), Ok(rp), Ok(dt)) = (
        std::env::var("UFLINE"),
        std::env::var("RPLINE"),
        std::env::var("DTLINE"),
    ) else {
        return die(100, USAGE);
    };
    let mut flags = PrelineFlags::default();
    while let Some(a) = args.first() {
        if a == "--" {
            args.remove(0);
            break;
        }
        let Some(letters) = a.strip_prefix('-').filter(|l| !l.is_empty()) else {
            break;
        };
        if flags.apply(letters).is_err() {
            return die(100, USAGE);
        }
        args.remove(0);
    }
    let Some((prog, rest)) = args.split_first() else {
        return die(100, USAGE);
    };
    let mut child = match Command::new(prog).args(rest).stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) {
                100
            } else {
                111
            };
            return die(code, &format!("{FATAL}unable to run {prog}: {e}"));
        }
    };
    let copied = (|| {
        let mut to = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no pipe"))?;
        to.write_all(flags.prefix(&uf, &rp, &dt).as_bytes())?;
        std::io::copy(&mut std::io::stdin().lock(), &mut to)?;
        Ok::<(), std::io::Error>(())
    })();
    // A command that stops reading early is judged by its exit code.
    if let Err(e) = copied
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        let _ = child.kill();
        let _ = child.wait();
        return die(111, &format!("{FATAL}unable to copy input: {e}"));
    }
    match child.wait() {
        Ok(s) => match s.code() {
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(111)),
            None => die(111, &format!("{FATAL}child crashed")),
        },
        Err(e) => die(111, &format!("{FATAL}wait failed: {e}")),
    }
}
