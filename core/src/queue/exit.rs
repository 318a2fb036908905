//! qmail-queue's exit codes: what each means, the text qmail's injectors
//! report for it, and whether it is permanent. One table for every
//! injector, as qmail keeps it in `qmail.c`'s `qmail_close`.

/// How a submission to the queue (or to a `$QMAILQUEUE` program) ended,
/// when it did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QqExit {
    /// The program exited with this code (never 0 here).
    Exited(u8),
    /// The program was killed by a signal or crashed.
    Crashed,
}

impl QqExit {
    /// Address too long (permanent).
    pub const ADDRESS_TOO_LONG: QqExit = QqExit::Exited(11);
    /// Timed out (qmail-queue gives up after a day).
    pub const TIMEOUT: QqExit = QqExit::Exited(52);
    /// Write error or disk full.
    pub const WRITE: QqExit = QqExit::Exited(53);
    /// Unable to read the message or the envelope; also how an injector
    /// reports a submission it failed itself (qmail's `qmail_fail`).
    pub const READ: QqExit = QqExit::Exited(54);
    /// Trouble creating files in the queue.
    pub const CREATE: QqExit = QqExit::Exited(66);
    /// Internal bug.
    pub const BUG: QqExit = QqExit::Exited(81);
    /// Envelope format error.
    pub const ENVELOPE: QqExit = QqExit::Exited(91);
    /// The program could not be started.
    pub const EXEC: QqExit = QqExit::Exited(120);

    /// The exit code (a crash counts as qmail-queue's internal bug, 81).
    pub fn code(self) -> u8 {
        match self {
            QqExit::Exited(c) => c,
            QqExit::Crashed => 81,
        }
    }

    /// Permanent failures are exit codes 11 to 40 (and 115, the old
    /// spelling of 11); everything else is temporary.
    pub fn is_permanent(self) -> bool {
        match self {
            QqExit::Exited(c) => (11..=40).contains(&c) || c == 115,
            QqExit::Crashed => false,
        }
    }

    /// The text qmail's injectors report (qmail-smtpd puts it after `451 `
    /// or `554 `), byte for byte as `qmail_close` says it.
    pub fn text(self) -> &'static str {
        let QqExit::Exited(code) = self else {
            return "qq crashed (#4.3.0)";
        };
        match code {
            11 | 115 => "envelope address too long for qq (#5.1.3)",
            31 => "mail server permanently rejected message (#5.3.0)",
            51 => "qq out of memory (#4.3.0)",
            52 => "qq timeout (#4.3.0)",
            53 => "qq write error or disk full (#4.3.0)",
            // A 0 after the injector's own failure reads as a read error too.
            0 | 54 => "qq read error (#4.3.0)",
            55 => "qq unable to read configuration (#4.3.0)",
            56 => "qq trouble making network connection (#4.3.0)",
            61 => "qq trouble in home directory (#4.3.0)",
            62..=66 => "qq trouble creating files in queue (#4.3.0)",
            71 => "mail server temporarily rejected message (#4.3.0)",
            72 => "connection to mail server timed out (#4.4.1)",
            73 => "connection to mail server rejected (#4.4.1)",
            74 => "communication with mail server failed (#4.4.2)",
            // The envelope is the injector's own work: a bad one is its bug.
            81 | 91 => "qq internal bug (#4.3.0)",
            120 => "unable to exec qq (#4.3.0)",
            c if (11..=40).contains(&c) => "qq permanent problem (#5.3.0)",
            _ => "qq temporary problem (#4.3.0)",
        }
    }
}

impl std::fmt::Display for QqExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QqExit::Exited(c) => write!(f, "exit {c}: {}", self.text()),
            QqExit::Crashed => f.write_str(self.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_close_table() {
        let t = |c| QqExit::Exited(c).text();
        assert_eq!(t(11), "envelope address too long for qq (#5.1.3)");
        assert_eq!(t(115), t(11));
        assert_eq!(t(53), "qq write error or disk full (#4.3.0)");
        assert_eq!(t(54), "qq read error (#4.3.0)");
        assert_eq!(t(64), "qq trouble creating files in queue (#4.3.0)");
        assert_eq!(t(73), "connection to mail server rejected (#4.4.1)");
        assert_eq!(t(91), "qq internal bug (#4.3.0)");
        assert_eq!(t(20), "qq permanent problem (#5.3.0)");
        assert_eq!(t(99), "qq temporary problem (#4.3.0)");
        assert_eq!(QqExit::Crashed.text(), "qq crashed (#4.3.0)");
        for c in 0..=255u8 {
            let e = QqExit::Exited(c);
            assert_eq!(e.is_permanent(), (11..=40).contains(&c) || c == 115);
            assert_eq!(e.text().contains("#5."), e.is_permanent(), "{c}");
        }
        assert!(!QqExit::Crashed.is_permanent());
    }
}
