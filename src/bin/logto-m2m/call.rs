//! `logto-m2m call`: an API call with a token, retried once on 401 by the library's
//! `TokenStore::call` (and on 429 and 503 for an idempotent method, by
//! `TokenStore::call_idempotent`); the body to stdout, the status line to stderr with `-v`.
//! `--paginate` is `paginate.rs`, which this drives through its `Pages`.

use std::sync::Arc;
use std::time::Instant;

use logto_m2m::{Bearer, CallError, ErrorKind, Origin, TokenRequest, TokenStore};
use ureq::http::{Method, Response};

use crate::flags::Options;
use crate::input::body;
use crate::output::{Failure, TARGET, copy_to_stdout};
use crate::paginate::Pages;
use crate::setup::{Env, Setup, log_stats, setup};

pub(crate) fn run(opts: &Options) -> Result<(), Failure> {
    let target = opts.target.as_deref().ok_or_else(|| {
        Failure::Usage("call: give the url (https://...) or a path on Logto (/api/...)".into())
    })?;
    let (url, default) = resolve(opts, target)?;
    let mut setup = setup(opts, default.as_ref())?;
    let store = setup
        .store
        .take()
        .unwrap_or_else(|| TokenStore::new(setup.config.clone()));
    let store = Arc::new(store);
    // The token goes only where the library's own middleware would send it: https, or
    // plain http to a loopback host. Nothing of the Bearer is used but this check.
    let origin = Origin::of(&url).map_err(|e| usage(&url, &e))?;
    let checked = Bearer::new(
        Arc::clone(&store),
        setup.request.clone(),
        &origin.to_string(),
    );
    checked.map_err(|e| usage(&url, &e))?;
    let body = body(opts)?;
    let method = opts
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::Usage(format!("--method: {method:?} is not an http method")))?;
    if opts.paginate && (method != Method::GET || body.is_some()) {
        return Err(Failure::Usage(
            "--paginate follows a list's pages with GET: it takes no --data, and no --method \
             but GET"
                .into(),
        ));
    }
    let caller = Caller {
        opts,
        setup: &setup,
        store: &store,
        // The config's roots and proxy, as for the token (`--ca-file`, HTTPS_PROXY,
        // NO_PROXY) and its timeout; every answer is one to print (no status is an error);
        // no redirect is followed, so the token goes to the url given and nowhere else (and
        // so does the body).
        agent: setup.config.agent()?,
        method,
        body,
    };
    let result = if opts.paginate {
        crate::paginate::run(&caller, &url, &origin)
    } else {
        caller
            .send(&url)
            .and_then(|answer| caller.print(answer, &url))
    };
    log_stats(&store);
    result
}

/// What every request of a run shares: the command line, the token's setup and store, the
/// agent, the method and body.
pub(crate) struct Caller<'a> {
    opts: &'a Options,
    setup: &'a Setup,
    store: &'a TokenStore,
    agent: ureq::Agent,
    method: Method,
    body: Option<Vec<u8>>,
}

impl Pages for Caller<'_> {
    /// One request to `url`, under one deadline from now (the retries and their waits
    /// included): with the store's token, retried as the library's `call` (or, for an
    /// idempotent method, `call_idempotent`) does; or, with an `Authorization` of the
    /// command line, sent as given, no token, no retry.
    fn send(&self, url: &str) -> Result<Response<ureq::Body>, Failure> {
        let timeout = self.setup.config.timeout_value();
        // None: a timeout too long for the clock, no deadline (as the agent has none).
        let deadline = Instant::now().checked_add(timeout);
        let send = |authorization: &str| {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return Err(ureq::Error::Timeout(ureq::Timeout::Global));
            }
            let request = build(
                self.opts,
                &self.method,
                url,
                authorization,
                self.body.as_deref(),
            )
            .map_err(|e| ureq::Error::Other(format!("the request can't be built: {e}").into()))?;
            // Any method given, even one ureq does not know.
            let mut request = self
                .agent
                .configure_request(request)
                .allow_non_standard_methods(true);
            if left.is_some() {
                request = request.timeout_global(left);
            }
            self.agent.run(request.build())
        };
        let api_failure = |e: ureq::Error| {
            let advice = match e {
                ureq::Error::Timeout(_) => {
                    "; give it longer with --timeout <seconds> or LOGTO_TIMEOUT"
                }
                _ => "",
            };
            Failure::Token(format!(
                "{} {url}: api call failed: {e}{advice}",
                self.method
            ))
        };
        // A request that says who it is itself keeps its own `Authorization` (as with the
        // library's `Bearer`): no token, no retry.
        let own = self
            .opts
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let Some((_, value)) = own {
            return send(value).map_err(api_failure);
        }
        let request = &self.setup.request;
        let answer = if is_idempotent(&self.method) {
            self.store.call_idempotent(request, send)
        } else {
            self.store.call(request, send)
        };
        answer.map_err(|e| match e {
            CallError::Token(e) => Failure::from(e),
            CallError::Api(e) => api_failure(e),
            other => Failure::Token(other.to_string()),
        })
    }

    /// `-v`'s line for a 2xx answer. Any other status ends the run with a message that
    /// says it, once.
    fn say_status(&self, url: &str, status: u16) {
        if self.opts.verbose {
            eprintln!("logto-m2m: {} {url}: http {status}", self.method);
        }
    }

    /// The message that ends a run whose answer was not 2xx.
    fn refused(&self, url: &str, answer: &Response<ureq::Body>, page: &str) -> Failure {
        let status = answer.status().as_u16();
        let mut message = format!("{} {url} answered http {status}{page}", self.method);
        if matches!(status, 429 | 503) {
            if let Some(after) = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
            {
                message.push_str(&format!(" (retry-after: {})", after.trim()));
            }
            if !is_idempotent(&self.method) {
                message.push_str(&format!(
                    "; not sent again: a {} may have been applied",
                    self.method
                ));
            }
        }
        Failure::Token(message)
    }
}

impl Caller<'_> {
    /// The answer's body to stdout; an answer that is not 2xx fails the run after it.
    fn print(&self, mut answer: Response<ureq::Body>, url: &str) -> Result<(), Failure> {
        let status = answer.status();
        if status.is_success() {
            self.say_status(url, status.as_u16());
        }
        copy_to_stdout(&mut answer.body_mut().as_reader())
            .map_err(|e| Failure::Token(format!("reading the answer of {url}: {e}")))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.refused(url, &answer, ""))
        }
    }
}

/// Whether RFC 9110 §9.2.2 calls `method` idempotent: a request that may be sent again.
fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(method)
}

/// A usage error about `url`: the library's reason for refusing it.
fn usage(url: &str, e: &logto_m2m::Error) -> Failure {
    match e.kind() {
        ErrorKind::Config { reason } => Failure::Usage(format!("call {url}: {reason}")),
        _ => Failure::from(e.clone()),
    }
}

/// The url to call for `target`, and for a path on Logto, the request it defaults to: a
/// path (`/api/...`) is on Logto itself; anything else must be an http(s) url, as the
/// library reads one (`Origin::of`).
fn resolve(opts: &Options, target: &str) -> Result<(String, Option<TokenRequest>), Failure> {
    if !target.starts_with('/') {
        // Read now, before anything else is: a slip here is the first thing to say.
        Origin::of(target).map_err(|e| usage(target, &e))?;
        return Ok((target.to_owned(), None));
    }
    // A path is on Logto itself, and Logto's only API there is the Management API.
    let env = Env::with(opts);
    let vars = env.vars;
    let Some(endpoint) = vars.get("LOGTO_ENDPOINT")? else {
        // What else is missing is said first, all of it at once.
        env.config()?;
        return Err(Failure::Usage(format!(
            "call {target}: a path needs LOGTO_ENDPOINT (the Logto base url); give a full url \
             otherwise"
        )));
    };
    let endpoint = endpoint.trim_end_matches('/');
    let default = TokenRequest::management_api(endpoint);
    for (variable, flag) in [
        ("LOGTO_RESOURCE", "--resource"),
        ("LOGTO_SCOPES", "--scope"),
    ] {
        if let (None, Some(value)) = (vars.flag(variable), vars.get(variable)?) {
            log::warn!(
                target: TARGET,
                "call {target}: {variable} ({value}) left aside: a path is a call to Logto's \
                 Management API, with resource {} and scope {}; give {flag} to choose",
                default.resource(),
                default.scopes().join(" ")
            );
        }
    }
    Ok((format!("{endpoint}{target}"), Some(default)))
}

/// The request: `authorization`, the extra headers, and a JSON content type for a body
/// that looks like JSON when none was given.
fn build(
    opts: &Options,
    method: &Method,
    url: &str,
    authorization: &str,
    body: Option<&[u8]>,
) -> Result<ureq::http::Request<Vec<u8>>, ureq::http::Error> {
    let mut builder = ureq::http::Request::builder()
        .method(method.clone())
        .uri(url)
        .header("authorization", authorization);
    let mut has_content_type = false;
    for (name, value) in &opts.headers {
        if !name.eq_ignore_ascii_case("authorization") {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            builder = builder.header(name, value);
        }
    }
    let is_json = body
        .and_then(|b| b.iter().find(|c| !c.is_ascii_whitespace()))
        .is_some_and(|c| matches!(c, b'{' | b'['));
    if is_json && !has_content_type {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(body.unwrap_or_default().to_vec())
}
