//! `logto-m2m`: the library as a command, for shells and cron jobs.
//!
//! `logto-m2m token` prints an access token; `logto-m2m inspect` shows what a token claims.
//! Run `logto-m2m --help` for the flags. Exit status: 0 on success, 1 when no token could be
//! had (or read), 2 for a usage error, including a bad `LOGTO_*` variable.
//!
//! Flags are parsed by hand, like ureq's own example client: a parser crate would cost more
//! than this whole file. The token goes to stdout of `token` and nowhere else; stderr only
//! ever gets the library's own (redacted) messages.

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use logto_m2m::{AuthMethod, Config, Error, ErrorKind, Token, TokenRequest, TokenStore};
use miniserde::json::{self as mini, Number, Value};

// The crate's own JSON writer and seconds reader, shared without making them API.
#[path = "../text.rs"]
mod text;

const MAIN_HELP: &str = "\
logto-m2m: OAuth 2.0 client_credentials tokens for Logto machine-to-machine apps

usage: logto-m2m token [options]      print an access token
       logto-m2m inspect [-] [options] show a token's claims (read from stdin with -)

Run `logto-m2m <command> --help` for the options. The app comes from the environment:
LOGTO_ENDPOINT (or LOGTO_TOKEN_URL), LOGTO_APP_ID, LOGTO_APP_SECRET.

Exit status: 0 success, 1 token error, 2 usage error.
";

/// The flags `token` and `inspect` share: what to ask for and how.
const REQUEST_HELP: &str = "\
  --resource <url>        API indicator (resource); default $LOGTO_RESOURCE; without
                          one none is sent (Logto needs one, or --organization)
  --scope <scopes>        scope to ask for; repeatable, space-separated values split;
                          replaces $LOGTO_SCOPES
  --organization <id>     Logto organization id; without a resource, an organization token
  --cache-file <path>     token file shared by runs; default $LOGTO_CACHE_FILE
  --auth-method <method>  client_secret_basic or client_secret_post;
                          default $LOGTO_AUTH_METHOD, else client_secret_basic
  --timeout <seconds>     whole-exchange deadline, e.g. 10 or 2.5; default $LOGTO_TIMEOUT, else 30
  -h, --help              this help

Environment: LOGTO_ENDPOINT or LOGTO_TOKEN_URL, LOGTO_APP_ID, LOGTO_APP_SECRET (required);
LOGTO_CACHE_URL=redis://host:port/db shares tokens through Redis (built with the redis
feature; a token file, when given, is used instead); LOGTO_LOG=debug|info|warn prints the
library's log events on stderr.
";

const TOKEN_HELP: &str = "\
usage: logto-m2m token [options]

Prints an access token on stdout. A requested scope the app was not granted is a warning on
stderr.

  --format <format>       token (default): the token alone
                          header: Authorization: Bearer <token>
                          json: access_token, token_type, expires_in (seconds left),
                          scope, expires_at (RFC 3339 UTC), expires_at_unix
";

const INSPECT_HELP: &str = "\
usage: logto-m2m inspect [-] [options]

Prints the claims of a JWT access token that explain most failures: iss, sub, client_id,
aud, scope, organization_id, iat and exp. With -, the token is read from stdin (a bare
token, `Bearer <token>` or an `Authorization:` line); otherwise one is fetched as `token`
would. The signature is NOT verified: this shows what the token claims, not that it is
genuine.
";

/// The most stdin `inspect` reads: far more than any access token.
const MAX_STDIN: u64 = 64 * 1024;

/// How a run ends when it does not succeed; the number is the exit status.
enum Failure {
    /// 1: the token endpoint, the network or the token itself.
    Token(String),
    /// 2: the command line or the environment.
    Usage(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        // A bad variable or config is the caller's to fix before anything is sent.
        match e.kind() {
            ErrorKind::Env { .. } | ErrorKind::Config { .. } => Failure::Usage(e.to_string()),
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
            let help = match args.first().map(String::as_str) {
                Some(c @ ("token" | "inspect")) => format!("logto-m2m {c} --help"),
                _ => "logto-m2m --help".into(),
            };
            eprintln!("logto-m2m: {message}\nTry `{help}`.");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => {
            return Err(Failure::Usage(
                "no command: use `token` or `inspect`".into(),
            ));
        }
    };
    match command {
        "-h" | "--help" | "help" => return write_stdout(MAIN_HELP),
        "-V" | "--version" => {
            return write_stdout(concat!("logto-m2m ", env!("CARGO_PKG_VERSION"), "\n"));
        }
        "token" | "inspect" => {}
        flag if flag.starts_with('-') => {
            return Err(Failure::Usage(format!(
                "unknown flag {flag}: give a command first, `token` or `inspect`"
            )));
        }
        other => return Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
    let opts = parse_flags(command, rest)?;
    if opts.help {
        let help = if command == "token" {
            TOKEN_HELP
        } else {
            INSPECT_HELP
        };
        return write_stdout(&format!("{help}\n{REQUEST_HELP}"));
    }
    init_logger()?;
    if command == "token" {
        let token = fetch(&opts)?;
        write_stdout(&format_token(&token, opts.format))
    } else if opts.stdin {
        inspect(&read_stdin_token()?)
    } else {
        let token = fetch(&opts)?;
        inspect(token.access_token())
    }
}

/// `token --format`.
#[derive(Clone, Copy, Default)]
enum Format {
    #[default]
    Token,
    Header,
    Json,
}

/// The command line, with the environment's defaults not yet applied.
#[derive(Default)]
struct Options {
    help: bool,
    resource: Option<String>,
    /// `None` when no `--scope` was given: `LOGTO_SCOPES` applies then.
    scopes: Option<Vec<String>>,
    organization: Option<String>,
    cache_file: Option<String>,
    auth_method: Option<AuthMethod>,
    timeout: Option<Duration>,
    format: Format,
    /// `inspect -`: read the token from stdin.
    stdin: bool,
}

fn parse_flags(command: &str, args: &[String]) -> Result<Options, Failure> {
    let mut opts = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            opts.help = true;
            continue;
        }
        if arg == "-" && command == "inspect" {
            opts.stdin = true;
            continue;
        }
        if !arg.starts_with("--") {
            return Err(Failure::Usage(format!(
                "unexpected argument {arg:?} for `{command}`"
            )));
        }
        // `--flag=value` or `--flag value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let known = matches!(
            flag,
            "--resource"
                | "--scope"
                | "--organization"
                | "--cache-file"
                | "--auth-method"
                | "--timeout"
        ) || (flag == "--format" && command == "token");
        if !known {
            return Err(Failure::Usage(format!(
                "unknown flag {flag} for `{command}`"
            )));
        }
        let value = match inline.or_else(|| args.next().cloned()) {
            Some(v) => v,
            None => return Err(Failure::Usage(format!("{flag} needs a value"))),
        };
        // An empty `--scope` asks for no scope, and an empty `--resource` for none (an
        // organization token while LOGTO_RESOURCE is set); elsewhere empty is a mistake.
        if value.trim().is_empty() && flag != "--scope" && flag != "--resource" {
            return Err(Failure::Usage(format!("{flag}: empty value")));
        }
        match flag {
            "--resource" => opts.resource = Some(value),
            "--scope" => opts
                .scopes
                .get_or_insert_with(Vec::new)
                .extend(value.split_ascii_whitespace().map(str::to_owned)),
            "--organization" => opts.organization = Some(value),
            "--cache-file" => opts.cache_file = Some(value),
            "--auth-method" => {
                let method = value.parse().map_err(|_| {
                    Failure::Usage(format!(
                        "--auth-method: {value:?} is not client_secret_basic or client_secret_post"
                    ))
                })?;
                opts.auth_method = Some(method);
            }
            "--timeout" => {
                let timeout = text::parse_seconds(&value).map_err(|reason| {
                    Failure::Usage(format!("--timeout: {value:?} is {reason}"))
                })?;
                opts.timeout = Some(timeout);
            }
            _ => {
                opts.format = match value.as_str() {
                    "token" => Format::Token,
                    "header" => Format::Header,
                    "json" => Format::Json,
                    _ => {
                        return Err(Failure::Usage(format!(
                            "--format: {value:?} is not token, header or json"
                        )));
                    }
                }
            }
        }
    }
    Ok(opts)
}

/// The token for `opts` and the environment. Warns on stderr of asked scopes the server did
/// not grant, and of a token file it could not use.
fn fetch(opts: &Options) -> Result<Arc<Token>, Failure> {
    let mut config = Config::from_env()?;
    if let Some(method) = opts.auth_method {
        config = config.auth_method(method);
    }
    if let Some(timeout) = opts.timeout {
        config = config.timeout(timeout);
    }
    let resource = match &opts.resource {
        Some(r) => r.clone(),
        None => env("LOGTO_RESOURCE")?.unwrap_or_default(),
    };
    // Without a resource the request goes without one and the server decides: most servers
    // need none, and Logto's invalid_target then says what is missing.
    let mut request = TokenRequest::new(&resource);
    match &opts.scopes {
        Some(scopes) => {
            for s in scopes {
                request = request.scope(s);
            }
        }
        None => request = request.scope(&env("LOGTO_SCOPES")?.unwrap_or_default()),
    }
    if let Some(org) = &opts.organization {
        request = request.organization(org);
    }
    let cache_file = match &opts.cache_file {
        Some(path) => Some(path.clone()),
        None => env("LOGTO_CACHE_FILE")?.filter(|p| !p.is_empty()),
    };
    let cache_url = env("LOGTO_CACHE_URL")?.filter(|u| !u.is_empty());
    let store = match (cache_file, cache_url) {
        (Some(path), _) => Some(TokenStore::new(config.clone()).cache_file(path)),
        (None, Some(url)) => Some(with_redis(TokenStore::new(config.clone()), &url)?),
        (None, None) => None,
    };
    let token = match store {
        None => Arc::new(logto_m2m::request_token(&config, &request)?),
        Some(store) => {
            let token = store.get(&request)?;
            // The file or Redis is only a cache: without it we still got a token.
            if let Some(problem) = store.last_cache_error() {
                eprintln!("logto-m2m: warning: {problem}");
            }
            token
        }
    };
    let missing = token.missing_scopes(&request);
    if !missing.is_empty() {
        // The server drops scopes the app has no role for without an error; this is the
        // most common reason an API then answers 403.
        let these = if missing.len() == 1 {
            "this permission"
        } else {
            "these permissions"
        };
        let fix = if !config.is_logto() {
            format!("grant the app {these} on the authorization server")
        } else if resource.is_empty() {
            format!("assign the app an organization role with {these} in the Logto console")
        } else {
            format!("assign the app a machine-to-machine role with {these} in the Logto console")
        };
        eprintln!(
            "logto-m2m: warning: scope not granted: {}; {fix}",
            missing.join(" ")
        );
    }
    Ok(token)
}

/// The store sharing tokens through the Redis at `LOGTO_CACHE_URL`.
#[cfg(feature = "redis")]
fn with_redis(store: TokenStore, url: &str) -> Result<TokenStore, Failure> {
    let redis = logto_m2m::RedisCache::new(url)
        .map_err(|e| Failure::Usage(format!("environment variable LOGTO_CACHE_URL: {e}")))?;
    Ok(store.token_cache(redis))
}

/// Without the `redis` feature a URL set anyway is a usage error, not silently ignored.
#[cfg(not(feature = "redis"))]
fn with_redis(_: TokenStore, _: &str) -> Result<TokenStore, Failure> {
    Err(Failure::Usage(
        "environment variable LOGTO_CACHE_URL: set, but this build has no redis feature \
         (cargo install logto-m2m --features redis)"
            .into(),
    ))
}

/// A `LOGTO_*` variable the command reads itself; `None` when unset.
fn env(name: &str) -> Result<Option<String>, Failure> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::Usage(format!(
            "environment variable {name}: not UTF-8"
        ))),
    }
}

fn format_token(token: &Token, format: Format) -> String {
    match format {
        Format::Token => format!("{}\n", token.access_token()),
        Format::Header => format!("Authorization: {}\n", token.authorization()),
        Format::Json => {
            let now = unix_now();
            let expires_at = token
                .expires_at_system()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            let mut out = String::from("{");
            text::push_field(&mut out, "access_token", Some(token.access_token()));
            out.push_str(",\"token_type\":\"Bearer\",\"expires_in\":");
            // Seconds left now, not the lifetime granted: a token from the cache file may
            // be half used, and this is what a script wants to compare against.
            match expires_at {
                Some(at) => out.push_str(&at.saturating_sub(now).max(0).to_string()),
                None => out.push_str(&token.expires_in().as_secs().to_string()),
            }
            out.push(',');
            // What was granted, never what was asked: "" when nothing was.
            text::push_field(&mut out, "scope", Some(token.scope().unwrap_or("")));
            out.push(',');
            text::push_field(
                &mut out,
                "expires_at",
                expires_at.and_then(rfc3339).as_deref(),
            );
            out.push_str(",\"expires_at_unix\":");
            match expires_at {
                Some(at) => out.push_str(&at.to_string()),
                None => out.push_str("null"),
            }
            out.push_str("}\n");
            out
        }
    }
}

/// The token on stdin: a bare token, `Bearer <token>`, or a whole `Authorization:` line
/// (so `logto-m2m token --format header | logto-m2m inspect -` works too).
fn read_stdin_token() -> Result<String, Failure> {
    let mut bytes = Vec::new();
    io::stdin()
        .take(MAX_STDIN)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Token(format!("reading stdin: {e}")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| Failure::Token("stdin is not UTF-8 text".into()))?;
    let mut token = text.trim();
    for prefix in ["Authorization:", "authorization:"] {
        token = token.strip_prefix(prefix).unwrap_or(token).trim_start();
    }
    token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    if token.is_empty() {
        return Err(Failure::Token("no token on stdin".into()));
    }
    Ok(token.to_owned())
}

/// The claims that explain most refusals, in the order one reads them: who issued it, to
/// whom, for which API and permissions, and when. Never the token itself.
const CLAIMS: [&str; 8] = [
    "iss",
    "sub",
    "client_id",
    "aud",
    "scope",
    "organization_id",
    "iat",
    "exp",
];

fn inspect(token: &str) -> Result<(), Failure> {
    write_stdout(&claims_text(token, unix_now())?)
}

/// `inspect`'s output for `token` at Unix time `now`.
fn claims_text(token: &str, now: i64) -> Result<String, Failure> {
    let claims = jwt_payload(token).map_err(|why| {
        Failure::Token(format!(
            "the token is not a JWT ({why}): it is opaque, and only the server that issued it can say what it grants"
        ))
    })?;
    let mut out = String::from("signature: not verified (this shows what the token claims)\n");
    for name in CLAIMS {
        let Some(value) = claims.get(name) else {
            // No scope claim is the answer to a 403: the server granted nothing.
            if name == "scope" {
                out.push_str("scope: (none: no scope granted)\n");
            }
            continue;
        };
        let shown = match (name, value) {
            ("iat" | "exp", Value::Number(n)) => match number_i64(n) {
                Some(t) => time_claim(name, t, now),
                None => "(out of range)".into(),
            },
            (_, Value::String(s)) => printable(s),
            (_, Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => printable(s),
                    _ => "(not a string)".into(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            (_, Value::Number(n)) => match number_i64(n) {
                Some(i) => i.to_string(),
                None => "(a number)".into(),
            },
            (_, Value::Bool(b)) => b.to_string(),
            (_, Value::Null) => "null".into(),
            (_, Value::Object(_)) => "(an object)".into(),
        };
        out.push_str(&format!("{name}: {shown}\n"));
    }
    Ok(out)
}

/// The JWT's payload as a JSON object, or why it is not one.
fn jwt_payload(token: &str) -> Result<mini::Object, &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("not three dot-separated parts");
    }
    // JWTs use base64url without padding (RFC 7515 §2), but some tools pad it anyway.
    let payload = parts[1].trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "the payload is not base64url")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "the payload is not UTF-8")?;
    match mini::from_str(text) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err("the payload is not a JSON object"),
    }
}

fn number_i64(n: &Number) -> Option<i64> {
    match *n {
        Number::U64(u) => i64::try_from(u).ok(),
        Number::I64(i) => Some(i),
        // Some issuers write `1.7e9` or fractions; whole seconds are all that matters here.
        // (`as` saturates; NaN and infinities can't come out of JSON.)
        Number::F64(f) => Some(f as i64),
    }
}

/// `exp` or `iat` as RFC 3339 with the time from now: "(in 59m 12s)", "(expired 3m ago)".
fn time_claim(name: &str, t: i64, now: i64) -> String {
    let when = rfc3339(t).unwrap_or_else(|| t.to_string());
    let relative = match (t >= now, name) {
        (true, "exp") => format!("in {}", span(t - now)),
        (false, "exp") => format!("expired {} ago", span(now - t)),
        // An `iat` in the future means the issuer's clock is ahead of ours.
        (true, _) if t > now => format!("in {}, clock skew?", span(t - now)),
        (true, _) => "now".into(),
        (false, _) => format!("{} ago", span(now - t)),
    };
    format!("{t} = {when} ({relative})")
}

/// The two largest units of a span: "1d 2h", "59m 12s", "3s".
fn span(secs: i64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut left = secs.max(0);
    let mut parts = Vec::new();
    for (size, unit) in units {
        if left >= size || (size == 1 && parts.is_empty()) {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && left == 0) {
            break;
        }
    }
    parts.join(" ")
}

/// Unix seconds as `2026-11-28T23:59:59Z`; `None` outside years 0..=9999.
fn rfc3339(unix: i64) -> Option<String> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian
/// (year, month, day), exact for every i64 we pass (|days| < 2^40 keeps it in range).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.clamp(-(1 << 40), 1 << 40) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn unix_now() -> i64 {
    // A clock before 1970 is broken; 0 only skews the "in ..." hints.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A claim's text with control characters escaped, so a hostile token can't send terminal
/// escape sequences to whoever inspects it.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn write_stdout(text: &str) -> Result<(), Failure> {
    // Not println!: it panics when stdout is closed (`| head`); this is an ordinary error.
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Token(format!("writing stdout: {e}")))
}

/// `LOGTO_LOG=debug|info|warn`: the library's log events on stderr. The library logs under
/// the target `logto_m2m` and never logs a secret or token; ureq's own events are left out,
/// because its most detailed level is not redacted.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("logto_m2m")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "logto-m2m: {} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn init_logger() -> Result<(), Failure> {
    let level = match env("LOGTO_LOG")?.as_deref() {
        None | Some("") => return Ok(()),
        Some("debug") => log::LevelFilter::Debug,
        Some("info") => log::LevelFilter::Info,
        Some("warn") => log::LevelFilter::Warn,
        Some(_) => {
            return Err(Failure::Usage(
                "environment variable LOGTO_LOG: not debug, info or warn".into(),
            ));
        }
    };
    // set_logger fails only when a logger is already set, and this is the only call.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            rfc3339(1_795_910_399).as_deref(),
            Some("2026-11-28T23:59:59Z")
        );
        assert_eq!(rfc3339(-1).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(
            rfc3339(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339(253_402_300_800), None);
        assert_eq!(rfc3339(i64::MIN), None);
        assert_eq!(rfc3339(i64::MAX), None);
    }

    #[test]
    fn spans() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(3552), "59m 12s");
        assert_eq!(span(180), "3m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(90_061), "1d 1h");
    }

    #[test]
    fn claims() {
        // {"aud":["https://a","https://b"],"sub":"x\u001b[31m","exp":1000,"iat":1e3,"jti":"jj"}
        let payload = base64::engine::general_purpose::URL_SAFE.encode(
            r#"{"aud":["https://a","https://b"],"sub":"x\u001b[31m","exp":1000,"iat":1e3,"jti":"jj"}"#,
        );
        assert!(payload.ends_with('='), "padding is accepted too");
        let Ok(text) = claims_text(&format!("eyJ.{payload}.sig"), 1180) else {
            panic!("not read as a JWT");
        };
        assert_eq!(
            text,
            "signature: not verified (this shows what the token claims)\n\
             sub: x\\u{1b}[31m\n\
             aud: https://a, https://b\n\
             scope: (none: no scope granted)\n\
             iat: 1000 = 1970-01-01T00:16:40Z (3m ago)\n\
             exp: 1000 = 1970-01-01T00:16:40Z (expired 3m ago)\n"
        );
        for not_jwt in ["opaque", "a.b", "a.%%%.c", "a.bnVsbA.c"] {
            assert!(claims_text(not_jwt, 0).is_err(), "{not_jwt}");
        }
    }
}
