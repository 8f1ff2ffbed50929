//! From token to call: [`Bearer`], a ureq middleware that puts the store's token on the
//! requests to one API, and [`TokenStore::call`], a call that survives one 401.
//!
//! A bearer token is as good as the app's secret for its lifetime, so it goes to exactly
//! one origin (scheme, host and port), never along a redirect, and never over plain http
//! to a host that is not loopback.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use ureq::config::RedirectAuthHeaders;
use ureq::http::header::{AUTHORIZATION, HeaderValue};
use ureq::http::{Request, Response, Uri};
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Body, RequestExt, ResponseExt, SendBody};

use crate::error::Error;
use crate::exchange::parse_retry_after;
use crate::request::TokenRequest;
use crate::store::TokenStore;
use crate::time::DisplayDuration;
use crate::token::Token;
use crate::url::{Origin, Url};

/// A ureq middleware (ureq 3) that sends `Authorization: Bearer <token>` from a
/// [`TokenStore`] on every request to one API origin.
///
/// - Only requests to `origin` (scheme, host and port, exactly) get the header; a request
///   to any other origin passes through untouched, and so does one that already carries an
///   `Authorization` header.
/// - The token is a store hit (nanoseconds) until it is due for refresh; a refresh is one
///   token request however many requests ask.
/// - When the API answers 401 to the token, the store drops that token
///   ([`TokenStore::invalidate_token`]: only while it is still the cached one, so many
///   requests meeting the same 401 cost one new token), and the *next* request gets a
///   fresh one. The 401 itself is returned: a middleware can't send a streamed body twice.
///   For a call that is retried once on a 401, use [`TokenStore::call`].
/// - No redirect carries the header, whatever the agent's `redirect_auth_headers` says:
///   requests that get the token are sent with `RedirectAuthHeaders::Never` (and with
///   `save_redirect_history(true)`, which tells where the answer came from). So a 401 at
///   the end of a redirect (a login page on another origin, or another path of the API)
///   answered a request without the token, and drops nothing: only a 401 whose URI (ureq's
///   `ResponseExt::get_uri`, the final one) is the one the token was sent to counts. With
///   ureq's default `http_status_as_error(true)`, though, a 401 comes back as
///   `ureq::Error::StatusCode(401)`, which does not say which URI answered: that one drops
///   the token whatever answered it. An agent that follows redirects to pages that may
///   answer 401 should have `http_status_as_error(false)`.
/// - A token the store can't get fails the request with `ureq::Error::Other` holding the
///   [`Error`] (downcast it for the details); nothing is sent then.
///
/// # Example
/// ```no_run
/// use std::sync::{Arc, Mutex, PoisonError};
/// use logto_m2m::{Bearer, Config, TokenRequest, TokenStore};
///
/// let store = Arc::new(TokenStore::new(Config::from_env()?));
/// let request = TokenRequest::new("https://shopping.api").scope("read:products");
/// let bearer = Bearer::new(store, request, "https://api.shop.example")?;
/// let agent: ureq::Agent = ureq::Agent::config_builder().middleware(bearer).build().into();
/// let products = agent.get("https://api.shop.example/products").call()?;
/// # let _ = products;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct Bearer {
    store: Arc<TokenStore>,
    request: TokenRequest,
    origin: Origin,
    /// The last token as a header value: making one copies and checks the whole token
    /// (about a kilobyte), a clone only counts a reference. Compared by its bytes, since
    /// each thread's hits hand out an `Arc` of their own.
    header: Mutex<Option<HeaderValue>>,
}

impl Bearer {
    /// A middleware that gets tokens for `request` from `store` and sends them to
    /// `origin`, written `https://host[:port]` (a trailing `/` is fine; no path, query or
    /// user info).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `origin` is not such a URL, or
    /// is plain `http://` to a host that is not loopback while the store's config does not
    /// [allow insecure http](crate::Config::allow_insecure_http).
    pub fn new(
        store: Arc<TokenStore>,
        request: TokenRequest,
        origin: &str,
    ) -> Result<Bearer, Error> {
        let origin = api_origin(origin)?;
        if origin.is_cleartext_refused(store.config().insecure_http_allowed()) {
            return Err(Error::config(
                "plain http to an api host that is not loopback would send the token in clear \
                 text; use https",
            ));
        }
        Ok(Bearer {
            store,
            request,
            origin,
            header: Mutex::new(None),
        })
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("request", &self.request)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Middleware for Bearer {
    fn handle(
        &self,
        mut request: Request<SendBody>,
        next: MiddlewareNext,
    ) -> Result<Response<Body>, ureq::Error> {
        let at_origin = Origin::of_uri(request.uri()).is_some_and(|o| o == self.origin);
        if request.headers().contains_key(AUTHORIZATION) || !at_origin {
            return next.handle(request);
        }
        let token = self
            .store
            .get(&self.request)
            .map_err(|e| ureq::Error::Other(Box::new(e)))?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header_for(&token)?);
        // Redirects are followed inside ureq, past this middleware: pin them to never
        // carry the header, whatever the agent allows; and keep their history, which says
        // where the answer came from (`get_uri` would say it too, but panics on a response
        // that a later middleware made up).
        let request = request
            .middleware_config()
            .ok_or_else(|| ureq::Error::Other("not called as a ureq middleware".into()))?
            .redirect_auth_headers(RedirectAuthHeaders::Never)
            .save_redirect_history(true)
            .build();
        let sent_to = request.uri().clone();
        let answer = next.handle(request);
        if refuses(&answer, &sent_to) {
            self.store.invalidate_token(&self.request, &token);
        }
        answer
    }
}

impl Bearer {
    /// `token` as a header value, marked sensitive (ureq's logs leave those out); the
    /// cached one while the token is the same.
    fn header_for(&self, token: &Token) -> Result<HeaderValue, ureq::Error> {
        // The lock guards a clone or a swap, never I/O: a poisoned one is still consistent.
        let mut cached = self.header.lock().unwrap_or_else(PoisonError::into_inner);
        let same = |value: &&HeaderValue| value.as_bytes() == token.authorization().as_bytes();
        if let Some(value) = cached.as_ref().filter(same) {
            return Ok(value.clone());
        }
        // Every token the crate hands out is visible ASCII (checked by the parser), which
        // is always a valid header value; the error is for the impossible case only.
        let mut value = HeaderValue::from_str(token.authorization())
            .map_err(|_| ureq::Error::Other("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        *cached = Some(value.clone());
        Ok(value)
    }
}

/// A 401 to the token sent to `sent_to`: a 401 response from that very URI (the last of
/// its redirect history, as `ResponseExt::get_uri` has it), not from where a redirect led
/// (the request that followed it carried no token); a 401 with no history, which a later
/// middleware made up in answer to the request itself; or ureq's status error 401, which
/// does not say where it came from.
fn refuses(answer: &Result<Response<Body>, ureq::Error>, sent_to: &Uri) -> bool {
    match answer {
        Ok(response) => {
            response.status() == 401
                && response
                    .get_redirect_history()
                    .and_then(<[Uri]>::last)
                    .is_none_or(|answered| answered == sent_to)
        }
        Err(ureq::Error::StatusCode(status)) => *status == 401,
        Err(_) => false,
    }
}

/// A 401, as a response or as ureq's status error (with `http_status_as_error`, the
/// default).
fn is_unauthorized(answer: &Result<Response<Body>, ureq::Error>) -> bool {
    match answer {
        Ok(response) => response.status() == 401,
        Err(ureq::Error::StatusCode(status)) => *status == 401,
        Err(_) => false,
    }
}

/// What failed in a [`TokenStore::call`]: getting the token, or the API call itself.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError {
    /// No token could be had: the store's error, as [`TokenStore::get`] returns it.
    Token(Error),
    /// The API call failed (the closure's error): no answer, or, with ureq's default
    /// `http_status_as_error`, an error status.
    Api(ureq::Error),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Token(e) => write!(f, "no token for the api call: {e}"),
            CallError::Api(e) => write!(f, "api call failed: {e}"),
        }
    }
}

// One line says it all (the crate's chaining rule, see `Error`): no `source()`.
impl std::error::Error for CallError {}

impl TokenStore {
    /// Calls an API with a token for `request`, and once more with a fresh token if the
    /// API answers 401.
    ///
    /// `send` gets the `Authorization` header's value (`Bearer <token>`) and makes the
    /// call. When its answer is a 401 (a response, or ureq's `StatusCode(401)` error), the
    /// token is dropped if it is still the store's
    /// ([`invalidate_token`](TokenStore::invalidate_token)), a fresh one is taken (one token request, however many threads meet the same 401 at once),
    /// and `send` is called again with it. The answer is then returned, whatever its
    /// status: never a second retry, and never a retry on 403 (a fresh token carries the
    /// same scopes). If the store hands back the same token (another process's shared
    /// cache still holds it), the first 401 is returned without a second call.
    ///
    /// To read an error status's body, give the agent `http_status_as_error(false)`; the
    /// agent of [`Config::agent`](crate::Config::agent) has it, and connects with the
    /// config's roots and proxy (a private CA, `HTTPS_PROXY`).
    ///
    /// A 429 or 503 is returned as it is: `send` is your code, and the store can't see
    /// whether the request it makes may be sent twice (a POST answered 503 may have been
    /// applied). For a request that may, use [`call_idempotent`](TokenStore::call_idempotent).
    ///
    /// # Errors
    /// [`CallError::Token`] when no token could be had, [`CallError::Api`] with `send`'s
    /// error.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{Config, TokenRequest, TokenStore};
    ///
    /// let store = TokenStore::new(Config::from_env()?);
    /// let request = TokenRequest::management_api("https://auth.example.com");
    /// let agent: ureq::Agent = ureq::Agent::config_builder()
    ///     .http_status_as_error(false)
    ///     .build()
    ///     .into();
    /// let mut answer = store.call(&request, |authorization| {
    ///     agent
    ///         .get("https://auth.example.com/api/applications")
    ///         .header("authorization", authorization)
    ///         .call()
    /// })?;
    /// println!("{}: {}", answer.status(), answer.body_mut().read_to_string()?);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<F>(&self, request: &TokenRequest, mut send: F) -> Result<Response<Body>, CallError>
    where
        F: FnMut(&str) -> Result<Response<Body>, ureq::Error>,
    {
        let token = self.get(request).map_err(CallError::Token)?;
        let first = send(token.authorization());
        if !is_unauthorized(&first) {
            return first.map_err(CallError::Api);
        }
        self.invalidate_token(request, &token);
        let fresh = self.get(request).map_err(CallError::Token)?;
        if fresh.access_token() == token.access_token() {
            return first.map_err(CallError::Api);
        }
        drop(first);
        send(fresh.authorization()).map_err(CallError::Api)
    }

    /// [`call`](TokenStore::call) for an idempotent request (RFC 9110 §9.2.2: GET, HEAD,
    /// PUT, DELETE, OPTIONS, TRACE), which is also sent again when the API answers 429 or
    /// 503, after the wait its `Retry-After` asks for.
    ///
    /// - At most 2 such retries per call, each
    ///   after the `Retry-After` (seconds or an HTTP date; without a readable one, 1 s).
    /// - The waits fit the config's [timeout](crate::Config::timeout), counted from this
    ///   call's start: a wait that would not end before it is not begun, and the 429 or 503
    ///   is returned at once (give your agent's requests the time that is left).
    /// - Each wait is an `info` log event (the status and the wait; never the token).
    /// - A 401 is handled as [`call`](TokenStore::call) does, once, and the retries
    ///   count across it.
    /// - With ureq's default `http_status_as_error`, a 429 or 503 comes as an error without
    ///   its headers, so the wait is 1 s; give the agent `http_status_as_error(false)` for
    ///   the server's `Retry-After`.
    ///
    /// Use it only for a `send` that may be made more than once: the name is the promise.
    /// A POST or PATCH goes through [`call`](TokenStore::call), which never repeats a 429
    /// or 503.
    ///
    /// # Errors
    /// As [`call`](TokenStore::call).
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{Config, TokenRequest, TokenStore};
    ///
    /// let store = TokenStore::new(Config::from_env()?);
    /// let request = TokenRequest::management_api("https://auth.example.com");
    /// let agent: ureq::Agent = ureq::Agent::config_builder()
    ///     .http_status_as_error(false)
    ///     .build()
    ///     .into();
    /// // A GET: a busy Logto's 429 is waited out and the list asked for again.
    /// let mut users = store.call_idempotent(&request, |authorization| {
    ///     agent
    ///         .get("https://auth.example.com/api/users?page_size=100")
    ///         .header("authorization", authorization)
    ///         .call()
    /// })?;
    /// println!("{}", users.body_mut().read_to_string()?);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_idempotent<F>(
        &self,
        request: &TokenRequest,
        mut send: F,
    ) -> Result<Response<Body>, CallError>
    where
        F: FnMut(&str) -> Result<Response<Body>, ureq::Error>,
    {
        // None: a timeout too long for the clock, no deadline.
        let deadline = Instant::now().checked_add(self.config().timeout_value());
        let mut retries = 0;
        // Inside `call`'s closure: a 401 after a 429 still gets its one fresh token.
        self.call(request, |authorization| {
            loop {
                let answer = send(authorization);
                let Some((status, wait, asked)) = busy(&answer, retries, deadline) else {
                    return answer;
                };
                retries += 1;
                log::info!(
                    target: "logto_m2m",
                    "the api answered http {status}; waiting {} ({}) before calling it again \
                     (retry {retries} of {BUSY_RETRIES})",
                    DisplayDuration(wait),
                    if asked { "its Retry-After" } else { "no usable Retry-After" },
                );
                // The answer's connection is not reused: drop it before the wait.
                drop(answer);
                thread::sleep(wait);
            }
        })
    }
}

/// How many times [`TokenStore::call_idempotent`] sends a request again after a 429 or
/// 503: "once or twice", a polite client's share.
const BUSY_RETRIES: u32 = 2;

/// For a 429 or 503 that `call_idempotent` may retry (`retries` made so far), its status,
/// the wait before the retry and whether its `Retry-After` said so; `None` for any other
/// answer, or when the retries are used up or the wait would not end before `deadline`.
fn busy(
    answer: &Result<Response<Body>, ureq::Error>,
    retries: u32,
    deadline: Option<Instant>,
) -> Option<(u16, Duration, bool)> {
    /// The wait when the answer says nothing usable.
    const DEFAULT_WAIT: Duration = Duration::from_secs(1);
    let (status, retry_after) = match answer {
        Ok(response) => (
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v.trim())),
        ),
        Err(ureq::Error::StatusCode(status)) => (*status, None),
        Err(_) => return None,
    };
    if !matches!(status, 429 | 503) || retries >= BUSY_RETRIES {
        return None;
    }
    let wait = retry_after.unwrap_or(DEFAULT_WAIT);
    let ends_in_time = deadline.is_none_or(|d| wait < d.saturating_duration_since(Instant::now()));
    ends_in_time.then_some((status, wait, retry_after.is_some()))
}

/// The API origin given to [`Bearer::new`]: an http(s) URL read by the crate's rules
/// (`url.rs`) that is its origin alone.
fn api_origin(origin: &str) -> Result<Origin, Error> {
    let bad = |why: &str| Error::config(format!("api origin {why}"));
    let url = Url::parse(origin).map_err(|problem| bad(problem.reason()))?;
    if !url.is_origin() {
        return Err(bad(
            "must be scheme://host[:port] without a path: the token goes to every path there",
        ));
    }
    Ok(url.origin)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn origins_match_exactly() {
        let o = api_origin("https://API.example.com/").unwrap();
        let m = |u: &str| Origin::of_uri(&u.parse().unwrap()) == Some(o.clone());
        assert!(m("https://api.example.com/products?x=1"));
        assert!(m("https://API.EXAMPLE.com:443/"));
        assert!(!m("http://api.example.com/"));
        assert!(!m("https://api.example.com:8443/"));
        assert!(!m("https://api.example.com.evil.test/"));
        assert!(!m("https://evil.test/api.example.com"));
        let at = |o: &Origin, u: &str| Origin::of_uri(&u.parse().unwrap()).as_ref() == Some(o);
        let local = api_origin("http://127.0.0.1:8080").unwrap();
        assert!(at(&local, "http://127.0.0.1:8080/x"));
        assert!(!at(&local, "http://127.0.0.1:8081/x"));
        let v6 = api_origin("http://[::1]:9000").unwrap();
        assert!(at(&v6, "http://[::1]:9000/"));
        assert!(at(
            &api_origin("HTTP://LOCALHOST").unwrap(),
            "http://localhost:80/"
        ));
    }

    #[test]
    fn origins_are_only_origins() {
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "https://api.example.com/api",
            "https://api.example.com/?q=1",
            "https://user:pw@api.example.com",
            "https://api.example.com/#x",
            "https://",
            "https://api.example.com:99999",
        ] {
            assert!(api_origin(bad).is_err(), "{bad}");
        }
    }
}
