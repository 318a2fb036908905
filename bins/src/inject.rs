//! What `qmail-inject` and `sendmail` share: reading their environment,
//! running core's qmail-inject on standard input, and qmail-inject's exit
//! codes (0 sent, 100 permanent failure or bad usage, 111 temporary).

use std::process::ExitCode;

use qmail_core::env::{Clock, Env};
use qmail_core::inject::{Destination, Options, Settings, Stamp, Vars, inject};
use qmail_core::local::ByteSource;
use qmail_core::queue::Queue;
use qmail_io_real::RealEnv;
use tokio::io::AsyncReadExt;

/// How a program was asked to inject.
pub struct Invocation {
    pub options: Options,
    /// The environment as qmail-inject should see it.
    pub vars: Vars,
    /// `-n`: print the message instead of queueing it.
    pub print: bool,
}

/// The environment variables qmail-inject reads, from the process.
pub fn process_vars() -> Vars {
    Vars::from_lookup(|n| std::env::var(n).ok())
}

/// Standard input as a byte source.
struct Stdin(tokio::io::Stdin);

impl ByteSource for Stdin {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).await
    }
}

/// Runs qmail-inject; says what went wrong on standard error as
/// `PROGRAM: fatal: ...`.
pub fn run(program: &str, inv: Invocation) -> ExitCode {
    let home = crate::home();
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: fatal: {e}");
            return ExitCode::from(111);
        }
    };
    let env = RealEnv::new();
    let queue = Queue::new(env.clone(), home.queue());
    let queue_program = crate::queue_program();
    let result = rt.block_on(async {
        let settings = Settings::load(env.fs(), &home, &inv.vars).await?;
        let stamp = Stamp {
            unix_secs: env.clock().unix_secs(),
            pid: env.identity().pid,
        };
        let input = Stdin(tokio::io::stdin());
        if inv.print {
            let mut out = tokio::io::stdout();
            inject(
                &settings,
                &inv.options,
                stamp,
                input,
                Destination::<RealEnv>::Print(&mut out),
            )
            .await
        } else {
            inject(
                &settings,
                &inv.options,
                stamp,
                input,
                Destination::Queue {
                    queue: &queue,
                    program: queue_program.as_deref(),
                },
            )
            .await
        }
    });
    // tokio reads stdin on a blocking thread: do not wait for it.
    rt.shutdown_background();
    match result {
        Ok(_) => {
            if !inv.print && queue_program.is_none() {
                crate::trigger::pull(&home.queue());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: fatal: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A parsed command line: the options in order, then the operands.
pub type Parsed = (Vec<(char, Option<String>)>, Vec<String>);

/// POSIX getopt, as qmail's programs use it. `spec` lists the option
/// letters; a letter followed by `:` takes a value (glued, `-fuser`, or the
/// next argument), one followed by `?` takes an optional glued value. Options
/// end at `--`, at `-` or at the first operand. An unknown letter, or a
/// missing value, is returned as the error.
pub fn getopt(args: &[String], spec: &str) -> Result<Parsed, char> {
    let takes = |c: char| -> Option<char> {
        let i = spec.find(c)?;
        Some(spec[i + c.len_utf8()..].chars().next().unwrap_or(' '))
    };
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        for (k, c) in a[1..].char_indices() {
            if c == ':' || c == '?' {
                return Err(c);
            }
            match takes(c) {
                None => return Err(c),
                Some(':') => {
                    let rest = &a[1 + k + c.len_utf8()..];
                    let value = if !rest.is_empty() {
                        rest.to_string()
                    } else {
                        i += 1;
                        args.get(i).cloned().ok_or(c)?
                    };
                    opts.push((c, Some(value)));
                    break;
                }
                Some('?') => {
                    let rest = &a[1 + k + c.len_utf8()..];
                    opts.push((c, (!rest.is_empty()).then(|| rest.to_string())));
                    break;
                }
                Some(_) => opts.push((c, None)),
            }
        }
        i += 1;
    }
    Ok((opts, args[i..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], spec: &str) -> Result<Parsed, char> {
        getopt(
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            spec,
        )
    }

    #[test]
    fn getopt_like_posix() {
        assert_eq!(
            parse(&["-af", "me", "-n", "x", "-h"], "aAhHnNf:"),
            Ok((
                vec![('a', None), ('f', Some("me".into())), ('n', None)],
                vec!["x".into(), "-h".into()]
            ))
        );
        assert_eq!(
            parse(&["-fme@x", "--", "-y"], "f:"),
            Ok((vec![('f', Some("me@x".into()))], vec!["-y".into()]))
        );
        assert_eq!(
            parse(&["-oi", "-Ex", "-J", "u"], "o:E?J?"),
            Ok((
                vec![
                    ('o', Some("i".into())),
                    ('E', Some("x".into())),
                    ('J', None)
                ],
                vec!["u".into()]
            ))
        );
        assert_eq!(parse(&["-z"], "a"), Err('z'));
        assert_eq!(parse(&["-f"], "f:"), Err('f'));
        assert_eq!(parse(&["-"], "a"), Ok((vec![], vec!["-".into()])));
    }
}
