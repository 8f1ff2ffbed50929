//! `Verifier` (issues 25 and 31): tokens signed here with ring against a JWKS served from
//! a loopback server we control (its faults, its ETag, its `Cache-Control`, its key
//! rotations and removals, how often it is asked), and the peer's real tokens and JWKS.
//! The tests that need a logger of their own (a warning to read, a logger that panics)
//! run in a child process of this binary (`in_child`).

use crate::common;

use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::loopback::{Conn, Loopback};
use common::{M2M_BASIC, SHOPPING_API, ask, shared_peer, shopping};
use logto_m2m::{ErrorKind, TokenRequest, Verifier, VerifyErrorKind};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};

const ISSUER: &str = "https://issuer.example/oidc";
const API: &str = "https://shopping.api";

/// A signing key and its JWK.
struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
    alg: &'static str,
}

impl SigningKey {
    fn es384(kid: &str) -> SigningKey {
        SigningKey::new(&ECDSA_P384_SHA384_FIXED_SIGNING, kid, "ES384")
    }

    fn new(
        alg: &'static ring::signature::EcdsaSigningAlgorithm,
        kid: &str,
        name: &'static str,
    ) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        SigningKey {
            pair,
            kid: kid.to_owned(),
            alg: name,
        }
    }

    fn jwk(&self) -> String {
        let point = self.pair.public_key().as_ref();
        let size = (point.len() - 1) / 2;
        let crv = if size == 48 { "P-384" } else { "P-256" };
        format!(
            r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}","kid":"{}","alg":"{}","use":"sig"}}"#,
            B64.encode(&point[1..1 + size]),
            B64.encode(&point[1 + size..]),
            self.kid,
            self.alg
        )
    }

    /// A token with `header` and `payload` (JSON) signed with this key.
    fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// A Logto-like access token with `extra` claims (JSON members) in place of the usual
    /// ones of the same names.
    fn sign(&self, extra: &str) -> String {
        self.sign_raw(&self.header(), &payload(extra))
    }

    /// This key's header.
    fn header(&self) -> String {
        format!(
            r#"{{"alg":"{}","typ":"at+jwt","kid":"{}"}}"#,
            self.alg, self.kid
        )
    }

    /// A token of this key under another `kid`: junk, to a JWKS that does not list it.
    fn sign_as(&self, kid: &str) -> String {
        let header = format!(r#"{{"alg":"{}","typ":"at+jwt","kid":"{kid}"}}"#, self.alg);
        self.sign_raw(&header, &payload(""))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims as Logto's, each member of `extra` (`"name":value,...`) in place of the usual
/// one of its name, or added: no claim twice (the verifier refuses that).
fn payload(extra: &str) -> String {
    let extra = members(extra);
    let name = |member: &str| member.split('"').nth(1).unwrap_or("").to_owned();
    let usual = [
        r#""jti":"j1""#.to_owned(),
        r#""sub":"app""#.to_owned(),
        format!(r#""iat":{}"#, now()),
        format!(r#""exp":{}"#, now() + 3600),
        r#""scope":"read:products write:products""#.to_owned(),
        r#""client_id":"app""#.to_owned(),
        format!(r#""iss":"{ISSUER}""#),
        format!(r#""aud":"{API}""#),
    ];
    let kept = usual
        .into_iter()
        .filter(|u| !extra.iter().any(|e| name(e) == name(u)));
    let all: Vec<String> = kept.chain(extra.iter().cloned()).collect();
    format!("{{{}}}", all.join(","))
}

/// The top-level members of `text` (`"a":1,"b":[1,2]`), split at the commas outside strings
/// and brackets.
fn members(text: &str) -> Vec<String> {
    let (mut out, mut current, mut depth, mut in_string, mut escaped) =
        (Vec::new(), String::new(), 0, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '[' | '{' if !in_string => depth += 1,
            ']' | '}' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// What the JWKS server answers.
#[derive(Clone)]
enum Mode {
    /// This JWKS, with an ETag that is its version, and 304 to that ETag.
    Serve(String),
    Status(u16),
    Stall,
}

/// What the JWKS server does: its mode (and its version, bumped by each `set`), the
/// headers it adds to every answer (`Cache-Control: max-age=1`, say), and how long it
/// takes before answering.
#[derive(Clone)]
struct Setup {
    mode: Mode,
    version: u64,
    headers: String,
    delay: Duration,
}

/// A JWKS endpoint on loopback: counts its requests and the 304s it gave.
struct JwksServer {
    server: Loopback,
    setup: Arc<Mutex<Setup>>,
    not_modified: Arc<AtomicU64>,
}

impl JwksServer {
    fn start(jwks: String) -> JwksServer {
        JwksServer::with_headers(jwks, "")
    }

    /// A server whose every answer has `headers` (each line ending in CRLF).
    fn with_headers(jwks: String, headers: &str) -> JwksServer {
        let setup = Arc::new(Mutex::new(Setup {
            mode: Mode::Serve(jwks),
            version: 1,
            headers: headers.to_owned(),
            delay: Duration::ZERO,
        }));
        let not_modified = Arc::new(AtomicU64::new(0));
        let (m, n) = (Arc::clone(&setup), Arc::clone(&not_modified));
        let server = Loopback::start(400, Duration::from_secs(60), move |c: &mut Conn| {
            let setup = m.lock().unwrap().clone();
            if !setup.delay.is_zero() && !c.pause(setup.delay) {
                return;
            }
            let etag = format!("\"v{}\"", setup.version);
            let headers = &setup.headers;
            match setup.mode {
                Mode::Serve(_) if c.request.header("if-none-match") == Some(etag.as_str()) => {
                    n.fetch_add(1, SeqCst);
                    respond(c, 304, &format!("ETag: {etag}\r\n{headers}"), "");
                }
                Mode::Serve(body) => respond(c, 200, &format!("ETag: {etag}\r\n{headers}"), &body),
                Mode::Status(s) => respond(c, s, headers, "{\"error\":\"down\"}"),
                Mode::Stall => {
                    c.pause(Duration::from_secs(20));
                }
            }
        });
        JwksServer {
            server,
            setup,
            not_modified,
        }
    }

    fn set(&self, mode: Mode) {
        let mut s = self.setup.lock().unwrap();
        s.mode = mode;
        s.version += 1;
    }

    fn set_delay(&self, delay: Duration) {
        self.setup.lock().unwrap().delay = delay;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/oidc/jwks", self.server.port())
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(ISSUER, &self.url())
            .unwrap()
            .timeout(Duration::from_secs(2))
    }

    fn requests(&self) -> u64 {
        self.server.requests()
    }
}

fn respond(c: &mut Conn, status: u16, headers: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} X\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = c.send(head.as_bytes()) && c.send(body.as_bytes());
}

fn jwks(keys: &[&SigningKey]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| k.jwk()).collect();
    format!(r#"{{"keys":[{}]}}"#, keys.join(","))
}

/// The reason of an `InvalidToken`, or a panic naming what came instead.
fn refusal(result: Result<logto_m2m::Claims, logto_m2m::Error>) -> String {
    let e = match result {
        Ok(claims) => panic!("expected invalid_token, got {claims:?}"),
        Err(e) => e,
    };
    match e.kind() {
        ErrorKind::Verify(VerifyErrorKind::InvalidToken { reason }) => reason.clone(),
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[test]
fn es384_token_verifies_and_again_costs_no_fetch() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let verifier = server.verifier();
    let token = key.sign("");
    let claims = verifier.verify(&token, API, &["read:products"]).unwrap();
    assert_eq!(claims.sub.as_deref(), Some("app"));
    assert_eq!(claims.iss.as_deref(), Some(ISSUER));
    for _ in 0..100 {
        verifier.verify(&token, API, &[]).unwrap();
    }
    // Another audience or scope is still checked on a remembered token.
    let e = verifier
        .verify(&token, "https://other.api", &[])
        .unwrap_err();
    assert!(e.challenge().unwrap().contains("invalid_token"), "{e}");
    let e = verifier.verify(&token, API, &["delete:all"]).unwrap_err();
    assert_eq!(
        e.challenge().as_deref(),
        Some(r#"Bearer error="insufficient_scope", scope="delete:all""#)
    );
    assert_eq!(server.requests(), 1);
    // The same verifier, another key: ES256.
    let es256 = SigningKey::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "k256", "ES256");
    server.set(Mode::Serve(jwks(&[&key, &es256])));
    thread::sleep(Duration::from_millis(1100)); // past the cooldown: no waiting
    verifier.verify(&es256.sign(""), API, &[]).unwrap();
    assert_eq!(server.requests(), 2);
    let debug = format!("{verifier:?}");
    assert!(!debug.contains(&token[..20]), "{debug}");
}

#[test]
fn each_claim_and_header_check_refuses() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = server.verifier();
    let t = now();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong iss",
            key.sign(r#""iss":"https://evil/oidc""#),
            "iss is not",
        ),
        ("wrong aud", key.sign(r#""aud":"https://other.api""#), "aud"),
        (
            "aud array",
            key.sign(r#""aud":["https://a",5]"#),
            "aud is not a string or an array of strings",
        ),
        (
            "aud array without it",
            key.sign(r#""aud":["https://a","https://b"]"#),
            "aud does not contain",
        ),
        (
            "expired",
            key.sign(&format!(r#""exp":{}"#, t - 120)),
            "expired",
        ),
        (
            "exp a string",
            key.sign(r#""exp":"tomorrow""#),
            "exp is not a number",
        ),
        (
            "no exp",
            key.sign_raw(
                &key.header(),
                &payload("").replace(r#""exp":"#, r#""expiry":"#),
            ),
            "exp is missing",
        ),
        (
            "nbf ahead",
            key.sign(&format!(r#""nbf":{}"#, t + 600)),
            "nbf",
        ),
        (
            "typ jwt",
            key.sign_raw(r#"{"alg":"ES384","typ":"JWT","kid":"k1"}"#, &payload("")),
            "typ",
        ),
        (
            "no typ",
            key.sign_raw(r#"{"alg":"ES384","kid":"k1"}"#, &payload("")),
            "typ",
        ),
        (
            "crit",
            key.sign_raw(
                r#"{"alg":"ES384","typ":"at+jwt","kid":"k1","crit":["exp"],"exp":1}"#,
                &payload(""),
            ),
            "crit",
        ),
        (
            "alg twice",
            key.sign_raw(
                r#"{"alg":"ES384","typ":"at+jwt","kid":"k1","alg":"none"}"#,
                &payload(""),
            ),
            "twice",
        ),
        (
            "alg none",
            key.sign_raw(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#, &payload("")),
            "none",
        ),
        (
            "alg ES256 on a P-384 key",
            key.sign_raw(r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#, &payload("")),
            "does not fit the key",
        ),
        (
            "alg ES512",
            key.sign_raw(r#"{"alg":"ES512","typ":"at+jwt","kid":"k1"}"#, &payload("")),
            "ES512 (P-521) is not supported",
        ),
        (
            "alg RS256 on an EC key",
            key.sign_raw(r#"{"alg":"RS256","typ":"at+jwt","kid":"k1"}"#, &payload("")),
            "does not fit the key",
        ),
        (
            "payload not json",
            key.sign_raw(r#"{"alg":"ES384","typ":"at+jwt","kid":"k1"}"#, "[1]"),
            "payload",
        ),
        ("opaque", "opaque-token".to_owned(), "three"),
        ("too long", "a".repeat(9000), "longer than 8192"),
    ];
    for (what, token, expect) in cases {
        let reason = refusal(v.verify(&token, API, &[]));
        assert!(reason.contains(expect), "{what}: {reason}");
    }
    // The signature itself: zeroed, cut, one bit flipped, padded, DER-sized.
    let good = key.sign("");
    let (input, sig) = good.rsplit_once('.').unwrap();
    let raw = B64.decode(sig).unwrap();
    let flipped = {
        let mut r = raw.clone();
        r[10] ^= 1;
        r
    };
    for (what, bad, expect) in [
        ("zeroed", vec![0u8; 96], "does not verify"),
        ("cut", raw[..64].to_vec(), "not 96"),
        ("flipped", flipped, "does not verify"),
        ("der-sized", vec![0x30; 103], "not 96"),
        ("empty", vec![], "not 96"),
    ] {
        let token = format!("{input}.{}", B64.encode(&bad));
        let reason = refusal(v.verify(&token, API, &[]));
        assert!(reason.contains(expect), "{what}: {reason}");
    }
    let reason = refusal(v.verify(&format!("{good}="), API, &[]));
    assert!(reason.contains("base64url"), "{reason}");
    // The good one still verifies, and no refusal made a second fetch but "unknown kid".
    v.verify(&good, API, &[]).unwrap();
    assert_eq!(server.requests(), 1);
}

#[test]
fn unusable_keys_never_verify() {
    let enc = SigningKey::es384("enc");
    let jwk = enc.jwk().replace(r#""use":"sig""#, r#""use":"enc""#);
    let ops = SigningKey::es384("ops");
    let ops_jwk = ops
        .jwk()
        .replace(r#""use":"sig""#, r#""key_ops":["encrypt"]"#);
    let server = JwksServer::start(format!(
        r#"{{"keys":[{jwk},{ops_jwk},{{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
        {{"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"}}]}}"#
    ));
    let v = server.verifier();
    let reason = refusal(v.verify(&enc.sign(""), API, &[]));
    assert!(reason.contains("not for signatures"), "{reason}");
    let reason = refusal(v.verify(&ops.sign(""), API, &[]));
    assert!(reason.contains("key_ops"), "{reason}");
    let hmac = SigningKey::es384("hmac");
    let reason = refusal(v.verify(&hmac.sign(""), API, &[]));
    assert!(reason.contains("oct"), "{reason}");
    let p521 = SigningKey::es384("p521");
    let reason = refusal(v.verify(&p521.sign(""), API, &[]));
    assert!(reason.contains("P-521"), "{reason}");
}

#[test]
fn a_flood_of_made_up_kids_costs_one_fetch_per_cooldown() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = server.verifier();
    v.verify(&key.sign(""), API, &[]).unwrap();
    thread::sleep(Duration::from_millis(1100)); // past the cooldown: a made-up kid may fetch
    let started = Instant::now();
    thread::scope(|s| {
        for i in 0..40 {
            let v = &v;
            let key = &key;
            s.spawn(move || {
                let made_up = SigningKey {
                    pair: EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P384_SHA384_FIXED_SIGNING,
                        EcdsaKeyPair::generate_pkcs8(
                            &ECDSA_P384_SHA384_FIXED_SIGNING,
                            &SystemRandom::new(),
                        )
                        .unwrap()
                        .as_ref(),
                        &SystemRandom::new(),
                    )
                    .unwrap(),
                    kid: format!("made-up-{i}"),
                    alg: "ES384",
                };
                let reason = refusal(v.verify(&made_up.sign(""), API, &[]));
                assert!(reason.contains("kid"), "{reason}");
                // A known key is never held up by the flood.
                v.verify(&key.sign(""), API, &[]).unwrap();
            });
        }
    });
    // One fetch at first, then at most one per second of flood.
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        server.requests() <= 1 + seconds,
        "{} fetches in {seconds}s",
        server.requests()
    );
    assert!(server.requests() >= 2, "the unknown kid made no fetch");
    assert!(server.not_modified.load(SeqCst) >= 1, "no If-None-Match");
}

#[test]
fn a_rotation_is_picked_up_and_the_old_key_kept_while_listed() {
    let old = SigningKey::es384("old");
    let server = JwksServer::start(jwks(&[&old]));
    let v = server.verifier();
    let old_token = old.sign("");
    v.verify(&old_token, API, &[]).unwrap();
    let new = SigningKey::es384("new");
    server.set(Mode::Serve(jwks(&[&new, &old])));
    // At once, within the cooldown: a kid not known is refused without waiting...
    let started = Instant::now();
    let reason = refusal(v.verify(&new.sign(""), API, &[]));
    assert!(reason.contains("kid"), "{reason}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(server.requests(), 1);
    // ...and after it, fetches the new key.
    thread::sleep(Duration::from_millis(1100));
    v.verify(&new.sign(""), API, &[]).unwrap();
    v.verify(&old.sign(r#""jti":"other""#), API, &[]).unwrap();
    assert_eq!(server.requests(), 2);
    // The old key leaves the JWKS: its new tokens are refused after the next fetch.
    server.set(Mode::Serve(jwks(&[&new])));
    let newer = SigningKey::es384("newer");
    thread::sleep(Duration::from_millis(1100));
    refusal(v.verify(&newer.sign(""), API, &[]));
    let reason = refusal(v.verify(&old.sign(r#""jti":"third""#), API, &[]));
    assert!(reason.contains("kid"), "{reason}");
}

#[test]
fn a_failing_or_stalling_jwks_never_breaks_known_keys() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = server.verifier();
    v.verify(&key.sign(""), API, &[]).unwrap();
    for (mode, expect) in [
        (Mode::Status(500), "answered http 500"),
        (Mode::Status(302), "redirects are not followed"),
        (Mode::Serve("<html>".into()), "not a jwks"),
        (Mode::Stall, "timed out after 2s"),
    ] {
        server.set(mode);
        thread::sleep(Duration::from_millis(1100));
        let started = Instant::now();
        let stranger = SigningKey::es384("unknown");
        let e = v.verify(&stranger.sign(""), API, &[]).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Verify(VerifyErrorKind::Jwks { .. })),
            "{e}"
        );
        assert!(e.to_string().contains(expect), "{e}");
        assert_eq!(e.challenge(), None);
        assert!(started.elapsed() < Duration::from_secs(4), "{e}");
        // Meanwhile (fetching or not), known keys verify at once.
        let started = Instant::now();
        v.verify(&key.sign(""), API, &[]).unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}

#[test]
fn a_first_fetch_that_fails_says_so() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    server.set(Mode::Status(503));
    let v = server.verifier();
    let e = v.verify(&key.sign(""), API, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("jwks {}: answered http 503", server.url())
    );
    server.set(Mode::Serve(jwks(&[&key])));
    thread::sleep(Duration::from_millis(1100));
    v.verify(&key.sign(""), API, &[]).unwrap();
}

#[test]
fn urls_are_checked() {
    for (issuer, url, expect) in [
        (ISSUER, "ftp://x/jwks", "must start with"),
        (ISSUER, "http://idp.example/jwks", "plain http"),
        ("", "https://x/jwks", "issuer is empty"),
        (ISSUER, "https://user:pw@x/jwks", "user info"),
    ] {
        let e = Verifier::new(issuer, url).unwrap_err();
        assert!(e.to_string().contains(expect), "{url}: {e}");
    }
    Verifier::new(ISSUER, "https://idp.example/oidc/jwks").unwrap();
    Verifier::logto("http://localhost:3001/").unwrap();
}

#[test]
fn the_peers_tokens_verify_against_its_jwks() {
    let peer = shared_peer();
    let v = Verifier::logto(&peer.base_url()).unwrap();
    let token = ask(peer, M2M_BASIC, &shopping("read:products")).unwrap();
    let claims = v
        .verify(token.access_token(), SHOPPING_API, &["read:products"])
        .unwrap();
    assert_eq!(claims.client_id.as_deref(), Some("m2m-basic"));
    let e = v
        .verify(token.access_token(), SHOPPING_API, &["write:products"])
        .unwrap_err();
    assert_eq!(
        e.challenge().as_deref(),
        Some(r#"Bearer error="insufficient_scope", scope="write:products""#)
    );
    // An organization token: its audience is the organization's URN.
    let org = ask(
        peer,
        M2M_BASIC,
        &TokenRequest::new("")
            .organization("org-acme")
            .scope("read:members"),
    )
    .unwrap();
    let claims = v
        .verify(
            org.access_token(),
            "urn:logto:organization:org-acme",
            &["read:members"],
        )
        .unwrap();
    assert_eq!(*claims.aud, ["urn:logto:organization:org-acme"]);
    refusal(v.verify(org.access_token(), SHOPPING_API, &[]));
    // Another issuer's name for the same keys: refused.
    let other = Verifier::new(
        "http://elsewhere/oidc",
        &format!("{}/oidc/jwks", peer.base_url()),
    )
    .unwrap();
    let reason = refusal(other.verify(token.access_token(), SHOPPING_API, &[]));
    assert!(reason.contains("iss"), "{reason}");
}

// Keys have a maximum age (issue 31): the JWKS answer's `Cache-Control`.

#[test]
fn a_key_dropped_from_the_jwks_stops_verifying_after_max_age() {
    let (leaked, kept) = (SigningKey::es384("leaked"), SigningKey::es384("kept"));
    let server = JwksServer::with_headers(
        jwks(&[&leaked, &kept]),
        "Cache-Control: public, max-age=2\r\n",
    );
    let v = server.verifier();
    let (leaked_before, kept_before) = (leaked.sign(""), kept.sign(""));
    v.verify(&leaked_before, API, &[]).unwrap();
    v.verify(&kept_before, API, &[]).unwrap();
    let fetched = Instant::now();
    // The issuer drops the leaked key. Within the max-age the keys are not asked for again.
    server.set(Mode::Serve(jwks(&[&kept])));
    v.verify(&leaked_before, API, &[]).unwrap();
    v.verify(&leaked.sign(r#""jti":"within""#), API, &[])
        .unwrap();
    assert_eq!(server.requests(), 1);
    assert!(
        fetched.elapsed() < Duration::from_secs(2),
        "too slow to show"
    );
    thread::sleep(Duration::from_secs(2).saturating_sub(fetched.elapsed()) + ms(100));
    // Past it: the revalidation drops the key, for new tokens and remembered ones alike.
    let reason = refusal(v.verify(&leaked.sign(r#""jti":"after""#), API, &[]));
    assert!(reason.contains("kid"), "{reason}");
    let reason = refusal(v.verify(&leaked_before, API, &[]));
    assert!(reason.contains("kid"), "{reason}");
    // The key still listed goes on verifying, remembered or new.
    v.verify(&kept_before, API, &[]).unwrap();
    v.verify(&kept.sign(r#""jti":"after""#), API, &[]).unwrap();
    assert_eq!(server.requests(), 2, "one revalidation");
    // Still refused later on, with no fetch more (the keys are fresh again).
    refusal(v.verify(&leaked_before, API, &[]));
    assert_eq!(server.requests(), 2);
}

#[test]
fn no_cache_revalidates_after_the_cooldown() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::with_headers(jwks(&[&key]), "Cache-Control: no-cache\r\n");
    let v = server.verifier();
    let token = key.sign("");
    v.verify(&token, API, &[]).unwrap();
    v.verify(&token, API, &[]).unwrap();
    assert_eq!(server.requests(), 1, "asked again within the cooldown");
    thread::sleep(ms(1100));
    v.verify(&token, API, &[]).unwrap();
    assert_eq!(server.requests(), 2, "no revalidation after the cooldown");
    assert_eq!(
        server.not_modified.load(SeqCst),
        1,
        "no If-None-Match, or no 304"
    );
    // A 304 renews the max-age: the next calls within the cooldown ask nothing.
    for _ in 0..20 {
        v.verify(&token, API, &[]).unwrap();
    }
    assert_eq!(server.requests(), 2);
    // The key leaves the JWKS: a second later, its remembered token is refused.
    server.set(Mode::Serve(jwks(&[])));
    thread::sleep(ms(1100));
    let reason = refusal(v.verify(&token, API, &[]));
    assert!(reason.contains("kid"), "{reason}");
    assert_eq!(server.requests(), 3);
}

#[test]
fn one_revalidation_for_16_threads() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::with_headers(jwks(&[&key]), "Cache-Control: max-age=1\r\n");
    let v = server.verifier();
    let remembered: Vec<String> = (0..8)
        .map(|i| key.sign(&format!(r#""jti":"r{i}""#)))
        .collect();
    for token in &remembered {
        v.verify(token, API, &[]).unwrap();
    }
    let fresh: Vec<String> = (0..8)
        .map(|i| key.sign(&format!(r#""jti":"f{i}""#)))
        .collect();
    assert_eq!(server.requests(), 1);
    // Past the max-age, with a JWKS that takes 500 ms: 16 threads at once, half with tokens
    // verified before, half with new ones.
    server.set_delay(ms(500));
    thread::sleep(ms(1100));
    let barrier = Barrier::new(16);
    let times: Vec<Duration> = thread::scope(|s| {
        let threads: Vec<_> = remembered
            .iter()
            .chain(&fresh)
            .map(|token| {
                let (v, barrier) = (&v, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    v.verify(token, API, &["read:products"]).unwrap();
                    started.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        server.requests(),
        2,
        "one revalidation, whatever the threads"
    );
    assert_eq!(server.not_modified.load(SeqCst), 1);
    // The thread that revalidated waited for the fetch; the others, whose key was known,
    // did not wait for it (no thread waits longer than that one fetch).
    let slow = times.iter().filter(|t| **t >= ms(450)).count();
    assert!(
        slow <= 1,
        "{slow} threads waited for the revalidation: {times:?}"
    );
    assert!(times.iter().all(|t| *t < ms(2500)), "{times:?}");
}

#[test]
fn a_failing_jwks_past_max_age_keeps_the_keys_for_the_grace_then_refuses() {
    for (mode, expect) in [
        (Mode::Status(500), "answered http 500"),
        (Mode::Stall, "timed out after 1s"),
    ] {
        let key = SigningKey::es384("k1");
        let server = JwksServer::with_headers(
            jwks(&[&key]),
            "Cache-Control: max-age=1, stale-if-error=3\r\n",
        );
        let v = server.verifier().timeout(Duration::from_secs(1));
        let before = key.sign("");
        v.verify(&before, API, &[]).unwrap();
        let fetched = Instant::now();
        server.set(mode);
        thread::sleep(ms(1100));
        // Past the max-age: the revalidation fails, the keys are kept (stale-if-error).
        let started = Instant::now();
        v.verify(&key.sign(r#""jti":"stale""#), API, &[]).unwrap();
        assert!(
            started.elapsed() < ms(1900),
            "{expect}: {:?}",
            started.elapsed()
        );
        v.verify(&before, API, &[]).unwrap();
        assert_eq!(server.requests(), 2, "{expect}");
        // Past max-age + grace (1 + 3 s from the first fetch): refused, as a JWKS error
        // (503, no challenge), the remembered token too.
        thread::sleep(Duration::from_millis(4300).saturating_sub(fetched.elapsed()));
        for token in [key.sign(r#""jti":"late""#), before.clone()] {
            let started = Instant::now();
            let e = v.verify(&token, API, &[]).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Verify(VerifyErrorKind::Jwks { .. })),
                "{expect}: {e}"
            );
            assert!(e.to_string().contains(expect), "{e}");
            assert_eq!(e.challenge(), None);
            assert!(started.elapsed() < ms(1900), "{e}: {:?}", started.elapsed());
        }
        // The JWKS works again: after the cooldown, so does the key.
        server.set(Mode::Serve(jwks(&[&key])));
        thread::sleep(ms(1100));
        v.verify(&before, API, &[]).unwrap();
    }
}

// No caller is held by junk (issue 31).

#[test]
fn runs_of_junk_kids_are_refused_at_once() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = server.verifier();
    v.verify(&key.sign(""), API, &[]).unwrap();
    thread::sleep(ms(1100));
    let junk: Vec<String> = (0..50).map(|i| key.sign_as(&format!("junk-{i}"))).collect();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for (i, token) in junk.iter().enumerate() {
        let one = Instant::now();
        let reason = refusal(v.verify(token, API, &[]));
        assert!(reason.contains("kid"), "{reason}");
        slowest = slowest.max(one.elapsed());
        if i % 10 == 9 {
            // A good token verifies among them, at once.
            v.verify(&key.sign(&format!(r#""jti":"good{i}""#)), API, &[])
                .unwrap();
        }
        // Today's bound is 50 s (each waiting out the cooldown): stop early if it shows.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{i} junk tokens took 10 s"
        );
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "50 junk tokens took {took:?}"
    );
    assert!(slowest < ms(900), "the slowest refusal took {slowest:?}");
    // The first one fetched (the cooldown was over); the rest came within its cooldown.
    let allowed = 2 + took.as_secs();
    assert!(
        server.requests() <= allowed,
        "{} fetches in {took:?}",
        server.requests()
    );
}

#[test]
fn a_junk_kid_during_a_fetch_waits_for_that_fetch_only() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = server.verifier();
    v.verify(&key.sign(""), API, &[]).unwrap();
    server.set_delay(ms(800));
    thread::sleep(ms(1100));
    let (first, second, third) = (
        key.sign_as("junk-1"),
        key.sign_as("junk-2"),
        key.sign_as("junk-3"),
    );
    thread::scope(|s| {
        let fetching = s.spawn(|| {
            let started = Instant::now();
            refusal(v.verify(&first, API, &[]));
            started.elapsed()
        });
        thread::sleep(ms(200));
        // The fetch is under way: this one waits for it, and for nothing more.
        let started = Instant::now();
        let reason = refusal(v.verify(&second, API, &[]));
        let waited = started.elapsed();
        assert!(reason.contains("kid"), "{reason}");
        let fetch = fetching.join().unwrap();
        assert!(fetch >= ms(750), "the fetch took {fetch:?}");
        assert!(
            waited <= fetch + ms(300),
            "waited {waited:?} for a fetch of {fetch:?}"
        );
    });
    assert_eq!(server.requests(), 2, "one fetch for both");
    // The fetch is over, the cooldown not: refused at once, no fetch.
    let started = Instant::now();
    refusal(v.verify(&third, API, &[]));
    assert!(started.elapsed() < ms(400), "{:?}", started.elapsed());
    assert_eq!(server.requests(), 2);
}

#[test]
fn a_timeout_too_long_for_the_clock_is_no_deadline() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = Verifier::new(ISSUER, &server.url())
        .unwrap()
        .timeout(Duration::MAX);
    v.verify(&key.sign(""), API, &[]).unwrap();
    // Unknown kids, within the cooldown and after it: refused, no panic, in good time.
    for wait in [Duration::ZERO, ms(1100)] {
        thread::sleep(wait);
        let started = Instant::now();
        let reason = refusal(v.verify(&key.sign_as("unknown"), API, &[]));
        assert!(reason.contains("kid"), "{reason}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    assert_eq!(server.requests(), 2);
}

// Strict reading (issue 31).

#[test]
fn claims_are_read_strictly() {
    let key = SigningKey::es384("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let v = server.verifier();
    let t = now();
    let day_ahead = t + 86_400;
    // Each as the issuer signed it: the usual claims plus these, exactly.
    let cases = [
        // The first value is the one a lenient reader keeps: each would verify.
        (
            "exp twice",
            format!(r#""exp":{},"exp":{}"#, t + 600, t - 600),
            "payload has exp twice",
        ),
        (
            "aud twice",
            format!(r#""aud":"{API}","aud":"https://other.api""#),
            "payload has aud twice",
        ),
        (
            "scope twice",
            r#""scope":"read:products","scope":"admin""#.to_owned(),
            "payload has scope twice",
        ),
        (
            "a custom claim twice",
            r#""roles":["a"],"roles":["admin"]"#.to_owned(),
            "payload has a claim twice",
        ),
        (
            "nbf a string",
            r#""nbf":"tomorrow""#.to_owned(),
            "nbf is not a number",
        ),
        (
            "nbf a bool",
            r#""nbf":true"#.to_owned(),
            "nbf is not a number",
        ),
        (
            "nbf null",
            r#""nbf":null"#.to_owned(),
            "nbf is not a number",
        ),
        (
            "nbf a day ahead, with a fraction",
            format!(r#""nbf":{day_ahead}.5"#),
            "not valid yet (nbf)",
        ),
        (
            "iat a string",
            r#""iat":"now""#.to_owned(),
            "iat is not a number",
        ),
        (
            "exp an array",
            format!(r#""exp":[{}]"#, t + 600),
            "exp is not a number",
        ),
        (
            "sub a number",
            r#""sub":5"#.to_owned(),
            "sub is not a string",
        ),
    ];
    for (what, extra, expect) in cases {
        let usual = payload("");
        let claims = if extra.contains("twice") || what.contains("twice") {
            // The usual claims minus the doubled one, then it twice.
            let name = extra.split('"').nth(1).unwrap();
            let kept: Vec<String> = members(&usual[1..usual.len() - 1])
                .into_iter()
                .filter(|m| m.split('"').nth(1) != Some(name))
                .collect();
            format!("{{{},{extra}}}", kept.join(","))
        } else {
            payload(&extra)
        };
        let token = key.sign_raw(&key.header(), &claims);
        let reason = refusal(v.verify(&token, API, &[]));
        assert!(reason.contains(expect), "{what}: {reason}");
    }
    // NumericDate allows fractions: cut to whole seconds, not refused.
    let claims = v
        .verify(
            &key.sign(&format!(
                r#""exp":{}.75,"nbf":{}.5,"iat":{}.25"#,
                t + 600,
                t - 60,
                t - 60
            )),
            API,
            &["read:products"],
        )
        .unwrap();
    assert_eq!(
        (claims.exp, claims.nbf, claims.iat),
        (Some(t + 600), Some(t - 60), Some(t - 60))
    );
    let claims = v.verify(&key.sign(r#""exp":2e9"#), API, &[]).unwrap();
    assert_eq!(claims.exp, Some(2_000_000_000));
    assert_eq!(server.requests(), 1);
}

#[test]
fn jwks_constraints_of_the_wrong_type_make_the_key_unusable() {
    let (plain, use_1, alg_true, ops_text) = (
        SigningKey::es384("plain"),
        SigningKey::es384("use-1"),
        SigningKey::es384("alg-true"),
        SigningKey::es384("ops-text"),
    );
    let without_use = |k: &SigningKey| k.jwk().replace(r#","use":"sig""#, "");
    let keys = [
        plain.jwk(),
        without_use(&use_1).replace('}', r#","use":1}"#),
        without_use(&alg_true).replace(r#""alg":"ES384""#, r#""alg":true"#),
        without_use(&ops_text).replace('}', r#","key_ops":"verify"}"#),
    ];
    let server = JwksServer::start(format!(r#"{{"keys":[{}]}}"#, keys.join(",")));
    let v = server.verifier();
    v.verify(&plain.sign(""), API, &[]).unwrap();
    for (key, expect) in [
        (&use_1, "use is not a string"),
        (&alg_true, "alg is not a string"),
        (&ops_text, "key_ops is not an array"),
    ] {
        let reason = refusal(v.verify(&key.sign(""), API, &[]));
        assert!(reason.contains(expect), "{}: {reason}", key.kid);
    }
}

#[test]
fn a_high_s_ecdsa_signature_verifies() {
    // Signers such as Logto's don't make S low (it is not in JOSE), so a verifier that
    // refused a high S would refuse valid tokens. (r, n - s) is as valid as (r, s).
    const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";
    let es256 = SigningKey::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "k256", "ES256");
    let es384 = SigningKey::es384("k384");
    let server = JwksServer::start(jwks(&[&es256, &es384]));
    let v = server.verifier();
    for (key, n) in [(&es256, P256_N), (&es384, P384_N)] {
        let n: Vec<u8> = (0..n.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&n[i..i + 2], 16).unwrap())
            .collect();
        let token = key.sign("");
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = B64.decode(sig).unwrap();
        let (r, s) = sig.split_at(n.len());
        // Big-endian n - s, by hand.
        let mut other = vec![0u8; n.len()];
        let mut borrow = 0i16;
        for i in (0..n.len()).rev() {
            let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(d < 0);
            other[i] = (d + 256 * borrow) as u8;
        }
        // One of s and n - s is above n / 2 (its top byte at least 0x7f for these n): both
        // signatures verify, the high one included.
        let high = if other.as_slice() > s { &other[..] } else { s };
        let low = if other.as_slice() > s { s } else { &other[..] };
        assert!(high[0] >= 0x7f && low[0] <= 0x80, "{}", key.alg);
        for s in [high, low] {
            let token = format!("{input}.{}", B64.encode([r, s].concat()));
            v.verify(&token, API, &[]).unwrap();
        }
    }
}

// A logger is user code (issue 31): these run in a child process with a logger of their own.

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The child's logger: keeps every record, and panics on the ones `PANIC_ON` names.
struct TestLogger;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Panic on a record whose `level target: message` line contains this; once, or always.
static PANIC_ON: Mutex<Option<(&str, bool)>> = Mutex::new(None);

impl log::Log for TestLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        let panic_now = {
            let mut on = PANIC_ON.lock().unwrap_or_else(PoisonError::into_inner);
            match *on {
                Some((text, once)) if line.contains(text) => {
                    if once {
                        *on = None;
                    }
                    true
                }
                _ => false,
            }
        };
        LINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.clone());
        if panic_now {
            panic!("the test logger panics on: {line}");
        }
    }

    fn flush(&self) {}
}

fn panic_on(text: Option<(&'static str, bool)>) {
    *PANIC_ON.lock().unwrap_or_else(PoisonError::into_inner) = text;
}

fn log_lines() -> Vec<String> {
    LINES.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Runs `test` in a child process of this test binary with [`TestLogger`] installed, and
/// fails if it fails there (or does not run).
fn in_child(name: &str, test: impl FnOnce()) {
    const CHILD: &str = "LOGTO_M2M_VERIFIER_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        log::set_logger(&TestLogger).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
        test();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            common::test_name(module_path!(), name).as_str(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in a child process: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_panic_inside_the_fetch_does_not_leave_it_in_flight() {
    in_child(
        "a_panic_inside_the_fetch_does_not_leave_it_in_flight",
        || {
            let key = SigningKey::es384("k1");
            let server = JwksServer::start(jwks(&[&key]));
            let v = server.verifier();
            // ureq logs the request it is about to send: the logger panics there, inside the
            // fetch, with no lock of the verifier's held.
            panic_on(Some(("GET http://127.0.0.1", true)));
            let token = key.sign("");
            let panicked = panic::catch_unwind(AssertUnwindSafe(|| v.verify(&token, API, &[])));
            assert!(
                panicked.is_err(),
                "the logger did not panic: {:?}",
                log_lines()
            );
            assert_eq!(server.requests(), 0);
            // The fetch is over: within the cooldown a call is answered at once...
            let started = Instant::now();
            let e = v.verify(&token, API, &[]).unwrap_err();
            assert!(e.to_string().contains("panic"), "{e}");
            assert!(started.elapsed() < ms(500), "{:?}", started.elapsed());
            // ...and after it, the next call fetches.
            thread::sleep(ms(1100));
            let started = Instant::now();
            v.verify(&token, API, &[]).unwrap();
            assert!(started.elapsed() < ms(1500), "{:?}", started.elapsed());
            assert_eq!(server.requests(), 1);
        },
    );
}

#[test]
fn a_logger_that_panics_on_the_warning_wedges_nothing() {
    in_child("a_logger_that_panics_on_the_warning_wedges_nothing", || {
        let key = SigningKey::es384("k1");
        let server = JwksServer::start(jwks(&[&key]));
        server.set(Mode::Status(500));
        server.set_delay(ms(500));
        let v = server.verifier().timeout(Duration::from_secs(5));
        panic_on(Some(("WARN logto_m2m: jwks", false)));
        let token = key.sign("");
        thread::scope(|s| {
            // The first fetches and panics in the logger on its warning; the second waits
            // for that fetch, and gets its answer as soon as it is recorded.
            let fetching = s.spawn(|| {
                panic::catch_unwind(AssertUnwindSafe(|| v.verify(&token, API, &[]))).is_err()
            });
            thread::sleep(ms(150));
            let started = Instant::now();
            let e = v.verify(&token, API, &[]).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Verify(VerifyErrorKind::Jwks { .. })),
                "{e}"
            );
            assert!(e.to_string().contains("answered http 500"), "{e}");
            assert!(started.elapsed() < ms(900), "{:?}", started.elapsed());
            assert!(fetching.join().unwrap(), "the logger did not panic");
        });
        assert_eq!(server.requests(), 1);
        // Not wedged: the JWKS works again, and after the cooldown so does the verifier.
        server.set(Mode::Serve(jwks(&[&key])));
        server.set_delay(Duration::ZERO);
        thread::sleep(ms(1100));
        v.verify(&token, API, &[]).unwrap();
        assert_eq!(server.requests(), 2);
    });
}

#[test]
fn a_failing_revalidation_warns_what_it_keeps() {
    in_child("a_failing_revalidation_warns_what_it_keeps", || {
        let key = SigningKey::es384("k1");
        let server = JwksServer::with_headers(
            jwks(&[&key]),
            "Cache-Control: max-age=1, stale-if-error=30\r\n",
        );
        let v = server.verifier();
        v.verify(&key.sign(""), API, &[]).unwrap();
        server.set(Mode::Status(503));
        thread::sleep(ms(1100));
        v.verify(&key.sign(""), API, &[]).unwrap();
        let lines = log_lines();
        let jwks_lines: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("logto_m2m: jwks"))
            .collect();
        let url = server.url();
        assert_eq!(
            jwks_lines.first().map(|l| l.as_str()),
            Some(format!("DEBUG logto_m2m: jwks {url}: 1 keys fetched, fresh for 1s").as_str()),
            "{jwks_lines:#?}"
        );
        let warned: Vec<&&String> = jwks_lines
            .iter()
            .filter(|l| l.starts_with("WARN"))
            .collect();
        assert_eq!(warned.len(), 1, "{jwks_lines:#?}");
        let prefix = format!(
            "WARN logto_m2m: jwks {url}: answered http 503; keeping the keys fetched before for "
        );
        assert!(warned[0].starts_with(&prefix), "{}", warned[0]);
        assert!(warned[0].ends_with("s at most"), "{}", warned[0]);
    });
}
