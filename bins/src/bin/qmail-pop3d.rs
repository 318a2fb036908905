//! qmail-pop3d: serves one POP3 session on standard input and output over
//! a maildir, after qmail-popup and checkpassword have authenticated the
//! user and made this process theirs. Refuses to run as root, as qmail's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use qmail_core::pop3::{TIMEOUT, serve_pop3d};
use qmail_io_real::RealEnv;

/// What `--help` prints.
const HELP: &str = "usage: qmail-pop3d maildirname\n\
\n\
Serves one POP3 session (the transaction state: STAT LIST UIDL RETR TOP\n\
DELE LAST RSET NOOP QUIT) on standard input and output over the maildir\n\
maildirname (relative to the current directory: checkpassword starts it\n\
in the user's home). Run by checkpassword after qmail-popup, never as root.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmail-pop3d: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<()> {
    qmail_bins::init_logging();
    if nix::unistd::getuid().is_root() {
        bail!("invoked as uid 0, terminating");
    }
    let Some(maildir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        // The client is owed an answer; qmail's words.
        println!("-ERR this user has no $HOME/Maildir\r");
        bail!("no maildir named");
    };
    if !maildir.is_dir() {
        println!("-ERR this user has no $HOME/Maildir\r");
        bail!("{} is not a directory", maildir.display());
    }
    let rt = qmail_bins::runtime()?;
    let env = RealEnv::new();
    let result = rt.block_on(async {
        let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        serve_pop3d(&env, &maildir, stream, TIMEOUT)
            .await
            .with_context(|| format!("POP3 session on {}", maildir.display()))
    });
    // tokio reads stdin on a blocking thread that may still wait for input
    // the client will never send: do not wait for it.
    rt.shutdown_background();
    result.map(|_| ())
}
