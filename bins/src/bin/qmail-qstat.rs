//! qmail-qstat: how many messages are in the queue.

use std::process::ExitCode;

use qmail_core::queue::Queue;
use qmail_io_real::RealEnv;

fn main() -> ExitCode {
    let home = qmail_bins::home();
    let queue = Queue::new(RealEnv::new(), home.queue());
    let result = qmail_bins::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(queue.qstat()).map_err(|e| e.to_string()));
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qmail-qstat: fatal: {e}");
            ExitCode::from(111)
        }
    }
}
