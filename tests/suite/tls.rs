//! HTTPS as users deploy it: the peer serves TLS with a certificate from a private CA
//! (`tests/peer/tls/`), and the crate must trust that CA only when told to, and say
//! clearly why it refuses otherwise. Runs under rustls (default) and native-tls.

#![cfg(any(feature = "rustls", feature = "native-tls"))]

use crate::common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{M2M_BASIC, PEER_TIMEOUT, Peer, SHOPPING_API, shopping, test_ca_pem};
use logto_m2m::{Config, Error, ErrorKind, TokenStore, request_token};

/// One HTTPS peer (certificate for localhost and 127.0.0.1) for the tests that don't
/// count requests. Like `shared_peer()`, it exits when this test binary does.
fn https_peer() -> &'static Peer {
    static PEER: OnceLock<Peer> = OnceLock::new();
    PEER.get_or_init(Peer::start_https)
}

/// By endpoint, as users configure a Logto tenant (`Config::logto`); the other test files
/// use `common::config` with a token URL.
fn config(endpoint: &str) -> Config {
    Config::logto(endpoint, M2M_BASIC.0, M2M_BASIC.1)
        .unwrap()
        .timeout(PEER_TIMEOUT)
}

/// [`config`] with `pem` as its only root certificates.
fn trusting(endpoint: &str, pem: &[u8]) -> Config {
    config(endpoint).root_certificates_pem(pem).unwrap()
}

fn tls_message(err: &Error) -> &str {
    match err.kind() {
        ErrorKind::Tls { message } => message,
        other => panic!("expected a TLS error, got {other:?} ({err})"),
    }
}

/// Asks for a token over `config`, which must fail with a TLS error whose message holds
/// `rustls_says` or `openssl_says`; returns the error.
#[track_caller]
fn refused(config: &Config, rustls_says: &str, openssl_says: &str) -> Error {
    let err = request_token(config, &shopping("read:products")).unwrap_err();
    let message = tls_message(&err);
    assert!(
        message.contains(rustls_says) || message.contains(openssl_says),
        "{err}"
    );
    err
}

#[test]
fn token_over_https_with_the_test_ca() {
    let peer = https_peer();
    let config = trusting(&peer.base_url(), &test_ca_pem());
    let token = request_token(&config, &shopping("read:products")).unwrap();
    assert_eq!(token.scope(), Some("read:products"));
    let issuer = format!("{}/oidc", peer.base_url());
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    common::assert_claim(&token, "iss", Some(&issuer));
    common::assert_claim(&token, "aud", Some(SHOPPING_API));
}

#[test]
fn token_over_https_by_host_name() {
    // The certificate names `localhost` too; the name is checked, not only the IP.
    let peer = https_peer();
    let config = trusting(&peer.base_url_localhost(), &test_ca_pem());
    assert!(config.token_url().starts_with("https://localhost:"));
    let token = request_token(&config, &shopping("read:products")).unwrap();
    common::assert_claim(&token, "sub", Some(M2M_BASIC.0));
}

#[test]
fn store_over_https_and_clones_keep_the_roots() {
    let peer = https_peer();
    let config = trusting(&peer.base_url(), &test_ca_pem());
    // A clone made before the first request builds its own agent from the same roots.
    let store = TokenStore::new(config.clone());
    let a = store.get(&shopping("read:products")).unwrap();
    let b = request_token(&config, &shopping("read:products")).unwrap();
    assert_ne!(a.access_token(), b.access_token());
}

#[test]
fn unknown_ca_is_a_tls_error_and_nothing_is_sent() {
    // A peer of its own, to count requests: the handshake fails before any.
    let peer = Peer::start_https();
    // The default roots (Mozilla's with rustls, the system's with native-tls) do not
    // hold the test CA.
    let config = config(&peer.base_url());
    let started = Instant::now();
    // rustls: "invalid peer certificate: UnknownIssuer"; OpenSSL: "... certificate verify
    // failed ... (unable to get local issuer certificate)".
    let err = refused(&config, "UnknownIssuer", "unable to get local issuer");
    let elapsed = started.elapsed();
    assert!(err.to_string().starts_with("tls: "), "{err}");
    // Not retried like a connection failure, and no hang: one handshake, well inside the
    // 10 s timeout.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(peer.stats().token_requests, 0);
}

#[test]
fn other_roots_than_the_servers_are_a_tls_error() {
    // A valid certificate, but not the server's CA: another leaf, which signed nothing.
    let peer = https_peer();
    let leaf = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/tls/wrong-host.pem"),
    )
    .unwrap();
    let config = trusting(&peer.base_url(), &leaf);
    refused(&config, "UnknownIssuer", "unable to get local issuer");
}

#[test]
fn wrong_host_name_is_a_tls_error_naming_the_name() {
    // Signed by the trusted test CA, but only for wrong.example.
    let peer = Peer::start_https_with("wrong-host", &[]);
    let config = trusting(&peer.base_url(), &test_ca_pem());
    let started = Instant::now();
    // rustls: "invalid peer certificate: certificate not valid for name "127.0.0.1"; ...";
    // OpenSSL: "... certificate verify failed ... (hostname mismatch)" (or "IP address
    // mismatch" for an IP).
    refused(&config, "not valid for name", "mismatch");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(peer.stats().token_requests, 0);

    // By name, too.
    let config = trusting(&peer.base_url_localhost(), &test_ca_pem());
    refused(&config, "not valid for name", "hostname mismatch");
}

#[test]
fn plain_http_server_at_an_https_url_is_a_tls_error() {
    let peer = common::shared_peer();
    let url = peer.base_url().replace("http://", "https://");
    let config = trusting(&url, &test_ca_pem());
    let err = request_token(&config, &shopping("read:products")).unwrap_err();
    tls_message(&err);
}

#[test]
fn root_certificates_show_as_a_count() {
    let two = [test_ca_pem(), test_ca_pem()].concat();
    let config = trusting("https://auth.example", &two);
    let shown = format!("{config:?}");
    assert!(shown.contains("root_certificates: 2"), "{shown}");
    assert!(!shown.contains("BEGIN"), "{shown}");
    let shown = format!("{:?}", config.clone());
    assert!(shown.contains("root_certificates: 2"), "{shown}");
    let shown = format!("{:?}", self::config("https://auth.example"));
    assert!(shown.contains("root_certificates: default"), "{shown}");
}

#[test]
fn malformed_pem_is_a_config_error_naming_the_problem() {
    let err = |pem: &[u8]| {
        let err = config("https://auth.example")
            .root_certificates_pem(pem)
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
        err.to_string()
    };
    assert_eq!(
        err(b""),
        "invalid config: root certificates: no pem certificate found (expected -----BEGIN CERTIFICATE-----)"
    );
    assert_eq!(
        err(b"not a pem at all"),
        "invalid config: root certificates: no pem certificate found (expected -----BEGIN CERTIFICATE-----)"
    );
    let ca = String::from_utf8(test_ca_pem()).unwrap();
    let truncated = &ca[..ca.len() - 30];
    assert_eq!(
        err(truncated.as_bytes()),
        "invalid config: root certificates: not valid pem (a block without its END line, or \
         not base64) before any certificate"
    );
    let twice_then_cut = format!("{ca}{truncated}");
    assert_eq!(
        err(twice_then_cut.as_bytes()),
        "invalid config: root certificates: not valid pem (a block without its END line, or \
         not base64) after certificate 1"
    );
    let key = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/tls/server.key"),
    )
    .unwrap();
    assert_eq!(
        err(&key),
        "invalid config: root certificates: no pem certificate found, only a private key \
         (expected -----BEGIN CERTIFICATE-----)"
    );
    let corrupt = ca.replacen("MI", "M*", 1);
    assert_eq!(
        err(corrupt.as_bytes()),
        "invalid config: root certificates: not valid pem (a block without its END line, or \
         not base64) before any certificate"
    );
    // The message never quotes the input.
    assert!(!err(corrupt.as_bytes()).contains("M*"));
}
