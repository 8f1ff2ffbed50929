//! `Verifier`: the API's side of the call. Checks a Logto (or any RFC 9068) JWT access
//! token: its signature by the issuer's JWKS key (jws.rs, with the keys of jwks.rs), then
//! its claims, read by the crate's one payload reader ([`Claims`]).
//!
//! A token verified once is kept, keyed by the exact token, until its `exp`, with the key
//! that verified it, so that the same token again (an M2M caller sends one token for its
//! whole life) costs a lookup, and stops verifying once the issuer drops that key.

mod jwks;
mod jws;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::claims::Claims;
use crate::error::{Error, ErrorKind, VerifyErrorKind};
use crate::hash::PrecomputedHash;
use crate::request::scope_tokens;
use crate::time::unix_now;
use crate::url::Url;

/// Tokens longer than this are refused before any other work (Logto's are under 1.5 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// How far `exp` and `nbf` may be off against this machine's clock.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The most verified tokens kept. With tokens of at most `MAX_TOKEN_BYTES`, 8 MiB at
/// worst; a fleet of M2M callers with one token each needs one entry per caller.
const MAX_REMEMBERED: usize = 1024;

/// The default deadline of one JWKS fetch.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies JWT access tokens from one issuer, for an API that receives them.
///
/// What [`verify`](Verifier::verify) checks (RFC 7515, 7519, 8725 and 9068):
/// - the size: a token over 8 KiB is refused before any work;
/// - the header: `typ` is `at+jwt`, no `crit`, a `kid`; `alg`, `typ` and `kid` once each;
/// - the signature, by the key of the issuer's JWKS that the `kid` names. The algorithm
///   follows from that key (an EC key's curve, an RSA key's `alg` if it has one), never
///   from the token alone: `none`, HMAC, and an `alg` of another curve or family are
///   refused. ES256, ES384, RS256/384/512 and PS256/384/512 verify; ES512 (P-521, which
///   ring lacks) is refused with a message naming it. An ECDSA signature's S may be high
///   or low (signers, Logto's among them, don't normalize it). Keys whose `use` is not
///   `sig` or whose `key_ops` lacks `verify`, keys whose `use`, `alg` or `key_ops` is of
///   the wrong JSON type or that name a member twice, and RSA keys under 2048 bits, never
///   verify;
/// - the claims, read strictly: the payload is a JSON object that names no member twice
///   (RFC 7519 §4); `exp` (present), `nbf` and `iat` are numbers, a fraction cut to whole
///   seconds; `iss`, `sub`, `client_id`, `scope` and `organization_id` are strings, `aud` a
///   string or an array of strings; any other type (`null` included) refuses the token.
///   Then `iss` is exactly the issuer; `aud` contains the audience; `exp` is in the future
///   and `nbf`, if present, in the past, both with a leeway of 30 s for the clocks; every
///   required scope is in `scope`.
///
/// What it does not check: whether the token was revoked (Logto's JWT access tokens are
/// not revocable by design; ask the introspection endpoint, another call, if you need
/// that), and anything about the caller beyond the claims (`sub`, `client_id`,
/// `organization_id` are in the returned [`Claims`] for you to check).
///
/// # Keys and the endpoint
/// The JWKS is fetched on the first token, under one deadline ([`timeout`](Verifier::timeout),
/// 10 s by default), and its keys are kept for the max-age of the answer, from when it
/// came: its `Cache-Control: max-age` (10 minutes without one; 1 s, the cooldown below,
/// with `no-cache` or `no-store`) less its `Age`, and at least 1 s, at most 24 h. Other
/// directives (`must-revalidate` among them), and `Expires`, are not read. Logto's JWKS
/// says `no-cache, max-age=0, must-revalidate`: its keys are revalidated at most once a
/// second, a 304 each time, by the first call after that second.
/// - Past the max-age, the first call (for any token, remembered or not) revalidates the
///   keys: one GET with `If-None-Match`, whatever the number of threads. A 304 renews the
///   max-age (by its own `Cache-Control`, or else the last one); a 200 replaces the keys,
///   and a key it no longer lists stops verifying, tokens verified before included. While
///   that fetch runs, calls whose key is in the set go on verifying with it; a call whose
///   key is not waits for that fetch, and only for it.
/// - A revalidation that fails or stalls keeps the keys for a grace past their max-age:
///   the answer's `stale-if-error`, at most 1 h, and 1 h when it has none; each failed
///   fetch is a `warn` log event saying for how long at most, and the first call after
///   the cooldown tries again. Past the grace every token is refused with
///   [`VerifyErrorKind::Jwks`] (503, no challenge) until a fetch works again.
/// - A token whose `kid` the keys lack makes one fetch, whatever the number of threads
///   asking, and fetches are at least a second apart (the cooldown, counted from the end
///   of the last one): so a signing-key rotation is picked up by a running verifier, and
///   a flood of made-up `kid`s costs the issuer one request a second and its senders
///   nothing more. During the cooldown an unknown `kid` is refused at once (so a token of
///   a brand-new key may be refused for up to a second after a fetch), unless a fetch is
///   under way, which it waits for.
///
/// No call makes more than one fetch or waits for more than one, so none waits longer
/// than one fetch's timeout; a timeout too long for the clock is no deadline. A panic
/// inside a fetch (in a logger ureq calls, say) ends that fetch as failed. Redirects are
/// never followed. The fetch connects as a [`Config`](crate::Config)'s requests do: with
/// the TLS feature's roots unless [`root_certificates_pem`](Verifier::root_certificates_pem)
/// gives others, and through the environment's proxy unless [`proxy`](Verifier::proxy)
/// names one.
///
/// # The same token again
/// A token verified once is remembered, keyed by the exact token string, with the key
/// that verified it, until its `exp` (never past it). Verifying it again costs a lookup
/// and a look at the issuer's current keys, not a signature check, and allocates nothing:
/// the [`Claims`] returned share their text with the remembered ones. It verifies only
/// while that key does, as above: once a revalidation drops the key, or past the grace,
/// the token is refused (and forgotten). At most 1,024 tokens are kept.
///
/// # About threads
/// `Verifier` is `Send + Sync`: share one by reference or in an `Arc`. The locks (the keys,
/// the remembered tokens) are held only to look up or store, never during a fetch, a
/// signature check or a log event (a logger is your code, and may block or panic).
///
/// # Example
/// ```no_run
/// use logto_m2m::Verifier;
///
/// let verifier = Verifier::logto("https://tenant.logto.app")?;
/// # let token = "";
/// match verifier.verify(token, "https://shopping.api", &["read:products"]) {
///     Ok(claims) => println!("hello {}", claims.sub.as_deref().unwrap_or("?")),
///     // 401 or 403 with this WWW-Authenticate; no challenge: 503 (the JWKS failed)
///     Err(e) => eprintln!("{e} ({:?})", e.challenge()),
/// }
/// # Ok::<_, logto_m2m::Error>(())
/// ```
pub struct Verifier {
    issuer: String,
    jwks: jwks::Jwks,
    timeout: Duration,
    /// Keys the hash of the remembered tokens: nobody can make tokens collide on purpose.
    /// A keyed hash (SipHash with a key std draws from the OS), used as a hash, not as a
    /// source of random numbers: what makes it safe is that the key is secret, which
    /// `RandomState` is for. (The crate's random numbers come from ring: `hash.rs`.)
    hasher: RandomState,
    remembered: Mutex<Remembered>,
}

/// Verified tokens by a keyed hash of their last bytes (the signature's), each with the
/// whole token to compare. The map passes that hash through rather than hash it again.
#[derive(Default)]
struct Remembered {
    map: HashMap<u64, Entry, BuildHasherDefault<PrecomputedHash>>,
}

/// A verified token: its claims, its `exp`, and the key that verified it.
struct Entry {
    token: Box<str>,
    claims: Claims,
    exp: i64,
    key: Arc<jws::Key>,
}

impl Verifier {
    /// A verifier for the access tokens of the Logto at `endpoint` (`https://tenant.logto.app`
    /// or a self-hosted one): issuer `{endpoint}/oidc`, keys from `{endpoint}/oidc/jwks`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `endpoint` is not an `https://` URL, or `http://` to a
    /// host that is not loopback (as for [`Verifier::new`]).
    pub fn logto(endpoint: &str) -> Result<Verifier, Error> {
        let issuer = format!("{}/oidc", endpoint.trim_end_matches('/'));
        let jwks = format!("{issuer}/jwks");
        Verifier::new(&issuer, &jwks)
    }

    /// A verifier for the access tokens of any RFC 9068 issuer: `iss` must be exactly
    /// `issuer`; the keys come from `jwks_url`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `issuer` is empty, or `jwks_url` is not an `https://`
    /// URL the crate takes (read as [`Origin::of`](crate::Origin::of) reads one: no user
    /// info, a port up to 65535), or is plain `http://` to a host that is not loopback
    /// (keys over plain http could be anyone's).
    pub fn new(issuer: &str, jwks_url: &str) -> Result<Verifier, Error> {
        if issuer.is_empty() {
            return Err(Error::config("issuer is empty"));
        }
        let url = Url::parse(jwks_url)
            .map_err(|problem| Error::config(format!("jwks url {}", problem.reason())))?;
        if url.origin.is_cleartext_refused(false) {
            return Err(Error::config(
                "plain http to a jwks host that is not loopback would let anyone on the way \
                 choose the keys; use https://",
            ));
        }
        let transport = crate::transport::Transport::new(&url);
        Ok(Verifier {
            issuer: issuer.to_owned(),
            jwks: jwks::Jwks::new(jwks_url.to_owned(), transport),
            timeout: DEFAULT_TIMEOUT,
            hasher: RandomState::new(),
            remembered: Mutex::default(),
        })
    }

    /// The deadline of one JWKS fetch (connect, send, answer), which is also the longest a
    /// call waits for a fetch another thread made. Defaults to 10 s. A timeout too long for
    /// the clock (`Duration::MAX`) is no deadline.
    pub fn timeout(mut self, timeout: Duration) -> Verifier {
        self.timeout = timeout;
        self
    }

    /// Trusts exactly the CA certificates in `pem` for the JWKS fetch, for an issuer whose
    /// certificate a private CA signed (a self-hosted Logto behind a TLS proxy): the same
    /// meaning and checks as [`Config::root_certificates_pem`](crate::Config::root_certificates_pem),
    /// whose CAs **replace** the default roots.
    ///
    /// Defaults to the TLS feature's roots (see [TLS](crate::Config#tls)).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the problem when `pem` has no certificate, a block
    /// without its END line, invalid base64, or a block that is not a DER certificate.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::Verifier;
    ///
    /// let ca = std::fs::read("/etc/logto/ca.pem").expect("the CA file");
    /// let verifier = Verifier::logto("https://auth.internal.example")?
    ///     .root_certificates_pem(&ca)?
    ///     .proxy("http://proxy.internal:3128")?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<Verifier, Error> {
        let certs = crate::tls::parse_pem_certificates(pem)
            .map_err(|reason| Error::config(format!("root certificates: {reason}")))?;
        let roots = crate::tls::Roots::Specific(std::sync::Arc::new(certs));
        self.jwks.transport = self.jwks.transport.roots(roots);
        Ok(self)
    }

    /// Fetches the JWKS through this proxy, whatever the environment says and even from a
    /// loopback host: the same meaning as [`Config::proxy`](crate::Config::proxy)
    /// (`http://[user:password@]host:port`; a proxy that refuses the tunnel is named in
    /// the error, never its password).
    ///
    /// Defaults to the environment's proxy, as for `Config`: `ALL_PROXY`, `HTTPS_PROXY`,
    /// `HTTP_PROXY` (and their lower-case names), with `NO_PROXY` and loopback hosts going
    /// straight.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the URL can't be read, names a SOCKS proxy, or is
    /// `https://` without a TLS feature.
    ///
    /// # Example
    /// ```
    /// use logto_m2m::Verifier;
    ///
    /// let verifier = Verifier::logto("https://auth.internal.example")?
    ///     .proxy("http://user:hunter2@proxy.internal:3128")?;
    /// assert!(!format!("{verifier:?}").contains("hunter2"));
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn proxy(mut self, proxy_url: &str) -> Result<Verifier, Error> {
        let proxy = crate::transport::explicit_proxy(proxy_url)?;
        self.jwks.transport = self.jwks.transport.proxy(proxy);
        Ok(self)
    }

    /// Verifies `token` for an API whose resource indicator is `audience` (for Logto's
    /// organization tokens, `urn:logto:organization:<id>`) and which requires every one of
    /// `scopes`; returns its claims.
    ///
    /// # Errors
    /// An [`ErrorKind::Verify`], and only that, holding:
    /// - [`VerifyErrorKind::InvalidToken`]: the token is refused (answer 401 with
    ///   [`Error::challenge`]);
    /// - [`VerifyErrorKind::InsufficientScope`]: valid, but a scope is missing (403, with
    ///   [`Error::challenge`]);
    /// - [`VerifyErrorKind::Jwks`]: the token's key is not known and the JWKS could not be
    ///   fetched, or the keys are past their max-age and grace and could not be fetched
    ///   again (503; no challenge).
    pub fn verify(&self, token: &str, audience: &str, scopes: &[&str]) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("longer than 8192 bytes"));
        }
        let now = unix_now();
        let slot = self.slot(token);
        let remembered = self.remembered(slot, token, now);
        let was_remembered = remembered.is_some();
        if let Some((claims, key)) = remembered {
            // The key that verified it must still be one of the issuer's, as for a token not
            // seen before (and past the keys' max-age, this call may be the one that asks).
            match self.jwks.still_has(&key, self.timeout) {
                Ok(true) => {
                    check_audience_and_scopes(&claims, audience, scopes)?;
                    return Ok(claims);
                }
                // Not that key any more: verified anew below, which may refuse it.
                Ok(false) => {}
                Err(e) => {
                    self.forget(slot);
                    return Err(e);
                }
            }
        }
        let verified = self.verify_signed(token, now);
        if verified.is_err() && was_remembered {
            self.forget(slot);
        }
        let (claims, key) = verified?;
        // Remembered before the caller's checks: the token is the issuer's whatever the
        // audience asked, and the next call may ask another.
        self.remember(slot, token, &claims, key, now);
        check_audience_and_scopes(&claims, audience, scopes)?;
        Ok(claims)
    }

    /// The signature and the claims that do not depend on the caller's audience; the
    /// claims and the key that verified them.
    fn verify_signed(&self, token: &str, now: i64) -> Result<(Claims, Arc<jws::Key>), Error> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a signed jwt (three base64url parts)"));
        };
        let header = jws::header(header).map_err(invalid)?;
        let key = self.jwks.key(&header.kid, self.timeout)?;
        let input = &token[..token.len() - signature.len() - 1];
        jws::check_signature(&key, &header.alg, input.as_bytes(), signature).map_err(invalid)?;
        let claims = Claims::from_verified_payload(payload).map_err(invalid)?;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(invalid(format!("iss is not {}", self.issuer)));
        }
        let leeway = LEEWAY.as_secs() as i64;
        match claims.exp {
            None => return Err(invalid("exp is missing")),
            Some(exp) if exp.saturating_add(leeway) <= now => return Err(invalid("expired")),
            Some(_) => {}
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(invalid("not valid yet (nbf)"));
        }
        Ok((claims, key))
    }

    fn slot(&self, token: &str) -> u64 {
        // The last 16 bytes are the signature's: as good as random (96 bits of base64),
        // and hashed in a few nanoseconds where the whole token would take hundreds. A
        // collision only costs a signature check: the whole token is compared.
        let tail = &token.as_bytes()[token.len().saturating_sub(16)..];
        self.hasher.hash_one(tail)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        // Every write replaces whole entries: a panic leaves nothing half-done.
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The claims of `token` and the key that verified it, if it was verified before and
    /// has not expired.
    fn remembered(&self, slot: u64, token: &str, now: i64) -> Option<(Claims, Arc<jws::Key>)> {
        let remembered = self.lock();
        let entry = remembered.map.get(&slot)?;
        (*entry.token == *token && now < entry.exp)
            .then(|| (entry.claims.clone(), Arc::clone(&entry.key)))
    }

    fn forget(&self, slot: u64) {
        self.lock().map.remove(&slot);
    }

    fn remember(&self, slot: u64, token: &str, claims: &Claims, key: Arc<jws::Key>, now: i64) {
        let Some(exp) = claims.exp.filter(|exp| now < *exp) else {
            return; // within the leeway only: checked again each time
        };
        let mut remembered = self.lock();
        if remembered.map.len() >= MAX_REMEMBERED {
            remembered.map.retain(|_, entry| now < entry.exp);
            if remembered.map.len() >= MAX_REMEMBERED {
                // Still full of live tokens: start over rather than track use; each is
                // verified again once.
                remembered.map.clear();
            }
        }
        let entry = Entry {
            token: token.into(),
            claims: claims.clone(),
            exp,
            key,
        };
        remembered.map.insert(slot, entry);
    }
}

/// The audience and the scopes, which the caller gives each time.
fn check_audience_and_scopes(
    claims: &Claims,
    audience: &str,
    scopes: &[&str],
) -> Result<(), Error> {
    if !claims.aud.iter().any(|a| a == audience) {
        return Err(invalid(format!("aud does not contain {audience}")));
    }
    let granted = claims.scope.as_deref().unwrap_or("");
    let is_granted = |s: &&str| scope_tokens(granted).any(|g| g == *s);
    if scopes.iter().all(is_granted) {
        return Ok(());
    }
    let missing = scopes.iter().filter(|s| !is_granted(s));
    let missing = missing.map(|s| (*s).to_owned()).collect();
    Err(Error::new(ErrorKind::Verify(
        VerifyErrorKind::InsufficientScope { missing },
    )))
}

/// The fuzz target's entry (`internal::verify_parse`): byte 0 even, the rest is a JWKS,
/// each of whose keys is then tried on a made-up signature; odd, the rest is a token,
/// read as `verify` reads it and checked against a fixed P-384 key whose private half
/// nobody has. True when a signature verified, which must never happen.
///
/// # Panics
/// When the two readings of a payload disagree (the verifier's accepts what the token
/// client's can't read, or reads it otherwise), or a JWK whose `use`, `alg` or `key_ops`
/// is of the wrong JSON type is usable.
#[cfg(feature = "_internal")]
pub(crate) fn fuzz(data: &[u8]) -> bool {
    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-384","kid":"k","alg":"ES384",
        "x":"jEKvmtTW1MO_cnXufCLhXuwWVEEWDGYkK_ggTqaHiEHUsqRPeKq0ghuG83P7WobD",
        "y":"Lj1Aotfz5ztKfH3DQLsDJeb92ToGj2OyuJD7s02VAN6xlg5RASE8ZxyH9PuF_utn"}]}"#;
    let Some((first, rest)) = data.split_first() else {
        return false;
    };
    if first % 2 == 0 {
        let keys = jws::parse_jwks(rest).unwrap_or_default();
        check_constraints(rest, &keys);
        return keys.iter().any(|key| {
            ["ES256", "ES384", "RS256", "PS256"]
                .iter()
                .any(|alg| jws::check_signature(key, alg, b"e30.e30", "AAAA").is_ok())
        });
    }
    let Ok(token) = std::str::from_utf8(rest) else {
        return false;
    };
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    match (
        Claims::from_verified_payload(payload),
        Claims::from_payload(payload),
    ) {
        (Ok(strict), Some(lenient)) => assert_eq!(strict, lenient, "the readings differ"),
        (Ok(_), None) => panic!("the verifier accepts a payload the token client can't read"),
        (Err(_), _) => {}
    }
    let Ok(header) = jws::header(header) else {
        return false;
    };
    // unwrap is ok: the constant above is a JWKS with one key.
    let keys = jws::parse_jwks(JWKS.as_bytes()).unwrap();
    let input = &token[..token.len() - signature.len() - 1];
    jws::check_signature(&keys[0], &header.alg, input.as_bytes(), signature).is_ok()
}

/// The fuzz target's property of the keys: read again by miniserde's own `Value` (another
/// reader than ours), a JWK whose `use` or `alg` is not a string, or whose `key_ops` is
/// not an array of strings, must be unusable: a constraint the key states is never
/// dropped for its form.
#[cfg(feature = "_internal")]
fn check_constraints(jwks: &[u8], keys: &[Arc<jws::Key>]) {
    use miniserde::json::{self, Value};
    let Some(Value::Object(doc)) = std::str::from_utf8(jwks)
        .ok()
        .and_then(|text| json::from_str::<Value>(text).ok())
    else {
        return;
    };
    let Some(Value::Array(listed)) = doc.get("keys") else {
        return;
    };
    for (value, key) in listed.iter().zip(keys) {
        let Value::Object(jwk) = value else { continue };
        let text = |v: &Value| matches!(v, Value::String(_));
        let texts = |v: &Value| matches!(v, Value::Array(a) if a.iter().all(text));
        let wrong =
            |name: &str, fits: &dyn Fn(&Value) -> bool| jwk.get(name).is_some_and(|v| !fits(v));
        if wrong("use", &text) || wrong("alg", &text) || wrong("key_ops", &texts) {
            assert!(!key.usable(), "a constraint of the wrong type was dropped");
        }
    }
}

#[cold]
pub(crate) fn invalid(reason: impl Into<String>) -> Error {
    Error::new(ErrorKind::Verify(VerifyErrorKind::InvalidToken {
        reason: reason.into(),
    }))
}

impl Error {
    /// The `WWW-Authenticate` value (RFC 6750 §3) for a token [`Verifier::verify`]
    /// refused: `Bearer error="invalid_token", error_description="…"` (answer 401), or
    /// `Bearer error="insufficient_scope", scope="…"` naming the missing scopes (403).
    /// `None` for every other error (a JWKS that failed: answer 503).
    ///
    /// # Example
    /// ```
    /// use logto_m2m::Verifier;
    ///
    /// let verifier = Verifier::logto("http://localhost:3001")?;
    /// let e = verifier.verify("not-a-jwt", "https://shopping.api", &[]).unwrap_err();
    /// assert_eq!(
    ///     e.challenge().unwrap(),
    ///     r#"Bearer error="invalid_token", error_description="not a signed jwt (three base64url parts)""#
    /// );
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn challenge(&self) -> Option<String> {
        // RFC 6750 allows printable ASCII but `"` and `\` in these values.
        let quoted = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    ' ' | '!' | '#'..='[' | ']'..='~' => c,
                    _ => '?',
                })
                .collect()
        };
        match self.kind() {
            ErrorKind::Verify(VerifyErrorKind::InvalidToken { reason }) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                quoted(reason)
            )),
            ErrorKind::Verify(VerifyErrorKind::InsufficientScope { missing }) => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                quoted(&missing.join(" "))
            )),
            _ => None,
        }
    }
}

impl fmt::Debug for Verifier {
    /// The issuer and the JWKS URL; never a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks.url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn challenges_are_header_safe() {
        let e = invalid("aud does not contain \"x\"\\\r\né");
        assert_eq!(
            e.challenge().unwrap(),
            r#"Bearer error="invalid_token", error_description="aud does not contain ?x?????""#
        );
        let e = Error::new(ErrorKind::Verify(VerifyErrorKind::InsufficientScope {
            missing: vec!["a".into(), "b:c".into()],
        }));
        assert_eq!(
            e.challenge().unwrap(),
            r#"Bearer error="insufficient_scope", scope="a b:c""#
        );
        assert_eq!(e.to_string(), "insufficient scope: the token lacks a b:c");
        assert_eq!(Error::config("x").challenge(), None);
    }

    #[test]
    fn remembered_tokens_never_outlive_exp_and_stay_bounded() {
        let v = Verifier::logto("https://t.example").unwrap();
        let claims = |exp| Claims {
            exp: Some(exp),
            ..Claims::default()
        };
        let key = Arc::new(jws::Key::for_tests("k"));
        let now = 1_000;
        // Within the leeway only: never remembered.
        v.remember(
            v.slot("a.b.past"),
            "a.b.past",
            &claims(now - 1),
            key.clone(),
            now,
        );
        assert!(v.remembered(v.slot("a.b.past"), "a.b.past", now).is_none());
        v.remember(
            v.slot("a.b.live"),
            "a.b.live",
            &claims(now + 10),
            key.clone(),
            now,
        );
        assert!(
            v.remembered(v.slot("a.b.live"), "a.b.live", now + 9)
                .is_some()
        );
        assert!(
            v.remembered(v.slot("a.b.live"), "a.b.live", now + 10)
                .is_none()
        );
        // Only the exact token: the same slot with another token is a miss.
        assert!(v.remembered(v.slot("a.b.live"), "x.b.live", now).is_none());
        for i in 0..3 * MAX_REMEMBERED {
            let token = format!("a.b.{i:032}");
            v.remember(v.slot(&token), &token, &claims(now + 10), key.clone(), now);
            assert!(v.lock().map.len() <= MAX_REMEMBERED);
        }
    }

    #[test]
    fn the_same_token_again_shares_its_claims() {
        // A hit hands out the remembered claims' text, not copies of it: the cost of a
        // repeat is a few reference counts.
        let v = Verifier::logto("https://t.example").unwrap();
        let token = "a.b.shared";
        let kept = Claims {
            sub: Some("app".into()),
            scope: Some("read write".into()),
            aud: Arc::new(["https://api".into()]),
            exp: Some(2_000),
            ..Claims::default()
        };
        let key = Arc::new(jws::Key::for_tests("k"));
        v.remember(v.slot(token), token, &kept, key.clone(), 1_000);
        let (one, two) = (
            v.remembered(v.slot(token), token, 1_000).unwrap(),
            v.remembered(v.slot(token), token, 1_001).unwrap(),
        );
        assert!(Arc::ptr_eq(&one.1, &key));
        let (one, two) = (one.0, two.0);
        assert_eq!(one, kept);
        assert!(Arc::ptr_eq(
            one.sub.as_ref().unwrap(),
            two.sub.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            one.scope.as_ref().unwrap(),
            two.scope.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(&one.aud, &two.aud));
        assert!(check_audience_and_scopes(&one, "https://api", &["write", "read"]).is_ok());
        let e = check_audience_and_scopes(&one, "https://api", &["read", "admin", "rea"]);
        assert!(matches!(
            e.unwrap_err().kind(),
            ErrorKind::Verify(VerifyErrorKind::InsufficientScope { missing })
                if *missing == ["admin", "rea"]
        ));
    }

    #[test]
    fn verifier_is_send_sync_and_its_debug_has_no_token() {
        fn check<T: Send + Sync>() {}
        check::<Verifier>();
        let v = Verifier::logto("https://t.example/").unwrap();
        assert_eq!(
            format!("{v:?}"),
            "Verifier { issuer: \"https://t.example/oidc\", jwks_url: \
             \"https://t.example/oidc/jwks\", timeout: 10s }"
        );
    }
}
