//! Server text made safe to put in an error: control characters and terminal escapes
//! gone, the client's own secrets redacted, the length bounded on a character boundary.

/// The most server text a descriptive field of an error keeps (`error_description`,
/// Logto's `message`, a transport error), in bytes.
pub(crate) const MAX_SERVER_TEXT: usize = 1024;

/// The most server text a code-like field keeps (`error`, `error_uri`, Logto's `code`, a
/// `token_type`), in bytes. With [`MAX_SERVER_TEXT`] this bounds a whole message to under
/// 4 KiB, whatever the server sends.
pub(crate) const MAX_SERVER_WORD: usize = 256;

/// Secrets that must never appear in an error, even when a server echoes them back.
///
/// Holds the app secret in the forms a server could echo: as configured, form-urlencoded
/// (as it went into the Basic header) and the Basic value itself; then, for a token
/// exchange, the subject token and the actor token.
#[derive(Default)]
pub(crate) struct Redactions<'a> {
    pub(crate) secrets: [&'a str; 5],
}

impl Redactions<'_> {
    /// Nothing to redact: for the public parser, which never sees a secret.
    pub(crate) const NONE: Redactions<'static> = Redactions { secrets: [""; 5] };
}

/// Secrets shorter than this are not searched for: redacting every `a` in a message for a
/// one-letter secret would garble it without protecting anything.
const MIN_REDACTED_LEN: usize = 4;

/// Makes server text safe for a one-line message: the client's secrets are replaced with
/// `[redacted]`, control and bidi-override characters (CR, LF, ESC of ANSI sequences, ...)
/// become spaces, runs of white space fold to one, and the result is cut to
/// [`MAX_SERVER_TEXT`] bytes on a char boundary.
pub(crate) fn sanitize(text: &str, redact: &Redactions<'_>) -> String {
    sanitize_to(text, redact, MAX_SERVER_TEXT)
}

/// [`sanitize`], cut to `max` bytes (plus the `…` that marks a cut).
pub(crate) fn sanitize_to(text: &str, redact: &Redactions<'_>, max: usize) -> String {
    let mut redacted;
    let mut text = text;
    for secret in redact.secrets {
        // `find`, not `contains`: std's two-way search, which `replace` links anyway;
        // `contains` adds its SSE2 fast path (7 KB of every program, for a cold path).
        if secret.len() >= MIN_REDACTED_LEN && text.find(secret).is_some() {
            redacted = text.replace(secret, "[redacted]");
            text = &redacted;
        }
    }
    let mut out = String::with_capacity(text.len().min(max + 4));
    let mut last_space = true; // trims leading white space
    for c in text.chars() {
        let c = if c.is_control() || is_format_override(c) {
            ' '
        } else {
            c
        };
        if c.is_whitespace() {
            if last_space {
                continue;
            }
            last_space = true;
            if out.len() + 1 > max {
                out.push('…');
                return out;
            }
            out.push(' ');
        } else {
            last_space = false;
            if out.len() + c.len_utf8() > max {
                out.push('…');
                return out;
            }
            out.push(c);
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Unicode characters that reorder or hide text on a terminal (bidi overrides and
/// isolates, zero-width marks): not control characters to `char::is_control`, but just as
/// able to make a log line lie.
fn is_format_override(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sanitize_strips_controls_and_ansi() {
        let s = sanitize(
            "bad\r\nX-Injected: 1\x1b[31m red \u{202E}evil\t",
            &Redactions::NONE,
        );
        assert_eq!(s, "bad X-Injected: 1 [31m red evil");
        assert!(!s.chars().any(char::is_control));
    }

    #[test]
    fn sanitize_truncates_on_char_boundary() {
        let long = "é".repeat(2000);
        let s = sanitize(&long, &Redactions::NONE);
        assert!(s.len() <= MAX_SERVER_TEXT + '…'.len_utf8());
        assert!(s.ends_with('…'));
        assert!(s.trim_end_matches('…').chars().all(|c| c == 'é'));
    }

    #[test]
    fn sanitize_redacts_secrets() {
        let r = Redactions {
            secrets: ["s3cret-value", "s3cret%2Dvalue", "QmFzaWM=", "", ""],
        };
        let s = sanitize("got s3cret-value and QmFzaWM= and s3cret%2Dvalue", &r);
        assert_eq!(s, "got [redacted] and [redacted] and [redacted]");
    }
}
