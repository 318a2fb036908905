//! Where the header ends and what its fields are, as qmail-inject reads a
//! message (`qmail-header(5)`).
//!
//! A field is a line `name: value` plus the lines after it that start with a
//! space or tab. The header ends at an empty line; or, with no empty line,
//! at the first line that is not a field (that line starts the body and an
//! empty line is put before it); or at the end of the input (then there is
//! no body and no empty line). A line `From ...` (an mbox separator) is kept
//! as the field `MBOX-Line: From ...`. A last line without a newline gets
//! one.

/// How the header ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEnd {
    /// At an empty line, which is not part of `consumed`'s fields but is
    /// consumed.
    Blank,
    /// At a line that is not a header field: it starts the body, and an
    /// empty line must be put before it.
    NotAField,
    /// At the end of the input: no body.
    Eof,
}

/// The header of a message, split into fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitHeader {
    /// Each field with its continuation lines and final newline.
    pub fields: Vec<Vec<u8>>,
    pub end: HeaderEnd,
    /// How many input bytes the header took (the empty line included); the
    /// body is what follows.
    pub consumed: usize,
}

/// Splits the header off `buf`. `None` means more input is needed to know
/// where the header ends (`eof` false and no end found yet).
pub fn split_header(buf: &[u8], eof: bool) -> Option<SplitHeader> {
    let mut fields = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut pos = 0;
    let done = |mut fields: Vec<Vec<u8>>, cur: Option<Vec<u8>>, end, consumed| {
        fields.extend(cur);
        Some(SplitHeader {
            fields,
            end,
            consumed,
        })
    };
    loop {
        let (line, next): (Vec<u8>, usize) = match buf[pos..].iter().position(|&c| c == b'\n') {
            Some(n) => (buf[pos..=pos + n].to_vec(), pos + n + 1),
            None if !eof => return None,
            None if pos == buf.len() => return done(fields, cur, HeaderEnd::Eof, pos),
            None => {
                let mut l = buf[pos..].to_vec();
                l.push(b'\n');
                (l, buf.len())
            }
        };
        if let Some(c) = cur.as_mut()
            && matches!(line[0], b' ' | b'\t')
        {
            c.extend_from_slice(&line);
            pos = next;
            continue;
        }
        fields.extend(cur.take());
        // A CRLF empty line ends the header too (qmail 1.03 took it for a
        // body line and added an empty line before it).
        if line == b"\n" || line == b"\r\n" {
            return done(fields, None, HeaderEnd::Blank, next);
        }
        if line.starts_with(b"From ") {
            let mut f = b"MBOX-Line: ".to_vec();
            f.extend_from_slice(&line);
            cur = Some(f);
        } else if field_name(&line).is_some() {
            cur = Some(line);
        } else {
            return done(fields, None, HeaderEnd::NotAField, pos);
        }
        pos = next;
    }
}

/// The name of a header field (before its colon, trailing blanks dropped),
/// if `line` is one: a non-empty name of printable ASCII without spaces.
pub fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&c| c == b':')?;
    let name = &line[..colon];
    let name = &name[..name
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(0, |p| p + 1)];
    (!name.is_empty() && name.iter().all(|&c| c > 32 && c < 127)).then_some(name)
}

/// The value of a field: what follows its colon.
pub fn field_value(field: &[u8]) -> &[u8] {
    match field.iter().position(|&c| c == b':') {
        Some(c) => &field[c + 1..],
        None => &[],
    }
}

/// The header fields qmail-inject treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Known {
    Sender,
    From,
    ReplyTo,
    To,
    Cc,
    Bcc,
    Date,
    MessageId,
    ResentSender,
    ResentFrom,
    ResentReplyTo,
    ResentTo,
    ResentCc,
    ResentBcc,
    ResentDate,
    ResentMessageId,
    ReturnReceiptTo,
    ErrorsTo,
    ApparentlyTo,
    ReturnPath,
    ContentLength,
    MailFollowupTo,
}

const NAMES: [(&str, Known); 22] = [
    ("sender", Known::Sender),
    ("from", Known::From),
    ("reply-to", Known::ReplyTo),
    ("to", Known::To),
    ("cc", Known::Cc),
    ("bcc", Known::Bcc),
    ("date", Known::Date),
    ("message-id", Known::MessageId),
    ("resent-sender", Known::ResentSender),
    ("resent-from", Known::ResentFrom),
    ("resent-reply-to", Known::ResentReplyTo),
    ("resent-to", Known::ResentTo),
    ("resent-cc", Known::ResentCc),
    ("resent-bcc", Known::ResentBcc),
    ("resent-date", Known::ResentDate),
    ("resent-message-id", Known::ResentMessageId),
    ("return-receipt-to", Known::ReturnReceiptTo),
    ("errors-to", Known::ErrorsTo),
    ("apparently-to", Known::ApparentlyTo),
    ("return-path", Known::ReturnPath),
    ("content-length", Known::ContentLength),
    ("mail-followup-to", Known::MailFollowupTo),
];

/// Which known field `field` is (the name compared without regard to case).
pub fn known(field: &[u8]) -> Option<Known> {
    let name = field_name(field)?;
    NAMES
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map(|(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> SplitHeader {
        split_header(s.as_bytes(), true).unwrap()
    }

    #[test]
    fn ends_of_a_header() {
        let h = split("To: a\n b\nSubject: x\n\nbody\n");
        assert_eq!(
            h.fields,
            [b"To: a\n b\n".to_vec(), b"Subject: x\n".to_vec()]
        );
        assert_eq!((h.end, h.consumed), (HeaderEnd::Blank, 21));

        let h = split("no header here\nat all\n");
        assert!(h.fields.is_empty());
        assert_eq!((h.end, h.consumed), (HeaderEnd::NotAField, 0));

        let h = split("Subject: only a header");
        assert_eq!(h.fields, [b"Subject: only a header\n".to_vec()]);
        assert_eq!(h.end, HeaderEnd::Eof);

        let h = split("From me Tue\nSubject: s\r\n\r\nx");
        assert_eq!(h.fields[0], b"MBOX-Line: From me Tue\n");
        assert_eq!(h.end, HeaderEnd::Blank);

        assert_eq!(split("").end, HeaderEnd::Eof);
        assert!(
            split_header(b"To: a\n", false).is_none(),
            "a continuation may follow"
        );
        assert!(split_header(b"To: a\nSubj", false).is_none());
    }

    #[test]
    fn field_names() {
        assert_eq!(field_name(b"Subject : x\n"), Some(&b"Subject"[..]));
        assert_eq!(field_name(b"Bad Name: x\n"), None);
        assert_eq!(field_name(b": x\n"), None);
        assert_eq!(field_name(b"no colon\n"), None);
        assert_eq!(known(b"rEsEnT-cC:x\n"), Some(Known::ResentCc));
        assert_eq!(known(b"To-x: y\n"), None);
    }
}
