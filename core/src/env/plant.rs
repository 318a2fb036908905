//! Deliberately planted bugs, to prove the simulation's oracle catches them.
//!
//! Each one disables a single step the never-lose-mail guarantee rests on.
//! Core asks [`Env::planted`](super::Env::planted) at that step; only the
//! simulated environment can answer yes (the production environment keeps the
//! trait's default, `false`), so no configuration, file or variable can turn a
//! planted bug on in a real installation.

/// One planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plant {
    /// Injection acknowledges without syncing the message file.
    AckBeforeSync,
    /// Injection skips the sync of `todo/` after the rename.
    SkipDirSync,
    /// The scheduler marks a recipient done before delivering to it.
    DoneBeforeDeliver,
    /// The scheduler forgets recorded failures without injecting the bounce.
    DropBounce,
    /// The scheduler removes a message while a recipient is still pending.
    RemovePending,
    /// Maildir delivery links the message into `new/` without syncing it.
    SkipMaildirSync,
    /// Remote delivery reports a recipient delivered when the remote server
    /// answered 4xx (at RCPT, to DATA, or after the message).
    DoneOnRemoteDefer,
}

impl Plant {
    pub const ALL: [Plant; 7] = [
        Plant::AckBeforeSync,
        Plant::SkipDirSync,
        Plant::DoneBeforeDeliver,
        Plant::DropBounce,
        Plant::RemovePending,
        Plant::SkipMaildirSync,
        Plant::DoneOnRemoteDefer,
    ];

    /// The name `sim --plant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Plant::AckBeforeSync => "ack-before-sync",
            Plant::SkipDirSync => "skip-dir-sync",
            Plant::DoneBeforeDeliver => "done-before-deliver",
            Plant::DropBounce => "drop-bounce",
            Plant::RemovePending => "remove-pending",
            Plant::SkipMaildirSync => "skip-maildir-sync",
            Plant::DoneOnRemoteDefer => "done-on-remote-defer",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Plant::AckBeforeSync => "injection acknowledges before the message file is synced",
            Plant::SkipDirSync => "injection never syncs todo/ after the rename",
            Plant::DoneBeforeDeliver => "a recipient is marked done before its delivery",
            Plant::DropBounce => "recorded failures are forgotten instead of bounced",
            Plant::RemovePending => "a message is removed with recipients still pending",
            Plant::SkipMaildirSync => "maildir delivery links into new/ without an fsync",
            Plant::DoneOnRemoteDefer => "a remote 4xx marks the recipient delivered",
        }
    }

    pub fn from_name(name: &str) -> Option<Plant> {
        Plant::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The plant's bit in a [`PlantSet`].
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of planted bugs (a bit set: cheap to copy and to test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlantSet(u32);

impl PlantSet {
    pub const EMPTY: PlantSet = PlantSet(0);

    pub fn with(self, p: Plant) -> PlantSet {
        PlantSet(self.0 | p.bit())
    }

    pub fn contains(self, p: Plant) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_exactly_what_was_added() {
        for p in Plant::ALL {
            assert_eq!(Plant::from_name(p.name()), Some(p));
            let s = PlantSet::EMPTY.with(p);
            assert!(s.contains(p));
            assert_eq!(Plant::ALL.iter().filter(|q| s.contains(**q)).count(), 1);
        }
        assert_eq!(Plant::from_name("nonsense"), None);
        assert!(PlantSet::default().is_empty());
    }
}
