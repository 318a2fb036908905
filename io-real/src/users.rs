//! The passwd database through getpwnam_r (so NSS sources work too).

use std::io;

use qmail_core::env::{UserInfo, Users};

#[derive(Debug, Clone, Copy, Default)]
pub struct RealUsers;

impl Users for RealUsers {
    async fn by_name(&self, name: &str) -> io::Result<Option<UserInfo>> {
        let name = name.to_string();
        let found = tokio::task::spawn_blocking(move || nix::unistd::User::from_name(&name))
            .await
            .map_err(|e| io::Error::other(format!("user lookup task failed: {e}")))?
            .map_err(io::Error::from)?;
        Ok(found.map(|u| UserInfo {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        }))
    }
}
