//! A scripted user database for the `Users` trait.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use qmail_core::env::{UserInfo, Users};

#[derive(Debug, Clone, Default)]
pub struct SimUsers(Arc<Mutex<BTreeMap<String, UserInfo>>>);

impl SimUsers {
    /// Adds (or replaces) a user.
    pub fn add(&self, name: &str, uid: u32, gid: u32, home: impl Into<PathBuf>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(
            name.to_string(),
            UserInfo {
                name: name.to_string(),
                uid,
                gid,
                home: home.into(),
            },
        );
    }
}

impl Users for SimUsers {
    async fn by_name(&self, name: &str) -> io::Result<Option<UserInfo>> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned())
    }
}
