//! A run is a pure function of its seed: the same seed twice gives the same
//! trace hash (and the same outcome), with and without kept trace lines;
//! different seeds give different traces.

use qmail_sim_tests::{RunOptions, run};

#[test]
fn one_seed_twice_same_trace() {
    for seed in [3, 17] {
        let a = run(seed, &RunOptions::default());
        let b = run(seed, &RunOptions::default());
        let c = run(
            seed,
            &RunOptions {
                keep_trace: true,
                ..RunOptions::default()
            },
        );
        assert!(a.trace_events > 100, "{} events", a.trace_events);
        eprintln!(
            "seed {seed}: trace {:016x}, {} events",
            a.trace_hash, a.trace_events
        );
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.trace_hash, c.trace_hash, "seed {seed} with --trace");
        assert_eq!(c.trace.len() as u64, c.trace_events);
        assert_eq!(
            (a.accepted, a.delivered, a.bounced, a.duplicates, a.crashes),
            (b.accepted, b.delivered, b.bounced, b.duplicates, b.crashes)
        );
    }
}

#[test]
fn different_seeds_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (100..104)
        .map(|s| run(s, &RunOptions::default()).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 4);
}
