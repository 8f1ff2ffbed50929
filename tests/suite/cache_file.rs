//! The token file across processes: runs of the `get_token` example with
//! `LOGTO_CACHE_FILE`, against the real peer, counting its token requests.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{M2M_BASIC, M2M_POST, Peer, SHOPPING_API, TempDir, example_for};

fn get_token(peer: &Peer, app: (&str, &str), cache: &Path) -> Command {
    let mut cmd = example_for("get_token", peer, app);
    cmd.env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_SCOPES", "read:products")
        .env("LOGTO_CACHE_FILE", cache);
    cmd
}

/// Runs one `get_token`; returns the token it printed and what it said on stderr.
fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    check(out)
}

fn check(out: Output) -> (String, String) {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "get_token failed: {stderr}");
    let token = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    assert!(token.starts_with("eyJ"), "{token:?}");
    (token, stderr)
}

/// A fresh temp dir (removed on drop) and the path of a token file in it.
fn token_file(label: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(label);
    let cache = dir.path().join("token.json");
    (dir, cache)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ten_runs_one_request() {
    let peer = Peer::start();
    let (_dir, cache) = token_file("ten-runs");
    let tokens: Vec<String> = (0..10)
        .map(|_| run(&mut get_token(&peer, M2M_BASIC, &cache)).0)
        .collect();
    assert_eq!(peer.stats().token_requests, 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    #[cfg(unix)]
    assert_eq!(mode(&cache), 0o600);

    // The secret never reaches the file, in any form it was sent in, and the token is
    // sealed (tests/suite/sealed_caches.rs says more).
    let text = fs::read_to_string(&cache).unwrap();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", M2M_BASIC.0, M2M_BASIC.1));
    assert!(!text.contains(M2M_BASIC.1), "{text}");
    assert!(!text.contains(&basic), "{text}");
    assert!(!text.contains(&tokens[0]), "{text}");
}

#[test]
fn eight_processes_at_once_one_request() {
    let peer = Peer::start();
    let (_dir, cache) = token_file("eight");
    let children: Vec<_> = (0..8)
        .map(|_| {
            get_token(&peer, M2M_BASIC, &cache)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| check(c.wait_with_output().unwrap()).0)
        .collect();
    assert_eq!(peer.stats().token_requests, 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
}

#[test]
fn short_lifetime_one_more_request_after_expiry() {
    let peer = Peer::start_with(&[("ACCESS_TOKEN_TTL", "2")]);
    let (_dir, cache) = token_file("short");
    let start = Instant::now();
    let (first, _) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    // Within the first half of the 2 s lifetime: from the file.
    let (again, _) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "too slow to test the margin"
    );
    assert_eq!(again, first);
    assert_eq!(peer.stats().token_requests, 1);
    thread::sleep(Duration::from_millis(2100).saturating_sub(start.elapsed()));
    let (later, _) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert_ne!(later, first);
    assert_eq!(peer.stats().token_requests, 2);
}

#[test]
fn file_of_another_app_or_server_is_not_used() {
    let peer = Peer::start();
    let other = Peer::start();
    let (_dir, cache) = token_file("foreign");
    run(&mut get_token(&peer, M2M_POST, &cache));
    run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert_eq!(peer.stats().token_requests, 2, "another app id");
    run(&mut get_token(&other, M2M_BASIC, &cache));
    assert_eq!(other.stats().token_requests, 1, "another token url");
    // The file keeps each app's and server's token under its own key: the first peer's
    // is still there.
    run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert_eq!(peer.stats().token_requests, 2);
}

#[test]
fn garbage_empty_and_huge_files_are_replaced() {
    let peer = Peer::start();
    let (_dir, cache) = token_file("garbage");
    let huge = "{".repeat(2 * 1024 * 1024);
    let contents: [&[u8]; 4] = [
        b"not json at all",
        b"",
        b"{\"version\":1,\"tok",
        huge.as_bytes(),
    ];
    for (i, content) in contents.into_iter().enumerate() {
        fs::write(&cache, content).unwrap();
        #[cfg(unix)]
        fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        run(&mut get_token(&peer, M2M_BASIC, &cache));
        assert_eq!(peer.stats().token_requests, i as u64 + 1);
        // Replaced by a file that the next run takes its token from.
        run(&mut get_token(&peer, M2M_BASIC, &cache));
        assert_eq!(peer.stats().token_requests, i as u64 + 1);
    }
}

#[cfg(unix)]
#[test]
fn file_others_can_read_is_not_trusted() {
    let peer = Peer::start();
    let (_dir, cache) = token_file("mode");
    let (first, _) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (second, stderr) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert_ne!(second, first);
    assert_eq!(peer.stats().token_requests, 2);
    assert!(
        stderr.contains("mode 644") && stderr.contains("not trusted"),
        "{stderr}"
    );
    // Replaced by a private file again.
    assert_eq!(mode(&cache), 0o600);
}

#[cfg(unix)]
#[test]
fn symlink_is_not_followed() {
    let peer = Peer::start();
    let (dir, cache) = token_file("symlink");
    // A valid token file, planted behind a link.
    let real = dir.path().join("elsewhere.json");
    run(&mut get_token(&peer, M2M_BASIC, &real));
    let before = fs::read(&real).unwrap();
    std::os::unix::fs::symlink(&real, &cache).unwrap();

    let (_, stderr) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert_eq!(
        peer.stats().token_requests,
        2,
        "the linked token is not used"
    );
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        fs::read(&real).unwrap(),
        before,
        "never written through the link"
    );
    assert!(
        fs::symlink_metadata(&cache).unwrap().is_file(),
        "the link was replaced"
    );
}

#[test]
fn unwritable_directory_still_gives_a_token() {
    let peer = Peer::start();
    // A missing folder is created (tests/suite/recipes.rs); one under a regular file can't be,
    // whoever runs the test.
    let dir = TempDir::new("missing");
    fs::write(dir.path().join("a-file"), "").unwrap();
    let cache = dir.path().join("a-file").join("token.json");
    let (_, stderr) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert!(
        stderr.contains("warning") && stderr.contains("cannot"),
        "{stderr}"
    );
    assert_eq!(peer.stats().token_requests, 1);
}

/// The lock file of the token file `token.json` in `dir`: the OS lock's, or with a compiler
/// before 1.89 the lease's (src/token_file.rs).
fn lock_path(dir: &Path) -> PathBuf {
    let name = if cfg!(logto_file_lock) {
        "token.json.lock"
    } else {
        "token.json.lease"
    };
    dir.join(name)
}

/// Takes the token file's lock at `path` as another process would: an OS lock held while
/// the returned file is open, or a lease file that lapses after `lease`, as a holder
/// writes it (its time, in Unix milliseconds, and a name of its own).
#[allow(clippy::incompatible_msrv)] // File::lock: only built where it exists
fn hold_lock(path: &Path, lease: Duration) -> fs::File {
    let file = fs::File::create(path).unwrap();
    #[cfg(logto_file_lock)]
    {
        let _ = lease;
        file.lock().unwrap();
    }
    #[cfg(not(logto_file_lock))]
    {
        use std::io::Write;
        let until = std::time::SystemTime::now() + lease;
        let ms = until
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        (&file)
            .write_all(format!("{ms} test.1\n").as_bytes())
            .unwrap();
    }
    file
}

/// When the `LOCK_HOLDER` variable names a lock file, this test is the helper process of
/// `lock_of_a_killed_process_is_released`: it takes the lock (a lease of 1.5 s), says so,
/// and sleeps until it is killed (at most 30 s).
#[test]
fn lock_of_a_killed_process_is_released() {
    if let Some(path) = std::env::var_os("LOCK_HOLDER") {
        let _held = hold_lock(Path::new(&path), Duration::from_millis(1500));
        println!("locked");
        thread::sleep(Duration::from_secs(30));
        return;
    }
    let peer = Peer::start();
    let (dir, cache) = token_file("killed");
    let lock = lock_path(dir.path());
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            common::test_name(module_path!(), "lock_of_a_killed_process_is_released").as_str(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOCK_HOLDER", &lock)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let said = lines.find(|l| l.as_ref().is_ok_and(|l| l.contains("locked")));
    assert!(said.is_some(), "lock holder did not start");
    holder.kill().unwrap(); // SIGKILL: no chance to unlock
    holder.wait().unwrap();

    let start = Instant::now();
    let (_, stderr) = run(&mut get_token(&peer, M2M_BASIC, &cache));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn lock_held_too_long_does_not_block_past_the_timeout() {
    let peer = Peer::start();
    let (dir, cache) = token_file("held");
    let lock = hold_lock(&lock_path(dir.path()), Duration::from_secs(3600));
    let start = Instant::now();
    let (_, stderr) = run(get_token(&peer, M2M_BASIC, &cache).env("LOGTO_TIMEOUT", "2"));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(stderr.contains("lock held by another process"), "{stderr}");
    assert_eq!(peer.stats().token_requests, 1);
    drop(lock);
}

/// `logto-m2m token --cache-file <cache>` against `peer`, run by `unshare -p -f
/// --mount-proc` as PID 1 of a PID namespace of its own, as in a container.
fn command_as_pid_1(peer: &Peer, cache: &Path) -> Command {
    let mut cmd = common::program("unshare");
    cmd.args(["-p", "-f", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_logto-m2m"))
        .args(["token", "--cache-file"])
        .arg(cache)
        .env("LOGTO_TOKEN_URL", peer.token_url())
        .env("LOGTO_APP_ID", M2M_BASIC.0)
        .env("LOGTO_APP_SECRET", M2M_BASIC.1)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_TIMEOUT", common::PEER_TIMEOUT.as_secs().to_string())
        .env("LOGTO_LOG", "debug")
        .stdin(Stdio::null());
    cmd
}

/// A PID namespace, or why there is none here: a test that could not run must not pass.
fn require_pid_namespaces() {
    let probe = Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "unshare -p fails here (it needs root): {}; leave this test out with \
             `--skip pid_1`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            panic!("cannot run unshare (util-linux): {e}; leave this test out with `--skip pid_1`")
        }
    }
}

/// The command's `store stats:` line (`LOGTO_LOG=debug`).
fn stats_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("store stats:"))
        .unwrap_or_else(|| panic!("no stats line in: {stderr}"))
}

/// Issue 31, item 5: in a container the command is PID 1 and writes once per run, so its
/// temporary file had the same name (`<file>.tmp.1.0`) in every run. A run killed between
/// creating it and renaming it over the file (OOM, a job's deadline) left it behind; the
/// next run found the name taken, wrote no file (a warning, one more token request) and
/// removed the leftover, a file that was not its own: had it been another container's
/// PID 1 sharing the folder, a live writer's, that one's write failed too. The temporary
/// names are random now: the leftover is in nobody's way, left alone while it is young,
/// and removed by the next refresh once it is older than the timeout.
#[test]
fn pid_1_with_a_leftover_temp_file_still_shares_its_token() {
    require_pid_namespaces();
    let peer = Peer::start();
    let (dir, cache) = token_file("pid-1");
    // What a killed PID 1 leaves: the name its first write gave before the fix, part of a
    // file in it.
    let leftover = dir.path().join("token.json.tmp.1.0");
    fs::write(&leftover, "{\"version\":3,\"tok").unwrap();
    #[cfg(unix)]
    fs::set_permissions(
        &leftover,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let first = command_as_pid_1(&peer, &cache).output().unwrap();
    let (token, first) = check(first);
    let second = command_as_pid_1(&peer, &cache).output().unwrap();
    let (again, second) = check(second);
    assert_eq!(
        peer.stats().token_requests,
        1,
        "a run did not share its token through the file; first run: {first}\nsecond run: \
         {second}"
    );
    assert_eq!(again, token);
    assert!(!first.contains("warning"), "{first}");
    assert!(stats_line(&first).contains("shared_writes: 1"), "{first}");
    assert!(stats_line(&second).contains("shared_hits: 1"), "{second}");
    // Young, it may be a live writer's: never removed by a run that is not its writer.
    assert!(leftover.exists());

    // Old (past the timeout), it is removed by the next run that refreshes the token.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::remove_file(&cache).unwrap();
    let third = command_as_pid_1(&peer, &cache).output().unwrap();
    let (_, stderr) = check(third);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(peer.stats().token_requests, 2);
    assert!(!leftover.exists(), "the stale temporary file is gone");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
