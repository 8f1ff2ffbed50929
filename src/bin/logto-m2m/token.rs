//! `logto-m2m token`: an access token on stdout, alone, as a header, or as JSON.

use std::time::UNIX_EPOCH;

use logto_m2m::Token;

use crate::flags::{Format, Options};
use crate::output::Failure;
use crate::output::{rfc3339, unix_now, write_stdout};

pub(crate) fn run(opts: &Options) -> Result<(), Failure> {
    let token = crate::setup::fetch(opts)?;
    write_stdout(&format_token(&token, opts.format))
}

/// `--format json`, field by field in this order (miniserde keeps a struct's order).
#[derive(miniserde::Serialize)]
struct Json<'a> {
    access_token: &'a str,
    token_type: &'a str,
    /// Seconds left now, not the lifetime granted: a token from the cache file may be half
    /// used, and this is what a script wants to compare against.
    expires_in: i64,
    /// What was granted, never what was asked: "" when nothing was.
    scope: &'a str,
    expires_at: Option<String>,
    expires_at_unix: Option<i64>,
}

fn format_token(token: &Token, format: Format) -> String {
    match format {
        Format::Token => format!("{}\n", token.access_token()),
        Format::Header => format!("Authorization: Bearer {}\n", token.access_token()),
        Format::Json => {
            let expires_at = token
                .expires_at()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            let expires_in = match expires_at {
                Some(at) => at.saturating_sub(unix_now()).max(0),
                None => i64::try_from(token.expires_in().as_secs()).unwrap_or(i64::MAX),
            };
            let json = Json {
                access_token: token.access_token(),
                token_type: "Bearer",
                expires_in,
                scope: token.scope().unwrap_or(""),
                expires_at: expires_at.and_then(rfc3339),
                expires_at_unix: expires_at,
            };
            format!("{}\n", miniserde::json::to_string(&json))
        }
    }
}
