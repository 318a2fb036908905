//! qmail-local: `qmail-local [-nN] user homedir local dash ext domain sender
//! defaultdelivery` delivers the message on standard input to
//! `local@domain` by `homedir/.qmail<dash><ext>` (dot-qmail(5)), as
//! qmail-lspawn runs it, as the current user. Prints qmail-local's report;
//! exits 0 on success, 100 on a permanent failure, 111 on a temporary one.
//! `-n` prints the delivery instructions instead (`maildir ...`, `mbox ...`,
//! `program ...`, `forward ...`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use qmail_core::deliver::{DeliveryJob, MessageRef, Outcome};
use qmail_core::env::Env;
use qmail_core::local::{LocalDelivery, Mode, Recipient};
use qmail_core::queue::{Channel, MsgId, Queue};
use qmail_io_real::RealEnv;

const USAGE: &str =
    "qmail-local: usage: qmail-local [ -nN ] user homedir local dash ext domain sender aliasempty";

/// What `--help` prints.
const HELP: &str = "usage: qmail-local [-nN] USER HOMEDIR LOCAL DASH EXT DOMAIN SENDER DEFAULTDELIVERY\n\
\n\
Delivers the message on standard input to LOCAL@DOMAIN as HOMEDIR/.qmail\n\
DASH EXT says (dot-qmail(5)), as the current user, and prints qmail-local's\n\
report. Exit 0 on success, 100 on a permanent failure, 111 on a temporary\n\
one. -n prints the delivery instructions instead of following them.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut doit = true;
    while let Some(a) = args.first().cloned() {
        match a.as_str() {
            "-n" => doit = false,
            "-N" => doit = true,
            "--" => {
                args.remove(0);
                break;
            }
            _ => break,
        }
        args.remove(0);
    }
    let [user, homedir, local, dash, ext, domain, sender, aliasempty] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(100);
    };
    if !homedir.starts_with('/') {
        eprintln!("{USAGE}");
        return ExitCode::from(100);
    }
    // The message must be readable more than once: keep a copy for the run.
    let spool = match spool_stdin() {
        Ok(s) => s,
        Err(e) => {
            return report(Outcome::Deferral(format!(
                "Unable to read message: {e}. (#4.3.0)\n"
            )));
        }
    };
    let len = std::fs::metadata(spool.path())
        .map(|m| m.len())
        .unwrap_or(0);
    let outcome = run(
        doit,
        user,
        homedir,
        local,
        dash,
        ext,
        domain,
        sender,
        aliasempty,
        spool.path().to_path_buf(),
        len,
    );
    drop(spool);
    report(outcome)
}

#[allow(clippy::too_many_arguments)]
fn run(
    doit: bool,
    user: &str,
    homedir: &str,
    local: &str,
    dash: &str,
    ext: &str,
    domain: &str,
    sender: &str,
    aliasempty: &str,
    message: PathBuf,
    len: u64,
) -> Outcome {
    let rt = match qmail_bins::runtime() {
        Ok(rt) => rt,
        Err(e) => return Outcome::Deferral(format!("Unable to start: {e}. (#4.3.0)\n")),
    };
    rt.block_on(async {
        let env = RealEnv::new();
        let home = qmail_bins::home();
        let mut config = match qmail_bins::local_config(&env, &home, Mode::System).await {
            Ok(c) => c,
            Err(e) => return Outcome::Deferral(format!("{e:#}. (#4.3.0)\n")),
        };
        config.default_delivery = aliasempty.to_string();
        let queue = Queue::new(env.clone(), home.queue());
        let wake = config.queue_program.is_none();
        let agent = LocalDelivery::new(queue, home.clone(), config);
        let who = Recipient {
            user: user.to_string(),
            uid: env.identity().uid,
            home: PathBuf::from(homedir),
            dash: dash.to_string(),
            ext: ext.to_string(),
            run_as: None,
            alias: user == "alias",
            fallback: None,
        };
        let job = DeliveryJob::single(
            MsgId(0),
            Channel::Local,
            sender,
            format!("{local}@{domain}"),
            0,
            MessageRef {
                path: message,
                offset: 0,
                len,
            },
        );
        if !doit {
            return agent.describe(&who, &job).await;
        }
        let outcome = agent.deliver_to(&who, &job).await;
        if wake && matches!(outcome, Outcome::Success(_)) {
            // A forward may have been queued: wake a running scheduler.
            qmail_bins::trigger::pull(&home.queue());
        }
        outcome
    })
}

fn report(outcome: Outcome) -> ExitCode {
    let mut out = std::io::stdout();
    let _ = out.write_all(outcome.text().as_bytes());
    let _ = out.flush();
    ExitCode::from(match outcome {
        Outcome::Success(_) => 0,
        Outcome::Failure(_) => 100,
        Outcome::Deferral(_) => 111,
    })
}

/// A copy of standard input in a private temporary file, removed on drop.
struct Spool(PathBuf);

impl Spool {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spool_stdin() -> std::io::Result<Spool> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    for attempt in 0..100u32 {
        let path = dir.join(format!("qmail-local.{}.{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let spool = Spool(path);
                std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
                return Ok(spool);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free spool file name"))
}
