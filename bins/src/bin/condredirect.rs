//! condredirect: `|condredirect newaddress program [arg...]` feeds the
//! message to the program; if it exits 0 the message is forwarded to
//! newaddress (envelope sender `$SENDER`, `$DTLINE` on top) and condredirect
//! exits 99 so the rest of the `.qmail` file is skipped; 111 (or a crash)
//! exits 111; anything else exits 0.

use std::io::{Seek, SeekFrom};
use std::process::ExitCode;

use qmail_bins::helper::{die, forward_file, run_condition};
use qmail_core::local::forward::ForwardError;

const FATAL: &str = "condredirect: fatal: ";

/// What `--help` prints.
const HELP: &str = "usage: condredirect NEWADDRESS PROGRAM [ARG...]\n\
\n\
In a .qmail file: runs PROGRAM on the message; if it exits 0, forwards the\n\
message to NEWADDRESS (sender $SENDER, $DTLINE on top) and exits 99 so the\n\
rest of the .qmail file is skipped. PROGRAM's 111 (or a crash) exits 111;\n\
anything else exits 0.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return die(
            100,
            "condredirect: usage: condredirect newaddress program [ arg ... ]",
        );
    }
    let mut message = match run_condition(FATAL, &args[1..]) {
        Ok(m) => m,
        Err(exit) => return exit,
    };
    if let Err(e) = message.seek(SeekFrom::Start(0)) {
        return die(111, &format!("{FATAL}unable to rewind: {e}"));
    }
    let Ok(sender) = std::env::var("SENDER") else {
        return die(100, &format!("{FATAL}SENDER not set"));
    };
    let Ok(dtline) = std::env::var("DTLINE") else {
        return die(100, &format!("{FATAL}DTLINE not set"));
    };
    match forward_file(message, &dtline, &sender, &args[..1]) {
        Ok(qp) => die(99, &format!("condredirect: qp {qp}")),
        Err(ForwardError::Permanent(t)) => die(100, &format!("{FATAL}{t}")),
        Err(ForwardError::Temporary(t)) => die(111, &format!("{FATAL}{t}")),
    }
}
