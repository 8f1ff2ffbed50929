//! The library's log events, captured by a logger of the test's own: each documented event
//! appears, at its level, under the target `logto_m2m`, on one line, and none of them ever
//! holds the secret, the Basic value, the form credentials or a token.

mod common;

use std::sync::{Mutex, PoisonError};

use base64::Engine;
use common::{M2M_BASIC, Peer, TempDir, config, shopping};
use log::{Level, LevelFilter, Log, Metadata, Record};
use logto_m2m::{AuthMethod, TokenStore, request_token};

/// Every record of every target, as `LEVEL target: message`.
struct Capture(Mutex<Vec<String>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn take() -> Vec<String> {
    std::mem::take(&mut *CAPTURE.0.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The events of the `logto_m2m` target at `level` that contain `text`.
fn events<'a>(lines: &'a [String], level: Level, text: &str) -> Vec<&'a String> {
    let prefix = format!("{level} logto_m2m: ");
    lines
        .iter()
        .filter(|l| l.starts_with(&prefix) && l.contains(text))
        .collect()
}

// One test, so that the one global logger sees only its own calls in order.
#[test]
fn events_are_logged_and_never_carry_a_secret_or_token() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(LevelFilter::Trace);
    let peer = Peer::start();
    let canary = "canary-secret-7d41b0";
    let mut tokens = Vec::new();

    // A token fetched, with the scope asked but not granted (m2m-basic has no write role).
    for method in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        let config = config(&peer, M2M_BASIC).auth_method(method);
        let token = request_token(&config, &shopping("read:products write:products")).unwrap();
        tokens.push(token.access_token().to_owned());
    }
    let lines = take();
    assert_eq!(
        events(&lines, Level::Debug, "token fetched").len(),
        2,
        "{lines:#?}"
    );
    let warned = events(&lines, Level::Warn, "not granted");
    assert_eq!(warned.len(), 2, "{lines:#?}");
    assert!(warned[0].contains("write:products") && !warned[0].contains("read:products"));

    // A wrong (canary) secret, both ways: the failure at debug.
    for method in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        let config = config(&peer, ("m2m-basic", canary)).auth_method(method);
        request_token(&config, &shopping("read:products")).unwrap_err();
    }
    // The store: a failed refresh with no token left begins a backoff (warn), and a token
    // file it can't use is a warning too.
    // (A missing folder would be created: this one is a file.)
    let dir = TempDir::new("log-events");
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let store = TokenStore::new(config(&peer, ("m2m-basic", canary)))
        .cache_file(dir.path().join("a-file").join("tokens.json"));
    store.get(&shopping("read:products")).unwrap_err();
    let lines = take();
    assert_eq!(
        events(&lines, Level::Debug, "failed after 1 attempt").len(),
        3,
        "{lines:#?}"
    );
    assert_eq!(
        events(&lines, Level::Warn, "callers get this error").len(),
        1
    );
    assert_eq!(
        events(&lines, Level::Warn, "token file").len(),
        1,
        "{lines:#?}"
    );

    // Retries: nothing listens on the port, so the connection fails three times.
    let nowhere = format!("http://127.0.0.1:{}/oidc/token", common::free_port());
    request_token(
        &common::config_at(&nowhere, ("m2m-basic", canary)),
        &shopping("read:products"),
    )
    .unwrap_err();
    let retries = take();
    assert_eq!(
        events(&retries, Level::Debug, "trying again").len(),
        2,
        "{retries:#?}"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("m2m-basic:{canary}"));
    let lines = [lines, retries].concat();
    let all = lines.join("\n");
    for line in lines.iter() {
        assert!(!line.contains('\n'), "one line per event: {line:?}");
    }
    for secret in [canary, M2M_BASIC.1, basic.as_str()] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    for token in &tokens {
        for piece in token.split('.') {
            assert!(!all.contains(piece), "a token piece in {all}");
        }
    }
}
