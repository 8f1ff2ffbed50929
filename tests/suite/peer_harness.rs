//! Tests of the test harness itself (`tests/common`), using only ureq and the
//! peer, not the crate: if these fail, the crate's own tests against the peer
//! mean nothing.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{M2M_BASIC, Peer, SHOPPING_API};
use miniserde::json::{self, Value};

/// Env vars for `shared_peer_dies_with_the_test_process`, which runs this
/// binary again as a child.
const CHILD_PID_FILE: &str = "LOGTO_M2M_HARNESS_PID_FILE";

fn agent() -> ureq::Agent {
    common::local_agent(common::PEER_TIMEOUT)
}

/// POSTs a `client_credentials` request for m2m-basic by hand and returns the
/// status and body.
fn request_token_by_hand(peer: &Peer) -> (u16, String) {
    let (id, secret) = M2M_BASIC;
    // The id and secret have no characters that need form-urlencoding.
    let basic = STANDARD.encode(format!("{id}:{secret}"));
    let mut resp = agent()
        .post(peer.token_url())
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("grant_type=client_credentials&resource=https%3A%2F%2Fshopping.api&scope=read%3Aproducts")
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

fn field<'a>(body: &'a Value, name: &str) -> &'a Value {
    let Value::Object(obj) = body else {
        panic!("not a JSON object: {body:?}");
    };
    obj.get(name)
        .unwrap_or_else(|| panic!("no `{name}` in {body:?}"))
}

#[test]
fn token_by_hand_is_issued_and_counted() {
    let peer = Peer::start();
    assert_eq!(peer.stats(), common::Stats::default());

    let (status, body) = request_token_by_hand(&peer);
    assert_eq!(status, 200, "{body}");
    let body: Value = json::from_str(&body).unwrap();
    assert!(matches!(field(&body, "access_token"), Value::String(s) if s.starts_with("eyJ")));
    assert!(matches!(field(&body, "scope"), Value::String(s) if s == "read:products"));

    let counters = peer.stats();
    assert_eq!(counters.token_requests, 1);
    assert_eq!(counters.tokens_issued, 1);
    assert_eq!(counters.issued_by(M2M_BASIC.0), 1);
    assert_eq!(counters.issued_by("m2m-post"), 0);

    peer.reset_stats();
    assert_eq!(peer.stats(), common::Stats::default());
}

#[test]
fn errors_are_counted_by_code() {
    let peer = Peer::start();
    let mut resp = agent()
        .post(peer.token_url())
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode("m2m-basic:wrong")),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("grant_type=client_credentials&resource=https%3A%2F%2Fshopping.api")
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );

    let stats = peer.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.tokens_issued, 0);
    assert_eq!(stats.errors_by_code("invalid_client"), 1);
    assert_eq!(stats.errors_by_code("invalid_target"), 0);
}

#[test]
fn start_with_passes_env_to_the_peer() {
    let peer = Peer::start_with(&[("ACCESS_TOKEN_TTL", "7")]);
    let (status, body) = request_token_by_hand(&peer);
    assert_eq!(status, 200, "{body}");
    let body: Value = json::from_str(&body).unwrap();
    assert!(matches!(
        field(&body, "expires_in"),
        Value::Number(json::Number::U64(7))
    ));
}

#[test]
fn two_peers_at_once_get_their_own_ports() {
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(Peer::start);
        let b = s.spawn(Peer::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    for peer in [&a, &b] {
        let (status, body) = request_token_by_hand(peer);
        assert_eq!(status, 200, "{body}");
    }
    // Each counts only its own request.
    assert_eq!(a.stats().token_requests, 1);
    assert_eq!(b.stats().token_requests, 1);
}

#[test]
fn shared_peer_answers() {
    let peer = common::shared_peer();
    assert!(std::ptr::eq(peer, common::shared_peer()));
    let (status, body) = request_token_by_hand(peer);
    assert_eq!(status, 200, "{body}");
    assert!(peer.token_url().ends_with("/oidc/token"));
    assert_eq!(SHOPPING_API, "https://shopping.api");
}

#[test]
fn drop_ends_the_peer_process() {
    let peer = Peer::start();
    let (pid, port) = (peer.pid(), peer.port());
    drop(peer);
    wait_until_gone(pid, port);
}

/// The peer must not outlive a test process that dies without running any
/// destructor. We run this test binary again as a child that starts the shared
/// peer, writes the peer's PID to a file and then waits; we SIGKILL the child,
/// and the peer should see EOF on its stdin and exit.
#[test]
fn shared_peer_dies_with_the_test_process() {
    let pid_file =
        std::env::temp_dir().join(format!("logto-m2m-harness-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            common::test_name(module_path!(), "child_starts_shared_peer_and_waits").as_str(),
            "--ignored",
        ])
        .env(CHILD_PID_FILE, &pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let peer_pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            // The child renames the file into place, so it is complete when there.
            if let Some((pid, port)) = text.strip_suffix('\n').and_then(|t| t.split_once(' ')) {
                break (pid.parse::<u32>().unwrap(), port.parse::<u16>().unwrap());
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child test process exited early ({status}) without starting a peer");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child test process did not start a peer within 30 s");
        }
        thread::sleep(Duration::from_millis(50));
    };

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&pid_file);
    wait_until_gone(peer_pid.0, peer_pid.1);
}

/// Not a test on its own: the child half of `shared_peer_dies_with_the_test_process`.
/// Without the env var (a plain `cargo test -- --ignored`) it does nothing.
#[test]
#[ignore = "run by shared_peer_dies_with_the_test_process"]
fn child_starts_shared_peer_and_waits() {
    let Some(pid_file) = std::env::var_os(CHILD_PID_FILE) else {
        return;
    };
    let peer = common::shared_peer();
    let tmp = Path::new(&pid_file).with_extension("tmp");
    std::fs::write(&tmp, format!("{} {}\n", peer.pid(), peer.port())).unwrap();
    std::fs::rename(&tmp, &pid_file).unwrap();
    // The parent kills us long before this ends.
    thread::sleep(Duration::from_secs(60));
}

/// Waits up to 5 s until nothing listens on `port` and, on Linux, `pid` has
/// ended.
fn wait_until_gone(pid: u32, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listening = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_millis(200),
        )
        .is_ok();
        let alive = process_alive(pid);
        if !listening && !alive {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "peer pid {pid} still there after 5 s (listening on {port}: {listening}, process alive: {alive})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is a running process. A zombie counts as ended: once the test
/// process is killed, node is reparented to PID 1, which in a container may be
/// slow to reap it or never reap it. Off Linux we only have the port check.
fn process_alive(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]),
            Some(b'Z' | b'X')
        ),
        Err(_) => false,
    }
}
