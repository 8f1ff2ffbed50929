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
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(std::env::temp_dir());
            if let Some(p) = password {
                cmd.args(["--requirepass", p]);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run redis-server ({e}); install it (Debian package redis-server)"
                    )
                });
            let mut server = RedisServer {
                child: Some(child),
                port,
                password: password.map(str::to_owned),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                // Exited at once: most likely the port was taken. Try another.
                Err(reason) => last = reason,
            }
        }
        panic!("redis-server did not start: {last}");
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
            if let Ok(reply) = self.try_command(&["PING"], Duration::from_millis(500))
                && matches!(reply, Reply::Status(_) | Reply::Error(_))
            {
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

    fn try_command(&self, args: &[&str], timeout: Duration) -> Result<Reply, String> {
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
        if let Some(p) = &self.password
            && args.first() != Some(&&b"PING"[..])
        {
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
