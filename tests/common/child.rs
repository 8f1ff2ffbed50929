//! A test server run as a child process (the peer's `node server.mjs`, the Authlib
//! server's `python server.py`): spawned on a free 127.0.0.1 port with its output in a log
//! file, waited for until it says it listens and answers, tried again on another port when
//! someone took that one first, and killed by its own PID on `Drop`.
//!
//! Its stdin is a pipe this process never writes: when the test process goes away without
//! running `Drop` (abort, SIGKILL, a static), the kernel closes it and the server, started
//! with its exit-on-EOF switch, exits by itself.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take from spawn to answering. They take about half a second; the
/// rest is headroom for a loaded CI machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Fresh ports to try when the one we picked was taken before the server bound it.
const PORT_ATTEMPTS: u32 = 5;

/// One attempt's failure to start.
pub enum StartError {
    /// Someone bound the port between our probe and the server's listen; try another.
    AddrInUse(String),
    Fatal(String),
}

/// What a kind of server says, for starting it and for messages.
pub struct Kind {
    /// `test peer`, `authlib server`: the start of every message.
    pub name: &'static str,
    /// `peer`, `authlib`: in the log file's name.
    pub log_name: &'static str,
    /// `` `node server.mjs` ``: what runs, for messages.
    pub command: &'static str,
    /// What its log says when the port was taken (`EADDRINUSE`, `Address already in use`).
    pub addr_in_use: &'static str,
}

/// A running child server. Dropping it kills and reaps the process.
pub struct ChildServer {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// Read handle on `log`: the log stays readable after its path is removed.
    log_reader: File,
    /// Set while starting, so that the log a startup failure names survives.
    keep_log: bool,
}

impl ChildServer {
    /// Spawns `cmd` for `port` with its stdout and stderr in a fresh log file and its stdin
    /// a pipe that is never written (see the module docs).
    pub fn spawn(kind: &Kind, port: u16, mut cmd: Command) -> Result<ChildServer, StartError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "logto-m2m-{}-{}-{n}-{port}.log",
            kind.log_name,
            std::process::id()
        ));
        let fatal = |what: String| StartError::Fatal(format!("{}: {what}", kind.name));
        let out =
            File::create(&log).map_err(|e| fatal(format!("create {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| fatal(format!("clone log handle: {e}")))?;
        let log_reader =
            File::open(&log).map_err(|e| fatal(format!("open {}: {e}", log.display())))?;
        let dir = cmd.get_current_dir().map(|d| d.display().to_string());
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                fatal(format!(
                    "cannot run {} in {}: {e}",
                    kind.command,
                    dir.as_deref().unwrap_or(".")
                ))
            })?;
        Ok(ChildServer {
            child,
            port,
            log,
            log_reader,
            keep_log: true,
        })
    }

    /// Waits until the log holds `ready_line` (printed once the server holds its port, so
    /// that a server another process runs on the same port is never mistaken for ours)
    /// and `answers()` is true.
    pub fn wait_ready(
        &mut self,
        kind: &Kind,
        ready_line: &str,
        what: &str,
        answers: impl Fn() -> bool,
    ) -> Result<(), StartError> {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let tail = self.log_tail(4000);
                    let msg = format!(
                        "{} on port {} exited during startup ({status}); log {}:\n{tail}",
                        kind.command,
                        self.port,
                        self.log.display()
                    );
                    return Err(if tail.contains(kind.addr_in_use) {
                        // Another port is tried, and the tail is in `msg`.
                        self.keep_log = false;
                        StartError::AddrInUse(msg)
                    } else {
                        StartError::Fatal(format!("{}: {msg}", kind.name))
                    });
                }
                Err(e) => {
                    return Err(StartError::Fatal(format!("{}: waiting: {e}", kind.name)));
                }
            }
            if self.log_tail(64 * 1024).contains(ready_line) && answers() {
                self.keep_log = false;
                return Ok(());
            }
            if started.elapsed() >= START_TIMEOUT {
                return Err(StartError::Fatal(format!(
                    "{}: no answer from {what} within {START_TIMEOUT:?}; log {}:\n{}",
                    kind.name,
                    self.log.display(),
                    self.log_tail(4000)
                )));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The last `max_bytes` of the server's output, lossily decoded; empty if it can't be
    /// read (this only ever feeds messages).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        super::read_tail(&self.log_reader, max_bytes)
    }

    /// For a server kept in a static, which `Drop` never reaches: its log file goes now,
    /// while the server keeps writing to the unlinked file and `log_tail` still reads it.
    pub fn unlink_log(&self) {
        let _ = fs::remove_file(&self.log);
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Kill and reap our own child only, by its PID (Child::kill is SIGKILL).
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test that fails keeps the log to look at; its path is in the panic messages.
        if !self.keep_log && !thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// `start(port)` on a free port, again on another while the port turns out taken.
///
/// # Panics
///
/// On a fatal start error, or when the port was taken five times in a row.
pub fn start_on_a_free_port<T>(
    kind: &Kind,
    mut start: impl FnMut(u16) -> Result<T, StartError>,
) -> T {
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match start(super::free_port()) {
            Ok(server) => return server,
            Err(StartError::AddrInUse(msg)) => last = msg,
            Err(StartError::Fatal(msg)) => panic!("{msg}"),
        }
    }
    panic!(
        "{}: port already in use {PORT_ATTEMPTS} times in a row; last attempt:\n{last}",
        kind.name
    );
}
