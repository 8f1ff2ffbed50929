//! Build-time facts the code and the tests branch on, from the environment cargo gives a
//! build script. No crate: only std.
//!
//! - `logto_real`: set when `LOGTO_REAL=1`, so that the tests against the real Logto run;
//!   without it they are compiled as `#[ignore]`d with the reason, and `cargo test` reports
//!   them as ignored, not as passed.
//! - `logto_file_lock`: set when the compiler is Rust 1.89 or newer, which has
//!   `std::fs::File::lock`: the token file's lock is then the OS's. Older compilers (the
//!   crate's rust-version is 1.85, Debian's) get a lease file instead (src/token_file.rs).
//!   Read from `$RUSTC --version`, as cargo gives it; a compiler that can't say is taken
//!   as an old one, whose lock builds everywhere.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(logto_real)");
    println!("cargo::rerun-if-env-changed=LOGTO_REAL");
    if std::env::var("LOGTO_REAL").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=logto_real");
    }

    println!("cargo::rustc-check-cfg=cfg(logto_file_lock)");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| version(&text));
    if version.is_some_and(|v| v >= (1, 89)) {
        println!("cargo::rustc-cfg=logto_file_lock");
    }
}

/// `(1, 89)` from `rustc 1.89.0 (29483883e 2025-08-04)` or `rustc 1.89.0-nightly`.
fn version(text: &str) -> Option<(u32, u32)> {
    let version = text.strip_prefix("rustc ")?.split(' ').next()?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
