//! `TokenRequest`: what to ask for (resource, scopes, organization), the form it makes, and
//! the key that tells two requests apart for a cache.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::secret::Secret;
use crate::subject::{self, ACCESS_TOKEN_TYPE, PERSONAL_ACCESS_TOKEN_TYPE, Subject};

/// What to ask for: the API resource, scopes, and optionally a Logto organization.
///
/// Scopes keep the order they were given in, without duplicates. Two requests that differ
/// only in scope order or duplicates are the same request to a [`TokenStore`].
///
/// [`TokenStore`]: crate::TokenStore
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
    /// resource, sorted scopes, organization and a hash of the subject, joined: what makes two requests the same.
    /// Shared by clones, so that a thread's copy of a token can be matched to a request by
    /// pointer before comparing text.
    key: Arc<str>,
    /// A hash of `key`, computed once so a cache lookup costs no hashing.
    key_hash: u64,
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
            key: Arc::from(""),
            key_hash: 0,
        };
        r.rekey();
        r
    }

    /// Adds a scope (a permission of the API). A string with spaces adds each word.
    pub fn scope(mut self, scope: &str) -> Self {
        for s in scope.split_ascii_whitespace() {
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
        let host = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest)
            .split(['/', ':', '?', '#'])
            .next()
            .unwrap_or("");
        let tenant = match host.strip_suffix(".logto.app") {
            Some(tenant) if !tenant.is_empty() && !tenant.contains('.') => tenant,
            _ => "default",
        };
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

    /// Asks for a token that acts for the Logto user `user_id` (impersonation): the token's
    /// `sub` is the user, `client_id` the app, and its scopes those the user's roles grant.
    ///
    /// For each token the app first gets a Management API token (client_credentials, the
    /// Management API of the config's Logto endpoint, scope `all`), asks
    /// `POST {endpoint}/api/subject-tokens` for a single-use subject token for the user, and
    /// exchanges it (RFC 8693, `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`);
    /// all three requests within the one [`Config::timeout`](crate::Config::timeout). A
    /// [`TokenStore`](crate::TokenStore) caches the token per user like any other and asks
    /// for a new subject token at each refresh.
    ///
    /// The app needs Logto's token exchange turned on (the console's "token exchange"
    /// setting, `customClientMetadata.allowTokenExchange`) and a machine-to-machine role
    /// with the Management API's `all` permission. What Logto answers when something is
    /// missing, and what the error's message adds:
    ///
    /// - an unknown user: the Management API's 404 `entity.relation_foreign_key_not_found`
    ///   from `/api/subject-tokens`; the message names the user id;
    /// - an app without the setting: 400 `invalid_request` "requested grant type is not
    ///   allowed for this client"; the message says to turn token exchange on;
    /// - an app without Management API access: 403 `auth.forbidden` from
    ///   `/api/subject-tokens`; the message says the app needs it;
    /// - a used or expired subject token, a wrong or revoked personal access token: 400
    ///   `invalid_grant` "grant request is invalid"; the message says which token Logto
    ///   refused, never the token;
    /// - scopes the user's roles lack: dropped from the token (200), with the warning an
    ///   app gets for scopes it lacks (log target `logto_m2m`).
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// let request = TokenRequest::new("https://shopping.api")
    ///     .scope("read:products")
    ///     .impersonate("user-id")
    ///     .impersonation_context(r#"{"ticket":"T-1024"}"#);
    /// let token = request_token(&config, &request)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn impersonate(mut self, user_id: &str) -> Self {
        self.subject.impersonate(user_id);
        self.rekey();
        self
    }

    /// The context (a JSON object) Logto keeps with the subject token of an
    /// [impersonation](TokenRequest::impersonate), e.g. `{"ticket":"T-1024"}`: for Logto's
    /// custom token claims and its logs. Checked to be a JSON object when the request is
    /// made.
    pub fn impersonation_context(mut self, json: &str) -> Self {
        self.subject.context(json);
        self.rekey();
        self
    }

    /// Asks for a token that acts for the user whose personal access token (`pat_…`, made
    /// in the Logto console or by `POST /api/users/{id}/personal-access-tokens`) is `token`:
    /// the token itself (`&str`, `String`), or a file that holds it (`&Path`, `PathBuf`),
    /// read for each token request. Exchanged with `subject_token_type
    /// urn:logto:token-type:personal_access_token`; the app needs token exchange turned on,
    /// as for [`TokenRequest::impersonate`]. A wrong, expired or revoked one is
    /// `invalid_grant`; the message never repeats it.
    ///
    /// The token is never in a cache key (a hash of it, or of the file's path, is), a log
    /// line, `Debug` or an error.
    ///
    /// # Example
    /// ```no_run
    /// use logto_m2m::{request_token, Config, Secret, TokenRequest};
    ///
    /// let config = Config::from_env()?;
    /// let request = TokenRequest::new("https://shopping.api")
    ///     .scope("read:products")
    ///     .personal_access_token(Secret::file("/run/secrets/logto-pat"));
    /// let token = request_token(&config, &request)?;
    /// # Ok::<_, logto_m2m::Error>(())
    /// ```
    pub fn personal_access_token(mut self, token: impl Into<Secret>) -> Self {
        self.subject.token(PERSONAL_ACCESS_TOKEN_TYPE, token.into());
        self.rekey();
        self
    }

    /// Asks for a token that acts for the user whose access token (a JWT Logto issued to a
    /// first-party app) is `token`, for this request's resource (delegation): the token
    /// itself, or a file that holds it, as for [`TokenRequest::personal_access_token`].
    /// Exchanged with `subject_token_type urn:ietf:params:oauth:token-type:access_token`.
    pub fn user_access_token(mut self, token: impl Into<Secret>) -> Self {
        self.subject.token(ACCESS_TOKEN_TYPE, token.into());
        self.rekey();
        self
    }

    /// The RFC 8693 actor token (`actor_token`, of type
    /// `urn:ietf:params:oauth:token-type:access_token`): who acts for the subject. Logto
    /// takes the opaque access token, with scope `openid`, of the user who acts, and puts
    /// that user in the token's `act` claim. Given as for
    /// [`TokenRequest::personal_access_token`]; only with a subject.
    pub fn actor_token(mut self, token: impl Into<Secret>) -> Self {
        self.subject.actor(token.into());
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

    /// Who the token acts for, when not the app itself, with the token exchange's code.
    pub(crate) fn subject(&self) -> Option<(&Subject, &'static subject::Code)> {
        Some((&self.subject, self.subject.code()?))
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

    fn rekey(&mut self) {
        // The scopes in order, so that their order does not split the cache. By insertion:
        // scopes are few, and std's sort would link 4 KB into every binary for them.
        let mut sorted: Vec<&str> = Vec::with_capacity(self.scopes.len());
        for scope in &self.scopes {
            let at = sorted.partition_point(|s| *s <= scope.as_str());
            sorted.insert(at, scope);
        }
        // NUL can't come through form encoding unnoticed, so it separates the parts
        // unambiguously.
        let mut key = String::with_capacity(self.resource.len() + 64);
        key.push_str(&self.resource);
        key.push('\0');
        for (i, scope) in sorted.iter().enumerate() {
            if i > 0 {
                key.push(' ');
            }
            key.push_str(scope);
        }
        key.push('\0');
        if let Some(org) = &self.organization {
            key.push_str(org);
        }
        // Only a token exchange has this part, so other requests keep their keys.
        if self.subject.is_set() {
            key.push('\0');
            key.push_str(&self.subject.key_part());
        }
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.key_hash = h.finish();
        self.key = key.into();
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
        if self.subject.is_set() {
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

/// `application/x-www-form-urlencoded` as WHATWG defines it: alphanumerics and `*-._` stay,
/// space becomes `+`, every other byte becomes `%XX`.
pub(crate) fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    form_urlencode_into(s, &mut out);
    out
}

pub(crate) fn form_urlencode_into(s: &str, out: &mut String) {
    urlencode_into(s, out, "+");
}

/// [`form_urlencode`] with a space as `%20`: what percent-decoders and form-decoders both
/// read as a space, for the Basic header.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    urlencode_into(s, &mut out, "%20");
    out
}

/// `application/x-www-form-urlencoded` bytes, with `space` for a space.
fn urlencode_into(s: &str, out: &mut String, space: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push_str(space),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

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

    #[test]
    fn form_encoding_matches_rfc_6749_examples() {
        // The peer's special clients, as its transcript shows them accepted.
        assert_eq!(
            form_urlencode("s3cr:t+/%&= x~"),
            "s3cr%3At%2B%2F%25%26%3D+x%7E"
        );
        assert_eq!(form_urlencode("m2m:colon"), "m2m%3Acolon");
        assert_eq!(form_urlencode("colon%41+secret"), "colon%2541%2Bsecret");
        assert_eq!(form_urlencode("é"), "%C3%A9");
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
}
