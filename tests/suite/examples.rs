//! The example programs, run as users run them, against the peer. `cargo test` builds
//! them next to the test binaries (`target/debug/examples/`).

use crate::common;

use std::process::Output;

use common::{M2M_BASIC, M2M_POST, Peer, SHOPPING_API, shared_peer};

/// `management_api` with the peer's endpoint and `app`'s credentials, plus `env`.
fn management_api(peer: &Peer, app: (&str, &str), env: &[(&str, &str)]) -> Output {
    common::example_for("management_api", peer, app)
        .envs(env.iter().copied())
        .output()
        .expect("run the management_api example")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn management_api_example_lists_the_applications() {
    let out = management_api(shared_peer(), M2M_BASIC, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "m2m-basic\nm2m-post\nm2m-special\nm2m:colon\nm2m-noroles\nm2m-unicode\nweb-app\n"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn management_api_example_retries_a_401_once_with_a_fresh_token() {
    // A token for the wrong API: the Management API answers 401, the example drops the
    // token, gets a fresh one (still for the wrong API), gets 401 again and gives up.
    let peer = Peer::start();
    let out = management_api(
        &peer,
        M2M_BASIC,
        &[("LOGTO_MANAGEMENT_RESOURCE", SHOPPING_API)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("management_api: GET "), "{stderr}");
    assert!(stderr.contains("http 401"), "{stderr}");
    assert!(stderr.contains("auth.unauthorized"), "{stderr}");
    assert_eq!(peer.stats().tokens_issued, 2);
}

#[test]
fn management_api_example_without_the_permission_is_refused_once() {
    // m2m-post has no Management API role: a token without `all`, a 403, no retry.
    let peer = Peer::start();
    let out = management_api(&peer, M2M_POST, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("http 403"), "{stderr}");
    assert!(stderr.contains("auth.forbidden"), "{stderr}");
    assert_eq!(peer.stats().tokens_issued, 1);
}

#[test]
fn management_api_example_reports_a_bad_secret_without_it() {
    let out = management_api(shared_peer(), ("m2m-basic", "canary-secret-9d2e"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(!stderr.contains("canary-secret-9d2e"), "{stderr}");
}

#[test]
fn management_api_example_needs_the_endpoint() {
    let mut cmd = common::example("management_api");
    let out = cmd
        .env("LOGTO_TOKEN_URL", "https://auth.example/oidc/token")
        .env("LOGTO_APP_ID", "a")
        .env("LOGTO_APP_SECRET", "b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "management_api: environment variable LOGTO_ENDPOINT: not set (the Management API \
         is at {endpoint}/api)\n"
    );
}
