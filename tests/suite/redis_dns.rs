//! A resolver that stalls: `get_token` runs whose host names go to a name server that
//! never answers end within their timeout, for Redis's host (`LOGTO_CACHE_URL`) and for the
//! token endpoint's.
//!
//! The stalled name server is a UDP socket this test binds on a 127.x.y.z address of its
//! own and never reads. Only the programs under test are pointed at it: each runs in a
//! private mount namespace (`unshare --mount`, which needs root) where a `resolv.conf`
//! naming that address (with `timeout:30 attempts:1`, so a lookup waits 30 s) is mounted
//! over `/etc/resolv.conf`; nothing else on the machine sees it. Where that can't be done
//! (not root, no `unshare`) the tests fail and say why: they have not tested anything
//! (`--skip redis_dns` leaves them out knowingly). The bounding itself is also unit-tested
//! with an injected slow lookup (`src/redis/connect.rs`).

use crate::common;
use crate::fleet;

use std::net::UdpSocket;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "redis")]
use common::Peer;
use common::{M2M_BASIC, SHOPPING_API, TempDir, example_path, proxy_variables};
use fleet::{SLACK, TIMEOUT_S};

/// What a lookup waits for the stalled server: far past any run's timeout.
const STALL_S: u64 = 30;

/// A name server that never answers, and a `resolv.conf` that names it.
struct StalledResolver {
    _socket: UdpSocket,
    dir: TempDir,
}

impl StalledResolver {
    /// `None` (and why) when this machine can't run programs in a mount namespace.
    fn start() -> Result<StalledResolver, String> {
        let probe = Command::new("unshare")
            .args([
                "--mount",
                "sh",
                "-c",
                "mount --bind /etc/hostname /etc/hostname",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        if !probe.status.success() {
            return Err(format!(
                "unshare --mount fails here (it needs root): {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ));
        }
        // An address of our own in 127/8 (all of it is loopback on Linux), port 53.
        let pid = std::process::id();
        let mut last = String::new();
        for n in 0..20u32 {
            let ip = [127, 53, ((pid + n) % 250 + 1) as u8, (pid % 250 + 1) as u8];
            match UdpSocket::bind((std::net::Ipv4Addr::from(ip), 53)) {
                Ok(socket) => {
                    let dir = TempDir::new("stalled-dns");
                    let conf = format!(
                        "nameserver {}.{}.{}.{}\noptions timeout:{STALL_S} attempts:1\n",
                        ip[0], ip[1], ip[2], ip[3]
                    );
                    std::fs::write(dir.path().join("resolv.conf"), conf).unwrap();
                    return Ok(StalledResolver {
                        _socket: socket,
                        dir,
                    });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("cannot bind a udp port 53 on 127.53.x.y: {last}"))
    }

    /// `program` with `env`, in a mount namespace whose `/etc/resolv.conf` is ours; every
    /// `LOGTO_*` and proxy variable of this process removed, as `common::program` does.
    fn command(&self, program: &str, env: &[(&str, String)]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$1\"",
        ])
        .arg(self.dir.path().join("resolv.conf"))
        .arg(program);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("LOGTO_") {
                cmd.env_remove(var);
            }
        }
        for var in proxy_variables() {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null());
        cmd
    }
}

/// The resolver.
///
/// # Panics
///
/// When it can't be set up here (not root, no `unshare`), with the reason: a test that
/// could not run must not pass.
fn stalled_resolver() -> StalledResolver {
    StalledResolver::start().unwrap_or_else(|why| {
        panic!(
            "the stalled-resolver test can't run here: {why}; it needs root and `unshare` \
             (util-linux), or leave it out with `cargo test -- --skip redis_dns`"
        )
    })
}

fn run(mut cmd: Command) -> (Output, Duration) {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    (out, started.elapsed())
}

fn get_token_env(token_url: &str, cache_url: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("LOGTO_TOKEN_URL", token_url.to_owned()),
        ("LOGTO_APP_ID", M2M_BASIC.0.to_owned()),
        ("LOGTO_APP_SECRET", M2M_BASIC.1.to_owned()),
        ("LOGTO_RESOURCE", SHOPPING_API.to_owned()),
        ("LOGTO_TIMEOUT", TIMEOUT_S.to_string()),
    ];
    if let Some(url) = cache_url {
        env.push(("LOGTO_CACHE_URL", url.to_owned()));
    }
    env
}

#[cfg(feature = "redis")]
#[test]
fn a_redis_host_whose_name_never_resolves_costs_a_run_its_timeout_only() {
    let resolver = stalled_resolver();
    let peer = Peer::start();
    let program = example_path("get_token");
    let env = get_token_env(
        &peer.token_url(),
        Some("redis://redis.never-answers.test:6379/0"),
    );
    let (out, took) = run(resolver.command(&program.to_string_lossy(), &env));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The token came from the endpoint, with a warning that says what Redis did.
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: redis") && stderr.contains("redis.never-answers.test"),
        "{stderr}"
    );
    assert!(stderr.contains("resolving"), "{stderr}");
    // The lookup had the timeout; the lock and the write did not wait for it again.
    assert!(
        took < Duration::from_secs(TIMEOUT_S) + SLACK,
        "took {took:?}: {stderr}"
    );
    assert_eq!(peer.stats().token_requests, 1);
}

#[test]
fn a_token_endpoint_whose_name_never_resolves_times_out_on_time() {
    let resolver = stalled_resolver();
    let program = example_path("get_token");
    let env = get_token_env("https://idp.never-answers.test/oidc/token", None);
    let (out, took) = run(resolver.command(&program.to_string_lossy(), &env));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(
        took < Duration::from_secs(TIMEOUT_S) + SLACK,
        "took {took:?}: {stderr}"
    );
}
