//! Envelope paths of `MAIL FROM` and `RCPT TO`, parsed the way qmail-smtpd's
//! `addrparse` does it.
//!
//! qmail is deliberately lenient here, and clients rely on it: the path may
//! come with or without angle brackets (`MAIL FROM: u@h`), a source route
//! (`<@a,@b:u@h>`) is dropped, double quotes are removed and a backslash
//! escapes the next byte (`<"a b"@x>` is stored as `a b@x`), and a missing
//! closing `>` is tolerated. What follows the path is a list of ESMTP
//! parameters (`BODY=8BITMIME SIZE=100`), which qmail ignored and we keep so
//! the session can check `SIZE` against `databytes`.

use thiserror::Error;

/// The longest address accepted, in bytes. qmail-smtpd refuses longer ones
/// (its bound is 900 bytes including the terminating NUL); the bound also keeps
/// every envelope within the queue's own limit.
pub const MAX_ADDRESS_LEN: usize = 899;

/// One ESMTP parameter after the path: `KEYWORD` or `KEYWORD=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsmtpParam {
    /// The keyword as the client wrote it (compare case-insensitively).
    pub keyword: String,
    /// The value after `=`, if there was one.
    pub value: Option<String>,
}

/// A parsed `MAIL FROM` or `RCPT TO` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPath {
    /// The address as qmail stores it: quotes, escapes and source route removed.
    /// Empty for the null sender `<>`.
    pub address: String,
    /// The ESMTP parameters following the path, in order.
    pub params: Vec<EsmtpParam>,
}

impl ParsedPath {
    /// The declared message size of RFC 1870's `SIZE=n` parameter. A value too
    /// large for `u64` saturates (it exceeds any limit anyway); a value that is
    /// not a decimal number is ignored, as qmail ignores every parameter.
    pub fn size(&self) -> Option<u64> {
        self.params
            .iter()
            .filter(|p| p.keyword.eq_ignore_ascii_case("SIZE"))
            .find_map(|p| parse_decimal(p.value.as_deref()?))
    }
}

/// Why a path was refused (qmail-smtpd answers `555 syntax error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// Neither `<` nor `:` in the argument (`RCPT u@h`). qmail would take an
    /// empty address here and queue mail for it; we refuse instead.
    #[error("no path in the argument")]
    Missing,
    /// The address is longer than [`MAX_ADDRESS_LEN`].
    #[error("address longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong,
    /// The address is not UTF-8: the queue stores addresses as text.
    #[error("address is not UTF-8")]
    NotUtf8,
    /// The address holds a control character (CR, TAB, DEL, C1, ...): it
    /// would reach the `Return-Path:` and `Delivered-To:` lines raw and could
    /// end them early. qmail takes it; we refuse it.
    #[error("control character in the address")]
    ControlCharacter,
}

/// Parses the argument of `MAIL` or `RCPT` (everything after the command
/// word, e.g. `FROM:<u@h> SIZE=10`). Like qmail, the `FROM:`/`TO:` keyword
/// itself is not checked: the path starts after the first `<`, or, without
/// one, after the first `:` and any spaces, and then ends at the first space.
pub fn parse_path(arg: &[u8]) -> Result<ParsedPath, PathError> {
    let (mut rest, terminator) = match arg.iter().position(|&c| c == b'<') {
        Some(i) => (&arg[i + 1..], b'>'),
        None => {
            let colon = arg
                .iter()
                .position(|&c| c == b':')
                .ok_or(PathError::Missing)?;
            let after = &arg[colon + 1..];
            let spaces = after.iter().take_while(|&&c| c == b' ').count();
            (&after[spaces..], b' ')
        }
    };

    // A source route `@a,@b:` is obsolete (RFC 5321 4.1.1.3) and dropped.
    if rest.first() == Some(&b'@') {
        rest = match rest.iter().position(|&c| c == b':') {
            Some(i) => &rest[i + 1..],
            None => &[],
        };
    }

    let mut address = Vec::new();
    let mut escaped = false;
    let mut quoted = false;
    let mut params_start = rest.len();
    for (i, &ch) in rest.iter().enumerate() {
        if escaped {
            address.push(ch);
            escaped = false;
        } else if !quoted && ch == terminator {
            params_start = i + 1;
            break;
        } else {
            match ch {
                b'\\' => escaped = true,
                b'"' => quoted = !quoted,
                _ => address.push(ch),
            }
        }
        if address.len() > MAX_ADDRESS_LEN {
            return Err(PathError::TooLong);
        }
    }

    let address = String::from_utf8(address).map_err(|_| PathError::NotUtf8)?;
    if address.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    Ok(ParsedPath {
        address,
        params: parse_params(&rest[params_start..]),
    })
}

/// Splits `KEY=value KEY2` on spaces.
fn parse_params(s: &[u8]) -> Vec<EsmtpParam> {
    s.split(|&c| c == b' ')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let (keyword, value) = match word.iter().position(|&c| c == b'=') {
                Some(eq) => (&word[..eq], Some(&word[eq + 1..])),
                None => (word, None),
            };
            EsmtpParam {
                keyword: String::from_utf8_lossy(keyword).into_owned(),
                value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
            }
        })
        .collect()
}

/// A non-empty run of ASCII digits, saturating at `u64::MAX`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, c| {
        n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(arg: &str) -> String {
        parse_path(arg.as_bytes()).unwrap().address
    }

    #[test]
    fn brackets_and_bare() {
        assert_eq!(addr("FROM:<u2@bench.test>"), "u2@bench.test");
        assert_eq!(addr("FROM: u2@bench.test"), "u2@bench.test");
        assert_eq!(addr("FROM:u2@bench.test"), "u2@bench.test");
        assert_eq!(addr("TO: <u1@bench.test>"), "u1@bench.test");
        assert_eq!(addr("FROM:<>"), "");
        assert_eq!(addr("FROM:"), "");
        assert_eq!(addr("TO:<u1>"), "u1");
    }

    #[test]
    fn quotes_escapes_and_routes() {
        assert_eq!(addr(r#"TO:<"a b"@x>"#), "a b@x");
        assert_eq!(addr(r#"TO:<"a>b"@x>"#), "a>b@x");
        assert_eq!(addr(r"TO:<a\>b@x>"), "a>b@x");
        assert_eq!(addr(r#"TO:<a\"b@x>"#), "a\"b@x");
        assert_eq!(addr("TO:<@a,@b:user@host>"), "user@host");
        assert_eq!(addr("TO:<@bench.test:u1@bench.test>"), "u1@bench.test");
        assert_eq!(addr("TO:<@nocolon>"), "");
        assert_eq!(addr("FROM: \"a b\"@x SIZE=1"), "a b@x");
    }

    #[test]
    fn unterminated_is_tolerated_like_qmail() {
        assert_eq!(addr("FROM:<unterminated"), "unterminated");
        assert_eq!(addr("FROM:<a@b SIZE=5"), "a@b SIZE=5");
    }

    #[test]
    fn missing_path() {
        assert_eq!(parse_path(b"TO u1@bench.test"), Err(PathError::Missing));
        assert_eq!(parse_path(b""), Err(PathError::Missing));
    }

    #[test]
    fn params() {
        let p = parse_path(b"FROM:<a@b.example> BODY=8BITMIME SIZE=100 X").unwrap();
        assert_eq!(p.address, "a@b.example");
        assert_eq!(
            p.params,
            vec![
                EsmtpParam {
                    keyword: "BODY".into(),
                    value: Some("8BITMIME".into())
                },
                EsmtpParam {
                    keyword: "SIZE".into(),
                    value: Some("100".into())
                },
                EsmtpParam {
                    keyword: "X".into(),
                    value: None
                },
            ]
        );
        assert_eq!(p.size(), Some(100));
        assert_eq!(parse_path(b"FROM:<a> size=7").unwrap().size(), Some(7));
        assert_eq!(parse_path(b"FROM:<a> SIZE=x7").unwrap().size(), None);
        assert_eq!(parse_path(b"FROM:<a> SIZE=").unwrap().size(), None);
        assert_eq!(
            parse_path(b"FROM:<a> SIZE=99999999999999999999999")
                .unwrap()
                .size(),
            Some(u64::MAX)
        );
        // Without brackets the parameters follow the first space.
        assert_eq!(parse_path(b"FROM: a@b SIZE=3").unwrap().size(), Some(3));
    }

    #[test]
    fn length_bound() {
        let ok = format!("TO:<{}>", "a".repeat(MAX_ADDRESS_LEN));
        assert_eq!(addr(&ok).len(), MAX_ADDRESS_LEN);
        let long = format!("TO:<{}>", "a".repeat(MAX_ADDRESS_LEN + 1));
        assert_eq!(parse_path(long.as_bytes()), Err(PathError::TooLong));
    }

    #[test]
    fn not_utf8() {
        assert_eq!(parse_path(b"TO:<\xff@x>"), Err(PathError::NotUtf8));
        assert_eq!(addr("TO:<j\u{f6}rg@x>"), "j\u{f6}rg@x");
    }

    #[test]
    fn control_characters_are_refused() {
        for arg in [
            &b"TO:<\"a\rX-Injected: yes\"@localhost>"[..],
            b"TO:<a\\\rb@x>",
            b"TO:<a\tb@x>",
            b"FROM:<a\x7f@x>",
            b"FROM:<a\xc2\x85@x>",
            b"FROM: a\x1b[31m@x",
        ] {
            assert_eq!(parse_path(arg), Err(PathError::ControlCharacter), "{arg:?}");
        }
    }

    /// Writes `address` as a path that `parse_path` reads back unchanged:
    /// every byte with a meaning to the parser is escaped.
    fn encode(address: &str) -> String {
        let mut out = String::from("<");
        for ch in address.chars() {
            if matches!(ch, '\\' | '"' | '>') || (ch == '@' && out.len() == 1) {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('>');
        out
    }

    proptest! {
        #[test]
        fn never_panics(arg in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(p) = parse_path(&arg) {
                prop_assert!(p.address.len() <= MAX_ADDRESS_LEN);
            }
        }

        #[test]
        fn well_formed_round_trip(
            local in "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\\.[A-Za-z0-9_-]{1,10}){0,2}",
            domain in "[a-z0-9-]{1,15}(\\.[a-z0-9-]{1,10}){0,3}",
            size in proptest::option::of(0u64..1_000_000_000),
        ) {
            let address = format!("{local}@{domain}");
            let mut arg = format!("FROM:<{address}>");
            if let Some(n) = size {
                arg.push_str(&format!(" BODY=8BITMIME SIZE={n}"));
            }
            let p = parse_path(arg.as_bytes()).unwrap();
            prop_assert_eq!(&p.address, &address);
            prop_assert_eq!(p.size(), size);
            // The same address without brackets.
            prop_assert_eq!(parse_path(format!("TO: {address}").as_bytes()).unwrap().address, address);
        }

        #[test]
        fn escaped_round_trip(address in "[^\\p{Cc}]{0,100}") {
            let arg = format!("TO:{}", encode(&address));
            prop_assert_eq!(parse_path(arg.as_bytes()).unwrap().address, address);
        }

        #[test]
        fn quoted_local_part_is_unquoted(local in "[a-z ()<>,;:@\\[\\]]{1,20}", domain in "[a-z]{1,10}") {
            let arg = format!("TO:<\"{local}\"@{domain}>");
            prop_assert_eq!(parse_path(arg.as_bytes()).unwrap().address, format!("{local}@{domain}"));
        }
    }
}
