//! The CI sweep: every seed of a range, each with its own swarm of faults
//! (crashes on most), must pass the oracle, and the sweep as a whole must
//! reach every state the coverage counts ("sometimes" assertions: a change
//! that makes the world stop reaching one fails here, not silently). Seeds
//! run on two threads. A failure names the seed, its faults and the command
//! that replays it.

use qmail_sim_tests::sweep::sweep;
use qmail_sim_tests::{Coverage, RunOptions, RunReport};

/// Seeds in CI's sweep.
const SEEDS: u64 = 3000;

/// `SIM_SWEEP_SEEDS` shortens the sweep (mutation testing runs it once per
/// mutant); every assertion still holds at that size.
fn seeds() -> u64 {
    std::env::var("SIM_SWEEP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEEDS)
}

#[test]
fn every_seed_passes_and_every_state_is_reached() {
    let seeds = seeds();
    let mut reports: Vec<RunReport> = Vec::new();
    sweep(0..seeds, &RunOptions::default(), 2, |r| {
        reports.push(r);
        true
    });
    assert_eq!(reports.len() as u64, seeds);
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "seed {} [{}]:\n    {}\n  replay: {}",
                r.seed,
                r.faults,
                r.violations.join("\n    "),
                r.replay_command()
            )
        })
        .collect();
    assert!(failed.is_empty(), "failing seeds:\n{}", failed.join("\n"));
    let crashed = reports.iter().filter(|r| r.crashes > 0).count();
    let accepted: usize = reports.iter().map(|r| r.accepted).sum();
    let bounced: usize = reports.iter().map(|r| r.bounced).sum();
    let duplicates: usize = reports.iter().map(|r| r.duplicates).sum();
    let mut coverage = Coverage::default();
    for r in &reports {
        coverage.add(&r.coverage);
    }
    eprintln!(
        "{} seeds: {crashed} with crashes, {accepted} messages accepted, {bounced} recipients bounced, {duplicates} duplicates\ncoverage: {coverage}",
        reports.len()
    );
    // Swarm testing still covers what matters: most seeds crash the MTA,
    // and traffic gets through.
    assert!(
        crashed * 3 >= reports.len() * 2,
        "only {crashed} seeds crashed"
    );
    assert!(accepted >= reports.len() * 3, "only {accepted} accepted");
    assert!(bounced > 0);
    assert!(reports.iter().all(|r| r.drained));
    let missing: Vec<&str> = coverage.missing().iter().map(|r| r.name()).collect();
    assert!(
        missing.is_empty(),
        "{seeds} seeds never reached: {missing:?} ({coverage})"
    );
}
