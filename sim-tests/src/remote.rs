//! The remote side of the simulated internet: scripted SMTP servers, each
//! its own host, that the MTA's real remote channel (routing, DNS through
//! the simulated DNS server, the SMTP client) reaches over the simulated
//! network. A server records a message in the [`Ledger`] at the moment it
//! answers `250` after the final dot: outside every crashing host, that is
//! "a remote MTA accepted it" (DESIGN section 1, case 2).
//!
//! Behaviours: accept; defer every recipient (`451` at RCPT) until a moment;
//! refuse every recipient (`550` at RCPT). An accepting server can be flaky
//! during the fault phase: it drops the connection mid-DATA (nothing
//! recorded), or records the message and drops before its `250` (the
//! client's "Possible duplicate!").

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

use crate::ledger::{Handed, Ledger};
use qmail_io_sim::Trace;

/// What a remote server does with recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Accept,
    /// `451` to every RCPT until this many seconds into the run.
    DeferUntil(u64),
    /// `550` to every RCPT.
    Reject,
}

/// One scripted remote server.
#[derive(Debug, Clone)]
pub struct RemoteServer {
    pub name: String,
    pub behaviour: Behaviour,
    /// Chance that a message is dropped mid-DATA (or, a tenth as often,
    /// recorded and then dropped before the `250`) until `flaky_until`.
    pub flaky: f64,
    pub flaky_until: u64,
    pub seed: u64,
}

fn run_secs() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_secs()
}

/// Adds the server as host `server.name`, listening on port 25.
pub fn add_host(
    sim: &mut turmoil::Sim<'static>,
    server: RemoteServer,
    ledger: &Ledger,
    trace: &Trace,
) {
    let (ledger, trace) = (ledger.clone(), trace.clone());
    let name = server.name.clone();
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(server.seed)));
    sim.host(name, move || {
        let (server, ledger, trace, rng) =
            (server.clone(), ledger.clone(), trace.clone(), rng.clone());
        async move {
            let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 25))).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let (server, ledger, trace, rng) =
                    (server.clone(), ledger.clone(), trace.clone(), rng.clone());
                tokio::spawn(async move {
                    let _ = session(stream, &server, &ledger, &trace, &rng).await;
                });
            }
        }
    });
}

/// What the server decided for the message being received.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    DropMidData,
    RecordThenDrop,
}

async fn session(
    mut s: TcpStream,
    server: &RemoteServer,
    ledger: &Ledger,
    trace: &Trace,
    rng: &Mutex<StdRng>,
) -> std::io::Result<()> {
    let name = &server.name;
    s.write_all(format!("220 {name} ESMTP\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut sender: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut data: Option<(Vec<u8>, Fate)> = None;
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        while let Some(nl) = buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = line
                .strip_suffix(b"\r\n")
                .unwrap_or(&line[..line.len() - 1]);
            if let Some((body, fate)) = &mut data {
                if line != b"." {
                    let l = line.strip_prefix(b".").unwrap_or(line);
                    body.extend_from_slice(l);
                    body.push(b'\n');
                    if *fate == Fate::DropMidData {
                        trace.record(name, format_args!("drops the connection mid-DATA"));
                        return Ok(());
                    }
                    continue;
                }
                let (body, fate) = data.take().expect("in data");
                let from = sender.take().unwrap_or_default();
                {
                    let mut l = ledger.lock();
                    for r in &rcpts {
                        l.remote.push(Handed {
                            recipient: r.clone(),
                            sender: from.clone(),
                            data: body.clone(),
                        });
                    }
                }
                trace.record(
                    name,
                    format_args!(
                        "accepted {} bytes from <{from}> for {}",
                        body.len(),
                        rcpts.join(",")
                    ),
                );
                rcpts.clear();
                if fate == Fate::RecordThenDrop {
                    trace.record(name, format_args!("drops the connection before its 250"));
                    return Ok(());
                }
                out.extend_from_slice(b"250 ok queued\r\n");
                continue;
            }
            let text = String::from_utf8_lossy(line).into_owned();
            let upper = text.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                format!("250-{name}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000")
            } else if upper.starts_with("HELO") {
                format!("250 {name}")
            } else if upper.starts_with("MAIL FROM:") {
                let addr = text[10..]
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('<');
                sender = Some(addr.to_string());
                rcpts.clear();
                "250 ok".into()
            } else if upper.starts_with("RCPT TO:") {
                let addr = text[8..]
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('<');
                match server.behaviour {
                    _ if sender.is_none() => "503 MAIL first".into(),
                    Behaviour::Reject => "550 5.1.1 no such user here".into(),
                    Behaviour::DeferUntil(t) if run_secs() < t => "451 4.2.0 try later".into(),
                    _ => {
                        rcpts.push(addr.to_string());
                        "250 ok".into()
                    }
                }
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    "554 no valid recipients".into()
                } else {
                    let fate = if run_secs() < server.flaky_until && server.flaky > 0.0 {
                        let mut r = rng.lock().unwrap_or_else(|p| p.into_inner());
                        if r.random_bool(server.flaky) {
                            if r.random_bool(0.1) {
                                Fate::RecordThenDrop
                            } else {
                                Fate::DropMidData
                            }
                        } else {
                            Fate::Keep
                        }
                    } else {
                        Fate::Keep
                    };
                    data = Some((Vec::new(), fate));
                    "354 go ahead".into()
                }
            } else if upper == "RSET" {
                sender = None;
                rcpts.clear();
                "250 flushed".into()
            } else if upper == "QUIT" {
                out.extend_from_slice(format!("221 {name}\r\n").as_bytes());
                s.write_all(&out).await?;
                return Ok(());
            } else {
                "502 unimplemented".into()
            };
            out.extend_from_slice(reply.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
        }
    }
}
