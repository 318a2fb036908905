//! The SMTP server side of qmail-smtpd, without any I/O.
//!
//! [`SmtpSession`] is the protocol as a state machine over bytes in and
//! [`Action`]s out; the async driver that runs it over a socket and the queue
//! lives elsewhere. The pieces it is made of are here too, each in its own
//! file: envelope path parsing ([`parse_path`]), the rcpthosts relay check
//! ([`RcptHosts`]), the DATA decoder, the Received lines
//! ([`smtp_received_line`], [`queue_received_line`]) and the reply texts
//! ([`replies`]).

mod address;
mod body;
mod rcpthosts;
mod received;
pub mod replies;
mod server;

pub use address::{EsmtpParam, MAX_ADDRESS_LEN, ParsedPath, PathError, parse_path};
pub use rcpthosts::RcptHosts;
pub use received::{InvokedFrom, RemoteInfo, queue_received_line, smtp_received_line};
pub use server::{
    Action, CommitOutcome, DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_RECIPIENTS, Feed, MAX_HOPS,
    Refusal, SmtpConfig, SmtpSession,
};
