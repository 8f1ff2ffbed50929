//! `Token`: an access token with its lifetime, by both clocks, and what it was granted.
//!
//! The parser (`response.rs`) makes every `Token` from a server's answer, and a cache
//! entry (`cache/entry.rs`) from what a cache held; this module only reads them. What a
//! token lacks of a request (`Token::missing_scopes`) is said in `request.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// An access token, as granted by the token endpoint.
///
/// Its lifetime counts from the moment the request that got it was sent, and it ends by
/// whichever clock says so first: the monotonic clock (immune to wall-clock steps) or the
/// wall clock (which, unlike the monotonic clock on Linux, keeps running while the machine
/// sleeps).
///
/// `Debug` shows the lifetime and scope but never the token itself.
///
/// # Example
/// ```no_run
/// use logto_m2m::{request_token, Config, TokenRequest};
///
/// let config = Config::from_env()?;
/// let request = TokenRequest::new("https://shopping.api").scope("read:products");
/// let token = request_token(&config, &request)?;
/// assert!(!format!("{token:?}").contains(token.access_token()));
/// if !token.missing_scopes(&request).is_empty() {
///     eprintln!("not granted: {:?}", token.missing_scopes(&request));
/// }
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// `Bearer <access_token>`: kept whole so `authorization()` costs nothing, and sliced
    /// for `access_token()`.
    pub(crate) authorization: String,
    /// The lifetime, at most the config's maximum.
    pub(crate) expires_in: Duration,
    /// The `scope` field as the server sent it.
    pub(crate) scope: Option<String>,
    /// The scopes asked for, space-separated: what an omitted `scope` means (RFC 6749 §5.1).
    pub(crate) requested_scope: String,
    /// For a JWT access token `Some`, holding its `scope` claim (`None` when it has
    /// none); `None` for an opaque token.
    pub(crate) scope_claim: Option<Option<Arc<str>>>,
    /// When the request was sent, by each clock.
    pub(crate) sent_at: Instant,
    pub(crate) sent_at_wall: SystemTime,
}

pub(crate) const BEARER_PREFIX: &str = "Bearer ";

impl Token {
    /// The access token, to send as `Authorization: Bearer <token>`.
    pub fn access_token(&self) -> &str {
        &self.authorization[BEARER_PREFIX.len()..]
    }

    /// `Bearer <token>`, ready for an `Authorization` header.
    pub(crate) fn authorization(&self) -> &str {
        &self.authorization
    }

    /// The token's lifetime: the server's `expires_in`; without one, the time left until
    /// the `exp` of a JWT access token; without either, 60 seconds. Never more than
    /// a day, whatever the server says (a server bug that grants `expires_in: 1e30` would
    /// otherwise keep a long-running service on one token forever).
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// The granted scope, space-separated: what an API will let this token do.
    ///
    /// One source of truth, used by [`missing_scopes`](Token::missing_scopes), the log
    /// events and the command alike:
    /// - the answer's `scope` field, when it has one (possibly empty);
    /// - else, for a JWT access token, its `scope` claim; a JWT without the claim was
    ///   granted nothing: `None`. Logto (oidc-provider) answers that way when it grants
    ///   *none* of the requested scopes: no field and no claim;
    /// - else, for an opaque token, the requested scope (RFC 6749 §5.1: an omitted scope is
    ///   the requested one), or `None` when none was asked for. A JWT whose payload names a
    ///   claim twice counts as opaque here: it is not read ([`Claims::from_jwt`](crate::Claims::from_jwt)).
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// let request = TokenRequest::new("https://shopping.api").scope("read:products");
    /// let token = request_token(&config, &request)?;
    /// match token.scope() {
    ///     Some(granted) if !granted.is_empty() => println!("granted: {granted}"),
    ///     _ => eprintln!("no scope granted: the API will answer 403"),
    /// }
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn scope(&self) -> Option<&str> {
        match (&self.scope, &self.scope_claim) {
            (Some(field), _) => Some(field),
            (None, Some(claim)) => claim.as_deref(),
            (None, None) if self.requested_scope.is_empty() => None,
            (None, None) => Some(&self.requested_scope),
        }
    }

    /// When the token expires by the wall clock: when the request that got it was sent
    /// (its lifetime can't have started earlier) plus [`expires_in`](Token::expires_in).
    /// `None` when that is too far ahead to represent. What a log line or a cache shows; a
    /// [`TokenStore`](crate::TokenStore) decides freshness by the monotonic clock as well,
    /// which the wall clock's steps don't move.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.sent_at_wall.checked_add(self.expires_in)
    }

    /// True when less than `margin` of the lifetime is left at `now` by either clock.
    pub(crate) fn ends_before(&self, now: Instant, wall: SystemTime, margin: Duration) -> bool {
        let (mono_end, wall_end) = self.ends_at(margin);
        mono_end.is_some_and(|at| now >= at) || wall_end.is_some_and(|at| wall >= at)
    }

    /// The points, by each clock, where less than `margin` of the lifetime is left; `None`
    /// when too far ahead to represent. A wall clock stepped back can't extend the token
    /// past the monotonic point; a machine that slept reaches the wall point on time.
    pub(crate) fn ends_at(&self, margin: Duration) -> (Option<Instant>, Option<SystemTime>) {
        let left = self.expires_in.saturating_sub(margin);
        (
            self.sent_at.checked_add(left),
            self.sent_at_wall.checked_add(left),
        )
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope())
            .finish()
    }
}

/// Non-empty visible ASCII: nothing that could end or split an HTTP header line. Every
/// access token a `Token` carries is, from a server or from a cache.
pub(crate) fn is_header_safe(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// No control characters: scope tokens are printable (RFC 6749 §3.3), and control
/// characters would reach the caller's logs raw.
pub(crate) fn is_printable(scope: &str) -> bool {
    !scope.chars().any(char::is_control)
}
