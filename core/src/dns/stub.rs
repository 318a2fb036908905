//! The stub resolver: asks the configured recursive nameservers over the
//! `Net` trait, so the simulation sees (and can drop, delay or forge) every
//! packet.
//!
//! One lookup is a sequence of queries (one more per CNAME the server did not
//! follow itself). One query is tried `attempts` times over the nameserver
//! list in order, each try a fresh UDP socket on a random port with a random
//! id (both from `Env::rng()`), waiting `timeout` for the answer; replies that
//! are not the answer (see [`message::check_reply`]) are ignored and the wait
//! goes on. A truncated answer is asked again over TCP from the same server.
//! NOERROR and NXDOMAIN end the query; a server failure (SERVFAIL, REFUSED,
//! ...), a timeout or a TCP error moves on to the next try.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::config::ResolverConfig;
use super::message::{self, Outcome, Question, Reply};
use super::{DnsError, Mx, Resolve};
use crate::env::{Env, Net, NetUdp, Rng};

/// Attempts at binding a random source port before taking one the OS picks.
const PORT_TRIES: usize = 4;
/// The lowest source port chosen (below are the well-known and registered
/// ports a resolver should not squat on).
const MIN_SOURCE_PORT: u16 = 1024;

/// The stub resolver over an environment's network.
#[derive(Clone)]
pub struct StubResolver<E: Env> {
    env: E,
    config: Arc<ResolverConfig>,
}

/// How one query ended.
enum QueryEnd {
    Answer {
        nxdomain: bool,
        answers: Vec<Record>,
    },
    Failed(String),
}

/// How one try (one server) ended without an answer.
enum TryEnd {
    Answer {
        nxdomain: bool,
        answers: Vec<Record>,
    },
    Truncated,
    Failed(String),
}

impl<E: Env> StubResolver<E> {
    pub fn new(env: E, config: ResolverConfig) -> Self {
        StubResolver {
            env,
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// The records of type `rtype` for `domain`, CNAMEs followed.
    /// `Ok(vec![])` is NODATA.
    pub async fn lookup(&self, domain: &str, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let Some(mut q) = Question::new(domain, rtype) else {
            // A string that cannot be encoded as a DNS name names nothing.
            return Err(DnsError::NotFound(domain.to_string()));
        };
        let mut hops = 0;
        loop {
            let (nxdomain, answers) = match self.query(&q).await {
                QueryEnd::Answer { nxdomain, answers } => (nxdomain, answers),
                QueryEnd::Failed(why) => {
                    return Err(DnsError::Temporary(format!("{domain} {rtype}: {why}")));
                }
            };
            match message::interpret(&q, nxdomain, &answers, &mut hops) {
                Outcome::Found(records) => return Ok(records),
                Outcome::NoData => return Ok(Vec::new()),
                Outcome::NxDomain(end) => {
                    return Err(DnsError::NotFound(not_found_name(domain, &end)));
                }
                Outcome::Cname(next) => q = q.for_name(next),
                Outcome::ChainTooLong => {
                    return Err(DnsError::Temporary(format!(
                        "{domain} {rtype}: CNAME chain longer than {}",
                        message::MAX_CNAME_HOPS
                    )));
                }
                // query() only returns answers that interpret as related.
                Outcome::Unrelated => {
                    return Err(DnsError::Temporary(format!(
                        "{domain} {rtype}: answer for another name"
                    )));
                }
            }
        }
    }

    /// One question, tried over the nameservers `attempts` times.
    async fn query(&self, q: &Question) -> QueryEnd {
        let mut last = String::from("no nameserver configured");
        for _ in 0..self.config.attempts.max(1) {
            for &server in &self.config.nameservers {
                let deadline = Instant::now() + self.config.timeout;
                let end = match self.try_udp(q, server, deadline).await {
                    TryEnd::Truncated => {
                        // The TCP exchange gets a fresh full timeout.
                        let deadline = Instant::now() + self.config.timeout;
                        self.try_tcp(q, server, deadline).await
                    }
                    end => end,
                };
                match end {
                    TryEnd::Answer { nxdomain, answers } => {
                        return QueryEnd::Answer { nxdomain, answers };
                    }
                    TryEnd::Failed(why) => {
                        tracing::debug!(%server, name = %q.name, rtype = %q.rtype, "DNS try failed: {why}");
                        last = format!("{server}: {why}");
                    }
                    TryEnd::Truncated => {
                        last = format!("{server}: truncated answer over TCP");
                    }
                }
            }
        }
        QueryEnd::Failed(last)
    }

    fn random_id(&self) -> u16 {
        self.env.rng().below(1 << 16) as u16
    }

    async fn bind(&self, server: SocketAddr) -> std::io::Result<<E::Net as Net>::Udp> {
        let any = match server.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let span = u64::from(u16::MAX - MIN_SOURCE_PORT) + 1;
        for _ in 0..PORT_TRIES {
            let port = MIN_SOURCE_PORT + self.env.rng().below(span) as u16;
            if let Ok(sock) = self.env.net().bind_udp(SocketAddr::new(any, port)).await {
                return Ok(sock);
            }
        }
        self.env.net().bind_udp(SocketAddr::new(any, 0)).await
    }

    async fn try_udp(&self, q: &Question, server: SocketAddr, deadline: Instant) -> TryEnd {
        let sock = match self.bind(server).await {
            Ok(s) => s,
            Err(e) => return TryEnd::Failed(format!("cannot bind a UDP socket: {e}")),
        };
        let id = self.random_id();
        let wire = message::encode_query(id, q);
        match timeout_at(deadline, sock.send_to(&wire, server)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return TryEnd::Failed(format!("send: {e}")),
            Err(_) => return TryEnd::Failed("timed out sending".into()),
        }
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) = match timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Ok(Ok(got)) => got,
                // An ICMP error (port unreachable) comes back as a receive
                // error on some systems: this server is not answering.
                Ok(Err(e)) => return TryEnd::Failed(format!("receive: {e}")),
                Err(_) => return TryEnd::Failed("timed out".into()),
            };
            if from != server {
                tracing::debug!(%server, %from, "DNS reply from another address ignored");
                continue;
            }
            match self.judge(&buf[..n], id, q) {
                Some(end) => return end,
                None => continue,
            }
        }
    }

    async fn try_tcp(&self, q: &Question, server: SocketAddr, deadline: Instant) -> TryEnd {
        let id = self.random_id();
        let wire = message::encode_query(id, q);
        let exchange = async {
            let mut s = self.env.net().connect(server).await?;
            let mut framed = Vec::with_capacity(wire.len() + 2);
            framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
            framed.extend_from_slice(&wire);
            s.write_all(&framed).await?;
            s.flush().await?;
            let len = s.read_u16().await?;
            let mut body = vec![0u8; usize::from(len)];
            s.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        let body = match timeout_at(deadline, exchange).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return TryEnd::Failed(format!("TCP: {e}")),
            Err(_) => return TryEnd::Failed("timed out over TCP".into()),
        };
        // Over TCP there is no one else to wait for: a bad answer fails the try.
        match self.judge(&body, id, q) {
            Some(TryEnd::Truncated) => TryEnd::Failed("truncated answer over TCP".into()),
            Some(end) => end,
            None => TryEnd::Failed("bad answer over TCP".into()),
        }
    }

    /// What a reply means for this try, or `None` if it is to be ignored.
    fn judge(&self, bytes: &[u8], id: u16, q: &Question) -> Option<TryEnd> {
        match message::check_reply(bytes, id, q) {
            Reply::Mismatch(why) => {
                tracing::debug!(name = %q.name, "DNS reply ignored: {why}");
                None
            }
            Reply::Truncated => Some(TryEnd::Truncated),
            Reply::ServerFailure(code) => Some(TryEnd::Failed(format!(
                "server answered {}",
                rcode_name(code)
            ))),
            Reply::Answer { nxdomain, answers } => {
                if message::interpret(q, nxdomain, &answers, &mut 0) == Outcome::Unrelated {
                    tracing::debug!(name = %q.name, "DNS reply ignored: records for another name");
                    return None;
                }
                Some(TryEnd::Answer { nxdomain, answers })
            }
        }
    }
}

/// The mnemonic DNS operators know an rcode by (RFC 1035, RFC 2136).
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

fn not_found_name(domain: &str, end: &hickory_proto::rr::Name) -> String {
    let end = message::name_to_string(end);
    let start = domain.strip_suffix('.').unwrap_or(domain);
    if end.eq_ignore_ascii_case(start) {
        start.to_string()
    } else {
        format!("{start} (CNAME to {end})")
    }
}

impl<E: Env> Resolve for StubResolver<E> {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        let records = self.lookup(domain, RecordType::MX).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference(),
                    exchange: message::name_to_string(mx.exchange()),
                }),
                _ => None,
            })
            .collect())
    }

    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        // A first: if the name does not exist, AAAA need not be asked.
        let v4 = self.lookup(host, RecordType::A).await;
        if let Err(DnsError::NotFound(n)) = v4 {
            return Err(DnsError::NotFound(n));
        }
        let v6 = self.lookup(host, RecordType::AAAA).await;
        let mut out: Vec<IpAddr> = Vec::new();
        let mut temporary = None;
        let mut not_found = None;
        for r in [v4, v6] {
            match r {
                Ok(records) => out.extend(records.into_iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(DnsError::Temporary(why)) => temporary = Some(why),
                Err(DnsError::NotFound(n)) => not_found = Some(n),
            }
        }
        // Addresses of one family are enough to deliver; a failure of the
        // other only matters when nothing was found.
        if !out.is_empty() {
            return Ok(out);
        }
        if let Some(why) = temporary {
            return Err(DnsError::Temporary(why));
        }
        if let Some(n) = not_found {
            return Err(DnsError::NotFound(n));
        }
        Ok(out)
    }
}
