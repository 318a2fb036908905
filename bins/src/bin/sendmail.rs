//! sendmail: the interface user agents and cron expect, over qmail-inject
//! (`docs/inject.md`).
//!
//! * `sendmail [-t] [-f sender] [-F name] [recip ...]`: sends the message on
//!   standard input to the recipients named, plus (`-t`) those of its To, Cc
//!   and Bcc fields. Lines holding a single dot are ordinary lines, so `-i`
//!   and `-oi` change nothing.
//! * `sendmail -bp` (or the name `mailq`): lists the queue as qmail-qread.
//! * `sendmail -bs`: one SMTP session on standard input and output, run by
//!   qmail-smtpd as a local client allowed to relay.
//! * Legacy flags are accepted and ignored: `-i -v -x -m -oX -eX -pX -BX -E
//!   -J -bm`. Anything else is refused (exit 100) with the usage.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use qmail_bins::inject::{Invocation, getopt, process_vars, run};
use qmail_core::inject::{Options, RecipientSource};

const USAGE: &str = "usage: sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ arg ... ]";

fn refuse(why: &str) -> ExitCode {
    eprintln!("sendmail: fatal: {why}\nsendmail: {USAGE}");
    ExitCode::from(100)
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let name = argv
        .next()
        .map(|a| a.rsplit('/').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let args: Vec<String> = argv.collect();
    if args.first().is_some_and(|a| a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if name == "newaliases" {
        eprintln!(
            "sendmail: fatal: qmail has no aliases database to rebuild: edit the alias/.qmail-* files instead"
        );
        return ExitCode::from(100);
    }
    let (opts, operands) = match getopt(&args, "vimte:f:p:o:B:F:E?J?xb:") {
        Ok(p) => p,
        Err(c) => {
            return refuse(&format!(
                "option -{c} is not supported (or lacks its value)"
            ));
        }
    };
    let mut vars = process_vars();
    let mut options = Options {
        source: RecipientSource::Args,
        ..Options::default()
    };
    let mut fullname = None;
    for (c, value) in opts {
        match (c, value.as_deref()) {
            ('t', _) => options.source = RecipientSource::Both,
            ('f', Some(s)) => options.sender = Some(s.to_string()),
            ('F', Some(n)) => fullname = Some(n.to_string()),
            ('b', Some(m)) if m.starts_with('p') => return mailq(),
            ('b', Some(m)) if m.starts_with('s') => return smtp_session(),
            ('b', Some(m)) if m.starts_with('m') => {}
            ('b', Some(m)) => return refuse(&format!("mode -b{m} is not supported")),
            // Legacy: -v -i -x -m, -oX -eX -pX -BX, -E -J (qmail's list).
            _ => {}
        }
    }
    if name == "mailq" {
        return mailq();
    }
    if let Some(sender) = &options.sender {
        // As qmail's sendmail: the From line names the sender, not the
        // invoking user.
        for v in ["QMAILNAME", "MAILNAME", "NAME", "QMAILHOST", "MAILHOST"] {
            vars.unset(v);
        }
        match sender.rsplit_once('@') {
            Some((user, host)) => {
                vars.set("QMAILUSER", user);
                vars.set("QMAILHOST", host);
            }
            None => vars.set("QMAILUSER", sender),
        }
    }
    // Unlike qmail's sendmail, -F still counts when -f is given too.
    if let Some(n) = fullname {
        vars.set("MAILNAME", &n);
    }
    options.args = operands;
    run(
        "sendmail",
        Invocation {
            options,
            vars,
            print: false,
        },
    )
}

fn mailq() -> ExitCode {
    qmail_bins::print_queue_report("sendmail", &qmail_bins::home(), |q| async move {
        q.qread().await
    })
}

/// Runs qmail-smtpd on standard input and output, as a local client that
/// may relay (qmail's settings for `sendmail -bs`, unless `$PROTO` says a
/// tcpserver already set the connection's variables).
fn smtp_session() -> ExitCode {
    let Some(smtpd) = find_program("qmail-smtpd") else {
        eprintln!("sendmail: fatal: unable to find qmail-smtpd");
        return ExitCode::from(111);
    };
    let mut cmd = Command::new(&smtpd);
    cmd.env("QMAIL_HOME", &qmail_bins::home().root);
    if std::env::var_os("PROTO").is_none() {
        cmd.envs([
            ("RELAYCLIENT", ""),
            ("DATABYTES", "0"),
            ("PROTO", "TCP"),
            ("TCPLOCALIP", "127.0.0.1"),
            ("TCPLOCALHOST", "localhost"),
            ("TCPREMOTEIP", "127.0.0.1"),
            ("TCPREMOTEHOST", "localhost"),
            ("TCPREMOTEINFO", "sendmail-bs"),
        ]);
    }
    // In its place, as qmail's sendmail does: qmail-smtpd's commits wake
    // the scheduler themselves, so nothing is left to do after the session.
    let err = cmd.exec();
    eprintln!("sendmail: fatal: unable to run {}: {err}", smtpd.display());
    ExitCode::from(111)
}

/// A qmail-rs program: beside this executable, else in the installation's
/// `bin/`.
fn find_program(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)));
    beside
        .into_iter()
        .chain(std::iter::once(qmail_bins::home().bin().join(name)))
        .find(|p| p.is_file())
}
