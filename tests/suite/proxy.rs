//! Explicit proxies (`Config::proxy`, `Config::no_proxy`) through a small CONNECT proxy on
//! loopback (`common::connect_proxy`). The environment's proxy variables are tested apart,
//! in `tests/proxy_env.rs`, since they mutate the process environment.

use crate::common;

use base64::Engine;
use common::connect_proxy::ConnectProxy;
use common::{M2M_BASIC, config, config_at, free_port, shared_peer, shopping};
use logto_m2m::{ErrorKind, request_token};

#[cfg(any(feature = "rustls", feature = "native-tls"))]
#[test]
fn https_token_through_an_explicit_proxy() {
    let peer = common::Peer::start_https();
    let proxy = ConnectProxy::start();
    let config = config(&peer, M2M_BASIC)
        .root_certificates_pem(&common::test_ca_pem())
        .unwrap()
        .proxy(&proxy.url())
        .unwrap();
    let token = request_token(&config, &shopping("read:products")).unwrap();
    assert_eq!(token.scope(), Some("read:products"));
    // One tunnel, to the token endpoint's host and port; the TLS inside it is end to end
    // (the proxy saw no other request).
    assert_eq!(proxy.connects(), [format!("127.0.0.1:{}", peer.port())]);
    assert_eq!(proxy.seen().len(), 1);
    assert_eq!(proxy.seen()[0].proxy_authorization, None);
    assert_eq!(peer.stats().tokens_issued, 1);

    // By name: the proxy gets the name to resolve, not an address.
    let config = config_at(
        &format!("{}/oidc/token", peer.base_url_localhost()),
        M2M_BASIC,
    )
    .root_certificates_pem(&common::test_ca_pem())
    .unwrap()
    .proxy(&proxy.url())
    .unwrap();
    request_token(&config, &shopping("read:products")).unwrap();
    assert_eq!(
        proxy.connects().last().unwrap(),
        &format!("localhost:{}", peer.port())
    );
}

#[test]
fn http_token_through_an_explicit_proxy_is_tunnelled_too() {
    // ureq tunnels plain http with CONNECT as well (no absolute-form request), and an
    // explicit proxy is used even for a loopback token URL.
    let peer = shared_peer();
    let proxy = ConnectProxy::start();
    let config = config(peer, M2M_BASIC).proxy(&proxy.url()).unwrap();
    request_token(&config, &shopping("read:products")).unwrap();
    assert_eq!(proxy.connects(), [format!("127.0.0.1:{}", peer.port())]);
    assert_eq!(proxy.seen().len(), 1, "{:?}", proxy.seen());
}

#[test]
fn no_proxy_goes_straight_to_the_endpoint() {
    let peer = shared_peer();
    let proxy = ConnectProxy::start();
    // The last setting wins.
    let config = config(peer, M2M_BASIC)
        .proxy(&proxy.url())
        .unwrap()
        .no_proxy();
    request_token(&config, &shopping("read:products")).unwrap();
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
}

#[test]
fn proxy_credentials_are_sent_and_never_shown() {
    let peer = shared_peer();
    let proxy = ConnectProxy::start_with_credentials("proxy-user", "pr0xy:pw@canary");
    let port = proxy.port();
    // Percent-encoded in the URL; ureq decodes them once.
    let url = format!("http://proxy-user:pr0xy%3Apw%40canary@127.0.0.1:{port}");
    let config = config(peer, M2M_BASIC).proxy(&url).unwrap();
    let shown = format!("{config:?}");
    assert!(
        shown.contains(&format!(
            "proxy: http://127.0.0.1:{port} (with credentials)"
        )),
        "{shown}"
    );
    assert!(!shown.contains("canary"), "{shown}");
    request_token(&config, &shopping("read:products")).unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode("proxy-user:pr0xy:pw@canary");
    assert_eq!(
        proxy.seen()[0].proxy_authorization.as_deref(),
        Some(format!("Basic {expected}").as_str())
    );

    // A wrong password: the proxy's 407 comes back, without the password.
    let url = format!("http://proxy-user:wrong-canary@127.0.0.1:{port}");
    let config = self::config(peer, M2M_BASIC).proxy(&url).unwrap();
    let err = request_token(&config, &shopping("read:products")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Transport { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("407"), "{shown}");
    assert!(!shown.contains("canary"), "{shown}");
}

#[test]
fn proxy_that_cannot_reach_the_endpoint_is_a_transport_error() {
    // Nothing listens on the target port: the proxy answers 502.
    let port = free_port();
    let proxy = ConnectProxy::start();
    let config = config_at(&format!("http://127.0.0.1:{port}/oidc/token"), M2M_BASIC)
        .proxy(&proxy.url())
        .unwrap();
    let err = request_token(&config, &shopping("read:products")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("502"), "{err}");
}

#[test]
fn proxy_urls_that_cannot_be_used_are_config_errors() {
    let err = |url: &str| {
        let err = config_at("https://auth.example/oidc/token", M2M_BASIC)
            .proxy(url)
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
        err.to_string()
    };
    // ureq would panic on an explicit SOCKS proxy without its socks-proxy feature.
    assert!(err("socks5://127.0.0.1:1080").contains("socks"));
    assert!(err("socks5h://user:pw@127.0.0.1:1080").contains("socks"));
    let message = err("ftp://user:canary-pw@proxy:21");
    assert!(message.contains("proxy url is not valid"), "{message}");
    assert!(!message.contains("canary"), "{message}");
}

#[test]
fn default_is_the_environment() {
    let shown = format!(
        "{:?}",
        config_at("https://auth.example/oidc/token", M2M_BASIC)
    );
    assert!(shown.contains("proxy: environment"), "{shown}");
    let shown = format!(
        "{:?}",
        config_at("https://auth.example/oidc/token", M2M_BASIC).no_proxy()
    );
    assert!(shown.contains("proxy: none"), "{shown}");
}
