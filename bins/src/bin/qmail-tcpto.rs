//! qmail-tcpto: the hosts remote delivery treats as down (their connections
//! timed out), from `queue/lock/tcpto`.

use std::time::{SystemTime, UNIX_EPOCH};

use qmail_core::remote::tcpto;

/// What `--help` prints.
const HELP: &str = "usage: qmail-tcpto\n\nLists the hosts remote delivery skips because their connections timed out\n($QMAIL_HOME/queue/lock/tcpto).\n";

fn main() {
    qmail_bins::answer_help(HELP);
    let queue = qmail_bins::home().queue();
    let text = std::fs::read(tcpto::path(&queue)).unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    print!("{}", tcpto::report(&tcpto::parse(&text), now));
}
