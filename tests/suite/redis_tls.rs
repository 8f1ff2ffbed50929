//! `RedisCache` over TLS as companies deploy it: a test CA, made with the `openssl` command
//! for this run, signs the server's certificate (and a client's), and a real `redis-server`
//! speaks TLS with it (`--tls-port`, `--tls-auth-clients`). The fleet is `get_token`
//! processes against the real peer, with `LOGTO_CACHE_CA_FILE`, `LOGTO_CACHE_CERT_FILE` and
//! `LOGTO_CACHE_KEY_FILE`.
#![cfg(all(feature = "redis", feature = "rustls"))]

use crate::common;
use crate::fleet;
use crate::opaque;
use crate::redis_server;

use common::{M2M_BASIC, Peer};
use fleet::{eight_at_once, get_token, timed_run, token_of};
use logto_m2m::{RedisCache, TokenCache};
use opaque::key_of;
use redis_server::{Reply, TestCa, TlsRedis};

#[test]
fn with_the_ca_eight_processes_make_one_request() {
    let peer = Peer::start();
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca, false);
    let ca_file = ca.file("ca.pem");
    let env = [("LOGTO_CACHE_CA_FILE", ca_file.as_str())];
    let token = eight_at_once(|| get_token(&peer.token_url(), M2M_BASIC, &redis.url(), &env));
    assert_eq!(peer.stats().token_requests, 1);
    // And the runs after them take it from Redis.
    let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &redis.url(), &env));
    assert_eq!(token_of(out).0, token);
    assert_eq!(peer.stats().token_requests, 1);
    // It went over TLS: the entry is there (seen through the plain port).
    let Reply::Array(keys) = redis.server.command(&["KEYS", "logto-m2m:token:*"]) else {
        panic!("KEYS");
    };
    assert_eq!(keys.len(), 1);
}

#[test]
fn without_the_ca_the_warning_names_the_certificate_problem() {
    let peer = Peer::start();
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca, false);
    for _ in 0..2 {
        let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &redis.url(), &[]));
        let (_, stderr) = token_of(out);
        assert!(
            stderr.contains("warning: redis rediss://127.0.0.1:"),
            "{stderr}"
        );
        assert!(stderr.contains("UnknownIssuer"), "{stderr}");
        assert!(stderr.contains("LOGTO_CACHE_CA_FILE"), "{stderr}");
    }
    // Both tokens came from the endpoint, and nothing reached Redis.
    assert_eq!(peer.stats().token_requests, 2);
    assert_eq!(redis.server.command(&["DBSIZE"]), Reply::Int(0));
}

#[test]
fn a_server_that_asks_for_client_certificates_gets_ours_or_says_so() {
    let peer = Peer::start();
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca, true);
    let (ca_file, cert, key) = (
        ca.file("ca.pem"),
        ca.file("client.pem"),
        ca.file("client.key"),
    );
    let with_cert = [
        ("LOGTO_CACHE_CA_FILE", ca_file.as_str()),
        ("LOGTO_CACHE_CERT_FILE", cert.as_str()),
        ("LOGTO_CACHE_KEY_FILE", key.as_str()),
    ];
    let url = redis.url();
    let first = token_of(timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &with_cert)).0);
    let second = token_of(timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &with_cert)).0);
    assert!(
        !first.1.contains("warning") && !second.1.contains("warning"),
        "{}",
        first.1
    );
    assert_eq!(first.0, second.0);
    assert_eq!(peer.stats().token_requests, 1);

    // Without a client certificate the server ends the handshake: a warning that says
    // what is missing, and the token from the endpoint.
    let ca_only = [("LOGTO_CACHE_CA_FILE", ca_file.as_str())];
    let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &ca_only));
    let (_, stderr) = token_of(out);
    assert!(stderr.contains("warning: redis"), "{stderr}");
    assert!(stderr.contains("client certificate"), "{stderr}");
    assert!(stderr.contains("LOGTO_CACHE_CERT_FILE"), "{stderr}");
    assert_eq!(peer.stats().token_requests, 2);

    // One of the pair alone is a usage error, and so is a key file that holds no key.
    let cert_only = [
        ("LOGTO_CACHE_CA_FILE", ca_file.as_str()),
        ("LOGTO_CACHE_CERT_FILE", cert.as_str()),
    ];
    let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &cert_only));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("set both or neither"));
    let cert_as_key = [
        ("LOGTO_CACHE_CA_FILE", ca_file.as_str()),
        ("LOGTO_CACHE_CERT_FILE", cert.as_str()),
        ("LOGTO_CACHE_KEY_FILE", cert.as_str()),
    ];
    let (out, _) = timed_run(get_token(&peer.token_url(), M2M_BASIC, &url, &cert_as_key));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        stderr.contains("LOGTO_CACHE_KEY_FILE") && stderr.contains("no pem private key"),
        "{stderr}"
    );
    assert_no_key_material(&stderr, &ca);
}

#[test]
fn key_material_is_never_shown() {
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca, true);
    let cache = RedisCache::new(&redis.url())
        .unwrap()
        .root_certificates_pem(&ca.read("ca.pem"))
        .unwrap()
        .client_certificate_pem(&ca.read("client.pem"), &ca.read("client.key"))
        .unwrap();
    let shown = format!("{cache:?} {cache:#?} {}", cache.describe());
    assert_no_key_material(&shown, &ca);
    let key = key_of("https://tenant.example/oidc/token", "app", "r\0\0");
    assert_eq!(
        cache.read(&key, std::time::Duration::from_secs(5)).unwrap(),
        None
    );

    // A key whose armour is right and whose body is not a key: refused, and the refusal
    // quotes none of it.
    let canary = "Q2FuYXJ5LWtleS1ib2R5LTlmMmM";
    let bad_key = format!("-----BEGIN PRIVATE KEY-----\n{canary}\n-----END PRIVATE KEY-----\n");
    let err = RedisCache::new(&redis.url())
        .unwrap()
        .client_certificate_pem(&ca.read("client.pem"), bad_key.as_bytes())
        .map(|c| c.read(&key, std::time::Duration::from_secs(5)));
    let text = format!("{err:?}");
    assert!(!text.contains(canary), "{text}");
    // A key that is not the certificate's: the handshake can't be made, and says so.
    let other = RedisCache::new(&redis.url())
        .unwrap()
        .root_certificates_pem(&ca.read("ca.pem"))
        .unwrap()
        .client_certificate_pem(&ca.read("client.pem"), &ca.read("server.key"))
        .unwrap();
    let err = other
        .read(&key, std::time::Duration::from_secs(5))
        .unwrap_err();
    assert_no_key_material(&err, &ca);

    // The setters take only TLS URLs, and PEM that holds what they need.
    let plain = RedisCache::new("redis://127.0.0.1:6379/0").unwrap();
    let err = plain.root_certificates_pem(&ca.read("ca.pem")).unwrap_err();
    assert!(err.to_string().contains("not a tls one"), "{err}");
    let err = RedisCache::new(&redis.url())
        .unwrap()
        .root_certificates_pem(b"nothing here")
        .unwrap_err();
    assert!(err.to_string().contains("no pem certificate"), "{err}");
}

/// No line of any key the CA made (their base64 bodies) is in `text`.
#[track_caller]
fn assert_no_key_material(text: &str, ca: &TestCa) {
    for name in ["client.key", "server.key", "ca.key"] {
        let pem = String::from_utf8(ca.read(name)).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(!text.contains(line), "{name} shown: {text}");
        }
    }
}
