//! `Claims`: what a JWT access token says about itself, read without verifying it.
//!
//! The one reader of JWT payloads in the crate: the parser takes a token's lifetime (`exp`)
//! and its granted scope (`scope`) from here, and the command's `inspect` shows the rest.
//! Like the token response, the payload is read by a miniserde visitor of our own that keeps
//! only the claims below (arrays of strings for `aud`, nothing nested), so no payload, however
//! deep or large, builds more than these few strings.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use miniserde::de::{Map, Seq, Visitor};
use miniserde::{Deserialize, json};

use crate::text::Skip;

/// The claims of a JWT access token that explain what it grants, **as the token says
/// them: the signature is not verified**. Whoever made the string chose them; use them to
/// understand a token (why an API says 401 or 403), never to decide what to trust.
///
/// A claim that is absent, or not of its usual type (a string; an integer for the times;
/// a string or an array of strings for `aud`), is `None` (or an empty `aud`).
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
/// assert_eq!(claims.aud, ["https://shopping.api"]);
/// assert_eq!(claims.scope.as_deref(), Some("read:products"));
/// assert_eq!(claims.exp, Some(1_900_000_000));
/// assert!(Claims::from_jwt("opaque-token").is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claims {
    /// `iss`: who issued it (Logto: `{endpoint}/oidc`).
    pub iss: Option<String>,
    /// `sub`: whom it is about (for an M2M token, the app id).
    pub sub: Option<String>,
    /// `client_id`: the app that asked for it.
    pub client_id: Option<String>,
    /// `aud`: the APIs it is for (the resource indicator; Logto's organization tokens:
    /// `urn:logto:organization:<id>`).
    pub aud: Vec<String>,
    /// `scope`: the granted scopes, space-separated; `None` when the token has no `scope`
    /// claim, which is how Logto says "none granted".
    pub scope: Option<String>,
    /// `organization_id`: Logto's organization, for organization-scoped tokens.
    pub organization_id: Option<String>,
    /// `iat`: when it was issued, in Unix seconds.
    pub iat: Option<i64>,
    /// `exp`: when it expires, in Unix seconds.
    pub exp: Option<i64>,
}

impl Claims {
    /// The claims of `token` if it is a JWT (three dot-separated base64url parts, the
    /// middle one a JSON object); `None` for an opaque token. The signature is **not**
    /// verified.
    pub fn from_jwt(token: &str) -> Option<Claims> {
        // JWTs use base64url without padding (RFC 7515 §2); some tools pad it anyway.
        const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let mut parts = token.split('.');
        let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let bytes = URL_SAFE_ANY_PADDING.decode(payload).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let slots = json::from_str::<Slots>(text).ok()?;
        Some(Claims {
            iss: slots.iss.and_then(Value::string),
            sub: slots.sub.and_then(Value::string),
            client_id: slots.client_id.and_then(Value::string),
            aud: match slots.aud {
                Some(Value::Str(s)) => vec![s],
                Some(Value::Strs(list)) => list,
                _ => Vec::new(),
            },
            scope: slots.scope.and_then(Value::string),
            organization_id: slots.organization_id.and_then(Value::string),
            iat: slots.iat.and_then(Value::seconds),
            exp: slots.exp.and_then(Value::seconds),
        })
    }
}

/// One claim's value, as far as we keep it.
enum Value {
    Str(String),
    Int(i64),
    /// An array whose elements are all strings.
    Strs(Vec<String>),
    /// Anything else: null, a boolean, an object, an array with a non-string in it.
    Other,
}

impl Value {
    fn string(self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn seconds(self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }
}

/// The claims read; a claim that appears twice keeps its first value.
#[derive(Default)]
struct Slots {
    iss: Option<Value>,
    sub: Option<Value>,
    client_id: Option<Value>,
    aud: Option<Value>,
    scope: Option<Value>,
    organization_id: Option<Value>,
    iat: Option<Value>,
    exp: Option<Value>,
}

impl Deserialize for Slots {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        // Only `map` is accepted: any other JSON value at the top fails the parse.
        out.insert(<Slots as Default>::default())
    }
}

impl Visitor for Slots {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(SlotsMap(self)))
    }
}

struct SlotsMap<'a>(&'a mut Slots);

impl Map for SlotsMap<'_> {
    fn key(&mut self, k: &str) -> miniserde::Result<&mut dyn Visitor> {
        let s = &mut *self.0;
        let slot = match k {
            "iss" => &mut s.iss,
            "sub" => &mut s.sub,
            "client_id" => &mut s.client_id,
            "aud" => &mut s.aud,
            "scope" => &mut s.scope,
            "organization_id" => &mut s.organization_id,
            "iat" => &mut s.iat,
            "exp" => &mut s.exp,
            _ => return Ok(<dyn Visitor>::ignore()),
        };
        if slot.is_some() {
            return Ok(<dyn Visitor>::ignore());
        }
        Ok(slot.insert(Value::Other))
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

/// A `Value` is its own visitor: the slot starts as `Other` and is overwritten by what
/// comes.
impl Visitor for Value {
    fn null(&mut self) -> miniserde::Result<()> {
        Ok(())
    }

    fn boolean(&mut self, _: bool) -> miniserde::Result<()> {
        Ok(())
    }

    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        *self = Value::Str(s.to_owned());
        Ok(())
    }

    fn negative(&mut self, n: i64) -> miniserde::Result<()> {
        *self = Value::Int(n);
        Ok(())
    }

    fn nonnegative(&mut self, n: u64) -> miniserde::Result<()> {
        *self = Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        Ok(())
    }

    fn float(&mut self, n: f64) -> miniserde::Result<()> {
        // Some issuers write `1.7e9`; whole seconds are all that matters. `as` saturates,
        // and JSON has no NaN or infinity.
        if n.fract() == 0.0 {
            *self = Value::Int(n as i64);
        }
        Ok(())
    }

    fn seq(&mut self) -> miniserde::Result<Box<dyn Seq + '_>> {
        Ok(Box::new(Strings {
            value: self,
            list: Vec::new(),
            element: Element::None,
            all_strings: true,
        }))
    }

    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(Skip))
    }
}

/// The elements of an array claim, kept while they are all strings; written to `value`
/// when the array ends.
struct Strings<'a> {
    value: &'a mut Value,
    list: Vec<String>,
    /// The element being read.
    element: Element,
    all_strings: bool,
}

impl Strings<'_> {
    /// Moves the element just read into the list.
    fn take_element(&mut self) {
        match std::mem::replace(&mut self.element, Element::None) {
            Element::None => {}
            Element::Str(s) => self.list.push(s),
            Element::Other => self.all_strings = false,
        }
    }
}

impl Seq for Strings<'_> {
    fn element(&mut self) -> miniserde::Result<&mut dyn Visitor> {
        self.take_element();
        // Filled in by the element's own visit; one that is no string stays `Other`.
        self.element = Element::Other;
        Ok(&mut self.element)
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        self.take_element();
        *self.value = if self.all_strings {
            Value::Strs(std::mem::take(&mut self.list))
        } else {
            Value::Other
        };
        Ok(())
    }
}

/// One element of an array claim.
enum Element {
    None,
    Str(String),
    Other,
}

impl Visitor for Element {
    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        *self = Element::Str(s.to_owned());
        Ok(())
    }

    // Any other element is `Other`, its initial state; nested values are skipped.
    fn null(&mut self) -> miniserde::Result<()> {
        Ok(())
    }

    fn boolean(&mut self, _: bool) -> miniserde::Result<()> {
        Ok(())
    }

    fn negative(&mut self, _: i64) -> miniserde::Result<()> {
        Ok(())
    }

    fn nonnegative(&mut self, _: u64) -> miniserde::Result<()> {
        Ok(())
    }

    fn float(&mut self, _: f64) -> miniserde::Result<()> {
        Ok(())
    }

    fn seq(&mut self) -> miniserde::Result<Box<dyn Seq + '_>> {
        Ok(Box::new(Skip))
    }

    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(Skip))
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
                aud: vec!["a".into(), "b".into()],
                scope: Some("x y".into()),
                organization_id: Some("org".into()),
                iat: Some(1000),
                exp: Some(2000),
            }
        );
    }

    #[test]
    fn odd_types_are_absent_and_first_wins() {
        let c = Claims::from_jwt(&jwt(
            r#"{"sub":5,"aud":["a",1],"exp":"soon","iat":1.5,"scope":"a","scope":"b"}"#,
        ))
        .unwrap();
        assert_eq!((c.sub, c.aud, c.exp, c.iat), (None, vec![], None, None));
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
