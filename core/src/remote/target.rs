//! Where to deliver a domain's mail: the hosts to try, in order.
//!
//! `control/smtproutes` first ([`SmtpRoutes`]); without a route, the MX
//! records by preference (RFC 5321 5.1), equal preferences in an order drawn
//! from the environment's random source so load spreads as DNS intends; no
//! MX records at all means the domain's own addresses; a null MX (RFC 7505,
//! `0 .`) means the domain takes no mail: a permanent failure.
//!
//! A host that is this MTA must not be a destination: mail would loop
//! through it until its hop count ran out. As qmail-remote does, every MX
//! at or below the best preference at which we appear ourselves is dropped;
//! if nothing better remains, the mail bounces, in qmail-remote's words.
//! A route (`smtproutes`) that names us is refused the same way.

use std::net::{IpAddr, SocketAddr};

use super::routes::{Relay, SmtpRoutes};
use crate::control::HostSet;
use crate::deliver::Outcome;
use crate::dns::{DnsError, Mx, Resolve};
use crate::env::Rng;

/// One host to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// MX preference (0 for a route or a domain without MX records).
    pub preference: u32,
}

/// What this MTA is, to recognise routes that point back at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Us {
    /// `control/me` and `control/locals`.
    pub names: HostSet,
    /// The addresses our SMTP listener is bound to. An unspecified address
    /// (`0.0.0.0:25`) stands for every address in `ips` and loopback.
    pub listeners: Vec<SocketAddr>,
    /// This host's own addresses (its interfaces).
    pub ips: Vec<IpAddr>,
}

impl Us {
    pub fn is_us(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip();
        if ip.is_unspecified() {
            return true;
        }
        self.listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == ip
                    || (l.ip().is_unspecified() && (ip.is_loopback() || self.ips.contains(&ip))))
        })
    }
}

fn temp_dns() -> Outcome {
    Outcome::Deferral("Sorry, I couldn't find any host by that name. (#4.1.2)\n".into())
}

fn perm_dns(host: &str) -> Outcome {
    Outcome::Failure(format!(
        "Sorry, I couldn't find any host named {host}. (#5.1.2)\n"
    ))
}

fn dns_outcome(e: &DnsError, host: &str) -> Outcome {
    match e {
        DnsError::NotFound(_) => perm_dns(host),
        DnsError::Temporary(_) => temp_dns(),
    }
}

/// qmail-remote's words for an MX list that leads back to us.
fn looping() -> Outcome {
    Outcome::Failure(
        "Sorry. Although I'm listed as a best-preference MX or A for that host,\n\
         it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n"
            .into(),
    )
}

fn null_mx(domain: &str) -> Outcome {
    Outcome::Failure(format!(
        "Sorry, {domain} does not accept mail (null MX). (#5.1.10)\n"
    ))
}

/// The hosts to try for `domain`, best first; `Err` is the outcome for every
/// recipient when there is none.
pub async fn targets<R: Resolve, G: Rng>(
    resolver: &R,
    rng: &G,
    routes: &SmtpRoutes,
    us: &Us,
    domain: &str,
) -> Result<Vec<Target>, Outcome> {
    let route = routes.lookup(domain);
    let port = route.port;
    let at = |ip: IpAddr, preference| Target {
        addr: SocketAddr::new(ip, port),
        preference,
    };
    let targets: Vec<Target> = match route.relay {
        Relay::Ip(ip) => vec![at(ip, 0)],
        Relay::Host(host) => {
            if us.names.contains(&host) {
                return Err(looping());
            }
            let ips = resolver
                .addrs(&host)
                .await
                .map_err(|e| dns_outcome(&e, &host))?;
            ips.into_iter().map(|ip| at(ip, 0)).collect()
        }
        // An address literal (`user@[192.0.2.1]`): that host, no DNS.
        Relay::Mx if domain.starts_with('[') && domain.ends_with(']') => {
            match domain[1..domain.len() - 1].parse::<IpAddr>() {
                Ok(ip) => vec![at(ip, 0)],
                Err(_) => return Err(perm_dns(domain)),
            }
        }
        Relay::Mx => {
            let mxs = resolver
                .mx(domain)
                .await
                .map_err(|e| dns_outcome(&e, domain))?;
            if mxs.is_empty() {
                let ips = resolver
                    .addrs(domain)
                    .await
                    .map_err(|e| dns_outcome(&e, domain))?;
                ips.into_iter().map(|ip| at(ip, 0)).collect()
            } else {
                return by_preference(resolver, rng, us, domain, port, mxs).await;
            }
        }
    };
    if targets.is_empty() {
        return Err(temp_dns());
    }
    if targets.iter().any(|t| us.is_us(t.addr)) {
        return Err(looping());
    }
    Ok(targets)
}

/// Resolves MX records into addresses, best preference first, and drops
/// what is no better than ourselves.
async fn by_preference<R: Resolve, G: Rng>(
    resolver: &R,
    rng: &G,
    us: &Us,
    domain: &str,
    port: u16,
    mxs: Vec<Mx>,
) -> Result<Vec<Target>, Outcome> {
    let mut mxs: Vec<Mx> = mxs;
    if mxs.iter().all(|m| m.exchange.is_empty()) {
        return Err(null_mx(domain));
    }
    // A null MX beside real ones is a broken zone: use the real ones.
    mxs.retain(|m| !m.exchange.is_empty());
    mxs.sort_by_key(|m| m.preference);
    shuffle_equal_preferences(&mut mxs, rng);
    let mut targets = Vec::new();
    let mut pref_me: Option<u32> = None;
    for mx in &mxs {
        let preference = u32::from(mx.preference);
        if pref_me.is_some_and(|p| preference >= p) {
            continue;
        }
        if us.names.contains(&mx.exchange) {
            pref_me = Some(preference);
            continue;
        }
        // A host that cannot be resolved is skipped, as qmail skips it; if
        // none can be, the mail waits.
        let Ok(ips) = resolver.addrs(&mx.exchange).await else {
            continue;
        };
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            if us.is_us(addr) {
                pref_me = Some(pref_me.map_or(preference, |p| p.min(preference)));
            } else {
                targets.push(Target { addr, preference });
            }
        }
    }
    if let Some(p) = pref_me {
        targets.retain(|t| t.preference < p);
        if targets.is_empty() {
            return Err(looping());
        }
    }
    if targets.is_empty() {
        return Err(temp_dns());
    }
    Ok(targets)
}

/// Fisher-Yates within each run of equal preference (`mxs` sorted).
fn shuffle_equal_preferences<G: Rng>(mxs: &mut [Mx], rng: &G) {
    let mut start = 0;
    while start < mxs.len() {
        let pref = mxs[start].preference;
        let end = start
            + mxs[start..]
                .iter()
                .take_while(|m| m.preference == pref)
                .count();
        for i in (start + 1..end).rev() {
            let j = start + rng.below((i - start + 1) as u64) as usize;
            mxs.swap(i, j);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::TableResolver;
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Clone)]
    struct Counter(Arc<AtomicU64>);
    impl Rng for Counter {
        fn next_u64(&self) -> u64 {
            // A fixed, well-mixed sequence: enough to see different orders.
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
        }
    }

    fn rng(seed: u64) -> Counter {
        Counter(Arc::new(AtomicU64::new(seed)))
    }

    fn world() -> TableResolver {
        TableResolver::new()
            .mx(
                "multi.test",
                &[(10, "a.mx"), (10, "b.mx"), (10, "c.mx"), (20, "backup.mx")],
            )
            .addr("a.mx", "192.0.2.1")
            .addr("b.mx", "192.0.2.2")
            .addr("c.mx", "192.0.2.3")
            .addr("backup.mx", "192.0.2.9")
            .addr("nomx.test", "192.0.2.20")
            .mx("null.test", &[(0, "")])
            .mx(
                "us.test",
                &[(10, "primary.mx"), (20, "me.test"), (30, "tertiary.mx")],
            )
            .addr("primary.mx", "192.0.2.30")
            .addr("tertiary.mx", "192.0.2.31")
            .mx("only-us.test", &[(10, "me.test")])
            .mx("ip-us.test", &[(5, "alias-of-us.mx"), (10, "other.mx")])
            .addr("alias-of-us.mx", "198.51.100.1")
            .addr("other.mx", "192.0.2.40")
            .temporary("broken.test")
            .mx("gone-mx.test", &[(10, "nowhere.mx")])
    }

    fn us() -> Us {
        Us {
            names: HostSet::new(["me.test", "localhost"]),
            listeners: vec!["0.0.0.0:25".parse().unwrap()],
            ips: vec!["198.51.100.1".parse().unwrap()],
        }
    }

    async fn hosts(domain: &str, routes: &SmtpRoutes, seed: u64) -> Result<Vec<String>, Outcome> {
        let t = targets(&world(), &rng(seed), routes, &us(), domain).await?;
        Ok(t.iter()
            .map(|t| format!("{}/{}", t.preference, t.addr))
            .collect())
    }

    #[tokio::test]
    async fn mx_by_preference_equal_ones_shuffled_by_the_seed() {
        let none = SmtpRoutes::default();
        let mut orders = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let h = hosts("multi.test", &none, seed).await.unwrap();
            assert_eq!(h.len(), 4);
            assert_eq!(h[3], "20/192.0.2.9:25", "backup last");
            let mut firsts = h[..3].to_vec();
            orders.insert(firsts.clone());
            firsts.sort();
            assert_eq!(
                firsts,
                ["10/192.0.2.1:25", "10/192.0.2.2:25", "10/192.0.2.3:25"]
            );
            // The same seed gives the same order.
            assert_eq!(hosts("multi.test", &none, seed).await.unwrap(), h);
        }
        assert_eq!(
            orders.len(),
            6,
            "all orders of three equal MX drawn: {orders:?}"
        );
    }

    #[tokio::test]
    async fn no_mx_means_the_domains_address_and_null_mx_bounces() {
        let none = SmtpRoutes::default();
        assert_eq!(
            hosts("nomx.test", &none, 0).await.unwrap(),
            ["0/192.0.2.20:25"]
        );
        assert!(
            matches!(hosts("null.test", &none, 0).await, Err(Outcome::Failure(t)) if t.contains("null MX"))
        );
        assert!(
            matches!(hosts("nxdomain.test", &none, 0).await, Err(Outcome::Failure(t)) if t.contains("host named nxdomain.test"))
        );
        assert!(matches!(
            hosts("broken.test", &none, 0).await,
            Err(Outcome::Deferral(_))
        ));
        assert!(matches!(
            hosts("gone-mx.test", &none, 0).await,
            Err(Outcome::Deferral(_))
        ));
    }

    #[tokio::test]
    async fn mx_no_better_than_us_is_dropped_and_only_us_bounces() {
        let none = SmtpRoutes::default();
        assert_eq!(
            hosts("us.test", &none, 0).await.unwrap(),
            ["10/192.0.2.30:25"]
        );
        // By address: we listen on 0.0.0.0:25 and own 198.51.100.1.
        assert!(
            matches!(hosts("ip-us.test", &none, 0).await, Err(Outcome::Failure(t)) if t.contains("#5.4.6"))
        );
        assert!(
            matches!(hosts("only-us.test", &none, 0).await, Err(Outcome::Failure(t)) if t.contains("#5.4.6"))
        );
    }

    #[tokio::test]
    async fn routes_skip_mx_and_a_route_to_us_bounces() {
        let (routes, _) = SmtpRoutes::parse(
            [
                "multi.test:[192.0.2.50]:2525",
                "nomx.test:backup.mx",
                ".loop.test:127.0.0.1:25",
                "named-loop.test:me.test",
            ]
            .map(String::from),
        );
        assert_eq!(
            hosts("multi.test", &routes, 0).await.unwrap(),
            ["0/192.0.2.50:2525"]
        );
        assert_eq!(
            hosts("nomx.test", &routes, 0).await.unwrap(),
            ["0/192.0.2.9:25"]
        );
        assert!(
            matches!(hosts("a.loop.test", &routes, 0).await, Err(Outcome::Failure(t)) if t.contains("#5.4.6"))
        );
        assert!(
            matches!(hosts("named-loop.test", &routes, 0).await, Err(Outcome::Failure(t)) if t.contains("#5.4.6"))
        );
    }
}
