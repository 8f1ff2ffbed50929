//! `RedisCache` through the `TokenCache` trait, against a real `redis-server`
//! (`tests/common/redis_server.rs`), plus fault servers for a Redis that never answers.

#![cfg(feature = "redis")]

use crate::opaque;
use crate::redis_server;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use logto_m2m::{RedisCache, TokenCache};
use opaque::{Entry, key_of};
use redis_server::{RedisServer, Reply};

const TOKEN_URL: &str = "https://tenant.logto.example/oidc/token";
const APP_ID: &str = "fleet-app";
const REQUEST_KEY: &str = "https://shopping.api\u{0}read:products\u{0}";
/// Plenty for a local Redis; the fault tests use shorter ones.
const LEFT: Duration = Duration::from_secs(5);
/// What a bounded call may take beyond its `left` on a loaded machine.
const SLACK: Duration = Duration::from_millis(400);

fn key() -> String {
    key_of(TOKEN_URL, APP_ID, REQUEST_KEY)
}

fn entry(token: &str, lifetime: Duration) -> Entry {
    Entry {
        value: format!("logto-m2m:sealed:1:{token}").into_bytes(),
        expires_at: SystemTime::now() + lifetime,
    }
}

fn token_key(key: &str) -> String {
    format!("logto-m2m:token:{{{key}}}")
}

fn lock_key(key: &str) -> String {
    format!("logto-m2m:lock:{{{key}}}")
}

fn int(reply: Reply) -> i64 {
    match reply {
        Reply::Int(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn write_then_read_round_trip() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    assert_eq!(cache.read(&key(), LEFT).unwrap(), None);

    let e = entry("token-one", Duration::from_secs(3600));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap();
    assert_eq!(cache.read(&key(), LEFT).unwrap(), Some(e.value.clone()));

    // A write replaces the entry.
    let newer = entry("token-two", Duration::from_secs(3600));
    cache
        .write(&key(), &newer.value, newer.expires_at, LEFT)
        .unwrap();
    assert_eq!(cache.read(&key(), LEFT).unwrap(), Some(newer.value.clone()));

    // The stored value is the value as given, under the documented key.
    let Reply::Bulk(Some(stored)) = server.command(&["GET", &token_key(&key())]) else {
        panic!("no value under {}", token_key(&key()));
    };
    assert_eq!(stored, newer.value);

    // Other request keys are other entries.
    let other = key_of(TOKEN_URL, APP_ID, "https://other.api\u{0}\u{0}");
    assert_eq!(cache.read(&other, LEFT).unwrap(), None);
}

#[test]
fn redis_ttl_is_the_token_expiry() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let e = entry("t", Duration::from_secs(60));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap();
    let pttl = int(server.command(&["PTTL", &token_key(&key())]));
    assert!((55_000..=60_000).contains(&pttl), "PTTL {pttl}");

    // Redis itself drops it when the token expires.
    let short = key_of(TOKEN_URL, APP_ID, "short");
    let e = entry("t", Duration::from_millis(300));
    cache.write(&short, &e.value, e.expires_at, LEFT).unwrap();
    assert!(cache.read(&short, LEFT).unwrap().is_some());
    thread::sleep(Duration::from_millis(500));
    assert_eq!(int(server.command(&["EXISTS", &token_key(&short)])), 0);

    // A token that outlives what Redis's expiry can say is kept for a year at most.
    let long = key_of(TOKEN_URL, APP_ID, "long");
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let e = entry("t", century);
    cache.write(&long, &e.value, e.expires_at, LEFT).unwrap();
    let pttl = int(server.command(&["PTTL", &token_key(&long)]));
    assert!(
        (365 * 24 * 3600 * 1000..=366 * 24 * 3600 * 1000).contains(&pttl),
        "PTTL {pttl}"
    );
    assert!(cache.read(&long, LEFT).unwrap().is_some());

    // An entry that has already expired is not written at all.
    let past = SystemTime::now() - Duration::from_secs(10);
    let expired = Entry {
        value: b"t".to_vec(),
        expires_at: past + Duration::from_secs(5),
    };
    let gone = key_of(TOKEN_URL, APP_ID, "gone");
    cache
        .write(&gone, &expired.value, expired.expires_at, LEFT)
        .unwrap();
    assert_eq!(int(server.command(&["EXISTS", &token_key(&gone)])), 0);
}

#[test]
fn lock_is_exclusive_until_dropped() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let lease = Duration::from_secs(30);

    let first = cache.try_lock(&key(), lease, LEFT).unwrap();
    assert!(first.is_some());
    let pttl = int(server.command(&["PTTL", &lock_key(&key())]));
    assert!((25_000..=30_000).contains(&pttl), "lock PTTL {pttl}");
    // Another holder, through another RedisCache as another process would.
    let other = RedisCache::new(&server.url()).unwrap();
    assert!(other.try_lock(&key(), lease, LEFT).unwrap().is_none());
    assert!(cache.try_lock(&key(), lease, LEFT).unwrap().is_none());
    // Locks are per key.
    let elsewhere = key_of(TOKEN_URL, APP_ID, "another");
    assert!(other.try_lock(&elsewhere, lease, LEFT).unwrap().is_some());

    drop(first);
    assert_eq!(int(server.command(&["EXISTS", &lock_key(&key())])), 0);
    let again = other.try_lock(&key(), lease, LEFT).unwrap();
    assert!(again.is_some());
}

/// A store whose timeout is too long for the clock (no deadline) leases its lock for as
/// long: Redis refuses a `PX` past what its clock can add, so the lease is capped rather
/// than every lock failing.
#[test]
fn a_lease_too_long_for_the_clock_still_locks() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let lock = cache.try_lock(&key(), Duration::MAX, LEFT).unwrap();
    assert!(lock.is_some(), "the lock is taken");
    let Reply::Int(ttl) = server.command(&["PTTL", &lock_key(&key())]) else {
        panic!("no ttl");
    };
    assert!(ttl > 3_600_000, "{ttl} ms");
    assert!(cache.try_lock(&key(), LEFT, LEFT).unwrap().is_none());
}

#[test]
fn lock_lapses_after_its_lease() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let held = cache
        .try_lock(&key(), Duration::from_millis(200), LEFT)
        .unwrap();
    assert!(held.is_some());
    assert!(cache.try_lock(&key(), LEFT, LEFT).unwrap().is_none());
    thread::sleep(Duration::from_millis(400));
    // The holder never dropped it (it might have died): the lease ended it.
    assert!(cache.try_lock(&key(), LEFT, LEFT).unwrap().is_some());
    drop(held);
}

#[test]
fn lock_is_released_only_by_its_holder() {
    let server = RedisServer::start();
    let slow = RedisCache::new(&server.url()).unwrap();
    let fast = RedisCache::new(&server.url()).unwrap();

    let lapsed = slow
        .try_lock(&key(), Duration::from_millis(150), LEFT)
        .unwrap()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let current = fast
        .try_lock(&key(), Duration::from_secs(30), LEFT)
        .unwrap()
        .expect("the first lease has ended");
    let Reply::Bulk(Some(holder)) = server.command(&["GET", &lock_key(&key())]) else {
        panic!("no lock value");
    };

    // The first holder finishes late: its drop must not delete the second holder's lock.
    drop(lapsed);
    assert_eq!(
        server.command(&["GET", &lock_key(&key())]),
        Reply::Bulk(Some(holder))
    );
    assert!(slow.try_lock(&key(), LEFT, LEFT).unwrap().is_none());

    drop(current);
    assert!(slow.try_lock(&key(), LEFT, LEFT).unwrap().is_some());
}

#[test]
fn lock_values_are_unique_per_holder() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let k = key_of(TOKEN_URL, APP_ID, &format!("k{i}"));
        let lock = cache.try_lock(&k, LEFT, LEFT).unwrap().unwrap();
        let Reply::Bulk(Some(value)) = server.command(&["GET", &lock_key(&k)]) else {
            panic!("no lock value");
        };
        assert!(seen.insert(value));
        drop(lock);
    }
}

/// A value is bytes, any bytes, given back as they were; what is too large to be one of the
/// store's, or not a string, is no value.
#[test]
fn values_are_bytes_and_odd_ones_are_no_value() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let name = token_key(&key());
    server.command_bytes(&[b"SET", name.as_bytes(), b"\xff\xfe\x00binary"]);
    assert_eq!(
        cache.read(&key(), LEFT).unwrap(),
        Some(b"\xff\xfe\x00binary".to_vec())
    );

    // A value past the size cap (70 KiB) is cut when read, and refused.
    server.command(&["SET", &name, &"x".repeat(70 * 1024)]);
    assert_eq!(cache.read(&key(), LEFT).unwrap(), None);

    // Another type of value under our key: no value, and the next write replaces it.
    server.command(&["DEL", &name]);
    server.command(&["RPUSH", &name, "a", "b"]);
    assert_eq!(cache.read(&key(), LEFT).unwrap(), None);
    let e = entry("tok", Duration::from_secs(3600));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap();
    assert_eq!(cache.read(&key(), LEFT).unwrap(), Some(e.value));
}

/// Runs `f` and returns its result with how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let result = f();
    (result, start.elapsed())
}

#[test]
fn stopped_redis_fails_fast() {
    let mut server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let e = entry("tok", Duration::from_secs(3600));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap(); // leaves an idle connection to reuse
    server.stop();

    let left = Duration::from_millis(500);
    let (read, took) = timed(|| cache.read(&key(), left));
    let err = read.unwrap_err();
    assert!(took < left + SLACK, "read took {took:?}: {err}");
    let (write, took) = timed(|| cache.write(&key(), &e.value, e.expires_at, left));
    assert!(write.is_err() && took < left + SLACK, "write took {took:?}");
    let (lock, took) = timed(|| cache.try_lock(&key(), LEFT, left));
    assert!(
        lock.is_err() && took < left + SLACK,
        "try_lock took {took:?}"
    );
    assert!(
        !err.is_empty() && err.chars().next().unwrap().is_lowercase(),
        "{err}"
    );
}

#[test]
fn restarted_redis_is_reconnected() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let e = entry("tok", Duration::from_secs(3600));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap();
    // Redis drops our idle connection (its `timeout`, a restart, a failover): the next
    // call opens a new one instead of failing.
    server.command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert_eq!(cache.read(&key(), LEFT).unwrap(), Some(e.value));
}

#[test]
fn silent_server_fails_within_left() {
    // Accepts TCP connections (the kernel completes the handshake into the backlog) but
    // never reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}/0",
        listener.local_addr().unwrap().port()
    );
    let cache = RedisCache::new(&url).unwrap();
    for left in [Duration::from_millis(1), Duration::from_millis(300)] {
        let (read, took) = timed(|| cache.read(&key(), left));
        let err = read.unwrap_err();
        assert!(
            took < left + SLACK,
            "{url}: read took {took:?} for {left:?}"
        );
        assert!(err.contains("timed out"), "{err}");
        let (lock, took) = timed(|| cache.try_lock(&key(), LEFT, left));
        assert!(
            lock.is_err() && took < left + SLACK,
            "try_lock took {took:?}"
        );
        let e = entry("tok", Duration::from_secs(60));
        let (write, took) = timed(|| cache.write(&key(), &e.value, e.expires_at, left));
        assert!(write.is_err() && took < left + SLACK, "write took {took:?}");
    }
    drop(listener);
}

#[test]
fn paused_redis_times_out_and_its_late_answer_is_never_read() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let first = key_of(TOKEN_URL, APP_ID, "first");
    let second = key_of(TOKEN_URL, APP_ID, "second");
    let e1 = entry("token-first", Duration::from_secs(3600));
    let e2 = entry("token-second", Duration::from_secs(3600));
    cache.write(&first, &e1.value, e1.expires_at, LEFT).unwrap();
    cache
        .write(&second, &e2.value, e2.expires_at, LEFT)
        .unwrap();

    // Redis stops answering for a while (as under load or a long fork).
    let pause = Duration::from_millis(1000);
    server.command(&["CLIENT", "PAUSE", &pause.as_millis().to_string(), "ALL"]);
    let left = Duration::from_millis(200);
    let (read, took) = timed(|| cache.read(&first, left));
    assert!(read.is_err(), "{read:?}");
    assert!(took < left + SLACK, "read took {took:?}");

    // Once Redis answers again, the answer to the timed-out read arrives on the old
    // connection; it must not be taken for the answer to the next read.
    thread::sleep(pause);
    assert_eq!(cache.read(&second, LEFT).unwrap(), Some(e2.value));
    assert_eq!(cache.read(&first, LEFT).unwrap(), Some(e1.value));
}

#[test]
fn threads_share_one_cache() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&server.url()).unwrap();
    let e = entry("shared", Duration::from_secs(3600));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap();
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    assert_eq!(cache.read(&key(), LEFT).unwrap().as_ref(), Some(&e.value));
                }
            });
        }
    });
    // Connections were opened for contention only, not per call.
    let Reply::Bulk(Some(info)) = server.command(&["INFO", "stats"]) else {
        panic!("INFO");
    };
    let info = String::from_utf8(info).unwrap();
    let connections: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(connections < 100, "{connections} connections for 201 calls");
}

/// A password no output may show.
const CANARY: &str = "Canary-Pa55word-7f3e9d";

#[test]
fn password_is_never_shown_or_stored() {
    let server = RedisServer::with_password(CANARY);
    let cache = RedisCache::new(&server.url()).unwrap();
    let shown = format!("{cache:?} {}", cache.describe());
    assert!(!shown.contains(CANARY), "{shown}");
    assert!(
        shown.contains(&format!("127.0.0.1:{}/0", server.port())),
        "{shown}"
    );

    // It works with the password...
    let e = entry("tok", Duration::from_secs(3600));
    cache.write(&key(), &e.value, e.expires_at, LEFT).unwrap();
    assert_eq!(cache.read(&key(), LEFT).unwrap(), Some(e.value));
    let lock = cache.try_lock(&key(), LEFT, LEFT).unwrap();
    assert!(lock.is_some());

    // ...and a wrong one, or one the server does not expect, shows up in no error.
    let wrong = format!("{CANARY}-wrong");
    let bad = RedisCache::new(&format!("redis://:{wrong}@127.0.0.1:{}/0", server.port())).unwrap();
    let err = bad.read(&key(), LEFT).unwrap_err();
    assert!(!err.contains(CANARY), "{err}");
    assert!(!format!("{bad:?}").contains(CANARY));
    let open = RedisServer::start();
    let extra = RedisCache::new(&format!("redis://:{CANARY}@127.0.0.1:{}/0", open.port())).unwrap();
    if let Err(err) = extra.read(&key(), LEFT) {
        assert!(!err.contains(CANARY), "{err}");
    }
    // Without a password: refused, and said so.
    let none = RedisCache::new(&format!("redis://127.0.0.1:{}/0", server.port())).unwrap();
    let err = none.read(&key(), LEFT).unwrap_err();
    assert!(err.contains("NOAUTH") || err.contains("auth"), "{err}");

    // Nothing stored holds the password, or names the app, API or token endpoint.
    let dump = server.dump();
    assert_eq!(dump.len(), 2, "one entry and one lock");
    for (k, v) in &dump {
        let k = String::from_utf8_lossy(k);
        assert!(
            k.starts_with("logto-m2m:token:") || k.starts_with("logto-m2m:lock:"),
            "{k}"
        );
        assert!(!k.contains(APP_ID) && !k.contains("shopping") && !k.contains("logto.example"));
        assert!(!k.contains(CANARY) && !String::from_utf8_lossy(v).contains(CANARY));
    }
    drop(lock);
}
