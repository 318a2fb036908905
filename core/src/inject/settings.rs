//! What qmail-inject knows before it reads the message: its environment
//! variables (handed in as plain values: core never reads the process
//! environment) and its control files.

use std::collections::BTreeMap;

use crate::control::{self, ControlError};
use crate::env::Fs;
use crate::home::Home;

use super::rewrite::Completion;

/// The environment variables qmail-inject and sendmail read.
pub const VAR_NAMES: [&str; 17] = [
    "QMAILINJECT",
    "QMAILHOST",
    "MAILHOST",
    "QMAILSHOST",
    "QMAILUSER",
    "MAILUSER",
    "USER",
    "LOGNAME",
    "QMAILSUSER",
    "QMAILNAME",
    "MAILNAME",
    "NAME",
    "QMAILMFTFILE",
    "QMAILDEFAULTDOMAIN",
    "QMAILDEFAULTHOST",
    "QMAILPLUSDOMAIN",
    "QMAILIDHOST",
];

/// A set of environment variables. A variable set to the empty string is
/// set, as in qmail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    /// The variables of [`VAR_NAMES`] that `lookup` finds.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Vars {
        Vars(
            VAR_NAMES
                .iter()
                .filter_map(|n| lookup(n).map(|v| (n.to_string(), v)))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_string(), value.to_string());
    }

    pub fn unset(&mut self, name: &str) {
        self.0.remove(name);
    }

    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.get(n)).map(str::to_string)
    }
}

/// The letters of `$QMAILINJECT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `c`: the default From in address-comment style, `user@host (Name)`.
    pub name_comment: bool,
    /// `s`: ignore (and delete) an incoming Return-Path.
    pub delete_return_path: bool,
    /// `f`: delete an incoming From.
    pub delete_from: bool,
    /// `i`: delete an incoming Message-ID.
    pub delete_message_id: bool,
    /// `r`: per-recipient VERP.
    pub verp_recipient: bool,
    /// `m`: per-message VERP (date and process id appended to the sender).
    pub verp_message: bool,
}

impl Flags {
    pub fn parse(letters: &str) -> Flags {
        let mut f = Flags::default();
        for c in letters.chars() {
            match c {
                'c' => f.name_comment = true,
                's' => f.delete_return_path = true,
                'f' => f.delete_from = true,
                'i' => f.delete_message_id = true,
                'r' => f.verp_recipient = true,
                'm' => f.verp_message = true,
                // qmail ignores letters it does not know.
                _ => {}
            }
        }
        f
    }
}

/// The four control files qmail-inject reads, each defaulting to `me`, and
/// without `me` to its own name (qmail's documented, useless default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    pub defaultdomain: String,
    pub defaulthost: String,
    pub plusdomain: String,
    pub idhost: String,
}

impl Controls {
    pub async fn load<F: Fs>(fs: &F, home: &Home) -> Result<Controls, ControlError> {
        let me = control::read_line(fs, &home.control_file("me")).await?;
        let mut values = Vec::new();
        for name in ["defaultdomain", "defaulthost", "plusdomain", "idhost"] {
            let v = control::read_line(fs, &home.control_file(name)).await?;
            values.push(v.or_else(|| me.clone()).unwrap_or_else(|| name.to_string()));
        }
        let [defaultdomain, defaulthost, plusdomain, idhost] =
            <[String; 4]>::try_from(values).expect("four names");
        Ok(Controls {
            defaultdomain,
            defaulthost,
            plusdomain,
            idhost,
        })
    }
}

/// Everything qmail-inject decides before reading the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub completion: Completion,
    pub idhost: String,
    pub flags: Flags,
    /// The From host (`$QMAILHOST`, `$MAILHOST`); without it, defaulthost.
    pub mailhost: Option<String>,
    /// The From user: `$QMAILUSER`, `$MAILUSER`, `$USER`, `$LOGNAME`, else
    /// `anonymous`.
    pub mailuser: String,
    /// The envelope sender's host (`$QMAILSHOST`, else the From host).
    pub sender_host: Option<String>,
    /// The envelope sender's user (`$QMAILSUSER`, else the From user).
    pub sender_user: String,
    /// The personal name (`$QMAILNAME`, `$MAILNAME`, `$NAME`).
    pub fullname: Option<String>,
    /// The mailing lists of `$QMAILMFTFILE`, if it names a file that exists.
    pub mft: Option<Vec<String>>,
}

impl Settings {
    /// From the control values and the environment (the `QMAIL*` overrides
    /// of the controls applied here). `mft` is the content of the
    /// `$QMAILMFTFILE` list, read by the caller.
    pub fn new(controls: Controls, vars: &Vars, mft: Option<Vec<String>>) -> Settings {
        let pick = |var: &str, control: String| vars.get(var).map_or(control, str::to_string);
        let defaultdomain = pick("QMAILDEFAULTDOMAIN", controls.defaultdomain);
        let defaulthost = pick("QMAILDEFAULTHOST", controls.defaulthost);
        let plusdomain = pick("QMAILPLUSDOMAIN", controls.plusdomain);
        let idhost = pick("QMAILIDHOST", controls.idhost);
        let mailhost = vars.first(&["QMAILHOST", "MAILHOST"]);
        let mailuser = vars
            .first(&["QMAILUSER", "MAILUSER", "USER", "LOGNAME"])
            .unwrap_or_else(|| "anonymous".to_string());
        Settings {
            completion: Completion::new(&defaulthost, &defaultdomain, &plusdomain),
            idhost,
            flags: Flags::parse(vars.get("QMAILINJECT").unwrap_or("")),
            sender_host: vars.first(&["QMAILSHOST"]).or_else(|| mailhost.clone()),
            sender_user: vars
                .first(&["QMAILSUSER"])
                .unwrap_or_else(|| mailuser.clone()),
            mailhost,
            mailuser,
            fullname: vars.first(&["QMAILNAME", "MAILNAME", "NAME"]),
            mft,
        }
    }

    /// Reads the control files under `home` and `$QMAILMFTFILE`.
    pub async fn load<F: Fs>(fs: &F, home: &Home, vars: &Vars) -> Result<Settings, ControlError> {
        let controls = Controls::load(fs, home).await?;
        let mft = match vars.get("QMAILMFTFILE") {
            Some(path) => control::read_list(fs, std::path::Path::new(path)).await?,
            None => None,
        };
        Ok(Settings::new(controls, vars, mft))
    }
}
