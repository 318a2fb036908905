//! The stub resolver against a real DNS server: dnsmasq on a loopback high
//! port serving a test zone, named by `control/dnsservers`, through the
//! production environment. `.ci/run` installs dnsmasq; without it the test
//! says so and passes (so a developer machine without it still runs the rest).

use std::fmt::Write as _;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qmail_core::dns::{DnsError, Mx, Resolve, StubResolver};
use qmail_io_real::RealEnv;

/// Kills dnsmasq when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_dnsmasq() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.is_file())
}

/// A zone with MX records of equal and different preferences, a null MX,
/// A and AAAA records, CNAMEs, and enough A records for one name that the
/// answer does not fit in a 512-byte datagram.
fn zone() -> String {
    let mut c = String::from(
        "mx-host=example.test,mx1.example.test,10\n\
         mx-host=example.test,mx2.example.test,10\n\
         mx-host=example.test,backup.example.test,20\n\
         host-record=mx1.example.test,127.0.0.11,fd00::11\n\
         host-record=mx2.example.test,127.0.0.12\n\
         host-record=v6.example.test,fd00::6\n\
         host-record=example.test,127.0.0.10\n\
         dns-rr=null.example.test,15,000000\n\
         cname=alias.example.test,example.test\n\
         cname=www.example.test,mx1.example.test\n",
    );
    for i in 1..=60 {
        writeln!(c, "host-record=big.example.test,127.0.1.{i}").unwrap();
    }
    c
}

fn free_port() -> u16 {
    // A port free for UDP now; dnsmasq binds it (and TCP) just after.
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dnsmasq: &Path, dir: &Path, port: u16) -> Server {
    let conf = dir.join("dnsmasq.conf");
    let mut text = format!(
        "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
         no-poll\nlocal=/test/\n"
    );
    text.push_str(&zone());
    std::fs::write(&conf, text).unwrap();
    let child = Command::new(dnsmasq)
        .arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", conf.display()))
        .arg("--pid-file=")
        .arg("--log-facility=-")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    Server(child)
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn sorted(mut v: Vec<Mx>) -> Vec<Mx> {
    v.sort();
    v
}

#[tokio::test]
async fn resolver_gets_each_record_from_dnsmasq() {
    let Some(dnsmasq) = find_dnsmasq() else {
        eprintln!("SKIPPED: dnsmasq is not installed (apt-get install dnsmasq-base; .ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let port = free_port();
    let mut server = start(&dnsmasq, dir.path(), port);
    std::fs::write(
        control.join("dnsservers"),
        format!("# the test's dnsmasq\n127.0.0.1:{port}\n"),
    )
    .unwrap();

    let config = qmail_io_real::dns::resolver_config(&control).await.unwrap();
    assert_eq!(
        config.nameservers,
        vec![format!("127.0.0.1:{port}").parse().unwrap()]
    );
    let mut quick = config.clone();
    quick.timeout = Duration::from_millis(200);
    quick.attempts = 1;
    let probe = StubResolver::new(RealEnv::new(), quick);
    // Wait (bounded) until dnsmasq answers.
    let started = Instant::now();
    loop {
        if probe.addrs("example.test").await.is_ok() {
            break;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("dnsmasq exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dnsmasq did not answer on 127.0.0.1:{port} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = qmail_io_real::dns::resolver(RealEnv::new(), &control)
        .await
        .unwrap();
    let mx = |preference, exchange: &str| Mx {
        preference,
        exchange: exchange.into(),
    };
    let example_mx = vec![
        mx(10, "mx1.example.test"),
        mx(10, "mx2.example.test"),
        mx(20, "backup.example.test"),
    ];
    // MX, equal preferences both kept.
    assert_eq!(sorted(r.mx("example.test").await.unwrap()), example_mx);
    // The null MX.
    assert_eq!(r.mx("null.example.test").await, Ok(vec![mx(0, "")]));
    // A and AAAA, IPv4 first; AAAA alone.
    assert_eq!(
        r.addrs("mx1.example.test").await,
        Ok(ips(&["127.0.0.11", "fd00::11"]))
    );
    assert_eq!(r.addrs("v6.example.test").await, Ok(ips(&["fd00::6"])));
    // CNAMEs: to a name with MX records, to a name with addresses.
    assert_eq!(
        sorted(r.mx("alias.example.test").await.unwrap()),
        example_mx
    );
    assert_eq!(
        r.addrs("www.example.test").await,
        Ok(ips(&["127.0.0.11", "fd00::11"]))
    );
    // NODATA: the name exists, without MX records.
    assert_eq!(r.mx("mx2.example.test").await, Ok(vec![]));
    // NXDOMAIN.
    assert_eq!(
        r.mx("nowhere.example.test").await,
        Err(DnsError::NotFound("nowhere.example.test".into()))
    );
    assert_eq!(
        r.addrs("nowhere.example.test").await,
        Err(DnsError::NotFound("nowhere.example.test".into()))
    );
    // 60 A records do not fit in 512 bytes: dnsmasq truncates, TCP brings
    // them all.
    let mut big = r.addrs("big.example.test").await.unwrap();
    big.sort();
    let want: Vec<IpAddr> = (1..=60)
        .map(|i| format!("127.0.1.{i}").parse().unwrap())
        .collect();
    assert_eq!(big, want);

    // A server that stops answering is a temporary failure.
    drop(server);
    let mut dead = r.config().clone();
    dead.timeout = Duration::from_millis(300);
    let dead = StubResolver::new(RealEnv::new(), dead);
    match dead.mx("example.test").await {
        Err(DnsError::Temporary(_)) => {}
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_dnsservers_line_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dnsservers"), "127.0.0.1:5353\nns1:53\n").unwrap();
    let e = qmail_io_real::dns::resolver_config(dir.path())
        .await
        .unwrap_err()
        .to_string();
    let file = dir.path().join("dnsservers");
    assert!(
        e.starts_with(&format!("{}:2: not an IPv4 address", file.display())),
        "{e}"
    );
}

#[tokio::test]
async fn without_dnsservers_the_system_resolv_conf_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let got = qmail_io_real::dns::resolver_config(dir.path())
        .await
        .unwrap();
    let want = match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => {
            qmail_core::dns::config::parse_resolv_conf(Path::new("/etc/resolv.conf"), &text).config
        }
        Err(_) => qmail_core::dns::ResolverConfig::localhost(),
    };
    assert_eq!(got, want);
    assert!(!got.nameservers.is_empty());
}
