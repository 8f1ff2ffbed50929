//! Speed and memory figures for the cache and the exchange, measured in one run:
//!
//! ```sh
//! cargo run --release --example bench                  # one `name: value unit` line per figure
//! cargo run --release --example bench --features redis # + the Redis figures
//! cargo run --release --example bench -- bearer        # bearer_overhead_ns alone
//! cargo run --release --example bench -- verify        # the Verifier's figures alone
//! cargo run --release --example bench -- subject       # hits of requests acting for a user
//! cargo run --release --example bench -- waiting       # what a caller waits: refresh ahead, junk kids
//! ```
//!
//! With `--features redis` (and `redis-sentinel,redis-cluster`: the Sentinel and Cluster
//! ones) it also measures a Redis shared cache, against a `redis-server` it starts on
//! 127.0.0.1. The token server is the tests' small loopback HTTP/1.1 server
//! (`tests/common/loopback.rs`) inside this program, answering every POST with a token and
//! counting requests, so the figures measure this crate and not a remote server.
//!
//! # The last measured values
//!
//! One run of the whole bench on 2026-12-07 after issues 31-34 landed (Rust 1.95.0, the
//! 2-core VM, load average under 1), with the release before them (`6e1128a`) run in the
//! same minutes in brackets: `clock_pair_ns` 43.2 (43.2), `go_floor_ns` 55.9 (56.1),
//! `arc_floor_ns` 53.3 (53.5), `hit_ns_1t` 55.1 (55.7; 0.99 x `go_floor_ns` both),
//! `hit_ns_2t` 54.5-65.2 in three runs (55.1-65.4), `hit_allocs` 0 (0),
//! `hit_ns_1t_with_file` 55.7 (55.2), `file_hit_us` 9.1, `refresh_spread_s` 29.57 (29.79),
//! `seal_open_us` 3.01, `seal_key_us` 0.50, `requests_per_refresh_32t` 1.00,
//! `request_token_us` 162.2, `request_token_reused_conn_us` 98.0, `bearer_overhead_ns` 320
//! (261: the 401's origin is now read from the redirect history ureq keeps for the
//! request), `verify_first_us` 495.2 (1.004 x `ring_es384_us` 493.0), `verify_again_ns` 166
//! (133: a repeat now checks that the key which verified the token is still the issuer's),
//! `verify_again_allocs` 0, `claims_clone_ns` 51.
//!
//! The waits of issue 31 (`-- waiting`, new): `refresh_ahead_slowest_get_us` 79.6 (120.1 in
//! an earlier run), the slowest of 1,177 `get` calls until the new token came through a
//! refresh ahead that took 2 s, where the caller that started the refresh used to wait all
//! of it (3,004 ms, measured from outside before the change); `junk_kid_refusal_us` 0.7
//! median, 5.6 at most for 50 made-up `kid`s in a row with no JWKS fetch for them, where
//! each waited out the rest of the 1 s cooldown before (1,001 ms at most; 200 of them took
//! 200 s).
//!
//! The run of 2026-12-04, after issues 23-26 landed (Rust 1.95.0, the
//! 2-core VM with CI building beside it, load average 2-3.5): `clock_pair_ns` 110.8,
//! `go_floor_ns` 98.1, `arc_floor_ns` 92.7, `hit_ns_1t` 105.1 (1.07 x `go_floor_ns`),
//! `hit_ns_2t` 143.4, `hit_allocs` 0, `hit_ns_1t_with_file` 108.6, `file_hit_us` 16.8,
//! `refresh_spread_s` 29.48, `seal_open_us` 6.25, `seal_key_us` 0.67,
//! `requests_per_refresh_32t` 1.00, `request_token_us` 692.0,
//! `request_token_reused_conn_us` 200.1, `bearer_overhead_ns` 1413, `verify_first_us` 932.5
//! (1.007 x `ring_es384_us` 927.4), `verify_again_ns` 183, `verify_again_allocs` 0,
//! `claims_clone_ns` 56.
//!
//! Acting for a user (issue 31), `-- subject` on 2026-12-07 (Rust 1.95.0, load average
//! 9-14 while others built), 3 runs alternating with the commit before (`6e1128a`, the same
//! bench file): `hit_ns_1t` 147.3-172.5 ns against 164.9-194.7 before, and in one full run
//! each 150.7 against 152.1 (0.94 and 0.93 x `go_floor_ns`), `hit_allocs` 0: the check of
//! a request's one flag costs nothing the noise shows. `hit_ns_1t_pat` (a personal access
//! token as a string) 144.2-171.1 ns, a hit like any other; `get_us_pat_file` 4.15-4.17 us
//! with 13 allocations per get (the file read, and the request keyed by a hash of what it
//! holds, at each get), where it was an 80 ns hit keyed by the path before.
//!
//! `bearer_overhead_ns` now compares, on one agent and one connection, a request the
//! `Bearer` fills against one carrying its own prebuilt header, which the middleware
//! passes through, so that it measures the middleware and not two connections' latencies
//! (before: −9,919 to +20,107 ns from run to run on the same machine). `-- bearer` on
//! 2026-12-04: 1,243, 962, 991, 1,122 and 1,121 ns (5 runs, load 10-13), then 1,242 and
//! 1,082 ns (load 2-3.5), each the median of 20,000 pairs (a loopback request 36-50 µs).
//! The rows below are the earlier figures, with their dates.
//!
//! Measured 2026-12-01 on a 2-core VM (Rust 1.95.0), whose speed drifted a lot that day
//! (`clock_pair_ns` between 42 and 89 ns), so read each run's figures against each other:
//!
//! | figure | value | what |
//! | --- | --- | --- |
//! | `go_floor_ns` | 54.2 ns fast window; 81.8–112.9 ns in 5 later runs | what Go's token source pays per call: one uncontended `Mutex` and both clocks |
//! | `arc_floor_ns` | 54.6 ns; 80.0–109.7 ns | both clocks plus an `Arc` clone and drop: what any hit returning `Arc<Token>` pays |
//! | `hit_ns_1t` | 57.3–57.4 ns (1.05–1.06 × `go_floor_ns`); 87.8–119.5 ns (1.04–1.12 ×, median 1.06) | `store.get` on a fresh token, one thread, with the counters of `TokenStore::stats` |
//! | `hit_ns_1t_uncounted` | 56.6–56.8 ns; 81.9–117.1 ns | the same without counting: the counters cost −1.5 to +2.4 ns, noise |
//! | `hit_ns_2t` | 57.0 ns; 0.79–1.0 × `hit_ns_1t` | per call, 2 threads on one key at once (goal ≤ 1.5 × `hit_ns_1t`) |
//! | `bearer_overhead_ns` (before 2026-12-04: two agents) | −855 to −957 ns (3 runs, each the median of 20,000 pairs; a loopback request 17.8–25.7 µs) | a request through a `Bearer` agent against the same request with the header set by hand on another agent: it depended on which connection was slower |
//! | `redis_hit_us` | standalone 60.5–79.7 µs, Sentinel 136.7–165.7 µs, Cluster 121.4–193.7 µs | the first `get` of a new store, served from Redis (new connections) |
//!
//! The Verifier (issue 25), measured 2026-12-04 with `cargo run --release --example bench --
//! verify`, the commit before the claims' text was shared (`7747126`) and after it run in
//! turn, 7 runs each, while other builds kept the 2-core VM busy (load average 4.1–6.6;
//! 3 earlier runs of the commit before at load 1.5):
//!
//! | figure | now | before | what |
//! | --- | --- | --- | --- |
//! | `verify_again_ns` | 152–308 ns, median 214 | 305–666 ns, median 494 (quieter: 308–374) | the same token again: the lookup, the audience and scope checks, the claims cloned out (goal ≤ 300 ns) |
//! | `verify_again_allocs` | 0 per call | 6 | heap allocations of a repeat, from the counting allocator |
//! | `claims_clone_ns` | 26–51 ns | 198–418 ns (quieter: 152–155) | of which the clone and drop of the returned `Claims`: reference counts instead of six strings |
//! | `verify_first_us` | 941–1278 µs, 1.007–1.011 × `ring_es384_us` (4 runs) | 933–1035 µs, 1.006–1.011 × (4 runs) | a token not seen before against ring's own ES384 verification (goal ≤ 1.05 ×) |
//!
//! The same commit's hit was 1.16–1.19 × `go_floor_ns` before that day's work (`hit_ns_2t`
//! 1.25–1.42 × `hit_ns_1t`). It is not under Go's cost: `arc_floor_ns`, the clone and drop
//! of the `Arc` that `get` returns plus the clock pair, equals `go_floor_ns` within ±1.5 ns
//! in every run (two atomic read-modify-writes either way), and the hit is 2–6 ns above it.
//! Only an accessor that lends the token instead of returning an `Arc` could go lower.
//!
//! The figures of 2026-11-29 (three runs after that day's change, with the previous
//! release, commit `00cc927`, measured in the same window; the VM was a third slower then
//! than an hour before):
//!
//! | figure | now | before | what |
//! | --- | --- | --- | --- |
//! | `floor_ns` | 51.0–63.1 ns | 51.1–63.9 ns | one `Instant::now()` plus one uncontended `Mutex` lock/unlock |
//! | `clock_pair_ns` | 80.4–88.9 ns | – | `Instant::now()` plus `SystemTime::now()`: what every hit reads |
//! | `hit_ns_1t` | 97.0–127.9 ns | 88.1–94.4 ns | `store.get` on a fresh token, one thread |
//! | `hit_ns_2t` | 119.0–157.6 ns | 510–596 ns | per call, 2 threads on one key at once (nproc is 2) |
//! | `refresh_spread_s` | 28.6–29.6 s | under 1 s (no jitter) | refresh points of 100 tokens fetched together (3600 s lifetime, 60 s margin) |
//! | `hit_ns_1t_with_file` | 123.4–128.0 ns | 91.3–95.5 ns | a hit with a token file: hits never touch it |
//! | `hit_ns_1t_with_redis` | 111.3 ns (1 run) | – | a hit with Redis as the shared cache: hits never touch it |
//! | `hit_allocs` | 0 per hit | 0 | heap allocations, from a counting allocator |
//! | `requests_per_refresh_32t` | 1.00 | 1.00 | token requests when 32 threads ask a fresh store at once (mean of 20 keys) |
//! | `file_hit_us` | 12.3–12.9 µs | 6.1–9.1 µs | the first `get` of a new store, served from the token file |
//! | `redis_hit_us` | 77.1 µs (1 run) | – | the first `get` of a new store, served from Redis (a new connection) |
//! | `request_token_us` | 176–190 µs | 116–134 µs | one `request_token` on a new connection (loopback) |
//! | `request_token_reused_conn_us` | 92–97 µs | 68–94 µs | the same on a pooled connection |
//!
//! The two `request_token` figures are not directly comparable across the columns: the
//! token server is now the tests' shared loopback server instead of the bench's own, and
//! its share of the difference has not been measured apart from the crate's. In the quiet
//! window an hour before, on the same hit path: `floor_ns` 43.0–44.2, `clock_pair_ns`
//! 55.8–56.8, `hit_ns_1t` 86.8–87.3, `hit_ns_2t` 88.1–118.6 (before: 342–491).
//!
//! A hit reads both clocks (the price of expiry that holds across suspend and clock steps)
//! and takes no lock, so threads don't queue: two threads cost about what one does, where
//! they cost five to seven times as much before. One thread pays the second clock read:
//! the hit was about 2.0 × `floor_ns`, 1.3–1.5 × `clock_pair_ns`.
//!
//! Sealing shared entries (2026-12-01, 11 alternating runs with `--features redis`, the
//! same tree built with and without sealing, medians and ranges, while others used the
//! VM): `file_hit_us` 7.7 µs (7.3–11.7) against 7.4 µs (7.0–11.0) without, +4 %;
//! `redis_hit_us` 50.3 µs (45.0–98.4) against 52.5 µs (45.6–79.6), no difference the noise
//! shows. A shared-cache hit is a process start's cost, not a hit's: `hit_ns_*` never touch
//! the cache. The cryptography alone:
//!
//! | figure | value | what |
//! | --- | --- | --- |
//! | `seal_open_us` | 4.50 µs median (4.32–7.08) | one entry with a 1 KiB token sealed (as a refresh writes it) and opened (as a shared-cache hit reads it) |
//! | `seal_key_us` | 0.85 µs median (0.81–0.92) | the seal key derived with HKDF-SHA256, once per process and secret |

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

use logto_m2m::{Config, Token, TokenRequest, TokenStore, request_token};
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
    // `-- verify`: only the Verifier's figures.
    if std::env::args().nth(1).as_deref() == Some("verify") {
        verify_figures();
        return;
    }
    // `-- waiting`: only the waits (refresh ahead, made-up `kid`s).
    if std::env::args().nth(1).as_deref() == Some("waiting") {
        waiting_figures();
        return;
    }
    // `-- subject`: only the hits of requests that act for a user.
    if std::env::args().nth(1).as_deref() == Some("subject") {
        subject_figures();
        return;
    }
    let server = token_server();
    let url = format!("http://127.0.0.1:{}/oidc/token", server.port());
    let config = Config::new(&url, "bench-app", "bench-secret-0123456789").unwrap();
    let store = TokenStore::new(config.clone());
    let request = TokenRequest::new("https://shopping.api").scope("read:products");

    hit_figures(&store, &request);
    file_figures(&config, &request, &server);

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
    request_token_figures(&config, &request);
    bearer_overhead();
    verify_figures();
    waiting_figures();
}

/// The floors, and `store.get` on a fresh token, on one thread and on several at once;
/// every one of those hits counted in the store's stats.
fn hit_figures(store: &TokenStore, request: &TokenRequest) {
    println!("floor_ns: {:.1} ns", floor_ns());
    // What every hit reads: both clocks (a token ends by whichever says so first).
    println!(
        "clock_pair_ns: {:.1} ns",
        median_ns(|| {
            black_box((Instant::now(), SystemTime::now()));
        })
    );
    // This thread's own copy of the token, as its hits return it.
    let token = store.get(request).unwrap();
    let hits_before = store.stats().hits;
    one_thread_hits(store, request, &token);
    let threads = threaded_hits(store, request);
    // Every hit was counted, on every thread: the calls above on this thread and those of
    // the threads.
    let one_thread = u64::from(CALLS_PER_BATCH / 10 + BATCHES as u32 * CALLS_PER_BATCH);
    let threaded = u64::from(CALLS_PER_BATCH / 2) * (3 * 2 + threads as u64);
    assert_eq!(
        store.stats().hits - hits_before,
        one_thread + threaded,
        "hits counted"
    );
}

/// `go_floor_ns`, `arc_floor_ns` and `hit_ns_1t`.
fn one_thread_hits(store: &TokenStore, request: &TokenRequest, token: &Arc<Token>) {
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
        black_box((Instant::now(), SystemTime::now(), Arc::clone(token)));
    };
    let counted = || {
        black_box(store.get(black_box(request)).unwrap());
    };
    let [go, arc, after] = interleaved_median_ns([&go_floor, &arc_floor, &counted]);
    println!(
        "go_floor_ns: {go:.1} ns (one uncontended Mutex and both clocks, what Go's token source pays per call)"
    );
    println!(
        "arc_floor_ns: {arc:.1} ns (both clocks and an Arc clone and drop, what a hit can't go below)"
    );
    println!("hit_ns_1t: {after:.1} ns ({:.2} x go_floor_ns)", after / go);
}

/// `hit_ns_2t` and `hit_ns_<nproc>t`: per call on each of N threads hitting the same key
/// at once. Returns nproc.
fn threaded_hits(store: &TokenStore, request: &TokenRequest) -> usize {
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let mut two = Vec::new();
    for _ in 0..3 {
        two.push(hammer_ns(store, request, 2));
    }
    println!("hit_ns_2t: {:.1} ns", median(&mut two));
    println!(
        "hit_ns_{threads}t: {:.1} ns (nproc = {threads})",
        hammer_ns(store, request, threads)
    );
    threads
}

/// `hit_ns_1t_with_file` (hits never touch the token file) and `file_hit_us` (a new store,
/// as in a fresh process, whose first `get` is served from the file).
fn file_figures(config: &Config, request: &TokenRequest, server: &Loopback) {
    let dir = std::env::temp_dir().join(format!("logto-m2m-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token.json");
    let with_file = TokenStore::new(config.clone()).cache_file(&file);
    with_file.get(request).unwrap();
    println!(
        "hit_ns_1t_with_file: {:.1} ns",
        median_ns(|| {
            black_box(with_file.get(black_box(request)).unwrap());
        })
    );
    let served_before = server.requests();
    println!(
        "file_hit_us: {:.1} us (first get of a new store, from the file)",
        median_us(200, || {
            let fresh = TokenStore::new(config.clone()).cache_file(&file);
            black_box(fresh.get(request).unwrap());
        })
    );
    assert_eq!(server.requests(), served_before, "file hits made requests");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `request_token_us` (a new Config per call has a new connection pool: connect, request,
/// response) and `request_token_reused_conn_us` (on a pooled connection).
fn request_token_figures(config: &Config, request: &TokenRequest) {
    println!(
        "request_token_us: {:.1} us",
        median_us(200, || {
            let fresh =
                Config::new(config.token_url(), "bench-app", "bench-secret-0123456789").unwrap();
            black_box(request_token(&fresh, request).unwrap());
        })
    );
    request_token(config, request).unwrap();
    println!(
        "request_token_reused_conn_us: {:.1} us",
        median_us(200, || {
            black_box(request_token(config, request).unwrap());
        })
    );
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

/// For `bearer_overhead`: a loopback server, keep-alive, that answers a POST with a
/// Logto-sized token (about 750 bytes) and anything else with `ok`.
fn bearer_server() -> Loopback {
    let token = format!("eyJhbGciOiJFUzM4NCJ9.{}.sig", "x".repeat(720));
    let body = format!(r#"{{"access_token":"{token}","expires_in":3600,"token_type":"Bearer"}}"#);
    Loopback::start(8, Duration::from_secs(600), move |c| {
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
    })
}

/// `pairs` pairs of one call of `a` and one of `b`, in alternating order: each pair's
/// difference `a - b` and each `b`, in ns. The median of the differences is robust to the
/// noise of a busy machine, which batches are not.
fn paired_ns(a: impl Fn(), b: impl Fn(), pairs: usize) -> (Vec<f64>, Vec<f64>) {
    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        f();
        started.elapsed().as_nanos() as f64
    };
    let mut differences = Vec::with_capacity(pairs);
    let mut b_ns = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let (a_ns, b_one) = if i % 2 == 0 {
            let a_ns = time(&a);
            (a_ns, time(&b))
        } else {
            let b_one = time(&b);
            (time(&a), b_one)
        };
        differences.push(a_ns - b_one);
        b_ns.push(b_one);
    }
    (differences, b_ns)
}

/// `bearer_overhead_ns`: what the middleware adds per request (the store hit, the header
/// value, the per-request redirect setting), on one agent with a `Bearer` and one
/// keep-alive connection to a loopback API whose token is Logto-sized (about 750 bytes): a
/// request the middleware fills against the same request carrying its own `Authorization`,
/// which the middleware passes through. Both take the same agent, connection and middleware
/// chain, so the difference is the filling alone, not two connections' latencies. Pairs of
/// one request each way, in alternating order; the median of the pairs' differences.
fn bearer_overhead() {
    let server = bearer_server();
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
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .middleware(bearer)
        .build()
        .into();
    let url = format!("{origin}/products");
    // Built once, as the middleware keeps its own: the request by hand pays a clone of it,
    // not the parsing of a 750-byte value, so the difference is the middleware's work.
    let authorization = ureq::http::HeaderValue::from_str(&format!(
        "Bearer {}",
        store.get(&request).unwrap().access_token()
    ))
    .unwrap();
    let call_filled = || {
        let mut r = agent.get(&url).call().unwrap();
        black_box(r.body_mut().read_to_string().unwrap());
    };
    let call_by_hand = || {
        let mut r = agent
            .get(&url)
            .header("authorization", authorization.clone())
            .call()
            .unwrap();
        black_box(r.body_mut().read_to_string().unwrap());
    };
    // Open the connection and warm both paths.
    call_filled();
    call_by_hand();
    const PAIRS: usize = 20_000;
    let (mut differences, mut by_hand_ns) = paired_ns(call_filled, call_by_hand, PAIRS);
    // One connection for the token, one for every API request: else the figure would
    // compare connections again.
    let connections = server.finish().connections;
    assert_eq!(
        connections, 2,
        "connections: one for the token, one for the API"
    );
    println!(
        "bearer_overhead_ns: {:.0} ns per request (filled by Bearer vs its own header passed \
         through, one agent and connection, median of {PAIRS} pairs; a loopback request \
         {:.1} us)",
        median(&mut differences),
        median(&mut by_hand_ns) / 1000.0
    );
}

/// The Verifier (issue 25), against a JWKS on loopback and Logto-sized ES384 tokens:
/// - `verify_first_us`: a token not seen before (header, key lookup, signature, claims,
///   remembering it), against `ring_es384_us`, ring's own ES384 verification of the same
///   signing input and signature, each token timed both ways in turn; and their ratio;
/// - `verify_again_ns`: the same token again (a lookup, the audience and scope checks,
///   the claims cloned out), and `verify_again_allocs`, its heap allocations;
/// - `claims_clone_ns`: of which the clone and drop of the returned `Claims`.
fn verify_figures() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};

    const TOKENS: usize = 400;
    let (_server, verifier, point, tokens) = verify_setup(TOKENS + 1);
    let scopes = ["read:products"];
    // The JWKS fetch happens here, on the extra token, not in the timings.
    verifier
        .verify(&tokens[TOKENS], "https://shopping.api", &scopes)
        .unwrap();
    let (mut ours, mut ring_only, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for (i, token) in tokens[..TOKENS].iter().enumerate() {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let time_ours = || {
            let start = Instant::now();
            black_box(
                verifier
                    .verify(black_box(token), "https://shopping.api", &scopes)
                    .unwrap(),
            );
            start.elapsed().as_nanos() as f64 / 1000.0
        };
        let time_ring = || {
            let start = Instant::now();
            // What a by-hand verifier does at least: decode the signature, verify.
            let sig = B64.decode(black_box(sig)).unwrap();
            let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &point);
            key.verify(black_box(input.as_bytes()), &sig).unwrap();
            start.elapsed().as_nanos() as f64 / 1000.0
        };
        // Each token both ways, the order alternating, so drift hits both alike.
        let (a, b) = if i % 2 == 0 {
            (time_ours(), time_ring())
        } else {
            let b = time_ring();
            (time_ours(), b)
        };
        ours.push(a);
        ring_only.push(b);
        ratios.push(a / b);
    }
    let (first, ring_us) = (median(&mut ours), median(&mut ring_only));
    // The median of each token's ratio: the pair ran back to back, so a busy machine
    // slows both alike.
    println!(
        "verify_first_us: {first:.1} us (ring_es384_us: {ring_us:.1} us; ratio, median per token: {:.3}; {TOKENS} Logto-sized ES384 tokens)",
        median(&mut ratios)
    );
    let token = &tokens[0];
    println!(
        "verify_again_ns: {:.0} ns",
        median_ns(|| {
            black_box(
                verifier
                    .verify(black_box(token), "https://shopping.api", &scopes)
                    .unwrap(),
            );
        })
    );
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..100_000 {
        black_box(
            verifier
                .verify(black_box(token), "https://shopping.api", &scopes)
                .unwrap(),
        );
    }
    let allocs = ALLOCATIONS.load(Relaxed) - before;
    println!(
        "verify_again_allocs: {} per call",
        allocs as f64 / 100_000.0
    );
    // Of which: the owned `Claims` that `verify` returns, cloned and dropped (shared
    // text: a reference count for each claim a Logto token has).
    let claims = verifier
        .verify(token, "https://shopping.api", &scopes)
        .unwrap();
    println!(
        "claims_clone_ns: {:.0} ns",
        median_ns(|| {
            black_box(black_box(&claims).clone());
        })
    );
}

/// For `verify_figures`: a JWKS server on loopback with one P-384 key, a `Verifier` of its
/// issuer, the key's public point, and `n` Logto-sized tokens it signed (about 750 bytes,
/// Logto's header and claims), each with its own `jti`.
fn verify_setup(n: usize) -> (Loopback, logto_m2m::Verifier, Vec<u8>, Vec<String>) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    let rng = SystemRandom::new();
    let alg = &ECDSA_P384_SHA384_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwks = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-384","alg":"ES384","use":"sig","kid":"bench","x":"{}","y":"{}"}}]}}"#,
        B64.encode(&point[1..49]),
        B64.encode(&point[49..])
    );
    let server = Loopback::start(10, Duration::from_secs(600), move |c| {
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{jwks}",
            jwks.len()
        );
        c.send(response.as_bytes());
    });
    let issuer = format!("http://127.0.0.1:{}/oidc", server.port());
    let verifier =
        logto_m2m::Verifier::logto(&format!("http://127.0.0.1:{}", server.port())).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = B64.encode(r#"{"alg":"ES384","typ":"at+jwt","kid":"bench"}"#);
    let tokens = (0..n)
        .map(|i| {
            let claims = format!(
                r#"{{"jti":"bench-{i:08}-0123456789abcdef","sub":"k9x2m4q7w1e5r8t3y6u0","iat":{now},"exp":{},"scope":"read:products write:products","client_id":"k9x2m4q7w1e5r8t3y6u0","iss":"{issuer}","aud":"https://shopping.api"}}"#,
                now + 3600
            );
            let input = format!("{header}.{}", B64.encode(claims));
            let sig = pair.sign(&rng, input.as_bytes()).unwrap();
            format!("{input}.{}", B64.encode(sig.as_ref()))
        })
        .collect();
    (server, verifier, point, tokens)
}

/// `-- subject`: `hit_ns_1t` beside the hit of a request with a personal access token as a
/// string (`hit_ns_1t_pat`: a hit like any other) and the `get` of one whose token is a
/// file (`get_us_pat_file`: the store reads the file and keys the request by a hash of it
/// at each call), with its heap allocations. The bench's token server answers the token
/// exchange like any POST.
fn subject_figures() {
    let server = token_server();
    let url = format!("http://127.0.0.1:{}/oidc/token", server.port());
    let config = Config::new(&url, "bench-app", "bench-secret-0123456789").unwrap();
    let store = TokenStore::new(config);
    let plain = TokenRequest::new("https://shopping.api").scope("read:products");
    let pat = "pat_0123456789abcdefghijklmnopqrstuv";
    let inline = plain.clone().personal_access_token(pat);
    let dir = std::env::temp_dir().join(format!("logto-m2m-bench-pat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pat");
    std::fs::write(&path, format!("{pat}\n")).unwrap();
    let from_file = plain
        .clone()
        .personal_access_token(logto_m2m::Secret::file(&path));
    for request in [&plain, &inline, &from_file] {
        store.get(request).unwrap();
    }
    let served_before = server.requests();
    let hit = || {
        black_box(store.get(black_box(&plain)).unwrap());
    };
    let hit_pat = || {
        black_box(store.get(black_box(&inline)).unwrap());
    };
    let [hit, hit_pat] = interleaved_median_ns([&hit, &hit_pat]);
    println!("hit_ns_1t: {hit:.1} ns");
    println!("hit_ns_1t_pat: {hit_pat:.1} ns (a personal access token given as a string)");
    println!(
        "get_us_pat_file: {:.2} us (a personal access token in a file, read at each get)",
        median_us(20_000, || {
            black_box(store.get(black_box(&from_file)).unwrap());
        })
    );
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..10_000 {
        black_box(store.get(&from_file).unwrap());
    }
    let allocs = ALLOCATIONS.load(Relaxed) - before;
    println!("get_allocs_pat_file: {} per get", allocs as f64 / 10_000.0);
    assert_eq!(server.requests(), served_before, "hits made requests");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What callers wait for, where the work is someone else's: `get` while a slow refresh
/// ahead runs (a token server taking 2 s to answer, 6 s tokens), and a `Verifier` refusing
/// 50 tokens with made-up `kid`s one after the other.
fn waiting_figures() {
    // The first token at once, every later one after 2 s.
    let server = Loopback::start(50, Duration::from_secs(120), |c| {
        loop {
            let n = c.request.n;
            if n > 0 && !c.pause(Duration::from_secs(2)) {
                return;
            }
            let json = format!(
                r#"{{"access_token":"eyJhbGciOiJFUzM4NCJ9.slow-{n}.sig","expires_in":6,"token_type":"Bearer"}}"#
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            );
            if !c.send(response.as_bytes()) || !c.next_request() {
                return;
            }
        }
    });
    let url = format!("http://127.0.0.1:{}/oidc/token", server.port());
    let config = Config::new(&url, "bench-app", "bench-secret-0123456789").unwrap();
    // The margin covers the refresh (half the lifetime at most: 3 s, the refresh starting
    // between 3 and 1.5 s before the end).
    let store = TokenStore::new(config).refresh_margin(Duration::from_secs(3));
    let request = TokenRequest::new("https://shopping.api");
    let first = store.get(&request).unwrap();
    let (mut slowest, mut calls) = (Duration::ZERO, 0u32);
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let token = store.get(&request).unwrap();
        let took = started.elapsed();
        if token.access_token() != first.access_token() || Instant::now() > give_up {
            break;
        }
        slowest = slowest.max(took);
        calls += 1;
        thread::sleep(Duration::from_millis(5));
    }
    println!(
        "refresh_ahead_slowest_get_us: {:.1} us (the slowest of {calls} calls until the new token came, through a refresh ahead that took 2 s; {} token requests)",
        slowest.as_nanos() as f64 / 1000.0,
        server.requests()
    );

    let (server, verifier, _point, tokens) = verify_setup(1);
    let scopes = ["read:products"];
    verifier
        .verify(&tokens[0], "https://shopping.api", &scopes)
        .unwrap();
    let fetches = server.requests();
    let (_, rest) = tokens[0].split_once('.').unwrap();
    let mut took = Vec::new();
    for i in 0..50 {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"ES384","typ":"at+jwt","kid":"junk-{i}"}}"#
        ));
        let junk = format!("{header}.{rest}");
        let started = Instant::now();
        assert!(
            verifier
                .verify(&junk, "https://shopping.api", &scopes)
                .is_err()
        );
        took.push(started.elapsed().as_nanos() as f64 / 1000.0);
    }
    let worst = took.iter().copied().fold(0.0, f64::max);
    println!(
        "junk_kid_refusal_us: {:.1} us median, {worst:.1} us at most (50 made-up kids in a row; {} jwks fetch(es) for them)",
        median(&mut took),
        server.requests() - fetches
    );
}
