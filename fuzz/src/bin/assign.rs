//! `users/assign` tables, and lookups in them.

use qmail_core::local::assign::{AssignTable, passwd_candidates};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let (table, probe) = text.split_once('\0').unwrap_or((&text, "alice-ext"));
        if let Ok(t) = AssignTable::parse(table) {
            let _ = t.lookup(probe);
        }
        let _ = passwd_candidates(probe);
    });
}
