//! Remote delivery in the simulated internet: the backup-MX topology with
//! the primary cut off, DNS faults, and the downed-host table.

use std::net::IpAddr;

use qmail_core::env::{Env, Fs, Identity};
use qmail_core::remote::Tcpto;
use qmail_io_sim::{SimEnv, SimFs};
use qmail_sim_tests::{Faults, RunOptions, run};

/// Runs `seeds` with exactly `faults`, keeping the traces; every run must
/// pass the oracle. Returns the trace lines of all runs.
fn run_all(seeds: std::ops::Range<u64>, faults: Faults) -> Vec<String> {
    let mut lines = Vec::new();
    for seed in seeds {
        let r = run(
            seed,
            &RunOptions {
                faults: Some(faults),
                keep_trace: true,
                ..RunOptions::default()
            },
        );
        assert!(
            r.passed(),
            "{}\n{:#?}\nreplay: {}",
            r.summary(),
            r.violations,
            r.replay_command()
        );
        lines.extend(r.trace);
    }
    lines
}

#[test]
fn the_backup_mx_takes_the_mail_while_the_primary_is_cut_off() {
    let lines = run_all(
        0..8,
        Faults {
            mx_down: true,
            crashes: 1,
            ..Faults::default()
        },
    );
    let accepted_by = |host: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(" {host} accepted ")))
            .count()
    };
    assert!(accepted_by("mx1") > 0, "the primary takes mail when it can");
    assert!(
        accepted_by("mx2") > 0,
        "the backup took mail while the primary was down"
    );
}

#[test]
fn dns_faults_delay_remote_mail_but_lose_none() {
    run_all(
        0..8,
        Faults {
            dns: true,
            deferrals: true,
            ..Faults::default()
        },
    );
}

#[test]
fn a_host_that_timed_out_twice_is_skipped_until_it_answers() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let env = SimEnv::new(
        SimFs::new(5),
        5,
        Identity {
            pid: 1,
            uid: 1,
            gid: 1,
            hostname: "sim".into(),
        },
    );
    rt.block_on(async {
        env.fs().create_dir_all("/q".as_ref(), 0o755).await.unwrap();
        let t = Tcpto::new(env.clone(), "/q");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!t.is_down(a).await);
        t.record(a, true).await;
        assert!(!t.is_down(a).await, "one timeout is not enough");
        t.record(a, true).await;
        assert!(t.is_down(a).await, "two timeouts: skipped");
        assert!(!t.is_down(b).await, "other hosts are not");
        // A second table over the same queue sees the same (another
        // process, qmail-remote, shares it through the file).
        assert!(Tcpto::new(env.clone(), "/q").is_down(a).await);
        t.record(a, false).await;
        assert!(!t.is_down(a).await, "a connection clears it");
    });
}
