//! qmail's control files (`$QMAIL_HOME/control/`), read as qmail reads them.
//!
//! * a *line* file holds one value on its first line; trailing spaces and tabs
//!   are ignored (`me`, `smtpgreeting`, `bouncefrom`, ...);
//! * a *number* file holds one non-negative integer (`databytes`,
//!   `timeoutsmtpd`, ...); anything else is an error, not a silent default;
//! * a *list* file holds one value per line; empty lines and lines starting
//!   with `#` are skipped (`locals`, `rcpthosts`, `virtualdomains`, ...).
//!
//! A missing file means "use the default"; a file that exists but cannot be
//! read, or holds a bad number, is an error the caller must report (qmail's
//! programs refuse to run on controls they cannot read).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::env::Fs;

/// A control file that exists but cannot be used.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("unable to read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {value:?} is not a number")]
    NotANumber { path: PathBuf, value: String },
}

fn trim_end(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r', ' ', '\t'])
}

async fn read_text<F: Fs>(fs: &F, path: &Path) -> Result<Option<String>, ControlError> {
    match fs.read_if_exists(path).await {
        Ok(None) => Ok(None),
        Ok(Some(b)) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(source) => Err(ControlError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The value of a line file's text: its first line, trailing blanks dropped.
pub fn parse_line(text: &str) -> String {
    trim_end(text.lines().next().unwrap_or("")).to_string()
}

/// The value of a number file's text (`path` names it in the error).
pub fn parse_number(text: &str, path: &Path) -> Result<u64, ControlError> {
    let v = parse_line(text);
    v.trim().parse().map_err(|_| ControlError::NotANumber {
        path: path.to_path_buf(),
        value: v,
    })
}

/// The entries of a list file's text: comments and empty lines skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The first line of a control file, or `None` if the file does not exist.
pub async fn read_line<F: Fs>(fs: &F, path: &Path) -> Result<Option<String>, ControlError> {
    Ok(read_text(fs, path).await?.map(|t| parse_line(&t)))
}

/// A number from a control file, or `None` if the file does not exist.
pub async fn read_number<F: Fs>(fs: &F, path: &Path) -> Result<Option<u64>, ControlError> {
    read_text(fs, path)
        .await?
        .map(|t| parse_number(&t, path))
        .transpose()
}

/// The entries of a list control file, or `None` if the file does not exist.
pub async fn read_list<F: Fs>(fs: &F, path: &Path) -> Result<Option<Vec<String>>, ControlError> {
    Ok(read_text(fs, path).await?.map(|t| parse_list(&t)))
}

/// A set of host names as `locals` and `rcpthosts` hold them. Matching is
/// case-insensitive; an entry starting with a dot (`.example.com`) matches
/// every host below that domain, as in qmail's rcpthosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSet {
    hosts: BTreeSet<String>,
}

impl HostSet {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(hosts: I) -> Self {
        HostSet {
            hosts: hosts
                .into_iter()
                .map(|h| h.as_ref().trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Adds the entries of another set.
    pub fn extend(&mut self, other: HostSet) {
        self.hosts.extend(other.hosts);
    }

    /// Whether `host` is in the set exactly, or below a `.domain` entry.
    pub fn contains(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        host.char_indices()
            .filter(|(_, c)| *c == '.')
            .any(|(i, _)| self.hosts.contains(&host[i..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_set_matching() {
        let s = HostSet::new(["Example.COM", ".wild.test", "", "  spaced.test  "]);
        assert!(s.contains("example.com") && s.contains("EXAMPLE.com"));
        assert!(!s.contains("sub.example.com"), "no implicit subdomains");
        assert!(s.contains("a.wild.test") && s.contains("a.b.wild.test"));
        assert!(
            !s.contains("wild.test"),
            "a dot entry matches only below it"
        );
        assert!(s.contains("spaced.test"));
        assert!(!s.contains(""));
    }

    #[test]
    fn trims_like_qmail() {
        assert_eq!(trim_end("host.example \t\r\n"), "host.example");
    }
}
