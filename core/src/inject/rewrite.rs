//! Completing an address as qmail-inject does (`qmail-header(5)`): source
//! routes are dropped, a trailing `.` or `@` goes, an address without a host
//! gets `@defaulthost`, a host ending in `+` gets `plusdomain` instead of
//! the `+`, and a host without dots gets `.defaultdomain`. `<>` and the
//! VERP marker `foo@[]` are left alone.

use super::token::{Tok, tokenize};

/// The names completion adds, each already split into tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `@defaulthost`.
    host: Vec<Tok>,
    /// `.defaultdomain`.
    domain: Vec<Tok>,
    /// `.plusdomain`.
    plus: Vec<Tok>,
}

impl Completion {
    /// From the values of `defaulthost`, `defaultdomain` and `plusdomain`.
    /// A value that does not split into tokens (say, `a)b`) is taken as one
    /// atom rather than refused: control files are the admin's word.
    pub fn new(defaulthost: &str, defaultdomain: &str, plusdomain: &str) -> Completion {
        Completion {
            host: prefixed(Tok::At, defaulthost),
            domain: prefixed(Tok::Dot, defaultdomain),
            plus: prefixed(Tok::Dot, plusdomain),
        }
    }

    /// Rewrites one address (the tokens between the angle brackets, or a
    /// bare address without its comments).
    pub fn complete(&self, addr: &mut Vec<Tok>) {
        addr.retain(|t| !matches!(t, Tok::Comment(_)));
        if addr.is_empty() {
            return;
        }
        if let [.., Tok::At, Tok::Literal(l)] = addr.as_slice()
            && l.is_empty()
        {
            return;
        }
        // A source route `@a,@b:` goes, up to its colon.
        if addr[0] == Tok::At {
            match addr.iter().position(|t| *t == Tok::Colon) {
                Some(c) => {
                    addr.drain(..=c);
                }
                None => addr.clear(),
            }
            if addr.is_empty() {
                return;
            }
        }
        if addr.last() == Some(&Tok::Dot) {
            addr.pop();
            if addr.is_empty() {
                return;
            }
        }
        if addr.last() == Some(&Tok::At) {
            addr.pop();
            if addr.is_empty() {
                return;
            }
        }
        if !addr.contains(&Tok::At) {
            addr.extend(self.host.iter().cloned());
        }
        if let Some(Tok::Atom(a)) = addr.last_mut()
            && a.last() == Some(&b'+')
        {
            a.pop();
            if a.is_empty() {
                addr.pop();
            }
            addr.extend(self.plus.iter().cloned());
        }
        let at = addr
            .iter()
            .rposition(|t| *t == Tok::At)
            .map_or(0, |p| p + 1);
        let host = &addr[at..];
        if !host.iter().any(|t| matches!(t, Tok::Dot | Tok::Literal(_))) {
            addr.extend(self.domain.iter().cloned());
        }
    }
}

fn prefixed(first: Tok, name: &str) -> Vec<Tok> {
    let mut v = vec![first];
    match tokenize(name.as_bytes()) {
        Ok(t) => v.extend(t),
        Err(_) => v.push(Tok::Atom(name.as_bytes().to_vec())),
    }
    v
}

/// Encodes a local part for reading back as one address, quoting it only if
/// it needs it (qmail's `quote2`): `a b@c` becomes `"a b"@c`.
pub fn quote_address(s: &str) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    let (local, rest) = match s.rfind('@') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mut v = if needs_quote(local.as_bytes()) {
        let mut q = vec![b'"'];
        for &c in local.as_bytes() {
            if matches!(c, b'\r' | b'\n' | b'"' | b'\\') {
                q.push(b'\\');
            }
            q.push(c);
        }
        q.push(b'"');
        q
    } else {
        local.as_bytes().to_vec()
    };
    v.extend_from_slice(rest.as_bytes());
    v
}

/// Whether a local part must be quoted: empty, a byte outside RFC 822's atom
/// and dot characters (8-bit included, as in qmail), or a leading, trailing
/// or doubled dot.
pub fn needs_quote(s: &[u8]) -> bool {
    s.is_empty()
        || s.iter()
            .any(|&c| !(c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&c)))
        || s.starts_with(b".")
        || s.ends_with(b".")
        || s.windows(2).any(|w| w == b"..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::addrlist::Mailbox;

    fn done(c: &Completion, a: &str) -> String {
        let mut t = tokenize(a.as_bytes()).unwrap();
        c.complete(&mut t);
        String::from_utf8(Mailbox::envelope_bytes(&t)).unwrap()
    }

    #[test]
    fn completion_as_qmail_header_5_says() {
        let c = Completion::new("silverton", "berkeley.edu", "berkeley.edu");
        assert_eq!(done(&c, "djb"), "djb@silverton.berkeley.edu");
        assert_eq!(done(&c, "djb@silverton"), "djb@silverton.berkeley.edu");
        assert_eq!(done(&c, "eric@mammoth.cs+"), "eric@mammoth.cs.berkeley.edu");
        assert_eq!(done(&c, "eric@mammoth+"), "eric@mammoth.berkeley.edu");
        assert_eq!(done(&c, "djb@[128.32.183.163]"), "djb@[128.32.183.163]");
        assert_eq!(done(&c, "a@b.c."), "a@b.c");
        assert_eq!(done(&c, "a@"), "a@silverton.berkeley.edu");
        assert_eq!(done(&c, "@r1,@r2:a@b.c"), "a@b.c");
        assert_eq!(done(&c, ""), "");
        assert_eq!(done(&c, "foo-@[]"), "foo-@[]");
        assert_eq!(done(&c, "\"j q\"@x.y"), "j q@x.y");
        let dotted = Completion::new("mail.example.org", "example.org", "example.org");
        assert_eq!(done(&dotted, "root"), "root@mail.example.org");
        let plus = Completion::new("host+", "example.org", "plus.example");
        assert_eq!(done(&plus, "root"), "root@host.plus.example");
    }

    #[test]
    fn quoting_local_parts() {
        assert_eq!(quote_address("a b@c"), b"\"a b\"@c");
        assert_eq!(quote_address("plain@c"), b"plain@c");
        assert_eq!(quote_address("x.@c"), b"\"x.\"@c");
        assert_eq!(quote_address("user"), b"user");
        assert_eq!(quote_address(""), b"");
    }
}
