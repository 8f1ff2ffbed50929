//! One small HTTP/1.1 server on 127.0.0.1, for the places that need a server we control:
//! the fault servers of `tests/suite/faults.rs`, the busy API ([`busy_server`]) of the
//! `Retry-After` tests in `tests/suite/api.rs` and `cli.rs`, the CONNECT proxy
//! (`connect_proxy.rs`) and the bench's token endpoint (`examples/bench.rs`, which
//! includes this file by path).
//!
//! It accepts connections and reads request heads; what to answer is the handler's
//! business. The handler gets each connection on a thread of its own, after its first
//! request was read, and may then write anything, stall, close, read further requests
//! (keep-alive) or tunnel bytes.
//!
//! Everything is bounded, so that a test that goes wrong fails instead of hanging or
//! piling up threads: at most `max_connections` connections are served over the server's
//! life (later ones are closed unserved), each lives at most `lifetime`, a request head is
//! at most 64 KiB, and every read, write and pause blocks at most [`STEP`] before looking
//! whether the server is being dropped. `Drop` stops the server and joins every thread,
//! so no thread or socket is left behind (`no_socket_or_thread_left_behind` in
//! `tests/suite/faults.rs` checks that).

// Each user needs only part of it: the bench, for one, reads no counts but `requests`.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The poll step: reads, writes and pauses block at most this long before checking
/// whether the connection should end.
pub const STEP: Duration = Duration::from_millis(50);
/// Longer request heads are not read: the connection is closed unserved.
const MAX_HEAD: usize = 64 * 1024;
/// Only this much of a request body is read and kept.
const MAX_BODY: usize = 64 * 1024;

/// What the server threads share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicU64,
    requests: AtomicU64,
    written: AtomicU64,
    /// When each request had been read in full.
    arrivals: Mutex<Vec<Instant>>,
}

/// What a server saw, read after it stopped.
pub struct Counts {
    /// Connections handed to the handler (not those closed unserved).
    pub connections: u64,
    /// Requests read in full.
    pub requests: u64,
    /// Bytes the handlers managed to write.
    pub written: u64,
    pub arrivals: Vec<Instant>,
}

impl Counts {
    /// The time between request `i - 1` and request `i` arriving.
    pub fn gap(&self, i: usize) -> Duration {
        self.arrivals[i].duration_since(self.arrivals[i - 1])
    }

    /// Asserts that a client waited out [`WAIT_TWICE`]: three requests, each repeat at
    /// least 950 ms after the one before it.
    #[track_caller]
    pub fn assert_waited_twice(&self) {
        assert_eq!(self.requests, 3);
        assert!(
            self.gap(1) >= Duration::from_millis(950),
            "{:?}",
            self.gap(1)
        );
        // An HTTP date has whole seconds: two seconds ahead is a wait of more than one.
        assert!(
            self.gap(2) >= Duration::from_millis(950),
            "{:?}",
            self.gap(2)
        );
    }
}

/// A script for [`busy_server`]: a 429 with `Retry-After: 1`, then a 503 with an HTTP date
/// two seconds ahead.
pub const WAIT_TWICE: &[(u16, Option<&str>)] = &[(429, Some("1")), (503, Some("date+2"))];

/// A busy API: answers its requests in turn from `script` (status and `Retry-After`,
/// `None` for none; `"date+N"` is an HTTP date N seconds ahead, made when it answers) with
/// the body `busy`, then 200 `done` past its end. Each answer closes its connection; the
/// tests that use it make three requests at most, so 8 connections and 30 s are plenty.
pub fn busy_server(script: &'static [(u16, Option<&'static str>)]) -> Loopback {
    Loopback::start(8, Duration::from_secs(30), move |c| {
        let (status, retry_after, body) = match script.get(c.request.n as usize) {
            Some(&(status, retry_after)) => (status, retry_after, "busy"),
            None => (200, None, "done"),
        };
        let header = match retry_after {
            None => String::new(),
            Some(date) if date.starts_with("date+") => {
                let ahead = Duration::from_secs(date[5..].parse().unwrap());
                let at = std::time::SystemTime::now() + ahead;
                format!("Retry-After: {}\r\n", httpdate::fmt_http_date(at))
            }
            Some(seconds) => format!("Retry-After: {seconds}\r\n"),
        };
        let _ = c.send(
            format!(
                "HTTP/1.1 {status} X\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    })
}

/// A running server; dropping it stops it and joins its threads.
pub struct Loopback {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Loopback {
    /// Serves every connection with `handler`, one thread per connection, until dropped.
    pub fn start(
        max_connections: usize,
        lifetime: Duration,
        handler: impl Fn(&mut Conn) + Send + Sync + 'static,
    ) -> Loopback {
        // unwrap is ok: binding port 0 on loopback fails only on a machine where no test
        // of this kind can run anyway.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let handler = Arc::new(handler);
        let s = Arc::clone(&shared);
        // A blocking accept, woken by a connection of our own in `stop`, rather than a
        // polling one: the bench times fresh connections, and a poll would add its step.
        let acceptor = thread::spawn(move || {
            let mut workers = Vec::new();
            for stream in listener.incoming() {
                // `stop` is set before the wake-up connection, which is not counted.
                if s.stop.load(SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                if workers.len() >= max_connections {
                    continue; // dropped, so closed
                }
                s.connections.fetch_add(1, SeqCst);
                let (s, handler) = (Arc::clone(&s), Arc::clone(&handler));
                workers.push(thread::spawn(move || {
                    if let Some(mut conn) = Conn::accept(stream, s, lifetime) {
                        handler(&mut conn);
                    }
                    // Dropping `conn` closes the connection.
                }));
            }
            for w in workers {
                // A handler that panicked has failed its test already, by what it missed.
                let _ = w.join();
            }
        });
        Loopback {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests read in full so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(SeqCst)
    }

    /// Stops the server, waits for its threads, and says what it saw.
    pub fn finish(mut self) -> Counts {
        self.stop();
        let s = &self.shared;
        Counts {
            connections: s.connections.load(SeqCst),
            requests: s.requests.load(SeqCst),
            written: s.written.load(SeqCst),
            arrivals: s
                .arrivals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn stop(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            self.shared.stop.store(true, SeqCst);
            // Wakes the blocked accept; it then sees `stop`. Failing to connect can only
            // mean the listener is already gone.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = acceptor.join();
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request as it arrived.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// This request's number on this server: 0 for the first.
    pub n: u64,
    /// `POST /oidc/token HTTP/1.1`, or whatever came instead.
    pub request_line: String,
    /// Name and value of each header line, trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body by Content-Length (its first 64 KiB), lossily decoded.
    pub body: String,
}

impl Request {
    /// The request line's first word.
    pub fn method(&self) -> &str {
        self.request_line.split(' ').next().unwrap_or_default()
    }

    /// The request line's second word: a path, or `host:port` for CONNECT.
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or_default()
    }

    /// The first header called `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).first().copied()
    }

    /// Every header called `name`, in any case.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One accepted connection and the request last read from it.
pub struct Conn {
    stream: TcpStream,
    shared: Arc<Shared>,
    until: Instant,
    /// Bytes read past the last request.
    buf: Vec<u8>,
    pub request: Request,
}

impl Conn {
    /// Reads the first request; `None` when the client sent none (or the server stopped).
    fn accept(stream: TcpStream, shared: Arc<Shared>, lifetime: Duration) -> Option<Conn> {
        stream.set_read_timeout(Some(STEP)).ok()?;
        stream.set_write_timeout(Some(STEP)).ok()?;
        // Answers go out at once, not after a delayed ACK: the bench times them.
        stream.set_nodelay(true).ok()?;
        let mut conn = Conn {
            stream,
            shared,
            until: Instant::now() + lifetime,
            buf: Vec::new(),
            request: Request::default(),
        };
        conn.next_request().then_some(conn)
    }

    /// Reads the next request on this connection into `request`; false at EOF, on an
    /// error or a head too large, or when the connection should end.
    pub fn next_request(&mut self) -> bool {
        match self.read_request() {
            Some(request) => {
                self.request = request;
                true
            }
            None => false,
        }
    }

    /// The one request reader: the head up to the blank line, then the body by
    /// Content-Length.
    fn read_request(&mut self) -> Option<Request> {
        let head_len = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return None;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request = Request {
            request_line: lines.next().unwrap_or_default().to_owned(),
            headers: lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect(),
            ..Request::default()
        };
        let body_len: usize = request
            .header("content-length")
            .map_or(Some(0), |v| v.parse().ok())?;
        while self.buf.len() < head_len + body_len.min(MAX_BODY) {
            self.fill()?;
        }
        let body_end = self.buf.len().min(head_len + body_len);
        request.body = String::from_utf8_lossy(&self.buf[head_len..body_end]).into_owned();
        self.buf.drain(..body_end);
        request.n = self.shared.requests.fetch_add(1, SeqCst);
        self.shared
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        Some(request)
    }

    /// Appends what the client sends next to `buf`.
    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0; 4096];
        let n = self.read_on(&self.stream, &mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Some(())
    }

    /// The bytes that came after the last request: a tunnel's first bytes, say.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The client's socket, for a handler that also reads or writes another one.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// False once the server is stopping or the connection has lived long enough.
    pub fn live(&self) -> bool {
        !self.shared.stop.load(SeqCst) && Instant::now() < self.until
    }

    /// Whether to try a read or write again that failed with `e`: only one that merely
    /// ran out of its STEP, and only while the connection lives.
    fn again(&self, e: &io::Error) -> bool {
        use io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
        matches!(e.kind(), WouldBlock | TimedOut | Interrupted) && self.live()
    }

    /// Some bytes from `stream` (the client's, or another one with a STEP read timeout);
    /// `None` at EOF, on an error, or when the connection should end.
    pub fn read_on(&self, mut stream: &TcpStream, buf: &mut [u8]) -> Option<usize> {
        loop {
            match stream.read(buf) {
                Ok(0) => return None,
                Ok(n) => return Some(n),
                Err(e) if self.again(&e) => {}
                Err(_) => return None,
            }
        }
    }

    /// Writes all of `bytes` to `stream`, counting what got out; false once the other end
    /// is gone or the connection should end.
    pub fn send_on(&self, mut stream: &TcpStream, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        while !rest.is_empty() {
            match stream.write(rest) {
                Ok(0) => return false,
                Ok(n) => {
                    self.shared.written.fetch_add(n as u64, SeqCst);
                    rest = &rest[n..];
                }
                Err(e) if self.again(&e) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Writes all of `bytes` to the client; see [`Conn::send_on`].
    pub fn send(&self, bytes: &[u8]) -> bool {
        self.send_on(&self.stream, bytes)
    }

    /// Sleeps `d` in steps; false if the connection should end meanwhile.
    pub fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while self.live() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(STEP));
        }
        false
    }

    /// Half-closes (FIN), then waits for the client to close its side.
    pub fn fin(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        while self.read_on(&self.stream, &mut [0; 1024]).is_some() {}
    }
}
