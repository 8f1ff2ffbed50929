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

// The flags of a token exchange, in the folder the command's modules go to (a crate
// root's `mod` looks beside it, hence the path).
#[path = "logto-m2m/subject.rs"]
mod subject;

use logto_m2m::{AuthMethod, Claims, Config, Error, ErrorKind, Token, TokenRequest, TokenStore};
use miniserde::json as mini;

const MAIN_HELP: &str = "\
logto-m2m: OAuth 2.0 client_credentials tokens for Logto machine-to-machine apps

usage: logto-m2m token [options]      print an access token
       logto-m2m inspect [-] [options] show a token's claims (read from stdin with -)
       logto-m2m call <url-or-path> [options]
                                      call an API with a token (retried once on 401)

Run `logto-m2m help <command>` for its options. The app comes from the environment:
LOGTO_ENDPOINT (or LOGTO_TOKEN_URL), LOGTO_APP_ID, LOGTO_APP_SECRET (or
LOGTO_APP_SECRET_FILE, a file that holds it, read for each token request).

Exit status: 0 success, 1 token error, 2 usage error.
";

/// The flags `token` and `inspect` share: what to ask for and how.
// No `\` after the opening quote: it would swallow the first line's indentation too.
const REQUEST_HELP: &str =
    "  --resource <url>        API indicator (resource); default $LOGTO_RESOURCE; without
                          one none is sent (Logto needs one, or --organization)
  --scope <scopes>        scope to ask for; repeatable, space-separated values split;
                          replaces $LOGTO_SCOPES
  --organization <id>     Logto organization id; without a resource, an organization token
  --cache-file <path>     token file shared by runs; default $LOGTO_CACHE_FILE
  --auth-method <method>  client_secret_basic or client_secret_post;
                          default $LOGTO_AUTH_METHOD, else client_secret_basic
  --timeout <seconds>     whole-exchange deadline, e.g. 10 or 2.5;
                          default $LOGTO_TIMEOUT, else 30
  -h, --help              this help

Environment: LOGTO_ENDPOINT or LOGTO_TOKEN_URL, LOGTO_APP_ID, LOGTO_APP_SECRET or
LOGTO_APP_SECRET_FILE (required; the file is read for each token request);
LOGTO_CACHE_URL=redis://host:port/db shares tokens through Redis (built with the redis
feature; also rediss://, redis+sentinel:// and redis+cluster://; a token file, when given,
is used instead), with LOGTO_CACHE_CA_FILE, LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE
(PEM) for TLS; LOGTO_LOG=debug|info|warn prints the library's log events on stderr (and
at debug, the store's counters at exit).
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

const CALL_HELP: &str = "\
usage: logto-m2m call <url-or-path> [options]

Calls an API with `Authorization: Bearer <token>` and prints the answer's body on stdout.
When the API answers 401 (the token was revoked, or the signing key rotated), the token is
dropped and the call made once more with a fresh one; never on 403. Exit status 0 for a
2xx answer, 1 otherwise (the body is still printed).

A path (`/api/applications`) is a call to Logto itself: it goes to $LOGTO_ENDPOINT, and the
token is for the Logto Management API unless --resource says otherwise
(https://<tenant>.logto.app/api on Logto Cloud, https://default.logto.app/api when
self-hosted), with scope `all` unless --scope says otherwise.

  --method <method>       GET by default, POST with --data
  --data <text>           the request body; @file reads a file, @- stdin. A body that
                          starts with { or [ is sent as application/json
  --header 'K: V'         an extra request header; repeatable
  -v, --verbose           the answer's status line on stderr
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
            let help = match args.first().map(String::as_str) {
                Some(c @ ("token" | "inspect" | "call")) => format!("logto-m2m {c} --help"),
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
        // `help <command>` is `<command> --help`, as in git and cargo.
        "help" if !rest.is_empty() => return run(&[rest[0].clone(), "--help".into()]),
        "-h" | "--help" | "help" => return write_stdout(MAIN_HELP),
        "-V" | "--version" => {
            return write_stdout(concat!("logto-m2m ", env!("CARGO_PKG_VERSION"), "\n"));
        }
        "token" | "inspect" | "call" => {}
        flag if flag.starts_with('-') => {
            return Err(Failure::Usage(format!(
                "unknown flag {flag}: give a command first, `token`, `inspect` or `call`"
            )));
        }
        other => return Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
    let opts = parse_flags(command, rest)?;
    if opts.help {
        let help = match command {
            "token" => TOKEN_HELP,
            "call" => CALL_HELP,
            _ => INSPECT_HELP,
        };
        return write_stdout(&format!("{help}\n{}{REQUEST_HELP}", subject::HELP));
    }
    init_logger()?;
    if command == "call" {
        return call(&opts);
    }
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
    /// `--timeout`, as given: `setup` hands it to the library in place of `LOGTO_TIMEOUT`.
    timeout: Option<String>,
    format: Format,
    /// `inspect -`: read the token from stdin.
    stdin: bool,
    /// `call`: the URL or path, method, body, extra headers, and `-v`.
    target: Option<String>,
    method: Option<String>,
    data: Option<String>,
    headers: Vec<(String, String)>,
    verbose: bool,
    /// `--impersonate`, `--context`, `--pat-file`, `--subject-token-file`.
    subject: subject::SubjectFlags,
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
        if command == "call" && (arg == "-v" || arg == "--verbose") {
            opts.verbose = true;
            continue;
        }
        if command == "call" && !arg.starts_with('-') && opts.target.is_none() {
            opts.target = Some(arg.clone());
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
        ) || subject::SubjectFlags::knows(flag)
            || (flag == "--format" && command == "token")
            || (matches!(flag, "--method" | "--data" | "--header") && command == "call");
        if !known {
            return Err(Failure::Usage(format!(
                "unknown flag {flag} for `{command}`"
            )));
        }
        let value = match inline.or_else(|| args.next().cloned()) {
            Some(v) => v,
            None => return Err(Failure::Usage(format!("{flag} needs a value"))),
        };
        // An empty `--scope` asks for no scope, an empty `--resource` for none (an
        // organization token while LOGTO_RESOURCE is set), and `--data ''` sends an empty
        // body; elsewhere empty is a mistake.
        if value.trim().is_empty() && !matches!(flag, "--scope" | "--resource" | "--data") {
            return Err(Failure::Usage(format!("{flag}: empty value")));
        }
        match flag {
            "--resource" => opts.resource = Some(value),
            "--scope" => opts
                .scopes
                .get_or_insert_with(Vec::new)
                .extend(value.split_ascii_whitespace().map(str::to_owned)),
            "--organization" => opts.organization = Some(value),
            "--method" => opts.method = Some(value.to_ascii_uppercase()),
            "--data" => opts.data = Some(value),
            "--header" => {
                let (name, v) = value.split_once(':').ok_or_else(|| {
                    Failure::Usage(format!("--header: {value:?} is not `Name: value`"))
                })?;
                opts.headers
                    .push((name.trim().to_owned(), v.trim().to_owned()));
            }
            "--cache-file" => opts.cache_file = Some(value),
            "--auth-method" => {
                let method = value.parse().map_err(|_| {
                    Failure::Usage(format!(
                        "--auth-method: {value:?} is not client_secret_basic or client_secret_post"
                    ))
                })?;
                opts.auth_method = Some(method);
            }
            // Read by the library as it reads LOGTO_TIMEOUT, which it stands in for.
            "--timeout" => opts.timeout = Some(value),
            flag if subject::SubjectFlags::knows(flag) => opts.subject.set(flag, value),
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

/// What a run asks for and where it keeps tokens: the config and request from `opts` and
/// the environment (`defaults` stand in for `LOGTO_RESOURCE` and `LOGTO_SCOPES` when a
/// command has its own), and a store with the token file or Redis when one is set.
struct Setup {
    config: Config,
    request: TokenRequest,
    /// `None`: no shared cache, one exchange.
    store: Option<TokenStore>,
}

/// The resource and scopes a command asks for when no flag says: `None` reads
/// `LOGTO_RESOURCE` and `LOGTO_SCOPES`.
type Defaults<'a> = Option<(&'a str, &'a str)>;

fn setup(opts: &Options, defaults: Defaults<'_>) -> Result<Setup, Failure> {
    // `--timeout` stands in for LOGTO_TIMEOUT, so the library reads both the same way.
    let mut config = Config::from_vars(|name| match (name, &opts.timeout) {
        ("LOGTO_TIMEOUT", Some(flag)) => Some(flag.into()),
        _ => std::env::var_os(name),
    })
    .map_err(|e| match (e.kind(), &opts.timeout) {
        (
            ErrorKind::Env {
                variable: "LOGTO_TIMEOUT",
                reason,
            },
            Some(flag),
        ) => Failure::Usage(format!("--timeout: {flag:?} is {reason}")),
        _ => Failure::from(e),
    })?;
    if let Some(method) = opts.auth_method {
        config = config.auth_method(method);
    }
    let resource = match (&opts.resource, defaults) {
        (Some(r), _) => r.clone(),
        (None, Some((resource, _))) => resource.to_owned(),
        (None, None) => env("LOGTO_RESOURCE")?.unwrap_or_default(),
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
        None => match defaults {
            Some((_, scopes)) => request = request.scope(scopes),
            None => request = request.scope(&env("LOGTO_SCOPES")?.unwrap_or_default()),
        },
    }
    if let Some(org) = &opts.organization {
        request = request.organization(org);
    }
    let request = opts.subject.apply(request)?;
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
    Ok(Setup {
        config,
        request,
        store,
    })
}

/// The token for `opts` and the environment. Warns on stderr of asked scopes the server did
/// not grant, and of a token file it could not use.
fn fetch(opts: &Options) -> Result<Arc<Token>, Failure> {
    let Setup {
        config,
        request,
        store,
    } = setup(opts, None)?;
    let token = match store {
        None => Arc::new(logto_m2m::request_token(&config, &request)?),
        Some(store) => {
            let token = store.get(&request);
            log_stats(&store);
            let token = token?;
            // The file or Redis is only a cache: without it we still got a token.
            if let Some(problem) = store.last_cache_error() {
                eprintln!("logto-m2m: warning: {problem}");
            }
            token
        }
    };
    warn_missing_scopes(&config, &request, &token, opts.subject.is_set());
    Ok(token)
}

/// The warning for asked scopes the server did not grant.
fn warn_missing_scopes(config: &Config, request: &TokenRequest, token: &Token, for_user: bool) {
    let missing = token.missing_scopes(request);
    if !missing.is_empty() {
        // The server drops scopes the app has no role for without an error; this is the
        // most common reason an API then answers 403.
        let these = if missing.len() == 1 {
            "this permission"
        } else {
            "these permissions"
        };
        let fix = if for_user {
            // A token exchange: the scopes are the user's roles'.
            format!("assign the user a role with {these} in the Logto console")
        } else if !config.is_logto() {
            format!("grant the app {these} on the authorization server")
        } else if request.resource().is_empty() {
            format!("assign the app an organization role with {these} in the Logto console")
        } else {
            format!("assign the app a machine-to-machine role with {these} in the Logto console")
        };
        eprintln!(
            "logto-m2m: warning: scope not granted: {}; {fix}",
            missing.join(" ")
        );
    }
}

/// `call`: the API call with the token, retried once on 401 by the library's
/// `TokenStore::call`; the body to stdout, the status line to stderr with `-v`.
fn call(opts: &Options) -> Result<(), Failure> {
    let target = opts.target.as_deref().ok_or_else(|| {
        Failure::Usage("call: give the url (https://...) or a path on Logto (/api/...)".into())
    })?;
    let (url, defaults) = match target.strip_prefix('/') {
        // A path is on Logto itself, and Logto's only API there is the Management API.
        Some(_) => {
            let endpoint = env("LOGTO_ENDPOINT")?.filter(|e| !e.is_empty()).ok_or_else(|| {
                Failure::Usage(format!(
                    "call {target}: a path needs LOGTO_ENDPOINT (the Logto base url); give a full url otherwise"
                ))
            })?;
            let endpoint = endpoint.trim_end_matches('/');
            (
                format!("{endpoint}{target}"),
                Some((management_api(endpoint), "all")),
            )
        }
        None if target.starts_with("https://") || target.starts_with("http://") => {
            (target.to_owned(), None)
        }
        None => {
            return Err(Failure::Usage(format!(
                "call: {target:?} is neither a url (https://...) nor a path (/api/...)"
            )));
        }
    };
    // The token must not cross a network in clear text (the library holds its token
    // endpoint to the same rule).
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(Failure::Usage(format!(
                "call {url}: plain http to a host that is not loopback would send the token in \
                 clear text; use https"
            )));
        }
    }
    let defaults = defaults.as_ref().map(|(r, s)| (r.as_str(), *s));
    let Setup {
        config,
        request,
        store,
    } = setup(opts, defaults)?;
    let store = store.unwrap_or_else(|| TokenStore::new(config.clone()));
    let body = match opts.data.as_deref() {
        None => None,
        Some("@-") => Some(read_all(io::stdin(), "stdin")?),
        Some(d) if d.starts_with('@') => {
            let path = &d[1..];
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::Usage(format!("--data @{path}: {e}")))?;
            Some(read_all(file, path)?)
        }
        Some(text) => Some(text.as_bytes().to_vec()),
    };
    let method = opts
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let method = ureq::http::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::Usage(format!("--method: {method:?} is not an http method")))?;
    // Every answer is one to print; redirects are not followed: the token goes to the url
    // given and nowhere else (and so does the body).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(config.timeout_value()))
        .allow_non_standard_methods(true)
        .build()
        .into();
    let is_json = body
        .as_deref()
        .and_then(|b| b.iter().find(|c| !c.is_ascii_whitespace()))
        .is_some_and(|c| matches!(c, b'{' | b'['));
    let has_content_type = opts
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    let send = |authorization: &str| {
        let mut builder = ureq::http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("authorization", authorization);
        for (name, value) in &opts.headers {
            if !name.eq_ignore_ascii_case("authorization") {
                builder = builder.header(name, value);
            }
        }
        if is_json && !has_content_type {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(body.clone().unwrap_or_default())
            .map_err(|e| ureq::Error::Other(format!("the request can't be built: {e}").into()))?;
        agent.run(request)
    };
    // A request that says who it is itself keeps its own `Authorization` (as with the
    // library's `Bearer`): no token, no retry.
    let own = opts
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let mut answer = match own {
        Some((_, value)) => {
            send(value).map_err(|e| Failure::Token(format!("api call failed: {e}")))?
        }
        None => {
            let answer = store.call(&request, send);
            log_stats(&store);
            let answer = answer.map_err(|e| match e {
                logto_m2m::CallError::Token(e) => Failure::from(e),
                other => Failure::Token(other.to_string()),
            })?;
            if let Ok(token) = store.get(&request) {
                warn_missing_scopes(&config, &request, &token, opts.subject.is_set());
            }
            if let Some(problem) = store.last_cache_error() {
                eprintln!("logto-m2m: warning: {problem}");
            }
            answer
        }
    };
    let status = answer.status();
    if opts.verbose {
        eprintln!("logto-m2m: {} {url}: http {}", method, status.as_u16());
    }
    let mut out = io::stdout().lock();
    io::copy(&mut answer.body_mut().as_reader(), &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Token(format!("reading the answer of {url}: {e}")))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::Token(format!(
            "{method} {url} answered http {}",
            status.as_u16()
        )))
    }
}

/// The Logto Management API's indicator for a Logto `endpoint`: the tenant's own on Logto
/// Cloud (`https://<tenant>.logto.app/api`), `https://default.logto.app/api` elsewhere.
fn management_api(endpoint: &str) -> String {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    match host.strip_suffix(".logto.app") {
        Some(tenant) if !tenant.is_empty() && !tenant.contains('.') => {
            format!("https://{tenant}.logto.app/api")
        }
        _ => "https://default.logto.app/api".into(),
    }
}

fn read_all(mut from: impl Read, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    from.read_to_end(&mut bytes)
        .map_err(|e| Failure::Usage(format!("--data: reading {what}: {e}")))?;
    Ok(bytes)
}

/// With `LOGTO_LOG=debug`, what the store did (`TokenStore::stats`): the run's last line.
fn log_stats(store: &TokenStore) {
    log::debug!(target: "logto_m2m::command", "store stats: {:?}", store.stats());
}

/// The store sharing tokens through the Redis at `LOGTO_CACHE_URL`.
#[cfg(feature = "redis")]
fn with_redis(store: TokenStore, url: &str) -> Result<TokenStore, Failure> {
    let mut redis = logto_m2m::RedisCache::new(url)
        .map_err(|e| Failure::Usage(format!("environment variable LOGTO_CACHE_URL: {e}")))?;
    // For rediss://: the CA that signed the servers' certificates, and a client
    // certificate with its key, each a PEM file.
    let pem = |var: &'static str| match env(var)?.filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
            Failure::Usage(format!(
                "environment variable {var}: cannot read {path}: {e}"
            ))
        }),
    };
    let usage = |what: &'static str| move |e: Error| Failure::Usage(format!("{what}: {e}"));
    if let Some(ca) = pem("LOGTO_CACHE_CA_FILE")? {
        redis = redis
            .root_certificates_pem(&ca)
            .map_err(usage("environment variable LOGTO_CACHE_CA_FILE"))?;
    }
    match (pem("LOGTO_CACHE_CERT_FILE")?, pem("LOGTO_CACHE_KEY_FILE")?) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            redis = redis.client_certificate_pem(&cert, &key).map_err(usage(
                "environment variables LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE",
            ))?
        }
        _ => {
            return Err(Failure::Usage(
                "environment variables LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE: set \
                 both or neither"
                    .into(),
            ));
        }
    }
    Ok(store.token_cache(redis))
}

/// Without the `redis` feature a URL set anyway is a usage error, not silently ignored.
#[cfg(not(feature = "redis"))]
fn with_redis(_: TokenStore, _: &str) -> Result<TokenStore, Failure> {
    Err(Failure::Usage(
        "environment variable LOGTO_CACHE_URL: set, but this build has no redis feature \
         (cargo install --locked logto-m2m --features redis)"
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

/// Appends `"name":` and `value` as a JSON string (miniserde escapes it), or `null`.
fn push_field(out: &mut String, name: &str, value: Option<&str>) {
    out.push_str(&mini::to_string(name));
    out.push(':');
    match value {
        Some(v) => out.push_str(&mini::to_string(v)),
        None => out.push_str("null"),
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
            push_field(&mut out, "access_token", Some(token.access_token()));
            out.push_str(",\"token_type\":\"Bearer\",\"expires_in\":");
            // Seconds left now, not the lifetime granted: a token from the cache file may
            // be half used, and this is what a script wants to compare against.
            match expires_at {
                Some(at) => out.push_str(&at.saturating_sub(now).max(0).to_string()),
                None => out.push_str(&token.expires_in().as_secs().to_string()),
            }
            out.push(',');
            // What was granted, never what was asked: "" when nothing was.
            push_field(&mut out, "scope", Some(token.scope().unwrap_or("")));
            out.push(',');
            push_field(
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

fn inspect(token: &str) -> Result<(), Failure> {
    write_stdout(&claims_text(token, unix_now())?)
}

/// `inspect`'s output for `token` at Unix time `now`: the claims that explain most
/// refusals, in the order one reads them (who issued it, to whom, for which API and
/// permissions, and when). Never the token itself.
fn claims_text(token: &str, now: i64) -> Result<String, Failure> {
    let claims = Claims::from_jwt(token).ok_or_else(|| {
        Failure::Token(
            "the token is not a JWT (three base64url parts, the middle one a JSON object): it \
             is opaque, and only the server that issued it can say what it grants"
                .into(),
        )
    })?;
    let mut out = String::from("signature: not verified (this shows what the token claims)\n");
    let mut line = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push_str(&format!("{name}: {v}\n"));
        }
    };
    line("iss", claims.iss.as_deref().map(printable));
    line("sub", claims.sub.as_deref().map(printable));
    line("client_id", claims.client_id.as_deref().map(printable));
    let aud: Vec<String> = claims.aud.iter().map(|a| printable(a)).collect();
    line("aud", (!aud.is_empty()).then(|| aud.join(", ")));
    // No scope claim is the answer to a 403: the server granted nothing.
    line(
        "scope",
        Some(match &claims.scope {
            Some(scope) => printable(scope),
            None => "(none: no scope granted)".into(),
        }),
    );
    line(
        "organization_id",
        claims.organization_id.as_deref().map(printable),
    );
    line("iat", claims.iat.map(|t| time_claim("iat", t, now)));
    line("exp", claims.exp.map(|t| time_claim("exp", t, now)));
    Ok(out)
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

/// Unix seconds as `2026-11-28T23:59:59Z`; `None` outside years 1970..=9999.
///
/// The calendar is httpdate's (a dependency already): its HTTP date, `Sat, 28 Nov 2026
/// 23:59:59 GMT`, rearranged. Its formatter panics past the year 9999, hence the range.
fn rfc3339(unix: i64) -> Option<String> {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(0..=LAST).contains(&unix) {
        return None;
    }
    let at = UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs());
    let http = httpdate::fmt_http_date(at);
    // "Www, DD Mon YYYY HH:MM:SS GMT": fixed width, English month names.
    let (day, month, year, time) = (&http[5..7], &http[8..11], &http[12..16], &http[17..25]);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|&name| name == month)? + 1;
    Some(format!("{year}-{m:02}-{day}T{time}Z"))
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
    use base64::Engine;

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
        assert_eq!(rfc3339(-1), None);
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
