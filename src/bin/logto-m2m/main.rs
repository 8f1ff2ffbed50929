//! `logto-m2m`: the library as a command, for shells and cron jobs.
//!
//! `logto-m2m token` prints an access token, `inspect` shows what a token claims, `call`
//! calls an API with one, `verify` checks one as an API would. Run `logto-m2m --help` for
//! the commands and flags. Exit status: 0 on success, 1 when no token could be had (or
//! read) or `call`'s answer is not 2xx (`call --help` says what else ends `--paginate` with
//! 1), 2 for a usage error, including a bad `LOGTO_*` variable.
//!
//! Flags are parsed by hand from one table (`flags::FLAGS`), like ureq's own example client:
//! a parser crate would cost more than the parser. The token goes to stdout of `token` and
//! nowhere else; stderr gets the library's own (redacted) messages and warnings.
//!
//! The modules, in layers that import only from below (`tests/suite/layers.rs` holds the
//! order):
//!
//! 1. `output.rs` (stdout, the stderr log at the level it is given, times as text, and
//!    `Failure`, how a run ends), with the readers of a list's pages: `link.rs` (the `Link`
//!    headers) and `json_array.rs` (a page's items);
//! 2. `vars.rs`: the `LOGTO_*` variables, under the flags that stand in for them;
//! 3. `flags.rs` (the commands, the flag table, parsing, `--help`, formats), with
//!    `help.rs` (the help texts) and `subject.rs` (the flags that act for a user);
//! 4. `setup.rs` (the config, its CAs, the request and store a run uses) and `input.rs`
//!    (a token on stdin, `--data`);
//! 5. the commands: `token.rs`, `inspect.rs`, `verify.rs`, `call.rs` and `paginate.rs`
//!    (`call --paginate`, driven by `call` through its `Pages`);
//! 6. this file: the command line to a command, and the exit status.

#![forbid(unsafe_code)]

mod call;
mod flags;
mod help;
mod input;
mod inspect;
mod json_array;
mod link;
mod output;
mod paginate;
mod setup;
mod subject;
mod token;
mod vars;
mod verify;

use std::process::ExitCode;

use crate::flags::Command;
use crate::output::{Failure, write_stdout};
use crate::setup::Env;
use crate::vars::Vars;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Token(message)) => {
            eprintln!("logto-m2m: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            let help = match args.first().and_then(|a| Command::from_name(a)) {
                Some(c) => format!("logto-m2m {} --help", c.name()),
                None => "logto-m2m --help".into(),
            };
            eprintln!("logto-m2m: {message}\nTry `{help}`.");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((first, rest)) = args.split_first() else {
        return Err(Failure::Usage(format!(
            "no command; the commands are:\n{}",
            flags::command_list().trim_end()
        )));
    };
    let command = match first.as_str() {
        // `help <command>` is `<command> --help`, as in git and cargo.
        "help" => {
            return match rest.first() {
                Some(name) => write_stdout(&flags::help(flags::command(name)?)),
                None => write_stdout(&flags::main_help()),
            };
        }
        "-h" | "--help" => return write_stdout(&flags::main_help()),
        "-V" | "--version" => {
            return write_stdout(concat!("logto-m2m ", env!("CARGO_PKG_VERSION"), "\n"));
        }
        name => flags::command(name)?,
    };
    let opts = flags::parse(command, rest)?;
    if opts.help {
        return write_stdout(&flags::help(command));
    }
    output::init_logger(output::log_level(Vars::env().get("LOGTO_LOG")?.as_deref())?);
    let done = match command {
        Command::Token => token::run(&opts),
        Command::Inspect => inspect::run(&opts),
        Command::Call => call::run(&opts),
        Command::Verify => verify::run(&opts),
    };
    // Whichever connection met a certificate of an unknown CA: what to set.
    done.map_err(|f| Env::with(&opts).explain_certificate(f))
}
