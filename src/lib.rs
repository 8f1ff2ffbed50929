//! Blocking OAuth 2.0 machine-to-machine tokens for [Logto], or any RFC 6749 server.
//!
//! An M2M app (no user, no UI) calls protected APIs with an access token from the
//! client_credentials grant. This crate gets that token and keeps it fresh:
//!
//! - [`request_token`] does one exchange with the token endpoint, under one deadline;
//! - [`TokenStore`] caches tokens per request and refreshes them ahead of expiry on a
//!   thread of its own (no caller waits while a valid token is held), with one request per
//!   refresh however many threads ask;
//! - [`Bearer`], a ureq middleware, sends the store's token to one API origin, and
//!   [`TokenStore::call`] makes a call that is retried once with a fresh token on a 401
//!   ([`TokenStore::call_idempotent`] also waits out a 429 or 503);
//! - [`Config`] says where the endpoint is and who the app is; [`TokenRequest`] says which
//!   API and scopes; [`Token`] is the answer; [`Error`] (with its [`ErrorKind`]) says what
//!   went wrong.
//!
//! A [`TokenRequest`] can also act for a Logto user through token exchange (RFC 8693):
//! [`TokenRequest::impersonate`], [`TokenRequest::personal_access_token`] and
//! [`TokenRequest::user_access_token`] (their tokens given as a [`Secret`]: a string, or a
//! file read at each use).
//!
//! Beside them: [`AuthMethod`] picks Basic or form credentials, [`Claims`] reads what a JWT
//! access token says of itself (unverified), [`CallError`] says which half of a call
//! failed, [`Secret`] is the app secret (a string, or a file read for each request), and
//! [`TokenCache`] (keys and bytes, with [`CacheLock`]) lets a `TokenStore` share tokens
//! beyond its memory, as its token file does, or Redis (`RedisCache`, with the `redis`
//! feature; Sentinel and Cluster with `redis-sentinel` and `redis-cluster`).
//! [`StoreStats`] is what a store did, from [`TokenStore::stats`]. [`Origin`] reads a
//! URL's scheme, host and port as the crate reads every URL it is given (a `Bearer` sends
//! its token to one origin).
//!
//! On the other end of the call, [`Verifier`] checks the tokens your own API receives:
//! the signature by the issuer's published keys (fetched, kept for the max-age the JWKS
//! answer gives, revalidated after it so that a key the issuer drops stops verifying,
//! refetched for a new key), the issuer, audience, lifetime and scopes, read strictly,
//! with the RFC 6750 challenge for a refusal ([`Error::challenge`]).
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use logto_m2m::{Bearer, Config, TokenRequest, TokenStore};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?;
//!     let store = Arc::new(TokenStore::new(config));
//!     let request = TokenRequest::new("https://shopping.api").scope("read:products");
//!     // Every request to the API's origin gets `Authorization: Bearer <token>`, fresh.
//!     let bearer = Bearer::new(store, request, "https://api.shop.example")?;
//!     let agent: ureq::Agent = ureq::Agent::config_builder().middleware(bearer).build().into();
//!     let mut products = agent.get("https://api.shop.example/products").call()?;
//!     println!("{}", products.body_mut().read_to_string()?);
//!     Ok(())
//! }
//! ```
//!
//! No async runtime: the calls block the calling thread. No `unsafe` code, and six
//! dependencies: ureq 3, base64, miniserde, httpdate, plus log and ring, which ureq and
//! rustls already bring (the default build has 31 crates either way; `CONTRIBUTING.md` has
//! the footprint and how it was measured).
//!
//! # Getting a token: `TokenStore`
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use logto_m2m::{Config, TokenRequest, TokenStore};
//!
//! fn main() -> Result<(), logto_m2m::Error> {
//!     let store = Arc::new(TokenStore::new(Config::from_env()?));
//!     let request = TokenRequest::new("https://shopping.api").scope("read:products");
//!     let token = store.get(&request)?; // Arc<Token>: cached, refreshed ahead of expiry
//!     println!("Bearer {}", token.access_token());
//!     // ... the API answered 401 to it: the token was revoked or the signing key rotated
//!     store.invalidate_token(&request, &token);
//!     Ok(())
//! }
//! ```
//!
//! - Keys are (resource, set of scopes, organization, who the token acts for), each part
//!   length-prefixed so that no two requests share one: scope order and duplicates don't
//!   matter. A resource, scope or organization id with a control character (a scope: any
//!   character RFC 6749 does not allow) is refused before the cache is looked at or anything
//!   is sent ([What is refused](TokenRequest#what-is-refused)).
//! - A hit takes no lock: each thread keeps its own copy of the tokens it got, checked against
//!   a version per key that every refresh and `invalidate` bumps, so every thread's
//!   next call sees the change. Hits on many threads don't queue, and allocate nothing
//!   (`examples/bench.rs` has the figures).
//! - Refresh ahead without waiting: inside the refresh margin every caller gets the
//!   still-valid token at once, however long the refresh takes, and one refresh per key runs
//!   on a thread of its own. The margin is [`TokenStore::refresh_margin`]; by default twice
//!   what a refresh may take (the timeout, twice it with a token cache), at least 60 s, and
//!   at most half the lifetime; a shorter one set by hand is a `warn` event. Only a caller
//!   that finds no valid token waits, for the one request that all such callers share, and
//!   gets its answer, token or error.
//! - A failed refresh keeps the old token while it is valid: during an outage callers keep
//!   getting it at once, and the server gets one request per pause, 1 s doubling per failure
//!   up to 30 s (or its `Retry-After`). With no valid token left, the store answers the same
//!   error without a new request for that pause, so a retry loop can't storm the server.
//! - A panic in a caller, in a refresh or in your logger, even mid-refresh, neither poisons
//!   the store nor leaves a key refreshing forever: no lock is held while your code runs,
//!   and a refresh counts as over only once its outcome is recorded.
//! - Keys whose token is long gone leave the store's map in a sweep each time new keys have
//!   doubled it: it holds at most twice the keys worth keeping (or 64).
//! - [`TokenStore::stats`] counts what the store did: hits, token requests and failures, waits
//!   for another's refresh (a thread's, or another process's lock), shared-cache reads, hits,
//!   writes and errors, invalidations.
//!
//! # Calling the API: `Bearer` and `TokenStore::call`
//!
//! Getting the token is half the job; the other half is sending it, and getting a fresh one
//! when the API answers 401 although the cached token still looks fresh (revoked, the signing
//! key rotated, a role changed).
//!
//! - [`Bearer::new`]`(store, request, origin)` is a ureq 3 middleware
//!   (`Agent::config_builder().middleware(bearer)`, as in the example above): every request the
//!   agent sends to `origin` (scheme, host and port, exactly) gets `Authorization: Bearer
//!   <token>` from the store, a cache hit; requests to any other origin, and requests that
//!   carry their own `Authorization`, pass untouched. No redirect carries the header, whatever
//!   the agent's `redirect_auth_headers` says, and plain `http://` origins are refused except
//!   for loopback hosts. On a 401 to the token the token is dropped, so the next request gets
//!   a fresh one; the 401 itself is returned, since a middleware can't resend a streamed body.
//!   A 401 at the end of a redirect (a login page elsewhere) answered a request without the
//!   token and drops nothing; ureq's default `http_status_as_error(true)` hides where a 401
//!   came from, so with it every 401 drops the token.
//! - `store.call(&request, |authorization| agent.get(url).header("authorization",
//!   authorization).call())` ([`TokenStore::call`]) makes the call, and on a 401 drops the
//!   token, takes a fresh one and calls once more; then it returns the answer, whatever its
//!   status. Never a second retry, never a retry on 403 (a fresh token has the same scopes).
//! - Both drop the refused token with [`TokenStore::invalidate_token`], which drops it only
//!   while it is still the cached one (and a shared cache's copy of it is not taken again):
//!   however many threads meet the same 401 at once, they share one new token. Call it
//!   yourself when an API answers 401 to a token you sent; [`TokenStore::invalidate`]
//!   drops whatever is cached. A [`CallError`] says whether the token (`Token`) or the call
//!   (`Api`) failed.
//! - A busy API's 429 or 503: `call` returns it as it is, since the store can't see whether
//!   the request the closure makes may be sent twice (a POST answered 503 may have been
//!   applied). [`TokenStore::call_idempotent`], for a GET, HEAD, PUT, DELETE, OPTIONS or
//!   TRACE (RFC 9110 §9.2.2), sends it again at most twice, after the `Retry-After` (seconds
//!   or an HTTP date; 1 s without one) when the wait ends within the config's timeout, each
//!   wait an `info` log event; `logto-m2m call` uses it for those methods.
//!
//! Measured against the test server's key-rotation lever (`cargo test --test suite --
//! api cli`): after the rotation, `call` and `logto-m2m call` get their 200 after exactly 1 new
//! token request and 1 retried API request; `Bearer` returns the 401 once and the next
//! request succeeds; 32 threads meeting the same 401 make 1 token request; a request to
//! another origin, and a redirect to another port of the API's host, carry no
//! `Authorization`, and a 401 from where such a redirect led drops no token. Against a
//! loopback API answering 429 (`Retry-After: 1`) then 503 (an HTTP date 2 s ahead):
//! `call_idempotent` gets its 200 on the third request, each at least 1 s after the one
//! before; `call`, and the command's POST, stop at the 429.
//!
//! # The app secret
//!
//! Docker and Kubernetes hand secrets to programs as files (`/run/secrets/…`, a mounted
//! Secret), and an environment variable is visible in `/proc/<pid>/environ` and copied into
//! every child process; a file is not. [`Config`] takes the secret as a string or as the path
//! of a file that holds it ([`Secret::file`]; `LOGTO_APP_SECRET_FILE` for [`Config::from_env`], the examples and
//! the command; setting it and `LOGTO_APP_SECRET` both is an error naming them).
//!
//! - The file is read when the config is made and again for each token request (one small
//!   read per refresh), so a new secret written into it is used from the next refresh on,
//!   with no restart. White space around the secret (the newline `echo` leaves) is not part of
//!   it. An empty or unreadable file is an error naming the path, never the content; a file
//!   that group or others can read is a `warn` log event, as ssh warns of such a key.
//! - Rotating, as Logto allows (several named secrets per app, each with an optional expiry):
//!   create a second secret in the Logto console, write it into the file, and delete the old
//!   one once every host has picked the new one up (the `info` event "a new secret was picked
//!   up" says when).
//! - An expired secret is Logto's 400 `invalid_request` "client secret has expired":
//!   the error's [`ErrorKind::OAuth`] carries it, and the message says to create a new secret in the
//!   console and write it to the file (or, with `LOGTO_APP_SECRET`, where to put it). When the
//!   endpoint answers `invalid_client` or an expired secret and the file holds another secret
//!   by then (it was rotated while the request was on its way), the request is made once more
//!   with the new one, within the same timeout; otherwise a refused secret is never retried.
//!
//! Measured by `cargo test --test secret_file` against the test server (which keeps several
//! secrets per app and answers an expired one as Logto does) and `LOGTO_REAL=1 cargo test
//! --test real_logto rotation` against a real Logto: a running store whose file is rewritten
//! from the old secret to a new one (the old one then deleted) gets its next token with the
//! new one; with an expired secret in the file and the new one written while the request is
//! held in front of Logto, one retry, then a token.
//!
//! # The token file: cron jobs
//!
//! A job that runs every minute is a new process each time, so an in-memory cache never hits:
//! 1,440 token requests a day where 24 would do, and Logto Cloud counts M2M tokens against a
//! quota. With a token file, runs within a token's lifetime make no request at all:
//!
//! ```rust,no_run
//! use logto_m2m::{Config, TokenRequest, TokenStore};
//!
//! fn main() -> Result<(), logto_m2m::Error> {
//!     let mut store = TokenStore::new(Config::from_env()?);
//!     if let Some(path) = std::env::var_os("LOGTO_CACHE_FILE") {
//!         store = store.cache_file(path); // its folder is created (mode 0700) if missing
//!     }
//!     let token = store.get(&TokenRequest::new("https://shopping.api"))?;
//!     if let Some(problem) = store.last_cache_error() {
//!         eprintln!("warning: {problem}"); // the token came from the network anyway
//!     }
//!     println!("{}", token.access_token());
//!     Ok(())
//! }
//! ```
//!
//! - The file holds the tokens [sealed](#sealing-what-a-reader-of-a-shared-cache-can-do), with
//!   the wall-clock times they were received and expire, never the secret, and is bound to the
//!   token URL and App ID.
//! - A missing folder is created with mode 0700 (only you can enter it, as ssh makes
//!   `~/.ssh`); one that can't be created is named in the warning. The file is written
//!   atomically with mode 0600 (a temporary file of a random name beside it, then a rename:
//!   one left by a job killed mid-write is in nobody's way, and the next refresh removes it
//!   once it is older than the timeout); expired tokens leave it on each write, and it holds
//!   at most the 256 most recently received tokens, so a refresh costs the same however many
//!   keys the jobs use (a job with more keys still gets every token, from the network for the
//!   ones that fell out).
//! - The process that refreshes holds a lock on `<file>.lock`; jobs that start together wait
//!   for it (at most the timeout) and take the fresh token from the file, and the OS releases
//!   the lock of a job that dies.
//! - A file others can read or write, a symlink, a corrupt or foreign file, or one whose times
//!   don't add up is not used and is replaced, never written through. No problem with the file
//!   fails a request the network can satisfy, and `last_cache_error` tells the current problem
//!   only: it is `None` again once a later `get` used the file without one.
//!
//! Measured by `cargo test --test suite cache_file`: 10 sequential runs of the `get_token` example
//! make 1 token request, 8 runs started at once make 1.
//!
//! The token file is one [`TokenCache`]; `TokenStore::token_cache` takes any other, such as
//! `RedisCache` (feature `redis`), a Redis shared by a fleet of hosts, whose own docs say how it
//! behaves and what it was measured doing.
//!
//! # Sealing: what a reader of a shared cache can do
//!
//! An access token is a bearer token: whoever holds it can call the API as your app until it
//! expires. So every entry a `TokenStore` writes to a shared cache (the token file, Redis, any
//! [`TokenCache`]) is sealed: encrypted and authenticated with ChaCha20-Poly1305 (ring, already
//! in the default build as rustls' provider), a fresh random nonce per write, under a key
//! derived with HKDF-SHA256 from the App Secret, the token URL and the App ID, and bound to the
//! request's key (resource, scopes, organization, and who the token acts for: the app, or a
//! hash of the user subject; for a subject token given as a file, of what the file held) as
//! associated data.
//!
//! Whoever reads the file or the Redis (another service on a shared instance, a backup, a
//! replica, a `MONITOR` session) without the App Secret:
//!
//! - **can't** learn a token, its scope or its exact times, nor which API it is for (the
//!   request is a hash in the key name; in the file, a hash beside the sealed entry);
//! - **can't** make the store use a token of theirs, or one moved from another app's, host's
//!   or request's key: a value changed in any byte, cut short, sealed with another secret or
//!   for another key is refused like garbage (no error to the caller; the store asks the token
//!   endpoint instead);
//! - **can** see that entries exist, how long they are (about the token's length), when they
//!   expire (the Redis TTL; the file's clear times), the token URL and App ID in the file's
//!   header, and delete or spoil entries, which costs a token request, not a failure; and can
//!   put back an older sealed entry of the same key, a token the server really issued for it,
//!   which the store uses only while it is valid.
//!
//! Whoever has the App Secret can read every entry (and could get tokens anyway). Keep a Redis
//! private to the fleet all the same (network policy, `requirepass` or ACLs, `rediss://`
//! across untrusted networks).
//!
//! After a rotation, hosts with the new secret can't open the entries sealed with the old one:
//! each key costs one token request per host generation (the first host with the new secret
//! that finds an old entry fetches anew and writes its own, which the other new hosts then
//! share), and while hosts with both secrets run, each side refetches when it finds the
//! other's entry. Entries of an older format (a token file of version 1 or 2, a Redis
//! value in the clear) are ignored without a warning and replaced at the next refresh; Redis
//! values in the clear lapse with their token's TTL. The request keys changed with issue 31
//! (each part length-prefixed, and a subject file keyed by what it holds): the ids an entry
//! is stored under changed with them, so entries written before are not found (one token
//! request per key after the upgrade; the old ones lapse at their expiry, and the token file
//! drops them then). Measured by `cargo test --features redis
//! --test suite sealed_caches`: no byte of the token file nor any Redis key or value holds a token,
//! a part of one, or a secret; an entry moved under another app's key, written with another
//! secret, changed in one byte, or in the old format, makes a token request instead.
//!
//! # What it promises
//!
//! - **It never hangs.** One deadline ([`Config::timeout`], default 30 s) covers connect, send,
//!   headers and body, retries and waits, and resolving the host name (ureq does it on a
//!   thread when a timeout is set, and one always is). A server that sends one byte a second
//!   is cut off at the deadline (`tests/suite/faults.rs`). Waiting for another process's or
//!   host's refresh is bounded by the same timeout. Deadlines are checked arithmetic: a
//!   timeout too long for the clock (`Duration::MAX`) is no deadline, never a panic.
//! - **It never panics on a server's answer**, and the response parser is fuzzed (`fuzz/`).
//! - **Secrets stay secret.** No error, `Debug` output or log line of this crate contains the
//!   App Secret, the Basic value or a token; a server that echoes the secret back gets it
//!   `[redacted]`. (ureq, underneath, logs the raw wire at `TRACE` level: keep the `ureq` log
//!   target above `TRACE` in production.)
//! - **Credentials go to the configured endpoint only.** Redirects are never followed (a 3xx
//!   is an error naming the status and where it pointed), and plain `http://` is refused
//!   except to loopback hosts unless you call `Config::allow_insecure_http(true)` (the command
//!   has no such switch: it says to use https).
//! - **Retries are few and polite.** A 4xx is never retried. A 5xx or a connection that fails
//!   before an answer: at most 3 requests in all, after 100 ms and 400 ms. A 429 (or 503) with
//!   a `Retry-After` of at most 10 s that fits the deadline is waited out exactly, once; any
//!   other rate limit comes back at once, carrying the duration.
//! - **Responses are checked.** `access_token` must be non-empty visible ASCII (no CR/LF can
//!   reach a header), `token_type` must be `Bearer`, `expires_in` a non-negative integer;
//!   duplicate fields, trailing data and bodies over 64 KiB are refused; a UTF-8 byte-order
//!   mark before the JSON is skipped.
//! - **What was granted is told once.** [`Token::scope`] is the answer's `scope`, else the
//!   JWT's `scope` claim, else (opaque tokens only) the requested scope; Logto leaves both out
//!   when it grants nothing, and `scope()` is then `None`. `Token::missing_scopes`, the
//!   warning, the command's JSON and `inspect` all read it the same way.
//! - **Tokens expire on time, by the best evidence.**
//!   - A token's lifetime counts from when its request was **sent**, not from when the answer
//!     was read: a slow or retried exchange can't make it look fresher than it is.
//!   - The lifetime is `expires_in`; without it, the time left until the `exp` claim of a JWT
//!     access token (Logto's are JWTs; nothing else in the token is read, and no signature is
//!     checked); without either, 60 s.
//!   - No token is trusted for more than one day, so a
//!     server bug like `expires_in: 1e30` can't pin a service to one token forever.
//!   - A token is usable only while **both clocks** say so: the monotonic clock, which a
//!     wall-clock step back can't extend, and the wall clock, which keeps counting while the
//!     machine sleeps (Linux's monotonic clock stops in suspend, so a laptop or paused VM would
//!     otherwise wake up with a token it still calls fresh). The token file and shared caches
//!     keep wall-clock times, and the same rule applies to what they hold.
//!   - Each token's refresh starts at a random point in the first half of its margin (between
//!     60 s and 30 s before expiry by default; 120 s and 60 s with a token cache), so a fleet
//!     that fetched its tokens together doesn't refresh in lockstep one lifetime later.
//!
//! # Errors
//!
//! `Error::kind()` is one of `OAuth` (status, RFC 6749 `error`, description, `error_uri`,
//! Logto's `code` and `message`), `RateLimited` (with the `Retry-After`; Logto Cloud's
//! `auth.exceed_token_limit` too), `HttpStatus`, `Redirect`, `InvalidResponse` (naming the
//! field), `BodyTooLarge` (with the status), `Timeout`, `Tls`, `Transport`, `Config`,
//! `Env`, `Cache`: the token client's kinds, all a `request_token`, a `TokenStore` or a
//! `Bearer` returns. A [`Verifier`]'s failures are one kind apart, `Verify`, holding a
//! [`VerifyErrorKind`] (`InvalidToken`, `InsufficientScope`, `Jwks`): only
//! [`Verifier::verify`] returns it, so a `match` on a token client's failure never meets
//! the verifier's kinds, and one on a verifier's needs no others. Messages are one
//! lowercase line that names the token URL, Logto's request id (`Logto-Core-Request-Id`,
//! also `Error::request_id`: the key to Logto's logs) and, where the answer points to a
//! likely cause, what to do:
//!
//! ```text
//! token endpoint https://tenant.logto.app/oidc/token answered http 401 with oauth error invalid_client: client authentication failed (logto code oidc.invalid_client: ...); logto request id 6fJ2...; the app id or secret is wrong, or the server wants client_secret_post (client_secret_basic was sent)
//! ```
//!
//! Other advice: an expired secret (above), a non-ASCII secret refused in the Basic header
//! (Logto does; use `client_secret_post`), an undescribed `invalid_scope` (the asked scopes are
//! named), no resource sent, a 404 from a full token URL with a doubled `/oidc` ("did you mean
//! ..."); a connection that can't be made names the host and port, and so does a TLS failure;
//! an `https://` URL to a port that answers in plain http says so. A Logto endpoint that
//! already ends in `/oidc` or `/oidc/token` (the issuer the console shows is `{endpoint}/oidc`)
//! is refused before anything is sent, naming the base URL to give. The command adds to a
//! timeout how to give it longer (`--timeout`, `LOGTO_TIMEOUT`), and its advice names its own
//! flags and variables, never a library method. `{:?}` of an `Error` is the same one line, so
//! a `main` that returns `Result<(), logto_m2m::Error>` prints `Error: ` and the message (and
//! exits 1); `{:#?}` shows the kind's fields.
//!
//! # Logto specifics
//!
//! - **The endpoint:** [`Config::logto`] takes the base URL, without `/oidc`; the token URL is
//!   `{endpoint}/oidc/token`. [`Config::new`] takes the full token URL of any RFC 6749 server.
//! - **Management API:** [`TokenRequest::management_api`]`(endpoint)` asks for
//!   `https://<tenant-id>.logto.app/api` with scope `all` when the endpoint is Logto Cloud's
//!   `https://<tenant-id>.logto.app`, and for `https://default.logto.app/api` (self-hosted)
//!   otherwise. On Logto Cloud use the default `<tenant-id>.logto.app` endpoint for it, not a
//!   custom domain.
//!   `examples/management_api.rs` lists the applications (`GET {endpoint}/api/applications`)
//!   with `TokenStore::call`; `logto-m2m call /api/applications` does the same from a shell.
//! - **Organization tokens:** `TokenRequest::new("").organization("<org-id>")
//!   .scope("read:members")` sends `organization_id`; an app that is a member gets a token for
//!   the audience `urn:logto:organization:<org-id>` with the organization scopes its roles
//!   grant, and a non-member gets Logto's 403 `access_denied` ("app has not associated with
//!   the organization"). The organization is part of the store's cache key.
//! - **Scopes not granted:** when the app's roles lack a permission, Logto grants fewer scopes
//!   than asked, silently (the API answers 403 later). The library says so in one `warn`
//!   event (`scope not granted: write:products; assign the app a machine-to-machine role with
//!   this permission in the Logto console (resource https://shopping.api)`), for each token
//!   that comes into the process, fetched or read from a shared cache: for a Logto token URL
//!   a machine-to-machine role (an organization role for a request without a resource, a
//!   role of the user's for a token exchange); for any other server, grant them there. The
//!   command shows it as it is, and the `get_token` example prints its own from
//!   [`Token::missing_scopes`].
//! - **Client authentication:** `client_secret_basic` by default, as Logto's docs say. A
//!   server that wants the credentials in the form body (Auth0 by default) needs
//!   `config.auth_method(AuthMethod::ClientSecretPost)` (`LOGTO_AUTH_METHOD=client_secret_post`);
//!   exactly one of the two ways is used per request, never both. In the Basic header the id
//!   and secret are each form-urlencoded first (RFC 6749 §2.3.1), a space as `%20` so that
//!   servers that percent-decode (Authlib, for one) read it as Logto does.
//! - **Acting for a user** (token exchange, which the app must have turned on): an
//!   impersonation first gets a Management API token (scope `all`) and a single-use subject
//!   token from `POST /api/subject-tokens`. Through a `TokenStore` that Management API token
//!   is the store's own, cached and shared through its token file or Redis like any other, so
//!   impersonating many users costs one client_credentials token per its lifetime, across the
//!   runs of a cron job with a token file; a 401 to a cached one drops it and asks once more
//!   with a fresh one. `request_token` alone gets one per exchange. A personal access token
//!   or user token in a file is read at each `get`, and the store keys the request by a hash
//!   of what it holds: a file rewritten with another user's token acts for that user from the
//!   next `get` on, in every process and host sharing the cache. Measured by `LOGTO_REAL=1
//!   cargo test --test real_logto token_exchange`: 3 users impersonated twice each, in one
//!   store or in 6 runs of the command with one token file, make 1 Management API token
//!   request (Logto's `logs` table).
//! - **Errors keep Logto's code**: `Error::logto_code` is e.g. `oidc.invalid_client`,
//!   `oidc.invalid_target` or `auth.exceed_token_limit`.
//!
//! # TLS and proxies
//!
//! - Certificates are always verified; there is no switch to turn that off.
//! - `rustls` (default feature) trusts Mozilla's roots built into the binary; `native-tls`
//!   uses the system's TLS library (OpenSSL on Linux) and its roots.
//! - A self-hosted Logto behind a private CA: `config.root_certificates_pem(&pem)?` trusts
//!   exactly the CAs in the PEM, instead of the default roots; `config.platform_roots()?`
//!   trusts the system's roots (with rustls it reads the system bundle, `SSL_CERT_FILE`
//!   first). `Verifier::root_certificates_pem` does the same for the JWKS fetch.
//! - Proxies: `config.proxy("http://user:pass@proxy:3128")?` always; `config.no_proxy()`
//!   never; by default the environment's `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY` (and
//!   `NO_PROXY`), except for loopback hosts. `Verifier::proxy` for the JWKS fetch, whose
//!   default is the environment's too. Proxy credentials are never shown; a proxy that
//!   refuses the tunnel (`407`) fails the request with an error naming its host and port
//!   and the status.
//! - The config's roots and proxy apply to every request made with it: the token request,
//!   an impersonation's call to the Management API, and the API calls of `config.agent()?`
//!   (a ureq agent for [`TokenStore::call`]).
//!
//! Logto behind a company's TLS proxy, with the company's CA, reached through its proxy
//! (`HTTPS_PROXY=http://user:password@proxy.internal:3128` in the environment):
//!
//! ```no_run
//! use logto_m2m::{Config, TokenRequest, Verifier, request_token};
//!
//! let ca = std::fs::read("/etc/ssl/company-ca.pem").expect("the company's CA");
//! // The job that calls the API:
//! let config = Config::from_env()?.root_certificates_pem(&ca)?;
//! let token = request_token(&config, &TokenRequest::new("https://shopping.api"))?;
//! // The API that receives the token:
//! let verifier = Verifier::logto("https://auth.internal.example")?.root_certificates_pem(&ca)?;
//! let claims = verifier.verify(token.access_token(), "https://shopping.api", &[])?;
//! # let _ = claims;
//! # Ok::<_, logto_m2m::Error>(())
//! ```
//!
//! The command reads the CA file from `LOGTO_CA_FILE` (or `--ca-file <path>`), else from
//! `SSL_CERT_FILE` as curl and OpenSSL do, and uses it for every connection it makes: to
//! Logto (the token, the Management API, the JWKS of `verify`) and to the API of `call`.
//! Its CAs replace the built-in roots, as curl's `--cacert` does (for public servers too,
//! append your CA to a copy of the system bundle). A certificate signed by a CA the run
//! does not trust fails with the advice to set `LOGTO_CA_FILE`.
//!
//! # Logging
//!
//! Log events go to the `log` facade under the target `logto_m2m`, one line each, never a
//! secret or a token (`tests/log_events.rs` captures them with canary secrets):
//!
//! | level | event |
//! | --- | --- |
//! | `debug` | a token fetched: resource, granted scope, lifetime, attempts, time taken |
//! | `debug` | a retry: the attempt that failed, the wait, the reason |
//! | `debug` | a token request that failed: attempts, time taken, the error |
//! | `debug` | the Management API refused a store's token for an impersonation (401): asked again with a fresh one |
//! | `info` | a token file or shared cache that works again after a problem (`last_cache_error` is then `None`) |
//! | `info` | an app secret file whose content changed: a new secret was picked up (names the file) |
//! | `info` | the endpoint refused the secret and the secret file holds a new one: the request is made once more with it |
//! | `info` | `call_idempotent`: the API answered 429 or 503, and the wait before it is called again |
//! | `warn` | scopes asked for but not granted, and the fix: for each token fetched or read from a shared cache |
//! | `warn` | a refresh that failed while the still-valid token is kept, and when it is tried again |
//! | `warn` | a call held off by the backoff after a refresh failed with no token left (once per failure: the refresh's own callers got the error): the error, and for how long more |
//! | `warn` | a refresh margin set shorter than a refresh may take (once per store, when set) |
//! | `warn` | no thread could be started for a refresh ahead (callers keep the valid token) |
//! | `warn` | a token file or shared cache that could not be used (the token came from the network) |
//! | `warn` | an app secret file that group or others can read, and the mode to give it |
//! | `debug` | a [`Verifier`]'s JWKS fetched or not modified: how many keys, fresh for how long |
//! | `warn` | a [`Verifier`]'s JWKS fetch that failed: the error, and how long the keys fetched before are kept at most (or that tokens are refused) |
//!
//! # The `logto-m2m` command
//!
//! Built from this package with no extra dependency: `cargo install --locked --path .` from
//! a checkout (the crate is not on crates.io yet) builds it with the dependency versions of
//! `Cargo.lock`, the ones it was tested with; without `--locked`, cargo picks the newest
//! versions allowed, anew on every install. The README shows its use and its variables, and
//! `logto-m2m help <command>` the variables each command reads; beyond that:
//!
//! - `token --format json` prints `access_token`, `token_type`, `expires_in` (seconds left),
//!   `scope` (what was granted, never what was asked for: `""` when nothing was),
//!   `expires_at` (RFC 3339 UTC) and `expires_at_unix`.
//! - `inspect` prints `iss`, `sub`, `client_id`, `aud`, `scope`, `organization_id`, `iat` and
//!   `exp` (with the time left): the claims that explain most 401s and 403s; a token without a
//!   `scope` claim shows `scope: (none: no scope granted)`. It never verifies the signature,
//!   and says so; a token that is not a JWT is reported as such.
//! - `call <url-or-path>`: a path is a call to Logto itself, at `$LOGTO_ENDPOINT`, with a
//!   Management API token (scope `all`) unless `--resource` and `--scope` say otherwise. The
//!   body goes to stdout as the API sent it (on a terminal, with a newline after it if it
//!   has none, so that a message on stderr starts on its own line), the status line to
//!   stderr with `-v` (a refusal's once, in the message that ends the run); a body that
//!   starts with `{` or `[` goes as `application/json` unless a header says otherwise;
//!   redirects are not followed. A 401 is retried once with a fresh token
//!   ([`TokenStore::call`]); for a GET, HEAD, PUT, DELETE, OPTIONS or TRACE, a 429 or 503
//!   at most twice after its `Retry-After` ([`TokenStore::call_idempotent`]), under one
//!   deadline per call (`--timeout`); never a POST or PATCH.
//! - `call --paginate` follows a list's pages and prints one JSON array of every item, in
//!   the server's order, each item's bytes as the server sent them (a scanner finds where
//!   the items are, checking the whole page against RFC 8259 without recursion; it is
//!   fuzzed). It follows RFC 8288 `Link: <...>; rel="next"` headers, absolute or relative,
//!   one per relation or several in one; with `Total-Number-Is-Capped: true` and no `next`,
//!   it asks for page+1 until a page is empty. Logto 1.42's links lack the `/api` its
//!   Management API is under (`</users?page=2>`, which answers 500), and name the origin
//!   Logto sees: on an answer carrying `Logto-Core-Request-Id`, the url asked keeps its
//!   path and takes the link's `page`. Each page has its own deadline, and may be retried
//!   as above. Nothing is printed until the last page is in: a page that is not 2xx (its
//!   body is printed) or, after the first, not a JSON array (printed as it is), a `next` at
//!   another origin (never followed: the token goes only to its own), one back to a page
//!   already fetched, or more than 10,000 pages end the run with exit status 1. A first
//!   page that is not an array is the answer: printed as it is, exit status 0.
//!   Measured against the real Logto (`LOGTO_REAL=1 cargo test --test real_logto
//!   command_call_paginates`): 45 users and more, 20 a page, one array of exactly
//!   `Total-Number` users, none twice.
//! - Its log events go to stderr, warnings by default; `LOGTO_LOG` sets the level (`off`,
//!   `error`, `warn`, `info`, `debug`, in any case). They never contain the secret or the
//!   token, which goes to stdout only. With a store (a token file or Redis) and `LOGTO_LOG=debug`, the
//!   last line is the store's counters (`store stats: StoreStats { hits: 0,
//!   token_requests: 0, ..., shared_hits: 1, ... }`).
//!
//! [Logto]: https://logto.io

#![forbid(unsafe_code)]
// On docs.rs (`--cfg docsrs`, nightly): items behind a feature say which ("Available on
// crate feature redis only"). Elsewhere, stable or not, nothing changes.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(clippy::all)]

// The modules, in layers, bottom first: each imports only from its own layer and the ones
// below it, and no two of one layer import each other round in a circle. The order is
// declared once, in `tests/suite/layers.rs` (`cargo test layers`), which fails when a
// module imports one above it; a new module goes into a layer there and here.
//
// 1. helpers that know nothing of the crate:
//    - text:        what the JSON readers keep of a value (Leaf, Skip), on miniserde
//    - encode:      form-urlencoding (the token request, the Basic header), hex
//    - time:        durations read and written (`2.5`, `30s`), Unix times
//    - hash:        the pass-through hasher of the maps, random numbers (ring's)
//    - sanitize:    server text made safe to show in an error
//    - seal:        what a store writes to a shared cache, encrypted and authenticated
//    - tls:         root certificates: PEM read by ureq's parser, the system bundle
// 2. what everything reports and reaches through:
//    - error:       Error and ErrorKind (the Verifier's kinds apart, VerifyErrorKind)
//    - url:         the one reader of URLs: scheme, host, port, origin (Origin), loopback,
//                   the cleartext rule, Logto Cloud's tenant
//    - secret:      Secret, the app secret: a string, or a file read for each request
//    - transport:   the ureq agent a choice of roots and proxy makes
// 3. - config:      Config and AuthMethod: plain data, checked when set (config/env: the
//                   LOGTO_* variables)
// 4. what to ask for and what came back, as data:
//    - claims:      Claims: what a JWT access token says of itself, unverified (one reader)
//    - token:       Token: the access token, its lifetime by both clocks, its scopes
//    - subject:     who a token exchange acts for (a user, a PAT, a user's token), its
//                   form fields and key part; the prepared exchange (data only)
//    - request:     TokenRequest: what to ask for, its form, its cache key, what refuses it;
//                   the token exchange's code table (Code) and TokenSource, which the
//                   exchange calls and the store implements
// 5. - response:    the parser: a server's answer in, a Token out
//    - cache:       the TokenCache interface (keys and bytes); cache/entry: what the store
//                   puts in them, sealed, and a Token to and from one
// 6. - advice:      what an error most likely means and what to do, when the server won't
//                   say; the warning for scopes not granted
//    - exchange:    request_token: the credentials, one POST, retries, ureq's errors mapped;
//                   exchange/token_exchange: the setters that make a request act for a user
//                   (so that nothing below names them, and a program that never calls one
//                   links none of it), a subject's token (for an impersonation, from the
//                   Management API), and the advice when Logto refuses it
// 7. the shared caches:
//    - token_file:  the token file, one TokenCache
//    - redis:       RedisCache, another (feature `redis`): one server, Sentinel, Cluster
// 8. - store:       TokenStore: memory, single flight, refresh ahead, backoff, shared caches
// 9. what uses a store, or stands on the rest:
//    - api:         the token used: Bearer (a ureq middleware) and TokenStore::call
//    - verify:      Verifier: the API's side, a token's signature (JWKS) and claims checked
//    - internal:    the fuzz targets' and the bench's entry points (feature `_internal`)
mod advice;
mod api;
mod cache;
mod claims;
mod config;
mod encode;
mod error;
mod exchange;
mod hash;
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod internal;
#[cfg(feature = "redis")]
mod redis;
mod request;
mod response;
mod sanitize;
mod seal;
mod secret;
mod store;
mod subject;
mod text;
mod time;
mod tls;
mod token;
mod token_file;
mod transport;
mod url;
mod verify;

pub use api::{Bearer, CallError};
pub use cache::{CacheLock, TokenCache};
pub use claims::Claims;
pub use config::{AuthMethod, Config};
pub use error::{Error, ErrorKind, VerifyErrorKind};
pub use exchange::request_token;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisCache;
pub use request::TokenRequest;
pub use secret::Secret;
pub use store::{StoreStats, TokenStore};
pub use token::Token;
pub use url::Origin;
pub use verify::Verifier;

// The README's examples compile as doctests, so they can't drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Compile-time check that the shared types can cross threads.
#[allow(dead_code)] // only its compiling matters
fn _ensure_send_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<TokenStore>();
    is_send_sync::<Config>();
    is_send_sync::<Token>();
    is_send_sync::<Error>();
    is_send_sync::<TokenRequest>();
    is_send_sync::<Verifier>();
    is_send_sync::<Secret>();
}
