//! The trace lines a message gets on its way into the queue, byte for byte as
//! qmail writes them (`qmail-observed/received-headers.txt`):
//!
//! ```text
//! Received: (qmail 332 invoked from network); 25 Nov 2026 03:33:48 -0000
//! Received: from unknown (HELO client.example) (127.0.0.1)
//!   by bench.test with SMTP; 25 Nov 2026 03:33:48 -0000
//! ```
//!
//! The first is qmail-queue's (the queue writes it: see
//! [`crate::queue::queue_received_line`]), the second qmail-smtpd's, made
//! here as a pure function of its inputs; the caller supplies the date (see
//! [`crate::date::rfc822`]), so nothing here reads a clock.

/// What the SMTP server knows about the connection, from tcpserver's
/// environment (`tcp-environ(5)`); it ends up in the Received line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInfo {
    /// `TCPREMOTEIP` (qmail uses `unknown` when it is unset).
    pub ip: String,
    /// `TCPREMOTEHOST`, the client's name from reverse DNS, if any.
    pub host: Option<String>,
    /// `TCPREMOTEINFO`, the user name from an ident lookup, if any.
    pub info: Option<String>,
    /// `TCPLOCALHOST`, else `TCPLOCALIP`, else `unknown`: the name written
    /// after `by`.
    pub local: String,
}

impl RemoteInfo {
    /// The remote host name as qmail prints it: `unknown` without reverse DNS.
    pub fn host_name(&self) -> &str {
        self.host.as_deref().unwrap_or("unknown")
    }
}

impl Default for RemoteInfo {
    /// Everything unknown, as qmail-smtpd without tcpserver's variables.
    fn default() -> Self {
        RemoteInfo {
            ip: "unknown".into(),
            host: None,
            info: None,
            local: "unknown".into(),
        }
    }
}

/// qmail-smtpd's Received line (two physical lines, each ending in LF).
///
/// `helo` is the HELO/EHLO argument, or `None` when there was none or it
/// equals the remote host name (qmail then leaves the `(HELO ...)` part out).
/// Every value coming from the network or DNS goes through [`safe`], so a
/// client cannot inject bytes into the header.
pub fn smtp_received_line(remote: &RemoteInfo, helo: Option<&[u8]>, date: &str) -> String {
    let mut out = String::from("Received: from ");
    safe(&mut out, remote.host_name().as_bytes());
    if let Some(helo) = helo {
        out.push_str(" (HELO ");
        safe(&mut out, helo);
        out.push(')');
    }
    out.push_str(" (");
    if let Some(info) = &remote.info {
        safe(&mut out, info.as_bytes());
        out.push('@');
    }
    safe(&mut out, remote.ip.as_bytes());
    out.push_str(")\n  by ");
    safe(&mut out, remote.local.as_bytes());
    out.push_str(" with SMTP; ");
    out.push_str(date);
    out.push('\n');
    out
}

/// Appends `s`, replacing every byte outside qmail's safe set (letters,
/// digits and `.@%+/=:-[]`) with `?`, as qmail's `safeput` does.
fn safe(out: &mut String, s: &[u8]) {
    out.extend(s.iter().map(|&c| {
        if c.is_ascii_alphanumeric() || b".@%+/=:-[]".contains(&c) {
            char::from(c)
        } else {
            '?'
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "25 Nov 2026 03:33:48 -0000";

    fn remote() -> RemoteInfo {
        RemoteInfo {
            ip: "127.0.0.1".into(),
            host: None,
            info: None,
            local: "bench.test".into(),
        }
    }

    #[test]
    fn as_observed() {
        assert_eq!(
            smtp_received_line(&remote(), Some(b"client.example"), DATE),
            "Received: from unknown (HELO client.example) (127.0.0.1)\n  by bench.test with SMTP; 25 Nov 2026 03:33:48 -0000\n"
        );
        assert_eq!(
            smtp_received_line(&remote(), None, DATE),
            "Received: from unknown (127.0.0.1)\n  by bench.test with SMTP; 25 Nov 2026 03:33:48 -0000\n"
        );
    }

    #[test]
    fn remote_info_and_unsafe_bytes() {
        let r = RemoteInfo {
            host: Some("relay1.uu.net".into()),
            info: Some("7".into()),
            ip: "192.48.96.5".into(),
            ..remote()
        };
        assert_eq!(
            smtp_received_line(&r, Some(b"evil\r\nX-Injected: 1 (\xff)"), DATE),
            "Received: from relay1.uu.net (HELO evil??X-Injected:?1????) (7@192.48.96.5)\n  by bench.test with SMTP; 25 Nov 2026 03:33:48 -0000\n"
        );
    }
}
