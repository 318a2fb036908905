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

/// What `command` says when run on `prefix` and the byte range
/// `offset..offset + len` of a file holding `content`, and the run's result.
async fn run_on_range(
    command: &str,
    prefix: &[u8],
    content: &[u8],
    offset: u64,
    len: u64,
) -> (
    tempfile::TempDir,
    std::io::Result<qmail_core::env::ProgramOutput>,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queued");
    std::fs::write(&file, content).unwrap();
    let out = RealExec
        .run(
            &spec(command, dir.path()),
            ProgramInput {
                prefix: prefix.to_vec(),
                file: Some(FileRange::new(file, offset, len)),
            },
            1 << 16,
        )
        .await;
    (dir, out)
}

#[tokio::test]
async fn the_program_reads_a_private_copy_of_its_range_as_a_file() {
    // As with qmail-local, the program's input is a file, so its end is the
    // message's end whatever becomes of the deliverer; a copy, because the
    // queue file goes on past the message (the envelope).
    let (dir, out) = run_on_range(
        "if [ -f /dev/stdin ]; then echo file; fi; cat; ls -a",
        b"",
        b"HEADERthe message\nENVELOPE",
        6,
        12,
    )
    .await;
    let out = out.unwrap();
    assert_eq!(out.status, ExitCode::Exited(0));
    assert_eq!(
        String::from_utf8(out.output).unwrap(),
        "file\nthe message\n.\n..\nqueued\n",
        "the copy has no name"
    );
    drop(dir);
}

#[tokio::test]
async fn a_file_shorter_than_its_range_runs_no_program() {
    let (dir, out) = run_on_range("touch ran", b"", b"the first half\n", 0, 100).await;
    let err = out.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn a_program_fed_short_through_a_pipe_dies_before_its_input_ends() {
    // A prefix makes the input a pipe. The file holds less than its range:
    // the feed fails midway, and the program must never see an end of
    // input it would take for the message's end.
    let (dir, out) = run_on_range(
        "cat >got; touch saw-the-end",
        b"Prefix: x\n",
        b"the first half\n",
        0,
        100,
    )
    .await;
    let err = out.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(
        !dir.path().join("saw-the-end").exists(),
        "the program went on past the early end"
    );
}
