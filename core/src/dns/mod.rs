//! DNS for remote delivery: the answers the router needs (MX, addresses) and
//! how a lookup can end.
//!
//! [`Resolve`] is what remote routing asks of DNS. The production
//! implementation is the stub resolver in this module (over the `Net` trait's
//! UDP, TCP when truncated, messages encoded with hickory-proto), so the
//! simulation sees every packet; tests of routing may use a table instead.

pub mod config;
pub mod message;
mod stub;

pub use config::{ConfigError, ResolverConfig};
pub use stub::StubResolver;

use std::future::Future;
use std::net::IpAddr;

/// How a lookup failed. A name that does not exist is permanent (the mail
/// bounces); anything else is temporary (the mail waits and is retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("{0} does not exist (NXDOMAIN)")]
    NotFound(String),
    /// Timeouts, SERVFAIL, refusals, malformed or mismatched answers, a CNAME
    /// chain too long: the answer may be different next time.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mx {
    pub preference: u16,
    /// The exchange's host name, without the trailing dot, lowercase. `""`
    /// for a null MX (RFC 7505: `0 .`).
    pub exchange: String,
}

/// The lookups remote routing needs. CNAME chains are followed (with a bound)
/// inside each call.
pub trait Resolve: Clone + Send + Sync + 'static {
    /// The MX records of `domain`, in the order the server gave them.
    /// `Ok(vec![])` means the name exists but has no MX records (NODATA): the
    /// caller falls back to the domain's own addresses.
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send;
    /// The A and AAAA records of `host` (IPv4 first). `Ok(vec![])` means the
    /// name exists but has no addresses.
    fn addrs(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, DnsError>> + Send;
}
