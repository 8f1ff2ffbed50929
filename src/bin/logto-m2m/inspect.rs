//! `logto-m2m inspect`: the claims of a JWT access token that explain most failures, from
//! stdin or fetched as `token` would. The signature is not verified.

use logto_m2m::Claims;

use crate::flags::Options;
use crate::input::read_stdin_token;
use crate::output::{Failure, rfc3339, unix_now, write_stdout};

pub(crate) fn run(opts: &Options) -> Result<(), Failure> {
    let text = if opts.stdin {
        claims_text(&read_stdin_token()?, unix_now())?
    } else {
        let token = crate::setup::fetch(opts)?;
        claims_text(token.access_token(), unix_now())?
    };
    write_stdout(&text)
}

/// `inspect`'s output for `token` at Unix time `now`: the claims that explain most
/// refusals, in the order one reads them (who issued it, to whom, for which API and
/// permissions, and when). Never the token itself.
fn claims_text(token: &str, now: i64) -> Result<String, Failure> {
    let claims = Claims::from_jwt(token).ok_or_else(|| {
        Failure::Token(
            "the token is not a JWT (three base64url parts, the middle one a JSON object): it \
             is opaque, and only the server that issued it can say what it grants"
                .into(),
        )
    })?;
    let mut out = String::from("signature: not verified (this shows what the token claims)\n");
    let mut line = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push_str(&format!("{name}: {v}\n"));
        }
    };
    line("iss", claims.iss.as_deref().map(printable));
    line("sub", claims.sub.as_deref().map(printable));
    line("client_id", claims.client_id.as_deref().map(printable));
    let aud: Vec<String> = claims.aud.iter().map(|a| printable(a)).collect();
    line("aud", (!aud.is_empty()).then(|| aud.join(", ")));
    // No scope claim is the answer to a 403: the server granted nothing.
    line(
        "scope",
        Some(match &claims.scope {
            Some(scope) => printable(scope),
            None => "(none: no scope granted)".into(),
        }),
    );
    line(
        "organization_id",
        claims.organization_id.as_deref().map(printable),
    );
    line("iat", claims.iat.map(|t| time_claim("iat", t, now)));
    line("exp", claims.exp.map(|t| time_claim("exp", t, now)));
    Ok(out)
}

/// A claim's text as Rust's `escape_debug` writes it: control characters and invisible
/// format characters (bidi overrides, zero-width marks) escaped, so a hostile token can't
/// send terminal escape sequences to whoever inspects it, nor hide text from them.
fn printable(s: &str) -> String {
    s.escape_debug().to_string()
}

/// `exp` or `iat` as RFC 3339 with the time from now: "(in 59m 12s)", "(expired 3m ago)".
fn time_claim(name: &str, t: i64, now: i64) -> String {
    let when = rfc3339(t).unwrap_or_else(|| t.to_string());
    let relative = match (t >= now, name) {
        (true, "exp") => format!("in {}", span(t - now)),
        (false, "exp") => format!("expired {} ago", span(now - t)),
        // An `iat` in the future means the issuer's clock is ahead of ours.
        (true, _) if t > now => format!("in {}, clock skew?", span(t - now)),
        (true, _) => "now".into(),
        (false, _) => format!("{} ago", span(now - t)),
    };
    format!("{t} = {when} ({relative})")
}

/// The two largest units of a span: "1d 2h", "59m 12s", "3s".
fn span(secs: i64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut left = secs.max(0);
    let mut parts = Vec::new();
    for (size, unit) in units {
        if left >= size || (size == 1 && parts.is_empty()) {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && left == 0) {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod test {
    use super::*;
    use base64::Engine;

    #[test]
    fn spans() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(3552), "59m 12s");
        assert_eq!(span(180), "3m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(90_061), "1d 1h");
    }

    #[test]
    fn claims() {
        let payload = base64::engine::general_purpose::URL_SAFE.encode(
            r#"{"aud":["https://a","https://b"],"sub":"x\u001b[31m\u202e","exp":1000,"iat":1e3,"jti":"jj"}"#,
        );
        assert!(payload.ends_with('='), "padding is accepted too");
        let Ok(text) = claims_text(&format!("eyJ.{payload}.sig"), 1180) else {
            panic!("not read as a JWT");
        };
        assert_eq!(
            text,
            "signature: not verified (this shows what the token claims)\n\
             sub: x\\u{1b}[31m\\u{202e}\n\
             aud: https://a, https://b\n\
             scope: (none: no scope granted)\n\
             iat: 1000 = 1970-01-01T00:16:40Z (3m ago)\n\
             exp: 1000 = 1970-01-01T00:16:40Z (expired 3m ago)\n"
        );
        for not_jwt in ["opaque", "a.b", "a.%%%.c", "a.bnVsbA.c"] {
            assert!(claims_text(not_jwt, 0).is_err(), "{not_jwt}");
        }
    }
}
