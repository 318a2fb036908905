//! The simulated filesystem's crash model, checked against a small reference
//! model of our own: random operation sequences (with and without a journal,
//! with syncs that other operations overlap and failed syncs that drop their
//! data), a crash, then every promise of DESIGN section 4 is checked on what
//! is left. Below it, one small test per behaviour a real ext4 crash allows.
#![allow(clippy::needless_range_loop)] // indices name paths here

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use qmail_core::env::{Fs, FsFile, OpenOptions};
use std::time::Duration;

use qmail_io_sim::{CrashOptions, FsFaults, Journal, SimFs, SnapEntry};

const DIRS: [&str; 2] = ["/d1", "/d2"];
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, Vec<u8>),
    Write(usize, u8, Vec<u8>),
    Append(usize, Vec<u8>),
    Truncate(usize, u8),
    SyncFile(usize),
    SyncDir(usize),
    Rename(usize, usize),
    Link(usize, usize),
    Unlink(usize),
    /// A sync of a file that fails; `true` if it drops the data it was to write.
    FailedSync(usize, bool),
    /// A slow sync (of a file if `Some`, else of the first op's directory)
    /// with another operation issued while it runs.
    Overlapped(Option<usize>, usize, Box<Op>),
}

fn path_of(i: usize) -> PathBuf {
    Path::new(DIRS[i / NAMES.len()]).join(NAMES[i % NAMES.len()])
}

fn dir_of(i: usize) -> usize {
    i / NAMES.len()
}

const NPATHS: usize = DIRS.len() * NAMES.len();

fn plain_op_strategy() -> impl Strategy<Value = Op> {
    let path = 0..NPATHS;
    let data = proptest::collection::vec(any::<u8>(), 1..1200);
    prop_oneof![
        3 => (path.clone(), data.clone()).prop_map(|(p, d)| Op::Create(p, d)),
        2 => (path.clone(), any::<u8>(), data.clone()).prop_map(|(p, o, d)| Op::Write(p, o, d)),
        2 => (path.clone(), data).prop_map(|(p, d)| Op::Append(p, d)),
        1 => (path.clone(), any::<u8>()).prop_map(|(p, l)| Op::Truncate(p, l)),
        3 => path.clone().prop_map(Op::SyncFile),
        3 => (0..DIRS.len()).prop_map(Op::SyncDir),
        2 => (path.clone(), path.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (path.clone(), path.clone()).prop_map(|(a, b)| Op::Link(a, b)),
        1 => path.clone().prop_map(Op::Unlink),
        1 => (path, any::<bool>()).prop_map(|(p, d)| Op::FailedSync(p, d)),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let path = 0..NPATHS;
    prop_oneof![
        12 => plain_op_strategy(),
        1 => (proptest::option::of(path), 0..DIRS.len(), plain_op_strategy())
            .prop_filter("a failed sync overlapping a sync fails both", |(_, _, op)| {
                !matches!(op, Op::FailedSync(..))
            })
            .prop_map(|(f, d, op)| Op::Overlapped(f, d, Box::new(op))),
    ]
}

/// What the reference model knows about one file (by inode number).
/// A data operation as the reference model sees it.
#[derive(Debug, Clone)]
enum RefData {
    SetLen(usize),
    Write(usize, Vec<u8>),
}

impl RefData {
    fn apply(&self, c: &mut Vec<u8>) {
        match self {
            RefData::SetLen(l) => c.resize(*l, 0),
            RefData::Write(off, d) => {
                if c.len() < off + d.len() {
                    c.resize(off + d.len(), 0);
                }
                c[*off..off + d.len()].copy_from_slice(d);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct RefFile {
    /// What is on the disk: the content as of the last sync, or what a
    /// failed sync left when it dropped the data (what must survive if
    /// nothing changed since).
    synced: Vec<u8>,
    /// The data operations since then, in order.
    since: Vec<RefData>,
    /// No write or truncation since the last sync.
    clean: bool,
    /// Every byte written at each offset since the last sync.
    written: BTreeMap<usize, BTreeSet<u8>>,
    /// The largest length the file had since the last sync.
    max_len: usize,
    current: Vec<u8>,
    /// The file was ever hard-linked (so it may rightly have several names).
    linked: bool,
}

/// What the reference model knows about one name.
#[derive(Debug, Clone)]
struct RefName {
    current: Option<u64>,
    /// The name was made durable and not touched since.
    clean: bool,
    /// Every value the name had since it was last made durable (including that one).
    allowed: BTreeSet<Option<u64>>,
}

impl Default for RefName {
    fn default() -> Self {
        RefName {
            current: None,
            clean: true,
            allowed: BTreeSet::from([None]),
        }
    }
}

#[derive(Debug, Default)]
struct Model {
    files: BTreeMap<u64, RefFile>,
    names: Vec<RefName>,
    /// Renames of a durable name: (from, to, inode, index of the op).
    renames: Vec<(usize, usize, u64, usize)>,
    /// Index of the last op that touched each name.
    last_touch: Vec<Option<usize>>,
}

impl Model {
    fn new() -> Self {
        Model {
            names: vec![RefName::default(); NPATHS],
            last_touch: vec![None; NPATHS],
            ..Default::default()
        }
    }

    fn set_name(&mut self, i: usize, v: Option<u64>, op: usize) {
        let n = &mut self.names[i];
        n.current = v;
        n.clean = false;
        n.allowed.insert(v);
        self.last_touch[i] = Some(op);
    }

    fn data_op(&mut self, ino: u64, op: RefData) {
        let file = self.files.get_mut(&ino).expect("known file");
        file.clean = false;
        op.apply(&mut file.current);
        if let RefData::Write(off, data) = &op {
            for (k, b) in data.iter().enumerate() {
                file.written.entry(off + k).or_default().insert(*b);
            }
        }
        file.max_len = file.max_len.max(file.current.len());
        file.since.push(op);
    }

    /// A sync of the file succeeded (`drop` false) or failed dropping its
    /// data (`drop` true): either way nothing is pending any more.
    fn synced(&mut self, ino: u64, drop: bool) {
        let file = self.files.get_mut(&ino).unwrap();
        for op in std::mem::take(&mut file.since) {
            if !drop {
                op.apply(&mut file.synced);
            }
        }
        file.clean = true;
        file.written.clear();
        file.max_len = file.synced.len();
    }
}

async fn apply(fs: &SimFs, model: &mut Model, idx: usize, op: &Op) {
    match op {
        Op::Create(p, data) => {
            let path = path_of(*p);
            let mut f = fs
                .open(&path, &OpenOptions::create_truncate())
                .await
                .unwrap();
            let ino = f.metadata().await.unwrap().ino;
            if model.names[*p].current != Some(ino) {
                model.files.insert(
                    ino,
                    RefFile {
                        clean: true,
                        ..Default::default()
                    },
                );
                model.set_name(*p, Some(ino), idx);
            }
            if !model.files[&ino].current.is_empty() {
                model.data_op(ino, RefData::SetLen(0));
            }
            f.write_all(data).await.unwrap();
            model.data_op(ino, RefData::Write(0, data.clone()));
        }
        Op::Write(p, off, data) => write_at(fs, model, *p, Some(usize::from(*off) * 7), data).await,
        Op::Append(p, data) => write_at(fs, model, *p, None, data).await,
        Op::Truncate(p, len) => {
            let Some(ino) = model.names[*p].current else {
                return;
            };
            let mut f = fs
                .open(&path_of(*p), &OpenOptions::read_write())
                .await
                .unwrap();
            let len = usize::from(*len) * 5;
            f.set_len(len as u64).await.unwrap();
            model.data_op(ino, RefData::SetLen(len));
        }
        Op::SyncFile(p) => {
            if model.names[*p].current.is_none() {
                return;
            }
            let mut f = fs.open(&path_of(*p), &OpenOptions::read()).await.unwrap();
            f.sync_all().await.unwrap();
            model_sync_file(model, *p);
        }
        Op::FailedSync(p, drops) => {
            let Some(ino) = model.names[*p].current else {
                return;
            };
            let mut f = fs.open(&path_of(*p), &OpenOptions::read()).await.unwrap();
            fs.set_faults(FsFaults {
                failed_sync_drops: if *drops { 1.0 } else { 0.0 },
                ..FsFaults::default()
            });
            fs.fail_next_syncs(1);
            assert!(f.sync_all().await.is_err(), "the sync fails");
            fs.set_faults(FsFaults::default());
            if *drops {
                model.synced(ino, true);
            }
        }
        Op::Overlapped(file, d, op) => {
            // A slow sync begins, the other operation is issued while it
            // runs, then the sync ends: it covers only what came before it,
            // so the model takes the sync first.
            fs.set_faults(FsFaults {
                slow_sync: Some((Duration::from_millis(1), Duration::from_millis(1))),
                ..FsFaults::default()
            });
            let target = file.filter(|p| model.names[*p].current.is_some());
            match target {
                Some(p) => model_sync_file(model, p),
                None => model_sync_dir(model, *d),
            }
            let sync = async {
                match target {
                    Some(p) => {
                        let mut f = fs.open(&path_of(p), &OpenOptions::read()).await.unwrap();
                        f.sync_all().await.unwrap();
                    }
                    None => fs.sync_dir(Path::new(DIRS[*d])).await.unwrap(),
                }
            };
            tokio::join!(sync, Box::pin(apply(fs, model, idx, op)));
            fs.set_faults(FsFaults::default());
        }
        Op::SyncDir(d) => {
            fs.sync_dir(Path::new(DIRS[*d])).await.unwrap();
            model_sync_dir(model, *d);
        }
        Op::Rename(a, b) => {
            let Some(ino) = model.names[*a].current else {
                return;
            };
            if a == b || model.names[*b].current == Some(ino) {
                return;
            }
            fs.rename(&path_of(*a), &path_of(*b)).await.unwrap();
            let a_was_durable = model.names[*a].clean;
            let b_never_had_it = !model.names[*b].allowed.contains(&Some(ino));
            if a_was_durable && b_never_had_it {
                model.renames.push((*a, *b, ino, idx));
            }
            model.set_name(*a, None, idx);
            model.set_name(*b, Some(ino), idx);
        }
        Op::Link(a, b) => {
            let Some(ino) = model.names[*a].current else {
                return;
            };
            if model.names[*b].current.is_some() {
                return;
            }
            fs.link(&path_of(*a), &path_of(*b)).await.unwrap();
            model.files.get_mut(&ino).unwrap().linked = true;
            model.set_name(*b, Some(ino), idx);
        }
        Op::Unlink(p) => {
            if model.names[*p].current.is_none() {
                return;
            }
            fs.remove_file(&path_of(*p)).await.unwrap();
            model.set_name(*p, None, idx);
        }
    }
}

fn model_sync_file(model: &mut Model, p: usize) {
    let ino = model.names[p].current.expect("a file to sync");
    model.synced(ino, false);
}

fn model_sync_dir(model: &mut Model, d: usize) {
    for i in 0..NPATHS {
        if dir_of(i) == d {
            let n = &mut model.names[i];
            n.clean = true;
            n.allowed = BTreeSet::from([n.current]);
        }
    }
}

/// Writes `data` at `offset`, or appends it when `offset` is `None`.
async fn write_at(fs: &SimFs, model: &mut Model, p: usize, offset: Option<usize>, data: &[u8]) {
    let Some(ino) = model.names[p].current else {
        return;
    };
    let opts = if offset.is_some() {
        OpenOptions::read_write()
    } else {
        OpenOptions::append()
    };
    let mut f = fs.open(&path_of(p), &opts).await.unwrap();
    let offset = match offset {
        Some(o) => {
            f.seek(o as u64).await.unwrap();
            o
        }
        None => model.files[&ino].current.len(),
    };
    f.write_all(data).await.unwrap();
    model.data_op(ino, RefData::Write(offset, data.to_vec()));
}

async fn check_after_crash(fs: &SimFs, model: &Model, journal: Journal) -> Result<(), String> {
    let snap = fs.snapshot();
    let mut found: Vec<Option<u64>> = vec![None; NPATHS];
    for i in 0..NPATHS {
        let path = path_of(i);
        if let Some(SnapEntry::File(_)) = snap.get(&path) {
            found[i] = Some(fs.metadata(&path).await.unwrap().ino);
        }
    }
    for i in 0..NPATHS {
        let name = &model.names[i];
        let path = path_of(i);
        // Every state after a crash is one the model allows.
        if !name.allowed.contains(&found[i]) {
            return Err(format!(
                "{}: holds {:?}, allowed {:?}",
                path.display(),
                found[i],
                name.allowed
            ));
        }
        // What was synced survives.
        if name.clean && found[i] != name.current {
            return Err(format!("{}: durable name lost", path.display()));
        }
        let Some(ino) = found[i] else { continue };
        let SnapEntry::File(content) = &snap[&path] else {
            unreachable!()
        };
        let file = &model.files[&ino];
        if file.clean {
            if *content != file.synced {
                return Err(format!("{}: synced content changed", path.display()));
            }
            continue;
        }
        if content.len() > file.max_len.max(file.synced.len()) {
            return Err(format!("{}: longer than it ever was", path.display()));
        }
        // A torn write never holds bytes that were not written there.
        for (j, b) in content.iter().enumerate() {
            let ok = *b == 0
                || file.synced.get(j) == Some(b)
                || file.written.get(&j).is_some_and(|s| s.contains(b));
            if !ok {
                return Err(format!(
                    "{}: byte {j} = {b} was never written there",
                    path.display()
                ));
            }
        }
    }
    // Without a journal the two names of a rename reach the disk
    // independently, so what follows holds only with one.
    if journal == Journal::Off {
        return Ok(());
    }
    // A file that was only ever created and renamed has at most one name.
    for (ino, file) in &model.files {
        let names = found.iter().filter(|f| **f == Some(*ino)).count();
        if !file.linked && names > 1 {
            return Err(format!(
                "inode {ino} never linked, found under {names} names"
            ));
        }
    }
    // A renamed durable file is found under exactly one of its two names.
    for &(a, b, ino, idx) in &model.renames {
        if model.last_touch[a] == Some(idx) && model.last_touch[b] == Some(idx) {
            let n = usize::from(found[a] == Some(ino)) + usize::from(found[b] == Some(ino));
            if n != 1 {
                return Err(format!("rename {a}->{b}: file under {n} names"));
            }
        }
    }
    Ok(())
}

fn setup() -> SimFs {
    let fs = SimFs::new(7);
    for d in DIRS {
        fs.install_file(&Path::new(d).join(".keep"), b"", 0o644)
            .unwrap();
    }
    fs
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn crash_states_are_ones_the_model_allows(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        crash_seed in any::<u64>(),
        keep in prop_oneof![Just(0.0), Just(0.3), Just(0.5), Just(0.9), Just(1.0)],
        torn in any::<bool>(),
        journal in prop_oneof![Just(Journal::On), Just(Journal::Off)],
    ) {
        let rt = rt();
        let result = rt.block_on(async {
            let fs = setup();
            fs.set_journal(journal);
            let mut model = Model::new();
            for (i, op) in ops.iter().enumerate() {
                apply(&fs, &mut model, i, op).await;
            }
            fs.crash(crash_seed, CrashOptions { keep_probability: keep, torn_block: torn.then_some(64) });
            fs.check()?;
            check_after_crash(&fs, &model, journal).await
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// Runs `body` once per crash seed in `seeds`, returning what `probe` saw.
fn outcomes<T: Ord>(
    seeds: std::ops::Range<u64>,
    body: impl Fn(&SimFs) -> T,
    make: impl Fn() -> SimFs,
) -> BTreeSet<T> {
    seeds
        .map(|s| {
            let fs = make();
            fs.crash(s, CrashOptions::default());
            body(&fs)
        })
        .collect()
}

fn file_at(fs: &SimFs, p: &str) -> Option<Vec<u8>> {
    match fs.snapshot().get(Path::new(p)) {
        Some(SnapEntry::File(c)) => Some(c.clone()),
        _ => None,
    }
}

#[test]
fn unsynced_write_is_lost_on_some_seed_and_kept_on_another() {
    let rt = rt();
    let make = || {
        let fs = setup();
        rt.block_on(async {
            let mut f = fs
                .open(Path::new("/d1/x"), &OpenOptions::create_new())
                .await
                .unwrap();
            f.sync_all().await.unwrap();
            fs.sync_dir(Path::new("/d1")).await.unwrap();
            f.write_all(b"unsynced").await.unwrap();
        });
        fs
    };
    let seen = outcomes(0..64, |fs| file_at(fs, "/d1/x"), make);
    assert!(
        seen.contains(&Some(b"".to_vec())),
        "some seed loses the write: {seen:?}"
    );
    assert!(
        seen.contains(&Some(b"unsynced".to_vec())),
        "some seed keeps it: {seen:?}"
    );
}

#[test]
fn synced_write_survives_every_seed() {
    let rt = rt();
    let make = || {
        let fs = setup();
        rt.block_on(async {
            let mut f = fs
                .open(Path::new("/d2/y"), &OpenOptions::create_new())
                .await
                .unwrap();
            f.write_all(b"durable").await.unwrap();
            f.sync_all().await.unwrap();
            fs.sync_dir(Path::new("/d2")).await.unwrap();
        });
        fs
    };
    let seen = outcomes(0..200, |fs| file_at(fs, "/d2/y"), make);
    assert_eq!(seen, BTreeSet::from([Some(b"durable".to_vec())]));
}

#[test]
fn created_file_without_directory_sync_can_vanish() {
    let rt = rt();
    let make = || {
        let fs = setup();
        rt.block_on(async {
            let mut f = fs
                .open(Path::new("/d1/z"), &OpenOptions::create_new())
                .await
                .unwrap();
            f.write_all(b"data").await.unwrap();
            f.sync_all().await.unwrap();
        });
        fs
    };
    let seen = outcomes(0..64, |fs| file_at(fs, "/d1/z"), make);
    assert!(seen.contains(&None), "vanishes on some seed: {seen:?}");
    assert!(
        seen.contains(&Some(b"data".to_vec())),
        "survives on another: {seen:?}"
    );
}

#[test]
fn rename_of_durable_file_is_atomic_across_every_seed_with_a_journal() {
    let rt = rt();
    let make = || {
        let fs = setup();
        fs.set_journal(Journal::On);
        fs.install_file(Path::new("/d1/old"), b"previous", 0o644)
            .unwrap();
        fs.install_file(Path::new("/d1/tmp"), b"replacement", 0o644)
            .unwrap();
        rt.block_on(async {
            fs.rename(Path::new("/d1/tmp"), Path::new("/d1/old"))
                .await
                .unwrap();
        });
        fs
    };
    let seen = outcomes(
        0..100,
        |fs| (file_at(fs, "/d1/tmp"), file_at(fs, "/d1/old")),
        make,
    );
    assert_eq!(
        seen,
        BTreeSet::from([
            (None, Some(b"replacement".to_vec())),
            (Some(b"replacement".to_vec()), Some(b"previous".to_vec())),
        ]),
        "old name holds the old or the new file, never neither"
    );
}

#[test]
fn torn_write_keeps_whole_blocks() {
    let rt = rt();
    let data: Vec<u8> = (1..=200u8).cycle().take(4096).collect();
    let make = || {
        let fs = setup();
        fs.install_file(Path::new("/d1/t"), b"", 0o644).unwrap();
        rt.block_on(async {
            let mut f = fs
                .open(Path::new("/d1/t"), &OpenOptions::read_write())
                .await
                .unwrap();
            f.write_all(&data).await.unwrap();
        });
        fs
    };
    let seen = outcomes(0..200, |fs| file_at(fs, "/d1/t").unwrap().len(), make);
    assert!(
        seen.iter().all(|l| l % 512 == 0),
        "only whole blocks: {seen:?}"
    );
    assert!(seen.len() > 3, "several tear points: {seen:?}");
    assert!(seen.contains(&0) && seen.contains(&4096));
}

#[test]
fn handles_die_with_the_crash() {
    let rt = rt();
    let fs = setup();
    rt.block_on(async {
        let mut f = fs
            .open(Path::new("/d1/h"), &OpenOptions::create_new())
            .await
            .unwrap();
        fs.crash(1, CrashOptions::default());
        assert!(
            f.write_all(b"late").await.is_err(),
            "a write through a pre-crash handle fails"
        );
    });
}

#[test]
fn faults_disk_full_and_failed_sync() {
    let rt = rt();
    let fs = setup();
    rt.block_on(async {
        fs.set_faults(FsFaults {
            capacity: Some(1000),
            ..Default::default()
        });
        let mut f = fs
            .open(Path::new("/d1/big"), &OpenOptions::create_new())
            .await
            .unwrap();
        f.write_all(&[1; 900]).await.unwrap();
        let e = f.write_all(&[2; 200]).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC");
        assert_eq!(
            fs.read(Path::new("/d1/big")).await.unwrap().len(),
            900,
            "failed write wrote nothing"
        );
        // Removing the file frees its space once the handle is gone.
        fs.remove_file(Path::new("/d1/big")).await.unwrap();
        drop(f);
        let mut g = fs
            .open(Path::new("/d1/g"), &OpenOptions::create_new())
            .await
            .unwrap();
        g.write_all(&[3; 900]).await.unwrap();

        // A failed sync leaves the data pending: a crash that keeps nothing loses it.
        fs.set_faults(FsFaults::default());
        fs.sync_dir(Path::new("/d1")).await.unwrap();
        fs.fail_next_syncs(1);
        assert_eq!(
            g.sync_all().await.unwrap_err().raw_os_error(),
            Some(5),
            "EIO"
        );
        fs.crash(
            3,
            CrashOptions {
                keep_probability: 0.0,
                torn_block: None,
            },
        );
        assert_eq!(
            file_at(&fs, "/d1/g"),
            Some(Vec::new()),
            "unsynced data lost"
        );
    });
}

#[test]
fn chained_renames_never_leave_two_names_with_a_journal() {
    let rt = rt();
    let make = || {
        let fs = setup();
        fs.set_journal(Journal::On);
        fs.install_file(Path::new("/d1/a"), b"mail", 0o644).unwrap();
        rt.block_on(async {
            fs.rename(Path::new("/d1/a"), Path::new("/d1/b"))
                .await
                .unwrap();
            fs.rename(Path::new("/d1/b"), Path::new("/d2/c"))
                .await
                .unwrap();
        });
        fs
    };
    let seen = outcomes(
        0..100,
        |fs| ["/d1/a", "/d1/b", "/d2/c"].map(|p| file_at(fs, p).is_some()),
        make,
    );
    for s in &seen {
        assert_eq!(
            s.iter().filter(|x| **x).count(),
            1,
            "exactly one name: {seen:?}"
        );
    }
    assert!(
        seen.len() >= 2,
        "the crash chooses among the names: {seen:?}"
    );
}

// One test per behaviour a real ext4 crash allows that the model once
// ruled out. Each would fail on the old model (rename atomic everywhere,
// a finished sync committing everything, failed syncs keeping their data,
// sorted listings, torn writes keeping a prefix).

/// Without a journal (ext2, ext4 `^has_journal`) the removal of a rename's
/// old name reaches the disk with its own directory: syncing the new
/// directory does not make it durable, and a crash before that sync can keep
/// the removal and lose the new name, leaving the file under neither.
#[test]
fn without_a_journal_a_rename_can_leave_neither_name_or_both() {
    let rt = rt();
    let make = |sync_new: bool| {
        let fs = setup();
        fs.install_file(Path::new("/d1/m"), b"mail", 0o644).unwrap();
        rt.block_on(async {
            fs.rename(Path::new("/d1/m"), Path::new("/d2/m"))
                .await
                .unwrap();
            if sync_new {
                fs.sync_dir(Path::new("/d2")).await.unwrap();
            }
        });
        fs
    };
    let names = |fs: &SimFs| ["/d1/m", "/d2/m"].map(|p| file_at(fs, p).is_some());
    let unsynced = outcomes(0..100, names, || make(false));
    assert!(unsynced.contains(&[false, false]), "neither: {unsynced:?}");
    assert!(unsynced.contains(&[true, true]), "both: {unsynced:?}");
    let synced = outcomes(0..100, names, || make(true));
    assert!(
        synced.iter().all(|[_, new]| *new),
        "new name durable: {synced:?}"
    );
    assert!(
        synced.contains(&[true, true]),
        "old one may stay: {synced:?}"
    );
}

/// qmail's order (link, sync the new directory, unlink) never leaves the
/// file under no name, with or without a journal.
#[test]
fn link_sync_unlink_keeps_a_name_on_every_seed() {
    let rt = rt();
    for journal in [Journal::On, Journal::Off] {
        let make = || {
            let fs = setup();
            fs.set_journal(journal);
            fs.install_file(Path::new("/d1/m"), b"mail", 0o644).unwrap();
            rt.block_on(async {
                fs.link(Path::new("/d1/m"), Path::new("/d2/m"))
                    .await
                    .unwrap();
                fs.sync_dir(Path::new("/d2")).await.unwrap();
                fs.remove_file(Path::new("/d1/m")).await.unwrap();
            });
            fs
        };
        let seen = outcomes(
            0..100,
            |fs| ["/d1/m", "/d2/m"].map(|p| file_at(fs, p).is_some()),
            make,
        );
        assert_eq!(
            seen,
            BTreeSet::from([[false, true], [true, true]]),
            "{journal:?}"
        );
    }
}

/// A sync takes time; what is written while it runs is not what it wrote.
#[test]
fn a_sync_does_not_cover_what_was_issued_while_it_ran() {
    let rt = rt();
    rt.block_on(async {
        let fs = setup();
        fs.install_file(Path::new("/d1/f"), b"", 0o644).unwrap();
        fs.set_faults(FsFaults {
            slow_sync: Some((Duration::from_millis(2), Duration::from_millis(2))),
            ..FsFaults::default()
        });
        let mut f = fs
            .open(Path::new("/d1/f"), &OpenOptions::append())
            .await
            .unwrap();
        f.write_all(b"before ").await.unwrap();
        let mut g = fs
            .open(Path::new("/d1/f"), &OpenOptions::append())
            .await
            .unwrap();
        let late_name = async {
            g.write_all(b"during").await.unwrap();
            fs.open(Path::new("/d1/late"), &OpenOptions::create_new())
                .await
                .unwrap();
        };
        // Both syncs begin first, then the late write and name arrive.
        let (a, b, ()) = tokio::join!(f.sync_all(), fs.sync_dir(Path::new("/d1")), late_name);
        a.unwrap();
        b.unwrap();
        drop((f, g));
        fs.crash(
            1,
            CrashOptions {
                keep_probability: 0.0,
                torn_block: None,
            },
        );
        assert_eq!(file_at(&fs, "/d1/f"), Some(b"before ".to_vec()));
        assert_eq!(file_at(&fs, "/d1/late"), None);
    });
}

/// fsyncgate: after a failed fsync the kernel may mark the dirty pages clean;
/// the data is gone from the disk's future although readers still see it,
/// and the next fsync succeeds without writing it.
#[test]
fn a_failed_sync_can_drop_its_data_and_the_next_one_succeeds_without_it() {
    let rt = rt();
    rt.block_on(async {
        let fs = setup();
        fs.install_file(Path::new("/d1/f"), b"head ", 0o644)
            .unwrap();
        fs.set_faults(FsFaults {
            failed_sync_drops: 1.0,
            ..FsFaults::default()
        });
        let mut f = fs
            .open(Path::new("/d1/f"), &OpenOptions::append())
            .await
            .unwrap();
        f.write_all(b"lost ").await.unwrap();
        fs.fail_next_syncs(1);
        assert!(f.sync_all().await.is_err());
        f.write_all(b"tail").await.unwrap();
        f.sync_all().await.expect("the next sync succeeds");
        assert_eq!(
            fs.read(Path::new("/d1/f")).await.unwrap(),
            b"head lost tail",
            "readers still see the dropped bytes"
        );
        drop(f);
        // Even a crash that keeps everything pending cannot bring them back.
        fs.crash(
            2,
            CrashOptions {
                keep_probability: 1.0,
                torn_block: None,
            },
        );
        assert_eq!(
            file_at(&fs, "/d1/f"),
            Some(b"head \0\0\0\0\0tail".to_vec()),
            "a hole of NULs where the dropped write was"
        );
    });
}

/// A sync waiting on data that a failed sync dropped meanwhile reports the
/// error too: it never claims what it did not write.
#[test]
fn a_sync_overlapping_a_dropping_failure_fails_too() {
    let rt = rt();
    rt.block_on(async {
        let fs = setup();
        fs.install_file(Path::new("/d1/f"), b"", 0o644).unwrap();
        let mut f = fs
            .open(Path::new("/d1/f"), &OpenOptions::append())
            .await
            .unwrap();
        let mut g = fs
            .open(Path::new("/d1/f"), &OpenOptions::read())
            .await
            .unwrap();
        f.write_all(b"data").await.unwrap();
        fs.set_faults(FsFaults {
            slow_sync: Some((Duration::from_millis(2), Duration::from_millis(2))),
            ..FsFaults::default()
        });
        let failing = async {
            fs.set_faults(FsFaults {
                failed_sync_drops: 1.0,
                ..FsFaults::default()
            });
            fs.fail_next_syncs(1);
            g.sync_all().await
        };
        let (slow, failed) = tokio::join!(f.sync_all(), failing);
        assert!(failed.is_err());
        assert!(slow.is_err(), "the overlapping sync fails as well");
    });
}

/// Directory listings come in an order the filesystem chooses, not sorted.
#[test]
fn listings_come_in_a_seed_chosen_order() {
    let rt = rt();
    let orders: BTreeSet<Vec<String>> = (0..8)
        .map(|seed| {
            let fs = SimFs::new(seed);
            for n in ["a", "b", "c", "d", "e"] {
                fs.install_file(&Path::new("/d").join(n), b"", 0o644)
                    .unwrap();
            }
            rt.block_on(fs.read_dir(Path::new("/d")))
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect()
        })
        .collect();
    assert!(orders.len() > 1, "several orders: {orders:?}");
    let again = SimFs::new(3);
    assert_eq!(again.journal(), Journal::Off);
}

/// A torn write keeps any subset of its blocks: the disk writes pages in no
/// particular order, so a later block can land without an earlier one.
#[test]
fn torn_write_can_keep_a_later_block_without_an_earlier_one() {
    let rt = rt();
    let data = vec![7u8; 2048];
    let make = || {
        let fs = setup();
        fs.install_file(Path::new("/d1/t"), b"", 0o644).unwrap();
        rt.block_on(async {
            let mut f = fs
                .open(Path::new("/d1/t"), &OpenOptions::read_write())
                .await
                .unwrap();
            f.write_all(&data).await.unwrap();
        });
        fs
    };
    let seen = outcomes(
        0..200,
        |fs| {
            let c = file_at(fs, "/d1/t").unwrap();
            c.chunks(512).map(|b| b[0] == 7).collect::<Vec<_>>()
        },
        make,
    );
    assert!(
        seen.iter()
            .any(|blocks| blocks.windows(2).any(|w| !w[0] && w[1])),
        "a hole before a kept block: {seen:?}"
    );
}
