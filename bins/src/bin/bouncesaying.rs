//! bouncesaying: `|bouncesaying error [program [arg...]]` bounces the
//! message with `error` (exit 100), always without a program, else only if
//! the program exits 0; the program's 111 (or a crash) exits 111 and anything
//! else exits 0, so the rest of the `.qmail` file runs.

use std::process::ExitCode;

use qmail_bins::helper::{die, rewindable_stdin, run_child};
use qmail_core::local::helpers::{Condition, condition};

const FATAL: &str = "bouncesaying: fatal: ";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(error) = args.first() else {
        return die(
            100,
            "bouncesaying: usage: bouncesaying error [ program [ arg ... ] ]",
        );
    };
    if args.len() > 1 {
        let message = match rewindable_stdin() {
            Ok(f) => f,
            Err(e) => return die(111, &format!("{FATAL}unable to read message: {e}")),
        };
        let status = match run_child(&args[1..], &message) {
            Ok(s) => s,
            Err(e) => return die(111, &format!("{FATAL}unable to run {}: {e}", args[1])),
        };
        match condition(status) {
            Condition::Act => {}
            Condition::Retry if status == qmail_core::env::ExitCode::Signaled => {
                return die(111, &format!("{FATAL}child crashed"));
            }
            Condition::Retry => return die(111, &format!("{FATAL}temporary child error")),
            Condition::Continue => return ExitCode::SUCCESS,
        }
    }
    die(100, error)
}
