//! `control/rcpthosts` and `control/morercpthosts`: the domains qmail-smtpd
//! accepts recipients for, which is what stops it from being an open relay.

use crate::control::HostSet;

/// The set of allowed recipient domains, matched as qmail's `rcpthosts()`.
///
/// An entry `example.com` allows exactly that domain; an entry `.example.com`
/// allows every subdomain of it (but not `example.com` itself). Domains are
/// compared without regard to ASCII case. An address without `@` is always
/// allowed: qmail-send completes it with `envnoathost`, a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptHosts {
    /// `None` when there is no rcpthosts file at all: qmail then accepts every
    /// domain. qmail-rs's `init` always writes the file, so this is opt-in.
    listed: Option<HostSet>,
}

impl RcptHosts {
    /// Allows every domain, as qmail does when `control/rcpthosts` is absent
    /// (then `morercpthosts` is ignored too). This makes an open relay.
    pub fn any() -> Self {
        RcptHosts { listed: None }
    }

    /// The lines of `rcpthosts` followed by those of `morercpthosts` (qmail
    /// treats the second as appended to the first). Entries are lowercased;
    /// blank ones are skipped.
    pub fn new<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RcptHosts {
            listed: Some(HostSet::new(entries)),
        }
    }

    /// Whether mail for `address` may be accepted without `RELAYCLIENT`.
    pub fn allows(&self, address: &str) -> bool {
        let Some(listed) = &self.listed else {
            return true;
        };
        let Some(at) = address.rfind('@') else {
            return true;
        };
        listed.contains(&address[at + 1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let r = RcptHosts::new(["bench.test", ".heaven.af.mil", " Example.COM "]);
        assert!(r.allows("u1@bench.test"));
        assert!(r.allows("u3@BENCH.TEST"));
        assert!(!r.allows("someone@remote.test"));
        assert!(!r.allows("u@sub.bench.test"));
        assert!(r.allows("u@a.heaven.af.mil"));
        assert!(r.allows("u@b.a.heaven.af.mil"));
        assert!(!r.allows("u@heaven.af.mil"));
        assert!(r.allows("u@example.com"));
        assert!(!r.allows("u@"));
    }

    #[test]
    fn no_at_and_percent_hack() {
        let r = RcptHosts::new(["bench.test"]);
        assert!(r.allows("postmaster"));
        assert!(r.allows(""));
        // The last @ decides, as in qmail (session 7 of qmail-observed).
        assert!(r.allows("someone%remote.test@bench.test"));
        assert!(r.allows("remote.test!someone@bench.test"));
        assert!(!r.allows("a@bench.test@remote.test"));
    }

    #[test]
    fn empty_list_and_any() {
        assert!(!RcptHosts::new(Vec::<String>::new()).allows("u@bench.test"));
        assert!(RcptHosts::any().allows("u@anywhere.example"));
    }
}
