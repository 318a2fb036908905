//! The stub resolver's message handling, free of I/O: the query it sends,
//! whether a datagram is the answer to it, and what that answer says.
//!
//! Everything a nameserver (or anyone spoofing one) sends is untrusted: a
//! datagram counts as the answer only if its id, QR bit, opcode and question
//! match the query; anything else is [`Reply::Mismatch`] and the caller keeps
//! waiting. No input makes these functions panic (a proptest checks it).

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// How many CNAMEs one lookup follows, across all its queries, before it
/// gives up (temporarily: the loop may be a misconfiguration being fixed).
pub const MAX_CNAME_HOPS: usize = 8;

/// What one query asks: a fully qualified, lowercase name and a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub rtype: RecordType,
}

impl Question {
    /// The question for `domain` (with or without its trailing dot), or
    /// `None` if `domain` cannot be a DNS name (bad characters, a label
    /// over 63 bytes, the whole over 255).
    pub fn new(domain: &str, rtype: RecordType) -> Option<Question> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return None;
        }
        let mut name = Name::from_ascii(domain.to_ascii_lowercase()).ok()?;
        name.set_fqdn(true);
        // A name of empty labels ("a..b") is not a domain.
        if name.iter().any(|l| l.is_empty()) {
            return None;
        }
        Some(Question { name, rtype })
    }

    /// The same type asked of another name (the target of a CNAME).
    pub fn for_name(&self, name: Name) -> Question {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        Question {
            name,
            rtype: self.rtype,
        }
    }

    fn matches(&self, q: &Query) -> bool {
        q.query_type() == self.rtype
            && q.query_class() == DNSClass::IN
            && q.name().eq_ignore_root(&self.name)
    }
}

/// The wire form of a recursive query for `q` with this id.
pub fn encode_query(id: u16, q: &Question) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(q.name.clone(), q.rtype));
    // Encoding a message we built from a valid name cannot fail.
    m.to_vec().unwrap_or_default()
}

/// What a datagram (or TCP message) received while waiting for the answer to
/// a query is.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Not the answer to this query (another id, not a response, another
    /// question, undecodable): ignore it and keep waiting.
    Mismatch(&'static str),
    /// The answer did not fit in a datagram: ask again over TCP.
    Truncated,
    /// The server could not answer (SERVFAIL, REFUSED, ...): try another.
    ServerFailure(ResponseCode),
    /// An answer: the name does not exist (NXDOMAIN), or does (NOERROR)
    /// with this answer section.
    Answer {
        nxdomain: bool,
        answers: Vec<Record>,
    },
}

/// Decides what `bytes` is, for the query with `id` asking `q`.
pub fn check_reply(bytes: &[u8], id: u16, q: &Question) -> Reply {
    let mut d = BinDecoder::new(bytes);
    let Ok(header) = Header::read(&mut d) else {
        return Reply::Mismatch("shorter than a DNS header");
    };
    if header.id() != id {
        return Reply::Mismatch("another query id");
    }
    if header.message_type() != MessageType::Response {
        return Reply::Mismatch("not a response");
    }
    if header.op_code() != OpCode::Query {
        return Reply::Mismatch("another opcode");
    }
    if header.query_count() != 1 {
        return Reply::Mismatch("not exactly one question");
    }
    match Query::read(&mut d) {
        Ok(query) if q.matches(&query) => {}
        Ok(_) => return Reply::Mismatch("another question"),
        Err(_) => return Reply::Mismatch("undecodable question"),
    }
    // A truncated answer may be cut anywhere after the question.
    if header.truncated() {
        return Reply::Truncated;
    }
    let nxdomain = match header.response_code() {
        ResponseCode::NoError => false,
        ResponseCode::NXDomain => true,
        code => return Reply::ServerFailure(code),
    };
    match Message::from_vec(bytes) {
        Ok(m) => Reply::Answer {
            nxdomain,
            answers: m.answers().to_vec(),
        },
        Err(_) => Reply::Mismatch("undecodable records"),
    }
}

/// What an answer says about the question, CNAMEs followed as far as the
/// answer section goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The records of the asked type (at the end of the chain), in the
    /// order the server gave them.
    Found(Vec<RData>),
    /// The name exists and has no records of this type.
    NoData,
    /// The name, or the end of its CNAME chain (given), does not exist.
    NxDomain(Name),
    /// The chain ends at this name with nothing for it in the answer: ask
    /// again for it.
    Cname(Name),
    /// The answer section holds records, none of them for the question's
    /// name: a lie or a confusion, treated like a mismatched reply.
    Unrelated,
    /// More than the allowed CNAMEs (counting `hops` already followed).
    ChainTooLong,
}

/// Reads an answer for `q`. `hops` counts the CNAMEs followed so far in this
/// lookup and is advanced by those followed here.
pub fn interpret(q: &Question, nxdomain: bool, answers: &[Record], hops: &mut usize) -> Outcome {
    if !answers.is_empty() && !answers.iter().any(|r| r.name().eq_ignore_root(&q.name)) {
        return Outcome::Unrelated;
    }
    let mut current = q.name.clone();
    loop {
        let found: Vec<RData> = answers
            .iter()
            .filter(|r| r.record_type() == q.rtype && r.name().eq_ignore_root(&current))
            .map(|r| r.data().clone())
            .collect();
        if !found.is_empty() {
            return Outcome::Found(found);
        }
        let next = answers.iter().find_map(|r| match r.data() {
            RData::CNAME(c) if r.name().eq_ignore_root(&current) => Some(c.0.clone()),
            _ => None,
        });
        match next {
            Some(target) => {
                *hops += 1;
                if *hops > MAX_CNAME_HOPS {
                    return Outcome::ChainTooLong;
                }
                current = target;
            }
            None => break,
        }
    }
    if nxdomain {
        Outcome::NxDomain(current)
    } else if current.eq_ignore_root(&q.name) {
        Outcome::NoData
    } else {
        Outcome::Cname(current)
    }
}

/// A name as the rest of qmail-rs writes it: lowercase, no trailing dot;
/// the root is `""`.
pub fn name_to_string(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').unwrap_or(&s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn rec(owner: &str, data: RData) -> Record {
        Record::from_rdata(name(owner), 300, data)
    }

    fn reply_to(query: &[u8], edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut m = Message::new();
        m.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_recursion_available(true)
            .add_queries(q.queries().to_vec());
        edit(&mut m);
        m.to_vec().unwrap()
    }

    #[test]
    fn question_normalises_and_refuses_non_names() {
        let q = Question::new("Mail.Example.COM.", RecordType::MX).unwrap();
        assert_eq!(q.name.to_ascii(), "mail.example.com.");
        assert!(q.name.is_fqdn());
        for bad in [
            "",
            ".",
            "a..b",
            "sp ace.com",
            "x\u{e9}.com",
            "a@b",
            &"a".repeat(64),
        ] {
            assert_eq!(Question::new(bad, RecordType::A), None, "{bad:?}");
        }
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(Question::new(&long, RecordType::A), None);
    }

    #[test]
    fn query_round_trips_with_its_id_and_question() {
        let q = Question::new("example.com", RecordType::AAAA).unwrap();
        let wire = encode_query(0xbeef, &q);
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.id(), 0xbeef);
        assert_eq!(m.message_type(), MessageType::Query);
        assert!(m.recursion_desired());
        assert_eq!(m.queries().len(), 1);
        assert!(q.matches(&m.queries()[0]));
    }

    #[test]
    fn only_the_matching_reply_is_accepted() {
        let q = Question::new("example.com", RecordType::A).unwrap();
        let wire = encode_query(7, &q);
        let a = rec("example.com.", RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
        let good = reply_to(&wire, |m| {
            m.add_answer(a.clone());
        });
        assert_eq!(
            check_reply(&good, 7, &q),
            Reply::Answer {
                nxdomain: false,
                answers: vec![a.clone()]
            }
        );
        // The question's case does not matter (0x20 randomisation, servers
        // that echo case differently).
        let upper = Question::new("EXAMPLE.com", RecordType::A).unwrap();
        assert!(matches!(
            check_reply(&good, 7, &upper),
            Reply::Answer { .. }
        ));

        assert_eq!(
            check_reply(&good, 8, &q),
            Reply::Mismatch("another query id")
        );
        assert_eq!(check_reply(&wire, 7, &q), Reply::Mismatch("not a response"));
        let other = Question::new("example.net", RecordType::A).unwrap();
        assert_eq!(
            check_reply(&good, 7, &other),
            Reply::Mismatch("another question")
        );
        let mx = Question::new("example.com", RecordType::MX).unwrap();
        assert_eq!(
            check_reply(&good, 7, &mx),
            Reply::Mismatch("another question")
        );
        assert_eq!(
            check_reply(&good[..5], 7, &q),
            Reply::Mismatch("shorter than a DNS header")
        );
        let mut cut = good.clone();
        cut.truncate(good.len() - 3);
        assert_eq!(
            check_reply(&cut, 7, &q),
            Reply::Mismatch("undecodable records")
        );
        let notify = reply_to(&wire, |m| {
            m.set_op_code(OpCode::Notify);
        });
        assert_eq!(
            check_reply(&notify, 7, &q),
            Reply::Mismatch("another opcode")
        );
        let two = reply_to(&wire, |m| {
            m.add_query(Query::query(name("example.com."), RecordType::A));
        });
        assert_eq!(
            check_reply(&two, 7, &q),
            Reply::Mismatch("not exactly one question")
        );
    }

    #[test]
    fn rcodes_and_truncation() {
        let q = Question::new("example.com", RecordType::MX).unwrap();
        let wire = encode_query(1, &q);
        for (code, want) in [
            (
                ResponseCode::ServFail,
                Reply::ServerFailure(ResponseCode::ServFail),
            ),
            (
                ResponseCode::Refused,
                Reply::ServerFailure(ResponseCode::Refused),
            ),
            (
                ResponseCode::FormErr,
                Reply::ServerFailure(ResponseCode::FormErr),
            ),
            (
                ResponseCode::NXDomain,
                Reply::Answer {
                    nxdomain: true,
                    answers: vec![],
                },
            ),
        ] {
            let r = reply_to(&wire, |m| {
                m.set_response_code(code);
            });
            assert_eq!(check_reply(&r, 1, &q), want);
        }
        let mut tc = reply_to(&wire, |m| {
            m.set_truncated(true);
            m.add_answer(rec(
                "example.com.",
                RData::MX(MX::new(10, name("mx.example.com."))),
            ));
        });
        // Cut inside the record: still recognised as truncated.
        tc.truncate(tc.len() - 4);
        assert_eq!(check_reply(&tc, 1, &q), Reply::Truncated);
    }

    fn mx(pref: u16, ex: &str) -> RData {
        RData::MX(MX::new(pref, name(ex)))
    }

    fn cname(to: &str) -> RData {
        RData::CNAME(CNAME(name(to)))
    }

    #[test]
    fn interpret_found_nodata_nxdomain_and_chains() {
        let q = Question::new("example.com", RecordType::MX).unwrap();
        let mut hops = 0;
        let recs = vec![
            rec("example.com.", mx(10, "a.example.com.")),
            rec("EXAMPLE.com.", mx(10, "b.example.com.")),
            rec("other.example.", mx(5, "liar.example.")),
        ];
        assert_eq!(
            interpret(&q, false, &recs, &mut hops),
            Outcome::Found(vec![mx(10, "a.example.com."), mx(10, "b.example.com.")])
        );
        assert_eq!(interpret(&q, false, &[], &mut hops), Outcome::NoData);
        assert_eq!(
            interpret(&q, true, &[], &mut hops),
            Outcome::NxDomain(q.name.clone())
        );
        // A record of another type for the name: the name exists, no MX.
        let a = rec("example.com.", RData::A(A(Ipv4Addr::LOCALHOST)));
        assert_eq!(interpret(&q, false, &[a], &mut hops), Outcome::NoData);
        assert_eq!(hops, 0);

        // A chain resolved inside one answer, in any order.
        let chain = vec![
            rec("c.example.", mx(0, ".")),
            rec("b.example.", cname("c.example.")),
            rec("example.com.", cname("b.example.")),
        ];
        assert_eq!(
            interpret(&q, false, &chain, &mut hops),
            Outcome::Found(vec![mx(0, ".")])
        );
        assert_eq!(hops, 2);
        // A chain that stops: ask again for its end.
        let mut hops = 0;
        let partial = vec![rec("example.com.", cname("b.example."))];
        assert_eq!(
            interpret(&q, false, &partial, &mut hops),
            Outcome::Cname(name("b.example."))
        );
        // ... unless the server says the end does not exist.
        assert_eq!(
            interpret(&q, true, &partial, &mut 0),
            Outcome::NxDomain(name("b.example."))
        );
        // A loop stops at the bound.
        let looped = vec![
            rec("example.com.", cname("x.example.")),
            rec("x.example.", cname("example.com.")),
        ];
        assert_eq!(interpret(&q, false, &looped, &mut 0), Outcome::ChainTooLong);
        let mut hops = MAX_CNAME_HOPS;
        assert_eq!(
            interpret(&q, false, &partial, &mut hops),
            Outcome::ChainTooLong
        );
    }

    #[test]
    fn answers_for_another_name_are_unrelated() {
        let q = Question::new("example.com", RecordType::AAAA).unwrap();
        let lie = vec![rec("bank.example.", RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)))];
        assert_eq!(interpret(&q, false, &lie, &mut 0), Outcome::Unrelated);
    }

    #[test]
    fn names_print_lowercase_without_the_dot() {
        assert_eq!(name_to_string(&name("MX.Example.COM.")), "mx.example.com");
        assert_eq!(name_to_string(&Name::root()), "");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No datagram makes the reply check panic, and only a well-formed
        /// response to this very question is taken as an answer.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), id: u16) {
            let q = Question::new("example.com", RecordType::MX).unwrap();
            if let Reply::Answer { nxdomain, answers } = check_reply(&bytes, id, &q) {
                let m = Message::from_vec(&bytes).unwrap();
                prop_assert_eq!(m.id(), id);
                prop_assert_eq!(m.message_type(), MessageType::Response);
                prop_assert!(q.matches(&m.queries()[0]));
                let _ = interpret(&q, nxdomain, &answers, &mut 0);
            }
        }

        /// A valid reply with random bytes flipped never panics either (random
        /// bytes rarely get past the header checks; these do).
        #[test]
        fn mutated_replies_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let q = Question::new("example.com", RecordType::MX).unwrap();
            let wire = encode_query(42, &q);
            let mut r = reply_to(&wire, |m| {
                m.add_answer(rec("example.com.", cname("b.example.")));
                m.add_answer(rec("b.example.", mx(10, "mx.b.example.")));
                m.add_answer(rec("b.example.", mx(20, "mx2.b.example.")));
            });
            for (i, b) in flips {
                let i = i.index(r.len());
                r[i] = b;
            }
            r.truncate(cut.index(r.len() + 1));
            if let Reply::Answer { nxdomain, answers } = check_reply(&r, 42, &q) {
                let mut hops = 0;
                let _ = interpret(&q, nxdomain, &answers, &mut hops);
                prop_assert!(hops <= MAX_CNAME_HOPS + 1);
            }
        }
    }
}
