//! Many processes share one token through a real `redis-server` (`LOGTO_CACHE_URL`): the
//! fleet recipe of the README, run as `get_token` processes against the real peer, each in
//! its own empty working directory with no token file. The token server that stalls (to
//! hold a refresh lock open) is a loopback server: stalling is a fault a real server won't
//! produce on demand.
#![cfg(feature = "redis")]

use crate::common;
use crate::fleet;
use crate::redis_server;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use common::loopback::Loopback;
use common::{M2M_BASIC, Peer, SHOPPING_API, TempDir, program};
use fleet::{TIMEOUT_S, at_once, token_of};
use redis_server::{RedisServer, Reply};

/// `get_token` for `app` at `token_url`, sharing tokens through `redis`, in its own empty
/// working directory (returned, to keep it alive until the run ends).
fn get_token(token_url: &str, app: (&str, &str), redis: &str) -> (Command, TempDir) {
    fleet::get_token(token_url, app, redis, &[])
}

/// Waits (bounded) until Redis holds a refresh lock.
fn wait_for_lock(redis: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let keys = redis.command(&["KEYS", "logto-m2m:lock:*"]);
        if matches!(keys, Reply::Array(keys) if !keys.is_empty()) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("no refresh lock appeared in redis");
}

/// A token endpoint whose first request stalls for `first` (or until the client goes)
/// and whose later ones get a fresh token each; counts requests.
fn stalling_token_server(first: Duration) -> (Loopback, Arc<AtomicU32>) {
    let served = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&served);
    let server = Loopback::start(16, Duration::from_secs(60), move |c| {
        let n = counter.fetch_add(1, SeqCst);
        if n == 0 && !c.pause(first) {
            return;
        }
        let body = format!(
            r#"{{"access_token":"loopback-token-{n}","token_type":"Bearer","expires_in":3600}}"#
        );
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.send(head.as_bytes());
        c.send(body.as_bytes());
    });
    (server, served)
}

#[test]
fn eight_processes_at_once_make_one_request_and_ten_runs_after_none() {
    let peer = Peer::start();
    let redis = RedisServer::start();
    let runs = (0..8)
        .map(|_| get_token(&peer.token_url(), M2M_BASIC, &redis.url()))
        .collect();
    let tokens: Vec<String> = at_once(runs).into_iter().map(|o| token_of(o).0).collect();
    assert_eq!(peer.stats().token_requests, 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    for _ in 0..10 {
        let (mut cmd, _dir) = get_token(&peer.token_url(), M2M_BASIC, &redis.url());
        let (token, stderr) = token_of(cmd.output().unwrap());
        assert_eq!(token, tokens[0]);
        assert!(!stderr.contains("warning"), "{stderr}");
    }
    assert_eq!(peer.stats().token_requests, 1);
    assert_no_secret(&redis, &[M2M_BASIC.1]);
}

#[test]
fn redis_down_before_a_run_still_gives_a_token_and_a_warning() {
    let peer = Peer::start();
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let started = Instant::now();
    let (mut cmd, _dir) = get_token(&peer.token_url(), M2M_BASIC, &url);
    let (_, stderr) = token_of(cmd.output().unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(TIMEOUT_S),
        "{:?}",
        started.elapsed()
    );
    assert!(stderr.contains("warning: redis"), "{stderr}");
    assert_eq!(peer.stats().token_requests, 1);
}

#[test]
fn redis_stopped_while_a_refresh_holds_the_lock_hangs_no_run() {
    let (server, served) = stalling_token_server(Duration::from_secs(2));
    let url = format!("http://127.0.0.1:{}/oidc/token", server.port());
    let mut redis = RedisServer::start();
    let (mut holder, _d) = get_token(&url, M2M_BASIC, &redis.url());
    let holder = holder
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&redis);
    let redis_url = redis.url();
    redis.stop();
    let started = Instant::now();
    let others = at_once(
        (0..2)
            .map(|_| get_token(&url, M2M_BASIC, &redis_url))
            .collect(),
    );
    for out in others {
        let (_, stderr) = token_of(out);
        assert!(stderr.contains("warning: redis"), "{stderr}");
    }
    token_of(holder.wait_with_output().unwrap());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(TIMEOUT_S), "{took:?}");
    assert_eq!(served.load(SeqCst), 3);
    drop(server);
}

#[test]
fn killed_lock_holder_blocks_the_fleet_no_longer_than_the_lease() {
    // The first request never gets an answer: its process holds the lock until killed.
    let (server, served) = stalling_token_server(Duration::from_secs(60));
    let url = format!("http://127.0.0.1:{}/oidc/token", server.port());
    let redis = RedisServer::start();
    let (mut holder, _d) = get_token(&url, M2M_BASIC, &redis.url());
    let mut holder = holder
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&redis);
    let locked = Instant::now();
    // And its request at the server, which stalls only the first: killed before that (the
    // lock is taken before the request is sent, a wider gap on a loaded machine), the
    // holder would leave the stalled answer to one of the runs below.
    let deadline = Instant::now() + Duration::from_secs(10);
    while served.load(SeqCst) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(served.load(SeqCst), 1, "the holder's request never came");
    holder.kill().unwrap(); // SIGKILL: no chance to release the lock
    holder.wait().unwrap();
    // Start a moment later, as processes that come along do: the lock lapses `TIMEOUT_S`
    // after it was taken, inside their own wait.
    thread::sleep(Duration::from_secs(1));
    let runs = (0..3)
        .map(|_| get_token(&url, M2M_BASIC, &redis.url()))
        .collect();
    let tokens: Vec<String> = at_once(runs).into_iter().map(|o| token_of(o).0).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert!(
        locked.elapsed() < Duration::from_secs(TIMEOUT_S + 2),
        "{:?}",
        locked.elapsed()
    );
    // The killed holder's request, then exactly one for the three.
    assert_eq!(served.load(SeqCst), 2);
    drop(server);
}

#[test]
fn redis_password_is_never_shown() {
    let peer = Peer::start();
    let canary = "canary-redis-password-9f2c";
    let redis = RedisServer::with_password(canary);
    let wrong = format!("redis://:wrong-{canary}@127.0.0.1:{}/0", redis.port());
    let (mut cmd, _d) = get_token(&peer.token_url(), M2M_BASIC, &wrong);
    let (_, stderr) = token_of(cmd.output().unwrap());
    assert!(stderr.contains("warning: redis"), "{stderr}");
    assert!(!stderr.contains(canary), "{stderr}");
    let right = format!("redis://:{canary}@127.0.0.1:{}/0", redis.port());
    let (mut cmd, _d) = get_token(&peer.token_url(), M2M_BASIC, &right);
    let (_, stderr) = token_of(cmd.output().unwrap());
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(peer.stats().token_requests, 2);
}

/// No key or value in Redis holds an app secret, in any form it travels in.
fn assert_no_secret(redis: &RedisServer, secrets: &[&str]) {
    let dump = redis.dump();
    assert!(!dump.is_empty());
    for secret in secrets {
        let basic = base64::engine::general_purpose::STANDARD.encode(secret);
        for (key, value) in &dump {
            for text in [key, value] {
                let text = String::from_utf8_lossy(text);
                assert!(!text.contains(secret) && !text.contains(&basic), "{text}");
            }
        }
    }
}

/// The command reads `LOGTO_CACHE_URL` as `get_token` does: two runs, one request.
#[test]
fn command_shares_tokens_through_redis_too() {
    let peer = Peer::start();
    let redis = RedisServer::start();
    let run = || {
        let mut cmd = program(env!("CARGO_BIN_EXE_logto-m2m"));
        cmd.args(["token", "--scope", "read:products"])
            .env("LOGTO_TOKEN_URL", peer.token_url())
            .env("LOGTO_APP_ID", M2M_BASIC.0)
            .env("LOGTO_APP_SECRET", M2M_BASIC.1)
            .env("LOGTO_RESOURCE", SHOPPING_API)
            .env("LOGTO_CACHE_URL", redis.url())
            .stdin(Stdio::null());
        token_of(cmd.output().unwrap()).0
    };
    assert_eq!(run(), run());
    assert_eq!(peer.stats().token_requests, 1);
}

/// A Redis 6 ACL user allowed only this crate's keys (`~logto-m2m:*`), as a shared Redis
/// hands one out: the fleet works through it, and a wrong password is a warning that
/// never shows the password.
#[test]
fn an_acl_user_limited_to_our_keys_shares_tokens() {
    let peer = Peer::start();
    let redis = RedisServer::start();
    let canary = "Acl-Pa55word-canary-4d1e";
    let set = redis.command(&[
        "ACL",
        "SETUSER",
        "tokens",
        "on",
        &format!(">{canary}"),
        "~logto-m2m:*",
        "+@all",
    ]);
    assert_eq!(set, Reply::Status("OK".into()));
    let url = |password: &str| format!("redis://tokens:{password}@127.0.0.1:{}/0", redis.port());
    let runs = (0..4)
        .map(|_| get_token(&peer.token_url(), M2M_BASIC, &url(canary)))
        .collect();
    let tokens: Vec<(String, String)> = at_once(runs).into_iter().map(token_of).collect();
    assert!(
        tokens
            .iter()
            .all(|(t, e)| *t == tokens[0].0 && !e.contains("warning"))
    );
    assert_eq!(peer.stats().token_requests, 1);
    // The user really is limited: another key is refused to it.
    let Reply::Array(keys) = redis.command(&["KEYS", "logto-m2m:*"]) else {
        panic!("KEYS");
    };
    assert_eq!(keys.len(), 1, "the entry, and no lock left");
    // (DRYRUN answers OK when allowed, and the reason as text when not.)
    let elsewhere = redis.command(&["ACL", "DRYRUN", "tokens", "GET", "other:key"]);
    assert!(matches!(elsewhere, Reply::Bulk(Some(_))), "{elsewhere:?}");

    let (mut cmd, _d) = get_token(
        &peer.token_url(),
        M2M_BASIC,
        &url(&format!("{canary}-wrong")),
    );
    let (_, stderr) = token_of(cmd.output().unwrap());
    assert!(
        stderr.contains("warning: redis") && stderr.contains("authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains(canary), "{stderr}");
    assert_eq!(peer.stats().token_requests, 2);
}

/// With `LOGTO_LOG=debug` the command's last line is what its store did.
#[test]
fn the_command_prints_its_stores_counters_at_debug() {
    let peer = Peer::start();
    let redis = RedisServer::start();
    let run = || {
        let mut cmd = program(env!("CARGO_BIN_EXE_logto-m2m"));
        cmd.args(["token", "--scope", "read:products"])
            .env("LOGTO_TOKEN_URL", peer.token_url())
            .env("LOGTO_APP_ID", M2M_BASIC.0)
            .env("LOGTO_APP_SECRET", M2M_BASIC.1)
            .env("LOGTO_RESOURCE", SHOPPING_API)
            .env("LOGTO_CACHE_URL", redis.url())
            .env("LOGTO_LOG", "debug")
            .stdin(Stdio::null());
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let last = stderr.lines().last().unwrap_or_default().to_owned();
        assert!(last.contains("store stats: StoreStats {"), "{stderr}");
        last
    };
    let first = run();
    assert!(
        first.contains("token_requests: 1,") && first.contains("shared_writes: 1,"),
        "{first}"
    );
    let second = run();
    assert!(
        second.contains("token_requests: 0,") && second.contains("shared_hits: 1,"),
        "{second}"
    );
    assert_eq!(peer.stats().token_requests, 1);
}
