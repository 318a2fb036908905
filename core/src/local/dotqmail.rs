//! `.qmail` files (dot-qmail(5)): which file controls an address, and what
//! its lines say.

/// One line of a `.qmail` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `# ...`, and blank lines after the first.
    Comment,
    /// `|command`: run `sh -c command` with the message on stdin.
    Program(String),
    /// `/path` or `./path` not ending in `/`: append to an mbox file.
    Mbox(String),
    /// `/path/` or `./path/`: deliver into a maildir.
    Maildir(String),
    /// `&address`, or a line starting with anything else: forward.
    Forward(String),
    /// `+list`: the file may hold forwards only (as the execute bit says).
    ForwardOnly,
    /// Any other line starting with `+`: ignored, as qmail does.
    Ignored,
}

/// Why a `.qmail` file cannot be followed (a temporary failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    FirstLineBlank,
}

impl ParseError {
    pub fn text(&self) -> &'static str {
        match self {
            ParseError::FirstLineBlank => "Uh-oh: first line of .qmail file is blank. (#4.2.1)",
        }
    }
}

/// Splits a `.qmail` file into instructions. Spaces and tabs at the end of a
/// line are ignored; a blank first line is an error.
pub fn parse(text: &[u8]) -> Result<Vec<Instruction>, ParseError> {
    let text = String::from_utf8_lossy(text);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let mut out = Vec::new();
    for (n, raw) in body.split('\n').enumerate() {
        let line = raw.trim_end_matches([' ', '\t']);
        let ins = match line.as_bytes().first() {
            None if n == 0 => return Err(ParseError::FirstLineBlank),
            None | Some(b'#') => Instruction::Comment,
            Some(b'.') | Some(b'/') => {
                if line.ends_with('/') {
                    Instruction::Maildir(line.to_string())
                } else {
                    Instruction::Mbox(line.to_string())
                }
            }
            Some(b'|') => Instruction::Program(line[1..].to_string()),
            Some(b'+') => {
                if &line[1..] == "list" {
                    Instruction::ForwardOnly
                } else {
                    Instruction::Ignored
                }
            }
            Some(b'&') => Instruction::Forward(line[1..].to_string()),
            Some(_) => Instruction::Forward(line.to_string()),
        };
        out.push(ins);
    }
    Ok(out)
}

/// The extension as it appears in file names: lowercased, dots turned into
/// colons (so `.qmail-../x` can never name another file).
pub fn safe_ext(ext: &str) -> String {
    ext.chars()
        .map(|c| match c {
            '.' => ':',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// One file name to try, and the value of `DEFAULT` if it is the one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub default: Option<String>,
}

/// The `.qmail` files that may control `dash`+`ext`, in the order they are
/// tried: `.qmail-foo-bar`, `.qmail-foo-default`, `.qmail-default` for
/// `-`/`foo-bar`; just `.qmail` for the bare user (empty dash and ext).
pub fn candidates(dash: &str, ext: &str) -> Vec<Candidate> {
    let safe = safe_ext(ext);
    let mut out = Vec::new();
    let first = format!(".qmail{dash}{safe}");
    let default = safe
        .strip_suffix("default")
        .and_then(|_| ext.get(ext.len() - 7..))
        .map(str::to_string);
    out.push(Candidate {
        name: first,
        default,
    });
    if dash.is_empty() {
        // Only the assignment's own file (qmail-users lets an empty dash
        // name `.qmail<ext>` exactly).
        return out;
    }
    for i in (0..=safe.len()).rev() {
        if i == 0 || safe.as_bytes()[i - 1] == b'-' {
            out.push(Candidate {
                name: format!(".qmail{dash}{}default", &safe[..i]),
                default: ext.get(i..).map(str::to_string),
            });
        }
    }
    out
}

/// The files whose existence changes the forwarding sender:
/// `.qmail<dash><ext>-owner` and `.qmail<dash><ext>-owner-default`.
pub fn owner_files(dash: &str, ext: &str) -> (String, String) {
    let base = format!(".qmail{dash}{}", safe_ext(ext));
    (format!("{base}-owner"), format!("{base}-owner-default"))
}

/// The envelope sender for forwarded copies (`NEWSENDER`): the original
/// sender, unless `-owner` exists (`local-owner@host`) and also
/// `-owner-default` (the VERP form `local-owner-@host-@[]`). Bounces (`""`
/// and `#@[]`) keep their sender.
pub fn new_sender(
    sender: &str,
    local: &str,
    host: &str,
    owner: bool,
    owner_default: bool,
) -> String {
    if sender.is_empty() || sender == "#@[]" || !owner {
        sender.to_string()
    } else if owner_default {
        format!("{local}-owner-@{host}-@[]")
    } else {
        format!("{local}-owner@{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;
    use proptest::prelude::*;

    #[test]
    fn every_line_kind() {
        let f = b"# comment\n|preline procmail\n/var/mail/bob\n./Mailbox\n./Maildir/\n/abs/Maildir/\n&bob@example.org\nalice@example.org\n9lives@example.org\n+list\n+other\n\n\t \n";
        assert_eq!(
            parse(f).unwrap(),
            vec![
                Comment,
                Program("preline procmail".into()),
                Mbox("/var/mail/bob".into()),
                Mbox("./Mailbox".into()),
                Maildir("./Maildir/".into()),
                Maildir("/abs/Maildir/".into()),
                Forward("bob@example.org".into()),
                Forward("alice@example.org".into()),
                Forward("9lives@example.org".into()),
                ForwardOnly,
                Ignored,
                Comment,
                Comment,
            ]
        );
    }

    #[test]
    fn trailing_blanks_are_trimmed_but_not_leading_ones() {
        assert_eq!(
            parse(b"./Maildir/ \t\n|cmd  x  \n").unwrap(),
            vec![Maildir("./Maildir/".into()), Program("cmd  x".into())]
        );
        assert_eq!(
            parse(b"# x\n ./Mailbox").unwrap()[1],
            Forward(" ./Mailbox".into())
        );
    }

    #[test]
    fn a_blank_first_line_is_an_error() {
        assert_eq!(parse(b"\n./Mailbox\n"), Err(ParseError::FirstLineBlank));
        assert_eq!(parse(b"  \n"), Err(ParseError::FirstLineBlank));
        assert_eq!(parse(b"./Mailbox"), Ok(vec![Mbox("./Mailbox".into())]));
    }

    fn names(dash: &str, ext: &str) -> Vec<(String, Option<String>)> {
        candidates(dash, ext)
            .into_iter()
            .map(|c| (c.name, c.default))
            .collect()
    }

    #[test]
    fn lookup_order() {
        let s = |a: &str, b: Option<&str>| (a.to_string(), b.map(str::to_string));
        assert_eq!(names("", ""), vec![s(".qmail", None)]);
        assert_eq!(
            names("-", "foo-bar"),
            vec![
                s(".qmail-foo-bar", None),
                s(".qmail-foo-default", Some("bar")),
                s(".qmail-default", Some("foo-bar")),
            ]
        );
        assert_eq!(
            names("-", "a-b-"),
            vec![
                s(".qmail-a-b-", None),
                s(".qmail-a-b-default", Some("")),
                s(".qmail-a-default", Some("b-")),
                s(".qmail-default", Some("a-b-")),
            ]
        );
        assert_eq!(
            names("-", "Jo.Ann-X"),
            vec![
                s(".qmail-jo:ann-x", None),
                s(".qmail-jo:ann-default", Some("X")),
                s(".qmail-default", Some("Jo.Ann-X")),
            ]
        );
        assert_eq!(
            names("-", "list-default")[0],
            s(".qmail-list-default", Some("default"))
        );
    }

    #[test]
    fn owner_rules() {
        assert_eq!(
            owner_files("-", "List"),
            (
                ".qmail-list-owner".into(),
                ".qmail-list-owner-default".into()
            )
        );
        let ns = |s, o, d| new_sender(s, "bob-list", "example.org", o, d);
        assert_eq!(ns("a@b", false, false), "a@b");
        assert_eq!(ns("a@b", false, true), "a@b");
        assert_eq!(ns("a@b", true, false), "bob-list-owner@example.org");
        assert_eq!(ns("a@b", true, true), "bob-list-owner-@example.org-@[]");
        assert_eq!(ns("", true, true), "");
        assert_eq!(ns("#@[]", true, false), "#@[]");
    }

    proptest! {
        #[test]
        fn candidate_names_never_escape_the_home(dash in "-?", ext in "[a-zA-Z0-9./-]{0,12}") {
            for c in candidates(&dash, &ext) {
                prop_assert!(!c.name.contains('.') || c.name.starts_with(".qmail"));
                prop_assert!(!c.name[1..].contains('.'), "{}", c.name);
            }
        }

        #[test]
        fn parse_never_panics_and_keeps_line_count(text in "[#|/.&+a-z \\t\\n]{0,60}") {
            if let Ok(v) = parse(text.as_bytes()) {
                let lines = text.strip_suffix('\n').unwrap_or(&text).split('\n').count();
                prop_assert_eq!(v.len(), lines);
            }
        }
    }
}
