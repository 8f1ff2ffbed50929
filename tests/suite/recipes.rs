//! A newcomer's first hour: the README's recipes run as written, and the messages for the
//! likeliest slips say what to do. Against the real peer, through the programs users run
//! (the `logto-m2m` command, the `get_token` example, `/bin/sh` for the cron line,
//! `examples/local_peer.sh`).

use crate::common;

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::loopback::{Loopback, Request};
use common::{M2M_BASIC, Peer, SHOPPING_API, TempDir, shared_peer};
use logto_m2m::{Config, ErrorKind, TokenRequest, request_token};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `logto-m2m` command with nothing from the developer's environment.
fn command() -> Command {
    let mut cmd = common::program(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.stdin(Stdio::null());
    cmd
}

/// The command or example `cmd` for m2m-basic at `endpoint`, with `args`.
fn run_for(mut cmd: Command, endpoint: &str, args: &[&str]) -> Output {
    cmd.env("LOGTO_ENDPOINT", endpoint)
        .env("LOGTO_APP_ID", M2M_BASIC.0)
        .env("LOGTO_APP_SECRET", M2M_BASIC.1)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_TIMEOUT", "10")
        .args(args)
        .output()
        .expect("run the program")
}

/// A server that takes whatever comes, records it, and answers `200 OK`: the API of the
/// cron recipe, or a token endpoint that must see nothing.
fn recording_server() -> (Loopback, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let server = Loopback::start(8, Duration::from_secs(30), move |c| {
        record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c.request.clone());
        c.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    });
    (server, seen)
}

/// The README's ```cron lines, each without its schedule (the five time fields).
fn readme_cron_commands() -> Vec<String> {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut lines = readme.lines().skip_while(|l| *l != "```cron");
    lines.next().expect("a ```cron block in the README");
    let commands: Vec<String> = lines
        .take_while(|l| !l.starts_with("```"))
        .map(|line| {
            // `%` would be a newline to cron: the line must not have one.
            assert!(!line.contains('%'), "{line}");
            let mut rest = line;
            for _ in 0..5 {
                rest = rest.trim_start();
                rest = &rest[rest.find(' ').expect("five schedule fields")..];
            }
            rest.trim().to_owned()
        })
        .collect();
    assert!(!commands.is_empty(), "a line in the ```cron block");
    commands
}

/// A cron line as cron runs it: `/bin/sh -c`, an environment of `HOME`, `LOGNAME`,
/// `SHELL` and cron's `PATH=/usr/bin:/bin` (no `~/.cargo/bin`).
#[cfg(unix)]
fn cron(job: &str, home: &std::path::Path) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(job)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("LOGNAME", "cron-test")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .expect("run /bin/sh")
}

/// A `$HOME` with the command installed where `cargo install` puts it.
#[cfg(unix)]
fn home_with_the_command(dir: &TempDir) -> std::path::PathBuf {
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_logto-m2m"),
        home.join(".cargo/bin/logto-m2m"),
    )
    .unwrap();
    home
}

/// `line` with each `(from, to)` swapped, failing when the README's line lost a `from`.
fn swapped(line: &str, swaps: &[(&str, &str)]) -> String {
    let mut job = line.to_owned();
    for (from, to) in swaps {
        assert!(
            job.contains(from),
            "the README's cron line lost {from}: {line}"
        );
        job = job.replace(from, to);
    }
    job
}

/// The cron job's env file: the app's variables, as the README says (each line names the
/// API it calls), with m2m-basic at `peer` and `secret`.
#[cfg(unix)]
fn write_env_file(path: &std::path::Path, peer: &Peer, secret: &str) {
    fs::write(
        path,
        format!(
            "export LOGTO_ENDPOINT={} LOGTO_APP_ID={} LOGTO_APP_SECRET={secret}\n",
            peer.base_url(),
            M2M_BASIC.0,
        ),
    )
    .unwrap();
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The README's cron line, run as cron runs it: `/bin/sh -c`, an environment of `HOME`,
/// `LOGNAME`, `SHELL` and cron's `PATH=/usr/bin:/bin` (no `~/.cargo/bin`), with the
/// command installed where `cargo install` puts it. Only the env file, the metrics file
/// and the API's URL are swapped for local ones. It sends the metrics with the token, makes
/// one token request in two runs (the token file, its folder created), and when no token
/// can be had it fails without calling the API at all.
#[cfg(unix)]
#[test]
fn the_cron_line_works_as_written_and_skips_the_api_without_a_token() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl not found: the README's cron recipe uses it (apt-get install curl)");
    }
    let peer = Peer::start();
    let (api, seen) = recording_server();
    let dir = TempDir::new("cron");
    let home = home_with_the_command(&dir);
    let env_file = dir.path().join("logto.env");
    let metrics = dir.path().join("metrics.json");
    fs::write(&metrics, r#"{"queue_depth":7}"#).unwrap();
    let write_env = |secret: &str| write_env_file(&env_file, &peer, secret);

    let line = readme_cron_commands()[0].clone();
    let api_url = format!("http://127.0.0.1:{}/metrics", api.port());
    // The API's own address, never its resource indicator (issue 34).
    assert!(
        line.contains(&format!("--resource {SHOPPING_API} ")),
        "{line}"
    );
    let job = swapped(
        &line,
        &[
            ("/etc/myjob/logto.env", env_file.to_str().unwrap()),
            ("/var/lib/myjob/metrics.json", metrics.to_str().unwrap()),
            ("https://api.shop.example/metrics", api_url.as_str()),
        ],
    );
    let cron = |job: &str| cron(job, &home);
    let requests = || seen.lock().unwrap_or_else(PoisonError::into_inner).clone();

    write_env(M2M_BASIC.1);
    for run in 1..=2 {
        let out = cron(&job);
        assert!(out.status.success(), "run {run}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "run {run}");
        let sent = requests();
        assert_eq!(sent.len(), run, "run {run}: one API call per run");
        let call = &sent[run - 1];
        assert_eq!(call.request_line, "POST /metrics HTTP/1.1");
        let auth = call.header("authorization").unwrap_or_default();
        assert!(auth.starts_with("Bearer eyJ"), "{auth}");
        assert_eq!(call.body, r#"{"queue_depth":7}"#);
    }
    assert_eq!(
        peer.stats().token_requests,
        1,
        "the token file served run 2"
    );
    let cache = home.join(".cache/myjob");
    assert!(
        line.contains("$HOME/.cache/myjob/"),
        "the token file is under $HOME/.cache/myjob: {line}"
    );
    assert_eq!(
        mode(&cache),
        0o700,
        "the token file's folder, created by run 1"
    );
    assert_eq!(mode(&home.join(".cache")), 0o700);

    // No token to be had (a wrong secret and no token file): the command's message on
    // stderr, a failing status, and no API call without a token.
    fs::remove_dir_all(&cache).unwrap();
    write_env("wrong-secret-0123456789");
    let out = cron(&job);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("logto-m2m: "), "{stderr}");
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert_eq!(requests().len(), 2, "the API was called without a token");
}

/// The README's second cron line, the nightly users list through `call --paginate`, as
/// cron runs it: the file is replaced only when the command succeeded, and holds one JSON
/// array. The test peer's Management API has `/api/applications` (one page), not
/// `/api/users`: the path is swapped; the real Logto's pages are
/// `tests/real_logto/main.rs`'s `command_call_paginates_every_user`.
#[cfg(unix)]
#[test]
fn the_nightly_list_line_replaces_its_file_only_on_success() {
    let peer = shared_peer();
    let dir = TempDir::new("cron-list");
    let home = home_with_the_command(&dir);
    let env_file = dir.path().join("logto.env");
    let users = dir.path().join("users.json");
    let line = readme_cron_commands()
        .into_iter()
        .find(|l| l.contains("--paginate"))
        .expect("a cron line with --paginate");
    let job = swapped(
        &line,
        &[
            ("/etc/myjob/logto.env", env_file.to_str().unwrap()),
            ("/var/lib/myjob/users.json", users.to_str().unwrap()),
            (
                "/api/users?page_size=100",
                "/api/applications?page_size=100",
            ),
        ],
    );
    let write_env = |secret: &str| write_env_file(&env_file, peer, secret);
    write_env(M2M_BASIC.1);
    let out = cron(&job, &home);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let list = fs::read_to_string(&users).unwrap();
    assert!(list.starts_with("[{") && list.ends_with("]\n"), "{list}");
    assert!(list.contains(r#""id":"m2m-basic""#), "{list}");

    // No token: the command fails, and yesterday's file stays as it was.
    write_env("wrong-secret-0123456789");
    fs::remove_dir_all(home.join(".cache")).unwrap();
    let out = cron(&job, &home);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid_client"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&users).unwrap(), list);
}

/// `LOGTO_CACHE_FILE` in a folder that does not exist yet, as in the README
/// (`$HOME/.cache/my-job/...`): the first run creates it (0700) and writes the file, the
/// second makes no request. A folder that can't be made is named in the warning, and the
/// token comes from the network anyway.
#[test]
fn the_token_files_folder_is_created_when_missing() {
    let peer = Peer::start();
    let dir = TempDir::new("folder");
    let file = dir.path().join("cache/my-job/logto-token.json");
    for _ in 0..2 {
        let mut cmd = common::example("get_token");
        cmd.env("LOGTO_CACHE_FILE", &file);
        let out = run_for(cmd, &peer.base_url(), &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "");
    }
    assert!(file.is_file());
    assert_eq!(peer.stats().token_requests, 1);
    #[cfg(unix)]
    for folder in ["cache", "cache/my-job"] {
        assert_eq!(mode(&dir.path().join(folder)), 0o700, "{folder}");
    }

    fs::write(dir.path().join("a-file"), "").unwrap();
    let blocked = dir.path().join("a-file/my-job/logto-token.json");
    let mut cmd = command();
    cmd.env("LOGTO_CACHE_FILE", &blocked);
    let out = run_for(cmd, &peer.base_url(), &["token"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let folder = dir.path().join("a-file/my-job");
    assert!(
        stderr.contains(&format!("cannot create its folder {}: ", folder.display())),
        "{stderr}"
    );
    assert!(
        stderr.starts_with("logto-m2m: warning: token file "),
        "{stderr}"
    );
}

/// The likeliest slip, a `LOGTO_ENDPOINT` with `/oidc` or `/oidc/token` on it, is refused
/// before anything is sent, naming the base URL to give instead.
#[test]
fn an_endpoint_ending_in_oidc_is_refused_before_anything_is_sent() {
    let (server, seen) = recording_server();
    let base = format!("http://127.0.0.1:{}", server.port());
    for endpoint in [
        format!("{base}/oidc"),
        format!("{base}/oidc/"),
        format!("{base}/oidc/token"),
    ] {
        let out = run_for(command(), &endpoint, &["token"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "give {base} (the token url is then {base}/oidc/token)"
            )),
            "{stderr}"
        );
        let out = run_for(common::example("get_token"), &endpoint, &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(&format!("give {base} ")));
    }
    let err = Config::logto(&format!("{base}/oidc"), "a", "b").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
    drop(server);
    assert!(
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty(),
        "nothing is sent"
    );
}

/// `https://` to a port that speaks plain http: the message says so, names the host and
/// port, and what to check, with both TLS features (rustls and OpenSSL word it apart).
#[test]
fn tls_to_a_plain_http_port_says_so() {
    let peer = shared_peer();
    let url = format!("https://127.0.0.1:{}/oidc/token", peer.port());
    let config = Config::new(&url, M2M_BASIC.0, M2M_BASIC.1)
        .unwrap()
        .timeout(Duration::from_secs(10));
    let err = request_token(&config, &TokenRequest::new(SHOPPING_API)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Tls { .. }), "{err:?}");
    let expected = format!(
        "tls: 127.0.0.1:{} did not answer in tls (a plain http port?): check the url's scheme \
         and port (",
        peer.port()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
}

/// What the command advises names its own flags and variables, never a library method.
#[test]
fn the_commands_advice_names_its_own_flags_and_variables() {
    // Plain http to a remote host: refused before anything is sent (192.0.2.1 is TEST-NET),
    // with advice a command user can take.
    let out = run_for(command(), "http://192.0.2.1", &["token"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("in clear text: use https"), "{stderr}");
    assert!(!stderr.contains("allow_insecure_http"), "{stderr}");
    // The library says how its users get around it.
    let config = Config::logto("http://192.0.2.1", "a", "b").unwrap();
    let err = request_token(&config, &TokenRequest::new(SHOPPING_API)).unwrap_err();
    assert!(
        err.to_string().contains("allow_insecure_http(true)"),
        "{err}"
    );

    // A timeout names how to give it longer: a server that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let started = Instant::now();
    let out = run_for(command(), &endpoint, &["token", "--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("timed out after 500ms"), "{stderr}");
    assert!(
        stderr.contains("give it longer with --timeout <seconds> or LOGTO_TIMEOUT"),
        "{stderr}"
    );
    let mut cmd = common::example("get_token");
    cmd.env("LOGTO_TIMEOUT", "0.5");
    let out = cmd
        .env("LOGTO_ENDPOINT", &endpoint)
        .env("LOGTO_APP_ID", "a")
        .env("LOGTO_APP_SECRET", "b")
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("give it longer with LOGTO_TIMEOUT"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(listener);
}

/// `logto-m2m help <command>` is `<command> --help`, and every option line of the help is
/// indented alike.
#[test]
fn help_for_a_command() {
    let out = |args: &[&str]| {
        let out = command().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for name in ["token", "inspect"] {
        let help = out(&[name, "--help"]);
        assert_eq!(out(&["help", name]), help, "{name}");
        assert!(
            help.starts_with(&format!("usage: logto-m2m {name}")),
            "{help}"
        );
        for line in help.lines() {
            if line.trim_start().starts_with('-') {
                assert!(line.starts_with("  -"), "{name}: {line:?}");
            }
            assert!(line.chars().count() <= 92, "{name}: too wide: {line:?}");
        }
    }
    let main = out(&["help"]);
    assert!(main.contains("logto-m2m help <command>"), "{main}");
    let unknown = command().args(["help", "fetch"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

/// What `fn main() -> Result<(), logto_m2m::Error>` prints (the README's examples) is the
/// one-line message after `Error: `: `Debug` is `Display`, not a struct.
#[test]
fn an_error_from_main_prints_its_one_line_message() {
    // The message names the URL the answer came from, its path but not its query.
    let peer = shared_peer();
    let with_query = format!("{}?tenant=canary-query", peer.token_url());
    let config = Config::new(&with_query, "m2m-basic", "wrong-secret-0123456789")
        .unwrap()
        .timeout(Duration::from_secs(10));
    let err = request_token(&config, &TokenRequest::new(SHOPPING_API)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "token endpoint {} answered http 401",
            peer.token_url()
        )),
        "{message}"
    );
    assert!(!message.contains("canary-query"), "{message}");
    assert!(message.contains("invalid_client"), "{message}");
    assert!(!message.contains('\n'));
    // `Termination` for `Result<(), E>` writes `Error: {err:?}`.
    assert_eq!(format!("Error: {err:?}"), format!("Error: {message}"));
    assert!(
        format!("{err:#?}").contains("OAuth {"),
        "the fields, on request"
    );
}

/// `examples/local_peer.sh` on a busy port says so and how to pick another, before it
/// builds anything.
#[cfg(unix)]
#[test]
fn local_peer_sh_reports_a_busy_port() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let started = Instant::now();
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/local_peer.sh"
    ))
    .env("PORT", port.to_string())
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("port {port} is busy")) && stderr.contains("PORT=4000 "),
        "{stderr}"
    );
    assert!(!stderr.contains("building"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(out.stdout.is_empty());
}

/// Issue 34: `examples/local_peer.sh` passes on the test peer's start line, whose log path
/// was relative to `tests/peer/` (`log: .run/server-3999.log`), a folder the user is not
/// in. It names the log by a path that works from anywhere. (The script itself builds an
/// example first; its start line is `tests/peer/start.sh`'s, run here from another folder.)
#[cfg(unix)]
#[test]
fn the_peers_start_line_names_its_log_by_an_absolute_path() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer");
    let out = Command::new(format!("{peer_dir}/start.sh"))
        .current_dir(std::env::temp_dir())
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let pid = text(&out.stdout).trim().to_owned();
    let stderr = text(&out.stderr);
    // Stopped by the pid it printed, whatever the checks below say.
    let stop = Command::new(format!("{peer_dir}/stop.sh"))
        .arg(&pid)
        .stdin(Stdio::null())
        .output();
    assert!(out.status.success(), "{stderr}");
    assert!(stop.is_ok_and(|o| o.status.success()));
    let log = stderr
        .split("(log: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no log path: {stderr}"));
    assert!(std::path::Path::new(log).is_absolute(), "{log}");
    assert_eq!(log, format!("{peer_dir}/.run/server-{port}.log"));
    assert!(std::path::Path::new(log).is_file(), "{log}");
    let _ = fs::remove_file(log);
}

/// `last_cache_error` is the current problem: it stays while the cache keeps failing, and
/// is `None` again once a `get` used the cache without one, so a long-running service that
/// checks it after each `get` stops warning when the problem is gone.
#[test]
fn last_cache_error_is_cleared_once_the_cache_works_again() {
    let peer = shared_peer();
    let dir = TempDir::new("current");
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, "").unwrap();
    let store = logto_m2m::TokenStore::new(common::config(peer, M2M_BASIC))
        .cache_file(blocker.join("tokens.json"));
    let request = TokenRequest::new(SHOPPING_API);
    for _ in 0..2 {
        store.get(&request).unwrap();
        let problem = store.last_cache_error().expect("the folder can't be made");
        assert!(
            matches!(problem.kind(), ErrorKind::Cache { .. }),
            "{problem:?}"
        );
        assert!(
            problem.to_string().contains("cannot create its folder"),
            "{problem}"
        );
        // The next `get` goes to the cache again (a hit from memory would not).
        store.invalidate(&request);
    }
    fs::remove_file(&blocker).unwrap();
    store.get(&request).unwrap();
    assert!(store.last_cache_error().is_none(), "the cache works again");
    assert!(blocker.join("tokens.json").is_file());
}

/// Issue 34: a newcomer's `cargo test` reported dozens of tests as ignored, and the README
/// did not say why. It says how many need the real Logto; this keeps the number true: the
/// tests marked so in `tests/real_logto/`, `tests/self_hosted/` and `tests/verifier_real.rs` (an
/// `#[cfg_attr(not(logto_real), ignore = ...)]` line, or a `real_test! {` one), those behind
/// the `redis` feature counted apart.
#[test]
fn the_readme_counts_the_tests_that_need_the_real_logto() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("tests/verifier_real.rs")];
    for dir in ["tests/real_logto", "tests/self_hosted"] {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    let (mut always, mut redis) = (0, 0);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let marked = line
                .starts_with("#[cfg_attr(not(logto_real), ignore = \"needs the real Logto")
                || *line == "real_test! {";
            if !marked {
                continue;
            }
            let before = &lines[i.saturating_sub(4)..i];
            if before
                .iter()
                .any(|l| l.contains("cfg(feature = \"redis\")"))
            {
                redis += 1;
            } else {
                always += 1;
            }
        }
    }
    // The README's words with each run of white space as one space: reflowing is fine.
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = format!(
        "the {always} tests against a real Logto ({} with `--features redis`) are reported \
         as ignored",
        always + redis
    );
    assert!(readme.contains(&said), "the README should say: {said:?}");
}

/// Issue 34: the README's cron and real-tenant lines called `https://shopping.api/...`, the
/// API's resource indicator (the name Logto knows it by), as if it were the API's address;
/// the Rust example keeps them apart (`https://api.shop.example`). No line of the README,
/// the crate docs or the examples sends a request to the indicator.
#[test]
fn the_resource_indicator_is_never_called_as_an_address() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("src/lib.rs")];
    for entry in fs::read_dir(root.join("examples")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains(&format!("{SHOPPING_API}/")),
                "{}:{}: {line}",
                file.display(),
                n + 1
            );
        }
    }
}
