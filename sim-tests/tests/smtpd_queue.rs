//! The SMTP driver over the simulated queue: `250` only after the commit, and
//! a queue failure is a `451` that leaves nothing half-stored.

use std::path::Path;
use std::time::Duration;

use qmail_core::env::{Fs, Identity};
use qmail_core::queue::Queue;
use qmail_core::smtp::SmtpConfig;
use qmail_core::smtpd::serve_connection;
use qmail_io_sim::{FsFaults, SimEnv, SimFs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn session(queue: &Queue<SimEnv>, input: &str) -> String {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut config = SmtpConfig::new("sim.test");
    config.remote.ip = "10.0.0.1".into();
    config.remote.local = "sim.test".into();
    let q = queue.clone();
    let task = tokio::spawn(async move {
        serve_connection(&q, None, server, config, Duration::from_secs(60)).await
    });
    client.write_all(input.as_bytes()).await.unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    task.await.unwrap().unwrap();
    out
}

const MAIL: &str = "HELO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@sim.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";

async fn files(fs: &SimFs) -> usize {
    fs.read_dir(Path::new("/q/tmp")).await.unwrap().len()
        + fs.read_dir(Path::new("/q/todo")).await.unwrap().len()
}

#[test]
fn ok_after_commit_and_451_on_queue_failure() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let fs = SimFs::new(5);
        let env = SimEnv::new(fs.clone(), 5, Identity { pid: 4242, uid: 7, gid: 7, hostname: "sim".into() });
        let queue = Queue::new(env, "/q");
        queue.create().await.unwrap();

        let out = session(&queue, MAIL).await;
        assert!(out.contains("\r\n250 ok 1795564800 qp 4242\r\n221 sim.test\r\n"), "{out}");
        let ids = queue.list_todo().await.unwrap();
        assert_eq!(ids.len(), 1);
        let stored = String::from_utf8(queue.read_message(ids[0]).await.unwrap()).unwrap();
        assert_eq!(
            stored,
            "Received: (qmail 4242 invoked from network); 25 Nov 2026 00:00:00 -0000\n\
             Received: from unknown (HELO c.example) (10.0.0.1)\n  by sim.test with SMTP; 25 Nov 2026 00:00:00 -0000\n\
             Subject: x\n\nbody\n"
        );

        // The sync at the commit fails: 451, and nothing of the message stays.
        fs.fail_next_syncs(1);
        let out = session(&queue, MAIL).await;
        assert!(out.contains("\r\n451 qq write error or disk full (#4.3.0)\r\n221 sim.test\r\n"), "{out}");
        assert_eq!(files(&fs).await, 1, "only the first message");

        // The disk fills up mid-DATA: 451 at the final dot, nothing stays.
        fs.set_faults(FsFaults { capacity: Some(fs.used_bytes() + 50), ..Default::default() });
        let out = session(&queue, MAIL).await;
        assert!(out.contains("\r\n451 qq write error or disk full (#4.3.0)\r\n"), "{out}");
        assert_eq!(files(&fs).await, 1, "only the first message");
    });
}

/// Sends `chunks` one every `gap` of simulated time to a session whose
/// reads, lines and DATA are each limited to 60 s; returns what the server
/// said and how long the session lasted.
async fn paced(queue: &Queue<SimEnv>, chunks: &[&str], gap: Duration) -> (String, Duration) {
    use qmail_core::smtpd::Timeouts;
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (mut rx, mut tx) = tokio::io::split(client);
    let config = SmtpConfig::new("sim.test");
    let q = queue.clone();
    let limit = Duration::from_secs(60);
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(async move {
        let t = Timeouts {
            read: limit,
            line: limit,
            data: limit,
        };
        serve_connection(&q, None, server, config, t).await.unwrap();
        start.elapsed()
    });
    let reader = tokio::spawn(async move {
        let mut out = String::new();
        rx.read_to_string(&mut out).await.unwrap();
        out
    });
    for c in chunks {
        if task.is_finished() || tx.write_all(c.as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    drop(tx);
    let took = task.await.unwrap();
    (reader.await.unwrap(), took)
}

#[test]
fn whole_lines_and_data_have_a_deadline_but_a_steady_client_does_not() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let fs = SimFs::new(6);
        let env = SimEnv::new(
            fs.clone(),
            6,
            Identity {
                pid: 4242,
                uid: 7,
                gid: 7,
                hostname: "sim".into(),
            },
        );
        let queue = Queue::new(env, "/q");
        queue.create().await.unwrap();
        let gap = Duration::from_secs(25);

        // Every read ends inside a line, but each line is done in 25 s:
        // ten minutes of steady pipelining are served.
        let mut steady = vec!["HELO c\r\nNO"];
        steady.extend(std::iter::repeat_n("OP\r\nNO", 24));
        steady.push("OP\r\nQUIT\r\n");
        let (out, took) = paced(&queue, &steady, gap).await;
        assert_eq!(out.matches("250 ok\r\n").count(), 25, "{out}");
        assert!(out.ends_with("221 sim.test\r\n"), "{out}");
        assert!(took > Duration::from_secs(600), "{took:?}");

        // One byte every 25 s: each read is in time, the line is not.
        let (out, took) = paced(&queue, &["N", "O", "O", "P", "\r", "\n"], gap).await;
        assert_eq!(out, "220 sim.test ESMTP\r\n451 timeout (#4.4.2)\r\n");
        assert_eq!(took, Duration::from_secs(60));

        // The same for a DATA that trickles in.
        let trickle = [
            "HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@sim.test>\r\nDATA\r\n",
            "S",
            "u",
            "b",
            "j",
            "e",
        ];
        let (out, took) = paced(&queue, &trickle, gap).await;
        assert!(
            out.ends_with("354 go ahead\r\n451 timeout (#4.4.2)\r\n"),
            "{out}"
        );
        assert_eq!(took, Duration::from_secs(60));
        assert_eq!(files(&fs).await, 0, "nothing of the message stays");
    });
}
