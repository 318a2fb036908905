//! The whole of one local delivery (qmail-lspawn, qmail-getpw and
//! qmail-local's job for one recipient): find the user, check the home
//! directory and the loop protection, find the `.qmail` file and follow it.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::assign::{AssignTable, passwd_candidates};
use super::dotqmail;
use super::forward::{ForwardRequest, forward};
use super::maildir::{create_maildir, deliver_maildir};
use super::mbox::deliver_mbox;
use super::message::{MessageReader, scan_header};
use super::plan::{Step, describe, plan};
use super::program::{ProgramVerdict, Vars, verdict};
use super::verdict::{Kind, Verdict};
use crate::control::ControlError;
use crate::deliver::{Deliver, DeliveryJob, MessageRef, Outcome};
use crate::env::{Clock, Env, Exec, FileRange, Fs, ProgramInput, ProgramSpec, Users};
use crate::home::Home;
use crate::queue::InvokedFrom;
use crate::queue::{DirSyncs, Queue};

/// The permanent failure for an address nobody is in charge of.
pub const NO_MAILBOX: &str = "Sorry, no mailbox here by that name. (#5.1.1)\n";
/// A message already carrying the Delivered-To line about to be added.
pub const LOOPING: &str =
    "This message is looping: it already has my Delivered-To line. (#5.4.6)\n";
/// A message with more Delivered-To lines than [`LocalConfig::max_delivered_to`].
pub const TOO_MANY_HOPS: &str =
    "This message is looping: it has too many Delivered-To lines. (#5.4.6)\n";

/// Permission bits that make a home directory or a `.qmail` file unsafe
/// (qmail's default `conf-patrn`: writable by others).
const UNSAFE_MODE: u32 = 0o002;

/// Where local deliveries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `qmail run` without root: `<home>/alias/` plays the alias user for
    /// every address (its `.qmail-<local>` and `.qmail-default` files first);
    /// any other address is delivered to `<home>/mailboxes/<local>/Maildir/`,
    /// created on first use. Programs run as the invoking user.
    Embedded,
    /// A system install: `users/assign`, then the passwd database, then the
    /// passwd user `alias` (home `<home>/alias`); programs run as the user.
    System,
}

/// How local delivery is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    pub mode: Mode,
    /// The delivery instructions for an empty (or, for a bare user, missing)
    /// `.qmail` file: `control/defaultdelivery`, else `./Maildir/` in the
    /// embedded mode and qmail's `./Mailbox` in a system install.
    pub default_delivery: String,
    /// Variables every delivery program gets besides qmail's own (PATH,
    /// QMAIL_HOME).
    pub program_env: Vec<(String, String)>,
    /// `$QMAILQUEUE`: forwards go to this program instead of the queue.
    pub queue_program: Option<PathBuf>,
    /// More Delivered-To lines than this fail the message as a loop.
    pub max_delivered_to: usize,
    /// Bytes of a program's output kept for the report.
    pub output_limit: usize,
}

impl LocalConfig {
    /// The defaults for `mode` in the installation `home`.
    pub fn new(mode: Mode, home: &Home) -> Self {
        let default_delivery = match mode {
            Mode::Embedded => "./Maildir/\n",
            Mode::System => "./Mailbox\n",
        };
        LocalConfig {
            mode,
            default_delivery: default_delivery.to_string(),
            program_env: vec![
                (
                    "PATH".into(),
                    format!("{}:/usr/local/bin:/usr/bin:/bin", home.bin().display()),
                ),
                ("QMAIL_HOME".into(), home.root.display().to_string()),
            ],
            queue_program: None,
            max_delivered_to: 100,
            output_limit: 4000,
        }
    }

    /// The defaults with `control/defaultdelivery` applied.
    pub async fn load<E: Env>(env: &E, home: &Home, mode: Mode) -> Result<Self, ControlError> {
        let mut config = LocalConfig::new(mode, home);
        let path = home.control_file("defaultdelivery");
        match env.fs().read_if_exists(&path).await {
            Ok(Some(text)) if !text.is_empty() => {
                config.default_delivery = String::from_utf8_lossy(&text).into_owned();
            }
            Ok(_) => {}
            Err(source) => return Err(ControlError::Unreadable { path, source }),
        }
        Ok(config)
    }
}

/// The local delivery agent.
#[derive(Clone)]
pub struct LocalDelivery<E: Env> {
    inner: Arc<Inner<E>>,
}

struct Inner<E: Env> {
    queue: Queue<E>,
    home: Home,
    config: LocalConfig,
    /// Maildir deliveries so far (part of each unique file name).
    counter: AtomicU64,
    /// Group commit of the maildirs' `new/` directories.
    new_syncs: DirSyncs,
    /// Embedded mode: mailboxes made durable by this agent, which need no
    /// second look.
    durable_mailboxes: Mutex<BTreeSet<PathBuf>>,
}

impl<E: Env> LocalDelivery<E> {
    /// An agent forwarding through `queue`, for the installation `home`.
    pub fn new(queue: Queue<E>, home: Home, config: LocalConfig) -> Self {
        LocalDelivery {
            inner: Arc::new(Inner {
                queue,
                home,
                config,
                counter: AtomicU64::new(0),
                new_syncs: DirSyncs::default(),
                durable_mailboxes: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// Delivers `job` for a recipient already resolved (qmail-local with
    /// its arguments, as qmail-lspawn runs it).
    pub async fn deliver_to(&self, who: &Recipient, job: &DeliveryJob) -> Outcome {
        outcome(self.inner.run_for(who, job, true).await)
    }

    /// What `deliver_to` would do, without doing it (qmail-local -n): one
    /// `maildir`, `mbox`, `program` or `forward` line per delivery.
    pub async fn describe(&self, who: &Recipient, job: &DeliveryJob) -> Outcome {
        outcome(self.inner.run_for(who, job, false).await)
    }
}

fn outcome(r: Result<String, Verdict>) -> Outcome {
    match r {
        Ok(text) => Outcome::Success(text),
        Err(v) => v.outcome(),
    }
}

impl<E: Env> Deliver for LocalDelivery<E> {
    async fn deliver(&self, job: DeliveryJob) -> Vec<Outcome> {
        // Local jobs carry one recipient; should one carry more, each is
        // delivered on its own, in order.
        let mut outcomes = Vec::with_capacity(job.recipients.len());
        for r in &job.recipients {
            let one = DeliveryJob {
                recipients: vec![r.clone()],
                ..job.clone()
            };
            outcomes.push(outcome(self.inner.run(&one).await));
        }
        outcomes
    }
}

/// The address a local job is for (local jobs carry exactly one).
fn address(job: &DeliveryJob) -> &str {
    job.recipients.first().map_or("", |r| r.address.as_str())
}

fn temp(text: impl Into<String>) -> Verdict {
    Verdict::temporary(text)
}

/// The user in charge of an address: whose `.qmail<dash><ext>` file in
/// which home directory controls it (qmail-local's arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `USER` for programs.
    pub user: String,
    /// Recorded as the forwarder in the queue (`invoked by uid N`).
    pub uid: u32,
    pub home: PathBuf,
    pub dash: String,
    pub ext: String,
    /// Programs run as this (uid, gid); `None` keeps the current identity.
    pub run_as: Option<(u32, u32)>,
    /// The alias user (forwards say `invoked by alias`).
    pub alias: bool,
    /// Embedded mode: the maildir for an address no `.qmail` file covers.
    pub fallback: Option<PathBuf>,
}

/// `local` and `host` of `local@host` (the last `@` splits).
fn split(recipient: &str) -> (&str, &str) {
    recipient.rsplit_once('@').unwrap_or((recipient, ""))
}

/// The mailbox directory name for a local part: lowercased (as qmail
/// lowercases addresses for `.qmail` lookups), and otherwise one-to-one, so
/// two local parts never share a mailbox: `:` is the escape character, and
/// `:`, `/`, control characters and a leading `.` are written `:` plus two
/// hex digits per byte (`a/b` is `a:2fb`, `a:b` is `a:3ab`, `..` is
/// `:2e.`); the empty local part is `:`. The name is one directory entry
/// below `mailboxes/`, never `.` or `..`.
pub fn mailbox_name(local: &str) -> String {
    if local.is_empty() {
        return ":".into();
    }
    let mut name = String::with_capacity(local.len());
    for (i, c) in local.char_indices() {
        if c == ':' || c == '/' || c.is_control() || (i == 0 && c == '.') {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                name.push_str(&format!(":{b:02x}"));
            }
        } else {
            name.push(c.to_ascii_lowercase());
        }
    }
    name
}

/// The longest file name a filesystem takes (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Whether mail for `local` can be stored: its mailbox name and its
/// `.qmail-` file name both fit in one directory entry. The SMTP server
/// refuses other recipients at RCPT rather than defer them for a week.
pub fn local_part_fits(local: &str) -> bool {
    mailbox_name(local).len() <= NAME_MAX && ".qmail-".len() + local.len() <= NAME_MAX
}

impl<E: Env> Inner<E> {
    fn env(&self) -> &E {
        self.queue.env()
    }

    async fn reader(
        &self,
        msg: &MessageRef,
    ) -> Result<MessageReader<<E::Fs as Fs>::File>, Verdict> {
        MessageReader::open(self.env().fs(), msg)
            .await
            .map_err(|e| temp(format!("Unable to read message: {e}. (#4.3.0)")))
    }

    async fn resolve(&self, local: &str) -> Result<Option<Recipient>, Verdict> {
        let env = self.env();
        let home = &self.home;
        if self.config.mode == Mode::Embedded {
            let id = env.identity();
            return Ok(Some(Recipient {
                user: "alias".into(),
                uid: id.uid,
                home: home.alias(),
                dash: "-".into(),
                ext: local.to_string(),
                run_as: None,
                alias: true,
                fallback: Some(home.mailboxes().join(mailbox_name(local)).join("Maildir")),
            }));
        }
        let fs = env.fs();
        let assign_path = home.users().join("assign");
        match fs.read_if_exists(&assign_path).await {
            Ok(Some(text)) => {
                let table = AssignTable::parse(&String::from_utf8_lossy(&text))
                    .map_err(|e| temp(format!("Unable to use users/assign: {e}. (#4.3.0)")))?;
                if let Some(a) = table.lookup(local) {
                    return Ok(Some(Recipient {
                        alias: a.user == "alias",
                        run_as: Some((a.uid, a.gid)),
                        user: a.user,
                        uid: a.uid,
                        home: a.home,
                        dash: a.dash,
                        ext: a.ext,
                        fallback: None,
                    }));
                }
            }
            Ok(None) => {}
            Err(e) => return Err(temp(format!("Unable to read users/assign: {e}. (#4.3.0)"))),
        }
        let lookup_err = |e: io::Error| temp(format!("Unable to look up user: {e}. (#4.3.0)"));
        for (name, ext) in passwd_candidates(local) {
            let Some(u) = env.users().by_name(&name).await.map_err(lookup_err)? else {
                continue;
            };
            // Root gets no mail, and a user owns the home that controls the mail.
            if u.uid == 0 {
                continue;
            }
            match fs.metadata(&u.home).await {
                Ok(m) if m.uid == u.uid => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(lookup_err(e)),
            }
            return Ok(Some(Recipient {
                user: u.name,
                uid: u.uid,
                home: u.home,
                dash: if ext.is_some() {
                    "-".into()
                } else {
                    String::new()
                },
                ext: ext.unwrap_or_default(),
                run_as: Some((u.uid, u.gid)),
                alias: false,
                fallback: None,
            }));
        }
        match env.users().by_name("alias").await.map_err(lookup_err)? {
            Some(a) => Ok(Some(Recipient {
                user: a.name,
                uid: a.uid,
                home: home.alias(),
                dash: "-".into(),
                ext: local.to_string(),
                run_as: Some((a.uid, a.gid)),
                alias: true,
                fallback: None,
            })),
            None => Ok(None),
        }
    }

    /// Whether a file exists (a `-owner` file): an error other than "not
    /// found" is a temporary failure.
    async fn exists(&self, path: &Path) -> Result<bool, Verdict> {
        match self.env().fs().metadata(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(temp(format!(
                "Unable to open {}: {e}. (#4.3.0)",
                path.display()
            ))),
        }
    }

    async fn run(&self, job: &DeliveryJob) -> Result<String, Verdict> {
        let (local, _) = split(address(job));
        let Some(target) = self.resolve(local).await? else {
            return Err(Verdict::permanent(NO_MAILBOX));
        };
        self.run_for(&target, job, true).await
    }

    /// qmail-local's part: deliver (or with `doit` false, describe) for the
    /// recipient `target` has resolved to.
    async fn run_for(
        &self,
        target: &Recipient,
        job: &DeliveryJob,
        doit: bool,
    ) -> Result<String, Verdict> {
        let env = self.env();
        let fs = env.fs();
        let (local, host) = split(address(job));
        let start = env.clock().unix_secs();

        // The home directory: it must be safe to follow its .qmail files.
        let home_exists = match fs.metadata(&target.home).await {
            Ok(m) if m.is_dir() => {
                if m.mode & UNSAFE_MODE != 0 {
                    return Err(temp("Uh-oh: home directory is writable. (#4.7.0)"));
                }
                if m.mode & 0o1000 != 0 {
                    return Err(temp(
                        "Home directory is sticky: user is editing his .qmail file. (#4.2.1)",
                    ));
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && target.fallback.is_some() => false,
            Ok(_) => {
                return Err(temp(format!(
                    "Unable to switch to {}: not a directory. (#4.3.0)",
                    target.home.display()
                )));
            }
            Err(e) => {
                return Err(temp(format!(
                    "Unable to switch to {}: {e}. (#4.3.0)",
                    target.home.display()
                )));
            }
        };

        let mut vars = Vars {
            user: target.user.clone(),
            home: target.home.display().to_string(),
            local: local.to_string(),
            host: host.to_string(),
            sender: job.sender.clone(),
            newsender: job.sender.clone(),
            ext: target.ext.clone(),
            default: None,
            start,
        };
        let dtline = vars.dtline();

        // Loop protection.
        if doit {
            let scan = scan_header(&mut self.reader(&job.message).await?, &dtline)
                .await
                .map_err(|e| temp(format!("Unable to read message: {e}. (#4.3.0)")))?;
            if scan.has_line {
                return Err(Verdict::permanent(LOOPING));
            }
            if scan.delivered_to >= self.config.max_delivered_to {
                return Err(Verdict::permanent(TOO_MANY_HOPS));
            }
        }

        // The .qmail file.
        let mut found = None;
        if home_exists {
            for cand in dotqmail::candidates(&target.dash, &target.ext) {
                let path = target.home.join(&cand.name);
                let m = match fs.metadata(&path).await {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(temp(format!("Unable to open {}: {e}. (#4.3.0)", cand.name)));
                    }
                };
                if m.mode & UNSAFE_MODE != 0 {
                    return Err(temp("Uh-oh: .qmail file is writable. (#4.7.0)"));
                }
                let text = fs
                    .read(&path)
                    .await
                    .map_err(|e| temp(format!("Unable to open {}: {e}. (#4.3.0)", cand.name)))?;
                found = Some((text, m.mode & 0o100 != 0, cand.default));
                break;
            }
        }
        let (mut text, mut forward_only) = match found {
            Some((text, x, default)) => {
                vars.default = default;
                (text, x)
            }
            None if !target.dash.is_empty() => {
                let steps = match &target.fallback {
                    Some(dir) => vec![Step::Mailbox(dir.clone())],
                    None => return Err(Verdict::permanent(NO_MAILBOX)),
                };
                if !doit {
                    return Ok(describe(&steps));
                }
                return self.execute(job, target, &vars, steps).await;
            }
            None => (Vec::new(), false),
        };

        if !job.sender.is_empty() && job.sender != "#@[]" {
            let (owner, owner_default) = dotqmail::owner_files(&target.dash, &target.ext);
            let has_owner = home_exists && self.exists(&target.home.join(owner)).await?;
            let has_default = has_owner && self.exists(&target.home.join(owner_default)).await?;
            vars.newsender = dotqmail::new_sender(&job.sender, local, host, has_owner, has_default);
        }

        if text.is_empty() {
            text = self.config.default_delivery.clone().into_bytes();
            forward_only = false;
        }
        let steps = plan(dotqmail::parse(&text)?, &target.home, forward_only);
        if !doit {
            return Ok(describe(&steps));
        }
        self.execute(job, target, &vars, steps).await
    }

    /// Takes the steps of a plan in order; the forwards go last, together.
    /// The first failure ends the delivery, after the report so far.
    async fn execute(
        &self,
        job: &DeliveryJob,
        target: &Recipient,
        vars: &Vars,
        steps: Vec<Step>,
    ) -> Result<String, Verdict> {
        let env = self.env();
        let mut report = String::new();
        let (mut files, mut forwards, mut programs) = (0u32, 0u32, 0u32);
        let mut recipients = Vec::new();
        let dtline = vars.dtline();
        for step in steps {
            let is_mailbox = matches!(step, Step::Mailbox(_));
            match step {
                Step::Refuse(v) => return Err(v.after(&report)),
                Step::Forward(addr) => {
                    forwards += 1;
                    recipients.push(addr);
                }
                Step::Maildir { dir, .. } | Step::Mailbox(dir) => {
                    files += 1;
                    if is_mailbox {
                        // The embedded mode's own mailbox: made on first use.
                        self.make_mailbox(&dir).await?;
                    }
                    let prefix = format!("{}{dtline}", vars.rpline());
                    let mut src = self.reader(&job.message).await?;
                    deliver_maildir(
                        env,
                        &self.counter,
                        &self.new_syncs,
                        &dir,
                        prefix.as_bytes(),
                        &mut src,
                    )
                    .await
                    .map_err(|v| v.after(&report))?;
                }
                Step::Mbox { path, .. } => {
                    files += 1;
                    let prefix = format!("{}{}{dtline}", vars.ufline(), vars.rpline());
                    let mut src = self.reader(&job.message).await?;
                    deliver_mbox(env, &path, prefix.as_bytes(), &mut src)
                        .await
                        .map_err(|v| v.after(&report))?;
                }
                Step::Program(command) => {
                    programs += 1;
                    let spec = ProgramSpec {
                        command,
                        env: vars.environment(&self.config.program_env),
                        cwd: target.home.clone(),
                        user: target.run_as,
                    };
                    let m = &job.message;
                    let input = ProgramInput {
                        prefix: Vec::new(),
                        file: Some(FileRange::new(m.path.clone(), m.offset, m.len)),
                    };
                    let out = env
                        .exec()
                        .run(&spec, input, self.config.output_limit)
                        .await
                        .map_err(|e| {
                            temp(format!("Unable to run /bin/sh: {e}. (#4.3.0)")).after(&report)
                        })?;
                    let said = String::from_utf8_lossy(&out.output);
                    report.push_str(&said);
                    if !said.is_empty() && !said.ends_with('\n') {
                        report.push('\n');
                    }
                    match verdict(out.status) {
                        ProgramVerdict::Delivered => {}
                        ProgramVerdict::DeliveredStop => break,
                        ProgramVerdict::Permanent => {
                            return Err(Verdict::report(Kind::Permanent, report));
                        }
                        ProgramVerdict::Temporary => {
                            return Err(Verdict::report(Kind::Temporary, report));
                        }
                        ProgramVerdict::Crashed => {
                            return Err(temp("Aack, child crashed. (#4.3.0)").after(&report));
                        }
                    }
                }
            }
        }
        let mut qp = None;
        if !recipients.is_empty() {
            let req = ForwardRequest {
                dtline: &dtline,
                sender: &vars.newsender,
                recipients: &recipients,
                invoked: if target.alias {
                    InvokedFrom::Alias
                } else {
                    InvokedFrom::Uid(target.uid)
                },
                uid: target.uid,
            };
            let mut src = self.reader(&job.message).await?;
            let sent = forward(
                &self.queue,
                self.config.queue_program.as_deref(),
                &req,
                &mut src,
            )
            .await;
            qp = Some(sent.map_err(|e| Verdict::from(e).after(&report))?);
        }
        report.push_str(&format!("did {files}+{forwards}+{programs}\n"));
        if let Some(qp) = qp {
            report.push_str(&format!("qp {qp}\n"));
        }
        Ok(report)
    }

    /// Embedded mode: an address's own maildir, created (durably) on first
    /// use.
    async fn make_mailbox(&self, dir: &Path) -> Result<(), Verdict> {
        let known = self
            .durable_mailboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dir);
        if !known {
            create_maildir(self.env().fs(), dir, &self.home.root)
                .await
                .map_err(|e| temp(format!("Unable to create {}: {e}. (#4.3.0)", dir.display())))?;
            self.durable_mailboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(dir.to_path_buf());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names_stay_below_mailboxes() {
        assert_eq!(mailbox_name("Bob"), "bob");
        assert_eq!(mailbox_name("john.doe"), "john.doe");
        assert_eq!(mailbox_name("../x"), ":2e.:2fx");
        assert_eq!(mailbox_name(".."), ":2e.");
        assert_eq!(mailbox_name(""), ":");
    }

    #[test]
    fn mailbox_names_do_not_collide() {
        // `"a/b"` is `a/b` once unquoted (RFC 5321: the same address).
        assert_eq!(mailbox_name("a/b"), "a:2fb");
        assert_eq!(mailbox_name("a:b"), "a:3ab");
        assert_eq!(mailbox_name(":2fb"), ":3a2fb");
        assert_eq!(mailbox_name("a\rb"), "a:0db");
        assert_eq!(mailbox_name("a\u{85}"), "a:c2:85");
        assert_eq!(mailbox_name(":"), ":3a");
    }

    #[test]
    fn long_local_parts_do_not_fit() {
        assert!(local_part_fits(&"a".repeat(248)));
        assert!(!local_part_fits(&"a".repeat(249)));
        assert!(!local_part_fits(&"/".repeat(90)), "escaped it is 270 bytes");
    }

    proptest::proptest! {
        #[test]
        fn mailbox_name_is_injective(a in "[a-z:/.\\x00-\\x1f\\x7f]{0,6}", b in "[a-z:/.\\x00-\\x1f\\x7f]{0,6}") {
            proptest::prop_assert_eq!(a == b, mailbox_name(&a) == mailbox_name(&b));
            let name = mailbox_name(&a);
            proptest::prop_assert!(!name.contains('/') && !name.starts_with('.'));
        }
    }
}
