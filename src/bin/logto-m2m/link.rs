//! The URLs `call --paginate` moves through: the `next` link of RFC 8288 `Link` headers,
//! resolved against the page's URL (RFC 3986 §5.2), and a URL's `page` query parameter.
//! The URLs themselves are read by the library (`Origin::split`): their origin by its
//! rules, and what follows it as written.
//!
//! The headers come from the server, so the parser takes any text: a link-value it can't
//! read ends the reading of that header (what came before it still counts), and no index
//! can panic. This file uses nothing of the command but std and the library, so the fuzz
//! target compiles it too (`#[path]`).

use logto_m2m::Origin;

/// The target of the first link with relation type `rel` (compared case-insensitively, as
/// RFC 8288 §2.1.1 says) in `headers`, the values of every `Link` header in order. A link
/// with an `anchor` is about another resource than the page, and is passed over.
///
/// Each value is a comma-separated list of `<target>; param=value; param="quoted"`; `rel`
/// may hold several relation types separated by spaces, and only its first occurrence in a
/// link counts (§3.3). Commas and semicolons inside `<...>` or quotes are not separators.
pub fn find<'a>(headers: impl IntoIterator<Item = &'a str>, rel: &str) -> Option<String> {
    headers.into_iter().find_map(|value| {
        let mut p = Parser {
            s: value.as_bytes(),
            i: 0,
        };
        p.find(rel)
    })
}

/// A cursor over one header value.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips optional white space (RFC 9110 `OWS`: spaces and tabs).
    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// The text up to `end` (excluded), which is consumed; `None` without one.
    fn until(&mut self, end: u8) -> Option<&[u8]> {
        let rest = self.s.get(self.i..)?;
        let n = rest.iter().position(|&b| b == end)?;
        self.i += n + 1;
        rest.get(..n)
    }

    /// A token (RFC 9110 §5.6.2), possibly empty.
    fn token(&mut self) -> &[u8] {
        let from = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.i += 1;
        }
        self.s.get(from..self.i).unwrap_or_default()
    }

    /// A quoted string after its opening quote, unescaped (RFC 9110 §5.6.4).
    fn quoted(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    out.push(self.peek()?);
                    self.i += 1;
                }
                _ => out.push(b),
            }
        }
    }

    /// The first link-value with relation type `rel`, reading link-values until one has it
    /// or the value ends or can't be read.
    fn find(&mut self, rel: &str) -> Option<String> {
        loop {
            // Empty list elements are allowed (RFC 9110 §5.6.1).
            while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
                self.i += 1;
            }
            if self.peek()? != b'<' {
                return None;
            }
            self.i += 1;
            let target = self.until(b'>')?.to_vec();
            let (mut rels, mut anchor) = (None, false);
            loop {
                self.space();
                match self.peek() {
                    Some(b';') => self.i += 1,
                    None | Some(b',') => break,
                    Some(_) => return None,
                }
                self.space();
                let name = self.token().to_ascii_lowercase();
                self.space();
                let value = if self.peek() == Some(b'=') {
                    self.i += 1;
                    self.space();
                    if self.peek() == Some(b'"') {
                        self.i += 1;
                        self.quoted()?
                    } else {
                        self.token().to_vec()
                    }
                } else {
                    Vec::new()
                };
                match name.as_slice() {
                    b"rel" if rels.is_none() => rels = Some(value),
                    b"anchor" => anchor = true,
                    _ => {}
                }
            }
            let has = |types: &[u8]| {
                types
                    .split(|b| *b == b' ' || *b == b'\t')
                    .any(|t| t.eq_ignore_ascii_case(rel.as_bytes()))
            };
            if !anchor && rels.as_deref().is_some_and(has) {
                // The target is a URI reference: ASCII. Anything else is not one.
                return String::from_utf8(target).ok();
            }
        }
    }
}

/// `reference` resolved against the absolute URL `base` (RFC 3986 §5.2), without its
/// fragment; `None` when `base` or the result is not an http(s) URL the library reads
/// (then no request could go there).
pub fn resolve(base: &str, reference: &str) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or_default();
    let (origin, rest) = Origin::split(base).ok()?;
    let (base_path, base_query) = path_and_query(rest);
    let resolved = if has_scheme(reference) {
        let (origin, rest) = Origin::split(reference).ok()?;
        let (path, query) = path_and_query(rest);
        join(&origin, &remove_dots(path), query)
    } else if reference.starts_with("//") {
        let absolute = format!("{}:{reference}", origin.scheme());
        let (origin, rest) = Origin::split(&absolute).ok()?;
        let (path, query) = path_and_query(rest);
        join(&origin, &remove_dots(path), query)
    } else {
        let (path, query) = match reference.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (reference, None),
        };
        if path.is_empty() {
            join(&origin, base_path, query.or(base_query))
        } else if path.starts_with('/') {
            join(&origin, &remove_dots(path), query)
        } else {
            // Merged with the base's path up to its last `/` (§5.2.3).
            let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
            join(&origin, &remove_dots(&format!("{dir}{path}")), query)
        }
    };
    Origin::split(&resolved).is_ok().then_some(resolved)
}

/// Whether `reference` starts with a scheme: a letter, then letters, digits, `+`, `-` or
/// `.`, then `:`.
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// What follows a URL's origin (`Origin::split`), as its path (empty or starting with
/// `/`) and query, without the fragment.
fn path_and_query(rest: &str) -> (&str, Option<&str>) {
    let rest = rest.split('#').next().unwrap_or_default();
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    }
}

/// The URL of `path` and `query` at `origin` (written as the library writes an origin).
fn join(origin: &Origin, path: &str, query: Option<&str>) -> String {
    let path = if path.is_empty() { "/" } else { path };
    match query {
        Some(query) => format!("{origin}{path}?{query}"),
        None => format!("{origin}{path}"),
    }
}

/// `path` without its `.` and `..` segments (RFC 3986 §5.2.4); `path` is empty or starts
/// with `/`.
fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // `a/.` and `a/..` still name a folder: keep the trailing slash.
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// The value of `url`'s first query parameter `name`, as written.
pub fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = Origin::split(url).ok()?;
    path_and_query(rest)
        .1?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name => Some(value),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// `url` with its query parameter `name` set to `value`: the first occurrence replaced,
/// any others dropped, or the parameter added at the end. The other parameters keep their
/// order and their bytes; the fragment is dropped. `None` when `url` is not an http(s)
/// URL the library reads.
pub fn with_query_param(url: &str, name: &str, value: &str) -> Option<String> {
    let (origin, rest) = Origin::split(url).ok()?;
    let (path, query) = path_and_query(rest);
    let mut pairs: Vec<String> = Vec::new();
    let mut set = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if key != name {
            pairs.push(pair.to_owned());
        } else if !set {
            pairs.push(format!("{name}={value}"));
            set = true;
        }
    }
    if !set {
        pairs.push(format!("{name}={value}"));
    }
    Some(join(&origin, path, Some(&pairs.join("&"))))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn next_among_many_links() {
        // Logto: one header per relation.
        let logto = [
            r#"<http://127.0.0.1:3301/users?page_size=20&page=1>; rel="first""#,
            r#"<http://127.0.0.1:3301/users?page_size=20&page=3>; rel="last""#,
            r#"<http://127.0.0.1:3301/users?page_size=20&page=2>; rel="next""#,
        ];
        assert_eq!(
            find(logto, "next").as_deref(),
            Some("http://127.0.0.1:3301/users?page_size=20&page=2")
        );
        // GitHub: several in one header, unquoted or quoted, any case, any spacing.
        let github = [
            "<https://api.example/items?page=1>; rel=prev , <https://api.example/items?page=3>;rel=NEXT,<https://api.example/items?page=9>; rel=\"last\"",
        ];
        assert_eq!(
            find(github, "next").as_deref(),
            Some("https://api.example/items?page=3")
        );
        // `rel` with several types; commas and semicolons inside quotes and brackets.
        let odd =
            [r#"</a,b;c>; title="x, y; rel=next", </n>; title="\"q\", rel=next"; rel="prev next""#];
        assert_eq!(find(odd, "next").as_deref(), Some("/n"));
        // Only the first `rel` counts; an `anchor` is about another resource.
        let ignored = [
            r#"</one>; rel="prev"; rel="next", </two>; anchor="/other"; rel=next"#,
            r#"</three>; REL = "next""#,
        ];
        assert_eq!(find(ignored, "next").as_deref(), Some("/three"));
        assert_eq!(find(["</x>; rel=\"nextpage\""], "next"), None);
        assert_eq!(find(Vec::<&str>::new(), "next"), None);
    }

    #[test]
    fn garbage_ends_the_header_not_the_run() {
        for value in [
            "",
            ",,, ,",
            "<unclosed; rel=next",
            "</x>; rel=\"unclosed",
            "</x> rel=next",
            "/x; rel=next",
            "</x>; rel=\"next\\",
            "</x>;;;",
            "\u{1F600}",
        ] {
            assert_eq!(find([value], "next"), None, "{value:?}");
        }
        // What came before the garbage still counts, and so do the other headers.
        assert_eq!(
            find(["</a>; rel=next, garbage"], "next").as_deref(),
            Some("/a")
        );
        assert_eq!(
            find(["garbage </a>; rel=next", "</b>; rel=next"], "next").as_deref(),
            Some("/b")
        );
    }

    #[test]
    fn references_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.4.1, with the fragment dropped.
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g:h", None),
            ("g", Some("http://a/b/c/g")),
            ("./g", Some("http://a/b/c/g")),
            ("g/", Some("http://a/b/c/g/")),
            ("/g", Some("http://a/g")),
            ("//g", Some("http://g/")),
            ("?y", Some("http://a/b/c/d;p?y")),
            ("g?y", Some("http://a/b/c/g?y")),
            ("#s", Some("http://a/b/c/d;p?q")),
            ("g#s", Some("http://a/b/c/g")),
            ("", Some("http://a/b/c/d;p?q")),
            (".", Some("http://a/b/c/")),
            ("./", Some("http://a/b/c/")),
            ("..", Some("http://a/b/")),
            ("../", Some("http://a/b/")),
            ("../g", Some("http://a/b/g")),
            ("../..", Some("http://a/")),
            ("../../g", Some("http://a/g")),
            ("../../../g", Some("http://a/g")),
            ("/./g", Some("http://a/g")),
            ("/../g", Some("http://a/g")),
            ("g.", Some("http://a/b/c/g.")),
            ("..g", Some("http://a/b/c/..g")),
            ("./g/.", Some("http://a/b/c/g/")),
            ("g/../h", Some("http://a/b/c/h")),
            (
                "https://other.example:8443/x/../y?p=2",
                Some("https://other.example:8443/y?p=2"),
            ),
        ] {
            assert_eq!(
                resolve(base, reference).as_deref(),
                expected,
                "{reference:?}"
            );
        }
        assert_eq!(
            resolve("https://h.example", "?page=2").as_deref(),
            Some("https://h.example/?page=2")
        );
        assert_eq!(resolve("not a url", "/x"), None);
        // The library's rules: scheme and host in any case, the scheme's port left out,
        // no user info, nothing but http(s), nothing a request could not be sent to.
        assert_eq!(
            resolve("https://h.example/a", "HTTPS://Other.Example:443/b").as_deref(),
            Some("https://other.example/b")
        );
        assert_eq!(
            resolve("https://h.example/a", "//user:pw@evil.example/"),
            None
        );
        assert_eq!(resolve("https://h.example/a", "ftp://h.example/"), None);
        assert_eq!(resolve("https://h.example/a", "/with space"), None);
    }

    #[test]
    fn the_page_parameter() {
        let url = "https://h/api/users?page_size=20&search=a%26b";
        assert_eq!(query_param(url, "page"), None);
        assert_eq!(query_param(url, "search"), Some("a%26b"));
        let with = |url: &str, value: &str| with_query_param(url, "page", value);
        assert_eq!(
            with(url, "2").as_deref(),
            Some("https://h/api/users?page_size=20&search=a%26b&page=2")
        );
        assert_eq!(
            with("https://h/x?page=1&a=b&page=7", "2").as_deref(),
            Some("https://h/x?page=2&a=b")
        );
        assert_eq!(
            with("https://h/x", "3").as_deref(),
            Some("https://h/x?page=3")
        );
        assert_eq!(
            with("https://h/x?pages=1&page", "4").as_deref(),
            Some("https://h/x?pages=1&page=4")
        );
        assert_eq!(
            with("HTTPS://H:443?page=1#top", "5").as_deref(),
            Some("https://h/?page=5")
        );
        assert_eq!(with("not a url", "1"), None);
        assert_eq!(query_param("https://h/x?page", "page"), Some(""));
        assert_eq!(query_param("https://h/x#?page=1", "page"), None);
    }
}
