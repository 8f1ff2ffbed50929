//! `logto-m2m call`: an API call with a token, retried once on 401 by the library's
//! `TokenStore::call`; the body to stdout, the status line to stderr with `-v`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use logto_m2m::{Bearer, CallError, ErrorKind, TokenRequest, TokenStore};
use ureq::http::{Method, Response, Uri};

use crate::Failure;
use crate::flags::Options;
use crate::output::TARGET;
use crate::setup::{Vars, log_stats, setup};

pub(crate) const ABOUT: &str = "\
Calls an API with `Authorization: Bearer <token>` and prints the answer's body on stdout.
When the API answers 401 (the token was revoked, or the signing key rotated), the token is
dropped and the call made once more with a fresh one; never on 403.

A path (`/api/applications`) is a call to Logto itself: it goes to $LOGTO_ENDPOINT, and the
token is for the Logto Management API unless --resource says otherwise
(https://<tenant>.logto.app/api on Logto Cloud, https://default.logto.app/api when
self-hosted), with scope `all` unless --scope says otherwise; LOGTO_RESOURCE and
LOGTO_SCOPES are left aside then, with a warning when set.

Exit status: 0 for a 2xx answer; 1 for any other answer (its body is still printed) or
when no token could be had; 2 for a usage error.
";

pub(crate) fn run(opts: &Options) -> Result<(), Failure> {
    let target = opts.target.as_deref().ok_or_else(|| {
        Failure::Usage("call: give the url (https://...) or a path on Logto (/api/...)".into())
    })?;
    let (url, default) = resolve(opts, target)?;
    let mut setup = setup(opts, default.as_ref())?;
    let (config, request) = (&setup.config, &setup.request);
    let store = setup
        .store
        .take()
        .unwrap_or_else(|| TokenStore::new(config.clone()));
    let store = Arc::new(store);
    // The token goes only where the library's own middleware would send it: https, or
    // plain http to a loopback host. Nothing of the Bearer is used but this check.
    Bearer::new(Arc::clone(&store), request.clone(), &origin(&url)?).map_err(|e| {
        match e.kind() {
            ErrorKind::Config { reason } => Failure::Usage(format!("call {url}: {reason}")),
            _ => Failure::from(e),
        }
    })?;
    let body = body(opts)?;
    let method = opts
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::Usage(format!("--method: {method:?} is not an http method")))?;
    // The config's roots and proxy, as for the token (`--ca-file`, HTTPS_PROXY, NO_PROXY);
    // its timeout; every answer is one to print; redirects are not followed: the token goes
    // to the url given and nowhere else (and so does the body).
    let agent = config.agent()?;
    let send = |authorization: &str| {
        let request = build(opts, &method, &url, authorization, body.as_deref())
            .map_err(|e| ureq::Error::Other(format!("the request can't be built: {e}").into()))?;
        // Any method given, even one ureq does not know.
        let request = agent
            .configure_request(request)
            .allow_non_standard_methods(true)
            .build();
        agent.run(request)
    };
    // A request that says who it is itself keeps its own `Authorization` (as with the
    // library's `Bearer`): no token, no retry.
    let own = opts
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let answer = match own {
        Some((_, value)) => {
            send(value).map_err(|e| Failure::Token(format!("api call failed: {e}")))?
        }
        None => {
            let answer = store.call(request, send);
            log_stats(&store);
            let answer = answer.map_err(|e| match e {
                CallError::Token(e) => Failure::from(e),
                other => Failure::Token(other.to_string()),
            })?;
            if let Ok(token) = store.get(request) {
                setup.warn_missing_scopes(opts.subject.is_set(), &token);
            }
            answer
        }
    };
    print(answer, opts.verbose, &method, &url)
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
    let endpoint = vars.get("LOGTO_ENDPOINT")?.ok_or_else(|| {
        Failure::Usage(format!(
            "call {target}: a path needs LOGTO_ENDPOINT (the Logto base url); give a full url \
             otherwise"
        ))
    })?;
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

/// The answer's body to stdout; an answer that is not 2xx fails the run after it.
fn print(
    mut answer: Response<ureq::Body>,
    verbose: bool,
    method: &Method,
    url: &str,
) -> Result<(), Failure> {
    let status = answer.status();
    if verbose {
        eprintln!("logto-m2m: {method} {url}: http {}", status.as_u16());
    }
    let mut out = io::stdout().lock();
    io::copy(&mut answer.body_mut().as_reader(), &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Token(format!("reading the answer of {url}: {e}")))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::Token(format!(
            "{method} {url} answered http {}",
            status.as_u16()
        )))
    }
}
