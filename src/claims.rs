//! `Claims`: what a JWT access token says about itself, read without verifying it.
//!
//! The one reader of JWT payloads in the crate: the parser takes a token's lifetime (`exp`)
//! and its granted scope (`scope`) from here, and the command's `inspect` shows the rest.
//! Like the token response, the payload is read by the crate's own miniserde visitor
//! (`text::Members`) that keeps only the claims below, each a `Leaf` (arrays of strings for
//! `aud`, nothing nested), and the names of the other members (to refuse one that comes
//! twice), so no payload, however deep, builds more than these few strings.
//!
//! Two readings of the same slots: `from_payload` for what a token says of itself (a claim
//! of another type is absent), `from_verified_payload` for the verifier (a claim of another
//! type refuses the token). Both refuse a member twice (RFC 7519 §4), so that the client and
//! the API never read two different values from one token.
//!
//! The strings are shared (`Arc`): the verifier hands out a copy of a remembered token's
//! claims on every call, and a copy is then a few reference counts, not seven allocations.

use std::sync::Arc;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use miniserde::de::Visitor;
use miniserde::{Deserialize, json};

use crate::text::{Leaf, Members, member_names};

/// The claims of a JWT access token that explain what it grants, **as the token says
/// them: the signature is not verified**. Whoever made the string chose them; use them to
/// understand a token (why an API says 401 or 403), never to decide what to trust.
///
/// A claim that is absent, or not of its usual type (a string; a number for the times;
/// a string or an array of strings for `aud`), is `None` (or an empty `aud`). A time with
/// a fraction (RFC 7519's NumericDate allows one) is cut to whole seconds. A payload that
/// names any member twice is not read at all ([`from_jwt`](Claims::from_jwt) says why).
/// [`Verifier::verify`](crate::Verifier::verify) reads more strictly: there, a claim of
/// another type refuses the token.
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
    /// middle one a JSON object with no member twice); `None` for an opaque token. The
    /// signature is **not** verified.
    ///
    /// A payload that names a member twice is not read (`None`, as for an opaque token):
    /// RFC 7519 §4 makes such a JWT invalid, and which of the two values counts depends on
    /// the reader, so there is no one answer to give. [`Verifier`](crate::Verifier) refuses
    /// those tokens, and a [`Token`](crate::Token) reads its scope and lifetime here, so
    /// the three agree.
    pub fn from_jwt(token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Claims::from_payload(payload)
    }

    /// The claims of a JWT's middle part (base64url of a JSON object), read as
    /// [`from_jwt`](Claims::from_jwt) says: a claim of another type is `None`, a member
    /// twice makes the payload unreadable (`None`).
    pub(crate) fn from_payload(payload: &str) -> Option<Claims> {
        let Slots(mut slots) = read(payload).ok()?;
        if slots.twice.is_some() {
            return None;
        }
        Some(Claims {
            iss: slots.take(ISS).and_then(string),
            sub: slots.take(SUB).and_then(string),
            client_id: slots.take(CLIENT_ID).and_then(string),
            aud: match slots.take(AUD) {
                Some(Leaf::Str(s)) => Arc::new([s]),
                Some(Leaf::Strs(list)) => list.into(),
                _ => Arc::default(),
            },
            scope: slots.take(SCOPE).and_then(string),
            organization_id: slots.take(ORGANIZATION_ID).and_then(string),
            iat: slots.take(IAT).and_then(seconds),
            exp: slots.take(EXP).and_then(seconds),
            nbf: slots.take(NBF).and_then(seconds),
        })
    }

    /// The claims of a payload whose signature verified, read strictly for the
    /// [`Verifier`](crate::Verifier): a member twice, or a claim read here of another type
    /// (`exp`, `nbf` or `iat` not a number, `aud` neither a string nor an array of strings,
    /// another one not a string; `null` included), refuses the token. The error is the
    /// reason, which never quotes the token.
    pub(crate) fn from_verified_payload(payload: &str) -> Result<Claims, String> {
        let Slots(mut slots) = read(payload)?;
        if let Some(name) = slots.twice {
            return Err(format!("payload has {name} twice"));
        }
        let text = |leaf: Option<Leaf>, name: &str| match leaf {
            None => Ok(None),
            Some(Leaf::Str(s)) => Ok(Some(Arc::from(s))),
            Some(_) => Err(format!("{name} is not a string")),
        };
        let time = |leaf: Option<Leaf>, name: &str| match leaf {
            None => Ok(None),
            Some(leaf) => seconds(leaf)
                .map(Some)
                .ok_or_else(|| format!("{name} is not a number")),
        };
        Ok(Claims {
            iss: text(slots.take(ISS), "iss")?,
            sub: text(slots.take(SUB), "sub")?,
            client_id: text(slots.take(CLIENT_ID), "client_id")?,
            aud: match slots.take(AUD) {
                None => Arc::default(),
                Some(Leaf::Str(s)) => Arc::new([s]),
                Some(Leaf::Strs(list)) => list.into(),
                Some(_) => return Err("aud is not a string or an array of strings".into()),
            },
            scope: text(slots.take(SCOPE), "scope")?,
            organization_id: text(slots.take(ORGANIZATION_ID), "organization_id")?,
            iat: time(slots.take(IAT), "iat")?,
            exp: time(slots.take(EXP), "exp")?,
            nbf: time(slots.take(NBF), "nbf")?,
        })
    }
}

/// A payload's claims as read, before their types are looked at.
fn read(payload: &str) -> Result<Slots, &'static str> {
    // JWTs use base64url without padding (RFC 7515 §2); some tools pad it anyway.
    const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    const NOT_AN_OBJECT: &str = "payload is not a json object";
    let bytes = URL_SAFE_ANY_PADDING
        .decode(payload)
        .map_err(|_| NOT_AN_OBJECT)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| NOT_AN_OBJECT)?;
    if !text.trim_start().starts_with('{') {
        return Err(NOT_AN_OBJECT);
    }
    json::from_str::<Slots>(text).map_err(|_| NOT_AN_OBJECT)
}

/// A claim's text, when it is a string.
fn string(leaf: Leaf) -> Option<Arc<str>> {
    match leaf {
        Leaf::Str(s) => Some(s.into()),
        _ => None,
    }
}

/// A time claim (a NumericDate, RFC 7519 §2) in whole seconds: an integer, or a number
/// with a fraction, which is cut (`1.9e9` and `1900000000.75` are both 1900000000). `as`
/// saturates, and JSON has no NaN or infinity.
fn seconds(leaf: Leaf) -> Option<i64> {
    match leaf {
        Leaf::U64(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
        Leaf::I64(n) => Some(n),
        Leaf::F64(x) => Some(x.trunc() as i64),
        _ => None,
    }
}

/// A payload's members as read, before their types are looked at: the claims below at
/// their places in [`CLAIMS`], and the first member that came twice: one of these claims by
/// its name, any other as "a claim" (its name is the token's text, never repeated).
struct Slots(Members<{ CLAIMS.len() }>);

// The claims read, each with a constant for its place.
member_names! {
    CLAIMS:
    ISS = "iss",
    SUB = "sub",
    CLIENT_ID = "client_id",
    AUD = "aud",
    SCOPE = "scope",
    ORGANIZATION_ID = "organization_id",
    IAT = "iat",
    EXP = "exp",
    NBF = "nbf",
}

impl Deserialize for Slots {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        // Only `map` is accepted: any other JSON value at the top fails the parse.
        &mut out.insert(Slots(Members::new(&CLAIMS, Some("a claim")))).0
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
    fn odd_types_are_absent_and_fractions_cut() {
        let c = Claims::from_jwt(&jwt(
            r#"{"sub":5,"aud":["a",1],"exp":"soon","iat":1.5,"nbf":-2.5,"scope":null}"#,
        ))
        .unwrap();
        assert_eq!((c.sub, &*c.aud, c.exp), (None, &[][..], None));
        assert_eq!((c.iat, c.nbf, c.scope), (Some(1), Some(-2), None));
        assert_eq!(
            Claims::from_jwt(&jwt(r#"{"exp":-5}"#)).unwrap().exp,
            Some(-5)
        );
        assert_eq!(
            Claims::from_jwt(&jwt(r#"{"exp":1900000000.999,"iat":1e400}"#)).map(|c| (c.exp, c.iat)),
            None, // 1e400 is not a JSON number miniserde reads
        );
        let c = Claims::from_jwt(&jwt(r#"{"exp":1900000000.999,"iat":1.7e9}"#)).unwrap();
        assert_eq!((c.exp, c.iat), (Some(1_900_000_000), Some(1_700_000_000)));
        assert_eq!(Claims::from_jwt(&jwt("{}")), Some(Claims::default()));
    }

    #[test]
    fn a_member_twice_is_not_read() {
        // RFC 7519 §4. Whichever value one reader keeps, another keeps the other: the
        // token client, `inspect` and the verifier all refuse to pick.
        for payload in [
            r#"{"scope":"a","scope":"b"}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"{"aud":"x","sub":"s","aud":["x"]}"#,
            r#"{"\u0065xp":1,"exp":2}"#,
            r#"{"custom":1,"sub":"s","custom":{"deep":[1]}}"#,
        ] {
            assert_eq!(Claims::from_jwt(&jwt(payload)), None, "{payload}");
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
            let e = Claims::from_verified_payload(&b64).unwrap_err();
            assert!(e.ends_with(" twice"), "{payload}: {e}");
            assert!(!e.contains("custom"), "never the token's text: {e}");
        }
        // Nested objects are their own scopes: the same name at two depths is fine.
        let c = Claims::from_jwt(&jwt(r#"{"x":{"exp":1},"exp":2,"y":[{"exp":3}]}"#)).unwrap();
        assert_eq!(c.exp, Some(2));
    }

    #[test]
    fn the_verifiers_reading_refuses_claims_of_another_type() {
        let strict = |payload: &str| {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
            Claims::from_verified_payload(&b64)
        };
        for (payload, why) in [
            (r#"{"nbf":"tomorrow"}"#, "nbf is not a number"),
            (r#"{"nbf":true}"#, "nbf is not a number"),
            (r#"{"nbf":null}"#, "nbf is not a number"),
            (r#"{"exp":[1]}"#, "exp is not a number"),
            (r#"{"iat":"now"}"#, "iat is not a number"),
            (r#"{"iss":1}"#, "iss is not a string"),
            (r#"{"scope":["a"]}"#, "scope is not a string"),
            (r#"{"aud":["a",1]}"#, "aud is not a string or an array"),
            (r#"{"aud":{}}"#, "aud is not a string or an array"),
            (r#"{"exp":1,"exp":1}"#, "payload has exp twice"),
            (r#"{"jti":"a","jti":"a"}"#, "payload has a claim twice"),
            ("[1]", "payload is not a json object"),
        ] {
            let e = strict(payload).unwrap_err();
            assert!(e.starts_with(why), "{payload}: {e}");
        }
        let c = strict(r#"{"exp":2000.9,"nbf":1000.5,"iat":999.99,"aud":[],"x":null}"#).unwrap();
        assert_eq!((c.exp, c.nbf, c.iat), (Some(2000), Some(1000), Some(999)));
        // What both readings accept, they read alike.
        let payload = r#"{"iss":"i","sub":"s","aud":["a","b"],"scope":"x","exp":5.5}"#;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        assert_eq!(Claims::from_payload(&b64), strict(payload).ok());
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
