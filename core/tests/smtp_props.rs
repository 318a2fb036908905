//! Properties of the SMTP server session under any input: no panic, only
//! well-formed replies, a coherent action sequence, bounded memory, and the
//! same behaviour whatever the chunking of the input.

use proptest::prelude::*;
use qmail_core::smtp::{Action, CommitOutcome, MAX_ADDRESS_LEN, SmtpConfig, SmtpSession};

/// Pieces a client session is made of, good and bad, so that random inputs
/// reach every state (pure random bytes rarely get past the first command).
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let fixed = |s: &'static str| Just(s.as_bytes().to_vec());
    prop_oneof![
        4 => fixed("EHLO client.example\r\n"),
        2 => fixed("HELO unknown\r\n"),
        6 => fixed("MAIL FROM:<a@b.example>\r\n"),
        2 => fixed("MAIL FROM:<a@b.example> SIZE=150\r\n"),
        1 => fixed("MAIL FROM:<\"q u\"@b> BODY=8BITMIME\r\n"),
        8 => fixed("RCPT TO:<u1@bench.test>\r\n"),
        2 => fixed("RCPT TO:<x@remote.test>\r\n"),
        1 => fixed("RCPT u1\r\n"),
        8 => fixed("DATA\r\n"),
        2 => fixed("RSET\r\n"),
        2 => fixed("NOOP\r\n"),
        1 => fixed("VRFY x\r\nHELP\r\nAUTH PLAIN\r\n"),
        1 => fixed("QUIT\r\n"),
        8 => fixed(".\r\n"),
        6 => fixed("\r\n"),
        6 => fixed("Subject: s\r\n"),
        4 => fixed("Received: x\r\n"),
        1 => Just(b"Received: x\r\n".repeat(100)),
        1 => Just(b"delivered-to: y\r\n".repeat(60)),
        3 => fixed("..dotted\r\n"),
        2 => fixed("\n"),
        2 => fixed("\r"),
        1 => fixed("\x00"),
        6 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => (0usize..1200).prop_map(|n| vec![b'x'; n]),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(fragment(), 0..40).prop_map(|parts| parts.concat())
}

fn config() -> impl Strategy<Value = SmtpConfig> {
    (
        prop_oneof![Just(0u64), Just(100), Just(1000)],
        prop_oneof![Just(64usize), Just(1000)],
        proptest::option::of(prop_oneof![Just(String::new()), Just("-r".to_string())]),
        1usize..4,
    )
        .prop_map(
            |(databytes, max_line_length, relay_client, max_recipients)| SmtpConfig {
                databytes,
                max_line_length,
                relay_client,
                max_recipients,
                ..SmtpConfig::new("bench.test")
            },
        )
}

/// A reply is one or more lines `DDD-text` CR LF, the last `DDD text` CR LF
/// (or just `DDD` CR LF), all with the same code, and no CR or LF inside.
fn check_reply(reply: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        reply.ends_with(b"\r\n"),
        "reply not CR LF terminated: {reply:?}"
    );
    let body = &reply[..reply.len() - 2];
    let lines: Vec<&[u8]> = body.split(|&c| c == b'\n').collect();
    let code = &lines[0][..3.min(lines[0].len())];
    for (i, line) in lines.iter().enumerate() {
        let line = if i + 1 < lines.len() {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        prop_assert!(line.len() >= 3, "short reply line {line:?}");
        prop_assert!(line[..3].iter().all(u8::is_ascii_digit));
        prop_assert!((b'2'..=b'5').contains(&line[0]));
        prop_assert_eq!(&line[..3], code, "codes differ in one reply");
        let last = i + 1 == lines.len();
        match line.get(3) {
            None => prop_assert!(last),
            Some(b'-') => prop_assert!(!last, "last line with '-'"),
            Some(b' ') => prop_assert!(last, "inner line with ' '"),
            Some(c) => prop_assert!(false, "bad separator {c}"),
        }
        prop_assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
    }
    Ok(())
}

/// Plays a queue and a client over `input` cut into `chunks` (cycled), and
/// returns every action, consecutive message data merged.
fn run(config: &SmtpConfig, input: &[u8], chunks: &[usize]) -> Result<Vec<Action>, TestCaseError> {
    let bound = 2 * config.max_line_length
        + (1 + config.max_recipients)
            * (MAX_ADDRESS_LEN + config.relay_client.as_ref().map_or(0, String::len));
    let mut session = SmtpSession::new(config.clone());
    let mut all = vec![session.greeting()];
    let mut messages = 0u64;
    let mut rest = input;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&usize::MAX)).clamp(1, rest.len());
        let mut chunk = &rest[..size];
        rest = &rest[size..];
        while !chunk.is_empty() {
            let feed = session.feed(chunk, 1);
            prop_assert!(feed.consumed <= chunk.len());
            prop_assert!(
                session.buffered_len() <= bound,
                "buffered {}",
                session.buffered_len()
            );
            chunk = &chunk[feed.consumed..];
            let mut actions = feed.actions;
            if actions.last() == Some(&Action::EndMessage) {
                messages += 1;
                let outcome = if messages % 2 == 1 {
                    CommitOutcome::Accepted {
                        time: 1,
                        qp: messages,
                    }
                } else {
                    CommitOutcome::Failed {
                        permanent: false,
                        text: "qq x (#4.3.0)".into(),
                    }
                };
                actions.extend(session.message_committed(outcome));
            } else {
                prop_assert!(
                    chunk.is_empty() || session.is_closed(),
                    "input left without a commit pending"
                );
            }
            all.extend(actions);
            if session.is_closed() {
                chunk = &[];
                rest = &[];
            }
        }
    }
    all.extend(session.end_of_input());
    Ok(merge_data(all))
}

fn merge_data(actions: Vec<Action>) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    for action in actions {
        match (out.last_mut(), action) {
            (Some(Action::MessageData(prev)), Action::MessageData(more)) => prev.extend(more),
            (_, action) => out.push(action),
        }
    }
    out
}

/// The actions make sense together: messages are bracketed, data only inside
/// one, a 354 right before each begin, nothing after Close.
fn check_sequence(actions: &[Action]) -> Result<(), TestCaseError> {
    let mut in_message = false;
    let mut closed = false;
    let mut previous: Option<&Action> = None;
    for action in actions {
        prop_assert!(!closed, "action after Close: {action:?}");
        match action {
            Action::Reply(r) => check_reply(r)?,
            Action::BeginMessage { recipients, .. } => {
                prop_assert!(!in_message);
                prop_assert!(!recipients.is_empty());
                prop_assert_eq!(previous, Some(&Action::Reply(b"354 go ahead\r\n".to_vec())));
                in_message = true;
            }
            Action::MessageData(data) => {
                prop_assert!(in_message);
                prop_assert!(!data.is_empty());
            }
            Action::EndMessage | Action::AbortMessage => {
                prop_assert!(in_message);
                in_message = false;
            }
            Action::Close => closed = true,
        }
        previous = Some(action);
    }
    prop_assert!(!in_message, "message neither ended nor aborted");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunking_does_not_matter(
        config in config(),
        input in input(),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let whole = run(&config, &input, &[usize::MAX])?;
        check_sequence(&whole)?;
        let bytewise = run(&config, &input, &[1])?;
        prop_assert_eq!(&whole, &bytewise);
        let random = run(&config, &input, &chunks)?;
        prop_assert_eq!(&whole, &random);
    }

    #[test]
    fn arbitrary_bytes(
        config in config(),
        input in proptest::collection::vec(any::<u8>(), 0..3000),
        chunks in proptest::collection::vec(1usize..512, 1..8),
    ) {
        let whole = run(&config, &input, &[usize::MAX])?;
        check_sequence(&whole)?;
        prop_assert_eq!(whole, run(&config, &input, &chunks)?);
    }

    #[test]
    fn arbitrary_bytes_inside_data(
        config in config(),
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        chunks in proptest::collection::vec(1usize..512, 1..8),
    ) {
        let mut input = b"MAIL FROM:<a@b>\r\nRCPT TO:<u1@bench.test>\r\nDATA\r\n".to_vec();
        input.extend(body);
        let whole = run(&config, &input, &[usize::MAX])?;
        check_sequence(&whole)?;
        prop_assert_eq!(whole, run(&config, &input, &chunks)?);
    }
}

/// A big message in one read comes out in bounded chunks, byte for byte.
#[test]
fn big_message_in_bounded_chunks() {
    let mut session = SmtpSession::new(SmtpConfig::new("bench.test"));
    let line = [b'z'; 998];
    let mut input = b"MAIL FROM:<a@b>\r\nRCPT TO:<u1@bench.test>\r\nDATA\r\n".to_vec();
    for _ in 0..2000 {
        input.extend_from_slice(&line);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b".\r\n");
    let feed = session.feed(&input, 1);
    assert_eq!(feed.consumed, input.len());
    let mut body = Vec::new();
    for action in &feed.actions[5..] {
        if let Action::MessageData(data) = action {
            assert!(data.len() <= 64 * 1024 + 3, "chunk of {}", data.len());
            body.extend_from_slice(data);
        }
    }
    let received_len = match &feed.actions[4] {
        Action::MessageData(d) => d.len(),
        other => panic!("expected the Received line, got {other:?}"),
    };
    assert!(received_len > 0);
    assert_eq!(body.len(), 2000 * 999);
    assert_eq!(feed.actions.last(), Some(&Action::EndMessage));
}
