//! `request_token`: one client_credentials exchange, under one deadline.
//!
//! Builds the client authentication (Basic header or form fields), sends one POST with ureq
//! (no redirects, no gzip, no cookies), reads at most 64 KiB, and hands the bytes to the
//! parser. Retries are few and all inside the deadline: connection failures and 5xx up to
//! three requests in all, and one wait for a `Retry-After` that fits.
//!
//! A token exchange's subject token and form fields come from `token_exchange`, before the
//! first request and within the same deadline.

use std::io;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use ureq::http::{HeaderName, header};

use crate::advice;
use crate::config::{AuthMethod, Config};
use crate::encode::{form_urlencode, percent_encode};
use crate::error::{Error, ErrorKind, MAX_SERVER_TEXT, MAX_SERVER_WORD, Redactions};
use crate::request::{TokenRequest, TokenSource};
use crate::response::{self, Answer, Sent};
use crate::subject::Exchange;
use crate::time::DisplayDuration;
use crate::token::Token;

mod token_exchange;

/// The largest response body read, in bytes. A Logto token response is about 1 KiB;
/// reading stops at the cap, so a hostile server can't make us buffer more.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// The longest `Retry-After` we wait for inside one exchange. A longer one, or one that
/// does not fit the remaining deadline, is returned at once as
/// [`ErrorKind::RateLimited`] carrying the duration.
const MAX_RETRY_AFTER_WAIT: Duration = Duration::from_secs(10);

/// Logto's id of a request in its own logs, a header of each answer.
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("logto-core-request-id");

/// The pause before each further attempt after a connection failure or a 5xx: 100 ms, then
/// 400 ms. Its length is what bounds the attempts: one more than the pauses.
const BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

/// Gets an access token with the client_credentials grant (RFC 6749 §4.4).
///
/// Sends `POST` to the config's token URL with the form `grant_type=client_credentials`,
/// `resource`, `scope` and `organization_id` (the last three when set), authenticated as
/// [`Config::auth_method`] says: by default one `Authorization: Basic` header with the app
/// id and secret each form-urlencoded first (RFC 6749 §2.3.1; a space as `%20`, which
/// form-decoders and percent-decoders both read as a space), or `client_id` and
/// `client_secret` in the form. Redirects are never followed, and plain `http://` only goes
/// to loopback hosts unless [`Config::allow_insecure_http`] says otherwise.
///
/// Everything, retries and waits included, happens within [`Config::timeout`]:
/// - a connection that fails before a response arrives, and a 5xx answer, are tried again,
///   up to three requests in all, after 100 ms and 400 ms;
/// - a 429 (or 503) with a `Retry-After` of at most 10 seconds that fits the deadline is
///   waited out once; any other rate limit is returned at once;
/// - a 4xx is never retried: a wrong secret does not get better, and retries risk a lockout.
///
/// Each call makes its own exchange (on a pooled connection when the same `Config`, or a
/// clone of it, made one before); use [`TokenStore`](crate::TokenStore) to cache tokens.
/// A [token exchange](TokenRequest::impersonate) for an impersonated user gets a new
/// Management API token each time too; a store takes its own, cached.
///
/// # Errors
/// Every failure is an [`Error`]; its [`ErrorKind`] says which fact: the OAuth error and
/// HTTP status the server answered, the field of a malformed token response, a timeout, a
/// TLS or connection failure, a redirect, a body over 64 KiB. A request that is
/// [refused](TokenRequest#what-is-refused) is [`ErrorKind::Config`], before anything is
/// sent.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use logto_m2m::{request_token, Config, TokenRequest};
///
/// let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?
///     .timeout(Duration::from_secs(10));
/// let request = TokenRequest::new("https://shopping.api").scope("read:products");
/// let token = request_token(&config, &request)?;
/// println!("Authorization: Bearer {}", token.access_token());
/// # Ok::<_, logto_m2m::Error>(())
/// ```
pub fn request_token(config: &Config, request: &TokenRequest) -> Result<Token, Error> {
    request_token_in(config, request, None)
}

/// [`request_token`], for a store (`store`) when a store asks: an impersonation then takes
/// its Management API token from it.
pub(crate) fn request_token_in(
    config: &Config,
    request: &TokenRequest,
    store: Option<&dyn TokenSource>,
) -> Result<Token, Error> {
    request.check()?;
    config.check_cleartext()?;
    let agent = config.transport().agent()?;
    let started = Instant::now();
    // A timeout too long for the clock is as good as none; ureq's own has the same limit.
    let deadline = started.checked_add(config.timeout_value());
    // A token exchange's subject first (for an impersonation, two requests of its own),
    // within the same deadline as the exchange.
    // Through the subject's pointer, so that a program without one links none of it.
    let exchange = match request.subject() {
        None => None,
        Some((subject, code)) => Some((code.prepare)(config, agent, subject, deadline, store)?),
    };
    fetch(config, agent, request, exchange.as_ref(), started, deadline)
}

/// [`request_token`] once the subject, if any, is known: the exchange with its retries,
/// one more go with a rotated secret file, the advice and the log events.
fn fetch(
    config: &Config,
    agent: &ureq::Agent,
    request: &TokenRequest,
    exchange: Option<&Exchange>,
    started: Instant,
    deadline: Option<Instant>,
) -> Result<Token, Error> {
    // Read now, for this request: a secret file's new content is used from here on.
    let mut secret = config.secret().read()?.into_owned();
    let mut attempt = 1;
    let run = |secret: &str, attempt: &mut usize| {
        attempts(config, agent, request, exchange, secret, deadline, attempt)
    };
    let mut outcome = run(&secret, &mut attempt);
    // A secret file rotated while the request was on its way: the endpoint refused the old
    // secret, and the file holds another by now. One more go with it, within the same
    // deadline; any other refusal is final, as a wrong secret does not get better.
    let newer = match &outcome {
        Err(error) if refuses_secret(error.kind()) => config
            .secret()
            .newer_than(&secret)
            .map(|newer| (error, newer)),
        _ => None,
    };
    if let Some((error, newer)) = newer {
        log::info!(
            target: "logto_m2m",
            "the token endpoint refused the app secret ({}), and the app secret file {} holds \
             a new one: trying again with it",
            error.oauth_error().unwrap_or_default(),
            config.secret().path().map(|p| p.display().to_string()).unwrap_or_default()
        );
        secret = newer;
        attempt += 1;
        outcome = run(&secret, &mut attempt);
    }
    let outcome = outcome.map_err(|error| {
        let hint = match exchange {
            Some(exchange) => exchange.advice(error.kind()),
            None => None,
        }
        .or_else(|| advice::for_error(error.kind(), config, request, &secret));
        error.with_context(Some(config.token_url()), None, hint)
    });
    match &outcome {
        Ok(token) => log_fetched(config, request, token, attempt, started),
        Err(error) => log::debug!(
            target: "logto_m2m",
            "token request for resource {:?} failed after {attempt} attempt(s), {}: {error}",
            request.resource(),
            DisplayDuration(started.elapsed())
        ),
    }
    outcome
}

/// The answers that can mean the secret was rotated: `invalid_client` (the secret is not
/// one of the app's) and an expired secret.
fn refuses_secret(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::OAuth { error, .. } if error == "invalid_client")
        || crate::error::is_secret_expired(kind)
}

/// The exchange with `secret`, retried as [`request_token`] says, until `deadline`.
/// `attempt` counts the requests, across calls.
fn attempts(
    config: &Config,
    agent: &ureq::Agent,
    request: &TokenRequest,
    exchange: Option<&Exchange>,
    secret: &str,
    deadline: Option<Instant>,
    attempt: &mut usize,
) -> Result<Token, Error> {
    let auth = ClientAuth::new(config, secret);
    let body = auth.form_body(request, exchange.map(|e| e.fields.as_str()));
    let mut redact = auth.redactions();
    if let Some(exchange) = exchange {
        redact.secrets[3] = &exchange.subject_token;
        redact.secrets[4] = exchange.actor_token.as_deref().unwrap_or("");
    }

    let mut waited_for_rate_limit = false;
    // The pauses count from this call's first request: a retry with a new secret gets its
    // own, as far as the deadline allows.
    let first = *attempt;
    loop {
        let left = time_left(config, deadline);
        if left.is_zero() {
            return Err(Error::new(ErrorKind::Timeout {
                after: config.timeout_value(),
            }));
        }
        // The token's lifetime counts from here: the server can't have issued it earlier.
        let sent = Sent {
            at: Instant::now(),
            wall: SystemTime::now(),
            scope: request.scopes(),
            max_lifetime: config.max_lifetime(),
        };
        let failure = match post_form(config, agent, &auth, &redact, &body, left) {
            Ok(answer) => match response::parse(&answer, &sent, &redact) {
                Ok(token) => return Ok(token),
                Err(error) => Failure::answered(error, answer.request_id),
            },
            Err(failure) => failure,
        };

        let pause = *attempt - first;
        let wait = match failure.error.kind() {
            ErrorKind::RateLimited {
                retry_after: Some(wait),
                ..
            } if !waited_for_rate_limit && *wait <= MAX_RETRY_AFTER_WAIT => {
                waited_for_rate_limit = true;
                *wait
            }
            _ if failure.retry && pause < BACKOFF.len() => BACKOFF[pause],
            _ => return Err(failure.error),
        };
        // A wait that does not fit the deadline is not worth starting: the caller gets the
        // server's answer now rather than a timeout later.
        if wait >= time_left(config, deadline) {
            return Err(failure.error);
        }
        log::debug!(
            target: "logto_m2m",
            "token request attempt {attempt} failed, trying again in {}: {}",
            DisplayDuration(wait),
            failure.error
        );
        // `sleep` never returns early, so a Retry-After is honoured in full.
        thread::sleep(wait);
        *attempt += 1;
    }
}

/// What is left of `deadline` now; the config's timeout when there is none.
fn time_left(config: &Config, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => config.timeout_value(),
    }
}

/// The debug event of a fetched token, and the warning for scopes asked but not granted.
fn log_fetched(
    config: &Config,
    request: &TokenRequest,
    token: &Token,
    attempts: usize,
    started: Instant,
) {
    log::debug!(
        target: "logto_m2m",
        "token fetched: resource {:?}, scope {:?}, lifetime {}s, {attempts} attempt(s), {}",
        request.resource(),
        token.scope().unwrap_or(""),
        token.expires_in().as_secs(),
        DisplayDuration(started.elapsed())
    );
    advice::warn_missing_scopes(config, request, token);
}

/// How the client authenticates in one exchange: a Basic header, or fields for the form.
struct ClientAuth {
    /// `Basic base64(urlencode(id):urlencode(secret))`.
    header: Option<String>,
    /// `&client_id=...&client_secret=...`.
    form: Option<String>,
    /// The secret as read for this request.
    secret: String,
    /// The secret form-urlencoded, as a server could echo it back.
    secret_encoded: String,
}

impl ClientAuth {
    fn new(config: &Config, secret: &str) -> ClientAuth {
        match config.auth_method_value() {
            AuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: id and secret are each form-urlencoded, then joined by ':'.
                // A space goes as `%20`, not `+`: form-decoders (Logto, oidc-provider) and
                // percent-decoders (Authlib and many others) both read `%20` as a space,
                // while the latter read `+` as a plus and refuse the secret.
                let id = percent_encode(config.app_id());
                let secret_encoded = percent_encode(secret);
                let pair = format!("{id}:{secret_encoded}");
                let mut header = String::from("Basic ");
                base64::engine::general_purpose::STANDARD.encode_string(pair, &mut header);
                ClientAuth {
                    header: Some(header),
                    form: None,
                    secret: secret.to_owned(),
                    secret_encoded,
                }
            }
            AuthMethod::ClientSecretPost => {
                let id = form_urlencode(config.app_id());
                let secret_encoded = form_urlencode(secret);
                ClientAuth {
                    header: None,
                    form: Some(format!("&client_id={id}&client_secret={secret_encoded}")),
                    secret: secret.to_owned(),
                    secret_encoded,
                }
            }
        }
    }

    /// The secret in every form a server could echo it back in.
    /// The request's form, with the credentials when they go in the form.
    /// The form of `request`, with a token exchange's own `fields` when it is one, and the
    /// credentials when they go in the body.
    fn form_body(&self, request: &TokenRequest, fields: Option<&str>) -> String {
        let mut body = request.form_body(fields);
        if let Some(fields) = &self.form {
            body.push_str(fields);
        }
        body
    }

    fn redactions(&self) -> Redactions<'_> {
        let basic = self.header.as_deref().map_or("", |h| &h["Basic ".len()..]);
        Redactions {
            secrets: [&self.secret, &self.secret_encoded, basic, "", ""],
        }
    }
}

/// A failed exchange, and whether another attempt may go better.
struct Failure {
    error: Error,
    retry: bool,
}

impl Failure {
    /// An answer or failure that another attempt would not change.
    fn fatal(kind: ErrorKind) -> Failure {
        Failure {
            error: Error::new(kind),
            retry: false,
        }
    }

    /// The server's answer, refused: a 5xx may go better next time; any other answer is
    /// the server's word.
    fn answered(error: Error, request_id: Option<String>) -> Failure {
        Failure {
            retry: matches!(
                error.kind(),
                ErrorKind::OAuth { status: 500.., .. }
                    | ErrorKind::HttpStatus { status: 500.., .. }
            ),
            error,
        }
        .with_request_id(request_id)
    }

    /// The failure of an answer that carried this request id.
    fn with_request_id(self, request_id: Option<String>) -> Failure {
        match request_id {
            None => self,
            id => Failure {
                error: self.error.with_context(None, id, None),
                retry: self.retry,
            },
        }
    }
}

/// One POST and its answer, within `left`.
fn post_form(
    config: &Config,
    agent: &ureq::Agent,
    auth: &ClientAuth,
    redact: &Redactions<'_>,
    body: &str,
    left: Duration,
) -> Result<Answer, Failure> {
    let mut post = agent
        .post(config.token_url())
        .config()
        .timeout_global(crate::transport::deadline(left))
        .build()
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(basic) = &auth.header {
        post = post.header("authorization", basic);
    }
    let response = post
        .send(body.as_bytes())
        .map_err(|e| map_ureq_error(e, config, redact))?;

    let status = response.status().as_u16();
    // By `HeaderName`, not by text: a name given as text is parsed and checked again at
    // every lookup, and that parser is linked into every program for these four names.
    let header = |name: HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // Logto's id of this request in its own logs: kept for any error this answer becomes.
    let request_id = header(REQUEST_ID)
        .map(|id| crate::error::sanitize_to(id, redact, MAX_SERVER_WORD))
        .filter(|id| !id.is_empty());
    let fatal = |kind| Failure::fatal(kind).with_request_id(request_id.clone());
    if response.status().is_redirection() {
        // Not a byte of the body is read: it could be anything, and we are not going there.
        // Where it points is said (without its query), since it is often the right URL.
        let location = header(header::LOCATION)
            .map(|l| l.split(['?', '#']).next().unwrap_or(""))
            .map(|l| crate::error::sanitize_to(l, redact, MAX_SERVER_TEXT))
            .filter(|l| !l.is_empty());
        return Err(fatal(ErrorKind::Redirect { status, location }));
    }
    if let Some(encoding) =
        header(header::CONTENT_ENCODING).filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        // We asked for identity. Compressed bytes must never reach the JSON parser, and we
        // have no decoder (gzip support is left out on purpose).
        let encoding = crate::error::sanitize(encoding, &Redactions::NONE);
        return Err(fatal(ErrorKind::InvalidResponse {
            status,
            field: None,
            reason: format!("body has content-encoding {encoding:?}, which was not asked for"),
        }));
    }
    let rate_limited = match status {
        429 => Some(header(header::RETRY_AFTER).and_then(parse_retry_after)),
        503 => header(header::RETRY_AFTER)
            .and_then(parse_retry_after)
            .map(Some),
        _ => None,
    };
    let body = response
        .into_body()
        .into_with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| {
            body_failure(map_ureq_error(e, config, redact), status)
                .with_request_id(request_id.clone())
        })?;
    Ok(Answer {
        status,
        rate_limited,
        body,
        request_id,
    })
}

/// A failure while reading the body of an answer with `status`.
///
/// A body cut short (Content-Length longer than the body, a chunked body without its last
/// chunk) is not a connection that never answered: after a 200 the server may well have
/// issued a token, which counts against a Logto Cloud quota. So it is retried only for a
/// 5xx, and the message says where it failed. (Found by tests/suite/faults.rs.)
fn body_failure(failure: Failure, status: u16) -> Failure {
    let error = match failure.error.kind() {
        ErrorKind::Transport { message } => Error::new(ErrorKind::Transport {
            message: format!("{message} while reading the body of the http {status} answer"),
        }),
        // A huge error page still says which status it came with.
        ErrorKind::BodyTooLarge { limit, .. } => Error::new(ErrorKind::BodyTooLarge {
            status,
            limit: *limit,
        }),
        _ => failure.error,
    };
    Failure {
        error,
        retry: failure.retry && status >= 500,
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. A date in the past is
/// zero; anything unreadable is `None`, as if the header were absent.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and an absurd wait is still a long wait.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Maps ureq's error to ours. Only a connection that failed or closed before an answer is
/// marked for retry: a malformed answer is still the server's answer.
fn map_ureq_error(e: ureq::Error, config: &Config, redact: &Redactions<'_>) -> Failure {
    let text = |e: &dyn std::fmt::Display| crate::error::sanitize(&e.to_string(), redact);
    let timed_out = || {
        Failure::fatal(ErrorKind::Timeout {
            after: config.timeout_value(),
        })
    };
    // Where the connection went: a cron job's mail must say which host could not be reached.
    let authority = config.authority();
    let where_ = authority.as_str();
    let transport = |message: String, retry: bool| Failure {
        error: Error::new(ErrorKind::Transport { message }),
        retry,
    };
    match e {
        // ureq's deadline is what was left of ours.
        ureq::Error::Timeout(_) => timed_out(),
        ureq::Error::Io(ref io)
            if matches!(
                io.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            timed_out()
        }
        // The status is filled in by `body_failure`, which knows it.
        ureq::Error::BodyExceedsLimit(limit) => {
            Failure::fatal(ErrorKind::BodyTooLarge { status: 0, limit })
        }
        ureq::Error::HostNotFound => transport(format!("host not found: {where_}"), false),
        ureq::Error::ConnectionFailed => transport(format!("cannot connect to {where_}"), true),
        ureq::Error::Io(ref io) if is_tls_failure(io, config) => tls_failure(where_, text(io)),
        ureq::Error::Io(ref io) => {
            // Refused, reset, or closed with no (complete) status line: ureq can't say
            // whether a partial head arrived, and trying again is harmless either way.
            let message = match io.kind() {
                io::ErrorKind::ConnectionRefused => {
                    format!("cannot connect to {where_}: {}", text(io))
                }
                _ => format!("{where_}: {}", text(io)),
            };
            transport(
                message,
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::NotConnected
                        | io::ErrorKind::UnexpectedEof
                ),
            )
        }
        ureq::Error::Tls(m) => tls_failure(where_, m.into()),
        #[cfg(feature = "rustls")]
        ureq::Error::Rustls(ref r) => tls_failure(where_, text(r)),
        #[cfg(feature = "native-tls")]
        ureq::Error::NativeTls(ref n) => tls_failure(where_, text(n)),
        ureq::Error::Protocol(ref p) => transport(
            format!("{where_}: invalid http response: {}", text(p)),
            false,
        ),
        ureq::Error::LargeResponseHeader(_, limit) => {
            transport(format!("response headers exceed {limit} bytes"), false)
        }
        // ureq names neither the proxy nor the server; the transport knows both.
        ureq::Error::ConnectProxyFailed(ref reason) => {
            transport(config.transport().refused(reason), false)
        }
        other => transport(text(&other), false),
    }
}

/// A TLS failure on the connection to `where_` (`host:port`), which the message names.
///
/// An https URL to a port that serves plain http is a common slip (a local Logto on
/// :3001, a port copied from an http URL), and the TLS layer's words for it are cryptic:
/// rustls "received corrupt message of type InvalidContentType" (the first byte of
/// `HTTP/1.1 400` is no TLS record type), OpenSSL "wrong version number". Either means the
/// server did not answer in TLS at all, and the message says so and what to check.
fn tls_failure(where_: &str, message: String) -> Failure {
    // `find`, not `contains`: see `sanitize_to`.
    let message = if message.find("InvalidContentType").is_some()
        || message.find("wrong version number").is_some()
    {
        format!(
            "{where_} did not answer in tls (a plain http port?): check the url's scheme and \
             port ({message})"
        )
    } else {
        format!("{where_}: {message}")
    };
    Failure::fatal(ErrorKind::Tls { message })
}

/// rustls reports handshake failures, certificate errors included, as an I/O error of
/// kind `InvalidData` wrapping its own error; on an https connection nothing else does.
fn is_tls_failure(io: &io::Error, config: &Config) -> bool {
    config.is_https() && io.kind() == io::ErrorKind::InvalidData
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn client_auth_is_header_or_form_never_both() {
        let c = Config::new("https://x/token", "m2m-special", "s3cr:t+/%&= x~").unwrap();
        let basic = ClientAuth::new(&c, "s3cr:t+/%&= x~");
        assert_eq!(
            basic.header.as_deref(),
            Some("Basic bTJtLXNwZWNpYWw6czNjciUzQXQlMkIlMkYlMjUlMjYlM0QlMjB4JTdF")
        );
        assert_eq!(basic.form, None);
        let post = ClientAuth::new(
            &c.auth_method(AuthMethod::ClientSecretPost),
            "s3cr:t+/%&= x~",
        );
        assert_eq!(post.header, None);
        assert_eq!(
            post.form.as_deref(),
            Some("&client_id=m2m-special&client_secret=s3cr%3At%2B%2F%25%26%3D+x%7E")
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }
}
