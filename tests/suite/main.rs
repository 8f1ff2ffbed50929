//! The integration tests that can share one process, in one test binary: the harness
//! (`tests/common`) is built once for all of them.
//!
//! Where a new test goes: into the file of what it tests here, or into a new
//! `tests/suite/<topic>.rs` with its `mod <topic>;` below. A test binary of its own
//! (`tests/<name>.rs` with `mod common;`) only for a test that changes what the whole
//! process shares: a global logger (`tests/log_events.rs`, `tests/secret_file.rs`), the
//! environment (`tests/proxy_env.rs`), or any other process-wide setting. Tests against the
//! real Logto go to `tests/real_logto/`, one Logto for that binary.
//!
//! Tests here run in parallel threads of one process: a test that counts what a server saw
//! starts a server of its own (`Peer::start`), not `common::shared_peer`; a test that runs
//! one test of this binary in a child process names it with `common::test_name`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/fleet.rs"]
mod fleet;
#[path = "../common/opaque.rs"]
mod opaque;
#[path = "../common/redis_server.rs"]
mod redis_server;

mod api;
mod authlib;
mod cache_file;
mod cli;
mod examples;
mod faults;
mod fuzz_regressions;
mod layers;
mod organization;
mod peer_harness;
mod proxy;
mod readme;
mod recipes;
mod redis_cache;
mod redis_cluster;
mod redis_dns;
mod redis_fleet;
mod redis_sentinel;
mod redis_tls;
mod requests;
mod sealed_caches;
mod secrets;
mod store;
mod tls;
mod token;
mod urls;
mod verifier;
mod verifier_cli;
mod verifier_example;
mod verifier_hostile;
