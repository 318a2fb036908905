//! A resolver answering from a table: for tests of routing and for
//! simulated worlds before (or beside) a DNS server host.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::dns::{DnsError, Mx, Resolve};

/// What the table holds for one name.
#[derive(Debug, Clone, Default)]
struct Entry {
    mx: Vec<Mx>,
    addrs: Vec<IpAddr>,
    temporary: bool,
}

/// Names not in the table do not exist (NXDOMAIN); a name marked
/// [`TableResolver::temporary`] fails temporarily.
#[derive(Debug, Clone, Default)]
pub struct TableResolver {
    names: Arc<BTreeMap<String, Entry>>,
}

impl TableResolver {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(mut self, name: &str) -> (Self, String) {
        let key = name.to_ascii_lowercase();
        Arc::make_mut(&mut self.names)
            .entry(key.clone())
            .or_default();
        (self, key)
    }

    fn edit(self, name: &str, f: impl FnOnce(&mut Entry)) -> Self {
        let (mut t, key) = self.entry(name);
        if let Some(e) = Arc::make_mut(&mut t.names).get_mut(&key) {
            f(e);
        }
        t
    }

    /// MX records for `name` (`""` as the exchange is a null MX).
    pub fn mx(self, name: &str, mxs: &[(u16, &str)]) -> Self {
        self.edit(name, |e| {
            e.mx.extend(mxs.iter().map(|(p, x)| Mx {
                preference: *p,
                exchange: x.to_ascii_lowercase(),
            }))
        })
    }

    /// An address of `name` (panics on a malformed literal: tests only).
    pub fn addr(self, name: &str, ip: &str) -> Self {
        let ip: IpAddr = ip.parse().expect("an IP address");
        self.edit(name, |e| e.addrs.push(ip))
    }

    /// Every lookup of `name` fails temporarily.
    pub fn temporary(self, name: &str) -> Self {
        self.edit(name, |e| e.temporary = true)
    }

    fn lookup(&self, name: &str) -> Result<&Entry, DnsError> {
        let e = self
            .names
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| DnsError::NotFound(name.to_string()))?;
        if e.temporary {
            return Err(DnsError::Temporary(format!("{name}: table says so")));
        }
        Ok(e)
    }
}

impl Resolve for TableResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        Ok(self.lookup(domain)?.mx.clone())
    }

    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let mut v = self.lookup(host)?.addrs.clone();
        v.sort_by_key(|ip| ip.is_ipv6());
        Ok(v)
    }
}
