//! qmail-inject: reads a message on standard input, completes its header
//! (Date, Message-ID, From, host and domain completion; Bcc, Return-Path
//! and Content-Length removed) and queues it (`docs/inject.md`).
//!
//! `-a` recipients from the arguments only, `-h` from the header only, `-A`
//! (default) the arguments or else the header, `-H` both; `-fSENDER` the
//! envelope sender; `-n` print instead of queueing, `-N` queue (default).
//! Exit 0 sent, 100 permanent failure or bad usage, 111 temporary failure.

use std::process::ExitCode;

use qmail_bins::inject::{Invocation, getopt, process_vars, run};
use qmail_core::inject::{Options, RecipientSource};

const USAGE: &str = "usage: qmail-inject [ -nNaAhH ] [ -fsender ] [ recip ... ]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (opts, operands) = match getopt(&args, "aAhHnNf:") {
        Ok(p) => p,
        Err(c) => {
            eprintln!("qmail-inject: fatal: bad option -{c}\nqmail-inject: {USAGE}");
            return ExitCode::from(100);
        }
    };
    let mut options = Options::default();
    let mut print = false;
    for (c, value) in opts {
        match c {
            'a' => options.source = RecipientSource::Args,
            'A' => options.source = RecipientSource::ArgsOrHeader,
            'h' => options.source = RecipientSource::Header,
            'H' => options.source = RecipientSource::Both,
            'n' => print = true,
            'N' => print = false,
            'f' => options.sender = value,
            _ => unreachable!("getopt returns only the letters it was given"),
        }
    }
    options.args = operands;
    run(
        "qmail-inject",
        Invocation {
            options,
            vars: process_vars(),
            print,
        },
    )
}
