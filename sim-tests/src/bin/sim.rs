//! The simulation's command line: replay one seed with a full trace, or
//! sweep a range of seeds, optionally with a planted bug.
//!
//! ```text
//! sim --seed N [--trace] [--plant NAME]
//! sim --seeds A..B [--jobs N] [--plant NAME] [--all]
//! sim --list-plants
//! ```

use std::io::Write;
use std::process::ExitCode;

use qmail_core::env::{Plant, PlantSet};
use qmail_sim_tests::sweep::{run_seed, sweep};
use qmail_sim_tests::{Coverage, Reached, RunOptions, RunReport, note_log};

fn usage() -> ExitCode {
    eprintln!(
        "usage: sim --seed N [--trace] [--plant NAME]...\n       sim --seeds A..B [--jobs N] [--plant NAME]... [--all] [--verbose]\n       sim --list-plants"
    );
    ExitCode::from(2)
}

fn print_failure(r: &RunReport) {
    println!("FAILED seed {}", r.seed);
    println!("  faults: {}", r.faults);
    for v in r.violations.iter().take(20) {
        println!("  violation: {v}");
    }
    if r.violations.len() > 20 {
        println!("  ... {} more", r.violations.len() - 20);
    }
    println!("  replay: {}", r.replay_command());
}

/// Log lines (qmail-send's and the rest) go into the run's trace.
fn capture_logs() {
    struct W;
    impl Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            note_log(&String::from_utf8_lossy(b));
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sub = tracing_subscriber::fmt()
        .with_writer(|| W)
        .with_env_filter(
            std::env::var("SIM_LOG").unwrap_or_else(|_| "qmail_send=info,debug".into()),
        )
        .without_time()
        .with_ansi(false)
        .finish();
    let _ = tracing::subscriber::set_global_default(sub);
}

#[allow(clippy::disallowed_methods)] // wall time measures the harness, not the world
fn wall() -> std::time::Instant {
    std::time::Instant::now()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seed = None;
    let mut range = None;
    let mut opts = RunOptions::default();
    let mut all = false;
    let mut verbose = false;
    let mut jobs = 1;
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1);
        match args[i].as_str() {
            "--list-plants" => {
                for p in Plant::ALL {
                    println!("{:<22} {}", p.name(), p.describe());
                }
                return ExitCode::SUCCESS;
            }
            "--seed" => {
                let Some(n) = val.and_then(|v| v.parse::<u64>().ok()) else {
                    return usage();
                };
                seed = Some(n);
                i += 1;
            }
            "--seeds" => {
                let Some((a, b)) = val
                    .and_then(|v| v.split_once(".."))
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                else {
                    return usage();
                };
                range = Some(a..b);
                i += 1;
            }
            "--plant" => {
                let Some(p) = val.and_then(|v| Plant::from_name(v)) else {
                    eprintln!("unknown plant; see --list-plants");
                    return ExitCode::from(2);
                };
                opts.plants = opts.plants.with(p);
                i += 1;
            }
            "--jobs" => {
                let Some(n) = val.and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0) else {
                    return usage();
                };
                jobs = n;
                i += 1;
            }
            "--trace" => opts.keep_trace = true,
            "--all" => all = true,
            "--verbose" => verbose = true,
            _ => return usage(),
        }
        i += 1;
    }
    let planted = opts.plants != PlantSet::EMPTY;
    if let Some(seed) = seed {
        if opts.keep_trace {
            capture_logs();
        }
        let r = run_seed(seed, &opts);
        for l in &r.trace {
            println!("{l}");
        }
        println!("{}", r.summary());
        println!(
            "trace hash {:016x} ({} events)",
            r.trace_hash, r.trace_events
        );
        if r.passed() {
            return ExitCode::SUCCESS;
        }
        print_failure(&r);
        return ExitCode::FAILURE;
    }
    let Some(range) = range else { return usage() };
    let start = wall();
    let (mut runs, mut failed, mut crashes, mut accepted, mut dups) = (0u64, 0u64, 0u64, 0, 0);
    let mut first_catch = None;
    let mut coverage = Coverage::default();
    sweep(range.clone(), &opts, jobs, |r| {
        let s = r.seed;
        runs += 1;
        crashes += u64::from(r.crashes);
        accepted += r.accepted;
        dups += r.duplicates;
        coverage.add(&r.coverage);
        if verbose {
            println!("{}", r.summary());
        }
        if !r.passed() {
            failed += 1;
            if planted {
                println!("caught by seed {} [{}]: {}", s, r.faults, r.violations[0]);
                first_catch.get_or_insert(s);
                return all;
            }
            print_failure(&r);
        }
        true
    });
    let secs = wall().duration_since(start).as_secs_f64();
    println!(
        "{runs} seeds ({}..{}) in {secs:.1}s: {:.2} seeds/s; {failed} failed; {crashes} crashes, {accepted} messages accepted, {dups} duplicates",
        range.start,
        range.end,
        runs as f64 / secs.max(1e-9)
    );
    println!("coverage over {runs} seeds ({jobs} jobs):");
    for r in Reached::ALL {
        println!("  {:<22} {}", r.name(), coverage.count(r));
    }
    if planted {
        return match first_catch {
            Some(s) => {
                println!("planted bug caught, first by seed {s}");
                ExitCode::SUCCESS
            }
            None => {
                println!("planted bug NOT caught in {runs} seeds");
                ExitCode::FAILURE
            }
        };
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
