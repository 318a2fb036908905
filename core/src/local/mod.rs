//! Local delivery: qmail-users, qmail-lspawn, qmail-getpw and qmail-local.
//!
//! [`LocalDelivery`] is the scheduler's agent for the local channel: it maps
//! the recipient to a user ([`assign`]), finds the `.qmail` file that
//! controls the address ([`dotqmail`]), turns its lines into a plan of
//! steps ([`plan`]) and executes them: maildir ([`maildir`]), mbox
//! ([`mbox`]), programs ([`program`]) and forwards ([`forward`]). Every
//! failure is one [`Verdict`], temporary or permanent. `docs/local-delivery.md` describes the behaviour.

pub mod agent;
pub mod assign;
pub mod dotqmail;
pub mod forward;
pub mod helpers;
pub mod maildir;
pub mod mbox;
pub mod mbox_lock;
pub mod message;
pub mod plan;
pub mod program;
pub mod verdict;

pub use agent::{
    LOOPING, LocalConfig, LocalDelivery, Mode, NAME_MAX, NO_MAILBOX, Recipient, TOO_MANY_HOPS,
    local_part_fits, mailbox_name,
};
pub use message::{ByteSource, MessageReader, SliceSource};
pub use plan::{Step, plan};
pub use verdict::{Kind, Verdict};
