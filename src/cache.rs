//! The token file: tokens that outlive the process, so that cron runs share one token.
//!
//! The file is JSON, bound to one token URL and app id, and holds per cache key the access
//! token, its granted lifetime, and the wall-clock times it was received and expires (the
//! processes share no `Instant`). Never the secret.
//!
//! Cross-process single flight: the process that refreshes holds an exclusive lock on
//! `<file>.lock` (`std::fs::File` locks: `flock` on Unix, released by the OS if the process
//! dies). The others wait for the lock, bounded by the config's timeout, then find the new
//! token in the file instead of asking the server.
//!
//! Nothing about the file can fail a token request the network can satisfy: a problem
//! (unreadable, untrusted, corrupt, unwritable) is kept for
//! [`TokenStore::last_cache_error`](crate::TokenStore::last_cache_error) and the request
//! goes on as if there were no file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use miniserde::{Deserialize, Serialize, json};

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::request::TokenRequest;
use crate::response::Token;

/// A larger file is not read: it can't be one of ours (a token is about 1 KiB).
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

const FORMAT_VERSION: u64 = 1;

/// The file, as it is on disk.
#[derive(Serialize, Deserialize)]
pub(crate) struct FileContents {
    version: u64,
    token_url: String,
    app_id: String,
    tokens: Vec<FileToken>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FileToken {
    /// The store's cache key: resource, sorted scopes and organization.
    key: String,
    access_token: String,
    /// The granted lifetime in seconds.
    expires_in: u64,
    /// The scope the server sent, if it sent one.
    scope: Option<String>,
    /// Unix time in milliseconds when the request that got the token was sent.
    received_at_ms: u64,
    /// `received_at_ms` plus the lifetime.
    expires_at_ms: u64,
}

/// Parses a token file's bytes; `None` for anything that is not a well-formed file of this
/// format. Public through the `_fuzz` feature for the fuzz target.
pub(crate) fn parse(bytes: &[u8]) -> Option<FileContents> {
    let text = std::str::from_utf8(bytes).ok()?;
    let contents: FileContents = json::from_str(text).ok()?;
    (contents.version == FORMAT_VERSION).then_some(contents)
}

/// A token from the file, if it is for this app and server, for this key, trustworthy
/// by the clock, and not yet in its refresh margin at `now_ms`.
pub(crate) fn lookup(
    contents: &FileContents,
    token_url: &str,
    app_id: &str,
    key: &str,
    margin: Duration,
    now_ms: u64,
) -> Option<Token> {
    if contents.token_url != token_url || contents.app_id != app_id {
        return None;
    }
    let t = contents.tokens.iter().find(|t| t.key == key)?;
    let lifetime_ms = t.expires_in.checked_mul(1000)?;
    // Times that don't add up, or a token received "in the future", mean the clock jumped
    // or the file was edited: don't trust it.
    if t.received_at_ms.checked_add(lifetime_ms)? != t.expires_at_ms || t.received_at_ms > now_ms {
        return None;
    }
    let remaining_ms = t.expires_at_ms.checked_sub(now_ms)?;
    let lifetime = Duration::from_secs(t.expires_in);
    let margin_ms = u64::try_from(margin.min(lifetime / 2).as_millis()).ok()?;
    if remaining_ms <= margin_ms {
        return None;
    }
    let age = Duration::from_millis(now_ms - t.received_at_ms);
    Token::restore(&t.access_token, lifetime, t.scope.clone(), age)
}

pub(crate) struct CacheFile {
    path: PathBuf,
    lock_path: PathBuf,
    last_error: Mutex<Option<Error>>,
}

impl CacheFile {
    pub(crate) fn new(path: PathBuf) -> CacheFile {
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        CacheFile {
            path,
            lock_path: lock_path.into(),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn last_error(&self) -> Option<Error> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn note(&self, reason: String) {
        let err = Error::new(ErrorKind::CacheFile {
            path: self.path.display().to_string(),
            reason,
        });
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
    }

    /// A token for `request`: from the file when it holds a fresh one, otherwise from
    /// `network`, under the file lock so that other processes wait and then reuse it.
    pub(crate) fn fetch(
        &self,
        config: &Config,
        request: &TokenRequest,
        margin: Duration,
        network: impl FnOnce() -> Result<Token, Error>,
    ) -> Result<Token, Error> {
        let fresh = |contents: &Option<FileContents>| {
            lookup(
                contents.as_ref()?,
                config.token_url(),
                config.app_id(),
                request.key(),
                margin,
                now_ms()?,
            )
        };
        let mut contents = self.load();
        if let Some(token) = fresh(&contents) {
            return Ok(token);
        }
        let lock = match self.lock(config.timeout_value()) {
            Ok(lock) => Some(lock),
            Err(reason) => {
                self.note(reason);
                None
            }
        };
        // Whoever held the lock before us may have just written what we need. What we read
        // now is also what the write below keeps of the other keys.
        if lock.is_some() {
            contents = self.load();
            if let Some(token) = fresh(&contents) {
                return Ok(token);
            }
        }
        let token = network()?;
        if let Err(reason) = self.write(config, request, &token, contents) {
            self.note(reason);
        }
        drop(lock);
        Ok(token)
    }

    /// The file's contents, `None` when there is none to use; a problem is noted.
    fn load(&self) -> Option<FileContents> {
        self.read().unwrap_or_else(|reason| {
            self.note(reason);
            None
        })
    }

    /// The file's contents; `Ok(None)` when there is no file or it is not ours to use
    /// (corrupt, foreign format); `Err` when it exists but can't be trusted or read.
    fn read(&self) -> Result<Option<FileContents>, String> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot inspect: {e}")),
        };
        check_trusted(&meta)?;
        let mut file = File::open(&self.path).map_err(|e| format!("cannot open: {e}"))?;
        // The path could have been swapped between the check and the open: check the file
        // we actually opened is the one we checked.
        let opened = file
            .metadata()
            .map_err(|e| format!("cannot inspect: {e}"))?;
        if !same_file(&meta, &opened) {
            return Err("replaced while being opened; not trusted".into());
        }
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("larger than {MAX_FILE_BYTES} bytes; ignored"));
        }
        match parse(&bytes) {
            Some(contents) => Ok(Some(contents)),
            None if bytes.is_empty() => Ok(None),
            None => {
                Err("not a token file (corrupt or another format); ignored and replaced".into())
            }
        }
    }

    /// Waits for the exclusive lock, at most `limit`.
    fn lock(&self, limit: Duration) -> Result<File, String> {
        let file = open_private(&self.lock_path, false)
            .map_err(|e| format!("cannot open lock file: {e}"))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(format!("cannot lock: {e}")),
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "lock held by another process for over {}s; went ahead without it",
                    limit.as_secs_f32()
                ));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Adds `token` to the file, replacing this key's old entry and dropping expired ones:
    /// written to a private temporary file beside it, then renamed over it.
    /// `contents` is the file as last read, whose entries for other keys are kept.
    fn write(
        &self,
        config: &Config,
        request: &TokenRequest,
        token: &Token,
        contents: Option<FileContents>,
    ) -> Result<(), String> {
        if token.expires_in().is_zero() {
            return Ok(());
        }
        let now = now_ms().ok_or("the clock is before 1970")?;
        let age = u64::try_from(token.received_at().elapsed().as_millis()).unwrap_or(u64::MAX);
        let received_at_ms = now.saturating_sub(age);
        let expires_in = token.expires_in().as_secs();
        let Some(expires_at_ms) = expires_in
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(received_at_ms))
        else {
            return Ok(()); // lives longer than the clock can say: keep it in memory only
        };
        let mut tokens = match contents {
            Some(c) if c.token_url == config.token_url() && c.app_id == config.app_id() => c.tokens,
            _ => Vec::new(),
        };
        tokens.retain(|t| t.key != request.key() && t.expires_at_ms > now);
        tokens.push(FileToken {
            key: request.key().to_owned(),
            access_token: token.access_token().to_owned(),
            expires_in,
            scope: token.scope_from_server().map(str::to_owned),
            received_at_ms,
            expires_at_ms,
        });
        let contents = FileContents {
            version: FORMAT_VERSION,
            token_url: config.token_url().to_owned(),
            app_id: config.app_id().to_owned(),
            tokens,
        };
        let text = json::to_string(&contents);

        let tmp = self.temp_path();
        let result = (|| {
            let mut file = open_private(&tmp, true)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            // rename replaces the path itself: a symlink planted there is replaced, never
            // followed.
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot write: {e}"));
        }
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".tmp.{}.{n}", std::process::id()));
        name.into()
    }
}

/// Unix time in milliseconds, `None` before 1970.
fn now_ms() -> Option<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Opens (creating if needed) a file only its owner can read and write. `new` insists on
/// creating it, which also refuses to follow a symlink at that path.
fn open_private(path: &Path, new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Only a regular file that nobody else can read or write is trusted: anyone who can write
/// it could hand us a token of theirs, anyone who can read it could take ours.
fn check_trusted(meta: &fs::Metadata) -> Result<(), String> {
    if meta.file_type().is_symlink() {
        return Err("is a symbolic link; not followed, not trusted".into());
    }
    if !meta.is_file() {
        return Err("is not a regular file; not trusted".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {:o} lets others read or write it; not trusted (want 600)",
                mode & 0o777
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, b: &fs::Metadata) -> bool {
    b.is_file()
}

#[cfg(test)]
mod test {
    use super::*;

    fn file(tokens: &str) -> String {
        format!(r#"{{"version":1,"token_url":"https://x/t","app_id":"app","tokens":[{tokens}]}}"#)
    }

    fn entry(received: u64, expires_in: u64) -> String {
        format!(
            r#"{{"key":"k","access_token":"tok","expires_in":{expires_in},"scope":null,"received_at_ms":{received},"expires_at_ms":{}}}"#,
            received + expires_in * 1000
        )
    }

    fn find(text: &str, now: u64) -> Option<Token> {
        let c = parse(text.as_bytes())?;
        lookup(&c, "https://x/t", "app", "k", Duration::from_secs(60), now)
    }

    #[test]
    fn fresh_token_is_found() {
        let t = find(&file(&entry(1_000_000, 3600)), 1_000_000 + 10_000).unwrap();
        assert_eq!(t.access_token(), "tok");
        assert_eq!(t.expires_in(), Duration::from_secs(3600));
        assert!(t.received_at() <= Instant::now() - Duration::from_secs(9));
    }

    #[test]
    fn margin_and_expiry() {
        let f = file(&entry(1_000_000, 3600));
        // 3600 s lifetime, 60 s margin: usable until 3540 s.
        assert!(find(&f, 1_000_000 + 3_539_000).is_some());
        assert!(find(&f, 1_000_000 + 3_541_000).is_none());
        assert!(find(&f, 1_000_000 + 4_000_000).is_none());
    }

    #[test]
    fn clock_trouble_is_not_trusted() {
        // Received in the future.
        assert!(find(&file(&entry(2_000_000, 3600)), 1_000_000).is_none());
        // Expiry that does not match the lifetime.
        let bad = r#"{"key":"k","access_token":"tok","expires_in":60,"scope":null,"received_at_ms":1000,"expires_at_ms":99999999}"#;
        assert!(find(&file(bad), 2000).is_none());
    }

    #[test]
    fn foreign_and_corrupt_files() {
        let f = file(&entry(1_000_000, 3600));
        let c = parse(f.as_bytes()).unwrap();
        let m = Duration::from_secs(60);
        assert!(lookup(&c, "https://other/t", "app", "k", m, 1_000_001).is_none());
        assert!(lookup(&c, "https://x/t", "other-app", "k", m, 1_000_001).is_none());
        assert!(lookup(&c, "https://x/t", "app", "other-key", m, 1_000_001).is_none());
        for junk in [
            "",
            "{",
            "[]",
            "null",
            "\u{0}",
            r#"{"version":2,"token_url":"","app_id":"","tokens":[]}"#,
        ] {
            assert!(parse(junk.as_bytes()).is_none(), "{junk:?}");
        }
        // A header-unsafe token in the file is refused like one from the server.
        let evil = file(&entry(1_000_000, 3600).replace("\"tok\"", "\"a\\r\\nb\""));
        assert!(find(&evil, 1_000_001).is_none());
    }

    #[test]
    fn huge_numbers_do_not_panic() {
        let e = format!(
            r#"{{"key":"k","access_token":"tok","expires_in":{},"scope":null,"received_at_ms":1,"expires_at_ms":{}}}"#,
            u64::MAX,
            u64::MAX
        );
        assert!(find(&file(&e), 2).is_none());
    }
}
