//! App secret rotation against the real Logto (`../shared/logto/`, the harness of
//! `tests/common/real_logto.rs`): an expired secret's error, a secret file rewritten under
//! a running `TokenStore`, and a secret that expired while the file already holds the
//! new one.
//!
//! Part of the `real_logto` test binary: one Logto for both, and ignored without
//! `LOGTO_REAL=1` as the rest (see `main.rs`). Each test makes an app of its own, so that
//! the requests it counts (Logto's `logs` table) are its own.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::gate::Gate;
use common::real_logto::{App, Logto};
use common::{SHOPPING_API, TempDir};
use logto_m2m::{Config, ErrorKind, Secret, TokenRequest, TokenStore, request_token};

/// Logto's refusal of a secret past its expiry: `invalid_request` "client secret has
/// expired".
fn is_secret_expired(err: &logto_m2m::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::OAuth { description: Some(d), .. } if d.contains("expired")
    )
}

const SHOP_READER: &str = "shop-reader";
/// Every call's deadline: far more than a call to a local Logto takes.
const TIMEOUT: Duration = Duration::from_secs(10);

fn shopping() -> TokenRequest {
    TokenRequest::new(SHOPPING_API).scope("read:products")
}

/// A secret file holding `content`, mode 600, in a fresh temp dir.
fn secret_file(label: &str, content: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(label);
    let path = dir.path().join("app-secret");
    write_secret(&path, content);
    (dir, path)
}

/// Replaces the file's content as a secret manager does: a new file renamed over it, with
/// the trailing newline `echo` leaves.
fn write_secret(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, format!("{content}\n")).unwrap();
    #[cfg(unix)]
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A string as an SQL literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Adds a second current secret to `app` (Logto keeps several); returns it.
fn add_secret(logto: &Logto, app: &App) -> String {
    let secret = format!("second-{}", app.secret);
    logto.psql(&format!(
        "insert into application_secrets (tenant_id, application_id, name, value) \
         values ('default', {}, 'second', {})",
        literal(&app.id),
        literal(&secret)
    ));
    secret
}

/// Removes `secret` from `app`, as deleting it in the console does.
fn remove_secret(logto: &Logto, app: &App, secret: &str) {
    logto.psql(&format!(
        "delete from application_secrets where tenant_id = 'default' and application_id = {} \
         and value = {}",
        literal(&app.id),
        literal(secret)
    ));
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn an_expired_secret_has_its_own_predicate_and_says_what_to_do() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let expired = logto.add_expired_secret(&app);

    // Given as a string.
    let config = Config::logto(logto.endpoint(), &app.id, &expired)
        .unwrap()
        .timeout(TIMEOUT);
    let err = request_token(&config, &shopping()).unwrap_err();
    assert!(is_secret_expired(&err), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::OAuth { .. }), "{err:?}");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.oauth_error(), Some("invalid_request"));
    assert_eq!(err.logto_code(), Some("oidc.invalid_request"));
    let message = err.to_string();
    assert!(message.contains("client secret has expired"), "{message}");
    assert!(
        message.ends_with(
            "the app secret has expired: create a new secret for the app in the Logto console \
             (the app's App secrets) and put it where this app reads its secret \
             (LOGTO_APP_SECRET, or a file named by LOGTO_APP_SECRET_FILE, which is read again \
             without a restart)"
        ),
        "{message}"
    );
    assert!(!message.contains(&expired), "{message}");

    // From a file: the message names the file to write the new one to. The file did not
    // change, so no second request (counted at a gate: Logto logs no request it refuses
    // for an expired secret).
    let (_dir, path) = secret_file("expired", &expired);
    let gate = Gate::start(logto.port(), |_| {});
    let config = Config::new(&gate.token_url(), &app.id, Secret::file(&path))
        .unwrap()
        .timeout(TIMEOUT);
    let err = request_token(&config, &shopping()).unwrap_err();
    assert!(is_secret_expired(&err), "{err:?}");
    let message = err.to_string();
    assert!(
        message.ends_with(&format!(
            "the app secret has expired: create a new secret for the app in the Logto console \
             (the app's App secrets) and write it to {}, which is read again on the next \
             request, no restart needed",
            path.display()
        )),
        "{message}"
    );
    assert_eq!(gate.requests(), 1);

    // A wrong secret is refused otherwise, and is no expired one.
    let wrong = Config::logto(logto.endpoint(), &app.id, "not-the-secret")
        .unwrap()
        .timeout(TIMEOUT);
    let err = request_token(&wrong, &shopping()).unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err}");
    assert!(!is_secret_expired(&err));
}

/// The console's rotation: a second secret is made, written into the file the app reads,
/// and the first one deleted. The running store's next refresh uses the new one, with no
/// restart (the old one no longer works, so only the new one can have got the token).
#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn a_running_store_picks_up_the_rewritten_secret_file_at_its_next_refresh() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let (_dir, path) = secret_file("store", &app.secret);
    let config = Config::logto(logto.endpoint(), &app.id, Secret::file(&path))
        .unwrap()
        .timeout(TIMEOUT);
    let store = TokenStore::new(config);
    let first = store.get(&shopping()).unwrap();

    let second_secret = add_secret(logto, &app);
    write_secret(&path, &second_secret);
    remove_secret(logto, &app, &app.secret);
    // The old secret is gone from Logto.
    let old = Config::logto(logto.endpoint(), &app.id, &app.secret)
        .unwrap()
        .timeout(TIMEOUT);
    let err = request_token(&old, &shopping()).unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err}");

    // The next refresh (one, started by invalidate as after an API's 401).
    store.invalidate(&shopping());
    let second = store.get(&shopping()).unwrap();
    assert_ne!(second.access_token(), first.access_token());
    assert_eq!(
        common::jwt_claim(&second, "sub").as_deref(),
        Some(app.id.as_str())
    );
    // The first get, the old secret's refusal, the refresh.
    assert_eq!(logto.token_requests(&app.id), 3);
}

/// The secret expired, and the file already holds the new one when Logto says so: the
/// request (held at the gate while the file is rewritten, as a rotation may land while a
/// request is on its way) is refused, made once more with the file's new secret, and a
/// token comes back.
#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn an_expired_secret_with_the_new_one_in_the_file_is_retried_once_then_a_token() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let expired = logto.add_expired_secret(&app);
    let (_dir, path) = secret_file("rotated", &expired);
    let (rewrite, new_secret) = (path.clone(), app.secret.clone());
    let gate = Gate::start(logto.port(), move |n| {
        if n == 0 {
            write_secret(&rewrite, &new_secret);
        }
    });
    let config = Config::new(&gate.token_url(), &app.id, Secret::file(&path))
        .unwrap()
        .timeout(TIMEOUT);
    let store = TokenStore::new(config);
    let token = store.get(&shopping());
    assert!(token.is_ok(), "{:?}", token.err());
    assert_eq!(gate.requests(), 2, "one retry");
    // Logto logs the token it issued; the refusal of an expired secret it does not log.
    assert_eq!(logto.token_requests(&app.id), 1);
    assert_eq!(
        common::jwt_claim(&token.unwrap(), "sub").as_deref(),
        Some(app.id.as_str())
    );
}
