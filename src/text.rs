//! Small text readers and writers, by hand, for the library.
//!
//! - JSON strings and fields, for the few small objects written (the token file, a cache
//!   entry): miniserde's serializer would link tens of kilobytes, its float printer
//!   included, into every binary for them.
//! - `Leaf`, a JSON value as the parsers that read only the fields they know (the token
//!   response, JWT claims) keep it, and `Skip` for what they don't.
//! - Seconds such as `2.5`, for `LOGTO_TIMEOUT` (and the command's `--timeout`, which
//!   stands in for it through `Config::from_vars`), without floating point, which would
//!   link float parsing for this one value.

use std::time::Duration;

use miniserde::de::{Map, Seq, Visitor};

/// Whether `needle` occurs in `haystack`, by a plain scan: for the few short texts of
/// errors. `str::contains` with a `&str` links its two-way searcher (4.7 KB) into every
/// binary that uses the crate.
pub(crate) fn contains(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w == needle)
}

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

/// A positive number of seconds, `10`, `2.5` or `.25`: digits, at most one dot, up to
/// nanoseconds (further digits are cut, as a float would round them away).
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, &'static str> {
    const NAN: &str = "not a number of seconds";
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(NAN);
    }
    // Past nine digits the fraction is below a nanosecond: cut, as a float would round.
    let mut nanos = 0u32;
    for (i, b) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    let secs = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too many seconds")?
    };
    Some(Duration::new(secs, nanos))
        .filter(|d| !d.is_zero())
        .ok_or("not a positive number of seconds")
}

/// A JSON value as far as the parsers look at it (the token response, JWT claims): strings,
/// numbers and arrays of strings are kept; other arrays and objects are skipped without
/// being stored, so no `BTreeMap` and no deep structure is built, and miniserde drives it
/// without recursion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    Null,
    Bool,
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// An array whose elements are all strings (a JWT's `aud`).
    Strs(Vec<String>),
    /// Any other array, or an object.
    Nested,
}

/// A `Leaf` is its own visitor: the slot is filled with `Null` first and overwritten by
/// whatever value comes.
impl Visitor for Leaf {
    fn null(&mut self) -> miniserde::Result<()> {
        *self = Leaf::Null;
        Ok(())
    }

    fn boolean(&mut self, _: bool) -> miniserde::Result<()> {
        *self = Leaf::Bool;
        Ok(())
    }

    fn string(&mut self, s: &str) -> miniserde::Result<()> {
        *self = Leaf::Str(s.to_owned());
        Ok(())
    }

    fn negative(&mut self, n: i64) -> miniserde::Result<()> {
        *self = Leaf::I64(n);
        Ok(())
    }

    fn nonnegative(&mut self, n: u64) -> miniserde::Result<()> {
        *self = Leaf::U64(n);
        Ok(())
    }

    fn float(&mut self, n: f64) -> miniserde::Result<()> {
        *self = Leaf::F64(n);
        Ok(())
    }

    fn seq(&mut self) -> miniserde::Result<Box<dyn Seq + '_>> {
        Ok(Box::new(Strings {
            leaf: self,
            list: Vec::new(),
            element: None,
            all_strings: true,
        }))
    }

    fn map(&mut self) -> miniserde::Result<Box<dyn Map + '_>> {
        *self = Leaf::Nested;
        Ok(Box::new(Skip))
    }
}

/// The elements of an array, kept while they are all strings; the array becomes `Strs` or
/// `Nested` when it ends.
struct Strings<'a> {
    leaf: &'a mut Leaf,
    list: Vec<String>,
    /// The element being read, once the first has begun (an element that is an array or
    /// object itself is skipped as `Nested`, never stored).
    element: Option<Leaf>,
    all_strings: bool,
}

impl Strings<'_> {
    /// Moves the element just read, if any, into the list.
    fn take_element(&mut self) {
        match self.element.take() {
            None => {}
            Some(Leaf::Str(s)) if self.all_strings => self.list.push(s),
            Some(_) => {
                self.all_strings = false;
                self.list = Vec::new();
            }
        }
    }
}

impl Seq for Strings<'_> {
    fn element(&mut self) -> miniserde::Result<&mut dyn Visitor> {
        self.take_element();
        Ok(self.element.insert(Leaf::Null))
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        self.take_element();
        *self.leaf = if self.all_strings {
            Leaf::Strs(std::mem::take(&mut self.list))
        } else {
            Leaf::Nested
        };
        Ok(())
    }
}

/// A JSON object read into [`Leaf`] slots by name (a JWT's claims, a JWS header, a JWK):
/// a name `slot` does not know is skipped; one that comes again keeps its first value, and
/// `repeated` is told.
pub(crate) trait LeafFields {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Leaf>>;

    fn repeated(&mut self) {}
}

/// The `Map` that fills a [`LeafFields`]: what its `Visitor::map` returns.
pub(crate) struct LeafFieldsMap<'a, T>(pub(crate) &'a mut T);

impl<T: LeafFields> Map for LeafFieldsMap<'_, T> {
    fn key(&mut self, name: &str) -> miniserde::Result<&mut dyn Visitor> {
        if self.0.slot(name).is_some_and(|slot| slot.is_some()) {
            self.0.repeated();
            return Ok(<dyn Visitor>::ignore());
        }
        Ok(match self.0.slot(name) {
            Some(slot) => slot.insert(Leaf::Null),
            None => <dyn Visitor>::ignore(),
        })
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

/// The inside of an array or object we don't look into. miniserde drives it without
/// recursion, so no depth of nesting can overflow the stack.
pub(crate) struct Skip;

impl Seq for Skip {
    fn element(&mut self) -> miniserde::Result<&mut dyn Visitor> {
        Ok(<dyn Visitor>::ignore())
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

impl Map for Skip {
    fn key(&mut self, _: &str) -> miniserde::Result<&mut dyn Visitor> {
        Ok(<dyn Visitor>::ignore())
    }

    fn finish(&mut self) -> miniserde::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn contains_as_str_does() {
        for (hay, needle) in [
            ("", ""),
            ("a", ""),
            ("", "a"),
            ("secret expired", "expired"),
            ("secret expired", "secret"),
            ("secret", "secret expired"),
            ("aab", "ab"),
            ("élan", "lan"),
            ("wrong version numbe", "wrong version number"),
        ] {
            assert_eq!(
                contains(hay, needle),
                hay.contains(needle),
                "{hay:?} {needle:?}"
            );
        }
    }

    #[test]
    fn seconds_without_floats() {
        let s = |t: &str| parse_seconds(t).map(|d| d.as_nanos());
        assert_eq!(s("10"), Ok(10_000_000_000));
        assert_eq!(s("2.5"), Ok(2_500_000_000));
        assert_eq!(s(".25"), Ok(250_000_000));
        assert_eq!(s("1."), Ok(1_000_000_000));
        assert_eq!(s("0.0000000019"), Ok(1));
        for zero in ["0", "0.0", "0.0000000001"] {
            assert_eq!(s(zero), Err("not a positive number of seconds"), "{zero:?}");
        }
        for bad in ["", ".", "-1", "1e3", "1.2.3", " 1", "abc", "soon"] {
            assert_eq!(s(bad), Err("not a number of seconds"), "{bad:?}");
        }
        assert_eq!(s("99999999999999999999"), Err("too many seconds"));
    }

    #[test]
    fn json_strings() {
        let mut s = String::new();
        push_string(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
    }
}
