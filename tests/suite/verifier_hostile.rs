//! Hostile tokens for the `Verifier`, made by another hand: `tests/verifier/hostile.py`
//! signs them with Python's `cryptography` (the tests' venv, made as for the Authlib
//! server) and says what each must give. The JWKS it prints is served from loopback.

use crate::common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::authlib::{authlib_dir, ensure_authlib_installed};
use common::loopback::Loopback;
use logto_m2m::{ErrorKind, Verifier, VerifyErrorKind};

const ISSUER: &str = "https://issuer.example/oidc";
const API: &str = "https://shopping.api";

#[test]
fn hostile_tokens_from_python_are_refused_and_good_ones_verify() {
    ensure_authlib_installed();
    let python = authlib_dir().join(".venv").join("bin").join("python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifier/hostile.py");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new(python)
        .arg(script)
        .args([ISSUER, API, &now.to_string()])
        .env_remove("PYTHONPATH")
        .output()
        .expect("run hostile.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let jwks = lines.next().unwrap().to_owned();
    let server = Loopback::start(100, Duration::from_secs(60), move |c| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            jwks.len()
        );
        let _ = c.send(head.as_bytes()) && c.send(jwks.as_bytes());
    });
    let verifier = Verifier::new(ISSUER, &format!("http://127.0.0.1:{}/jwks", server.port()))
        .unwrap()
        .timeout(Duration::from_secs(5));
    let mut failures = Vec::new();
    let mut tried = 0;
    for line in lines {
        let mut fields = line.splitn(3, '\t');
        let (name, expected, token) = (
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        tried += 1;
        let result = verifier.verify(token, API, &["read:products"]);
        let ok = match (&result, expected) {
            (Ok(_), "ok") => true,
            (Err(e), expected) if expected != "ok" => match e.kind() {
                ErrorKind::Verify(VerifyErrorKind::InvalidToken { reason }) => {
                    // A refusal never quotes the token, and its challenge is header-safe.
                    let challenge = e.challenge().unwrap();
                    reason.contains(expected)
                        && !e.to_string().contains(token.split('.').next().unwrap())
                        && challenge.starts_with("Bearer error=\"invalid_token\"")
                        && challenge.bytes().all(|b| (0x20..0x7f).contains(&b))
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: expected {expected}, got {result:?}"));
        }
    }
    assert!(tried >= 30, "only {tried} cases");
    assert!(failures.is_empty(), "{failures:#?}");
}
