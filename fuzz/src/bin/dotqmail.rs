//! `.qmail` files and the extension helpers built from an address.

use qmail_core::local::dotqmail;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = dotqmail::parse(data);
        if let Ok(text) = std::str::from_utf8(data) {
            let (dash, ext) = text.split_once('\0').unwrap_or(("-", text));
            // Dots become colons, so no `.` or `..` path component can form
            // and a `.qmail` name stays below the home. A `/` stays, as in
            // qmail: it can only name a file below a `.qmail-*` directory.
            let safe = dotqmail::safe_ext(ext);
            assert!(!safe.contains('.'), "{safe:?}");
            let _ = dotqmail::candidates(dash, ext);
            let _ = dotqmail::owner_files(dash, ext);
        }
    });
}
