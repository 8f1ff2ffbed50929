//! One error type for every failure, with a kind that carries the fact behind it.
//!
//! Chaining rule: `Display` says everything in one line (the inner cause's text is part of
//! the message) and `source()` returns `None`, as in ureq and jiff. So printing an error
//! with `{}` never loses information and never prints a cause twice.
//!
//! Every string in here that came from a server went through [`sanitize`] first: control
//! characters are gone, the client's own secret is redacted and the length is bounded.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::time::DisplayDuration;

// Server text is made safe to show in `sanitize.rs`; the errors here carry only its output.
pub(crate) use crate::sanitize::{
    MAX_SERVER_TEXT, MAX_SERVER_WORD, Redactions, sanitize, sanitize_to,
};

/// Everything that can go wrong while getting a token.
///
/// `Error` is one pointer wide and cheap to clone (an `Arc` inside), so a [`TokenStore`]
/// can hand the same failure to every thread that waited for it. Match on
/// [`kind()`](Error::kind) for the details, or use the shortcuts
/// [`status()`](Error::status), [`oauth_error()`](Error::oauth_error) and
/// [`logto_code()`](Error::logto_code).
///
/// Neither `Display` nor `Debug` ever contains the app secret, the Basic credentials or an
/// access token. `Debug` is the same one line as `Display`, so that a `main` returning
/// `Result<(), Error>` prints `Error: ` and the message; `{:#?}` shows the kind's fields.
///
/// [`TokenStore`]: crate::TokenStore
///
/// # Example
/// ```
/// use logto_m2m::{Config, ErrorKind};
///
/// let err = Config::new("ftp://idp.example/token", "app", "secret").unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::Config { .. }));
/// assert_eq!(err.to_string(), "invalid config: token url must start with https:// or http://");
/// ```
#[derive(Clone)]
pub struct Error(Arc<Inner>);

/// The kind, and what the exchange knew around it: where the answer came from, the
/// server's request id, and what to do about it.
#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    /// The token URL without its query, for errors from talking to the endpoint.
    url: Option<String>,
    /// The server's id of the request (`Logto-Core-Request-Id`), the key to its logs.
    request_id: Option<String>,
    /// Advice for the likely cause, e.g. the other client auth method.
    hint: Option<String>,
}

/// What went wrong, with the facts that explain it.
///
/// New variants may be added in minor releases, so a `match` needs a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration can't be used: a bad token URL, an empty app id, plain `http://`
    /// to a host that is not loopback, and the like.
    Config {
        /// What is wrong, e.g. "token url must start with https:// or http://".
        reason: String,
    },
    /// An environment variable read by [`Config::from_env`](crate::Config::from_env) is
    /// missing or malformed. The value itself is never repeated.
    Env {
        /// The variable's name, e.g. `LOGTO_APP_SECRET`.
        variable: &'static str,
        /// What is wrong with it, e.g. "not set".
        reason: &'static str,
    },
    /// The token endpoint answered with an OAuth 2.0 error (RFC 6749 §5.2).
    OAuth {
        /// The HTTP status, usually 400 or 401.
        status: u16,
        /// The `error` code, e.g. `invalid_client`, `invalid_target`, `invalid_scope`; kept
        /// as the server sent it when it is not one the RFC lists.
        error: String,
        /// `error_description`, if the server sent one.
        description: Option<String>,
        /// `error_uri`, if the server sent one.
        uri: Option<String>,
        /// Logto's own `code`, e.g. `oidc.invalid_client`, if the server sent one.
        logto_code: Option<String>,
        /// Logto's own English `message`, if the server sent one.
        logto_message: Option<String>,
    },
    /// The server asked us to slow down: HTTP 429, or 503 with `Retry-After`. Logto Cloud's
    /// token quota (`auth.exceed_token_limit`) lands here too.
    RateLimited {
        /// The HTTP status (429 or 503).
        status: u16,
        /// How long the server asked us to wait, if it said so in a usable `Retry-After`.
        retry_after: Option<Duration>,
        /// The OAuth `error` code, if the body had one.
        error: Option<String>,
        /// The OAuth `error_description`, if the body had one.
        description: Option<String>,
        /// Logto's `code`, e.g. `auth.exceed_token_limit`, if the body had one.
        logto_code: Option<String>,
        /// Logto's English `message`, if the body had one.
        logto_message: Option<String>,
    },
    /// The server answered with an error status but no OAuth error body (an HTML error page,
    /// a proxy's 502, an empty 500, a Logto error with only `code` and `message`).
    HttpStatus {
        /// The HTTP status.
        status: u16,
        /// Logto's `code`, if the body had one.
        logto_code: Option<String>,
        /// Logto's English `message`, if the body had one.
        logto_message: Option<String>,
    },
    /// The server answered with a redirect. Redirects are never followed: the credentials
    /// go to the configured token URL and nowhere else.
    Redirect {
        /// The HTTP status (301, 302, 303, 307, 308, ...).
        status: u16,
        /// Where it pointed (the `Location` header without its query), if it said: often
        /// the right token URL, as with a framework that appends a slash.
        location: Option<String>,
    },
    /// The answer can't be used: a 2xx whose body is not a usable token response, or an
    /// answer of any status in a content encoding we did not ask for.
    InvalidResponse {
        /// The HTTP status.
        status: u16,
        /// The field at fault (`access_token`, `token_type`, `expires_in`, `scope`), or
        /// `None` when the body as a whole is at fault (not JSON, not an object, ...).
        field: Option<&'static str>,
        /// What is wrong, e.g. "is missing", "is not a string".
        reason: String,
    },
    /// The response body was larger than the cap (64 KiB; a Logto token response is about
    /// 1 KiB). Reading stopped at the cap.
    BodyTooLarge {
        /// The HTTP status of the answer whose body was too large.
        status: u16,
        /// The cap in bytes.
        limit: u64,
    },
    /// The whole exchange (connect, send, headers, body, retries and waits) did not finish
    /// within the configured timeout.
    Timeout {
        /// The configured timeout.
        after: Duration,
    },
    /// TLS failed: an untrusted certificate, a wrong host name, a handshake error.
    Tls {
        /// What the TLS layer said.
        message: String,
    },
    /// The connection failed: refused, reset, closed early, DNS failure, or a reply that is
    /// not HTTP.
    Transport {
        /// What went wrong.
        message: String,
    },
    /// The token cache of a [`TokenStore`](crate::TokenStore) (its token file, or another
    /// [`TokenCache`](crate::TokenCache)) could not be used. Never returned by `get`: the
    /// token request goes on without the cache, and this is kept for
    /// [`TokenStore::last_cache_error`](crate::TokenStore::last_cache_error).
    Cache {
        /// Which cache, e.g. `token file /var/cache/job/token.json`; never a password.
        cache: String,
        /// What is wrong, e.g. "mode 644 lets others read or write it; not trusted".
        reason: String,
    },
    /// [`Verifier::verify`](crate::Verifier::verify) refused the token, or could not
    /// check it: the verifier's own kinds, grouped apart so that a caller matching a
    /// failure of [`request_token`](crate::request_token) or a
    /// [`TokenStore`](crate::TokenStore) never meets them, and one checking a token never
    /// needs the others. Only `verify` returns it.
    Verify(VerifyErrorKind),
}

/// Why [`Verifier::verify`](crate::Verifier::verify) failed: what
/// [`ErrorKind::Verify`] holds. An API answers each differently: 401 with
/// [`Error::challenge`] for an invalid token, 403 with it for a missing scope, 503 (no
/// challenge) when the issuer's keys can't be had.
///
/// New variants may be added in minor releases, so a `match` needs a `_` arm.
///
/// # Example
/// ```
/// use logto_m2m::{ErrorKind, Verifier, VerifyErrorKind};
///
/// let verifier = Verifier::logto("http://localhost:3001")?;
/// let e = verifier.verify("not-a-jwt", "https://shopping.api", &[]).unwrap_err();
/// let ErrorKind::Verify(VerifyErrorKind::InvalidToken { reason }) = e.kind() else {
///     panic!("{e}");
/// };
/// assert_eq!(reason, "not a signed jwt (three base64url parts)");
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// The token is refused: bad signature, wrong issuer or audience, expired, malformed.
    /// An API answers 401 with [`Error::challenge`].
    InvalidToken {
        /// Why, e.g. "expired"; never a part of the token.
        reason: String,
    },
    /// The token is valid but lacks scopes the API requires: an API answers 403 with
    /// [`Error::challenge`].
    InsufficientScope {
        /// The required scopes the token's `scope` does not have.
        missing: Vec<String>,
    },
    /// The JWKS (the issuer's public keys) could not be fetched or read, and the token's
    /// key was not already known, or the keys known are past their max-age and grace (see
    /// [`Verifier`](crate::Verifier)). Not the token's fault: an API answers 503.
    Jwks {
        /// The JWKS URL.
        url: String,
        /// What went wrong, e.g. "answered http 500".
        reason: String,
    },
}

impl Error {
    /// The kind of failure, with its facts.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The server's id for the request that failed, when its answer carried one: Logto's
    /// `Logto-Core-Request-Id` header, which finds the request in Logto's own logs and is
    /// what Logto support asks for. The message shows it too.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// if let Err(e) = request_token(&config, &TokenRequest::new("https://shopping.api")) {
    ///     if let Some(id) = e.request_id() {
    ///         eprintln!("search Logto's logs for request {id}");
    ///     }
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The HTTP status of the token endpoint's answer, when the failure came with one.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// match request_token(&config, &TokenRequest::new("https://shopping.api")) {
    ///     Ok(token) => println!("{}", token.access_token()),
    ///     Err(e) if e.status() == Some(401) => eprintln!("wrong app id or secret: {e}"),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self.0.kind {
            ErrorKind::OAuth { status, .. }
            | ErrorKind::RateLimited { status, .. }
            | ErrorKind::HttpStatus { status, .. }
            | ErrorKind::Redirect { status, .. }
            | ErrorKind::InvalidResponse { status, .. }
            | ErrorKind::BodyTooLarge { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The OAuth `error` code (RFC 6749 §5.2), e.g. `invalid_client`.
    ///
    /// For a rate limit, the `error` of its body, if it had one.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// if let Err(e) = request_token(&config, &TokenRequest::new("https://shopping.api")) {
    ///     if e.oauth_error() == Some("invalid_target") {
    ///         eprintln!("no API with that indicator in Logto: {e}");
    ///     }
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn oauth_error(&self) -> Option<&str> {
        match &self.0.kind {
            ErrorKind::OAuth { error, .. } => Some(error),
            ErrorKind::RateLimited { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// Logto's error `code`, e.g. `oidc.invalid_target` or `auth.exceed_token_limit`.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// if let Err(e) = request_token(&config, &TokenRequest::new("https://shopping.api")) {
    ///     if e.logto_code() == Some("auth.exceed_token_limit") {
    ///         eprintln!("the tenant's M2M token quota is used up: cache tokens");
    ///     }
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn logto_code(&self) -> Option<&str> {
        match &self.0.kind {
            ErrorKind::OAuth { logto_code, .. }
            | ErrorKind::HttpStatus { logto_code, .. }
            | ErrorKind::RateLimited { logto_code, .. } => logto_code.as_deref(),
            _ => None,
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error(Arc::new(Inner {
            kind,
            url: None,
            request_id: None,
            hint: None,
        }))
    }

    /// The same error with what the exchange knew: the URL it talked to (its query is
    /// cut), the answer's request id, advice. Each replaces what was there when `Some`.
    #[cold]
    #[inline(never)]
    pub(crate) fn with_context(
        self,
        url: Option<&str>,
        request_id: Option<String>,
        hint: Option<String>,
    ) -> Error {
        let mut inner = Arc::unwrap_or_clone(self.0);
        if let Some(url) = url {
            inner.url = Some(url.split(['?', '#']).next().unwrap_or(url).to_owned());
        }
        inner.request_id = request_id.or(inner.request_id);
        inner.hint = hint.or(inner.hint);
        Error(Arc::new(inner))
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn config(reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config {
            reason: reason.into(),
        })
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn env(variable: &'static str, reason: &'static str) -> Error {
        Error::new(ErrorKind::Env { variable, reason })
    }
}

/// The whole message: the kind's, with the URL where it names the endpoint, then the
/// request id and the advice, each after a `; `.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.0;
        write_kind(&inner.kind, inner.url.as_deref(), f)?;
        if let Some(id) = &inner.request_id {
            write!(f, "; logto request id {id}")?;
        }
        if let Some(hint) = &inner.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

// Debug is the one-line message, as in jiff: what `fn main() -> Result<(), Error>` and
// `unwrap` print is then `Error: token endpoint ... answered http 401 ...`, the message the
// README shows, not a struct. `{:#?}` shows the kind with its fields, then the context.
// None of them can hold a secret or a token: server text was sanitized and redacted before
// it got here, no variant keeps a body, and the URL is the configured one without its query.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        let inner = &*self.0;
        if inner.url.is_none() && inner.request_id.is_none() && inner.hint.is_none() {
            return fmt::Debug::fmt(&inner.kind, f);
        }
        f.debug_struct("Error")
            .field("kind", &inner.kind)
            .field("url", &inner.url)
            .field("request_id", &inner.request_id)
            .field("hint", &inner.hint)
            .finish()
    }
}

impl std::error::Error for Error {}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_kind(self, None, f)
    }
}

/// The kind's message; `url`, when known, follows the words "token endpoint".
fn write_kind(kind: &ErrorKind, url: Option<&str>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let endpoint = Endpoint(url);
    match kind {
        ErrorKind::Config { reason } => write!(f, "invalid config: {reason}"),
        ErrorKind::Env { variable, reason } => {
            write!(f, "environment variable {variable}: {reason}")
        }
        ErrorKind::OAuth { .. } | ErrorKind::RateLimited { .. } | ErrorKind::HttpStatus { .. } => {
            write_refusal(kind, endpoint, f)
        }
        ErrorKind::Redirect { status, location } => {
            write!(f, "{endpoint} answered http {status} redirect")?;
            if let Some(location) = location {
                write!(f, " to {location}")?;
            }
            f.write_str("; redirects are not followed")
        }
        ErrorKind::InvalidResponse {
            status,
            field,
            reason,
        } => {
            f.write_str("invalid token response")?;
            if let Some(url) = url {
                write!(f, " from {url}")?;
            }
            match field {
                Some(field) => write!(f, " (http {status}): {field} {reason}"),
                None => write!(f, " (http {status}): {reason}"),
            }
        }
        ErrorKind::BodyTooLarge { status, limit } => write!(
            f,
            "{endpoint} answered http {status} with a body over the {limit} byte limit"
        ),
        ErrorKind::Timeout { after } => {
            f.write_str("token request")?;
            if let Some(url) = url {
                write!(f, " to {url}")?;
            }
            write!(f, " timed out after {}", DisplayDuration(*after))
        }
        ErrorKind::Tls { message } => write!(f, "tls: {message}"),
        ErrorKind::Transport { message } => write!(f, "transport: {message}"),
        ErrorKind::Cache { cache, reason } => write!(f, "{cache}: {reason}"),
        ErrorKind::Verify(kind) => fmt::Display::fmt(kind, f),
    }
}

impl fmt::Display for VerifyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyErrorKind::InvalidToken { reason } => write!(f, "invalid token: {reason}"),
            VerifyErrorKind::InsufficientScope { missing } => write!(
                f,
                "insufficient scope: the token lacks {}",
                missing.join(" ")
            ),
            VerifyErrorKind::Jwks { url, reason } => write!(f, "jwks {url}: {reason}"),
        }
    }
}

/// The message of an error status the endpoint answered: an OAuth error, a rate limit, or
/// a bare status.
fn write_refusal(
    kind: &ErrorKind,
    endpoint: Endpoint<'_>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match kind {
        ErrorKind::OAuth {
            status,
            error,
            description,
            uri,
            logto_code,
            logto_message,
        } => {
            write!(
                f,
                "{endpoint} answered http {status} with oauth error {error}"
            )?;
            if let Some(d) = description {
                write!(f, ": {d}")?;
            }
            if let Some(code) = logto_code {
                write!(f, " (logto code {code}")?;
                if let Some(m) = logto_message {
                    write!(f, ": {m}")?;
                }
                f.write_str(")")?;
            }
            if let Some(u) = uri {
                write!(f, " (see {u})")?;
            }
            Ok(())
        }
        ErrorKind::RateLimited {
            status,
            retry_after,
            error,
            description,
            logto_code,
            logto_message,
        } => {
            write!(f, "{endpoint} rate limited the request (http {status})")?;
            if let Some(code) = logto_code.as_ref().or(error.as_ref()) {
                write!(f, ": {code}")?;
            }
            if let Some(m) = logto_message.as_ref().or(description.as_ref()) {
                write!(f, ": {m}")?;
            }
            match retry_after {
                Some(d) => write!(f, "; retry after {}", DisplayDuration(*d)),
                None => Ok(()),
            }
        }
        ErrorKind::HttpStatus {
            status,
            logto_code,
            logto_message,
        } => {
            write!(f, "{endpoint} answered http {status}")?;
            match (logto_code, logto_message) {
                (Some(c), Some(m)) => write!(f, ": logto code {c}: {m}"),
                (Some(c), None) => write!(f, ": logto code {c}"),
                (None, Some(m)) => write!(f, ": {m}"),
                (None, None) => f.write_str(" without an oauth error body"),
            }
        }
        // Only the three above are passed in.
        _ => Ok(()),
    }
}

/// An OAuth refusal of the client whose description says its secret expired: Logto's
/// `invalid_request` "client secret has expired", or the same words with `invalid_client`,
/// which other servers use for every refused secret.
pub(crate) fn is_secret_expired(kind: &ErrorKind) -> bool {
    let ErrorKind::OAuth {
        error,
        description: Some(description),
        ..
    } = kind
    else {
        return false;
    };
    let description = description.to_ascii_lowercase();
    // `find`, not `contains`: see `sanitize_to`.
    matches!(error.as_str(), "invalid_request" | "invalid_client")
        && description.find("secret").is_some()
        && description.find("expired").is_some()
}

/// "token endpoint", with its URL when known.
struct Endpoint<'a>(Option<&'a str>);

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // The subject-token step of an impersonation (token exchange) is the one
            // request made elsewhere.
            Some(url) if url.ends_with("/api/subject-tokens") => {
                write!(f, "logto management api {url}")
            }
            Some(url) => write!(f, "token endpoint {url}"),
            None => f.write_str("token endpoint"),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn error_is_one_pointer() {
        // Keeps `Result<Arc<Token>, Error>` two words, which matters on the cache-hit path.
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn debug_is_the_one_line_message() {
        let e = Error::new(ErrorKind::HttpStatus {
            status: 404,
            logto_code: None,
            logto_message: None,
        })
        .with_context(
            Some("https://x/oidc/token?a=b"),
            Some("r1".into()),
            Some("fix".into()),
        );
        let message = "token endpoint https://x/oidc/token answered http 404 without an oauth \
                       error body; logto request id r1; fix";
        assert_eq!(e.to_string(), message);
        // What `fn main() -> Result<(), Error>` prints after `Error: `.
        assert_eq!(format!("{e:?}"), message);
        assert!(format!("{e:#?}").contains("HttpStatus"), "{e:#?}");
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
