//! A tiny HTTP CONNECT proxy on 127.0.0.1, for the proxy tests.
//!
//! It records every request head it gets, answers `CONNECT host:port` by opening a TCP
//! connection to `127.0.0.1:port` (whatever the host: it stands in for a proxy that can
//! resolve names we can't, such as `wrong.example`) and tunnels bytes both ways until
//! either side closes. Anything but CONNECT is recorded and answered 501. With
//! credentials set, a CONNECT without the matching `Proxy-Authorization` gets 407.
//!
//! Everything is bounded: at most [`MAX_CONNECTIONS`] connections, request heads of
//! 8 KiB, and each thread stops within [`LIFETIME`] or soon after `Drop`, which joins them
//! all.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine;

/// Connections served over the proxy's life; later ones are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest any proxy thread runs.
pub const LIFETIME: Duration = Duration::from_secs(60);
const MAX_HEAD: usize = 8 * 1024;
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `CONNECT 127.0.0.1:4000 HTTP/1.1`, or whatever came instead.
    pub request_line: String,
    /// The `Proxy-Authorization` header, if any.
    pub proxy_authorization: Option<String>,
}

impl Seen {
    /// The `host:port` of a CONNECT, `None` for any other method.
    pub fn connect_target(&self) -> Option<&str> {
        let mut parts = self.request_line.split(' ');
        match (parts.next(), parts.next()) {
            (Some("CONNECT"), Some(target)) => Some(target),
            _ => None,
        }
    }
}

pub struct ConnectProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ConnectProxy {
    /// A proxy that asks for no credentials.
    pub fn start() -> ConnectProxy {
        ConnectProxy::start_inner(None)
    }

    /// A proxy that wants `Proxy-Authorization: Basic base64(user:password)`.
    pub fn start_with_credentials(user: &str, password: &str) -> ConnectProxy {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        ConnectProxy::start_inner(Some(format!("Basic {basic}")))
    }

    fn start_inner(expected_auth: Option<String>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || accept_loop(listener, seen, stop, expected_auth))
        };
        ConnectProxy {
            addr,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request head so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The targets of the CONNECTs so far.
    pub fn connects(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter_map(|s| s.connect_target().map(str::to_owned))
            .collect()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    expected_auth: Option<String>,
) {
    let started = Instant::now();
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < LIFETIME {
        match listener.accept() {
            Ok((stream, _)) if workers.len() < MAX_CONNECTIONS => {
                let (seen, stop, auth) = (seen.clone(), stop.clone(), expected_auth.clone());
                workers.push(thread::spawn(move || {
                    let _ = serve(stream, &seen, &stop, auth.as_deref(), started);
                }));
            }
            Ok((stream, _)) => drop(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL / 5),
            Err(_) => thread::sleep(POLL),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = worker.join();
    }
}

fn serve(
    mut client: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    expected_auth: Option<&str>,
    started: Instant,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (head, rest) = read_head(&mut client)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let proxy_authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    let entry = Seen {
        request_line,
        proxy_authorization,
    };
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry.clone());

    let Some(target) = entry.connect_target() else {
        return client.write_all(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    if let Some(expected) = expected_auth
        && entry.proxy_authorization.as_deref() != Some(expected)
    {
        return client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        );
    }
    // Every host is 127.0.0.1 to this proxy; only the port is taken from the target.
    let port: u16 = match target.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
        Some(port) => port,
        None => return client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
    };
    let upstream = match TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) {
        Ok(s) => s,
        Err(_) => return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n"),
    };
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    let mut upstream_w = upstream.try_clone()?;
    upstream_w.write_all(&rest)?;

    let client_r = client.try_clone()?;
    thread::scope(|s| {
        let to_upstream = s.spawn(|| pump(client_r, upstream_w, stop, started));
        let to_client = pump(upstream, client, stop, started);
        let _ = to_upstream.join();
        to_client
    })
}

/// Reads up to and including the blank line; returns the head and any bytes after it.
fn read_head(stream: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Copies `from` to `to` until EOF, an error, the stop flag or the proxy's lifetime;
/// then half-closes `to` so the other side sees the end too.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    stop: &AtomicBool,
    started: Instant,
) -> io::Result<()> {
    from.set_read_timeout(Some(POLL))?;
    let mut buf = [0u8; 16 * 1024];
    let result = loop {
        if stop.load(Ordering::SeqCst) || started.elapsed() >= LIFETIME {
            break Ok(());
        }
        match from.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = to.write_all(&buf[..n]) {
                    break Err(e);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = to.shutdown(Shutdown::Write);
    result
}
