//! `TokenStore` against the real peer, counting the token requests it sees.
//!
//! Each test starts its own peer so that the counters are its own.

use crate::common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime};

use common::{M2M_BASIC, MANAGEMENT_API, Peer, SHOPPING_API, config, shopping};
use logto_m2m::{Token, TokenRequest, TokenStore};

fn store(peer: &Peer, app: (&str, &str)) -> TokenStore {
    TokenStore::new(config(peer, app))
}

/// Sleeps until 100 ms after `token` expires.
fn sleep_past_expiry(token: &Token) {
    let expiry = token.expires_at().unwrap();
    let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    thread::sleep(left + Duration::from_millis(100));
}

/// Runs `f` on `n` threads released at once; returns their results in order.
fn at_once<T: Send>(n: usize, f: impl Fn() -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn thirty_two_threads_one_request_one_token() {
    let peer = Peer::start();
    let store = store(&peer, M2M_BASIC);
    let request = shopping("read:products");
    let tokens: Vec<Arc<Token>> = at_once(32, || store.get(&request).unwrap());
    assert_eq!(peer.stats().token_requests, 1);
    assert!(
        tokens
            .iter()
            .all(|t| t.access_token() == tokens[0].access_token())
    );
}

#[test]
fn thirty_two_threads_one_failed_request_same_error() {
    let peer = Peer::start();
    let store = store(&peer, ("m2m-basic", "wrong-secret"));
    let request = shopping("read:products");
    let errors = at_once(32, || store.get(&request).unwrap_err());
    assert_eq!(peer.stats().token_requests, 1);
    for e in &errors {
        assert_eq!(e.oauth_error(), Some("invalid_client"));
        assert_eq!(e.status(), Some(401));
        assert_eq!(e.to_string(), errors[0].to_string());
    }
    // A caller's retry loop right after: served from the backoff, no new request.
    for _ in 0..20 {
        assert!(store.get(&request).is_err());
    }
    assert_eq!(peer.stats().token_requests, 1);
}

#[test]
fn short_lifetime_one_request_then_one_more_after_expiry() {
    let peer = Peer::start_with(&[("ACCESS_TOKEN_TTL", "2")]);
    let store = store(&peer, M2M_BASIC);
    let request = shopping("read:products");
    let first = store.get(&request).unwrap();
    assert_eq!(first.expires_in(), Duration::from_secs(2));
    // The margin is clamped to half the lifetime: 1 s of use before a refresh.
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(100));
        let t = store.get(&request).unwrap();
        assert_eq!(t.access_token(), first.access_token());
    }
    assert_eq!(peer.stats().token_requests, 1);

    sleep_past_expiry(&first);
    let second = store.get(&request).unwrap();
    assert_ne!(second.access_token(), first.access_token());
    assert!(second.expires_at().unwrap() > SystemTime::now());
    assert_eq!(peer.stats().token_requests, 2);
}

#[test]
fn refresh_ahead_one_request_others_keep_the_old_token() {
    let peer = Peer::start_with(&[("ACCESS_TOKEN_TTL", "4")]);
    let store = store(&peer, M2M_BASIC);
    let request = shopping("read:products");
    let first = store.get(&request).unwrap();
    // Into the refresh margin (clamped to 2 s of a 4 s token, of which the jitter keeps at
    // least 1 s: the refresh starts between 2 s and 3 s), not past expiry.
    thread::sleep(Duration::from_millis(3200));
    let tokens = at_once(16, || store.get(&request).unwrap());
    assert_eq!(peer.stats().token_requests, 2);
    let fresh: Vec<_> = tokens
        .iter()
        .filter(|t| t.access_token() != first.access_token())
        .collect();
    assert!(
        !fresh.is_empty(),
        "the refreshing caller gets the new token"
    );
    assert!(
        tokens
            .iter()
            .all(|t| t.expires_at().unwrap() > SystemTime::now())
    );
    // Afterwards everyone gets the new one, with no further request.
    let later = store.get(&request).unwrap();
    assert_eq!(later.access_token(), fresh[0].access_token());
    assert_eq!(peer.stats().token_requests, 2);
}

#[test]
fn invalidate_makes_exactly_one_new_request() {
    let peer = Peer::start();
    let store = store(&peer, M2M_BASIC);
    let request = shopping("read:products");
    let first = store.get(&request).unwrap();
    store.invalidate(&request);
    let tokens = at_once(8, || store.get(&request).unwrap());
    assert_eq!(peer.stats().token_requests, 2);
    assert!(
        tokens
            .iter()
            .all(|t| t.access_token() != first.access_token())
    );
}

#[test]
fn keys_are_resource_and_scope_set() {
    let peer = Peer::start();
    let store = store(&peer, M2M_BASIC);
    let shop = TokenRequest::new(SHOPPING_API)
        .scope("read:products")
        .scope("write:products");
    let shop_reordered =
        TokenRequest::new(SHOPPING_API).scope("write:products read:products read:products");
    let mgmt = TokenRequest::new(MANAGEMENT_API).scope("all");
    let a = store.get(&shop).unwrap();
    let b = store.get(&shop_reordered).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let c = store.get(&mgmt).unwrap();
    assert_ne!(a.access_token(), c.access_token());
    store.get(&mgmt).unwrap();
    assert_eq!(peer.stats().token_requests, 2);
}

#[test]
fn failed_refresh_keeps_the_still_valid_token() {
    let mut peer = Some(Peer::start_with(&[("ACCESS_TOKEN_TTL", "4")]));
    let store = store(peer.as_ref().unwrap(), M2M_BASIC);
    let request = shopping("read:products");
    let first = store.get(&request).unwrap();
    // The server goes away; inside the refresh margin the refresh fails, and callers keep
    // the old token until it expires.
    drop(peer.take());
    thread::sleep(Duration::from_millis(2200));
    let t = store.get(&request).unwrap();
    assert_eq!(t.access_token(), first.access_token());
    // After expiry there is nothing valid to fall back on: the error shows.
    sleep_past_expiry(&first);
    let err = store.get(&request).unwrap_err();
    assert!(
        matches!(err.kind(), logto_m2m::ErrorKind::Transport { .. }),
        "{err:?}"
    );
}
