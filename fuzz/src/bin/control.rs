//! Control file texts as line, number and list files, and the host sets
//! (`rcpthosts`, `locals`) built from them.

use std::path::Path;

use qmail_core::control::{self, HostSet};
use qmail_core::smtp::RcptHosts;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let line = control::parse_line(&text);
        assert!(!line.contains('\n'));
        let _ = control::parse_number(&text, Path::new("control/x"));
        let list = control::parse_list(&text);
        let (probe, _) = line.split_once(' ').unwrap_or((&line, ""));
        let _ = HostSet::new(&list).contains(probe);
        let _ = RcptHosts::new(&list).allows(probe);
    });
}
