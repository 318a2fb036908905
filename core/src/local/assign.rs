//! Address to user: `users/assign` (qmail-users(5)), then the passwd
//! database, then the `alias` user.
//!
//! `users/assign` is read in its text form (qmail compiles it to a cdb with
//! qmail-newu; reading the text directly needs no compile step and gives the
//! same answers):
//!
//! * `=local:user:uid:gid:homedir:dash:ext:` assigns the address `local`
//!   exactly; the first line for an address wins;
//! * `+loc:user:uid:gid:homedir:dash:pre:` assigns every address starting
//!   with `loc`, with extension `pre` followed by the rest of the address; the
//!   longest matching prefix wins, and an exact line beats every prefix line;
//! * a line holding a single `.` ends the list.
//!
//! Addresses are matched without regard to case.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Who is in charge of an address and which `.qmail` file controls it
/// (`homedir/.qmail<dash><ext>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub dash: String,
    pub ext: String,
}

/// A parsed `users/assign`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignTable {
    exact: BTreeMap<String, Assignment>,
    /// Prefix lines by lowercased prefix (the first line for a prefix wins).
    wild: BTreeMap<String, Assignment>,
}

/// A line of `users/assign` that is not in qmail's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("users/assign line {line}: {why}")]
pub struct AssignError {
    pub line: usize,
    pub why: String,
}

impl AssignTable {
    /// Parses the text of `users/assign`. Empty lines are skipped; any other
    /// line must be an `=` or `+` assignment, until a lone `.`.
    pub fn parse(text: &str) -> Result<AssignTable, AssignError> {
        let mut table = AssignTable::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line == "." {
                return Ok(table);
            }
            if line.is_empty() {
                continue;
            }
            let err = |why: &str| AssignError {
                line: n + 1,
                why: why.to_string(),
            };
            // Not split_at(1): the line may start with a multi-byte character.
            let (kind, rest) = match line.as_bytes()[0] {
                b'=' | b'+' => line.split_at(1),
                _ => return Err(err("not an = or + assignment")),
            };
            let f: Vec<&str> = rest.split(':').collect();
            if f.len() < 8 {
                return Err(err("fewer than seven fields"));
            }
            let num = |s: &str, what: &str| {
                s.parse::<u32>()
                    .map_err(|_| err(&format!("{what} {s:?} is not a number")))
            };
            if !f[4].starts_with('/') {
                return Err(err("the home directory is not an absolute path"));
            }
            let a = Assignment {
                user: f[1].to_string(),
                uid: num(f[2], "uid")?,
                gid: num(f[3], "gid")?,
                home: PathBuf::from(f[4]),
                dash: f[5].to_string(),
                ext: f[6].to_string(),
            };
            let key = f[0].to_ascii_lowercase();
            let map = if kind == "=" {
                &mut table.exact
            } else {
                &mut table.wild
            };
            map.entry(key).or_insert(a);
        }
        Ok(table)
    }

    /// The assignment for `local`, if any line covers it.
    pub fn lookup(&self, local: &str) -> Option<Assignment> {
        let lower = local.to_ascii_lowercase();
        if let Some(a) = self.exact.get(&lower) {
            return Some(a.clone());
        }
        // Longest prefix first.
        (0..=lower.len())
            .rev()
            .filter(|&i| lower.is_char_boundary(i))
            .find_map(|i| {
                self.wild.get(&lower[..i]).map(|a| Assignment {
                    ext: format!("{}{}", a.ext, &local[i..]),
                    ..a.clone()
                })
            })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wild.is_empty()
    }
}

/// The passwd user names to try for `local`, longest first, with the
/// extension each leaves: `joe-a-b` tries `joe-a-b`, `joe-a` (`b`), `joe`
/// (`a-b`), as qmail-getpw does with its `-` separator. Names are lowercased.
pub fn passwd_candidates(local: &str) -> Vec<(String, Option<String>)> {
    let mut out = vec![(local.to_ascii_lowercase(), None)];
    for (i, _) in local.char_indices().rev().filter(|(_, c)| *c == '-') {
        out.push((
            local[..i].to_ascii_lowercase(),
            Some(local[i + 1..].to_string()),
        ));
    }
    out.retain(|(name, _)| !name.is_empty() && name.len() <= 32);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by the `assign` fuzz target (docs/fuzzing.md): a line starting
    /// with a multi-byte character made the parser panic.
    #[test]
    fn a_line_starting_with_a_multibyte_character_is_an_error() {
        let text = "=alice:alice:1000:1000:/home/alice:::\n\u{fffd}st-:alias:7790:2108:/v:-::\n";
        let e = AssignTable::parse(text).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.why, "not an = or + assignment");
        assert!(AssignTable::parse("\u{e9}").is_err());
    }

    const MAN_EXAMPLE: &str = "+:alias:7790:2108:/var/qmail/alias:-::\n\
        +joe-:joe:507:100:/home/joe:-::\n\
        =joe:joe:507:100:/home/joe:::\n\
        =joe.shmoe:joe:503:78:/home/joe:::\n\
        .\n\
        =ignored:x:1:1:/x:::\n";

    #[test]
    fn the_man_page_example() {
        let t = AssignTable::parse(MAN_EXAMPLE).unwrap();
        let joe = t.lookup("joe").unwrap();
        assert_eq!(
            (joe.user.as_str(), joe.dash.as_str(), joe.ext.as_str()),
            ("joe", "", "")
        );
        let d = t.lookup("joe-direct").unwrap();
        assert_eq!(
            (d.user.as_str(), d.dash.as_str(), d.ext.as_str()),
            ("joe", "-", "direct")
        );
        let b = t.lookup("bill").unwrap();
        assert_eq!(
            (b.user.as_str(), b.uid, b.ext.as_str()),
            ("alias", 7790, "bill")
        );
        assert_eq!(t.lookup("Joe.Shmoe").unwrap().uid, 503);
        assert!(
            t.lookup("ignored").unwrap().user == "alias",
            "lines after . are ignored"
        );
    }

    #[test]
    fn first_exact_line_wins_and_exact_beats_wildcards() {
        let t = AssignTable::parse(
            "=a:first:1:1:/h1:::\n=a:second:2:2:/h2:::\n+a:wild:3:3:/h3:-:x:\n.\n",
        )
        .unwrap();
        assert_eq!(t.lookup("A").unwrap().user, "first");
        let w = t.lookup("abc").unwrap();
        assert_eq!((w.user.as_str(), w.ext.as_str()), ("wild", "xbc"));
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            "=a:u:1:1:/h::\n",
            "=a:u:x:1:/h:::\n",
            "=a:u:1:1:relative:::\n",
            "garbage\n",
        ] {
            assert!(AssignTable::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwd_candidates_longest_first() {
        assert_eq!(
            passwd_candidates("Joe-A-b"),
            vec![
                ("joe-a-b".to_string(), None),
                ("joe-a".to_string(), Some("b".to_string())),
                ("joe".to_string(), Some("A-b".to_string())),
            ]
        );
        assert_eq!(passwd_candidates("-x"), vec![("-x".to_string(), None)]);
    }

    proptest! {
        /// A wildcard line means the same as an exact line for every extension.
        #[test]
        fn wildcard_is_exact_for_every_extension(pre in "[a-z]{0,4}", rest in "[a-zA-Z0-9.-]{0,10}") {
            let t = AssignTable::parse(&format!("+{pre}:u:1:2:/home/u:-:p:\n.\n")).unwrap();
            let local = format!("{pre}{rest}");
            let a = t.lookup(&local).unwrap();
            let exact = AssignTable::parse(&format!("={local}:u:1:2:/home/u:-:p{rest}:\n.\n")).unwrap();
            prop_assert_eq!(Some(a), exact.lookup(&local));
        }

        #[test]
        fn parse_never_panics(text in "[=+.:a-z0-9/\\n]{0,80}") {
            let _ = AssignTable::parse(&text);
        }
    }
}
