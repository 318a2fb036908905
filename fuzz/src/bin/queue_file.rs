//! The queue's own files as read back from disk: the message header line,
//! the envelope (also qmail-queue's fd 1), state records and bounce records.
//! What decodes must encode back to the same bytes.

use qmail_core::queue::format::{decode_bounce, decode_records};
use qmail_core::queue::{Envelope, MessageHeader};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(h) = MessageHeader::decode(data) {
            assert_eq!(MessageHeader::decode(&h.encode()), Ok(h));
        }
        if let Ok(e) = Envelope::decode(data) {
            assert_eq!(e.encode(), data, "envelope round trip");
        }
        let _ = decode_records(data);
        let _ = decode_bounce(data);
    });
}
