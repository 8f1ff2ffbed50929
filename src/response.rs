//! The token-response parser: status and body bytes in, a [`Token`] or a precise [`Error`]
//! out. It does no I/O, so it is what the fuzz targets call.
//!
//! miniserde parses without recursion, so no nesting depth can overflow the stack, and it
//! refuses trailing data. Its own error carries no information, so the body is read into one
//! small value per field we know and each field is checked by hand: every error names the field.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use miniserde::de::Visitor;
use miniserde::{Deserialize, json};

use crate::claims::Claims;
use crate::error::{Error, ErrorKind, MAX_SERVER_TEXT, MAX_SERVER_WORD, Redactions, sanitize_to};
use crate::text::{Leaf, Members, member_names};
use crate::token::{BEARER_PREFIX, Token, is_header_safe, is_printable};

/// The lifetime assumed when a token response has no `expires_in` and the token is not a
/// JWT with an `exp`: 60 seconds. RFC 6749 §5.1 lets a server leave the field out; a short
/// guess means a cache refreshes too early rather than hands out an expired token.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// What the parser needs to know of the request: when it was sent, by both clocks, what it
/// asked for, and the longest lifetime to believe.
pub(crate) struct Sent<'a> {
    pub(crate) at: Instant,
    pub(crate) wall: SystemTime,
    pub(crate) scope: &'a [String],
    pub(crate) max_lifetime: Duration,
}

/// What one exchange brought back, before parsing.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// `Some(retry_after)` when this is a rate limit: 429, or 503 with `Retry-After`.
    pub(crate) rate_limited: Option<Option<Duration>>,
    pub(crate) body: Vec<u8>,
    /// The answer's `Logto-Core-Request-Id`, sanitized.
    pub(crate) request_id: Option<String>,
}

/// Parses a token endpoint's answer into a [`Token`], or the precise [`Error`].
///
/// A 2xx body must be an RFC 6749 §5.1 token response:
///
/// - `access_token`: required, a non-empty string of visible ASCII (no spaces, no control
///   characters), so it is always safe in an HTTP header;
/// - `token_type`: required, `Bearer` in any case;
/// - `expires_in`: a non-negative integer, or a string of digits; values past `u64::MAX`
///   saturate; absent or `null`: the JWT's `exp`, else 60 s; at most the config's maximum;
/// - `scope`: optional string without control characters;
/// - other fields are ignored; a field above that appears twice, trailing data after the
///   object, or a body that is not a JSON object is refused. A UTF-8 byte-order mark before
///   the object is skipped (RFC 8259 §8.1).
///
/// Any other status is an error: an RFC 6749 §5.2 body (`error`, `error_description`,
/// `error_uri`, with Logto's `code` and `message`) becomes [`ErrorKind::OAuth`], a rate
/// limit [`ErrorKind::RateLimited`], a 3xx [`ErrorKind::Redirect`], and anything else, an
/// HTML page included, [`ErrorKind::HttpStatus`] with its status. Server text in an error is
/// sanitized, and `redact`'s secrets never appear in it.
pub(crate) fn parse(
    answer: &Answer,
    sent: &Sent<'_>,
    redact: &Redactions<'_>,
) -> Result<Token, Error> {
    let status = answer.status;
    let parsed = parse_fields(&answer.body);
    if let Some(retry_after) = answer.rate_limited {
        let f = parsed.unwrap_or_default();
        return Err(Error::new(ErrorKind::RateLimited {
            status,
            retry_after,
            error: f.word(ERROR, redact),
            description: f.text(ERROR_DESCRIPTION, redact),
            logto_code: f.word(CODE, redact),
            logto_message: f.text(MESSAGE, redact),
        }));
    }
    match status {
        200..=299 => {}
        300..=399 => {
            return Err(Error::new(ErrorKind::Redirect {
                status,
                location: None,
            }));
        }
        _ => return Err(error_response(status, parsed.ok(), redact)),
    }
    let mut f = parsed.map_err(|reason| invalid(status, None, reason))?;
    if let Some(field) = f.0.twice {
        return Err(invalid(status, Some(field), "appears more than once"));
    }
    // Some servers answer 200 with an error body; it is still an error, and saying which
    // one helps more than "access_token missing".
    if f.0.get(ACCESS_TOKEN).is_none() && matches!(f.0.get(ERROR), Some(Leaf::Str(_))) {
        return Err(error_response(status, Some(f), redact));
    }

    let access_token = bearer_token(status, f.0.take(ACCESS_TOKEN), f.0.get(TOKEN_TYPE), redact)?;
    let claims = Claims::from_jwt(&access_token);
    let expires_in = match f.0.get(EXPIRES_IN) {
        None | Some(Leaf::Null) => claims
            .as_ref()
            .and_then(|c| time_left(u64::try_from(c.exp?).ok()?, sent.wall))
            .unwrap_or(DEFAULT_LIFETIME),
        Some(v) => Duration::from_secs(
            expires_in_secs(v).map_err(|reason| invalid(status, Some("expires_in"), reason))?,
        ),
    };

    let scope = match f.0.take(SCOPE) {
        None | Some(Leaf::Null) => None,
        Some(Leaf::Str(s)) if !is_printable(&s) => {
            return Err(invalid(status, Some("scope"), "has control characters"));
        }
        Some(Leaf::Str(s)) => Some(s),
        Some(_) => return Err(invalid(status, Some("scope"), "is not a string")),
    };

    let mut authorization = String::with_capacity(BEARER_PREFIX.len() + access_token.len());
    authorization.push_str(BEARER_PREFIX);
    authorization.push_str(&access_token);
    Ok(Token {
        authorization,
        expires_in: expires_in.min(sent.max_lifetime),
        scope,
        requested_scope: sent.scope.join(" "),
        scope_claim: claims.map(|c| c.scope),
        sent_at: sent.at,
        sent_at_wall: sent.wall,
    })
}

/// The `access_token` of a 2xx answer, checked with its `token_type`: present, a string,
/// not empty, fit for a header (the message never repeats it), and of type Bearer.
fn bearer_token(
    status: u16,
    access_token: Option<Leaf>,
    token_type: &Option<Leaf>,
    redact: &Redactions<'_>,
) -> Result<String, Error> {
    let access_token = match access_token {
        None | Some(Leaf::Null) => {
            return Err(invalid(status, Some("access_token"), "is missing"));
        }
        Some(Leaf::Str(s)) => s,
        Some(_) => return Err(invalid(status, Some("access_token"), "is not a string")),
    };
    if access_token.is_empty() {
        return Err(invalid(status, Some("access_token"), "is empty"));
    }
    // Visible ASCII only: a token with CR/LF or a space could split or forge a header when
    // it is sent on. The message never repeats the token.
    if !is_header_safe(&access_token) {
        return Err(invalid(
            status,
            Some("access_token"),
            "has characters not allowed in an http header",
        ));
    }

    match token_type {
        None | Some(Leaf::Null) => return Err(invalid(status, Some("token_type"), "is missing")),
        Some(Leaf::Str(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Leaf::Str(t)) => {
            let shown = sanitize_to(t, redact, MAX_SERVER_WORD);
            return Err(invalid(
                status,
                Some("token_type"),
                format!("is \"{shown}\", not Bearer"),
            ));
        }
        Some(_) => return Err(invalid(status, Some("token_type"), "is not a string")),
    }
    Ok(access_token)
}

/// The time left until `exp` (Unix seconds) at `now`, zero when past.
fn time_left(exp: u64, now: SystemTime) -> Option<Duration> {
    let exp = UNIX_EPOCH.checked_add(Duration::from_secs(exp))?;
    Some(exp.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `expires_in` as whole seconds: a non-negative JSON integer (also written as `3600.0` or
/// `1e30`), or a string of digits. Too large saturates at `u64::MAX`.
fn expires_in_secs(v: &Leaf) -> Result<u64, &'static str> {
    match v {
        Leaf::U64(n) => Ok(*n),
        Leaf::I64(_) => Err("is negative"),
        Leaf::F64(x) => {
            if x.is_nan() {
                Err("is not a number")
            } else if *x < 0.0 {
                Err("is negative")
            } else if x.fract() != 0.0 {
                Err("is not a whole number of seconds")
            } else {
                // `as` saturates: 1e30 and 2^64 become u64::MAX, which is what we want.
                Ok(*x as u64)
            }
        }
        Leaf::Str(s) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err("is not a number");
            }
            // All digits, so the only way to fail is overflow.
            Ok(s.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => Err("is not a number"),
    }
}

#[cold]
fn invalid(status: u16, field: Option<&'static str>, reason: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidResponse {
        status,
        field,
        reason: reason.into(),
    })
}

/// An error answer: OAuth when the body has a string `error`, plain HTTP status otherwise.
#[cold]
fn error_response(status: u16, fields: Option<Fields>, redact: &Redactions<'_>) -> Error {
    let f = fields.unwrap_or_default();
    let logto_code = f.word(CODE, redact);
    let logto_message = f.text(MESSAGE, redact);
    match f.word(ERROR, redact) {
        Some(error) => Error::new(ErrorKind::OAuth {
            status,
            error,
            description: f.text(ERROR_DESCRIPTION, redact),
            uri: f.word(ERROR_URI, redact),
            logto_code,
            logto_message,
        }),
        None => Error::new(ErrorKind::HttpStatus {
            status,
            logto_code,
            logto_message,
        }),
    }
}

/// The fields of a token response or an error response that we read, at their places in
/// [`FIELDS`]; everything else is skipped without being kept. `twice` is the first field
/// that appeared twice: miniserde's error can't say why it failed, so the parse goes on and
/// this is checked afterwards.
struct Fields(Members<{ FIELDS.len() }>);

// The fields read, each with a constant for its place.
member_names! {
    FIELDS:
    ACCESS_TOKEN = "access_token",
    TOKEN_TYPE = "token_type",
    EXPIRES_IN = "expires_in",
    SCOPE = "scope",
    ERROR = "error",
    ERROR_DESCRIPTION = "error_description",
    ERROR_URI = "error_uri",
    CODE = "code",
    MESSAGE = "message",
}

impl Default for Fields {
    fn default() -> Fields {
        Fields(Members::new(&FIELDS, None))
    }
}

impl Fields {
    /// A string field, sanitized for an error message; `None` when absent, not a string,
    /// or empty after sanitizing.
    fn string(&self, field: usize, redact: &Redactions<'_>, max: usize) -> Option<String> {
        match self.0.get(field) {
            Some(Leaf::Str(s)) => Some(sanitize_to(s, redact, max)).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// A code-like field: `error`, `error_uri`, Logto's `code`.
    fn word(&self, field: usize, redact: &Redactions<'_>) -> Option<String> {
        self.string(field, redact, MAX_SERVER_WORD)
    }

    /// A descriptive field: `error_description`, Logto's `message`.
    fn text(&self, field: usize, redact: &Redactions<'_>) -> Option<String> {
        self.string(field, redact, MAX_SERVER_TEXT)
    }
}

fn parse_fields(body: &[u8]) -> Result<Fields, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not utf-8")?;
    // RFC 8259 §8.1: a parser may ignore a byte-order mark; some Windows servers send one.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let trimmed = text.trim_start_matches([' ', '\t', '\r', '\n']);
    if trimmed.is_empty() {
        return Err("body is empty");
    }
    if !trimmed.starts_with('{') {
        return Err("body is not a json object");
    }
    json::from_str::<Fields>(text).map_err(|_| "body is not valid json")
}

impl Deserialize for Fields {
    fn begin(out: &mut Option<Self>) -> &mut dyn Visitor {
        // The place starts filled, and `Fields` is its own visitor: only `map` is accepted,
        // so any other JSON value at the top fails the parse.
        &mut out.insert(<Fields as Default>::default()).0
    }
}

/// The fuzz targets' entry: [`parse`] as `request_token` calls it, for an answer with no
/// `Retry-After`, sent now, asking for no scope, with the default maximum lifetime.
#[cfg(any(test, feature = "_internal"))]
pub(crate) fn parse_now(status: u16, body: &[u8]) -> Result<Token, Error> {
    let answer = Answer {
        status,
        rate_limited: (status == 429).then_some(None),
        body: body.to_vec(),
        request_id: None,
    };
    let sent = Sent {
        at: Instant::now(),
        wall: SystemTime::now(),
        scope: &[],
        max_lifetime: Duration::from_secs(24 * 3600),
    };
    parse(&answer, &sent, &Redactions::NONE)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::request::TokenRequest;
    use base64::Engine;

    fn ok(body: &str) -> Token {
        parse_now(200, body.as_bytes()).unwrap()
    }

    fn err(status: u16, body: &str) -> String {
        parse_now(status, body.as_bytes()).unwrap_err().to_string()
    }

    const GOOD: &str =
        r#"{"access_token":"tok","expires_in":3600,"token_type":"Bearer","scope":"a b"}"#;

    #[test]
    fn parses_logto_answer() {
        let t = ok(GOOD);
        assert_eq!(t.access_token(), "tok");
        assert_eq!(t.expires_in(), Duration::from_secs(3600));
        assert_eq!(t.scope(), Some("a b"));
        assert_eq!(t.scope.as_deref(), Some("a b"));
    }

    #[test]
    fn token_type_any_case() {
        ok(r#"{"access_token":"t","token_type":"bEaReR"}"#);
    }

    #[test]
    fn expires_in_forms() {
        let e = |v: &str| {
            let body = format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{v}}}"#);
            parse_now(200, body.as_bytes()).map(|t| t.expires_in().as_secs())
        };
        assert_eq!(e("0").unwrap(), 0);
        assert_eq!(e("\"3600\"").unwrap(), 3600);
        assert_eq!(e("3600.0").unwrap(), 3600);
        // Huge values saturate when read, then the maximum lifetime (one day) caps them.
        let day = 24 * 3600;
        assert_eq!(e("86401").unwrap(), day);
        assert_eq!(e("18446744073709551615").unwrap(), day);
        assert_eq!(e("18446744073709551616").unwrap(), day);
        assert_eq!(e("1e30").unwrap(), day);
        assert_eq!(e("\"99999999999999999999999\"").unwrap(), day);
        assert_eq!(e("null").unwrap(), DEFAULT_LIFETIME.as_secs());
        let read = |v: &str| {
            let body = format!(r#"{{"expires_in":{v}}}"#);
            expires_in_secs(
                &parse_fields(body.as_bytes())
                    .unwrap()
                    .0
                    .take(EXPIRES_IN)
                    .unwrap(),
            )
        };
        assert_eq!(read("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(read("18446744073709551616"), Ok(u64::MAX));
        assert_eq!(read("1e30"), Ok(u64::MAX));
        assert_eq!(read("\"99999999999999999999999\""), Ok(u64::MAX));
        let msg = |v: &str| e(v).unwrap_err().to_string();
        assert!(
            msg("-1").ends_with("expires_in is negative"),
            "{}",
            msg("-1")
        );
        assert!(msg("-1.5").ends_with("expires_in is negative"));
        assert!(msg("1.5").ends_with("expires_in is not a whole number of seconds"));
        assert!(msg("\"soon\"").ends_with("expires_in is not a number"));
        assert!(msg("\"\"").ends_with("expires_in is not a number"));
        assert!(msg("\"-1\"").ends_with("expires_in is not a number"));
        assert!(msg("true").ends_with("expires_in is not a number"));
    }

    #[test]
    fn absent_expires_in_is_default() {
        let t = ok(r#"{"access_token":"t","token_type":"Bearer"}"#);
        assert_eq!(t.expires_in(), DEFAULT_LIFETIME);
        assert_eq!(t.scope(), None);
    }

    /// A JWT access token with `payload` as its claims (signature not checked, not needed).
    fn jwt(payload: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"ES384"}"#), b64(payload))
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn absent_expires_in_comes_from_the_jwt_exp() {
        let with = |token: &str, extra: &str| {
            ok(&format!(
                r#"{{"access_token":"{token}","token_type":"Bearer"{extra}}}"#
            ))
            .expires_in()
            .as_secs()
        };
        let exp = now_secs() + 1800;
        let t = jwt(&format!(r#"{{"sub":"app","exp":{exp}}}"#));
        assert!((1798..=1800).contains(&with(&t, "")), "{}", with(&t, ""));
        // expires_in, when present, wins.
        assert_eq!(with(&t, r#","expires_in":60"#), 60);
        // Past exp: zero; far future: the maximum; no exp or a bad payload: the default.
        let past = jwt(&format!(r#"{{"exp":{}}}"#, now_secs() - 10));
        assert_eq!(with(&past, ""), 0);
        let far = jwt(r#"{"exp":99999999999}"#);
        assert_eq!(with(&far, ""), 24 * 3600);
        for opaque in [
            jwt(r#"{"sub":"app"}"#),
            jwt(r#"{"exp":"soon"}"#),
            jwt(r#"{"exp":-5}"#),
            jwt("not json"),
            "a.b".to_owned(),
            "a.!!!.c".to_owned(),
            format!("{}.x", jwt(r#"{"exp":99999999999}"#)),
            "opaque-token".to_owned(),
        ] {
            assert_eq!(with(&opaque, ""), 60, "{opaque}");
        }
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let t = parse_now(200, format!("\u{FEFF}{GOOD}").as_bytes()).unwrap();
        assert_eq!(t.access_token(), "tok");
    }

    #[test]
    fn missing_scopes_from_the_field_or_the_jwt() {
        let request = TokenRequest::new("r").scope("read write");
        let token = |body: String| parse_now(200, body.as_bytes()).unwrap();
        let field =
            token(r#"{"access_token":"t","token_type":"Bearer","scope":"read"}"#.to_owned());
        assert_eq!(field.missing_scopes(&request), ["write"]);
        // No field: a JWT without a scope claim got none (Logto); an opaque token got all.
        let jwt_none = token(format!(
            r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
            jwt(r#"{"sub":"app"}"#)
        ));
        assert_eq!(jwt_none.missing_scopes(&request), ["read", "write"]);
        let jwt_some = token(format!(
            r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
            jwt(r#"{"scope":"write other"}"#)
        ));
        assert_eq!(jwt_some.missing_scopes(&request), ["read"]);
        let opaque = token(r#"{"access_token":"t","token_type":"Bearer"}"#.to_owned());
        assert!(opaque.missing_scopes(&request).is_empty());
    }

    #[test]
    fn access_token_checks() {
        let tt = r#","token_type":"Bearer"}"#;
        assert!(
            err(200, &format!(r#"{{"access_token":""{tt}"#)).ends_with("access_token is empty")
        );
        assert!(
            err(200, &format!(r#"{{"access_token":7{tt}"#))
                .ends_with("access_token is not a string")
        );
        assert!(err(200, r#"{"token_type":"Bearer"}"#).ends_with("access_token is missing"));
        for bad in ["a\\r\\nX: y", "a b", "a\\u0000", "é"] {
            let m = err(200, &format!(r#"{{"access_token":"{bad}"{tt}"#));
            assert!(
                m.ends_with("access_token has characters not allowed in an http header"),
                "{m}"
            );
        }
    }

    #[test]
    fn token_type_checks() {
        assert_eq!(
            err(200, r#"{"access_token":"t"}"#),
            "invalid token response (http 200): token_type is missing"
        );
        assert_eq!(
            err(200, r#"{"access_token":"t","token_type":"DPoP"}"#),
            r#"invalid token response (http 200): token_type is "DPoP", not Bearer"#
        );
    }

    #[test]
    fn refuses_structural_problems() {
        let m = err(
            200,
            r#"{"access_token":"t","token_type":"Bearer","access_token":"u"}"#,
        );
        assert_eq!(
            m,
            "invalid token response (http 200): access_token appears more than once"
        );
        assert!(err(200, &format!("{GOOD} {{}}")).ends_with("body is not valid json"));
        assert!(err(200, "[1]").ends_with("body is not a json object"));
        assert!(err(200, "\"str\"").ends_with("body is not a json object"));
        assert!(err(200, "").ends_with("body is empty"));
        assert!(err(200, "{").ends_with("body is not valid json"));
        let m = parse_now(200, b"\xff\xfe").unwrap_err().to_string();
        assert!(m.ends_with("body is not utf-8"));
    }

    #[test]
    fn unknown_fields_ignored_even_deep() {
        let deep = "[".repeat(100_000);
        let body = format!(r#"{{"x":{deep}"#);
        // Unclosed: invalid JSON, but no stack overflow.
        assert!(err(200, &body).ends_with("body is not valid json"));
        let closed = format!(
            r#"{{"x":{}{},"access_token":"t","token_type":"Bearer"}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        ok(&closed);
        let in_field = format!(
            r#"{{"access_token":{}{},"token_type":"Bearer"}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(err(200, &in_field).ends_with("access_token is not a string"));
    }

    #[test]
    fn oauth_errors() {
        let m = err(
            400,
            r#"{"code":"oidc.invalid_target","message":"Invalid resource indicator.","error":"invalid_target","error_description":"resource indicator is missing, or unknown"}"#,
        );
        assert_eq!(
            m,
            "token endpoint answered http 400 with oauth error invalid_target: resource indicator is missing, or unknown (logto code oidc.invalid_target: Invalid resource indicator.)"
        );
        let m = err(
            400,
            r#"{"error":"invalid_grant","error_uri":"https://x/y"}"#,
        );
        assert_eq!(
            m,
            "token endpoint answered http 400 with oauth error invalid_grant (see https://x/y)"
        );
        assert_eq!(
            err(200, r#"{"error":"server_error"}"#),
            "token endpoint answered http 200 with oauth error server_error"
        );
    }

    #[test]
    fn non_oauth_errors_keep_status() {
        assert_eq!(
            err(500, ""),
            "token endpoint answered http 500 without an oauth error body"
        );
        assert_eq!(
            err(404, "Not Found\r\n"),
            "token endpoint answered http 404 without an oauth error body"
        );
        assert_eq!(
            err(403, r#"{"code":"auth.forbidden","message":"Forbidden."}"#),
            "token endpoint answered http 403: logto code auth.forbidden: Forbidden."
        );
        assert_eq!(
            err(302, ""),
            "token endpoint answered http 302 redirect; redirects are not followed"
        );
    }

    #[test]
    fn rate_limit() {
        let e = parse_now(
            429,
            br#"{"code":"auth.exceed_token_limit","message":"Token limit exceeded. Please contact your administrator."}"#,
        )
        .unwrap_err();
        assert_eq!(e.logto_code(), Some("auth.exceed_token_limit"));
        assert_eq!(
            e.to_string(),
            "token endpoint rate limited the request (http 429): auth.exceed_token_limit: Token limit exceeded. Please contact your administrator."
        );
    }

    #[test]
    fn server_text_is_sanitized() {
        let m = err(
            400,
            r#"{"error":"bad\r\nX-Evil: 1","error_description":"\u001b[31mred"}"#,
        );
        assert!(!m.chars().any(char::is_control), "{m:?}");
    }
}
