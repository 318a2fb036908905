//! The shared filesystem behaviour suite, on the real filesystem.

use qmail_io_real::RealFs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_behaviour_on_real_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    qmail_core::testkit::fs_behaviour(&RealFs, dir.path()).await;
}
