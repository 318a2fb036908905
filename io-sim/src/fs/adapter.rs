//! The `Fs` and `FsFile` traits core sees, over the model.

use std::fmt;
use std::io;
use std::path::Path;

use qmail_core::env::{DirEntry, FileKind, Fs, FsFile, Metadata, OpenOptions};

use super::model::{
    Body, DataOp, EACCES, EBADF, EEXIST, EINVAL, EIO, EISDIR, ENOENT, ENOSPC, ENOTDIR, ENOTEMPTY,
    Ino, Inode, State, os_err,
};
use super::{Guard, SimFs};
use crate::clock::sim_now;

/// An open file of a [`SimFs`].
pub struct SimFile {
    fs: SimFs,
    ino: Ino,
    generation: u64,
    pos: u64,
    readable: bool,
    writable: bool,
    append: bool,
    /// Whether this handle holds the file's lock.
    locked: bool,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("ino", &self.ino)
            .field("pos", &self.pos)
            .finish()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        if st.generation == self.generation {
            if self.locked {
                st.locks.remove(&self.ino);
            }
            if let Some(i) = st.inodes.get_mut(&self.ino) {
                i.open = i.open.saturating_sub(1);
            }
            st.release_if_unused(self.ino);
        }
    }
}

impl SimFile {
    /// The filesystem state, if this handle survived every crash so far.
    fn live(&self) -> io::Result<Guard<'_>> {
        let st = self.fs.lock();
        if st.generation != self.generation {
            return Err(os_err(EBADF));
        }
        Ok(st)
    }

    async fn sync(&mut self) -> io::Result<()> {
        // Only what was issued before the sync began is written by it.
        let ino = self.ino;
        let (delay, before, drops) = {
            let mut st = self.live()?;
            (st.sync_delay(), st.next_seq, st.drops(ino))
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut st = self.live()?;
        st.mutation()?;
        st.stats.file_syncs += 1;
        let mut result = st.check_sync_fault();
        // A sync that was waiting on data a failed one dropped meanwhile
        // fails too (Linux reports a writeback error to every waiter).
        if st.drops(ino) != drops {
            result = Err(os_err(EIO));
        }
        match result {
            Ok(()) => st.commit_file(ino, before),
            Err(_) if st.failed_sync_drops() => st.drop_file_data(ino, before),
            Err(_) => {}
        }
        st.record(format_args!("fsync ino={ino} {result:?}"));
        result
    }
}

impl FsFile for SimFile {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.readable {
            return Err(os_err(EBADF));
        }
        let st = self.live()?;
        let Body::File { current, .. } = &st.inode(self.ino)?.body else {
            return Err(os_err(EISDIR));
        };
        let start = (self.pos as usize).min(current.len());
        let n = buf.len().min(current.len() - start);
        buf[..n].copy_from_slice(&current[start..start + n]);
        drop(st);
        self.pos += n as u64;
        Ok(n)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(os_err(EBADF));
        }
        let mut st = self.live()?;
        st.mutation()?;
        st.stats.writes += 1;
        if st.write_fails() {
            let ino = self.ino;
            st.record(format_args!("write ino={ino} EIO"));
            return Err(os_err(EIO));
        }
        let cap = st.faults.capacity;
        let used = st.used;
        let ino = self.ino;
        let seq = st.next_seq;
        let inode = st.inode_mut(ino)?;
        let Body::File {
            current, pending, ..
        } = &mut inode.body
        else {
            return Err(os_err(EISDIR));
        };
        let offset = if self.append {
            current.len() as u64
        } else {
            self.pos
        };
        let end = offset + buf.len() as u64;
        let growth = end.saturating_sub(current.len() as u64);
        if growth > 0 && cap.is_some_and(|c| used + growth > c) {
            st.record(format_args!("write ino={ino} ENOSPC"));
            return Err(os_err(ENOSPC));
        }
        if current.len() < end as usize {
            current.resize(end as usize, 0);
        }
        current[offset as usize..end as usize].copy_from_slice(buf);
        if !buf.is_empty() {
            pending.push((
                seq,
                DataOp::Write {
                    offset,
                    data: buf.to_vec(),
                },
            ));
            st.next_seq += 1;
        }
        st.inode_mut(ino)?.mtime = sim_now();
        st.used += growth;
        let len = buf.len();
        st.record(format_args!("write ino={ino} off={offset} len={len}"));
        drop(st);
        self.pos = end;
        Ok(())
    }

    async fn seek(&mut self, pos: u64) -> io::Result<()> {
        drop(self.live()?);
        self.pos = pos;
        Ok(())
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(os_err(EINVAL));
        }
        let mut st = self.live()?;
        st.mutation()?;
        st.resize_file(self.ino, len)?;
        let ino = self.ino;
        st.record(format_args!("set_len ino={ino} len={len}"));
        Ok(())
    }

    async fn sync_all(&mut self) -> io::Result<()> {
        self.sync().await
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        self.sync().await
    }

    async fn metadata(&self) -> io::Result<Metadata> {
        self.live()?.metadata_of(self.ino)
    }

    async fn try_lock(&mut self) -> io::Result<bool> {
        let mut st = self.live()?;
        if self.locked {
            return Ok(true);
        }
        if !st.locks.insert(self.ino) {
            return Ok(false);
        }
        drop(st);
        self.locked = true;
        Ok(true)
    }

    /// One process per host and one kind of lock: a mailbox lock is the
    /// same lock as `try_lock`'s.
    async fn try_lock_mailbox(&mut self) -> io::Result<bool> {
        self.try_lock().await
    }
}

impl Fs for SimFs {
    type File = SimFile;

    /// The simulation runs one process per host, which the queue wakes
    /// in-process; there is no other process to wake.
    async fn pull_trigger(&self, _path: &Path) {}

    async fn open(&self, path: &Path, opts: &OpenOptions) -> io::Result<SimFile> {
        let mut st = self.lock();
        if opts.write || opts.append || opts.create || opts.create_new {
            st.mutation()?;
        }
        let (dir, name) = st.resolve_parent(path)?;
        let ino = match st.dir_lookup(dir, &name) {
            Some(ino) => {
                if opts.create_new {
                    return Err(os_err(EEXIST));
                }
                if st.inode(ino)?.kind() == FileKind::Dir && (opts.write || opts.append) {
                    return Err(os_err(EISDIR));
                }
                if opts.truncate && opts.write && st.metadata_of(ino)?.len > 0 {
                    st.resize_file(ino, 0)?;
                }
                ino
            }
            None if st.no_creation.contains(&dir) && (opts.create || opts.create_new) => {
                return Err(os_err(EACCES));
            }
            None if opts.create || opts.create_new => {
                let ino = st.alloc(Inode {
                    mode: opts.mode & 0o7777,
                    mtime: sim_now(),
                    nlink: 1,
                    open: 0,
                    body: Body::File {
                        current: Vec::new(),
                        durable: Vec::new(),
                        pending: Vec::new(),
                        drops: 0,
                    },
                });
                st.change_names(vec![(dir, name, Some(ino))]);
                ino
            }
            None => return Err(os_err(ENOENT)),
        };
        let generation = st.generation;
        st.inode_mut(ino)?.open += 1;
        st.record(format_args!("open {} ino={ino}", path.display()));
        Ok(SimFile {
            fs: self.clone(),
            ino,
            generation,
            pos: 0,
            readable: opts.read,
            writable: opts.write || opts.append,
            append: opts.append,
            locked: false,
        })
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // Only what was issued before the sync began is written by it.
        let (delay, before) = {
            let mut st = self.lock();
            (st.sync_delay(), st.next_seq)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut st = self.lock();
        st.mutation()?;
        let ino = st.resolve(path)?;
        if st.inode(ino)?.kind() != FileKind::Dir {
            return Err(os_err(ENOTDIR));
        }
        st.stats.dir_syncs += 1;
        let result = st.check_sync_fault();
        st.record(format_args!("fsync dir {} {result:?}", path.display()));
        result?;
        st.commit_dir(ino, before);
        Ok(())
    }

    async fn link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let ino = st.resolve(src)?;
        if st.inode(ino)?.kind() == FileKind::Dir {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let (dir, name) = st.resolve_parent(dst)?;
        if st.dir_lookup(dir, &name).is_some() {
            return Err(os_err(EEXIST));
        }
        st.inode_mut(ino)?.nlink += 1;
        st.change_names(vec![(dir, name, Some(ino))]);
        st.record(format_args!("link {} {}", src.display(), dst.display()));
        Ok(())
    }

    async fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (sdir, sname) = st.resolve_parent(src)?;
        let ino = st.dir_lookup(sdir, &sname).ok_or_else(|| os_err(ENOENT))?;
        let (ddir, dname) = st.resolve_parent(dst)?;
        let src_kind = st.inode(ino)?.kind();
        if src_kind == FileKind::Dir {
            let s = State::components(src)?;
            let d = State::components(dst)?;
            if d.len() > s.len() && d[..s.len()] == s[..] {
                return Err(os_err(EINVAL));
            }
        }
        if let Some(old) = st.dir_lookup(ddir, &dname) {
            if old == ino {
                return Ok(());
            }
            match (src_kind, &st.inode(old)?.body) {
                (FileKind::Dir, Body::Dir { current, .. }) if !current.is_empty() => {
                    return Err(os_err(ENOTEMPTY));
                }
                (FileKind::Dir, Body::File { .. }) => return Err(os_err(ENOTDIR)),
                (_, Body::Dir { .. }) if src_kind != FileKind::Dir => return Err(os_err(EISDIR)),
                _ => {}
            }
            st.unref(old);
        }
        st.change_names(vec![(sdir, sname, None), (ddir, dname, Some(ino))]);
        st.record(format_args!("rename {} {}", src.display(), dst.display()));
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (dir, name) = st.resolve_parent(path)?;
        let ino = st.dir_lookup(dir, &name).ok_or_else(|| os_err(ENOENT))?;
        if st.inode(ino)?.kind() == FileKind::Dir {
            return Err(os_err(EISDIR));
        }
        st.unref(ino);
        st.change_names(vec![(dir, name, None)]);
        st.record(format_args!("unlink {}", path.display()));
        Ok(())
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (dir, name) = st.resolve_parent(path)?;
        if st.dir_lookup(dir, &name).is_some() {
            return Err(os_err(EEXIST));
        }
        let ino = st.alloc(Inode::new_dir(mode & 0o7777));
        st.change_names(vec![(dir, name, Some(ino))]);
        st.record(format_args!("mkdir {}", path.display()));
        Ok(())
    }

    async fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let (dir, name) = st.resolve_parent(path)?;
        let ino = st.dir_lookup(dir, &name).ok_or_else(|| os_err(ENOENT))?;
        match &st.inode(ino)?.body {
            Body::Dir { current, .. } if !current.is_empty() => return Err(os_err(ENOTEMPTY)),
            Body::Dir { .. } => {}
            Body::File { .. } => return Err(os_err(ENOTDIR)),
        }
        st.change_names(vec![(dir, name, None)]);
        st.record(format_args!("rmdir {}", path.display()));
        Ok(())
    }

    async fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut st = self.lock();
        let ino = st.resolve(path)?;
        let Body::Dir { current, .. } = &st.inode(ino)?.body else {
            return Err(os_err(ENOTDIR));
        };
        let mut entries: Vec<DirEntry> = current
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                kind: st
                    .inodes
                    .get(child)
                    .map(Inode::kind)
                    .unwrap_or(FileKind::Other),
            })
            .collect();
        st.listing_order(&mut entries);
        Ok(entries)
    }

    async fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let st = self.lock();
        let ino = st.resolve(path)?;
        st.metadata_of(ino)
    }

    async fn set_permissions(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        st.mutation()?;
        let ino = st.resolve(path)?;
        st.inode_mut(ino)?.mode = mode & 0o7777;
        Ok(())
    }
}
