//! `control/smtproutes`: artificial SMTP routes, as qmail-remote reads them.
//!
//! Each line is `domain:relay` or `domain:relay:port`. The domain matches a
//! recipient domain exactly, or, starting with a dot, every domain ending in
//! it (`.example.com` matches `mail.example.com`); an empty domain matches
//! every domain. The lookup tries the whole domain, then each suffix from the
//! longest (`a.b.c`, `.b.c`, `.c`), then the empty key: the first line found
//! wins, as with qmail's constmap. The relay is a host name, an IP address,
//! or one in brackets (`[192.0.2.1]`, `[2001:db8::1]`); an empty relay means
//! "look up the MX records as usual" (qmail's way to except a domain from a
//! catch-all route). The port defaults to 25.

use std::net::IpAddr;

/// Where a route sends mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Look up the domain's MX records (no route, or an empty relay).
    Mx,
    /// This host name: its addresses, no MX lookup.
    Host(String),
    /// This address.
    Ip(IpAddr),
}

/// The route for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub relay: Relay,
    pub port: u16,
}

impl Route {
    /// No route: the MX records, port 25.
    pub const MX: Route = Route {
        relay: Relay::Mx,
        port: 25,
    };
}

/// The parsed `control/smtproutes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpRoutes {
    /// (lower-cased key, route), sorted by key; the first line for a key wins.
    routes: Vec<(String, Route)>,
}

impl SmtpRoutes {
    /// Parses the lines of `control/smtproutes` (comments and empty lines
    /// already dropped). Lines that cannot be understood (no `:`, a port
    /// that is not a number) are skipped and returned, for the caller to log.
    pub fn parse(lines: impl IntoIterator<Item = String>) -> (SmtpRoutes, Vec<String>) {
        let mut routes: Vec<(String, Route)> = Vec::new();
        let mut bad = Vec::new();
        for line in lines {
            match parse_line(&line) {
                Some((key, route)) => {
                    if !routes.iter().any(|(k, _)| *k == key) {
                        routes.push((key, route));
                    }
                }
                None => bad.push(line),
            }
        }
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        (SmtpRoutes { routes }, bad)
    }

    fn get(&self, key: &str) -> Option<&Route> {
        self.routes
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.routes[i].1)
    }

    /// The route for `domain`.
    pub fn lookup(&self, domain: &str) -> Route {
        let domain = domain.to_ascii_lowercase();
        if let Some(r) = self.get(&domain) {
            return r.clone();
        }
        for (i, c) in domain.char_indices() {
            if c == '.'
                && let Some(r) = self.get(&domain[i..])
            {
                return r.clone();
            }
        }
        self.get("").cloned().unwrap_or(Route::MX)
    }
}

fn parse_line(line: &str) -> Option<(String, Route)> {
    let (domain, rest) = line.split_once(':')?;
    let (relay, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner.split_once(']')?;
        let ip: IpAddr = addr.parse().ok()?;
        (Relay::Ip(ip), after.strip_prefix(':'))
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let relay = if host.is_empty() {
            Relay::Mx
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Relay::Ip(ip)
        } else {
            Relay::Host(host.to_ascii_lowercase())
        };
        (relay, port)
    };
    let port = match port {
        None | Some("") => 25,
        Some(p) => p.trim().parse().ok()?,
    };
    Some((domain.to_ascii_lowercase(), Route { relay, port }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(lines: &[&str]) -> SmtpRoutes {
        let (r, bad) = SmtpRoutes::parse(lines.iter().map(|s| s.to_string()));
        assert!(bad.is_empty(), "{bad:?}");
        r
    }

    fn host(h: &str, port: u16) -> Route {
        Route {
            relay: Relay::Host(h.into()),
            port,
        }
    }

    #[test]
    fn exact_then_longest_suffix_then_catch_all() {
        let r = routes(&[
            "example.com:exact.relay",
            ".example.com:suffix.relay:2525",
            ".com:com.relay",
            ":default.relay",
            "except.example.com:",
        ]);
        assert_eq!(r.lookup("EXAMPLE.com"), host("exact.relay", 25));
        assert_eq!(r.lookup("a.b.example.com"), host("suffix.relay", 2525));
        assert_eq!(r.lookup("other.com"), host("com.relay", 25));
        assert_eq!(r.lookup("example.org"), host("default.relay", 25));
        assert_eq!(r.lookup("except.example.com"), Route::MX);
    }

    #[test]
    fn no_file_means_mx_everywhere() {
        assert_eq!(SmtpRoutes::default().lookup("x.test"), Route::MX);
    }

    #[test]
    fn addresses_bare_or_in_brackets_with_ports() {
        let r = routes(&[
            "a.test:127.0.0.1:2627",
            "b.test:[127.0.0.1]:2628",
            "c.test:[::1]:26",
            "d.test:[192.0.2.7]",
        ]);
        let ip = |s: &str, port| Route {
            relay: Relay::Ip(s.parse().unwrap()),
            port,
        };
        assert_eq!(r.lookup("a.test"), ip("127.0.0.1", 2627));
        assert_eq!(r.lookup("b.test"), ip("127.0.0.1", 2628));
        assert_eq!(r.lookup("c.test"), ip("::1", 26));
        assert_eq!(r.lookup("d.test"), ip("192.0.2.7", 25));
    }

    #[test]
    fn first_line_for_a_key_wins_and_bad_lines_are_returned() {
        let (r, bad) = SmtpRoutes::parse(
            [
                "x.test:first",
                "x.test:second",
                "nocolon",
                "y.test:h:notaport",
            ]
            .map(String::from),
        );
        assert_eq!(r.lookup("x.test"), host("first", 25));
        assert_eq!(bad, ["nocolon", "y.test:h:notaport"]);
    }
}
