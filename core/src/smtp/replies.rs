//! Every fixed reply text of the SMTP server, in one place so they can be
//! checked against qmail-smtpd's (`qmail-observed/smtp-session.txt`). Those
//! marked "qmail" are its exact bytes; the others are ours.

/// qmail.
pub const OK: &str = "250 ok";
/// qmail.
pub const FLUSHED: &str = "250 flushed";
/// qmail.
pub const GO_AHEAD: &str = "354 go ahead";
/// qmail.
pub const VRFY: &str = "252 send some mail, i'll try my best";
/// Ours: qmail names notqmail's home page here. The address is the
/// workspace's `repository` (core's manifest does not inherit it).
pub const HELP: &str = "214 qmail-rs home page: https://example.invalid/qmail-rs";
/// qmail.
pub const UNIMPLEMENTED: &str = "502 unimplemented (#5.5.1)";
/// qmail.
pub const SYNTAX: &str = "555 syntax error (#5.5.4)";
/// qmail.
pub const WANT_MAIL: &str = "503 MAIL first (#5.5.1)";
/// qmail.
pub const WANT_RCPT: &str = "503 RCPT first (#5.5.1)";
/// qmail.
pub const NO_GATEWAY: &str =
    "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)";
/// Ours: qmail takes control characters in addresses, and a CR there ends
/// the Return-Path line early (a forged header line).
pub const BAD_SENDER_CHARS: &str =
    "553 sorry, that sender address has a control character (#5.1.7)";
/// Ours: as [`BAD_SENDER_CHARS`], for a recipient.
pub const BAD_RCPT_CHARS: &str = "553 sorry, that address has a control character (#5.1.3)";
/// Ours: qmail takes the recipient, then defers it for a week with "File
/// name too long".
pub const LOCAL_TOO_LONG: &str = "553 sorry, that local part is too long for a mailbox (#5.1.3)";
/// Ours: qmail has no recipient limit; RFC 5321 4.5.3.1.10 says 452.
pub const TOO_MANY_RCPTS: &str = "452 too many recipients (#4.5.3)";
/// qmail (also ours for a `SIZE` parameter above the limit, RFC 1870).
pub const TOO_BIG: &str = "552 sorry, that message size exceeds my databytes limit (#5.3.4)";
/// qmail.
pub const TOO_MANY_HOPS: &str = "554 too many hops, this message is looping (#5.4.6)";
/// qmail; the connection is closed after it.
pub const BARE_LF: &str = "451 See https://cr.yp.to/docs/smtplf.html.";
/// Ours: qmail reads lines of any length; the connection is closed after it.
pub const LINE_TOO_LONG: &str = "500 5.5.2 line too long";

/// The ESMTP extensions EHLO lists after the host line, before the final
/// `SIZE` line. qmail lists PIPELINING and 8BITMIME.
pub const EHLO_EXTENSIONS: [&str; 2] = ["PIPELINING", "8BITMIME"];
