//! Speed and memory figures for the cache and the exchange, measured in one run:
//!
//! ```sh
//! cargo run --release --example bench
//! ```
//!
//! Prints one `name: value unit` line per figure; with `--features redis` also the figures
//! of a Redis shared cache, against a `redis-server` it starts on 127.0.0.1. The token server is the tests' small
//! loopback HTTP/1.1 server (`tests/common/loopback.rs`) inside this program, answering
//! every POST with a token and counting requests, so the figures measure this crate and
//! not a remote server.

#[path = "../tests/common/loopback.rs"]
mod loopback;
#[cfg(feature = "redis")]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use logto_m2m::{Config, TokenRequest, TokenStore, request_token};
use loopback::Loopback;

/// Counts heap allocations, to show that a cache hit makes none.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// The only unsafe code in the project: a global allocator must be `unsafe impl`. It
// forwards every call to the system allocator and counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const BATCHES: usize = 11;
const CALLS_PER_BATCH: u32 = 1_000_000;

fn main() {
    // `-- bearer`: only that figure, for work on the middleware.
    if std::env::args().nth(1).as_deref() == Some("bearer") {
        bearer_overhead();
        return;
    }
    let server = token_server();
    let url = format!("http://127.0.0.1:{}/oidc/token", server.port());
    let config = Config::new(&url, "bench-app", "bench-secret-0123456789").unwrap();

    println!("floor_ns: {:.1} ns", floor_ns());
    // What every hit reads: both clocks (a token ends by whichever says so first).
    println!(
        "clock_pair_ns: {:.1} ns",
        median_ns(|| {
            black_box((Instant::now(), SystemTime::now()));
        })
    );

    let store = TokenStore::new(config.clone());
    let request = TokenRequest::new("https://shopping.api").scope("read:products");
    // This thread's own copy of the token, as its hits return it.
    let token = store.get(&request).unwrap();
    let hits_before = store.stats().hits;
    // A hit against Go's per-call cost and the floor of any hit, and without and with its
    // counting (the state before `TokenStore::stats` and after): batches of the four taken
    // in turn, so that a busy moment of the machine weighs on all alike.
    //
    // Go's `oauth2.ReuseTokenSource` per call, the floor a hit is held to: one
    // uncontended `Mutex` lock and unlock and `time.Now()`, which reads both clocks.
    let mutex = Mutex::new(0u64);
    let go_floor = || {
        let guard = mutex.lock().unwrap();
        black_box((Instant::now(), SystemTime::now(), &*guard));
    };
    // What any hit that returns an `Arc<Token>` pays whatever its lookup: both clocks, and
    // the `Arc`'s clone and the caller's drop (two atomic read-modify-writes, as the
    // Mutex's lock and unlock are).
    let arc_floor = || {
        black_box((Instant::now(), SystemTime::now(), Arc::clone(&token)));
    };
    let counted = || {
        black_box(store.get(black_box(&request)).unwrap());
    };
    let [go, arc, after] = interleaved_median_ns([&go_floor, &arc_floor, &counted]);
    println!(
        "go_floor_ns: {go:.1} ns (one uncontended Mutex and both clocks, what Go's token source pays per call)"
    );
    println!(
        "arc_floor_ns: {arc:.1} ns (both clocks and an Arc clone and drop, what a hit can't go below)"
    );
    println!("hit_ns_1t: {after:.1} ns ({:.2} x go_floor_ns)", after / go);
    // Per call on each of N threads hitting the same key at once.
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let mut two = Vec::new();
    for _ in 0..3 {
        two.push(hammer_ns(&store, &request, 2));
    }
    println!("hit_ns_2t: {:.1} ns", median(&mut two));
    println!(
        "hit_ns_{threads}t: {:.1} ns (nproc = {threads})",
        hammer_ns(&store, &request, threads)
    );
    // Every hit was counted, on every thread: the calls above on this thread and those of
    // the threads.
    let one_thread = u64::from(CALLS_PER_BATCH / 10 + BATCHES as u32 * CALLS_PER_BATCH);
    let threaded = u64::from(CALLS_PER_BATCH / 2) * (3 * 2 + threads as u64);
    assert_eq!(
        store.stats().hits - hits_before,
        one_thread + threaded,
        "hits counted"
    );

    // The same with a token file: hits never touch it.
    let dir = std::env::temp_dir().join(format!("logto-m2m-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token.json");
    let with_file = TokenStore::new(config.clone()).cache_file(&file);
    with_file.get(&request).unwrap();
    println!(
        "hit_ns_1t_with_file: {:.1} ns",
        median_ns(|| {
            black_box(with_file.get(black_box(&request)).unwrap());
        })
    );
    // A new store (as in a fresh process) whose first `get` is served from the file.
    let served_before = server.requests();
    println!(
        "file_hit_us: {:.1} us (first get of a new store, from the file)",
        median_us(200, || {
            let fresh = TokenStore::new(config.clone()).cache_file(&file);
            black_box(fresh.get(&request).unwrap());
        })
    );
    assert_eq!(server.requests(), served_before, "file hits made requests");
    let _ = std::fs::remove_dir_all(&dir);

    // What the bench can't call: the refresh jitter's spread, and sealing as the store
    // does for every shared cache (one entry with a Logto-sized token, 1 KiB, sealed as a
    // refresh writes it and opened as a shared-cache hit reads it; the key it seals with,
    // derived once per config and secret).
    for (name, value, note) in logto_m2m::internal::figures() {
        println!("{name}: {value:.2} {note}");
    }

    #[cfg(feature = "redis")]
    redis_figures(&config, &request, &server);

    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..100_000 {
        black_box(store.get(&request).unwrap());
    }
    let allocs = ALLOCATIONS.load(Relaxed) - before;
    println!("hit_allocs: {} per hit", allocs as f64 / 100_000.0);

    println!(
        "requests_per_refresh_32t: {:.2} requests (mean of 20 fresh keys)",
        requests_per_refresh(&config, &server, 32, 20)
    );

    // A new Config per call has a new connection pool: connect + request + response.
    let template = config.clone();
    println!(
        "request_token_us: {:.1} us",
        median_us(200, || {
            let fresh =
                Config::new(template.token_url(), "bench-app", "bench-secret-0123456789").unwrap();
            black_box(request_token(&fresh, &request).unwrap());
        })
    );
    request_token(&config, &request).unwrap();
    println!(
        "request_token_reused_conn_us: {:.1} us",
        median_us(200, || {
            black_box(request_token(&config, &request).unwrap());
        })
    );

    bearer_overhead();
}

/// With `--features redis`: the same two figures with a Redis shared cache, against a
/// `redis-server` of our own on a free 127.0.0.1 port (stopped on return).
#[cfg(feature = "redis")]
fn redis_figures(config: &Config, request: &TokenRequest, server: &Loopback) {
    let redis = redis_server::RedisServer::start();
    let cache = || logto_m2m::RedisCache::new(&redis.url()).unwrap();
    let shared = TokenStore::new(config.clone()).token_cache(cache());
    shared.get(request).unwrap();
    println!(
        "hit_ns_1t_with_redis: {:.1} ns",
        median_ns(|| {
            black_box(shared.get(black_box(request)).unwrap());
        })
    );
    redis_hit_us(
        "redis_hit_us",
        "one server",
        &redis.url(),
        config,
        request,
        server,
    );
    drop(redis);
    #[cfg(feature = "redis-sentinel")]
    {
        let set = redis_server::SentinelSet::start();
        let what = "master found through one sentinel";
        redis_hit_us(
            "redis_hit_us_sentinel",
            what,
            &set.url(),
            config,
            request,
            server,
        );
    }
    #[cfg(feature = "redis-cluster")]
    {
        let cluster = redis_server::ClusterSet::start(3);
        let what = "three masters, the slot map asked of one";
        redis_hit_us(
            "redis_hit_us_cluster",
            what,
            &cluster.url(1),
            config,
            request,
            server,
        );
    }
}

/// The first `get` of a new store with a new `RedisCache` at `url` (as in a fresh process),
/// served from Redis: finding the server, connecting, reading.
#[cfg(feature = "redis")]
fn redis_hit_us(
    name: &str,
    what: &str,
    url: &str,
    config: &Config,
    request: &TokenRequest,
    server: &Loopback,
) {
    let cache = || logto_m2m::RedisCache::new(url).unwrap();
    // The entry, written by a first store.
    TokenStore::new(config.clone())
        .token_cache(cache())
        .get(request)
        .unwrap();
    let served_before = server.requests();
    println!(
        "{name}: {:.1} us (first get of a new store, from redis: {what})",
        median_us(200, || {
            let fresh = TokenStore::new(config.clone()).token_cache(cache());
            black_box(fresh.get(request).unwrap());
        })
    );
    assert_eq!(server.requests(), served_before, "redis hits made requests");
}

/// One `Instant::now()` and one uncontended lock/unlock: what a hit can't go below.
fn floor_ns() -> f64 {
    let mutex = Mutex::new(0u64);
    median_ns(|| {
        let now = Instant::now();
        let guard = mutex.lock().unwrap();
        black_box((&now, &*guard));
    })
}

/// The median over batches of the mean time per call, for each of `fs`, their batches
/// taken in turn.
fn interleaved_median_ns<const N: usize>(fs: [&dyn Fn(); N]) -> [f64; N] {
    for f in fs {
        for _ in 0..CALLS_PER_BATCH / 10 {
            f();
        }
    }
    let mut batches: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for _ in 0..BATCHES {
        for (f, times) in fs.iter().zip(&mut batches) {
            let start = Instant::now();
            for _ in 0..CALLS_PER_BATCH {
                f();
            }
            times.push(start.elapsed().as_nanos() as f64 / f64::from(CALLS_PER_BATCH));
        }
    }
    batches.map(|mut times| median(&mut times))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median over batches of the mean time per call.
fn median_ns(mut f: impl FnMut()) -> f64 {
    for _ in 0..CALLS_PER_BATCH / 10 {
        f();
    }
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS_PER_BATCH {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(CALLS_PER_BATCH)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[BATCHES / 2]
}

fn median_us(n: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

/// Per-call time seen by each of `threads` threads calling `get` on one key at once.
fn hammer_ns(store: &TokenStore, request: &TokenRequest, threads: usize) -> f64 {
    let calls = CALLS_PER_BATCH / 2;
    let barrier = Barrier::new(threads);
    let mut per_call: Vec<f64> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..calls {
                        black_box(store.get(request).unwrap());
                    }
                    start.elapsed().as_nanos() as f64 / f64::from(calls)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

/// Token requests the server sees when `threads` threads ask a fresh store for a key at
/// once, averaged over `rounds` fresh keys.
fn requests_per_refresh(config: &Config, server: &Loopback, threads: usize, rounds: u32) -> f64 {
    let store = TokenStore::new(config.clone());
    let before = server.requests();
    for round in 0..rounds {
        let request = TokenRequest::new("https://shopping.api").scope(&format!("scope-{round}"));
        let barrier = Barrier::new(threads);
        thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    store.get(&request).unwrap();
                });
            }
        });
    }
    (server.requests() - before) as f64 / f64::from(rounds)
}

/// A token endpoint with keep-alive, a thread per connection.
fn token_server() -> Loopback {
    // The run opens about 210 connections (one per fresh `Config`); none needs to outlive
    // the run, which takes well under ten minutes.
    Loopback::start(1000, Duration::from_secs(600), |c| {
        loop {
            let n = c.request.n;
            let json = format!(
                r#"{{"access_token":"eyJhbGciOiJFUzM4NCJ9.bench-{n}.sig","expires_in":3600,"token_type":"Bearer","scope":"read:products"}}"#
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            );
            if !c.send(response.as_bytes()) || !c.next_request() {
                return;
            }
        }
    })
}

/// `bearer_overhead_ns`: a request through a `Bearer` agent against the same request with
/// the header set by hand, on one keep-alive connection to a loopback API whose token is
/// Logto-sized (about 750 bytes): what the middleware adds per request (the store hit, the
/// header value, the per-request redirect setting). Batches of each taken in turn; the
/// median of the batches' differences.
fn bearer_overhead() {
    let token = format!("eyJhbGciOiJFUzM4NCJ9.{}.sig", "x".repeat(720));
    let body = format!(r#"{{"access_token":"{token}","expires_in":3600,"token_type":"Bearer"}}"#);
    let server = Loopback::start(8, Duration::from_secs(600), move |c| {
        loop {
            let answer = if c.request.method() == "POST" {
                body.as_str()
            } else {
                "ok"
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if !c.send(response.as_bytes()) || !c.next_request() {
                return;
            }
        }
    });
    let origin = format!("http://127.0.0.1:{}", server.port());
    let config = Config::new(
        &format!("{origin}/oidc/token"),
        "bench-app",
        "bench-secret-0123456789",
    )
    .unwrap();
    let store = std::sync::Arc::new(TokenStore::new(config));
    let request = TokenRequest::new("https://shopping.api");
    let bearer = logto_m2m::Bearer::new(store.clone(), request.clone(), &origin).unwrap();
    let agent = |bearer: Option<logto_m2m::Bearer>| -> ureq::Agent {
        let builder = ureq::Agent::config_builder().proxy(None);
        match bearer {
            Some(b) => builder.middleware(b).build().into(),
            None => builder.build().into(),
        }
    };
    let (with, by_hand) = (agent(Some(bearer)), agent(None));
    let url = format!("{origin}/products");
    let authorization = format!("Bearer {}", store.get(&request).unwrap().access_token());
    let call_with = || {
        let mut r = with.get(&url).call().unwrap();
        black_box(r.body_mut().read_to_string().unwrap());
    };
    let call_by_hand = || {
        let mut r = by_hand
            .get(&url)
            .header("authorization", &authorization)
            .call()
            .unwrap();
        black_box(r.body_mut().read_to_string().unwrap());
    };
    // Warm both connections.
    call_with();
    call_by_hand();
    // Pairs of one request each way, in alternating order, and the median of the pairs'
    // differences: robust to the noise of a busy machine, which batches are not.
    const PAIRS: usize = 20_000;
    let mut differences = Vec::with_capacity(PAIRS);
    let mut by_hand_ns = Vec::with_capacity(PAIRS);
    for i in 0..PAIRS {
        let time = |f: &dyn Fn()| {
            let started = Instant::now();
            f();
            started.elapsed().as_nanos() as f64
        };
        let (a, b) = if i % 2 == 0 {
            let a = time(&call_with);
            (a, time(&call_by_hand))
        } else {
            let b = time(&call_by_hand);
            (time(&call_with), b)
        };
        differences.push(a - b);
        by_hand_ns.push(b);
    }
    println!(
        "bearer_overhead_ns: {:.0} ns per request (through Bearer vs the header by hand, \
         median of {PAIRS} pairs; a loopback request {:.1} us)",
        median(&mut differences),
        median(&mut by_hand_ns) / 1000.0
    );
    drop(server);
}
