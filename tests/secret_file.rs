//! The app secret from a file (`LOGTO_APP_SECRET_FILE`, `Config::*_with_secret_file`),
//! against the real peer, which keeps several secrets per app as Logto does and answers
//! an expired one with 400 `invalid_request` "client secret has expired".
//!
//! The file is read for each token request, so a running `TokenStore` picks a rewritten
//! secret up at its next refresh; a secret rotated while a request is on its way (the gate
//! of `tests/common/gate.rs` rewrites the file between the request and its answer) is
//! retried once with the new one.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, Once, PoisonError};
use std::thread;
use std::time::Duration;

use common::gate::Gate;
use common::{
    M2M_BASIC, M2M_BASIC_EXPIRED, M2M_BASIC_NEXT, PEER_TIMEOUT, Peer, TempDir, example, shopping,
};
use log::{LevelFilter, Log, Metadata, Record};
use logto_m2m::{Config, ErrorKind, Secret, TokenStore, request_token};

/// Logto's refusal of a secret past its expiry: `invalid_request` "client secret has
/// expired".
fn is_secret_expired(err: &logto_m2m::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::OAuth { description: Some(d), .. } if d.contains("expired")
    )
}

/// Every record of the `logto_m2m` target, as `LEVEL message`. Tests run in parallel, so
/// each looks only at the lines that name its own secret file.
struct Capture(Mutex<Vec<String>>);

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "logto_m2m"
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// The captured lines that mention `path`.
fn logged(path: &Path) -> Vec<String> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(LevelFilter::Debug);
    });
    let shown = path.display().to_string();
    CAPTURE
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|l| l.contains(&shown))
        .cloned()
        .collect()
}

/// A secret file holding `content`, mode 600, in a fresh temp dir.
fn secret_file(label: &str, content: &str) -> (TempDir, PathBuf) {
    logged(Path::new("")); // the logger, before anything logs
    let dir = TempDir::new(label);
    let path = dir.path().join("app-secret");
    write_secret(&path, content);
    (dir, path)
}

/// Replaces the file's content as a secret manager does: a new file renamed over it.
fn write_secret(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, content).unwrap();
    #[cfg(unix)]
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn file_config(token_url: &str, path: &Path) -> Config {
    Config::new(token_url, M2M_BASIC.0, Secret::file(path))
        .unwrap()
        .timeout(PEER_TIMEOUT)
}

/// `get_token` with the peer's endpoint, m2m-basic's id and `vars`.
fn get_token(peer: &Peer, vars: &[(&str, &Path)]) -> Output {
    let mut cmd = example("get_token");
    cmd.env("LOGTO_ENDPOINT", peer.base_url())
        .env("LOGTO_APP_ID", M2M_BASIC.0)
        .env("LOGTO_RESOURCE", common::SHOPPING_API)
        .env("LOGTO_SCOPES", "read:products")
        .env("LOGTO_TIMEOUT", PEER_TIMEOUT.as_secs().to_string());
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

#[test]
fn get_token_reads_the_secret_from_the_file_without_its_newline() {
    let peer = Peer::start();
    let (_dir, path) = secret_file("get-token", &format!("{}\n", M2M_BASIC.1));
    let out = get_token(&peer, &[("LOGTO_APP_SECRET_FILE", &path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("eyJ"));
    assert_eq!(peer.stats().issued_by(M2M_BASIC.0), 1);
}

#[test]
fn both_variables_are_an_error_naming_them() {
    let peer = common::shared_peer();
    let (_dir, path) = secret_file("both", M2M_BASIC.1);
    let out = get_token(
        peer,
        &[
            ("LOGTO_APP_SECRET_FILE", &path),
            ("LOGTO_APP_SECRET", Path::new(M2M_BASIC.1)),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "get_token: environment variable LOGTO_APP_SECRET_FILE: set together with \
         LOGTO_APP_SECRET; set only one\n"
    );
}

#[test]
fn an_empty_or_unreadable_file_names_the_path_never_the_content() {
    let peer = common::shared_peer();
    let (dir, path) = secret_file("empty", " \n");
    let out = get_token(peer, &[("LOGTO_APP_SECRET_FILE", &path)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "get_token: invalid config: app secret file {}: is empty\n",
            path.display()
        )
    );
    let missing = dir.path().join("missing");
    let out = get_token(peer, &[("LOGTO_APP_SECRET_FILE", &missing)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "get_token: invalid config: app secret file {}: cannot read: ",
            missing.display()
        )),
        "{stderr}"
    );
    // Bytes that are no secret (not UTF-8) around a canary: the message says what is wrong
    // with the file, and shows none of it.
    fs::write(&path, b"canary-secret-51e0\xff\n").unwrap();
    let err = Config::new(&peer.token_url(), M2M_BASIC.0, Secret::file(&path)).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("is not valid utf-8"), "{shown}");
    assert!(!shown.contains("canary"), "{shown}");
    // A file that goes bad after the config was made fails the request, the same way.
    write_secret(&path, M2M_BASIC.1);
    let config = file_config(&peer.token_url(), &path);
    assert!(!format!("{config:?}").contains(M2M_BASIC.1));
    fs::remove_file(&path).unwrap();
    let err = request_token(&config, &shopping("read:products")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_file_group_or_others_can_read_is_a_warning() {
    let peer = common::shared_peer();
    let (_dir, path) = secret_file("mode", M2M_BASIC.1);
    file_config(&peer.token_url(), &path);
    assert!(logged(&path).iter().all(|l| !l.starts_with("WARN")));
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    file_config(&peer.token_url(), &path);
    let warnings: Vec<String> = logged(&path)
        .into_iter()
        .filter(|l| l.starts_with("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("mode 644 lets group or others read it"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains(M2M_BASIC.1));
}

/// The file rewritten between two refreshes of a running store: each refresh reads it
/// again, with no restart: the expired secret is refused (so it was read), and the next
/// refresh after that uses the new one.
#[test]
fn a_running_store_uses_the_rewritten_secret_at_its_next_refresh() {
    let peer = Peer::start();
    let (_dir, path) = secret_file("store", &format!("{}\n", M2M_BASIC.1));
    let store = TokenStore::new(file_config(&peer.token_url(), &path));
    let request = shopping("read:products");
    let first = store.get(&request).unwrap();

    write_secret(&path, M2M_BASIC_EXPIRED.1);
    store.invalidate(&request);
    let err = store.get(&request).unwrap_err();
    assert!(is_secret_expired(&err), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "the app secret has expired: create a new secret for the app in the Logto \
             console (the app's App secrets) and write it to {}",
            path.display()
        )),
        "{message}"
    );
    assert!(!message.contains(M2M_BASIC_EXPIRED.1), "{message}");

    write_secret(&path, &format!("{}\n", M2M_BASIC_NEXT.1));
    // Past the one-second pause a failed refresh with no token left holds callers off.
    thread::sleep(Duration::from_millis(1100));
    let second = store.get(&request).unwrap();
    assert_ne!(second.access_token(), first.access_token());
    let stats = peer.stats();
    assert_eq!(stats.token_requests, 3);
    assert_eq!(stats.issued_by(M2M_BASIC.0), 2);
    assert_eq!(stats.errors_by_code("invalid_request"), 1);
    let picked: Vec<String> = logged(&path)
        .into_iter()
        .filter(|l| l.starts_with("INFO") && l.contains("a new secret was picked up"))
        .collect();
    assert_eq!(picked.len(), 2, "{picked:?}");
}

/// The secret expired, and by the time the endpoint says so the file holds the new one:
/// one more request with it, and a token.
#[test]
fn a_secret_rotated_while_on_its_way_is_retried_once() {
    let peer = Peer::start();
    let (_dir, path) = secret_file("on-its-way", M2M_BASIC_EXPIRED.1);
    let rewrite = path.clone();
    let gate = Gate::start(peer.port(), move |n| {
        if n == 0 {
            write_secret(&rewrite, &format!("{}\n", M2M_BASIC_NEXT.1));
        }
    });
    let token = request_token(
        &file_config(&gate.token_url(), &path),
        &shopping("read:products"),
    );
    assert!(token.is_ok(), "{:?}", token.err());
    assert_eq!(gate.requests(), 2);
    let stats = peer.stats();
    assert_eq!(stats.errors_by_code("invalid_request"), 1);
    assert_eq!(stats.issued_by(M2M_BASIC.0), 1);
    let lines = logged(&path);
    assert!(
        lines.iter().any(|l| l.starts_with("INFO")
            && l.contains("refused the app secret (invalid_request)")
            && l.contains("trying again with it")),
        "{lines:?}"
    );
}

/// `invalid_client` (a secret the app does not have) while the file is being rotated: the
/// same one retry.
#[test]
fn invalid_client_while_rotating_is_retried_once() {
    let peer = Peer::start();
    let (_dir, path) = secret_file("invalid-client", "not-a-secret-of-the-app");
    let rewrite = path.clone();
    let gate = Gate::start(peer.port(), move |n| {
        if n == 0 {
            write_secret(&rewrite, M2M_BASIC.1);
        }
    });
    let token = request_token(
        &file_config(&gate.token_url(), &path),
        &shopping("read:products"),
    );
    assert!(token.is_ok(), "{:?}", token.err());
    assert_eq!(gate.requests(), 2);
    assert_eq!(peer.stats().errors_by_code("invalid_client"), 1);
}

/// Refused, and the file still holds what was sent: no second request, as a wrong secret
/// does not get better.
#[test]
fn a_refused_secret_that_did_not_change_is_not_retried() {
    let peer = Peer::start();
    for (label, secret, code) in [
        ("wrong", "not-a-secret-of-the-app", "invalid_client"),
        ("expired", M2M_BASIC_EXPIRED.1, "invalid_request"),
    ] {
        peer.reset_stats();
        let (_dir, path) = secret_file(label, secret);
        let err = request_token(
            &file_config(&peer.token_url(), &path),
            &shopping("read:products"),
        )
        .unwrap_err();
        assert_eq!(err.oauth_error(), Some(code), "{err}");
        assert_eq!(peer.stats().token_requests, 1, "{label}");
    }
}

/// With the secret given as a string, the expired answer says where a new one can go.
#[test]
fn an_expired_string_secret_says_what_to_do() {
    let peer = common::shared_peer();
    let err = common::ask(peer, M2M_BASIC_EXPIRED, &shopping("read:products")).unwrap_err();
    assert!(is_secret_expired(&err), "{err:?}");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.oauth_error(), Some("invalid_request"));
    let message = err.to_string();
    assert!(
        message.ends_with(
            "the app secret has expired: create a new secret for the app in the Logto console \
             (the app's App secrets) and put it where this app reads its secret \
             (LOGTO_APP_SECRET, or a file named by LOGTO_APP_SECRET_FILE, which is read again \
             without a restart)"
        ),
        "{message}"
    );
    assert!(!message.contains(M2M_BASIC_EXPIRED.1), "{message}");
    // Any other refusal is not an expired secret.
    let wrong = common::ask(peer, (M2M_BASIC.0, "wrong-secret"), &shopping("")).unwrap_err();
    assert!(!is_secret_expired(&wrong), "{wrong:?}");
}
