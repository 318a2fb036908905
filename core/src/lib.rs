//! qmail-core: all of qmail-rs's mail logic.
//!
//! Nothing here touches the operating system directly: every file, clock,
//! network, process, user and random-number operation goes through the traits
//! in [`env`], so the same code runs in production (`qmail-io-real`) and in the
//! deterministic simulation (`qmail-io-sim`). `clippy.toml` enforces this.

#![forbid(unsafe_code)]

pub mod control;
pub mod date;
pub mod deliver;
pub mod dns;
pub mod env;
pub mod home;
pub mod inject;
pub mod local;
pub mod logsafe;
pub mod mta;
pub mod pop3;
pub mod queue;
pub mod remote;
pub mod send;
pub mod smtp;
pub mod smtpd;

#[cfg(feature = "testkit")]
pub mod testkit;
