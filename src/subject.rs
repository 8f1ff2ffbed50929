//! Acting for a user (RFC 8693 token exchange, as Logto does it): who the token is for, the
//! form fields that say so, and the part of the cache key that tells subjects apart.
//!
//! Three subjects: a user to impersonate (the app first asks Logto's Management API for a
//! single-use subject token, see `exchange/token_exchange.rs`), a user's personal access
//! token, and a user's own access token (delegation); optionally an actor token. The tokens
//! are held as the crate's secrets, a string or a file read for each request, and never
//! appear in a cache key, a log line, `Debug` or an error.
//!
//! A store reads a subject's token files when it is asked for a token (`read_files`), so
//! that the key holds a hash of the token that an exchange would send, not of the path.
//!
//! Data only: what acts on a subject (the exchange's preparation, the key's hash, the
//! refusals) is the token exchange's code, which a request reaches through the pointers
//! its setters put there (`request::Code`, set in `exchange/token_exchange.rs`).

use std::fmt;

use crate::encode::{form_urlencode_into, hex};
use crate::error::{Error, ErrorKind};
use crate::secret::Secret;

/// RFC 8693's grant type.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's type of an access token: a user's token, and Logto's subject tokens too.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Logto's type of a personal access token (`pat_…`).
pub(crate) const PERSONAL_ACCESS_TOKEN_TYPE: &str = "urn:logto:token-type:personal_access_token";

/// A subject's or actor's token now: the string, or the file read now, without the white
/// space around it (a trailing newline is not part of a token).
pub(crate) fn read_token(token: &Secret) -> Result<String, Error> {
    token.read().map(|t| t.trim().to_owned())
}

/// Feeds what identifies `token` to the key's hash: the token (hashed, never kept), or the
/// file's path while the file is not read (a request as built; a store reads the file
/// first, see [`read_files`]).
fn identify(token: &Secret, hash: &mut ring::digest::Context) {
    match token.path() {
        Some(path) => hash_part(hash, b"file", path.as_os_str().as_encoded_bytes()),
        // A string secret's read can't fail.
        None => hash_part(
            hash,
            b"inline",
            read_token(token).unwrap_or_default().as_bytes(),
        ),
    }
}

/// Who a token request acts for; empty for the app itself (client_credentials).
#[derive(Clone, Default)]
pub(crate) struct Subject {
    who: Option<Who>,
    /// Logto's impersonation context: a JSON object kept with the subject token.
    context: Option<String>,
    actor: Option<Secret>,
}

#[derive(Clone)]
pub(crate) enum Who {
    /// A user id, for which the Management API makes a subject token per exchange.
    Impersonate(String),
    /// A token of the user's, of the given RFC 8693 type.
    Token(&'static str, Secret),
}

impl Subject {
    pub(crate) fn impersonate(&mut self, user_id: &str) {
        self.who = Some(Who::Impersonate(user_id.to_owned()));
    }

    pub(crate) fn token(&mut self, token_type: &'static str, token: Secret) {
        let what = match token_type {
            PERSONAL_ACCESS_TOKEN_TYPE => "personal access token",
            _ => "subject token",
        };
        self.who = Some(Who::Token(token_type, token.labelled(what)));
    }

    pub(crate) fn context(&mut self, json: &str) {
        self.context = Some(json.to_owned());
    }

    pub(crate) fn actor(&mut self, token: Secret) {
        self.actor = Some(token.labelled("actor token"));
    }

    /// True when anything of a subject was given: the request is a token exchange.
    pub(crate) fn is_set(&self) -> bool {
        self.who.is_some() || self.context.is_some() || self.actor.is_some()
    }

    pub(crate) fn who(&self) -> Option<&Who> {
        self.who.as_ref()
    }

    pub(crate) fn context_json(&self) -> Option<&str> {
        self.context.as_deref()
    }

    pub(crate) fn actor_token(&self) -> Option<&Secret> {
        self.actor.as_ref()
    }

    /// True when the subject's or the actor's token is a file.
    pub(crate) fn reads_files(&self) -> bool {
        let file = |s: &Secret| s.path().is_some();
        matches!(&self.who, Some(Who::Token(_, token)) if file(token))
            || self.actor.as_ref().is_some_and(file)
    }

    /// The key's tag for who the token is for: `a` the app, `i` an impersonated user, `p`
    /// a personal access token, `u` a user's access token, `n` a subject not given yet.
    pub(crate) fn tag(&self) -> char {
        match &self.who {
            _ if !self.is_set() => 'a',
            Some(Who::Impersonate(_)) => 'i',
            Some(Who::Token(PERSONAL_ACCESS_TOKEN_TYPE, _)) => 'p',
            Some(Who::Token(..)) => 'u',
            None => 'n',
        }
    }

    /// Everything the subject holds, written out, for tests that compare keys with it.
    #[cfg(test)]
    pub(crate) fn described(&self) -> String {
        let token = |t: &Secret| match t.path() {
            Some(path) => format!("file {path:?}"),
            None => format!("{:?}", t.read().unwrap_or_default()),
        };
        let who = match &self.who {
            None => String::new(),
            Some(Who::Impersonate(user)) => format!("impersonate {user:?}"),
            Some(Who::Token(kind, t)) => format!("{kind} {}", token(t)),
        };
        format!(
            "{} {who} {:?} {:?}",
            self.is_set(),
            self.context,
            self.actor.as_ref().map(token)
        )
    }

    /// Refuses the combinations that can't make a request, and a user id with a control
    /// character, before anything is sent.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match &self.who {
            None => Err(Error::config(
                "an impersonation context or an actor token needs a subject: impersonate a \
                 user, or give a personal access token or a user's access token",
            )),
            Some(Who::Token(..)) if self.context.is_some() => Err(Error::config(
                "an impersonation context goes with impersonate, not with a subject token",
            )),
            Some(Who::Impersonate(user)) if user.trim().is_empty() => {
                Err(Error::config("the user id to impersonate is empty"))
            }
            Some(Who::Impersonate(user)) if user.contains(char::is_control) => {
                Err(Error::config(format!(
                    "the user id to impersonate {user:?} has a control character, which no \
                     identifier has"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The token exchange's own fields, after `grant_type`: the subject token and its type,
/// and the actor token, when there is one.
pub(crate) fn form_fields(
    subject_token: &str,
    token_type: &str,
    actor_token: Option<&str>,
    out: &mut String,
) {
    out.push_str("&subject_token=");
    form_urlencode_into(subject_token, out);
    out.push_str("&subject_token_type=");
    form_urlencode_into(token_type, out);
    if let Some(actor) = actor_token {
        out.push_str("&actor_token=");
        form_urlencode_into(actor, out);
        out.push_str("&actor_token_type=");
        form_urlencode_into(ACCESS_TOKEN_TYPE, out);
    }
}

/// The part of a cache key that tells `subject` from others: 32 hex digits of a SHA-256
/// over its kind, user id, context and tokens (or their files' paths), so that no token is
/// ever in a key, a token file or Redis, and equal subjects in two processes share one
/// entry. Reached only through the token exchange's code (`request::Code`).
pub(crate) fn key_part(subject: &Subject) -> String {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    match &subject.who {
        None => hash_part(&mut hash, b"none", b""),
        Some(Who::Impersonate(user)) => hash_part(&mut hash, b"impersonate", user.as_bytes()),
        Some(Who::Token(token_type, token)) => {
            hash_part(&mut hash, b"token", token_type.as_bytes());
            identify(token, &mut hash);
        }
    }
    if let Some(context) = &subject.context {
        hash_part(&mut hash, b"context", context.as_bytes());
    }
    if let Some(actor) = &subject.actor {
        hash_part(&mut hash, b"actor", b"");
        identify(actor, &mut hash);
    }
    hex(&hash.finish().as_ref()[..16])
}

/// The name of a key's subject tag (see [`Subject::tag`]), for the store's `Debug`.
pub(crate) fn tag_name(tag: char) -> Option<&'static str> {
    Some(match tag {
        'a' => "app",
        'i' => "impersonation",
        'p' => "personal access token",
        'u' => "user access token",
        'n' => "none",
        _ => return None,
    })
}

/// The subject with the subject's and actor's token files read now (without the white
/// space around them) and held as strings: what a store keys and an exchange sends.
/// Reached only through the token exchange's code (`request::Code`).
pub(crate) fn read_files(subject: &Subject) -> Result<Subject, Error> {
    let read = |token: &mut Secret| -> Result<(), Error> {
        if token.path().is_some() {
            *token = Secret::from(read_token(token)?);
        }
        Ok(())
    };
    let mut now = subject.clone();
    if let Some(Who::Token(_, token)) = &mut now.who {
        read(token)?;
    }
    if let Some(actor) = &mut now.actor {
        read(actor)?;
    }
    Ok(now)
}

/// One part of the key's hash, with its length first so that parts can't run together.
fn hash_part(hash: &mut ring::digest::Context, label: &[u8], value: &[u8]) {
    hash.update(label);
    hash.update(&(value.len() as u64).to_be_bytes());
    hash.update(value);
}

/// A token exchange made ready for one request: its own form fields, and what they hold
/// that must never be shown. Made by the token exchange's code (`prepare`, through
/// `request::Code`) before the first attempt, within the exchange's deadline.
pub(crate) struct Exchange {
    /// `&subject_token=…&subject_token_type=…` and the actor's.
    pub(crate) fields: String,
    /// The subject token and the actor token, as sent, for the redactions.
    pub(crate) subject_token: String,
    pub(crate) actor_token: Option<String>,
    /// Who the token is for, for messages: `user "…"`, `the personal access token`, ...
    pub(crate) who: String,
    /// What to say when the token endpoint refuses the exchange: the token exchange's
    /// advice, through a pointer for the reason of `request::Code`.
    pub(crate) advise: fn(&Exchange, &ErrorKind) -> Option<String>,
}

impl Exchange {
    /// What to do about the token endpoint's refusal of this exchange.
    pub(crate) fn advice(&self, kind: &ErrorKind) -> Option<String> {
        (self.advise)(self, kind)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Subject");
        match &self.who {
            None => {}
            Some(Who::Impersonate(user)) => {
                s.field("impersonate", user);
            }
            Some(Who::Token(PERSONAL_ACCESS_TOKEN_TYPE, token)) => {
                s.field("personal_access_token", token);
            }
            Some(Who::Token(_, token)) => {
                s.field("access_token", token);
            }
        }
        if self.context.is_some() {
            // A context may carry what a support tool noted: not secret, but not needed.
            s.field("context", &"[set]");
        }
        if let Some(actor) = &self.actor {
            s.field("actor_token", actor);
        }
        s.finish()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn subject(f: impl FnOnce(&mut Subject)) -> Subject {
        let mut s = Subject::default();
        f(&mut s);
        s
    }

    #[test]
    fn keys_tell_subjects_apart_and_hold_no_token() {
        let pat = "pat_canary0123456789";
        let a = subject(|s| s.token(PERSONAL_ACCESS_TOKEN_TYPE, pat.into()));
        let b = subject(|s| s.token(ACCESS_TOKEN_TYPE, pat.into()));
        let c = subject(|s| s.token(PERSONAL_ACCESS_TOKEN_TYPE, "pat_other".into()));
        let d = subject(|s| s.impersonate("u1"));
        let e = subject(|s| {
            s.impersonate("u1");
            s.context("{}")
        });
        let f = subject(|s| s.token(PERSONAL_ACCESS_TOKEN_TYPE, Secret::file(pat)));
        let keys: Vec<String> = [&a, &b, &c, &d, &e, &f]
            .iter()
            .map(|s| key_part(s))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.len(), 32);
            assert!(!k.contains("canary"));
            for other in &keys[i + 1..] {
                assert_ne!(k, other);
            }
        }
        assert_eq!(
            keys[0],
            key_part(&subject(|s| s.token(PERSONAL_ACCESS_TOKEN_TYPE, pat.into())))
        );
        assert!(!Subject::default().is_set());
    }

    #[test]
    fn debug_never_shows_a_token() {
        let s = subject(|s| {
            s.token(ACCESS_TOKEN_TYPE, "eyJcanary.x.y".into());
            s.actor("actor-canary".into());
        });
        let shown = format!("{s:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let s = subject(|s| s.impersonate("user-1"));
        assert_eq!(format!("{s:?}"), r#"Subject { impersonate: "user-1" }"#);
    }

    #[test]
    fn form_fields_are_encoded() {
        let mut out = String::new();
        form_fields("sub_1", ACCESS_TOKEN_TYPE, Some("a b"), &mut out);
        assert_eq!(
            out,
            "&subject_token=sub_1&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &actor_token=a+b&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
        );
    }
}
