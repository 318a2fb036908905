//! The stub resolver against the simulated DNS server: every outcome of an
//! honest server, and every fault the server can play, classified right.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use qmail_core::dns::{DnsError, Mx, Resolve, ResolverConfig, StubResolver};
use qmail_core::env::Identity;
use qmail_io_sim::{DNS_PORT, DnsFault, DnsFaults, DnsServer, SimEnv, SimFs, Zone, sim_builder};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(5);

fn zone() -> Zone {
    let mut z = Zone::new();
    z.mx("example.com", 10, "mx1.example.com")
        .mx("example.com", 10, "mx2.example.com")
        .mx("example.com", 20, "backup.example.net")
        .a("mx1.example.com", Ipv4Addr::new(10, 0, 0, 1))
        .a("mx1.example.com", Ipv4Addr::new(10, 0, 0, 2))
        .aaaa(
            "mx1.example.com",
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        )
        .aaaa(
            "v6only.example.com",
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 6),
        )
        .mx("null.example.com", 0, ".")
        .cname("alias.example.com", "example.com")
        .cname("www.example.com", "alias.example.com")
        .cname("dangling.example.com", "gone.example.com")
        .cname("loop1.example.com", "loop2.example.com")
        .cname("loop2.example.com", "loop1.example.com")
        .exists("empty.example.com");
    z
}

fn example_mx() -> Vec<Mx> {
    let mx = |preference, exchange: &str| Mx {
        preference,
        exchange: exchange.into(),
    };
    vec![
        mx(10, "mx1.example.com"),
        mx(10, "mx2.example.com"),
        mx(20, "backup.example.net"),
    ]
}

fn mx1_addrs() -> Vec<IpAddr> {
    vec![
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ]
}

/// Runs `test` on a client host whose resolver asks the servers (one host
/// each, in this order) with the default timeout and `attempts`.
fn run<F, Fut>(servers: Vec<DnsServer>, attempts: u32, test: F)
where
    F: FnOnce(StubResolver<SimEnv>) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    run_seeded(3, servers, attempts, test)
}

/// [`run`] with the client's random source seeded by `client_seed`.
fn run_seeded<F, Fut>(client_seed: u64, servers: Vec<DnsServer>, attempts: u32, test: F)
where
    F: FnOnce(StubResolver<SimEnv>) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mut sim = sim_builder(11).build();
    let n = servers.len();
    for (i, server) in servers.into_iter().enumerate() {
        sim.host(format!("dns{i}"), move || {
            let s = server.clone();
            async move {
                s.serve().await?;
                Ok(())
            }
        });
    }
    sim.client("mta", async move {
        let nameservers = (0..n)
            .map(|i| SocketAddr::new(turmoil::lookup(format!("dns{i}")), DNS_PORT))
            .collect();
        let mut config = ResolverConfig::with_nameservers(nameservers);
        config.attempts = attempts;
        assert_eq!(config.timeout, TIMEOUT);
        let identity = Identity {
            pid: 1,
            uid: 0,
            gid: 0,
            hostname: "mta".into(),
        };
        let env = SimEnv::new(SimFs::new(3), client_seed, identity);
        test(StubResolver::new(env, config)).await;
        Ok(())
    });
    sim.run().unwrap();
}

fn server(faults: DnsFaults) -> DnsServer {
    DnsServer::new(zone(), faults, 5)
}

fn temporary<T: std::fmt::Debug>(r: Result<T, DnsError>) -> String {
    match r {
        Err(DnsError::Temporary(why)) => why,
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

#[test]
fn honest_server_every_outcome() {
    let s = server(DnsFaults::none());
    let log = s.clone();
    run(vec![s], 2, |r| async move {
        // Found, in the server's order, equal preferences kept.
        assert_eq!(r.mx("example.com").await, Ok(example_mx()));
        assert_eq!(r.mx("EXAMPLE.COM.").await, Ok(example_mx()));
        // A and AAAA, IPv4 first.
        assert_eq!(r.addrs("mx1.example.com").await, Ok(mx1_addrs()));
        assert_eq!(
            r.addrs("v6only.example.com").await,
            Ok(vec!["2001:db8::6".parse().unwrap()])
        );
        // A null MX is an MX with an empty exchange.
        assert_eq!(
            r.mx("null.example.com").await,
            Ok(vec![Mx {
                preference: 0,
                exchange: String::new()
            }])
        );
        // CNAME chains are followed.
        assert_eq!(r.mx("www.example.com").await, Ok(example_mx()));
        // NODATA: the name exists without such records.
        assert_eq!(r.mx("empty.example.com").await, Ok(vec![]));
        assert_eq!(r.mx("mx1.example.com").await, Ok(vec![]));
        assert_eq!(r.addrs("empty.example.com").await, Ok(vec![]));
        // NXDOMAIN is permanent, directly or at the end of a chain.
        assert_eq!(
            r.mx("nowhere.example.com").await,
            Err(DnsError::NotFound("nowhere.example.com".into()))
        );
        assert_eq!(
            r.addrs("nowhere.example.com").await,
            Err(DnsError::NotFound("nowhere.example.com".into()))
        );
        assert_eq!(
            r.mx("dangling.example.com").await,
            Err(DnsError::NotFound(
                "dangling.example.com (CNAME to gone.example.com)".into()
            ))
        );
        // A CNAME loop is a temporary failure, not a hang.
        let why = temporary(r.mx("loop1.example.com").await);
        assert!(why.contains("CNAME chain longer than 8"), "{why}");
        // A string that is no DNS name is never sent.
        assert_eq!(
            r.mx("bad name.example.com").await,
            Err(DnsError::NotFound("bad name.example.com".into()))
        );
    });
    let queries = log.log();
    assert!(queries.iter().all(|q| !q.tcp && q.fault.is_none()));
    assert!(!queries.iter().any(|q| q.name.contains(' ')));
    // The loop was asked only until the bound: the server follows 16 links
    // per answer, the resolver gives up after 8 in its first answer.
    assert_eq!(
        queries
            .iter()
            .filter(|q| q.name.starts_with("loop"))
            .count(),
        1
    );
}

/// Query ids and source ports come from the environment's random source:
/// the same seed gives the same ones, another seed others, and within a run
/// they vary from query to query.
#[test]
fn ids_and_source_ports_come_from_the_seeded_random_source() {
    let ids_ports = |client_seed: u64| {
        let s = server(DnsFaults::always(DnsFault::Truncate));
        let log = s.clone();
        run_seeded(client_seed, vec![s], 1, |r| async move {
            for _ in 0..3 {
                assert_eq!(r.mx("example.com").await, Ok(example_mx()));
            }
        });
        let got: Vec<(bool, u16, u16)> = log
            .log()
            .into_iter()
            .map(|q| (q.tcp, q.id, q.from.port()))
            .collect();
        got
    };
    let a = ids_ports(1);
    assert_eq!(
        a.len(),
        6,
        "three UDP queries, each truncated and asked over TCP"
    );
    assert_eq!(a, ids_ports(1));
    assert_ne!(a, ids_ports(2));
    let udp: Vec<(u16, u16)> = a.iter().filter(|q| !q.0).map(|q| (q.1, q.2)).collect();
    let ids: std::collections::BTreeSet<u16> = a.iter().map(|q| q.1).collect();
    let ports: std::collections::BTreeSet<u16> = udp.iter().map(|q| q.1).collect();
    assert_eq!(ids.len(), 6, "{a:?}");
    assert_eq!(ports.len(), 3, "{a:?}");
    assert!(ports.iter().all(|p| *p >= 1024));
}

#[test]
fn chains_the_server_does_not_follow_are_asked_again() {
    let s = server(DnsFaults::none());
    s.edit_zone(|z| z.follow_cnames = false);
    let log = s.clone();
    run(vec![s], 2, |r| async move {
        assert_eq!(r.mx("www.example.com").await, Ok(example_mx()));
        let why = temporary(r.mx("loop1.example.com").await);
        assert!(why.contains("CNAME chain"), "{why}");
    });
    let names: Vec<String> = log.log().into_iter().map(|q| q.name).collect();
    assert_eq!(
        &names[..3],
        ["www.example.com", "alias.example.com", "example.com"]
    );
    // Eight links followed, the ninth refused: nine queries for the loop.
    assert_eq!(names.len(), 3 + 9);
}

#[test]
fn timeouts_are_temporary_after_every_try() {
    let s = server(DnsFaults::always(DnsFault::Timeout));
    let log = s.clone();
    run(vec![s], 3, |r| async move {
        let start = Instant::now();
        let why = temporary(r.mx("example.com").await);
        assert!(why.contains("timed out"), "{why}");
        // Three attempts of one server, each waiting the whole timeout.
        assert_eq!(start.elapsed().as_secs(), 3 * TIMEOUT.as_secs());
    });
    assert_eq!(log.log().len(), 3);
}

#[test]
fn a_silent_server_is_passed_over_for_the_next() {
    let dead = server(DnsFaults::always(DnsFault::Timeout));
    let live = server(DnsFaults::none());
    let (dead_log, live_log) = (dead.clone(), live.clone());
    run(vec![dead, live], 2, |r| async move {
        let start = Instant::now();
        assert_eq!(r.mx("example.com").await, Ok(example_mx()));
        assert_eq!(start.elapsed().as_secs(), TIMEOUT.as_secs());
    });
    assert_eq!(dead_log.log().len(), 1);
    assert_eq!(live_log.log().len(), 1);
}

#[test]
fn servfail_is_temporary_without_waiting_and_the_next_server_is_asked() {
    let s = server(DnsFaults::always(DnsFault::ServFail));
    let log = s.clone();
    run(vec![s], 2, |r| async move {
        let start = Instant::now();
        let why = temporary(r.addrs("mx1.example.com").await);
        assert!(why.contains("server answered SERVFAIL"), "{why}");
        assert!(start.elapsed() < TIMEOUT);
    });
    // A and AAAA, two attempts each.
    assert_eq!(log.log().len(), 4);

    let bad = server(DnsFaults::always(DnsFault::ServFail));
    let good = server(DnsFaults::none());
    run(vec![bad, good], 1, |r| async move {
        assert_eq!(r.addrs("mx1.example.com").await, Ok(mx1_addrs()));
    });
}

#[test]
fn truncated_answers_are_asked_again_over_tcp() {
    let s = server(DnsFaults::always(DnsFault::Truncate));
    let log = s.clone();
    run(vec![s], 1, |r| async move {
        assert_eq!(r.mx("www.example.com").await, Ok(example_mx()));
        assert_eq!(r.addrs("mx1.example.com").await, Ok(mx1_addrs()));
        assert_eq!(
            r.mx("nowhere.example.com").await,
            Err(DnsError::NotFound("nowhere.example.com".into()))
        );
    });
    let transports: Vec<(bool, Option<DnsFault>)> =
        log.log().into_iter().map(|q| (q.tcp, q.fault)).collect();
    let pair = [(false, Some(DnsFault::Truncate)), (true, None)];
    assert_eq!(transports, pair.repeat(4));
}

/// Forged replies (another id, another question, records for another name,
/// garbage) are ignored: alone they end as a timeout, never as an answer;
/// followed by the true answer, the true answer is taken within the same wait.
#[test]
fn forged_replies_are_ignored() {
    for fault in DnsFault::ALL.into_iter().filter(|f| f.is_forgery()) {
        let alone = server(DnsFaults::always(fault));
        run(vec![alone], 2, move |r| async move {
            let start = Instant::now();
            let why = temporary(r.mx("example.com").await);
            assert!(why.contains("timed out"), "{}: {why}", fault.name());
            assert_eq!(
                start.elapsed().as_secs(),
                2 * TIMEOUT.as_secs(),
                "{}",
                fault.name()
            );
            // Not even a name that does not exist is taken from a forger.
            temporary(r.mx("nowhere.example.com").await);
            temporary(r.addrs("empty.example.com").await);
        });

        let raced = server(DnsFaults::always(fault).then_answer(true));
        let log = raced.clone();
        run(vec![raced], 1, move |r| async move {
            let start = Instant::now();
            assert_eq!(
                r.mx("www.example.com").await,
                Ok(example_mx()),
                "{}",
                fault.name()
            );
            assert_eq!(r.addrs("mx1.example.com").await, Ok(mx1_addrs()));
            assert_eq!(
                r.mx("nowhere.example.com").await,
                Err(DnsError::NotFound("nowhere.example.com".into()))
            );
            assert_eq!(r.mx("empty.example.com").await, Ok(vec![]));
            assert!(start.elapsed() < TIMEOUT, "{}", fault.name());
        });
        assert!(log.log().iter().all(|q| q.fault == Some(fault)));
    }
}

/// Under random mixes of every fault, each lookup either gives the true
/// answer or fails temporarily: never a wrong answer, never a false NXDOMAIN.
#[test]
fn swarm_of_faults_never_misclassifies() {
    let mut outcomes = [0usize; 2];
    for seed in 0..24u64 {
        let faults = DnsFaults::swarm(seed).with(DnsFault::ALL[(seed % 7) as usize], 0.5);
        let s = DnsServer::new(zone(), faults, seed);
        let (tx, rx) = std::sync::mpsc::channel();
        run(vec![s], 2, move |r| async move {
            let mut counts = [0usize; 2];
            for _ in 0..4 {
                match r.mx("www.example.com").await {
                    Ok(v) => {
                        assert_eq!(v, example_mx(), "seed {seed}");
                        counts[0] += 1;
                    }
                    Err(e) => {
                        assert!(matches!(e, DnsError::Temporary(_)), "seed {seed}: {e}");
                        counts[1] += 1;
                    }
                }
                match r.addrs("mx1.example.com").await {
                    // One family's addresses are enough when the other's
                    // lookup failed temporarily.
                    Ok(v) => assert!(
                        [
                            mx1_addrs(),
                            mx1_addrs()[..2].to_vec(),
                            mx1_addrs()[2..].to_vec()
                        ]
                        .contains(&v),
                        "seed {seed}: {v:?}"
                    ),
                    Err(e) => assert!(matches!(e, DnsError::Temporary(_)), "seed {seed}: {e}"),
                }
                match r.mx("nowhere.example.com").await {
                    Err(DnsError::NotFound(_)) | Err(DnsError::Temporary(_)) => {}
                    other => panic!("seed {seed}: {other:?}"),
                }
                match r.mx("empty.example.com").await {
                    Ok(v) => assert_eq!(v, vec![], "seed {seed}"),
                    Err(e) => assert!(matches!(e, DnsError::Temporary(_)), "seed {seed}: {e}"),
                }
            }
            tx.send(counts).unwrap();
        });
        let c = rx.recv().unwrap();
        outcomes[0] += c[0];
        outcomes[1] += c[1];
    }
    // The mix is neither all success nor all failure.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
