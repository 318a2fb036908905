use std::io;

use thiserror::Error;

/// Why a queue operation failed. Each maps to one of qmail-queue's exit codes.
#[derive(Debug, Error)]
pub enum QueueError {
    /// The envelope is malformed (qmail-queue exit 91).
    #[error("envelope format error: {0}")]
    BadEnvelope(String),
    /// An address is too long (exit 11, permanent).
    #[error("address too long")]
    AddressTooLong,
    /// Reading the message or envelope from the caller failed (exit 54).
    #[error("unable to read the message or envelope: {0}")]
    ReadInput(#[source] io::Error),
    /// Writing to the queue failed, the disk is full or a sync failed (exit 53).
    #[error("write error or disk full: {0}")]
    Write(#[source] io::Error),
    /// Creating a file in the queue failed (exit 62-66 in qmail).
    #[error("trouble creating files in the queue: {0}")]
    Create(#[source] io::Error),
    /// A queue file is not in the format this version writes.
    #[error("corrupt queue file {path}: {why}")]
    Corrupt { path: String, why: String },
    /// Any other filesystem trouble while working on the queue.
    #[error("queue I/O error: {0}")]
    Io(#[from] io::Error),
}

impl QueueError {
    /// qmail-queue's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            QueueError::AddressTooLong => 11,
            QueueError::ReadInput(_) => 54,
            QueueError::Write(_) => 53,
            QueueError::Create(_) => 66,
            QueueError::BadEnvelope(_) => 91,
            QueueError::Corrupt { .. } => 81,
            QueueError::Io(_) => 53,
        }
    }

    /// Whether the failure is permanent (qmail: exit codes 11 to 40).
    pub fn is_permanent(&self) -> bool {
        (11..=40).contains(&self.exit_code())
    }

    /// The short text qmail-smtpd's `451 qq ...` replies use for this failure.
    pub fn qq_text(&self) -> &'static str {
        qq_text(self.exit_code())
    }
}

/// qmail-smtpd's reply text for a qmail-queue exit code (also for a
/// `$QMAILQUEUE` program's). Codes 11 to 40 are permanent failures.
pub fn qq_text(exit_code: u8) -> &'static str {
    match exit_code {
        11 => "envelope address too long for qq (#5.1.3)",
        53 => "qq write error or disk full (#4.3.0)",
        54 => "qq read error (#4.3.0)",
        66 => "qq trouble creating files in queue (#4.3.0)",
        // qmail-smtpd reports an envelope qmail-queue could not parse as
        // its own bug: the envelope is what qmail-smtpd wrote.
        81 | 91 => "qq internal bug (#4.3.0)",
        31 => "mail server permanently rejected message (#5.3.0)",
        52 => "qq timeout (#4.3.0)",
        71 => "mail server temporarily rejected message (#4.3.0)",
        72..=74 => "qq remote trouble (#4.3.0)",
        c if (11..=40).contains(&c) => "qq permanent problem (#5.3.0)",
        _ => "qq temporary problem (#4.3.0)",
    }
}
