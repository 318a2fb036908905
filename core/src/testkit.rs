//! Behaviour suites shared by the implementations of the I/O traits.
//!
//! `qmail-io-real` runs [`fs_behaviour`] on a temporary directory and
//! `qmail-io-sim` runs it on the simulated filesystem: one set of expectations,
//! two worlds. Each check panics with a message naming what went wrong.

use std::io::ErrorKind;
use std::path::Path;

use crate::env::{FileKind, Fs, FsFile, OpenOptions};

/// Every check of the suite, by name, so a failure says which one.
pub const FS_CHECKS: &[&str] = &[
    "write_read_back",
    "rename_over_existing",
    "link",
    "create_new_on_existing",
    "read_dir_listing",
    "metadata",
    "append_and_truncate",
    "remove_and_not_found",
    "directories",
    "lock",
];

/// Runs the whole filesystem behaviour suite under `root`, an existing empty
/// directory.
pub async fn fs_behaviour<F: Fs>(fs: &F, root: &Path) {
    for name in FS_CHECKS {
        let dir = root.join(name);
        fs.create_dir(&dir, 0o755).await.expect("create check dir");
        run_check(fs, name, &dir).await;
    }
}

async fn run_check<F: Fs>(fs: &F, name: &str, dir: &Path) {
    match name {
        "write_read_back" => write_read_back(fs, dir).await,
        "rename_over_existing" => rename_over_existing(fs, dir).await,
        "link" => link(fs, dir).await,
        "create_new_on_existing" => create_new_on_existing(fs, dir).await,
        "read_dir_listing" => read_dir_listing(fs, dir).await,
        "metadata" => metadata(fs, dir).await,
        "append_and_truncate" => append_and_truncate(fs, dir).await,
        "remove_and_not_found" => remove_and_not_found(fs, dir).await,
        "directories" => directories(fs, dir).await,
        "lock" => lock(fs, dir).await,
        other => panic!("unknown check {other}"),
    }
}

async fn write_file<F: Fs>(fs: &F, path: &Path, data: &[u8]) {
    let mut f = fs
        .open(path, &OpenOptions::create_truncate())
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data).await.expect("write");
    f.sync_all().await.expect("sync");
}

async fn write_read_back<F: Fs>(fs: &F, dir: &Path) {
    let p = dir.join("f");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_file(fs, &p, &data).await;
    assert_eq!(
        fs.read(&p).await.expect("read"),
        data,
        "write_read_back: content"
    );

    // Positional reads and overwrites in the middle.
    let mut f = fs
        .open(&p, &OpenOptions::read_write())
        .await
        .expect("open rw");
    f.seek(10).await.expect("seek");
    f.write_all(b"HELLO").await.expect("overwrite");
    f.seek(8).await.expect("seek");
    let mut buf = [0u8; 9];
    let mut got = 0;
    while got < buf.len() {
        let n = f.read(&mut buf[got..]).await.expect("read");
        assert!(n > 0, "write_read_back: early end of file");
        got += n;
    }
    assert_eq!(&buf[2..7], b"HELLO", "write_read_back: overwrite");
    assert_eq!(buf[0], data[8]);
    let all = fs.read(&p).await.expect("read");
    assert_eq!(
        all.len(),
        data.len(),
        "write_read_back: overwrite keeps length"
    );
}

async fn rename_over_existing<F: Fs>(fs: &F, dir: &Path) {
    let a = dir.join("a");
    let b = dir.join("b");
    write_file(fs, &a, b"new").await;
    write_file(fs, &b, b"old content").await;
    fs.rename(&a, &b).await.expect("rename over existing");
    assert_eq!(
        fs.read(&b).await.expect("read b"),
        b"new",
        "rename: target replaced"
    );
    let e = fs.read(&a).await.expect_err("source gone");
    assert_eq!(e.kind(), ErrorKind::NotFound, "rename: source removed");
    // Renaming a missing name fails.
    let e = fs.rename(&a, &b).await.expect_err("rename missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // An open handle follows the file, not the name.
    let mut h = fs.open(&b, &OpenOptions::read_write()).await.expect("open");
    let c = dir.join("c");
    fs.rename(&b, &c).await.expect("rename while open");
    h.seek(3).await.expect("seek");
    h.write_all(b"er").await.expect("write via handle");
    assert_eq!(fs.read(&c).await.expect("read c"), b"newer");
}

async fn link<F: Fs>(fs: &F, dir: &Path) {
    let a = dir.join("a");
    let b = dir.join("b");
    write_file(fs, &a, b"linked").await;
    fs.link(&a, &b).await.expect("link");
    assert_eq!(fs.read(&b).await.expect("read b"), b"linked");
    assert_eq!(fs.metadata(&a).await.expect("meta").nlink, 2, "link: nlink");
    // Both names share one file: a write through one is seen through the other.
    let mut f = fs.open(&a, &OpenOptions::read_write()).await.expect("open");
    f.write_all(b"LINKED").await.expect("write");
    assert_eq!(
        fs.read(&b).await.expect("read b"),
        b"LINKED",
        "link: shared data"
    );
    fs.remove_file(&a).await.expect("unlink a");
    assert_eq!(
        fs.read(&b).await.expect("read b"),
        b"LINKED",
        "link: survives unlink"
    );
    assert_eq!(fs.metadata(&b).await.expect("meta").nlink, 1);
    // Linking onto an existing name fails.
    write_file(fs, &a, b"x").await;
    let e = fs.link(&a, &b).await.expect_err("link onto existing");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
}

async fn create_new_on_existing<F: Fs>(fs: &F, dir: &Path) {
    let p = dir.join("x");
    let mut f = fs
        .open(&p, &OpenOptions::create_new())
        .await
        .expect("create_new");
    f.write_all(b"first").await.expect("write");
    let e = fs
        .open(&p, &OpenOptions::create_new())
        .await
        .err()
        .expect("create_new must fail on an existing name");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        fs.read(&p).await.expect("read"),
        b"first",
        "create_new: untouched"
    );
    // Opening a missing file without create fails.
    let e = fs
        .open(&dir.join("missing"), &OpenOptions::read())
        .await
        .err()
        .expect("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

async fn read_dir_listing<F: Fs>(fs: &F, dir: &Path) {
    assert!(
        fs.read_dir(dir).await.expect("read_dir").is_empty(),
        "new dir is empty"
    );
    for n in ["b", "a", "c"] {
        write_file(fs, &dir.join(n), n.as_bytes()).await;
    }
    fs.create_dir(&dir.join("sub"), 0o700).await.expect("mkdir");
    let mut entries = fs.read_dir(dir).await.expect("read_dir");
    entries.sort();
    let names: Vec<(&str, FileKind)> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("a", FileKind::File),
            ("b", FileKind::File),
            ("c", FileKind::File),
            ("sub", FileKind::Dir)
        ]
    );
    fs.remove_file(&dir.join("b")).await.expect("unlink");
    let mut left: Vec<String> = fs
        .read_dir(dir)
        .await
        .expect("read_dir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    left.sort();
    assert_eq!(left, vec!["a", "c", "sub"]);
    let e = fs
        .read_dir(&dir.join("nope"))
        .await
        .expect_err("missing dir");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

async fn metadata<F: Fs>(fs: &F, dir: &Path) {
    let p = dir.join("m");
    write_file(fs, &p, &[1u8; 1234]).await;
    let m = fs.metadata(&p).await.expect("metadata");
    assert!(m.is_file() && !m.is_dir());
    assert_eq!(m.len, 1234);
    assert!(m.mtime > std::time::UNIX_EPOCH, "mtime is set");
    fs.set_permissions(&p, 0o600).await.expect("chmod");
    assert_eq!(
        fs.metadata(&p).await.expect("metadata").mode & 0o7777,
        0o600
    );
    let d = fs.metadata(dir).await.expect("dir metadata");
    assert!(d.is_dir());
    let f = fs.open(&p, &OpenOptions::read()).await.expect("open");
    assert_eq!(f.metadata().await.expect("fstat").len, 1234);
    let e = fs.metadata(&dir.join("none")).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

async fn append_and_truncate<F: Fs>(fs: &F, dir: &Path) {
    let p = dir.join("log");
    for part in [&b"one\n"[..], b"two\n", b"three\n"] {
        let mut f = fs
            .open(&p, &OpenOptions::append())
            .await
            .expect("open append");
        f.write_all(part).await.expect("append");
        f.sync_data().await.expect("sync_data");
    }
    assert_eq!(fs.read(&p).await.expect("read"), b"one\ntwo\nthree\n");
    let mut f = fs.open(&p, &OpenOptions::read_write()).await.expect("open");
    f.set_len(4).await.expect("truncate");
    assert_eq!(
        fs.read(&p).await.expect("read"),
        b"one\n",
        "truncate shortens"
    );
    f.set_len(6).await.expect("extend");
    assert_eq!(
        fs.read(&p).await.expect("read"),
        b"one\n\0\0",
        "extend fills zeros"
    );
    // An append handle writes at the end even after a seek.
    let mut a = fs
        .open(&p, &OpenOptions::append())
        .await
        .expect("open append");
    a.seek(0).await.expect("seek");
    a.write_all(b"!").await.expect("append");
    assert_eq!(fs.read(&p).await.expect("read"), b"one\n\0\0!");
    // create_truncate empties an existing file.
    let _t = fs
        .open(&p, &OpenOptions::create_truncate())
        .await
        .expect("truncate open");
    assert_eq!(fs.read(&p).await.expect("read"), b"");
}

async fn remove_and_not_found<F: Fs>(fs: &F, dir: &Path) {
    let p = dir.join("r");
    write_file(fs, &p, b"bye").await;
    assert!(fs.exists(&p).await);
    fs.remove_file(&p).await.expect("remove");
    assert!(!fs.exists(&p).await);
    let e = fs.remove_file(&p).await.expect_err("remove twice");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(fs.read_if_exists(&p).await.expect("read_if_exists"), None);
}

async fn directories<F: Fs>(fs: &F, dir: &Path) {
    let d = dir.join("d");
    fs.create_dir(&d, 0o755).await.expect("mkdir");
    let e = fs.create_dir(&d, 0o755).await.expect_err("mkdir twice");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let e = fs
        .create_dir(&dir.join("x/y"), 0o755)
        .await
        .expect_err("mkdir without parent");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    fs.create_dir_all(&dir.join("x/y/z"), 0o755)
        .await
        .expect("mkdir -p");
    assert!(
        fs.metadata(&dir.join("x/y/z"))
            .await
            .expect("meta")
            .is_dir()
    );
    write_file(fs, &d.join("f"), b"1").await;
    fs.sync_dir(&d).await.expect("sync_dir");
    assert!(
        fs.remove_dir(&d).await.is_err(),
        "rmdir of a non-empty directory fails"
    );
    fs.remove_file(&d.join("f")).await.expect("unlink");
    fs.remove_dir(&d).await.expect("rmdir");
    assert!(!fs.exists(&d).await);
    // A file path used as a directory fails.
    write_file(fs, &dir.join("file"), b"").await;
    assert!(
        fs.open(&dir.join("file/x"), &OpenOptions::create_new())
            .await
            .is_err()
    );
}

async fn lock<F: Fs>(fs: &F, dir: &Path) {
    let p = dir.join("mbox");
    write_file(fs, &p, b"x").await;
    let mut a = fs.open(&p, &OpenOptions::append()).await.expect("open a");
    let mut b = fs.open(&p, &OpenOptions::append()).await.expect("open b");
    assert!(a.try_lock().await.expect("lock a"), "a free file locks");
    assert!(
        a.try_lock().await.expect("relock a"),
        "the holder may lock again"
    );
    assert!(
        !b.try_lock().await.expect("lock b"),
        "a second handle must not get a held lock"
    );
    drop(a);
    assert!(
        b.try_lock().await.expect("lock b again"),
        "closing the holder releases the lock"
    );
}
