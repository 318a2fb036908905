//! Injection throughput on the real filesystem.
//!
//! Injects N messages of 4 KB through the queue API at concurrency 1 and 20
//! and prints messages per second and syncs per message, beside the raw rate
//! of "create, write 4 KB, fsync, rename, fsync directory" measured by the
//! same run on the same disk. Run with `cargo bench -p qmail-bins --bench
//! queue_inject`; `BENCH_N` sets N (default 2000), `BENCH_DIR` the directory
//! its temporary directory is made in (default: the system's; it must be on
//! a disk, not a tmpfs, for fsync to cost what it costs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use qmail_core::env::{DirEntry, Env, Fs, FsFile, Identity, Metadata, OpenOptions};
use qmail_core::queue::{Envelope, Queue};
use qmail_io_real::{RealClock, RealEnv, RealExec, RealFile, RealFs, RealNet, RealRng, RealUsers};

/// RealFs, counting file and directory syncs.
#[derive(Clone, Default)]
struct CountingFs {
    syncs: Arc<AtomicU64>,
}

struct CountingFile {
    inner: RealFile,
    syncs: Arc<AtomicU64>,
}

impl FsFile for CountingFile {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).await
    }
    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf).await
    }
    async fn seek(&mut self, pos: u64) -> std::io::Result<()> {
        self.inner.seek(pos).await
    }
    async fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len).await
    }
    async fn sync_all(&mut self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_all().await
    }
    async fn sync_data(&mut self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data().await
    }
    async fn metadata(&self) -> std::io::Result<Metadata> {
        self.inner.metadata().await
    }
    async fn try_lock(&mut self) -> std::io::Result<bool> {
        self.inner.try_lock().await
    }
    async fn try_lock_mailbox(&mut self) -> std::io::Result<bool> {
        self.inner.try_lock_mailbox().await
    }
}

impl Fs for CountingFs {
    type File = CountingFile;
    async fn open(&self, path: &Path, opts: &OpenOptions) -> std::io::Result<CountingFile> {
        Ok(CountingFile {
            inner: RealFs.open(path, opts).await?,
            syncs: self.syncs.clone(),
        })
    }
    async fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        RealFs.sync_dir(path).await
    }
    async fn link(&self, src: &Path, dst: &Path) -> std::io::Result<()> {
        RealFs.link(src, dst).await
    }
    async fn rename(&self, src: &Path, dst: &Path) -> std::io::Result<()> {
        RealFs.rename(src, dst).await
    }
    async fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path).await
    }
    async fn create_dir(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        RealFs.create_dir(path, mode).await
    }
    async fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_dir(path).await
    }
    async fn read_dir(&self, path: &Path) -> std::io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path).await
    }
    async fn metadata(&self, path: &Path) -> std::io::Result<Metadata> {
        RealFs.metadata(path).await
    }
    async fn set_permissions(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        RealFs.set_permissions(path, mode).await
    }
    async fn pull_trigger(&self, path: &Path) {
        RealFs.pull_trigger(path).await
    }
}

#[derive(Clone)]
struct BenchEnv {
    fs: CountingFs,
    real: RealEnv,
}

impl Env for BenchEnv {
    type Fs = CountingFs;
    type Clock = RealClock;
    type Net = RealNet;
    type Exec = RealExec;
    type Users = RealUsers;
    type Rng = RealRng;
    fn fs(&self) -> &CountingFs {
        &self.fs
    }
    fn clock(&self) -> &RealClock {
        self.real.clock()
    }
    fn net(&self) -> &RealNet {
        self.real.net()
    }
    fn exec(&self) -> &RealExec {
        self.real.exec()
    }
    fn users(&self) -> &RealUsers {
        self.real.users()
    }
    fn rng(&self) -> &RealRng {
        self.real.rng()
    }
    fn identity(&self) -> &Identity {
        self.real.identity()
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The raw rate: create, write 4 KB, fsync, rename, fsync directory.
fn raw(dir: &Path, n: usize, body: &[u8]) -> Duration {
    let tmp = dir.join("raw-tmp");
    let new = dir.join("raw-new");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let p = tmp.join(i.to_string());
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(body).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&p, new.join(i.to_string())).unwrap();
        std::fs::File::open(&new).unwrap().sync_all().unwrap();
    }
    start.elapsed()
}

async fn inject_all(
    queue: &Queue<BenchEnv>,
    n: usize,
    concurrency: usize,
    body: Arc<Vec<u8>>,
) -> Duration {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, next, body) = (queue.clone(), next.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let envelope = Envelope {
                sender: "bench@example.org".into(),
                recipients: vec!["user@localhost".into()],
            };
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < n {
                let mut inj = queue.begin().await.expect("begin");
                inj.write(&body).await.expect("write");
                inj.commit(&envelope, 0, 0).await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let base: PathBuf = support::bench_dir();
    let dir = tempfile::Builder::new()
        .prefix("qmail-bench-")
        .tempdir_in(&base)
        .expect("bench dir");
    let body: Vec<u8> = (0..4096u32)
        .map(|i| {
            if i % 64 == 63 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    println!(
        "queue injection benchmark: {n} messages of 4 KB in {}",
        dir.path().display()
    );

    let raw_time = raw(dir.path(), n, &body);
    let raw_rate = n as f64 / raw_time.as_secs_f64();
    println!(
        "raw create+write+fsync+rename+fsync(dir):  {raw_rate:>9.0} msg/s  ({:.2} s, 2.00 syncs/msg)",
        raw_time.as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for concurrency in [1usize, 20] {
        let fs = CountingFs::default();
        let env = BenchEnv {
            fs: fs.clone(),
            real: RealEnv::new(),
        };
        let queue = Queue::new(env, dir.path().join(format!("queue-c{concurrency}")));
        rt.block_on(queue.create()).unwrap();
        let syncs_before = fs.syncs.load(Ordering::Relaxed);
        let t = rt.block_on(inject_all(&queue, n, concurrency, Arc::new(body.clone())));
        let syncs = fs.syncs.load(Ordering::Relaxed) - syncs_before;
        let rate = n as f64 / t.as_secs_f64();
        println!(
            "queue API, concurrency {concurrency:>2}:                {rate:>9.0} msg/s  ({:.2} s, {:.2} syncs/msg, {:+.0}% vs raw)",
            t.as_secs_f64(),
            syncs as f64 / n as f64,
            (rate / raw_rate - 1.0) * 100.0
        );
    }
    println!("peak memory: {} KB", peak_rss_kb());
}
