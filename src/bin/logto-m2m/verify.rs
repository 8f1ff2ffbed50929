//! `logto-m2m verify`: a token checked as an API would check it, with the library's
//! `Verifier` against the Logto at `LOGTO_ENDPOINT`.

use logto_m2m::{Claims, Verifier};
use miniserde::json as mini;

/// Verifies `token` for `resource` with `scopes` required, against the Logto at
/// `endpoint`: prints the claims as JSON on stdout and gives 0, or prints the reason on
/// stderr (never the token: the library's reasons never quote it) and gives 1.
pub(crate) fn run(endpoint: &str, resource: &str, scopes: &[String], token: &str) -> u8 {
    let verifier = match Verifier::logto(endpoint) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("logto-m2m: LOGTO_ENDPOINT: {e}");
            return 2;
        }
    };
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    match verifier.verify(token, resource, &scopes) {
        Ok(claims) => {
            println!("{}", claims_json(&claims));
            0
        }
        Err(e) => {
            eprintln!("logto-m2m: {e}");
            1
        }
    }
}

/// The verified claims as one JSON object; absent claims are `null`.
fn claims_json(c: &Claims) -> String {
    let text = |v: &Option<String>| v.as_deref().map_or("null".into(), mini::to_string);
    let number = |v: Option<i64>| v.map_or("null".into(), |n| n.to_string());
    let aud: Vec<String> = c.aud.iter().map(mini::to_string).collect();
    format!(
        "{{\"iss\":{},\"sub\":{},\"client_id\":{},\"aud\":[{}],\"scope\":{},\
         \"organization_id\":{},\"iat\":{},\"exp\":{}}}",
        text(&c.iss),
        text(&c.sub),
        text(&c.client_id),
        aud.join(","),
        text(&c.scope),
        text(&c.organization_id),
        number(c.iat),
        number(c.exp),
    )
}
