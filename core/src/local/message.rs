//! Reading the message being delivered (the queue's [`MessageReader`],
//! streamed in chunks, never read whole into memory) and the scan of its
//! header for Delivered-To lines (loop protection).

use std::io;

pub use crate::queue::{ByteSource, CHUNK, MessageReader, SliceSource};

/// What the header says about earlier deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderScan {
    /// A header line is exactly the Delivered-To line about to be added.
    pub has_line: bool,
    /// How many `Delivered-To:` fields the header holds.
    pub delivered_to: usize,
}

/// Incremental scan of a message header, fed chunk by chunk, with memory
/// bounded by the length of the line looked for.
#[derive(Debug)]
pub struct HeaderScanner {
    /// The Delivered-To line to look for, with its newline.
    dtline: Vec<u8>,
    /// The start of the current line (at most `dtline.len() + 1` bytes kept).
    line: Vec<u8>,
    /// Bytes of the current line seen in all.
    line_len: usize,
    done: bool,
    scan: HeaderScan,
}

const FIELD: &[u8] = b"delivered-to:";

impl HeaderScanner {
    pub fn new(dtline: &str) -> Self {
        HeaderScanner {
            dtline: dtline.as_bytes().to_vec(),
            line: Vec::new(),
            line_len: 0,
            done: false,
            scan: HeaderScan::default(),
        }
    }

    /// Whether the end of the header was reached.
    pub fn done(&self) -> bool {
        self.done
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        let keep = self.dtline.len().max(FIELD.len()) + 1;
        while !self.done && !data.is_empty() {
            let (part, rest, eol) = match data.iter().position(|&c| c == b'\n') {
                Some(i) => (&data[..=i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let room = keep.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            self.line_len += part.len();
            if eol {
                self.end_line();
            }
            data = rest;
        }
    }

    fn end_line(&mut self) {
        if self.line_len == 1 {
            // The blank line: the header ends.
            self.done = true;
        } else {
            if self.line_len == self.dtline.len() && self.line == self.dtline {
                self.scan.has_line = true;
            }
            if self.line.len() >= FIELD.len()
                && self.line[..FIELD.len()].eq_ignore_ascii_case(FIELD)
            {
                self.scan.delivered_to += 1;
            }
        }
        self.line.clear();
        self.line_len = 0;
    }

    pub fn result(&self) -> HeaderScan {
        self.scan
    }
}

/// Scans the header of the message in `source` (reading only the header).
pub async fn scan_header<S: ByteSource>(source: &mut S, dtline: &str) -> io::Result<HeaderScan> {
    let mut scanner = HeaderScanner::new(dtline);
    let mut buf = vec![0u8; 8192];
    while !scanner.done() {
        let n = source.read_chunk(&mut buf).await?;
        if n == 0 {
            break;
        }
        scanner.feed(&buf[..n]);
    }
    Ok(scanner.result())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(msg: &[u8], dt: &str) -> HeaderScan {
        let mut s = HeaderScanner::new(dt);
        s.feed(msg);
        s.result()
    }

    const DT: &str = "Delivered-To: bob@example.org\n";

    #[test]
    fn finds_its_own_line_only_in_the_header() {
        let m = b"Subject: x\nDelivered-To: bob@example.org\n\nbody\n";
        assert_eq!(
            scan(m, DT),
            HeaderScan {
                has_line: true,
                delivered_to: 1
            }
        );
        let body = b"Subject: x\n\nDelivered-To: bob@example.org\n";
        assert_eq!(scan(body, DT), HeaderScan::default());
    }

    #[test]
    fn the_match_is_exact_but_the_count_ignores_case() {
        let m = b"delivered-to: bob@example.org\nDelivered-To: bob@example.org.x\nDELIVERED-TO: other\n\n";
        assert_eq!(
            scan(m, DT),
            HeaderScan {
                has_line: false,
                delivered_to: 3
            }
        );
    }

    proptest! {
        /// Feeding in any chunking gives the same answer as feeding at once.
        #[test]
        fn chunking_does_not_matter(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("Delivered-To: bob@example.org".to_string()),
                    Just("Delivered-To: bob@example.org ".to_string()),
                    Just("delivered-to: x".to_string()),
                    "[a-zA-Z: -]{0,40}",
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let msg = lines.join("\n").into_bytes();
            let whole = scan(&msg, DT);
            let mut s = HeaderScanner::new(DT);
            let mut cuts = cuts;
            cuts.push(0);
            cuts.push(msg.len());
            cuts.sort_unstable();
            let mut prev = 0;
            for c in cuts {
                let c = c.min(msg.len());
                if c >= prev {
                    s.feed(&msg[prev..c]);
                    prev = c;
                }
            }
            prop_assert_eq!(s.result(), whole);
        }
    }
}
