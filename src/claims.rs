//! `Claims`: what a JWT access token says about itself, read without verifying it.
//!
//! The one reader of JWT payloads in the crate: the parser takes a token's lifetime (`exp`)
//! and its granted scope (`scope`) from here, and the command's `inspect` shows the rest.
//! Like the token response, the payload is read by a miniserde visitor of our own that keeps
//! only the claims below, each a `Leaf` (arrays of strings for `aud`, nothing nested), so no
//! payload, however deep or large, builds more than these few strings.
//!
//! The strings are shared (`Arc`): the verifier hands out a copy of a remembered token's
//! claims on every call, and a copy is then a few reference counts, not seven allocations.

use std::sync::Arc;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use miniserde::de::{Map, Visitor};
use miniserde::{Deserialize, json};

use crate::text::{Leaf, LeafFields, LeafFieldsMap};

/// The claims of a JWT access token that explain what it grants, **as the token says
/// them: the signature is not verified**. Whoever made the string chose them; use them to
/// understand a token (why an API says 401 or 403), never to decide what to trust.
///
/// A claim that is absent, or not of its usual type (a string; an integer for the times;
/// a string or an array of strings for `aud`), is `None` (or an empty `aud`).
///
/// The text is shared (`Arc<str>`, `Arc<[String]>`), so a clone costs a few reference
/// counts; read it as text with `as_deref()`, or `&*claims.aud` for a slice.
///
/// # Example
/// ```
/// use logto_m2m::Claims;
///
/// // {"sub":"app-id","aud":"https://shopping.api","scope":"read:products","exp":1900000000}
/// let jwt = "eyJhbGciOiJub25lIn0.\
///     eyJzdWIiOiJhcHAtaWQiLCJhdWQiOiJodHRwczovL3Nob3BwaW5nLmFwaSIsInNjb3BlIjoicmVhZDpwcm9kdWN0cyIsImV4cCI6MTkwMDAwMDAwMH0.\
///     sig";
/// let claims = Claims::from_jwt(jwt).expect("a JWT");
/// assert_eq!(claims.sub.as_deref(), Some("app-id"));
/// assert_eq!(*claims.aud, ["https://shopping.api"]);
/// assert_eq!(claims.scope.as_deref(), Some("read:products"));
/// assert_eq!(claims.exp, Some(1_900_000_000));
/// assert!(Claims::from_jwt("opaque-token").is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claims {
    /// `iss`: who issued it (Logto: `{endpoint}/oidc`).
    pub iss: Option<Arc<str>>,
    /// `sub`: whom it is about (for an M2M token, the app id).
    pub sub: Option<Arc<str>>,
    /// `client_id`: the app that asked for it.
    pub client_id: Option<Arc<str>>,
    /// `aud`: the APIs it is for (the resource indicator; Logto's organization tokens:
    /// `urn:logto:organization:<id>`).
    pub aud: Arc<[String]>,
    /// `scope`: the granted scopes, space-separated; `None` when the token has no `scope`
    /// claim, which is how Logto says "none granted".
    pub scope: Option<Arc<str>>,
    /// `organization_id`: Logto's organization, for organization-scoped tokens.
    pub organization_id: Option<Arc<str>>,
    /// `iat`: when it was issued, in Unix seconds.
    pub iat: Option<i64>,
    /// `exp`: when it expires, in Unix seconds.
    pub exp: Option<i64>,
    /// `nbf`: when it starts to be valid, in Unix seconds, if it says.
    pub nbf: Option<i64>,
}

impl Claims {
    /// The claims of `token` if it is a JWT (three dot-separated base64url parts, the
    /// middle one a JSON object); `None` for an opaque token. The signature is **not**
    /// verified.
    pub fn from_jwt(token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Claims::from_payload(payload)
    }

    /// The claims of a JWT's middle part (base64url of a JSON object); `None` when it is
    /// not one. The verifier reads verified payloads through this too.
    pub(crate) fn from_payload(payload: &str) -> Option<Claims> {
        // JWTs use base64url without padding (RFC 7515 §2); some tools pad it anyway.
        const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let bytes = URL_SAFE_ANY_PADDING.decode(payload).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let slots = json::from_str::<Slots>(text).ok()?;
        Some(Claims {
            iss: slots.iss.and_then(string),
            sub: slots.sub.and_then(string),
            client_id: slots.client_id.and_then(string),
            aud: match slots.aud {
                Some(Leaf::Str(s)) => Arc::new([s]),
                Some(Leaf::Strs(list)) => list.into(),
                _ => Arc::default(),
            },
            scope: slots.scope.and_then(string),
            organization_id: slots.organization_id.and_then(string),
            iat: slots.iat.and_then(seconds),
            exp: slots.exp.and_then(seconds),
            nbf: slots.nbf.and_then(seconds),
        })
    }
}

/// A claim's text, when it is a string.
fn string(leaf: Leaf) -> Option<Arc<str>> {
    match leaf {
        Leaf::Str(s) => Some(s.into()),
        _ => None,
    }
}

/// A time claim in whole seconds: an integer, or a float without a fraction (some issuers
/// write `1.7e9`; `as` saturates, and JSON has no NaN or infinity).
fn seconds(leaf: Leaf) -> Option<i64> {
    match leaf {
        Leaf::U64(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
        Leaf::I64(n) => Some(n),
        Leaf::F64(x) if x.fract() == 0.0 => Some(x as i64),
        _ => None,
    }
}

/// The claims read; a claim that appears twice keeps its first value.
#[derive(Default)]
struct Slots {
    iss: Option<Leaf>,
    sub: Option<Leaf>,
    client_id: Option<Leaf>,
    aud: Option<Leaf>,
    scope: Option<Leaf>,
    organization_id: Option<Leaf>,
    iat: Option<Leaf>,
    exp: Option<Leaf>,
    nbf: Option<Leaf>,
}

impl Deserialize for Slots {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        // Only `map` is accepted: any other JSON value at the top fails the parse.
        out.insert(<Slots as Default>::default())
    }
}

impl Visitor for Slots {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(LeafFieldsMap(self)))
    }
}

impl LeafFields for Slots {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Leaf>> {
        Some(match name {
            "iss" => &mut self.iss,
            "sub" => &mut self.sub,
            "client_id" => &mut self.client_id,
            "aud" => &mut self.aud,
            "scope" => &mut self.scope,
            "organization_id" => &mut self.organization_id,
            "iat" => &mut self.iat,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("eyJhbGciOiJub25lIn0.{}.sig", b64.encode(payload))
    }

    #[test]
    fn reads_the_claims_that_explain_a_token() {
        let c = Claims::from_jwt(&jwt(
            r#"{"iss":"https://t/oidc","sub":"app","client_id":"app","aud":["a","b"],
               "scope":"x y","organization_id":"org","iat":1e3,"exp":2000,"jti":"j",
               "nested":{"deep":[[[]]]}}"#,
        ))
        .unwrap();
        assert_eq!(
            c,
            Claims {
                iss: Some("https://t/oidc".into()),
                sub: Some("app".into()),
                client_id: Some("app".into()),
                aud: Arc::new(["a".into(), "b".into()]),
                scope: Some("x y".into()),
                organization_id: Some("org".into()),
                iat: Some(1000),
                exp: Some(2000),
                nbf: None,
            }
        );
    }

    #[test]
    fn odd_types_are_absent_and_first_wins() {
        let c = Claims::from_jwt(&jwt(
            r#"{"sub":5,"aud":["a",1],"exp":"soon","iat":1.5,"scope":"a","scope":"b"}"#,
        ))
        .unwrap();
        assert_eq!((c.sub, &*c.aud, c.exp, c.iat), (None, &[][..], None, None));
        assert_eq!(c.scope.as_deref(), Some("a"));
        assert_eq!(
            Claims::from_jwt(&jwt(r#"{"exp":-5}"#)).unwrap().exp,
            Some(-5)
        );
        assert_eq!(Claims::from_jwt(&jwt("{}")), Some(Claims::default()));
    }

    #[test]
    fn opaque_tokens_have_none() {
        for t in [
            "opaque".to_owned(),
            "a.b".into(),
            "a.!!!.c".into(),
            "a.b.c.d".into(),
            jwt("not json"),
            jwt("[1]"),
            jwt(r#""s""#),
            jwt(r#"{"a":1} x"#),
        ] {
            assert_eq!(Claims::from_jwt(&t), None, "{t}");
        }
    }
}
