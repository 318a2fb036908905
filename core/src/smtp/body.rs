//! The DATA phase, one byte at a time: qmail-smtpd's `blast` loop.
//!
//! It undoes SMTP's transparency (a leading `.` is removed, `.` CR LF alone
//! ends the message), turns CR LF into LF because the queue stores messages
//! with UNIX line ends, refuses a bare LF (a client that sends one is
//! corrupting mail, see <https://cr.yp.to/docs/smtplf.html>), and counts hops
//! in the header. Working byte by byte keeps the state a handful of flags, so
//! a message of any size and any chunking needs no buffer.

/// What one input byte did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyStep {
    /// Keep going.
    More,
    /// That byte ended the message (the LF of `CR LF . CR LF`).
    End,
    /// A LF not preceded by CR: qmail drops the connection.
    BareLf,
}

/// Where we are in the line-ending and dot grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside a line.
    Text,
    /// At the start of a line (just after CR LF).
    LineStart,
    /// A `.` at the start of a line, not yet written.
    Dot,
    /// `.` CR at the start of a line, not yet written.
    DotCr,
    /// A CR, not yet written: it is dropped if LF follows.
    Cr,
}

/// Counts `Received` and `Delivered` header lines as qmail-smtpd does: any
/// header line starting with `received` or `delivered`, in any case (so
/// `Received-SPF` and `Delivered-To` count too), until the first empty line.
#[derive(Debug, Clone)]
struct HopCounter {
    in_header: bool,
    /// Bytes since the start of the line, counted up to 9.
    pos: usize,
    maybe_received: bool,
    maybe_delivered: bool,
    maybe_empty: bool,
    hops: u32,
}

impl HopCounter {
    fn new() -> Self {
        HopCounter {
            in_header: true,
            pos: 0,
            maybe_received: true,
            maybe_delivered: true,
            maybe_empty: true,
            hops: 0,
        }
    }

    fn step(&mut self, ch: u8) {
        if !self.in_header {
            return;
        }
        if self.pos < 9 {
            let pos = self.pos;
            if !ch.eq_ignore_ascii_case(&b"delivered"[pos]) {
                self.maybe_delivered = false;
            }
            if self.maybe_delivered && pos == 8 {
                self.hops = self.hops.saturating_add(1);
            }
            if pos < 8 && !ch.eq_ignore_ascii_case(&b"received"[pos]) {
                self.maybe_received = false;
            }
            if self.maybe_received && pos == 7 {
                self.hops = self.hops.saturating_add(1);
            }
            if pos < 2 && ch != b"\r\n"[pos] {
                self.maybe_empty = false;
            }
            if self.maybe_empty && pos == 1 {
                self.in_header = false;
            }
            self.pos += 1;
        }
        if ch == b'\n' {
            self.pos = 0;
            self.maybe_received = true;
            self.maybe_delivered = true;
            self.maybe_empty = true;
        }
    }
}

/// The decoder of one message's DATA bytes.
#[derive(Debug, Clone)]
pub(crate) struct BodyDecoder {
    state: State,
    hops: HopCounter,
}

impl BodyDecoder {
    /// A decoder positioned right after the `354` (at the start of a line).
    pub(crate) fn new() -> Self {
        BodyDecoder {
            state: State::LineStart,
            hops: HopCounter::new(),
        }
    }

    /// Hop lines seen so far in the header.
    pub(crate) fn hops(&self) -> u32 {
        self.hops.hops
    }

    /// Consumes one byte, appending at most three bytes of message to `out`.
    pub(crate) fn step(&mut self, ch: u8, out: &mut Vec<u8>) -> BodyStep {
        self.hops.step(ch);
        match self.state {
            State::Text => match ch {
                b'\n' => return BodyStep::BareLf,
                b'\r' => {
                    self.state = State::Cr;
                    return BodyStep::More;
                }
                _ => {}
            },
            State::LineStart => match ch {
                b'\n' => return BodyStep::BareLf,
                b'.' => {
                    self.state = State::Dot;
                    return BodyStep::More;
                }
                b'\r' => {
                    self.state = State::Cr;
                    return BodyStep::More;
                }
                _ => self.state = State::Text,
            },
            State::Dot => match ch {
                b'\n' => return BodyStep::BareLf,
                b'\r' => {
                    self.state = State::DotCr;
                    return BodyStep::More;
                }
                // The stuffed dot is dropped.
                _ => self.state = State::Text,
            },
            State::DotCr => {
                if ch == b'\n' {
                    return BodyStep::End;
                }
                // `.` CR then something else: qmail keeps the dot here.
                out.extend_from_slice(b".\r");
                if ch == b'\r' {
                    self.state = State::Cr;
                    return BodyStep::More;
                }
                self.state = State::Text;
            }
            State::Cr => {
                if ch == b'\n' {
                    self.state = State::LineStart;
                } else if ch != b'\r' {
                    out.push(b'\r');
                    self.state = State::Text;
                }
                // CR CR: the first is written (below), the second waits.
            }
        }
        out.push(ch);
        BodyStep::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through a decoder: the message bytes, how it stopped, the hops.
    fn decode(input: &[u8]) -> (Vec<u8>, Option<BodyStep>, u32) {
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        for &ch in input {
            let step = d.step(ch, &mut out);
            if step != BodyStep::More {
                return (out, Some(step), d.hops());
            }
        }
        (out, None, d.hops())
    }

    #[test]
    fn crlf_to_lf_and_end() {
        let (out, end, _) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL");
        assert_eq!(out, b"Subject: x\n\nhello\n");
        assert_eq!(end, Some(BodyStep::End));
        assert_eq!(decode(b".\r\n"), (vec![], Some(BodyStep::End), 0));
    }

    #[test]
    fn dot_stuffing() {
        let (out, end, _) = decode(b"..leading\r\n.x\r\n...\r\n.\r\n");
        assert_eq!(out, b".leading\nx\n..\n");
        assert_eq!(end, Some(BodyStep::End));
    }

    #[test]
    fn lone_cr_is_kept() {
        assert_eq!(decode(b"a\rb\r\r\n.\r\n").0, b"a\rb\r\n");
        assert_eq!(decode(b".\rx\r\n.\r\n").0, b".\rx\n");
        assert_eq!(decode(b".\r\r\n.\r\n").0, b".\r\n");
    }

    #[test]
    fn bare_lf_anywhere_outside_crlf() {
        assert_eq!(decode(b"\n").1, Some(BodyStep::BareLf));
        assert_eq!(decode(b"abc\ndef").1, Some(BodyStep::BareLf));
        assert_eq!(decode(b"ok\r\n.\n").1, Some(BodyStep::BareLf));
        assert_eq!(decode(b"ok\r\n\n").1, Some(BodyStep::BareLf));
    }

    #[test]
    fn eight_bit_and_nul_pass_through() {
        let (out, _, _) = decode(b"\xe4\x00\xff\r\n.\r\n");
        assert_eq!(out, b"\xe4\x00\xff\n");
    }

    #[test]
    fn hops_in_header_only() {
        let msg = b"Received: a\r\nreceived: b\r\nDELIVERED-TO: c\r\nDelivered: d\r\nReceived-SPF: e\r\nX-Received: f\r\nReceive: g\r\n\r\nReceived: body\r\n.\r\n";
        assert_eq!(decode(msg).2, 5);
    }

    #[test]
    fn stuffed_received_does_not_count() {
        assert_eq!(decode(b".Received: a\r\n\r\n.\r\n").2, 0);
    }
}
