//! bouncesaying: `|bouncesaying error [program [arg...]]` bounces the
//! message with `error` (exit 100), always without a program, else only if
//! the program exits 0; the program's 111 (or a crash) exits 111 and anything
//! else exits 0, so the rest of the `.qmail` file runs.

use std::process::ExitCode;

use qmail_bins::helper::{die, run_condition};

const FATAL: &str = "bouncesaying: fatal: ";

/// What `--help` prints.
const HELP: &str = "usage: bouncesaying ERROR [PROGRAM [ARG...]]\n\
\n\
In a .qmail file: bounces the message with ERROR (exit 100); with PROGRAM,\n\
only if PROGRAM exits 0. PROGRAM's 111 (or a crash) exits 111; anything\n\
else exits 0, so the rest of the .qmail file runs.\n\
";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(error) = args.first() else {
        return die(
            100,
            "bouncesaying: usage: bouncesaying error [ program [ arg ... ] ]",
        );
    };
    if args.len() > 1
        && let Err(exit) = run_condition(FATAL, &args[1..])
    {
        return exit;
    }
    die(100, error)
}
