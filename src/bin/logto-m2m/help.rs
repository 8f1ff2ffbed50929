//! The texts of `--help`: what each command does (its exit statuses included) and the
//! variables the commands read. `flags.rs` puts them together with the flag table.

/// `logto-m2m token --help`, before the flags.
pub(crate) const TOKEN: &str = "\
Prints an access token on stdout. A requested scope the app was not granted is a warning on
stderr.

Exit status: 0 with a token, 1 when none could be had, 2 for a usage error.
";

/// `logto-m2m inspect --help`, before the flags.
pub(crate) const INSPECT: &str = "\
Prints the claims of a JWT access token that explain most failures: iss, sub, client_id,
aud, scope, organization_id, iat and exp. With -, the token is read from stdin (a bare
token, `Bearer <token>` or an `Authorization:` line); otherwise one is fetched as `token`
would. The signature is NOT verified: this shows what the token claims, not that it is
genuine.

Exit status: 0 with the claims, 1 when no token could be had or read (or it is not a JWT),
2 for a usage error.
";

/// `logto-m2m call --help`, before the flags.
pub(crate) const CALL: &str = "\
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

/// `logto-m2m verify --help`, before the flags.
pub(crate) const VERIFY: &str = "\
Verifies an access token as your API would: its signature by the keys of the Logto at
$LOGTO_ENDPOINT (fetched from {endpoint}/oidc/jwks), issuer, expiry, audience (--resource;
an organization token's is urn:logto:organization:<id>) and every --scope. The token is
the argument, or stdin with - or without one (a bare token, `Bearer <token>` or an
`Authorization:` line). Needs no app id or secret.

Exit status: 0 valid (its claims as JSON on stdout), 1 refused or the keys could not be
fetched (the reason on stderr, never the token), 2 for a usage error.
";

/// What `help` says of the variables of the commands that get a token (`token`, `inspect`,
/// `call`).
pub(crate) const APP_ENVIRONMENT: &str = "\
Environment: LOGTO_ENDPOINT or LOGTO_TOKEN_URL, LOGTO_APP_ID, LOGTO_APP_SECRET or
LOGTO_APP_SECRET_FILE (required; the file is read for each token request); LOGTO_RESOURCE,
LOGTO_SCOPES, LOGTO_CACHE_FILE, LOGTO_AUTH_METHOD and LOGTO_TIMEOUT, which the flags above
replace; LOGTO_CACHE_URL=redis://host:port/db shares tokens through Redis (built with the
redis feature; also rediss://, redis+sentinel:// and redis+cluster://; a token file, when
given, is used instead), with LOGTO_CACHE_CA_FILE, LOGTO_CACHE_CERT_FILE and
LOGTO_CACHE_KEY_FILE (PEM) for TLS.
";

/// What `help` says of the proxy variables and `LOGTO_LOG`, which every command reads.
pub(crate) const LOG_ENVIRONMENT: &str = "\
HTTPS_PROXY, ALL_PROXY or HTTP_PROXY (http://user:password@host:port) and NO_PROXY for
every connection, loopback hosts going straight; LOGTO_CA_FILE or SSL_CERT_FILE, the CAs
to trust (see the --ca-file option).
LOGTO_LOG=off|error|warn|info|debug (any case) decides what goes to stderr: warnings by
default, also the library's events at info and debug (and at debug, the store's counters
at exit); off, nothing but the error that ends a run.
";

/// What `help` says of `verify`'s variables: no app, no token file.
pub(crate) const VERIFY_ENVIRONMENT: &str = "\
Environment: LOGTO_ENDPOINT (required: the Logto whose keys signed the token; no app id,
secret or token file: nothing is fetched but Logto's public keys).
";
