//! The `Verifier` against the real Logto (`../shared/logto/`, the harness of
//! `tests/common/real_logto.rs`): its ES384 tokens, a scope it did not grant, an
//! organization token, the example API, then a signing-key rotation through the Management
//! API picked up by a verifier that keeps running, and the old key deleted, after which
//! that verifier refuses the old key's tokens, the ones it verified before included.
//!
//! Runs only with `LOGTO_REAL=1` (`LOGTO_REAL=1 cargo test --test verifier_real`);
//! otherwise it is ignored with that reason. A test binary of its own, with a Logto of its
//! own: the rotation changes the instance's signing key for every later token, which the
//! tests of `tests/real_logto/` must not meet halfway. One test, in order, for the same
//! reason.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::SHOPPING_API;
use logto_m2m::{Config, ErrorKind, TokenRequest, Verifier, VerifyErrorKind, request_token};
use miniserde::json::{self, Value};

const APP_A: (&str, &str) = ("appa0000000000000000a", "appAsecretAAAAAAAAAAAAAAAAAAAAAA");
const ORG: &str = "org0000000000000001";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The `alg` and `kid` of a token's header, as the issuer wrote them.
fn alg_and_kid(token: &str) -> (String, String) {
    let header = String::from_utf8(B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    let field = |name: &str| {
        let at = header.find(&format!("\"{name}\":\"")).unwrap() + name.len() + 4;
        header[at..].split('"').next().unwrap().to_owned()
    };
    (field("alg"), field("kid"))
}

#[test]
#[cfg_attr(not(logto_real), ignore = "needs the real Logto: LOGTO_REAL=1")]
fn logto_tokens_verify_through_a_signing_key_rotation() {
    let logto = common::real_logto::logto();
    let config = Config::logto(logto.endpoint(), APP_A.0, APP_A.1)
        .unwrap()
        .timeout(TIMEOUT);
    let token = |request: &TokenRequest| request_token(&config, request).unwrap();
    let shopping = TokenRequest::new(SHOPPING_API).scope("read:products write:products");
    let verifier = Verifier::logto(logto.endpoint()).unwrap().timeout(TIMEOUT);

    // Its ES384 tokens verify; a scope it did not grant (app A has no write:products).
    let before = token(&shopping);
    let kept = token(&shopping);
    assert_eq!(alg_and_kid(before.access_token()).0, "ES384");
    let claims = verifier
        .verify(before.access_token(), SHOPPING_API, &["read:products"])
        .unwrap();
    assert_eq!(claims.client_id.as_deref(), Some(APP_A.0));
    assert_eq!(claims.iss.as_deref(), Some(logto.issuer().as_str()));
    let e = verifier
        .verify(
            before.access_token(),
            SHOPPING_API,
            &["read:products", "write:products"],
        )
        .unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Verify(VerifyErrorKind::InsufficientScope {
            missing: vec!["write:products".into()]
        })
    );
    assert_eq!(
        e.challenge().as_deref(),
        Some(r#"Bearer error="insufficient_scope", scope="write:products""#)
    );

    // An organization token: its audience is the organization's URN.
    let org = token(&TokenRequest::new("").organization(ORG).scope("read:orders"));
    let audience = format!("urn:logto:organization:{ORG}");
    let claims = verifier
        .verify(org.access_token(), &audience, &["read:orders"])
        .unwrap();
    assert_eq!(*claims.aud, [audience.as_str()]);
    let e = verifier
        .verify(org.access_token(), SHOPPING_API, &[])
        .unwrap_err();
    assert!(e.challenge().unwrap().contains("invalid_token"), "{e}");

    // The example API, protecting /products, called through Bearer.
    let out = common::example("products_api")
        .env("LOGTO_ENDPOINT", logto.endpoint())
        .env("LOGTO_APP_ID", APP_A.0)
        .env("LOGTO_APP_SECRET", APP_A.1)
        .output()
        .expect("run the products_api example");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "200 [\"apple\",\"pear\"] for {}\n\
             403 Bearer error=\"insufficient_scope\", scope=\"write:products\"\n\
             401 Bearer\n",
            APP_A.0
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Logto's JWKS has an ETag and answers If-None-Match with 304, which the verifier's
    // refetches send (tests/suite/verifier.rs checks that they do). It says `no-cache` (with
    // `max-age=0, must-revalidate`): the verifier revalidates its keys a second after each
    // fetch, at the next token.
    let plain: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let jwks_url = format!("{}/oidc/jwks", logto.endpoint());
    let first = plain.get(&jwks_url).call().unwrap();
    let etag = first
        .headers()
        .get("etag")
        .expect("an etag")
        .to_str()
        .unwrap();
    let cache_control = first
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap());
    assert!(
        cache_control.is_some_and(|v| v.contains("no-cache")),
        "{cache_control:?}"
    );
    let again = plain
        .get(&jwks_url)
        .header("if-none-match", etag)
        .call()
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);

    // Rotate the signing key to RSA through the Management API.
    let management = token(&TokenRequest::new("https://default.logto.app/api").scope("all"));
    // Logto makes the RSA key while it answers: seconds on a busy 2-core machine.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut answer = agent
        .post(&format!(
            "{}/api/configs/oidc/private-keys/rotate",
            logto.endpoint()
        ))
        .header(
            "authorization",
            &format!("Bearer {}", management.access_token()),
        )
        .content_type("application/json")
        .send(r#"{"signingKeyAlgorithm":"RSA"}"#)
        .unwrap();
    let body = answer.body_mut().read_to_string().unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{body}");
    // The key that was signing is now the previous one: its id, to delete it below.
    let Ok(Value::Array(keys)) = json::from_str::<Value>(&body) else {
        panic!("{body}")
    };
    let field = |key: &Value, name: &str| match key {
        Value::Object(o) => match o.get(name) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let previous = keys
        .iter()
        .find(|k| field(k, "status") == "Previous")
        .map(|k| field(k, "id"))
        .unwrap_or_else(|| panic!("no previous key: {body}"));

    // The running verifier picks up the new key (RS256, a kid it has not seen)... Logto
    // signs with it once its provider has reloaded the keys, which on a busy machine can
    // take a moment after the answer: a token a half second apart, 30 at most.
    let mut after = token(&shopping);
    for _ in 0..30 {
        if alg_and_kid(after.access_token()).0 == "RS256" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        after = token(&shopping);
    }
    let (alg, kid) = alg_and_kid(after.access_token());
    assert_eq!(
        alg, "RS256",
        "Logto still signs with the old key 15 s after the rotation"
    );
    assert_ne!(kid, alg_and_kid(before.access_token()).1);
    // A kid the verifier has not seen, within the cooldown of its last fetch (a fast
    // machine gets here in well under a second), is refused at once, as the docs say; the
    // first call after the cooldown fetches and verifies. A call every 100 ms, for 3 s at
    // most: each refusal before must be the unknown kid's, and one call must verify.
    let mut verified = false;
    for _ in 0..30 {
        match verifier.verify(after.access_token(), SHOPPING_API, &["read:products"]) {
            Ok(_) => {
                verified = true;
                break;
            }
            Err(e) => match e.kind() {
                ErrorKind::Verify(VerifyErrorKind::InvalidToken { reason })
                    if reason.contains("kid") => {}
                _ => panic!("{e}"),
            },
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        verified,
        "the new key's token is refused 3 s after the rotation"
    );
    // ...and a token from before, never verified yet, still verifies by the old key,
    // which stays in the JWKS; so does it for a verifier started after the rotation.
    verifier
        .verify(kept.access_token(), SHOPPING_API, &["read:products"])
        .unwrap();
    let fresh = Verifier::logto(logto.endpoint()).unwrap();
    fresh
        .verify(kept.access_token(), SHOPPING_API, &[])
        .unwrap();
    fresh
        .verify(after.access_token(), SHOPPING_API, &[])
        .unwrap();

    // The old key deleted, as a leaked one would be: the running verifier, which verified
    // `before` and `kept` by it, refuses them once it has revalidated (a second after its
    // last fetch, since Logto's JWKS says no-cache; Logto itself may take a moment to serve
    // the new set), and the new key's token still verifies.
    let mut deleted = agent
        .delete(&format!(
            "{}/api/configs/oidc/private-keys/{previous}",
            logto.endpoint()
        ))
        .header(
            "authorization",
            &format!("Bearer {}", management.access_token()),
        )
        .call()
        .unwrap();
    let status = deleted.status().as_u16();
    assert_eq!(
        status,
        204,
        "{}",
        deleted.body_mut().read_to_string().unwrap()
    );
    let mut refused = None;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(500));
        if let Err(e) = verifier.verify(before.access_token(), SHOPPING_API, &[]) {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("a token of the deleted key still verifies 15 s after");
    let ErrorKind::Verify(VerifyErrorKind::InvalidToken { reason }) = e.kind() else {
        panic!("{e}")
    };
    assert!(reason.contains("kid"), "{reason}");
    let e = verifier
        .verify(kept.access_token(), SHOPPING_API, &[])
        .unwrap_err();
    assert!(e.challenge().unwrap().contains("invalid_token"), "{e}");
    verifier
        .verify(after.access_token(), SHOPPING_API, &["read:products"])
        .unwrap();
}
