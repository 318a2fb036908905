//! What the world outside the MTA knows: the messages clients sent (and
//! which were acknowledged), and the deliveries that left the MTA for good
//! (a remote MTA's `250`, a delivery program's exit 0). It lives outside
//! every crashing host.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One message a client tried to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub sender: String,
    /// The recipients the server accepted at RCPT (the envelope).
    pub recipients: Vec<String>,
    /// The message as the queue stores it: LF line ends, dots unstuffed.
    pub body: Vec<u8>,
    /// A `250` came back after the final dot of some attempt.
    pub accepted: bool,
    /// Attempts that got as far as sending the body.
    pub attempts: u32,
}

/// A delivery that left the MTA: recorded by the remote MTA (or the
/// delivery program) at the moment it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    pub recipient: String,
    pub sender: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct LedgerInner {
    /// By message token.
    pub sent: BTreeMap<String, Sent>,
    /// Deliveries remote MTAs accepted.
    pub remote: Vec<Handed>,
    /// Deliveries delivery programs accepted.
    pub programs: Vec<Handed>,
}

#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<LedgerInner>>);

impl Ledger {
    pub fn lock(&self) -> MutexGuard<'_, LedgerInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
