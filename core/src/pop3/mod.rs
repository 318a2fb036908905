//! POP3, as qmail serves it: `qmail-popup` greets and takes USER/PASS (or
//! APOP) and hands them to a checkpassword program ([`popup`]), which on
//! success runs `qmail-pop3d` as the user in the home directory; that
//! serves the user's maildir ([`pop3d`], [`maildrop`], [`serve`]). Both
//! halves read command lines the same way ([`command`]). docs/pop3.md says
//! where the behaviour departs from qmail's and why.

pub mod command;
pub mod maildrop;
pub mod pop3d;
pub mod popup;
pub mod serve;

pub use command::{Line, LineReader};
pub use pop3d::{MailMessage, MessageEncoder, Pop3d, Pop3dStep, QuitPlan};
pub use popup::{CheckpasswordEnd, Credentials, Popup, PopupStep};
pub use serve::{SessionEnd, TIMEOUT, serve_pop3d};
