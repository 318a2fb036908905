//! The DATA phase, a run of bytes at a time: qmail-smtpd's `blast` loop,
//! without its byte-per-call cost.
//!
//! It undoes SMTP's transparency (a leading `.` is removed, `.` CR LF alone
//! ends the message), turns CR LF into LF because the queue stores messages
//! with UNIX line ends, refuses a bare LF (a client that sends one is
//! corrupting mail, see <https://cr.yp.to/docs/smtplf.html>), and counts hops
//! in the header. The state is a handful of flags, so a message of any size
//! and any chunking needs no buffer. Inside a line only CR and LF matter
//! (and, in the header, a line's first nine bytes for the hop count): the
//! decoder finds them with a vectorised search and copies the text between
//! them in one go; the bytes around line ends take the byte-wise path.

use memchr::memchr2;

/// Why [`BodyDecoder::decode`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Every input byte was used; the message goes on.
    NeedInput,
    /// The last byte used ended the message (the LF of `CR LF . CR LF`).
    End,
    /// The last byte used is a LF not preceded by CR: qmail drops the
    /// connection.
    BareLf,
    /// The last byte used would have written more than the room given: the
    /// decoder moved past it, but none of its bytes were written.
    Full,
    /// The last byte used brought the hop count to the limit given (its
    /// bytes were written).
    HopLimit,
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
/// It sees the bytes as they came (before dot-unstuffing).
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

    /// Whether no byte but a LF can change the count now: past the header,
    /// or past the first nine bytes of a header line.
    fn waits_for_lf(&self) -> bool {
        !self.in_header || self.pos >= 9
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

/// What one byte on the byte-wise path does: the message bytes it releases
/// (at most three: a held `.` CR and itself) and whether it ends the DATA.
struct ByteStep {
    bytes: [u8; 3],
    len: usize,
    end: Option<Stop>,
}

impl ByteStep {
    fn none() -> Self {
        ByteStep {
            bytes: [0; 3],
            len: 0,
            end: None,
        }
    }

    fn end(stop: Stop) -> Self {
        ByteStep {
            end: Some(stop),
            ..ByteStep::none()
        }
    }

    fn write(bytes: &[u8]) -> Self {
        let mut step = ByteStep::none();
        step.bytes[..bytes.len()].copy_from_slice(bytes);
        step.len = bytes.len();
        step
    }
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

    /// Decodes `input` into `out` until the input is used up or a reason
    /// to stop: the end of the message, a bare LF, a byte whose message
    /// bytes would not fit in the `room` bytes `out` may still grow by, or
    /// a byte that brings the hop count to `max_hops`. Returns the number
    /// of input bytes used (the stopping byte included) and the reason.
    /// The result does not depend on how the input is split between calls.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        mut room: usize,
        max_hops: u32,
    ) -> (usize, Stop) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Text && self.hops.waits_for_lf() {
                // Inside a line every byte but CR and LF is written as is.
                let rest = &input[i..];
                let run = memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if run > room {
                    out.extend_from_slice(&rest[..room]);
                    return (i + room + 1, Stop::Full);
                }
                out.extend_from_slice(&rest[..run]);
                room -= run;
                i += run;
                if i == input.len() {
                    break;
                }
            }
            let ch = input[i];
            i += 1;
            let hops_before = self.hops.hops;
            self.hops.step(ch);
            let step = self.byte(ch);
            if let Some(stop) = step.end {
                return (i, stop);
            }
            if step.len > room {
                return (i, Stop::Full);
            }
            out.extend_from_slice(&step.bytes[..step.len]);
            room -= step.len;
            if self.hops.hops != hops_before && self.hops.hops >= max_hops {
                return (i, Stop::HopLimit);
            }
        }
        (i, Stop::NeedInput)
    }

    /// The line-ending and dot grammar for one byte.
    fn byte(&mut self, ch: u8) -> ByteStep {
        match (self.state, ch) {
            (State::Text | State::LineStart | State::Dot, b'\n') => ByteStep::end(Stop::BareLf),
            (State::Text | State::LineStart, b'\r') => {
                self.state = State::Cr;
                ByteStep::none()
            }
            (State::Text, _) => ByteStep::write(&[ch]),
            (State::LineStart, b'.') => {
                self.state = State::Dot;
                ByteStep::none()
            }
            (State::LineStart, _) => {
                self.state = State::Text;
                ByteStep::write(&[ch])
            }
            (State::Dot, b'\r') => {
                self.state = State::DotCr;
                ByteStep::none()
            }
            // The stuffed dot is dropped.
            (State::Dot, _) => {
                self.state = State::Text;
                ByteStep::write(&[ch])
            }
            (State::DotCr, b'\n') => ByteStep::end(Stop::End),
            // `.` CR then another CR: qmail keeps the dot, the new CR waits.
            (State::DotCr, b'\r') => {
                self.state = State::Cr;
                ByteStep::write(b".\r")
            }
            // `.` CR then something else: qmail keeps the dot here.
            (State::DotCr, _) => {
                self.state = State::Text;
                ByteStep::write(&[b'.', b'\r', ch])
            }
            (State::Cr, b'\n') => {
                self.state = State::LineStart;
                ByteStep::write(b"\n")
            }
            // CR CR: the first is written, the second waits.
            (State::Cr, b'\r') => ByteStep::write(b"\r"),
            (State::Cr, _) => {
                self.state = State::Text;
                ByteStep::write(&[b'\r', ch])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The decoder as it was, one byte per call (qmail's `blast` loop): the
    /// oracle the run-at-a-time decoder must agree with.
    mod oracle {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum BodyStep {
            More,
            End,
            BareLf,
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum State {
            Text,
            LineStart,
            Dot,
            DotCr,
            Cr,
        }

        // The hop counter is the production one: it was always fed a byte
        // at a time, and is not what the chunked decoder changed.
        use super::super::HopCounter;

        #[derive(Debug, Clone)]
        pub(super) struct ByteDecoder {
            state: State,
            hops: HopCounter,
        }

        impl ByteDecoder {
            pub(super) fn new() -> Self {
                ByteDecoder {
                    state: State::LineStart,
                    hops: HopCounter::new(),
                }
            }

            pub(super) fn hops(&self) -> u32 {
                self.hops.hops
            }

            pub(super) fn step(&mut self, ch: u8, out: &mut Vec<u8>) -> BodyStep {
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
                        _ => self.state = State::Text,
                    },
                    State::DotCr => {
                        if ch == b'\n' {
                            return BodyStep::End;
                        }
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
                    }
                }
                out.push(ch);
                BodyStep::More
            }
        }
    }

    /// Every stop of a run through DATA: where it happened and why, then the
    /// message bytes written and the hop count. After a `Full` or a
    /// `HopLimit` the run goes on without limits (as the session does once
    /// it has refused the message), until the end or a bare LF.
    type Run = (Vec<(usize, Stop)>, Vec<u8>, u32);

    /// The oracle, byte by byte, with the session's checks after each byte.
    fn run_oracle(input: &[u8], room: usize, max_hops: u32) -> Run {
        let mut d = oracle::ByteDecoder::new();
        let (mut out, mut stops) = (Vec::new(), Vec::new());
        let mut limited = true;
        let mut produced = Vec::new();
        for (i, &ch) in input.iter().enumerate() {
            produced.clear();
            let step = d.step(ch, &mut produced);
            let stop = match step {
                oracle::BodyStep::End => Some(Stop::End),
                oracle::BodyStep::BareLf => Some(Stop::BareLf),
                oracle::BodyStep::More if !limited => None,
                oracle::BodyStep::More if out.len() + produced.len() > room => Some(Stop::Full),
                oracle::BodyStep::More => {
                    out.extend_from_slice(&produced);
                    (d.hops() >= max_hops).then_some(Stop::HopLimit)
                }
            };
            if !limited {
                out.extend_from_slice(&produced);
            }
            if let Some(stop) = stop {
                stops.push((i + 1, stop));
                match stop {
                    Stop::End | Stop::BareLf => break,
                    _ => limited = false,
                }
            }
        }
        (stops, out, d.hops())
    }

    /// The decoder under test, fed `input` cut at `cuts`.
    fn run_chunked(input: &[u8], cuts: &[usize], room: usize, max_hops: u32) -> Run {
        let mut d = BodyDecoder::new();
        let (mut out, mut stops) = (Vec::new(), Vec::new());
        let (mut room, mut max_hops) = (room, max_hops);
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        let mut pos = 0;
        'chunks: for bound in bounds {
            while pos < bound {
                let before = out.len();
                let (used, stop) = d.decode(&input[pos..bound], &mut out, room, max_hops);
                assert!(used > 0 && pos + used <= bound);
                pos += used;
                room = room.saturating_sub(out.len() - before);
                match stop {
                    Stop::NeedInput => assert_eq!(pos, bound),
                    Stop::End | Stop::BareLf => {
                        stops.push((pos, stop));
                        break 'chunks;
                    }
                    Stop::Full | Stop::HopLimit => {
                        stops.push((pos, stop));
                        (room, max_hops) = (usize::MAX, u32::MAX);
                    }
                }
            }
        }
        (stops, out, d.hops())
    }

    /// Runs `input` through a decoder without limits: the message bytes,
    /// the stops, the hops.
    fn decode(input: &[u8]) -> (Vec<u8>, Option<Stop>, u32) {
        let (stops, out, hops) = run_chunked(input, &[], usize::MAX, u32::MAX);
        (out, stops.first().map(|s| s.1), hops)
    }

    #[test]
    fn crlf_to_lf_and_end() {
        let (out, end, _) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL");
        assert_eq!(out, b"Subject: x\n\nhello\n");
        assert_eq!(end, Some(Stop::End));
        assert_eq!(decode(b".\r\n"), (vec![], Some(Stop::End), 0));
    }

    #[test]
    fn the_end_leaves_the_rest_unread() {
        let input = b"hello\r\n.\r\nMAIL FROM:<a@b>\r\n";
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.decode(input, &mut out, usize::MAX, u32::MAX),
            (10, Stop::End)
        );
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn dot_stuffing() {
        let (out, end, _) = decode(b"..leading\r\n.x\r\n...\r\n.\r\n");
        assert_eq!(out, b".leading\nx\n..\n");
        assert_eq!(end, Some(Stop::End));
    }

    #[test]
    fn lone_cr_is_kept() {
        assert_eq!(decode(b"a\rb\r\r\n.\r\n").0, b"a\rb\r\n");
        assert_eq!(decode(b".\rx\r\n.\r\n").0, b".\rx\n");
        assert_eq!(decode(b".\r\r\n.\r\n").0, b".\r\n");
    }

    #[test]
    fn bare_lf_anywhere_outside_crlf() {
        assert_eq!(decode(b"\n").1, Some(Stop::BareLf));
        assert_eq!(decode(b"abc\ndef").1, Some(Stop::BareLf));
        assert_eq!(decode(b"ok\r\n.\n").1, Some(Stop::BareLf));
        assert_eq!(decode(b"ok\r\n\n").1, Some(Stop::BareLf));
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

    #[test]
    fn stops_when_full_without_writing_the_byte() {
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(b"abcdef", &mut out, 3, u32::MAX), (4, Stop::Full));
        assert_eq!(out, b"abc");
        // `.` CR x is written in one piece or not at all.
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(b".\rxyz", &mut out, 2, u32::MAX), (3, Stop::Full));
        assert_eq!(out, b"");
    }

    #[test]
    fn stops_at_the_hop_limit() {
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        let input = b"Received: a\r\nDelivered-To: b\r\n\r\n";
        // The second hop is the `d` of `Delivered` (byte 22).
        assert_eq!(
            d.decode(input, &mut out, usize::MAX, 2),
            (22, Stop::HopLimit)
        );
        assert_eq!(out, b"Received: a\nDelivered");
    }

    /// Bytes that steer the grammar, often, and any byte now and then.
    fn data_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => prop::sample::select(b"\r\n.".to_vec()),
            3 => prop::sample::select(b"ReceivdDELIV: x".to_vec()),
            1 => any::<u8>(),
        ]
    }

    /// Inputs built from pieces that make every path likely: line ends,
    /// stuffed and final dots, hop lines, the empty line.
    fn data_input() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b".\r\n".to_vec()),
            Just(b"\r\n.\r\n".to_vec()),
            Just(b"..".to_vec()),
            Just(b".\r".to_vec()),
            Just(b"Received: x\r\n".to_vec()),
            Just(b"delivered-to: y\r\n".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
            proptest::collection::vec(data_byte(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..200),
        ];
        proptest::collection::vec(piece, 0..30).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_the_byte_oracle(
            input in data_input(),
            cuts in proptest::collection::vec(0usize..600, 0..8),
            room in prop_oneof![Just(usize::MAX), 0usize..400],
            max_hops in prop_oneof![Just(u32::MAX), 1u32..4],
        ) {
            let expected = run_oracle(&input, room, max_hops);
            prop_assert_eq!(run_chunked(&input, &cuts, room, max_hops), expected.clone());
            prop_assert_eq!(run_chunked(&input, &[], room, max_hops), expected);
        }

        #[test]
        fn agrees_on_any_bytes(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..8),
        ) {
            let expected = run_oracle(&input, usize::MAX, u32::MAX);
            prop_assert_eq!(run_chunked(&input, &cuts, usize::MAX, u32::MAX), expected);
        }
    }
}
