//! except: `except program [arg...]` runs the program and reverses its exit
//! code: 0 becomes 100, 111 stays 111 (as does a crash), anything else
//! becomes 0.

use std::process::ExitCode;

use qmail_bins::helper::{die, rewindable_stdin, run_child};
use qmail_core::local::helpers::except_code;

const FATAL: &str = "except: fatal: ";

/// What `--help` prints.
const HELP: &str = "usage: except PROGRAM [ARG...]\n\
\n\
Runs PROGRAM on standard input and reverses its exit code: 0 becomes 100,\n\
111 (or a crash) stays 111, anything else becomes 0.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return die(100, "except: usage: except program [ arg ... ]");
    }
    let stdin = match rewindable_stdin() {
        Ok(f) => f,
        Err(e) => return die(111, &format!("{FATAL}unable to read message: {e}")),
    };
    match run_child(&args, &stdin) {
        Ok(qmail_core::env::ExitCode::Signaled) => die(111, &format!("{FATAL}child crashed")),
        Ok(status) => match except_code(status) {
            111 => die(111, &format!("{FATAL}temporary child error")),
            code => ExitCode::from(code),
        },
        Err(e) => die(111, &format!("{FATAL}unable to run {}: {e}", args[0])),
    }
}
