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
//! The files, by command: `flags.rs` (the commands, the flag table, parsing and help),
//! `setup.rs` (the variables, config, request and store a run uses), `token.rs`,
//! `inspect.rs`, `call.rs` with `paginate.rs` (`call --paginate`: `link.rs` reads the `Link`
//! headers, `json_array.rs` finds a page's items), `verify.rs`, `subject.rs` (acting for a
//! user), and `output.rs` (stdout, the stderr log, times as text).

#![forbid(unsafe_code)]

mod call;
mod flags;
mod inspect;
mod json_array;
mod link;
mod output;
mod paginate;
mod setup;
mod subject;
mod token;
mod verify;

use std::process::ExitCode;

use logto_m2m::{Error, ErrorKind};

use crate::flags::Command;
use crate::output::write_stdout;

/// How a run ends when it does not succeed; the number is the exit status.
pub(crate) enum Failure {
    /// 1: the token endpoint, the network, the token itself, or `call`'s answer.
    Token(String),
    /// 2: the command line or the environment.
    Usage(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        // A bad variable or config is the caller's to fix before anything is sent.
        match e.kind() {
            ErrorKind::Env { .. } => Failure::Usage(e.to_string()),
            // The reason alone: the library's advice for a config names its own methods
            // (`allow_insecure_http`, `Config::proxy`), which a command user can't call.
            kind @ ErrorKind::Config { .. } => Failure::Usage(kind.to_string()),
            ErrorKind::Timeout { .. } => Failure::Token(format!(
                "{e}; give it longer with --timeout <seconds> or LOGTO_TIMEOUT"
            )),
            _ => Failure::Token(e.to_string()),
        }
    }
}

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
    output::init_logger()?;
    let done = match command {
        Command::Token => token::run(&opts),
        Command::Inspect => inspect::run(&opts),
        Command::Call => call::run(&opts),
        Command::Verify => verify::run(&opts),
    };
    // Whichever connection met a certificate of an unknown CA: what to set.
    done.map_err(|f| setup::Vars::with(&opts).explain_certificate(f))
}
