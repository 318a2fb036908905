//! `qmail`: the umbrella command of the embedded default. Every subcommand
//! finds its installation in `--home DIR`, else `$QMAIL_HOME`, else
//! `./qmail-home`; `qmail help` says what each does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use qmail_core::env::{Env, Net};
use qmail_core::home::{self, Home, InitAction};
use qmail_core::queue::Queue;
use qmail_core::smtpd::{self, SmtpdControl};
use qmail_io_real::RealEnv;

/// `qmail help`, `qmail --help`.
const HELP: &str = "\
usage: qmail COMMAND [--home DIR] [--smtp ADDR] [--user NAME]

Commands:
  run     run the mail server: SMTP, the queue's scheduler and local delivery
          in one process, in the foreground (creates the home on first use)
  init    create the home with default control files (never overwrites one)
  qstat   how many messages are in the queue
  qread   list the messages in the queue, with their recipients
  help    this text

Options:
  --home DIR    the installation (default: $QMAIL_HOME, else ./qmail-home)
  --smtp ADDR   where `run` listens for SMTP (default 127.0.0.1:2525)
  --user NAME   started as root, `run` binds its port and then runs as NAME,
                alias programs included; it refuses to run as root without
                --user (--user root keeps root, for those who mean it)

Signals to `qmail run`:
  SIGTERM, Ctrl-C   stop accepting, finish the deliveries under way, exit
  SIGHUP            reread the control files (SMTP and scheduler)
  SIGALRM           retry every deferred message now

Mail for an address without a .qmail file in HOME/alias/ goes to
HOME/mailboxes/LOCAL/Maildir/. The control files are in HOME/control/
(README.md lists them with their defaults).
";

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
    user: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        bail!("no command given\n\n{HELP}")
    };
    let mut parsed = Args {
        cmd,
        home: None,
        smtp: SocketAddr::from(([127, 0, 0, 1], 2525)),
        user: None,
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
            "--user" => parsed.user = Some(args.next().context("--user needs a user name")?),
            "-h" | "--help" => parsed.cmd = "help".into(),
            other => bail!("unknown argument {other:?} (see `qmail help`)"),
        }
    }
    Ok(parsed)
}

fn real_main() -> Result<()> {
    let args = parse_args()?;
    let home = qmail_bins::home_from(args.home.clone(), qmail_bins::EMBEDDED_HOME);
    match args.cmd.as_str() {
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        "init" => {
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
        "run" => run(home, args.smtp, args.user),
        "qstat" => report("qmail qstat", &home, |q| async move { q.qstat().await }),
        "qread" => report("qmail qread", &home, |q| async move { q.qread().await }),
        other => bail!("unknown command {other:?} (see `qmail help`)"),
    }
}

fn report<F, Fut>(program: &str, home: &Home, f: F) -> Result<()>
where
    F: FnOnce(Queue<RealEnv>) -> Fut,
    Fut: std::future::Future<Output = Result<String, qmail_core::queue::QueueError>>,
{
    let code = qmail_bins::print_queue_report(program, home, f);
    if code != ExitCode::SUCCESS {
        std::process::exit(111);
    }
    Ok(())
}

async fn init(env: &RealEnv, home: &Home) -> Result<Vec<InitAction>> {
    let hostname = env.identity().hostname.clone();
    let mut actions = home::init(env, home, &hostname)
        .await
        .with_context(|| format!("initialising {}", home.root.display()))?;
    // bin/sendmail and friends, for user agents and cron (docs/inject.md).
    let wrappers = qmail_bins::wrappers::install(home)
        .with_context(|| format!("writing {}/sendmail", home.bin().display()))?;
    actions.extend(wrappers.into_iter().map(InitAction::Created));
    Ok(actions)
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

/// Started as root, `qmail run` would run the `|program` lines of the alias
/// `.qmail` files as root. It runs as `user` instead (after binding its
/// port, so port 25 works), or refuses.
fn drop_root(user: Option<&str>) -> Result<()> {
    use nix::unistd::{Uid, User, setgid, setgroups, setuid};
    if !Uid::effective().is_root() {
        if let Some(name) = user {
            let me = User::from_uid(Uid::effective())?.map(|u| u.name);
            if me.as_deref() != Some(name) {
                bail!("--user {name} needs root (this process runs as {me:?})");
            }
        }
        return Ok(());
    }
    let Some(name) = user else {
        bail!(
            "refusing to run as root: the programs in alias .qmail files would run as root. \
             Run as an ordinary user, or give --user NAME to run as NAME after binding the port"
        );
    };
    let u = User::from_name(name)
        .with_context(|| format!("looking up user {name}"))?
        .with_context(|| format!("no user {name}"))?;
    if u.uid.is_root() {
        // Told so explicitly: programs run as root.
        return Ok(());
    }
    setgroups(&[u.gid]).context("setgroups")?;
    setgid(u.gid).context("setgid")?;
    setuid(u.uid).context("setuid")?;
    Ok(())
}

fn run(home: Home, addr: SocketAddr, user: Option<String>) -> Result<()> {
    raise_fd_limit();
    qmail_bins::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let env = RealEnv::new();
    rt.block_on(async {
        let listener = env
            .net()
            .listen(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        // glibc applies setuid to every thread, the runtime's workers too.
        drop_root(user.as_deref())?;
        let env = RealEnv::new();
        init(&env, &home).await?;
        let queue = Queue::new(env.clone(), home.queue());
        let control = smtpd_control(&env, &home)
            .await
            .context("reading control files")?;
        let bound = qmail_core::env::NetListener::local_addr(&listener)?;

        // One stop for both halves: SMTP stops accepting, then the
        // scheduler finishes the deliveries in flight.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let scheduler = tokio::spawn(qmail_bins::send::run_scheduler(
            queue.clone(),
            home.clone(),
            local_agent(&queue, &home).await?,
            qmail_bins::send::NoRemoteDelivery,
            ready_tx,
            stopped(stop_rx.clone()),
        ));
        if ready_rx.await.is_err() {
            // The scheduler ended before the queue was ready: say why.
            return scheduler.await.context("scheduler task")?;
        }
        let (controls_tx, controls) = tokio::sync::watch::channel(Arc::new(control));
        let reload = tokio::spawn(reload_on_hangup(env.clone(), home.clone(), controls_tx));
        eprintln!("qmail-rs: home {}, SMTP on {bound}", home.root.display());
        let smtp = smtpd::serve_reloadable(queue, listener, controls, async {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let smtp = smtp.await;
        let _ = stop_tx.send(true);
        reload.abort();
        scheduler.await.context("scheduler task")??;
        smtp?;
        eprintln!("qmail-rs: stopped");
        Ok(())
    })
}

/// The SMTP service's settings from the control files, with `$QMAILQUEUE`.
async fn smtpd_control(env: &RealEnv, home: &Home) -> Result<SmtpdControl> {
    let mut control = SmtpdControl::load(env, home).await?;
    control.queue_program = qmail_bins::queue_program();
    Ok(control)
}

/// On each SIGHUP, rereads the SMTP service's control files for the next
/// sessions (the scheduler rereads its own). A file that cannot be used
/// keeps every old value, and the log says why.
async fn reload_on_hangup(
    env: RealEnv,
    home: Home,
    controls: tokio::sync::watch::Sender<Arc<SmtpdControl>>,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    while hangup.recv().await.is_some() {
        match smtpd_control(&env, &home).await {
            Ok(c) => {
                controls.send_replace(Arc::new(c));
                tracing::info!("smtpd: control files reread");
            }
            Err(e) => {
                tracing::warn!("smtpd: control files not reread, keeping the old values: {e:#}")
            }
        }
    }
    Ok(())
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
