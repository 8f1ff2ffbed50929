//! The token-response parser: status and body bytes in, a [`Token`] or a precise [`Error`]
//! out. It does no I/O, so it is what the fuzz targets call.
//!
//! miniserde parses without recursion, so no nesting depth can overflow the stack, and it
//! refuses trailing data. Its own error carries no information, so the body is read into one
//! `Value` per field we know and each field is checked by hand: every error names the field.

use std::fmt;
use std::time::{Duration, Instant};

use miniserde::de::{Map, Visitor};
use miniserde::json::{Number, Value};
use miniserde::{Deserialize, json};

use crate::error::{Error, ErrorKind, MAX_SERVER_TEXT, MAX_SERVER_WORD, Redactions, sanitize_to};

/// The lifetime assumed when a successful token response has no `expires_in` (or it is
/// `null`): 60 seconds. RFC 6749 §5.1 lets a server leave the field out; a short guess
/// means a cache refreshes too early rather than hands out an expired token.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(60);

/// An access token, as granted by the token endpoint.
///
/// `Debug` shows the lifetime and scope but never the token itself.
///
/// # Example
/// ```
/// use std::time::Duration;
///
/// let body = br#"{"access_token":"eyJhbGciOi.e30.sig","expires_in":3600,"token_type":"Bearer","scope":"read:products"}"#;
/// let token = logto_m2m::parse_token_response(200, body)?;
/// assert_eq!(token.access_token(), "eyJhbGciOi.e30.sig");
/// assert_eq!(token.authorization(), "Bearer eyJhbGciOi.e30.sig");
/// assert_eq!(token.expires_in(), Duration::from_secs(3600));
/// assert_eq!(token.scope(), Some("read:products"));
/// assert!(!format!("{token:?}").contains("eyJ"));
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// `Bearer <access_token>`: kept whole so `authorization()` costs nothing, and sliced
    /// for `access_token()`.
    authorization: String,
    expires_in: Duration,
    scope: Option<String>,
    scope_from_server: bool,
    received_at: Instant,
}

const BEARER_PREFIX: &str = "Bearer ";

impl Token {
    /// The access token, to send as `Authorization: Bearer <token>`.
    pub fn access_token(&self) -> &str {
        &self.authorization[BEARER_PREFIX.len()..]
    }

    /// `Bearer <token>`, ready for an `Authorization` header.
    pub fn authorization(&self) -> &str {
        &self.authorization
    }

    /// The lifetime the server granted (`expires_in`), or [`DEFAULT_EXPIRES_IN`] when it
    /// did not say. A value too large for `u64` seconds counts as `u64::MAX` seconds.
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// The granted scope, space-separated; the requested scope when the server left the
    /// field out (RFC 6749 §5.1: an omitted scope is the requested one); `None` when neither
    /// says anything.
    ///
    /// Logto (oidc-provider) also leaves the field out when it granted *none* of the
    /// requested scopes, which this can't tell from a full grant: use
    /// [`scope_from_server`](Token::scope_from_server) to see only what the server said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `scope` field exactly as the server sent it, `None` when it was absent.
    pub fn scope_from_server(&self) -> Option<&str> {
        if self.scope_from_server {
            self.scope.as_deref()
        } else {
            None
        }
    }

    /// When the token's lifetime started: the moment the request that got it was sent
    /// (never later than the server's own clock started it).
    pub fn received_at(&self) -> Instant {
        self.received_at
    }

    /// When the token expires, by the monotonic clock; `None` when the granted lifetime is
    /// too long to represent (it then never expires as far as this process can tell).
    pub fn expires_at(&self) -> Option<Instant> {
        self.received_at.checked_add(self.expires_in)
    }

    /// True once the token's lifetime is over.
    pub fn is_expired(&self) -> bool {
        self.expires_at().is_some_and(|at| Instant::now() >= at)
    }

    /// A token read back from the token file: `age` is how long ago its lifetime started.
    /// `None` when the token would not pass the parser's checks.
    pub(crate) fn restore(
        access_token: &str,
        expires_in: Duration,
        scope: Option<String>,
        age: Duration,
    ) -> Option<Token> {
        if !is_header_safe(access_token) {
            return None;
        }
        let now = Instant::now();
        // The monotonic clock may not reach back that far (it starts at boot); then the
        // remaining lifetime counts from now, which ends at the same moment.
        let (received_at, expires_in) = match now.checked_sub(age) {
            Some(at) => (at, expires_in),
            None => (now, expires_in.saturating_sub(age)),
        };
        Some(Token {
            authorization: format!("{BEARER_PREFIX}{access_token}"),
            expires_in,
            scope_from_server: scope.is_some(),
            scope,
            received_at,
        })
    }

    pub(crate) fn set_received_at(&mut self, at: Instant) {
        self.received_at = at;
    }

    /// Fills in the requested scope when the server did not echo one.
    pub(crate) fn default_scope(&mut self, requested: &str) {
        if self.scope.is_none() && !requested.is_empty() {
            self.scope = Some(requested.to_owned());
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Parses a token endpoint's answer: the HTTP status and the body bytes.
///
/// This is what [`request_token`](crate::request_token) does with what it receives, public
/// so that tests and fuzzers can drive it without a network. A 2xx body must be an RFC 6749
/// §5.1 token response:
///
/// - `access_token`: required, a non-empty string of visible ASCII (no spaces, no control
///   characters), so it is always safe in an HTTP header;
/// - `token_type`: required, `Bearer` in any case;
/// - `expires_in`: a non-negative integer, or a string of digits; absent or `null` means
///   [`DEFAULT_EXPIRES_IN`]; values past `u64::MAX` saturate;
/// - `scope`: optional string;
/// - other fields are ignored; a field above that appears twice, trailing data after the
///   object, or a body that is not a JSON object is refused.
///
/// Any other status is an error: an RFC 6749 §5.2 body (`error`, `error_description`,
/// `error_uri`, with Logto's `code` and `message`) becomes [`ErrorKind::OAuth`], 429 becomes
/// [`ErrorKind::RateLimited`], a 3xx [`ErrorKind::Redirect`], and anything else, an HTML
/// page included, [`ErrorKind::HttpStatus`] with its status.
///
/// # Errors
/// As above; every message names the status and, where one is at fault, the field.
///
/// # Example
/// ```
/// use logto_m2m::{parse_token_response, ErrorKind};
///
/// let err = parse_token_response(200, br#"{"access_token":"abc","token_type":"mac"}"#).unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid token response (http 200): token_type is "mac", not Bearer"#);
///
/// let body = br#"{"code":"oidc.invalid_client","message":"Invalid client.","error":"invalid_client","error_description":"client authentication failed"}"#;
/// let err = parse_token_response(401, body).unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::OAuth { status: 401, error, .. } if error == "invalid_client"));
/// assert_eq!(err.logto_code(), Some("oidc.invalid_client"));
///
/// let err = parse_token_response(502, b"<html>Bad Gateway</html>").unwrap_err();
/// assert_eq!(err.to_string(), "token endpoint answered http 502 without an oauth error body");
/// ```
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<Token, Error> {
    let rate_limited = (status == 429).then_some(None);
    parse(status, body, &Redactions::NONE, rate_limited)
}

/// The parser with the request's context: the secrets to redact from server text, and
/// whether the answer is a rate limit (`Some(retry_after)`; the caller knows the headers).
pub(crate) fn parse(
    status: u16,
    body: &[u8],
    redact: &Redactions<'_>,
    rate_limited: Option<Option<Duration>>,
) -> Result<Token, Error> {
    let parsed = parse_fields(body);
    if let Some(retry_after) = rate_limited {
        let f = parsed.unwrap_or_default();
        let code = f.word(&f.code, redact).or_else(|| f.word(&f.error, redact));
        let message = f
            .text(&f.message, redact)
            .or_else(|| f.text(&f.error_description, redact));
        return Err(Error::new(ErrorKind::RateLimited {
            status,
            retry_after,
            code,
            message,
        }));
    }
    match status {
        200..=299 => {}
        300..=399 => return Err(Error::new(ErrorKind::Redirect { status })),
        _ => return Err(error_response(status, parsed.ok(), redact)),
    }
    let f = parsed.map_err(|reason| invalid(status, None, reason))?;
    if let Some(field) = f.duplicate {
        return Err(invalid(status, Some(field), "appears more than once"));
    }
    // Some servers answer 200 with an error body; it is still an error, and saying which
    // one helps more than "access_token missing".
    if f.access_token.is_none() && matches!(f.error, Some(Value::String(_))) {
        return Err(error_response(status, Some(f), redact));
    }

    let access_token = match f.access_token {
        None | Some(Value::Null) => {
            return Err(invalid(status, Some("access_token"), "is missing"));
        }
        Some(Value::String(s)) => s,
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

    match &f.token_type {
        None | Some(Value::Null) => return Err(invalid(status, Some("token_type"), "is missing")),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) => {
            let shown = sanitize_to(t, redact, MAX_SERVER_WORD);
            return Err(invalid(
                status,
                Some("token_type"),
                format!("is \"{shown}\", not Bearer"),
            ));
        }
        Some(_) => return Err(invalid(status, Some("token_type"), "is not a string")),
    }

    let expires_in = match &f.expires_in {
        None | Some(Value::Null) => DEFAULT_EXPIRES_IN,
        Some(v) => Duration::from_secs(
            expires_in_secs(v).map_err(|reason| invalid(status, Some("expires_in"), reason))?,
        ),
    };

    let scope = match f.scope {
        None | Some(Value::Null) => None,
        // Scope tokens are printable (RFC 6749 §3.3); control characters would reach the
        // caller's logs raw.
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            return Err(invalid(status, Some("scope"), "has control characters"));
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(invalid(status, Some("scope"), "is not a string")),
    };

    let mut authorization = String::with_capacity(BEARER_PREFIX.len() + access_token.len());
    authorization.push_str(BEARER_PREFIX);
    authorization.push_str(&access_token);
    Ok(Token {
        authorization,
        expires_in,
        scope_from_server: scope.is_some(),
        scope,
        received_at: Instant::now(),
    })
}

/// Non-empty visible ASCII: nothing that could end or split an HTTP header line.
fn is_header_safe(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// `expires_in` as whole seconds: a non-negative JSON integer (also written as `3600.0` or
/// `1e30`), or a string of digits. Too large saturates at `u64::MAX`.
fn expires_in_secs(v: &Value) -> Result<u64, &'static str> {
    match v {
        Value::Number(Number::U64(n)) => Ok(*n),
        Value::Number(Number::I64(_)) => Err("is negative"),
        Value::Number(Number::F64(x)) => {
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
        Value::String(s) => {
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
    let logto_code = f.word(&f.code, redact);
    let logto_message = f.text(&f.message, redact);
    match f.word(&f.error, redact) {
        Some(error) => Error::new(ErrorKind::OAuth {
            status,
            error,
            description: f.text(&f.error_description, redact),
            uri: f.word(&f.error_uri, redact),
            logto_code,
            logto_message,
        }),
        None => Error::new(ErrorKind::HttpStatus {
            status,
            logto_code,
            message: logto_message,
        }),
    }
}

/// The fields of a token or error response that we read; everything else is skipped
/// without being kept.
#[derive(Default)]
struct Fields {
    access_token: Option<Value>,
    token_type: Option<Value>,
    expires_in: Option<Value>,
    scope: Option<Value>,
    error: Option<Value>,
    error_description: Option<Value>,
    error_uri: Option<Value>,
    code: Option<Value>,
    message: Option<Value>,
    /// The first known field that appeared twice. miniserde's error can't say why it
    /// failed, so the parse goes on and this is checked afterwards.
    duplicate: Option<&'static str>,
}

impl Fields {
    /// A string field, sanitized for an error message; `None` when absent, not a string,
    /// or empty after sanitizing.
    fn string(&self, v: &Option<Value>, redact: &Redactions<'_>, max: usize) -> Option<String> {
        match v {
            Some(Value::String(s)) => Some(sanitize_to(s, redact, max)).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// A code-like field: `error`, `error_uri`, Logto's `code`.
    fn word(&self, v: &Option<Value>, redact: &Redactions<'_>) -> Option<String> {
        self.string(v, redact, MAX_SERVER_WORD)
    }

    /// A descriptive field: `error_description`, Logto's `message`.
    fn text(&self, v: &Option<Value>, redact: &Redactions<'_>) -> Option<String> {
        self.string(v, redact, MAX_SERVER_TEXT)
    }
}

fn parse_fields(body: &[u8]) -> Result<Fields, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not utf-8")?;
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
        out.insert(<Fields as Default>::default())
    }
}

impl Visitor for Fields {
    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        Ok(Box::new(FieldsMap(self)))
    }
}

struct FieldsMap<'a>(&'a mut Fields);

impl Map for FieldsMap<'_> {
    fn key(&mut self, k: &str) -> miniserde::Result<&mut dyn Visitor> {
        let f = &mut *self.0;
        let (name, slot) = match k {
            "access_token" => ("access_token", &mut f.access_token),
            "token_type" => ("token_type", &mut f.token_type),
            "expires_in" => ("expires_in", &mut f.expires_in),
            "scope" => ("scope", &mut f.scope),
            "error" => ("error", &mut f.error),
            "error_description" => ("error_description", &mut f.error_description),
            "error_uri" => ("error_uri", &mut f.error_uri),
            "code" => ("code", &mut f.code),
            "message" => ("message", &mut f.message),
            _ => return Ok(<dyn Visitor>::ignore()),
        };
        if slot.is_some() {
            f.duplicate.get_or_insert(name);
            return Ok(<dyn Visitor>::ignore());
        }
        Ok(Value::begin(slot))
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ok(body: &str) -> Token {
        parse_token_response(200, body.as_bytes()).unwrap()
    }

    fn err(status: u16, body: &str) -> String {
        parse_token_response(status, body.as_bytes())
            .unwrap_err()
            .to_string()
    }

    const GOOD: &str =
        r#"{"access_token":"tok","expires_in":3600,"token_type":"Bearer","scope":"a b"}"#;

    #[test]
    fn parses_logto_answer() {
        let t = ok(GOOD);
        assert_eq!(t.access_token(), "tok");
        assert_eq!(t.expires_in(), Duration::from_secs(3600));
        assert_eq!(t.scope(), Some("a b"));
        assert_eq!(t.scope_from_server(), Some("a b"));
    }

    #[test]
    fn token_type_any_case() {
        ok(r#"{"access_token":"t","token_type":"bEaReR"}"#);
    }

    #[test]
    fn expires_in_forms() {
        let e = |v: &str| {
            let body = format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{v}}}"#);
            parse_token_response(200, body.as_bytes()).map(|t| t.expires_in().as_secs())
        };
        assert_eq!(e("0").unwrap(), 0);
        assert_eq!(e("\"3600\"").unwrap(), 3600);
        assert_eq!(e("3600.0").unwrap(), 3600);
        assert_eq!(e("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(e("18446744073709551616").unwrap(), u64::MAX);
        assert_eq!(e("1e30").unwrap(), u64::MAX);
        assert_eq!(e("\"99999999999999999999999\"").unwrap(), u64::MAX);
        assert_eq!(e("null").unwrap(), DEFAULT_EXPIRES_IN.as_secs());
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
        assert_eq!(t.expires_in(), DEFAULT_EXPIRES_IN);
        assert_eq!(t.scope(), None);
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
        let m = parse_token_response(200, b"\xff\xfe")
            .unwrap_err()
            .to_string();
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
        let e = parse_token_response(
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
