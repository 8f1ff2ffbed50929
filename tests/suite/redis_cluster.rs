//! `RedisCache` on a Redis Cluster (`redis+cluster://`): three masters made with
//! `redis-cli --cluster create`, real `redis-server`s on 127.0.0.1
//! (`tests/common/redis_server.rs`). The fleet shares one token; a token's key and its
//! lock's key are in one slot, on one node; calls follow `MOVED` and `ASK` when the slot
//! moves, and fail within their time when its node is gone.
#![cfg(feature = "redis-cluster")]

use crate::common;
use crate::fleet;
use crate::opaque;
use crate::redis_server;

use std::time::{Duration, Instant, SystemTime};

use common::{M2M_BASIC, Peer};
use fleet::{eight_at_once, get_token, timed_run, token_of};
use logto_m2m::{RedisCache, TokenCache};
use opaque::{Entry, key_of};
use redis_server::{ClusterSet, RedisServer, Reply};

const LEFT: Duration = Duration::from_secs(2);

fn token_key(key: &str) -> String {
    format!("logto-m2m:token:{{{key}}}")
}

fn lock_key(key: &str) -> String {
    format!("logto-m2m:lock:{{{key}}}")
}

fn slot(server: &RedisServer, name: &str) -> i64 {
    match server.command(&["CLUSTER", "KEYSLOT", name]) {
        Reply::Int(n) => n,
        other => panic!("CLUSTER KEYSLOT: {other:?}"),
    }
}

fn text(reply: Reply) -> String {
    match reply {
        Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
        Reply::Status(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

fn entry(token: &str) -> Entry {
    Entry {
        value: token.as_bytes().to_vec(),
        expires_at: SystemTime::now() + Duration::from_secs(3600),
    }
}

#[test]
fn eight_processes_make_one_request_and_the_lock_shares_its_tokens_slot() {
    let peer = Peer::start();
    let cluster = ClusterSet::start(3);
    // One seed is enough: the others come from the slot map.
    let url = cluster.url(1);
    let token = eight_at_once(|| get_token(&peer.token_url(), M2M_BASIC, &url, &[]));
    assert_eq!(peer.stats().token_requests, 1);
    let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &[]));
    assert_eq!(token_of(out).0, token);
    assert_eq!(peer.stats().token_requests, 1);

    // The store's key for the token, as the cluster holds it (the only one there).
    let key = cluster
        .nodes
        .iter()
        .flat_map(|node| node.dump())
        .find_map(|(name, _)| {
            let name = String::from_utf8(name).ok()?;
            let id = name.strip_prefix("logto-m2m:token:{")?.strip_suffix('}')?;
            Some(id.to_owned())
        })
        .expect("the token's key in the cluster");
    let (value, lock) = (token_key(&key), lock_key(&key));
    let any = &cluster.nodes[0];
    assert_eq!(slot(any, &value), slot(any, &lock));
    let owner = cluster.owner_of(&value);
    assert_eq!(owner.command(&["EXISTS", &value]), Reply::Int(1));
    // The lock is taken on that same node.
    let cache = RedisCache::new(&url).unwrap();
    let held = cache.try_lock(&key, Duration::from_secs(30), LEFT).unwrap();
    assert!(held.is_some());
    assert_eq!(owner.command(&["EXISTS", &lock]), Reply::Int(1));
    drop(held);
    assert_eq!(owner.command(&["EXISTS", &lock]), Reply::Int(0));
}

/// The same over TLS: the nodes' certificates from a test CA, the bus between them too.
#[cfg(feature = "rustls")]
#[test]
fn over_tls_too() {
    let peer = Peer::start();
    let ca = redis_server::TestCa::new();
    let cluster = ClusterSet::start_tls(3, &ca);
    let url = cluster.tls_url();
    let ca_file = ca.file("ca.pem");
    let env = [("LOGTO_CACHE_CA_FILE", ca_file.as_str())];
    let token = eight_at_once(|| get_token(&peer.token_url(), M2M_BASIC, &url, &env));
    let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &env));
    assert_eq!(token_of(out).0, token);
    assert_eq!(peer.stats().token_requests, 1);
    let found: usize = cluster
        .nodes
        .iter()
        .map(|n| match n.command(&["DBSIZE"]) {
            Reply::Int(k) => k as usize,
            other => panic!("DBSIZE: {other:?}"),
        })
        .sum();
    assert_eq!(found, 1, "one entry, and no lock left");
}

#[test]
fn calls_follow_a_slot_that_moves() {
    let cluster = ClusterSet::start(3);
    let cache = RedisCache::new(&cluster.url(3)).unwrap();
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    let e = entry("tok-before-the-move");
    cache.write(&key, &e.value, e.expires_at, LEFT).unwrap();
    let name = token_key(&key);
    let slot = slot(&cluster.nodes[0], &name).to_string();
    let from = cluster.owner_of(&name);
    let to = cluster
        .nodes
        .iter()
        .find(|n| n.port() != from.port())
        .unwrap();
    let id = |n: &RedisServer| text(n.command(&["CLUSTER", "MYID"]));
    let (from_id, to_id) = (id(from), id(to));

    // Mid-migration: the key has gone, the slot not yet. The old owner answers ASK.
    assert_eq!(
        to.command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        from.command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
        Reply::Status("OK".into())
    );
    let migrated = from.command(&[
        "MIGRATE",
        "127.0.0.1",
        &to.port().to_string(),
        &name,
        "0",
        "5000",
    ]);
    assert_eq!(migrated, Reply::Status("OK".into()));
    assert_eq!(cache.read(&key, LEFT).unwrap(), Some(e.value.clone()));

    // The slot is the new node's now: the old one answers MOVED, and the map is asked
    // for again.
    for node in &cluster.nodes {
        node.command(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    assert_eq!(cache.read(&key, LEFT).unwrap(), Some(e.value.clone()));
    let newer = entry("tok-after-the-move");
    cache
        .write(&key, &newer.value, newer.expires_at, LEFT)
        .unwrap();
    assert_eq!(to.command(&["EXISTS", &name]), Reply::Int(1));
    assert!(
        cache
            .try_lock(&key, Duration::from_secs(30), LEFT)
            .unwrap()
            .is_some()
    );
    assert_eq!(cache.read(&key, LEFT).unwrap(), Some(newer.value));
}

#[test]
fn a_node_that_is_gone_fails_calls_within_their_time() {
    let mut cluster = ClusterSet::start(3);
    let cache = RedisCache::new(&cluster.url(3)).unwrap();
    let key = key_of("https://tenant.example/oidc/token", "app", "gone\0\0");
    let e = entry("tok");
    cache.write(&key, &e.value, e.expires_at, LEFT).unwrap();
    let name = token_key(&key);
    let port = cluster.owner_of(&name).port();
    let owner = cluster.nodes.iter_mut().find(|n| n.port() == port).unwrap();
    owner.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = cache.read(&key, LEFT).unwrap_err();
        let took = started.elapsed();
        assert!(took < LEFT + Duration::from_millis(500), "{took:?}: {err}");
    }
    // Keys of the other nodes' slots still work.
    let other = (0..100)
        .map(|i| {
            key_of(
                "https://tenant.example/oidc/token",
                "app",
                &format!("k{i}\0\0"),
            )
        })
        .find(|k| {
            let name = token_key(k);
            cluster
                .nodes
                .iter()
                .filter(|n| n.port() != port)
                .any(|n| matches!(n.command(&["EXISTS", &name]), Reply::Int(_)))
        })
        .unwrap();
    let e = entry("tok");
    cache.write(&other, &e.value, e.expires_at, LEFT).unwrap();
    assert!(cache.read(&other, LEFT).unwrap().is_some());
}
