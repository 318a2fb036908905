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

/// What `command` says when run on the byte range `offset..offset + len`
/// of a file holding `content`, and the run's result.
async fn run_on_range(
    command: &str,
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
                prefix: Vec::new(),
                file: Some(FileRange::new(file, offset, len)),
            },
            1 << 16,
        )
        .await;
    (dir, out)
}

#[tokio::test]
async fn a_message_running_to_its_files_end_is_handed_over_as_the_file() {
    // As qmail-local does: the program's input is the file itself, so its
    // end is the message's end whatever becomes of the feeder.
    let (_dir, out) = run_on_range(
        "if [ -f /dev/stdin ]; then echo file; fi; cat",
        b"HEADERthe message\n",
        6,
        12,
    )
    .await;
    let out = out.unwrap();
    assert_eq!(out.status, ExitCode::Exited(0));
    assert_eq!(
        String::from_utf8(out.output).unwrap(),
        "file\nthe message\n"
    );
}

#[tokio::test]
async fn a_range_short_of_its_files_end_goes_through_a_pipe() {
    let (_dir, out) = run_on_range(
        "if [ -f /dev/stdin ]; then echo file; fi; cat",
        b"HEADERthe message\nTRAILER",
        6,
        12,
    )
    .await;
    assert_eq!(
        String::from_utf8(out.unwrap().output).unwrap(),
        "the message\n"
    );
}

#[tokio::test]
async fn a_program_fed_short_dies_before_its_input_ends() {
    // The file holds less than its range: the feed fails midway. The
    // program must never see an end of input it would take for the
    // message's end (a forward would queue the truncated message).
    let (dir, out) = run_on_range("cat >got; touch saw-the-end", b"the first half\n", 0, 100).await;
    let err = out.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(
        !dir.path().join("saw-the-end").exists(),
        "the program went on past the early end"
    );
}
