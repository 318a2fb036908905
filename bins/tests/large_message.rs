//! A message of several megabytes through `qmail run`, SMTP in and maildir
//! out, byte for byte: the run-at-a-time DATA decoder, the larger reads
//! while DATA comes in full buffers (and the small buffer again for the
//! commands and the message after it), the block copies of delivery.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

mod support;

use support::{QmailRun, init_home};

/// A message as lines, and both its SMTP form (dot-stuffed, CR LF, final
/// dot) and the form the maildir must hold (LF).
fn message(subject: &str, size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = vec![
        format!("Subject: {subject}").into_bytes(),
        b"From: a@example.org".to_vec(),
        Vec::new(),
    ];
    let mut n = 0u32;
    let mut total = 0;
    while total < size {
        let line = match n % 7 {
            0 => format!("line {n}: plain text of a common length").into_bytes(),
            1 => b".a leading dot, stuffed on the wire".to_vec(),
            2 => b"..two dots".to_vec(),
            3 => b"a lone \r inside, and 8-bit: \xe9\xff\x00".to_vec(),
            // `.` CR: not the end, and the CR is not a line end.
            4 => b".\r".to_vec(),
            // A line far longer than any read.
            5 if n % 70 == 5 => vec![b'L'; 300 * 1024],
            _ => b"Received: in the body, not a hop".to_vec(),
        };
        total += line.len() + 2;
        lines.push(line);
        n += 1;
    }
    let (mut smtp, mut stored) = (Vec::new(), Vec::new());
    for line in &lines {
        if line.first() == Some(&b'.') {
            smtp.push(b'.');
        }
        smtp.extend_from_slice(line);
        smtp.extend_from_slice(b"\r\n");
        stored.extend_from_slice(line);
        stored.push(b'\n');
    }
    smtp.extend_from_slice(b".\r\n");
    (smtp, stored)
}

fn delivered(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if names.len() >= n {
            return names.iter().map(|p| std::fs::read(p).unwrap()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} delivered",
            names.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_message_of_megabytes_arrives_byte_for_byte_and_the_next_one_too() {
    let server = QmailRun::start(init_home(None, None));
    let (big_smtp, big_stored) = message("big", 3 << 20);
    let (small_smtp, small_stored) = message("small", 2000);
    let envelope = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n";
    let mut input = b"EHLO client.example\r\n".to_vec();
    input.extend_from_slice(envelope);
    input.extend_from_slice(&big_smtp);
    input.extend_from_slice(envelope);
    input.extend_from_slice(&small_smtp);
    input.extend_from_slice(b"QUIT\r\n");

    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // The replies are small and the server reads on while it writes them:
    // the whole input goes in one write, read in whatever pieces arrive.
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&input).unwrap());
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    sender.join().unwrap();
    let codes: Vec<&str> = replies
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        [
            "220", "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"
        ],
        "{replies}"
    );

    let maildir = server.home.path().join("mailboxes/user/Maildir/new");
    let files = delivered(&maildir, 2);
    for stored in [&big_stored, &small_stored] {
        assert_eq!(
            files.iter().filter(|f| f.ends_with(stored)).count(),
            1,
            "one delivered file ends with the {} byte message",
            stored.len()
        );
    }
    server.stop();
}
