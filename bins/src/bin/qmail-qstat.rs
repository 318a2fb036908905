//! qmail-qstat: how many messages are in the queue.

fn main() -> std::process::ExitCode {
    qmail_bins::print_queue_report("qmail-qstat", |q| async move { q.qstat().await })
}
