//! HTTPS as users deploy it: the peer serves TLS with a certificate from a private CA
//! (`tests/peer/tls/`), and the crate must trust that CA only when told to, and say
//! clearly why it refuses otherwise. Runs under rustls (default) and native-tls.

#![cfg(any(feature = "rustls", feature = "native-tls"))]

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{M2M_BASIC, Peer, SHOPPING_API, test_ca_pem};
use logto_m2m::{Config, Error, ErrorKind, TokenRequest, TokenStore, request_token};

/// One HTTPS peer (certificate for localhost and 127.0.0.1) for the tests that don't
/// count requests. Like `shared_peer()`, it exits when this test binary does.
fn https_peer() -> &'static Peer {
    static PEER: OnceLock<Peer> = OnceLock::new();
    PEER.get_or_init(Peer::start_https)
}

fn config(endpoint: &str) -> Config {
    Config::logto(endpoint, M2M_BASIC.0, M2M_BASIC.1)
        .unwrap()
        .timeout(Duration::from_secs(10))
}

fn request() -> TokenRequest {
    TokenRequest::new(SHOPPING_API).scope("read:products")
}

fn tls_message(err: &Error) -> &str {
    match err.kind() {
        ErrorKind::Tls { message } => message,
        other => panic!("expected a TLS error, got {other:?} ({err})"),
    }
}

#[test]
fn token_over_https_with_the_test_ca() {
    let peer = https_peer();
    let config = config(&peer.base_url())
        .root_certificates_pem(&test_ca_pem())
        .unwrap();
    let token = request_token(&config, &request()).unwrap();
    assert_eq!(token.scope(), Some("read:products"));
    let issuer = format!("{}/oidc", peer.base_url());
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    assert_eq!(common::jwt_claim(&token, "iss"), Some(issuer));
    assert_eq!(
        common::jwt_claim(&token, "aud").as_deref(),
        Some(SHOPPING_API)
    );
}

#[test]
fn token_over_https_by_host_name() {
    // The certificate names `localhost` too; the name is checked, not only the IP.
    let peer = https_peer();
    let config = config(&peer.base_url_localhost())
        .root_certificates_pem(&test_ca_pem())
        .unwrap();
    assert!(config.token_url().starts_with("https://localhost:"));
    let token = request_token(&config, &request()).unwrap();
    assert_eq!(
        common::jwt_claim(&token, "sub").as_deref(),
        Some(M2M_BASIC.0)
    );
}

#[test]
fn store_over_https_and_clones_keep_the_roots() {
    let peer = https_peer();
    let config = config(&peer.base_url())
        .root_certificates_pem(&test_ca_pem())
        .unwrap();
    // A clone made before the first request builds its own agent from the same roots.
    let store = TokenStore::new(config.clone());
    let a = store.get(&request()).unwrap();
    let b = request_token(&config, &request()).unwrap();
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
    let err = request_token(&config, &request()).unwrap_err();
    let elapsed = started.elapsed();
    let message = tls_message(&err);
    // rustls: "invalid peer certificate: UnknownIssuer"; OpenSSL: "... certificate verify
    // failed ... (unable to get local issuer certificate)".
    assert!(
        message.contains("UnknownIssuer") || message.contains("unable to get local issuer"),
        "{err}"
    );
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
    let config = config(&peer.base_url())
        .root_certificates_pem(&leaf)
        .unwrap();
    let err = request_token(&config, &request()).unwrap_err();
    let message = tls_message(&err);
    assert!(
        message.contains("UnknownIssuer") || message.contains("unable to get local issuer"),
        "{err}"
    );
}

#[test]
fn wrong_host_name_is_a_tls_error_naming_the_name() {
    // Signed by the trusted test CA, but only for wrong.example.
    let peer = Peer::start_https_with("wrong-host", &[]);
    let config = config(&peer.base_url())
        .root_certificates_pem(&test_ca_pem())
        .unwrap();
    let started = Instant::now();
    let err = request_token(&config, &request()).unwrap_err();
    let message = tls_message(&err);
    // rustls: "invalid peer certificate: certificate not valid for name "127.0.0.1"; ...";
    // OpenSSL: "... certificate verify failed ... (hostname mismatch)" (or "IP address
    // mismatch" for an IP).
    assert!(
        message.contains("not valid for name") || message.contains("mismatch"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(peer.stats().token_requests, 0);

    // By name, too.
    let config = self::config(&peer.base_url_localhost())
        .root_certificates_pem(&test_ca_pem())
        .unwrap();
    let err = request_token(&config, &request()).unwrap_err();
    let message = tls_message(&err);
    assert!(
        message.contains("not valid for name") || message.contains("hostname mismatch"),
        "{err}"
    );
}

#[test]
fn plain_http_server_at_an_https_url_is_a_tls_error() {
    let peer = common::shared_peer();
    let url = peer.base_url().replace("http://", "https://");
    let config = config(&url).root_certificates_pem(&test_ca_pem()).unwrap();
    let err = request_token(&config, &request()).unwrap_err();
    tls_message(&err);
}

#[test]
fn root_certificates_show_as_a_count() {
    let two = [test_ca_pem(), test_ca_pem()].concat();
    let config = config("https://auth.example")
        .root_certificates_pem(&two)
        .unwrap();
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
        "invalid config: root certificates: pem block 1 has no END line"
    );
    let key = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/tls/server.key"),
    )
    .unwrap();
    assert_eq!(
        err(&key),
        "invalid config: root certificates: none of the 1 pem blocks is a CERTIFICATE"
    );
    let corrupt = ca.replacen("MI", "M*", 1);
    assert_eq!(
        err(corrupt.as_bytes()),
        "invalid config: root certificates: certificate in pem block 1 is not valid base64"
    );
}
