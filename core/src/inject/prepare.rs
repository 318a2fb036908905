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
