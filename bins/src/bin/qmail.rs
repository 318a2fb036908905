//! `qmail`: the umbrella command (`qmail init`, `qmail run`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use qmail_core::env::Env;
use qmail_core::home::{self, InitAction};
use qmail_io_real::RealEnv;

const USAGE: &str = "usage: qmail init [--home DIR]";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmail: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        bail!("{USAGE}")
    };
    let mut home_flag = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--home" => {
                home_flag = Some(PathBuf::from(
                    args.next().context("--home needs a directory")?,
                ))
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    match cmd.as_str() {
        "init" => {
            let home = qmail_bins::home_from(home_flag, home::DEFAULT_HOME);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let env = RealEnv::new();
            let hostname = env.identity().hostname.clone();
            let actions = rt
                .block_on(home::init(&env, &home, &hostname))
                .with_context(|| format!("initialising {}", home.root.display()))?;
            for a in actions {
                match a {
                    InitAction::Created(p) => println!("created {}", p.display()),
                    InitAction::Kept(p) => println!("kept {}", p.display()),
                }
            }
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}
