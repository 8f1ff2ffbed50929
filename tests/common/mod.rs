//! The test harness: starts the real oidc-provider peer from `tests/peer/` and
//! reads its counters.
//!
//! Test binaries include this with `mod common;` (`tests/suite/main.rs`, the binary of
//! most tests, with `#[path]`). Each binary uses a different subset of it, hence the
//! `allow` below.
//!
//! A peer is a `node server.mjs` child on a free 127.0.0.1 port. It is ended two
//! ways: `Drop` kills it by its own PID, and when the test process goes away
//! without running `Drop` (abort, SIGKILL, or a static that is never dropped)
//! the peer sees EOF on its stdin pipe and exits by itself
//! (`PEER_EXIT_ON_STDIN_EOF=1` in `server.mjs`).

// Each test binary uses only part of the harness.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use child::{ChildServer, Kind, StartError};
use logto_m2m::{Config, Error, Token, TokenRequest};
use miniserde::json::{self, Value};

pub mod authlib;
pub mod child;
pub mod connect_proxy;
pub mod gate;
pub mod loopback;
pub mod real_logto;
#[cfg(any(feature = "rustls", feature = "native-tls"))]
pub mod self_hosted;

/// The peer's clients as `(client_id, client_secret)`, see `tests/peer/README.md`.
/// Registered `client_secret_basic`; shopping.api `read:products`, Management API `all`.
pub const M2M_BASIC: (&str, &str) = ("m2m-basic", "basic-secret-0123456789");
/// m2m-basic's second current secret (Logto keeps several per app, for rotation).
pub const M2M_BASIC_NEXT: (&str, &str) = ("m2m-basic", "basic-secret-next-0123456789");
/// m2m-basic's expired secret: 400 `invalid_request` "client secret has expired".
pub const M2M_BASIC_EXPIRED: (&str, &str) = ("m2m-basic", "basic-secret-expired-0123456789");
/// Registered `client_secret_post`; shopping.api `read:products write:products`.
pub const M2M_POST: (&str, &str) = ("m2m-post", "post-secret-0123456789");
/// A secret that must be form-urlencoded before it goes into the Basic header.
pub const M2M_SPECIAL: (&str, &str) = ("m2m-special", "s3cr:t+/%&= x~");
/// A colon in the id, and a literal `%41` and `+` in the secret.
pub const M2M_COLON: (&str, &str) = ("m2m:colon", "colon%41+secret");
/// An M2M app with no roles: it gets tokens, but without `scope`.
pub const M2M_NOROLES: (&str, &str) = ("m2m-noroles", "noroles-secret-0123456789");
/// A non-ASCII secret (Logto app D): accepted in the form body, refused in the Basic header
/// (400 `invalid_request` "... not properly encoded"); shopping.api `read:products`.
pub const M2M_UNICODE: (&str, &str) = ("m2m-unicode", "sécret-ünïcode");
/// A traditional web app: `client_credentials` is not among its grant types.
pub const WEB_APP: (&str, &str) = ("web-app", "web-secret-0123456789");

/// The API resource with `read:products` and `write:products`.
pub const SHOPPING_API: &str = "https://shopping.api";
/// Logto OSS's Management API indicator, with the single permission `all`.
pub const MANAGEMENT_API: &str = "https://default.logto.app/api";

/// The timeout of the tests' calls to the peer: far more than a call ever takes, so that
/// a stuck peer fails the test instead of hanging it.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// A `Config` for the peer's token endpoint with the app's `(client_id, client_secret)`
/// and [`PEER_TIMEOUT`].
pub fn config(peer: &Peer, app: (&str, &str)) -> Config {
    config_at(&peer.token_url(), app)
}

/// The same as [`config`] for any token URL: through a proxy, by another name, or where
/// nothing listens.
pub fn config_at(token_url: &str, (id, secret): (&str, &str)) -> Config {
    Config::new(token_url, id, secret)
        .unwrap()
        .timeout(PEER_TIMEOUT)
}

/// `request_token` to the peer as `app`: the call most tests make.
pub fn ask(peer: &Peer, app: (&str, &str), request: &TokenRequest) -> Result<Token, Error> {
    logto_m2m::request_token(&config(peer, app), request)
}

/// A token request for the shopping API with `scopes` (space-separated).
pub fn shopping(scopes: &str) -> TokenRequest {
    TokenRequest::new(SHOPPING_API).scope(scopes)
}

/// `npm ci` needs the registry; five minutes is far more than it ever takes.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Environment variables `server.mjs` reads. We clear them all before applying
/// the test's own, so a developer's shell cannot change what the tests see.
const PEER_ENV: &[&str] = &[
    "PORT",
    "LOGTO_COMPAT",
    "ACCESS_TOKEN_TTL",
    "DEFAULT_RESOURCE",
    "TOKEN_LIMIT",
    "KEY_FILE",
    "PEER_EXIT_ON_STDIN_EOF",
    "TLS_CERT",
    "TLS_KEY",
];

/// The npm packages `server.mjs` imports; if any is missing we run `npm ci`.
const PEER_PACKAGES: &[&str] = &["oidc-provider", "koa", "koa-mount", "jose"];

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peer")
}

/// Runs `npm ci` in `tests/peer` if its `node_modules` is incomplete.
///
/// Safe to call from every test: cargo-nextest runs each test in its own
/// process, so an exclusive lock on `tests/peer/.install.lock` makes the others
/// wait while one installs, and within a process the result is kept.
///
/// # Panics
///
/// If node or npm is missing, or `npm ci` fails (its output is in the message).
pub fn ensure_peer_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    // A `Once` that panicked would only say "poisoned" to every later test;
    // keeping the error lets each of them panic with the real reason.
    if let Err(msg) = INSTALLED.get_or_init(install_peer) {
        panic!("{msg}");
    }
}

fn install_peer() -> Result<(), String> {
    let dir = peer_dir();
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "test peer: `node --version` failed: {}",
                out.status
            ));
        }
        Err(e) => {
            return Err(format!(
                "test peer: cannot run `node` ({e}); the peer in tests/peer needs Node.js >= 20.19"
            ));
        }
    }

    // We take the lock even when node_modules looks complete: `npm ci` deletes
    // node_modules and then writes packages in parallel, so another process's
    // install in progress can look complete from outside.
    // Released when `_lock` is dropped at the end of this function.
    let _lock = install_lock(&dir).map_err(|e| format!("test peer: {e}"))?;

    let complete = PEER_PACKAGES.iter().all(|name| {
        dir.join("node_modules")
            .join(name)
            .join("package.json")
            .is_file()
    });
    if complete {
        return Ok(());
    }

    let log_path =
        std::env::temp_dir().join(format!("logto-m2m-npm-ci-{}.log", std::process::id()));
    let log = File::create(&log_path)
        .map_err(|e| format!("test peer: cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("test peer: cannot clone log handle: {e}"))?;
    // Output goes to a file rather than a pipe so that we can poll with a
    // deadline without a reader thread (a full pipe would stall npm).
    let mut child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("test peer: cannot run `npm` in {}: {e}", dir.display()))?;

    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "test peer: `npm ci` in {} took more than {INSTALL_TIMEOUT:?}; output:\n{}",
                    dir.display(),
                    read_tail_of(&log_path, 4000)
                ));
            }
            Err(e) => return Err(format!("test peer: waiting for `npm ci`: {e}")),
        }
    };
    let output = read_tail_of(&log_path, 4000);
    let _ = fs::remove_file(&log_path);
    if !status.success() {
        return Err(format!(
            "test peer: `npm ci --no-audit --no-fund` in {} failed ({status}); output:\n{output}",
            dir.display()
        ));
    }
    Ok(())
}

/// A running peer on `127.0.0.1:port()`. Dropping it kills the node process.
pub struct Peer {
    server: ChildServer,
    /// Serving HTTPS with a certificate from `tests/peer/tls/`.
    https: bool,
    /// The certificate is not valid for 127.0.0.1 on purpose (`wrong-host`).
    wrong_cert: bool,
}

const PEER: Kind = Kind {
    name: "test peer",
    log_name: "peer",
    command: "`node server.mjs`",
    addr_in_use: "EADDRINUSE",
};

impl Peer {
    /// Starts a peer with the defaults from `tests/peer/README.md`.
    pub fn start() -> Peer {
        Peer::start_with(&[])
    }

    /// Starts a peer with extra environment for `server.mjs`, such as
    /// `[("ACCESS_TOKEN_TTL", "1")]` or `[("TOKEN_LIMIT", "2")]`.
    /// `PORT` and `PEER_EXIT_ON_STDIN_EOF` belong to the harness and are
    /// always overridden.
    ///
    /// # Panics
    ///
    /// If the peer does not answer within 20 s, exits during startup, or finds
    /// its port taken five times in a row. The message has the peer's log tail.
    pub fn start_with(env: &[(&str, &str)]) -> Peer {
        Peer::start_inner(env, None)
    }

    /// Starts a peer serving HTTPS with `tests/peer/tls/server.pem`, a
    /// certificate for `localhost` and `127.0.0.1` signed by the test CA
    /// ([`test_ca_pem`]). `base_url()` is then `https://127.0.0.1:PORT`.
    pub fn start_https() -> Peer {
        Peer::start_https_with("server", &[])
    }

    /// Starts a peer serving HTTPS with the certificate
    /// `tests/peer/tls/{cert}.pem` and its key `{cert}.key`, e.g. `wrong-host`
    /// (valid only for `wrong.example`), plus extra environment as for
    /// [`Peer::start_with`].
    pub fn start_https_with(cert: &str, env: &[(&str, &str)]) -> Peer {
        Peer::start_inner(env, Some(cert))
    }

    fn start_inner(env: &[(&str, &str)], cert: Option<&str>) -> Peer {
        ensure_peer_installed();
        child::start_on_a_free_port(&PEER, |port| Peer::spawn(port, env, cert))
    }

    fn spawn(port: u16, env: &[(&str, &str)], cert: Option<&str>) -> Result<Peer, StartError> {
        let dir = peer_dir();
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs").current_dir(&dir);
        for name in PEER_ENV {
            cmd.env_remove(name);
        }
        // The key is shared by every peer: server.mjs creates it once with an
        // atomic link, so peers starting together all read a complete file.
        cmd.env("KEY_FILE", dir.join(".data").join("signing-key.jwk.json"));
        cmd.envs(env.iter().copied());
        if let Some(cert) = cert {
            let tls = dir.join("tls");
            cmd.env("TLS_CERT", tls.join(format!("{cert}.pem")))
                .env("TLS_KEY", tls.join(format!("{cert}.key")));
        }
        cmd.env("PORT", port.to_string())
            .env("PEER_EXIT_ON_STDIN_EOF", "1");
        // From here on, `Drop` cleans up the child whatever happens below.
        let mut peer = Peer {
            server: ChildServer::spawn(&PEER, port, cmd)?,
            https: cert.is_some(),
            wrong_cert: cert.is_some_and(|c| c != "server"),
        };
        let agent = peer.agent(Duration::from_secs(1));
        let discovery = format!("{}/oidc/.well-known/openid-configuration", peer.base_url());
        let scheme = if peer.https { "https" } else { "http" };
        let listening = format!("issuer={scheme}://127.0.0.1:{port}/oidc ");
        peer.server.wait_ready(&PEER, &listening, &discovery, || {
            agent
                .get(&discovery)
                .call()
                .is_ok_and(|r| r.status() == 200)
        })?;
        Ok(peer)
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`Peer::start_https`]), no
    /// trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.server.port)
    }

    /// The same as `base_url()` with the host `localhost`, which the HTTPS
    /// peer's certificate also names.
    pub fn base_url_localhost(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://localhost:{}", self.server.port)
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// An agent for the harness's own requests to this peer (discovery, stats).
    fn agent(&self, timeout: Duration) -> ureq::Agent {
        #[cfg(any(feature = "rustls", feature = "native-tls"))]
        if self.wrong_cert {
            // This peer's certificate is wrong on purpose, and the tests check that the
            // crate refuses it. The harness only reads discovery and counters from its
            // own child on loopback, so it does not verify that certificate.
            return ureq::Agent::config_builder()
                .proxy(None)
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .provider(test_tls_provider())
                        .disable_verification(true)
                        .build(),
                )
                .build()
                .new_agent();
        }
        local_agent(timeout)
    }

    /// The token endpoint, `http://127.0.0.1:PORT/oidc/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oidc/token", self.base_url())
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The node process's PID, for tests that check it is gone.
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }

    /// The last `max_bytes` of the peer's stdout and stderr.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.server.log_tail(max_bytes)
    }

    /// The peer's counters from `GET /__peer/stats`.
    ///
    /// # Panics
    ///
    /// If the peer does not answer or the JSON is not what `server.mjs` sends.
    pub fn stats(&self) -> Stats {
        let url = format!("{}/__peer/stats", self.base_url());
        let body = self
            .agent(Duration::from_secs(5))
            .get(&url)
            .call()
            .and_then(|mut resp| resp.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("test peer: GET {url}: {e}\n{}", self.log_tail(2000)));
        Stats::parse(&body).unwrap_or_else(|e| panic!("test peer: {url}: {e} in {body}"))
    }

    /// Zeroes the counters (`POST /__peer/reset`).
    pub fn reset_stats(&self) {
        self.pull_lever("reset");
    }

    /// Makes the peer's APIs refuse every token issued so far with 401 (`POST
    /// /__peer/rotate`), as after a signing-key rotation: the tokens still look fresh to
    /// the client.
    pub fn rotate_keys(&self) {
        self.pull_lever("rotate");
    }

    /// `POST /__peer/<lever>`, which answers 204.
    fn pull_lever(&self, lever: &str) {
        let url = format!("{}/__peer/{lever}", self.base_url());
        let resp = self
            .agent(Duration::from_secs(5))
            .post(&url)
            .send_empty()
            .unwrap_or_else(|e| panic!("test peer: POST {url}: {e}\n{}", self.log_tail(2000)));
        assert_eq!(resp.status(), 204, "test peer: POST {url}");
    }
}

/// One peer with default settings for the whole test binary, for tests that do
/// not count requests or change settings (those start their own `Peer`).
///
/// It lives in a static, so `Drop` never runs for it. It still never outlives
/// the test binary: when the binary exits, the kernel closes the write end of
/// the peer's stdin pipe and the peer exits on EOF.
pub fn shared_peer() -> &'static Peer {
    static PEER: OnceLock<Peer> = OnceLock::new();
    PEER.get_or_init(|| {
        let peer = Peer::start();
        // No Drop will remove the log, and one file per test process (with
        // nextest, per test) would pile up in the temp dir.
        peer.server.unlink_log();
        peer
    })
}

/// Counters from `/__peer/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every POST to `/oidc/token`, answered with a token or not.
    pub token_requests: u64,
    /// Tokens actually issued.
    pub tokens_issued: u64,
    /// Requests to the peer's protected APIs (`/products`, `/api/*`, `/organizations/*`).
    pub api_requests: u64,
    /// Those of them answered 401.
    pub api_unauthorized: u64,
    issued_by_client: BTreeMap<String, u64>,
    errors_by_code: BTreeMap<String, u64>,
}

impl Stats {
    /// What a call that survived a 401 leaves between `before` and `self`: exactly one new
    /// token request and one retried API request, one of the two refused.
    #[track_caller]
    pub fn assert_one_retry_since(&self, before: &Stats) {
        let token_requests = self.token_requests - before.token_requests;
        assert_eq!(token_requests, 1, "one new token");
        assert_eq!(
            self.api_requests - before.api_requests,
            2,
            "one retried call"
        );
        assert_eq!(
            self.api_unauthorized - before.api_unauthorized,
            1,
            "one 401"
        );
    }

    /// Tokens issued to `client_id`.
    pub fn issued_by(&self, client_id: &str) -> u64 {
        self.issued_by_client.get(client_id).copied().unwrap_or(0)
    }

    /// Token requests refused with the OAuth `error` code `code`, such as
    /// `invalid_client`. Logto's 429 quota answer is not an OAuth error and is
    /// not counted here.
    pub fn errors_by_code(&self, code: &str) -> u64 {
        self.errors_by_code.get(code).copied().unwrap_or(0)
    }

    fn parse(body: &str) -> Result<Stats, String> {
        let value: Value = json::from_str(body).map_err(|_| "invalid JSON".to_string())?;
        let Value::Object(obj) = value else {
            return Err("not a JSON object".into());
        };
        Ok(Stats {
            token_requests: number(obj.get("token_requests"), "token_requests")?,
            tokens_issued: number(obj.get("tokens_issued"), "tokens_issued")?,
            api_requests: number(obj.get("api_requests"), "api_requests")?,
            api_unauthorized: number(obj.get("api_unauthorized"), "api_unauthorized")?,
            issued_by_client: counts(
                obj.get("tokens_issued_by_client"),
                "tokens_issued_by_client",
            )?,
            errors_by_code: counts(obj.get("token_errors_by_code"), "token_errors_by_code")?,
        })
    }
}

fn number(value: Option<&Value>, field: &str) -> Result<u64, String> {
    match value {
        Some(Value::Number(json::Number::U64(n))) => Ok(*n),
        other => Err(format!("`{field}` is not a count: {other:?}")),
    }
}

fn counts(value: Option<&Value>, field: &str) -> Result<BTreeMap<String, u64>, String> {
    let Some(Value::Object(obj)) = value else {
        return Err(format!("`{field}` is not an object"));
    };
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), number(Some(v), &format!("{field}.{k}"))?)))
        .collect()
}

/// The name libtest gives a test of this binary, for running it alone in a child process
/// (`--exact`): `module_path` (the test's `module_path!()`) without the crate, then `name`.
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}

/// A port that was free a moment ago: where nothing listens, or where node will. Another
/// process can take it before node binds it; `Peer::start_with` retries with a fresh one
/// when that happens.
pub fn free_port() -> u16 {
    // unwrap is ok: binding port 0 on loopback fails only if the machine has no
    // loopback interface or no free ports, and then no test can run anyway.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The test CA's certificate, `tests/peer/tls/ca.pem`: the root of the HTTPS
/// peer's certificates (see `tests/peer/tls/generate.sh`).
pub fn test_ca_pem() -> Vec<u8> {
    let path = peer_dir().join("tls").join("ca.pem");
    fs::read(&path).unwrap_or_else(|e| panic!("test peer: read {}: {e}", path.display()))
}

/// A ureq agent for talking to the peer: no proxy from the environment (it
/// would otherwise apply to 127.0.0.1 unless `NO_PROXY` says so), statuses as
/// values, a timeout so a stuck peer fails the test instead of hanging it, and
/// the test CA as its only root, for the HTTPS peer.
pub fn local_agent(timeout: Duration) -> ureq::Agent {
    let builder = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(timeout));
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    let builder = builder.tls_config(test_ca_tls_config());
    builder.build().new_agent()
}

#[cfg(any(feature = "rustls", feature = "native-tls"))]
fn test_tls_provider() -> ureq::tls::TlsProvider {
    if cfg!(feature = "rustls") {
        ureq::tls::TlsProvider::Rustls
    } else {
        ureq::tls::TlsProvider::NativeTls
    }
}

/// ureq's TLS settings trusting only the test CA, with the provider the crate's
/// features choose (rustls wins when both are on, as in the crate).
#[cfg(any(feature = "rustls", feature = "native-tls"))]
fn test_ca_tls_config() -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    static CA: OnceLock<Certificate<'static>> = OnceLock::new();
    let ca = CA.get_or_init(|| {
        Certificate::from_pem(&test_ca_pem()).expect("tests/peer/tls/ca.pem is a certificate")
    });
    TlsConfig::builder()
        .provider(test_tls_provider())
        .root_certs(RootCerts::new_with_certs(std::slice::from_ref(ca)))
        .build()
}

fn read_tail_of(path: &Path, max_bytes: usize) -> String {
    File::open(path)
        .map(|file| read_tail(&file, max_bytes))
        .unwrap_or_default()
}

/// The last `max_bytes` of a file, lossily decoded; an empty string if it
/// cannot be read (this only ever feeds error messages).
fn read_tail(mut file: &File, max_bytes: usize) -> String {
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(max_bytes as u64);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A command for the example program `name`, which `cargo test` builds next to the test
/// binaries, with every `LOGTO_*` variable of the caller's environment removed (so a
/// developer's shell can't change what the tests see) and the peer's proxy-free setup.
pub fn example(name: &str) -> Command {
    program(example_path(name))
}

/// Where `cargo test` built the example program `name`, next to the test binaries.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    bin
}

/// A command for the program at `path` with every `LOGTO_*` variable of the caller's
/// environment removed (so a developer's shell can't change what the tests see) and no
/// proxy variables (a proxy in the developer's environment must not take a program's own
/// calls to the loopback peer elsewhere).
pub fn program(path: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(path);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("LOGTO_") {
            cmd.env_remove(var);
        }
    }
    for var in proxy_variables() {
        cmd.env_remove(var);
    }
    cmd
}

/// The example program `name` (see [`example`]) set up for the peer's endpoint, `app`'s
/// credentials and [`PEER_TIMEOUT`], through the `LOGTO_*` variables.
pub fn example_for(name: &str, peer: &Peer, (id, secret): (&str, &str)) -> Command {
    let mut cmd = example(name);
    cmd.env("LOGTO_ENDPOINT", peer.base_url())
        .env("LOGTO_APP_ID", id)
        .env("LOGTO_APP_SECRET", secret)
        .env("LOGTO_TIMEOUT", PEER_TIMEOUT.as_secs().to_string());
    cmd
}

/// The proxy variables ureq reads (see `Config::proxy`), `NO_PROXY` included: each name in
/// upper and in lower case. The tests state this themselves rather than share the crate's
/// list, which is what they check.
pub fn proxy_variables() -> impl Iterator<Item = String> {
    ["ALL", "HTTPS", "HTTP", "NO"]
        .into_iter()
        .flat_map(|p| [format!("{p}_PROXY"), format!("{p}_PROXY").to_lowercase()])
}

/// The JWT payload's claim `name` of an access token, if it is a string.
pub fn jwt_claim(token: &Token, name: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.access_token().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let Value::Object(obj) = json::from_str(std::str::from_utf8(&bytes).ok()?).ok()? else {
        return None;
    };
    match obj.get(name)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Asserts that the token's claim `name` is the string `expected` (`None`: absent, or not
/// a string).
#[track_caller]
pub fn assert_claim(token: &Token, name: &str, expected: Option<&str>) {
    assert_eq!(jwt_claim(token, name).as_deref(), expected, "claim {name}");
}

/// `method` (GET or POST) `path` on the peer with the token as Bearer; the status and body.
pub fn call_api(peer: &Peer, method: &str, path: &str, token: &Token) -> (u16, String) {
    let agent = local_agent(PEER_TIMEOUT);
    let url = format!("{}{path}", peer.base_url());
    let response = match method {
        "GET" => agent
            .get(&url)
            .header("authorization", &format!("Bearer {}", token.access_token()))
            .call(),
        _ => agent
            .post(&url)
            .header("authorization", &format!("Bearer {}", token.access_token()))
            .send_empty(),
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "logto-m2m-{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The lock of an install into `dir` (npm ci, a Python venv) across test processes, held
/// until the returned guard is dropped: the OS lock on `dir/.install.lock`, or built with a
/// compiler before 1.89, which has none, the folder `dir/.install.lock.d`, made by whoever
/// holds it (`create_dir` is atomic) and taken from a holder that died after 15 minutes.
#[allow(clippy::incompatible_msrv)] // File::lock: only built where it exists
pub fn install_lock(dir: &Path) -> Result<Box<dyn Send>, String> {
    #[cfg(logto_file_lock)]
    {
        let path = dir.join(".install.lock");
        let lock =
            File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(Box::new(lock))
    }
    #[cfg(not(logto_file_lock))]
    {
        struct Held(PathBuf);
        impl Drop for Held {
            fn drop(&mut self) {
                let _ = fs::remove_dir(&self.0);
            }
        }
        let path = dir.join(".install.lock.d");
        let stale = Duration::from_secs(15 * 60);
        let started = Instant::now();
        loop {
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Box::new(Held(path))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
            let age = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok());
            if age.is_some_and(|age| age > stale) {
                let _ = fs::remove_dir(&path);
            } else if started.elapsed() > stale {
                return Err(format!("{} held for over 15 minutes", path.display()));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}
