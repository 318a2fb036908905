//! A recursive DNS server host for the simulation: answers from a table over
//! UDP and TCP on port 53 and, by fault knob, misbehaves the ways real
//! nameservers and spoofers do.
//!
//! Run [`DnsServer::serve`] as a turmoil host; point resolvers at that host's
//! address (port [`DNS_PORT`]). The table and the knobs live behind the
//! handle, so a scenario can change them mid-run (turn faults on for a window,
//! then heal). Every query is logged ([`DnsServer::log`]).
//!
//! Each UDP query suffers at most one fault, drawn from the server's own
//! seeded generator in the order of [`DnsFault::ALL`]. TCP is always honest:
//! a truncated UDP answer is followed by the full answer over TCP.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, UdpSocket};

/// The port the server listens on, UDP and TCP.
pub const DNS_PORT: u16 = 53;
/// How far the server follows CNAMEs inside its own table before it stops
/// and answers with the chain so far.
const SERVER_CHAIN_LIMIT: usize = 16;

/// The records of one name. A name present in the table with no record of
/// the asked type answers NODATA; a name absent answers NXDOMAIN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub mx: Vec<(u16, String)>,
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    /// An alias: a name with a CNAME has no other records (RFC 1034).
    pub cname: Option<String>,
}

/// The server's data. Names are kept lowercase without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    names: BTreeMap<String, Node>,
    /// Whether answers follow CNAMEs inside the table (as recursive servers
    /// do) or give only the first CNAME, leaving the chain to the client.
    pub follow_cnames: bool,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            names: BTreeMap::new(),
            follow_cnames: true,
        }
    }
}

fn key(name: &str) -> String {
    let n = name.strip_suffix('.').unwrap_or(name);
    n.to_ascii_lowercase()
}

impl Zone {
    pub fn new() -> Self {
        Self::default()
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.names.entry(key(name)).or_default()
    }

    /// Adds an MX record; `exchange` `""` or `"."` makes a null MX.
    pub fn mx(&mut self, name: &str, preference: u16, exchange: &str) -> &mut Self {
        self.node(name).mx.push((preference, key(exchange)));
        self
    }
    pub fn a(&mut self, name: &str, ip: Ipv4Addr) -> &mut Self {
        self.node(name).a.push(ip);
        self
    }
    pub fn aaaa(&mut self, name: &str, ip: Ipv6Addr) -> &mut Self {
        self.node(name).aaaa.push(ip);
        self
    }
    pub fn cname(&mut self, name: &str, target: &str) -> &mut Self {
        self.node(name).cname = Some(key(target));
        self
    }
    /// Makes `name` exist with no records (every question about it is NODATA).
    pub fn exists(&mut self, name: &str) -> &mut Self {
        self.node(name);
        self
    }
    /// Removes a name (questions about it become NXDOMAIN).
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.names.remove(&key(name));
        self
    }

    /// The answer section and NXDOMAIN flag for a question.
    pub fn answer(&self, qname: &str, rtype: RecordType) -> (Vec<Record>, bool) {
        let mut answers = Vec::new();
        let mut current = key(qname);
        for _ in 0..SERVER_CHAIN_LIMIT {
            let Some(node) = self.names.get(&current) else {
                return (answers, true);
            };
            if let (Some(target), false) = (&node.cname, rtype == RecordType::CNAME) {
                answers.push(record(&current, RData::CNAME(CNAME(name(target)))));
                if !self.follow_cnames {
                    break;
                }
                current = target.clone();
                continue;
            }
            answers.extend(
                records_of(node, rtype)
                    .into_iter()
                    .map(|d| record(&current, d)),
            );
            break;
        }
        (answers, false)
    }
}

fn name(s: &str) -> Name {
    // The table only holds names the scenario wrote; a bad one is a bug in
    // the scenario, shown as the root rather than a panic inside the host.
    let mut n = Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 300, data)
}

fn records_of(node: &Node, rtype: RecordType) -> Vec<RData> {
    match rtype {
        RecordType::MX => node
            .mx
            .iter()
            .map(|(p, ex)| RData::MX(MX::new(*p, name(ex))))
            .collect(),
        RecordType::A => node.a.iter().map(|ip| RData::A(A(*ip))).collect(),
        RecordType::AAAA => node.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
        RecordType::CNAME => node
            .cname
            .iter()
            .map(|t| RData::CNAME(CNAME(name(t))))
            .collect(),
        _ => Vec::new(),
    }
}

/// One way the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DnsFault {
    /// No answer at all: the query times out.
    Timeout,
    /// SERVFAIL.
    ServFail,
    /// The UDP answer has the TC bit and no records; TCP has the full answer.
    Truncate,
    /// A reply with another query id.
    WrongId,
    /// A reply to another question.
    WrongQuestion,
    /// A reply to this question whose records are for another name.
    Lie,
    /// Bytes that are not a DNS message.
    Garbage,
}

impl DnsFault {
    pub const ALL: [DnsFault; 7] = [
        DnsFault::Timeout,
        DnsFault::ServFail,
        DnsFault::Truncate,
        DnsFault::WrongId,
        DnsFault::WrongQuestion,
        DnsFault::Lie,
        DnsFault::Garbage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DnsFault::Timeout => "timeout",
            DnsFault::ServFail => "servfail",
            DnsFault::Truncate => "truncate",
            DnsFault::WrongId => "wrong-id",
            DnsFault::WrongQuestion => "wrong-question",
            DnsFault::Lie => "lie",
            DnsFault::Garbage => "garbage",
        }
    }

    /// Whether the fault is a forged reply, after which the true answer may
    /// still come (see [`DnsFaults::then_answer`]).
    pub fn is_forgery(self) -> bool {
        matches!(
            self,
            DnsFault::WrongId | DnsFault::WrongQuestion | DnsFault::Lie | DnsFault::Garbage
        )
    }
}

/// The fault knobs: each fault's chance per UDP query (0.0 never, 1.0
/// always).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsFaults {
    pub chance: BTreeMap<DnsFault, f64>,
    /// After a forged reply, also send the true answer (as when a spoofer
    /// races the real server). Without it the forged reply is all there is.
    pub then_answer: bool,
}

impl DnsFaults {
    /// An honest server.
    pub fn none() -> Self {
        Self::default()
    }

    /// This one fault on every query.
    pub fn always(fault: DnsFault) -> Self {
        Self::none().with(fault, 1.0)
    }

    pub fn with(mut self, fault: DnsFault, chance: f64) -> Self {
        self.chance.insert(fault, chance);
        self
    }

    pub fn then_answer(mut self, yes: bool) -> Self {
        self.then_answer = yes;
        self
    }

    /// A swarm choice: each fault enabled or not as `seed` decides, at a
    /// chance of up to 30% per query, so lookups still succeed in time.
    pub fn swarm(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut f = Self::none().then_answer(rng.random_bool(0.5));
        for fault in DnsFault::ALL {
            if rng.random_bool(0.5) {
                f.chance.insert(fault, rng.random_range(0.02..0.3));
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.chance.values().all(|c| *c <= 0.0)
    }

    fn draw(&self, rng: &mut StdRng) -> Option<DnsFault> {
        // One draw per fault, in a fixed order, whatever the chances, so
        // the server's random stream does not depend on the knobs' values.
        let mut hit = None;
        for fault in DnsFault::ALL {
            let roll: f64 = rng.random();
            let chance = self.chance.get(&fault).copied().unwrap_or(0.0);
            if hit.is_none() && roll < chance {
                hit = Some(fault);
            }
        }
        hit
    }
}

/// One query the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLog {
    pub tcp: bool,
    /// The query's id and where it came from.
    pub id: u16,
    pub from: SocketAddr,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub rtype: RecordType,
    pub fault: Option<DnsFault>,
}

struct State {
    zone: Zone,
    faults: DnsFaults,
    rng: StdRng,
    log: Vec<QueryLog>,
}

/// The handle of one simulated DNS server (cheap to clone; clones share
/// the table, the knobs and the log).
#[derive(Clone)]
pub struct DnsServer(Arc<Mutex<State>>);

impl DnsServer {
    pub fn new(zone: Zone, faults: DnsFaults, seed: u64) -> Self {
        DnsServer(Arc::new(Mutex::new(State {
            zone,
            faults,
            rng: StdRng::seed_from_u64(seed),
            log: Vec::new(),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: DnsFaults) {
        self.state().faults = faults;
    }

    pub fn faults(&self) -> DnsFaults {
        self.state().faults.clone()
    }

    /// Changes the table.
    pub fn edit_zone(&self, f: impl FnOnce(&mut Zone)) {
        f(&mut self.state().zone);
    }

    /// Every query received so far.
    pub fn log(&self) -> Vec<QueryLog> {
        self.state().log.clone()
    }

    /// Serves UDP and TCP on port 53 until the host stops.
    pub async fn serve(self) -> io::Result<()> {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, DNS_PORT));
        let udp = UdpSocket::bind(any).await?;
        let tcp = TcpListener::bind(any).await?;
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, from)) = tcp.accept().await {
                tokio::spawn(me.clone().serve_tcp(stream, from));
            }
        });
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) = udp.recv_from(&mut buf).await?;
            for reply in self.respond(&buf[..n], false, from) {
                udp.send_to(&reply, from).await?;
            }
        }
    }

    async fn serve_tcp(self, mut s: turmoil::net::TcpStream, from: SocketAddr) {
        loop {
            let Ok(len) = s.read_u16().await else { return };
            let mut q = vec![0u8; usize::from(len)];
            if s.read_exact(&mut q).await.is_err() {
                return;
            }
            for reply in self.respond(&q, true, from) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if s.write_all(&framed).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The datagrams to send back for one query (none, one, or a forgery
    /// followed by the true answer).
    fn respond(&self, bytes: &[u8], tcp: bool, from: SocketAddr) -> Vec<Vec<u8>> {
        let Ok(query) = Message::from_vec(bytes) else {
            return Vec::new();
        };
        let Some(q) = query.queries().first().cloned() else {
            return Vec::new();
        };
        let mut st = self.state();
        let st = &mut *st;
        let fault = if tcp {
            None
        } else {
            st.faults.draw(&mut st.rng)
        };
        let qname = key(&q.name().to_ascii());
        st.log.push(QueryLog {
            tcp,
            id: query.id(),
            from,
            name: qname.clone(),
            rtype: q.query_type(),
            fault,
        });
        let (answers, nxdomain) = st.zone.answer(&qname, q.query_type());
        let honest = reply(&query, &q, nxdomain, answers.clone());
        let forged = match fault {
            None => return vec![encode(&honest)],
            Some(DnsFault::Timeout) => return Vec::new(),
            Some(DnsFault::ServFail) => {
                let mut m = reply(&query, &q, false, Vec::new());
                m.set_response_code(ResponseCode::ServFail);
                return vec![encode(&m)];
            }
            Some(DnsFault::Truncate) => {
                let mut m = reply(&query, &q, false, Vec::new());
                m.set_truncated(true);
                return vec![encode(&m)];
            }
            Some(DnsFault::WrongId) => {
                let mut m = reply(&query, &q, nxdomain, answers);
                m.set_id(
                    query
                        .id()
                        .wrapping_add(1 + (st.rng.next_u32() % 0xfffe) as u16),
                );
                encode(&m)
            }
            Some(DnsFault::WrongQuestion) => {
                let other = Query::query(name(&format!("other.{qname}")), q.query_type());
                let mut m = reply(&query, &other, nxdomain, answers);
                m.set_id(query.id());
                encode(&m)
            }
            Some(DnsFault::Lie) => {
                let liar = "liar.invalid";
                let data = match q.query_type() {
                    RecordType::MX => RData::MX(MX::new(0, name(liar))),
                    RecordType::AAAA => {
                        RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66)))
                    }
                    _ => RData::A(A(Ipv4Addr::new(192, 0, 2, 66))),
                };
                encode(&reply(&query, &q, false, vec![record(liar, data)]))
            }
            Some(DnsFault::Garbage) => {
                let len = 1 + (st.rng.next_u32() % 200) as usize;
                let mut junk = vec![0u8; len];
                st.rng.fill_bytes(&mut junk);
                junk
            }
        };
        if st.faults.then_answer {
            vec![forged, encode(&honest)]
        } else {
            vec![forged]
        }
    }
}

fn reply(query: &Message, q: &Query, nxdomain: bool, answers: Vec<Record>) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(if nxdomain {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        })
        .add_query(q.clone())
        .add_answers(answers);
    m
}

fn encode(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_answers_follow_cnames_and_tell_nxdomain_from_nodata() {
        let mut z = Zone::new();
        z.mx("example.com", 10, "mx.example.com")
            .a("mx.example.com", Ipv4Addr::new(10, 0, 0, 1))
            .cname("www.example.com", "mx.example.com")
            .exists("empty.example.com");
        let (a, nx) = z.answer("WWW.example.com.", RecordType::A);
        assert!(!nx);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].record_type(), RecordType::CNAME);
        assert_eq!(a[1].data(), &RData::A(A(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(
            z.answer("empty.example.com", RecordType::MX),
            (vec![], false)
        );
        assert_eq!(z.answer("nope.example.com", RecordType::MX), (vec![], true));
        z.follow_cnames = false;
        assert_eq!(z.answer("www.example.com", RecordType::A).0.len(), 1);
    }

    #[test]
    fn fault_draws_respect_chances() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(DnsFaults::none().draw(&mut rng), None);
        for f in DnsFault::ALL {
            assert_eq!(DnsFaults::always(f).draw(&mut rng), Some(f));
        }
        let half = DnsFaults::none().with(DnsFault::ServFail, 0.5);
        let hits = (0..1000).filter(|_| half.draw(&mut rng).is_some()).count();
        assert!((400..600).contains(&hits), "{hits}");
    }
}
