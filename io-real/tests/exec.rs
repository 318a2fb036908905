//! Program execution through /bin/sh with a controlled environment.

use qmail_core::env::{Exec, ExitCode, FileRange, ProgramInput, ProgramSpec};
use qmail_io_real::RealExec;

fn spec(command: &str, dir: &std::path::Path) -> ProgramSpec {
    ProgramSpec {
        command: command.to_string(),
        env: vec![
            ("LOCAL".into(), "alice".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ],
        cwd: dir.to_path_buf(),
        user: None,
    }
}

#[tokio::test]
async fn program_gets_stdin_env_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, b"skip\nline2\ntrailer").unwrap();
    let out = RealExec
        .run(
            &spec("cat; echo \"L=$LOCAL\"; pwd >&2; exit 99", dir.path()),
            ProgramInput {
                prefix: b"line1\n".to_vec(),
                file: Some(FileRange::new(body, 5, 6)),
            },
            1 << 16,
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitCode::Exited(99));
    let text = String::from_utf8(out.output).unwrap();
    assert!(text.starts_with("line1\nline2\nL=alice\n"), "{text:?}");
    assert!(text.contains(dir.path().file_name().unwrap().to_str().unwrap()));
}

#[tokio::test]
async fn output_is_bounded_and_early_close_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let out = RealExec
        .run(
            &spec(
                "head -c 1 >/dev/null; yes | head -c 100000; exit 100",
                dir.path(),
            ),
            ProgramInput {
                prefix: vec![b'x'; 1 << 20],
                file: None,
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitCode::Exited(100));
    assert_eq!(out.output.len(), 1000);
}

/// A range of several copy blocks arrives whole and in order; a file
/// shorter than its range is an error, not a short message.
#[tokio::test]
async fn a_large_range_arrives_whole_and_a_short_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&body, &data).unwrap();
    let range = |offset: u64, len: u64| ProgramInput {
        prefix: Vec::new(),
        file: Some(FileRange::new(&body, offset, len)),
    };
    let out = RealExec
        .run(&spec("cat", dir.path()), range(7, 299_000), 1 << 20)
        .await
        .unwrap();
    assert_eq!(out.status, ExitCode::Exited(0));
    assert!(out.output == data[7..299_007], "the copy differs");
    let short = RealExec
        .run(&spec("cat >/dev/null", dir.path()), range(1000, 299_001), 0)
        .await;
    assert_eq!(short.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
}
