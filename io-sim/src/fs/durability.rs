//! What becomes durable when: syncs, failed syncs, and crashes.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng as _;
use rand::rngs::StdRng;

use super::model::{Body, DataOp, Effect, Ino, Inode, NsOp, ROOT, Seq, State};
use super::{CrashOptions, Journal};

impl State {
    /// A file sync that began when `before` was the next stamp succeeded: the
    /// data operations issued before it are durable.
    pub(super) fn commit_file(&mut self, ino: Ino, before: Seq) {
        if let Some(Inode {
            body: Body::File {
                durable, pending, ..
            },
            ..
        }) = self.inodes.get_mut(&ino)
        {
            let later = pending.partition_point(|(s, _)| *s < before);
            for (_, op) in pending.drain(..later) {
                op.apply(durable);
            }
        }
    }

    /// How many times a failed sync dropped this file's data.
    pub(super) fn drops(&self, ino: Ino) -> u64 {
        match self.inodes.get(&ino).map(|i| &i.body) {
            Some(Body::File { drops, .. }) => *drops,
            _ => 0,
        }
    }

    /// A file sync that began at `before` failed and the kernel dropped the
    /// dirty data it was writing (marked it clean): those operations will
    /// never reach the disk, and a later sync succeeds without them.
    pub(super) fn drop_file_data(&mut self, ino: Ino, before: Seq) {
        if let Some(Inode {
            body: Body::File { pending, drops, .. },
            ..
        }) = self.inodes.get_mut(&ino)
        {
            let later = pending.partition_point(|(s, _)| *s < before);
            if later > 0 {
                pending.drain(..later);
                *drops += 1;
                self.stats.dropped_syncs += 1;
            }
        }
    }

    /// A sync of `dir` that began at `before` succeeded: the name updates in
    /// `dir` issued before it are durable, with every earlier update of the
    /// same names. With a journal an update is the whole operation (both
    /// names of a rename); without one, only the names in `dir`.
    pub(super) fn commit_dir(&mut self, dir: Ino, before: Seq) {
        match self.journal {
            Journal::On => self.commit_dir_journalled(dir, before),
            Journal::Off => self.commit_dir_unjournalled(dir, before),
        }
    }

    fn commit_dir_journalled(&mut self, dir: Ino, before: Seq) {
        let mut needed: BTreeSet<(Ino, String)> = BTreeSet::new();
        let mut commit = vec![false; self.pending.len()];
        for (i, op) in self.pending.iter().enumerate().rev() {
            let depends = op.keys().any(|(d, n)| needed.contains(&(d, n.to_string())));
            if (op.seq < before && op.touches_dir(dir)) || depends {
                commit[i] = true;
                for (d, n) in op.keys() {
                    needed.insert((d, n.to_string()));
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (op, c) in pending.into_iter().zip(commit) {
            if c {
                self.apply_durable(&op.effects);
            } else {
                self.pending.push(op);
            }
        }
    }

    fn commit_dir_unjournalled(&mut self, dir: Ino, before: Seq) {
        // Every earlier update of a name in `dir` is itself in `dir` and
        // issued earlier still, so it commits here too: order is kept.
        let pending = std::mem::take(&mut self.pending);
        for mut op in pending {
            if op.seq < before && op.touches_dir(dir) {
                let (now, rest): (Vec<Effect>, Vec<Effect>) =
                    op.effects.into_iter().partition(|(d, _, _)| *d == dir);
                self.apply_durable(&now);
                op.effects = rest;
            }
            if !op.effects.is_empty() {
                self.pending.push(op);
            }
        }
    }

    pub(super) fn crash(&mut self, rng: &mut StdRng, opts: CrashOptions) {
        // Every handle dies, and its locks with it.
        self.locks.clear();
        let keep_p = opts.keep_probability.clamp(0.0, 1.0);
        // Names: keep each operation (each name update, without a journal)
        // with probability keep_p, unless an earlier update of one of its
        // names was lost.
        let units: Vec<NsOp> = match self.journal {
            Journal::On => std::mem::take(&mut self.pending),
            Journal::Off => std::mem::take(&mut self.pending)
                .into_iter()
                .flat_map(|op| {
                    op.effects.into_iter().map(move |e| NsOp {
                        seq: op.seq,
                        effects: vec![e],
                    })
                })
                .collect(),
        };
        let mut lost: BTreeSet<(Ino, String)> = BTreeSet::new();
        for op in units {
            let blocked = op.keys().any(|(d, n)| lost.contains(&(d, n.to_string())));
            if !blocked && rng.random_bool(keep_p) {
                self.apply_durable(&op.effects);
            } else {
                for (d, n) in op.keys() {
                    lost.insert((d, n.to_string()));
                }
            }
        }
        // Data: each pending operation independently kept, torn or lost.
        for inode in self.inodes.values_mut() {
            if let Body::File {
                durable, pending, ..
            } = &mut inode.body
            {
                for (_, op) in pending.drain(..) {
                    if rng.random_bool(keep_p) {
                        op.apply(durable);
                        continue;
                    }
                    if let (DataOp::Write { offset, data }, Some(block)) = (&op, opts.torn_block)
                        && rng.random_bool(0.5)
                    {
                        tear(durable, *offset as usize, data, block, rng);
                    }
                }
            }
        }
        // What is left is the durable image, minus what no durable name reaches.
        let mut reachable = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Inode {
                body: Body::Dir { durable, .. },
                ..
            }) = self.inodes.get(&ino)
            {
                stack.extend(durable.values().copied());
            }
        }
        self.inodes.retain(|ino, _| reachable.contains(ino));
        let mut links: BTreeMap<Ino, u64> = BTreeMap::new();
        for inode in self.inodes.values() {
            if let Body::Dir { durable, .. } = &inode.body {
                for t in durable.values() {
                    *links.entry(*t).or_default() += 1;
                }
            }
        }
        let mut used = 0;
        for (ino, inode) in self.inodes.iter_mut() {
            match &mut inode.body {
                Body::File {
                    current,
                    durable,
                    drops,
                    ..
                } => {
                    *current = durable.clone();
                    *drops = 0;
                    used += current.len() as u64;
                    inode.nlink = links.get(ino).copied().unwrap_or(0);
                    inode.open = 0;
                }
                Body::Dir { current, durable } => {
                    *current = durable.clone();
                    inode.nlink = 2;
                }
            }
        }
        self.used = used;
        self.generation += 1;
        self.stats.crashes += 1;
    }
}

/// A torn write: the disk wrote pages in no particular order, so any subset
/// of the write's blocks (aligned to the disk's blocks) reached it.
fn tear(durable: &mut Vec<u8>, offset: usize, data: &[u8], block: usize, rng: &mut StdRng) {
    let end = offset + data.len();
    let mut start = offset;
    while start < end {
        let stop = ((start / block + 1) * block).min(end);
        if rng.random_bool(0.5) {
            if durable.len() < stop {
                durable.resize(stop, 0);
            }
            durable[start..stop].copy_from_slice(&data[start - offset..stop - offset]);
        }
        start = stop;
    }
}
