//! Build-time facts the code and the tests branch on, from the environment cargo gives a
//! build script. No crate: only std.
//!
//! - `logto_real`: set when `LOGTO_REAL=1`, so that the tests against the real Logto run;
//!   without it they are compiled as `#[ignore]`d with the reason, and `cargo test` reports
//!   them as ignored, not as passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(logto_real)");
    println!("cargo::rerun-if-env-changed=LOGTO_REAL");
    if std::env::var("LOGTO_REAL").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=logto_real");
    }
}
