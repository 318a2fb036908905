//! `|command` delivery (qmail-command(8)): the environment a program gets and
//! what its exit code means.

use crate::env::ExitCode;

/// Everything qmail-local tells a delivery program about the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    pub user: String,
    pub home: String,
    /// The local part of the recipient.
    pub local: String,
    /// The domain of the recipient.
    pub host: String,
    pub sender: String,
    /// The forwarding sender (see [`super::dotqmail::new_sender`]).
    pub newsender: String,
    /// The extension (`ext`), of which EXT2..EXT4 are the tails.
    pub ext: String,
    /// The part of the address the `default` of the `.qmail` file matched.
    pub default: Option<String>,
    /// Unix seconds when the delivery started (for the `From ` line).
    pub start: u64,
}

impl Vars {
    pub fn recipient(&self) -> String {
        format!("{}@{}", self.local, self.host)
    }

    /// `Delivered-To: local@host\n` (a newline in the address becomes `_`).
    pub fn dtline(&self) -> String {
        format!("Delivered-To: {}\n", self.recipient().replace('\n', "_"))
    }

    /// `Return-Path: <sender>\n`.
    pub fn rpline(&self) -> String {
        format!("Return-Path: <{}>\n", self.sender.replace('\n', "_"))
    }

    /// The mbox `From ` line: `From SENDER Wed Nov 25 03:06:23 2026\n`,
    /// `MAILER-DAEMON` for the empty sender, blanks in the sender as `-`.
    pub fn ufline(&self) -> String {
        let sender = if self.sender.is_empty() {
            "MAILER-DAEMON".to_string()
        } else {
            self.sender.replace([' ', '\t', '\n'], "-")
        };
        format!("From {sender} {}\n", crate::date::ctime(self.start))
    }

    /// The environment of a delivery program (qmail-command(8)), plus the
    /// `extra` variables (PATH and the like) the installation adds.
    pub fn environment(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = extra.to_vec();
        let mut set = |k: &str, v: String| {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        };
        set("USER", self.user.clone());
        set("HOME", self.home.clone());
        set("LOCAL", self.local.clone());
        set("HOST", self.host.clone());
        set("RECIPIENT", self.recipient());
        set("SENDER", self.sender.clone());
        set("NEWSENDER", self.newsender.clone());
        set("DTLINE", self.dtline());
        set("RPLINE", self.rpline());
        set("UFLINE", self.ufline());
        let [e1, e2, e3, e4] = ext_tails(&self.ext);
        set("EXT", e1);
        set("EXT2", e2);
        set("EXT3", e3);
        set("EXT4", e4);
        let [_, h2, h3, h4] = host_heads(&self.host);
        set("HOST2", h2);
        set("HOST3", h3);
        set("HOST4", h4);
        if let Some(d) = &self.default {
            set("DEFAULT", d.clone());
        }
        env
    }
}

/// EXT, then what follows the first, second and third dash.
pub fn ext_tails(ext: &str) -> [String; 4] {
    let mut out: [String; 4] = Default::default();
    let mut rest = ext;
    for slot in &mut out {
        *slot = rest.to_string();
        rest = rest.split_once('-').map(|(_, r)| r).unwrap_or("");
    }
    out
}

/// HOST, then HOST without its last one, two and three dot-separated parts.
pub fn host_heads(host: &str) -> [String; 4] {
    let mut out: [String; 4] = Default::default();
    let mut rest = host;
    for slot in &mut out {
        *slot = rest.to_string();
        rest = rest.rsplit_once('.').map(|(h, _)| h).unwrap_or("");
    }
    out
}

/// What a program's exit means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramVerdict {
    /// 0: delivered, go on with the next line.
    Delivered,
    /// 99: delivered, and ignore the rest of the file (earlier forwards
    /// still happen).
    DeliveredStop,
    /// 100, and 64, 65, 70, 76, 77, 78, 112: permanent failure.
    Permanent,
    /// Everything else (111 included): temporary failure.
    Temporary,
    /// Killed by a signal.
    Crashed,
}

pub fn verdict(status: ExitCode) -> ProgramVerdict {
    match status {
        ExitCode::Signaled => ProgramVerdict::Crashed,
        ExitCode::Exited(0) => ProgramVerdict::Delivered,
        ExitCode::Exited(99) => ProgramVerdict::DeliveredStop,
        ExitCode::Exited(64 | 65 | 70 | 76 | 77 | 78 | 100 | 112) => ProgramVerdict::Permanent,
        ExitCode::Exited(_) => ProgramVerdict::Temporary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            user: "bob".into(),
            home: "/home/bob".into(),
            local: "bob-list-a-b-c".into(),
            host: "mail.sub.example.org".into(),
            sender: "alice smith@example.org".into(),
            newsender: "bob-list-owner@mail.sub.example.org".into(),
            ext: "list-a-b-c".into(),
            default: Some("a-b-c".into()),
            start: 1_795_575_983,
        }
    }

    #[test]
    fn environment_snapshot() {
        let env =
            vars().environment(&[("PATH".into(), "/bin".into()), ("USER".into(), "x".into())]);
        let text: String = env.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn lines_as_qmail_writes_them() {
        let v = vars();
        assert_eq!(
            v.dtline(),
            "Delivered-To: bob-list-a-b-c@mail.sub.example.org\n"
        );
        assert_eq!(v.rpline(), "Return-Path: <alice smith@example.org>\n");
        assert_eq!(
            v.ufline(),
            "From alice-smith@example.org Wed Nov 25 03:06:23 2026\n"
        );
        let bounce = Vars {
            sender: String::new(),
            start: 0,
            ..v
        };
        assert_eq!(
            bounce.ufline(),
            "From MAILER-DAEMON Thu Jan 01 00:00:00 1970\n"
        );
        assert_eq!(bounce.rpline(), "Return-Path: <>\n");
    }

    #[test]
    fn tails_and_heads() {
        assert_eq!(ext_tails("a-b"), ["a-b", "b", "", ""].map(String::from));
        assert_eq!(
            host_heads("example"),
            ["example", "", "", ""].map(String::from)
        );
    }

    #[test]
    fn every_exit_code() {
        use ProgramVerdict::*;
        for code in 0..=255 {
            let want = match code {
                0 => Delivered,
                99 => DeliveredStop,
                64 | 65 | 70 | 76 | 77 | 78 | 100 | 112 => Permanent,
                _ => Temporary,
            };
            assert_eq!(verdict(ExitCode::Exited(code)), want, "exit {code}");
        }
        assert_eq!(verdict(ExitCode::Signaled), Crashed);
    }
}
