//! A gate in front of a real token endpoint: a `super::loopback` server that takes each
//! request, runs the test's hook (with the request's number, 0 for the first) while the
//! client waits for its answer, then forwards the request to the real server on
//! 127.0.0.1 and the answer back, one request per connection.
//!
//! It exists for one moment no real server produces on demand: something happening
//! between a request being sent and its answer arriving (a secret file rewritten while the
//! request is on its way). The hook runs before the request is forwarded, so the order is
//! certain, not a matter of timing. Bounded like every loopback server: at most
//! [`MAX_CONNECTIONS`] connections, each at most [`LIFETIME`], the upstream's answer read
//! for at most [`UPSTREAM_TIMEOUT`].

// Each test binary uses only part of the harness.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::loopback::Loopback;

pub const MAX_CONNECTIONS: usize = 16;
pub const LIFETIME: Duration = Duration::from_secs(30);
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Gate {
    server: Loopback,
}

impl Gate {
    /// A gate to the server at 127.0.0.1:`upstream_port`, running `hook` before forwarding
    /// each request.
    pub fn start(upstream_port: u16, hook: impl Fn(u64) + Send + Sync + 'static) -> Gate {
        let server = Loopback::start(MAX_CONNECTIONS, LIFETIME, move |conn| {
            hook(conn.request.n);
            let request = &conn.request;
            // The upstream's own host, so that a server that checks it (Logto resolves its
            // tenant by it) sees itself; one request per connection.
            let mut head = format!("{}\r\n", request.request_line);
            for (name, value) in &request.headers {
                if !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("connection") {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
            }
            head.push_str(&format!(
                "host: 127.0.0.1:{upstream_port}\r\nconnection: close\r\n\r\n"
            ));
            let answer = forward(upstream_port, head.as_bytes(), request.body.as_bytes());
            match answer {
                Some(bytes) => {
                    conn.send(&bytes);
                }
                None => {
                    conn.send(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                }
            }
        });
        Gate { server }
    }

    /// `http://127.0.0.1:PORT/oidc/token`.
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/oidc/token", self.server.port())
    }

    /// Requests the gate has read so far.
    pub fn requests(&self) -> u64 {
        self.server.requests()
    }
}

/// Sends `head` and `body` to the upstream and reads its whole answer (it closes the
/// connection after it, as asked), within [`UPSTREAM_TIMEOUT`].
fn forward(port: u16, head: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut up = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    up.set_write_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    up.write_all(head).ok()?;
    up.write_all(body).ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0; 8192];
    while Instant::now() < deadline {
        up.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .ok()?;
        match up.read(&mut chunk) {
            Ok(0) => return Some(answer),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
    None
}
