//! What a run reads and builds before it asks for a token, from the `LOGTO_*` variables
//! (with the flags that stand in for them, `vars.rs`): the library's `Config` and the CAs it
//! trusts, the `TokenRequest`, and a `TokenStore` over the token file or Redis when one is
//! set; and `fetch`, the token.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use logto_m2m::{Config, Error, ErrorKind, Token, TokenRequest, TokenStore};

use crate::flags::{Options, flag_for};
use crate::output::{Failure, TARGET};
use crate::vars::Vars;

/// The run's variables (`vars.rs`) and what it makes of them: the config, the CAs to
/// trust, the advice for a certificate no CA of the run signed.
pub(crate) struct Env<'a> {
    pub(crate) vars: Vars<'a>,
}

impl<'a> Env<'a> {
    /// The environment under `opts`' flags.
    pub(crate) fn with(opts: &'a Options) -> Env<'a> {
        Env {
            vars: Vars::with(&opts.vars),
        }
    }

    /// The library's config from these variables, trusting the CAs of [`trust`](Env::trust).
    pub(crate) fn config(&self) -> Result<Config, Failure> {
        let config = Config::from_vars(|name| self.vars.os(name)).map_err(|e| self.failure(e))?;
        match self.trust()? {
            None => Ok(config),
            Some(trust) => config
                .root_certificates_pem(&trust.pem)
                .map_err(|e| trust.failure(e)),
        }
    }

    /// The CAs to trust instead of the build's own roots: the file of `--ca-file` or
    /// `LOGTO_CA_FILE`, else of `SSL_CERT_FILE` (which replaces the default bundle for curl
    /// and OpenSSL too); `None` for the build's own (Mozilla's with rustls, the system's
    /// with native-tls).
    pub(crate) fn trust(&self) -> Result<Option<Trust>, Failure> {
        let Some((variable, path)) = self.ca_file() else {
            return Ok(None);
        };
        let source = match self.vars.flag(variable).and(flag_for(variable)) {
            Some(flag) => format!("{flag} {}", path.display()),
            None => format!("environment variable {variable} ({})", path.display()),
        };
        let mut pem = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut pem))
            .map_err(|e| Failure::Usage(format!("{source}: cannot read: {e}")))?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            return Err(Failure::Usage(format!(
                "{source}: larger than {MAX_CA_FILE_BYTES} bytes; not a PEM file of CAs"
            )));
        }
        Ok(Some(Trust { pem, source }))
    }

    /// The variable that names the CA file, and the path: `LOGTO_CA_FILE` (or its flag),
    /// else `SSL_CERT_FILE`; unset and empty are the same.
    fn ca_file(&self) -> Option<(&'static str, PathBuf)> {
        ["LOGTO_CA_FILE", "SSL_CERT_FILE"]
            .into_iter()
            .find_map(|variable| {
                let path = self.vars.os(variable).filter(|p| !p.is_empty())?;
                Some((variable, PathBuf::from(path)))
            })
    }

    /// `failure` with what to set when it says the server's certificate was not signed by
    /// a CA the run trusts (a private CA's, most likely): rustls' `UnknownIssuer`,
    /// OpenSSL's "unable to get local issuer certificate" or "self-signed certificate".
    pub(crate) fn explain_certificate(&self, failure: Failure) -> Failure {
        let Failure::Token(message) = failure else {
            return failure;
        };
        let unknown_issuer = [
            "UnknownIssuer",
            "unable to get local issuer",
            "self-signed certificate",
            "self signed certificate",
        ]
        .iter()
        .any(|m| message.contains(m));
        if !unknown_issuer {
            return Failure::Token(message);
        }
        let advice = match self.ca_file() {
            None => "the server's certificate is not signed by a ca of the built-in roots: if \
                     a private ca signed it, set LOGTO_CA_FILE to the ca's PEM file (or give \
                     --ca-file <path>)"
                .to_owned(),
            Some(("SSL_CERT_FILE", path)) => format!(
                "the server's certificate is not signed by a ca in SSL_CERT_FILE ({}): set \
                 LOGTO_CA_FILE to the PEM file of the ca that signed it",
                path.display()
            ),
            Some((variable, path)) => format!(
                "the server's certificate is not signed by a ca in {} ({}), whose cas replace \
                 the built-in roots",
                self.vars
                    .flag(variable)
                    .and(flag_for(variable))
                    .unwrap_or(variable),
                path.display()
            ),
        };
        Failure::Token(format!("{message}; {advice}"))
    }

    /// A library error; one about a variable a flag stood in for names the flag.
    fn failure(&self, e: Error) -> Failure {
        let (variable, reason) = match e.kind() {
            ErrorKind::Env {
                variable, reason, ..
            } => (*variable, *reason),
            _ => return Failure::from(e),
        };
        match (self.vars.flag(variable), flag_for(variable)) {
            (Some(value), Some(flag)) => Failure::Usage(format!("{flag}: {value:?} is {reason}")),
            _ => Failure::from(e),
        }
    }
}

/// The largest CA file read (16 MiB, as the library's cap on a system bundle): a file of
/// CAs is kilobytes; the cap stops a wrong path (a device, a log) from being read whole.
const MAX_CA_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The CAs a run trusts (see [`Env::trust`]) and where they came from.
pub(crate) struct Trust {
    pub(crate) pem: Vec<u8>,
    /// `--ca-file <path>` or `environment variable LOGTO_CA_FILE (<path>)`, for messages.
    source: String,
}

impl Trust {
    /// The library's refusal of the file, naming it.
    pub(crate) fn failure(&self, e: Error) -> Failure {
        match e.kind() {
            ErrorKind::Config { reason } => Failure::Usage(format!("{}: {reason}", self.source)),
            _ => Failure::from(e),
        }
    }
}

/// What a run asks for and where it keeps tokens.
pub(crate) struct Setup {
    pub(crate) config: Config,
    pub(crate) request: TokenRequest,
    /// `None`: no shared cache, one exchange.
    pub(crate) store: Option<TokenStore>,
}

/// The config, request and store for `opts` and the environment. `default`, the Management
/// API's request of `call <path>`, stands in for `LOGTO_RESOURCE` and `LOGTO_SCOPES` (a flag
/// still wins).
pub(crate) fn setup(opts: &Options, default: Option<&TokenRequest>) -> Result<Setup, Failure> {
    let env = Env::with(opts);
    let vars = env.vars;
    let config = env.config()?;
    let pick = |name: &str, default: Option<String>| match (vars.flag(name), default) {
        (Some(flag), _) => Ok(flag.to_owned()),
        (None, Some(default)) => Ok(default),
        (None, None) => Ok::<_, Failure>(vars.get(name)?.unwrap_or_default()),
    };
    // Without a resource the request goes without one and the server decides: most servers
    // need none, and Logto's invalid_target then says what is missing.
    let resource = pick("LOGTO_RESOURCE", default.map(|d| d.resource().to_owned()))?;
    let scopes = pick("LOGTO_SCOPES", default.map(|d| d.scopes().join(" ")))?;
    let mut request = TokenRequest::new(&resource).scope(&scopes);
    if let Some(org) = &opts.organization {
        request = request.organization(org);
    }
    let request = opts.subject.apply(request)?;
    let store = match (vars.get("LOGTO_CACHE_FILE")?, vars.get("LOGTO_CACHE_URL")?) {
        (Some(path), _) => Some(TokenStore::new(config.clone()).cache_file(path)),
        (None, Some(url)) => Some(with_redis(TokenStore::new(config.clone()), &url)?),
        (None, None) => None,
    };
    Ok(Setup {
        config,
        request,
        store,
    })
}

/// The token for `opts` and the environment. Asked scopes the server did not grant, and a
/// token file or Redis it could not use, are the library's warnings.
pub(crate) fn fetch(opts: &Options) -> Result<Arc<Token>, Failure> {
    let setup = setup(opts, None)?;
    let token = match &setup.store {
        None => Arc::new(logto_m2m::request_token(&setup.config, &setup.request)?),
        Some(store) => {
            let token = store.get(&setup.request);
            log_stats(store);
            token?
        }
    };
    Ok(token)
}

/// With `LOGTO_LOG=debug`, what the store did (`TokenStore::stats`): the run's last line.
pub(crate) fn log_stats(store: &TokenStore) {
    log::debug!(target: TARGET, "store stats: {:?}", store.stats());
}

/// The store sharing tokens through the Redis at `LOGTO_CACHE_URL`.
#[cfg(feature = "redis")]
fn with_redis(store: TokenStore, url: &str) -> Result<TokenStore, Failure> {
    let vars = Vars::env();
    let mut redis = logto_m2m::RedisCache::new(url)
        .map_err(|e| Failure::Usage(format!("environment variable LOGTO_CACHE_URL: {e}")))?;
    // For rediss://: the CA that signed the servers' certificates, and a client
    // certificate with its key, each a PEM file.
    let pem = |var: &'static str| match vars.get(var)? {
        None => Ok(None),
        Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
            Failure::Usage(format!(
                "environment variable {var}: cannot read {path}: {e}"
            ))
        }),
    };
    let usage = |what: &'static str| move |e: Error| Failure::Usage(format!("{what}: {e}"));
    if let Some(ca) = pem("LOGTO_CACHE_CA_FILE")? {
        redis = redis
            .root_certificates_pem(&ca)
            .map_err(usage("environment variable LOGTO_CACHE_CA_FILE"))?;
    }
    match (pem("LOGTO_CACHE_CERT_FILE")?, pem("LOGTO_CACHE_KEY_FILE")?) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            redis = redis.client_certificate_pem(&cert, &key).map_err(usage(
                "environment variables LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE",
            ))?
        }
        _ => {
            return Err(Failure::Usage(
                "environment variables LOGTO_CACHE_CERT_FILE and LOGTO_CACHE_KEY_FILE: set \
                 both or neither"
                    .into(),
            ));
        }
    }
    Ok(store.token_cache(redis))
}

/// Without the `redis` feature a URL set anyway is a usage error, not silently ignored.
#[cfg(not(feature = "redis"))]
fn with_redis(_: TokenStore, _: &str) -> Result<TokenStore, Failure> {
    Err(Failure::Usage(
        "environment variable LOGTO_CACHE_URL: set, but this build has no redis feature \
         (cargo install --locked logto-m2m --features redis)"
            .into(),
    ))
}
