//! `qmail`: the umbrella command.
//!
//! * `qmail init [--home DIR]` creates an installation (idempotent).
//! * `qmail run [--home DIR] [--smtp ADDR]` runs the embedded default: one
//!   process as the invoking user, its home from `--home`, else
//!   `$QMAIL_HOME`, else `./qmail-home` (initialised on first use), SMTP on
//!   127.0.0.1:2525 unless told otherwise, with the scheduler and local
//!   delivery in the same process, stopping cleanly on SIGTERM or Ctrl-C
//!   (SIGALRM retries the queue now, SIGHUP rereads the scheduler's
//!   control files).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use qmail_core::env::{Env, Net};
use qmail_core::home::{self, Home, InitAction};
use qmail_core::mta;
use qmail_core::queue::Queue;
use qmail_core::send::SendControl;
use qmail_core::smtpd::SmtpdControl;
use qmail_io_real::RealEnv;

const USAGE: &str = "usage: qmail init [--home DIR]\n       qmail run [--home DIR] [--smtp ADDR]";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmail: {e:#}");
            ExitCode::from(1)
        }
    }
}

struct Args {
    cmd: String,
    home: Option<PathBuf>,
    smtp: SocketAddr,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        bail!("{USAGE}")
    };
    let mut parsed = Args {
        cmd,
        home: None,
        smtp: SocketAddr::from(([127, 0, 0, 1], 2525)),
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--home" => {
                parsed.home = Some(PathBuf::from(
                    args.next().context("--home needs a directory")?,
                ))
            }
            "--smtp" => {
                let v = args
                    .next()
                    .context("--smtp needs an address such as 127.0.0.1:2525")?;
                parsed.smtp = v
                    .parse()
                    .with_context(|| format!("--smtp {v:?} is not an IP address and port"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(parsed)
}

fn real_main() -> Result<()> {
    let args = parse_args()?;
    match args.cmd.as_str() {
        "init" => {
            let home = qmail_bins::home_from(args.home, home::DEFAULT_HOME);
            let rt = qmail_bins::runtime()?;
            let env = RealEnv::new();
            for a in rt.block_on(init(&env, &home))? {
                match a {
                    InitAction::Created(p) => println!("created {}", p.display()),
                    InitAction::Kept(p) => println!("kept {}", p.display()),
                }
            }
            Ok(())
        }
        "run" => run(qmail_bins::home_from(args.home, "qmail-home"), args.smtp),
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

async fn init(env: &RealEnv, home: &Home) -> Result<Vec<InitAction>> {
    let hostname = env.identity().hostname.clone();
    home::init(env, home, &hostname)
        .await
        .with_context(|| format!("initialising {}", home.root.display()))
}

/// A server holding many connections needs many descriptors: raise the soft
/// limit to the hard one, as most daemons do.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn run(home: Home, addr: SocketAddr) -> Result<()> {
    raise_fd_limit();
    qmail_bins::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let env = RealEnv::new();
    rt.block_on(async {
        init(&env, &home).await?;
        let queue = Queue::new(env.clone(), home.queue());
        let mut smtpd = SmtpdControl::load(&env, &home)
            .await
            .context("reading control files")?;
        smtpd.queue_program = qmail_bins::queue_program();
        let send = SendControl::load(&env, &home)
            .await
            .context("reading control files")?;
        let listener = env
            .net()
            .listen(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let bound = qmail_core::env::NetListener::local_addr(&listener)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        qmail_bins::send::forward_signals(tx.clone())?;
        let parts = mta::Parts {
            local: local_agent(&queue, &home).await?,
            remote: qmail_bins::send::NoRemoteDelivery,
            queue,
            home: home.clone(),
            send,
            smtpd,
            listener,
        };
        let queue_dir = home.queue();
        let hooks = mta::Hooks {
            locked: |q: &Queue<RealEnv>| qmail_bins::trigger::listen(q.clone(), &queue_dir),
            serving: || eprintln!("qmail-rs: home {}, SMTP on {bound}", home.root.display()),
        };
        mta::run(parts, (tx, rx), hooks, shutdown_signal()).await?;
        eprintln!("qmail-rs: stopped");
        Ok(())
    })
}

/// Local delivery of the embedded default: `<home>/alias/` first, then one
/// maildir per local part under `<home>/mailboxes/`.
async fn local_agent(
    queue: &Queue<RealEnv>,
    home: &Home,
) -> Result<qmail_core::local::LocalDelivery<RealEnv>> {
    qmail_bins::local_delivery(queue, home, qmail_core::local::Mode::Embedded).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
