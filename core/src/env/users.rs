use std::future::Future;
use std::io;
use std::path::PathBuf;

/// One entry of the system's user database (passwd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The system user database. `users/assign` is read by core itself through
/// [`crate::env::Fs`]; this trait is the passwd lookup behind it.
pub trait Users: Clone + Send + Sync + 'static {
    /// Looks a user up by login name; `Ok(None)` when there is no such user,
    /// `Err` when the database could not be read (a temporary failure).
    fn by_name(&self, name: &str) -> impl Future<Output = io::Result<Option<UserInfo>>> + Send;
}
