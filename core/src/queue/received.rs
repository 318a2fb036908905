//! qmail-queue's own trace line, written by the queue alone (whoever
//! submits), byte for byte as qmail writes it
//! (`qmail-observed/received-headers.txt`):
//!
//! ```text
//! Received: (qmail 332 invoked from network); 25 Nov 2026 03:33:48 -0000
//! ```

/// Who handed a message to qmail-queue, as its Received line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokedFrom {
    /// The SMTP server (qmail's `qmaild` user): `invoked from network`.
    Network,
    /// A bounce from qmail-send (`qmails`): `invoked for bounce`.
    Bounce,
    /// A delivery to the alias user (`alias`): `invoked by alias`.
    Alias,
    /// Anyone else: `invoked by uid N`.
    Uid(u32),
}

/// qmail-queue's own Received line, ending in LF:
/// `Received: (qmail PID invoked from network); DATE`.
pub fn queue_received_line(pid: u32, how: InvokedFrom, date: &str) -> String {
    let how = match how {
        InvokedFrom::Network => "from network".to_string(),
        InvokedFrom::Bounce => "for bounce".to_string(),
        InvokedFrom::Alias => "by alias".to_string(),
        InvokedFrom::Uid(uid) => format!("by uid {uid}"),
    };
    format!("Received: (qmail {pid} invoked {how}); {date}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "25 Nov 2026 03:33:48 -0000";

    #[test]
    fn queue_lines() {
        assert_eq!(
            queue_received_line(332, InvokedFrom::Network, DATE),
            "Received: (qmail 332 invoked from network); 25 Nov 2026 03:33:48 -0000\n"
        );
        assert_eq!(
            queue_received_line(19296, InvokedFrom::Uid(0), "25 Nov 2026 03:07:30 -0000"),
            "Received: (qmail 19296 invoked by uid 0); 25 Nov 2026 03:07:30 -0000\n"
        );
        assert_eq!(
            queue_received_line(17005, InvokedFrom::Bounce, DATE),
            "Received: (qmail 17005 invoked for bounce); 25 Nov 2026 03:33:48 -0000\n"
        );
        assert_eq!(
            queue_received_line(1, InvokedFrom::Alias, DATE),
            "Received: (qmail 1 invoked by alias); 25 Nov 2026 03:33:48 -0000\n"
        );
    }
}
