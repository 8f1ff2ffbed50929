//! The `logto-m2m` command, run as a process against the real peer, as a shell or cron job
//! runs it.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{M2M_BASIC, M2M_NOROLES, M2M_POST, Peer, SHOPPING_API, TempDir, shared_peer};
use miniserde::json::{self, Number, Value};

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        self
    }
}

/// The command with nothing from the developer's environment (no `LOGTO_*`, no proxy) and
/// stdin closed.
fn bare() -> Command {
    let mut cmd = common::program(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.stdin(Stdio::null());
    cmd
}

/// The command configured for `app` at `token_url`, as a cron job would be.
fn configured(token_url: &str, (id, secret): (&str, &str)) -> Command {
    let mut cmd = bare();
    cmd.env("LOGTO_TOKEN_URL", token_url)
        .env("LOGTO_APP_ID", id)
        .env("LOGTO_APP_SECRET", secret)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_TIMEOUT", "10");
    cmd
}

fn cli(peer: &Peer, app: (&str, &str)) -> Command {
    configured(&peer.token_url(), app)
}

/// Runs `cmd` with `args`, feeding `stdin` when given. Bounded: every run has a 10 s token
/// deadline (or none at all to wait for), and stdin is closed after the input.
fn run(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Run {
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run logto-m2m");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write stdin");
        // Dropping the pipe closes it: the command sees EOF.
    }
    let out = child.wait_with_output().expect("wait for logto-m2m");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn is_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The value of the `name: value` line of `inspect`'s output.
fn line<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn token_prints_the_token_alone() {
    let r = run(cli(shared_peer(), M2M_BASIC), &["token"], None);
    r.ok();
    let token = r.stdout.strip_suffix('\n').expect("one line");
    assert!(is_jwt(token), "{token}");
    assert!(!token.contains('\n'));
    assert_eq!(r.stderr, "");
}

#[test]
fn token_format_header() {
    let r = run(
        cli(shared_peer(), M2M_BASIC),
        &["token", "--format", "header", "--scope", "read:products"],
        None,
    );
    r.ok();
    let token = r
        .stdout
        .strip_prefix("Authorization: Bearer ")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(is_jwt(token));
}

#[test]
fn token_format_json() {
    let before = unix_now();
    let r = run(
        cli(shared_peer(), M2M_BASIC),
        &["token", "--format=json", "--scope=read:products"],
        None,
    );
    r.ok();
    let Ok(Value::Object(obj)) = json::from_str::<Value>(&r.stdout) else {
        panic!("not a JSON object: {}", r.stdout);
    };
    let string = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let number = |k: &str| match obj.get(k) {
        Some(Value::Number(Number::U64(n))) => *n,
        other => panic!("{k}: {other:?}"),
    };
    assert!(is_jwt(&string("access_token")));
    assert_eq!(string("token_type"), "Bearer");
    assert_eq!(string("scope"), "read:products");
    let expires_in = number("expires_in");
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");
    let at = number("expires_at_unix");
    assert!(
        at >= before + 3590 && at <= unix_now() + 3600,
        "{at} vs now {before}"
    );
    // The calendar arithmetic has unit tests in the binary; here, the shape and the time of
    // day agree with the Unix seconds.
    let text = string("expires_at");
    let day = at % 86_400;
    let time = format!("T{:02}:{:02}:{:02}Z", day / 3600, day / 60 % 60, day % 60);
    assert_eq!(text.len(), 20, "{text}");
    assert!(text.ends_with(&time), "{text} vs {time}");
    assert_eq!(&text[4..5], "-");
}

#[test]
fn inspect_reads_a_fresh_token_from_stdin() {
    let peer = shared_peer();
    let token = run(
        cli(peer, M2M_BASIC),
        &["token", "--scope", "read:products"],
        None,
    );
    token.ok();
    // Straight from `token`, and from `--format header`.
    let header = format!("Authorization: Bearer {}", token.stdout);
    for input in [token.stdout.as_str(), header.as_str()] {
        // No app configured at all: reading stdin needs no credentials.
        let r = run(bare(), &["inspect", "-"], Some(input));
        r.ok();
        let out = &r.stdout;
        assert!(out.starts_with("signature: not verified"), "{out}");
        assert_eq!(line(out, "sub"), Some("m2m-basic"), "{out}");
        assert_eq!(line(out, "client_id"), Some("m2m-basic"), "{out}");
        assert_eq!(line(out, "aud"), Some(SHOPPING_API), "{out}");
        assert_eq!(line(out, "scope"), Some("read:products"), "{out}");
        assert_eq!(
            line(out, "iss"),
            Some(format!("{}/oidc", peer.base_url()).as_str())
        );
        let exp = line(out, "exp").expect("exp");
        assert!(exp.ends_with("(in 1h)") || exp.contains("(in 59m"), "{exp}");
        assert!(line(out, "iat").expect("iat").contains('T'));
        assert_eq!(line(out, "organization_id"), None);
        assert!(
            !out.contains(token.stdout.trim()),
            "the token is never echoed"
        );
        assert_eq!(r.stderr, "");
    }
}

#[test]
fn inspect_fetches_organization_tokens() {
    let peer = shared_peer();
    // An organization token: no resource, even though LOGTO_RESOURCE is set.
    let r = run(
        cli(peer, M2M_BASIC),
        &[
            "inspect",
            "--resource=",
            "--organization",
            "org-acme",
            "--scope",
            "read:members",
        ],
        None,
    );
    r.ok();
    assert_eq!(
        line(&r.stdout, "aud"),
        Some("urn:logto:organization:org-acme")
    );
    assert_eq!(line(&r.stdout, "scope"), Some("read:members"));
    // An API token for the organization carries the organization_id claim.
    let r = run(
        cli(peer, M2M_BASIC),
        &["inspect", "--organization=org-acme"],
        None,
    );
    r.ok();
    assert_eq!(line(&r.stdout, "aud"), Some(SHOPPING_API));
    assert_eq!(line(&r.stdout, "organization_id"), Some("org-acme"));
}

#[test]
fn inspect_says_when_a_token_is_not_a_jwt() {
    for input in [
        "opaque-token-0123456789abcdef\n",
        "a.!!!.c",
        "a.bm90IGpzb24.c",
        "",
    ] {
        let r = run(bare(), &["inspect", "-"], Some(input));
        assert_eq!(r.code, Some(1), "{input:?}: {}", r.stderr);
        assert_eq!(r.stdout, "");
        let expected = if input.is_empty() {
            "no token on stdin"
        } else {
            "not a JWT"
        };
        assert!(r.stderr.contains(expected), "{input:?}: {}", r.stderr);
        if !input.is_empty() {
            assert!(!r.stderr.contains(input.trim()), "{}", r.stderr);
        }
    }
}

/// Arguments, extra environment, and what the message must name.
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn usage_errors_exit_2_naming_the_flag_or_variable() {
    let peer = shared_peer();
    let cases: &[UsageCase] = &[
        (&[], &[], "no command"),
        (&["fetch"], &[], "unknown command \"fetch\""),
        (&["--bogus"], &[], "unknown flag --bogus"),
        (&["token", "--bogus"], &[], "--bogus"),
        (&["token", "--bogus=1"], &[], "unknown flag --bogus"),
        (&["token", "--resource"], &[], "--resource needs a value"),
        (&["token", "--timeout", "soon"], &[], "--timeout"),
        (&["token", "--timeout=0"], &[], "--timeout"),
        (&["token", "--timeout", "1.5e3"], &[], "--timeout"),
        (&["token", "--format", "xml"], &[], "--format"),
        (
            &["token", "--auth-method", "private_key_jwt"],
            &[],
            "--auth-method",
        ),
        (&["token", "--cache-file="], &[], "--cache-file"),
        (&["token", "extra"], &[], "unexpected argument \"extra\""),
        (
            &["inspect", "--format", "json"],
            &[],
            "unknown flag --format",
        ),
        (
            &["token"],
            &[("LOGTO_AUTH_METHOD", "basic")],
            "LOGTO_AUTH_METHOD",
        ),
        (&["token"], &[("LOGTO_TIMEOUT", "soon")], "LOGTO_TIMEOUT"),
        (&["token"], &[("LOGTO_APP_ID", "")], "LOGTO_APP_ID"),
        (&["token"], &[("LOGTO_LOG", "trace")], "LOGTO_LOG"),
    ];
    for (args, env, needle) in cases {
        let mut cmd = cli(peer, M2M_BASIC);
        cmd.envs(env.iter().copied());
        let r = run(cmd, args, None);
        assert_eq!(r.code, Some(2), "{args:?} {env:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("--help"), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
    }
    // Without any app configured, the missing variable is named.
    let r = run(bare(), &["token"], None);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("LOGTO_APP_ID"), "{}", r.stderr);
}

#[test]
fn help_exits_0() {
    for (args, needle) in [
        (&["--help"][..], "usage: logto-m2m token"),
        (&["token", "--help"], "--format"),
        (&["inspect", "-h"], "NOT verified"),
        (&["token", "--scope", "x", "--help"], "--organization"),
    ] {
        let r = run(bare(), args, None);
        r.ok();
        assert!(r.stdout.contains(needle), "{args:?}: {}", r.stdout);
        assert_eq!(r.stderr, "", "{args:?}");
    }
    // An unknown flag is an error even next to --help.
    let r = run(bare(), &["token", "--bogus", "--help"], None);
    assert_eq!(r.code, Some(2));
}

#[test]
fn both_auth_methods_get_tokens() {
    let peer = shared_peer();
    for (app, how) in [
        (M2M_BASIC, ("--auth-method", "client_secret_basic")),
        (M2M_POST, ("--auth-method", "client_secret_post")),
        (M2M_POST, ("LOGTO_AUTH_METHOD", "client_secret_post")),
    ] {
        let mut cmd = cli(peer, app);
        let mut args = vec!["inspect", "--scope", "read:products"];
        if how.0.starts_with("--") {
            args.extend([how.0, how.1]);
        } else {
            cmd.env(how.0, how.1);
        }
        let r = run(cmd, &args, None);
        r.ok();
        assert_eq!(line(&r.stdout, "sub"), Some(app.0), "{how:?}");
        assert_eq!(line(&r.stdout, "scope"), Some("read:products"), "{how:?}");
    }
}

/// The peer accepts either method from every client and does not say which it saw, so this
/// one test looks at the wire: a listener that records the request and refuses it.
#[test]
fn auth_method_decides_where_the_secret_goes() {
    for (method, expect_basic) in [("client_secret_basic", true), ("client_secret_post", false)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/oidc/token", listener.local_addr().unwrap());
        let server = thread::spawn(move || capture_one_request(&listener));
        let r = run(
            configured(&url, M2M_POST),
            &["token", "--timeout", "5", "--auth-method", method],
            None,
        );
        let request = server.join().unwrap().to_ascii_lowercase();
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains("invalid_client"), "{}", r.stderr);
        let has_basic = request.contains("\r\nauthorization: basic ");
        let has_form = request.contains("client_secret=post-secret-0123456789");
        assert_eq!(
            (has_basic, has_form),
            (expect_basic, !expect_basic),
            "{method}"
        );
    }
}

/// Accepts one connection within 10 s, reads the request (headers and `content-length`
/// body), answers 400 `invalid_client`, and returns the request's text.
fn capture_one_request(listener: &TcpListener) -> String {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no request within 10 s: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf).expect("read the request");
        assert!(n > 0, "closed before the whole request arrived");
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                break;
            }
        }
    }
    let body = r#"{"error":"invalid_client"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn scope_not_granted_is_a_warning_naming_it() {
    // m2m-basic has a role with read:products only.
    let r = run(
        cli(shared_peer(), M2M_BASIC),
        &["token", "--scope", "read:products write:products"],
        None,
    );
    r.ok();
    assert!(is_jwt(r.stdout.trim()));
    let warning: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(warning.len(), 1, "{}", r.stderr);
    let warning = warning[0];
    assert!(warning.contains("warning"), "{warning}");
    assert!(warning.contains("write:products"), "{warning}");
    assert!(!warning.contains("read:products"), "{warning}");
    assert!(warning.contains("machine-to-machine role"), "{warning}");
}

#[test]
fn nothing_granted_prints_no_scope_in_json() {
    // m2m-noroles has no role: the answer and the JWT carry no scope. The JSON tells what
    // was granted, which is what the warning says, never what was asked for.
    let r = run(
        cli(shared_peer(), M2M_NOROLES),
        &["token", "--scope", "read:products", "--format", "json"],
        None,
    );
    r.ok();
    assert!(r.stdout.contains(r#""scope":"""#), "{}", r.stdout);
    assert!(!r.stdout.contains("read:products"), "{}", r.stdout);
    assert!(
        r.stderr.contains("scope not granted: read:products"),
        "{}",
        r.stderr
    );
    let r = run(
        cli(shared_peer(), M2M_NOROLES),
        &["inspect", "--scope", "read:products"],
        None,
    );
    r.ok();
    assert_eq!(line(&r.stdout, "scope"), Some("(none: no scope granted)"));
}

#[test]
fn an_empty_resource_lets_the_server_decide() {
    // `--resource=` sends no resource; the peer (like Logto) answers invalid_target, and
    // the message says that none was sent. A server that needs none would issue a token.
    let r = run(
        cli(shared_peer(), M2M_BASIC),
        &["token", "--resource="],
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("invalid_target"), "{}", r.stderr);
    assert!(
        r.stderr.contains("no resource was asked for"),
        "{}",
        r.stderr
    );
    let mut cmd = cli(shared_peer(), M2M_BASIC);
    cmd.env_remove("LOGTO_RESOURCE");
    let r = run(cmd, &["token"], None);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("invalid_target"), "{}", r.stderr);
}

#[test]
fn flags_override_the_environment() {
    let mut cmd = cli(shared_peer(), M2M_POST);
    cmd.env("LOGTO_SCOPES", "write:products")
        .env("LOGTO_RESOURCE", "https://wrong.api")
        .env("LOGTO_AUTH_METHOD", "client_secret_basic");
    let r = run(
        cmd,
        &[
            "inspect",
            "--resource",
            SHOPPING_API,
            "--scope",
            "read:products",
            "--auth-method=client_secret_post",
            "--timeout=2.5",
        ],
        None,
    );
    r.ok();
    assert_eq!(line(&r.stdout, "aud"), Some(SHOPPING_API));
    assert_eq!(line(&r.stdout, "scope"), Some("read:products"));
}

#[test]
fn token_error_exits_1() {
    let r = run(
        cli(shared_peer(), ("m2m-basic", "wrong-secret")),
        &["token"],
        None,
    );
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("invalid_client"), "{}", r.stderr);
}

#[test]
fn debug_log_shows_events_but_never_the_secret_or_token() {
    let peer = shared_peer();
    let canary = "canary-secret-5f3a9e";
    for method in ["client_secret_basic", "client_secret_post"] {
        // Refused: the secret was sent and the server's error came back.
        let mut cmd = cli(peer, ("m2m-basic", canary));
        cmd.env("LOGTO_LOG", "debug");
        let r = run(cmd, &["token", "--auth-method", method], None);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains("DEBUG logto_m2m"), "{}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(!all.contains(canary), "{method}: {all}");

        // Granted: the token is on stdout only, the real secret nowhere.
        let mut cmd = cli(peer, M2M_BASIC);
        cmd.env("LOGTO_LOG", "debug");
        let r = run(cmd, &["token", "--auth-method", method], None);
        r.ok();
        assert!(r.stderr.contains("logto_m2m"), "{}", r.stderr);
        let token = r.stdout.trim();
        assert!(is_jwt(token));
        assert!(!r.stderr.contains(token), "{}", r.stderr);
        assert!(!r.stderr.contains(M2M_BASIC.1), "{}", r.stderr);
        // Nor a piece of the token (a log of the signature alone would be a leak too).
        for piece in token.split('.') {
            assert!(!r.stderr.contains(piece), "{}", r.stderr);
        }
    }
    // Without LOGTO_LOG, nothing on stderr.
    let r = run(cli(peer, M2M_BASIC), &["token"], None);
    assert_eq!(r.ok().stderr, "");
}

#[test]
fn cache_file_lets_the_second_run_skip_the_request() {
    let peer = Peer::start();
    let dir = TempDir::new("cli-cache");
    let file = dir.path().join("tokens.json");
    let file = file.to_str().expect("UTF-8 temp path");
    let first = run(
        cli(&peer, M2M_BASIC),
        &["token", "--cache-file", file],
        None,
    );
    first.ok();
    let mut cmd = cli(&peer, M2M_BASIC);
    cmd.env("LOGTO_CACHE_FILE", file);
    let second = run(cmd, &["token"], None);
    second.ok();
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(peer.stats().token_requests, 1);
    assert_eq!(second.stderr, "");
}

/// `call` with a path goes to LOGTO_ENDPOINT, for the Management API with scope `all`,
/// without a resource or scope set anywhere.
fn call_cmd(peer: &Peer, (id, secret): (&str, &str)) -> Command {
    let mut cmd = bare();
    cmd.env("LOGTO_ENDPOINT", peer.base_url())
        .env("LOGTO_APP_ID", id)
        .env("LOGTO_APP_SECRET", secret)
        .env("LOGTO_TIMEOUT", "10");
    cmd
}

#[test]
fn call_a_path_lists_the_applications() {
    let peer = Peer::start();
    let r = run(
        call_cmd(&peer, M2M_BASIC),
        &["call", "/api/applications", "-v"],
        None,
    );
    r.ok();
    assert!(r.stdout.contains(r#""id":"m2m-basic""#), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "GET {}/api/applications: http 200",
            peer.base_url()
        )),
        "{}",
        r.stderr
    );
    let stats = peer.stats();
    assert_eq!((stats.token_requests, stats.api_requests), (1, 1));
    // Without -v, nothing on stderr but the body on stdout.
    let r = run(
        call_cmd(&peer, M2M_BASIC),
        &["call", "/api/applications"],
        None,
    );
    r.ok();
    assert_eq!(r.stderr, "");
}

#[test]
fn call_survives_a_key_rotation_with_one_new_token() {
    // Two runs share a token file, so the second starts with a token the API then refuses.
    let peer = Peer::start();
    let dir = TempDir::new("cli-call");
    let file = dir.path().join("tokens.json");
    let file = file.to_str().expect("UTF-8 temp path");
    let products = format!("{}/products", peer.base_url());
    let args = [
        "call",
        &products,
        "--scope",
        "read:products",
        "--cache-file",
        file,
    ];
    run(cli(&peer, M2M_BASIC), &args, None).ok();
    peer.rotate_keys();
    let before = peer.stats();
    let r = run(cli(&peer, M2M_BASIC), &args, None);
    r.ok();
    assert!(r.stdout.contains(r#""products""#), "{}", r.stdout);
    peer.stats().assert_one_retry_since(&before);
}

#[test]
fn call_prints_the_body_of_a_refusal_and_exits_1() {
    let peer = common::shared_peer();
    // m2m-post has no Management API role: Logto's 403, printed, and no retry.
    let r = run(
        call_cmd(peer, M2M_POST),
        &["call", "/api/applications"],
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stdout.contains("auth.forbidden"), "{}", r.stdout);
    assert!(r.stderr.contains("answered http 403"), "{}", r.stderr);
    assert!(r.stderr.contains("scope not granted: all"), "{}", r.stderr);
    // Its own Authorization header is sent as given: no token.
    let r = run(
        call_cmd(peer, M2M_BASIC),
        &[
            "call",
            "/api/applications",
            "--header",
            "Authorization: Basic eDp5",
        ],
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("auth.authorization_token_type_not_supported"),
        "{}",
        r.stdout
    );
}

#[test]
fn call_sends_json_bodies_as_json() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    let api = common::loopback::Loopback::start(4, Duration::from_secs(10), move |c| {
        record.lock().unwrap().push(c.request.clone());
        let _ =
            c.send(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone");
    });
    let url = format!("http://127.0.0.1:{}/items", api.port());
    let peer = common::shared_peer();
    let body = r#" {"name":"widget"}"#;
    let r = run(
        cli(peer, M2M_BASIC),
        &["call", &url, "--data", "@-", "--header", "X-Trace: 7"],
        Some(body),
    );
    r.ok();
    assert_eq!(r.stdout, "done");
    let r = run(
        cli(peer, M2M_BASIC),
        &[
            "call",
            &url,
            "--method",
            "put",
            "--data",
            "a=b",
            "--header",
            "content-type: text/plain",
        ],
        None,
    );
    r.ok();
    api.finish();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].request_line, "POST /items HTTP/1.1");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].header("x-trace"), Some("7"));
    assert_eq!(seen[0].body, body);
    assert!(
        seen[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    );
    assert_eq!(seen[1].request_line, "PUT /items HTTP/1.1");
    assert_eq!(seen[1].headers_named("content-type"), ["text/plain"]);
}

#[test]
fn call_usage_errors_exit_2() {
    let peer = common::shared_peer();
    for (args, needle) in [
        (&["call"][..], "give the url"),
        (
            &["call", "ftp://x"][..],
            "call ftp://x: url must start with https:// or http://",
        ),
        (
            &["call", "https://user:pw@api.example.com/x"][..],
            "url must not contain user info",
        ),
        // Issue 32: the command reads URLs as the library does, scheme in any case, ports
        // up to 65535 (one past it was dropped, and the call went to port 443).
        (&["call", "HTTP://api.example.com/x"][..], "clear text"),
        (
            &["call", "https://api.example.com:99999/x"][..],
            "has a port that is not a number up to 65535",
        ),
        (&["call", "http://api.example.com/x"][..], "clear text"),
        (&["call", "/api/x", "--header", "no-colon"][..], "--header"),
        (&["call", "/api/x", "--method", "GE T"][..], "--method"),
    ] {
        let r = run(call_cmd(peer, M2M_BASIC), args, None);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    // A path needs a Logto endpoint, not a bare token URL.
    let r = run(cli(peer, M2M_BASIC), &["call", "/api/applications"], None);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("LOGTO_ENDPOINT"), "{}", r.stderr);
}

#[test]
fn a_slip_gets_a_did_you_mean() {
    let peer = shared_peer();
    for (args, needle) in [
        (
            &["token", "--scopes", "read:products"][..],
            "did you mean --scope?",
        ),
        (
            &["call", "/api/x", "--hedaer", "a: b"],
            "did you mean --header?",
        ),
        (&["tokne"], "did you mean `token`?"),
        (&["inspect", "--format", "json"], "it is a flag of `token`"),
    ] {
        let r = run(cli(peer, M2M_BASIC), args, None);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "");
    }
    // Nothing near enough: no guess.
    let r = run(cli(peer, M2M_BASIC), &["token", "--bogus"], None);
    assert!(!r.stderr.contains("did you mean"), "{}", r.stderr);
}

#[test]
fn no_command_lists_every_command() {
    let r = run(bare(), &[], None);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    for (name, summary) in [
        ("token", "print an access token"),
        ("inspect", "show a token's claims"),
        ("call", "call an API with a token"),
    ] {
        assert!(
            r.stderr
                .lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains(summary)),
            "{name}: {}",
            r.stderr
        );
    }
    // And `--help` says what `call` exits with, as it does.
    let r = run(bare(), &["help", "call"], None);
    r.ok();
    assert!(r.stdout.contains("0 for a 2xx answer"), "{}", r.stdout);
    assert!(r.stdout.contains("1 for any other answer"), "{}", r.stdout);
}

/// A secret file that anyone can read gets a word on stderr without LOGTO_LOG, the library
/// events come at any case of a level, and `off` silences every warning.
#[cfg(unix)]
#[test]
fn warnings_by_default_and_log_levels_in_any_case() {
    use std::os::unix::fs::PermissionsExt;
    let peer = shared_peer();
    let dir = TempDir::new("cli-secret");
    let path = dir.path().join("secret");
    std::fs::write(&path, M2M_BASIC.1).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let with_file = |log: Option<&str>| {
        let mut cmd = bare();
        cmd.env("LOGTO_TOKEN_URL", peer.token_url())
            .env("LOGTO_APP_ID", M2M_BASIC.0)
            .env("LOGTO_APP_SECRET_FILE", &path)
            .env("LOGTO_RESOURCE", SHOPPING_API)
            .env("LOGTO_TIMEOUT", "10");
        if let Some(level) = log {
            cmd.env("LOGTO_LOG", level);
        }
        run(cmd, &["token"], None)
    };
    let r = with_file(None);
    r.ok();
    assert!(is_jwt(r.stdout.trim()));
    assert!(
        r.stderr.starts_with("logto-m2m: warning: app secret file "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("mode 644"), "{}", r.stderr);
    for off in ["off", "OFF", "Off"] {
        assert_eq!(with_file(Some(off)).ok().stderr, "", "{off}");
    }
    let r = with_file(Some("DEBUG"));
    r.ok();
    assert!(r.stderr.contains("DEBUG logto_m2m"), "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: app secret file"),
        "{}",
        r.stderr
    );
    // Error only: the warning is below it.
    assert_eq!(with_file(Some("Error")).ok().stderr, "");
    // A failed refresh is the error that ends the run, said once (the store's warning
    // that later callers get it too comes only when a later caller does).
    let mut cmd = cli(peer, (M2M_BASIC.0, "wrong-secret-0123456789"));
    cmd.env("LOGTO_CACHE_FILE", dir.path().join("tokens.json"));
    let r = run(cmd, &["token"], None);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("invalid_client"), "{}", r.stderr);
    // Scopes not granted: the library's one warning, shown as it is (issue 32: the command
    // matched the library's text to hide it and said its own); for a token from the
    // token file too, which the next run reads.
    let warning = "logto-m2m: warning: scope not granted: write:products; assign the app a \
                   machine-to-machine role with this permission in the Logto console \
                   (resource https://shopping.api)\n";
    for run_number in [1, 2] {
        let mut cmd = cli(peer, M2M_BASIC);
        cmd.env("LOGTO_CACHE_FILE", dir.path().join("scopes.json"));
        let r = run(
            cmd,
            &["token", "--scope", "read:products write:products"],
            None,
        );
        assert_eq!(r.ok().stderr, warning, "run {run_number}");
    }
    // ... and off silences it too.
    let mut cmd = cli(peer, M2M_BASIC);
    cmd.env("LOGTO_LOG", "off");
    let r = run(
        cmd,
        &["token", "--scope", "read:products write:products"],
        None,
    );
    assert_eq!(r.ok().stderr, "");
}

#[test]
fn call_a_path_says_when_it_leaves_logto_resource_aside() {
    let peer = shared_peer();
    let mut cmd = call_cmd(peer, M2M_BASIC);
    cmd.env("LOGTO_RESOURCE", SHOPPING_API);
    let r = run(cmd, &["call", "/api/applications"], None);
    r.ok();
    assert!(r.stdout.contains(r#""id":"m2m-basic""#), "{}", r.stdout);
    let warning: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(warning.len(), 1, "{}", r.stderr);
    for needle in [
        "warning: call /api/applications: LOGTO_RESOURCE",
        SHOPPING_API,
        "left aside",
        "https://default.logto.app/api",
        "--resource",
    ] {
        assert!(warning[0].contains(needle), "{needle}: {}", warning[0]);
    }
    // Nothing to say when --resource chooses, or when LOGTO_RESOURCE is not set.
    let mut cmd = call_cmd(peer, M2M_BASIC);
    cmd.env("LOGTO_RESOURCE", SHOPPING_API);
    let args = [
        "call",
        "/api/applications",
        "--resource",
        "https://default.logto.app/api",
        "--scope",
        "all",
    ];
    assert_eq!(run(cmd, &args, None).ok().stderr, "");
    // A full url takes LOGTO_RESOURCE as it is, without a word.
    let mut cmd = call_cmd(peer, M2M_BASIC);
    cmd.env("LOGTO_RESOURCE", SHOPPING_API);
    let products = format!("{}/products", peer.base_url());
    let r = run(cmd, &["call", &products, "--scope", "read:products"], None);
    assert_eq!(r.ok().stderr, "");
}

// ---------------------------------------------------------------------------------------
// Issue 34: every page of a list, a polite wait on 429 and 503, what a newcomer tripped on.

use common::loopback::{Loopback, Request, WAIT_TWICE, busy_server};
use std::sync::{Arc, Mutex, PoisonError};

/// What a test API answers: status, header lines (`Name: value`), body.
type Answer = (u16, Vec<String>, String);

/// An API on 127.0.0.1 that answers each request with `answer(request, host)` (`host` is
/// its `host:port`, for absolute links) and records the requests. Every answer closes its
/// connection, so each request is a connection of its own.
fn api(
    answer: impl Fn(&Request, &str) -> Answer + Send + Sync + 'static,
) -> (Loopback, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let server = Loopback::start(32, Duration::from_secs(60), move |c| {
        record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c.request.clone());
        let host = c.request.header("host").unwrap_or_default().to_owned();
        let (status, headers, body) = answer(&c.request, &host);
        let mut text = format!("HTTP/1.1 {status} X\r\n");
        for header in headers {
            text.push_str(&header);
            text.push_str("\r\n");
        }
        text.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        let _ = c.send(text.as_bytes());
    });
    (server, seen)
}

/// The request targets a test API saw, in order.
fn targets(seen: &Mutex<Vec<Request>>) -> Vec<String> {
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    seen.iter().map(|r| r.target().to_owned()).collect()
}

fn page(body: &str, headers: &[&str]) -> Answer {
    (
        200,
        headers.iter().map(|h| (*h).to_owned()).collect(),
        body.to_owned(),
    )
}

fn not_found() -> Answer {
    (404, Vec::new(), r#"{"code":"not_found"}"#.to_owned())
}

/// `call <url> args...` for m2m-basic at the shared peer, with `env`.
fn call(url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = cli(shared_peer(), M2M_BASIC);
    cmd.envs(env.iter().copied());
    let mut all = vec!["call", url];
    all.extend_from_slice(args);
    run(cmd, &all, None)
}

/// Links relative and absolute, several in one header or one each, items whose strings
/// hold quotes, brackets and commas: one array on stdout with every item's bytes as sent.
#[test]
fn paginate_follows_next_links_and_prints_one_array() {
    let (server, seen) = api(|r, host| match r.target() {
        "/items?page_size=2" => page(
            r#"[{"name":"a \"q\" ]"} , "x,y"]"#,
            &[
                r#"Link: </items?page_size=2&page=1>; rel="first", <items?page=2&page_size=2>; rel="next""#,
            ],
        ),
        "/items?page=2&page_size=2" => page(
            "[ \"\\\\\\\"[\" ,\n {\"k\": [1, {\"a\": \"}\"}]} ]",
            &[
                &format!("Link: <http://{host}/items?page=3>; rel=next"),
                r#"Link: </items?page_size=2&page=1>; rel="prev""#,
            ],
        ),
        "/items?page=3" => page("[3]\n", &["Link: </items?page=2>; REL=\"prev\""]),
        _ => not_found(),
    });
    let url = format!("http://127.0.0.1:{}/items?page_size=2", server.port());
    let r = call(&url, &["--paginate", "-v"], &[]);
    r.ok();
    assert_eq!(
        r.stdout,
        "[{\"name\":\"a \\\"q\\\" ]\"},\"x,y\",\"\\\\\\\"[\",{\"k\": [1, {\"a\": \"}\"}]},3]\n"
    );
    let items = json::from_str::<Value>(&r.stdout).unwrap();
    assert!(
        matches!(&items, Value::Array(a) if a.len() == 5),
        "{items:?}"
    );
    assert_eq!(r.stderr.matches(": http 200").count(), 3, "{}", r.stderr);
    assert_eq!(
        targets(&seen),
        [
            "/items?page_size=2",
            "/items?page=2&page_size=2",
            "/items?page=3"
        ]
    );
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer ey"))
    }));
}

/// `Total-Number-Is-Capped: true` and no next link: page+1 until an empty page, as
/// Logto's source tells its clients.
#[test]
fn paginate_asks_page_plus_one_when_the_count_is_capped() {
    let capped = [
        "Total-Number: 1000",
        "Total-Number-Is-Capped: true",
        "Link: </api/logs?page=1>; rel=\"first\"",
    ];
    let (server, seen) = api(move |r, _| match r.target() {
        "/api/logs?page_size=2" => page("[1,2]", &capped),
        "/api/logs?page_size=2&page=2" => page("[3,4]", &capped),
        "/api/logs?page_size=2&page=3" => page("[5]", &capped),
        "/api/logs?page_size=2&page=4" => page("[]", &capped),
        _ => not_found(),
    });
    let url = format!("http://127.0.0.1:{}/api/logs?page_size=2", server.port());
    let r = call(&url, &["--paginate"], &[]);
    r.ok();
    assert_eq!(r.stdout, "[1,2,3,4,5]\n");
    assert_eq!(targets(&seen).len(), 4, "{:?}", targets(&seen));
}

/// Logto's links lack the `/api` its Management API is under (`</users?page=2>` for
/// `/api/users`, which answers 500): on an answer of Logto's, the url asked keeps its path
/// and takes the link's page. Another server's link is followed as it is.
#[test]
fn paginate_takes_only_the_page_from_logtos_links() {
    let answer = |logto: bool| {
        move |r: &Request, host: &str| {
            let mut headers = vec![format!(
                "Link: <http://{host}/users?page_size=1&page=2>; rel=\"next\""
            )];
            if logto {
                headers.push("Logto-Core-Request-Id: abc123".to_owned());
            }
            match r.target() {
                "/api/users?page_size=1" => (200, headers, r#"["u1"]"#.to_owned()),
                "/api/users?page_size=1&page=2" => (200, Vec::new(), r#"["u2"]"#.to_owned()),
                _ => (
                    500,
                    Vec::new(),
                    r#"{"message":"Internal server error."}"#.to_owned(),
                ),
            }
        }
    };
    let (server, seen) = api(answer(true));
    let url = format!("http://127.0.0.1:{}/api/users?page_size=1", server.port());
    let r = call(&url, &["--paginate"], &[]);
    r.ok();
    assert_eq!(r.stdout, "[\"u1\",\"u2\"]\n");
    assert_eq!(targets(&seen)[1], "/api/users?page_size=1&page=2");

    let (server, _) = api(answer(false));
    let url = format!("http://127.0.0.1:{}/api/users?page_size=1", server.port());
    let r = call(&url, &["--paginate"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("/users?page_size=1&page=2 answered http 500 (page 2)"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, r#"{"message":"Internal server error."}"#);
}

/// What ends `--paginate` with exit 1: a link to another origin (never followed: the token
/// goes nowhere else), one back to a page already fetched, a later page that is not a JSON
/// array (printed as it is), a page that is not 2xx (its body printed). Nothing else is
/// printed, so a job never reads a list cut short. A first page that is not an array is
/// the answer, printed as it is, exit 0; and --paginate is for GET alone.
#[test]
fn paginate_stops_at_other_origins_loops_and_pages_that_are_not_arrays() {
    let (server, seen) = api(|r, host| {
        let port = host.rsplit(':').next().unwrap_or_default();
        match r.target() {
            "/elsewhere" => page(
                "[1]",
                &[&format!(
                    "Link: <http://localhost:{port}/elsewhere?page=2>; rel=next"
                )],
            ),
            "/loop" => page("[1]", &["Link: </loop?page=2>; rel=next"]),
            "/loop?page=2" => page("[2]", &["Link: </loop>; rel=next"]),
            "/object" => page("[1]", &["Link: </object?page=2>; rel=next"]),
            "/object?page=2" => page(r#"{"oops":true}"#, &[]),
            "/failing" => page("[1]", &["Link: </failing?page=2>; rel=next"]),
            "/failing?page=2" => (500, Vec::new(), r#"{"error":"x"}"#.to_owned()),
            "/one" => page(r#"{"id":1}"#, &["Link: </one?page=2>; rel=next"]),
            _ => not_found(),
        }
    });
    let base = format!("http://127.0.0.1:{}", server.port());
    let url = |path: &str| format!("{base}{path}");

    let r = call(&url("/elsewhere"), &["--paginate"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("is at another origin; not followed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("the token goes only to {base}")),
        "{}",
        r.stderr
    );

    let r = call(&url("/loop"), &["--paginate"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("is page 1, fetched already"),
        "{}",
        r.stderr
    );

    let r = call(&url("/object"), &["--paginate"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, r#"{"oops":true}"#);
    assert!(
        r.stderr.contains("(page 2): not a JSON array"),
        "{}",
        r.stderr
    );

    let r = call(&url("/failing"), &["--paginate"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, r#"{"error":"x"}"#);
    assert!(
        r.stderr.contains("answered http 500 (page 2)"),
        "{}",
        r.stderr
    );

    let r = call(&url("/one"), &["--paginate"], &[]);
    r.ok();
    assert_eq!(r.stdout, r#"{"id":1}"#);

    assert_eq!(
        targets(&seen),
        [
            "/elsewhere",
            "/loop",
            "/loop?page=2",
            "/object",
            "/object?page=2",
            "/failing",
            "/failing?page=2",
            "/one"
        ]
    );
    for args in [
        &["--paginate", "--data", "{}"][..],
        &["--paginate", "--method", "DELETE"],
    ] {
        let r = call(&url("/one"), args, &[]);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("--paginate"), "{}", r.stderr);
    }
}

/// A GET answered 429 and then 503 is sent again after each `Retry-After` (seconds, then
/// an HTTP date), the wait logged at info; a POST or PATCH never, exit 1 with the status; a
/// wait past the timeout is not begun.
#[test]
fn call_waits_out_429_and_503_for_a_get_and_never_repeats_a_post() {
    let server = busy_server(WAIT_TWICE);
    let url = format!("http://127.0.0.1:{}/items", server.port());
    let started = Instant::now();
    let r = call(&url, &[], &[("LOGTO_LOG", "info")]);
    r.ok();
    assert_eq!(r.stdout, "done");
    server.finish().assert_waited_twice();
    assert!(started.elapsed() < Duration::from_secs(9));
    let waits: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("before calling it again"))
        .collect();
    assert_eq!(waits.len(), 2, "{}", r.stderr);
    assert!(
        waits[0].contains("INFO") && waits[0].contains("http 429; waiting 1s (its Retry-After)"),
        "{}",
        waits[0]
    );
    assert!(waits[1].contains("http 503; waiting 1"), "{}", waits[1]);

    for args in [
        &["--data", "{}"][..],
        &["--method", "PATCH", "--data", "{}"],
    ] {
        let server = busy_server(&[(429, Some("1"))]);
        let url = format!("http://127.0.0.1:{}/items", server.port());
        let r = call(&url, args, &[]);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "busy");
        assert!(
            r.stderr.contains("answered http 429 (retry-after: 1)"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("not sent again"), "{}", r.stderr);
        assert_eq!(server.finish().requests, 1, "{args:?}");
    }

    let server = busy_server(&[(503, Some("60"))]);
    let url = format!("http://127.0.0.1:{}/items", server.port());
    let started = Instant::now();
    let r = call(&url, &["--timeout", "5"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("answered http 503 (retry-after: 60)"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(server.finish().requests, 1);
}

/// On a terminal, a body without a trailing newline gets one, so that the status message
/// starts on its own line; piped, the bytes stay as sent. Under a pseudo-terminal from
/// util-linux's `script`.
#[cfg(unix)]
#[test]
fn call_on_a_terminal_ends_the_bodys_line() {
    let (server, _) = api(|_, _| (403, Vec::new(), r#"{"scope":"write:products"}"#.to_owned()));
    let url = format!("http://127.0.0.1:{}/products", server.port());
    // Piped: the bytes as the API sent them.
    let r = call(&url, &[], &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, r#"{"scope":"write:products"}"#);
    // On a terminal: the message on a line of its own.
    let probe = Command::new("script").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "script (util-linux) not found: this test runs the command on a pseudo-terminal with it"
    );
    // `script` runs the command on a pseudo-terminal with the environment `cli` sets up.
    let configured = cli(shared_peer(), M2M_BASIC);
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c"]).arg(format!(
        "exec '{}' call '{url}'",
        env!("CARGO_BIN_EXE_logto-m2m")
    ));
    script.arg("/dev/null").stdin(Stdio::null());
    for (name, value) in configured.get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    let out = run(script, &[], None);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let terminal = out.stdout.replace("\r\n", "\n");
    assert!(
        terminal.contains("{\"scope\":\"write:products\"}\nlogto-m2m: GET "),
        "{terminal:?}"
    );
}

/// With -v, a refusal is said once (it was twice: the status line, then the error).
#[test]
fn verbose_says_a_404_once() {
    let (server, _) = api(|_, _| not_found());
    let url = format!("http://127.0.0.1:{}/nothing", server.port());
    let r = call(&url, &["-v"], &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.matches("404").count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("GET {url} answered http 404")),
        "{}",
        r.stderr
    );
}

/// Nothing set: every missing variable in one message, in the README's order; a malformed
/// endpoint names the variable that was set, not the token url made of it.
#[test]
fn missing_variables_are_named_at_once_and_a_bad_endpoint_by_its_variable() {
    for args in [&["token"][..], &["inspect"], &["call", "/api/users"]] {
        let r = run(bare(), args, None);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        let at = |name: &str| {
            r.stderr
                .find(name)
                .unwrap_or_else(|| panic!("{args:?}: no {name}: {}", r.stderr))
        };
        assert!(at("LOGTO_ENDPOINT") < at("LOGTO_APP_ID"), "{}", r.stderr);
        assert!(at("LOGTO_APP_ID") < at("LOGTO_APP_SECRET"), "{}", r.stderr);
        assert_eq!(
            r.stderr.lines().count(),
            2,
            "the message and the help hint: {}",
            r.stderr
        );
    }
    let mut cmd = bare();
    cmd.env("LOGTO_APP_ID", "a");
    let r = run(cmd, &["token"], None);
    assert!(
        r.stderr.contains("LOGTO_ENDPOINT") && r.stderr.contains("LOGTO_APP_SECRET"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("LOGTO_APP_ID"), "{}", r.stderr);

    for variable in ["LOGTO_ENDPOINT", "LOGTO_TOKEN_URL"] {
        let mut cmd = bare();
        cmd.env(variable, "example.com")
            .env("LOGTO_APP_ID", "a")
            .env("LOGTO_APP_SECRET", "b");
        let r = run(cmd, &["token"], None);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "environment variable {variable}: must start with https://"
            )),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("token url"), "{}", r.stderr);
    }
}

/// `--help`'s usage lines keep the summaries apart (`verify`'s ran into its own), and each
/// command's help names the variables it reads: `verify` needs no app id or secret.
#[test]
fn help_shows_each_commands_own_variables() {
    let r = run(bare(), &["--help"], None);
    r.ok();
    assert!(!r.stdout.contains("[options]check"), "{}", r.stdout);
    assert!(
        r.stdout.contains("check a token as your API would"),
        "{}",
        r.stdout
    );
    let help = |name: &str| {
        let r = run(bare(), &["help", name], None);
        r.ok();
        r.stdout
    };
    let verify = help("verify");
    assert!(verify.contains("Needs no app id or secret"), "{verify}");
    for absent in [
        "LOGTO_APP_ID",
        "LOGTO_APP_SECRET",
        "LOGTO_CACHE_FILE",
        "LOGTO_CACHE_URL",
    ] {
        assert!(!verify.contains(absent), "{absent}: {verify}");
    }
    assert!(
        verify.contains("LOGTO_ENDPOINT") && verify.contains("LOGTO_LOG"),
        "{verify}"
    );
    for name in ["token", "inspect", "call"] {
        let text = help(name);
        for present in [
            "LOGTO_APP_ID",
            "LOGTO_APP_SECRET_FILE",
            "LOGTO_CACHE_FILE",
            "LOGTO_TIMEOUT",
            "LOGTO_LOG",
        ] {
            assert!(text.contains(present), "{name}: {present}");
        }
    }
    let call = help("call");
    for needle in [
        "--paginate",
        "Retry-After",
        "429",
        "never is",
        "10,000 pages",
    ] {
        assert!(call.contains(needle), "{needle}: {call}");
    }
}

/// A capped count whose pages never end: `--paginate` stops after 10,000 pages with exit 1
/// and prints nothing, instead of running on. The server keeps its connection alive, as
/// Logto does, so the 10,000 requests take seconds.
#[test]
fn paginate_stops_after_10000_pages() {
    let server = Loopback::start(4, Duration::from_secs(300), |c| {
        loop {
            let answer =
                "HTTP/1.1 200 OK\r\nTotal-Number-Is-Capped: true\r\nContent-Length: 3\r\n\r\n[1]";
            if !c.send(answer.as_bytes()) || !c.next_request() {
                break;
            }
        }
    });
    let url = format!("http://127.0.0.1:{}/logs", server.port());
    let r = call(&url, &["--paginate"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("more than 10000 pages"), "{}", r.stderr);
    assert_eq!(server.finish().requests, 10_000);
}
