//! The reports of qmail-qread and qmail-qstat, in qmail's formats. They only
//! read, so they never disturb a running scheduler.

use std::fmt::Write as _;

use super::{Queue, QueueError};
use crate::date::Civil;
use crate::env::Env;

/// Replaces what a terminal should not see, as qmail-qread does.
fn printable(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (32..=126).contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

impl<E: Env> Queue<E> {
    /// qmail-qread's listing: per message `DATE GMT  #ID  SIZE  <SENDER> `
    /// (plus ` bouncing` when a bounce is pending), then one line per
    /// recipient, `\tlocal\tADDR` or `  done\tremote\tADDR`. Messages not yet
    /// taken in by the scheduler are listed from their envelope.
    pub async fn qread(&self) -> Result<String, QueueError> {
        let mut out = String::new();
        let mut ids = self.list_active().await?;
        let todo = self.list_todo().await?;
        // list_todo is sorted: membership below is a binary search, so a
        // large queue is listed in n log n, not n².
        ids.extend(&todo);
        for id in ids {
            let (header, sender, rows, bouncing) = if todo.binary_search(&id).is_ok() {
                let (h, env) = match self.read_todo(id).await {
                    Ok(x) => x,
                    Err(_) => continue, // taken in meanwhile
                };
                let rows: Vec<(bool, &str, String)> = env
                    .recipients
                    .iter()
                    .map(|r| (false, "?", r.clone()))
                    .collect();
                (h, env.sender, rows, false)
            } else {
                let st = match self.load(id).await {
                    Ok(st) => st,
                    Err(e) => {
                        let _ = writeln!(out, "warning: trouble with #{id}: {e}");
                        continue;
                    }
                };
                let mut rows = Vec::new();
                for r in &st.local {
                    rows.push((r.done, "local", r.address.clone()));
                }
                for r in &st.remote {
                    rows.push((r.done, "remote", r.address.clone()));
                }
                (st.header, st.sender.clone(), rows, st.bounce_pending)
            };
            let line = format!(
                "{} GMT  #{}  {}  <{}> {}",
                Civil::from_unix(header.birth).qmail_datetime(),
                id,
                header.len,
                sender,
                if bouncing { " bouncing" } else { "" }
            );
            out.push_str(&printable(&line));
            out.push('\n');
            for (done, ch, addr) in rows {
                if done {
                    out.push_str("  done");
                }
                let _ = writeln!(out, "\t{ch}\t{}", printable(&addr));
            }
        }
        Ok(out)
    }

    /// qmail-qstat's two lines.
    pub async fn qstat(&self) -> Result<String, QueueError> {
        let todo = self.list_todo().await?.len();
        let active = self.list_active().await?.len();
        Ok(format!(
            "messages in queue: {}\nmessages in queue but not yet preprocessed: {}\n",
            active + todo,
            todo
        ))
    }
}
