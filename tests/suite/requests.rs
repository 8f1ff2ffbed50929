//! What a `TokenRequest` is to the library (issue 31): refused before anything is sent when
//! a field has a character no identifier has, never served another request's token, and,
//! acting for an impersonated user through a store, served by the store's one Management
//! API token.
//!
//! Refusals are checked against the real peer, which counts what reaches it, and a cache
//! that counts what it is asked. The token exchange needs Logto's Management API, which
//! the peer does not have: the real one is in `tests/real_logto/token_exchange.rs`; here a
//! loopback server plays it only for what the real one can't be made to do on cue (a 401
//! to a Management API token that is still fresh) and for the collision of the issue.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::loopback::{Conn, Loopback};
use common::{M2M_BASIC, Peer, SHOPPING_API, config};
use logto_m2m::{
    Bearer, CacheLock, CallError, Config, ErrorKind, TokenCache, TokenRequest, TokenStore,
    request_token,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A cache that counts every question it is asked and has nothing.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl TokenCache for Counting {
    fn describe(&self) -> String {
        "counting cache".into()
    }
    fn read(&self, _: &str, _: Duration) -> Result<Option<Vec<u8>>, String> {
        self.0.fetch_add(1, SeqCst);
        Ok(None)
    }
    fn write(&self, _: &str, _: &[u8], _: SystemTime, _: Duration) -> Result<(), String> {
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
    fn try_lock(&self, _: &str, _: Duration, _: Duration) -> Result<Option<CacheLock>, String> {
        self.0.fetch_add(1, SeqCst);
        Ok(Some(Box::new(())))
    }
}

/// Each way a request is used refuses it with a config error naming `field`.
#[track_caller]
fn refused_everywhere(config: &Config, request: &TokenRequest, field: &str, api: &str) {
    let named = |e: &logto_m2m::Error| {
        assert!(matches!(e.kind(), ErrorKind::Config { .. }), "{e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    };
    named(&request_token(config, request).unwrap_err());
    let cache = Counting::default();
    let store = Arc::new(TokenStore::new(config.clone()).token_cache(cache.clone()));
    named(&store.get(request).unwrap_err());
    match store.call(request, |_| panic!("called without a token")) {
        Err(CallError::Token(e)) => named(&e),
        other => panic!("{field}: {other:?}"),
    }
    store.invalidate(request);
    let bearer = Bearer::new(Arc::clone(&store), request.clone(), api).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(bearer)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    match agent.get(&format!("{api}/products")).call() {
        Err(ureq::Error::Other(e)) => named(e.downcast_ref().expect("the library's error")),
        other => panic!("{field}: {other:?}"),
    }
    assert_eq!(cache.0.load(SeqCst), 0, "{field}: the cache was asked");
    assert_eq!(store.stats().token_requests, 0, "{field}");
}

/// A control character in the resource, a scope or the organization, or a character RFC
/// 6749 does not allow in a scope: refused by `request_token`, `get`, `call` and `Bearer`,
/// and neither the token endpoint, the API nor the cache hears of it.
#[test]
fn requests_with_forbidden_characters_are_refused_before_anything_is_sent() {
    let peer = Peer::start();
    let config = config(&peer, M2M_BASIC);
    let api = peer.base_url();
    for (request, field) in [
        (TokenRequest::new("https://shopping.api\0"), "the resource"),
        (TokenRequest::new("r\0s"), "the resource \"r\\0s\""),
        (
            TokenRequest::new("https://shopping.api\r\nx-injected: 1"),
            "the resource",
        ),
        (
            TokenRequest::new(SHOPPING_API).scope("read:products\0"),
            "the scope \"read:products\\0\"",
        ),
        (
            TokenRequest::new(SHOPPING_API).scope("read\"products"),
            "the scope",
        ),
        (
            TokenRequest::new(SHOPPING_API).scope("lecture:é"),
            "the scope",
        ),
        (
            TokenRequest::new("").organization("\0org0000000000000001"),
            "the organization id",
        ),
        (
            TokenRequest::new("").organization("org\u{7f}"),
            "the organization id",
        ),
    ] {
        refused_everywhere(&config, &request, field, &api);
    }
    let stats = peer.stats();
    assert_eq!(stats.token_requests, 0, "{stats:?}");
    assert_eq!(stats.api_requests, 0, "{stats:?}");
}

// ---------------------------------------------------------------------------------------
// Logto played by a loopback server: client_credentials, the Management API's subject
// tokens and the token exchange.

/// What the played Logto saw, and which Management API tokens it refuses.
#[derive(Default)]
struct Seen {
    client_credentials: AtomicU64,
    subject_tokens: AtomicU64,
    exchanges: AtomicU64,
    /// Management API tokens answered 401 at `/api/subject-tokens`.
    refused: Mutex<Vec<String>>,
    /// How long `/api/subject-tokens` takes to answer, in milliseconds.
    subject_token_delay_ms: AtomicU64,
}

/// A value of the form field or JSON string `name` in `body`, as the library sends it
/// (no escapes in the values these tests use).
fn field<'a>(body: &'a str, name: &str) -> &'a str {
    let form = format!("{name}=");
    let json = format!("\"{name}\":\"");
    if let Some(at) = body.find(&json) {
        let rest = &body[at + json.len()..];
        return &rest[..rest.find('"').unwrap_or(rest.len())];
    }
    body.split('&')
        .find_map(|p| p.strip_prefix(form.as_str()))
        .unwrap_or_default()
}

/// Answers each request of the connection as Logto would.
fn play_logto(c: &mut Conn, seen: &Seen) {
    loop {
        let r = &c.request;
        let (status, body) = match r.target() {
            "/oidc/token" if r.body.contains("grant_type=client_credentials") => {
                let n = seen.client_credentials.fetch_add(1, SeqCst);
                (200, token_json(&format!("mgmt-{n}"), "all"))
            }
            "/oidc/token" => {
                seen.exchanges.fetch_add(1, SeqCst);
                let subject = field(&r.body, "subject_token");
                (200, token_json(&format!("user-of-{subject}"), "read"))
            }
            "/api/subject-tokens" => {
                seen.subject_tokens.fetch_add(1, SeqCst);
                let delay = seen.subject_token_delay_ms.load(SeqCst);
                std::thread::sleep(Duration::from_millis(delay));
                let bearer = r.header("authorization").unwrap_or_default();
                let token = bearer.strip_prefix("Bearer ").unwrap_or_default();
                if seen.refused.lock().unwrap().iter().any(|t| t == token) {
                    (
                        401,
                        r#"{"code":"auth.unauthorized","message":"Unauthorized."}"#.to_owned(),
                    )
                } else {
                    let user = field(&r.body, "userId");
                    (201, format!(r#"{{"subjectToken":"sub_{user}"}}"#))
                }
            }
            _ => (404, "{}".to_owned()),
        };
        let head = format!(
            "HTTP/1.1 {status} Played\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if !(c.send(head.as_bytes()) && c.send(body.as_bytes()) && c.next_request()) {
            return;
        }
    }
}

fn token_json(token: &str, scope: &str) -> String {
    format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600,"scope":"{scope}"}}"#
    )
}

fn played_logto() -> (Loopback, Arc<Seen>, Config) {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    let server = Loopback::start(32, Duration::from_secs(20), move |c| play_logto(c, &s));
    let config = Config::logto(
        &format!("http://127.0.0.1:{}", server.port()),
        "app",
        "canary-secret-0d1e",
    )
    .unwrap()
    .timeout(TIMEOUT);
    (server, seen, config)
}

/// The issue's first find: an app's request whose organization id spelled an
/// impersonation's key part was handed the user's token. Now it is refused, and its key
/// would differ anyway.
#[test]
fn an_app_request_never_gets_an_impersonated_users_token() {
    let (_server, seen, config) = played_logto();
    let store = TokenStore::new(config);
    let victim = TokenRequest::new(SHOPPING_API)
        .scope("read")
        .impersonate("victim");
    assert_eq!(
        store.get(&victim).unwrap().access_token(),
        "user-of-sub_victim"
    );
    // The key part the store gave the victim before keys were length-prefixed: 32 hex
    // digits of SHA-256 over the label, the user id's length and the user id.
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(b"impersonate");
    hash.update(&6u64.to_be_bytes());
    hash.update(b"victim");
    let part: String = hash.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let forged = TokenRequest::new(SHOPPING_API)
        .scope("read")
        .organization(&format!("\0{part}"));
    let e = store.get(&forged).unwrap_err();
    assert!(e.to_string().contains("the organization id"), "{e}");
    assert_eq!(seen.exchanges.load(SeqCst), 1);
    assert_eq!(seen.client_credentials.load(SeqCst), 1);
}

/// Impersonation through a store takes its Management API token from the store: one for
/// several users and refreshes. When the Management API answers 401 to it, the store's
/// token is dropped and one fresh one asked for, and the subject token asked again, once.
/// `request_token` alone gets a new one each time, and does not retry.
#[test]
fn impersonation_uses_the_stores_management_token_and_one_fresh_one_after_a_401() {
    let (_server, seen, config) = played_logto();
    let store = TokenStore::new(config.clone());
    let management = TokenRequest::management_api(config.token_url());
    let cc = || seen.client_credentials.load(SeqCst);
    for user in ["u1", "u2", "u3"] {
        let request = TokenRequest::new(SHOPPING_API).impersonate(user);
        for _ in 0..2 {
            let token = store.get(&request).unwrap();
            assert_eq!(token.access_token(), format!("user-of-sub_{user}"));
            store.invalidate(&request);
        }
    }
    assert_eq!(seen.exchanges.load(SeqCst), 6);
    assert_eq!(cc(), 1, "one management api token for 3 users, 6 exchanges");
    assert_eq!(store.get(&management).unwrap().access_token(), "mgmt-0");

    // Logto refuses the store's token: dropped, one fresh one, the subject token again.
    seen.refused.lock().unwrap().push("mgmt-0".into());
    let request = TokenRequest::new(SHOPPING_API).impersonate("u4");
    let subject_tokens = seen.subject_tokens.load(SeqCst);
    let token = store.get(&request).unwrap();
    assert_eq!(token.access_token(), "user-of-sub_u4");
    assert_eq!(cc(), 2);
    assert_eq!(seen.subject_tokens.load(SeqCst), subject_tokens + 2);
    assert_eq!(store.get(&management).unwrap().access_token(), "mgmt-1");

    // Refused again with the fresh one too: the 401, after one retry only.
    seen.refused.lock().unwrap().push("mgmt-1".into());
    seen.refused.lock().unwrap().push("mgmt-2".into());
    let subject_tokens = seen.subject_tokens.load(SeqCst);
    let e = store
        .get(&TokenRequest::new(SHOPPING_API).impersonate("u5"))
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert_eq!(cc(), 3);
    assert_eq!(seen.subject_tokens.load(SeqCst), subject_tokens + 2);

    // Without a store: a token per exchange, and a 401 is final.
    seen.refused.lock().unwrap().clear();
    let before = cc();
    for _ in 0..2 {
        request_token(&config, &TokenRequest::new(SHOPPING_API).impersonate("u6")).unwrap();
    }
    assert_eq!(cc(), before + 2);
    seen.refused
        .lock()
        .unwrap()
        .push(format!("mgmt-{}", before + 2));
    let subject_tokens = seen.subject_tokens.load(SeqCst);
    let e = request_token(&config, &TokenRequest::new(SHOPPING_API).impersonate("u7")).unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert_eq!(seen.subject_tokens.load(SeqCst), subject_tokens + 1);
}

/// Through a token file, the Management API token is shared like any other: a second store
/// (the next run of a job) impersonates another user with the first one's. Its refresh
/// happens inside the user token's, which holds the file's one lock: it does not wait for
/// that lock (which would take the whole timeout and leave a cache error).
#[test]
fn impersonation_through_a_token_file_shares_the_management_token_without_waiting() {
    let (_server, seen, config) = played_logto();
    let dir = common::TempDir::new("requests-impersonation-file");
    let file = dir.path().join("tokens.json");
    let run = |user: &str| {
        let store = TokenStore::new(config.clone()).cache_file(&file);
        let started = std::time::Instant::now();
        let token = store
            .get(&TokenRequest::new(SHOPPING_API).impersonate(user))
            .unwrap();
        assert_eq!(token.access_token(), format!("user-of-sub_{user}"));
        assert!(
            store.last_cache_error().is_none(),
            "{:?}",
            store.last_cache_error()
        );
        started.elapsed()
    };
    for user in ["u1", "u2", "u3", "u1"] {
        let took = run(user);
        assert!(took < TIMEOUT / 2, "{user}: {took:?}");
    }
    assert_eq!(seen.client_credentials.load(SeqCst), 1);
    assert_eq!(seen.exchanges.load(SeqCst), 3);
}

/// The user token's refresh holds the token file's one lock when its Management API token
/// is refused and it asks the store for a fresh one; another thread has meanwhile begun
/// refreshing that token and waits for the file's lock. The refresh holding the lock does
/// not wait for that thread (which waits for it: each would wait out the timeout), it
/// refreshes the token itself, and the other thread reads it from the file: one new token,
/// no caller waits for the timeout, no cache error.
#[test]
fn a_refresh_holding_the_file_lock_does_not_wait_for_a_refresh_waiting_for_that_lock() {
    let (_server, seen, config) = played_logto();
    let dir = common::TempDir::new("requests-impersonation-nested");
    let store = TokenStore::new(config.clone()).cache_file(dir.path().join("tokens.json"));
    let management = TokenRequest::management_api(config.token_url());
    assert_eq!(store.get(&management).unwrap().access_token(), "mgmt-0");
    seen.refused.lock().unwrap().push("mgmt-0".into());
    seen.subject_token_delay_ms.store(1000, SeqCst);

    let (user, other) = std::thread::scope(|scope| {
        let timed = |request: TokenRequest| {
            let store = &store;
            move || {
                let started = std::time::Instant::now();
                let token = store.get(&request);
                (
                    token.map(|t| t.access_token().to_owned()),
                    started.elapsed(),
                )
            }
        };
        let user = scope.spawn(timed(TokenRequest::new(SHOPPING_API).impersonate("u1")));
        // The user token's refresh is at the Management API (it holds the file's lock):
        // this thread drops the Management API token, and another one asks for it.
        for _ in 0..500 {
            if seen.subject_tokens.load(SeqCst) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(seen.subject_tokens.load(SeqCst), 1);
        store.invalidate(&management);
        let other = scope.spawn(timed(management.clone()));
        (user.join().unwrap(), other.join().unwrap())
    });
    let ((token, user_took), (management_token, other_took)) = (user, other);
    assert_eq!(token.unwrap(), "user-of-sub_u1");
    assert_eq!(management_token.unwrap(), "mgmt-1");
    assert!(user_took < TIMEOUT / 2, "the user token took {user_took:?}");
    assert!(
        other_took < TIMEOUT / 2,
        "the management token took {other_took:?}"
    );
    assert_eq!(seen.client_credentials.load(SeqCst), 2);
    assert_eq!(seen.subject_tokens.load(SeqCst), 2);
    assert!(
        store.last_cache_error().is_none(),
        "{:?}",
        store.last_cache_error()
    );
}

/// A user id with a control character is refused before the Management API is asked.
#[test]
fn a_user_id_with_a_control_character_is_refused_before_anything_is_sent() {
    let (server, seen, config) = played_logto();
    for user in ["victim\0", "u\r\n1", "\u{1b}[31mu"] {
        let request = TokenRequest::new(SHOPPING_API).impersonate(user);
        let e = request_token(&config, &request).unwrap_err();
        assert!(e.to_string().contains("the user id to impersonate"), "{e}");
        let store = TokenStore::new(config.clone()).token_cache(Counting::default());
        let e = store.get(&request).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Config { .. }), "{e}");
    }
    let request = TokenRequest::new(SHOPPING_API)
        .impersonate("u1")
        .impersonation_context("{\"a\":1} trailing");
    let e = TokenStore::new(config).get(&request).unwrap_err();
    assert!(e.to_string().contains("impersonation context"), "{e}");
    assert_eq!(seen.client_credentials.load(SeqCst), 0);
    assert_eq!(server.finish().requests, 0);
}
