//! `request_token` against the real oidc-provider peer, configured like Logto.

use crate::common;

use std::time::Duration;

use common::{
    M2M_BASIC, M2M_COLON, M2M_NOROLES, M2M_POST, M2M_SPECIAL, MANAGEMENT_API, SHOPPING_API,
    WEB_APP, ask, call_api, config, config_at, free_port, shared_peer, shopping,
};
use logto_m2m::{AuthMethod, Config, ErrorKind, TokenRequest, request_token};

#[test]
fn shopping_token_is_narrowed_to_granted_scope_and_works() {
    let peer = shared_peer();
    let token = ask(peer, M2M_BASIC, &shopping("read:products write:products")).unwrap();
    // Asked read+write, granted read only.
    assert_eq!(token.scope(), Some("read:products"));
    assert_eq!(token.expires_in(), Duration::from_secs(3600));
    common::assert_claim(&token, "sub", Some("m2m-basic"));
    common::assert_claim(&token, "aud", Some(SHOPPING_API));
    assert!(token.access_token().starts_with("eyJ"));

    let (status, body) = call_api(peer, "GET", "/products", &token);
    assert_eq!(status, 200, "{body}");
    let (status, body) = call_api(peer, "POST", "/products", &token);
    assert_eq!(status, 403, "write needs write:products: {body}");
}

#[test]
fn management_api_token_works() {
    let peer = shared_peer();
    let request = TokenRequest::new(MANAGEMENT_API).scope("all");
    let token = ask(peer, M2M_BASIC, &request).unwrap();
    assert_eq!(token.scope(), Some("all"));
    common::assert_claim(&token, "aud", Some(MANAGEMENT_API));
    let (status, body) = call_api(peer, "GET", "/api/applications", &token);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"m2m-basic\""), "{body}");
}

#[test]
fn special_characters_in_id_and_secret() {
    // ':', '+', '/', '%', '&', '=', space and '~' in the secret; ':' in the id and a
    // literal "%41" in the secret. Each must be form-urlencoded before Basic.
    let peer = shared_peer();
    let token = ask(peer, M2M_SPECIAL, &shopping("read:products write:products")).unwrap();
    common::assert_claim(&token, "sub", Some("m2m-special"));
    assert_eq!(token.scope(), Some("read:products write:products"));
    let (status, _) = call_api(peer, "POST", "/products", &token);
    assert_eq!(status, 201);

    let token = ask(peer, M2M_COLON, &shopping("read:products")).unwrap();
    common::assert_claim(&token, "sub", Some("m2m:colon"));
}

#[test]
fn client_registered_for_post_auth_accepts_basic() {
    let peer = shared_peer();
    let token = ask(peer, M2M_POST, &shopping("write:products")).unwrap();
    assert_eq!(token.scope(), Some("write:products"));
    common::assert_claim(&token, "sub", Some("m2m-post"));
}

/// The form's `client_id` and `client_secret` instead of the Basic header: accepted for an
/// app registered `client_secret_post` and, as Logto does, for one registered Basic.
#[test]
fn client_secret_post_gets_tokens() {
    let peer = shared_peer();
    for (app, scope) in [
        (M2M_POST, "write:products"),
        (M2M_BASIC, "read:products"),
        (M2M_SPECIAL, "read:products"),
    ] {
        let config = config(peer, app).auth_method(AuthMethod::ClientSecretPost);
        let token = request_token(&config, &shopping(scope)).unwrap();
        assert_eq!(token.scope(), Some(scope));
        common::assert_claim(&token, "sub", Some(app.0));
    }
    let config = config(peer, (M2M_POST.0, "wrong-secret-0123456789"))
        .auth_method(AuthMethod::ClientSecretPost);
    let err = request_token(&config, &shopping("write:products")).unwrap_err();
    assert_eq!(
        (err.status(), err.oauth_error()),
        (Some(401), Some("invalid_client"))
    );
}

#[test]
fn client_without_roles_gets_a_token_without_scope() {
    let peer = shared_peer();
    let token = ask(peer, M2M_NOROLES, &shopping("read:products")).unwrap();
    // The server leaves `scope` out of the answer and the JWT: it granted nothing, and
    // `scope()` says so rather than echoing the request (RFC 6749 §5.1's reading holds
    // only for opaque tokens).
    assert_eq!(token.scope(), None);
    assert_eq!(
        token.missing_scopes(&shopping("read:products")),
        ["read:products"]
    );
    common::assert_claim(&token, "scope", None);
    let (status, _) = call_api(peer, "GET", "/products", &token);
    assert_eq!(status, 403);
}

#[test]
fn no_scope_requested_none_reported() {
    let peer = shared_peer();
    let token = ask(peer, M2M_NOROLES, &TokenRequest::new(SHOPPING_API)).unwrap();
    assert_eq!(token.scope(), None);
}

#[test]
fn wrong_secret_is_invalid_client_401() {
    let peer = shared_peer();
    let secret = "wrong-secret-canary-7c1d";
    let err = ask(peer, ("m2m-basic", secret), &shopping("read:products")).unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.logto_code(), Some("oidc.invalid_client"));
    match err.kind() {
        ErrorKind::OAuth { description, .. } => {
            assert_eq!(description.as_deref(), Some("client authentication failed"))
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{err} {err:?} {err:#?}");
    assert!(!shown.contains(secret), "{shown}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "token endpoint {} answered http 401 with oauth error invalid_client",
            peer.token_url()
        )),
        "{err}"
    );
    // A wrong secret and the wrong auth method read the same: the message names both.
    assert!(
        shown.contains("client_secret_basic was sent") && shown.contains("client_secret_post"),
        "{err}"
    );
}

#[test]
fn unknown_client_is_invalid_client() {
    let peer = shared_peer();
    let err = ask(
        peer,
        ("no-such-app", "whatever-secret"),
        &shopping("read:products"),
    )
    .unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string().contains("invalid client no-such-app"),
        "{err}"
    );
}

#[test]
fn unknown_resource_is_invalid_target() {
    let peer = shared_peer();
    let err = ask(
        peer,
        M2M_BASIC,
        &TokenRequest::new("https://unknown.api").scope("read:products"),
    )
    .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.oauth_error(), Some("invalid_target"));
    assert_eq!(err.logto_code(), Some("oidc.invalid_target"));
}

#[test]
fn app_without_client_credentials_grant_is_refused() {
    let peer = shared_peer();
    let err = ask(peer, WEB_APP, &shopping("read:products")).unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_request"));
    assert!(
        err.to_string()
            .contains("requested grant type is not allowed for this client"),
        "{err}"
    );
}

#[test]
fn nothing_listening_is_a_transport_error() {
    let port = free_port();
    let config = config_at(&format!("http://127.0.0.1:{port}/oidc/token"), ("a", "b"))
        .timeout(Duration::from_secs(3));
    let err = request_token(&config, &shopping("read:products")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Transport { .. }), "{err:?}");
}

#[test]
fn cleartext_to_remote_host_refused_before_any_request() {
    let config = Config::new("http://192.0.2.1/oidc/token", "a", "b").unwrap();
    let err = request_token(&config, &shopping("x")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("allow_insecure_http"), "{err}");
}

/// The main job: the `get_token` example prints the token alone and exits 0, or prints the
/// error to stderr and exits 1.
fn get_token(env: &[(&str, &str)]) -> std::process::Output {
    common::example("get_token")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn get_token_example_prints_the_token() {
    let peer = shared_peer();
    let out = common::example_for("get_token", peer, M2M_BASIC)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_SCOPES", "read:products")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.strip_suffix('\n').unwrap();
    assert!(
        token.starts_with("eyJ") && !token.contains(char::is_whitespace),
        "{stdout:?}"
    );
}

/// A scope the app has no role for: the token is printed, and a warning names the scope.
#[test]
fn get_token_example_warns_of_scopes_not_granted() {
    let peer = shared_peer();
    let out = common::example_for("get_token", peer, M2M_BASIC)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_SCOPES", "read:products write:products")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "get_token: warning: scope not granted: write:products; assign the app a \
         machine-to-machine role with these permissions"
    );
}

#[test]
fn get_token_example_reports_errors_without_the_secret() {
    let peer = shared_peer();
    let out = get_token(&[
        ("LOGTO_TOKEN_URL", &peer.token_url()),
        ("LOGTO_APP_ID", "m2m-basic"),
        ("LOGTO_APP_SECRET", "canary-secret-3b9f"),
        ("LOGTO_RESOURCE", SHOPPING_API),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(!stderr.contains("canary-secret-3b9f"), "{stderr}");

    let out = get_token(&[("LOGTO_ENDPOINT", "https://x"), ("LOGTO_APP_ID", "a")]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr,
        "get_token: environment variable LOGTO_APP_SECRET: not set (set it, or LOGTO_APP_SECRET_FILE)\n"
    );

    let out = get_token(&[
        ("LOGTO_ENDPOINT", "https://x"),
        ("LOGTO_APP_ID", "a"),
        ("LOGTO_APP_SECRET", "b"),
        ("LOGTO_TIMEOUT", "soon"),
    ]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "get_token: environment variable LOGTO_TIMEOUT: not a number of seconds\n"
    );
}

/// A timeout too long for the clock is no deadline (as the store's and the Verifier's
/// are): the exchange, the store's refresh and the command's agent work, where ureq's own
/// deadline arithmetic would overflow and panic.
#[test]
fn a_timeout_too_long_for_the_clock_is_no_deadline() {
    let peer = shared_peer();
    let config = config(peer, M2M_BASIC).timeout(Duration::MAX);
    let token = request_token(&config, &shopping("read:products")).unwrap();
    assert_eq!(token.scope(), Some("read:products"));
    let store = logto_m2m::TokenStore::new(config.clone());
    store.get(&shopping("read:products")).unwrap();
    let agent = config.agent().unwrap();
    let (status, _) = {
        let answer = agent
            .get(format!("{}/products", peer.base_url()))
            .header("authorization", &format!("Bearer {}", token.access_token()))
            .call()
            .unwrap();
        (answer.status().as_u16(), ())
    };
    assert_eq!(status, 200);
}
