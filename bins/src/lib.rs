//! Shared wiring of the qmail-rs programs: where the installation is and how
//! the async runtime is set up. Each program in `src/bin/` is a thin layer of
//! argument handling over `qmail-core` running on `qmail-io-real`.

use std::path::PathBuf;

pub mod helper;
pub mod inject;
pub mod send;
pub mod trigger;
pub mod wrappers;

use qmail_core::home::{DEFAULT_HOME, Home};

/// Where `qmail` (init, run, qstat, qread) keeps its installation unless
/// `--home` or `$QMAIL_HOME` says otherwise: the embedded default.
pub const EMBEDDED_HOME: &str = "qmail-home";

/// If the first argument is `--help`, prints `usage` on standard output and
/// exits 0: a program asked for help does nothing else (no maildir named
/// `--help`, no SMTP session).
pub fn answer_help(usage: &str) {
    if std::env::args_os().nth(1).is_some_and(|a| a == "--help") {
        print!("{usage}");
        std::process::exit(0);
    }
}

/// The installation: `flag` (a `--home` argument) if given, else
/// `$QMAIL_HOME`, else `default`. Relative paths are made absolute.
pub fn home_from(flag: Option<PathBuf>, default: &str) -> Home {
    let root = flag
        .or_else(|| std::env::var_os("QMAIL_HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(default));
    let root = if root.is_absolute() {
        root
    } else {
        std::env::current_dir()
            .map(|d| d.join(&root))
            .unwrap_or(root)
    };
    Home::new(root)
}

/// The installation of a qmail-named program: `$QMAIL_HOME`, else `/var/qmail`.
pub fn home() -> Home {
    home_from(None, DEFAULT_HOME)
}

/// `$QMAILQUEUE`: the program that takes messages instead of the queue, if
/// set (and not empty), as every qmail program that injects honours it.
pub fn queue_program() -> Option<PathBuf> {
    std::env::var_os("QMAILQUEUE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A single-threaded runtime for the short-lived programs.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs a queue report (qmail-qread, qmail-qstat) on the queue of `home`
/// and prints it; on failure says why on stderr and exits 111, as qmail's
/// tools do. A missing queue is such a failure, not an empty report: it
/// usually means the wrong installation.
pub fn print_queue_report<F, Fut>(program: &str, home: &Home, report: F) -> std::process::ExitCode
where
    F: FnOnce(qmail_core::queue::Queue<qmail_io_real::RealEnv>) -> Fut,
    Fut: std::future::Future<Output = Result<String, qmail_core::queue::QueueError>>,
{
    let queue = qmail_core::queue::Queue::new(qmail_io_real::RealEnv::new(), home.queue());
    if !queue.layout().todo_dir().is_dir() {
        eprintln!(
            "{program}: fatal: no queue at {} (set QMAIL_HOME)",
            home.queue().display()
        );
        return std::process::ExitCode::from(111);
    }
    let result = runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(report(queue)).map_err(|e| e.to_string()));
    match result {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: fatal: {e}");
            std::process::ExitCode::from(111)
        }
    }
}

/// The log setup of the long-running programs: qmail-send's lines go to
/// standard error bare, exactly as qmail-send writes them (multilog or the
/// journal adds the time); everything else as `RUST_LOG` says (default
/// `info`), with its level and target, coloured only on a terminal (escape
/// codes in a log file or the journal are noise).
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::prelude::*;
    let qmail_lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_filter(
            Targets::new().with_target(qmail_core::send::log::LOG_TARGET, tracing::Level::INFO),
        );
    let other = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info"))
                .add_directive("qmail_send=off".parse().expect("a valid directive")),
        );
    tracing_subscriber::registry()
        .with(qmail_lines)
        .with(other)
        .init();
}

/// The local delivery agent for `home` in `mode` (see [`local_config`]).
pub async fn local_delivery(
    queue: &qmail_core::queue::Queue<qmail_io_real::RealEnv>,
    home: &Home,
    mode: qmail_core::local::Mode,
) -> anyhow::Result<qmail_core::local::LocalDelivery<qmail_io_real::RealEnv>> {
    let config = local_config(queue.env(), home, mode).await?;
    Ok(qmail_core::local::LocalDelivery::new(
        queue.clone(),
        home.clone(),
        config,
    ))
}

/// Local delivery's settings for `home` in `mode`: `control/defaultdelivery`
/// applied, `$QMAILQUEUE` honoured for forwards, and programs finding the
/// helper programs (`forward`, `preline`, ...) next to this executable, then
/// in `<home>/bin`, then in the usual places.
pub async fn local_config(
    env: &qmail_io_real::RealEnv,
    home: &Home,
    mode: qmail_core::local::Mode,
) -> anyhow::Result<qmail_core::local::LocalConfig> {
    use anyhow::Context;
    let mut config = qmail_core::local::LocalConfig::load(env, home, mode)
        .await
        .context("reading control/defaultdelivery")?;
    config.queue_program = queue_program();
    let mut dirs: Vec<String> = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .into_iter()
        .collect();
    dirs.push(home.bin().display().to_string());
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from));
    config.program_env.retain(|(k, _)| k != "PATH");
    config.program_env.push(("PATH".into(), dirs.join(":")));
    Ok(config)
}
