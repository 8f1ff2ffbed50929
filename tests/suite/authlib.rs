//! Against a second real server family: Authlib (PyPI) as a client_credentials token
//! endpoint (`tests/authlib/server.py`), for what real Logto can't show: a server that
//! percent-decodes Basic credentials, ignores `resource`, omits `scope` when it granted
//! nothing while its JWT says `"scope": ""`, and answers errors in its own words.
//!
//! Authlib's exact answers are in `tests/authlib/README.md`; the descriptions quoted here
//! are in `common::authlib`.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::authlib::{
    ADMIN, AUTHLIB_TIMEOUT, AuthlibServer, CANNOT_AUTHENTICATE, INVALID_SCOPE, NO_SUCH_CLIENT,
    PLAIN, POST_ONLY, READ, READER, RESOURCE, SPACED, TokenFormat, UNICODE_ID, UNICODE_SECRET,
    WRITE, shared_authlib,
};
use common::jwt_claim;
use logto_m2m::{AuthMethod, Config, Error, ErrorKind, Token, TokenRequest, request_token};
use miniserde::json::{self, Value};

const BASIC: AuthMethod = AuthMethod::ClientSecretBasic;
const POST: AuthMethod = AuthMethod::ClientSecretPost;

/// Authlib's default lifetime for client_credentials tokens is 864000 s (10 days); the
/// crate's default cap is a day.
const DAY: Duration = Duration::from_secs(24 * 3600);

fn config(server: &AuthlibServer, (id, secret): (&str, &str), method: AuthMethod) -> Config {
    Config::new(&server.token_url(), id, secret)
        .unwrap()
        .timeout(AUTHLIB_TIMEOUT)
        .auth_method(method)
}

fn ask(
    server: &AuthlibServer,
    app: (&str, &str),
    method: AuthMethod,
    request: &TokenRequest,
) -> Result<Token, Error> {
    request_token(&config(server, app, method), request)
}

/// A request for [`RESOURCE`] with `scopes` (space-separated).
fn reports(scopes: &str) -> TokenRequest {
    TokenRequest::new(RESOURCE).scope(scopes)
}

/// `scope()` and `missing_scopes()` tell one story: each asked scope is either in
/// `scope()` or missing, never both, never neither.
#[track_caller]
fn assert_scopes_agree(token: &Token, request: &TokenRequest) {
    let granted: Vec<&str> = token.scope().unwrap_or("").split_whitespace().collect();
    let missing = token.missing_scopes(request);
    // What the request asks for, as its Debug shows it (the scopes are not otherwise public).
    let shown = format!("{request:?}");
    let asked: Vec<String> = [READ, WRITE]
        .into_iter()
        .filter(|s| shown.contains(&format!("{s:?}")))
        .map(String::from)
        .collect();
    for asked in &asked {
        assert_ne!(
            granted.contains(&asked.as_str()),
            missing.contains(asked),
            "{asked}: scope() = {:?}, missing_scopes = {missing:?}",
            token.scope()
        );
    }
}

/// The error's message with the server's `error_description` cut out: what the crate
/// itself says.
fn own_words(err: &Error) -> String {
    let msg = err.to_string();
    match err.kind() {
        ErrorKind::OAuth {
            description: Some(d),
            ..
        } => msg.replace(d.as_str(), "<description>"),
        _ => msg,
    }
}

fn description(err: &Error) -> Option<&str> {
    match err.kind() {
        ErrorKind::OAuth { description, .. } => description.as_deref(),
        _ => None,
    }
}

/// An `invalid_client` answer: Authlib's status and words, and the crate's advice (the
/// contract: both method names, the token URL) in its own words.
#[track_caller]
fn assert_invalid_client(server: &AuthlibServer, err: &Error, status: u16, authlib_says: &str) {
    assert_eq!(err.status(), Some(status), "{err}");
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err}");
    assert_eq!(description(err), Some(authlib_says), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(authlib_says), "Authlib's words lost: {msg}");
    let own = own_words(err);
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(own.contains(method), "{method} not named: {msg}");
    }
    assert!(
        msg.contains(&server.token_url()),
        "token URL not named: {msg}"
    );
    assert!(
        !msg.contains(PLAIN.1) && !msg.contains("wrong-secret"),
        "{msg}"
    );
}

#[test]
fn basic_gets_a_jwt_and_resource_is_sent_but_ignored() {
    let server = AuthlibServer::start();
    let request = reports(READ);
    let token = ask(&server, PLAIN, BASIC, &request).unwrap();
    assert_eq!(token.scope(), Some(READ));
    assert!(token.missing_scopes(&request).is_empty());
    assert_eq!(jwt_claim(&token, "scope").as_deref(), Some(READ));
    assert_eq!(jwt_claim(&token, "client_id").as_deref(), Some(PLAIN.0));
    assert_eq!(jwt_claim(&token, "sub").as_deref(), Some(PLAIN.0));
    // Authlib has no RFC 8707: `aud` is the client id, whatever `resource` said.
    assert_eq!(jwt_claim(&token, "aud").as_deref(), Some(PLAIN.0));
    assert_eq!(token.expires_in(), DAY, "Authlib's 10 days, capped");

    let got = server.last_received();
    assert_eq!(got.status, 200);
    assert_eq!(got.basic_user.as_deref(), Some(PLAIN.0));
    assert_eq!(
        got.form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(got.form.get("resource").map(String::as_str), Some(RESOURCE));
    assert_eq!(got.form.get("scope").map(String::as_str), Some(READ));
    // Exactly one way of authenticating.
    assert!(!got.form.contains_key("client_id"), "{got:?}");
    assert!(!got.form.contains_key("client_secret"), "{got:?}");
}

#[test]
fn post_gets_a_jwt_with_the_credentials_in_the_form_only() {
    let server = AuthlibServer::start();
    let request = reports(&format!("{READ} {ADMIN}"));
    let token = ask(&server, PLAIN, POST, &request).unwrap();
    assert_eq!(token.scope(), Some(format!("{READ} {ADMIN}").as_str()));
    assert_eq!(jwt_claim(&token, "client_id").as_deref(), Some(PLAIN.0));

    let got = server.last_received();
    assert_eq!(got.status, 200);
    assert_eq!(got.basic_user, None, "no Basic header with post");
    assert_eq!(got.form.get("client_id").map(String::as_str), Some(PLAIN.0));
    assert_eq!(
        got.form.get("client_secret").map(String::as_str),
        Some("[secret]")
    );
    assert_eq!(got.form.get("resource").map(String::as_str), Some(RESOURCE));
}

/// Fails until the contract's Basic encoding lands: a space written `+` inside Basic is a
/// plus to Authlib (it percent-decodes), so the client "does not exist".
#[test]
fn spaces_in_id_and_secret_over_basic() {
    let server = AuthlibServer::start();
    let result = ask(&server, SPACED, BASIC, &reports(READ));
    let wire = server.last_received().basic_user;
    let token = result.unwrap_or_else(|e| panic!("{e}; the id went as {wire:?}"));
    assert_eq!(jwt_claim(&token, "client_id").as_deref(), Some(SPACED.0));
    assert_eq!(token.scope(), Some(READ));
    // Each byte but the unreserved ones percent-encoded, a space as %20.
    assert_eq!(wire.as_deref(), Some("m2m%20spaced%3Aapp%2B1"));
}

#[test]
fn spaces_in_id_and_secret_over_post() {
    let token = ask(shared_authlib(), SPACED, POST, &reports(READ)).unwrap();
    assert_eq!(jwt_claim(&token, "client_id").as_deref(), Some(SPACED.0));
    assert_eq!(token.scope(), Some(READ));
}

/// Unlike Logto, Authlib takes a non-ASCII id in the Basic header (percent-encoded UTF-8).
#[test]
fn non_ascii_id_over_basic_and_post() {
    for method in [BASIC, POST] {
        let token = ask(shared_authlib(), UNICODE_ID, method, &reports(READ))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(
            jwt_claim(&token, "client_id").as_deref(),
            Some(UNICODE_ID.0)
        );
    }
}

/// A real server fault: Authlib's stock `check_client_secret` (`secrets.compare_digest`
/// on two `str`) raises TypeError on a non-ASCII secret, and the framework answers 500,
/// whichever method carried it.
#[test]
fn non_ascii_secret_is_a_500_from_authlib() {
    let server = shared_authlib();
    for method in [BASIC, POST] {
        let err = ask(server, UNICODE_SECRET, method, &reports(READ)).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::HttpStatus { status: 500, .. }),
            "{method}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&server.token_url()),
            "token URL not named: {msg}"
        );
        assert!(!msg.contains(UNICODE_SECRET.1), "{msg}");
    }
}

#[test]
fn wrong_secret_is_invalid_client_naming_both_methods() {
    let server = shared_authlib();
    for method in [BASIC, POST] {
        let err = ask(server, (PLAIN.0, "wrong-secret"), method, &reports(READ)).unwrap_err();
        // Authlib answers 401 for post too: its method list includes client_secret_basic.
        assert_invalid_client(server, &err, 401, CANNOT_AUTHENTICATE);
    }
}

#[test]
fn post_only_client_over_basic_is_invalid_client() {
    let server = shared_authlib();
    let err = ask(server, POST_ONLY, BASIC, &reports(READ)).unwrap_err();
    assert_invalid_client(server, &err, 401, CANNOT_AUTHENTICATE);

    let token = ask(server, POST_ONLY, POST, &reports(WRITE)).unwrap();
    assert_eq!(token.scope(), Some(WRITE));
}

/// Authlib's words for an unknown client, 401 over Basic and 400 over post.
#[test]
fn unknown_client_is_invalid_client() {
    let server = shared_authlib();
    let nobody = ("nobody", "nobody-secret");
    let err = ask(server, nobody, BASIC, &reports(READ)).unwrap_err();
    assert_invalid_client(server, &err, 401, NO_SUCH_CLIENT);
    let err = ask(server, nobody, POST, &reports(READ)).unwrap_err();
    assert_invalid_client(server, &err, 400, NO_SUCH_CLIENT);
}

/// Authlib omits `scope` from the answer when it granted nothing, and its JWT says
/// `"scope": ""`. Until the contract lands `scope()` reads the omitted field as "granted
/// as asked" while `missing_scopes` reads the claim.
#[test]
fn granted_nothing_scope_and_missing_scopes_agree() {
    let request = reports(WRITE);
    let token = ask(shared_authlib(), READER, BASIC, &request).unwrap();
    // Authlib omits an empty scope from the answer: the claim says it.
    assert_eq!(jwt_claim(&token, "scope").as_deref(), Some(""));
    assert_eq!(token.missing_scopes(&request), vec![WRITE.to_string()]);
    assert_eq!(
        token.scope().unwrap_or(""),
        "",
        "scope() = {:?}",
        token.scope()
    );
    assert_scopes_agree(&token, &request);
}

#[test]
fn partial_grant() {
    let request = reports(&format!("{READ} {WRITE}"));
    let token = ask(shared_authlib(), READER, BASIC, &request).unwrap();
    assert_eq!(jwt_claim(&token, "scope").as_deref(), Some(READ));
    assert_eq!(token.scope(), Some(READ));
    assert_eq!(token.missing_scopes(&request), vec![WRITE.to_string()]);
    assert_scopes_agree(&token, &request);
}

/// Asked for none, granted none: no field, `"scope": ""` in the JWT.
#[test]
fn no_scope_asked() {
    let request = TokenRequest::new(RESOURCE);
    let token = ask(shared_authlib(), PLAIN, BASIC, &request).unwrap();
    assert_eq!(jwt_claim(&token, "scope").as_deref(), Some(""));
    assert_eq!(token.scope().unwrap_or(""), "");
    assert!(token.missing_scopes(&request).is_empty());
}

/// With opaque tokens nothing tells Authlib's "granted nothing" (field omitted, against
/// RFC 6749 §5.1) from a full grant: the crate reads the omission as §5.1 says.
#[test]
fn opaque_token_granted_nothing_reads_as_granted_as_asked() {
    let server = AuthlibServer::start_with(TokenFormat::Opaque);
    let request = reports(WRITE);
    let token = ask(&server, READER, BASIC, &request).unwrap();
    assert_eq!(token.access_token().split('.').count(), 1, "opaque");
    assert_eq!(token.scope(), Some(WRITE));
    assert!(token.missing_scopes(&request).is_empty());

    // A partial grant is in the field, so it is seen.
    let request = reports(&format!("{READ} {WRITE}"));
    let token = ask(&server, READER, BASIC, &request).unwrap();
    assert_eq!(token.scope(), Some(READ));
    assert_eq!(token.missing_scopes(&request), vec![WRITE.to_string()]);
    assert_scopes_agree(&token, &request);
}

/// Authlib refuses a scope outside its `scopes_supported` with a fixed sentence that names
/// none; the contract has the crate name the asked scopes.
#[test]
fn unknown_scope_is_invalid_scope_naming_the_asked_scopes() {
    let server = shared_authlib();
    let err = ask(
        server,
        PLAIN,
        BASIC,
        &reports("reports:read reports:delete"),
    )
    .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.oauth_error(), Some("invalid_scope"), "{err}");
    assert_eq!(description(&err), Some(INVALID_SCOPE));
    let msg = err.to_string();
    assert!(msg.contains(INVALID_SCOPE), "Authlib's words lost: {msg}");
    let own = own_words(&err);
    for scope in ["reports:read", "reports:delete"] {
        assert!(own.contains(scope), "{scope} not named: {msg}");
    }
    assert!(
        msg.contains(&server.token_url()),
        "token URL not named: {msg}"
    );
}

// The command, as a shell or cron job runs it, with Authlib's URL in LOGTO_TOKEN_URL.

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cli(server: &AuthlibServer, (id, secret): (&str, &str)) -> Command {
    let mut cmd = common::program(env!("CARGO_BIN_EXE_logto-m2m"));
    cmd.stdin(Stdio::null())
        .env("LOGTO_TOKEN_URL", server.token_url())
        .env("LOGTO_APP_ID", id)
        .env("LOGTO_APP_SECRET", secret)
        .env("LOGTO_RESOURCE", RESOURCE)
        .env("LOGTO_TIMEOUT", AUTHLIB_TIMEOUT.as_secs().to_string());
    cmd
}

fn run(mut cmd: Command, args: &[&str]) -> Run {
    let out = cmd.args(args).output().expect("run logto-m2m");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `token --format json`'s `scope` field, which must be a string.
fn json_scope(r: &Run) -> String {
    let Ok(Value::Object(obj)) = json::from_str::<Value>(&r.stdout) else {
        panic!("not a JSON object: {}", r.stdout);
    };
    match obj.get("scope") {
        Some(Value::String(s)) => s.clone(),
        other => panic!("scope: {other:?} in {}", r.stdout),
    }
}

/// The one warning line on stderr: it names `missing`, and not the Logto console (this is
/// not Logto's URL).
#[track_caller]
fn assert_scope_warning(r: &Run, missing: &str, granted: Option<&str>) {
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let warning = lines[0];
    assert!(warning.contains("scope not granted"), "{warning}");
    assert!(warning.contains(missing), "{warning}");
    if let Some(granted) = granted {
        assert!(!warning.contains(granted), "{warning}");
    }
    assert!(!warning.contains("Logto console"), "{warning}");
}

#[test]
fn command_granted_nothing_prints_the_granted_scope_and_warns() {
    let r = run(
        cli(shared_authlib(), READER),
        &["token", "--format", "json", "--scope", WRITE],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let scope = json_scope(&r);
    assert_ne!(scope, WRITE, "the asked scope printed as granted");
    assert_eq!(scope, "");
    assert_scope_warning(&r, WRITE, None);
}

#[test]
fn command_partial_grant() {
    let r = run(
        cli(shared_authlib(), READER),
        &["token", "--format=json", "--scope", READ, "--scope", WRITE],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(json_scope(&r), READ);
    assert_scope_warning(&r, WRITE, Some(READ));
}

#[test]
fn command_full_grant_has_no_warning() {
    let r = run(
        cli(shared_authlib(), PLAIN),
        &["token", "--format", "json", "--scope", READ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(json_scope(&r), READ);
    assert_eq!(r.stderr, "");
}

/// Basic fails until the contract's `%20` lands; post works now.
#[test]
fn command_spaced_client_both_methods() {
    for method in ["client_secret_basic", "client_secret_post"] {
        let mut cmd = cli(shared_authlib(), SPACED);
        cmd.env("LOGTO_AUTH_METHOD", method);
        let r = run(cmd, &["token", "--scope", READ]);
        assert_eq!(r.code, Some(0), "{method}: {}", r.stderr);
        assert_eq!(r.stdout.split('.').count(), 3, "{method}: {}", r.stdout);
    }
}

#[test]
fn command_wrong_secret_exits_1_with_authlibs_words_and_both_methods() {
    let r = run(cli(shared_authlib(), (PLAIN.0, "wrong-secret")), &["token"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("invalid_client"), "{}", r.stderr);
    assert!(r.stderr.contains(CANNOT_AUTHENTICATE), "{}", r.stderr);
    let own = r.stderr.replace(CANNOT_AUTHENTICATE, "");
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(own.contains(method), "{method}: {}", r.stderr);
    }
}

/// `inspect` shows Authlib's claims, and always a `scope:` line.
#[test]
fn command_inspect_shows_authlibs_claims() {
    let r = run(cli(shared_authlib(), PLAIN), &["inspect", "--scope", READ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let line = |name: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .map(str::to_owned)
    };
    assert_eq!(line("client_id").as_deref(), Some(PLAIN.0), "{}", r.stdout);
    assert_eq!(line("sub").as_deref(), Some(PLAIN.0), "{}", r.stdout);
    assert_eq!(line("scope").as_deref(), Some(READ), "{}", r.stdout);

    let r = run(
        cli(shared_authlib(), READER),
        &["inspect", "--scope", WRITE],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("scope:")),
        "no scope line: {}",
        r.stdout
    );
}

/// A killed test leaves nothing behind: the server exits when its stdin pipe closes, as
/// the kernel closes it when the test process dies.
#[test]
fn server_exits_when_its_stdin_closes() {
    let mut server = AuthlibServer::start();
    let status = server.close_stdin_and_wait(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "python {} after its stdin closed: {status:?}",
        server.pid()
    );
}
