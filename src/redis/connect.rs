//! Connections to Redis servers, each step within the deadline of the call that needs it.
//!
//! The redis crate bounds the TCP connect, the TLS handshake and each read and write by
//! the timeouts it is given, but resolves a host name with std's resolver, which has no
//! timeout at all (glibc's waits `timeout × attempts` per name server, tens of seconds
//! when one does not answer). So a connection to a host *name* is made on a helper
//! thread, and the caller waits for it no longer than what is left: a resolver that
//! stalls costs the caller its deadline, never more. The helper goes on until the resolver
//! answers or gives up; a connection it then makes is kept as the server's idle one, for
//! the next call. While a server's helper runs, other calls to that server fail at once
//! rather than wait for the same resolver again, and at most [`MAX_HELPERS`] run per cache,
//! so a resolver that stalls for minutes can't pile threads up. An IP address needs no
//! resolving and connects on the caller's thread.
//!
//! One idle connection per server is kept and reused: on loopback a read costs about
//! 24 µs on it against 46 µs on a new connection, and across a network a new connection
//! costs one to three more round trips (TCP, AUTH, TLS). A call that finds the idle
//! connection in use by another thread opens its own, so no caller ever waits for
//! another, and a connection that failed or timed out is dropped, never reused: the late
//! answer to the command that timed out may still be on its way.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, ConnectionAddr, RedisError};

use super::MIN_WAIT;

/// The most helper threads that connect to host names at once, per cache.
pub(super) const MAX_HELPERS: usize = 4;

/// The most idle connections kept per cache (one per server).
const MAX_IDLE: usize = 16;

/// Why a call failed.
pub(super) enum Fail {
    /// What the redis crate said: a server's error reply or an I/O error.
    Redis(RedisError),
    /// Our own words.
    Said(String),
}

impl From<RedisError> for Fail {
    fn from(e: RedisError) -> Fail {
        Fail::Redis(e)
    }
}

impl Fail {
    /// The server is gone or not what it was (refused, reset, closed): another server may
    /// be the one to ask now (a failover, a restart).
    pub(super) fn is_gone(&self) -> bool {
        match self {
            Fail::Redis(e) => e.is_connection_refusal() || e.is_connection_dropped(),
            Fail::Said(_) => false,
        }
    }

    /// The server's error code (`READONLY`, `MOVED`, ...), if it answered with an error.
    #[cfg_attr(
        not(any(feature = "redis-sentinel", feature = "redis-cluster")),
        allow(dead_code)
    )]
    pub(super) fn code(&self) -> Option<&str> {
        match self {
            Fail::Redis(e) => e.code(),
            Fail::Said(_) => None,
        }
    }
}

/// One server: how to connect to it, and the name to resolve first, if it has one.
pub(super) struct Node {
    /// `host:port` (or the socket path): tells idle connections apart.
    pub(super) key: String,
    client: Client,
    /// The host, when it is a name rather than an IP address.
    name: Option<String>,
    /// A helper thread is connecting to this server (resolving its name).
    connecting: Arc<AtomicBool>,
}

impl Node {
    pub(super) fn new(client: Client) -> Node {
        let (key, name) = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                let ip = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok();
                (format!("{host}:{port}"), (!ip).then(|| host.clone()))
            }
            other => (other.to_string(), None),
        };
        Node {
            key,
            client,
            name,
            connecting: Arc::default(),
        }
    }
}

/// The idle connections of one cache, and its helper threads.
#[derive(Default)]
pub(super) struct Pool {
    /// Shared with the helper threads, which leave their late connections here.
    idle: Arc<Mutex<Vec<(String, Connection)>>>,
    helpers: Arc<AtomicUsize>,
}

impl Pool {
    /// Runs `f` on a connection to `node`, by `deadline`: the idle one if no other call has
    /// it, otherwise a new one.
    pub(super) fn run<T>(
        &self,
        node: &Node,
        deadline: Instant,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Fail> {
        let idle = self.take(&node.key);
        let reused = idle.is_some();
        let mut result = match idle {
            Some(mut con) => run_on(&mut con, deadline, f)
                .map(|v| (v, con))
                .map_err(Fail::Redis),
            None => self.connect_and_run(node, deadline, f),
        };
        // Redis may have closed a connection that sat idle (its `timeout` setting, a
        // restart, a failover): that is no reason to fail, so try once more on a new one.
        if reused && result.as_ref().is_err_and(Fail::is_gone) && Instant::now() < deadline {
            result = self.connect_and_run(node, deadline, f);
        }
        let (value, con) = result?;
        self.put(&node.key, con);
        Ok(value)
    }

    /// Runs `f` on the idle connection to `node`, if there is one that no other call has;
    /// `None` when there is none. A connection that fails is dropped, never retried here:
    /// whoever asks decides where a new one goes.
    #[cfg_attr(not(feature = "redis-sentinel"), allow(dead_code))]
    pub(super) fn run_idle<T>(
        &self,
        node: &Node,
        deadline: Instant,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Option<Result<T, Fail>> {
        let mut con = self.take(&node.key)?;
        Some(match run_on(&mut con, deadline, f) {
            Ok(value) => {
                self.put(&node.key, con);
                Ok(value)
            }
            Err(e) => Err(Fail::Redis(e)),
        })
    }

    /// Runs `check`, then `f`, on a new connection to `node`, by `deadline`; the connection
    /// is kept as the idle one when both succeed.
    #[cfg_attr(not(feature = "redis-sentinel"), allow(dead_code))]
    pub(super) fn run_new<T>(
        &self,
        node: &Node,
        deadline: Instant,
        check: impl FnOnce(&mut Connection, Instant) -> Result<(), Fail>,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Fail> {
        let mut con = self.connect(node, deadline)?;
        check(&mut con, deadline)?;
        let value = run_on(&mut con, deadline, f)?;
        self.put(&node.key, con);
        Ok(value)
    }

    fn connect_and_run<T>(
        &self,
        node: &Node,
        deadline: Instant,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<(T, Connection), Fail> {
        let mut con = self.connect(node, deadline)?;
        let value = run_on(&mut con, deadline, f)?;
        Ok((value, con))
    }

    /// A new connection, with the handshake (AUTH, SELECT, TLS) done by `deadline`.
    fn connect(&self, node: &Node, deadline: Instant) -> Result<Connection, Fail> {
        let left = remaining(deadline);
        let Some(name) = &node.name else {
            return Ok(node.client.get_connection_with_timeout(left)?);
        };
        // One helper per server at a time: the next would only wait for the same resolver.
        if node.connecting.swap(true, Ordering::AcqRel) {
            return Err(Fail::Said(format!(
                "still resolving {name}: an earlier lookup has not ended"
            )));
        }
        let client = node.client.clone();
        let connecting = Arc::clone(&node.connecting);
        let idle = Arc::clone(&self.idle);
        let key = node.key.clone();
        let job = move || {
            // Cleared however the connect ends, a panic included.
            struct Clear(Arc<AtomicBool>);
            impl Drop for Clear {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _clear = Clear(connecting);
            client.get_connection_with_timeout(left)
        };
        // A connection made after the caller gave up is the next call's.
        let late = move |result: Result<Connection, RedisError>| {
            if let Ok(con) = result {
                put(&idle, &key, con);
            }
        };
        let outcome = within(left, &self.helpers, job, late);
        if matches!(outcome, Within::Busy) {
            node.connecting.store(false, Ordering::Release);
        }
        match outcome {
            Within::Done(result) => Ok(result?),
            Within::TimedOut => Err(Fail::Said(format!(
                "no connection to {name} within {}ms (resolving its name, or connecting)",
                left.as_millis()
            ))),
            Within::Busy => Err(Fail::Said(format!(
                "{MAX_HELPERS} earlier connections are still resolving names"
            ))),
        }
    }

    fn take(&self, key: &str) -> Option<Connection> {
        let mut idle = self.idle.try_lock().ok()?;
        let i = idle.iter().position(|(k, _)| k == key)?;
        Some(idle.swap_remove(i).1)
    }

    fn put(&self, key: &str, con: Connection) {
        put(&self.idle, key, con);
    }
}

/// Keeps `con` as the idle connection to `key`, unless there is one (or no room).
fn put(idle: &Mutex<Vec<(String, Connection)>>, key: &str, con: Connection) {
    if let Ok(mut idle) = idle.try_lock()
        && idle.len() < MAX_IDLE
        && !idle.iter().any(|(k, _)| k == key)
    {
        idle.push((key.to_owned(), con));
    }
}

/// Runs `f` with the socket's read and write timeouts set to what is left until `deadline`.
pub(super) fn run_on<T>(
    con: &mut Connection,
    deadline: Instant,
    f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
) -> Result<T, RedisError> {
    let left = remaining(deadline);
    con.set_read_timeout(Some(left))?;
    con.set_write_timeout(Some(left))?;
    f(con)
}

/// Time until `deadline`, at least [`MIN_WAIT`] (a zero timeout means "none" to the
/// socket calls underneath).
pub(super) fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_WAIT)
}

/// What [`within`] got.
#[derive(Debug, PartialEq)]
pub(super) enum Within<T> {
    Done(T),
    /// `left` passed first; the job goes on on its own and its result is dropped.
    TimedOut,
    /// `MAX_HELPERS` jobs of this pool were still running: none was started.
    Busy,
}

/// Runs `job` on a helper thread and waits for it at most `left`; a result that comes
/// after that goes to `late`, on the helper. `running` counts the helpers of one cache, at
/// most [`MAX_HELPERS`].
pub(super) fn within<T: Send + 'static>(
    left: Duration,
    running: &Arc<AtomicUsize>,
    job: impl FnOnce() -> T + Send + 'static,
    late: impl FnOnce(T) + Send + 'static,
) -> Within<T> {
    if running.fetch_add(1, Ordering::AcqRel) >= MAX_HELPERS {
        running.fetch_sub(1, Ordering::AcqRel);
        return Within::Busy;
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let count = Arc::clone(running);
    let spawned = thread::Builder::new()
        .name("logto-m2m-redis-connect".into())
        .spawn(move || {
            // Counted down however the job ends (a panic included).
            struct Done(Arc<AtomicUsize>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let _done = Done(count);
            // The caller may have stopped waiting: then the result is `late`'s.
            if let Err(mpsc::SendError(value)) = tx.send(job()) {
                late(value);
            }
        });
    if spawned.is_err() {
        // No thread to be had (a process at its limit): the caller gets no connection.
        running.fetch_sub(1, Ordering::AcqRel);
        return Within::Busy;
    }
    match rx.recv_timeout(left) {
        Ok(value) => Within::Done(value),
        // Disconnected: the job panicked; as good as never answering.
        Err(_) => Within::TimedOut,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Stands in for `getaddrinfo` against a name server that never answers.
    fn stalled_resolve(stall: Duration) -> impl FnOnce() -> Result<Vec<IpAddr>, String> {
        move || {
            thread::sleep(stall);
            Err("no answer".into())
        }
    }

    #[test]
    fn a_stalled_job_costs_the_caller_only_what_was_left() {
        let running = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let got = within(
            Duration::from_millis(100),
            &running,
            stalled_resolve(Duration::from_secs(3)),
            drop,
        );
        let took = started.elapsed();
        assert_eq!(got, Within::TimedOut);
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(600),
            "{took:?}"
        );
        assert_eq!(running.load(Ordering::Acquire), 1, "the helper runs on");
    }

    #[test]
    fn a_quick_job_gives_its_result() {
        let running = Arc::new(AtomicUsize::new(0));
        let got = within(
            Duration::from_secs(5),
            &running,
            || Ok::<_, String>(vec![IpAddr::from([127, 0, 0, 1])]),
            drop,
        );
        assert_eq!(got, Within::Done(Ok(vec![IpAddr::from([127, 0, 0, 1])])));
        // The count drops once the helper has ended (right after it sent its result).
        let deadline = Instant::now() + Duration::from_secs(5);
        while running.load(Ordering::Acquire) != 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(running.load(Ordering::Acquire), 0);
    }

    #[test]
    fn stalled_helpers_are_capped() {
        let running = Arc::new(AtomicUsize::new(0));
        for _ in 0..MAX_HELPERS {
            let got = within(
                Duration::from_millis(10),
                &running,
                stalled_resolve(Duration::from_millis(1500)),
                drop,
            );
            assert_eq!(got, Within::TimedOut);
        }
        // All of them still stalled: the next caller is told at once, no thread started.
        let started = Instant::now();
        let got = within(
            Duration::from_secs(5),
            &running,
            stalled_resolve(Duration::ZERO),
            drop,
        );
        assert_eq!(got, Within::Busy);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(running.load(Ordering::Acquire), MAX_HELPERS);
        // Once they end, calls go through again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while running.load(Ordering::Acquire) != 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let got = within(Duration::from_secs(5), &running, || 7, drop);
        assert_eq!(got, Within::Done(7));
    }

    #[test]
    fn a_late_result_goes_to_late() {
        let running = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let got = within(
            Duration::from_millis(20),
            &running,
            || {
                thread::sleep(Duration::from_millis(200));
                "connection"
            },
            move |value| tx.send(value).unwrap(),
        );
        assert_eq!(got, Within::TimedOut);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("connection"));
    }

    #[test]
    fn a_panicking_job_is_no_answer() {
        let running = Arc::new(AtomicUsize::new(0));
        let got: Within<()> = within(
            Duration::from_secs(5),
            &running,
            || panic!("on purpose"),
            drop,
        );
        assert_eq!(got, Within::TimedOut);
    }
}
