//! The Authlib test server from `tests/authlib/`: a second real OAuth 2.0 token endpoint,
//! for what oidc-provider (Logto) can't show. See `tests/authlib/README.md`.
//!
//! [`ensure_authlib_installed`] makes the venv `tests/authlib/.venv` once (`python3 -m venv`,
//! then `pip install -r requirements.txt`) under a file lock, as `ensure_peer_installed`
//! does for npm. An [`AuthlibServer`] is a `python server.py` child on a free 127.0.0.1
//! port; `Drop` kills it by its PID, and when the test process goes away without running
//! `Drop` the server sees EOF on its stdin pipe and exits by itself
//! (`AUTHLIB_EXIT_ON_STDIN_EOF=1`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};

use super::child::{self, ChildServer, Kind, POLL_INTERVAL, StartError};
use super::{local_agent, read_tail_of};

/// The server's clients as `(client_id, client_secret)`, see `tests/authlib/README.md`.
/// All take `client_secret_basic` and `client_secret_post` but [`POST_ONLY`].
/// All three scopes.
pub const PLAIN: (&str, &str) = ("m2m-plain", "plain-secret-0123456789");
/// Spaces, `:`, `+`, `/`, `%`, `&`, `=` and `~` in the id and the secret. A space written
/// `+` in a Basic header is a plus to Authlib, which percent-decodes it.
pub const SPACED: (&str, &str) = ("m2m spaced:app+1", "s3 cr:t+/%41&= x~");
/// A non-ASCII id with an ASCII secret.
pub const UNICODE_ID: (&str, &str) = ("m2m-ünï", "unicode-id-secret 0123");
/// A non-ASCII secret: Authlib's stock `check_client_secret` (`secrets.compare_digest` on
/// two `str`) raises on it, so every request of this client is a 500.
pub const UNICODE_SECRET: (&str, &str) = ("m2m-unicode-secret", "sécret-ünï");
/// Registered `client_secret_post` only: a Basic request gets `invalid_client`.
pub const POST_ONLY: (&str, &str) = ("m2m-post-only", "post-only-secret-0123456789");
/// Only [`READ`]: asking for [`WRITE`] alone grants nothing.
pub const READER: (&str, &str) = ("m2m-reader", "reader-secret-0123456789");

/// The scopes the server knows; any other is Authlib's `invalid_scope`.
pub const READ: &str = "reports:read";
pub const WRITE: &str = "reports:write";
pub const ADMIN: &str = "admin:all";

/// A resource indicator the tests send; Authlib ignores `resource` (its tokens' `aud` is
/// the client id).
pub const RESOURCE: &str = "https://reports.api";

/// Authlib's `error_description`s, word for word (Authlib 1.9.10).
pub const CANNOT_AUTHENTICATE: &str =
    "The client cannot authenticate with methods: ['client_secret_basic', 'client_secret_post']";
pub const NO_SUCH_CLIENT: &str = "The client does not exist on this server.";
pub const INVALID_SCOPE: &str = "The requested scope is invalid, unknown, or malformed.";

/// Far more than a call ever takes, so a stuck server fails the test instead of hanging it.
pub const AUTHLIB_TIMEOUT: Duration = Duration::from_secs(10);

/// Python's startup plus Authlib's import take well under a second; the rest is headroom.
/// `pip install` needs the registry: about 5 s here, minutes on a slow network.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Written into the venv after a complete install: the requirements it was made from.
const MARKER: &str = ".logto-m2m-requirements.txt";

/// Environment variables that would change which Python code runs or what server.py does.
const CLEARED_ENV: &[&str] = &[
    "PORT",
    "AUTHLIB_EXIT_ON_STDIN_EOF",
    "AUTHLIB_INSECURE_TRANSPORT",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONWARNINGS",
    "VIRTUAL_ENV",
];

pub fn authlib_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("authlib")
}

fn venv_python(dir: &Path) -> PathBuf {
    if cfg!(windows) {
        dir.join(".venv").join("Scripts").join("python.exe")
    } else {
        dir.join(".venv").join("bin").join("python")
    }
}

/// The interpreter that makes the venv: `$LOGTO_M2M_TEST_PYTHON`, else `python3`.
fn base_python() -> String {
    std::env::var("LOGTO_M2M_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Makes `tests/authlib/.venv` with the pinned requirements unless it already has them.
///
/// Safe to call from every test: an exclusive lock on `tests/authlib/.install.lock` makes
/// other test processes wait while one installs, and within a process the result is kept.
///
/// # Panics
///
/// If Python 3 is missing, `python3 -m venv` fails (on Debian and Ubuntu it needs the
/// `python3-venv` package) or `pip install` fails; the output is in the message.
pub fn ensure_authlib_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(msg) = INSTALLED.get_or_init(install) {
        panic!("{msg}");
    }
}

fn install() -> Result<(), String> {
    let dir = authlib_dir();
    let requirements = fs::read_to_string(dir.join("requirements.txt"))
        .map_err(|e| format!("authlib server: read requirements.txt: {e}"))?;

    // Released when `_lock` is dropped at the end of this function.
    let _lock = super::install_lock(&dir).map_err(|e| format!("authlib server: {e}"))?;

    let marker = dir.join(".venv").join(MARKER);
    let python = venv_python(&dir);
    if python.is_file() && fs::read_to_string(&marker).is_ok_and(|m| m == requirements) {
        return Ok(());
    }

    // No complete install: start from an empty venv (`--clear`), so a half-made one or
    // one with other pins never lingers.
    let base = base_python();
    let mut venv = Command::new(&base);
    venv.args(["-m", "venv", "--clear", ".venv"]);
    run_logged(venv, &dir, &format!("`{base} -m venv --clear .venv`")).map_err(|e| {
        format!(
            "{e}\n(python3 >= 3.11 with its venv module is needed; on Debian or Ubuntu: \
             apt-get install python3-venv; LOGTO_M2M_TEST_PYTHON names another interpreter)"
        )
    })?;
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "-r",
        "requirements.txt",
    ]);
    run_logged(
        pip,
        &dir,
        "`.venv/bin/python -m pip install -r requirements.txt`",
    )?;
    fs::write(&marker, &requirements)
        .map_err(|e| format!("authlib server: write {}: {e}", marker.display()))
}

/// Runs `cmd` in `dir` with its output in a log file, within [`INSTALL_TIMEOUT`].
fn run_logged(mut cmd: Command, dir: &Path, what: &str) -> Result<(), String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let log_path = std::env::temp_dir().join(format!(
        "logto-m2m-authlib-install-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let log = File::create(&log_path)
        .map_err(|e| format!("authlib server: cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("authlib server: cannot clone log handle: {e}"))?;
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    // A file rather than a pipe, so we can poll with a deadline without a reader thread.
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| {
            format!(
                "authlib server: cannot run {what} in {}: {e}",
                dir.display()
            )
        })?;
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "authlib server: {what} took more than {INSTALL_TIMEOUT:?}; output:\n{}",
                    read_tail_of(&log_path, 4000)
                ));
            }
            Err(e) => return Err(format!("authlib server: waiting for {what}: {e}")),
        }
    };
    let output = read_tail_of(&log_path, 4000);
    let _ = fs::remove_file(&log_path);
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "authlib server: {what} in {} failed ({status}); output:\n{output}",
            dir.display()
        ))
    }
}

/// What the server issues as access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFormat {
    /// RFC 9068 JWTs from Authlib's `JWTBearerTokenGenerator` (HS256).
    Jwt,
    /// 42 random characters, as Authlib's Flask integration makes by default.
    Opaque,
}

impl TokenFormat {
    fn as_arg(self) -> &'static str {
        match self {
            TokenFormat::Jwt => "jwt",
            TokenFormat::Opaque => "opaque",
        }
    }
}

/// A running Authlib server on `127.0.0.1:port()`. Dropping it kills the process.
pub struct AuthlibServer {
    server: ChildServer,
}

const AUTHLIB: Kind = Kind {
    name: "authlib server",
    log_name: "authlib",
    command: "`python server.py`",
    addr_in_use: "Address already in use",
};

/// One token request as the server received it (`GET /__authlib/requests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The status the server answered.
    pub status: u64,
    /// The user part of the Basic header before Authlib percent-decodes it, e.g.
    /// `m2m%20spaced%3Aapp%2B1`; `None` without a Basic header.
    pub basic_user: Option<String>,
    /// The form fields, decoded; `client_secret` reads `[secret]`.
    pub form: BTreeMap<String, String>,
}

impl AuthlibServer {
    /// A server issuing JWT access tokens.
    pub fn start() -> AuthlibServer {
        AuthlibServer::start_with(TokenFormat::Jwt)
    }

    /// # Panics
    ///
    /// If the server does not answer within 20 s, exits during startup, or finds its port
    /// taken five times in a row. The message has the server's log tail.
    pub fn start_with(format: TokenFormat) -> AuthlibServer {
        ensure_authlib_installed();
        child::start_on_a_free_port(&AUTHLIB, |port| AuthlibServer::spawn(port, format))
    }

    fn spawn(port: u16, format: TokenFormat) -> Result<AuthlibServer, StartError> {
        let dir = authlib_dir();
        let python = venv_python(&dir);
        let mut cmd = Command::new(&python);
        cmd.arg("server.py")
            .args(["--port", &port.to_string()])
            .args(["--token-format", format.as_arg()])
            .current_dir(&dir);
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("AUTHLIB_EXIT_ON_STDIN_EOF", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let mut server = AuthlibServer {
            server: ChildServer::spawn(&AUTHLIB, port, cmd)?,
        };
        let agent = local_agent(Duration::from_secs(1));
        let health = format!("{}/__authlib/health", server.base_url());
        // server.py prints this once it holds the port.
        let ready = format!("authlib-server ready {} ", server.token_url());
        server.server.wait_ready(&AUTHLIB, &ready, &health, || {
            agent.get(&health).call().is_ok_and(|r| r.status() == 200)
        })?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The token endpoint, `http://127.0.0.1:PORT/token`: not Logto's `/oidc/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The python process's PID, for tests that check it is gone.
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }

    /// The last `max_bytes` of the server's stdout and stderr (its access log, tracebacks).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.server.log_tail(max_bytes)
    }

    /// Closes the server's stdin, as the kernel does when the test process dies, and waits
    /// up to `timeout` for it to exit: its exit status, `None` if it is still running.
    pub fn close_stdin_and_wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        drop(self.server.child.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            match self.server.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                _ => return None,
            }
        }
    }

    /// Every token request the server received, oldest first.
    ///
    /// # Panics
    ///
    /// If the server does not answer or the JSON is not what `server.py` sends.
    pub fn received(&self) -> Vec<Received> {
        let url = format!("{}/__authlib/requests", self.base_url());
        let body = local_agent(Duration::from_secs(5))
            .get(&url)
            .call()
            .and_then(|mut resp| resp.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("authlib server: GET {url}: {e}\n{}", self.log_tail(2000)));
        parse_received(&body).unwrap_or_else(|e| panic!("authlib server: {url}: {e} in {body}"))
    }

    /// The last token request the server received.
    ///
    /// # Panics
    ///
    /// If it received none.
    pub fn last_received(&self) -> Received {
        self.received()
            .pop()
            .expect("authlib server: no token request received")
    }
}

/// One JWT server for the whole test binary, for tests that don't read
/// [`AuthlibServer::received`] (those start their own). It lives in a static, so `Drop`
/// never runs for it; it exits on EOF on its stdin when the binary exits.
pub fn shared_authlib() -> &'static AuthlibServer {
    static SERVER: OnceLock<AuthlibServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = AuthlibServer::start();
        // No Drop will remove the log.
        server.server.unlink_log();
        server
    })
}

fn parse_received(body: &str) -> Result<Vec<Received>, String> {
    let Ok(Value::Object(obj)) = json::from_str::<Value>(body) else {
        return Err("not a JSON object".into());
    };
    let Some(Value::Array(items)) = obj.get("requests") else {
        return Err("`requests` is not an array".into());
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(item) = item else {
                return Err("a request is not an object".to_string());
            };
            let status = match item.get("status") {
                Some(Value::Number(json::Number::U64(n))) => *n,
                other => return Err(format!("`status` is not a number: {other:?}")),
            };
            let basic_user = match item.get("basic_user") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                other => return Err(format!("`basic_user`: {other:?}")),
            };
            let Some(Value::Object(fields)) = item.get("form") else {
                return Err("`form` is not an object".into());
            };
            let form = fields
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!("form field {k}: {other:?}")),
                })
                .collect::<Result<_, _>>()?;
            Ok(Received {
                status,
                basic_user,
                form,
            })
        })
        .collect()
}
