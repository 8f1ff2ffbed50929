//! `logto-m2m verify`, run as a process against the peer's tokens and JWKS.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{M2M_BASIC, SHOPPING_API, ask, shared_peer, shopping};

/// Runs `logto-m2m verify` with `args`, `LOGTO_ENDPOINT` (if any) and `stdin`; the exit
/// code, stdout and stderr.
fn verify(endpoint: Option<&str>, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut cmd: Command = common::program(env!("CARGO_BIN_EXE_logto-m2m"));
    if let Some(e) = endpoint {
        cmd.env("LOGTO_ENDPOINT", e);
    }
    cmd.arg("verify").args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run logto-m2m");
    let mut pipe = child.stdin.take().unwrap();
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_prints_claims_or_the_reason_never_the_token() {
    let peer = shared_peer();
    let endpoint = peer.base_url();
    let token = ask(peer, M2M_BASIC, &shopping("read:products")).unwrap();
    let t = token.access_token();
    let (code, out, err) = verify(
        Some(&endpoint),
        &["--resource", SHOPPING_API, "--scope", "read:products", t],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#""client_id":"m2m-basic""#), "{out}");
    assert!(out.contains(r#""scope":"read:products""#), "{out}");
    // From stdin, as `token --format header` prints it.
    let (code, out, err) = verify(
        Some(&endpoint),
        &["--resource", SHOPPING_API, "-"],
        &format!("Authorization: Bearer {t}\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(SHOPPING_API), "{out}");
    // A scope not granted: 1, with the reason.
    let (code, out, err) = verify(
        Some(&endpoint),
        &["--resource", SHOPPING_API, "--scope", "write:products", t],
        "",
    );
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.contains("insufficient scope: the token lacks write:products"),
        "{err}"
    );
    // A tampered token: 1, and the token is not in the message.
    let (head, sig) = t.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let bad = format!("{head}.{flipped}{}", &sig[1..]);
    let (code, _, err) = verify(Some(&endpoint), &["--resource", SHOPPING_API, &bad], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("invalid token"), "{err}");
    assert!(!err.contains(sig) && !err.contains(head), "{err}");
    // Another audience.
    let (code, _, err) = verify(Some(&endpoint), &["--resource", "https://other.api", t], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("aud does not contain https://other.api"),
        "{err}"
    );
}

#[test]
fn verify_usage_errors_are_2() {
    for (endpoint, args, expect) in [
        (Some("http://127.0.0.1:9"), vec!["tok"], "needs --resource"),
        (None, vec!["--resource", "x", "tok"], "LOGTO_ENDPOINT"),
        (
            Some("http://127.0.0.1:9"),
            vec!["--resource"],
            "needs a value",
        ),
        (
            Some("http://127.0.0.1:9"),
            vec!["--resource", "x", "--bogus"],
            "unknown flag",
        ),
        (
            Some("http://127.0.0.1:9"),
            vec!["--resource", "x", "a", "b"],
            "unexpected argument \"b\"",
        ),
        (
            Some("ftp://x"),
            vec!["--resource", "x", "a"],
            "LOGTO_ENDPOINT",
        ),
    ] {
        let (code, _, err) = verify(endpoint, &args, "");
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let (code, out, _) = verify(None, &["--help"], "");
    assert_eq!(code, Some(0));
    assert!(out.contains("usage: logto-m2m verify"), "{out}");
    // Nothing on stdin.
    let (code, _, err) = verify(Some("http://127.0.0.1:9"), &["--resource", "x"], "");
    assert_eq!(code, Some(1), "{err}");
    // Keys that can't be fetched: 1, naming the JWKS.
    let (code, _, err) = verify(
        Some("http://127.0.0.1:9"),
        &["--resource", "x", "a.b.c"],
        "",
    );
    assert_eq!(code, Some(1), "{err}");
}
