//! qmail-remote: `qmail-remote host sender recipient...` with the message on
//! standard input. Delivers it to `host`'s mail exchangers (or the route in
//! `control/smtproutes`) in one SMTP transaction and reports on standard
//! output as qmail-remote does: per recipient `r`, or `h`/`s` and the
//! server's text, then `K` (delivered), `Z` (try later) or `D` (give up) and
//! the text, each ended by a NUL; the exit code is 0 whatever happened. The
//! code is the scheduler's remote channel's, run once.

use std::io::Write;
use std::path::{Path, PathBuf};

use qmail_core::deliver::MessageRef;
use qmail_core::remote::{Final, Report};
use qmail_io_real::RealEnv;

fn report(out: &Report) -> ! {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out.qmail_remote_output());
    let _ = stdout.flush();
    std::process::exit(0)
}

fn final_only(f: Final) -> ! {
    report(&Report::all(0, f))
}

/// Where the message on standard input can be read from the start as a
/// file: standard input itself when it is one (qmail-rspawn gives the queue
/// file), else a copy of it in a temporary file (removed on the way out).
fn message_file() -> std::io::Result<(PathBuf, u64, Option<PathBuf>)> {
    let stdin = Path::new("/proc/self/fd/0");
    let meta = std::fs::metadata(stdin)?;
    if meta.is_file() {
        return Ok((stdin.to_path_buf(), meta.len(), None));
    }
    let tmp = std::env::temp_dir().join(format!("qmail-remote.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    let len = std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
    f.sync_all()?;
    Ok((tmp.clone(), len, Some(tmp)))
}

/// What `--help` prints.
const HELP: &str = "usage: qmail-remote host sender recipient...\n\nDelivers the message on standard input to host's mail exchangers (or its\ncontrol/smtproutes route) in one SMTP transaction and reports as qmail-remote\ndoes: per recipient r, or h/s and the server's text, then K, Z or D and the\ntext, each ended by a NUL. Controls from $QMAIL_HOME (default /var/qmail).\n";

fn main() {
    qmail_bins::answer_help(HELP);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        final_only(Final::Permanent(
            "I (qmail-remote) was invoked improperly. (#5.3.5)\n".into(),
        ));
    }
    let (host, sender, recipients) = (&args[0], &args[1], &args[2..]);
    let (path, len, tmp) = match message_file() {
        Ok(m) => m,
        Err(_) => final_only(Final::Temporary(
            "Unable to read message. (#4.3.0)\n".into(),
        )),
    };
    let rt = match qmail_bins::runtime() {
        Ok(rt) => rt,
        Err(_) => final_only(Final::Temporary(
            "System resources temporarily unavailable. (#4.3.0)\n".into(),
        )),
    };
    let home = qmail_bins::home();
    let env = RealEnv::new();
    let out = rt.block_on(async {
        let agent = match qmail_bins::remote::remote_agent(&env, &home, &[]).await {
            Ok(a) => a,
            Err(e) => {
                return Report::all(
                    recipients.len(),
                    Final::Temporary(format!("Unable to read controls: {e:#}. (#4.3.0)\n")),
                );
            }
        };
        let message = MessageRef {
            path,
            offset: 0,
            len,
        };
        agent.report(host, sender, recipients, &message).await
    });
    if let Some(t) = tmp {
        let _ = std::fs::remove_file(t);
    }
    report(&out)
}
