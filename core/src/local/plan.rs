//! qmail-local's reading of a `.qmail` file as a plan: a pure function
//! turns the instructions into the steps to take, `qmail-local -n` prints
//! them, and the agent executes them in order.

use std::path::{Path, PathBuf};

use super::dotqmail::Instruction;
use super::verdict::Verdict;

/// One step of a local delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Deliver into a maildir: the `.qmail` line as written, and the
    /// directory it names.
    Maildir { line: String, dir: PathBuf },
    /// Append to an mbox file: the line as written, and the file.
    Mbox { line: String, path: PathBuf },
    /// Run `sh -c command` with the message on stdin.
    Program(String),
    /// Forward to an address (every forward of the plan is sent at once,
    /// after the other steps).
    Forward(String),
    /// Embedded mode: the address's own maildir, created on first use.
    Mailbox(PathBuf),
    /// Stop with this failure: the next step is a file or program
    /// delivery in a file that may only forward.
    Refuse(Verdict),
}

/// The steps a `.qmail` file's instructions ask for, for a user whose
/// home is `home`; `forward_only` says the file's execute bit is set.
pub fn plan(instructions: Vec<Instruction>, home: &Path, mut forward_only: bool) -> Vec<Step> {
    let mut steps = Vec::with_capacity(instructions.len());
    for ins in instructions {
        match ins {
            Instruction::Comment | Instruction::Ignored => {}
            Instruction::ForwardOnly => forward_only = true,
            Instruction::Forward(addr) => steps.push(Step::Forward(addr)),
            Instruction::Maildir(line) => {
                if forward_only {
                    steps.push(Step::Refuse(file_but_x()));
                }
                let dir = file_path(home, &line);
                steps.push(Step::Maildir { line, dir });
            }
            Instruction::Mbox(line) => {
                if forward_only {
                    steps.push(Step::Refuse(file_but_x()));
                }
                let path = file_path(home, &line);
                steps.push(Step::Mbox { line, path });
            }
            Instruction::Program(command) => {
                if forward_only {
                    steps.push(Step::Refuse(Verdict::temporary(
                        "Uh-oh: .qmail has prog delivery but has x bit set. (#4.7.0)",
                    )));
                }
                steps.push(Step::Program(command));
            }
        }
    }
    steps
}

fn file_but_x() -> Verdict {
    Verdict::temporary("Uh-oh: .qmail has file delivery but has x bit set. (#4.7.0)")
}

/// qmail-local -n's description of a plan: one line per delivery.
pub fn describe(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        let line = match step {
            Step::Maildir { line, .. } => format!("maildir {line}"),
            Step::Mbox { line, .. } => format!("mbox {line}"),
            Step::Program(c) => format!("program {c}"),
            Step::Forward(a) => format!("forward {a}"),
            Step::Mailbox(dir) => format!("maildir {}/", dir.display()),
            Step::Refuse(_) => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A `.qmail` path line as a path: absolute as is, else below the home.
pub fn file_path(home: &Path, line: &str) -> PathBuf {
    if line.starts_with('/') {
        return PathBuf::from(line);
    }
    let mut rest = line;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    home.join(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::dotqmail::parse;

    fn steps(text: &str, x: bool) -> Vec<Step> {
        plan(parse(text.as_bytes()).unwrap(), Path::new("/home/bob"), x)
    }

    #[test]
    fn each_line_becomes_its_step_in_order() {
        let s = steps(
            "# hi\n./Maildir/\n/var/mail/bob\n|prog x\n&fw@x\nother@y\n+z\n",
            false,
        );
        assert_eq!(
            s,
            [
                Step::Maildir {
                    line: "./Maildir/".into(),
                    dir: "/home/bob/Maildir/".into()
                },
                Step::Mbox {
                    line: "/var/mail/bob".into(),
                    path: "/var/mail/bob".into()
                },
                Step::Program("prog x".into()),
                Step::Forward("fw@x".into()),
                Step::Forward("other@y".into()),
            ]
        );
        assert_eq!(
            describe(&s),
            "maildir ./Maildir/\nmbox /var/mail/bob\nprogram prog x\nforward fw@x\nforward other@y\n"
        );
    }

    #[test]
    fn a_forward_only_file_refuses_files_and_programs_where_they_come() {
        let s = steps("&a@x\n./Mailbox\n", true);
        assert_eq!(s[0], Step::Forward("a@x".into()));
        assert!(matches!(&s[1], Step::Refuse(v) if v.text.contains("file delivery but has x bit")));
        // `+` makes the rest of the file forward-only.
        let s = steps("|early\n+list\n|late\n", false);
        assert_eq!(s[0], Step::Program("early".into()));
        assert!(matches!(&s[1], Step::Refuse(v) if v.text.contains("prog delivery")));
        // -n shows the deliveries, not the refusals.
        assert_eq!(describe(&s), "program early\nprogram late\n");
    }

    #[test]
    fn file_lines_are_below_the_home_unless_absolute() {
        let h = Path::new("/home/bob");
        assert_eq!(
            file_path(h, "./Maildir/"),
            PathBuf::from("/home/bob/Maildir/")
        );
        assert_eq!(
            file_path(h, "././Mailbox"),
            PathBuf::from("/home/bob/Mailbox")
        );
        assert_eq!(file_path(h, ".mbox"), PathBuf::from("/home/bob/.mbox"));
        assert_eq!(
            file_path(h, "/var/mail/bob"),
            PathBuf::from("/var/mail/bob")
        );
    }
}
