//! `TokenRequest`: what to ask for (resource, scopes, organization), the form it makes,
//! what refuses it before anything is sent, and the key that tells two requests apart for
//! a cache.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::encode::form_urlencode_into;
use crate::error::Error;
use crate::subject::{self, Exchange, Subject};
use crate::token::Token;

/// What to ask for: the API resource, scopes, and optionally a Logto organization.
///
/// Scopes keep the order they were given in, without duplicates. Two requests that differ
/// only in scope order or duplicates are the same request to a [`TokenStore`].
///
/// # What is refused
///
/// The setters take any text and return `Self`, so a request is checked when it is used
/// ([`request_token`], [`TokenStore::get`], [`TokenStore::call`], a [`Bearer`]'s requests),
/// before anything is sent or looked up in a cache. It is refused, with an
/// [`ErrorKind::Config`] that names the field, when:
///
/// - the resource, the organization id or the user id to impersonate has a control
///   character (no identifier has one);
/// - a scope has a character outside RFC 6749's scope characters (visible ASCII but `"` and
///   `\`; a space separates scopes);
/// - the [impersonation context](TokenRequest::impersonation_context) is not a JSON object,
///   or a subject's parts don't go together (see [`TokenRequest::impersonate`]).
///
/// [`TokenStore`]: crate::TokenStore
/// [`TokenStore::get`]: crate::TokenStore::get
/// [`TokenStore::call`]: crate::TokenStore::call
/// [`Bearer`]: crate::Bearer
/// [`request_token`]: crate::request_token
/// [`ErrorKind::Config`]: crate::ErrorKind::Config
///
/// ```
/// use logto_m2m::{request_token, Config, ErrorKind, TokenRequest};
///
/// let config = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?;
/// let request = TokenRequest::new("https://shopping.api").organization("org\0acme");
/// let error = request_token(&config, &request).unwrap_err(); // nothing was sent
/// assert!(matches!(error.kind(), ErrorKind::Config { .. }));
/// assert_eq!(
///     error.to_string(),
///     r#"invalid config: the organization id "org\0acme" has a control character, which no identifier has"#
/// );
/// # Ok::<_, logto_m2m::Error>(())
/// ```
///
/// # Keys
///
/// A [`TokenStore`] and its shared cache tell requests apart by a key made of the
/// resource, the set of scopes and the organization, each with its length, and who the
/// token is for: the app, or a tag for the kind of user subject with a hash of it (never
/// the user's token). So no two different requests share a key, whatever their text.
///
/// # Example
/// ```
/// use logto_m2m::TokenRequest;
///
/// let a = TokenRequest::new("https://shopping.api").scope("read:products").scope("write:products");
/// let b = TokenRequest::new("https://shopping.api").scope("write:products read:products read:products");
/// assert_eq!(a, b);
/// assert_eq!(
///     format!("{a:?}"),
///     r#"TokenRequest { resource: "https://shopping.api", scopes: ["read:products", "write:products"], organization: None }"#
/// );
/// ```
#[derive(Clone)]
pub struct TokenRequest {
    resource: String,
    scopes: Vec<String>,
    organization: Option<String>,
    /// The user the token is for, when it is not for the app itself (token exchange).
    subject: Subject,
    /// The token exchange's code, set with the subject by its setters (`impersonate`,
    /// ...): `None` for the app itself.
    code: Option<&'static Code>,
    /// What makes two requests the same: the resource, the sorted scopes and the
    /// organization, each length-prefixed, and the subject's tag and hash (see
    /// [`TokenRequest::rekey`]). Shared by clones, so that a thread's copy of a token can be
    /// matched to a request by pointer before comparing text.
    key: Arc<str>,
    /// A hash of `key`, computed once so a cache lookup costs no hashing.
    key_hash: u64,
    /// Why the request can't be used, found when it was built: returned by every use.
    refusal: Option<Error>,
    /// Neither refused nor with a subject token in a file: a store can look it up as it
    /// is. One flag, so that a cache hit pays one test for the others.
    plain: bool,
}

impl TokenRequest {
    /// A request for a token to call the API whose identifier (Logto's "API indicator",
    /// the OAuth `resource`) is `resource`, e.g. `https://shopping.api`.
    ///
    /// An empty `resource` sends none, for Logto's default API or for servers that do not
    /// know resource indicators.
    pub fn new(resource: &str) -> TokenRequest {
        let mut r = TokenRequest {
            resource: resource.to_owned(),
            scopes: Vec::new(),
            organization: None,
            subject: Subject::default(),
            code: None,
            key: Arc::from(""),
            key_hash: 0,
            refusal: None,
            plain: true,
        };
        r.rekey();
        r
    }

    /// Adds a scope (a permission of the API). A string with spaces adds each word (RFC
    /// 6749 §3.3: scopes are separated by spaces; any other character, a tab included, is
    /// part of a scope, and [refuses](TokenRequest#what-is-refused) it if RFC 6749 does not
    /// allow it there).
    pub fn scope(mut self, scope: &str) -> Self {
        for s in scope_tokens(scope) {
            if !self.scopes.iter().any(|have| have == s) {
                self.scopes.push(s.to_owned());
            }
        }
        self.rekey();
        self
    }

    /// A request for a token of the Management API of the Logto at `endpoint`, scope `all`.
    ///
    /// The resource is the tenant's own on Logto Cloud (`https://<tenant>.logto.app` gives
    /// `https://<tenant>.logto.app/api`), and `https://default.logto.app/api` for any other
    /// endpoint: a self-hosted Logto (Logto OSS) has one tenant, `default`, whatever host it
    /// runs on. On Logto Cloud give the tenant's `<tenant>.logto.app` endpoint, not a custom
    /// domain: Logto says a custom domain is not meant for the Management API, whose
    /// indicator stays the tenant's. The app needs a machine-to-machine role with the
    /// Management API's `all` permission.
    ///
    /// # Example
    /// ```
    /// use logto_m2m::TokenRequest;
    ///
    /// assert_eq!(
    ///     TokenRequest::management_api("https://abc123.logto.app"),
    ///     TokenRequest::new("https://abc123.logto.app/api").scope("all"),
    /// );
    /// assert_eq!(
    ///     TokenRequest::management_api("https://auth.example.com:3001/"),
    ///     TokenRequest::new("https://default.logto.app/api").scope("all"),
    /// );
    /// ```
    pub fn management_api(endpoint: &str) -> TokenRequest {
        let tenant = crate::url::logto_cloud_tenant(endpoint);
        let tenant = tenant.as_deref().unwrap_or("default");
        TokenRequest::new(&format!("https://{tenant}.logto.app/api")).scope("all")
    }

    /// Asks for a Logto organization token (`organization_id`): the app must be a member
    /// of the organization, and the scopes are organization scopes.
    ///
    /// Leave the resource empty for an organization token: Logto then issues a token whose
    /// audience is `urn:logto:organization:<id>`, with the requested organization scopes
    /// that the app's organization roles grant. With a resource as well, Logto issues a
    /// token for that API (an "organization API resource") that carries an
    /// `organization_id` claim. Either way an app that is not a member, or an organization
    /// that does not exist, gets HTTP 403 `access_denied` (Logto code
    /// `oidc.access_denied`). The organization is part of the [`TokenStore`] key.
    ///
    /// [`TokenStore`]: crate::TokenStore
    ///
    /// # Example
    /// ```
    /// use logto_m2m::TokenRequest;
    ///
    /// let request = TokenRequest::new("").organization("org-acme").scope("read:members");
    /// assert!(format!("{request:?}").contains(r#"organization: Some("org-acme")"#));
    /// assert_ne!(request, TokenRequest::new("").scope("read:members"));
    /// ```
    pub fn organization(mut self, organization_id: &str) -> Self {
        self.organization = Some(organization_id.to_owned());
        self.rekey();
        self
    }

    /// The resource indicator (the OAuth `resource`), e.g. the Management API's for an
    /// endpoint.
    ///
    /// # Example
    /// ```
    /// use logto_m2m::TokenRequest;
    ///
    /// let request = TokenRequest::management_api("https://abc123.logto.app");
    /// assert_eq!(request.resource(), "https://abc123.logto.app/api");
    /// ```
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The scopes asked for, in the order given.
    ///
    /// # Example
    /// ```
    /// use logto_m2m::TokenRequest;
    ///
    /// let request = TokenRequest::new("https://shopping.api").scope("read:products write:orders");
    /// assert_eq!(request.scopes(), ["read:products", "write:orders"]);
    /// assert_eq!(TokenRequest::management_api("https://abc123.logto.app").scopes(), ["all"]);
    /// ```
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The organization id, if this asks for an organization token.
    pub(crate) fn organization_id(&self) -> Option<&str> {
        self.organization.as_deref()
    }

    /// The refusal found when the request was built (see [What is
    /// refused](TokenRequest#what-is-refused)), if any.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match &self.refusal {
            None => Ok(()),
            Some(error) => Err(error.clone()),
        }
    }

    /// True when a store can look the request up as it is: not refused, and no subject
    /// token in a file. Otherwise [`TokenRequest::read_now`] first.
    #[inline]
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// The request as a store looks it up now: refused, or with its subject's and actor's
    /// token files read now, so that its key holds a hash of what they hold and an exchange
    /// sends exactly that. A plain request as it is.
    ///
    /// # Errors
    /// The refusal, or a file that can't be read (naming it, never its content).
    pub(crate) fn read_now(&self) -> Result<Cow<'_, TokenRequest>, Error> {
        if self.plain {
            return Ok(Cow::Borrowed(self));
        }
        self.check()?;
        // Neither plain nor refused: a subject's token is in a file. Read through the
        // subject's code, so that a program without subjects links none of it.
        match self.code {
            Some(code) => (code.read_now)(self).map(Cow::Owned),
            None => Ok(Cow::Borrowed(self)),
        }
    }

    /// Who the token acts for, when not the app itself, with the token exchange's code.
    pub(crate) fn subject(&self) -> Option<(&Subject, &'static Code)> {
        Some((&self.subject, self.code?))
    }

    /// True when the token is to act for a user (a token exchange).
    pub(crate) fn is_exchange(&self) -> bool {
        self.code.is_some()
    }

    /// The request with its subject changed by `change` and the token exchange's `code`:
    /// what the token exchange's setters (`impersonate`, ...) do.
    pub(crate) fn with_subject(
        mut self,
        code: &'static Code,
        change: impl FnOnce(&mut Subject),
    ) -> TokenRequest {
        change(&mut self.subject);
        self.code = Some(code);
        self.rekey();
        self
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The key, shared: see [`TokenRequest::key`].
    pub(crate) fn key_arc(&self) -> &Arc<str> {
        &self.key
    }

    pub(crate) fn key_hash(&self) -> u64 {
        self.key_hash
    }

    /// The key, its hash, and what [`TokenRequest::check`] returns, after any change.
    ///
    /// The key is one part per field, each a tag, the value's length in bytes, `:` and the
    /// value: `r` the resource, `s` each scope (sorted), `o` the organization (when set),
    /// then who the token is for, `a` the app or a tag for the user subject (`i`
    /// impersonation, `p` personal access token, `u` user's access token, `n` none yet)
    /// with its hash. The lengths make it unambiguous whatever the values hold (even a
    /// character the checks refuse), so no two different requests share a key.
    fn rekey(&mut self) {
        // The scopes in order, so that their order does not split the cache. By insertion:
        // scopes are few, and std's sort would link 4 KB into every binary for them.
        let mut sorted: Vec<&str> = Vec::with_capacity(self.scopes.len());
        for scope in &self.scopes {
            let at = sorted.partition_point(|s| *s <= scope.as_str());
            sorted.insert(at, scope);
        }
        let mut key = String::with_capacity(self.resource.len() + 64);
        push_part(&mut key, 'r', &self.resource);
        for scope in &sorted {
            push_part(&mut key, 's', scope);
        }
        if let Some(org) = &self.organization {
            push_part(&mut key, 'o', org);
        }
        let subject = self.code.map(|code| (code.key_part)(&self.subject));
        push_part(&mut key, self.subject.tag(), &subject.unwrap_or_default());
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.key_hash = h.finish();
        self.key = key.into();
        self.refusal = self.find_refusal();
        self.plain = self.refusal.is_none() && !self.subject.reads_files();
    }

    /// What refuses the request (see [What is refused](TokenRequest#what-is-refused)).
    fn find_refusal(&self) -> Option<Error> {
        let control = |field: &str, value: &str| {
            value.contains(char::is_control).then(|| {
                Error::config(format!(
                    "the {field} {value:?} has a control character, which no identifier has"
                ))
            })
        };
        control("resource", &self.resource)
            .or_else(|| {
                let bad = self.scopes.iter().find(|s| !is_scope_token(s))?;
                Some(Error::config(format!(
                    "the scope {bad:?} has a character oauth does not allow in a scope \
                     (rfc 6749: visible ascii but \" and \\)"
                )))
            })
            .or_else(|| control("organization id", self.organization.as_deref()?))
            .or_else(|| (self.code?.refusal)(&self.subject))
    }

    /// The form body without client authentication: each parameter once. With
    /// `exchange`, the token exchange's own fields ([`subject::form_fields`]), a token
    /// exchange.
    pub(crate) fn form_body(&self, exchange: Option<&str>) -> String {
        let mut body = String::from("grant_type=");
        match exchange {
            None => body.push_str("client_credentials"),
            Some(fields) => {
                form_urlencode_into(subject::GRANT_TYPE, &mut body);
                body.push_str(fields);
            }
        }
        if !self.resource.is_empty() {
            body.push_str("&resource=");
            form_urlencode_into(&self.resource, &mut body);
        }
        if !self.scopes.is_empty() {
            body.push_str("&scope=");
            form_urlencode_into(&self.scopes.join(" "), &mut body);
        }
        if let Some(org) = &self.organization {
            body.push_str("&organization_id=");
            form_urlencode_into(org, &mut body);
        }
        body
    }
}

// By hand: the key is derived from the rest, and would only repeat it; the subject only
// when there is one (its own Debug shows no token).
impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("TokenRequest");
        s.field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .field("organization", &self.organization);
        if self.code.is_some() {
            s.field("subject", &self.subject);
        }
        s.finish()
    }
}

impl PartialEq for TokenRequest {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for TokenRequest {}

impl Hash for TokenRequest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// One part of a key: `tag`, the value's length in bytes, `:` and the value.
fn push_part(key: &mut String, tag: char, value: &str) {
    use std::fmt::Write;
    key.push(tag);
    // Writing to a String can't fail.
    let _ = write!(key, "{}:", value.len());
    key.push_str(value);
}

/// The parts of a key, read back, for the store's `Debug`: the resource, the scopes
/// (sorted, space-separated), the organization and who the token is for (`app`,
/// `impersonation`, `personal access token`, `user access token`). `None` for text that
/// is not a key this module made.
pub(crate) fn key_parts(key: &str) -> Option<KeyParts<'_>> {
    // Each part: its tag, its value, and the rest of the key after it.
    fn part(rest: &str) -> Option<(char, &str, &str)> {
        let tag = rest.chars().next()?;
        let (len, after) = rest[tag.len_utf8()..].split_once(':')?;
        let len: usize = len.parse().ok()?;
        Some((tag, after.get(..len)?, after.get(len..)?))
    }
    let ('r', resource, mut rest) = part(key)? else {
        return None;
    };
    let mut parts = KeyParts {
        resource,
        scopes: String::new(),
        organization: None,
        subject: "",
    };
    loop {
        let (tag, value, after) = part(rest)?;
        rest = after;
        match tag {
            's' => {
                if !parts.scopes.is_empty() {
                    parts.scopes.push(' ');
                }
                parts.scopes.push_str(value);
            }
            'o' => parts.organization = Some(value),
            _ => {
                parts.subject = subject::tag_name(tag)?;
                return rest.is_empty().then_some(parts);
            }
        }
    }
}

/// A key's parts: see [`key_parts`].
#[derive(Debug, PartialEq)]
pub(crate) struct KeyParts<'a> {
    pub(crate) resource: &'a str,
    pub(crate) scopes: String,
    pub(crate) organization: Option<&'a str>,
    pub(crate) subject: &'static str,
}

/// The token exchange's code, which a request reaches only through its subject setters
/// (`TokenRequest::impersonate` and the others, in `exchange/token_exchange.rs`, which
/// put a pointer to it here): a program that never acts for a user links none of it (the
/// exchange's preparation, the Management API's subject token, its JSON, the key's hash,
/// the advice), as the linker drops what nothing it keeps names.
#[derive(Clone, Copy)]
pub(crate) struct Code {
    /// The subject token and the form fields, before the exchange and within its deadline;
    /// with a store, the Management API token comes from it.
    pub(crate) prepare: Prepare,
    /// The subject's part of the request key (`subject::key_part`).
    pub(crate) key_part: fn(&Subject) -> String,
    /// Why the subject can't make a request, found when the request is built.
    pub(crate) refusal: fn(&Subject) -> Option<Error>,
    /// A request of this subject with its token files read now, as strings (see
    /// `TokenRequest::read_now`).
    pub(crate) read_now: fn(&TokenRequest) -> Result<TokenRequest, Error>,
}

/// [`Code::prepare`]: the config, its agent, the subject, the deadline, and where an
/// impersonation's Management API token comes from when a store asks.
pub(crate) type Prepare = fn(
    &Config,
    &ureq::Agent,
    &Subject,
    Option<Instant>,
    Option<&dyn TokenSource>,
) -> Result<Exchange, Error>;

/// Where an impersonation takes its Management API token from: a store's, so that one
/// serves every exchange for its lifetime (`TokenStore` is one; a refresh running apart
/// from the store can be another, on the same state). Here, below the exchange and the
/// store, so that the exchange needs nothing of the store: the store implements it.
pub(crate) trait TokenSource {
    /// The token for `request` (the Management API's): cached, or new.
    fn token(&self, request: &TokenRequest) -> Result<Arc<Token>, Error>;
    /// `token` for `request` was refused: drop it, if it is still the one held.
    fn refused(&self, request: &TokenRequest, token: &Token);
}

// Here rather than in token.rs, so that the token knows nothing of requests (the request
// names tokens, in `TokenSource`) and no two modules import each other.
impl Token {
    /// The scopes `request` asks for that this token was not granted (by
    /// [`scope`](Token::scope)), in the request's order: what an API will answer 403 to.
    /// With Logto the fix is to give the app a machine-to-machine role with those
    /// permissions.
    ///
    /// An opaque token without a `scope` field was granted what was asked (RFC 6749 §5.1),
    /// so nothing is missing.
    pub fn missing_scopes(&self, request: &TokenRequest) -> Vec<String> {
        if self.scope.is_none() && self.scope_claim.is_none() {
            return Vec::new();
        }
        let granted = self.scope().unwrap_or("");
        request
            .scopes()
            .iter()
            .filter(|asked| !scope_tokens(granted).any(|g| g == *asked))
            .cloned()
            .collect()
    }
}

/// The scope tokens of a `scope` value: RFC 6749 §3.3 separates them by spaces (`%x20`),
/// one or more; nothing else separates them (a tab is part of a token, which no
/// well-formed token has). The crate's one splitter: requests, granted scopes, and the
/// verifier's claims.
pub(crate) fn scope_tokens(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|s| !s.is_empty())
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn form_body_each_parameter_once() {
        let r = TokenRequest::new("https://shopping.api")
            .scope("read:products")
            .scope("write:products read:products");
        assert_eq!(
            r.form_body(None),
            "grant_type=client_credentials&resource=https%3A%2F%2Fshopping.api&scope=read%3Aproducts+write%3Aproducts"
        );
        let r = TokenRequest::new("").organization("org 1");
        assert_eq!(
            r.form_body(None),
            "grant_type=client_credentials&organization_id=org+1"
        );
    }

    /// RFC 6749 §3.3: scope tokens are separated by spaces, and by nothing else. The one
    /// splitter reads a request's scopes, a token's grant and a verified token's claim.
    #[test]
    fn scopes_are_split_on_spaces_only() {
        let r = TokenRequest::new("r").scope("  read   write ");
        assert_eq!(r.scopes(), ["read", "write"]);
        // A tab or a newline is no separator: part of the scope, which is then refused.
        let r = TokenRequest::new("r").scope("read\twrite\nall");
        assert_eq!(r.scopes(), ["read\twrite\nall"]);
        let e = r.check().unwrap_err().to_string();
        assert!(e.contains("has a character oauth does not allow"), "{e}");
        assert_eq!(
            scope_tokens(" a  b\u{a0}c\td ").collect::<Vec<_>>(),
            ["a", "b\u{a0}c\td"]
        );
        // What a token lacks is read the same way.
        let token = crate::response::parse_now(
            200,
            br#"{"access_token":"t","token_type":"Bearer","scope":"  read  all"}"#,
        )
        .unwrap();
        let asked = TokenRequest::new("r").scope("read write all");
        assert_eq!(token.missing_scopes(&asked), ["write"]);
    }

    #[test]
    fn keys_ignore_scope_order() {
        let a = TokenRequest::new("r").scope("b a");
        let b = TokenRequest::new("r").scope("a").scope("b").scope("a");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key_hash(), b.key_hash());
        assert_ne!(a.key(), TokenRequest::new("r").scope("a").key());
        assert_ne!(a.key(), a.clone().organization("o").key());
        // The separator keeps resource and scope apart.
        assert_ne!(
            TokenRequest::new("r a").key(),
            TokenRequest::new("r").scope("a").key()
        );
    }

    /// The pairs issue 31 found sharing a key: an app's request with an organization id
    /// that spells an impersonation's key part, and a resource that spells a scope.
    #[test]
    fn the_colliding_pairs_of_issue_31_have_different_keys() {
        let victim = TokenRequest::new("https://api")
            .scope("read")
            .impersonate("victim");
        let hash = subject::key_part(&victim.subject);
        assert_eq!(hash.len(), 32);
        let forged = TokenRequest::new("https://api")
            .scope("read")
            .organization(&format!("\0{hash}"));
        assert_ne!(forged.key(), victim.key());
        assert_ne!(forged, victim);
        assert_ne!(
            TokenRequest::new("r\0s").key(),
            TokenRequest::new("r").scope("s\0").key()
        );
        assert_ne!(
            TokenRequest::new("r").organization("").key(),
            TokenRequest::new("r").key()
        );
        // And both forgeries are refused before use anyway.
        assert!(forged.check().is_err());
        assert!(TokenRequest::new("r\0s").check().is_err());
        assert!(victim.check().is_ok());
    }

    /// What a request means, written out: two requests are the same request exactly when
    /// these are equal.
    fn meaning(r: &TokenRequest) -> String {
        let mut scopes: Vec<&String> = r.scopes.iter().collect();
        scopes.sort();
        format!(
            "{:?} {:?} {:?} {:?}",
            r.resource,
            scopes,
            r.organization,
            r.subject.described()
        )
    }

    /// Many requests made of the pieces a forger would use (separators, digits and colons
    /// that look like a length, control characters, another part's text): two have the
    /// same key exactly when they mean the same request, and every key reads back.
    #[test]
    fn keys_are_equal_exactly_when_requests_are() {
        let texts = [
            "", "r", "s", "r s", "r\0", "\0s", "r\0s", "s\0", "1:r", "r1:s", "s1:r", "o1:x", "a0:",
            "i32:", "\u{1}", "é", "r\u{85}",
        ];
        let scope_sets: [&[&str]; 7] = [
            &[],
            &["s"],
            &["s\0"],
            &["r", "s"],
            &["s", "r"],
            &["s1:r"],
            &["1:s", "o1:x"],
        ];
        let subjects: [fn(TokenRequest) -> TokenRequest; 8] = [
            |r| r,
            |r| r.impersonate("victim"),
            |r| r.impersonate("victim\0"),
            |r| r.impersonate("victim").impersonation_context("{}"),
            |r| r.personal_access_token("victim"),
            |r| r.user_access_token("victim"),
            |r| r.personal_access_token("victim").actor_token("a"),
            |r| r.impersonation_context("{}"),
        ];
        let mut made: Vec<(String, TokenRequest)> = Vec::new();
        for resource in texts {
            for scopes in scope_sets {
                for org in [None, Some(""), Some("r"), Some("s1:r"), Some("\0x")] {
                    for subject in subjects {
                        let mut r = TokenRequest::new(resource);
                        for s in scopes {
                            r = r.scope(s);
                        }
                        if let Some(org) = org {
                            r = r.organization(org);
                        }
                        let r = subject(r);
                        made.push((meaning(&r), r));
                    }
                }
            }
        }
        // One organization taken from an impersonation's key part, as in the issue.
        let victim = TokenRequest::new("s").impersonate("victim");
        let forged = TokenRequest::new("s")
            .organization(&format!("\0{}", subject::key_part(&victim.subject)));
        made.push((meaning(&victim), victim));
        made.push((meaning(&forged), forged));
        assert!(made.len() > 4000, "{}", made.len());

        let mut by_key: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for (meaning, r) in &made {
            if let Some(other) = by_key.insert(r.key(), meaning) {
                assert_eq!(other, meaning, "one key for two requests: {:?}", r.key());
            }
            let parts = key_parts(r.key()).unwrap_or_else(|| panic!("{:?}", r.key()));
            assert_eq!(parts.resource, r.resource);
            assert_eq!(parts.organization, r.organization.as_deref());
        }
        let meanings: std::collections::HashSet<&str> =
            made.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(by_key.len(), meanings.len(), "one request with two keys");
    }

    #[test]
    fn key_parts_read_back_for_debug() {
        let r = TokenRequest::new("https://a\0")
            .scope("w r")
            .organization("o:1");
        assert_eq!(
            key_parts(r.key()),
            Some(KeyParts {
                resource: "https://a\0",
                scopes: "r w".into(),
                organization: Some("o:1"),
                subject: "app",
            })
        );
        let pat = TokenRequest::new("x").personal_access_token("pat_1");
        assert_eq!(
            key_parts(pat.key()).unwrap().subject,
            "personal access token"
        );
        for junk in [
            "",
            "r",
            "r2:x",
            "r1:xa0:z",
            "x1:xa0:",
            "r1:xq0:",
            "r99999999999999999999:",
        ] {
            assert_eq!(key_parts(junk), None, "{junk:?}");
        }
    }

    /// Each field with a character it must not have is refused when used, naming the
    /// field; the values around the edges are not.
    #[test]
    fn refusals_name_the_field() {
        let refused = |r: TokenRequest, field: &str| {
            let e = r.check().expect_err(field);
            assert!(matches!(e.kind(), crate::ErrorKind::Config { .. }), "{e}");
            assert!(e.to_string().contains(field), "{field}: {e}");
            assert!(!r.is_plain());
        };
        refused(TokenRequest::new("https://api\0"), "the resource");
        refused(TokenRequest::new("https://api\r\nx"), "the resource");
        refused(TokenRequest::new("https://api\u{7f}"), "the resource");
        refused(TokenRequest::new("https://api\u{85}"), "the resource");
        refused(
            TokenRequest::new("r").scope("read\0"),
            "the scope \"read\\0\"",
        );
        refused(TokenRequest::new("r").scope("a\"b"), "the scope");
        refused(TokenRequest::new("r").scope("a\\b"), "the scope");
        refused(TokenRequest::new("r").scope("lecture:é"), "the scope");
        refused(TokenRequest::new("r").scope("a\u{a0}b"), "the scope");
        refused(
            TokenRequest::new("r").organization("\0x"),
            "the organization id",
        );
        refused(
            TokenRequest::new("r").organization("o\t1"),
            "the organization id",
        );
        refused(
            TokenRequest::new("r").impersonate("u\0x"),
            "the user id to impersonate",
        );
        refused(
            TokenRequest::new("r")
                .impersonate("u")
                .impersonation_context("{\"a\":\"\0\"}"),
            "the impersonation context",
        );
        refused(
            TokenRequest::new("r")
                .impersonate("u")
                .impersonation_context("[]"),
            "the impersonation context",
        );
        refused(TokenRequest::new("r").actor_token("a"), "needs a subject");
        // Fixed by a later setter: what counts is the request as used.
        let fixed = TokenRequest::new("r")
            .impersonation_context("{}")
            .impersonate("u");
        assert!(fixed.check().is_ok());
        for fine in [
            TokenRequest::new(""),
            TokenRequest::new("https://api.example/é?x=1#y").scope("!#[]~ a:b/c"),
            TokenRequest::new("r")
                .organization("org é")
                .impersonate("user é"),
            TokenRequest::new("r")
                .impersonate("u")
                .impersonation_context("{\n\t\"ticket\": \"T-1\"\r\n}"),
        ] {
            assert!(fine.check().is_ok(), "{fine:?}: {:?}", fine.check());
            assert!(fine.is_plain());
        }
        // A subject token in a file is read by a store before it looks the request up.
        let file = TokenRequest::new("r").personal_access_token(Secret::file("/nonexistent"));
        assert!(file.check().is_ok());
        assert!(!file.is_plain());
        assert!(file.read_now().is_err());
    }

    #[test]
    fn read_now_keys_a_token_file_by_what_it_holds() {
        let path = std::env::temp_dir().join(format!("logto-m2m-read-now-{}", std::process::id()));
        std::fs::write(&path, "pat_one\n").unwrap();
        let file = TokenRequest::new("r").personal_access_token(Secret::file(&path));
        let one = TokenRequest::new("r").personal_access_token("pat_one");
        assert_eq!(*file.read_now().unwrap(), one);
        assert!(file.read_now().unwrap().is_plain());
        std::fs::write(&path, "pat_two").unwrap();
        let two = file.read_now().unwrap().into_owned();
        assert_eq!(two, TokenRequest::new("r").personal_access_token("pat_two"));
        assert_ne!(two, one);
        // The actor's file too, and a refused request is refused before any file is read.
        let actor = TokenRequest::new("r")
            .personal_access_token("pat_one")
            .actor_token(Secret::file(&path));
        let inline = TokenRequest::new("r")
            .personal_access_token("pat_one")
            .actor_token("pat_two");
        assert_eq!(*actor.read_now().unwrap(), inline);
        let refused = TokenRequest::new("r\0").personal_access_token(Secret::file(&path));
        assert!(
            refused
                .read_now()
                .unwrap_err()
                .to_string()
                .contains("control character")
        );
        std::fs::remove_file(&path).unwrap();
    }
}
