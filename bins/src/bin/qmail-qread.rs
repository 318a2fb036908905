//! qmail-qread: lists the messages in the queue, with their recipients.

fn main() -> std::process::ExitCode {
    qmail_bins::print_queue_report("qmail-qread", |q| async move { q.qread().await })
}
