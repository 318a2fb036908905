//! Sweeping a range of seeds, one at a time or on several threads. A seed's
//! run is a pure function of the seed (each run builds its own world and
//! turmoil keeps its state per thread), so a seed gives the same report
//! whichever thread runs it; the reports reach the caller in seed order.

use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use crate::{Coverage, Faults, RunOptions, RunReport, run};

/// Runs one seed; a panic in the world is a failure of that seed.
pub fn run_seed(seed: u64, opts: &RunOptions) -> RunReport {
    match catch_unwind(AssertUnwindSafe(|| run(seed, opts))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            RunReport {
                seed,
                faults: Faults::choose(seed),
                plants: opts.plants,
                clients: 0,
                crashes: 0,
                accepted: 0,
                delivered: 0,
                bounced: 0,
                duplicates: 0,
                sim_secs: 0,
                drained: false,
                trace_hash: 0,
                trace_events: 0,
                trace: Vec::new(),
                violations: vec![format!("panic: {msg}")],
                coverage: Coverage::default(),
            }
        }
    }
}

/// Runs every seed of `seeds` on `jobs` threads and hands each report to
/// `each` in seed order; `each` returns false to stop the sweep (seeds
/// already running finish, their reports are dropped).
pub fn sweep(
    seeds: Range<u64>,
    opts: &RunOptions,
    jobs: usize,
    mut each: impl FnMut(RunReport) -> bool,
) {
    if jobs <= 1 {
        for s in seeds {
            if !each(run_seed(s, opts)) {
                return;
            }
        }
        return;
    }
    let next = AtomicU64::new(seeds.start);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<RunReport>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = next.fetch_add(1, Ordering::Relaxed);
                    if s >= seeds.end || tx.send(run_seed(s, opts)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Reports arrive in any order; hand them on in seed order.
        let mut waiting = BTreeMap::new();
        let mut due = seeds.start;
        for r in rx {
            waiting.insert(r.seed, r);
            while let Some(r) = waiting.remove(&due) {
                due += 1;
                if !each(r) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
}
