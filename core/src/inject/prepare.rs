//! Header completion and rewriting, and the envelope, as qmail-inject makes
//! them (`qmail-inject(8)`, `qmail-header(5)`). A pure function: the time
//! and process id come in as values.

use std::collections::BTreeSet;

use super::InjectError;
use super::addrlist::{AddrList, Mailbox};
use super::header::{HeaderEnd, Known, SplitHeader, field_name, field_value, known};
use super::rewrite::quote_address;
use super::settings::Settings;
use super::token::{Tok, tokenize};
use crate::date::{self, Civil};

/// Where the recipients come from (`-a`, `-h`, `-A`, `-H`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecipientSource {
    /// `-a`: the arguments only.
    Args,
    /// `-h`: the header only (To, Cc, Bcc, Apparently-To; or Resent-To,
    /// Resent-Cc, Resent-Bcc in a resent message).
    Header,
    /// `-A` (the default): the arguments, or the header if there are none.
    #[default]
    ArgsOrHeader,
    /// `-H`: both.
    Both,
}

/// qmail-inject's command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub source: RecipientSource,
    /// `-f`: the envelope sender (overrides Return-Path and the environment).
    pub sender: Option<String>,
    pub args: Vec<String>,
}

/// The moment and the process: Date, Message-ID and the `m` VERP use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub unix_secs: u64,
    pub pid: u32,
}

/// The result: the new header (with the empty line that ends it, if the
/// message has a body) and the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub header: Vec<u8>,
    pub sender: String,
    pub recipients: Vec<String>,
}

impl Prepared {
    /// The `Return-Path` line `qmail-inject -n` prints first.
    pub fn return_path_line(&self) -> Vec<u8> {
        let mut v = b"Return-Path: <".to_vec();
        v.extend(quote_address(&self.sender));
        v.extend_from_slice(b">\n");
        v
    }
}

fn addr_string(bytes: Vec<u8>) -> Result<String, InjectError> {
    String::from_utf8(bytes)
        .map_err(|e| InjectError::NotUtf8(String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// One address given on the command line (`-f` or a recipient), completed.
fn command_line_address(settings: &Settings, arg: &str) -> Result<String, InjectError> {
    let bad = || InjectError::BadAddress(arg.to_string());
    let mut toks = tokenize(&quote_address(arg)).map_err(|_| bad())?;
    toks.retain(|t| !matches!(t, Tok::Comment(_)));
    if toks
        .iter()
        .any(|t| matches!(t, Tok::Lt | Tok::Gt | Tok::Semi | Tok::Comma))
    {
        return Err(bad());
    }
    settings.completion.complete(&mut toks);
    addr_string(Mailbox::envelope_bytes(&toks))
}

/// Rewrites an address field; returns the new field and the addresses.
fn rewrite_field(
    settings: &Settings,
    field: &[u8],
) -> Result<(Vec<u8>, Vec<Vec<u8>>), super::addrlist::ParseError> {
    let name = field_name(field).unwrap_or(b"X");
    let mut list = AddrList::parse(field_value(field))?;
    list.rewrite(|a| settings.completion.complete(a));
    let addrs = list
        .mailboxes()
        .map(|m| Mailbox::envelope_bytes(&m.addr))
        .collect();
    Ok((list.field(name), addrs))
}

/// The default From (or Resent-From) field.
fn default_from(settings: &Settings, name: &str) -> Result<Vec<u8>, InjectError> {
    let user = quote_address(&settings.mailuser);
    let mut addr = if user.is_empty() {
        b"\"\"".to_vec()
    } else {
        user
    };
    if let Some(h) = &settings.mailhost {
        addr.push(b'@');
        addr.extend_from_slice(h.as_bytes());
    }
    // A newline in a name would end the field: it becomes a space.
    let fullname = settings
        .fullname
        .as_ref()
        .map(|n| n.replace(['\r', '\n'], " "));
    let text = match fullname {
        Some(n) if settings.flags.name_comment => {
            let mut t = addr;
            t.extend_from_slice(b" (");
            for &c in n.as_bytes() {
                if matches!(c, b'(' | b')' | b'\\') {
                    t.push(b'\\');
                }
                t.push(c);
            }
            t.push(b')');
            t
        }
        Some(n) => {
            let mut t = b"\"".to_vec();
            for &c in n.as_bytes() {
                if matches!(c, b'"' | b'\\') {
                    t.push(b'\\');
                }
                t.push(c);
            }
            t.extend_from_slice(b"\" <");
            t.extend(addr);
            t.push(b'>');
            t
        }
        None => addr,
    };
    let mut field = name.as_bytes().to_vec();
    field.push(b':');
    field.extend(text);
    rewrite_field(settings, &field)
        .map(|(f, _)| f)
        .map_err(|_| InjectError::BadField(field))
}

/// The envelope sender when neither `-f` nor Return-Path gave one.
fn default_sender(settings: &Settings, stamp: Stamp) -> Result<String, InjectError> {
    let mut user = settings.sender_user.clone();
    if settings.flags.verp_message {
        user.push_str(&format!("-{}.{}", stamp.unix_secs, stamp.pid));
    }
    if settings.flags.verp_recipient {
        user.push('-');
    }
    let mut toks = vec![Tok::Quoted(user.into_bytes())];
    if let Some(h) = &settings.sender_host {
        toks.push(Tok::At);
        toks.extend(
            tokenize(h.as_bytes()).unwrap_or_else(|_| vec![Tok::Atom(h.as_bytes().to_vec())]),
        );
    }
    settings.completion.complete(&mut toks);
    let mut s = addr_string(Mailbox::envelope_bytes(&toks))?;
    if settings.flags.verp_recipient {
        s.push_str("-@[]");
    }
    Ok(s)
}

fn message_id(settings: &Settings, stamp: Stamp) -> String {
    let c = Civil::from_unix(stamp.unix_secs);
    format!(
        "Message-ID: <{}{:02}{:02}{:02}{:02}{:02}.{}.qmail@{}>\n",
        c.year, c.month, c.day, c.hour, c.minute, c.second, stamp.pid, settings.idhost
    )
}

/// Completes the header and works out the envelope.
pub fn prepare(
    settings: &Settings,
    options: &Options,
    stamp: Stamp,
    header: &SplitHeader,
) -> Result<Prepared, InjectError> {
    let flags = settings.flags;
    let mut sender = match &options.sender {
        Some(f) => Some(command_line_address(settings, f)?),
        None => None,
    };
    let source = match options.source {
        RecipientSource::ArgsOrHeader if options.args.is_empty() => RecipientSource::Header,
        RecipientSource::ArgsOrHeader => RecipientSource::Args,
        s => s,
    };
    let mut recipients = Vec::new();
    if source != RecipientSource::Header {
        for a in &options.args {
            recipients.push(command_line_address(settings, a)?);
        }
    }

    let mut seen = BTreeSet::new();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut header_rcpts = Vec::new();
    let mut resent_rcpts = Vec::new();
    let mut to_cc = Vec::new();
    for field in &header.fields {
        let kind = known(field);
        match kind {
            Some(Known::From) if flags.delete_from => continue,
            Some(Known::MessageId) if flags.delete_message_id => continue,
            Some(Known::ReturnPath) if flags.delete_return_path => continue,
            _ => {}
        }
        seen.extend(kind);
        let mut field = field.clone();
        match kind {
            // Recipient fields: a field that does not parse stays as it is
            // and gives no recipients, as in qmail.
            Some(
                k @ (Known::To
                | Known::Cc
                | Known::Bcc
                | Known::ApparentlyTo
                | Known::ResentTo
                | Known::ResentCc
                | Known::ResentBcc),
            ) => {
                if let Ok((f, addrs)) = rewrite_field(settings, &field) {
                    field = f;
                    if matches!(k, Known::To | Known::Cc) {
                        to_cc.extend(addrs.iter().cloned());
                    }
                    match k {
                        Known::ResentTo | Known::ResentCc | Known::ResentBcc => {
                            resent_rcpts.extend(addrs)
                        }
                        _ => header_rcpts.extend(addrs),
                    }
                }
            }
            // Sender fields must parse.
            Some(
                k @ (Known::ReturnPath
                | Known::Sender
                | Known::From
                | Known::ReplyTo
                | Known::ReturnReceiptTo
                | Known::ErrorsTo
                | Known::ResentSender
                | Known::ResentFrom
                | Known::ResentReplyTo),
            ) => {
                let (f, addrs) = rewrite_field(settings, &field)
                    .map_err(|_| InjectError::BadField(field.clone()))?;
                if k == Known::ReturnPath
                    && sender.is_none()
                    && let Some(first) = addrs.into_iter().next()
                {
                    let mut s = addr_string(first)?;
                    if flags.verp_recipient {
                        s.push_str("-@[]");
                    }
                    sender = Some(s);
                }
                field = f;
            }
            _ => {}
        }
        if !matches!(
            kind,
            Some(Known::Bcc | Known::ResentBcc | Known::ReturnPath | Known::ContentLength)
        ) {
            kept.push(field);
        }
    }

    let resent = [
        Known::ResentSender,
        Known::ResentFrom,
        Known::ResentReplyTo,
        Known::ResentTo,
        Known::ResentCc,
        Known::ResentBcc,
        Known::ResentDate,
        Known::ResentMessageId,
    ]
    .iter()
    .any(|k| seen.contains(k));
    let sender = match sender {
        Some(s) => s,
        None => default_sender(settings, stamp)?,
    };

    let mut out = Vec::new();
    let (prefix, date, id, from, to, cc) = if resent {
        (
            "Resent-",
            Known::ResentDate,
            Known::ResentMessageId,
            Known::ResentFrom,
            Known::ResentTo,
            Known::ResentCc,
        )
    } else {
        (
            "",
            Known::Date,
            Known::MessageId,
            Known::From,
            Known::To,
            Known::Cc,
        )
    };
    if !seen.contains(&date) {
        out.extend_from_slice(
            format!("{prefix}Date: {}\n", date::rfc822(stamp.unix_secs)).as_bytes(),
        );
    }
    if !seen.contains(&id) {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(message_id(settings, stamp).as_bytes());
    }
    if !seen.contains(&from) {
        out.extend(default_from(settings, &format!("{prefix}From"))?);
    }
    if !seen.contains(&to) && !seen.contains(&cc) {
        out.extend_from_slice(format!("{prefix}Cc: recipient list not shown: ;\n").as_bytes());
    }
    if !resent {
        out.extend(mail_followup_to(settings, &seen, &to_cc));
    }
    for f in kept {
        out.extend(f);
    }
    if header.end != HeaderEnd::Eof {
        out.push(b'\n');
    }

    if source != RecipientSource::Args {
        let from_header = if resent { resent_rcpts } else { header_rcpts };
        for a in from_header {
            recipients.push(addr_string(a)?);
        }
    }
    Ok(Prepared {
        header: out,
        sender,
        recipients,
    })
}

/// `Mail-Followup-To` with every To and Cc address, when one of them is a
/// list of `$QMAILMFTFILE` (compared without regard to case) and the message
/// has none yet.
fn mail_followup_to(settings: &Settings, seen: &BTreeSet<Known>, to_cc: &[Vec<u8>]) -> Vec<u8> {
    let Some(lists) = &settings.mft else {
        return Vec::new();
    };
    if seen.contains(&Known::MailFollowupTo)
        || !to_cc
            .iter()
            .any(|a| lists.iter().any(|l| l.as_bytes().eq_ignore_ascii_case(a)))
    {
        return Vec::new();
    }
    let mut v = b"Mail-Followup-To: ".to_vec();
    for (i, a) in to_cc.iter().enumerate() {
        if i > 0 {
            v.extend_from_slice(b",\n  ");
        }
        v.extend(quote_address(&String::from_utf8_lossy(a)));
    }
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::header::split_header;
    use crate::inject::settings::{Controls, Vars};

    const STAMP: Stamp = Stamp {
        unix_secs: 1_795_575_983,
        pid: 4242,
    };

    fn controls() -> Controls {
        Controls {
            defaultdomain: "example.org".into(),
            defaulthost: "mail.example.org".into(),
            plusdomain: "example.org".into(),
            idhost: "mail.example.org".into(),
        }
    }

    struct Case {
        name: &'static str,
        vars: &'static [(&'static str, &'static str)],
        controls: Controls,
        mft: Option<&'static [&'static str]>,
        options: Options,
        input: &'static [u8],
    }

    fn case(name: &'static str, input: &'static [u8]) -> Case {
        Case {
            name,
            vars: &[("USER", "alice")],
            controls: controls(),
            mft: None,
            options: Options::default(),
            input,
        }
    }

    fn run(c: &Case) -> String {
        let vars = Vars::from_lookup(|n| {
            c.vars
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        });
        let mft = c.mft.map(|l| l.iter().map(|s| s.to_string()).collect());
        let settings = Settings::new(c.controls.clone(), &vars, mft);
        let split = split_header(c.input, true).unwrap();
        let body = String::from_utf8_lossy(&c.input[split.consumed..]).into_owned();
        match prepare(&settings, &c.options, STAMP, &split) {
            Ok(p) => format!(
                "sender: <{}>\nrecipients: {}\n--- header\n{}--- body\n{}",
                p.sender,
                p.recipients
                    .iter()
                    .map(|r| format!("<{r}>"))
                    .collect::<Vec<_>>()
                    .join(" "),
                String::from_utf8_lossy(&p.header),
                body
            ),
            Err(e) => format!("error (exit {}): {e}\n", e.exit_code()),
        }
    }

    /// The header qmail-inject makes for a table of messages, settings and
    /// environments (Date and Message-ID come from a fixed moment and pid).
    #[test]
    fn header_completion_table() {
        let args = |a: &[&str]| Options {
            args: a.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        };
        let mut cases = vec![
            case("minimal", b"To: bob\n\nhello\n"),
            Case {
                vars: &[
                    ("QMAILUSER", "qu"),
                    ("MAILUSER", "mu"),
                    ("USER", "u"),
                    ("QMAILNAME", "Q. \"The\" User"),
                    ("MAILNAME", "M"),
                    ("QMAILHOST", "qhost.example"),
                ],
                ..case("from_qmailuser_qmailname_qmailhost", b"To: bob\n\nhello\n")
            },
            Case {
                vars: &[("MAILUSER", "mu"), ("USER", "u"), ("MAILNAME", "Mail Name"), ("MAILHOST", "mhost")],
                ..case("from_mailuser_mailname_mailhost", b"To: bob\n\nhello\n")
            },
            Case {
                vars: &[("LOGNAME", "lg"), ("NAME", "Plain (Name)"), ("QMAILINJECT", "c")],
                ..case("from_logname_comment_style", b"To: bob\n\nhello\n")
            },
            Case {
                vars: &[],
                ..case("anonymous_without_user", b"Subject: x\n\nhello\n")
            },
            case(
                "kept_date_id_from",
                b"Date: Tue, 1 Dec 2026 10:00:00 +0100\nMessage-ID: <x@y>\nFrom: Al <al@site.example>\nTo: bob@else.example\nSubject: hi\n\nbody\n",
            ),
            case(
                "bcc_removed_return_path_stripped",
                b"Return-Path: <bounces@lists.example>\nTo: a@x.example\nBcc: secret@y.example, other\nContent-Length: 12\nSubject: s\n\nbody\n",
            ),
            Case {
                vars: &[("USER", "alice"), ("QMAILINJECT", "s")],
                ..case("return_path_ignored_with_s", b"Return-Path: <bounces@lists.example>\nTo: a@x.example\n\nbody\n")
            },
            Case {
                vars: &[("USER", "alice"), ("QMAILINJECT", "fi")],
                ..case("from_and_message_id_deleted_with_f_i", b"From: forged@x.example\nMessage-ID: <old@x>\nTo: a@x.example\n\nbody\n")
            },
            case("only_bcc_gets_cc_list_not_shown", b"Bcc: hidden@x.example\nSubject: s\n\nbody\n"),
            case(
                "eight_bit_and_utf8_untouched",
                "Subject: Grüße aus Köln\nTo: Jörg Müller <jörg@münchen.example>\nX-Latin1: caf\u{e9}\nComments: =?utf-8?q?caf=C3=A9?=\n\nbody\n".as_bytes(),
            ),
            case(
                "eight_bit_raw_bytes_untouched",
                b"Subject: caf\xe9 \xff\nTo: bob\n\nbody\n",
            ),
            case(
                "long_and_folded_lines",
                b"To: one@a.example, two@b.example, three@c.example, four@d.example, five@e.example, six@f.example, seven@g.example, eight@h.example\nSubject: a subject folded\n  over two lines\nX-Long: 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\n\nbody\n",
            ),
            Case {
                controls: Controls {
                    defaultdomain: "example.net".into(),
                    defaulthost: "mailhub".into(),
                    plusdomain: "plus.example".into(),
                    idhost: "id7.example.net".into(),
                },
                ..case(
                    "defaultdomain_defaulthost_plusdomain_idhost",
                    b"To: a, b@host, c@host+, d@[10.1.2.3], <@r1,@r2:e@f.example>, g@h.example.\nCc: list: i, j@k;\n\nbody\n",
                )
            },
            Case {
                vars: &[
                    ("USER", "alice"),
                    ("QMAILDEFAULTDOMAIN", "env.example"),
                    ("QMAILDEFAULTHOST", "envhost+"),
                    ("QMAILPLUSDOMAIN", "plus.env.example"),
                    ("QMAILIDHOST", "id.env.example"),
                ],
                ..case("environment_overrides_controls", b"To: a, b@c\n\nbody\n")
            },
            case(
                "resent",
                b"Resent-To: fwd@x.example\nFrom: orig@y.example\nTo: first@z.example\nDate: 1 Jan 2026 00:00:00 -0000\nMessage-ID: <orig@y>\n\nbody\n",
            ),
            case("resent_without_recipients", b"Resent-From: me\nTo: t@x.example\n\nbody\n"),
            Case {
                vars: &[("USER", "alice"), ("QMAILSUSER", "bounces"), ("QMAILSHOST", "lists.example"), ("QMAILINJECT", "r")],
                ..case("verp_per_recipient", b"To: a@x.example\n\nbody\n")
            },
            Case {
                vars: &[("USER", "alice"), ("QMAILINJECT", "m")],
                ..case("verp_per_message", b"To: a@x.example\n\nbody\n")
            },
            Case {
                mft: Some(&["List@Lists.example"]),
                ..case("mail_followup_to", b"To: list@lists.example\nCc: carol@x.example\n\nbody\n")
            },
            Case {
                mft: Some(&["list@lists.example"]),
                ..case("mail_followup_to_already_there", b"To: list@lists.example\nMail-Followup-To: me@x\n\nbody\n")
            },
            case("no_header_at_all", b"just a body line\nand another\n"),
            case("header_with_no_end", b"To: a@x.example\nSubject: no body follows"),
            case("mbox_from_line", b"From someone Tue Dec  1 10:00:00 2026\nTo: a@x.example\n\nbody\n"),
            case("address_without_domain", b"To: bob, carol@\n\nbody\n"),
            case("unparseable_to_kept", b"To: a@x.example, (unclosed\n\nbody\n"),
            case("unparseable_from_refused", b"From: <unclosed@x.example\nTo: a@x.example\n\nbody\n"),
            Case {
                options: args(&["x@y.example", "plain", "\"quoted user\"@z.example"]),
                ..case("arguments_only_by_default", b"To: header@x.example\n\nbody\n")
            },
            Case {
                options: Options {
                    source: RecipientSource::Both,
                    sender: Some("envelope".into()),
                    args: vec!["arg@y.example".into()],
                },
                ..case("both_with_f", b"Return-Path: <ignored@x>\nTo: header@x.example\nCc: c@x.example\n\nbody\n")
            },
            Case {
                options: Options {
                    source: RecipientSource::Header,
                    sender: Some(String::new()),
                    args: vec!["ignored@y.example".into()],
                },
                ..case("header_only_null_sender", b"To: header@x.example\n\nbody\n")
            },
            Case {
                options: args(&["bad@(host"]),
                ..case("bad_argument", b"To: x\n\nbody\n")
            },
        ];
        cases.dedup_by_key(|c| c.name);
        for c in &cases {
            insta::assert_snapshot!(c.name, run(c));
        }
    }

    proptest::proptest! {
        /// Any input, in any environment letters, gives a header or an
        /// error, never a panic; a header it makes is all header fields.
        #[test]
        fn any_input_prepares_or_fails_cleanly(
            input in proptest::collection::vec(proptest::prop_oneof![
                4 => proptest::sample::select(b"To:Cc:Bcc:From:Return-Path: Resent-To:a@b<>(),;\"\\[] \t\n.+".to_vec()),
                1 => proptest::num::u8::ANY,
            ], 0..300),
            letters in "[csfirm]{0,4}",
            args in proptest::collection::vec("[a-z@.+()<>\" ]{0,8}", 0..3),
        ) {
            let vars = Vars::from_lookup(|n| (n == "QMAILINJECT").then(|| letters.clone()));
            let settings = Settings::new(controls(), &vars, Some(vec!["l@x".into()]));
            let split = split_header(&input, true).unwrap();
            let options = Options { args, ..Options::default() };
            if let Ok(p) = prepare(&settings, &options, STAMP, &split) {
                let again = split_header(&p.header, true).unwrap();
                proptest::prop_assert_eq!(again.consumed, p.header.len());
            }
        }
    }

    #[test]
    fn raw_eight_bit_bytes_pass_byte_for_byte() {
        let input = b"Subject: caf\xe9 \xff\r\nX-A:\x80\x81\n\nbody\n";
        let c = case("raw", input);
        let settings = Settings::new(c.controls.clone(), &Vars::default(), None);
        let split = split_header(input, true).unwrap();
        let p = prepare(&settings, &c.options, STAMP, &split).unwrap();
        let tail = b"Subject: caf\xe9 \xff\r\nX-A:\x80\x81\n\n";
        assert!(
            p.header.ends_with(tail),
            "{:?}",
            String::from_utf8_lossy(&p.header)
        );
    }
}
