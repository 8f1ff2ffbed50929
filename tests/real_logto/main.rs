//! The crate against the real Logto (open-source core built from source, with PostgreSQL;
//! `../shared/logto/`), through the public API and through the `logto-m2m` command.
//!
//! Runs only with `LOGTO_REAL=1` (`LOGTO_REAL=1 cargo test --test real_logto`); otherwise
//! `cargo test` lists each test as ignored with that reason, and with `CI=true` that fails
//! ([`ci_runs_the_real_logto_tests`]). A new test here calls
//! `common::real_logto::logto()` and carries the same `cfg_attr(..., ignore)`. One
//! Logto per test binary, on ports of its own with a fresh database, stopped and wiped when
//! the binary ends (`tests/common/real_logto.rs`). Tests run in parallel against it: those
//! that count token requests (in Logto's `logs` table) use an app of their own.
//!
//! The apps seeded by `setup-apps.sql` / `setup-org.sql` (see shared/logto/README.md):
//! A (shop-reader + Management API `all`, organization role in the organization), B (no
//! roles; organization member without roles), C and E (odd ASCII secrets), D (non-ASCII
//! secret).

#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "redis")]
#[path = "../common/redis_server.rs"]
mod redis_server;
// App secret rotation: apps of its own, against the same Logto.
mod rotation;
// Acting for a user (token exchange): apps and a user of its own, against the same Logto.
mod token_exchange;

/// Under `CI=true` the real-Logto tests must run, not be ignored: `.ci/run` exports
/// `LOGTO_REAL=1`, and a CI without it fails here instead of passing with them ignored.
#[test]
fn ci_runs_the_real_logto_tests() {
    assert!(
        cfg!(logto_real) || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true without LOGTO_REAL=1: the real-Logto tests were ignored; run them with \
         `LOGTO_REAL=1 cargo test`"
    );
}

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use base64::Engine;
use common::real_logto::{Logto, Output, run_bounded};
use common::{MANAGEMENT_API, SHOPPING_API, TempDir, assert_claim, jwt_claim, local_agent};
use logto_m2m::{
    AuthMethod, Config, Error, ErrorKind, Token, TokenRequest, TokenStore, request_token,
};
use miniserde::json::{self, Number, Value};

const APP_A: (&str, &str) = ("appa0000000000000000a", "appAsecretAAAAAAAAAAAAAAAAAAAAAA");
const APP_B: (&str, &str) = ("appb0000000000000000b", "appBsecretBBBBBBBBBBBBBBBBBBBBBB");
const APP_C: (&str, &str) = ("appc0000000000000000c", "p@ss:w+rd/ x&y=z%41~!*'()#\"");
const APP_D: (&str, &str) = ("appd0000000000000000d", "sécret-ünïcode");
const APP_E: (&str, &str) = ("appe0000000000000000e", "s3cr:t+/%&= x~");
const ALL_SEEDED: [&str; 5] = [APP_A.0, APP_B.0, APP_C.0, APP_D.0, APP_E.0];
/// A has the organization role `org-m2m` (read:orders) in it, B is a member without roles,
/// C, D and E are not members.
const ORG: &str = "org0000000000000001";
const SHOP_READER: &str = "shop-reader";

/// Every call's deadline: far more than a call to a local Logto takes.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Every run of the command: its own 10 s deadline, plus start-up.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn config(logto: &Logto, (id, secret): (&str, &str)) -> Config {
    Config::logto(logto.endpoint(), id, secret)
        .unwrap()
        .timeout(TIMEOUT)
}

fn config_post(logto: &Logto, app: (&str, &str)) -> Config {
    config(logto, app).auth_method(AuthMethod::ClientSecretPost)
}

fn shopping(scopes: &str) -> TokenRequest {
    TokenRequest::new(SHOPPING_API).scope(scopes)
}

fn organization(scopes: &str) -> TokenRequest {
    TokenRequest::new("").organization(ORG).scope(scopes)
}

#[track_caller]
fn ok(result: Result<Token, Error>) -> Token {
    result.unwrap_or_else(|e| panic!("expected a token: {e}"))
}

#[track_caller]
fn err(result: Result<Token, Error>) -> Error {
    match result {
        Ok(token) => panic!("expected an error, got a token: {token:?}"),
        Err(e) => e,
    }
}

/// A JWT part (0: header, 1: payload) as a JSON object.
fn jwt_part(token: &str, part: usize) -> json::Object {
    let text = token.split('.').nth(part).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url");
    match json::from_str(std::str::from_utf8(&bytes).expect("UTF-8")) {
        Ok(Value::Object(obj)) => obj,
        _ => panic!("JWT part {part} is not a JSON object"),
    }
}

fn string_field(obj: &json::Object, name: &str) -> Option<String> {
    match obj.get(name)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// What every Logto token says of its app, resource and lifetime.
#[track_caller]
fn assert_logto_token(logto: &Logto, token: &Token, app_id: &str, aud: &str) {
    let header = jwt_part(token.access_token(), 0);
    assert_eq!(string_field(&header, "alg").as_deref(), Some("ES384"));
    assert_eq!(string_field(&header, "typ").as_deref(), Some("at+jwt"));
    assert_claim(token, "sub", Some(app_id));
    assert_claim(token, "client_id", Some(app_id));
    assert_claim(token, "aud", Some(aud));
    assert_claim(token, "iss", Some(&logto.issuer()));
    let lifetime = token.expires_in();
    assert!(
        lifetime <= Duration::from_secs(3600) && lifetime > Duration::from_secs(3590),
        "{lifetime:?}"
    );
    assert!(token.expires_at().unwrap() > std::time::SystemTime::now());
}

/// What every error answered by the token endpoint carries: status, OAuth error, Logto's
/// `oidc.<error>` code, and (the contract) the token URL and Logto's request id in the
/// message.
#[track_caller]
fn assert_endpoint_error(logto: &Logto, e: &Error, status: u16, oauth_error: &str) {
    let message = e.to_string();
    assert!(matches!(e.kind(), ErrorKind::OAuth { .. }), "{e:?}");
    assert_eq!(e.status(), Some(status), "{message}");
    assert_eq!(e.oauth_error(), Some(oauth_error), "{message}");
    let code = format!("oidc.{oauth_error}");
    assert_eq!(e.logto_code(), Some(code.as_str()), "{message}");
    assert!(
        message.contains(&logto.token_url()),
        "contract: the message names the token URL {}: {message}",
        logto.token_url()
    );
    let id = e
        .request_id()
        .unwrap_or_else(|| panic!("contract: Logto sent a Logto-Core-Request-Id: {message}"));
    assert!(
        id.len() >= 8 && id.bytes().all(|b| b.is_ascii_graphic()),
        "request id {id:?}"
    );
    assert!(
        message.contains(&format!("request id {id}")),
        "contract: the message shows the request id {id}: {message}"
    );
}

/// The OAuth `error_description` Logto sent.
fn description(e: &Error) -> String {
    match e.kind() {
        ErrorKind::OAuth {
            description: Some(d),
            ..
        } => d.clone(),
        other => panic!("no description: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tokens

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn shopping_api_token_for_app_a() {
    let logto = common::real_logto::logto();
    let request = shopping("read:products");
    let token = ok(request_token(&config(logto, APP_A), &request));
    assert_logto_token(logto, &token, APP_A.0, SHOPPING_API);
    assert_claim(&token, "scope", Some("read:products"));
    assert_eq!(token.scope(), Some("read:products"));
    assert!(token.missing_scopes(&request).is_empty());
    // A shopping token is not a Management API token.
    let (status, body) = get_applications(logto, Some(&token));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("auth.unauthorized"), "{body}");
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn management_api_token_lists_the_applications() {
    let logto = common::real_logto::logto();
    let request = TokenRequest::management_api(logto.endpoint());
    assert_eq!(request, TokenRequest::new(MANAGEMENT_API).scope("all"));
    let token = ok(request_token(&config(logto, APP_A), &request));
    assert_logto_token(logto, &token, APP_A.0, MANAGEMENT_API);
    assert_eq!(token.scope(), Some("all"));
    assert_claim(&token, "scope", Some("all"));

    let (status, body) = get_applications(logto, Some(&token));
    assert_eq!(status, 200, "{body}");
    let Ok(Value::Array(apps)) = json::from_str::<Value>(&body) else {
        panic!("not a JSON array: {body}");
    };
    let ids: Vec<String> = apps
        .iter()
        .filter_map(|app| match app {
            Value::Object(obj) => string_field(obj, "id"),
            _ => None,
        })
        .collect();
    for id in ALL_SEEDED {
        assert!(ids.iter().any(|have| have == id), "{id} not in {ids:?}");
    }
    // Without a token, and with an app that has no Management API role.
    let (status, body) = get_applications(logto, None);
    assert_eq!(status, 401, "{body}");
    let no_role = ok(request_token(
        &config(logto, APP_C),
        &TokenRequest::management_api(logto.endpoint()),
    ));
    assert_eq!(no_role.scope(), None);
    assert_eq!(no_role.missing_scopes(&request), ["all"]);
    let (status, body) = get_applications(logto, Some(&no_role));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("auth.forbidden"), "{body}");
}

/// `GET {endpoint}/api/applications` (100 per page: other tests add apps) with the token as
/// Bearer, or without any; the status and body.
fn get_applications(logto: &Logto, token: Option<&Token>) -> (u16, String) {
    let url = format!("{}/api/applications?page=1&page_size=100", logto.endpoint());
    let mut request = local_agent(TIMEOUT).get(&url);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {}", token.access_token()));
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn both_auth_methods_for_app_a() {
    let logto = common::real_logto::logto();
    let request = shopping("read:products");
    // Basic is the default; post is chosen explicitly.
    let basic = config(logto, APP_A);
    let basic_explicit = config(logto, APP_A).auth_method(AuthMethod::ClientSecretBasic);
    for config in [basic, basic_explicit, config_post(logto, APP_A)] {
        let token = ok(request_token(&config, &request));
        assert_logto_token(logto, &token, APP_A.0, SHOPPING_API);
        assert_eq!(token.scope(), Some("read:products"));
    }
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn special_character_secrets_with_both_methods() {
    let logto = common::real_logto::logto();
    let request = shopping("read:products");
    for app in [APP_C, APP_E] {
        for config in [config(logto, app), config_post(logto, app)] {
            let token = request_token(&config, &request)
                .unwrap_or_else(|e| panic!("{} with {config:?}: {e}", app.0));
            assert_logto_token(logto, &token, app.0, SHOPPING_API);
            assert_eq!(token.scope(), Some("read:products"));
        }
    }
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn non_ascii_secret_works_with_client_secret_post() {
    let logto = common::real_logto::logto();
    let token = ok(request_token(
        &config_post(logto, APP_D),
        &shopping("read:products"),
    ));
    assert_logto_token(logto, &token, APP_D.0, SHOPPING_API);
    assert_eq!(token.scope(), Some("read:products"));
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn non_ascii_secret_with_basic_is_invalid_request_suggesting_post() {
    let logto = common::real_logto::logto();
    let e = err(request_token(
        &config(logto, APP_D),
        &shopping("read:products"),
    ));
    assert_endpoint_error(logto, &e, 400, "invalid_request");
    assert!(description(&e).contains("not properly encoded"), "{e}");
    assert!(
        e.to_string().contains("client_secret_post"),
        "contract: the message suggests client_secret_post: {e}"
    );
    assert!(!e.to_string().contains(APP_D.1), "{e}");
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn wrong_secret_is_401_invalid_client_naming_both_methods() {
    let logto = common::real_logto::logto();
    let app = (APP_A.0, "wrong-secret-5f3a9e");
    for config in [config(logto, app), config_post(logto, app)] {
        let e = err(request_token(&config, &shopping("read:products")));
        assert_endpoint_error(logto, &e, 401, "invalid_client");
        let message = e.to_string();
        for method in ["client_secret_basic", "client_secret_post"] {
            assert!(
                message.contains(method),
                "contract: {config:?}: the message names {method}: {message}"
            );
        }
        assert!(!message.contains(app.1), "{message}");
    }
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn unknown_app_is_400_invalid_client() {
    let logto = common::real_logto::logto();
    let e = err(request_token(
        &config(logto, ("no-such-app-0000000x", "whatever-secret")),
        &shopping("read:products"),
    ));
    assert_endpoint_error(logto, &e, 400, "invalid_client");
    assert!(description(&e).contains("no-such-app-0000000x"), "{e}");
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn unknown_resource_is_400_invalid_target() {
    let logto = common::real_logto::logto();
    let e = err(request_token(
        &config(logto, APP_A),
        &TokenRequest::new("https://unknown.api").scope("read:products"),
    ));
    assert_endpoint_error(logto, &e, 400, "invalid_target");
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn no_resource_and_no_organization_is_400_invalid_target() {
    let logto = common::real_logto::logto();
    let e = err(request_token(
        &config(logto, APP_A),
        &TokenRequest::new("").scope("read:products"),
    ));
    assert_endpoint_error(logto, &e, 400, "invalid_target");
    assert!(description(&e).contains("organization_id"), "{e}");
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn organization_the_app_is_not_in_is_403_access_denied() {
    let logto = common::real_logto::logto();
    let cases = [
        (APP_C, organization("read:orders")),
        // Checked before the resource, too.
        (
            APP_C,
            TokenRequest::new(SHOPPING_API)
                .organization(ORG)
                .scope("read:products"),
        ),
        // An organization that does not exist is answered the same way.
        (
            APP_A,
            TokenRequest::new("")
                .organization("org-does-not-exist")
                .scope("read:orders"),
        ),
    ];
    for (app, request) in cases {
        let e = err(request_token(&config(logto, app), &request));
        assert_endpoint_error(logto, &e, 403, "access_denied");
    }
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn expired_secret_is_400_invalid_request() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let expired = logto.add_expired_secret(&app);
    let e = err(request_token(
        &config(logto, (&app.id, &expired)),
        &shopping("read:products"),
    ));
    assert_endpoint_error(logto, &e, 400, "invalid_request");
    assert!(description(&e).contains("expired"), "{e}");
    // The app's other, unexpired secret still works.
    ok(request_token(
        &config(logto, app.creds()),
        &shopping("read:products"),
    ));
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn unknown_token_path_is_404_naming_that_url() {
    let logto = common::real_logto::logto();
    let url = format!("{}/oidc/no-such-endpoint", logto.endpoint());
    let config = Config::new(&url, APP_A.0, APP_A.1)
        .unwrap()
        .timeout(TIMEOUT);
    let e = err(request_token(&config, &shopping("read:products")));
    let message = e.to_string();
    // Logto's OIDC router answers an unknown route with an OAuth error body.
    assert_eq!(e.status(), Some(404), "{message}");
    assert_eq!(e.oauth_error(), Some("invalid_request"), "{message}");
    assert_eq!(e.logto_code(), Some("oidc.invalid_request"), "{message}");
    assert!(message.contains(&url), "contract: names {url}: {message}");
    let id = e
        .request_id()
        .unwrap_or_else(|| panic!("contract: Logto sent a request id: {message}"));
    assert!(message.contains(&format!("request id {id}")), "{message}");
}

// ---------------------------------------------------------------------------------------
// Scopes granted, in part or not at all

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn partial_grant_keeps_the_granted_scope_and_names_the_missing_one() {
    let logto = common::real_logto::logto();
    let request = shopping("read:products write:products");
    for config in [config(logto, APP_A), config_post(logto, APP_A)] {
        let token = ok(request_token(&config, &request));
        assert_eq!(token.scope(), Some("read:products"));
        assert_claim(&token, "scope", Some("read:products"));
        assert_eq!(token.missing_scopes(&request), ["write:products"]);
    }
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn empty_grant_has_no_scope_and_misses_every_asked_one() {
    let logto = common::real_logto::logto();
    // B has no roles at all.
    let request = shopping("read:products");
    let token = ok(request_token(&config(logto, APP_B), &request));
    assert_logto_token(logto, &token, APP_B.0, SHOPPING_API);
    // Logto leaves `scope` out of the answer and the JWT when it grants none.
    assert_eq!(token.scope(), None);
    assert_claim(&token, "scope", None);
    assert_eq!(token.missing_scopes(&request), ["read:products"]);
    assert_eq!(
        token.scope(),
        None,
        "contract: a JWT without a scope claim granted nothing"
    );

    // Asking for nothing: A is granted nothing either (Logto grants no scope by default).
    let none = TokenRequest::new(SHOPPING_API);
    let token = ok(request_token(&config(logto, APP_A), &none));
    assert_eq!(token.scope(), None);
    assert_claim(&token, "scope", None);
    assert!(token.missing_scopes(&none).is_empty());
    assert_eq!(token.scope(), None);
}

// ---------------------------------------------------------------------------------------
// Organizations

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn organization_token_for_a_member_with_a_role() {
    let logto = common::real_logto::logto();
    let request = organization("read:orders");
    let token = ok(request_token(&config(logto, APP_A), &request));
    let aud = format!("urn:logto:organization:{ORG}");
    assert_logto_token(logto, &token, APP_A.0, &aud);
    assert_eq!(token.scope(), Some("read:orders"));
    assert_claim(&token, "scope", Some("read:orders"));
    assert!(token.missing_scopes(&request).is_empty());

    // With a resource: a token for that API, carrying the organization.
    let request = TokenRequest::new(SHOPPING_API)
        .organization(ORG)
        .scope("read:products");
    let token = ok(request_token(&config(logto, APP_A), &request));
    assert_logto_token(logto, &token, APP_A.0, SHOPPING_API);
    assert_claim(&token, "organization_id", Some(ORG));
    assert_eq!(token.scope(), Some("read:products"));
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn organization_token_for_a_member_without_roles_has_empty_scope() {
    let logto = common::real_logto::logto();
    let request = organization("read:orders");
    let token = ok(request_token(&config(logto, APP_B), &request));
    assert_logto_token(
        logto,
        &token,
        APP_B.0,
        &format!("urn:logto:organization:{ORG}"),
    );
    // Here Logto sends the field, empty.
    assert_eq!(token.scope(), Some(""));
    assert_eq!(token.missing_scopes(&request), ["read:orders"]);
}

// ---------------------------------------------------------------------------------------
// TokenStore

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn token_store_makes_one_request_for_many_gets() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let store = TokenStore::new(config(logto, app.creds()));
    let request = shopping("read:products");
    let first = store.get(&request).unwrap();
    let second = store.get(&request).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_logto_token(logto, &first, &app.id, SHOPPING_API);
    assert_eq!(logto.token_requests(&app.id), 1);

    // Scope order and duplicates make the same key.
    let same = shopping("read:products read:products");
    assert_eq!(
        store.get(&same).unwrap().access_token(),
        first.access_token()
    );
    assert_eq!(logto.token_requests(&app.id), 1);

    // After invalidate, exactly one more request, whoever asks.
    store.invalidate(&request);
    let threads = 16;
    let barrier = Barrier::new(threads);
    let tokens: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    store.get(&request).unwrap().access_token().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_ne!(tokens[0], first.access_token());
    assert_eq!(logto.token_requests(&app.id), 2);
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn token_store_shares_an_error_without_a_storm() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let store = TokenStore::new(config(logto, (&app.id, "not-the-secret")));
    let request = shopping("read:products");
    let first = store.get(&request).unwrap_err();
    assert_endpoint_error(logto, &first, 401, "invalid_client");
    // Within the backoff (1 s) the same error comes back without a request.
    let again = store.get(&request).unwrap_err();
    assert_eq!(again.status(), Some(401));
    assert_eq!(logto.token_requests(&app.id), 1);
}

// ---------------------------------------------------------------------------------------
// The command

/// The command with a cleared environment, configured for `app` at Logto's endpoint
/// (`LOGTO_ENDPOINT`) and the shopping API.
fn command(logto: &Logto, (id, secret): (&str, &str)) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.env_clear()
        .env("LOGTO_ENDPOINT", logto.endpoint())
        .env("LOGTO_APP_ID", id)
        .env("LOGTO_APP_SECRET", secret)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_TIMEOUT", TIMEOUT.as_secs().to_string());
    cmd
}

/// The command with nothing configured at all.
fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.env_clear();
    cmd
}

fn run(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Output {
    cmd.args(args);
    run_bounded(cmd, stdin.map(str::as_bytes), RUN_TIMEOUT)
}

#[track_caller]
fn succeeded(out: &Output) {
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

fn is_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

/// The value of the `name: value` line of `inspect`'s output.
fn line<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// `--format json`'s output as an object.
fn json_object(out: &str) -> json::Object {
    match json::from_str::<Value>(out) {
        Ok(Value::Object(obj)) => obj,
        _ => panic!("not a JSON object: {out}"),
    }
}

/// The single warning line on stderr.
#[track_caller]
fn one_warning(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one warning line: {stderr}");
    assert!(lines[0].contains("warning"), "{stderr}");
    lines[0]
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_formats() {
    let logto = common::real_logto::logto();
    let scope = ["--scope", "read:products"];

    let out = run(
        command(logto, APP_A),
        &[&["token"][..], &scope].concat(),
        None,
    );
    succeeded(&out);
    let token = out.stdout.strip_suffix('\n').expect("one line");
    assert!(is_jwt(token) && !token.contains('\n'), "{token}");
    assert_eq!(out.stderr, "");
    let payload = jwt_part(token, 1);
    assert_eq!(string_field(&payload, "sub").as_deref(), Some(APP_A.0));
    assert_eq!(string_field(&payload, "aud").as_deref(), Some(SHOPPING_API));

    let out = run(
        command(logto, APP_A),
        &[&["token", "--format", "header"][..], &scope].concat(),
        None,
    );
    succeeded(&out);
    let token = out
        .stdout
        .strip_prefix("Authorization: Bearer ")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(is_jwt(token));
    assert_eq!(out.stderr, "");

    let out = run(
        command(logto, APP_A),
        &[&["token", "--format=json"][..], &scope].concat(),
        None,
    );
    succeeded(&out);
    assert_eq!(out.stderr, "");
    let obj = json_object(&out.stdout);
    assert!(is_jwt(&string_field(&obj, "access_token").unwrap()));
    assert_eq!(string_field(&obj, "token_type").as_deref(), Some("Bearer"));
    assert_eq!(
        string_field(&obj, "scope").as_deref(),
        Some("read:products")
    );
    match obj.get("expires_in") {
        Some(Value::Number(Number::U64(n))) => assert!((3590..=3600).contains(n), "{n}"),
        other => panic!("expires_in: {other:?}"),
    }
    assert!(matches!(
        obj.get("expires_at_unix"),
        Some(Value::Number(Number::U64(_)))
    ));
    assert!(string_field(&obj, "expires_at").is_some_and(|t| t.ends_with('Z')));
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_both_auth_methods_and_odd_secrets() {
    let logto = common::real_logto::logto();
    let cases: [((&str, &str), Option<&str>); 6] = [
        (APP_A, None),
        (APP_A, Some("client_secret_post")),
        (APP_C, Some("client_secret_basic")),
        (APP_C, Some("client_secret_post")),
        (APP_E, None),
        (APP_D, Some("client_secret_post")),
    ];
    for (app, method) in cases {
        let mut cmd = command(logto, app);
        if let Some(method) = method {
            cmd.env("LOGTO_AUTH_METHOD", method);
        }
        let out = run(cmd, &["inspect", "--scope", "read:products"], None);
        succeeded(&out);
        assert_eq!(line(&out.stdout, "sub"), Some(app.0), "{method:?}");
        assert_eq!(
            line(&out.stdout, "scope"),
            Some("read:products"),
            "{method:?}"
        );
    }
    // D's secret over Basic: refused, with the advice.
    let out = run(
        command(logto, APP_D),
        &["token", "--auth-method", "client_secret_basic"],
        None,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("invalid_request"), "{}", out.stderr);
    assert!(
        out.stderr.contains("client_secret_post"),
        "contract: {}",
        out.stderr
    );
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_wrong_secret_exits_1() {
    let logto = common::real_logto::logto();
    let secret = "wrong-secret-canary-7c1d";
    let out = run(command(logto, (APP_A.0, secret)), &["token"], None);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("invalid_client"), "{}", out.stderr);
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    assert!(
        out.stderr.contains(&logto.token_url()),
        "contract: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("request id"),
        "contract: {}",
        out.stderr
    );
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_empty_resource_without_organization_goes_to_logto() {
    let logto = common::real_logto::logto();
    let out = run(command(logto, APP_A), &["token", "--resource="], None);
    assert_eq!(
        out.code,
        Some(1),
        "contract: no longer refused as a usage error; Logto answers: {}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("invalid_target"), "{}", out.stderr);
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_partial_grant_warns_and_prints_the_granted_scope() {
    let logto = common::real_logto::logto();
    let args = ["token", "--scope", "read:products write:products"];
    let out = run(command(logto, APP_A), &args, None);
    succeeded(&out);
    assert!(is_jwt(out.stdout.trim()));
    let warning = one_warning(&out.stderr);
    assert!(warning.contains("scope not granted"), "{warning}");
    assert!(warning.contains("write:products"), "{warning}");
    assert!(!warning.contains("read:products"), "{warning}");
    assert!(warning.contains("machine-to-machine role"), "{warning}");
    assert!(
        warning.contains("the Logto console"),
        "contract: Logto's token URL: {warning}"
    );

    let out = run(
        command(logto, APP_A),
        &[&args[..], &["--format", "json"]].concat(),
        None,
    );
    succeeded(&out);
    one_warning(&out.stderr);
    let obj = json_object(&out.stdout);
    assert_eq!(
        string_field(&obj, "scope").as_deref(),
        Some("read:products")
    );
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_empty_grant_warns_and_prints_an_empty_scope() {
    let logto = common::real_logto::logto();
    let args = ["token", "--scope", "read:products"];
    let out = run(command(logto, APP_B), &args, None);
    succeeded(&out);
    assert!(is_jwt(out.stdout.trim()));
    let warning = one_warning(&out.stderr);
    assert!(warning.contains("read:products"), "{warning}");
    assert!(warning.contains("machine-to-machine role"), "{warning}");

    let out = run(
        command(logto, APP_B),
        &[&args[..], &["--format", "json"]].concat(),
        None,
    );
    succeeded(&out);
    one_warning(&out.stderr);
    let obj = json_object(&out.stdout);
    assert_eq!(
        string_field(&obj, "scope").as_deref(),
        Some(""),
        "contract: the granted scope (none), never the asked one: {}",
        out.stdout
    );
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_organization_tokens() {
    let logto = common::real_logto::logto();
    let args = [
        "token",
        "--resource=",
        "--organization",
        ORG,
        "--scope",
        "read:orders",
        "--format",
        "json",
    ];
    // A member with a role.
    let out = run(command(logto, APP_A), &args, None);
    succeeded(&out);
    assert_eq!(out.stderr, "");
    let obj = json_object(&out.stdout);
    assert_eq!(string_field(&obj, "scope").as_deref(), Some("read:orders"));
    let token = string_field(&obj, "access_token").unwrap();
    let payload = jwt_part(&token, 1);
    assert_eq!(
        string_field(&payload, "aud"),
        Some(format!("urn:logto:organization:{ORG}"))
    );

    // A member without roles: "scope":"" and a warning naming the organization role.
    let out = run(command(logto, APP_B), &args, None);
    succeeded(&out);
    let obj = json_object(&out.stdout);
    assert_eq!(string_field(&obj, "scope").as_deref(), Some(""));
    let warning = one_warning(&out.stderr);
    assert!(warning.contains("read:orders"), "{warning}");
    assert!(warning.contains("organization role"), "{warning}");

    // Not a member: 403 access_denied, exit 1.
    let out = run(command(logto, APP_C), &args, None);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("access_denied"), "{}", out.stderr);
    assert!(out.stderr.contains("403"), "{}", out.stderr);

    // inspect fetches one too.
    let out = run(
        command(logto, APP_A),
        &[
            "inspect",
            "--resource=",
            "--organization",
            ORG,
            "--scope",
            "read:orders",
        ],
        None,
    );
    succeeded(&out);
    assert_eq!(
        line(&out.stdout, "aud"),
        Some(format!("urn:logto:organization:{ORG}").as_str())
    );
    assert_eq!(line(&out.stdout, "scope"), Some("read:orders"));
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_inspect_of_a_logto_token() {
    let logto = common::real_logto::logto();
    let token = run(
        command(logto, APP_A),
        &["token", "--scope", "read:products"],
        None,
    );
    succeeded(&token);
    let header = format!("Authorization: Bearer {}", token.stdout);
    for input in [token.stdout.as_str(), header.as_str()] {
        let out = run(bare(), &["inspect", "-"], Some(input));
        succeeded(&out);
        let text = &out.stdout;
        assert!(text.starts_with("signature: not verified"), "{text}");
        assert_eq!(line(text, "iss"), Some(logto.issuer().as_str()), "{text}");
        assert_eq!(line(text, "sub"), Some(APP_A.0), "{text}");
        assert_eq!(line(text, "client_id"), Some(APP_A.0), "{text}");
        assert_eq!(line(text, "aud"), Some(SHOPPING_API), "{text}");
        assert_eq!(line(text, "scope"), Some("read:products"), "{text}");
        assert_eq!(line(text, "organization_id"), None, "{text}");
        let exp = line(text, "exp").expect("exp");
        assert!(exp.ends_with("(in 1h)") || exp.contains("(in 59m"), "{exp}");
        assert!(
            line(text, "iat").is_some_and(|iat| iat.contains('T')),
            "{text}"
        );
        assert!(!text.contains(token.stdout.trim()), "never the token");
        assert_eq!(out.stderr, "");
    }
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_inspect_of_a_token_without_scope() {
    let logto = common::real_logto::logto();
    let token = run(
        command(logto, APP_B),
        &["token", "--scope", "read:products"],
        None,
    );
    succeeded(&token);
    let out = run(bare(), &["inspect", "-"], Some(&token.stdout));
    succeeded(&out);
    assert_eq!(line(&out.stdout, "sub"), Some(APP_B.0), "{}", out.stdout);
    assert_eq!(
        line(&out.stdout, "scope"),
        Some("(none: no scope granted)"),
        "contract: a scope line even without the claim: {}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------
// The token file

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn token_file_five_runs_one_request() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let dir = TempDir::new("real-logto-cache");
    let file = dir.path().join("tokens.json");
    let file = file.to_str().expect("UTF-8 temp path");
    let tokens: Vec<String> = (0..5)
        .map(|i| {
            let mut cmd = command(logto, app.creds());
            cmd.env("LOGTO_SCOPES", "read:products");
            // Both ways of naming the file.
            let out = if i % 2 == 0 {
                run(cmd, &["token", "--cache-file", file], None)
            } else {
                cmd.env("LOGTO_CACHE_FILE", file);
                run(cmd, &["token"], None)
            };
            succeeded(&out);
            assert_eq!(out.stderr, "", "run {i}");
            out.stdout
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert!(is_jwt(tokens[0].trim()));
    assert_eq!(
        jwt_claim_of(&tokens[0], "sub").as_deref(),
        Some(app.id.as_str())
    );
    assert_eq!(logto.token_requests(&app.id), 1);
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn token_file_runs_started_together_make_one_request() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    let dir = TempDir::new("real-logto-cache-together");
    let file = dir.path().join("tokens.json");
    let file = file.to_str().expect("UTF-8 temp path");
    let runs = 6;
    let barrier = Barrier::new(runs);
    let tokens: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..runs)
            .map(|_| {
                s.spawn(|| {
                    let cmd = command(logto, app.creds());
                    barrier.wait();
                    let out = run(
                        cmd,
                        &["token", "--scope", "read:products", "--cache-file", file],
                        None,
                    );
                    succeeded(&out);
                    out.stdout
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(logto.token_requests(&app.id), 1);
}

/// A string claim of the JWT printed by the command.
fn jwt_claim_of(printed: &str, name: &str) -> Option<String> {
    string_field(&jwt_part(printed.trim(), 1), name)
}

// ---------------------------------------------------------------------------------------
// The harness itself

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn harness_counts_each_token_request_once() {
    let logto = common::real_logto::logto();
    let app = logto.new_app(&[SHOP_READER]);
    assert_eq!(logto.token_requests(&app.id), 0);
    let token = ok(request_token(
        &config(logto, app.creds()),
        &shopping("read:products"),
    ));
    assert_eq!(jwt_claim(&token, "sub").as_deref(), Some(app.id.as_str()));
    assert_eq!(logto.token_requests(&app.id), 1);
    // A refused request is a log row too.
    err(request_token(
        &config(logto, (&app.id, "wrong")),
        &shopping("read:products"),
    ));
    assert_eq!(logto.token_requests(&app.id), 2);
    // Roles are what they were made with: none means no scope.
    let bare_app = logto.new_app(&[]);
    let token = ok(request_token(
        &config(logto, bare_app.creds()),
        &shopping("read:products"),
    ));
    assert_eq!(token.scope(), None);
}

// ---------------------------------------------------------------------------------------
// From token to call

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_call_lists_the_seeded_apps() {
    let logto = common::real_logto::logto();
    // A path: Logto's endpoint, the Management API (self-hosted indicator), scope `all`,
    // with no resource or scope set anywhere.
    let mut cmd = command(logto, APP_A);
    cmd.env_remove("LOGTO_RESOURCE");
    let out = run(
        cmd,
        &["call", "/api/applications?page_size=100", "-v"],
        None,
    );
    succeeded(&out);
    for id in ALL_SEEDED {
        assert!(
            out.stdout.contains(&format!(r#""id":"{id}""#)),
            "{id}: {}",
            out.stdout
        );
    }
    assert!(out.stderr.contains("http 200"), "{}", out.stderr);
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_call_prints_logtos_own_refusals() {
    let logto = common::real_logto::logto();
    let path = "/api/applications";
    // A token of the wrong audience: 401 auth.unauthorized, retried once, then printed.
    let out = run(
        command(logto, APP_A),
        &[
            "call",
            path,
            "--resource",
            SHOPPING_API,
            "--scope",
            "read:products",
        ],
        None,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains(r#""code":"auth.unauthorized""#),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("answered http 401"), "{}", out.stderr);
    // No scope `all` (B has no role): 403 auth.forbidden, never retried.
    let out = run(command(logto, APP_B), &["call", path], None);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains(r#""code":"auth.forbidden""#),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("scope not granted: all"),
        "{}",
        out.stderr
    );
    // No bearer token (the caller's own Authorization goes as given).
    let out = run(
        command(logto, APP_A),
        &["call", path, "--header", "Authorization: Basic eDp5"],
        None,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(r#""code":"auth.authorization_token_type_not_supported""#),
        "{}",
        out.stdout
    );
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn bearer_and_call_reach_the_management_api() {
    let logto = common::real_logto::logto();
    let store = Arc::new(TokenStore::new(config(logto, APP_A)));
    let request = TokenRequest::management_api(logto.endpoint());
    let bearer =
        logto_m2m::Bearer::new(Arc::clone(&store), request.clone(), logto.endpoint()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .proxy(None)
        .middleware(bearer)
        .build()
        .into();
    let url = format!("{}/api/applications", logto.endpoint());
    let mut answer = agent.get(&url).call().unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains(APP_B.0)
    );
    // The same through `call`, from the same store: no new token.
    let plain = local_agent(TIMEOUT);
    let answer = store
        .call(&request, |a| {
            plain.get(&url).header("authorization", a).call()
        })
        .unwrap();
    assert_eq!(answer.status(), 200);
}

/// `GET {path}` on the Management API with app A's token: the answer's status, the values of
/// its `Total-Number` and `Link` headers, and its body.
fn management_get(logto: &Logto, path: &str) -> (u16, Option<u64>, Vec<String>, String) {
    let token = ok(request_token(
        &config(logto, APP_A),
        &TokenRequest::management_api(logto.endpoint()),
    ));
    let url = format!("{}{path}", logto.endpoint());
    let mut answer = local_agent(TIMEOUT)
        .get(&url)
        .header("authorization", format!("Bearer {}", token.access_token()))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let header = |name: &str| -> Vec<String> {
        answer
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let total = header("total-number").first().map(|n| n.parse().unwrap());
    let links = header("link");
    let status = answer.status().as_u16();
    (
        status,
        total,
        links,
        answer.body_mut().read_to_string().unwrap(),
    )
}

/// Issue 34: with more users than fit a page, `call '/api/users?page_size=20' --paginate`
/// prints one array of every user, as many as Logto's `Total-Number`, none twice, each as
/// Logto sent it (names with quotes, backslashes and brackets).
///
/// What Logto 1.42 sends, recorded here: `Total-Number: 45` and one `Link` header per
/// relation, `first`, `prev` (after page 1), `last` and `next` (before the last page), in
/// the form `<http://127.0.0.1:PORT/users?page_size=20&page=2>; rel="next"`: without the
/// `/api` its Management API is under (that url answers 500), which `--paginate` reads only
/// the page from. No list endpoint of 1.42 caps its count (the middleware can, none asks).
#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn command_call_paginates_every_user() {
    let logto = common::real_logto::logto();
    let token = ok(request_token(
        &config(logto, APP_A),
        &TokenRequest::management_api(logto.endpoint()),
    ));
    let agent = local_agent(TIMEOUT);
    let tag = format!("pg{}", std::process::id());
    for i in 0..45 {
        let body = format!(r#"{{"username":"{tag}u{i}","name":"Q \"quoted\" \\ [{i}], {{x}}"}}"#);
        let answer = agent
            .post(format!("{}/api/users", logto.endpoint()))
            .header("authorization", format!("Bearer {}", token.access_token()))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(answer.status(), 200, "user {i}");
    }
    let (status, total, links, first_page) = management_get(logto, "/api/users?page_size=20");
    assert_eq!(status, 200);
    assert!(total.is_some_and(|n| n >= 45), "{total:?}");
    assert!(
        links.iter().any(|l| l.ends_with("rel=\"next\"")),
        "Logto's links: {links:?}"
    );

    // Other tests of this binary may add users meanwhile: a run counts when Logto's total
    // is the same before and after it.
    let mut attempts = 0;
    let (out, total) = loop {
        attempts += 1;
        let (_, before, _, _) = management_get(logto, "/api/users?page_size=1");
        let mut cmd = command(logto, APP_A);
        cmd.env_remove("LOGTO_RESOURCE");
        let out = run(
            cmd,
            &["call", "/api/users?page_size=20", "--paginate", "-v"],
            None,
        );
        let (_, after, _, _) = management_get(logto, "/api/users?page_size=1");
        if before == after || attempts == 3 {
            break (out, after.unwrap());
        }
    };
    succeeded(&out);
    let pages = total.div_ceil(20) as usize;
    assert_eq!(
        out.stderr.matches(": http 200").count(),
        pages,
        "{}",
        out.stderr
    );
    let Ok(Value::Array(users)) = json::from_str::<Value>(&out.stdout) else {
        panic!("not one JSON array: {}", out.stdout);
    };
    assert_eq!(users.len() as u64, total, "as many as Total-Number");
    let field = |user: &Value, name: &str| match user {
        Value::Object(o) => match o.get(name) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        },
        _ => panic!("not a user: {}", json::to_string(user)),
    };
    let mut ids: Vec<String> = users.iter().map(|u| field(u, "id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), users.len(), "a user printed twice");
    for i in 0..45 {
        let name = format!("{tag}u{i}");
        let found: Vec<&Value> = users
            .iter()
            .filter(|u| field(u, "username") == name)
            .collect();
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(
            field(found[0], "name"),
            format!("Q \"quoted\" \\ [{i}], {{x}}")
        );
    }
    // Each item's bytes as Logto sent them: the first page's body is the array's start.
    let first_items = first_page.trim().trim_end_matches(']');
    assert!(out.stdout.starts_with(first_items), "{}", out.stdout);
}
