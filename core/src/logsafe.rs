//! qmail's `logsafe`: remote text (addresses, arguments) made safe to print
//! in a log line. A client chooses these bytes; printed raw, a CR or LF
//! would start a forged log line and an ESC would drive the reader's
//! terminal.

/// Every byte outside `!`..=`~` (space, control characters, DEL and every
/// byte of a non-ASCII character) becomes `?`, as qmail-send's `logsafe`
/// does, so the result is one word of printable ASCII.
pub fn logsafe(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (33..=126).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_qmail() {
        assert_eq!(logsafe("bob@example.org"), "bob@example.org");
        assert_eq!(logsafe("a b\r\nX-Forged: 1"), "a?b??X-Forged:?1");
        assert_eq!(logsafe("\u{1b}[31mred"), "?[31mred");
        assert_eq!(logsafe("j\u{f6}rg"), "j??rg");
        assert_eq!(logsafe("\u{7f}\u{9b}"), "???");
    }

    proptest::proptest! {
        #[test]
        fn only_printable_ascii(s in "\\PC*|\\p{Cc}*") {
            let out = logsafe(&s);
            proptest::prop_assert!(out.bytes().all(|b| (33..=126).contains(&b)));
            proptest::prop_assert_eq!(out.len(), s.len());
        }
    }
}
