//! `get_token` runs as the processes of a fleet sharing one Redis (`LOGTO_CACHE_URL`), each
//! in its own empty working directory with no token file: the recipe of the README's "Many
//! hosts", for the tests of each Redis deployment (`tests/redis_*.rs`).
//!
//! Test files include it with `#[path = "common/fleet.rs"] mod fleet;` next to `mod common;`.

// Each test binary uses only part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{SHOPPING_API, TempDir, example_path, program};

/// `LOGTO_TIMEOUT` of every run: also the lease of the refresh lock.
pub const TIMEOUT_S: u64 = 4;

/// What a run may take beyond its timeout on a loaded machine (process start and exit).
pub const SLACK: Duration = Duration::from_millis(1500);

/// `get_token` for `app` at `token_url`, sharing tokens through the Redis at `redis`, with
/// `env` on top; in its own empty working directory (returned, to keep it alive until the
/// run ends).
pub fn get_token(
    token_url: &str,
    (id, secret): (&str, &str),
    redis: &str,
    env: &[(&str, &str)],
) -> (Command, TempDir) {
    let dir = TempDir::new("fleet");
    let mut cmd = program(example_path("get_token"));
    cmd.current_dir(dir.path())
        .env("LOGTO_TOKEN_URL", token_url)
        .env("LOGTO_APP_ID", id)
        .env("LOGTO_APP_SECRET", secret)
        .env("LOGTO_RESOURCE", SHOPPING_API)
        .env("LOGTO_SCOPES", "read:products")
        .env("LOGTO_TIMEOUT", TIMEOUT_S.to_string())
        .env("LOGTO_CACHE_URL", redis)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    (cmd, dir)
}

/// Runs one command to its end; its output and how long it took.
pub fn timed_run((mut cmd, _dir): (Command, TempDir)) -> (Output, Duration) {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    (out, started.elapsed())
}

/// The token a finished run printed, and its stderr; panics if it failed.
#[track_caller]
pub fn token_of(out: Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "get_token failed: {stderr}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!token.is_empty(), "no token; stderr: {stderr}");
    (token, stderr)
}

/// Runs the commands at once; returns their outputs.
pub fn at_once(cmds: Vec<(Command, TempDir)>) -> Vec<Output> {
    let children: Vec<(Child, TempDir)> = cmds
        .into_iter()
        .map(|(mut c, dir)| {
            (
                c.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
                dir,
            )
        })
        .collect();
    children
        .into_iter()
        .map(|(child, _dir)| child.wait_with_output().unwrap())
        .collect()
}

/// Eight runs at once, then their tokens, which must all be the same; panics if any failed
/// or warned.
#[track_caller]
pub fn eight_at_once(make: impl Fn() -> (Command, TempDir)) -> String {
    let outs = at_once((0..8).map(|_| make()).collect());
    let runs: Vec<(String, String)> = outs.into_iter().map(token_of).collect();
    for (_, stderr) in &runs {
        assert!(!stderr.contains("warning"), "{stderr}");
    }
    assert!(
        runs.iter().all(|(t, _)| *t == runs[0].0),
        "the runs got different tokens"
    );
    runs[0].0.clone()
}
