//! The decisions of the helper programs qmail ships for `.qmail` files
//! (`condredirect`, `bouncesaying`, `except`, `preline`); the programs in
//! `bins/` run the child processes and apply these.

use crate::env::ExitCode;

/// What a conditional helper does after its test program ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The program exited 0: redirect (condredirect) or bounce (bouncesaying).
    Act,
    /// The program exited 111 or crashed: exit 111, try again later.
    Retry,
    /// Anything else (including a program that does not exist): exit 0 and
    /// let the rest of the `.qmail` file run.
    Continue,
}

/// condredirect's and bouncesaying's reading of their program's exit.
pub fn condition(status: ExitCode) -> Condition {
    match status {
        ExitCode::Exited(0) => Condition::Act,
        ExitCode::Exited(111) | ExitCode::Signaled => Condition::Retry,
        ExitCode::Exited(_) => Condition::Continue,
    }
}

/// except's exit code for its program's exit: 0 becomes 100, 111 (and a
/// crash) stays temporary, anything else becomes 0.
pub fn except_code(status: ExitCode) -> u8 {
    match condition(status) {
        Condition::Act => 100,
        Condition::Retry => 111,
        Condition::Continue => 0,
    }
}

/// preline's choice of lines (`-f`, `-r`, `-d` leave one out; `-F`, `-R`,
/// `-D` put it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrelineFlags {
    pub from: bool,
    pub return_path: bool,
    pub delivered_to: bool,
}

impl Default for PrelineFlags {
    fn default() -> Self {
        PrelineFlags {
            from: true,
            return_path: true,
            delivered_to: true,
        }
    }
}

impl PrelineFlags {
    /// Applies option letters (the characters after a `-`); `Err` names an
    /// unknown one.
    pub fn apply(&mut self, letters: &str) -> Result<(), char> {
        for c in letters.chars() {
            match c {
                'f' => self.from = false,
                'r' => self.return_path = false,
                'd' => self.delivered_to = false,
                'F' => self.from = true,
                'R' => self.return_path = true,
                'D' => self.delivered_to = true,
                other => return Err(other),
            }
        }
        Ok(())
    }

    /// The lines to put above the message: UFLINE, RPLINE, DTLINE as chosen.
    pub fn prefix(&self, ufline: &str, rpline: &str, dtline: &str) -> String {
        let mut out = String::new();
        if self.from {
            out.push_str(ufline);
        }
        if self.return_path {
            out.push_str(rpline);
        }
        if self.delivered_to {
            out.push_str(dtline);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_except() {
        for (status, cond, exc) in [
            (ExitCode::Exited(0), Condition::Act, 100),
            (ExitCode::Exited(111), Condition::Retry, 111),
            (ExitCode::Signaled, Condition::Retry, 111),
            (ExitCode::Exited(100), Condition::Continue, 0),
            (ExitCode::Exited(1), Condition::Continue, 0),
            (ExitCode::Exited(99), Condition::Continue, 0),
            (ExitCode::Exited(127), Condition::Continue, 0),
        ] {
            assert_eq!(condition(status), cond, "{status:?}");
            assert_eq!(except_code(status), exc, "{status:?}");
        }
    }

    #[test]
    fn preline_flags() {
        let mut f = PrelineFlags::default();
        assert_eq!(f.prefix("U\n", "R\n", "D\n"), "U\nR\nD\n");
        f.apply("fd").unwrap();
        assert_eq!(f.prefix("U\n", "R\n", "D\n"), "R\n");
        f.apply("Fr").unwrap();
        assert_eq!(f.prefix("U\n", "R\n", "D\n"), "U\n");
        assert_eq!(f.apply("x"), Err('x'));
    }
}
