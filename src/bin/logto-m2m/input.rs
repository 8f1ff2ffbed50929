//! What a command reads besides its flags and variables: a token on stdin (`inspect -`,
//! `verify`), and `call`'s `--data`.

use std::io::{self, Read};

use crate::flags::Options;
use crate::output::Failure;

/// The most of stdin read for a token: far more than any access token.
const MAX_STDIN: u64 = 64 * 1024;

/// The token on stdin: a bare token, `Bearer <token>`, or a whole `Authorization:` line
/// (so `logto-m2m token --format header | logto-m2m inspect -` works too).
pub(crate) fn read_stdin_token() -> Result<String, Failure> {
    let mut bytes = Vec::new();
    io::stdin()
        .take(MAX_STDIN)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Token(format!("reading stdin: {e}")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| Failure::Token("stdin is not UTF-8 text".into()))?;
    let mut token = text.trim();
    for prefix in ["Authorization:", "authorization:"] {
        token = token.strip_prefix(prefix).unwrap_or(token).trim_start();
    }
    token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    if token.is_empty() {
        return Err(Failure::Token("no token on stdin".into()));
    }
    Ok(token.to_owned())
}

/// `--data`: the text itself, `@file`, or `@-` for stdin.
pub(crate) fn body(opts: &Options) -> Result<Option<Vec<u8>>, Failure> {
    let read = |mut from: Box<dyn Read>, what: &str| {
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes)
            .map_err(|e| Failure::Usage(format!("--data: reading {what}: {e}")))?;
        Ok(Some(bytes))
    };
    match opts.data.as_deref() {
        None => Ok(None),
        Some("@-") => read(Box::new(io::stdin()), "stdin"),
        Some(d) if d.starts_with('@') => {
            let path = &d[1..];
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::Usage(format!("--data @{path}: {e}")))?;
            read(Box::new(file), path)
        }
        Some(text) => Ok(Some(text.as_bytes().to_vec())),
    }
}
