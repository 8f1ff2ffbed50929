//! The token file: tokens that outlive the process, so that cron runs share one token.
//!
//! The file is JSON, bound to one token URL and app id, and holds per request key the
//! access token, its lifetime, and the wall-clock times its request was sent and it expires
//! (the processes share no `Instant`). Never the secret.
//!
//! Cross-process single flight: the refresh lock is an exclusive lock on `<file>.lock`
//! (`std::fs::File` locks: `flock` on Unix, released by the OS if the process dies), one
//! for all the keys of the file.
//!
//! A file that others may read or write, a symlink, or one replaced while being opened is
//! not trusted; a corrupt, empty or foreign one is treated as empty and replaced on the next
//! write, by rename, never written through.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use miniserde::{Deserialize, json as mini};

use crate::cache::{CacheEntry, CacheKey, CacheLock, TokenCache, unix_ms};
use crate::text;

/// A larger file is not read: it can't be one of ours (a token is about 1 KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

const FORMAT_VERSION: u64 = 1;

/// The most keys the file holds: with more, a refresh drops the least recently received.
/// A token is about 1 KiB, so the file stays near 256 KiB, under [`MAX_FILE_BYTES`], and a
/// refresh rewrites at most that much. Jobs with more keys than this still get every token,
/// from the network for the ones that fell out.
const MAX_FILE_KEYS: usize = 256;

/// The file, as it is on disk.
#[derive(Deserialize)]
pub(crate) struct FileContents {
    version: u64,
    token_url: String,
    app_id: String,
    tokens: Vec<FileToken>,
}

#[derive(Deserialize)]
pub(crate) struct FileToken {
    /// The request key: resource, sorted scopes and organization.
    key: String,
    access_token: String,
    /// The lifetime in whole seconds (the times below are exact).
    expires_in: u64,
    /// The scope the server sent, if it sent one.
    scope: Option<String>,
    /// Unix time in milliseconds when the request that got the token was sent.
    received_at_ms: u64,
    /// When it expires: `received_at_ms` plus the lifetime.
    expires_at_ms: u64,
}

/// Parses a token file's bytes; `None` for anything that is not a well-formed file of this
/// format.
pub(crate) fn parse(bytes: &[u8]) -> Option<FileContents> {
    let text = std::str::from_utf8(bytes).ok()?;
    let contents: FileContents = mini::from_str(text).ok()?;
    (contents.version == FORMAT_VERSION).then_some(contents)
}

/// The entry for `key` in a parsed file, if the file is for its app and server and the
/// entry's times add up.
pub(crate) fn lookup(contents: &FileContents, key: &CacheKey) -> Option<CacheEntry> {
    if contents.token_url != key.token_url() || contents.app_id != key.app_id() {
        return None;
    }
    entry_of(
        contents
            .tokens
            .iter()
            .find(|t| t.key == key.request_key())?,
    )
}

/// A file token as an entry, if its times add up and it could have come from a server.
fn entry_of(t: &FileToken) -> Option<CacheEntry> {
    // The lifetime in whole seconds must match the exact times: anything else is an edit.
    let lifetime_ms = t.expires_at_ms.checked_sub(t.received_at_ms)?;
    if lifetime_ms / 1000 != t.expires_in {
        return None;
    }
    CacheEntry::from_unix_ms(
        t.access_token.clone(),
        t.scope.clone(),
        t.received_at_ms,
        t.expires_at_ms,
    )
}

/// The token file of [`TokenStore::cache_file`](crate::TokenStore::cache_file).
pub(crate) struct TokenFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl TokenFile {
    pub(crate) fn new(path: PathBuf) -> TokenFile {
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        TokenFile {
            path,
            lock_path: lock_path.into(),
        }
    }

    /// The file's contents; `Ok(None)` when there is no file or it is not ours to use
    /// (corrupt, foreign format); `Err` when it exists but can't be trusted or read.
    fn load(&self) -> Result<Option<FileContents>, String> {
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

    fn temp_path(&self) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".tmp.{}.{n}", std::process::id()));
        name.into()
    }
}

impl TokenCache for TokenFile {
    fn describe(&self) -> String {
        format!("token file {}", self.path.display())
    }

    fn read(&self, key: &CacheKey, _left: Duration) -> Result<Option<CacheEntry>, String> {
        Ok(self.load()?.and_then(|contents| lookup(&contents, key)))
    }

    /// Adds `entry`, replacing this key's old one and dropping expired ones: written to a
    /// private temporary file beside it, then renamed over it. The entries of other keys
    /// are kept when the file is ours and can be read.
    fn write(&self, key: &CacheKey, entry: &CacheEntry, _left: Duration) -> Result<(), String> {
        let now = unix_ms(SystemTime::now()).ok_or("the clock is before 1970")?;
        // An untrusted or unreadable file is replaced, not merged.
        let contents = match self.load() {
            Ok(Some(c)) if c.token_url == key.token_url() && c.app_id == key.app_id() => Some(c),
            _ => None,
        };
        let mut tokens: Vec<(&str, CacheEntry)> = Vec::new();
        for t in contents.iter().flat_map(|c| &c.tokens) {
            if t.key != key.request_key()
                && t.expires_at_ms > now
                && let Some(e) = entry_of(t)
            {
                tokens.push((&t.key, e));
            }
        }
        // Bounded: the most recently received tokens are kept, so a refresh costs the same
        // however many keys the processes use, and the file stays far under its cap.
        if tokens.len() >= MAX_FILE_KEYS {
            tokens.sort_unstable_by_key(|(_, e)| std::cmp::Reverse(e.received_at()));
            tokens.truncate(MAX_FILE_KEYS - 1);
        }
        tokens.push((key.request_key(), entry.clone()));
        let text = encode(key, &tokens);

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

    /// The one lock of the file, whichever key; the OS releases it when the process dies,
    /// so the lease is not needed.
    fn try_lock(
        &self,
        _key: &CacheKey,
        _lease: Duration,
        _left: Duration,
    ) -> Result<Option<CacheLock>, String> {
        let file = open_private(&self.lock_path, false)
            .map_err(|e| format!("cannot open lock file: {e}"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(CacheLock::new(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(format!("cannot lock: {e}")),
        }
    }
}

/// The file's text, written by hand (see `json.rs`).
fn encode(key: &CacheKey, tokens: &[(&str, CacheEntry)]) -> String {
    let mut out = String::with_capacity(128 + tokens.len() * 1024);
    out.push_str(&format!("{{\"version\":{FORMAT_VERSION},"));
    text::push_field(&mut out, "token_url", Some(key.token_url()));
    out.push(',');
    text::push_field(&mut out, "app_id", Some(key.app_id()));
    out.push_str(",\"tokens\":[");
    for (i, (request_key, entry)) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        text::push_field(&mut out, "key", Some(request_key));
        let lifetime = entry.expires_at().duration_since(entry.received_at());
        let expires_in = lifetime.map_or(0, |d| d.as_secs());
        out.push_str(&format!(",\"expires_in\":{expires_in},"));
        entry.push_fields(&mut out);
        out.push('}');
    }
    out.push_str("]}");
    out
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

    fn key() -> CacheKey {
        CacheKey::new("https://x/t", "app", "k")
    }

    fn find(text: &str) -> Option<CacheEntry> {
        lookup(&parse(text.as_bytes())?, &key())
    }

    #[test]
    fn entry_is_found() {
        let e = find(&file(&entry(1_000_000, 3600))).unwrap();
        assert_eq!(e.access_token(), "tok");
        let lifetime = e.expires_at().duration_since(e.received_at()).unwrap();
        assert_eq!(lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn times_that_do_not_add_up_are_not_trusted() {
        let bad = r#"{"key":"k","access_token":"tok","expires_in":60,"scope":null,"received_at_ms":1000,"expires_at_ms":99999999}"#;
        assert!(find(&file(bad)).is_none());
        let backwards = r#"{"key":"k","access_token":"tok","expires_in":0,"scope":null,"received_at_ms":5000,"expires_at_ms":1000}"#;
        assert!(find(&file(backwards)).is_none());
    }

    #[test]
    fn foreign_and_corrupt_files() {
        let c = parse(file(&entry(1_000_000, 3600)).as_bytes()).unwrap();
        assert!(lookup(&c, &CacheKey::new("https://other/t", "app", "k")).is_none());
        assert!(lookup(&c, &CacheKey::new("https://x/t", "other-app", "k")).is_none());
        assert!(lookup(&c, &CacheKey::new("https://x/t", "app", "other-key")).is_none());
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
        assert!(find(&evil).is_none());
    }

    #[test]
    fn huge_numbers_do_not_panic() {
        let e = format!(
            r#"{{"key":"k","access_token":"tok","expires_in":{},"scope":null,"received_at_ms":1,"expires_at_ms":{}}}"#,
            u64::MAX,
            u64::MAX
        );
        assert!(find(&file(&e)).is_none());
    }

    #[test]
    fn the_file_keeps_the_most_recent_keys_only() {
        let dir = std::env::temp_dir().join(format!("logto-m2m-cap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = TokenFile::new(dir.join("tokens.json"));
        let now = SystemTime::now();
        for i in 0..MAX_FILE_KEYS + 20 {
            let at = now + Duration::from_millis(i as u64);
            let entry = CacheEntry::new("tok", None, at, at + Duration::from_secs(3600)).unwrap();
            let key = CacheKey::new("https://x/t", "app", &format!("k{i}"));
            file.write(&key, &entry, Duration::from_secs(1)).unwrap();
        }
        let contents = file.load().unwrap().unwrap();
        assert_eq!(contents.tokens.len(), MAX_FILE_KEYS);
        let read = |i: usize| {
            let key = CacheKey::new("https://x/t", "app", &format!("k{i}"));
            file.read(&key, Duration::from_secs(1)).unwrap()
        };
        assert!(read(MAX_FILE_KEYS + 19).is_some(), "the newest is kept");
        assert!(read(20).is_some(), "the oldest kept one");
        assert!(read(19).is_none(), "the least recent fell out");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn written_text_parses_back() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let entry =
            CacheEntry::new("tok", Some("a\\b"), at, at + Duration::from_secs(3600)).unwrap();
        let key = CacheKey::new("https://x/t", "app", "r\0a \"b\"\0");
        let c = parse(encode(&key, &[(key.request_key(), entry.clone())]).as_bytes()).unwrap();
        assert_eq!(lookup(&c, &key), Some(entry));
    }
}
