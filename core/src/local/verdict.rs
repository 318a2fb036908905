//! How a local delivery that did not succeed ended, whichever step failed:
//! qmail-local's exit 111 (temporary) or 100 (permanent) and the text it
//! printed, which is the report of the steps that ran, then qmail's status
//! line, once.

use super::dotqmail::ParseError;
use super::forward::ForwardError;
use crate::deliver::Outcome;

/// Whether the scheduler tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Temporary,
    Permanent,
}

/// A failed local delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: Kind,
    /// One or more lines, each ending in a newline.
    pub text: String,
}

impl Verdict {
    /// A temporary failure saying `status` (its newline added if missing).
    pub fn temporary(status: impl Into<String>) -> Verdict {
        Verdict::status(Kind::Temporary, status.into())
    }

    /// A permanent failure saying `status` (its newline added if missing).
    pub fn permanent(status: impl Into<String>) -> Verdict {
        Verdict::status(Kind::Permanent, status.into())
    }

    fn status(kind: Kind, mut text: String) -> Verdict {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Verdict { kind, text }
    }

    /// A failure whose whole text is a report as it stands (a program's
    /// output, which says why itself).
    pub fn report(kind: Kind, text: String) -> Verdict {
        Verdict { kind, text }
    }

    /// The report of the steps that ran before, then this verdict's text.
    pub fn after(mut self, report: &str) -> Verdict {
        self.text.insert_str(0, report);
        self
    }

    /// The scheduler's view of it.
    pub fn outcome(self) -> Outcome {
        match self.kind {
            Kind::Temporary => Outcome::Deferral(self.text),
            Kind::Permanent => Outcome::Failure(self.text),
        }
    }
}

impl From<ForwardError> for Verdict {
    fn from(e: ForwardError) -> Verdict {
        match e {
            ForwardError::Temporary(t) => Verdict::temporary(t),
            ForwardError::Permanent(t) => Verdict::permanent(t),
        }
    }
}

impl From<ParseError> for Verdict {
    fn from(e: ParseError) -> Verdict {
        Verdict::temporary(e.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_is_appended_once_after_the_report() {
        let v = Verdict::temporary("Unable to write x. (#4.3.0)").after("said hello\n");
        assert_eq!(v.text, "said hello\nUnable to write x. (#4.3.0)\n");
        assert_eq!(Verdict::permanent("gone\n").text, "gone\n");
        assert_eq!(
            Verdict::report(Kind::Permanent, String::new()).outcome(),
            Outcome::Failure(String::new())
        );
        assert_eq!(
            Verdict::temporary("t").outcome(),
            Outcome::Deferral("t\n".into())
        );
    }
}
