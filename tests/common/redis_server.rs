//! A real `redis-server` for tests, on a free 127.0.0.1 port, with a tiny RESP client to
//! look at what the code under test left in it.
//!
//! Test files include it with `#[path = "common/redis_server.rs"] mod redis_server;`.
//! `redis-server` comes from the Debian package of that name (CI installs it in
//! `.ci/run`). Nothing is saved: `--save ''` and `--appendonly no`.
//!
//! The server is killed by its own PID when the `RedisServer` is dropped (also when a
//! test panics), or earlier by [`RedisServer::stop`]. A test binary killed outright
//! (SIGKILL) leaves it running: redis-server has no way to follow its parent.

// Each test binary uses only part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take from spawn to answering PING. It takes a few milliseconds;
/// the rest is headroom for a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Fresh ports to try when the one we picked was taken before redis-server bound it.
const PORT_ATTEMPTS: u32 = 5;
/// The longest a command of the test client waits for its reply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `redis-server`; dropping it kills the process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    /// What it was started with, for [`restart`](RedisServer::restart).
    args: Vec<String>,
}

impl RedisServer {
    /// A server without a password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// A server that requires `password` (`--requirepass`).
    pub fn with_password(password: &str) -> RedisServer {
        RedisServer::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> RedisServer {
        RedisServer::start_args(password, |_| Vec::new())
    }

    /// A server with `extra` arguments after the usual ones; `extra` is given the port
    /// chosen, and may pick more ports itself (a TLS port).
    pub fn start_args(password: Option<&str>, extra: impl Fn(u16) -> Vec<String>) -> RedisServer {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            args.push(std::env::temp_dir().to_string_lossy().into_owned());
            if let Some(p) = password {
                args.extend(["--requirepass".to_owned(), p.to_owned()]);
            }
            args.extend(extra(port));
            match RedisServer::spawn(&args, port, password) {
                Ok(server) => return server,
                // Exited at once: most likely a port was taken. Try others.
                Err(reason) => last = reason,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Runs `redis-server args...` and waits until it answers on `port`.
    fn spawn(args: &[String], port: u16, password: Option<&str>) -> Result<RedisServer, String> {
        let child = Command::new("redis-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it (Debian package redis-server)")
            });
        let mut server = RedisServer {
            child: Some(child),
            port,
            password: password.map(str::to_owned),
            args: args.to_vec(),
        };
        server.wait_ready().map(|()| server)
    }

    /// Waits until the server answers PING, at most `START_TIMEOUT`.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                self.child = None;
                return Err(format!("exited with {status} on port {}", self.port));
            }
            // Any answer will do (`NOAUTH` when a password is set): it is listening.
            let reply = self.try_command(&["PING"], Duration::from_millis(500));
            if matches!(reply, Ok(Reply::Status(_) | Reply::Error(_))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "no answer to PING on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port/0`, with the password when the server has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kills the server now (to see how the code under test copes with Redis going away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, by its PID (Child::kill is SIGKILL), and reaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a server stopped by [`stop`](RedisServer::stop) again, with the same
    /// arguments on the same port, as a supervisor restarts a crashed one: with nothing
    /// saved, it comes back empty, and whatever its arguments made it (a master, or a
    /// replica of the server it named).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: still running");
        let again = RedisServer::spawn(&self.args, self.port, self.password.as_deref())
            .unwrap_or_else(|e| panic!("redis-server did not start again: {e}"));
        *self = again;
    }

    /// Runs one command on a fresh connection (authenticated when the server has a
    /// password) and returns the reply; panics when the server can't be reached.
    pub fn command(&self, args: &[&str]) -> Reply {
        self.command_bytes(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
    }

    /// [`command`](RedisServer::command) with binary arguments.
    pub fn command_bytes(&self, args: &[&[u8]]) -> Reply {
        self.try_command_bytes(args, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("redis {:?}: {e}", String::from_utf8_lossy(args[0])))
    }

    pub fn try_command(&self, args: &[&str], timeout: Duration) -> Result<Reply, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.try_command_bytes(&args, timeout)
    }

    fn try_command_bytes(&self, args: &[&[u8]], timeout: Duration) -> Result<Reply, String> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut stream = stream;
        let password = self
            .password
            .as_ref()
            .filter(|_| args.first() != Some(&&b"PING"[..]));
        if let Some(p) = password {
            write_command(&mut stream, &[b"AUTH", p.as_bytes()])?;
            match read_reply(&mut reader)? {
                Reply::Status(_) => {}
                other => return Err(format!("AUTH: {other:?}")),
            }
        }
        write_command(&mut stream, args)?;
        read_reply(&mut reader)
    }

    /// Every key in the server with its value as bytes (strings only; other types as
    /// their type name), for scanning what was left behind.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Reply::Array(keys) = self.command(&["KEYS", "*"]) else {
            panic!("KEYS * is not an array");
        };
        keys.into_iter()
            .map(|k| {
                let Reply::Bulk(Some(key)) = k else {
                    panic!("key is not a bulk string: {k:?}");
                };
                let value = match self.command_bytes(&[b"GET", &key]) {
                    Reply::Bulk(Some(v)) => v,
                    Reply::Bulk(None) => Vec::new(),
                    Reply::Error(_) => match self.command_bytes(&[b"TYPE", &key]) {
                        Reply::Status(t) => t.into_bytes(),
                        other => panic!("TYPE: {other:?}"),
                    },
                    other => panic!("GET: {other:?}"),
                };
                (key, value)
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

fn write_command(stream: &mut TcpStream, args: &[&[u8]]) -> Result<(), String> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out).map_err(|e| e.to_string())
}

fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("reply line cut short: {line:?}"))?;
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
    let number = || rest.parse::<i64>().map_err(|e| format!("{line:?}: {e}"));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match number()? {
            -1 => Reply::Bulk(None),
            n => {
                let mut bytes = vec![0; usize::try_from(n).map_err(|e| e.to_string())? + 2];
                reader.read_exact(&mut bytes).map_err(|e| e.to_string())?;
                bytes.truncate(bytes.len() - 2);
                Reply::Bulk(Some(bytes))
            }
        },
        "*" => match number()? {
            -1 => Reply::Bulk(None),
            n => (0..n)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()
                .map(Reply::Array)?,
        },
        _ => return Err(format!("unknown reply {line:?}")),
    })
}

/// A port that was free a moment ago; `start_with` retries when it was taken since.
fn free_port() -> u16 {
    // unwrap is ok: binding port 0 on loopback fails only if the machine has no loopback
    // interface or no free ports, and then no test can run anyway.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A directory under the system temp dir for one set of servers' files, removed on drop.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "logto-m2m-redis-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// `name` in the directory, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `program args...` to its end, at most `limit`; panics with its output if it fails.
fn run_to_end(program: &str, args: &[String], dir: &std::path::Path, limit: Duration) -> String {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e})"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(status.success(), "{program} {args:?}: {status}\n{text}");
            return text;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not end within {limit:?}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `ready` until it holds, at most `limit`; panics naming `what` if it never does.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        thread::sleep(POLL_INTERVAL);
    }
}

/// A test CA made with the `openssl` command for this run, and what it signed: a server
/// certificate for 127.0.0.1 and localhost, and a client certificate. P-256 keys, PKCS#8.
pub struct TestCa {
    dir: Scratch,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = Scratch::new("ca");
        let args = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let openssl =
            |line: &str| run_to_end("openssl", &args(line), dir.path(), Duration::from_secs(60));
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(&format!(
            "req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=logto-m2m-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ));
        for (name, extensions) in [
            (
                "server",
                // Redis uses its server certificate as a client too (cluster bus, replicas).
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                 extendedKeyUsage=serverAuth,clientAuth\n",
            ),
            (
                "client",
                "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
            ),
        ] {
            std::fs::write(dir.path().join(format!("{name}.ext")), extensions).unwrap();
            openssl(&format!(
                "req -new {key} -keyout {name}.key -out {name}.csr -subj /CN=logto-m2m-test-{name}"
            ));
            openssl(&format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                 -out {name}.pem -extfile {name}.ext"
            ));
        }
        TestCa { dir }
    }

    /// The path of `name` (`ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`).
    pub fn file(&self, name: &str) -> String {
        self.dir.file(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap()
    }

    /// The arguments that make a redis-server speak TLS on `tls_port` with the server
    /// certificate, asking clients for a certificate from this CA when `auth_clients`.
    pub fn server_args(&self, tls_port: u16, auth_clients: bool) -> Vec<String> {
        [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &self.file("server.pem"),
            "--tls-key-file",
            &self.file("server.key"),
            "--tls-ca-cert-file",
            &self.file("ca.pem"),
            "--tls-auth-clients",
            if auth_clients { "yes" } else { "no" },
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

/// A redis-server that speaks TLS on `tls_port` (for the code under test) and plain TCP on
/// its `port` (for the test's own client).
pub struct TlsRedis {
    pub server: RedisServer,
    pub tls_port: u16,
}

impl TlsRedis {
    pub fn start(ca: &TestCa, auth_clients: bool) -> TlsRedis {
        let tls_port = std::cell::Cell::new(0);
        let server = RedisServer::start_args(None, |_| {
            tls_port.set(free_port());
            ca.server_args(tls_port.get(), auth_clients)
        });
        TlsRedis {
            server,
            tls_port: tls_port.get(),
        }
    }

    /// `rediss://127.0.0.1:<tls port>/0`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port)
    }
}

/// One master, one replica of it and one sentinel watching them, on 127.0.0.1. The
/// sentinel declares the master down after 1 s without an answer, and (quorum 1) fails
/// over to the replica by itself.
pub struct SentinelSet {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
    /// With `start_tls`: the TLS ports of the master, the replica and the sentinel.
    pub tls_ports: Option<[u16; 3]>,
    _dir: Scratch,
}

/// The name the sentinel knows the master by.
pub const MASTER_NAME: &str = "tokens";

impl SentinelSet {
    pub fn start() -> SentinelSet {
        SentinelSet::start_with(None, None)
    }

    /// The same with `password` required by all three (the sentinel's `requirepass` too).
    pub fn with_password(password: &str) -> SentinelSet {
        SentinelSet::start_with(None, Some(password))
    }

    /// The same speaking TLS with `ca`'s server certificate: to clients, between master
    /// and replica, and from the sentinel to them (which then names their TLS ports).
    pub fn start_tls(ca: &TestCa) -> SentinelSet {
        SentinelSet::start_with(Some(ca), None)
    }

    fn start_with(ca: Option<&TestCa>, password: Option<&str>) -> SentinelSet {
        let dir = Scratch::new("sentinel");
        let tls_port = std::cell::Cell::new(0);
        let tls = |extra: &mut Vec<String>| {
            if let Some(ca) = ca {
                tls_port.set(free_port());
                extra.extend(ca.server_args(tls_port.get(), false));
                extra.extend(["--tls-replication", "yes"].map(String::from));
            }
        };
        let master = RedisServer::start_args(password, |_| {
            let mut args = Vec::new();
            tls(&mut args);
            args
        });
        let master_tls = tls_port.get();
        // The port the others reach the master on: its TLS one with TLS.
        let master_port = if ca.is_some() {
            master_tls
        } else {
            master.port()
        }
        .to_string();
        let replica = RedisServer::start_args(password, |_| {
            let mut args = vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master_port.clone(),
            ];
            if let Some(p) = password {
                args.extend(["--masterauth".into(), p.to_owned()]);
            }
            tls(&mut args);
            args
        });
        let replica_tls = tls_port.get();
        wait_until("the replica in sync", START_TIMEOUT, || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        let mut last = String::new();
        let mut sentinel = None;
        for attempt in 0..PORT_ATTEMPTS {
            let port = free_port();
            let conf = dir.file(&format!("sentinel-{attempt}.conf"));
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n",
                dir.path().display()
            );
            if let Some(ca) = ca {
                tls_port.set(free_port());
                // The same settings as the servers', in a config file's words.
                let args = ca.server_args(tls_port.get(), false);
                for pair in args.chunks(2) {
                    text.push_str(&format!(
                        "{} {}\n",
                        pair[0].trim_start_matches('-'),
                        pair[1]
                    ));
                }
                text.push_str("tls-replication yes\n");
            }
            if let Some(p) = password {
                text.push_str(&format!(
                    "requirepass {p}\nsentinel auth-pass {MASTER_NAME} {p}\n"
                ));
            }
            std::fs::write(&conf, text).unwrap();
            match RedisServer::spawn(&[conf, "--sentinel".into()], port, password) {
                Ok(s) => {
                    sentinel = Some(s);
                    break;
                }
                Err(reason) => last = reason,
            }
        }
        let sentinel = sentinel.unwrap_or_else(|| panic!("redis-sentinel did not start: {last}"));
        // It learns of the replica from the master's INFO.
        wait_until(
            "the sentinel to know the replica",
            Duration::from_secs(30),
            || {
                matches!(
                    sentinel.command(&["SENTINEL", "REPLICAS", MASTER_NAME]),
                    Reply::Array(r) if !r.is_empty()
                )
            },
        );
        let tls_ports = ca.map(|_| [master_tls, replica_tls, tls_port.get()]);
        SentinelSet {
            master,
            replica,
            sentinel,
            tls_ports,
            _dir: dir,
        }
    }

    /// `rediss+sentinel://127.0.0.1:<sentinel's tls port>/tokens/0` (after `start_tls`).
    pub fn tls_url(&self) -> String {
        let [_, _, sentinel] = self.tls_ports.expect("a set started with start_tls");
        format!("rediss+sentinel://127.0.0.1:{sentinel}/{MASTER_NAME}/0")
    }

    /// `redis+sentinel://127.0.0.1:<sentinel>/tokens/0`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}/0",
            self.sentinel.port()
        )
    }

    /// The port of the master the sentinel names now.
    pub fn named_master_port(&self) -> Option<u16> {
        match self
            .sentinel
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
        {
            Reply::Array(parts) => match parts.get(1) {
                Some(Reply::Bulk(Some(port))) => String::from_utf8_lossy(port).parse().ok(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The `INFO section` text of `server`.
pub fn info(server: &RedisServer, section: &str) -> String {
    match server.try_command(&["INFO", section], COMMAND_TIMEOUT) {
        Ok(Reply::Bulk(Some(text))) => String::from_utf8_lossy(&text).into_owned(),
        _ => String::new(),
    }
}

/// A Redis Cluster of `n` masters and no replicas on 127.0.0.1, made with
/// `redis-cli --cluster create`.
pub struct ClusterSet {
    pub nodes: Vec<RedisServer>,
    /// With `start_tls`, each node's TLS port (`CLUSTER SLOTS` asked over TLS names them).
    pub tls_ports: Vec<u16>,
    _dir: Scratch,
}

impl ClusterSet {
    pub fn start(n: usize) -> ClusterSet {
        ClusterSet::start_with(n, None)
    }

    /// A cluster whose nodes also speak TLS with `ca`'s server certificate, to clients and
    /// to each other (`--tls-cluster yes`).
    pub fn start_tls(n: usize, ca: &TestCa) -> ClusterSet {
        ClusterSet::start_with(n, Some(ca))
    }

    fn start_with(n: usize, ca: Option<&TestCa>) -> ClusterSet {
        let dir = Scratch::new("cluster");
        let mut tls_ports = Vec::new();
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                let tls_port = std::cell::Cell::new(0);
                let node = RedisServer::start_args(None, |port| {
                    let mut args: Vec<String> = [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &dir.file(&format!("nodes-{port}.conf")),
                        "--cluster-node-timeout",
                        "5000",
                    ]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                    if let Some(ca) = ca {
                        tls_port.set(free_port());
                        args.extend(ca.server_args(tls_port.get(), false));
                        args.extend(["--tls-cluster", "yes"].map(String::from));
                    }
                    args
                });
                tls_ports.push(tls_port.get());
                node
            })
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        run_to_end("redis-cli", &args, dir.path(), Duration::from_secs(60));
        for node in &nodes {
            wait_until("the cluster to be ok", Duration::from_secs(30), || {
                matches!(node.try_command(&["CLUSTER", "INFO"], COMMAND_TIMEOUT),
                    Ok(Reply::Bulk(Some(t))) if String::from_utf8_lossy(&t).contains("cluster_state:ok"))
            });
        }
        ClusterSet {
            nodes,
            tls_ports,
            _dir: dir,
        }
    }

    /// `rediss+cluster://` with the first node's TLS port.
    pub fn tls_url(&self) -> String {
        format!("rediss+cluster://127.0.0.1:{}", self.tls_ports[0])
    }

    /// `redis+cluster://` with the first `seeds` nodes.
    pub fn url(&self, seeds: usize) -> String {
        let hosts: Vec<String> = self.nodes[..seeds]
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The node that holds `key` (the others answer MOVED).
    pub fn owner_of(&self, key: &str) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| matches!(n.command(&["EXISTS", key]), Reply::Int(_)))
            .expect("some node serves every slot")
    }
}
