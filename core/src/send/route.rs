//! qmail-send's routing: which channel a recipient goes to, and the address
//! the delivery agent sees.
//!
//! In order, for each envelope recipient:
//! 1. an address without `@` gets `@` and `control/envnoathost`;
//! 2. while the domain is in `control/percenthack` and the local part holds
//!    a `%`, the last `%` becomes the `@` (`u%d@gw` → `u@d`);
//! 3. a domain in `control/locals` is local, address unchanged;
//! 4. `control/virtualdomains` is searched for the whole address
//!    (`user@domain:prefix`), then the domain, then each `.suffix` of it
//!    from the longest, then the empty key (`:prefix` catches all). The first
//!    match wins: a non-empty prefix makes the recipient local as
//!    `prefix-address`; an empty prefix ends the search (the domain is an
//!    exception and goes remote);
//! 5. anything else is remote.
//!
//! Host names compare without regard to case, as qmail's `constmap` does;
//! the address keeps the case it was given.

use crate::queue::Channel;

/// The routing tables, from the control files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Router {
    envnoathost: String,
    /// Lower-cased, sorted.
    locals: Vec<String>,
    percenthack: Vec<String>,
    /// (lower-cased key, prefix), sorted by key.
    virtualdomains: Vec<(String, String)>,
}

impl Router {
    /// `virtualdomains` lines are `key:prefix`; a line without `:` is ignored,
    /// as qmail ignores it.
    pub fn new(
        envnoathost: &str,
        locals: impl IntoIterator<Item = String>,
        percenthack: impl IntoIterator<Item = String>,
        virtualdomains: impl IntoIterator<Item = String>,
    ) -> Router {
        let lower_sorted = |it: &mut dyn Iterator<Item = String>| {
            let mut v: Vec<String> = it.map(|s| s.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        let mut vd: Vec<(String, String)> = Vec::new();
        for line in virtualdomains {
            if let Some((k, p)) = line.split_once(':') {
                let k = k.to_ascii_lowercase();
                // The first line for a key wins, as in qmail's constmap.
                if !vd.iter().any(|(x, _)| *x == k) {
                    vd.push((k, p.to_string()));
                }
            }
        }
        vd.sort();
        Router {
            envnoathost: envnoathost.to_string(),
            locals: lower_sorted(&mut locals.into_iter()),
            percenthack: lower_sorted(&mut percenthack.into_iter()),
            virtualdomains: vd,
        }
    }

    fn is_in(list: &[String], host: &str) -> bool {
        list.binary_search(&host.to_ascii_lowercase()).is_ok()
    }

    fn virtual_prefix(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.virtualdomains
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
            .ok()
            .map(|i| self.virtualdomains[i].1.as_str())
    }

    /// The channel for `recipient` and the address to deliver to.
    pub fn route(&self, recipient: &str) -> (Channel, String) {
        let mut addr = recipient.to_string();
        let mut at = match addr.rfind('@') {
            Some(i) => i,
            None => {
                addr.push('@');
                addr.push_str(&self.envnoathost);
                addr.len() - 1 - self.envnoathost.len()
            }
        };
        while Self::is_in(&self.percenthack, &addr[at + 1..]) {
            let Some(p) = addr[..at].rfind('%') else {
                break;
            };
            addr.truncate(at);
            addr.replace_range(p..p + 1, "@");
            at = p;
        }
        if Self::is_in(&self.locals, &addr[at + 1..]) {
            return (Channel::Local, addr);
        }
        // Keys to try: the whole address, the domain, each .suffix, "".
        let mut keys = vec![0, at + 1];
        keys.extend(
            addr[at + 1..]
                .char_indices()
                .filter(|&(_, c)| c == '.')
                .map(|(i, _)| at + 1 + i),
        );
        keys.push(addr.len());
        for start in keys {
            if let Some(prefix) = self.virtual_prefix(&addr[start..]) {
                if prefix.is_empty() {
                    break;
                }
                return (Channel::Local, format!("{prefix}-{addr}"));
            }
        }
        (Channel::Remote, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn router() -> Router {
        Router::new(
            "example.org",
            s(&["example.org", "Localhost"]),
            s(&["gw.example.org", "relay.test"]),
            s(&[
                "virt.test:alice",
                ".wild.test:wild",
                "special.wild.test:",
                "bob@other.test:bobbox",
                "other.test:others",
                "no-colon-line.test",
            ]),
        )
    }

    #[test]
    fn every_rule_in_order() {
        let r = router();
        let cases = [
            // envnoathost
            ("joe", Channel::Local, "joe@example.org"),
            // locals, case-insensitive host, case kept
            ("joe@EXAMPLE.org", Channel::Local, "joe@EXAMPLE.org"),
            ("joe@localhost", Channel::Local, "joe@localhost"),
            // percenthack on a listed domain, repeated while it matches
            ("u%example.org@relay.test", Channel::Local, "u@example.org"),
            ("u%far.test@relay.test", Channel::Remote, "u@far.test"),
            (
                "u%far.test%relay.test@relay.test",
                Channel::Remote,
                "u@far.test",
            ),
            // percenthack domain with no % left: routed as itself
            ("u@relay.test", Channel::Remote, "u@relay.test"),
            // not a percenthack domain: % kept
            ("u%x.test@far.test", Channel::Remote, "u%x.test@far.test"),
            // virtual domain
            ("joe@virt.test", Channel::Local, "alice-joe@virt.test"),
            ("joe@VIRT.test", Channel::Local, "alice-joe@VIRT.test"),
            // .suffix wildcard, longest suffix first, and an empty-prefix exception
            ("x@a.b.wild.test", Channel::Local, "wild-x@a.b.wild.test"),
            ("x@wild.test", Channel::Remote, "x@wild.test"),
            (
                "x@special.wild.test",
                Channel::Remote,
                "x@special.wild.test",
            ),
            (
                "x@a.special.wild.test",
                Channel::Local,
                "wild-x@a.special.wild.test",
            ),
            // user@domain beats the domain line
            ("bob@other.test", Channel::Local, "bobbox-bob@other.test"),
            (
                "carol@other.test",
                Channel::Local,
                "others-carol@other.test",
            ),
            // everything else
            ("someone@far.test", Channel::Remote, "someone@far.test"),
            (
                "x@no-colon-line.test",
                Channel::Remote,
                "x@no-colon-line.test",
            ),
        ];
        for (input, ch, out) in cases {
            assert_eq!(r.route(input), (ch, out.to_string()), "{input}");
        }
    }

    #[test]
    fn locals_win_over_virtualdomains_and_catch_all_applies_last() {
        let r = Router::new(
            "h.test",
            s(&["h.test"]),
            s(&[]),
            s(&["h.test:never", ":catchall"]),
        );
        assert_eq!(r.route("a@h.test"), (Channel::Local, "a@h.test".into()));
        assert_eq!(
            r.route("a@any.where"),
            (Channel::Local, "catchall-a@any.where".into())
        );
    }

    #[test]
    fn first_virtualdomains_line_for_a_key_wins() {
        let r = Router::new("h", s(&[]), s(&[]), s(&["v.test:one", "V.TEST:two"]));
        assert_eq!(r.route("a@v.test").1, "one-a@v.test");
    }

    proptest! {
        #[test]
        fn routing_is_total_and_local_iff_a_rule_says_so(
            local in "[a-z%.]{0,12}",
            host in prop::sample::select(vec![
                "example.org", "virt.test", "x.wild.test", "far.test",
                "relay.test", "gw.example.org", "special.wild.test",
            ]),
        ) {
            let r = router();
            let (ch, addr) = r.route(&format!("{local}@{host}"));
            // The result always has a domain, and routing it again is stable
            // for local results (no double prefixing through locals).
            prop_assert!(addr.contains('@'));
            if ch == Channel::Remote {
                prop_assert_eq!(r.route(&addr), (Channel::Remote, addr.clone()));
            }
            let domain = addr.rsplit('@').next().unwrap_or_default().to_string();
            if domain.eq_ignore_ascii_case("example.org") {
                prop_assert_eq!(ch, Channel::Local);
            }
        }
    }
}
