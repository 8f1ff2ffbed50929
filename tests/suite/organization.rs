//! Logto organization tokens (`organization_id` in the client_credentials grant) against
//! the peer, which answers as Logto's `oidc/grants/client-credentials.ts` does: see
//! `tests/peer/README.md`, "Organizations".

use crate::common;

use std::time::Duration;

use common::{
    M2M_BASIC, M2M_NOROLES, M2M_POST, Peer, SHOPPING_API, ask, call_api, config, shared_peer,
    shopping,
};
use logto_m2m::{Error, ErrorKind, Token, TokenRequest, TokenStore};

const ACME: &str = "org-acme";
const ACME_AUDIENCE: &str = "urn:logto:organization:org-acme";

/// An organization token request: no resource, as Logto expects.
fn organization(id: &str, scopes: &str) -> TokenRequest {
    TokenRequest::new("").organization(id).scope(scopes)
}

/// GET `path` on the peer with the token; the status.
fn get(peer: &Peer, path: &str, token: &Token) -> u16 {
    call_api(peer, "GET", path, token).0
}

/// Logto's answer to an app that is not a member of the organization (or to an
/// organization that does not exist): `AccessDenied` with status 403, in Logto's envelope.
fn assert_access_denied(err: &Error) {
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(err.oauth_error(), Some("access_denied"), "{err}");
    assert_eq!(err.logto_code(), Some("oidc.access_denied"), "{err}");
    match err.kind() {
        ErrorKind::OAuth {
            description,
            logto_message,
            ..
        } => {
            assert_eq!(
                description.as_deref(),
                Some("app has not associated with the organization")
            );
            assert_eq!(logto_message.as_deref(), Some("Access denied."));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn member_gets_an_organization_token_with_its_granted_scopes() {
    let peer = shared_peer();
    let request = organization(ACME, "read:members write:members");
    let token = ask(peer, M2M_BASIC, &request).unwrap();
    // Asked read+write; the app's organization roles grant read only.
    assert_eq!(token.scope(), Some("read:members"));
    common::assert_claim(&token, "aud", Some(ACME_AUDIENCE));
    common::assert_claim(&token, "sub", Some(M2M_BASIC.0));
    common::assert_claim(&token, "scope", Some("read:members"));
    assert_eq!(token.expires_in(), Duration::from_secs(3600));

    assert_eq!(get(peer, "/organizations/org-acme/members", &token), 200);
    // The audience is this organization only.
    assert_eq!(get(peer, "/organizations/org-globex/members", &token), 401);
}

#[test]
fn member_without_organization_roles_gets_an_empty_scope() {
    let peer = shared_peer();
    let token = ask(peer, M2M_NOROLES, &organization(ACME, "read:members")).unwrap();
    // Logto's handler sends the intersection as is: `"scope": ""`.
    assert_eq!(token.scope(), Some(""));
    common::assert_claim(&token, "aud", Some(ACME_AUDIENCE));
    common::assert_claim(&token, "scope", None);
    assert_eq!(get(peer, "/organizations/org-acme/members", &token), 403);
}

#[test]
fn non_member_app_is_access_denied() {
    let peer = shared_peer();
    let err = ask(peer, M2M_POST, &organization(ACME, "read:members")).unwrap_err();
    assert_access_denied(&err);
    // Logto sends a `Logto-Core-Request-Id` with every answer, and the message ends with it.
    let request_id = err.request_id().expect("Logto-Core-Request-Id");
    assert_eq!(
        err.to_string(),
        format!(
            "token endpoint {} answered http 403 with oauth error access_denied: app has not \
             associated with the organization (logto code oidc.access_denied: Access denied.); \
             logto request id {request_id}",
            peer.token_url()
        )
    );
    // The same app is a member elsewhere.
    let token = ask(peer, M2M_POST, &organization("org-globex", "write:members")).unwrap();
    assert_eq!(token.scope(), Some("write:members"));
}

#[test]
fn unknown_organization_is_access_denied() {
    let peer = shared_peer();
    let err = ask(peer, M2M_BASIC, &organization("org-nope", "read:members")).unwrap_err();
    assert_access_denied(&err);
}

#[test]
fn non_member_is_refused_even_for_a_resource() {
    // Logto checks membership before anything else.
    let peer = shared_peer();
    let request = shopping("read:products").organization(ACME);
    let err = ask(peer, M2M_POST, &request).unwrap_err();
    assert_access_denied(&err);
}

#[test]
fn organization_with_a_resource_is_a_resource_token_naming_the_organization() {
    // An "organization API resource" token: the API's audience and scopes, plus an
    // `organization_id` claim.
    let peer = shared_peer();
    let request = shopping("read:products").organization(ACME);
    let token = ask(peer, M2M_BASIC, &request).unwrap();
    common::assert_claim(&token, "aud", Some(SHOPPING_API));
    common::assert_claim(&token, "organization_id", Some(ACME));
    assert_eq!(token.scope(), Some("read:products"));
    assert_eq!(get(peer, "/products", &token), 200);

    // Without organization_id there is no such claim.
    let plain = shopping("read:products");
    let token = ask(peer, M2M_BASIC, &plain).unwrap();
    common::assert_claim(&token, "organization_id", None);
}

#[test]
fn the_organization_urn_is_not_a_resource() {
    // Logto answers a request for the URN as a resource with invalid_target: the
    // organization goes in organization_id.
    let peer = shared_peer();
    let request = TokenRequest::new(ACME_AUDIENCE)
        .organization(ACME)
        .scope("read:members");
    let err = ask(peer, M2M_BASIC, &request).unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_target"));
    assert_eq!(err.logto_code(), Some("oidc.invalid_target"));
}

#[test]
fn neither_resource_nor_organization_is_invalid_target() {
    let peer = shared_peer();
    let err = ask(
        peer,
        M2M_BASIC,
        &TokenRequest::new("").scope("read:members"),
    )
    .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.logto_code(), Some("oidc.invalid_target"));
    assert!(
        err.to_string()
            .contains("both `resource` and `organization_id` are not provided"),
        "{err}"
    );
}

#[test]
fn default_api_is_ignored_for_an_organization_token() {
    // With a default API, a request without resource gets that API's token, unless it
    // names an organization: Logto then skips the resource check altogether.
    let peer = Peer::start_with(&[("DEFAULT_RESOURCE", SHOPPING_API)]);
    let token = ask(
        &peer,
        M2M_BASIC,
        &TokenRequest::new("").scope("read:products"),
    )
    .unwrap();
    common::assert_claim(&token, "aud", Some(SHOPPING_API));

    let token = ask(&peer, M2M_BASIC, &organization(ACME, "read:members")).unwrap();
    common::assert_claim(&token, "aud", Some(ACME_AUDIENCE));
}

#[test]
fn store_keeps_organization_tokens_apart() {
    let peer = Peer::start();
    let store = TokenStore::new(config(&peer, M2M_BASIC));
    let org = organization(ACME, "read:members");
    let api = shopping("read:products");
    let org_api = api.clone().organization(ACME);

    let a = store.get(&org).unwrap();
    let b = store.get(&api).unwrap();
    let c = store.get(&org_api).unwrap();
    common::assert_claim(&a, "aud", Some(ACME_AUDIENCE));
    common::assert_claim(&b, "organization_id", None);
    common::assert_claim(&c, "organization_id", Some(ACME));
    // Cached, each under its own key.
    assert_eq!(store.get(&org).unwrap().access_token(), a.access_token());
    assert_eq!(
        store.get(&org_api).unwrap().access_token(),
        c.access_token()
    );
    assert_eq!(peer.stats().tokens_issued, 3);

    // A refused organization is not cached as a token, and its error is the server's.
    let err = store
        .get(&organization("org-nope", "read:members"))
        .unwrap_err();
    assert_access_denied(&err);
    assert_eq!(peer.stats().errors_by_code("access_denied"), 1);
}
