//! No public type shows the app secret, the Basic value or a token in `Display`, `{:?}` or
//! `{:#?}`. The fault cases (a server echoing the credentials back) are in `tests/suite/faults.rs`.

use crate::common;

use base64::Engine;
use common::{M2M_BASIC, config, shared_peer, shopping};
use logto_m2m::internal::token_response;
use logto_m2m::{Config, TokenRequest, TokenStore, request_token};

/// Every way the given value can be shown, joined.
fn shown(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}\n{v:#?}")
}

fn assert_hidden(text: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!text.contains(c), "{c:?} shown in:\n{text}");
    }
}

#[test]
fn config_token_store_and_request_hide_secrets() {
    let peer = shared_peer();
    let (id, secret) = M2M_BASIC;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let config = config(peer, M2M_BASIC);
    let request = shopping("read:products");

    let token = request_token(&config, &request).unwrap();
    let store = TokenStore::new(config.clone());
    let cached = store.get(&request).unwrap();
    let canaries = [secret, &basic, token.access_token(), cached.access_token()];

    for text in [
        shown(&config),
        shown(&token),
        shown(&cached),
        shown(&store),
        shown(&request),
    ] {
        assert_hidden(&text, &canaries);
    }
    // What Debug does show.
    assert!(shown(&store).contains("token_expires_in"));
    assert!(shown(&config).contains(id));
}

#[test]
fn parser_errors_never_repeat_the_token() {
    let canary = "canary-token-5c7e1a";
    for body in [
        format!(r#"{{"access_token":"{canary}","token_type":"mac"}}"#),
        format!(r#"{{"access_token":"{canary}","token_type":"Bearer","expires_in":-1}}"#),
        format!(r#"{{"access_token":"{canary} x","token_type":"Bearer"}}"#),
        format!(r#"{{"access_token":"{canary}","token_type":"Bearer","access_token":"{canary}"}}"#),
        format!(r#"{{"access_token":"{canary}","token_type":"Bearer","scope":7}}"#),
        format!(r#"{{"access_token":"{canary}","token_type":"Bearer"}} trailing"#),
    ] {
        let err = token_response(200, body.as_bytes()).unwrap_err();
        assert_hidden(&format!("{err}\n{}", shown(&err)), &[canary]);
    }
}

#[test]
fn config_errors_never_repeat_the_secret() {
    let secret = "canary-secret-e41f0b";
    for url in [
        "ftp://x/t",
        "http://u:p@x/t",
        "https:///t",
        "http://192.0.2.1/t",
    ] {
        let text = match Config::new(url, "app", secret) {
            Err(e) => format!("{e}\n{}", shown(&e)),
            Ok(c) => {
                let e = request_token(&c, &TokenRequest::new("r")).unwrap_err();
                format!("{e}\n{}\n{}", shown(&e), shown(&c))
            }
        };
        assert_hidden(&text, &[secret]);
    }
}
