//! `examples/products_api.rs`, the whole seed in one program: an API protecting
//! `/products` with the `Verifier`, called through `Bearer`, against the peer.

use crate::common;

use common::{M2M_BASIC, M2M_SPECIAL, shared_peer};

#[test]
fn products_api_example_answers_200_403_401() {
    let out = common::example_for("products_api", shared_peer(), M2M_BASIC)
        .output()
        .expect("run the products_api example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "200 [\"apple\",\"pear\"] for m2m-basic\n\
         403 Bearer error=\"insufficient_scope\", scope=\"write:products\"\n\
         401 Bearer\n"
    );
    // An app with both scopes: the POST goes through.
    let out = common::example_for("products_api", shared_peer(), M2M_SPECIAL)
        .env("APP_SCOPES", "read:products write:products")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\n201 added\n"), "{stdout}");
}
