//! The environment's proxy (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, ...) and
//! `SSL_CERT_FILE` for `Config::platform_roots`.
//!
//! These mutate the process environment, so this binary has exactly one `#[test]`, which
//! sets and restores the variables step by step: no other test thread can read them
//! half-changed. `EnvGuard` puts the original values back even if a step panics.

#![cfg(any(feature = "rustls", feature = "native-tls"))]

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::connect_proxy::ConnectProxy;
use common::{M2M_BASIC, Peer, config, config_at, shared_peer, shopping, test_ca_pem};
use logto_m2m::{Config, Error, ErrorKind, Token, request_token};

/// Every variable this test changes: the proxy ones, and the bundle `platform_roots` reads.
fn variables() -> impl Iterator<Item = String> {
    common::proxy_variables().chain(["SSL_CERT_FILE".to_owned()])
}

/// Saves `variables()`, clears them, and restores them on drop.
struct EnvGuard(Vec<(String, Option<OsString>)>);

impl EnvGuard {
    fn new() -> EnvGuard {
        let saved: Vec<_> = variables()
            .map(|v| (v.clone(), std::env::var_os(&v)))
            .collect();
        for (v, _) in &saved {
            remove(v);
        }
        EnvGuard(saved)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, value) in &self.0 {
            match value {
                Some(value) => set(name, value),
                None => remove(name),
            }
        }
    }
}

fn set(name: &str, value: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: this test binary has a single test, and none of the threads it starts (the
    // proxy's) touch the environment, so nothing reads it while it changes.
    unsafe { std::env::set_var(name, value) }
}

fn remove(name: &str) {
    // SAFETY: as in `set`.
    unsafe { std::env::remove_var(name) }
}

/// Clears every proxy variable, then sets the given ones.
fn proxy_env(vars: &[(&str, &str)]) {
    for v in common::proxy_variables() {
        remove(&v);
    }
    for (name, value) in vars {
        set(name, value);
    }
}

fn get(config: &Config) -> Result<Token, Error> {
    request_token(config, &shopping("read:products"))
}

#[test]
fn environment_proxy_and_roots() {
    let _guard = EnvGuard::new();
    let ca = test_ca_pem();
    let proxy = ConnectProxy::start();
    let plain = shared_peer();
    let https = Peer::start_https();
    // Its certificate names only wrong.example, and only the proxy (to which every host is
    // 127.0.0.1) can reach it by that name: a request that succeeds went through the proxy.
    let remote_peer = Peer::start_https_with("wrong-host", &[]);
    let remote = format!("https://wrong.example:{}/oidc/token", remote_peer.port());
    let remote_target = format!("wrong.example:{}", remote_peer.port());
    let remote_config = || {
        config_at(&remote, M2M_BASIC)
            .root_certificates_pem(&ca)
            .unwrap()
    };
    let connects = || proxy.connects().len();

    // 1. HTTPS_PROXY is used for a remote host...
    proxy_env(&[("HTTPS_PROXY", &proxy.url())]);
    get(&remote_config()).unwrap();
    assert_eq!(proxy.connects(), [remote_target.as_str()]);

    // ...but never for a loopback token URL, http or https.
    get(&config(plain, M2M_BASIC)).unwrap();
    get(&config(&https, M2M_BASIC)
        .root_certificates_pem(&ca)
        .unwrap())
    .unwrap();
    let localhost = format!("{}/oidc/token", https.base_url_localhost());
    get(&config_at(&localhost, M2M_BASIC)
        .root_certificates_pem(&ca)
        .unwrap())
    .unwrap();
    assert_eq!(connects(), 1);

    // 2. The lower-case names, ALL_PROXY, and HTTP_PROXY alone all apply to https URLs
    //    (ureq uses one proxy for every scheme).
    for name in [
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        let before = connects();
        proxy_env(&[(name, &proxy.url())]);
        get(&remote_config()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(connects(), before + 1, "{name}");
    }

    // ALL_PROXY wins over HTTPS_PROXY: a dead HTTPS_PROXY does not matter.
    let before = connects();
    proxy_env(&[
        ("ALL_PROXY", &proxy.url()),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ]);
    get(&remote_config()).unwrap();
    assert_eq!(connects(), before + 1);

    // 3. NO_PROXY (or no_proxy) is honoured: the request goes straight to wrong.example,
    //    which does not resolve, so it fails without reaching the proxy.
    for (name, pattern) in [
        ("NO_PROXY", "wrong.example"),
        ("NO_PROXY", "localhost,.example"),
        ("no_proxy", "*.example"),
        ("NO_PROXY", "*"),
    ] {
        let before = connects();
        proxy_env(&[("HTTPS_PROXY", &proxy.url()), (name, pattern)]);
        let err = get(&remote_config()).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Transport { .. }),
            "{name}={pattern}: {err:?}"
        );
        assert_eq!(connects(), before, "{name}={pattern}");
    }
    // A pattern that does not match leaves the proxy in use.
    let before = connects();
    proxy_env(&[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "other.example")]);
    get(&remote_config()).unwrap();
    assert_eq!(connects(), before + 1);

    // 4. no_proxy() ignores the environment; proxy() overrides it.
    let before = connects();
    proxy_env(&[("HTTPS_PROXY", &proxy.url())]);
    let err = get(&remote_config().no_proxy()).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Transport { .. }), "{err:?}");
    assert_eq!(connects(), before);
    proxy_env(&[("HTTPS_PROXY", "http://127.0.0.1:9")]);
    get(&remote_config().proxy(&proxy.url()).unwrap()).unwrap();
    assert_eq!(connects(), before + 1);

    // 5. The environment is read at the first request, not when the config is made.
    let before = connects();
    proxy_env(&[]);
    let config_made_early = remote_config();
    proxy_env(&[("HTTPS_PROXY", &proxy.url())]);
    get(&config_made_early).unwrap();
    assert_eq!(connects(), before + 1);

    // 6. A SOCKS proxy in the environment can't be used: an error naming the variable,
    //    not a connection around it. Loopback URLs are unaffected.
    proxy_env(&[
        ("ALL_PROXY", "socks5://127.0.0.1:9"),
        ("HTTPS_PROXY", &proxy.url()),
    ]);
    let err = get(&remote_config()).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("ALL_PROXY"), "{err}");
    assert!(err.to_string().contains("socks"), "{err}");
    get(&config(plain, M2M_BASIC)).unwrap();
    // A host in NO_PROXY, as the message advises, goes straight: wrong.example does not
    // resolve, so that is a transport error, not the socks one.
    proxy_env(&[
        ("ALL_PROXY", "socks5://127.0.0.1:9"),
        ("NO_PROXY", "wrong.example"),
    ]);
    let err = get(&remote_config()).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Transport { .. }), "{err:?}");
    proxy_env(&[]);

    // 7. platform_roots(): SSL_CERT_FILE names the bundle (rustls reads the file, OpenSSL
    //    reads the variable); the test CA is trusted only through it.
    let ca_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/tls/ca.pem");
    set("SSL_CERT_FILE", &ca_file);
    let token_url = https.token_url();
    get(&config_at(&token_url, M2M_BASIC).platform_roots().unwrap()).unwrap();
    remove("SSL_CERT_FILE");
    match config_at(&token_url, M2M_BASIC).platform_roots() {
        Ok(config) => {
            let err = get(&config).unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Tls { .. }), "{err:?}");
        }
        // rustls on a machine without a CA bundle at any of the usual paths.
        Err(err) => assert!(err.to_string().contains("SSL_CERT_FILE"), "{err}"),
    }
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/tls/no-such.pem");
    set("SSL_CERT_FILE", &missing);
    let roots = config_at(&token_url, M2M_BASIC).platform_roots();
    if cfg!(feature = "rustls") {
        // rustls: the named file must be readable.
        let err = roots.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
        assert!(
            err.to_string().contains("cannot read SSL_CERT_FILE"),
            "{err}"
        );
    } else {
        // native-tls: OpenSSL skips a missing file; the test CA is then not trusted.
        let err = get(&roots.unwrap()).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Tls { .. }), "{err:?}");
    }
    remove("SSL_CERT_FILE");
}
