//! qmail-qstat: how many messages are in the queue.

/// What `--help` prints.
const HELP: &str = "usage: qmail-qstat\n\
\n\
Says how many messages are in the queue of $QMAIL_HOME (default /var/qmail)\n\
and how many are not yet preprocessed. Fails (exit 111) if there is no\n\
queue there. `qmail qstat` does the same for qmail run's home.\n\
";

fn main() -> std::process::ExitCode {
    qmail_bins::answer_help(HELP);
    qmail_bins::print_queue_report("qmail-qstat", &qmail_bins::home(), |q| async move {
        q.qstat().await
    })
}
