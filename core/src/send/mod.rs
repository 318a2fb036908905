//! qmail-send: the scheduler.
//!
//! It takes committed messages in from `todo/` as soon as they are
//! committed (a trigger from the queue, and a periodic scan), routes each
//! recipient to the local or remote channel ([`route`]), runs deliveries
//! through the [`Deliver`](crate::deliver::Deliver) agents under each
//! channel's concurrency limit, checkpoints every outcome in the queue,
//! retries deferrals on qmail's schedule ([`retry`]), bounces permanent
//! failures in qmail's words ([`bounce`]), removes finished messages, and
//! logs all of it in qmail-send's format ([`log`]).

pub mod bounce;
pub mod control;
pub mod log;
pub mod planner;
pub mod retry;
pub mod route;
mod scheduler;

pub use control::{BounceControl, SendControl};
pub use route::Router;
pub use scheduler::{Command, Scheduler, SendError};
