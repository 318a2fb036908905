//! qmail-qread: lists the messages in the queue, with their recipients.

/// What `--help` prints.
const HELP: &str = "usage: qmail-qread\n\
\n\
Lists the messages in the queue of $QMAIL_HOME (default /var/qmail), with\n\
their recipients and what is done. Fails (exit 111) if there is no queue\n\
there. `qmail qread` does the same for qmail run's home.\n\
";

fn main() -> std::process::ExitCode {
    qmail_bins::answer_help(HELP);
    qmail_bins::print_queue_report("qmail-qread", &qmail_bins::home(), |q| async move {
        q.qread().await
    })
}
