//! The MAIL/RCPT argument parser and the embedded mailbox-name mapping: no
//! panic, the length bound holds, and two different local parts never share
//! a mailbox name (the input is split at its first NUL into two of them).

use qmail_core::local::mailbox_name;
use qmail_core::smtp::{MAX_ADDRESS_LEN, parse_path};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(p) = parse_path(data) {
            assert!(p.address.len() <= MAX_ADDRESS_LEN);
            let _ = p.size();
        }
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let (a, b) = text.split_once('\0').unwrap_or((text, ""));
        for name in [mailbox_name(a), mailbox_name(b)] {
            assert!(!name.contains('/') && !name.starts_with('.'), "{name:?}");
        }
        if a.to_ascii_lowercase() != b.to_ascii_lowercase() {
            assert_ne!(mailbox_name(a), mailbox_name(b), "{a:?} and {b:?} collide");
        }
    });
}
