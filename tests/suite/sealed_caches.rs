//! What a `TokenStore` leaves in a shared cache is sealed: the token file's bytes and every
//! key and value of a real `redis-server` (with `--features redis`) hold no token and no
//! secret, and an entry copied under another app's key, written with another secret, with
//! a byte changed, or in the format before sealing is not used: the store asks the real
//! peer instead, and says nothing of it (a foreign entry is as good as absent).

use crate::common;
#[cfg(feature = "redis")]
use crate::redis_server;

use std::fs;
use std::path::Path;

use base64::Engine;
use common::{M2M_BASIC, M2M_BASIC_NEXT, M2M_POST, Peer, TempDir, config, shopping};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use logto_m2m::{AuthMethod, CacheLock, TokenCache, TokenRequest, TokenStore};

/// Every form the app's secrets could leak in: as sent, and the Basic value.
fn secrets() -> Vec<String> {
    let basic = |(id, secret): (&str, &str)| {
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    };
    vec![
        M2M_BASIC.1.into(),
        M2M_BASIC_NEXT.1.into(),
        M2M_POST.1.into(),
        basic(M2M_BASIC),
        basic(M2M_POST),
    ]
}

/// Fails if `bytes` hold any of `tokens`, any of their JWT parts, or a secret.
#[track_caller]
fn assert_nothing_readable(what: &str, bytes: &[u8], tokens: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for token in tokens {
        assert!(!token.is_empty());
        for part in token.split('.') {
            assert!(!text.contains(part), "{what} holds a token part: {text}");
        }
    }
    for secret in secrets() {
        assert!(!text.contains(&secret), "{what} holds a secret: {text}");
    }
    for field in ["access_token", "read:products", "shopping.api"] {
        assert!(!text.contains(field), "{what} holds {field:?}: {text}");
    }
}

/// The key a store with `config` shares `request`'s token under: what a cache that records
/// the keys it is asked for sees. The store is given no time, so it reads the cache and
/// gives up before it could send a request.
fn cache_key(config: logto_m2m::Config, request: &TokenRequest) -> String {
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);
    impl TokenCache for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        fn read(&self, key: &str, _: Duration) -> Result<Option<Vec<u8>>, String> {
            self.0.lock().unwrap().push(key.to_owned());
            Ok(None)
        }
        fn write(&self, _: &str, _: &[u8], _: SystemTime, _: Duration) -> Result<(), String> {
            Ok(())
        }
        fn try_lock(&self, _: &str, _: Duration, _: Duration) -> Result<Option<CacheLock>, String> {
            Ok(None)
        }
    }
    let recorder = Recorder::default();
    let store = TokenStore::new(config.timeout(Duration::ZERO)).token_cache(recorder.clone());
    assert!(store.get(request).is_err());
    let keys = recorder.0.lock().unwrap();
    keys.first().cloned().expect("the store read the cache")
}

fn post_config(peer: &Peer) -> logto_m2m::Config {
    config(peer, M2M_POST).auth_method(AuthMethod::ClientSecretPost)
}

// ---------------------------------------------------------------------------------------
// The token file

fn file_store(peer: &Peer, app: (&str, &str), path: &Path) -> TokenStore {
    TokenStore::new(config(peer, app)).cache_file(path)
}

#[test]
fn the_token_file_holds_no_token_and_no_secret() {
    let peer = Peer::start();
    let dir = TempDir::new("sealed-file");
    let path = dir.path().join("tokens.json");
    let request = shopping("read:products");
    let token = file_store(&peer, M2M_BASIC, &path).get(&request).unwrap();
    // A new store, as in the next process: the token comes from the file, sealed or not.
    let again = file_store(&peer, M2M_BASIC, &path).get(&request).unwrap();
    assert_eq!(again.access_token(), token.access_token());
    assert_eq!(peer.stats().token_requests, 1);
    let bytes = fs::read(&path).unwrap();
    assert_nothing_readable("the token file", &bytes, &[token.access_token().into()]);
    assert!(
        String::from_utf8_lossy(&bytes).contains("logto-m2m:sealed:1:"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn a_file_entry_of_another_secret_app_or_with_a_changed_byte_is_not_used() {
    let peer = Peer::start();
    let dir = TempDir::new("sealed-file-foreign");
    let path = dir.path().join("tokens.json");
    let request = shopping("read:products");
    let mut tokens = Vec::new();
    let mut get = |store: TokenStore| {
        let token = store.get(&request).unwrap();
        assert!(
            store.last_cache_error().is_none(),
            "{:?}",
            store.last_cache_error()
        );
        tokens.push(token.access_token().to_owned());
    };

    // Written with the app's other secret: the same app, another key, so a request.
    get(file_store(&peer, M2M_BASIC, &path));
    get(file_store(&peer, M2M_BASIC_NEXT, &path));
    assert_eq!(peer.stats().token_requests, 2, "another secret");
    // And the other way round, now that the file holds the second secret's entry.
    get(file_store(&peer, M2M_BASIC, &path));
    assert_eq!(peer.stats().token_requests, 3);
    // The same store's secret again: from the file.
    get(file_store(&peer, M2M_BASIC, &path));
    assert_eq!(peer.stats().token_requests, 3);

    // m2m-basic's entry moved under m2m-post's name and id: not used.
    let basic_key = cache_key(config(&peer, M2M_BASIC), &request);
    let post_key = cache_key(post_config(&peer), &request);
    let text = fs::read_to_string(&path).unwrap();
    let moved = text.replace(&basic_key, &post_key);
    assert_ne!(moved, text);
    fs::write(&path, &moved).unwrap();
    get(TokenStore::new(post_config(&peer)).cache_file(&path));
    assert_eq!(peer.stats().issued_by(M2M_POST.0), 1, "another app's entry");

    // One byte of the sealed entry changed: not used.
    get(file_store(&peer, M2M_BASIC, &path));
    let requests = peer.stats().token_requests;
    let text = fs::read_to_string(&path).unwrap();
    // m2m-basic's value, after its key (the file holds m2m-post's too).
    let ours = text.find(&basic_key).unwrap();
    let at =
        ours + text[ours..].find("logto-m2m:sealed:1:").unwrap() + "logto-m2m:sealed:1:".len() + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    fs::write(&path, &bytes).unwrap();
    get(file_store(&peer, M2M_BASIC, &path));
    assert_eq!(peer.stats().token_requests, requests + 1, "a changed byte");

    assert_nothing_readable("the token file", &fs::read(&path).unwrap(), &tokens);
}

/// A file of the format before sealing (version 1, the token in the clear) is ignored
/// without a warning, and replaced by a sealed one.
#[test]
fn a_file_of_the_previous_format_is_ignored_and_replaced() {
    let peer = Peer::start();
    let dir = TempDir::new("sealed-file-v1");
    let path = dir.path().join("tokens.json");
    let request = shopping("read:products");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let v1 = format!(
        r#"{{"version":1,"token_url":"{}","app_id":"m2m-basic","tokens":[{{"key":"https://shopping.api\u0000read:products\u0000","access_token":"planted-clear-token","expires_in":3600,"scope":"read:products","received_at_ms":{now_ms},"expires_at_ms":{}}}]}}"#,
        peer.token_url(),
        now_ms + 3_600_000
    );
    fs::write(&path, v1).unwrap();
    #[cfg(unix)]
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let store = file_store(&peer, M2M_BASIC, &path);
    let token = store.get(&request).unwrap();
    assert_ne!(token.access_token(), "planted-clear-token");
    assert_eq!(peer.stats().token_requests, 1);
    assert!(
        store.last_cache_error().is_none(),
        "{:?}",
        store.last_cache_error()
    );
    let bytes = fs::read(&path).unwrap();
    assert_nothing_readable("the token file", &bytes, &[token.access_token().into()]);
    assert!(!String::from_utf8_lossy(&bytes).contains("planted-clear-token"));
}

// ---------------------------------------------------------------------------------------
// Redis

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use logto_m2m::RedisCache;
    use redis_server::{RedisServer, Reply};

    fn redis_store(peer: &Peer, config: logto_m2m::Config, redis: &RedisServer) -> TokenStore {
        let _ = peer;
        TokenStore::new(config).token_cache(RedisCache::new(&redis.url()).unwrap())
    }

    fn value_name(key: &str) -> String {
        format!("logto-m2m:token:{{{key}}}")
    }

    /// Every key and value in the server, scanned.
    #[track_caller]
    fn assert_redis_holds_nothing_readable(redis: &RedisServer, tokens: &[String]) {
        let dump = redis.dump();
        assert!(!dump.is_empty());
        for (key, value) in dump {
            assert_nothing_readable("a redis key", &key, tokens);
            assert_nothing_readable("a redis value", &value, tokens);
        }
    }

    fn get(value: Reply) -> Vec<u8> {
        match value {
            Reply::Bulk(Some(v)) => v,
            other => panic!("not a value: {other:?}"),
        }
    }

    #[test]
    fn redis_holds_no_token_and_no_secret() {
        let peer = Peer::start();
        let redis = RedisServer::start();
        let request = shopping("read:products");
        let token = redis_store(&peer, config(&peer, M2M_BASIC), &redis)
            .get(&request)
            .unwrap();
        let again = redis_store(&peer, config(&peer, M2M_BASIC), &redis)
            .get(&request)
            .unwrap();
        assert_eq!(again.access_token(), token.access_token());
        assert_eq!(peer.stats().token_requests, 1);
        assert_redis_holds_nothing_readable(&redis, &[token.access_token().into()]);
    }

    #[test]
    fn a_redis_value_copied_to_another_key_written_with_another_secret_or_changed_is_not_used() {
        let peer = Peer::start();
        let redis = RedisServer::start();
        let request = shopping("read:products");
        let mut tokens = Vec::new();
        let mut get_with = |config: logto_m2m::Config| {
            let store = redis_store(&peer, config, &redis);
            let token = store.get(&request).unwrap();
            assert!(
                store.last_cache_error().is_none(),
                "{:?}",
                store.last_cache_error()
            );
            tokens.push(token.access_token().to_owned());
        };
        let basic = cache_key(config(&peer, M2M_BASIC), &request);
        let post = cache_key(post_config(&peer), &request);

        // m2m-basic's value copied under m2m-post's key: a request for m2m-post.
        get_with(config(&peer, M2M_BASIC));
        let value = get(redis.command(&["GET", &value_name(&basic)]));
        redis.command_bytes(&[b"SET", value_name(&post).as_bytes(), &value]);
        get_with(post_config(&peer));
        assert_eq!(peer.stats().issued_by(M2M_POST.0), 1, "another app's value");

        // Written with m2m-basic's other secret: m2m-basic asks again.
        redis.command(&["DEL", &value_name(&basic)]);
        get_with(config(&peer, M2M_BASIC_NEXT));
        get_with(config(&peer, M2M_BASIC));
        assert_eq!(peer.stats().issued_by(M2M_BASIC.0), 3, "another secret");
        // Its own value now: from Redis.
        get_with(config(&peer, M2M_BASIC));
        assert_eq!(peer.stats().issued_by(M2M_BASIC.0), 3);

        // One byte of the value changed: not used.
        let mut value = get(redis.command(&["GET", &value_name(&basic)]));
        let at = value.len() / 2;
        value[at] = if value[at] == b'A' { b'B' } else { b'A' };
        redis.command_bytes(&[b"SET", value_name(&basic).as_bytes(), &value]);
        get_with(config(&peer, M2M_BASIC));
        assert_eq!(peer.stats().issued_by(M2M_BASIC.0), 4, "a changed byte");

        // A value of the format before sealing, under the right key: not used.
        let now_ms = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let clear = format!(
            r#"{{"v":1,"token_url":"{}","app_id":"m2m-basic","key":"https://shopping.api\u0000read:products\u0000","access_token":"planted-clear-token","scope":"read:products","received_at_ms":{now_ms},"expires_at_ms":{}}}"#,
            peer.token_url(),
            now_ms + 3_600_000
        );
        redis.command(&["SET", &value_name(&basic), &clear]);
        get_with(config(&peer, M2M_BASIC));
        assert_eq!(
            peer.stats().issued_by(M2M_BASIC.0),
            5,
            "the previous format"
        );
        assert!(!tokens.iter().any(|t| t == "planted-clear-token"));

        assert_redis_holds_nothing_readable(&redis, &tokens);
    }
}
