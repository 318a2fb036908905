//! qmail-inject: mail from local programs. Reads a message, completes its
//! header as qmail-inject does (Date, Message-ID, From, host and domain
//! completion of every address, Bcc and Return-Path removed), works out the
//! envelope (recipients from the arguments and/or the header, the sender
//! from `-f`, Return-Path or the environment) and queues it. The
//! `sendmail` interface is a thin layer over the same code (`bins/`).
//!
//! * [`token`] and [`addrlist`]: RFC 5322 address lists;
//! * [`rewrite`]: qmail's address completion;
//! * [`header`]: where the header ends and which fields it has;
//! * [`settings`]: environment variables and control files;
//! * [`prepare`]: the new header and the envelope (pure);
//! * [`stream`]: reading the message and handing it to the queue.

pub mod addrlist;
pub mod header;
pub mod prepare;
pub mod rewrite;
pub mod settings;
pub mod stream;
pub mod token;

pub use prepare::{Options, Prepared, RecipientSource, Stamp, prepare};
pub use settings::{Controls, Flags, Settings, VAR_NAMES, Vars};
pub use stream::{Destination, inject};

use thiserror::Error;

use crate::control::ControlError;

/// Why nothing was sent. Each says which exit code qmail-inject gives.
#[derive(Debug, Error)]
pub enum InjectError {
    #[error("unable to parse address: {0}")]
    BadAddress(String),
    #[error("unable to parse this line:\n{}", String::from_utf8_lossy(.0).trim_end())]
    BadField(Vec<u8>),
    #[error("the message contains a NUL byte; nothing was sent")]
    Nul,
    #[error("no recipients: name them as arguments, or use -t with To, Cc or Bcc fields")]
    NoRecipients,
    #[error("address is not UTF-8: {0}")]
    NotUtf8(String),
    #[error("unable to read controls: {0}")]
    Control(#[from] ControlError),
    #[error("read error: {0}")]
    Read(std::io::Error),
    #[error("write error: {0}")]
    Write(std::io::Error),
    /// The queue (or `$QMAILQUEUE`) refused or failed, with qmail-queue's
    /// text for its exit code.
    #[error("{text}")]
    Queue { permanent: bool, text: String },
}

impl InjectError {
    /// qmail-inject's exit code: 100 for a permanent failure (bad usage, a
    /// message that cannot be sent as it is), 111 for a temporary one.
    pub fn exit_code(&self) -> u8 {
        match self {
            InjectError::BadAddress(_)
            | InjectError::BadField(_)
            | InjectError::Nul
            | InjectError::NoRecipients
            | InjectError::NotUtf8(_) => 100,
            InjectError::Queue { permanent, .. } if *permanent => 100,
            _ => 111,
        }
    }
}
