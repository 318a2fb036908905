//! The CI sweep: 240 seeds, each with its own swarm of faults (crashes on
//! most), every one of which must pass the oracle. Four tests of 60 seeds
//! so the test harness spreads them over the cores. A failure names the
//! seed, its faults and the command that replays it.

use qmail_sim_tests::{RunOptions, RunReport, run};

fn sweep(seeds: std::ops::Range<u64>) -> Vec<RunReport> {
    let reports: Vec<RunReport> = seeds.map(|s| run(s, &RunOptions::default())).collect();
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
    eprintln!(
        "{} seeds: {crashed} with crashes, {accepted} messages accepted, {bounced} recipients bounced, {duplicates} duplicates",
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
    reports
}

#[test]
fn seeds_0_to_60() {
    sweep(0..60);
}

#[test]
fn seeds_60_to_120() {
    sweep(60..120);
}

#[test]
fn seeds_120_to_180() {
    sweep(120..180);
}

#[test]
fn seeds_180_to_240() {
    sweep(180..240);
}
