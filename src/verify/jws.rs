//! The JWS side of a token (RFC 7515): its header, read strictly, the JWKS keys (RFC 7517),
//! and the signature, checked with ring by the key the header's `kid` names.
//!
//! The algorithm comes from the key, never from the token: an EC key's curve fixes it
//! (P-256: ES256, P-384: ES384), an RSA key's own `alg` fixes it when it has one, and
//! otherwise the header may only choose among the RSA algorithms. So `none`, HMAC with a
//! public key as its secret, and a header that names another curve or family never get
//! to ring. The readers are miniserde visitors of our own that keep only the fields
//! below, each a [`Leaf`], so no header or JWKS, however deep or large, builds more.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use miniserde::de::{Map, Seq, Visitor};
use miniserde::{Deserialize, json};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

use crate::text::{Leaf, LeafFields, LeafFieldsMap};

/// The most keys a JWKS may list that are looked at; further ones are ignored, so that
/// a huge JWKS costs nothing more to keep. Logto lists one or two.
const MAX_KEYS: usize = 32;

/// RSA keys shorter than this are refused (RFC 8725 §3.5 asks for 2048 at least).
const MIN_RSA_BITS: usize = 2048;

/// What the verifier needs from a JWS header.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) alg: String,
    pub(crate) kid: String,
}

/// Reads a token's header (base64url, no padding) and checks what does not need the key:
/// `typ` is `at+jwt` (RFC 9068 §2.1), no `crit` (we understand no extension, so RFC 7515
/// §4.1.11 says refuse), a `kid`, and no field twice.
pub(crate) fn header(part: &str) -> Result<Header, &'static str> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "header is not base64url")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "header is not utf-8")?;
    let slots = json::from_str::<HeaderSlots>(text).map_err(|_| "header is not a json object")?;
    if slots.twice {
        return Err("header has a field twice");
    }
    if slots.crit.is_some() {
        return Err("header has crit, whose extensions are not understood");
    }
    let typ = match slots.typ {
        Some(Leaf::Str(t)) => t,
        _ => return Err("header has no typ (an access token's is at+jwt)"),
    };
    // A media type, in any case, with or without `application/` (RFC 7515 §4.1.9).
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => &typ,
    };
    if !typ.eq_ignore_ascii_case("at+jwt") {
        return Err("typ is not at+jwt: not an access token");
    }
    let alg = match slots.alg {
        Some(Leaf::Str(a)) => a,
        _ => return Err("header has no alg"),
    };
    if alg == "none" || alg.eq_ignore_ascii_case("none") {
        return Err("alg none is not allowed");
    }
    if alg.starts_with("HS") {
        return Err("alg HS* (hmac) is not allowed: the keys are public");
    }
    let kid = match slots.kid {
        Some(Leaf::Str(k)) => k,
        _ => return Err("header has no kid"),
    };
    Ok(Header { alg, kid })
}

/// One key of the JWKS, as far as verifying goes. Equal keys are the same key (the keeper
/// of the set keeps one `Arc` for a key listed again).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    kind: KeyKind,
}

impl Key {
    /// Whether this key may verify at all (the fuzz target's property looks).
    #[cfg(feature = "_internal")]
    pub(crate) fn usable(&self) -> bool {
        !matches!(self.kind, KeyKind::Unusable(_))
    }

    /// A key that never verifies, for the verifier's unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(kid: &str) -> Key {
        Key {
            kid: Some(kid.to_owned()),
            kind: KeyKind::Unusable("a test key".to_owned()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum KeyKind {
    /// An EC key on a curve ring verifies; `point` is `04 || x || y`.
    Ec { alg: Ec, point: Vec<u8> },
    /// An RSA key of at least 2048 bits, with its own `alg` if the JWK had one.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        alg: Option<&'static str>,
    },
    /// A key listed in the JWKS that never verifies, and why (kept so that a token
    /// naming it is told why).
    Unusable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ec {
    Es256,
    Es384,
}

impl Ec {
    fn name(self) -> &'static str {
        match self {
            Ec::Es256 => "ES256",
            Ec::Es384 => "ES384",
        }
    }

    fn ring(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Ec::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Ec::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    /// Bytes of one coordinate (and of each half of a signature).
    fn size(self) -> usize {
        match self {
            Ec::Es256 => 32,
            Ec::Es384 => 48,
        }
    }
}

/// The RSA algorithms ring verifies, by their JOSE names.
fn rsa_alg(name: &str) -> Option<(&'static str, &'static signature::RsaParameters)> {
    Some(match name {
        "RS256" => ("RS256", &signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => ("RS384", &signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => ("RS512", &signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => ("PS256", &signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => ("PS384", &signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => ("PS512", &signature::RSA_PSS_2048_8192_SHA512),
        _ => return None,
    })
}

/// Checks `signature` over `input` (the token's `header.payload` text) with `key`, for the
/// header's `alg`, which must be the one the key allows.
pub(crate) fn check_signature(
    key: &Key,
    alg: &str,
    input: &[u8],
    signature: &str,
) -> Result<(), String> {
    let sig = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "signature is not base64url".to_owned())?;
    match &key.kind {
        KeyKind::Unusable(why) => Err(why.clone()),
        KeyKind::Ec { alg: ec, point } => {
            if alg != ec.name() {
                return Err(not_for_key(alg, ec.name()));
            }
            if sig.len() != 2 * ec.size() {
                // JOSE's ECDSA signature is r || s (RFC 7518 §3.4), not DER.
                return Err(format!(
                    "{} signature is {} bytes, not {} (r || s; der is not jose)",
                    ec.name(),
                    sig.len(),
                    2 * ec.size()
                ));
            }
            verify_with(ec.ring(), point, input, &sig)
        }
        KeyKind::Rsa { n, e, alg: own } => {
            let (name, params) = match (rsa_alg(alg), own) {
                (Some((name, _)), Some(own)) if name != *own => {
                    return Err(not_for_key(alg, own));
                }
                (Some(found), _) => found,
                (None, _) => return Err(not_for_key(alg, "an rsa algorithm")),
            };
            let public = RsaPublicKeyComponents { n, e };
            public
                .verify(params, input, &sig)
                .map_err(|_| format!("{name} signature does not verify"))
        }
    }
}

fn verify_with(
    alg: &'static dyn VerificationAlgorithm,
    public: &[u8],
    input: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    UnparsedPublicKey::new(alg, public)
        .verify(input, sig)
        .map_err(|_| "signature does not verify".to_owned())
}

fn not_for_key(alg: &str, key_alg: &str) -> String {
    // `alg` came from the token: only names we know are repeated.
    let alg = match alg {
        "ES256" | "ES384" | "ES512" | "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
        | "EdDSA" => alg,
        _ => "of the header",
    };
    if alg == "ES512" {
        return "alg ES512 (P-521) is not supported: ring has no P-521".to_owned();
    }
    format!("alg {alg} does not fit the key, which is for {key_alg}")
}

/// Reads a JWKS document into its keys: every key listed (up to [`MAX_KEYS`]) becomes a
/// [`Key`], the unusable ones with their reason. `None` when it is not a JWKS (no `keys`
/// array, or `keys` twice).
pub(crate) fn parse_jwks(body: &[u8]) -> Option<Vec<Arc<Key>>> {
    let text = std::str::from_utf8(body).ok()?;
    let jwks = json::from_str::<JwksSlots>(text).ok()?;
    if !jwks.seen || jwks.twice {
        return None;
    }
    Some(
        jwks.keys
            .0
            .into_iter()
            .map(|slots| Arc::new(key(slots)))
            .collect(),
    )
}

fn key(mut s: JwkSlots) -> Key {
    let kid = match s.kid.take() {
        Some(Leaf::Str(k)) => Some(k),
        _ => None,
    };
    let kind = key_kind(s).unwrap_or_else(|why| KeyKind::Unusable(why.to_owned()));
    Key { kid, kind }
}

fn key_kind(s: JwkSlots) -> Result<KeyKind, &'static str> {
    let text = |l: &Option<Leaf>| match l {
        Some(Leaf::Str(t)) => Some(t.clone()),
        _ => None,
    };
    let bytes = |l: &Option<Leaf>| {
        text(l)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .ok_or("the key's numbers are not base64url")
    };
    // A constraint the key states is kept, whatever its form: a `use`, `alg` or `key_ops`
    // of the wrong JSON type (`null` included) makes the key unusable, never unconstrained.
    if s.twice {
        return Err("the key has a member twice");
    }
    match &s.use_ {
        None => {}
        Some(Leaf::Str(u)) if u == "sig" => {}
        Some(Leaf::Str(_)) => return Err("the key is not for signatures (its use is not sig)"),
        Some(_) => return Err("the key's use is not a string"),
    }
    match &s.key_ops {
        None => {}
        Some(Leaf::Strs(ops)) if ops.iter().any(|o| o == "verify") => {}
        Some(Leaf::Strs(_)) => return Err("the key's key_ops do not include verify"),
        Some(_) => return Err("the key's key_ops is not an array of strings"),
    }
    let alg = match &s.alg {
        None => None,
        Some(Leaf::Str(a)) => Some(a.clone()),
        Some(_) => return Err("the key's alg is not a string"),
    };
    match text(&s.kty).as_deref() {
        Some("EC") => {
            let ec = match text(&s.crv).as_deref() {
                Some("P-256") => Ec::Es256,
                Some("P-384") => Ec::Es384,
                Some("P-521") => {
                    return Err("ES512 (P-521) keys are not supported: ring has no P-521");
                }
                _ => return Err("the ec key's curve is not supported"),
            };
            if alg.as_deref().is_some_and(|a| a != ec.name()) {
                return Err("the ec key's alg does not fit its curve");
            }
            let (x, y) = (bytes(&s.x)?, bytes(&s.y)?);
            if x.len() != ec.size() || y.len() != ec.size() {
                return Err("the ec key's coordinates have the wrong size");
            }
            let mut point = Vec::with_capacity(1 + 2 * ec.size());
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(KeyKind::Ec { alg: ec, point })
        }
        Some("RSA") => {
            let own = match alg {
                None => None,
                Some(a) => Some(rsa_alg(&a).ok_or("the rsa key's alg is not supported")?.0),
            };
            let (n, e) = (bytes(&s.n)?, bytes(&s.e)?);
            let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
            let bits = match n.first() {
                Some(first) => n.len() * 8 - first.leading_zeros() as usize,
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err("the rsa key is under 2048 bits");
            }
            Ok(KeyKind::Rsa { n, e, alg: own })
        }
        Some("oct") => Err("symmetric (oct) keys never verify here"),
        _ => Err("the key's kty is not supported (EC and RSA are)"),
    }
}

/// The header fields read; `twice` when one of them came again.
#[derive(Default)]
struct HeaderSlots {
    alg: Option<Leaf>,
    kid: Option<Leaf>,
    typ: Option<Leaf>,
    crit: Option<Leaf>,
    twice: bool,
}

impl Deserialize for HeaderSlots {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        out.insert(<HeaderSlots as Default>::default())
    }
}

impl Visitor for HeaderSlots {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(LeafFieldsMap(self)))
    }
}

impl LeafFields for HeaderSlots {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Leaf>> {
        Some(match name {
            "alg" => &mut self.alg,
            "kid" => &mut self.kid,
            "typ" => &mut self.typ,
            "crit" => &mut self.crit,
            _ => return None,
        })
    }

    fn repeated(&mut self) {
        self.twice = true;
    }
}

/// A JWKS: its `keys`, each a map of the fields below.
#[derive(Default)]
struct JwksSlots {
    keys: KeyList,
    /// `keys` was there.
    seen: bool,
    /// `keys` came twice: not a JWKS (which list would count?).
    twice: bool,
}

#[derive(Default)]
struct KeyList(Vec<JwkSlots>);

#[derive(Default)]
struct JwkSlots {
    kty: Option<Leaf>,
    crv: Option<Leaf>,
    x: Option<Leaf>,
    y: Option<Leaf>,
    n: Option<Leaf>,
    e: Option<Leaf>,
    kid: Option<Leaf>,
    alg: Option<Leaf>,
    use_: Option<Leaf>,
    key_ops: Option<Leaf>,
    /// One of the members above came twice.
    twice: bool,
}

impl Deserialize for JwksSlots {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        out.insert(<JwksSlots as Default>::default())
    }
}

impl Visitor for JwksSlots {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(JwksMap(self)))
    }
}

struct JwksMap<'a>(&'a mut JwksSlots);

impl Map for JwksMap<'_> {
    fn key(&mut self, k: &str) -> miniserde::Result<&mut dyn Visitor> {
        if k != "keys" {
            return Ok(<dyn Visitor>::ignore());
        }
        if self.0.seen {
            self.0.twice = true;
            return Ok(<dyn Visitor>::ignore());
        }
        self.0.seen = true;
        Ok(&mut self.0.keys)
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

/// `keys` must be an array (any other value fails the parse).
impl Visitor for KeyList {
    fn seq(&mut self) -> miniserde::Result<Box<dyn Seq + '_>> {
        Ok(Box::new(KeySeq(&mut self.0)))
    }
}

struct KeySeq<'a>(&'a mut Vec<JwkSlots>);

impl Seq for KeySeq<'_> {
    fn element(&mut self) -> miniserde::Result<&mut dyn Visitor> {
        if self.0.len() >= MAX_KEYS {
            return Ok(<dyn Visitor>::ignore());
        }
        self.0.push(JwkSlots::default());
        // unwrap is ok: pushed on the line above.
        Ok(self.0.last_mut().unwrap())
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

/// Each key must be an object (any other value fails the parse).
impl Visitor for JwkSlots {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(LeafFieldsMap(self)))
    }
}

impl LeafFields for JwkSlots {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Leaf>> {
        Some(match name {
            "kty" => &mut self.kty,
            "crv" => &mut self.crv,
            "x" => &mut self.x,
            "y" => &mut self.y,
            "n" => &mut self.n,
            "e" => &mut self.e,
            "kid" => &mut self.kid,
            "alg" => &mut self.alg,
            "use" => &mut self.use_,
            "key_ops" => &mut self.key_ops,
            _ => return None,
        })
    }

    fn repeated(&mut self) {
        self.twice = true;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn h(json: &str) -> Result<Header, &'static str> {
        header(&URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn headers_are_read_strictly() {
        let ok = h(r#"{"alg":"ES384","typ":"at+jwt","kid":"k","x5u":"ignored"}"#).unwrap();
        assert_eq!((ok.alg.as_str(), ok.kid.as_str()), ("ES384", "k"));
        h(r#"{"alg":"RS256","typ":"Application/AT+JWT","kid":"k"}"#).unwrap();
        for (json, why) in [
            (r#"{"alg":"none","typ":"at+jwt","kid":"k"}"#, "alg none"),
            (r#"{"alg":"NONE","typ":"at+jwt","kid":"k"}"#, "alg none"),
            (r#"{"alg":"HS256","typ":"at+jwt","kid":"k"}"#, "hmac"),
            (r#"{"alg":"ES384","typ":"jwt","kid":"k"}"#, "typ"),
            (r#"{"alg":"ES384","kid":"k"}"#, "typ"),
            (r#"{"alg":"ES384","typ":"at+jwt"}"#, "kid"),
            (r#"{"alg":"ES384","typ":"at+jwt","kid":5}"#, "kid"),
            (r#"{"typ":"at+jwt","kid":"k"}"#, "alg"),
            (
                r#"{"alg":"ES384","typ":"at+jwt","kid":"k","crit":[]}"#,
                "crit",
            ),
            (
                r#"{"alg":"ES384","typ":"at+jwt","kid":"k","kid":"j"}"#,
                "twice",
            ),
            (r#"["alg"]"#, "json object"),
        ] {
            let e = h(json).unwrap_err();
            assert!(e.contains(why), "{json}: {e}");
        }
        assert_eq!(header("e30=").unwrap_err(), "header is not base64url");
    }

    #[test]
    fn a_constraint_of_the_wrong_type_makes_the_key_unusable() {
        // A good P-256 key, then the same with each constraint mistyped or doubled.
        let good = r#""kty":"EC","crv":"P-256","x":"1B3KI9T3SOsXvlqfbRk8MThmsZyoEUd3GHplhZ3Fdqs","y":"ftYTv4rjmz0EuXi9LoJxtsp8yO9dFTXLAqO1HPK-tmo""#;
        let with = |extra: &str| {
            let keys = parse_jwks(format!(r#"{{"keys":[{{{good}{extra}}}]}}"#).as_bytes());
            match &keys.unwrap()[0].kind {
                KeyKind::Unusable(why) => Err(why.clone()),
                _ => Ok(()),
            }
        };
        assert_eq!(with(""), Ok(()));
        assert_eq!(
            with(r#","use":"sig","alg":"ES256","key_ops":["verify"]"#),
            Ok(())
        );
        for (extra, why) in [
            (r#","use":1"#, "use is not a string"),
            (r#","use":null"#, "use is not a string"),
            (r#","use":["sig"]"#, "use is not a string"),
            (r#","use":"enc""#, "use is not sig"),
            (r#","alg":true"#, "alg is not a string"),
            (r#","alg":["ES256"]"#, "alg is not a string"),
            (r#","key_ops":"verify""#, "key_ops is not an array"),
            (r#","key_ops":["verify",1]"#, "key_ops is not an array"),
            (r#","key_ops":[]"#, "do not include verify"),
            (r#","use":"sig","use":"enc""#, "twice"),
            (r#","use":"enc","use":"sig""#, "twice"),
        ] {
            let e = with(extra).unwrap_err();
            assert!(e.contains(why), "{extra}: {e}");
        }
    }

    #[test]
    fn jwks_keys_keep_why_they_are_unusable() {
        let keys = parse_jwks(
            br#"{"other":1,"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"small"},
                {"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS1","kid":"rs1"},
                {"kty":"EC","crv":"P-384","alg":"ES256","x":"AA","y":"AA","kid":"mixed"},
                {"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#,
        )
        .unwrap();
        let why = |i: usize| match &keys[i].kind {
            KeyKind::Unusable(why) => why.clone(),
            other => panic!("{other:?}"),
        };
        assert!(why(0).contains("2048"), "{}", why(0));
        assert!(why(1).contains("alg"), "{}", why(1));
        assert!(why(2).contains("curve"), "{}", why(2));
        assert!(why(3).contains("kty"), "{}", why(3));
        assert_eq!(keys[3].kid, None);
        assert!(parse_jwks(br#"{"keys":5}"#).is_none());
        assert!(parse_jwks(br#"{"keys":[],"keys":[]}"#).is_none());
        assert!(parse_jwks(br#"{"no_keys":[]}"#).is_none());
        assert_eq!(parse_jwks(br#"{"keys":[]}"#).unwrap().len(), 0);
    }
}
