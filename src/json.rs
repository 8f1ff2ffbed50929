//! Writing JSON by hand, for the few small objects this crate writes (the token file, a
//! cache entry, the command's `--format json`). miniserde's serializer would link tens of
//! kilobytes, its float printer included, into every binary for them.
//!
//! The command includes this file too (`#[path]`): it can use only the public API, and
//! this is no API.

/// Appends `s` as a JSON string: quotes and backslashes escaped, control characters as
/// `\u00XX`, everything else as is (JSON text is UTF-8).
pub(crate) fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `"name":` and `value` as a JSON string, or `null`.
pub(crate) fn push_field(out: &mut String, name: &str, value: Option<&str>) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    match value {
        Some(v) => push_string(out, v),
        None => out.push_str("null"),
    }
}
