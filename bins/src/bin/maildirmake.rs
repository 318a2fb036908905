//! maildirmake: `maildirmake dir` makes a new maildir (`dir` with `tmp/`,
//! `new/` and `cur/`, mode 0700). Exit 100 for bad usage, 111 if a directory
//! cannot be made (including when `dir` already exists).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::ExitCode;

use qmail_bins::helper::die;

/// What `--help` prints.
const HELP: &str = "usage: maildirmake DIR\n\
\n\
Makes the maildir DIR (with tmp/, new/ and cur/, mode 0700). DIR must not\n\
exist yet. Exit 0 when made, 100 for bad usage, 111 if a directory cannot\n\
be made.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        return die(100, "maildirmake: usage: maildirmake name");
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    let dir = Path::new(dir);
    for p in [
        dir.to_path_buf(),
        dir.join("tmp"),
        dir.join("new"),
        dir.join("cur"),
    ] {
        if let Err(e) = builder.create(&p) {
            return die(
                111,
                &format!("maildirmake: fatal: unable to mkdir {}: {e}", p.display()),
            );
        }
    }
    ExitCode::SUCCESS
}
