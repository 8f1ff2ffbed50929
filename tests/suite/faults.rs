//! Hostile token endpoints: stalls, floods, broken framing, redirects, retries and rate
//! limits, each played by a tiny fault server on 127.0.0.1.
//!
//! How the client behaves against a correct server is tested against the real peer; this
//! file is only for what a correct server never does. Each case is a handler closure that
//! gets the connection after the request was read, and misbehaves. The server
//! (`common::loopback`) counts connections, requests and the bytes it managed to write, so
//! a test can say "exactly one request" or "stopped reading early" and not only "returned
//! an error".
//!
//! Every call must return within its timeout plus [`SLACK`], with the right [`ErrorKind`],
//! a message that names the fact, and no secret or token in `Display` or `Debug`. Run with
//! `--nocapture` to see how long each case took.

use crate::common;

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::loopback::{Conn, Counts, Loopback, Request, STEP};
use logto_m2m::{AuthMethod, Config, Error, ErrorKind, Token, TokenRequest, request_token};

const APP: &str = "app";
/// Never allowed in any error text; no character of it needs form-urlencoding.
const SECRET: &str = "canary-secret-9f8e7d";
/// Every token a fault server hands out starts with this; never allowed in an error.
const TOKEN: &str = "canary-token-5a4b3c";
const TIMEOUT: Duration = Duration::from_secs(2);
/// How late after its deadline a call may return: generous, for a loaded 2-core CI.
const SLACK: Duration = Duration::from_millis(1500);
/// "At once": a call that must not wait for anything returns well within this.
const AT_ONCE: Duration = Duration::from_millis(900);

// ---------------------------------------------------------------------------------------
// The fault server

/// No connection outlives this, whatever its handler does.
const CONN_LIFETIME: Duration = Duration::from_secs(10);
/// Connections beyond this many are closed unserved: a client that loops can't make the
/// server spawn threads without end.
const MAX_CONNECTIONS: usize = 16;

/// Serves every connection with `handler`, one thread per connection, until dropped.
fn serve(handler: impl Fn(&mut Conn) + Send + Sync + 'static) -> Loopback {
    Loopback::start(MAX_CONNECTIONS, CONN_LIFETIME, handler)
}

/// A config for the fault server `server`, with the canary secret.
fn config(server: &Loopback, timeout: Duration) -> Config {
    config_for(server.port(), SECRET, timeout)
}

// The fault servers' canned answers. They are here rather than in `common::loopback`,
// which only moves bytes: the bench answers differently (keep-alive).
impl Conn {
    /// A whole response with Content-Length, closing the connection after it.
    fn respond(&mut self, status: u16, headers: &str, body: &str) {
        let len = body.len();
        let head = format!(
            "HTTP/1.1 {status} Fault\r\n{headers}Content-Type: application/json\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        let _ = self.send(head.as_bytes()) && self.send(body.as_bytes());
    }

    fn respond_token(&mut self) {
        self.respond(200, "", &token_json(TOKEN));
    }
}

/// `status_line`, a Content-Length 500 bytes longer than `body`, the body, then FIN.
fn cut_short(c: &mut Conn, status_line: &str, body: &str) {
    let head = format!(
        "{status_line}\r\nContent-Length: {}\r\n\r\n",
        body.len() + 500
    );
    if c.send(head.as_bytes()) && c.send(body.as_bytes()) {
        c.fin();
    }
}

fn token_json(token: &str) -> String {
    format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600,"scope":"read:products"}}"#
    )
}

// ---------------------------------------------------------------------------------------
// The client side and its checks

fn config_for(port: u16, secret: &str, timeout: Duration) -> Config {
    common::config_at(
        &format!("http://127.0.0.1:{port}/oidc/token"),
        (APP, secret),
    )
    .timeout(timeout)
}

/// One `request_token` call, timed; checks the deadline and prints the duration.
fn call(case: &str, config: &Config) -> (Result<Token, Error>, Duration) {
    let request = common::shopping("read:products");
    let start = Instant::now();
    let result = request_token(config, &request);
    let elapsed = start.elapsed();
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{} ({e})", kind_name(e)),
    };
    eprintln!("fault {case}: {outcome} after {elapsed:.3?}");
    let limit = config.timeout_value() + SLACK;
    assert!(
        elapsed <= limit,
        "{case}: took {elapsed:?}, limit {limit:?}"
    );
    (result, elapsed)
}

fn kind_name(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Timeout { .. } => "Timeout",
        ErrorKind::BodyTooLarge { .. } => "BodyTooLarge",
        ErrorKind::Transport { .. } => "Transport",
        ErrorKind::InvalidResponse { .. } => "InvalidResponse",
        ErrorKind::HttpStatus { .. } => "HttpStatus",
        ErrorKind::OAuth { .. } => "OAuth",
        ErrorKind::RateLimited { .. } => "RateLimited",
        ErrorKind::Redirect { .. } => "Redirect",
        ErrorKind::Tls { .. } => "Tls",
        _ => "other",
    }
}

/// The Basic credentials' base64, as the client sends them for `encoded_secret` (the
/// secret already form-urlencoded).
fn basic_b64(encoded_secret: &str) -> String {
    STANDARD.encode(format!("{APP}:{encoded_secret}"))
}

/// Display, `{:?}` and `{:#?}` hold none of the canaries (nor `extra`), and Display is one
/// line without control characters.
fn assert_clean(case: &str, err: &Error, extra: &[&str]) {
    let basic = basic_b64(SECRET);
    let mut forbidden = vec![SECRET, basic.as_str(), "canary-token"];
    forbidden.extend_from_slice(extra);
    let shown = err.to_string();
    for text in [shown.clone(), format!("{err:?}"), format!("{err:#?}")] {
        for f in &forbidden {
            assert!(!text.contains(f), "{case}: {f:?} leaked into {text:?}");
        }
    }
    assert!(
        !shown.chars().any(char::is_control),
        "{case}: control characters in {shown:?}"
    );
}

/// The call failed with `kind`, its message contains each of `mentions`, and it is clean.
fn expect_err(case: &str, result: Result<Token, Error>, kind: &str, mentions: &[&str]) -> Error {
    let err = match result {
        Ok(token) => panic!("{case}: expected {kind}, got a token: {token:?}"),
        Err(e) => e,
    };
    assert_eq!(kind_name(&err), kind, "{case}: {err}");
    let shown = err.to_string();
    for m in mentions {
        assert!(
            shown.contains(m),
            "{case}: {shown:?} does not mention {m:?}"
        );
    }
    assert_clean(case, &err, &[]);
    err
}

fn expect_token(case: &str, result: Result<Token, Error>) {
    match result {
        Ok(token) => assert_eq!(token.access_token(), TOKEN, "{case}"),
        Err(e) => panic!("{case}: expected a token, got {e}"),
    }
}

/// Serves `handler`, makes one call with [`TIMEOUT`], and checks the error: its kind,
/// what it mentions, and how many requests the server got. A `Timeout` must also come no
/// earlier than the deadline.
fn fault(
    case: &str,
    handler: impl Fn(&mut Conn) + Send + Sync + 'static,
    kind: &str,
    mentions: &[&str],
    requests: RangeInclusive<u64>,
) -> (Error, Counts) {
    let server = serve(handler);
    let (result, elapsed) = call(case, &config(&server, TIMEOUT));
    let stats = server.finish();
    let err = expect_err(case, result, kind, mentions);
    if kind == "Timeout" {
        let early = TIMEOUT - Duration::from_millis(100);
        assert!(elapsed >= early, "{case}: timed out early, {elapsed:?}");
    }
    assert!(
        requests.contains(&stats.requests),
        "{case}: {} requests, expected {requests:?}",
        stats.requests
    );
    (err, stats)
}

/// One `#[test]` per row: name, handler, expected kind, words the message must contain,
/// and how many requests the server must have received.
macro_rules! faults {
    ($($(#[$doc:meta])* $name:ident: $handler:expr => $kind:literal, $mentions:expr, $requests:expr;)*) => {
        $(
            $(#[$doc])*
            #[test]
            fn $name() {
                fault(stringify!($name), $handler, $kind, $mentions, $requests);
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Time: every stall ends at the deadline

faults! {
    /// Reads the request and never answers.
    never_answers: |c| while c.pause(STEP) {} => "Timeout", &["timed out after 2s"], 1..=1;

    /// A status line and then headers, one byte per second, forever.
    headers_one_byte_per_second: |c| {
        let head = b"HTTP/1.1 200 OK\r\n".iter().chain(b"X-Slow: y\r\n".iter().cycle());
        for b in head {
            if !c.send(&[*b]) || !c.pause(Duration::from_secs(1)) {
                break;
            }
        }
    } => "Timeout", &["timed out after 2s"], 1..=1;

    /// Valid headers, then the body one byte every 2 s.
    body_one_byte_every_two_seconds: |c| {
        let body = token_json(TOKEN);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        if c.send(head.as_bytes()) {
            for b in body.bytes() {
                if !c.send(&[b]) || !c.pause(Duration::from_secs(2)) {
                    break;
                }
            }
        }
    } => "Timeout", &["timed out after 2s"], 1..=1;

    /// `100 Continue` every 50 ms, and never a final response.
    endless_100_continue: |c| {
        while c.send(b"HTTP/1.1 100 Continue\r\n\r\n") && c.pause(STEP) {}
    } => "Timeout", &["timed out after 2s"], 1..=1;
}

// ---------------------------------------------------------------------------------------
// Size: reading stops at the caps

faults! {
    /// Chunks of white space (valid JSON padding) without end.
    endless_chunked_whitespace: |c| {
        let chunk = format!("1000\r\n{}\r\n", " ".repeat(0x1000));
        if c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") {
            while c.send(chunk.as_bytes()) {}
        }
    } => "BodyTooLarge", &["65536 byte limit"], 1..=1;

    /// One header line of 1 MiB: reading stops at ureq's 64 KiB. A malformed answer is
    /// still the server's answer, so it is not retried.
    megabyte_header_line: |c| {
        let head = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        c.send(head.as_bytes());
    } => "Transport", &["response headers exceed 65536 bytes"], 1..=1;

    /// Header lines without end: stopped at ureq's 128 headers, not retried.
    endless_headers: |c| {
        if c.send(b"HTTP/1.1 200 OK\r\n") {
            while c.send(b"X-More: y\r\n") {}
        }
    } => "Transport", &["too many headers"], 1..=1;

    /// A well-formed token response whose access_token is 1 MiB long.
    megabyte_access_token: |c| {
        let token = format!("{TOKEN}{}", "x".repeat(1 << 20));
        c.respond(200, "", &token_json(&token));
    } => "BodyTooLarge", &["65536 byte limit"], 1..=1;

    /// An error page of 1 MiB: cut at the cap, and the error still names the status.
    megabyte_error_page: |c| {
        c.respond(502, "", &format!("<html>{}</html>", "x".repeat(1 << 20)));
    } => "BodyTooLarge", &["http 502", "65536 byte limit"], 1..=1;

    /// A body labelled gzip that would be a valid token if parsed as JSON: it must be
    /// refused for its encoding, not parsed.
    gzip_labelled_token: |c| {
        c.respond(200, "Content-Encoding: gzip\r\n", &token_json(TOKEN));
    } => "InvalidResponse", &["http 200", "content-encoding", "gzip"], 1..=1;
}

/// A token's lifetime counts from when its request was sent, not from when the answer was
/// read: an answer that took 1 s leaves at most 2 s of a 3 s token.
#[test]
fn lifetime_counts_from_the_send() {
    let server = serve(|c| {
        if c.pause(Duration::from_millis(1000)) {
            let body =
                format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3}}"#);
            c.respond(200, "", &body);
        }
    });
    let before = SystemTime::now();
    let token = request_token(
        &config(&server, TIMEOUT),
        &common::shopping("read:products"),
    )
    .unwrap();
    let after = SystemTime::now();
    server.finish();
    assert!(after.duration_since(before).unwrap() >= Duration::from_millis(1000));
    // The lifetime counts from the send: it ends 3 s after `before`, not after `after`.
    let sent_at = token.expires_at().unwrap() - Duration::from_secs(3);
    assert!(sent_at >= before && sent_at < before + Duration::from_millis(200));
    let left = token
        .expires_at()
        .unwrap()
        .duration_since(after)
        .unwrap_or_default();
    assert!(
        left <= Duration::from_secs(2),
        "{left:?} left of a 3 s token after a 1 s answer"
    );
}

/// 50 MiB announced and sent: the 64 KiB cap must stop the client reading long before the
/// end, and closing the connection must stop the server writing.
#[test]
fn fifty_mib_body() {
    const SIZE: usize = 50 << 20;
    let (_, stats) = fault(
        "fifty_mib_body",
        |c| {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            let chunk = vec![b' '; 64 * 1024];
            if c.send(head.as_bytes()) {
                for _ in 0..SIZE / chunk.len() {
                    if !c.send(&chunk) {
                        break;
                    }
                }
            }
        },
        "BodyTooLarge",
        &["65536 byte limit"],
        1..=1,
    );
    eprintln!("fault fifty_mib_body: server wrote {} bytes", stats.written);
    // What the socket buffers on both sides absorbed before the client closed; far less
    // than 50 MiB.
    assert!(stats.written < 8 << 20, "server wrote {}", stats.written);
}

// ---------------------------------------------------------------------------------------
// Framing: a broken or cut response is an error, never a token

faults! {
    /// The connection closes right after the request, with no answer. (Std can't set
    /// SO_LINGER 0 for a real RST without a new crate; a close is what a reset proxy looks
    /// like too.) Failing before any response is what a retry is for: three attempts.
    closed_after_request: |_| {} => "Transport", &["disconnected"], 3..=3;

    /// Half the headers, then FIN: still no response, so three attempts.
    fin_mid_headers: |c| {
        if c.send(b"HTTP/1.1 200 OK\r\nContent-Ty") {
            c.fin();
        }
    } => "Transport", &["disconnected"], 3..=3;

    /// The whole token, but a Content-Length 500 bytes longer, then FIN. The 200 arrived,
    /// so the server may have issued a token: not retried.
    content_length_longer_than_body: |c| {
        cut_short(c, "HTTP/1.1 200 OK", &token_json(TOKEN));
    } => "Transport", &["disconnected while reading the body of the http 200 answer"], 1..=1;

    /// The whole token in one chunk, but no last chunk, then FIN: not retried either.
    chunked_without_last_chunk: |c| {
        let body = token_json(TOKEN);
        let response = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
            body.len()
        );
        if c.send(response.as_bytes()) {
            c.fin();
        }
    } => "Transport", &["disconnected while reading the body of the http 200 answer"], 1..=1;

    /// A 500 whose body is cut short is still a 5xx answer, and is retried as one.
    server_error_body_cut_short: |c| {
        cut_short(c, "HTTP/1.1 500 Oops", r#"{"error":"server_error"}"#);
    } => "Transport", &["disconnected while reading the body of the http 500 answer"], 3..=3;

    /// Two Content-Lengths that disagree; either one would frame a token. ureq refuses the
    /// head: a malformed answer, not retried.
    conflicting_content_lengths: |c| {
        let body = token_json(TOKEN);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Length: {}\r\n\r\n",
            body.len(),
            body.len() - 1
        );
        let _ = c.send(head.as_bytes()) && c.send(body.as_bytes());
    } => "Transport", &["invalid http response: conflicting content-length"], 1..=1;

    /// No status line at all: not HTTP, not retried.
    no_status_line: |c| {
        c.send(b"hello\r\n\r\n");
    } => "Transport", &["invalid http response"], 1..=1;
}

// ---------------------------------------------------------------------------------------
// Redirects: never followed, wherever they point

#[test]
fn redirects_are_not_followed() {
    for status in [301, 302, 303, 307, 308] {
        for to_trap in [false, true] {
            let trap = serve(|c| c.respond_token());
            let location = if to_trap {
                format!("http://127.0.0.1:{}/oidc/token", trap.port())
            } else {
                "/oidc/token".to_owned()
            };
            let server = serve(move |c| {
                // Same-server redirects would be answered with a token, if followed.
                if c.request.n == 0 {
                    c.respond(status, &format!("Location: {location}?x=1\r\n"), "")
                } else {
                    c.respond_token()
                }
            });
            let case = format!(
                "redirect_{status}_to_{}",
                if to_trap { "trap" } else { "self" }
            );
            let (result, _) = call(&case, &config(&server, TIMEOUT));
            // Where it points is said (never its query), and not followed.
            let shown_location = if to_trap {
                format!("redirect to http://127.0.0.1:{}/oidc/token;", trap.port())
            } else {
                "redirect to /oidc/token;".to_owned()
            };
            let err = expect_err(
                &case,
                result,
                "Redirect",
                &[&format!("http {status}"), &shown_location],
            );
            assert_eq!(err.status(), Some(status));
            assert_eq!(server.finish().requests, 1, "{case}");
            let trap = trap.finish();
            assert_eq!((trap.connections, trap.requests), (0, 0), "{case}");
        }
    }
}

/// What django-oauth-toolkit showed: answers that say little in their own words. The
/// message must still say where and what: the URL it came from, the slash-appending
/// redirect's target, the scopes an undescribed invalid_scope refused.
#[test]
fn terse_answers_get_the_facts_around_them() {
    // Django's APPEND_SLASH: `/o/token` answers 301 to `/o/token/`.
    let server = serve(|c| c.respond(301, "Location: /o/token/\r\n", ""));
    let url = format!("http://127.0.0.1:{}/o/token", server.port());
    let err = request_token(
        &common::config_at(&url, (APP, SECRET)),
        &common::shopping("read:products"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "token endpoint {url} answered http 301 redirect to /o/token/; redirects are not followed"
        )
    );

    // invalid_scope with no description: the asked scopes are named.
    let server = serve(|c| c.respond(400, "", r#"{"error":"invalid_scope"}"#));
    let scoped = config(&server, TIMEOUT);
    let err = request_token(&scoped, &common::shopping("read:products write:x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "token endpoint {} answered http 400 with oauth error invalid_scope; asked for scope \
             \"read:products write:x\"",
            scoped.token_url()
        )
    );

    // A 404 page names the URL; a full token URL with a doubled /oidc gets the likely fix.
    // (`Config::logto` refuses an endpoint ending in /oidc before anything is sent.)
    let server = serve(|c| c.respond(404, "", "<h1>Not Found</h1>"));
    let base = format!("http://127.0.0.1:{}", server.port());
    let doubled = Config::new(&format!("{base}/oidc/oidc/token"), APP, SECRET)
        .unwrap()
        .timeout(TIMEOUT);
    let err = request_token(&doubled, &common::shopping("read:products")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "token endpoint {base}/oidc/oidc/token answered http 404 without an oauth error body; \
             no token endpoint there: did you mean {base}/oidc/token? the logto endpoint is the \
             base url, without /oidc"
        )
    );

    // Logto's request id, from its header, in the error and its message.
    let server = serve(|c| {
        c.respond(
            400,
            "Logto-Core-Request-Id: abc123XYZ\r\n",
            r#"{"code":"oidc.invalid_target","message":"Invalid resource indicator.","error":"invalid_target"}"#,
        )
    });
    let err = request_token(
        &config(&server, TIMEOUT),
        &common::shopping("read:products"),
    )
    .unwrap_err();
    assert_eq!(err.request_id(), Some("abc123XYZ"));
    assert!(
        err.to_string().ends_with("; logto request id abc123XYZ"),
        "{err}"
    );
}

/// A connection that can't be made names the host and port: "connection refused" alone
/// tells a cron job's reader nothing.
#[test]
fn refused_connection_names_host_and_port() {
    let port = {
        // A port that was free a moment ago: nothing listens there now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = request_token(
        &config_for(port, SECRET, TIMEOUT),
        &common::shopping("read:products"),
    )
    .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Transport { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("transport: cannot connect to 127.0.0.1:{port}: ")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Connection reuse

/// The server keeps the connection alive after the token, then drops it while idle; the
/// next call must notice and use a new connection rather than fail.
#[test]
fn idle_connection_closed_by_server() {
    let server = serve(|c| {
        let body = token_json(TOKEN);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: keep-alive\r\n\r\n{body}",
            body.len()
        );
        if c.send(response.as_bytes()) {
            c.pause(Duration::from_millis(100));
        }
    });
    let config = config(&server, TIMEOUT);
    let (first, _) = call("reuse_first", &config);
    expect_token("reuse_first", first);
    thread::sleep(Duration::from_millis(300));
    let (second, _) = call("reuse_after_idle_close", &config);
    expect_token("reuse_after_idle_close", second);
    let stats = server.finish();
    assert_eq!((stats.connections, stats.requests), (2, 2));
}

// ---------------------------------------------------------------------------------------
// Retries

#[test]
fn client_error_is_never_retried() {
    let (err, _) = fault(
        "400_invalid_client",
        |c| c.respond(400, "", r#"{"error":"invalid_client"}"#),
        "OAuth",
        &["http 400", "invalid_client"],
        1..=1,
    );
    assert_eq!(err.oauth_error(), Some("invalid_client"));
}

#[test]
fn server_error_three_times() {
    let (err, stats) = fault(
        "500_three_times",
        |c| c.respond(500, "", r#"{"error":"server_error"}"#),
        "OAuth",
        &["http 500", "server_error"],
        3..=3,
    );
    assert_eq!(err.status(), Some(500));
    // The backoff between attempts: 100 ms, then 400 ms.
    assert!(
        stats.gap(1) >= Duration::from_millis(100),
        "{:?}",
        stats.gap(1)
    );
    assert!(
        stats.gap(2) >= Duration::from_millis(400),
        "{:?}",
        stats.gap(2)
    );
}

/// Serves `first` to the first `failures` requests and a token after that, and checks the
/// call succeeds with exactly `failures + 1` requests.
fn recovers_after(
    case: &str,
    failures: u64,
    timeout: Duration,
    first: impl Fn(&mut Conn) + Send + Sync + 'static,
) -> Counts {
    let server = serve(move |c| {
        if c.request.n < failures {
            first(c)
        } else {
            c.respond_token()
        }
    });
    let (result, _) = call(case, &config(&server, timeout));
    expect_token(case, result);
    let stats = server.finish();
    assert_eq!(stats.requests, failures + 1, "{case}");
    for i in 1..stats.arrivals.len() {
        eprintln!("fault {case}: request {i} came {:.3?} later", stats.gap(i));
    }
    stats
}

#[test]
fn server_error_then_token() {
    recovers_after("500_then_200", 1, TIMEOUT, |c| {
        c.respond(500, "", r#"{"error":"server_error"}"#)
    });
}

#[test]
fn closed_twice_then_token() {
    recovers_after("closed_twice_then_200", 2, TIMEOUT, |_| {});
}

#[test]
fn service_unavailable_without_retry_after_is_retried() {
    let stats = recovers_after("503_then_200", 1, TIMEOUT, |c| c.respond(503, "", ""));
    assert!(
        stats.gap(1) >= Duration::from_millis(100),
        "{:?}",
        stats.gap(1)
    );
}

// ---------------------------------------------------------------------------------------
// Retry-After

#[test]
fn retry_after_one_second_is_waited_out() {
    let stats = recovers_after("429_retry_after_1", 1, TIMEOUT, |c| {
        c.respond(429, "Retry-After: 1\r\n", "")
    });
    assert!(stats.gap(1) >= Duration::from_secs(1), "{:?}", stats.gap(1));
}

#[test]
fn service_unavailable_retry_after_one_second_is_waited_out() {
    let stats = recovers_after("503_retry_after_1", 1, TIMEOUT, |c| {
        c.respond(503, "Retry-After: 1\r\n", "")
    });
    assert!(stats.gap(1) >= Duration::from_secs(1), "{:?}", stats.gap(1));
}

/// An HTTP-date 2 s ahead is a wait of 1 to 2 s (the date has whole seconds). The timeout
/// is 4 s here: with 2 s, a wait of nearly 2 s would not fit and be returned at once.
#[test]
fn retry_after_http_date_is_waited_out() {
    let stats = recovers_after("429_retry_after_date", 1, Duration::from_secs(4), |c| {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
        c.respond(429, &format!("Retry-After: {at}\r\n"), "")
    });
    assert!(stats.gap(1) >= Duration::from_secs(1), "{:?}", stats.gap(1));
}

#[test]
fn retry_after_past_http_date_is_retried_at_once() {
    let stats = recovers_after("429_retry_after_past_date", 1, TIMEOUT, |c| {
        let at = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        c.respond(429, &format!("Retry-After: {at}\r\n"), "")
    });
    assert!(stats.gap(1) < AT_ONCE, "{:?}", stats.gap(1));
}

/// A 429 that must come back as `RateLimited` at once, after exactly one request.
/// The wait a rate-limited answer asked for.
fn retry_after(err: &Error) -> Option<Duration> {
    match err.kind() {
        ErrorKind::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    }
}

fn rate_limited_at_once(
    case: &str,
    timeout: Duration,
    headers: &'static str,
    body: &'static str,
    mentions: &[&str],
) -> Error {
    let server = serve(move |c| c.respond(429, headers, body));
    let (result, elapsed) = call(case, &config(&server, timeout));
    assert_eq!(server.finish().requests, 1, "{case}");
    assert!(elapsed < AT_ONCE, "{case}: took {elapsed:?}");
    let err = expect_err(case, result, "RateLimited", mentions);
    assert_eq!(err.status(), Some(429));
    err
}

#[test]
fn retry_after_too_long_is_returned_at_once() {
    let err = rate_limited_at_once(
        "429_retry_after_100000",
        TIMEOUT,
        "Retry-After: 100000\r\n",
        "",
        &["http 429", "retry after 100000s"],
    );
    assert_eq!(retry_after(&err), Some(Duration::from_secs(100_000)));
}

#[test]
fn retry_after_garbage_is_returned_at_once() {
    let err = rate_limited_at_once(
        "429_retry_after_soon",
        TIMEOUT,
        "Retry-After: soon\r\n",
        "",
        &["http 429"],
    );
    assert_eq!(retry_after(&err), None);
}

#[test]
fn retry_after_beyond_deadline_is_returned_at_once() {
    let err = rate_limited_at_once(
        "429_retry_after_5_timeout_2",
        TIMEOUT,
        "Retry-After: 5\r\n",
        "",
        &["http 429", "retry after 5s"],
    );
    assert_eq!(retry_after(&err), Some(Duration::from_secs(5)));
}

#[test]
fn logto_cloud_token_limit() {
    let err = rate_limited_at_once(
        "429_logto_token_limit",
        TIMEOUT,
        "",
        r#"{"code":"auth.exceed_token_limit","message":"Token limit exceeded. Please contact your administrator."}"#,
        &[
            "http 429",
            "auth.exceed_token_limit",
            "Token limit exceeded",
        ],
    );
    assert_eq!(err.logto_code(), Some("auth.exceed_token_limit"));
}

// ---------------------------------------------------------------------------------------
// Hygiene: what a server says is shown safely

/// The server echoes the credentials it received, in every form, into every text field of
/// an OAuth error, a rate limit and a plain error status.
#[test]
fn echoed_credentials_are_redacted() {
    // A secret that form-urlencoding changes, besides the plain canary.
    const SPECIAL: &str = "canary:secret/9f8e+7d%&= x~";
    const SPECIAL_ENCODED: &str = "canary%3Asecret%2F9f8e%2B7d%25%26%3D+x%7E";
    for (secret, encoded) in [(SECRET, SECRET), (SPECIAL, SPECIAL_ENCODED)] {
        for (status, kind) in [(401, "OAuth"), (429, "RateLimited"), (403, "HttpStatus")] {
            let server = serve(move |c| {
                let auth = c
                    .request
                    .header("authorization")
                    .unwrap_or_default()
                    .to_owned();
                let pair = auth
                    .strip_prefix("Basic ")
                    .and_then(|b| STANDARD.decode(b).ok())
                    .map(|p| String::from_utf8_lossy(&p).into_owned())
                    .unwrap_or_default();
                let sent = pair.split_once(':').map_or("", |(_, s)| s);
                let echo = format!("got {auth} = {pair}, secret {sent} ({secret})");
                let body = if status == 401 {
                    format!(
                        r#"{{"error":"invalid_client","error_description":"{echo}","error_uri":"https://x/?{sent}","code":"{sent}","message":"{echo}"}}"#
                    )
                } else {
                    format!(r#"{{"code":"{echo}","message":"{echo}"}}"#)
                };
                c.respond(status, "", &body)
            });
            let case = format!(
                "echo_{status}_{}",
                if secret == SECRET { "plain" } else { "special" }
            );
            let (result, _) = call(&case, &config_for(server.port(), secret, TIMEOUT));
            assert_eq!(server.finish().requests, 1, "{case}");
            let basic = basic_b64(encoded);
            let err = expect_err(&case, result, kind, &[&status.to_string(), "[redacted]"]);
            assert_clean(&case, &err, &[secret, encoded, &basic]);
        }
    }
}

#[test]
fn control_characters_never_reach_display() {
    let (err, _) = fault(
        "control_characters",
        |c| {
            c.respond(
                400,
                "",
                r#"{"error":"invalid_request\r\n","error_description":"line one\r\nX-Injected: yes\u001b[31m red\u001b[0m"}"#,
            )
        },
        "OAuth",
        &["http 400", "invalid_request", "line one X-Injected: yes"],
        1..=1,
    );
    let shown = err.to_string();
    assert!(!shown.contains(['\r', '\n', '\x1b']), "{shown:?}");
}

#[test]
fn long_description_is_truncated() {
    let (err, _) = fault(
        "5kib_description",
        |c| {
            let body = format!(
                r#"{{"error":"invalid_request","error_description":"{}"}}"#,
                "d".repeat(5 * 1024)
            );
            c.respond(400, "", &body)
        },
        "OAuth",
        &["http 400", "invalid_request"],
        1..=1,
    );
    let ErrorKind::OAuth {
        description: Some(d),
        ..
    } = err.kind()
    else {
        panic!("no description: {err:?}");
    };
    assert!((1000..=1030).contains(&d.len()), "{}", d.len());
    assert!(d.ends_with('…'));
    assert!(err.to_string().len() < 1200);
}

// ---------------------------------------------------------------------------------------
// The request itself, as it reaches the wire

/// What the server saw: method, headers and form, each parameter once, one Basic header
/// with the form-urlencoded pair, no cookie, and the Accept headers the docs promise.
#[test]
fn request_on_the_wire() {
    let seen = Arc::new(Mutex::new(Request::default()));
    let seen_by_server = Arc::clone(&seen);
    let server = serve(move |c| {
        *seen_by_server.lock().unwrap() = c.request.clone();
        c.respond_token();
    });
    let config = config_for(server.port(), "s3cr:t+/%&= x~", TIMEOUT);
    let request = common::shopping("read:products").scope("write:products");
    expect_token("wire", request_token(&config, &request));
    server.finish();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.request_line, "POST /oidc/token HTTP/1.1");
    let all = |name: &str| seen.headers_named(name);
    assert_eq!(
        all("authorization"),
        [format!(
            "Basic {}",
            // A space goes as %20 in Basic: percent-decoders read + as a plus.
            basic_b64("s3cr%3At%2B%2F%25%26%3D%20x%7E")
        )]
    );
    assert_eq!(all("content-type"), ["application/x-www-form-urlencoded"]);
    assert_eq!(all("accept"), ["application/json"]);
    assert_eq!(all("accept-encoding"), ["identity"]);
    assert_eq!(
        all("user-agent"),
        [concat!("logto-m2m/", env!("CARGO_PKG_VERSION"))]
    );
    assert!(all("cookie").is_empty());
    assert!(all("expect").is_empty());
    assert_eq!(
        seen.body,
        "grant_type=client_credentials&resource=https%3A%2F%2Fshopping.api&scope=read%3Aproducts+write%3Aproducts"
    );
}

/// A server that wants `client_secret_post` and refuses Basic, as Auth0 can be set up:
/// with `auth_method(ClientSecretPost)` the credentials go in the form and nowhere else.
#[test]
fn server_that_refuses_basic_takes_client_secret_post() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_server = Arc::clone(&seen);
    let server = serve(move |c| {
        let request = c.request.clone();
        let basic = request.header("authorization").is_some();
        seen_by_server.lock().unwrap().push(request);
        if basic {
            c.respond(
                401,
                "",
                r#"{"error":"invalid_client","error_description":"basic is not allowed"}"#,
            );
        } else {
            c.respond_token();
        }
    });
    let basic = config_for(server.port(), "s3cr:t+/%&= x~", TIMEOUT);
    let err = request_token(&basic, &common::shopping("read:products")).unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    let post = basic.auth_method(AuthMethod::ClientSecretPost);
    expect_token(
        "post",
        request_token(&post, &common::shopping("read:products")),
    );
    server.finish();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].headers_named("authorization").is_empty());
    assert_eq!(
        seen[1].body,
        "grant_type=client_credentials&resource=https%3A%2F%2Fshopping.api&scope=read%3Aproducts\
         &client_id=app&client_secret=s3cr%3At%2B%2F%25%26%3D+x%7E"
    );
}

// ---------------------------------------------------------------------------------------
// Nothing left behind

/// Open file descriptors and threads of this process, from /proc (Linux).
#[cfg(target_os = "linux")]
fn fds_and_threads() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    (fds, threads)
}

/// After hanging, dripping, oversized, reset and redirecting servers, the client holds no
/// socket and no thread: the process has as many descriptors and threads as before.
///
/// Other tests of this binary run in parallel and open sockets of their own, so the count
/// is taken in a child process that runs only this test (`LEAK_CHECK=1`).
#[cfg(target_os = "linux")]
#[test]
fn no_socket_or_thread_left_behind() {
    if std::env::var_os("LEAK_CHECK").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                common::test_name(module_path!(), "no_socket_or_thread_left_behind").as_str(),
                "--test-threads=1",
                "--nocapture",
            ])
            .env("LEAK_CHECK", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "leak check failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    type Handler = fn(&mut Conn);
    let cases: [(&str, Handler); 6] = [
        ("never answers", |c| {
            c.pause(CONN_LIFETIME);
        }),
        ("drips headers", |c| {
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: yes\r\n"
                .iter()
                .cycle()
                .take(100)
            {
                if !c.send(&[*b]) || !c.pause(Duration::from_millis(200)) {
                    break;
                }
            }
        }),
        ("50 MiB body", |c| {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 50 << 20);
            let chunk = [b' '; 64 * 1024];
            let _ = c.send(head.as_bytes()) && (0..800).all(|_| c.send(&chunk));
        }),
        ("closes", |_| {}),
        ("redirects", |c| {
            c.respond(302, "Location: http://127.0.0.1:9/\r\n", "")
        }),
        ("answers", |c| c.respond_token()),
    ];
    let short = Duration::from_millis(700);
    // Warm up what stays for the process's lifetime anyway (ureq's resolver, the
    // allocator's arenas), so that it does not count as left behind.
    {
        let server = serve(|c| c.respond_token());
        let _ = request_token(&config(&server, short), &TokenRequest::new("r"));
        server.finish();
    }
    let before = fds_and_threads();
    for (name, handler) in cases {
        let server = serve(handler);
        let config = config(&server, short);
        for _ in 0..3 {
            let result = request_token(&config, &TokenRequest::new("r"));
            eprintln!(
                "{name}: {:?}",
                result.as_ref().map(|_| "token").map_err(kind_name)
            );
        }
        drop(config);
        server.finish();
    }
    // ureq's DNS resolver thread for a call that timed out ends on its own shortly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = fds_and_threads();
    while after != before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        after = fds_and_threads();
    }
    assert_eq!(after, before, "(descriptors, threads) before and after");
}
