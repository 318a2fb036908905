//! Where the stub resolver sends its queries, and how long it waits.
//!
//! Two sources, the first present wins:
//! * `control/dnsservers` (ours): one nameserver per line, `IP`, `IP:port`
//!   or `[IPv6]:port`; blank lines and `#` comments skipped. Anything else
//!   is an error naming the file and line. It replaces resolv.conf entirely
//!   (nameservers and options), so tests can point the MTA at a DNS server on
//!   a loopback port.
//! * `/etc/resolv.conf`, read as glibc reads it: `nameserver ADDR` lines (port
//!   53, at most three used), `options timeout:N attempts:N`; other keywords
//!   and options are skipped, as are lines glibc would skip (a nameserver it
//!   cannot parse), each with a warning. A missing file, or one naming no
//!   nameserver, means 127.0.0.1:53, as in glibc.
//!
//! The parsers are pure; [`load`] reads the files through [`Fs`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::env::Fs;

/// glibc's defaults (`RES_TIMEOUT`, `RES_DFLRETRY`) and caps
/// (`RES_MAXRETRANS`, `RES_MAXRETRY`), and how many nameservers it uses
/// (`MAXNS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_ATTEMPTS: u32 = 2;
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_ATTEMPTS: u32 = 5;
const MAX_RESOLV_CONF_SERVERS: usize = 3;

/// The name of our control file under `control/`.
pub const DNSSERVERS: &str = "dnsservers";
/// Where the system's resolver configuration lives (production passes it to
/// [`load`]; the simulation names its server in `control/dnsservers`).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// What the stub resolver is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Asked in this order, each try of each attempt.
    pub nameservers: Vec<SocketAddr>,
    /// How long one try (one query to one nameserver) waits for its answer.
    pub timeout: Duration,
    /// How many times the whole list of nameservers is tried.
    pub attempts: u32,
}

impl ResolverConfig {
    /// These nameservers with glibc's default timeout and attempts.
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> Self {
        ResolverConfig {
            nameservers,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        }
    }

    /// What glibc uses when resolv.conf is missing: a server on this host.
    pub fn localhost() -> Self {
        Self::with_nameservers(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 53))])
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("unable to read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}: {text:?}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: &'static str,
        text: String,
    },
    #[error("{path} names no nameserver")]
    Empty { path: PathBuf },
}

/// The configuration read from resolv.conf text, with a warning for each
/// line skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub config: ResolverConfig,
    pub warnings: Vec<String>,
}

/// Parses resolv.conf as glibc does (see the module documentation).
pub fn parse_resolv_conf(path: &Path, text: &str) -> ResolvConf {
    let mut config = ResolverConfig::with_nameservers(Vec::new());
    let mut warnings = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or("");
        let mut warn = |what: &str| {
            warnings.push(format!("{}:{}: {what}: {raw:?}", path.display(), i + 1));
        };
        match keyword {
            "nameserver" => {
                if config.nameservers.len() >= MAX_RESOLV_CONF_SERVERS {
                    warn("more than 3 nameservers, ignored as glibc does");
                    continue;
                }
                match words.next().and_then(parse_resolv_conf_addr) {
                    Some(addr) => config.nameservers.push(addr),
                    None => warn("not a nameserver address, ignored"),
                }
            }
            "options" => {
                for opt in words {
                    if let Some(v) = opt.strip_prefix("timeout:") {
                        match v.parse::<u64>() {
                            Ok(n) => {
                                config.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS))
                            }
                            Err(_) => warn("bad timeout option, ignored"),
                        }
                    } else if let Some(v) = opt.strip_prefix("attempts:") {
                        match v.parse::<u32>() {
                            Ok(n) => config.attempts = n.clamp(1, MAX_ATTEMPTS),
                            Err(_) => warn("bad attempts option, ignored"),
                        }
                    }
                    // Other options (ndots, rotate, edns0, ...) do not
                    // change what a stub resolver for an MTA asks.
                }
            }
            // domain, search, sortlist: an MTA looks names up as given.
            _ => {}
        }
    }
    if config.nameservers.is_empty() {
        config.nameservers = ResolverConfig::localhost().nameservers;
    }
    ResolvConf { config, warnings }
}

/// A resolv.conf address on port 53: IPv4 or IPv6, an IPv6 zone only if
/// numeric (naming an interface would need the OS).
fn parse_resolv_conf_addr(s: &str) -> Option<SocketAddr> {
    match s.split_once('%') {
        None => s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)),
        Some((ip, zone)) => Some(SocketAddr::V6(SocketAddrV6::new(
            ip.parse().ok()?,
            53,
            0,
            zone.parse().ok()?,
        ))),
    }
}

/// Parses `control/dnsservers` (see the module documentation).
pub fn parse_dnsservers(path: &Path, text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason| ConfigError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
            text: raw.to_string(),
        };
        out.push(parse_server(line).map_err(bad)?);
    }
    if out.is_empty() {
        return Err(ConfigError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// `IP`, `IP:port` or `[IPv6]:port`; a bare IPv6 address means port 53.
fn parse_server(s: &str) -> Result<SocketAddr, &'static str> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or("expected [IPv6]:port")?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| "not an IPv6 address")?;
        let port = parse_port(port)?;
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)));
    }
    let (ip, port) = s
        .rsplit_once(':')
        .ok_or("expected IP, IP:port or [IPv6]:port")?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| "not an IPv4 address (write IPv6 as [IPv6]:port)")?;
    Ok(SocketAddr::new(IpAddr::V4(ip), parse_port(port)?))
}

fn parse_port(s: &str) -> Result<u16, &'static str> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("not a port number (1-65535)"),
        Ok(p) => Ok(p),
    }
}

/// Reads the configuration: `control_dir/dnsservers` if it exists, else
/// `resolv_conf` (production passes [`RESOLV_CONF`]), else 127.0.0.1:53. resolv.conf's
/// skipped lines are logged as warnings.
pub async fn load<F: Fs>(
    fs: &F,
    control_dir: &Path,
    resolv_conf: &Path,
) -> Result<ResolverConfig, ConfigError> {
    let servers = control_dir.join(DNSSERVERS);
    if let Some(text) = read(fs, &servers).await? {
        return Ok(ResolverConfig::with_nameservers(parse_dnsservers(
            &servers, &text,
        )?));
    }
    match read(fs, resolv_conf).await? {
        None => Ok(ResolverConfig::localhost()),
        Some(text) => {
            let parsed = parse_resolv_conf(resolv_conf, &text);
            for w in &parsed.warnings {
                tracing::warn!("{w}");
            }
            Ok(parsed.config)
        }
    }
}

async fn read<F: Fs>(fs: &F, path: &Path) -> Result<Option<String>, ConfigError> {
    match fs.read_if_exists(path).await {
        Ok(v) => Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned())),
        Err(source) => Err(ConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolv_conf_nameservers_and_options() {
        let text = "# generated\n; old comment\ndomain example.com\nsearch a.example b.example\n\
                    nameserver 10.0.0.1\nnameserver  2001:db8::53 \nnameserver fe80::1%2\noptions ndots:2 timeout:3 attempts:4 rotate\n";
        let r = parse_resolv_conf(Path::new("/etc/resolv.conf"), text);
        assert_eq!(r.warnings, Vec::<String>::new());
        assert_eq!(
            r.config,
            ResolverConfig {
                nameservers: vec![
                    sa("10.0.0.1:53"),
                    sa("[2001:db8::53]:53"),
                    sa("[fe80::1%2]:53")
                ],
                timeout: Duration::from_secs(3),
                attempts: 4,
            }
        );
    }

    #[test]
    fn resolv_conf_clamps_skips_and_defaults_like_glibc() {
        let text = "nameserver 1.1.1.1\nnameserver bogus\nnameserver 2.2.2.2\nnameserver 3.3.3.3\n\
                    nameserver 4.4.4.4\noptions timeout:0 attempts:99 timeout:x\n";
        let r = parse_resolv_conf(Path::new("/r"), text);
        assert_eq!(
            r.config.nameservers,
            vec![sa("1.1.1.1:53"), sa("2.2.2.2:53"), sa("3.3.3.3:53")]
        );
        assert_eq!(r.config.timeout, Duration::from_secs(1));
        assert_eq!(r.config.attempts, 5);
        assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings);
        assert!(r.warnings[0].starts_with("/r:2: not a nameserver address"));
        assert!(r.warnings[1].starts_with("/r:5: more than 3 nameservers"));
        assert!(r.warnings[2].starts_with("/r:6: bad timeout option"));

        let empty = parse_resolv_conf(Path::new("/r"), "search x\n");
        assert_eq!(empty.config, ResolverConfig::localhost());
        assert_eq!(empty.config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(empty.config.attempts, DEFAULT_ATTEMPTS);
    }

    #[test]
    fn dnsservers_forms() {
        let text = "# test server\n127.0.0.1:5353\n\n10.1.1.1\n[::1]:5300\n::1\n  192.0.2.7:53  \n";
        let got = parse_dnsservers(Path::new("control/dnsservers"), text).unwrap();
        assert_eq!(
            got,
            vec![
                sa("127.0.0.1:5353"),
                sa("10.1.1.1:53"),
                sa("[::1]:5300"),
                sa("[::1]:53"),
                sa("192.0.2.7:53"),
            ]
        );
    }

    #[test]
    fn dnsservers_errors_name_the_file_and_line() {
        let p = Path::new("/qmail/control/dnsservers");
        let cases = [
            (
                "127.0.0.1:5353\nlocalhost:53\n",
                "/qmail/control/dnsservers:2: not an IPv4",
            ),
            (
                "1.2.3.4:0\n",
                "/qmail/control/dnsservers:1: not a port number",
            ),
            ("1.2.3.4:70000\n", ":1: not a port number"),
            (
                "# c\n\n[::1]\n",
                "/qmail/control/dnsservers:3: expected [IPv6]:port",
            ),
            ("[::g]:53\n", ":1: not an IPv6 address"),
            ("ns.example\n", ":1: expected IP, IP:port or [IPv6]:port"),
        ];
        for (text, want) in cases {
            let e = parse_dnsservers(p, text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = parse_dnsservers(p, "# nothing\n").unwrap_err().to_string();
        assert_eq!(e, "/qmail/control/dnsservers names no nameserver");
    }

    proptest::proptest! {
        /// Any text parses or fails with a line error; never a panic.
        #[test]
        fn any_text_is_handled(text in "\\PC{0,200}") {
            let _ = parse_dnsservers(Path::new("d"), &text);
            let r = parse_resolv_conf(Path::new("r"), &text);
            proptest::prop_assert!(!r.config.nameservers.is_empty());
        }

        /// Every socket address written in the file's forms reads back.
        #[test]
        fn written_servers_read_back(addrs in proptest::collection::vec(
            proptest::prelude::any::<(std::net::IpAddr, u16)>(), 1..5)
        ) {
            let addrs: Vec<SocketAddr> = addrs
                .into_iter()
                .map(|(ip, port)| SocketAddr::new(ip, port.max(1)))
                .collect();
            let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
            proptest::prop_assert_eq!(parse_dnsservers(Path::new("d"), &text).unwrap(), addrs);
        }
    }
}
