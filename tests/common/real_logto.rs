//! A real Logto for the tests of `tests/real_logto/`: the open-source core built from
//! source, with its PostgreSQL, from `../shared/logto/` beside the crate (see its README.md).
//!
//! Once per test binary, [`logto`] picks free 127.0.0.1 ports (core on `P`, its admin port
//! on `P + 1`, PostgreSQL on another), runs `start.sh` with `LOGTO_FRESH_DB=1` and keeps the
//! endpoint it prints. Statics are never dropped, so the instance is stopped by a watchdog:
//! a small `sh` child, started before `start.sh`, that reads its stdin until EOF and then
//! runs `stop.sh --wipe` with the same ports. Only this process holds the write end of that
//! pipe, so it closes when the test binary ends in any way (return, panic, abort, SIGKILL);
//! the watchdog is in its own process group and ignores INT, HUP and TERM, so a Ctrl-C at
//! the terminal reaches the tests but not it. It stops only the ports this harness chose,
//! and only ports where no Logto or database of anyone else was found, and removes the run
//! folder of logs (`$LOGTO_BASE/run-<port>`) too, except after a failed start.
//!
//! [`start_behind`] starts one the same way for a binary that puts a TLS proxy in front of
//! it (`tests/self_hosted/`): `LOGTO_PUBLIC_ENDPOINT` is the proxy's URL, Logto's issuer.
//!
//! [`Logto::management`] calls its Management API as the seeded app A, and
//! [`Logto::new_user`], [`Logto::new_user_role`] and [`Logto::allow_token_exchange`] set up
//! what token exchange needs through it, as an admin would in the console.
//!
//! Everything here is bounded in time: starting (10 min, for a first build from a fresh
//! clone), each `psql` (30 s), each count of token requests (5 s), each Management API call
//! (the caller's timeout).

use std::env;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use logto_m2m::{Config, TokenRequest, request_token};
use miniserde::json::{self, Value};

/// The seeded app A: the Management API's `all`, and `read:products` on the shopping API.
pub const APP_A: (&str, &str) = ("appa0000000000000000a", "appAsecretAAAAAAAAAAAAAAAAAAAAAA");
/// The seeded machine-to-machine role with the Management API's `all`.
pub const MANAGEMENT_ROLE: &str = "Logto Management API access";

/// `start.sh` builds Logto on first use (about 2.5 min on 2 cores); later starts take
/// seconds. Far more than either, so that only a stuck start fails here.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// `stop.sh` waits at most 5 s for core and then PostgreSQL's fast shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh ports to try when a start fails (most likely: a port was taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// A running Logto that this test binary started.
pub struct Logto {
    endpoint: String,
    /// `LOGTO_PUBLIC_ENDPOINT` it was started with: the URL a TLS proxy serves it at.
    public: Option<String>,
    port: u16,
    pg_port: u16,
    db_url: String,
    /// `Bearer <app A's Management API token>`, asked for on the first [`Logto::management`].
    management_token: OnceLock<String>,
    /// The write end of the watchdog's stdin. Never written; closed when the process ends.
    _watchdog: ChildStdin,
}

/// The Logto this test binary shares, started on first use.
///
/// Each real-Logto test calls it first, and carries
/// `#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]`: without
/// `LOGTO_REAL=1` (build.rs sets `cfg(logto_real)` then) `cargo test` lists it as ignored
/// with that reason, never as passed, and runs it only when asked (`--include-ignored`),
/// then against a Logto started here as in any other run.
///
/// # Panics
///
/// When the instance can't be started (every test then panics with the same reason).
pub fn logto() -> &'static Logto {
    static SHARED: OnceLock<Result<Logto, String>> = OnceLock::new();
    match SHARED.get_or_init(start_shared) {
        Ok(logto) => logto,
        Err(why) => panic!("{why}"),
    }
}

/// `../shared/logto` next to the crate.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join("logto")
}

/// `${TMPDIR:-/tmp}`, as `start.sh` and `stop.sh` compute it.
fn script_tmp() -> PathBuf {
    env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// `$LOGTO_BASE`, as the scripts compute it.
fn script_base() -> PathBuf {
    env::var_os("LOGTO_BASE")
        .filter(|b| !b.is_empty())
        .map_or_else(|| script_tmp().join("logto-m2m-real-logto"), PathBuf::from)
}

/// A Logto of its own for a test binary that fronts it with a TLS proxy at `public`
/// (`https://<name>:<port>`, `LOGTO_PUBLIC_ENDPOINT`): its issuer is `{public}/oidc` and it
/// trusts the proxy's `X-Forwarded-Proto`. It is reached directly at [`Logto::endpoint`]
/// too. Stopped and wiped when the returned value is dropped or the binary ends, as
/// [`logto`]'s.
pub fn start_behind(public: &str) -> Result<Logto, String> {
    start(Some(public))
}

fn start_shared() -> Result<Logto, String> {
    start(None)
}

fn start(public: Option<&str>) -> Result<Logto, String> {
    let dir = shared_dir();
    let start_sh = dir.join("start.sh");
    let stop_sh = dir.join("stop.sh");
    if !start_sh.is_file() || !stop_sh.is_file() {
        return Err(format!(
            "real Logto: {} and stop.sh not found (the shared/ folder must be beside the crate)",
            start_sh.display()
        ));
    }
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let (port, pg_port) = pick_ports()?;
        match start_on(&start_sh, &stop_sh, port, pg_port, public) {
            Ok(logto) => return Ok(logto),
            Err(why) => failures.push(why),
        }
    }
    Err(format!(
        "real Logto: {START_ATTEMPTS} starts failed:\n{}",
        failures.join("\n---\n")
    ))
}

/// A core port `P` with `P + 1` free too, and a PostgreSQL port: free now, and with no
/// run folder or database cluster that some other instance left for them (those would make
/// `start.sh` reuse, and our `stop.sh` end, what someone else started).
fn pick_ports() -> Result<(u16, u16), String> {
    let unclaimed_core = |p: u16| {
        !script_base()
            .join(format!("run-{p}"))
            .join("core.pid")
            .exists()
    };
    let unclaimed_pg = |p: u16| !script_tmp().join(format!("logto-m2m-pg-{p}")).exists();
    for _ in 0..200 {
        let core = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = core.local_addr().map_err(|e| e.to_string())?.port();
        let Some(admin_port) = port.checked_add(1) else {
            continue;
        };
        let Ok(_admin) = TcpListener::bind(("127.0.0.1", admin_port)) else {
            continue;
        };
        let pg = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let pg_port = pg.local_addr().map_err(|e| e.to_string())?.port();
        if [port, admin_port].contains(&pg_port) || !unclaimed_core(port) || !unclaimed_pg(pg_port)
        {
            continue;
        }
        // The listeners close here; start.sh binds the ports a moment later.
        return Ok((port, pg_port));
    }
    Err("real Logto: found no free pair of ports".into())
}

/// The scripts' environment: our ports, the admin port derived from the core port.
fn script_env(cmd: &mut Command, port: u16, pg_port: u16) {
    cmd.env_remove("LOGTO_ADMIN_PORT")
        .env_remove("LOGTO_FRESH_DB")
        .env_remove("LOGTO_PUBLIC_ENDPOINT")
        .env("LOGTO_PORT", port.to_string())
        .env("LOGTO_PG_PORT", pg_port.to_string());
}

/// The watchdog's script (`$0` is stop.sh): wait for EOF on stdin, stop and wipe, and
/// remove the run folder of logs too unless told `keep` first (a failed start, whose
/// message points at those logs).
const WATCHDOG: &str = r#"trap '' INT HUP TERM
read -r keep
cat >/dev/null
"$0" --wipe >/dev/null 2>&1
[ "$keep" = keep ] || rm -rf "${LOGTO_BASE:-${TMPDIR:-/tmp}/logto-m2m-real-logto}/run-$LOGTO_PORT""#;

fn start_on(
    start_sh: &Path,
    stop_sh: &Path,
    port: u16,
    pg_port: u16,
    public: Option<&str>,
) -> Result<Logto, String> {
    // The watchdog comes first, so that whatever start.sh gets to start is stopped even if
    // this process dies during the start.
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        .arg(WATCHDOG)
        .arg(stop_sh)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    script_env(&mut watchdog, port, pg_port);
    let mut watchdog = watchdog
        .spawn()
        .map_err(|e| format!("real Logto: cannot run sh for the watchdog: {e}"))?;
    let mut pipe = watchdog.stdin.take().expect("piped stdin");

    let started = Instant::now();
    let out_path = script_tmp().join(format!(
        "logto-m2m-real-start-{}-{port}.out",
        std::process::id()
    ));
    let result = run_start(start_sh, port, pg_port, public, &out_path);
    let _ = fs::remove_file(&out_path);
    match result {
        Ok(endpoint) => {
            let _ = writeln!(
                io::stderr().lock(),
                "real_logto: Logto at {endpoint} (admin port {}, PostgreSQL {pg_port}) started in {:.1} s; stopped and wiped when the tests end",
                port + 1,
                started.elapsed().as_secs_f64()
            );
            Ok(Logto {
                db_url: format!("postgres://postgres@127.0.0.1:{pg_port}/logto"),
                management_token: OnceLock::new(),
                endpoint,
                public: public.map(str::to_owned),
                port,
                pg_port,
                _watchdog: pipe,
            })
        }
        Err(why) => {
            // Stop what this attempt started, now, keeping its logs: closing the pipe sets
            // the watchdog off.
            let _ = pipe.write_all(b"keep\n");
            drop(pipe);
            let stopped = wait_bounded(&mut watchdog, STOP_TIMEOUT);
            Err(format!(
                "real Logto on ports {port}/{pg_port}: {why} (stop.sh --wipe: {stopped:?})"
            ))
        }
    }
}

/// Runs start.sh for the ports and returns the endpoint it printed.
fn run_start(
    start_sh: &Path,
    port: u16,
    pg_port: u16,
    public: Option<&str>,
    out_path: &Path,
) -> Result<String, String> {
    // stdout goes to a file, not a pipe: the daemons start.sh leaves behind must not hold
    // a pipe that we would wait on for EOF.
    let out = File::create(out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(start_sh);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    script_env(&mut cmd, port, pg_port);
    cmd.env("LOGTO_FRESH_DB", "1");
    if let Some(public) = public {
        cmd.env("LOGTO_PUBLIC_ENDPOINT", public);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", start_sh.display()))?;
    let status = wait_bounded(&mut child, START_TIMEOUT)?;
    let output = fs::read_to_string(out_path).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "start.sh failed ({status}):\n{output}\nlogs: {}",
            script_base().join(format!("run-{port}")).display()
        ));
    }
    let expected = format!("http://127.0.0.1:{port}");
    match output.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) if line.trim() == expected => Ok(expected),
        other => Err(format!(
            "start.sh printed {other:?}, not {expected:?}:\n{output}"
        )),
    }
}

/// Waits for `child` at most `timeout`; past it, kills it (our own child, by its pid).
fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("waiting: {e}")),
        }
    }
}

/// What a bounded run printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `stdin` as its input (or none), at most `timeout`: past it the child is
/// killed and this panics. stdout and stderr are read whole.
pub fn run_bounded(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // Dropping the pipe at the end closes it: the child sees EOF.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_bounded(&mut child, timeout).unwrap_or_else(|why| panic!("{shown}: {why}"));
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// An M2M app made by [`Logto::new_app`]: its own id and secret.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub secret: String,
}

impl App {
    /// `(id, secret)`.
    pub fn creds(&self) -> (&str, &str) {
        (&self.id, &self.secret)
    }
}

/// A string as an SQL literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Logto {
    /// `http://127.0.0.1:PORT`, as start.sh printed it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `{endpoint}/oidc/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oidc/token", self.endpoint)
    }

    /// `{endpoint}/oidc`, the `iss` of its tokens; behind a TLS proxy
    /// ([`start_behind`]), `{public}/oidc`.
    pub fn issuer(&self) -> String {
        format!("{}/oidc", self.public.as_deref().unwrap_or(&self.endpoint))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// Runs `sql` (one or more statements, in one transaction unless it says otherwise) as
    /// the postgres superuser on Logto's database; the unaligned, tuples-only output.
    ///
    /// # Panics
    ///
    /// If psql fails or takes more than 30 s; the message has its stderr.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .arg(&self.db_url)
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGOPTIONS", "-c statement_timeout=20000");
        let out = run_bounded(cmd, None, PSQL_TIMEOUT);
        assert_eq!(out.code, Some(0), "psql {sql:?}: {}", out.stderr);
        out.stdout.trim_end().to_owned()
    }

    /// Token requests Logto logged for `app_id` (answered with a token or an error): its
    /// `logs` rows with key `ExchangeTokenBy.ClientCredentials`. Logs may land a moment after
    /// the answer, so this reads until two reads 300 ms apart agree (at most 5 s).
    pub fn token_requests(&self, app_id: &str) -> u64 {
        let sql = format!(
            "select count(*) from logs where key = 'ExchangeTokenBy.ClientCredentials' \
             and payload->>'applicationId' = {}",
            literal(app_id)
        );
        let read = || -> u64 {
            let out = self.psql(&sql);
            out.trim()
                .parse()
                .unwrap_or_else(|_| panic!("count: {out:?}"))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = read();
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = read();
            if now == last || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    /// A new machine-to-machine app with its own id and secret and the machine-to-machine
    /// `roles` (by name, e.g. `shop-reader`, `Logto Management API access`), so that a test
    /// counting its requests shares the app with no other test.
    pub fn new_app(&self, roles: &[&str]) -> App {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // Ids are varchar(21); the database is fresh for each test binary, so a counter
        // makes them unique (the pid and time only help anyone reading the logs).
        let id = format!("tapp{:05}n{n:04}", std::process::id() % 100_000);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let secret = format!("secret-{id}-{nanos:09}");
        let mut sql = format!(
            "insert into applications (tenant_id, id, name, secret, description, type, oidc_client_metadata) \
             values ('default', {id_l}, {name}, {internal}, 'made by tests/real_logto/main.rs', 'MachineToMachine', \
             '{{\"redirectUris\": [], \"postLogoutRedirectUris\": []}}');\n\
             insert into application_secrets (tenant_id, application_id, name, value) \
             values ('default', {id_l}, 'test secret', {secret_l});\n",
            id_l = literal(&id),
            name = literal(&format!("test app {id}")),
            internal = literal(&format!("#internal:{id}")),
            secret_l = literal(&secret),
        );
        for (i, role) in roles.iter().enumerate() {
            // A role that does not exist is a null role_id: the insert fails, and psql too.
            sql.push_str(&format!(
                "insert into applications_roles (tenant_id, id, application_id, role_id) \
                 values ('default', {}, {}, (select id from roles where tenant_id = 'default' and name = {}));\n",
                literal(&format!("ar{id}r{i}")),
                literal(&id),
                literal(role),
            ));
        }
        self.psql(&format!("begin;\n{sql}commit;"));
        App { id, secret }
    }

    /// Adds a secret to `app` that expired a day ago; returns it.
    pub fn add_expired_secret(&self, app: &App) -> String {
        let secret = format!("expired-{}", app.secret);
        self.psql(&format!(
            "insert into application_secrets (tenant_id, application_id, name, value, expires_at) \
             values ('default', {}, 'expired', {}, now() - interval '1 day')",
            literal(&app.id),
            literal(&secret)
        ));
        secret
    }

    /// `method path` (POST or PATCH) on the Management API, reached directly, with app A's
    /// token (one for this Logto, asked for on the first call) and the JSON `body`; each
    /// request at most `timeout`. The status, and the answer as JSON (`Null` for an empty
    /// or non-JSON body).
    ///
    /// # Panics
    ///
    /// When app A gets no token, on another method, or when the request fails (no answer).
    pub fn management(
        &self,
        method: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> (u16, Value) {
        let token = self.management_token.get_or_init(|| {
            let config = Config::logto(&self.endpoint, APP_A.0, APP_A.1)
                .unwrap()
                .timeout(timeout);
            let management = TokenRequest::management_api(&self.endpoint);
            match request_token(&config, &management) {
                Ok(token) => format!("Bearer {}", token.access_token()),
                Err(e) => panic!("app A's management api token: {e}"),
            }
        });
        let agent = super::local_agent(timeout);
        let url = format!("{}{path}", self.endpoint);
        let send = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            r.header("authorization", token)
                .header("content-type", "application/json")
                .send(body.as_bytes())
        };
        let mut answer = match method {
            "POST" => send(agent.post(&url)),
            "PATCH" => send(agent.patch(&url)),
            _ => panic!("{method}"),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        (status, json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A new user role, `shop-user`, granting `read:products` on the shopping API: its id.
    /// Role names are unique, so once per Logto.
    pub fn new_user_role(&self, timeout: Duration) -> String {
        let (status, role) = self.management(
            "POST",
            "/api/roles",
            r#"{"name":"shop-user","description":"reads products","type":"User","scopeIds":["shopscoperead00000001"]}"#,
            timeout,
        );
        assert_eq!(status, 200, "{}", json::to_string(&role));
        field(&role, "id")
    }

    /// A new user `username` with `password` and the role `role_id`: its id.
    pub fn new_user(
        &self,
        username: &str,
        password: &str,
        role_id: &str,
        timeout: Duration,
    ) -> String {
        let (status, made) = self.management(
            "POST",
            "/api/users",
            &format!(r#"{{"username":"{username}","password":"{password}"}}"#),
            timeout,
        );
        assert_eq!(status, 200, "{}", json::to_string(&made));
        let id = field(&made, "id");
        let (status, _) = self.management(
            "POST",
            &format!("/api/users/{id}/roles"),
            &format!(r#"{{"roleIds":["{role_id}"]}}"#),
            timeout,
        );
        assert_eq!(status, 201);
        id
    }

    /// Turns token exchange on for `app`, as the console's switch does.
    pub fn allow_token_exchange(&self, app: &App, timeout: Duration) {
        let (status, answer) = self.management(
            "PATCH",
            &format!("/api/applications/{}", app.id),
            r#"{"customClientMetadata":{"allowTokenExchange":true}}"#,
            timeout,
        );
        assert_eq!(status, 200, "{}", json::to_string(&answer));
    }
}

/// The string field `name` of a JSON object.
#[track_caller]
pub fn field(value: &Value, name: &str) -> String {
    match value {
        Value::Object(o) => match o.get(name) {
            Some(Value::String(s)) => s.clone(),
            other => panic!("{name}: {other:?} in {}", json::to_string(value)),
        },
        _ => panic!("not an object: {}", json::to_string(value)),
    }
}

/// The payload claims of a JWT (a token the command printed, say: the line's white space
/// is trimmed).
#[track_caller]
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.trim().split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    json::from_str(std::str::from_utf8(&bytes).expect("UTF-8")).expect("JSON")
}
