//! The shared filesystem behaviour suite, on the simulated filesystem.

use qmail_core::env::Fs;
use qmail_io_sim::SimFs;
use std::path::Path;

#[tokio::test]
async fn fs_behaviour_on_simulated_filesystem() {
    let fs = SimFs::new(1);
    fs.create_dir(Path::new("/t"), 0o755).await.unwrap();
    qmail_core::testkit::fs_behaviour(&fs, Path::new("/t")).await;
}
