//! forward: `|forward address...` in a `.qmail` file forwards the message
//! to the addresses, with `$NEWSENDER` as envelope sender and `$DTLINE` on
//! top, through `$QMAILQUEUE` or the queue. Exit 0 (saying the qp), 100 for
//! a permanent failure or a missing variable, 111 for a temporary one.

use std::os::fd::AsFd;
use std::process::ExitCode;

use qmail_bins::helper::{die, forward_file};
use qmail_core::local::forward::ForwardError;

const FATAL: &str = "forward: fatal: ";

/// What `--help` prints.
const HELP: &str = "usage: forward ADDRESS...\n\
\n\
In a .qmail file (|forward address...): forwards the message on standard\n\
input to the addresses, with $NEWSENDER as the envelope sender and $DTLINE\n\
on top, through $QMAILQUEUE or the queue of $QMAIL_HOME (default\n\
/var/qmail). Exit 0 when queued, 100 for a permanent failure, 111 for a\n\
temporary one.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let recipients: Vec<String> = std::env::args().skip(1).collect();
    let Ok(sender) = std::env::var("NEWSENDER") else {
        return die(100, &format!("{FATAL}NEWSENDER not set"));
    };
    let Ok(dtline) = std::env::var("DTLINE") else {
        return die(100, &format!("{FATAL}DTLINE not set"));
    };
    let stdin = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => return die(111, &format!("{FATAL}unable to read message: {e}")),
    };
    match forward_file(stdin, &dtline, &sender, &recipients) {
        Ok(qp) => die(0, &format!("forward: qp {qp}")),
        Err(ForwardError::Permanent(t)) => die(100, &format!("{FATAL}{t}")),
        Err(ForwardError::Temporary(t)) => die(111, &format!("{FATAL}{t}")),
    }
}
