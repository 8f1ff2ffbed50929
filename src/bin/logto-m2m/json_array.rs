//! Where the items of a JSON array are, without parsing them into values: `call
//! --paginate` prints every page's items in one array, each item's bytes as the API sent
//! them, so it needs their boundaries and nothing else.
//!
//! It reads what a server sent, so it is written for hostile input: the whole text is
//! checked against RFC 8259's grammar (a page that is not one valid JSON array is printed as
//! it is instead, never cut into pieces), in one pass with no recursion (nesting is a count
//! of open brackets in a `Vec`, so a million `[` cost a megabyte, not the stack), and no
//! index can panic (every byte is read with `get`). The fuzz target `json_array`
//! (`fuzz/`) and `tests/suite/fuzz_regressions.rs` check it against miniserde.
//!
//! This file is also compiled into the fuzz target and the replay test (`#[path]`), so it
//! uses nothing of the command but std.

use std::ops::Range;

/// The byte ranges of the items of `text`'s top-level array, in order, each without the
/// white space around it; `None` when `text` is not exactly one JSON array (RFC 8259:
/// UTF-8, white space around it allowed, a byte order mark before it tolerated).
pub fn items(text: &[u8]) -> Option<Vec<Range<usize>>> {
    // JSON text is UTF-8 (RFC 8259 §8.1); checked once here, so that the scan below can
    // treat every byte from 0x80 up as part of a string.
    std::str::from_utf8(text).ok()?;
    let start = if text.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut i = space(text, start);
    if text.get(i) != Some(&b'[') {
        return None;
    }
    i = space(text, i + 1);
    let mut items = Vec::new();
    if text.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            let end = value(text, i)?;
            items.push(i..end);
            i = space(text, end);
            match text.get(i)? {
                b',' => i = space(text, i + 1),
                b']' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (space(text, i) == text.len()).then_some(items)
}

/// The index after the white space (RFC 8259: space, tab, line feed, carriage return) at
/// `i`.
fn space(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the JSON value that starts at `i` (no white space before it), or `None` when
/// none does. Iterative: `open` holds the closing bracket each enclosing array or object
/// waits for.
fn value(text: &[u8], mut i: usize) -> Option<usize> {
    let mut open: Vec<u8> = Vec::new();
    loop {
        // A value starts at `i`.
        match *text.get(i)? {
            b'[' => {
                i = space(text, i + 1);
                if text.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    open.push(b']');
                    continue;
                }
            }
            b'{' => {
                i = space(text, i + 1);
                if text.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    open.push(b'}');
                    i = key(text, i)?;
                    continue;
                }
            }
            b'"' => i = string(text, i)?,
            b't' => i = literal(text, i, b"true")?,
            b'f' => i = literal(text, i, b"false")?,
            b'n' => i = literal(text, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(text, i)?,
            _ => return None,
        }
        // A value ended at `i`: close what it completes, up to the next value, or return
        // once nothing is open.
        loop {
            let Some(&close) = open.last() else {
                return Some(i);
            };
            i = space(text, i);
            match *text.get(i)? {
                b',' => {
                    i = space(text, i + 1);
                    if close == b'}' {
                        i = key(text, i)?;
                    }
                    break;
                }
                c if c == close => {
                    open.pop();
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// An object member's `"name" :` at `i`; the index of its value.
fn key(text: &[u8], i: usize) -> Option<usize> {
    if text.get(i) != Some(&b'"') {
        return None;
    }
    let i = space(text, string(text, i)?);
    (text.get(i) == Some(&b':')).then(|| space(text, i + 1))
}

/// The end of the string whose opening quote is at `i`.
fn string(text: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *text.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = text.get(i + 2..i + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            // Control characters must be escaped inside a string.
            0x00..=0x1F => return None,
            _ => i += 1,
        }
    }
}

/// The end of `word` (`true`, `false` or `null`) at `i`.
fn literal(text: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i.checked_add(word.len())?;
    (text.get(i..end)? == word).then_some(end)
}

/// The end of the number at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number(text: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let from = i;
        while text.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > from).then_some(i)
    };
    if text.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match *text.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if text.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[cfg(test)]
mod test {
    use super::*;

    /// The items of `text` as strings, or `None`.
    fn split(text: &str) -> Option<Vec<&str>> {
        Some(
            items(text.as_bytes())?
                .into_iter()
                .map(|r| &text[r])
                .collect(),
        )
    }

    #[test]
    fn items_keep_their_bytes() {
        assert_eq!(split("[]"), Some(vec![]));
        assert_eq!(split(" \r\n\t[ ] \n"), Some(vec![]));
        assert_eq!(split("[1]"), Some(vec!["1"]));
        assert_eq!(
            split("[ {\"a\" : [1, 2] } ,\n\"x\",null ]\n"),
            Some(vec!["{\"a\" : [1, 2] }", "\"x\"", "null"])
        );
        assert_eq!(split("\u{FEFF}[true,false]"), Some(vec!["true", "false"]));
        assert_eq!(
            split("[-0.5e+10, 0, 1E3, -12, 3.25]"),
            Some(vec!["-0.5e+10", "0", "1E3", "-12", "3.25"])
        );
    }

    /// What a list of users with odd names looks like: quotes, backslashes and brackets
    /// inside strings are not structure.
    #[test]
    fn strings_hide_their_brackets_commas_and_quotes() {
        let text = r#"[{"name":"Q \"quoted\" \\ [1], {x}"},"a,b]","\u00e9\\","é ] }",{"k]":"[,"}]"#;
        assert_eq!(
            split(text),
            Some(vec![
                r#"{"name":"Q \"quoted\" \\ [1], {x}"}"#,
                r#""a,b]""#,
                r#""\u00e9\\""#,
                r#""é ] }""#,
                r#"{"k]":"[,"}"#,
            ])
        );
    }

    #[test]
    fn anything_else_is_not_an_array() {
        for text in [
            "",
            " ",
            "{}",
            "\"[]\"",
            "1",
            "null",
            "[",
            "]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[1]]",
            "[1] [2]",
            "[1] x",
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[+1]",
            "[tru]",
            "[True]",
            "[nul]",
            "[\"a]",
            "[\"\\x\"]",
            "[\"\\u12G4\"]",
            "[\"\\u12\"]",
            "[\"tab\there\"]",
            "[{\"a\"}]",
            "[{\"a\":}]",
            "[{\"a\":1,}]",
            "[{1:2}]",
            "[{\"a\":1 \"b\":2}]",
            "[[1}]",
            "[{\"a\":1]]",
            "[1]\u{FEFF}",
            "\u{00A0}[1]",
        ] {
            assert_eq!(split(text), None, "{text:?}");
        }
        // Not UTF-8: not JSON.
        assert_eq!(items(b"[\"\xFF\"]"), None);
    }

    #[test]
    fn hostile_nesting_costs_no_stack() {
        let depth = 1_000_000;
        let deep = format!("[{}{}]", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(items(deep.as_bytes()).map(|i| i.len()), Some(1));
        let objects = format!("[{}1{}]", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert_eq!(items(objects.as_bytes()).map(|i| i.len()), Some(1));
        let unclosed = format!("[{}", "[".repeat(depth));
        assert_eq!(items(unclosed.as_bytes()), None);
    }
}
