//! The token exchange's part of an exchange (RFC 8693, as Logto does it): the setters that
//! make a request act for a user (`TokenRequest::impersonate` and the others), the
//! subject's token, read from its file or, for an impersonation, made by Logto's
//! Management API; the form fields that carry it; and what to do when Logto refuses it.
//!
//! The setters are the only way in: each puts a pointer to [`CODE`] into the request, and
//! the exchange reaches this module's code through it. So a program that never calls a
//! setter links none of this module (`.ci/run` checks `get_token` with `nm`), and the
//! edge goes from here to the request, never the other way round.
//!
//! It sits under `exchange` because the Management API token it needs for an impersonation
//! is itself one exchange (`super::fetch`), under the same deadline, and its POST maps
//! ureq's errors the same way. Through a store, that token is the store's instead, so that
//! one serves every impersonation for its lifetime.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::error::{Error, ErrorKind, MAX_SERVER_WORD, Redactions};
use crate::request::{Code, TokenRequest, TokenSource};
use crate::response::{self, Answer, Sent};
use crate::secret::Secret;
use crate::subject::{self, ACCESS_TOKEN_TYPE, Exchange, PERSONAL_ACCESS_TOKEN_TYPE, Subject, Who};
use crate::token::{Token, is_header_safe};

use super::{MAX_RESPONSE_BYTES, body_failure, map_ureq_error, time_left};

/// The token exchange's code, which the setters below put into a request.
static CODE: Code = Code {
    prepare,
    key_part: subject::key_part,
    refusal,
    read_now: with_files_read,
};

/// [`Code::read_now`]: `request` with its subject's and actor's token files read now, so
/// that its key holds a hash of what they hold and an exchange sends exactly that.
fn with_files_read(request: &TokenRequest) -> Result<TokenRequest, Error> {
    let subject = request.subject().map(|(subject, _)| subject);
    match subject.filter(|subject| subject.reads_files()) {
        Some(subject) => {
            let read = subject::read_files(subject)?;
            Ok(request.clone().with_subject(&CODE, |s| *s = read))
        }
        None => Ok(request.clone()),
    }
}

/// The subject setters: each makes the request a token exchange.
impl TokenRequest {
    /// Asks for a token that acts for the Logto user `user_id` (impersonation): the token's
    /// `sub` is the user, `client_id` the app, and its scopes those the user's roles grant.
    ///
    /// For each token the app first gets a Management API token (client_credentials, the
    /// Management API of the config's Logto endpoint, scope `all`), asks
    /// `POST {endpoint}/api/subject-tokens` for a single-use subject token for the user, and
    /// exchanges it (RFC 8693, `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`);
    /// all three requests within the one [`Config::timeout`](crate::Config::timeout). A
    /// [`TokenStore`](crate::TokenStore) caches the token per user like any other and asks
    /// for a new subject token at each refresh.
    ///
    /// Through a [`TokenStore`](crate::TokenStore), the Management API token is the store's
    /// own [`TokenRequest::management_api`] token: cached, refreshed and shared through its
    /// token file or [`TokenCache`](crate::TokenCache) like any other, so impersonating many
    /// users, or refreshing one user's token many times, costs one Management API token per
    /// its lifetime (across processes, with a shared cache). When the Management API answers
    /// 401 to a cached one, it is dropped (if it is still the store's) and the subject
    /// token asked for once more with a fresh one, within the same timeout. Taken within a
    /// refresh through a shared cache, that token's own refresh does not take the cache's
    /// lock (the refresh holds it already; the token file has one lock for all keys), nor
    /// waits for another thread's refresh of that token, which may be waiting for the lock:
    /// it asks itself, and the other thread reads its token from the cache (with Redis,
    /// whose locks are per key, the two may then make a request each).
    /// [`request_token`](crate::request_token) alone gets a new Management API token for
    /// every exchange.
    ///
    /// The user id is refused if it has a control character, before anything is sent.
    ///
    /// The app needs Logto's token exchange turned on (the console's "token exchange"
    /// setting, `customClientMetadata.allowTokenExchange`) and a machine-to-machine role
    /// with the Management API's `all` permission. What Logto answers when something is
    /// missing, and what the error's message adds:
    ///
    /// - an unknown user: the Management API's 404 `entity.relation_foreign_key_not_found`
    ///   from `/api/subject-tokens`; the message names the user id;
    /// - an app without the setting: 400 `invalid_request` "requested grant type is not
    ///   allowed for this client"; the message says to turn token exchange on;
    /// - an app without Management API access: 403 `auth.forbidden` from
    ///   `/api/subject-tokens`; the message says the app needs it;
    /// - a used or expired subject token, a wrong or revoked personal access token: 400
    ///   `invalid_grant` "grant request is invalid"; the message says which token Logto
    ///   refused, never the token;
    /// - scopes the user's roles lack: dropped from the token (200), with the warning an
    ///   app gets for scopes it lacks (log target `logto_m2m`).
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// let request = TokenRequest::new("https://shopping.api")
    ///     .scope("read:products")
    ///     .impersonate("user-id")
    ///     .impersonation_context(r#"{"ticket":"T-1024"}"#);
    /// let token = request_token(&config, &request)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn impersonate(self, user_id: &str) -> Self {
        self.with_subject(&CODE, |s| s.impersonate(user_id))
    }

    /// The context (a JSON object) Logto keeps with the subject token of an
    /// [impersonation](TokenRequest::impersonate), e.g. `{"ticket":"T-1024"}`: for Logto's
    /// custom token claims and its logs. A request whose context is not a JSON object is
    /// [refused](TokenRequest#what-is-refused) at each use, before anything is sent.
    pub fn impersonation_context(self, json: &str) -> Self {
        self.with_subject(&CODE, |s| s.context(json))
    }

    /// Asks for a token that acts for the user whose personal access token (`pat_…`, made
    /// in the Logto console or by `POST /api/users/{id}/personal-access-tokens`) is `token`:
    /// the token itself (`&str`, `String`), or a file that holds it
    /// ([`Secret::file`](crate::Secret::file)). Exchanged with `subject_token_type
    /// urn:logto:token-type:personal_access_token`; the app needs token exchange turned on,
    /// as for [`TokenRequest::impersonate`]. A wrong, expired or revoked one is
    /// `invalid_grant`; the message never repeats it.
    ///
    /// A file is read at each use: by [`request_token`](crate::request_token) for its
    /// exchange, and by a [`TokenStore`](crate::TokenStore) at each
    /// [`get`](crate::TokenStore::get) (one small read; requests without a file keep their
    /// lock-free hit), which keys the request by a hash of what it read and exchanges that
    /// very token when it must ask. So a file rewritten with another user's token gets that
    /// user's token from the next `get` on, in one process, across processes sharing a token
    /// file, and across hosts sharing a cache that each have a different token at the same
    /// path; the old user's token stays cached under its own key until it expires.
    ///
    /// The token is never in a cache key (a hash of it is), a log line, `Debug` or an error.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, Secret, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// let request = TokenRequest::new("https://shopping.api")
    ///     .scope("read:products")
    ///     .personal_access_token(Secret::file("/run/secrets/logto-pat"));
    /// let token = request_token(&config, &request)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn personal_access_token(self, token: impl Into<Secret>) -> Self {
        let token = token.into();
        self.with_subject(&CODE, |s| s.token(PERSONAL_ACCESS_TOKEN_TYPE, token))
    }

    /// Asks for a token that acts for the user whose access token (a JWT Logto issued to a
    /// first-party app) is `token`, for this request's resource (delegation): the token
    /// itself, or a file that holds it, as for [`TokenRequest::personal_access_token`].
    /// Exchanged with `subject_token_type urn:ietf:params:oauth:token-type:access_token`.
    pub fn user_access_token(self, token: impl Into<Secret>) -> Self {
        let token = token.into();
        self.with_subject(&CODE, |s| s.token(ACCESS_TOKEN_TYPE, token))
    }

    /// The RFC 8693 actor token (`actor_token`, of type
    /// `urn:ietf:params:oauth:token-type:access_token`): who acts for the subject. Logto
    /// takes the opaque access token, with scope `openid`, of the user who acts, and puts
    /// that user in the token's `act` claim. Given as for
    /// [`TokenRequest::personal_access_token`]; only with a subject.
    pub fn actor_token(self, token: impl Into<Secret>) -> Self {
        let token = token.into();
        self.with_subject(&CODE, |s| s.actor(token))
    }
}

/// Why `subject` can't make a request: [`Subject::check`], and an impersonation context
/// that is not a JSON object. Run when the request is built, so that every use refuses it
/// before anything is sent or looked up.
fn refusal(subject: &Subject) -> Option<Error> {
    subject
        .check()
        .and_then(|()| context_object(subject.context_json()).map(|_| ()))
        .err()
}

/// The subject token (read from its file now, or for an impersonation made by Logto's
/// Management API now, with a Management API token from `store` when there is one) and
/// the form fields.
fn prepare(
    config: &Config,
    agent: &ureq::Agent,
    subject: &Subject,
    deadline: Option<Instant>,
    store: Option<&dyn TokenSource>,
) -> Result<Exchange, Error> {
    subject.check()?;
    let actor_token = subject.actor_token().map(subject::read_token).transpose()?;
    let (subject_token, token_type, who) = match subject.who() {
        Some(Who::Token(token_type, token)) => {
            let who = match *token_type {
                PERSONAL_ACCESS_TOKEN_TYPE => "the personal access token",
                _ => "the user's access token",
            };
            (subject::read_token(token)?, *token_type, who.to_owned())
        }
        Some(Who::Impersonate(user_id)) => (
            subject_token(
                config,
                agent,
                user_id,
                subject.context_json(),
                deadline,
                store,
            )?,
            ACCESS_TOKEN_TYPE,
            format!("the subject token for user {user_id:?}"),
        ),
        // `check` refused a subject without one.
        None => return Err(Error::config("no subject for the token exchange")),
    };
    if subject_token.is_empty() || actor_token.as_deref() == Some("") {
        return Err(Error::config(format!("{who} is empty")));
    }
    let mut fields = String::new();
    subject::form_fields(
        &subject_token,
        token_type,
        actor_token.as_deref(),
        &mut fields,
    );
    Ok(Exchange {
        fields,
        subject_token,
        actor_token,
        who,
        advise: advice_for,
    })
}

/// What to do about the token endpoint's refusal of `exchange` ([`Exchange::advice`]).
fn advice_for(exchange: &Exchange, kind: &ErrorKind) -> Option<String> {
    let ErrorKind::OAuth {
        error, description, ..
    } = kind
    else {
        return None;
    };
    let description = description.as_deref().unwrap_or("");
    match error.as_str() {
        // Logto: "requested grant type is not allowed for this client".
        "invalid_request" | "unauthorized_client"
            if description.contains("grant type") || error == "unauthorized_client" =>
        {
            Some(
                "the app may not exchange tokens: turn on token exchange for the app in the \
                 logto console (its customClientMetadata.allowTokenExchange)"
                    .into(),
            )
        }
        "invalid_grant" => {
            let actor = if exchange.actor_token.is_some() {
                ", or the actor token is not a user's opaque access token with scope openid"
            } else {
                ""
            };
            Some(format!(
                "logto refused {} (used, expired, revoked, wrong, or from another logto){actor}",
                exchange.who
            ))
        }
        _ => None,
    }
}

/// Asks the Management API of the config's Logto for a single-use subject token for
/// `user_id`: first a Management API token for the app (client_credentials, scope `all`;
/// `store`'s when there is one, else a new one), then `POST /api/subject-tokens`, both
/// before `deadline`.
///
/// A 401 to a store's token (Logto no longer takes it: its signing key is gone, say) drops
/// it, if it is still the store's, and asks once more with a fresh one.
fn subject_token(
    config: &Config,
    agent: &ureq::Agent,
    user_id: &str,
    context: Option<&str>,
    deadline: Option<Instant>,
    store: Option<&dyn TokenSource>,
) -> Result<String, Error> {
    let base = logto_endpoint(config)?;
    let context = context_object(context)?;
    let started = Instant::now();
    let management = TokenRequest::management_api(base);
    let url = format!("{base}/api/subject-tokens");
    let body = subject_token_body(user_id, context);
    let ask = |token: &Token| {
        let redact = Redactions {
            secrets: [token.access_token(), "", "", "", ""],
        };
        let answer = post_json(
            config,
            agent,
            &url,
            token.authorization(),
            &body,
            deadline,
            &redact,
        )
        .map_err(|error| error.with_context(Some(&url), None, None))?;
        read_subject_token(config, &answer, started, &redact).map_err(|error| {
            let hint = management_api_hint(answer.status, user_id);
            error.with_context(Some(&url), answer.request_id.clone(), hint)
        })
    };
    let Some(store) = store else {
        let token = super::fetch(config, agent, &management, None, started, deadline)?;
        return ask(&token);
    };
    let token: Arc<Token> = store.token(&management)?;
    match ask(&token) {
        Err(error) if error.status() == Some(401) => {
            store.refused(&management, &token);
            let fresh = store.token(&management)?;
            if fresh.access_token() == token.access_token() {
                return Err(error);
            }
            log::debug!(
                target: "logto_m2m",
                "the management api refused its cached token (http 401); asking for the \
                 subject token again with a fresh one"
            );
            ask(&fresh)
        }
        answer => answer,
    }
}

/// The Logto endpoint whose Management API makes subject tokens: the token URL's
/// (`{endpoint}/oidc/token`).
fn logto_endpoint(config: &Config) -> Result<&str, Error> {
    config.logto_endpoint().ok_or_else(|| {
        Error::config(
            "impersonation needs a logto endpoint (a token url ending in /oidc/token): the \
             subject token comes from its management api",
        )
    })
}

/// The impersonation context as sent: the caller's JSON object, or `{}`.
fn context_object(context: Option<&str>) -> Result<&str, Error> {
    match context.map(str::trim) {
        None => Ok("{}"),
        Some(json) => match miniserde::json::from_str::<miniserde::json::Value>(json) {
            Ok(miniserde::json::Value::Object(_)) => Ok(json),
            _ => Err(Error::config(
                "the impersonation context is not a json object",
            )),
        },
    }
}

/// The body of `POST /api/subject-tokens`: the user and the impersonation context.
fn subject_token_body(user_id: &str, context: &str) -> String {
    // The user id as a JSON string by miniserde; the context is the caller's JSON object,
    // checked (`context_object`) and sent as it is.
    let user_id = miniserde::json::to_string(user_id);
    format!("{{\"userId\":{user_id},\"context\":{context}}}")
}

/// The subject token in the Management API's `answer`, or the error it answered: its
/// message when it gave one, else the status.
fn read_subject_token(
    config: &Config,
    answer: &Answer,
    started: Instant,
    redact: &Redactions<'_>,
) -> Result<String, Error> {
    if !(200..300).contains(&answer.status) {
        let sent = Sent {
            at: started,
            wall: SystemTime::now(),
            scope: &[],
            max_lifetime: config.max_lifetime(),
        };
        return Err(match response::parse(answer, &sent, redact) {
            Err(error) => error,
            // An error status is never a token.
            Ok(_) => Error::new(ErrorKind::HttpStatus {
                status: answer.status,
                logto_code: None,
                logto_message: None,
            }),
        });
    }
    let invalid = |reason: &str| {
        Error::new(ErrorKind::InvalidResponse {
            status: answer.status,
            field: Some("subjectToken"),
            reason: reason.into(),
        })
    };
    let parsed = std::str::from_utf8(&answer.body)
        .ok()
        .and_then(|text| miniserde::json::from_str::<miniserde::json::Object>(text).ok());
    match parsed.as_ref().and_then(|o| o.get("subjectToken")) {
        Some(miniserde::json::Value::String(t)) if !t.is_empty() && is_header_safe(t) => {
            Ok(t.clone())
        }
        Some(miniserde::json::Value::String(_)) => Err(invalid("is empty or not visible ascii")),
        Some(_) => Err(invalid("is not a string")),
        None => Err(invalid("is missing")),
    }
}

/// The Management API's refusals, said for what was asked of it.
fn management_api_hint(status: u16, user_id: &str) -> Option<String> {
    match status {
        404 => Some(format!(
            "logto has no user {user_id:?}: check the id of the user to impersonate"
        )),
        401 | 403 => Some(
            "impersonation needs the app to have management api access: assign it a \
             machine-to-machine role with the management api's all permission"
                .to_owned(),
        ),
        _ => None,
    }
}

/// One JSON POST to the Management API with `authorization`, before `deadline`; the
/// answer, whatever its status.
fn post_json(
    config: &Config,
    agent: &ureq::Agent,
    url: &str,
    authorization: &str,
    body: &str,
    deadline: Option<Instant>,
    redact: &Redactions<'_>,
) -> Result<Answer, Error> {
    let left = time_left(config, deadline);
    if left.is_zero() {
        return Err(Error::new(ErrorKind::Timeout {
            after: config.timeout_value(),
        }));
    }
    let response = agent
        .post(url)
        .config()
        .timeout_global(crate::transport::deadline(left))
        .build()
        .header("content-type", "application/json")
        .header("authorization", authorization)
        .send(body.as_bytes())
        .map_err(|e| map_ureq_error(e, config, redact).error)?;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get(super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|id| crate::error::sanitize_to(id.trim(), redact, MAX_SERVER_WORD))
        .filter(|id| !id.is_empty());
    if response.status().is_redirection() {
        return Err(Error::new(ErrorKind::Redirect {
            status,
            location: None,
        }));
    }
    let rate_limited = (status == 429).then_some(None);
    let body = response
        .into_body()
        .into_with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| body_failure(map_ureq_error(e, config, redact), status).error)?;
    Ok(Answer {
        status,
        rate_limited,
        body,
        request_id,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    fn config(token_url: &str) -> Config {
        Config::new(token_url, "app", "secret").unwrap()
    }

    fn is_config_error(result: Result<impl std::fmt::Debug, Error>) -> bool {
        matches!(
            result.map_err(|e| e.kind().clone()),
            Err(ErrorKind::Config { .. })
        )
    }

    #[test]
    fn the_management_api_is_the_token_urls_logto() {
        let c = config("https://t.logto.app/oidc/token?x=1");
        assert_eq!(logto_endpoint(&c).unwrap(), "https://t.logto.app");
        let c = config("HTTPS://T.logto.app:443/oidc/token/");
        assert_eq!(logto_endpoint(&c).unwrap(), "https://t.logto.app");
        let c = config("http://127.0.0.1:3001/auth/oidc/token");
        assert_eq!(logto_endpoint(&c).unwrap(), "http://127.0.0.1:3001/auth");
        assert!(is_config_error(logto_endpoint(&config("https://x/token"))));
    }

    #[test]
    fn the_context_is_a_json_object_or_none() {
        assert_eq!(context_object(None).unwrap(), "{}");
        assert_eq!(context_object(Some(" {\"a\":1}\n")).unwrap(), "{\"a\":1}");
        assert!(is_config_error(context_object(Some("[1]"))));
        assert!(is_config_error(context_object(Some("{"))));
        assert_eq!(
            subject_token_body("u\"1", "{}"),
            r#"{"userId":"u\"1","context":{}}"#
        );
    }

    #[test]
    fn the_subject_token_is_read_or_its_fault_named() {
        let c = config("https://t.logto.app/oidc/token");
        let read = |status: u16, body: &str| {
            let answer = Answer {
                status,
                rate_limited: None,
                body: body.as_bytes().to_vec(),
                request_id: None,
            };
            read_subject_token(&c, &answer, Instant::now(), &Redactions::NONE)
        };
        assert_eq!(read(201, r#"{"subjectToken":"sub_1"}"#).unwrap(), "sub_1");
        for (body, reason) in [
            (r#"{"subjectToken":""}"#, "is empty or not visible ascii"),
            (
                r#"{"subjectToken":"a\nb"}"#,
                "is empty or not visible ascii",
            ),
            (r#"{"subjectToken":1}"#, "is not a string"),
            (r#"{"other":1}"#, "is missing"),
            ("not json", "is missing"),
        ] {
            match read(201, body).map_err(|e| e.kind().clone()) {
                Err(ErrorKind::InvalidResponse {
                    status: 201,
                    field: Some("subjectToken"),
                    reason: r,
                }) => assert_eq!(r, reason, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        // An error status is never a token, whatever its body.
        let error = read(404, r#"{"access_token":"x","token_type":"Bearer"}"#).unwrap_err();
        assert_eq!(error.status(), Some(404));
    }
}
