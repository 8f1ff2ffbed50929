//! Store logic with the network replaced by closures that count, stall, fail or panic,
//! and the clocks moved by hand. Behaviour against the real server is in `tests/suite/store.rs`.

use super::*;
use crate::error::Redactions;
use crate::response::{Answer, Sent, parse};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::SeqCst};
use std::thread;

type FetchHook = dyn Fn(&Config, &TokenRequest) -> Result<Token, Error> + Send + Sync;

/// What unit tests put in place of the network and the clocks.
#[derive(Default)]
pub(super) struct Hooks {
    pub(super) fetch: Option<Box<FetchHook>>,
    pub(super) clock: Arc<TestClock>,
    /// Calls that missed this thread's copies and took the store's lock.
    pub(super) slow: AtomicU32,
}

/// Offsets added to the real clocks: the monotonic one only moves forward (a suspend
/// stops it), the wall one both ways (NTP steps).
#[derive(Default)]
pub(super) struct TestClock {
    mono_ms: AtomicI64,
    wall_ms: AtomicI64,
}

impl TestClock {
    pub(super) fn shift(&self, now: Now) -> Now {
        let mono = Duration::from_millis(self.mono_ms.load(SeqCst) as u64);
        let wall = self.wall_ms.load(SeqCst);
        let step = Duration::from_millis(wall.unsigned_abs());
        Now {
            mono: now.mono + mono,
            wall: if wall >= 0 {
                now.wall + step
            } else {
                now.wall - step
            },
        }
    }

    /// Both clocks move on: time passes while the machine runs.
    fn run(&self, by: Duration) {
        self.mono_ms.fetch_add(by.as_millis() as i64, SeqCst);
        self.wall_ms.fetch_add(by.as_millis() as i64, SeqCst);
    }

    /// Only the wall clock moves on: the machine slept (Linux's monotonic clock stops).
    fn suspend(&self, by: Duration) {
        self.wall_ms.fetch_add(by.as_millis() as i64, SeqCst);
    }

    /// The wall clock jumps by `ms` (negative: back), the monotonic one does not.
    fn step_wall(&self, ms: i64) {
        self.wall_ms.fetch_add(ms, SeqCst);
    }
}

/// What a test fetch answers: a token of this lifetime (sent at the test clock's now), or
/// a failure.
enum Reply {
    Token(u64),
    Fail,
}
use Reply::{Fail, Token as Tok};

/// A store whose fetches count into `calls` and answer with `answer(call number)`; the
/// tokens are stamped with the store's test clock, as the real fetch stamps them with the
/// real one.
fn store(answer: impl Fn(u32) -> Reply + Send + Sync + 'static) -> (TokenStore, Arc<AtomicU32>) {
    let config = Config::new("http://127.0.0.1:9/token", "app", "secret-canary-1234").unwrap();
    let mut store = TokenStore::new(config);
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let clock = Arc::clone(&store.inner.hooks.clock);
    // unwrap is ok: nothing else holds a new store's state yet.
    Arc::get_mut(&mut store.inner).unwrap().hooks.fetch = Some(Box::new(move |_, _| {
        let n = counter.fetch_add(1, SeqCst);
        match answer(n) {
            Tok(expires_in) => Ok(token_at(&clock, n, expires_in)),
            Fail => Err(Error::new(ErrorKind::Transport {
                message: "connection refused".into(),
            })),
        }
    }));
    (store, calls)
}

fn token_at(clock: &TestClock, n: u32, expires_in: u64) -> Token {
    let body =
        format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{expires_in}}}"#);
    let answer = Answer {
        status: 200,
        rate_limited: None,
        body: body.into_bytes(),
        request_id: None,
    };
    let now = clock.shift(Now {
        mono: Instant::now(),
        wall: SystemTime::now(),
    });
    let sent = Sent {
        at: now.mono,
        wall: now.wall,
        scope: &[],
        max_lifetime: Duration::from_secs(24 * 3600),
    };
    parse(&answer, &sent, &Redactions::NONE).unwrap()
}

#[test]
fn expires_in_zero_is_returned_but_not_cached() {
    let (s, calls) = store(|_| Tok(0));
    let r = TokenRequest::new("r");
    assert!(s.get(&r).is_ok());
    assert!(s.get(&r).is_ok());
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn hit_does_not_fetch_and_invalidate_does() {
    let (s, calls) = store(|_| Tok(3600));
    let r = TokenRequest::new("r").scope("b a");
    let a = s.get(&r).unwrap();
    let b = s.get(&TokenRequest::new("r").scope("a b a")).unwrap();
    assert_eq!(a.access_token(), b.access_token());
    assert_eq!(calls.load(SeqCst), 1);
    s.invalidate(&r);
    let c = s.get(&r).unwrap();
    assert_ne!(a.access_token(), c.access_token());
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn invalidate_and_clear_reach_every_threads_copy() {
    let (s, calls) = store(|_| Tok(3600));
    let r = TokenRequest::new("r");
    let first = s.get(&r).unwrap();
    thread::scope(|scope| {
        // The other thread takes its own copy of the first token.
        let other = scope.spawn(|| s.get(&r).unwrap().access_token().to_owned());
        assert_eq!(other.join().unwrap(), first.access_token());
    });
    s.invalidate(&r);
    let second = thread::scope(|scope| scope.spawn(|| s.get(&r).unwrap()).join().unwrap());
    assert_ne!(second.access_token(), first.access_token());
    assert_eq!(s.get(&r).unwrap().access_token(), second.access_token());
    s.invalidate(&r);
    let third = s.get(&r).unwrap();
    assert_ne!(third.access_token(), second.access_token());
    assert_eq!(calls.load(SeqCst), 3);
}

#[test]
fn a_change_to_one_key_leaves_the_other_keys_copies_alone() {
    let (s, calls) = store(|_| Tok(3600));
    let (a, b) = (TokenRequest::new("a"), TokenRequest::new("b"));
    s.get(&a).unwrap();
    s.get(&b).unwrap();
    let slow = || s.inner.hooks.slow.load(SeqCst);
    let before = slow();
    for _ in 0..10 {
        s.get(&a).unwrap();
        s.get(&b).unwrap();
    }
    assert_eq!(slow(), before, "hits take no lock");
    s.invalidate(&a);
    s.get(&b).unwrap();
    assert_eq!(slow(), before, "b's copy is still current");
    s.get(&a).unwrap();
    assert_eq!(slow(), before + 1, "a's copy is stale");
    assert_eq!(calls.load(SeqCst), 3);
}

#[test]
fn panic_during_refresh_hands_the_refresh_to_a_waiter() {
    let (s, calls) = store(|n| {
        if n == 0 {
            thread::sleep(Duration::from_millis(300));
            panic!("fetch panics on purpose");
        }
        Tok(3600)
    });
    let r = TokenRequest::new("r");
    thread::scope(|scope| {
        let first = scope.spawn(|| s.get(&r));
        // Let the first caller start its (doomed) refresh, then wait behind it.
        thread::sleep(Duration::from_millis(100));
        let second = scope.spawn(|| s.get(&r));
        assert!(first.join().is_err(), "the first caller panics");
        assert!(
            second.join().unwrap().is_ok(),
            "the waiter refreshes instead"
        );
    });
    assert_eq!(calls.load(SeqCst), 2);
    // Not poisoned: later callers get the cached token.
    assert!(s.get(&r).is_ok());
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn failure_backs_off_and_grows() {
    let (s, calls) = store(|_| Fail);
    let r = TokenRequest::new("r");
    let first = s.get(&r).unwrap_err();
    // Inside the 1 s backoff: the same error, no request.
    for _ in 0..10 {
        assert_eq!(s.get(&r).unwrap_err().to_string(), first.to_string());
    }
    assert_eq!(calls.load(SeqCst), 1);
    thread::sleep(FIRST_FAILURE_BACKOFF + Duration::from_millis(50));
    assert!(s.get(&r).is_err());
    assert_eq!(calls.load(SeqCst), 2);
    // The second backoff is 2 s: still nothing after 1.05 s.
    thread::sleep(FIRST_FAILURE_BACKOFF + Duration::from_millis(50));
    assert!(s.get(&r).is_err());
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn failed_refresh_ahead_keeps_the_valid_token() {
    let (s, calls) = store(|n| if n == 0 { Tok(2) } else { Fail });
    // Clamped to half of 2 s: the refresh starts between 1 and 1.5 s.
    let s = s.refresh_margin(Duration::from_secs(100));
    let r = TokenRequest::new("r");
    let old = s.get(&r).unwrap();
    thread::sleep(Duration::from_millis(1600));
    let kept = s.get(&r).unwrap();
    assert!(Arc::ptr_eq(&old, &kept));
    settle(&s);
    assert_eq!(calls.load(SeqCst), 2);
    // In the backoff now: no new request, still the old token.
    assert!(Arc::ptr_eq(&old, &s.get(&r).unwrap()));
    assert_eq!(calls.load(SeqCst), 2);
}

/// Waits until no refresh runs (a refresh ahead runs on a thread of its own), at most 5 s.
fn settle(s: &TokenStore) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let running =
        || (s.inner.lock().map.values().flatten()).any(|e| matches!(e.refresh, Refresh::Running));
    while running() {
        assert!(Instant::now() < deadline, "a refresh still runs after 5 s");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Calls `get` and says how long it took; it must hand out `expected`.
fn timed_get(s: &TokenStore, r: &TokenRequest, expected: &Token) -> Duration {
    let started = Instant::now();
    let token = s.get(r).unwrap();
    let took = started.elapsed();
    assert_eq!(token.access_token(), expected.access_token());
    took
}

/// The test clock moved to 25 s before a 3600 s token's end: inside the default margin
/// (whose jittered start is at least 30 s before the end), still valid.
fn into_the_margin(s: &TokenStore) {
    s.inner.hooks.clock.run(Duration::from_secs(3600 - 25));
}

#[test]
fn refresh_ahead_runs_on_its_own_thread_and_no_caller_waits() {
    // Issue 31 item 7: the caller that found the token in its margin made the exchange
    // itself and waited for it (up to the timeout), though it held a valid token.
    let (s, calls) = store(|n| {
        if n > 0 {
            thread::sleep(Duration::from_millis(1500));
        }
        Tok(3600)
    });
    let r = TokenRequest::new("r");
    let old = s.get(&r).unwrap();
    into_the_margin(&s);
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while started.elapsed() < Duration::from_millis(1000) {
                    let took = timed_get(&s, &r, &old);
                    assert!(took < Duration::from_millis(300), "{took:?}");
                    thread::sleep(Duration::from_millis(10));
                }
            });
        }
    });
    assert_eq!(calls.load(SeqCst), 2, "one refresh for every caller");
    settle(&s);
    let new = s.get(&r).unwrap();
    assert_ne!(new.access_token(), old.access_token());
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn an_outage_in_the_margin_costs_no_caller_a_wait_and_one_try_per_pause() {
    let (s, calls) = store(|n| {
        if n == 0 {
            return Tok(3600);
        }
        thread::sleep(Duration::from_millis(200));
        Fail
    });
    let r = TokenRequest::new("r");
    let old = s.get(&r).unwrap();
    into_the_margin(&s);
    let clock = &s.inner.hooks.clock;
    // Each try runs in the background; meanwhile, and after it failed, callers get the
    // valid token at once, and no new try starts before the pause is over.
    let mut tries = 1;
    for pause_s in [1, 2, 4] {
        for _ in 0..20 {
            assert!(timed_get(&s, &r, &old) < Duration::from_millis(100));
        }
        tries += 1;
        settle(&s);
        assert_eq!(calls.load(SeqCst), tries);
        for _ in 0..20 {
            assert!(timed_get(&s, &r, &old) < Duration::from_millis(100));
        }
        clock.run(Duration::from_millis(pause_s * 1000 - 100));
        timed_get(&s, &r, &old);
        settle(&s);
        assert_eq!(
            calls.load(SeqCst),
            tries,
            "a try inside a {pause_s} s pause"
        );
        clock.run(Duration::from_millis(150));
    }
    let stats = s.stats();
    assert_eq!((stats.token_requests, stats.token_request_failures), (4, 3));
}

#[test]
fn a_refresh_ahead_that_panics_is_tried_again_after_a_pause() {
    let (s, calls) = store(|n| {
        if n == 1 {
            panic!("the refresh ahead panics on purpose");
        }
        Tok(3600)
    });
    let r = TokenRequest::new("r");
    let old = s.get(&r).unwrap();
    into_the_margin(&s);
    s.get(&r).unwrap();
    settle(&s);
    assert_eq!(calls.load(SeqCst), 2);
    // Not wedged, and not retried on every call either: the valid token, at once.
    for _ in 0..10 {
        assert!(timed_get(&s, &r, &old) < Duration::from_millis(100));
    }
    assert_eq!(calls.load(SeqCst), 2);
    s.inner
        .hooks
        .clock
        .run(FIRST_FAILURE_BACKOFF + Duration::from_millis(50));
    s.get(&r).unwrap();
    settle(&s);
    assert_eq!(calls.load(SeqCst), 3);
    assert_ne!(s.get(&r).unwrap().access_token(), old.access_token());
}

#[test]
fn a_token_that_expires_during_a_slow_refresh_ahead_waits_for_that_refresh() {
    let (s, calls) = store(|n| {
        if n == 1 {
            thread::sleep(Duration::from_millis(500));
        }
        Tok(3600)
    });
    let r = TokenRequest::new("r");
    let old = s.get(&r).unwrap();
    into_the_margin(&s);
    s.get(&r).unwrap();
    // The held token ends while the refresh runs: callers now wait for that one refresh
    // (no second request) and get its token.
    s.inner.hooks.clock.run(Duration::from_secs(30));
    let tokens: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| s.get(&r).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(tokens.iter().all(|t| t.access_token() == "tok-1"));
    assert_ne!(old.access_token(), "tok-1");
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn refresh_margin_says_when_the_refresh_starts() {
    let (s, calls) = store(|_| Tok(3600));
    let s = s.refresh_margin(Duration::from_secs(10));
    let r = TokenRequest::new("r");
    s.get(&r).unwrap();
    // 11 s left: outside a 10 s margin, whatever the jitter.
    s.inner.hooks.clock.run(Duration::from_secs(3600 - 11));
    s.get(&r).unwrap();
    settle(&s);
    assert_eq!(calls.load(SeqCst), 1);
    // 4.5 s left: inside it (the jitter starts the refresh 10 to 5 s before the end).
    s.inner.hooks.clock.run(Duration::from_millis(6500));
    s.get(&r).unwrap();
    settle(&s);
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn the_default_margin_covers_the_slowest_refresh() {
    let config = Config::new("http://127.0.0.1:9/token", "app", "secret").unwrap();
    let plain = TokenStore::new(config.clone());
    assert_eq!(plain.margin(), Duration::from_secs(60));
    // With a token cache a refresh may take twice the timeout (the cache's lock first).
    let shared =
        TokenStore::new(config.clone()).token_cache(std::sync::Arc::new(Memory::default()));
    assert_eq!(shared.margin(), Duration::from_secs(120));
    let slow = TokenStore::new(config.clone().timeout(Duration::from_secs(45)));
    assert_eq!(slow.margin(), Duration::from_secs(90));
    let short = TokenStore::new(config.timeout(Duration::from_secs(5)));
    assert_eq!(short.margin(), Duration::from_secs(60));
    // Its jittered start is never later than the bound before the end.
    for store in [&plain, &shared, &slow] {
        let m = jittered_margin(Duration::from_secs(3600), store.margin());
        assert!(m >= store.refresh_bound(), "{m:?}");
    }
}

#[test]
fn invalidate_token_drops_only_the_refused_token() {
    let (s, calls) = store(|_| Tok(3600));
    let r = TokenRequest::new("r");
    let first = s.get(&r).unwrap();
    s.invalidate_token(&r, &first);
    let second = s.get(&r).unwrap();
    assert_eq!(calls.load(SeqCst), 2);
    // A thread that met the 401 with the first token late: the second one stays.
    s.invalidate_token(&r, &first);
    assert!(Arc::ptr_eq(&second, &s.get(&r).unwrap()));
    assert_eq!(calls.load(SeqCst), 2);
    // 16 threads meeting a 401 with the second token: one new token between them.
    let barrier = std::sync::Barrier::new(16);
    let tokens: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    s.invalidate_token(&r, &second);
                    s.get(&r).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(calls.load(SeqCst), 3);
    assert!(tokens.iter().all(|t| t.access_token() == "tok-2"));
    // `invalidate` drops whatever is cached.
    s.invalidate(&r);
    s.get(&r).unwrap();
    assert_eq!(calls.load(SeqCst), 4);
}

#[test]
fn never_hands_out_an_expired_token() {
    let (s, calls) = store(|_| Tok(1));
    let r = TokenRequest::new("r");
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        let t = s.get(&r).unwrap();
        assert!(!t.ends_before(Instant::now(), SystemTime::now(), Duration::ZERO));
        thread::sleep(Duration::from_millis(20));
    }
    // 1 s tokens, refreshed after 0.5 to 0.75 s: 4 to 6 requests in 2.5 s.
    let n = calls.load(SeqCst);
    assert!((4..=7).contains(&n), "{n}");
}

#[test]
fn suspend_ends_the_token_though_the_monotonic_clock_stood_still() {
    let (s, calls) = store(|_| Tok(3600));
    let r = TokenRequest::new("r");
    let first = s.get(&r).unwrap();
    // Two hours asleep: the monotonic clock says a moment passed, the wall clock says 2 h.
    s.inner.hooks.clock.suspend(Duration::from_secs(7200));
    let after = s.get(&r).unwrap();
    assert_ne!(after.access_token(), first.access_token());
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn wall_clock_step_back_never_extends_a_token() {
    let (s, calls) = store(|_| Tok(3600));
    let r = TokenRequest::new("r");
    s.get(&r).unwrap();
    // An hour passes, then NTP steps the wall clock back by 50 minutes: by the wall clock
    // the token would have 50 minutes left; by the monotonic clock it is over.
    s.inner.hooks.clock.run(Duration::from_secs(3600));
    s.inner.hooks.clock.step_wall(-50 * 60 * 1000);
    s.get(&r).unwrap();
    assert_eq!(calls.load(SeqCst), 2);
    // A step back by hours right after a fetch: the monotonic clock still ends the token
    // on time.
    s.inner.hooks.clock.step_wall(-3 * 3600 * 1000);
    s.get(&r).unwrap();
    assert_eq!(calls.load(SeqCst), 2, "still fresh by both clocks");
    s.inner.hooks.clock.run(Duration::from_secs(3600));
    s.get(&r).unwrap();
    assert_eq!(calls.load(SeqCst), 3);
}

#[test]
fn wall_clock_step_forward_ends_it_early() {
    let (s, calls) = store(|_| Tok(3600));
    let r = TokenRequest::new("r");
    s.get(&r).unwrap();
    s.inner.hooks.clock.step_wall(3590 * 1000);
    s.get(&r).unwrap();
    // 10 s left by the wall clock: refreshed ahead, in the background.
    settle(&s);
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn refresh_points_are_spread_over_the_first_half_of_the_margin() {
    let margins: Vec<Duration> = (0..100)
        .map(|_| jittered_margin(Duration::from_secs(3600), Duration::from_secs(60)))
        .collect();
    let min = margins.iter().min().unwrap();
    let max = margins.iter().max().unwrap();
    assert!(*min >= Duration::from_secs(30) && *max <= Duration::from_secs(60));
    // 100 uniform draws over 30 s: a spread under 20 s has odds below 1e-40.
    assert!(*max - *min >= Duration::from_secs(20), "{min:?}..{max:?}");
    // Short tokens: within half of their lifetime, as before.
    let short = jittered_margin(Duration::from_secs(2), Duration::from_secs(60));
    assert!(short <= Duration::from_secs(1) && short >= Duration::from_millis(500));
}

#[test]
fn spent_keys_are_swept() {
    let (s, calls) = store(|_| Tok(1));
    for i in 0..MIN_SWEEP_AT {
        s.get(&TokenRequest::new(&format!("r{i}"))).unwrap();
    }
    assert_eq!(s.inner.lock().map.len(), MIN_SWEEP_AT);
    s.inner.hooks.clock.run(Duration::from_secs(2));
    // A new key at the threshold sweeps first: the spent keys go, the new one stays.
    s.get(&TokenRequest::new("new")).unwrap();
    assert_eq!(s.inner.lock().map.len(), 1);
    assert_eq!(calls.load(SeqCst) as usize, MIN_SWEEP_AT + 1);
    // Live keys stay, and the threshold follows them: no sweep on every new key.
    for i in 0..2 * MIN_SWEEP_AT {
        s.get(&TokenRequest::new(&format!("live{i}"))).unwrap();
    }
    assert_eq!(s.inner.lock().map.len(), 2 * MIN_SWEEP_AT + 1);
}

#[test]
fn a_key_swept_and_asked_again_gets_its_new_token() {
    let (s, _) = store(|_| Tok(1));
    let r = TokenRequest::new("r");
    let old = s.get(&r).unwrap();
    s.inner.hooks.clock.run(Duration::from_secs(2));
    // Another thread fills the map; its new key sweeps every spent one, `r` included, while
    // this thread still has its copy of `r`'s old token.
    thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..MIN_SWEEP_AT {
                s.get(&TokenRequest::new(&format!("k{i}"))).unwrap();
            }
        });
    });
    assert!(
        find_mut(&mut s.inner.lock().map, &r).is_none(),
        "r was swept"
    );
    let again = s.get(&r).unwrap();
    assert_ne!(again.access_token(), old.access_token());
    assert_eq!(s.get(&r).unwrap().access_token(), again.access_token());
}

#[test]
fn debug_shows_keys_not_tokens() {
    let (s, _) = store(|_| Tok(3600));
    let r = TokenRequest::new("https://api")
        .scope("read")
        .organization("org-1");
    let t = s.get(&r).unwrap();
    let d = format!("{s:?} {s:#?}");
    assert!(
        d.contains("https://api") && d.contains("read") && d.contains("org-1"),
        "{d}"
    );
    assert!(!d.contains(t.access_token()), "{d}");
    assert!(!d.contains("secret-canary"), "{d}");
}

#[test]
fn stats_count_hits_requests_failures_and_invalidations() {
    let (s, calls) = store(|n| if n == 1 { Fail } else { Tok(3600) });
    let r = TokenRequest::new("r");
    assert_eq!(s.stats(), StoreStats::default());
    s.get(&r).unwrap();
    for _ in 0..5 {
        s.get(&r).unwrap();
    }
    let stats = s.stats();
    assert_eq!((stats.token_requests, stats.hits), (1, 5));
    s.invalidate(&r);
    assert!(s.get(&r).is_err());
    // In the backoff: the same error, neither a request nor a hit.
    assert!(s.get(&r).is_err());
    s.invalidate(&r);
    let stats = s.stats();
    assert_eq!(calls.load(SeqCst), 2);
    assert_eq!(
        (
            stats.token_requests,
            stats.token_request_failures,
            stats.hits,
            stats.invalidations
        ),
        (2, 1, 5, 2)
    );
    assert_eq!((stats.shared_reads, stats.shared_errors), (0, 0));
    assert!(format!("{stats:?}").starts_with("StoreStats { hits: 5,"));
}

#[test]
fn stats_count_every_threads_hits_and_the_waits() {
    let (s, calls) = store(|n| {
        if n == 0 {
            thread::sleep(Duration::from_millis(300));
        }
        Tok(3600)
    });
    let r = TokenRequest::new("r");
    thread::scope(|scope| {
        let first = scope.spawn(|| s.get(&r).unwrap());
        thread::sleep(Duration::from_millis(100));
        // Waits for the first caller's refresh.
        scope.spawn(|| s.get(&r).unwrap()).join().unwrap();
        first.join().unwrap();
    });
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!((s.stats().waits, s.stats().hits), (1, 0));
    // Threads that hit and end: their hits stay counted.
    for _ in 0..3 {
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        s.get(&r).unwrap();
                    }
                });
            }
        });
    }
    assert_eq!(s.stats().hits, 12_000);
    assert_eq!(s.stats().token_requests, 1);
}

use crate::cache::CacheLock;

/// A shared cache in memory, that can be told to fail.
#[derive(Default)]
struct Memory {
    entries: Mutex<HashMap<String, Vec<u8>>>,
    broken: std::sync::atomic::AtomicBool,
}

impl TokenCache for std::sync::Arc<Memory> {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn read(&self, key: &str, _: Duration) -> Result<Option<Vec<u8>>, String> {
        if self.broken.load(SeqCst) {
            return Err("broken".into());
        }
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }
    fn write(
        &self,
        key: &str,
        value: &[u8],
        _: std::time::SystemTime,
        _: Duration,
    ) -> Result<(), String> {
        if self.broken.load(SeqCst) {
            return Err("broken".into());
        }
        let mut map = self.entries.lock().unwrap();
        map.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    fn try_lock(&self, _: &str, _: Duration, _: Duration) -> Result<Option<CacheLock>, String> {
        Ok(Some(Box::new(())))
    }
}

#[test]
fn stats_count_the_shared_caches_reads_hits_writes_and_errors() {
    let memory = std::sync::Arc::new(Memory::default());
    let (a, _) = store(|_| Tok(3600));
    let a = a.token_cache(std::sync::Arc::clone(&memory));
    let r = TokenRequest::new("r");
    a.get(&r).unwrap();
    // Read, then under the lock read again, then write.
    let stats = a.stats();
    assert_eq!(
        (
            stats.shared_reads,
            stats.shared_hits,
            stats.shared_writes,
            stats.token_requests
        ),
        (2, 0, 1, 1)
    );
    // Another store (another process) on the same cache: a shared hit, no request.
    let (b, calls) = store(|_| Tok(3600));
    let b = b.token_cache(std::sync::Arc::clone(&memory));
    b.get(&r).unwrap();
    let stats = b.stats();
    assert_eq!(calls.load(SeqCst), 0);
    assert_eq!(
        (stats.shared_reads, stats.shared_hits, stats.token_requests),
        (1, 1, 0)
    );
    // A broken cache: each problem counted, the token from the network.
    memory.broken.store(true, SeqCst);
    let (c, _) = store(|_| Tok(3600));
    let c = c.token_cache(std::sync::Arc::clone(&memory));
    c.get(&r).unwrap();
    let stats = c.stats();
    assert_eq!(
        (
            stats.shared_errors,
            stats.shared_writes,
            stats.token_requests
        ),
        (3, 0, 1)
    );
}

#[test]
fn a_new_store_in_an_outage_takes_the_shared_caches_valid_token() {
    let memory = std::sync::Arc::new(Memory::default());
    let (a, _) = store(|_| Tok(3600));
    let a = a.token_cache(std::sync::Arc::clone(&memory));
    let r = TokenRequest::new("r");
    let written = a.get(&r).unwrap();
    // Another process, later, inside the token's margin, while the server is down: it
    // refreshes (no token of its own), fails, and takes the cache's still-valid token.
    let (b, calls) = store(|_| Fail);
    let b = b.token_cache(std::sync::Arc::clone(&memory));
    into_the_margin(&b);
    let got = b.get(&r).unwrap();
    assert_eq!(got.access_token(), written.access_token());
    assert_eq!(calls.load(SeqCst), 1);
    // Held now: the next calls get it at once, and the next try waits for the pause.
    assert!(timed_get(&b, &r, &written) < Duration::from_millis(100));
    settle(&b);
    assert_eq!(calls.load(SeqCst), 1);
    // Past its end there is nothing valid left: the error shows.
    b.inner.hooks.clock.run(Duration::from_secs(30));
    assert!(b.get(&r).is_err());
}

#[test]
fn debug_runs_the_caches_describe_with_no_lock_held() {
    // User code (a cache's `describe`, the formatter's output) never runs under the
    // store's lock: the probe finds the entries' lock free while it is asked.
    struct Probe {
        inner: std::sync::OnceLock<Arc<Inner>>,
        locked: std::sync::atomic::AtomicBool,
    }
    impl TokenCache for Arc<Probe> {
        fn describe(&self) -> String {
            if let Some(inner) = self.inner.get() {
                if inner.entries.try_lock().is_err() {
                    self.locked.store(true, SeqCst);
                }
            }
            "probe".into()
        }
        fn read(&self, _: &str, _: Duration) -> Result<Option<Vec<u8>>, String> {
            Ok(None)
        }
        fn write(&self, _: &str, _: &[u8], _: SystemTime, _: Duration) -> Result<(), String> {
            Ok(())
        }
        fn try_lock(&self, _: &str, _: Duration, _: Duration) -> Result<Option<CacheLock>, String> {
            Ok(Some(Box::new(())))
        }
    }
    let probe = Arc::new(Probe {
        inner: std::sync::OnceLock::new(),
        locked: std::sync::atomic::AtomicBool::new(false),
    });
    let (s, _) = store(|_| Tok(3600));
    let s = s.token_cache(Arc::clone(&probe));
    let _ = probe.inner.set(Arc::clone(&s.inner));
    s.get(&TokenRequest::new("r")).unwrap();
    let shown = format!("{s:?}");
    assert!(shown.contains("probe"), "{shown}");
    assert!(!probe.locked.load(SeqCst));
}
