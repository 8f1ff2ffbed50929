//! The app secret as a value: a string given once, or a file read again for each token
//! request.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Error;
use crate::seal::SealKey;

/// A larger file is not read: it can't be an app secret (Logto's are 32 characters).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret: a string, or a file read again each time it is used, as Docker and Kubernetes
/// hand secrets to programs (`/run/secrets/...`, a mounted Secret).
///
/// A file has two advantages over a string from `LOGTO_APP_SECRET`: it is not in
/// `/proc/<pid>/environ` nor copied into every child process, and a new secret written
/// into it is used on the next refresh, with no restart. The file is small and read once
/// per token request (and once per look into a shared cache), so a rotation costs nothing
/// to notice; white space around it, such as the trailing newline, is not part of the
/// secret. When the endpoint refuses the secret (`invalid_client`, or an expired secret)
/// and the file holds another one by then, the request is made once more with that one.
/// A file that group or others can read is logged as a warning.
///
/// `Debug` never shows the secret; for a file it shows the path.
///
/// # Example
/// ```no_run
/// use logto_m2m::{Config, Secret};
///
/// let from_file = Config::logto(
///     "https://tenant.logto.app",
///     "app-id",
///     Secret::file("/run/secrets/logto-app-secret"),
/// )?;
/// let inline = Config::logto("https://tenant.logto.app", "app-id", "app-secret")?;
/// assert_eq!(format!("{:?}", Secret::from("app-secret")), "[redacted]");
/// # Ok::<_, logto_m2m::Error>(())
/// ```
#[derive(Clone)]
pub struct Secret {
    source: Source,
    /// The key shared cache entries are sealed with, and the secret it was derived from:
    /// derived once per secret, not once per entry. (The token URL and app id, its other
    /// inputs, never change in a `Config`.)
    sealing: Arc<Mutex<Option<(String, SealKey)>>>,
}

#[derive(Clone)]
enum Source {
    Inline(String),
    File(Arc<SecretFile>),
}

struct SecretFile {
    path: PathBuf,
    /// What the file holds, for messages: "app secret", "personal access token", ...
    what: &'static str,
    /// The secret last read, so that a new one is logged once when it is picked up.
    last: Mutex<Option<String>>,
}

impl Secret {
    /// The secret in the file at `path`, read for each use. A [`Config`](crate::Config)
    /// made with it reads the file once when it is made (an empty or unreadable file is an
    /// error then rather than at the first request).
    ///
    /// As a user's token ([`TokenRequest::personal_access_token`](crate::TokenRequest::personal_access_token)
    /// and the like), a [`TokenStore`](crate::TokenStore) reads it at each `get` and keys
    /// the request by a hash of what it holds, so a new token in the file is a new request.
    pub fn file(path: impl Into<PathBuf>) -> Secret {
        Secret::from_source(Source::File(Arc::new(SecretFile {
            path: path.into(),
            what: "app secret",
            last: Mutex::new(None),
        })))
    }

    /// Checks the secret can be used, before any request: a string is not empty, a file
    /// can be read now and is not empty. A file that group or others can read is a
    /// warning, as ssh warns of a private key others can read. `what` names the secret in
    /// errors, e.g. "app secret".
    pub(crate) fn check(&self, what: &str) -> Result<(), Error> {
        match &self.source {
            Source::Inline(s) if s.is_empty() => Err(Error::config(format!("{what} is empty"))),
            Source::Inline(_) => Ok(()),
            Source::File(file) => {
                file.read()?;
                file.warn_if_others_can_read();
                Ok(())
            }
        }
    }

    /// The same secret named `what` in messages ("personal access token", ...): a file's
    /// errors and warnings say what it holds. A file that group or others can read is
    /// warned of now, as for an app secret file when its config is made.
    pub(crate) fn labelled(&self, what: &'static str) -> Secret {
        match &self.source {
            Source::Inline(_) => self.clone(),
            Source::File(file) => {
                let file = SecretFile {
                    path: file.path.clone(),
                    what,
                    last: Mutex::new(None),
                };
                file.warn_if_others_can_read();
                Secret::from_source(Source::File(Arc::new(file)))
            }
        }
    }

    fn from_source(source: Source) -> Secret {
        Secret {
            source,
            sealing: Arc::new(Mutex::new(None)),
        }
    }

    /// The secret now: the string, or the file's content read now.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the file (never its content)
    /// when it can't be read, is empty, too large or not UTF-8.
    pub(crate) fn read(&self) -> Result<Cow<'_, str>, Error> {
        match &self.source {
            Source::Inline(secret) => Ok(Cow::Borrowed(secret)),
            Source::File(file) => file.read().map(Cow::Owned),
        }
    }

    /// After the endpoint refused `used`: the file's secret if it is another one now (it
    /// was rotated while the request was on its way). `None` for a string secret, an
    /// unchanged file, or one that can't be read any more.
    pub(crate) fn newer_than(&self, used: &str) -> Option<String> {
        match &self.source {
            Source::Inline(_) => None,
            Source::File(file) => file.read().ok().filter(|now| now != used),
        }
    }

    /// The secret file's path, if the secret comes from one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::Inline(_) => None,
            Source::File(file) => Some(&file.path),
        }
    }

    /// The key that seals shared cache entries for `app_id` at `token_url`, from the
    /// secret as it is now.
    pub(crate) fn seal_key(&self, token_url: &str, app_id: &str) -> Result<SealKey, Error> {
        let secret = self.read()?;
        let mut sealing = self.sealing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, key)) = sealing.as_ref().filter(|(from, _)| *from == *secret) {
            return Ok(key.clone());
        }
        let key = SealKey::derive(&secret, token_url, app_id)
            .ok_or_else(|| Error::config("cannot derive the key that seals cache entries"))?;
        *sealing = Some((secret.into_owned(), key.clone()));
        Ok(key)
    }
}

impl SecretFile {
    fn error(&self, reason: impl fmt::Display) -> Error {
        Error::config(format!(
            "{} file {}: {reason}",
            self.what,
            self.path.display()
        ))
    }

    /// The file's content without surrounding white space (so the newline an editor or
    /// `echo` leaves is not part of the secret). Logs when it differs from the last read.
    fn read(&self) -> Result<String, Error> {
        let mut bytes = Vec::new();
        File::open(&self.path)
            .and_then(|f| f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| self.error(format_args!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
            return Err(self.error(format_args!(
                "larger than {MAX_SECRET_FILE_BYTES} bytes, too large for a secret"
            )));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| self.error("is not valid utf-8"))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(self.error("is empty"));
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.as_deref() {
            Some(before) if before == secret => {}
            Some(_) => {
                log::info!(
                    target: "logto_m2m",
                    "{} file {}: a new secret was picked up; the next token requests use it",
                    self.what,
                    self.path.display()
                );
                *last = Some(secret.to_owned());
            }
            None => *last = Some(secret.to_owned()),
        }
        Ok(secret.to_owned())
    }

    #[cfg(unix)]
    fn warn_if_others_can_read(&self) {
        use std::os::unix::fs::PermissionsExt;
        // `metadata` follows links: a Kubernetes Secret volume is links to the real files,
        // whose mode is what matters.
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            log::warn!(
                target: "logto_m2m",
                "{} file {}: mode {mode:o} lets group or others read it; make it 600 (or 400)",
                self.what,
                self.path.display()
            );
        }
    }

    #[cfg(not(unix))]
    fn warn_if_others_can_read(&self) {}
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret::from(secret.to_owned())
    }
}

impl From<&String> for Secret {
    fn from(secret: &String) -> Secret {
        Secret::from(secret.clone())
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret::from_source(Source::Inline(secret))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Inline(_) => f.write_str("[redacted]"),
            Source::File(file) => write!(f, "[redacted, read from {}]", file.path.display()),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::fs;

    struct Dir(PathBuf);

    fn checked(path: &Path) -> Secret {
        let secret = Secret::file(path);
        secret.check("app secret").unwrap();
        secret
    }

    fn checked_err(path: &Path) -> Error {
        Secret::file(path).check("app secret").unwrap_err()
    }

    impl Dir {
        fn new(label: &str) -> Dir {
            let path = std::env::temp_dir()
                .join(format!("logto-m2m-secret-{label}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn white_space_around_is_not_part_of_it() {
        let dir = Dir::new("trim");
        let path = dir.0.join("secret");
        for (content, want) in [
            ("s3cret\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("  s3cret \r\n", "s3cret"),
            ("s3 cret\n", "s3 cret"),
        ] {
            fs::write(&path, content).unwrap();
            assert_eq!(checked(&path).read().unwrap(), want);
        }
    }

    #[test]
    fn errors_name_the_path_never_the_content() {
        let dir = Dir::new("errors");
        let path = dir.0.join("secret");
        let message = |content: &[u8]| {
            fs::write(&path, content).unwrap();
            checked_err(&path).to_string()
        };
        let shown = path.display().to_string();
        assert_eq!(
            message(b" \n"),
            format!("invalid config: app secret file {shown}: is empty")
        );
        let bad = message(b"canary-\xff-secret");
        assert_eq!(
            bad,
            format!("invalid config: app secret file {shown}: is not valid utf-8")
        );
        let huge = message(&vec![b'c'; 70_000]);
        assert!(huge.contains("larger than 65536 bytes"), "{huge}");
        let missing = checked_err(&dir.0.join("nope")).to_string();
        assert!(
            missing.starts_with(&format!(
                "invalid config: app secret file {}: cannot read: ",
                dir.0.join("nope").display()
            )),
            "{missing}"
        );
        fs::write(&path, "canary-secret-9f3\n").unwrap();
        let secret = checked(&path);
        fs::write(&path, "").unwrap();
        let later = secret.read().unwrap_err();
        assert!(!format!("{later} {later:?}").contains("canary"), "{later}");
    }

    #[test]
    fn read_again_each_time_and_newer_only_when_changed() {
        let dir = Dir::new("again");
        let path = dir.0.join("secret");
        fs::write(&path, "old-secret\n").unwrap();
        let secret = checked(&path);
        assert_eq!(secret.newer_than("old-secret"), None);
        fs::write(&path, "new-secret\n").unwrap();
        assert_eq!(secret.read().unwrap(), "new-secret");
        assert_eq!(
            secret.newer_than("old-secret").as_deref(),
            Some("new-secret")
        );
        assert_eq!(Secret::from("x").newer_than("y"), None);
    }

    #[test]
    fn seal_key_follows_the_secret() {
        let dir = Dir::new("seal");
        let path = dir.0.join("secret");
        fs::write(&path, "one").unwrap();
        let secret = checked(&path);
        let first = secret.seal_key("https://x/t", "app").unwrap();
        assert_eq!(secret.seal_key("https://x/t", "app").unwrap(), first);
        fs::write(&path, "two").unwrap();
        let second = secret.seal_key("https://x/t", "app").unwrap();
        assert_ne!(second, first);
        assert_eq!(
            Secret::from("two").seal_key("https://x/t", "app").unwrap(),
            second
        );
    }

    #[test]
    fn debug_shows_the_path_not_the_secret() {
        let dir = Dir::new("debug");
        let path = dir.0.join("secret");
        fs::write(&path, "canary-secret-77").unwrap();
        let shown = format!("{:?}", checked(&path));
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(!shown.contains("canary"), "{shown}");
        assert_eq!(format!("{:?}", Secret::from("canary")), "[redacted]");
    }
}
