//! The commands and their flags: one table (`FLAGS`) says which flags each command takes,
//! what value they want, what they mean and where the value goes; parsing, `--help`, the
//! command list and the "did you mean" of errors are all read from it.
//!
//! A new command is a `Command` variant (its name, synopsis, summary, about text and
//! operands) and its module; a new flag is a row of `FLAGS` naming the commands it belongs
//! to. A flag whose meaning differs by command (`--resource` asks for an audience in
//! `token`, and would name the one to expect in a verifier) gets a row per meaning: rows
//! are looked up among the command's own.

use crate::help::{self, APP_ENVIRONMENT, LOG_ENVIRONMENT, VERIFY_ENVIRONMENT};
use crate::output::Failure;

/// The commands, in the order `--help` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Token,
    Inspect,
    Call,
    Verify,
}

/// Every command (a new variant goes here too: the lists and help are made from it).
const COMMANDS: [Command; 4] = [
    Command::Token,
    Command::Inspect,
    Command::Call,
    Command::Verify,
];

/// Shorthands for the table.
const T: Command = Command::Token;
const I: Command = Command::Inspect;
const C: Command = Command::Call;
const V: Command = Command::Verify;

impl Command {
    pub(crate) fn from_name(name: &str) -> Option<Command> {
        COMMANDS.into_iter().find(|c| c.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Command::Token => "token",
            Command::Inspect => "inspect",
            Command::Call => "call",
            Command::Verify => "verify",
        }
    }

    /// What follows the name in its usage line.
    fn synopsis(self) -> &'static str {
        match self {
            Command::Token => "[options]",
            Command::Inspect => "[-] [options]",
            Command::Call => "<url-or-path> [options]",
            Command::Verify => "--resource <api> [<token> | -] [options]",
        }
    }

    /// One line for the command list.
    fn summary(self) -> &'static str {
        match self {
            Command::Token => "print an access token",
            Command::Inspect => "show a token's claims (from stdin with -)",
            Command::Call => "call an API with a token",
            Command::Verify => "check a token as your API would",
        }
    }

    /// What `<command> --help` says before the flags, ending with its exit statuses.
    fn about(self) -> &'static str {
        match self {
            Command::Token => help::TOKEN,
            Command::Inspect => help::INSPECT,
            Command::Call => help::CALL,
            Command::Verify => help::VERIFY,
        }
    }

    /// Takes `arg` as the command's operand when it is one: `inspect -` (the token on
    /// stdin), `call <url-or-path>`.
    fn operand(self, opts: &mut Options, arg: &str) -> bool {
        match self {
            Command::Inspect if arg == "-" && !opts.stdin => {
                opts.stdin = true;
                true
            }
            Command::Call if !arg.starts_with('-') && opts.target.is_none() => {
                opts.target = Some(arg.to_owned());
                true
            }
            // The token, or `-` (the default) for stdin.
            Command::Verify if (arg == "-" || !arg.starts_with('-')) && opts.target.is_none() => {
                opts.target = Some(arg.to_owned());
                true
            }
            _ => false,
        }
    }
}

/// A flag: a row of the table.
pub(crate) struct Flag {
    /// `--name`.
    name: &'static str,
    /// `-x`, if it has one.
    short: Option<&'static str>,
    commands: &'static [Command],
    /// The value's placeholder in help, e.g. `<url>`; `None` for a switch.
    value: Option<&'static str>,
    /// Whether an empty value means something (else it is a usage error).
    empty_ok: bool,
    /// Where the value goes.
    apply: Apply,
    /// Help text; each `\n` starts a line in the help column.
    help: &'static str,
}

/// Where a flag's value goes.
enum Apply {
    /// Stands in for a `LOGTO_*` variable: the run reads it, the library included, as it
    /// would read the variable (`vars::Vars`), so a flag and its variable never differ.
    Var(&'static str),
    /// As `Var`, repeatable: the values are joined with spaces.
    Vars(&'static str),
    /// Into `Options`; an error names what is wrong with the value.
    Set(fn(&mut Options, String) -> Result<(), String>),
}

/// Every flag of every command, in the order help lists them.
static FLAGS: &[Flag] = &[
    Flag {
        name: "--format",
        short: None,
        commands: &[T],
        value: Some("<format>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| Format::parse(&v).map(|f| o.format = f)),
        help: "token (default): the token alone\n\
               header: Authorization: Bearer <token>\n\
               json: access_token, token_type, expires_in (seconds left),\n\
               scope, expires_at (RFC 3339 UTC), expires_at_unix",
    },
    Flag {
        name: "--method",
        short: None,
        commands: &[C],
        value: Some("<method>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.method = Some(v.to_ascii_uppercase());
            Ok(())
        }),
        help: "GET by default, POST with --data",
    },
    Flag {
        name: "--data",
        short: None,
        commands: &[C],
        value: Some("<text>"),
        // `--data ''` sends an empty body.
        empty_ok: true,
        apply: Apply::Set(|o, v| {
            o.data = Some(v);
            Ok(())
        }),
        help: "the request body; @file reads a file, @- stdin. A body that\n\
               starts with { or [ is sent as application/json",
    },
    Flag {
        name: "--header",
        short: None,
        commands: &[C],
        value: Some("'K: V'"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            let (name, value) = v
                .split_once(':')
                .ok_or_else(|| format!("{v:?} is not `Name: value`"))?;
            o.headers
                .push((name.trim().to_owned(), value.trim().to_owned()));
            Ok(())
        }),
        help: "an extra request header; repeatable. An Authorization header\n\
               is sent as given: no token is fetched, nothing retried",
    },
    Flag {
        name: "--paginate",
        short: None,
        commands: &[C],
        value: None,
        empty_ok: false,
        apply: Apply::Set(|o, _| {
            o.paginate = true;
            Ok(())
        }),
        help: "follow a list's pages (Link rel=\"next\", or page+1 when the\n\
               count is capped) and print one JSON array of every item",
    },
    Flag {
        name: "--verbose",
        short: Some("-v"),
        commands: &[C],
        value: None,
        empty_ok: false,
        apply: Apply::Set(|o, _| {
            o.verbose = true;
            Ok(())
        }),
        help: "the answer's status line on stderr (each page's, paginating)",
    },
    Flag {
        name: "--resource",
        short: None,
        commands: &[T, I, C],
        value: Some("<url>"),
        // Empty asks for no resource (an organization token while LOGTO_RESOURCE is set).
        empty_ok: true,
        apply: Apply::Var("LOGTO_RESOURCE"),
        help: "API indicator (resource); default $LOGTO_RESOURCE; without\n\
               one none is sent (Logto needs one, or --organization)",
    },
    Flag {
        name: "--scope",
        short: None,
        commands: &[T, I, C],
        value: Some("<scopes>"),
        // Empty asks for no scope.
        empty_ok: true,
        apply: Apply::Vars("LOGTO_SCOPES"),
        help: "scope to ask for; repeatable, space-separated values split;\n\
               replaces $LOGTO_SCOPES",
    },
    Flag {
        name: "--organization",
        short: None,
        commands: &[T, I, C],
        value: Some("<id>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.organization = Some(v);
            Ok(())
        }),
        help: "Logto organization id; without a resource, an organization token",
    },
    Flag {
        name: "--impersonate",
        short: None,
        commands: &[T, I, C],
        value: Some("<user-id>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.subject.impersonate = Some(v);
            Ok(())
        }),
        help: "a token for this Logto user (token exchange; the app needs\n\
               token exchange on and Management API access)",
    },
    Flag {
        name: "--context",
        short: None,
        commands: &[T, I, C],
        value: Some("<json>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.subject.context = Some(v);
            Ok(())
        }),
        help: "with --impersonate: a JSON object Logto keeps with it",
    },
    Flag {
        name: "--pat-file",
        short: None,
        commands: &[T, I, C],
        value: Some("<path>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.subject.pat_file = Some(v);
            Ok(())
        }),
        help: "a token for the user whose personal access token is in the file",
    },
    Flag {
        name: "--subject-token-file",
        short: None,
        commands: &[T, I, C],
        value: Some("<path>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.subject.subject_token_file = Some(v);
            Ok(())
        }),
        help: "a token for the user whose access token is in the file",
    },
    Flag {
        name: "--cache-file",
        short: None,
        commands: &[T, I, C],
        value: Some("<path>"),
        empty_ok: false,
        apply: Apply::Var("LOGTO_CACHE_FILE"),
        help: "token file shared by runs (locked through <path>.lock beside\n\
               it); default $LOGTO_CACHE_FILE",
    },
    Flag {
        name: "--auth-method",
        short: None,
        commands: &[T, I, C],
        value: Some("<method>"),
        empty_ok: false,
        apply: Apply::Var("LOGTO_AUTH_METHOD"),
        help: "client_secret_basic or client_secret_post;\n\
               default $LOGTO_AUTH_METHOD, else client_secret_basic",
    },
    Flag {
        name: "--timeout",
        short: None,
        commands: &[T, I, C],
        value: Some("<seconds>"),
        empty_ok: false,
        apply: Apply::Var("LOGTO_TIMEOUT"),
        help: "deadline of each exchange (the token; an api call or page,\n\
               its retries included), e.g. 10 or 2.5; default\n\
               $LOGTO_TIMEOUT, else 30",
    },
    Flag {
        name: "--ca-file",
        short: None,
        commands: &[T, I, C, V],
        value: Some("<path>"),
        empty_ok: false,
        apply: Apply::Var("LOGTO_CA_FILE"),
        help: "PEM file of the CAs to trust for every https connection (Logto,\n\
               call's API) instead of the built-in roots, as curl --cacert:\n\
               append your CA to a copy of the system bundle to keep both;\n\
               default $LOGTO_CA_FILE, else $SSL_CERT_FILE",
    },
    Flag {
        name: "--resource",
        short: None,
        commands: &[V],
        value: Some("<api>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            o.audience = Some(v);
            Ok(())
        }),
        help: "the API indicator the token must be for (its aud); required",
    },
    Flag {
        name: "--scope",
        short: None,
        commands: &[V],
        value: Some("<scopes>"),
        empty_ok: false,
        apply: Apply::Set(|o, v| {
            // Split as the library splits every scope list (RFC 6749: by spaces).
            let scopes = logto_m2m::TokenRequest::new("").scope(&v);
            o.required_scopes.extend_from_slice(scopes.scopes());
            Ok(())
        }),
        help: "a scope the token must grant; repeatable, space-separated\n\
               values split",
    },
    Flag {
        name: "--help",
        short: Some("-h"),
        commands: &[T, I, C, V],
        value: None,
        empty_ok: false,
        apply: Apply::Set(|o, _| {
            o.help = true;
            Ok(())
        }),
        help: "this help",
    },
];

/// The variables `command` reads, as its help's last paragraph.
fn environment(command: Command) -> String {
    match command {
        Command::Token | Command::Call => format!("{APP_ENVIRONMENT}{LOG_ENVIRONMENT}"),
        Command::Inspect => format!(
            "{APP_ENVIRONMENT}{LOG_ENVIRONMENT}With -, only LOGTO_LOG is read: the token \
             comes from stdin.\n"
        ),
        Command::Verify => format!("{VERIFY_ENVIRONMENT}{LOG_ENVIRONMENT}"),
    }
}

/// `token --format`.
#[derive(Clone, Copy, Default)]
pub(crate) enum Format {
    #[default]
    Token,
    Header,
    Json,
}

impl Format {
    pub(crate) fn parse(value: &str) -> Result<Format, String> {
        match value {
            "token" => Ok(Format::Token),
            "header" => Ok(Format::Header),
            "json" => Ok(Format::Json),
            _ => Err(format!("{value:?} is not token, header or json")),
        }
    }
}

/// The command line, with the environment's defaults not yet applied.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) help: bool,
    /// The values of flags that stand in for `LOGTO_*` variables: (variable, value).
    pub(crate) vars: Vec<(&'static str, String)>,
    pub(crate) organization: Option<String>,
    /// `--impersonate`, `--context`, `--pat-file`, `--subject-token-file`.
    pub(crate) subject: crate::subject::SubjectFlags,
    /// `token --format`.
    pub(crate) format: Format,
    /// `inspect -`: read the token from stdin.
    pub(crate) stdin: bool,
    /// `call`: the URL or path (`verify`: the token, `-` for stdin), method, body, extra
    /// headers, and `-v`.
    pub(crate) target: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) verbose: bool,
    /// `call --paginate`.
    pub(crate) paginate: bool,
    /// `verify --resource` and `--scope`: the audience and scopes the token must have.
    pub(crate) audience: Option<String>,
    pub(crate) required_scopes: Vec<String>,
}

/// The flag that stands in for `variable`.
pub(crate) fn flag_for(variable: &str) -> Option<&'static str> {
    FLAGS.iter().find_map(|f| match f.apply {
        Apply::Var(v) | Apply::Vars(v) if v == variable => Some(f.name),
        _ => None,
    })
}

/// The command named `name`, or a usage error that says what was meant.
pub(crate) fn command(name: &str) -> Result<Command, Failure> {
    if let Some(command) = Command::from_name(name) {
        return Ok(command);
    }
    let names = COMMANDS.map(Command::name);
    let list = names.map(|n| format!("`{n}`")).join(", ");
    let message = if name.starts_with('-') {
        format!("unknown flag {name}: give a command first, one of {list}")
    } else {
        match closest(name, names.into_iter()) {
            Some(meant) => format!("unknown command {name:?}; did you mean `{meant}`?"),
            None => format!("unknown command {name:?}; the commands are {list}"),
        }
    };
    Err(Failure::Usage(message))
}

/// `args` (after the command's name) as options for `command`.
pub(crate) fn parse(command: Command, args: &[String]) -> Result<Options, Failure> {
    let mut opts = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if command.operand(&mut opts, arg) {
            continue;
        }
        // `--flag=value` or `--flag value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        };
        let flag = find(command, name)?;
        let usage = |what: String| Failure::Usage(format!("{name}: {what}"));
        let value = match (flag.value, inline) {
            (None, None) => String::new(),
            (None, Some(_)) => return Err(usage("takes no value".into())),
            (Some(_), Some(v)) => v.to_owned(),
            (Some(_), None) => args
                .next()
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))?,
        };
        if flag.value.is_some() && !flag.empty_ok && value.trim().is_empty() {
            return Err(usage("empty value".into()));
        }
        match flag.apply {
            Apply::Var(variable) => {
                opts.vars.retain(|(v, _)| *v != variable);
                opts.vars.push((variable, value));
            }
            Apply::Vars(variable) => match opts.vars.iter_mut().find(|(v, _)| *v == variable) {
                Some((_, values)) => {
                    values.push(' ');
                    values.push_str(&value);
                }
                None => opts.vars.push((variable, value)),
            },
            Apply::Set(set) => set(&mut opts, value).map_err(usage)?,
        }
    }
    Ok(opts)
}

/// The row for `name` (long or short) if `command` takes it, else a usage error naming
/// the flag meant, or the commands that take it.
fn find(command: Command, name: &str) -> Result<&'static Flag, Failure> {
    let named = |f: &&Flag| f.name == name || f.short == Some(name);
    if let Some(flag) = FLAGS
        .iter()
        .filter(|f| f.commands.contains(&command))
        .find(named)
    {
        return Ok(flag);
    }
    let this = command.name();
    if !name.starts_with('-') || name == "-" {
        return Err(Failure::Usage(format!(
            "unexpected argument {name:?} for `{this}`"
        )));
    }
    let message = if let Some(other) = FLAGS.iter().find(named) {
        let takers: Vec<String> = other
            .commands
            .iter()
            .map(|c| format!("`{}`", c.name()))
            .collect();
        format!(
            "unknown flag {name} for `{this}`: it is a flag of {}",
            takers.join(", ")
        )
    } else {
        let names = FLAGS
            .iter()
            .filter(|f| f.commands.contains(&command))
            .flat_map(|f| [Some(f.name), f.short])
            .flatten();
        match closest(name, names) {
            Some(meant) => format!("unknown flag {name} for `{this}`; did you mean {meant}?"),
            None => format!("unknown flag {name} for `{this}`"),
        }
    };
    Err(Failure::Usage(message))
}

/// The candidate nearest to `typed` when it is near enough to be a slip: at most two
/// edits, and fewer than half the candidate's letters (so `-x` does not suggest `-v`).
fn closest<'a>(typed: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edits(typed, c), c))
        .filter(|&(d, c)| d <= 2 && d <= c.trim_start_matches('-').len() / 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// One line per command: its name and summary.
pub(crate) fn command_list() -> String {
    COMMANDS
        .iter()
        .map(|c| format!("  {:<10}{}\n", c.name(), c.summary()))
        .collect()
}

/// The column of `--help`'s usage lines where the summaries start (after `usage: `).
const USAGE_WIDTH: usize = 40;

/// `logto-m2m --help`.
pub(crate) fn main_help() -> String {
    let mut out = String::from(
        "logto-m2m: OAuth 2.0 client_credentials tokens for Logto machine-to-machine apps\n\n",
    );
    for (i, c) in COMMANDS.iter().enumerate() {
        let usage = format!("logto-m2m {} {}", c.name(), c.synopsis());
        let lead = if i == 0 { "usage: " } else { "       " };
        // A usage too long for its column puts its summary on the next line, in the column.
        if usage.len() < USAGE_WIDTH {
            out.push_str(&format!("{lead}{usage:<USAGE_WIDTH$}{}\n", c.summary()));
        } else {
            let indent = " ".repeat(lead.len() + USAGE_WIDTH);
            out.push_str(&format!("{lead}{usage}\n{indent}{}\n", c.summary()));
        }
    }
    out.push_str(
        "\nRun `logto-m2m help <command>` for its options. The app comes from the environment:
LOGTO_ENDPOINT (or LOGTO_TOKEN_URL), LOGTO_APP_ID, LOGTO_APP_SECRET (or
LOGTO_APP_SECRET_FILE, a file that holds it, read for each token request).

Exit status: 0 success; 1 no token (or for `call`, an answer that is not 2xx); 2 usage
error.
",
    );
    out
}

/// `logto-m2m <command> --help`: usage, what it does, its flags from the table, and the
/// environment.
pub(crate) fn help(command: Command) -> String {
    let mut out = format!(
        "usage: logto-m2m {} {}\n\n{}\n",
        command.name(),
        command.synopsis(),
        command.about()
    );
    for flag in FLAGS.iter().filter(|f| f.commands.contains(&command)) {
        let mut left = match flag.short {
            Some(short) => format!("  {short}, {}", flag.name),
            None => format!("  {}", flag.name),
        };
        if let Some(value) = flag.value {
            left = format!("{left} {value}");
        }
        // A name too long for its column gets a line of its own.
        if left.len() > 24 {
            out.push_str(&format!("{left}\n"));
            left.clear();
        }
        for line in flag.help.lines() {
            out.push_str(&format!("{left:<26}{line}\n"));
            left.clear();
        }
    }
    out.push('\n');
    out.push_str(&environment(command));
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn slips_are_named() {
        let names = FLAGS.iter().map(|f| f.name);
        assert_eq!(closest("--scopes", names.clone()), Some("--scope"));
        assert_eq!(closest("--resouce", names.clone()), Some("--resource"));
        assert_eq!(closest("--bogus", names.clone()), None);
        assert_eq!(closest("-x", ["-v", "-h"].into_iter()), None);
        assert_eq!(
            closest("tokne", COMMANDS.map(Command::name).into_iter()),
            Some("token")
        );
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("", "abc"), 3);
    }

    /// Issue 34: `verify`'s usage, longer than the column, ran into its summary
    /// (`[options]check a token...`).
    #[test]
    fn every_usage_line_keeps_its_summary_apart() {
        let help = main_help();
        for line in help.lines() {
            assert!(line.chars().count() <= 92, "too wide: {line:?}");
        }
        for c in COMMANDS {
            let usage = format!("logto-m2m {} {}", c.name(), c.synopsis());
            let line = help
                .lines()
                .find(|l| l.contains(&usage))
                .unwrap_or_else(|| panic!("{usage}: {help}"));
            let after = &line[line.find(&usage).unwrap() + usage.len()..];
            let summary_apart = after.is_empty() || after.starts_with("  ");
            assert!(summary_apart, "{line:?}");
            assert!(help.contains(c.summary()), "{}", c.name());
        }
    }

    /// Issue 34: each command's help names the variables it reads, and no other: `verify`
    /// needs no app id or secret, and its help used to end by requiring them.
    #[test]
    fn each_help_names_the_variables_its_command_reads() {
        for command in COMMANDS {
            let help = help(command);
            let takes = |variable: &str| {
                FLAGS.iter().any(|f| {
                    f.commands.contains(&command)
                        && matches!(f.apply, Apply::Var(v) | Apply::Vars(v) if v == variable)
                })
            };
            for variable in [
                "LOGTO_RESOURCE",
                "LOGTO_SCOPES",
                "LOGTO_CACHE_FILE",
                "LOGTO_TIMEOUT",
            ] {
                assert_eq!(
                    help.contains(variable),
                    takes(variable),
                    "{}: {variable}",
                    command.name()
                );
            }
            let app = command != Command::Verify;
            for variable in ["LOGTO_APP_ID", "LOGTO_APP_SECRET", "LOGTO_CACHE_URL"] {
                assert_eq!(
                    help.contains(variable),
                    app,
                    "{}: {variable}",
                    command.name()
                );
            }
            assert!(help.contains("LOGTO_ENDPOINT"), "{}", command.name());
            assert!(help.contains("LOGTO_LOG"), "{}", command.name());
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, flag) in FLAGS.iter().enumerate() {
            assert!(flag.name.starts_with("--"), "{}", flag.name);
            assert!(!flag.commands.is_empty(), "{}", flag.name);
            assert!(!flag.help.is_empty(), "{}", flag.name);
            // A name may have a row per meaning (`verify --resource` is the audience to
            // expect, not one to ask for), but one row per command.
            for later in &FLAGS[i + 1..] {
                let same =
                    flag.name == later.name || (flag.short.is_some() && flag.short == later.short);
                let shared = flag.commands.iter().any(|c| later.commands.contains(c));
                assert!(!(same && shared), "{} twice", flag.name);
            }
        }
        for command in COMMANDS {
            let help = help(command);
            for line in help.lines() {
                assert!(line.chars().count() <= 92, "too wide: {line:?}");
            }
            for flag in FLAGS.iter().filter(|f| f.commands.contains(&command)) {
                assert!(help.contains(flag.name), "{}", flag.name);
            }
        }
    }
}
