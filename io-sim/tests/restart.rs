//! A host's filesystem survives a turmoil crash and restart holding its durable
//! state (plus what the crash happened to keep), and the clock keeps running.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use qmail_core::env::{Clock, Env, Fs, FsFile, Identity, OpenOptions};
use qmail_io_sim::{CrashOptions, SimEnv, SimFs, crash_host, sim_builder, sim_epoch};

/// What one incarnation of the host saw at start: /durable, /loose, the time.
type Seen = (Option<Vec<u8>>, Option<Vec<u8>>, SystemTime);

#[test]
fn filesystem_and_clock_survive_a_host_restart() {
    let mut sim = sim_builder(9).build();
    let fs = SimFs::new(9);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (fs2, seen2) = (fs.clone(), seen.clone());
    sim.host("mta", move || {
        let env = SimEnv::new(
            fs2.clone(),
            1,
            Identity {
                pid: 1,
                uid: 0,
                gid: 0,
                hostname: "mta".into(),
            },
        );
        let seen = seen2.clone();
        async move {
            let fs = env.fs();
            let durable = fs.read_if_exists(Path::new("/durable")).await?;
            let loose = fs.read_if_exists(Path::new("/loose")).await?;
            seen.lock()
                .unwrap()
                .push((durable, loose, env.clock().now()));
            if !fs.exists(Path::new("/durable")).await {
                let mut f = fs
                    .open(Path::new("/durable"), &OpenOptions::create_new())
                    .await?;
                f.write_all(b"kept").await?;
                f.sync_all().await?;
                let mut g = fs
                    .open(Path::new("/loose"), &OpenOptions::create_new())
                    .await?;
                g.write_all(b"maybe").await?;
                fs.sync_dir(Path::new("/")).await?;
                g.write_all(b" more").await?;
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    });
    for _ in 0..100 {
        sim.step().unwrap();
    }
    // No peers: the host talks to no one.
    crash_host(
        &mut sim,
        "mta",
        &[],
        &fs,
        5,
        CrashOptions {
            keep_probability: 0.0,
            torn_block: None,
        },
    );
    for _ in 0..100 {
        sim.step().unwrap();
    }
    sim.bounce("mta");
    for _ in 0..10 {
        sim.step().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "started twice");
    assert_eq!(seen[0].0, None);
    assert_eq!(
        seen[1].0.as_deref(),
        Some(&b"kept"[..]),
        "synced file survives"
    );
    assert_eq!(
        seen[1].1.as_deref(),
        Some(&b""[..]),
        "durable name, unsynced data lost"
    );
    assert!(seen[0].2 >= sim_epoch());
    assert!(
        seen[1].2 >= seen[0].2 + Duration::from_millis(200),
        "clock runs on across the restart"
    );
}
