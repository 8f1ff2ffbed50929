//! `RedisCache` through Redis Sentinel (`redis+sentinel://`): one master, one replica and
//! one sentinel, real `redis-server`s on 127.0.0.1 (`tests/common/redis_server.rs`). The
//! fleet shares a token; the master is killed, the sentinel promotes the replica, and the
//! runs after the failover take the token the replica had, with no new request, also once
//! the old master is back, empty; no run, during the failover or after, outlives its
//! timeout.
#![cfg(feature = "redis-sentinel")]

use crate::common;
use crate::fleet;
use crate::opaque;
use crate::redis_server;

use std::time::{Duration, Instant};

use common::{M2M_BASIC, M2M_POST, Peer};
use fleet::{SLACK, TIMEOUT_S, eight_at_once, get_token, timed_run, token_of};
use logto_m2m::{RedisCache, TokenCache};
use opaque::{Entry, key_of};
use redis_server::{Reply, SentinelSet, info, wait_until};

fn keys(server: &redis_server::RedisServer) -> usize {
    match server.command(&["KEYS", "logto-m2m:token:*"]) {
        Reply::Array(keys) => keys.len(),
        other => panic!("KEYS: {other:?}"),
    }
}

#[test]
fn the_fleet_keeps_its_token_through_a_failover() {
    let peer = Peer::start();
    let mut set = SentinelSet::start();
    let url = set.url();
    let run = |app| get_token(&peer.token_url(), app, &url, &[]);
    let token = eight_at_once(|| run(M2M_BASIC));
    assert_eq!(peer.stats().issued_by(M2M_BASIC.0), 1);
    assert_eq!(keys(&set.master), 1);
    // The replica has the entry before its master goes.
    wait_until("the entry on the replica", Duration::from_secs(10), || {
        keys(&set.replica) == 1
    });

    set.master.stop();
    // While the sentinel has not yet promoted the replica (it waits 1 s to call the master
    // down), runs end within their timeout with a token from the endpoint. They ask for
    // another app's token, so that what they write can't stand in for m2m-basic's.
    let killed = Instant::now();
    let mut during = 0;
    while set.named_master_port() != Some(set.replica.port())
        && killed.elapsed() < Duration::from_secs(30)
    {
        let (out, took) = timed_run(run(M2M_POST));
        let (_, stderr) = token_of(out);
        assert!(
            took < Duration::from_secs(TIMEOUT_S) + SLACK,
            "{took:?}: {stderr}"
        );
        during += 1;
    }
    assert_eq!(
        set.named_master_port(),
        Some(set.replica.port()),
        "no failover"
    );
    assert!(during > 0, "the failover came before any run");
    wait_until("the replica to be master", Duration::from_secs(10), || {
        info(&set.replica, "replication").contains("role:master")
    });

    // After the failover: the same token, from the new master, with no new request.
    for _ in 0..3 {
        let (out, took) = timed_run(run(M2M_BASIC));
        let (after, stderr) = token_of(out);
        assert_eq!(after, token, "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        assert!(took < Duration::from_secs(TIMEOUT_S) + SLACK, "{took:?}");
    }
    assert_eq!(eight_at_once(|| run(M2M_BASIC)), token);
    // The old master back, empty, a master of its own until the sentinel makes it a
    // replica: the fleet keeps to the one the sentinel names.
    set.master.restart();
    assert_eq!(eight_at_once(|| run(M2M_BASIC)), token);
    assert_eq!(peer.stats().issued_by(M2M_BASIC.0), 1);
}

/// The same over TLS, to the sentinel and to the masters it names.
#[cfg(feature = "rustls")]
#[test]
fn over_tls_too() {
    let peer = Peer::start();
    let ca = redis_server::TestCa::new();
    let mut set = SentinelSet::start_tls(&ca);
    let [_, replica_tls, _] = set.tls_ports.unwrap();
    let url = set.tls_url();
    let ca_file = ca.file("ca.pem");
    let env = [("LOGTO_CACHE_CA_FILE", ca_file.as_str())];
    let run = || get_token(&peer.token_url(), M2M_BASIC, &url, &env);
    let token = eight_at_once(run);
    assert_eq!(peer.stats().token_requests, 1);
    wait_until("the entry on the replica", Duration::from_secs(10), || {
        keys(&set.replica) == 1
    });
    set.master.stop();
    wait_until("the failover", Duration::from_secs(30), || {
        set.named_master_port() == Some(replica_tls)
    });
    wait_until("the replica to be master", Duration::from_secs(10), || {
        info(&set.replica, "replication").contains("role:master")
    });
    assert_eq!(eight_at_once(run), token);
    assert_eq!(peer.stats().token_requests, 1);
}

#[test]
fn one_cache_follows_the_master_the_sentinel_names() {
    let mut set = SentinelSet::start();
    let cache = RedisCache::new(&set.url()).unwrap();
    assert_eq!(
        cache.describe(),
        format!(
            "redis redis+sentinel://127.0.0.1:{}/tokens/0",
            set.sentinel.port()
        )
    );
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    let now = std::time::SystemTime::now();
    let entry = Entry {
        value: b"tok".to_vec(),
        expires_at: now + Duration::from_secs(3600),
    };
    let left = Duration::from_secs(2);
    cache
        .write(&key, &entry.value, entry.expires_at, left)
        .unwrap();
    let lock = cache.try_lock(&key, Duration::from_secs(30), left).unwrap();
    assert!(lock.is_some());
    drop(lock);
    wait_until("the entry on the replica", Duration::from_secs(10), || {
        keys(&set.replica) == 1
    });

    set.master.stop();
    // The cache knew the old master: a call now fails fast (the sentinel still names it).
    let started = Instant::now();
    assert!(cache.read(&key, left).is_err());
    assert!(started.elapsed() < left + Duration::from_millis(500));
    wait_until("the failover", Duration::from_secs(30), || {
        set.named_master_port() == Some(set.replica.port())
    });
    wait_until("the replica to be master", Duration::from_secs(10), || {
        info(&set.replica, "replication").contains("role:master")
    });
    // The next call asks the sentinel again and reads from the new master.
    assert_eq!(cache.read(&key, left).unwrap(), Some(entry.value.clone()));
    assert!(
        cache
            .try_lock(&key, Duration::from_secs(30), left)
            .unwrap()
            .is_some()
    );
    cache
        .write(&key, &entry.value, entry.expires_at, left)
        .unwrap();

    // A sentinel that is gone too: calls fail within what they were given.
    set.sentinel.stop();
    set.replica.stop();
    let started = Instant::now();
    let err = cache.read(&key, left).unwrap_err();
    assert!(
        started.elapsed() < left + Duration::from_millis(500),
        "{err}"
    );
    assert!(err.contains("sentinel 127.0.0.1:"), "{err}");
}

/// Sentinels and master with `requirepass`: the URL's password goes to the master, and to a
/// sentinel once it answers NOAUTH; it is never shown.
#[test]
fn a_password_for_the_master_and_the_sentinel() {
    let canary = "Sentinel-Pa55-canary-77c1";
    let set = SentinelSet::with_password(canary);
    let url = |p: &str| {
        format!(
            "redis+sentinel://:{p}@127.0.0.1:{}/tokens/0",
            set.sentinel.port()
        )
    };
    let cache = RedisCache::new(&url(canary)).unwrap();
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    let now = std::time::SystemTime::now();
    let entry = Entry {
        value: b"tok".to_vec(),
        expires_at: now + Duration::from_secs(3600),
    };
    cache
        .write(&key, &entry.value, entry.expires_at, Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        cache.read(&key, Duration::from_secs(2)).unwrap(),
        Some(entry.value)
    );
    assert_eq!(keys(&set.master), 1);
    let wrong = RedisCache::new(&url(&format!("{canary}-wrong"))).unwrap();
    let err = wrong.read(&key, Duration::from_secs(2)).unwrap_err();
    assert!(!err.contains(canary), "{err}");
    assert!(!format!("{wrong:?} {}", wrong.describe()).contains(canary));
}

#[test]
fn a_sentinel_that_knows_no_such_master_says_so() {
    let set = SentinelSet::start();
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/no-such-master/0",
        set.sentinel.port()
    );
    let cache = RedisCache::new(&url).unwrap();
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    let err = cache.read(&key, Duration::from_secs(2)).unwrap_err();
    assert!(
        err.contains("knows no master named \"no-such-master\""),
        "{err}"
    );
}

/// The role a server says it has (`ROLE`): `master` or `slave`.
fn role(server: &redis_server::RedisServer) -> String {
    match server.command(&["ROLE"]) {
        Reply::Array(parts) => match parts.first() {
            Some(Reply::Bulk(Some(role))) => String::from_utf8_lossy(role).into_owned(),
            other => panic!("ROLE: {other:?}"),
        },
        other => panic!("ROLE: {other:?}"),
    }
}

/// The old master comes back after the failover, empty (nothing saved, as a supervisor
/// restarts a crashed Redis), on its old address. For 8 s or more it answers as a master of
/// its own, until the sentinel makes it a replica of the new one: a read there finds no
/// entry, and a lock and a write there succeed, with no error, and are lost when it becomes
/// a replica. A cache that knew the old master must not reconnect to its address: a new
/// connection goes where the sentinels point now.
#[test]
fn a_cache_that_knew_the_old_master_follows_the_sentinel_when_it_comes_back_empty() {
    let mut set = SentinelSet::start();
    let cache = RedisCache::new(&set.url()).unwrap();
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    let entry = Entry {
        value: b"tok".to_vec(),
        expires_at: std::time::SystemTime::now() + Duration::from_secs(3600),
    };
    let left = Duration::from_secs(2);
    cache
        .write(&key, &entry.value, entry.expires_at, left)
        .unwrap();
    // The cache knows the master now, and keeps a connection to it.
    assert_eq!(cache.read(&key, left).unwrap(), Some(entry.value.clone()));
    wait_until("the entry on the replica", Duration::from_secs(10), || {
        keys(&set.replica) == 1
    });

    set.master.stop();
    wait_until("the failover", Duration::from_secs(30), || {
        set.named_master_port() == Some(set.replica.port())
    });
    wait_until("the replica to be master", Duration::from_secs(10), || {
        info(&set.replica, "replication").contains("role:master")
    });
    set.master.restart();
    let restarted = Instant::now();
    assert_eq!(role(&set.master), "master");
    assert_eq!(keys(&set.master), 0, "back empty");

    // The entry, from the master the sentinel names; the refresh lock and a write there too.
    assert_eq!(cache.read(&key, left).unwrap(), Some(entry.value.clone()));
    let lock = cache.try_lock(&key, Duration::from_secs(30), left).unwrap();
    assert!(lock.is_some());
    let locks =
        |server| match redis_server::RedisServer::command(server, &["KEYS", "logto-m2m:lock:*"]) {
            Reply::Array(keys) => keys.len(),
            other => panic!("KEYS: {other:?}"),
        };
    assert_eq!(
        (locks(&set.replica), locks(&set.master)),
        (1, 0),
        "the lock's key"
    );
    drop(lock);
    cache.write(&key, b"new", entry.expires_at, left).unwrap();
    assert_eq!(cache.read(&key, left).unwrap(), Some(b"new".to_vec()));
    assert_eq!(keys(&set.master), 0, "nothing went to the old master");
    // All of it while the old master still called itself one: the case was tested.
    assert_eq!(
        role(&set.master),
        "master",
        "converted after {:?}",
        restarted.elapsed()
    );
}

/// A sentinel may name a server that is not the master (one that has not yet learned of a
/// failover names the old master, which may be back as a replica, still syncing): its
/// `ROLE` says so, and the cache uses it for nothing, saying why. Here the sentinel is told
/// to watch, as master `other`, a replica of an empty master.
#[test]
fn a_server_the_sentinel_names_that_is_not_the_master_is_not_used() {
    let set = SentinelSet::start();
    let empty = redis_server::RedisServer::start();
    let replica = redis_server::RedisServer::start_args(None, |_| {
        vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            empty.port().to_string(),
        ]
    });
    assert_eq!(role(&replica), "slave");
    let port = replica.port().to_string();
    let monitor = ["SENTINEL", "MONITOR", "other", "127.0.0.1", &port, "1"];
    assert_eq!(set.sentinel.command(&monitor), Reply::Status("OK".into()));
    let url = format!("redis+sentinel://127.0.0.1:{}/other/0", set.sentinel.port());
    let cache = RedisCache::new(&url).unwrap();
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    let left = Duration::from_secs(2);
    let err = cache.read(&key, left).unwrap_err();
    assert_eq!(
        err,
        format!(
            "127.0.0.1:{port} is not the master (its role: slave), though a sentinel names \
             it: a failover is under way, or the sentinel has not learned of one"
        )
    );
    assert!(cache.try_lock(&key, Duration::from_secs(30), left).is_err());
}
