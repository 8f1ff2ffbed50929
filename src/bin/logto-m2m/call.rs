//! `logto-m2m call`: an API call with a token, retried once on 401 by the library's
//! `TokenStore::call` (and on 429 and 503 for an idempotent method, by
//! `TokenStore::call_idempotent`); the body to stdout, the status line to stderr with `-v`.
//! `--paginate` is `paginate.rs`.

use std::cell::Cell;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use logto_m2m::{Bearer, CallError, ErrorKind, TokenRequest, TokenStore};
use ureq::http::{Method, Response, Uri};

use crate::Failure;
use crate::flags::Options;
use crate::output::{TARGET, copy_to_stdout};
use crate::setup::{Setup, Vars, log_stats, setup};

pub(crate) const ABOUT: &str = "\
Calls an API with `Authorization: Bearer <token>` and prints the answer's body on stdout
(on a terminal, with a newline after it if it has none). When the API answers 401 (the
token was revoked, or the signing key rotated), the token is dropped and the call made once
more with a fresh one; never on 403. A GET, HEAD, PUT, DELETE, OPTIONS or TRACE answered
429 or 503 is sent again, at most twice, after the wait its Retry-After asks for (seconds
or a date; 1 s without one) if that wait ends within the timeout; a POST or PATCH never is
(it may have been applied). LOGTO_LOG=info shows each wait.

A path (`/api/applications`) is a call to Logto itself: it goes to $LOGTO_ENDPOINT, and the
token is for the Logto Management API unless --resource says otherwise
(https://<tenant>.logto.app/api on Logto Cloud, https://default.logto.app/api when
self-hosted), with scope `all` unless --scope says otherwise; LOGTO_RESOURCE and
LOGTO_SCOPES are left aside then, with a warning when set.

--paginate follows a list to its end and prints ONE JSON array of every page's items, in
the server's order, each item's bytes as sent. It follows each page's `Link: <url>;
rel=\"next\"` (Logto's own links miss the /api its API is under: on Logto's answers it
keeps the url and takes the link's page=), and when `Total-Number-Is-Capped: true` comes
without a next link, asks for page+1 until a page is empty. Each page has its own timeout.
At most 10,000 pages; a next link to another origin (scheme, host, port) is refused, as
the token goes nowhere else.

Exit status: 0 for a 2xx answer; 1 for any other answer (its body is still printed) or
when no token could be had; 2 for a usage error. With --paginate: 0 when every page was a
JSON array, or when the first page is not one (it is printed as it is); 1 when a page
answers other than 2xx (its body is printed), a later page is not a JSON array (printed as
it is), a next link leaves the origin or leads back to a page already fetched, or there
are more than 10,000 pages; nothing else is printed then.
";

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
    let checked = Bearer::new(Arc::clone(&store), setup.request.clone(), &origin(&url)?);
    checked.map_err(|e| match e.kind() {
        ErrorKind::Config { reason } => Failure::Usage(format!("call {url}: {reason}")),
        _ => Failure::from(e),
    })?;
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
        warned: Cell::new(false),
    };
    let result = if opts.paginate {
        crate::paginate::run(&caller, &url)
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
    /// The scopes' warning was given (or there was nothing to warn of): once per run.
    warned: Cell<bool>,
}

impl Caller<'_> {
    /// One request to `url`, under one deadline from now (the retries and their waits
    /// included): with the store's token, retried as the library's `call` (or, for an
    /// idempotent method, `call_idempotent`) does; or, with an `Authorization` of the
    /// command line, sent as given, no token, no retry.
    pub(crate) fn send(&self, url: &str) -> Result<Response<ureq::Body>, Failure> {
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
        let answer = answer.map_err(|e| match e {
            CallError::Token(e) => Failure::from(e),
            CallError::Api(e) => api_failure(e),
            other => Failure::Token(other.to_string()),
        })?;
        if !self.warned.replace(true) {
            if let Ok(token) = self.store.get(request) {
                self.setup
                    .warn_missing_scopes(self.opts.subject.is_set(), &token);
            }
        }
        Ok(answer)
    }

    /// `-v`'s line for a 2xx answer. Any other status ends the run with a message that
    /// says it, once.
    pub(crate) fn say_status(&self, url: &str, status: u16) {
        if self.opts.verbose {
            eprintln!("logto-m2m: {} {url}: http {status}", self.method);
        }
    }

    /// The message that ends a run whose answer was not 2xx.
    pub(crate) fn refused(&self, url: &str, answer: &Response<ureq::Body>, page: &str) -> Failure {
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

/// The url to call for `target`, and for a path on Logto, the request it defaults to.
fn resolve(opts: &Options, target: &str) -> Result<(String, Option<TokenRequest>), Failure> {
    if target.starts_with("https://") || target.starts_with("http://") {
        return Ok((target.to_owned(), None));
    }
    if !target.starts_with('/') {
        return Err(Failure::Usage(format!(
            "call: {target:?} is neither a url (https://...) nor a path (/api/...)"
        )));
    }
    // A path is on Logto itself, and Logto's only API there is the Management API.
    let vars = Vars::with(opts);
    let Some(endpoint) = vars.get("LOGTO_ENDPOINT")? else {
        // What else is missing is said first, all of it at once.
        vars.config()?;
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

/// `url`'s origin, `scheme://host[:port]`, as `Bearer::new` takes it.
fn origin(url: &str) -> Result<String, Failure> {
    let bad = || Failure::Usage(format!("call: {url:?} is not a url"));
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let (scheme, host) = uri.scheme_str().zip(uri.host()).ok_or_else(bad)?;
    Ok(match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// `--data`: the text itself, `@file`, or `@-` for stdin.
fn body(opts: &Options) -> Result<Option<Vec<u8>>, Failure> {
    let read = |mut from: Box<dyn Read>, what: &str| {
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes)
            .map_err(|e| Failure::Usage(format!("--data: reading {what}: {e}")))?;
        Ok(Some(bytes))
    };
    match opts.data.as_deref() {
        None => Ok(None),
        Some("@-") => read(Box::new(io::stdin()), "stdin"),
        Some(d) if d.starts_with('@') => {
            let path = &d[1..];
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::Usage(format!("--data @{path}: {e}")))?;
            read(Box::new(file), path)
        }
        Some(text) => Ok(Some(text.as_bytes().to_vec())),
    }
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
