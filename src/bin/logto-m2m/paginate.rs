//! `call --paginate`: every page of a list, printed as one JSON array.
//!
//! Logto's lists (`/api/users`, `/api/roles`, the logs, ...) answer one page at a time
//! (`page`, `page_size` up to 100), with a `Total-Number` header and RFC 8288 `Link`
//! headers, one per relation: `first`, `prev`, `next` and `last`. When it caps an expensive
//! count it sends `Total-Number-Is-Capped: true` and no `next`: "clients should ask for
//! page+1 and stop on an empty page", its source says.
//!
//! The items are printed only once the last page is in: a job that reads the output gets
//! every item or, with exit status 1, none (a list cut short is worse than no list to a job
//! that syncs users). Each page's items keep their bytes: `json_array` finds where they
//! are, and they are copied between our own `[`, `,` and `]`.
//!
//! Logto (1.42, the version tested) builds its links from the path its router sees, which
//! lacks the `/api` its Management API is mounted under (`</users?page=2>` for
//! `/api/users`), and from the origin it is reached at (plain http behind a proxy that does
//! not say otherwise). Such a link leads to a 500. So for an answer from Logto (it carries
//! `Logto-Core-Request-Id`), the next page is the url asked with the `page` of the `next`
//! link; any other server's link is followed as it is.

use std::collections::HashMap;

use logto_m2m::Origin;
use ureq::http::{HeaderMap, Response};

use crate::json_array;
use crate::link;
use crate::output::{Failure, copy_to_stdout, write_stdout_bytes};

/// What fetches the pages: `call`'s caller, with its token, store and agent. A trait, so
/// that the edge goes from `call` to here and not both ways.
pub(crate) trait Pages {
    /// One page's answer, whatever its status.
    fn send(&self, url: &str) -> Result<Response<ureq::Body>, Failure>;
    /// `-v`'s line for a 2xx answer.
    fn say_status(&self, url: &str, status: u16);
    /// The message that ends a run whose answer (of `page`: ` (page 3)`, or empty for the
    /// first) was not 2xx.
    fn refused(&self, url: &str, answer: &Response<ureq::Body>, page: &str) -> Failure;
}

/// The most pages one run reads: 1,000,000 users at Logto's largest page size.
pub(crate) const MAX_PAGES: usize = 10_000;

/// The most bytes of one page read: a page of 100 Logto users is about 40 KB.
const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Fetches `first` (at `origin`, the only one the token goes to) and the pages after it,
/// and prints their items as one array.
pub(crate) fn run(caller: &dyn Pages, first: &str, origin: &Origin) -> Result<(), Failure> {
    let mut url = first.to_owned();
    // Each url fetched, with its page number: a link back to one of them is a loop.
    let mut fetched: HashMap<String, usize> = HashMap::new();
    let mut out = b"[".to_vec();
    let mut count = 0usize;
    for page in 1..=MAX_PAGES {
        fetched.insert(url.clone(), page);
        let which = if page == 1 {
            String::new()
        } else {
            format!(" (page {page})")
        };
        let mut answer = caller.send(&url)?;
        let status = answer.status().as_u16();
        if !answer.status().is_success() {
            copy_to_stdout(&mut answer.body_mut().as_reader())
                .map_err(|e| Failure::Token(format!("reading the answer of {url}: {e}")))?;
            return Err(caller.refused(&url, &answer, &which));
        }
        caller.say_status(&url, status);
        let bytes = answer
            .body_mut()
            .with_config()
            .limit(MAX_PAGE_BYTES)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Failure::Token(format!(
                    "GET {url}{which}: the page is over {} MiB; a smaller page_size makes \
                     smaller pages",
                    MAX_PAGE_BYTES >> 20
                )),
                e => Failure::Token(format!("reading the answer of {url}{which}: {e}")),
            })?;
        let Some(items) = json_array::items(&bytes) else {
            copy_to_stdout(&mut bytes.as_slice())
                .map_err(|e| Failure::Token(format!("writing stdout: {e}")))?;
            return if page == 1 {
                // Not a list: the answer itself, as `call` without --paginate prints it.
                Ok(())
            } else {
                Err(Failure::Token(format!(
                    "GET {url}{which}: not a JSON array; printed as it is, without the {count} \
                     items of the pages before it"
                )))
            };
        };
        for item in &items {
            if count > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&bytes[item.clone()]);
            count += 1;
        }
        let Some(next) = next_page(&url, answer.headers(), items.is_empty(), origin)
            .map_err(|why| Failure::Token(format!("GET {url}{which}: {why}")))?
        else {
            out.extend_from_slice(b"]\n");
            return write_stdout_bytes(&out);
        };
        if let Some(earlier) = fetched.get(&next) {
            return Err(Failure::Token(format!(
                "GET {url}{which}: its next page, {next}, is page {earlier}, fetched already; \
                 stopped rather than go round in a circle"
            )));
        }
        url = next;
    }
    Err(Failure::Token(format!(
        "{first}: more than {MAX_PAGES} pages; stopped, nothing printed (a larger page_size \
         makes fewer)"
    )))
}

/// The url of the page after the one at `url`, whose answer had `headers` and was empty
/// or not; `None` when it was the last. `Err` says why a next page can't be followed.
fn next_page(
    url: &str,
    headers: &HeaderMap,
    empty: bool,
    origin: &Origin,
) -> Result<Option<String>, String> {
    let links = headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok());
    if let Some(target) = link::find(links, "next") {
        let next = link::resolve(url, &target)
            .ok_or_else(|| format!("its next link <{target}> is not a url"))?;
        if headers.contains_key("logto-core-request-id") {
            if let Some(page) = link::query_param(&next, "page") {
                return unreadable(link::with_query_param(url, "page", page)).map(Some);
            }
        }
        if Origin::of(&next).ok().as_ref() != Some(origin) {
            return Err(format!(
                "its next link {next} is at another origin; not followed: the token goes only \
                 to {origin}"
            ));
        }
        return Ok(Some(next));
    }
    let capped = headers
        .get("total-number-is-capped")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !capped || empty {
        return Ok(None);
    }
    // A capped count: the next page is page+1, until one is empty.
    let page = match link::query_param(url, "page") {
        None => 1,
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| format!("its page={n} is not a page number to add 1 to"))?,
    };
    let next = page.checked_add(1).ok_or("no page after it")?;
    unreadable(link::with_query_param(url, "page", &next.to_string())).map(Some)
}

/// The next page's url, or why there is none: the url of a page that was fetched is one
/// the library reads, so this is for the impossible case only.
fn unreadable(next: Option<String>) -> Result<String, String> {
    next.ok_or_else(|| "its url can't be read".into())
}

#[cfg(test)]
mod test {
    use super::*;
    use ureq::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn next(
        url: &str,
        pairs: &[(&'static str, &str)],
        empty: bool,
    ) -> Result<Option<String>, String> {
        next_page(url, &headers(pairs), empty, &Origin::of(url).unwrap())
    }

    #[test]
    fn links_are_followed_as_they_are() {
        let url = "https://api.example/v1/items?page_size=2";
        assert_eq!(next(url, &[], false), Ok(None));
        assert_eq!(
            next(url, &[("link", "<?cursor=abc>; rel=next")], false),
            Ok(Some("https://api.example/v1/items?cursor=abc".into()))
        );
        assert_eq!(
            next(
                url,
                &[(
                    "link",
                    "<https://API.example:443/v1/items?page=2>; rel=next"
                )],
                false
            ),
            Ok(Some("https://api.example/v1/items?page=2".into()))
        );
        for elsewhere in [
            "<https://evil.example/v1/items?page=2>; rel=next",
            "<http://api.example/v1/items?page=2>; rel=next",
            "<https://api.example:8443/v1/items?page=2>; rel=next",
            "<//evil.example/x>; rel=next",
        ] {
            let why = next(url, &[("link", elsewhere)], false).unwrap_err();
            assert!(why.contains("another origin"), "{elsewhere}: {why}");
            assert!(why.contains("https://api.example"), "{why}");
        }
    }

    /// Logto's links miss the `/api` prefix and may name the origin as Logto sees it.
    #[test]
    fn logtos_links_give_their_page_only() {
        let url = "https://tenant.example/api/users?page_size=20";
        let logto = [
            ("logto-core-request-id", "abc"),
            (
                "link",
                "<http://tenant.example/users?page_size=20&page=1>; rel=\"first\"",
            ),
            (
                "link",
                "<http://tenant.example/users?page_size=20&page=2>; rel=\"next\"",
            ),
        ];
        assert_eq!(
            next(url, &logto, false),
            Ok(Some(
                "https://tenant.example/api/users?page_size=20&page=2".into()
            ))
        );
    }

    #[test]
    fn a_capped_count_asks_for_page_plus_one_until_an_empty_page() {
        let capped = [("total-number-is-capped", "true")];
        let url = "https://h/api/logs?page_size=100";
        assert_eq!(
            next(url, &capped, false),
            Ok(Some("https://h/api/logs?page_size=100&page=2".into()))
        );
        assert_eq!(
            next(
                "https://h/api/logs?page=7&page_size=100",
                &[("total-number-is-capped", " TRUE ")],
                false
            ),
            Ok(Some("https://h/api/logs?page=8&page_size=100".into()))
        );
        assert_eq!(next(url, &capped, true), Ok(None));
        assert_eq!(
            next(url, &[("total-number-is-capped", "false")], false),
            Ok(None)
        );
        assert!(next("https://h/x?page=abc", &capped, false).is_err());
        // A next link wins over the count.
        assert_eq!(
            next(
                url,
                &[capped[0], ("link", "</api/logs?page=5>; rel=next")],
                false
            ),
            Ok(Some("https://h/api/logs?page=5".into()))
        );
    }
}
