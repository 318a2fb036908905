//! Downed-host backoff, as qmail-tcpto keeps it: a host whose connections
//! time out is skipped for a while, so deliveries go straight to the next
//! MX instead of each waiting `timeoutconnect` seconds for it.
//!
//! The rules are qmail's: each connect timeout to an address counts one; a
//! successful connection (or a refusal, which is quick) clears the count;
//! an address with two or more timeouts, the last one less than about an
//! hour ago ((60 + a random 0..31) × 64 seconds, qmail's figure), is skipped.
//!
//! The table lives in `queue/lock/tcpto` (qmail's place), a text file of
//! lines `ADDRESS TIMEOUTS LAST-UNIX-TIME`, at most [`MAX_ENTRIES`] of them.
//! It is advice, not state the guarantee rests on: it is never synced, and a
//! table lost or torn by a crash only costs a timeout.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::env::{Clock, Env, Fs, FsFile, OpenOptions, Rng};

/// The most addresses remembered (qmail's table holds 128); the oldest go first.
pub const MAX_ENTRIES: usize = 128;

/// One remembered address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub timeouts: u32,
    /// Unix time of the last timeout.
    pub last: u64,
}

/// The table's path for a queue in `queue_dir`.
pub fn path(queue_dir: &Path) -> PathBuf {
    queue_dir.join("lock").join("tcpto")
}

/// Parses the table; lines that make no sense are ignored (a torn write).
pub fn parse(text: &[u8]) -> BTreeMap<IpAddr, Entry> {
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(text).lines() {
        let mut w = line.split_ascii_whitespace();
        let (Some(ip), Some(n), Some(t)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        if let (Ok(ip), Ok(timeouts), Ok(last)) = (ip.parse(), n.parse(), t.parse()) {
            map.insert(ip, Entry { timeouts, last });
        }
    }
    map
}

fn render(map: &BTreeMap<IpAddr, Entry>) -> Vec<u8> {
    let mut s = String::new();
    for (ip, e) in map {
        s.push_str(&format!("{ip} {} {}\n", e.timeouts, e.last));
    }
    s.into_bytes()
}

/// Reads the table (empty if there is none or it cannot be read).
pub async fn read<F: Fs>(fs: &F, queue_dir: &Path) -> BTreeMap<IpAddr, Entry> {
    match fs.read_if_exists(&path(queue_dir)).await {
        Ok(Some(t)) => parse(&t),
        _ => BTreeMap::new(),
    }
}

/// Writes the table (qmail-tcpok writes an empty one).
pub async fn write<F: Fs>(
    fs: &F,
    queue_dir: &Path,
    map: &BTreeMap<IpAddr, Entry>,
) -> io::Result<()> {
    let p = path(queue_dir);
    if let Some(dir) = p.parent() {
        fs.create_dir_all(dir, 0o750).await?;
    }
    // Written in place: a reader may see it torn, which parse() survives.
    let mut f = fs.open(&p, &OpenOptions::create_truncate()).await?;
    f.write_all(&render(map)).await
}

/// The downed-host table as remote deliveries use it. Deliveries in one
/// process take turns through a lock; another process (qmail-remote)
/// updating at the same moment may lose an update, which costs a timeout.
#[derive(Clone)]
pub struct Tcpto<E: Env> {
    env: E,
    queue_dir: PathBuf,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<E: Env> Tcpto<E> {
    pub fn new(env: E, queue_dir: impl Into<PathBuf>) -> Self {
        Tcpto {
            env,
            queue_dir: queue_dir.into(),
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Whether `ip` timed out recently enough to be skipped.
    pub async fn is_down(&self, ip: IpAddr) -> bool {
        let map = read(self.env.fs(), &self.queue_dir).await;
        let Some(e) = map.get(&ip) else {
            return false;
        };
        if e.timeouts < 2 {
            return false;
        }
        let backoff = (60 + self.env.rng().below(32)) << 6;
        self.env.clock().unix_secs().saturating_sub(e.last) < backoff
    }

    /// Records how a connection to `ip` went: `timed_out` counts one more
    /// timeout; anything else clears the address.
    pub async fn record(&self, ip: IpAddr, timed_out: bool) {
        let _turn = self.lock.lock().await;
        let fs = self.env.fs();
        let mut map = read(fs, &self.queue_dir).await;
        if timed_out {
            let now = self.env.clock().unix_secs();
            let e = map.entry(ip).or_insert(Entry {
                timeouts: 0,
                last: now,
            });
            e.timeouts = e.timeouts.saturating_add(1);
            e.last = now;
            while map.len() > MAX_ENTRIES {
                let oldest = map
                    .iter()
                    .min_by_key(|(ip, e)| (e.last, **ip))
                    .map(|(ip, _)| *ip);
                if let Some(o) = oldest {
                    map.remove(&o);
                }
            }
        } else if map.remove(&ip).is_none() {
            return;
        }
        if let Err(e) = write(fs, &self.queue_dir, &map).await {
            tracing::warn!("unable to write {}: {e}", path(&self.queue_dir).display());
        }
    }
}

/// qmail-tcpto's report: one line per address with timeouts.
pub fn report(map: &BTreeMap<IpAddr, Entry>, now: u64) -> String {
    let mut s = String::new();
    for (ip, e) in map {
        if e.timeouts == 0 {
            continue;
        }
        s.push_str(&format!(
            "{ip} timed out {} seconds ago; # recent timeouts: {}\n",
            now.saturating_sub(e.last),
            e.timeouts
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_survives_torn_tables_and_round_trips() {
        let mut m = BTreeMap::new();
        m.insert(
            "192.0.2.1".parse().unwrap(),
            Entry {
                timeouts: 3,
                last: 1000,
            },
        );
        m.insert(
            "2001:db8::1".parse().unwrap(),
            Entry {
                timeouts: 1,
                last: 5,
            },
        );
        let text = render(&m);
        assert_eq!(parse(&text), m);
        let torn = &text[..text.len() - 4];
        assert_eq!(
            parse(torn).len(),
            1,
            "a torn last line is dropped: {torn:?}"
        );
        assert_eq!(parse(b"garbage\n1.2.3.4 x 7\n").len(), 0);
        assert_eq!(
            report(&m, 1100),
            "192.0.2.1 timed out 100 seconds ago; # recent timeouts: 3\n\
             2001:db8::1 timed out 1095 seconds ago; # recent timeouts: 1\n"
        );
    }
}
