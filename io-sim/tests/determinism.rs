//! A simulation is a pure function of its seed: two hosts that exchange TCP
//! traffic and write files produce the same event trace for the same seed, and
//! a different one for another seed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use qmail_core::env::{Env, Fs, FsFile, Identity, Net, NetListener, OpenOptions, Rng};
use qmail_io_sim::{SimEnv, SimFs, Trace, sim_builder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn identity(name: &str) -> Identity {
    Identity {
        pid: 100,
        uid: 1000,
        gid: 1000,
        hostname: name.to_string(),
    }
}

fn run(seed: u64) -> (u64, u64) {
    let trace = Trace::new();
    let mut sim = sim_builder(seed).build();
    sim.set_max_message_latency(Duration::from_millis(50));

    let server_fs = SimFs::new(seed ^ 1);
    server_fs.set_trace(trace.clone());
    let env = SimEnv::new(server_fs.clone(), seed ^ 2, identity("server"));
    sim.host("server", move || {
        let env = env.clone();
        async move {
            env.fs().create_dir(Path::new("/spool"), 0o755).await?;
            let listener = env
                .net()
                .listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 25)))
                .await?;
            let mut n = 0u32;
            loop {
                let (stream, _) = listener.accept().await?;
                let mut lines = BufReader::new(stream);
                let mut line = String::new();
                while lines.read_line(&mut line).await? > 0 {
                    n += 1;
                    let path = format!("/spool/{n}");
                    let mut f = env
                        .fs()
                        .open(Path::new(&path), &OpenOptions::create_new())
                        .await?;
                    f.write_all(line.as_bytes()).await?;
                    f.sync_all().await?;
                    env.fs().sync_dir(Path::new("/spool")).await?;
                    lines
                        .get_mut()
                        .write_all(format!("ok {n}\n").as_bytes())
                        .await?;
                    line.clear();
                }
            }
        }
    });

    let client_env = SimEnv::new(SimFs::new(seed ^ 3), seed ^ 4, identity("client"));
    let client_trace = trace.clone();
    sim.client("client", async move {
        for conn in 0..3 {
            let addr = SocketAddr::from((turmoil::lookup("server"), 25));
            let stream = client_env.net().connect(addr).await?;
            let mut s = BufReader::new(stream);
            for _ in 0..5 {
                let len = 1 + client_env.rng().below(200) as usize;
                let msg: String = (0..len)
                    .map(|i| {
                        char::from(b'a' + ((i as u64 + client_env.rng().below(26)) % 26) as u8)
                    })
                    .collect();
                s.get_mut().write_all(format!("{msg}\n").as_bytes()).await?;
                let mut reply = String::new();
                s.read_line(&mut reply).await?;
                client_trace.record(
                    "client",
                    format_args!("conn {conn} sent {len} got {}", reply.trim_end()),
                );
            }
        }
        Ok(())
    });
    sim.run().expect("simulation runs");
    (trace.hash(), trace.events())
}

#[test]
fn same_seed_same_trace() {
    let a = run(42);
    let b = run(42);
    assert!(a.1 > 30, "the trace saw the traffic: {} events", a.1);
    assert_eq!(a, b, "one seed, one trace");
}

#[test]
fn different_seeds_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (1..=4).map(|s| run(s).0).collect();
    assert_eq!(hashes.len(), 4, "four seeds, four traces");
}
