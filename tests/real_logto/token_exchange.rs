//! Acting for a user through Logto's token exchange (issue 26): impersonation, a personal
//! access token and delegation, through the library and the command.
//!
//! Part of the `real_logto` test binary: the real-Logto tests run only with `LOGTO_REAL=1`
//! (`LOGTO_REAL=1 cargo test --test real_logto token_exchange`), one Logto for the binary,
//! with a fresh database. Each test makes
//! apps of its own (`Logto::new_app`) and turns token exchange on for them through the
//! Management API, as an admin would in the console; the user, its role with
//! `read:products` and its personal access token are made once, through the Management
//! API too. The tests at the top need no server.

use super::{err, ok};
use crate::common;
#[cfg(feature = "redis")]
use crate::redis_server;

use std::process::Command;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::Duration;

use common::real_logto::{App, Logto, MANAGEMENT_ROLE, Output, field, jwt_claims, run_bounded};
use common::{SHOPPING_API, TempDir, assert_claim};
use logto_m2m::{Config, ErrorKind, Secret, Token, TokenRequest, TokenStore, request_token};
use miniserde::json;

const TIMEOUT: Duration = Duration::from_secs(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Without a server

#[test]
fn debug_and_keys_never_hold_the_token() {
    let pat = "pat_canaryCANARY0123456789";
    let request = TokenRequest::new(SHOPPING_API)
        .scope("read:products")
        .personal_access_token(pat)
        .actor_token("actor-canary-token");
    let shown = format!("{request:?}");
    assert!(!shown.contains("canary"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    // Each subject is a request of its own, for the cache; the same subject is the same.
    let plain = TokenRequest::new(SHOPPING_API).scope("read:products");
    let by_pat = plain.clone().personal_access_token(pat);
    assert_ne!(plain, by_pat);
    assert_eq!(by_pat, plain.clone().personal_access_token(pat.to_owned()));
    assert_ne!(by_pat, plain.clone().personal_access_token("pat_other"));
    assert_ne!(by_pat, plain.clone().user_access_token(pat));
    assert_ne!(
        plain.clone().impersonate("u1"),
        plain.clone().impersonate("u2")
    );
    assert_ne!(
        plain.clone().impersonate("u1"),
        plain.clone().impersonate("u1").impersonation_context("{}")
    );
}

#[test]
fn subject_mistakes_are_config_errors_before_anything_is_sent() {
    // Port 9 (discard): nothing is sent anyway, the request stops before.
    let config = Config::logto("http://127.0.0.1:9", "app", "secret").unwrap();
    let ask = |r: TokenRequest| request_token(&config, &r).unwrap_err();
    let r = TokenRequest::new(SHOPPING_API);
    let dir = TempDir::new("exchange-config");
    let missing = dir.path().join("no-pat");
    let e = ask(r.clone().personal_access_token(Secret::file(&missing)));
    assert!(matches!(e.kind(), ErrorKind::Config { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "invalid config: personal access token file {}: cannot read",
            missing.display()
        )),
        "{e}"
    );
    let e = ask(r.clone().impersonate("u1").impersonation_context("[1]"));
    assert_eq!(
        e.to_string(),
        "invalid config: the impersonation context is not a json object"
    );
    let e = ask(r.clone().impersonation_context("{}"));
    assert!(e.to_string().contains("needs a subject"), "{e}");
    let e = ask(r.clone().personal_access_token(""));
    assert_eq!(
        e.to_string(),
        "invalid config: the personal access token is empty"
    );
    let other = Config::new("http://127.0.0.1:9/token", "app", "secret").unwrap();
    let e = request_token(&other, &r.clone().impersonate("u1")).unwrap_err();
    assert!(
        e.to_string()
            .contains("impersonation needs a logto endpoint"),
        "{e}"
    );
}

#[test]
fn command_flags_that_do_not_go_together_are_usage_errors() {
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logto-m2m"));
        cmd.env_clear()
            .env("LOGTO_ENDPOINT", "http://127.0.0.1:9")
            .env("LOGTO_APP_ID", "app")
            .env("LOGTO_APP_SECRET", "secret")
            .args(args);
        run_bounded(cmd, None, RUN_TIMEOUT)
    };
    let out = run(&["token", "--impersonate", "u1", "--pat-file", "p"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("give one of --impersonate"), "{out:?}");
    let out = run(&["token", "--context", "{}"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--context goes with --impersonate"),
        "{out:?}"
    );
    let out = run(&["token", "--impersonate", "u1", "--context", "nope"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("is not a json object"), "{out:?}");
    let out = run(&["token", "--help"]);
    for flag in [
        "--impersonate",
        "--context",
        "--pat-file",
        "--subject-token-file",
    ] {
        assert!(out.stdout.contains(flag), "{}", out.stdout);
    }
}

// ---------------------------------------------------------------------------------------
// The real Logto: setup

/// A test against the real Logto: ignored, with the reason and how to run it, unless the
/// build saw `LOGTO_REAL=1` (build.rs sets `cfg(logto_real)`).
macro_rules! real_test {
    (fn $name:ident() $body:block) => {
        #[test]
        #[cfg_attr(
            not(logto_real),
            ignore = "needs the real Logto: LOGTO_REAL=1"
        )]
        fn $name() $body
    };
}

/// The user the tokens act for, with a user role granting `read:products`, and its PAT.
struct User {
    id: String,
    pat: String,
}

/// The user, made once per test binary.
fn user(logto: &Logto) -> &'static User {
    &users(logto)[0]
}

/// Three users, each with the user role granting `read:products` and a PAT of its own,
/// made once per test binary.
fn users(logto: &Logto) -> &'static [User; 3] {
    static USERS: OnceLock<[User; 3]> = OnceLock::new();
    USERS.get_or_init(|| {
        let role = logto.new_user_role(TIMEOUT);
        ["exchange_user", "exchange_user_2", "exchange_user_3"].map(|name| {
            let id = logto.new_user(name, "Exch4nge-Passw0rd!", &role, TIMEOUT);
            let (status, pat) = logto.management(
                "POST",
                &format!("/api/users/{id}/personal-access-tokens"),
                r#"{"name":"cron"}"#,
                TIMEOUT,
            );
            assert_eq!(status, 201, "{}", json::to_string(&pat));
            User {
                id,
                pat: field(&pat, "value"),
            }
        })
    })
}

/// A new app with `roles` and token exchange turned on (`allow`) or left off.
fn app(logto: &Logto, roles: &[&str], allow: bool) -> App {
    let app = logto.new_app(roles);
    if allow {
        logto.allow_token_exchange(&app, TIMEOUT);
    }
    app
}

fn config(logto: &Logto, app: &App) -> Config {
    Config::logto(logto.endpoint(), &app.id, &app.secret)
        .unwrap()
        .timeout(TIMEOUT)
}

/// A single-use subject token for `user_id`, made by app A as the library would.
fn subject_token(logto: &Logto, user_id: &str) -> String {
    let (status, answer) = logto.management(
        "POST",
        "/api/subject-tokens",
        &format!(r#"{{"userId":"{user_id}"}}"#),
        TIMEOUT,
    );
    assert_eq!(status, 201, "{}", json::to_string(&answer));
    field(&answer, "subjectToken")
}

/// Logto's log of token exchanges by `app_id` (`ExchangeTokenBy.TokenExchange` rows),
/// read until two reads 300 ms apart agree: logs may land a moment after the answer.
fn exchanges(logto: &Logto, app_id: &str, result: &str) -> u64 {
    let sql = format!(
        "select count(*) from logs where key = 'ExchangeTokenBy.TokenExchange' \
         and payload->>'applicationId' = '{app_id}' and payload->>'result' = '{result}'"
    );
    let read = || logto.psql(&sql).trim().parse::<u64>().unwrap();
    let mut last = read();
    for _ in 0..15 {
        thread::sleep(Duration::from_millis(300));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// The token acts for `user` and was issued to `app`, with the user's scope only.
#[track_caller]
fn for_user(token: &Token, user: &User, app: &App) {
    assert_claim(token, "sub", Some(&user.id));
    assert_claim(token, "client_id", Some(&app.id));
    assert_claim(token, "aud", Some(SHOPPING_API));
    assert_eq!(token.scope(), Some("read:products"));
}

fn shopping() -> TokenRequest {
    TokenRequest::new(SHOPPING_API).scope("read:products")
}

// ---------------------------------------------------------------------------------------
// The real Logto: the three subjects

real_test! {
    fn impersonation_pat_and_delegation_act_for_the_user() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[MANAGEMENT_ROLE], true);
        let config = config(logto, &app);

        let impersonated = ok(request_token(
            &config,
            &shopping()
                .impersonate(&user.id)
                .impersonation_context(r#"{"ticket":"T-1024"}"#),
        ));
        for_user(&impersonated, user, &app);

        let dir = TempDir::new("exchange-pat");
        let pat_file = dir.path().join("pat");
        std::fs::write(&pat_file, format!("{}\n", user.pat)).unwrap();
        for request in [
            shopping().personal_access_token(user.pat.as_str()),
            shopping().personal_access_token(Secret::file(&pat_file)),
        ] {
            for_user(&ok(request_token(&config, &request)), user, &app);
        }

        // Delegation: a user's JWT access token as the subject. Without a browser, the user's
        // token is the one impersonation gave (a JWT Logto issued for the user).
        let delegated = ok(request_token(
            &config,
            &shopping().user_access_token(impersonated.access_token()),
        ));
        for_user(&delegated, user, &app);
        assert_eq!(exchanges(logto, &app.id, "Success"), 4);
    }
}

real_test! {
    fn a_store_makes_one_exchange_however_many_threads_ask() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[MANAGEMENT_ROLE], true);
        let store = Arc::new(TokenStore::new(config(logto, &app)));
        let request = shopping().impersonate(&user.id);
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, request, barrier) = (store.clone(), request.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.get(&request).map(|t| t.access_token().to_owned())
                })
            })
            .collect();
        let tokens: Vec<String> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert!(tokens.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(exchanges(logto, &app.id, "Success"), 1);
        // A refresh asks for a new subject token (they are single use): Logto would refuse
        // the old one with invalid_grant.
        store.invalidate(&request);
        let refreshed = store.get(&request).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(refreshed.access_token(), tokens[0]);
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
        // Another subject is another token.
        let by_pat = store
            .get(&shopping().personal_access_token(user.pat.as_str()))
            .unwrap();
        assert_ne!(by_pat.access_token(), refreshed.access_token());
        assert_eq!(exchanges(logto, &app.id, "Success"), 3);
    }
}

// ---------------------------------------------------------------------------------------
// The real Logto: the command

fn command(logto: &Logto, app: &App) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.env_clear()
        .env("LOGTO_ENDPOINT", logto.endpoint())
        .env("LOGTO_APP_ID", &app.id)
        .env("LOGTO_APP_SECRET", &app.secret)
        .env("LOGTO_TIMEOUT", TIMEOUT.as_secs().to_string());
    cmd
}

fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args);
    run_bounded(cmd, None, RUN_TIMEOUT)
}

/// `logto-m2m <args>` as `app`, for the shopping API's `read:products`.
fn run_shopping(logto: &Logto, app: &App, args: &[&str]) -> Output {
    let shopping = ["--resource", SHOPPING_API, "--scope", "read:products"];
    run(command(logto, app), &[args, &shopping].concat())
}

real_test! {
    fn three_runs_with_a_token_file_make_one_exchange_and_keep_no_user_token() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[MANAGEMENT_ROLE], true);
        let dir = TempDir::new("exchange-cli");
        let cache = dir.path().join("tokens.json");
        let cache = cache.to_str().unwrap();
        let pat_file = dir.path().join("pat");
        std::fs::write(&pat_file, &user.pat).unwrap();
        let pat_file = pat_file.to_str().unwrap();

        let mut printed = Vec::new();
        for _ in 0..3 {
            let out = run_shopping(
                logto,
                &app,
                &[
                    "token",
                    "--impersonate",
                    &user.id,
                    "--context",
                    r#"{"job":"nightly"}"#,
                    "--cache-file",
                    cache,
                ],
            );
            assert_eq!(out.code, Some(0), "{out:?}");
            printed.push(out.stdout);
        }
        assert!(printed.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(exchanges(logto, &app.id, "Success"), 1);

        for _ in 0..3 {
            let out = run_shopping(
                logto,
                &app,
                &["token", "--pat-file", pat_file, "--cache-file", cache, "--format", "json"],
            );
            assert_eq!(out.code, Some(0), "{out:?}");
            assert!(
                out.stdout.contains("\"scope\":\"read:products\""),
                "{out:?}"
            );
        }
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);

        // Delegation from a file: the user's JWT (from an impersonation, without a browser).
        let user_token = ok(request_token(
            &config(logto, &app),
            &shopping().impersonate(&user.id),
        ));
        let token_file = dir.path().join("user-token");
        std::fs::write(&token_file, user_token.access_token()).unwrap();
        let out = run_shopping(
            logto,
            &app,
            &["token", "--subject-token-file", token_file.to_str().unwrap(), "--cache-file", cache],
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_ne!(out.stdout.trim(), user_token.access_token());
        assert_eq!(exchanges(logto, &app.id, "Success"), 4);

        let file = std::fs::read_to_string(cache).unwrap();
        assert!(!file.contains(&user.pat), "the pat is in the token file");
        assert!(!file.contains("pat_"), "{file}");
        assert!(
            !file.contains("sub_"),
            "a subject token is in the token file"
        );
        assert!(!file.contains(&user.id), "the user id is in the token file");
    }
}

// ---------------------------------------------------------------------------------------
// The real Logto: a subject token file acts for whoever it holds now (issue 31)

/// The `sub` claim of a JWT access token printed by the command.
#[track_caller]
fn sub_of(jwt: &str) -> String {
    field(&jwt_claims(jwt), "sub")
}

real_test! {
    fn a_rewritten_pat_file_gets_the_new_users_token_in_the_same_process() {
        let logto = common::real_logto::logto();
        let [one, two, _] = users(logto);
        let app = app(logto, &[], true);
        let dir = TempDir::new("exchange-pat-rewrite");
        let pat_file = dir.path().join("pat");
        let store = TokenStore::new(config(logto, &app));
        let request = shopping().personal_access_token(Secret::file(&pat_file));
        let get = || store.get(&request).unwrap_or_else(|e| panic!("{e}"));

        std::fs::write(&pat_file, format!("{}\n", one.pat)).unwrap();
        for_user(&get(), one, &app);
        for_user(&get(), one, &app);
        assert_eq!(exchanges(logto, &app.id, "Success"), 1);
        // Another user's PAT in the same file: the next get acts for that user.
        std::fs::write(&pat_file, &two.pat).unwrap();
        for_user(&get(), two, &app);
        for_user(&get(), two, &app);
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
        // Back to the first: its token is still cached, under its own key.
        std::fs::write(&pat_file, &one.pat).unwrap();
        for_user(&get(), one, &app);
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
        // A file gone is an error naming it, not the token of whoever it held last.
        std::fs::remove_file(&pat_file).unwrap();
        let e = store.get(&request).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "personal access token file {}: cannot read",
                pat_file.display()
            )),
            "{e}"
        );
    }
}

real_test! {
    fn two_stores_sharing_a_token_file_never_hand_each_other_their_users_tokens() {
        let logto = common::real_logto::logto();
        let [one, two, _] = users(logto);
        let app = app(logto, &[], true);
        let dir = TempDir::new("exchange-pat-hosts");
        let cache = dir.path().join("tokens.json");
        let pat_file = dir.path().join("pat");
        // Two hosts sharing the token file (or a Redis), each with its own user's PAT at
        // the same path name, /run/secrets/pat say: here one file, rewritten before each
        // host's turn.
        let host = || TokenStore::new(config(logto, &app)).cache_file(&cache);
        let (a, b) = (host(), host());
        let request = shopping().personal_access_token(Secret::file(&pat_file));
        let turn = |store: &TokenStore, user: &User| {
            std::fs::write(&pat_file, &user.pat).unwrap();
            let token = store.get(&request).unwrap_or_else(|e| panic!("{e}"));
            assert!(store.last_cache_error().is_none(), "{:?}", store.last_cache_error());
            for_user(&token, user, &app);
        };
        turn(&a, one);
        turn(&b, two);
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
        for _ in 0..3 {
            turn(&a, one);
            turn(&b, two);
        }
        // Host b given user one's PAT: user one's token, from the file, no exchange.
        turn(&b, one);
        // A third host, as after a restart: each user's token from the file.
        let c = host();
        turn(&c, two);
        turn(&c, one);
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
        let file = std::fs::read_to_string(&cache).unwrap();
        for never in [one.pat.as_str(), two.pat.as_str(), "pat_"] {
            assert!(!file.contains(never), "{file}");
        }
    }
}

real_test! {
    fn a_rewritten_pat_file_gets_the_new_users_token_across_runs_with_a_token_file() {
        let logto = common::real_logto::logto();
        let [one, two, _] = users(logto);
        let app = app(logto, &[], true);
        let dir = TempDir::new("exchange-pat-runs");
        let cache = dir.path().join("tokens.json");
        let pat_file = dir.path().join("pat");
        let token_run = |user: &User| {
            std::fs::write(&pat_file, format!("{}\n", user.pat)).unwrap();
            let out = run_shopping(
                logto,
                &app,
                &["token", "--pat-file", pat_file.to_str().unwrap(), "--cache-file", cache.to_str().unwrap()],
            );
            assert_eq!(out.code, Some(0), "{out:?}");
            assert_eq!(sub_of(&out.stdout), user.id, "{out:?}");
            out.stdout
        };
        let first = token_run(one);
        token_run(two);
        assert_eq!(token_run(one), first, "user one's token, from the token file");
        token_run(two);
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
    }
}

// ---------------------------------------------------------------------------------------
// The real Logto: one Management API token for every impersonation (issue 31)

real_test! {
    fn impersonating_three_users_costs_one_management_api_token() {
        let logto = common::real_logto::logto();
        let users = users(logto);

        // One store: each user's token twice (the second a refresh, after `invalidate`).
        let app_lib = app(logto, &[MANAGEMENT_ROLE], true);
        let store = TokenStore::new(config(logto, &app_lib));
        for user in users {
            let request = shopping().impersonate(&user.id);
            for _ in 0..2 {
                for_user(&store.get(&request).unwrap_or_else(|e| panic!("{e}")), user, &app_lib);
                store.invalidate(&request);
            }
        }
        assert_eq!(exchanges(logto, &app_lib.id, "Success"), 6);
        assert_eq!(logto.token_requests(&app_lib.id), 1, "management api tokens");

        // The command: each user in two runs, with one token file.
        let app_cli = app(logto, &[MANAGEMENT_ROLE], true);
        let dir = TempDir::new("exchange-quota");
        let cache = dir.path().join("tokens.json");
        for _ in 0..2 {
            for user in users {
                let out = run_shopping(
                    logto,
                    &app_cli,
                    &["token", "--impersonate", &user.id, "--cache-file", cache.to_str().unwrap()],
                );
                assert_eq!(out.code, Some(0), "{out:?}");
                assert_eq!(sub_of(&out.stdout), user.id, "{out:?}");
                // No token file problem (its lock waited for, say).
                assert!(!out.stderr.contains("warning"), "{out:?}");
            }
        }
        assert_eq!(exchanges(logto, &app_cli.id, "Success"), 3);
        assert_eq!(logto.token_requests(&app_cli.id), 1, "management api tokens");
        // Its token is in the file for the next runs, sealed like any other.
        let file = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(file.matches("logto-m2m:sealed:1:").count(), 4, "{file}");
    }
}

// ---------------------------------------------------------------------------------------
// The real Logto: what goes wrong, and what the messages say

real_test! {
    fn an_unknown_user_is_named() {
        let logto = common::real_logto::logto();
        let app = app(logto, &[MANAGEMENT_ROLE], true);
        let e = err(request_token(
            &config(logto, &app),
            &shopping().impersonate("no-such-user-42"),
        ));
        let text = e.to_string();
        assert_eq!(e.status(), Some(404), "{text}");
        assert!(
            text.contains("/api/subject-tokens answered http 404"),
            "{text}"
        );
        assert!(
            text.contains("logto has no user \"no-such-user-42\""),
            "{text}"
        );
    }
}

real_test! {
    fn an_app_without_token_exchange_is_told_to_turn_it_on() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[MANAGEMENT_ROLE], false);
        let e = err(request_token(
            &config(logto, &app),
            &shopping().personal_access_token(user.pat.as_str()),
        ));
        let text = e.to_string();
        assert_eq!(e.oauth_error(), Some("invalid_request"), "{text}");
        assert!(
            text.contains("requested grant type is not allowed for this client"),
            "{text}"
        );
        assert!(
            text.contains("turn on token exchange for the app in the logto console"),
            "{text}"
        );
        assert!(!text.contains(&user.pat));
    }
}

real_test! {
    fn impersonation_without_management_api_access_says_so() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[], true);
        let e = err(request_token(
            &config(logto, &app),
            &shopping().impersonate(&user.id),
        ));
        let text = e.to_string();
        assert_eq!(e.status(), Some(403), "{text}");
        assert!(
            text.contains("impersonation needs the app to have management api access"),
            "{text}"
        );
        // The same app exchanges a PAT: that needs no Management API.
        for_user(
            &ok(request_token(
                &config(logto, &app),
                &shopping().personal_access_token(user.pat.as_str()),
            )),
            user,
            &app,
        );
    }
}

real_test! {
    fn used_subject_tokens_and_wrong_pats_are_invalid_grant_never_shown() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[], true);
        let config = config(logto, &app);
        let used = subject_token(logto, &user.id);
        for_user(
            &ok(request_token(
                &config,
                &shopping().user_access_token(used.as_str()),
            )),
            user,
            &app,
        );
        let again = err(request_token(
            &config,
            &shopping().user_access_token(used.as_str()),
        ));
        let wrong_pat = "pat_wrongWRONGwrong0123456789ab";
        let wrong = err(request_token(
            &config,
            &shopping().personal_access_token(wrong_pat),
        ));
        for (e, token, who) in [
            (&again, used.as_str(), "the user's access token"),
            (&wrong, wrong_pat, "the personal access token"),
        ] {
            let text = format!("{e} {e:?} {e:#?}");
            assert_eq!(e.oauth_error(), Some("invalid_grant"), "{text}");
            assert!(text.contains("oauth error invalid_grant"), "{text}");
            assert!(text.contains(&format!("logto refused {who}")), "{text}");
            assert!(!text.contains(token), "{text}");
        }
        assert_eq!(exchanges(logto, &app.id, "Error"), 2);

        // An actor token Logto can't use (it wants a user's opaque token with scope
        // openid; an app's JWT is not one) is invalid_grant too, and the message says so.
        let app_token = ok(request_token(&config, &shopping()));
        let e = err(request_token(
            &config,
            &shopping()
                .personal_access_token(user.pat.as_str())
                .actor_token(app_token.access_token()),
        ));
        let text = format!("{e} {e:?}");
        assert_eq!(e.oauth_error(), Some("invalid_grant"), "{text}");
        assert!(text.contains("or the actor token is not"), "{text}");
        assert!(!text.contains(app_token.access_token()), "{text}");
        assert!(!text.contains(&user.pat), "{text}");
    }
}

real_test! {
    fn scopes_the_user_lacks_get_the_warning() {
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[], true);
        let dir = TempDir::new("exchange-scope");
        let pat_file = dir.path().join("pat");
        std::fs::write(&pat_file, &user.pat).unwrap();
        let out = run(
            command(logto, &app),
            &[
                "token",
                "--pat-file",
                pat_file.to_str().unwrap(),
                "--resource",
                SHOPPING_API,
                "--scope",
                "read:products write:products",
            ],
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            out.stderr.contains(
                "warning: scope not granted: write:products; assign the user a role with this \
                 permission in the Logto console"
            ),
            "{out:?}"
        );
        assert!(!out.stderr.contains(&user.pat));
        // The library says the same through its log, and the token lists what was granted.
        let token = ok(request_token(
            &config(logto, &app),
            &shopping()
                .scope("write:products")
                .personal_access_token(Secret::file(&pat_file)),
        ));
        assert_eq!(
            token.missing_scopes(&shopping().scope("write:products")),
            ["write:products"]
        );
    }
}

#[cfg(feature = "redis")]
real_test! {
    fn redis_holds_no_user_token_and_no_user_id() {
        use logto_m2m::RedisCache;
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[MANAGEMENT_ROLE], true);
        let redis = redis_server::RedisServer::start();
        let store = || {
            TokenStore::new(config(logto, &app)).token_cache(RedisCache::new(&redis.url()).unwrap())
        };
        let requests = [
            shopping().impersonate(&user.id),
            shopping().personal_access_token(user.pat.as_str()),
        ];
        let mut tokens = Vec::new();
        for request in &requests {
            let token = store().get(request).unwrap_or_else(|e| panic!("{e}"));
            // A second store (another process) takes it from Redis.
            let again = store().get(request).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again.access_token(), token.access_token());
            tokens.push(token.access_token().to_owned());
        }
        assert_eq!(exchanges(logto, &app.id, "Success"), 2);
        let dump = redis.dump();
        assert!(!dump.is_empty());
        for (key, value) in dump {
            for bytes in [key, value] {
                let text = String::from_utf8_lossy(&bytes);
                for token in &tokens {
                    for part in token.split('.') {
                        assert!(!text.contains(part), "redis holds a token part: {text}");
                    }
                }
                for never in [user.pat.as_str(), "pat_", "sub_", user.id.as_str()] {
                    assert!(!text.contains(never), "redis holds {never:?}: {text}");
                }
            }
        }
    }
}

real_test! {
    fn call_sends_the_users_token() {
        use std::io::{Read, Write};
        use std::net::TcpListener;
        let logto = common::real_logto::logto();
        let user = user(logto);
        let app = app(logto, &[], true);
        let dir = TempDir::new("exchange-call");
        let pat_file = dir.path().join("pat");
        std::fs::write(&pat_file, &user.pat).unwrap();
        // The API: one connection on 127.0.0.1, its request head kept, `ok` answered.
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/products", api.local_addr().unwrap());
        let server = thread::spawn(move || {
            let (mut conn, _) = api.accept().unwrap();
            conn.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut head = Vec::new();
            let mut buf = [0; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            String::from_utf8_lossy(&head).into_owned()
        });
        let out = run_shopping(logto, &app, &["call", &url, "--pat-file", pat_file.to_str().unwrap()]);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stdout, "ok");
        let head = server.join().unwrap();
        let bearer = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: Bearer "))
            .unwrap_or_else(|| panic!("no bearer in {head}"));
        let payload = bearer.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims = String::from_utf8(claims).unwrap();
        assert!(claims.contains(&format!("\"sub\":\"{}\"", user.id)), "{claims}");
        assert!(claims.contains(&format!("\"client_id\":\"{}\"", app.id)), "{claims}");
    }
}
