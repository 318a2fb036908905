//! Reading SMTP replies: bytes in, complete (possibly multiline) replies out.

/// The longest reply text kept, in bytes: a hostile server cannot make the
/// client hold more than this per reply, whatever it sends.
const MAX_TEXT: usize = 4096;

/// The most lines kept of one reply (the rest are read and dropped).
const MAX_LINES: usize = 64;

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code of the last line; 0 when the server sent
    /// something that is not a reply (it then counts as a temporary failure).
    pub code: u16,
    /// The reply's lines without their CR LF, as the server sent them (cut
    /// at [`MAX_TEXT`] bytes in all).
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply of one line (`"250 ok"`), for tests and for the client's own
    /// stand-ins.
    pub fn parse_line(line: &str) -> Reply {
        Reply {
            code: code_of(line.as_bytes()),
            lines: vec![line.to_string()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (`354` to DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 5xx: the server will never accept this.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The text as qmail-remote reports it: `Remote host said: ` and the
    /// reply's lines, one per line.
    pub fn said(&self) -> String {
        let mut s = String::from("Remote host said: ");
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

fn code_of(line: &[u8]) -> u16 {
    match line {
        [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

/// Collects server bytes into replies. A line ends at LF (a CR before it is
/// dropped); `ddd-text` continues a reply, anything else ends it.
#[derive(Debug, Default)]
pub struct ReplyReader {
    line: Vec<u8>,
    lines: Vec<String>,
    kept: usize,
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes as they came and appends every reply they complete.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Reply>) {
        let mut rest = input;
        while let Some(nl) = rest.iter().position(|&c| c == b'\n') {
            self.push_part(&rest[..nl]);
            rest = &rest[nl + 1..];
            self.end_line(out);
        }
        self.push_part(rest);
    }

    fn push_part(&mut self, part: &[u8]) {
        // Every line keeps at least its code, however much was cut before.
        let limit = MAX_TEXT.saturating_sub(self.kept).max(4);
        let room = limit.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self, out: &mut Vec<Reply>) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let more = line.len() >= 4 && code_of(&line) != 0 && line[3] == b'-';
        let code = code_of(&line);
        if self.lines.len() < MAX_LINES {
            self.kept += line.len();
            self.lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if !more {
            self.kept = 0;
            out.push(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]]) -> Vec<Reply> {
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn multiline_replies_end_at_the_line_without_a_dash_in_any_chunking() {
        let bytes = b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n354 go\r\n";
        let whole = read(&[bytes]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].code, 250);
        assert_eq!(
            whole[0].lines,
            ["250-mx.example", "250-PIPELINING", "250 SIZE 1000"]
        );
        assert_eq!(whole[1].code, 354);
        for cut in 1..bytes.len() {
            assert_eq!(read(&[&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_code_zero_and_bare_lf_ends_a_line() {
        let r = read(&[b"hello\n220 ok\n"]);
        assert_eq!(r[0].code, 0);
        assert_eq!(r[1].code, 220);
        assert!(!r[0].is_positive() && !r[0].is_permanent());
    }

    #[test]
    fn a_huge_reply_is_cut_not_kept() {
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        for _ in 0..1000 {
            r.feed(
                b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                &mut out,
            );
        }
        r.feed(b"\r\n250 end\r\n", &mut out);
        assert_eq!(out.len(), 1);
        let total: usize = out[0].lines.iter().map(String::len).sum();
        assert!(total <= MAX_TEXT + 4, "{total}");
        assert_eq!(out[0].code, 250);
    }

    #[test]
    fn said_quotes_every_line() {
        let r = read(&[b"550-5.1.1 no\r\n550 5.1.1 such user\r\n"]);
        assert_eq!(
            r[0].said(),
            "Remote host said: 550-5.1.1 no\n550 5.1.1 such user\n"
        );
    }
}
