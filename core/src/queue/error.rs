use std::io;

use thiserror::Error;

use super::QqExit;

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
    /// The envelope is larger than qmail-queue keeps in memory (exit 51).
    #[error("out of memory: the envelope is too large")]
    OutOfMemory,
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
            QueueError::OutOfMemory => 51,
        }
    }

    /// The same as qmail-queue's exit.
    pub fn exit(&self) -> QqExit {
        QqExit::Exited(self.exit_code())
    }

    /// Whether the failure is permanent (qmail: exit codes 11 to 40).
    pub fn is_permanent(&self) -> bool {
        self.exit().is_permanent()
    }
}
