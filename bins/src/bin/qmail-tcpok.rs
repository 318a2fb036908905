//! qmail-tcpok: forget every downed host (`queue/lock/tcpto`), so remote
//! delivery tries them all again at once.

use std::collections::BTreeMap;
use std::process::ExitCode;

use qmail_core::remote::tcpto;
use qmail_io_real::RealEnv;

/// What `--help` prints.
const HELP: &str = "usage: qmail-tcpok\n\nForgets every host remote delivery skips as down ($QMAIL_HOME/queue/lock/tcpto).\n";

fn main() -> ExitCode {
    qmail_bins::answer_help(HELP);
    let queue = qmail_bins::home().queue();
    let env = RealEnv::new();
    let r = qmail_bins::runtime().and_then(|rt| {
        rt.block_on(async {
            use qmail_core::env::Env;
            tcpto::write(env.fs(), &queue, &BTreeMap::new()).await
        })
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "qmail-tcpok: fatal: unable to write {}: {e}",
                tcpto::path(&queue).display()
            );
            ExitCode::from(111)
        }
    }
}
