//! From token to call, against the peer's protected APIs: the `Bearer` middleware and
//! `TokenStore::call`, with the peer's key rotation lever (`POST /__peer/rotate`: every
//! token issued so far is refused with 401 while it still looks fresh). A loopback server
//! stands in only where the point is what another origin receives.

use crate::common;

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::loopback::{Loopback, WAIT_TWICE, busy_server};
use common::{M2M_BASIC, M2M_POST, MANAGEMENT_API, Peer, SHOPPING_API, config, shopping};
use logto_m2m::{Bearer, CallError, ErrorKind, TokenRequest, TokenStore};
use ureq::config::{ConfigBuilder, RedirectAuthHeaders};
use ureq::typestate::AgentScope;

/// An agent's config for API calls: 10 s, no proxy, and ureq's default of error statuses
/// as `StatusCode` errors.
fn strict_config() -> ConfigBuilder<AgentScope> {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
}

/// [`strict_config`], with answers of any status coming back as responses.
fn api_config() -> ConfigBuilder<AgentScope> {
    strict_config().http_status_as_error(false)
}

/// An agent for API calls: answers of any status come back as responses.
fn plain_agent() -> ureq::Agent {
    api_config().build().into()
}

/// An agent whose requests to `origin` carry the store's token for `request`.
fn bearer_agent(store: &Arc<TokenStore>, request: TokenRequest, origin: &str) -> ureq::Agent {
    let bearer = Bearer::new(Arc::clone(store), request, origin).unwrap();
    api_config().middleware(bearer).build().into()
}

fn status(agent: &ureq::Agent, url: &str) -> u16 {
    agent.get(url).call().unwrap().status().as_u16()
}

#[test]
fn bearer_sends_the_token_to_the_api_and_renews_it_after_a_401() {
    let peer = Peer::start();
    let store = Arc::new(TokenStore::new(config(&peer, M2M_BASIC)));
    let agent = bearer_agent(&store, shopping("read:products"), &peer.base_url());
    let products = format!("{}/products", peer.base_url());

    for _ in 0..3 {
        assert_eq!(status(&agent, &products), 200);
    }
    let before = peer.stats();
    assert_eq!(before.token_requests, 1, "one token for three calls");

    // The key rotates: the cached token still looks fresh, and the API refuses it.
    peer.rotate_keys();
    assert_eq!(status(&agent, &products), 401, "a middleware can't resend");
    assert_eq!(
        status(&agent, &products),
        200,
        "the next request has a new token"
    );
    let after = peer.stats();
    assert_eq!(after.token_requests - before.token_requests, 1);
    assert_eq!(after.api_unauthorized, 1);
}

#[test]
fn bearer_reaches_the_management_api() {
    let peer = Peer::start();
    let store = Arc::new(TokenStore::new(config(&peer, M2M_BASIC)));
    let agent = bearer_agent(
        &store,
        TokenRequest::management_api(&peer.base_url()),
        &peer.base_url(),
    );
    let mut answer = agent
        .get(format!("{}/api/applications", peer.base_url()))
        .call()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.body_mut().read_to_string().unwrap();
    assert!(body.contains("m2m-basic"), "{body}");
    // Without the middleware: Logto's own error.
    let mut bare = plain_agent()
        .get(format!("{}/api/applications", peer.base_url()))
        .call()
        .unwrap();
    assert_eq!(bare.status(), 401);
    let body = bare.body_mut().read_to_string().unwrap();
    assert!(body.contains("auth.authorization_header_missing"), "{body}");
}

#[test]
fn call_retries_once_after_a_401_with_one_new_token() {
    let peer = Peer::start();
    let store = TokenStore::new(config(&peer, M2M_BASIC));
    let agent = plain_agent();
    let request = shopping("read:products");
    let url = format!("{}/products", peer.base_url());
    let get = |authorization: &str| {
        agent
            .get(&url)
            .header("authorization", authorization)
            .call()
    };

    assert_eq!(store.call(&request, get).unwrap().status(), 200);
    peer.rotate_keys();
    let before = peer.stats();
    let answer = store.call(&request, get).unwrap();
    assert_eq!(answer.status(), 200);
    peer.stats().assert_one_retry_since(&before);
}

#[test]
fn call_never_retries_a_403_nor_twice() {
    let peer = Peer::start();
    // m2m-post has no Management API role: its token there has no scope, and Logto says 403.
    let store = TokenStore::new(config(&peer, M2M_POST));
    let agent = plain_agent();
    let url = format!("{}/api/applications", peer.base_url());
    let mut calls = 0;
    let answer = store
        .call(
            &TokenRequest::management_api(&peer.base_url()),
            |authorization| {
                calls += 1;
                agent
                    .get(&url)
                    .header("authorization", authorization)
                    .call()
            },
        )
        .unwrap();
    assert_eq!((answer.status().as_u16(), calls), (403, 1));
    assert_eq!(peer.stats().token_requests, 1);

    // An API that always says 401: one retry with one new token, then its answer.
    let store = TokenStore::new(config(&peer, M2M_BASIC));
    let mut calls = 0;
    let answer = store
        .call(&shopping("read:products"), |_| {
            calls += 1;
            agent
                .get(format!("{}/products", peer.base_url()))
                .header("authorization", "Bearer not-a-token")
                .call()
        })
        .unwrap();
    assert_eq!((answer.status().as_u16(), calls), (401, 2));
    assert_eq!(peer.stats().token_requests, 3);
}

#[test]
fn call_with_status_errors_retries_too_and_says_which_half_failed() {
    let peer = Peer::start();
    let store = TokenStore::new(config(&peer, M2M_BASIC));
    // ureq's default: error statuses come back as `StatusCode` errors.
    let agent: ureq::Agent = strict_config().build().into();
    let url = format!("{}/products", peer.base_url());
    let request = shopping("read:products");
    store
        .call(&request, |a| {
            agent.get(&url).header("authorization", a).call()
        })
        .unwrap();
    peer.rotate_keys();
    let answer = store
        .call(&request, |a| {
            agent.get(&url).header("authorization", a).call()
        })
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(peer.stats().token_requests, 2);

    // The token half: no token, no call.
    let wrong = TokenStore::new(config(&peer, ("m2m-basic", "wrong-secret-canary")));
    let mut calls = 0;
    let err = wrong
        .call(&request, |a| {
            calls += 1;
            agent.get(&url).header("authorization", a).call()
        })
        .unwrap_err();
    assert_eq!(calls, 0);
    match &err {
        CallError::Token(e) => assert_eq!(e.oauth_error(), Some("invalid_client")),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with("no token for the api call: "),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-secret-canary"));

    // The API half: the closure's error, as it was.
    let err = store
        .call(&request, |a| {
            agent
                .get("http://127.0.0.1:1/products")
                .header("authorization", a)
                .call()
        })
        .unwrap_err();
    assert!(matches!(err, CallError::Api(_)), "{err:?}");
    assert!(err.to_string().starts_with("api call failed: "), "{err}");
}

#[test]
fn thirty_two_threads_meeting_one_401_make_one_token_request() {
    let peer = Peer::start();
    let store = Arc::new(TokenStore::new(config(&peer, M2M_BASIC)));
    let request = shopping("read:products");
    let url = format!("{}/products", peer.base_url());
    let agent = plain_agent();
    store
        .call(&request, |a| {
            agent.get(&url).header("authorization", a).call()
        })
        .unwrap();
    peer.rotate_keys();
    let before = peer.stats();

    const THREADS: usize = 32;
    let barrier = Arc::new(Barrier::new(THREADS));
    let statuses: Vec<u16> = (0..THREADS)
        .map(|_| {
            let (store, request, url, agent, barrier) = (
                Arc::clone(&store),
                request.clone(),
                url.clone(),
                agent.clone(),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                store
                    .call(&request, |a| {
                        agent.get(&url).header("authorization", a).call()
                    })
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let after = peer.stats();
    assert_eq!(after.token_requests - before.token_requests, 1);
    // Every thread's first call met the 401 or already had the new token.
    assert!(after.api_unauthorized - before.api_unauthorized <= THREADS as u64);
}

/// A server that records the `Authorization` header of every request it gets.
fn recorder(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (Loopback, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let server = Loopback::start(16, Duration::from_secs(10), move |c| {
        record
            .lock()
            .unwrap()
            .push(c.request.header("authorization").map(str::to_owned));
        let _ = c.send(answer(c.request.target()).as_bytes());
    });
    (server, seen)
}

fn ok_response() -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_owned()
}

#[test]
fn the_token_goes_to_its_origin_only() {
    let peer = common::shared_peer();
    let store = Arc::new(TokenStore::new(config(peer, M2M_BASIC)));
    let agent = bearer_agent(&store, shopping("read:products"), &peer.base_url());

    // Another origin: nothing added.
    let (other, seen) = recorder(|_| ok_response());
    assert_eq!(
        status(&agent, &format!("http://127.0.0.1:{}/x", other.port())),
        200
    );
    // The API's host by another name is another origin too.
    assert_eq!(
        status(&agent, &format!("{}/products", peer.base_url_localhost())),
        401
    );
    // A request that already says who it is keeps its own header.
    let own = agent
        .get(format!("http://127.0.0.1:{}/y", other.port()))
        .header("authorization", "Basic b3duOmhlYWRlcg==")
        .call()
        .unwrap();
    assert_eq!(own.status(), 200);
    other.finish();
    assert_eq!(
        *seen.lock().unwrap(),
        [None, Some("Basic b3duOmhlYWRlcg==".to_owned())]
    );
}

#[test]
fn no_redirect_carries_the_token_whatever_the_agent_allows() {
    // The API's origin redirects to another port on the same host: ureq's `SameHost`
    // would keep the header there; the middleware pins redirects to never carry it.
    let (target, seen_by_target) = recorder(|_| ok_response());
    let to = format!("http://127.0.0.1:{}/landed", target.port());
    let (api, seen_by_api) = recorder(move |_| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    });
    let peer = common::shared_peer();
    let store = Arc::new(TokenStore::new(config(peer, M2M_BASIC)));
    let origin = format!("http://127.0.0.1:{}", api.port());
    let bearer = Bearer::new(Arc::clone(&store), shopping("read:products"), &origin).unwrap();
    let agent: ureq::Agent = api_config()
        .redirect_auth_headers(RedirectAuthHeaders::SameHost)
        .middleware(bearer)
        .build()
        .into();
    assert_eq!(status(&agent, &format!("{origin}/start")), 200);
    api.finish();
    target.finish();
    let at_api = seen_by_api.lock().unwrap().clone();
    assert_eq!(at_api.len(), 1);
    assert!(
        at_api[0]
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ey")),
        "{at_api:?}"
    );
    assert_eq!(*seen_by_target.lock().unwrap(), [None]);
}

#[test]
fn bearer_origins_are_checked() {
    // A peer of its own: it counts API requests, which other tests make on the shared one.
    let peer = &Peer::start();
    let store = Arc::new(TokenStore::new(config(peer, M2M_BASIC)));
    let err = |origin: &str| {
        Bearer::new(Arc::clone(&store), shopping("read:products"), origin)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("http://api.example.com"),
        "invalid config: plain http to an api host that is not loopback would send the token \
         in clear text; use https"
    );
    assert!(err("https://api.example.com/v1").contains("without a path"));
    assert!(
        Bearer::new(
            Arc::clone(&store),
            shopping("x"),
            "https://api.example.com/"
        )
        .is_ok()
    );
    // A token that can't be had fails the request before anything is sent.
    let wrong = Arc::new(TokenStore::new(config(peer, ("m2m-basic", "wrong-secret"))));
    let bearer = Bearer::new(wrong, shopping("read:products"), &peer.base_url()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .middleware(bearer)
        .build()
        .into();
    let before = peer.stats().api_requests;
    match agent.get(format!("{}/products", peer.base_url())).call() {
        Err(ureq::Error::Other(e)) => {
            let e = e
                .downcast_ref::<logto_m2m::Error>()
                .expect("our error inside");
            assert!(
                matches!(e.kind(), ErrorKind::OAuth { status: 401, .. }),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(peer.stats().api_requests, before);
    let _ = (SHOPPING_API, MANAGEMENT_API);
}

fn status_response(status: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

#[test]
fn a_401_where_a_redirect_led_drops_no_token_and_one_from_the_api_does() {
    // Issue 31 item 8: the API redirects to a login page on another origin, which answers
    // 401 to a request that carried no token (redirects never carry it). `Bearer` used to
    // drop the token on any 401, and so made a token request per call.
    let (login, seen_by_login) = recorder(|_| status_response("401 Unauthorized"));
    let to = format!("http://127.0.0.1:{}/login", login.port());
    let (api, seen_by_api) = recorder(move |target| match target {
        "/moved" => format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        _ => status_response("401 Unauthorized"),
    });
    let peer = common::shared_peer();
    let store = Arc::new(TokenStore::new(config(peer, M2M_BASIC)));
    let origin = format!("http://127.0.0.1:{}", api.port());
    // Follows redirects (ureq's default), and answers of any status come back as responses.
    let agent = bearer_agent(&store, shopping("read:products"), &origin);
    for _ in 0..3 {
        let answer = agent.get(format!("{origin}/moved")).call().unwrap();
        assert_eq!(answer.status(), 401);
        assert_eq!(
            ureq::ResponseExt::get_uri(&answer).port_u16(),
            Some(login.port())
        );
    }
    let stats = store.stats();
    assert_eq!((stats.token_requests, stats.invalidations), (1, 0));

    // The API's own 401 to the token drops it: the next request has a new one.
    assert_eq!(status(&agent, &format!("{origin}/refuse")), 401);
    assert_eq!(store.stats().invalidations, 1);
    assert_eq!(status(&agent, &format!("{origin}/refuse")), 401);
    assert_eq!(store.stats().token_requests, 2);

    // With ureq's default status errors, a 401 says nothing of where it came from: it
    // drops the token (see `Bearer`).
    let bearer = Bearer::new(Arc::clone(&store), shopping("read:products"), &origin).unwrap();
    let errors: ureq::Agent = strict_config().middleware(bearer).build().into();
    match errors.get(format!("{origin}/refuse")).call() {
        Err(ureq::Error::StatusCode(401)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.stats().invalidations, 3);

    api.finish();
    login.finish();
    // Every request to the API carried a token; none to the login page.
    let at_api = seen_by_api.lock().unwrap().clone();
    assert_eq!(at_api.len(), 6);
    assert!(
        at_api
            .iter()
            .all(|a| a.as_deref().is_some_and(|a| a.starts_with("Bearer ")))
    );
    assert_eq!(*seen_by_login.lock().unwrap(), [None, None, None]);
}

#[test]
fn a_401_that_a_later_middleware_makes_up_drops_the_token_and_panics_nowhere() {
    // A middleware after `Bearer` (a mock, a cache) may answer the request itself, with a
    // response that never went through ureq: it has no URI of its own
    // (`ResponseExt::get_uri` would panic on it). It answered the request that carried the
    // token, so its 401 counts.
    let peer = common::shared_peer();
    let store = Arc::new(TokenStore::new(config(peer, M2M_BASIC)));
    let bearer = Bearer::new(
        Arc::clone(&store),
        shopping("read:products"),
        &peer.base_url(),
    )
    .unwrap();
    let refuse = |request: ureq::http::Request<ureq::SendBody>,
                  _: ureq::middleware::MiddlewareNext| {
        assert!(request.headers().contains_key("authorization"));
        Ok(ureq::http::Response::builder()
            .status(401)
            .body(ureq::Body::builder().data(""))
            .unwrap())
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .middleware(bearer)
        .middleware(refuse)
        .build()
        .into();
    assert_eq!(
        status(&agent, &format!("{}/products", peer.base_url())),
        401
    );
    assert_eq!(
        status(&agent, &format!("{}/products", peer.base_url())),
        401
    );
    let stats = store.stats();
    assert_eq!((stats.invalidations, stats.token_requests), (2, 2));
}

/// Issue 34: `call_idempotent` waits out a 429 and a 503 as their `Retry-After` asks
/// (seconds, then an HTTP date), at most twice, within the config's timeout; `call`, for
/// which the store can't know that the request may be sent twice, never repeats one.
#[test]
fn call_idempotent_waits_out_429_and_503_and_call_does_not() {
    let peer = common::shared_peer();
    let store = TokenStore::new(config(peer, M2M_BASIC).timeout(Duration::from_secs(10)));
    let request = shopping("read:products");
    let agent = plain_agent();
    let get = |server: &Loopback| {
        let url = format!("http://127.0.0.1:{}/items", server.port());
        let agent = agent.clone();
        move |authorization: &str| {
            agent
                .get(&url)
                .header("authorization", authorization)
                .call()
        }
    };

    let server = busy_server(WAIT_TWICE);
    let started = std::time::Instant::now();
    let mut answer = store.call_idempotent(&request, get(&server)).unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body_mut().read_to_string().unwrap(), "done");
    server.finish().assert_waited_twice();
    assert!(started.elapsed() < Duration::from_secs(8));

    // Twice at most: the third 429 is the answer.
    let server = busy_server(&[(429, Some("0")), (429, Some("0")), (429, Some("0"))]);
    let answer = store.call_idempotent(&request, get(&server)).unwrap();
    assert_eq!(answer.status(), 429);
    assert_eq!(server.finish().requests, 3);

    // A wait past the timeout is not begun: the 429 comes back at once.
    let server = busy_server(&[(429, Some("60"))]);
    let started = std::time::Instant::now();
    let answer = store.call_idempotent(&request, get(&server)).unwrap();
    assert_eq!(answer.status(), 429);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.finish().requests, 1);

    // `call` returns the 429 as it is: the closure could be a POST.
    let server = busy_server(&[(429, Some("1"))]);
    let answer = store.call(&request, get(&server)).unwrap();
    assert_eq!(answer.status(), 429);
    assert_eq!(server.finish().requests, 1);

    // With ureq's default `http_status_as_error`, a 503 is an error without its headers:
    // retried after 1 s all the same.
    let server = busy_server(&[(503, Some("5"))]);
    let strict: ureq::Agent = strict_config().build().into();
    let url = format!("http://127.0.0.1:{}/items", server.port());
    let started = std::time::Instant::now();
    let answer = store
        .call_idempotent(&request, |authorization| {
            strict
                .get(&url)
                .header("authorization", authorization)
                .call()
        })
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.finish().requests, 2);
}
