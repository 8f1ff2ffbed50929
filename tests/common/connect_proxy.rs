//! A tiny HTTP CONNECT proxy on 127.0.0.1, for the proxy tests.
//!
//! It records every request head it gets, answers `CONNECT host:port` by opening a TCP
//! connection to `127.0.0.1:port` (whatever the host: it stands in for a proxy that can
//! resolve names we can't, such as `wrong.example`) and tunnels bytes both ways until
//! either side closes. Anything but CONNECT is recorded and answered 501. With
//! credentials set, a CONNECT without the matching `Proxy-Authorization` gets 407.
//!
//! It is a `super::loopback` server, and bounded like one: at most [`MAX_CONNECTIONS`]
//! connections, each tunnelling for at most [`LIFETIME`], and `Drop` joins every thread.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use base64::Engine;

use super::loopback::{Conn, Loopback, STEP};

/// Connections served over the proxy's life; later ones are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest any one connection through the proxy lasts.
pub const LIFETIME: Duration = Duration::from_secs(60);

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
    server: Loopback,
    seen: Arc<Mutex<Vec<Seen>>>,
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
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let server = Loopback::start(MAX_CONNECTIONS, LIFETIME, move |conn| {
            serve(conn, &log, expected_auth.as_deref());
        });
        ConnectProxy { server, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
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

/// Records the request `conn` came with, and answers it or opens the tunnel.
fn serve(conn: &mut Conn, seen: &Mutex<Vec<Seen>>, expected_auth: Option<&str>) {
    let entry = Seen {
        request_line: conn.request.request_line.clone(),
        proxy_authorization: conn
            .request
            .header("proxy-authorization")
            .map(str::to_owned),
    };
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry.clone());

    let Some(target) = entry.connect_target() else {
        conn.send(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    if expected_auth.is_some_and(|expected| entry.proxy_authorization.as_deref() != Some(expected))
    {
        conn.send(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        );
        return;
    }
    // Every host is 127.0.0.1 to this proxy; only the port is taken from the target.
    let Some(port) = target.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) else {
        conn.send(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        return;
    };
    let Ok(upstream) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        conn.send(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    // The same poll step as the client's side, so that both pumps notice the end.
    if upstream.set_read_timeout(Some(STEP)).is_err()
        || upstream.set_write_timeout(Some(STEP)).is_err()
        || !conn.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    {
        return;
    }
    let early = conn.take_buffered();
    if !conn.send_on(&upstream, &early) {
        return;
    }
    let conn = &*conn;
    thread::scope(|s| {
        s.spawn(|| pump(conn, conn.stream(), &upstream));
        pump(conn, &upstream, conn.stream());
    });
}

/// Copies `from` to `to` until EOF, an error, or the end of the connection; then
/// half-closes `to` so the other side sees the end too.
fn pump(conn: &Conn, from: &TcpStream, to: &TcpStream) {
    let mut buf = vec![0; 16 * 1024];
    while let Some(n) = conn.read_on(from, &mut buf) {
        if !conn.send_on(to, &buf[..n]) {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
