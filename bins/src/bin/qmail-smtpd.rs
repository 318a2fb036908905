//! qmail-smtpd: one SMTP session on standard input and output, for
//! tcpserver, inetd or systemd socket activation. The client is described by
//! tcpserver's variables (`TCPREMOTEIP`, `TCPREMOTEHOST`, `TCPREMOTEINFO`,
//! `TCPLOCALHOST`); `RELAYCLIENT`, `DATABYTES` and `QMAILQUEUE` work as in
//! qmail.

use std::process::ExitCode;

use anyhow::{Context, Result};
use qmail_core::queue::Queue;
use qmail_core::smtpd::{SmtpdControl, serve_connection};
use qmail_io_real::RealEnv;

/// What `--help` prints.
const HELP: &str = "usage: qmail-smtpd\n\
\n\
Serves one SMTP session on standard input and output, for tcpserver, inetd\n\
or systemd socket activation, queueing into $QMAIL_HOME (default\n\
/var/qmail). Reads control/me, smtpgreeting, rcpthosts, morercpthosts,\n\
databytes, timeoutsmtpd and timeoutsmtpddata there. The client is described\n\
by $TCPREMOTEIP, $TCPREMOTEHOST, $TCPREMOTEINFO and $TCPLOCALHOST;\n\
$RELAYCLIENT, $DATABYTES and $QMAILQUEUE work as in qmail.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The client gets a temporary failure; the log gets the reason.
            println!("421 unable to read controls (#4.3.0)\r");
            eprintln!("qmail-smtpd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn run() -> Result<()> {
    // Refusals and timeouts go to standard error: tcpserver's log.
    qmail_bins::init_logging();
    let home = qmail_bins::home();
    let rt = qmail_bins::runtime()?;
    let env = RealEnv::new();
    let result = rt.block_on(async {
        let mut control = SmtpdControl::load(&env, &home)
            .await
            .context("reading control files")?;
        let s = &mut control.session;
        if let Some(ip) = var("TCPREMOTEIP") {
            s.remote.ip = ip;
        }
        s.remote.host = var("TCPREMOTEHOST");
        s.remote.info = var("TCPREMOTEINFO");
        if let Some(local) = var("TCPLOCALHOST").or_else(|| var("TCPLOCALIP")) {
            s.remote.local = local;
        }
        // RELAYCLIENT may be set and empty: that still means "relay".
        s.relay_client = std::env::var("RELAYCLIENT").ok();
        if let Some(d) = var("DATABYTES") {
            s.databytes = d.parse().context("DATABYTES is not a number")?;
        }
        let queue = Queue::new(env.clone(), home.queue());
        let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        let program = qmail_bins::queue_program();
        let timeouts = control.timeouts();
        serve_connection(
            &queue,
            program.as_deref(),
            stream,
            control.session,
            timeouts,
        )
        .await
        .context("SMTP session")?;
        Ok(())
    });
    // tokio reads stdin on a blocking thread that may still wait for input
    // the client will never send: do not wait for it.
    rt.shutdown_background();
    result
}
