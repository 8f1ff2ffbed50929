//! Self-hosted Logto as it is deployed (issue 33): the real Logto behind nginx at
//! `https://logto-<pid>.m2m.test:<port>`, whose certificate a CA made for the run signed,
//! reached through tinyproxy with a user and password (`tests/common/self_hosted.rs`).
//!
//! The command (`token`, `call`, `verify`, `token --impersonate`) with `LOGTO_CA_FILE` and
//! `HTTPS_PROXY`, as a cron job runs it; `NO_PROXY`; no CA; a wrong proxy password; and the
//! library's `Config` and `Verifier` with a CA and a proxy. Each test has a tinyproxy of its
//! own, whose log shows the `CONNECT`s that test made.
//!
//! Runs only with `LOGTO_REAL=1` (`LOGTO_REAL=1 cargo test --test self_hosted`), as root
//! (a line in `/etc/hosts` names the host), with `nginx-light` and `tinyproxy` installed
//! (`.ci/run` installs them); one Logto and one nginx for the binary, stopped when it ends.

#![cfg(any(feature = "rustls", feature = "native-tls"))]

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use common::SHOPPING_API;
use common::real_logto::{
    APP_A, App, Logto, MANAGEMENT_ROLE, Output, field, jwt_claims, run_bounded,
};
use common::self_hosted::{PROXY_PASSWORD, PROXY_USER, SelfHosted, Tinyproxy, self_hosted};
use logto_m2m::{
    Config, ErrorKind, Token, TokenRequest, TokenStore, Verifier, VerifyErrorKind, request_token,
};
use miniserde::json::{self, Value};

const TIMEOUT: Duration = Duration::from_secs(20);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A test against the arrangement: ignored, with the reason and how to run it, unless the
/// build saw `LOGTO_REAL=1` (build.rs sets `cfg(logto_real)`).
macro_rules! real_test {
    (fn $name:ident() $body:block) => {
        #[test]
        #[cfg_attr(
            not(logto_real),
            ignore = "needs the real Logto, nginx and tinyproxy, as root: LOGTO_REAL=1"
        )]
        fn $name() $body
    };
}

/// Under `CI=true` these tests must run, not be ignored (as for `tests/real_logto/`).
#[test]
fn ci_runs_the_self_hosted_tests() {
    assert!(
        cfg!(logto_real) || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true without LOGTO_REAL=1: the self-hosted tests were ignored; run them with \
         `LOGTO_REAL=1 cargo test --test self_hosted`"
    );
}

/// `logto-m2m args...` with only `env` in its environment (no proxy of the developer's).
fn logto_m2m(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.env_clear().args(args);
    for (name, value) in env {
        cmd.env(name, value);
    }
    run_bounded(cmd, None, RUN_TIMEOUT)
}

/// What a cron job behind the company's proxy sets: app A at the https name, the CA, the
/// proxy with its user and password.
fn cron_env<'a>(arr: &'a SelfHosted, proxy_url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("LOGTO_ENDPOINT", arr.endpoint.as_str()),
        ("LOGTO_APP_ID", APP_A.0),
        ("LOGTO_APP_SECRET", APP_A.1),
        ("LOGTO_RESOURCE", SHOPPING_API),
        ("LOGTO_SCOPES", "read:products"),
        ("LOGTO_TIMEOUT", "20"),
        ("LOGTO_CA_FILE", arr.ca_file.to_str().unwrap()),
        ("HTTPS_PROXY", proxy_url),
    ]
}

/// `env` without `name`, then with `name=value` when given.
fn with<'a>(
    mut env: Vec<(&'a str, &'a str)>,
    name: &'a str,
    value: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    env.retain(|(n, _)| *n != name);
    if let Some(value) = value {
        env.push((name, value));
    }
    env
}

#[track_caller]
fn succeeded(out: &Output) {
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains(PROXY_PASSWORD), "{out:?}");
}

/// Every CONNECT the proxy saw was to nginx, by its name; how many.
#[track_caller]
fn connects_to_nginx(proxy: &Tinyproxy, arr: &SelfHosted) -> usize {
    let connects = proxy.connects();
    assert!(
        connects.iter().all(|c| *c == arr.authority()),
        "{connects:?}\n{}",
        proxy.log_text()
    );
    connects.len()
}

// ---------------------------------------------------------------------------------------
// The command, as a cron job runs it

real_test! {
    fn token_through_the_proxy_trusting_the_ca() {
        let arr = self_hosted();
        let proxy = Tinyproxy::start(arr.port);
        let url = proxy.url();
        let env = cron_env(arr, &url);
        let out = logto_m2m(&["token"], &env);
        succeeded(&out);
        let claims = jwt_claims(&out.stdout);
        // Logto's issuer is the name nginx serves it at.
        assert_eq!(field(&claims, "iss"), format!("{}/oidc", arr.endpoint));
        assert_eq!(field(&claims, "aud"), SHOPPING_API);
        assert_eq!(proxy.connects(), [arr.authority()], "{}", proxy.log_text());

        // --ca-file stands in for LOGTO_CA_FILE; SSL_CERT_FILE names the roots when neither
        // is set, as for curl and OpenSSL.
        let ca = arr.ca_file.to_str().unwrap();
        let without_ca = with(env.clone(), "LOGTO_CA_FILE", None);
        succeeded(&logto_m2m(&["token", "--ca-file", ca], &without_ca));
        succeeded(&logto_m2m(&["token"], &with(without_ca, "SSL_CERT_FILE", Some(ca))));
        assert_eq!(connects_to_nginx(&proxy, arr), 3);
    }
}

real_test! {
    fn call_lists_the_applications_through_the_proxy() {
        let arr = self_hosted();
        let proxy = Tinyproxy::start(arr.port);
        let url = proxy.url();
        let out = logto_m2m(&["call", "/api/applications", "-v"], &cron_env(arr, &url));
        succeeded(&out);
        assert!(out.stdout.contains(APP_A.0), "{out:?}");
        assert!(out.stderr.contains("http 200"), "{out:?}");
        // One tunnel for the Management API token, one for the call itself: the call goes
        // out on the config's roots and proxy too.
        assert_eq!(connects_to_nginx(&proxy, arr), 2, "{}", proxy.log_text());
    }
}

real_test! {
    fn verify_fetches_the_keys_through_the_proxy() {
        let arr = self_hosted();
        let token = library_token(arr);
        let proxy = Tinyproxy::start(arr.port);
        let url = proxy.url();
        let env = cron_env(arr, &url);
        let args = ["verify", "--resource", SHOPPING_API, "--scope", "read:products"];
        let out = logto_m2m(&[&args[..], &[token.access_token()]].concat(), &env);
        succeeded(&out);
        let claims: Value = json::from_str(&out.stdout).expect("claims as JSON");
        assert_eq!(field(&claims, "iss"), format!("{}/oidc", arr.endpoint));
        assert_eq!(proxy.connects(), [arr.authority()], "{}", proxy.log_text());
        // --ca-file, for verify too.
        let without_ca = with(env, "LOGTO_CA_FILE", None);
        let ca = arr.ca_file.to_str().unwrap();
        let out = logto_m2m(
            &[&args[..], &["--ca-file", ca, token.access_token()]].concat(),
            &without_ca,
        );
        succeeded(&out);
        assert_eq!(connects_to_nginx(&proxy, arr), 2);
    }
}

real_test! {
    fn impersonation_through_the_proxy() {
        let arr = self_hosted();
        let user = user(&arr.logto);
        let app = exchange_app(&arr.logto);
        let proxy = Tinyproxy::start(arr.port);
        let url = proxy.url();
        let _alone = impersonating_alone();
        let env = with(cron_env(arr, &url), "LOGTO_APP_ID", Some(&app.id));
        let env = with(env, "LOGTO_APP_SECRET", Some(&app.secret));
        let before = subject_tokens_served(&arr.served());
        let out = logto_m2m(&["token", "--impersonate", user], &env);
        succeeded(&out);
        let claims = jwt_claims(&out.stdout);
        assert_eq!(field(&claims, "sub"), *user);
        assert_eq!(field(&claims, "client_id"), app.id);
        assert_eq!(field(&claims, "iss"), format!("{}/oidc", arr.endpoint));
        // The Management API's subject token came through nginx, and with no other way
        // there, through the proxy.
        let served = arr.served();
        assert_eq!(subject_tokens_served(&served), before + 1, "{served:?}");
        assert!(connects_to_nginx(&proxy, arr) >= 1, "{}", proxy.log_text());
    }
}

real_test! {
    fn no_proxy_sends_them_straight() {
        let arr = self_hosted();
        let user = user(&arr.logto);
        let app = exchange_app(&arr.logto);
        let token = library_token(arr);
        let proxy = Tinyproxy::start(arr.port);
        let url = proxy.url();
        let env = with(cron_env(arr, &url), "NO_PROXY", Some(&arr.name));
        let served = arr.served().len();
        succeeded(&logto_m2m(&["token"], &env));
        let out = logto_m2m(&["call", "/api/applications"], &env);
        succeeded(&out);
        assert!(out.stdout.contains(APP_A.0), "{out:?}");
        succeeded(&logto_m2m(
            &["verify", "--resource", SHOPPING_API, token.access_token()],
            &env,
        ));
        let as_app = with(env.clone(), "LOGTO_APP_ID", Some(&app.id));
        let as_app = with(as_app, "LOGTO_APP_SECRET", Some(&app.secret));
        let alone = impersonating_alone();
        succeeded(&logto_m2m(&["token", "--impersonate", user], &as_app));
        drop(alone);
        assert!(proxy.connects().is_empty(), "{}", proxy.log_text());
        // nginx served them all: token; token and call; jwks; management token, subject
        // token and exchange (parallel tests may add theirs).
        assert!(arr.served().len() >= served + 7, "{:?}", &arr.served()[served..]);
    }
}

real_test! {
    fn without_a_ca_the_error_says_to_set_logto_ca_file() {
        let arr = self_hosted();
        let token = library_token(arr);
        let proxy = Tinyproxy::start(arr.port);
        let url = proxy.url();
        let env = with(cron_env(arr, &url), "LOGTO_CA_FILE", None);
        let verify = ["verify", "--resource", SHOPPING_API, token.access_token()];
        for args in [&["token"][..], &["call", "/api/applications"], &verify] {
            let out = logto_m2m(args, &env);
            assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
            // The last line: the connection's failure, then what to set.
            let last = out.stderr.trim_end().lines().last().unwrap_or("");
            assert!(
                last.ends_with(
                    "; the server's certificate is not signed by a ca of the built-in roots: \
                     if a private ca signed it, set LOGTO_CA_FILE to the ca's PEM file (or \
                     give --ca-file <path>)"
                ),
                "{args:?}: {out:?}"
            );
            assert!(last.contains(&arr.authority()), "{out:?}");
            assert!(!out.stderr.contains(APP_A.1) && !out.stderr.contains(PROXY_PASSWORD));
        }
        // Another CA in the file: the error names the file, which replaced the built-in
        // roots; in SSL_CERT_FILE, it says to set LOGTO_CA_FILE.
        let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/tls/ca.pem");
        let other = other.to_str().unwrap();
        let out = logto_m2m(&["token"], &with(env.clone(), "LOGTO_CA_FILE", Some(other)));
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.trim_end().ends_with(&format!(
                "; the server's certificate is not signed by a ca in LOGTO_CA_FILE ({other}), \
                 whose cas replace the built-in roots"
            )),
            "{out:?}"
        );
        let out = logto_m2m(&["token"], &with(env, "SSL_CERT_FILE", Some(other)));
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.trim_end().ends_with(&format!(
                "; the server's certificate is not signed by a ca in SSL_CERT_FILE ({other}): \
                 set LOGTO_CA_FILE to the PEM file of the ca that signed it"
            )),
            "{out:?}"
        );
    }
}

real_test! {
    fn a_wrong_proxy_password_fails_with_the_proxys_status_and_without_the_password() {
        let arr = self_hosted();
        let token = library_token(arr);
        let proxy = Tinyproxy::start(arr.port);
        let wrong = proxy.url_with(PROXY_USER, "wrong-pw-canary");
        let env = cron_env(arr, &wrong);
        let verify = ["verify", "--resource", SHOPPING_API, token.access_token()];
        let proxy_at = format!("proxy 127.0.0.1:{} (from HTTPS_PROXY)", proxy.port);
        for args in [&["token"][..], &["call", "/api/applications"], &verify] {
            let out = logto_m2m(args, &env);
            assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
            // tinyproxy answers a wrong password with 401 (407 is for none).
            assert!(
                out.stderr.contains(&format!(
                    "{proxy_at} answered http 401 to CONNECT {}: it refused the user and \
                     password in HTTPS_PROXY",
                    arr.authority()
                )),
                "{args:?}: {out:?}"
            );
            assert!(!out.stderr.contains("wrong-pw-canary"), "{out:?}");
            assert!(!out.stdout.contains("wrong-pw-canary"), "{out:?}");
        }
        // No user and password at all: the proxy's 407.
        let none = proxy.url_without_credentials();
        let out = logto_m2m(&["token"], &cron_env(arr, &none));
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "{proxy_at} answered http 407 to CONNECT {}: it wants a user and password",
                arr.authority()
            )),
            "{out:?}"
        );
        // The proxy was asked each time, and let nothing through.
        assert_eq!(connects_to_nginx(&proxy, arr), 4);
    }
}

// ---------------------------------------------------------------------------------------
// The library

real_test! {
    fn config_and_verifier_with_the_ca_and_the_proxy() {
        let arr = self_hosted();
        let proxy = Tinyproxy::start(arr.port);
        let ca = arr.ca_pem();
        let config = Config::logto(&arr.endpoint, APP_A.0, APP_A.1)
            .unwrap()
            .timeout(TIMEOUT)
            .root_certificates_pem(&ca)
            .unwrap()
            .proxy(&proxy.url())
            .unwrap();
        let request = TokenRequest::new(SHOPPING_API).scope("read:products");
        let token = request_token(&config, &request).unwrap();
        assert_eq!(connects_to_nginx(&proxy, arr), 1);

        let verifier = Verifier::logto(&arr.endpoint)
            .unwrap()
            .root_certificates_pem(&ca)
            .unwrap()
            .proxy(&proxy.url())
            .unwrap();
        let claims = verifier
            .verify(token.access_token(), SHOPPING_API, &["read:products"])
            .unwrap();
        assert_eq!(claims.iss.as_deref(), Some(format!("{}/oidc", arr.endpoint).as_str()));
        assert_eq!(connects_to_nginx(&proxy, arr), 2);

        // The config's agent: the API call on the same roots and proxy.
        let agent = config.agent().unwrap();
        let store = TokenStore::new(config);
        let management = TokenRequest::management_api(&arr.endpoint);
        let mut answer = store
            .call(&management, |authorization| {
                agent
                    .get(&format!("{}/api/applications", arr.endpoint))
                    .header("authorization", authorization)
                    .call()
            })
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.body_mut().read_to_string().unwrap().contains(APP_A.0));
        assert!(connects_to_nginx(&proxy, arr) >= 3);

        // Without the CA the keys can't be fetched; a wrong password is the proxy's 401.
        let untrusting = Verifier::logto(&arr.endpoint).unwrap().proxy(&proxy.url()).unwrap();
        let e = untrusting.verify(token.access_token(), SHOPPING_API, &[]).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Verify(VerifyErrorKind::Jwks { .. })), "{e}");
        let refused = Verifier::logto(&arr.endpoint)
            .unwrap()
            .root_certificates_pem(&ca)
            .unwrap()
            .proxy(&proxy.url_with(PROXY_USER, "wrong-pw-canary"))
            .unwrap();
        let e = refused.verify(token.access_token(), SHOPPING_API, &[]).unwrap_err();
        let message = e.to_string();
        assert!(matches!(e.kind(), ErrorKind::Verify(VerifyErrorKind::Jwks { .. })), "{e}");
        assert!(
            message.contains(&format!("proxy 127.0.0.1:{} answered http 401", proxy.port)),
            "{message}"
        );
        assert!(!message.contains("wrong-pw-canary"), "{message}");
    }
}

// ---------------------------------------------------------------------------------------
// Helpers on the arrangement's Logto (its Management API, reached directly)

/// A token of app A for the shopping API, through the direct endpoint (no proxy, no TLS):
/// its issuer is the public one all the same.
fn library_token(arr: &SelfHosted) -> Token {
    let config = Config::logto(arr.logto.endpoint(), APP_A.0, APP_A.1)
        .unwrap()
        .timeout(TIMEOUT);
    let token = request_token(
        &config,
        &TokenRequest::new(SHOPPING_API).scope("read:products"),
    )
    .unwrap();
    common::assert_claim(&token, "iss", Some(&format!("{}/oidc", arr.endpoint)));
    token
}

/// A user with a role granting `read:products`, made once: its id.
fn user(logto: &Logto) -> &'static String {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let role = logto.new_user_role(TIMEOUT);
        logto.new_user("self_hosted_user", "S3lf-Hosted-Passw0rd!", &role, TIMEOUT)
    })
}

/// A new app with Management API access and token exchange turned on.
fn exchange_app(logto: &Logto) -> App {
    let app = logto.new_app(&[MANAGEMENT_ROLE, "shop-reader"]);
    logto.allow_token_exchange(&app, TIMEOUT);
    app
}

/// Held while a test impersonates, so that a test counting the subject tokens nginx
/// served counts its own only: nginx's log can't tell whose a request was, and the
/// harness runs the tests in parallel.
fn impersonating_alone() -> MutexGuard<'static, ()> {
    static IMPERSONATING: Mutex<()> = Mutex::new(());
    // A test that failed while holding it has already failed; the rest may go on.
    IMPERSONATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `POST /api/subject-tokens` among the lines of nginx's log, `served`.
fn subject_tokens_served(served: &[String]) -> usize {
    served
        .iter()
        .filter(|line| line.contains("\"POST /api/subject-tokens "))
        .count()
}

// ---------------------------------------------------------------------------------------
// Without the arrangement

#[test]
fn a_ca_file_that_cannot_be_used_is_a_usage_error_naming_it() {
    let env = [
        ("LOGTO_ENDPOINT", "https://auth.example"),
        ("LOGTO_APP_ID", "app"),
        ("LOGTO_APP_SECRET", "secret-canary"),
    ];
    let dir = common::TempDir::new("ca-file");
    let missing = dir.path().join("no-such.pem");
    let missing = missing.to_str().unwrap();
    let out = logto_m2m(&["token", "--ca-file", missing], &env);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("--ca-file {missing}: cannot read")),
        "{out:?}"
    );
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "secret-canary\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let env_ca = [&env[..], &[("LOGTO_CA_FILE", not_pem)]].concat();
    for args in [
        &["token"][..],
        &["verify", "--resource", SHOPPING_API, "x.y.z"],
    ] {
        let out = logto_m2m(args, &env_ca);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "environment variable LOGTO_CA_FILE ({not_pem}): root certificates: no pem \
                 certificate found"
            )),
            "{out:?}"
        );
        assert!(!out.stderr.contains("secret-canary"), "{out:?}");
    }
    // The help says whether the file adds to the built-in roots or replaces them.
    let out = logto_m2m(&["call", "--help"], &[]);
    assert!(out.stdout.contains("--ca-file <path>"), "{out:?}");
    assert!(
        out.stdout.contains("instead of the built-in roots"),
        "{out:?}"
    );
}
