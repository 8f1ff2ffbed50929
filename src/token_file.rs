//! The token file: tokens that outlive the process, so that cron runs share one token.
//!
//! The file is JSON and holds, per key the store gives (a hash of token URL, app id and
//! request), the value the store gives (sealed with a key derived from the app secret, so
//! that whoever reads the file learns no token; never the secret) and when it expires, in
//! the clear, so that a write can drop expired values and keep the longest-lived without
//! opening the others. The store checks what it reads back as it would any cache's.
//!
//! Cross-process single flight: the refresh lock is an exclusive lock on `<file>.lock`
//! (`std::fs::File` locks: `flock` on Unix, released by the OS if the process dies), one
//! for all the keys of the file; built with a compiler before 1.89, which has no such lock,
//! the lease file `<file>.lease` instead (see `try_lease`).
//!
//! A file that others may read or write, a symlink, or one replaced while being opened is
//! not trusted; a corrupt, empty or foreign one is treated as empty and replaced on the next
//! write, by rename, never written through.
//!
//! Crash safety: each write goes to a temporary file of a random name beside the file
//! (`<file>.tmp.<16 hex digits>`, see `create_temp`), so one left by a writer killed before
//! its rename is never in anyone's way; whoever takes the lock later removes those older
//! than its lease (`remove_stale_temps`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::{CacheLock, TokenCache};
use crate::hash::random_u64;
use crate::time::unix_ms;
use miniserde::{Deserialize, json as mini};

/// A larger file is not read: it can't be one of ours (a token is about 1 KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// 3: opaque keys and values (the store's sealed entries). A file of version 1 (tokens in
/// the clear) or 2 (entries sealed, bound to one token URL and app id) is ignored and
/// replaced.
const FORMAT_VERSION: u64 = 3;

/// The most keys the file holds: with more, a write drops the shortest-lived. A value is
/// about 1.4 KiB, so the file stays near 360 KiB, under [`MAX_FILE_BYTES`], and a refresh
/// rewrites at most that much. Jobs with more keys than this still get every token, from
/// the network for the ones that fell out.
const MAX_FILE_KEYS: usize = 256;

/// How many random temporary names a write tries: a name is taken only by a file already
/// there under that name, which 64 random bits make a matter of a planted file, not of
/// chance; a few tries then say so rather than loop.
const TEMP_NAME_TRIES: usize = 4;

/// The file, as it is on disk.
#[derive(Deserialize)]
pub(crate) struct FileContents {
    version: u64,
    tokens: Vec<FileToken>,
}

#[derive(Deserialize)]
pub(crate) struct FileToken {
    /// The store's key: a hash of the token URL, app id and request, not the request.
    key: String,
    /// Unix time in milliseconds when the token in `value` expires.
    expires_at_ms: u64,
    /// The store's value for the key.
    value: String,
}

/// Just the version, to tell a file of an older version from a corrupt one.
#[derive(Deserialize)]
struct Version {
    version: u64,
}

/// Parses a token file's bytes; `None` for anything that is not a well-formed file of this
/// format.
pub(crate) fn parse(bytes: &[u8]) -> Option<FileContents> {
    let text = std::str::from_utf8(bytes).ok()?;
    let contents: FileContents = mini::from_str(text).ok()?;
    (contents.version == FORMAT_VERSION).then_some(contents)
}

/// A file of an older version of this format: ignored and replaced without a word, as
/// every file is once after an upgrade.
fn is_older_format(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| mini::from_str::<Version>(text).ok())
        .is_some_and(|v| v.version < FORMAT_VERSION)
}

/// The value for `key` in a parsed file.
pub(crate) fn lookup<'a>(contents: &'a FileContents, key: &str) -> Option<&'a str> {
    let t = contents.tokens.iter().find(|t| t.key == key)?;
    Some(&t.value)
}

/// The token file of [`TokenStore::cache_file`](crate::TokenStore::cache_file).
pub(crate) struct TokenFile {
    path: PathBuf,
    #[cfg_attr(not(logto_file_lock), allow(dead_code))]
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
            // No file there, also when a folder on the way is a file: writing says why.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
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
            None if bytes.is_empty() || is_older_format(&bytes) => Ok(None),
            None => {
                Err("not a token file (corrupt or another format); ignored and replaced".into())
            }
        }
    }

    /// Creates the file's folder when it is missing, with mode 0700 on Unix (only the owner
    /// can enter it, as ssh makes `~/.ssh`): without it the first run of a job could write
    /// no file, and neither could any run after it, each fetching its own token. A folder
    /// that exists is left as it is. Called before the lock file and the file are created.
    fn ensure_folder(&self) -> Result<(), String> {
        let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return Ok(());
        };
        if dir.is_dir() {
            return Ok(());
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| format!("cannot create its folder {}: {e}", dir.display()))
    }

    /// A new private temporary file beside the file, and its path: `<file>.tmp.` and 16
    /// random hex digits. Random, not the pid and a counter: a writer killed between
    /// creating its file and renaming it leaves the file behind, and in a container, where
    /// the program is PID 1 and writes once a run, the next run would have the same name
    /// and find it taken; so would another container's PID 1 writing beside it. A name
    /// that is taken is never removed: it may be a live writer's.
    fn create_temp(&self) -> Result<(File, PathBuf), String> {
        self.create_temp_named(random_hex)
    }

    /// [`create_temp`](TokenFile::create_temp) with the random part from `random`, which
    /// the tests replace.
    fn create_temp_named(
        &self,
        mut random: impl FnMut() -> Option<String>,
    ) -> Result<(File, PathBuf), String> {
        let mut taken = None;
        for _ in 0..TEMP_NAME_TRIES {
            let random = random().ok_or("cannot write: the system's random source failed")?;
            let mut name = self.path.clone().into_os_string();
            name.push(".tmp.");
            name.push(random);
            let tmp = PathBuf::from(name);
            match open_private(&tmp, true) {
                Ok(file) => return Ok((file, tmp)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => taken = Some(e),
                Err(e) => return Err(format!("cannot write: {e}")),
            }
        }
        let e = taken.map(|e| e.to_string()).unwrap_or_default();
        Err(format!(
            "cannot write: {TEMP_NAME_TRIES} random temporary names taken ({e})"
        ))
    }

    /// Removes the temporary files that writers killed before their rename left beside the
    /// file, once they are older than `older_than` (the lease: what a refresh, its write
    /// included, may take). Called by the lock's holder, so the only writers that can be
    /// at work are ones past their lease (a lock held too long, gone ahead without it) or
    /// without the lock: a file modified within the lease may be theirs and is kept. Only
    /// ours: regular files (a symlink is never followed nor removed), named
    /// `<file>.tmp.*`, private as we make them. Best effort, within `left`: a folder that
    /// can't be listed, or a file that can't be removed, is left as it is; a leftover is in
    /// nobody's way, it only takes room.
    fn remove_stale_temps(&self, older_than: Duration, left: Duration) {
        let started = Instant::now();
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut prefix = name.to_os_string();
        prefix.push(".tmp.");
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries {
            if started.elapsed() >= left {
                return;
            }
            let Ok(entry) = entry else {
                continue;
            };
            let name = entry.file_name();
            if !name
                .as_encoded_bytes()
                .starts_with(prefix.as_encoded_bytes())
            {
                continue;
            }
            // The entry's own metadata: a symlink's, never its target's.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() || !meta.is_file() || !is_private(&meta) {
                continue;
            }
            // A time in the future (the clock stepped back) is young.
            let stale = meta
                .modified()
                .ok()
                .and_then(|modified| modified.checked_add(older_than))
                .is_some_and(|until| until <= now);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// 16 lowercase hex digits (64 bits) from the system's random source; `None` when it
/// fails.
fn random_hex() -> Option<String> {
    Some(format!("{:016x}", random_u64()?))
}

impl TokenCache for TokenFile {
    fn describe(&self) -> String {
        format!("token file {}", self.path.display())
    }

    fn read(&self, key: &str, _left: Duration) -> Result<Option<Vec<u8>>, String> {
        let contents = self.load()?;
        Ok(contents
            .as_ref()
            .and_then(|c| lookup(c, key))
            .map(|value| value.as_bytes().to_vec()))
    }

    /// Adds `value`, replacing this key's old one and dropping expired ones: written to a
    /// private temporary file beside it, then renamed over it. The values of other keys
    /// are kept when the file is ours and can be read.
    fn write(
        &self,
        key: &str,
        value: &[u8],
        expires_at: SystemTime,
        _left: Duration,
    ) -> Result<(), String> {
        let now = unix_ms(SystemTime::now()).ok_or("the clock is before 1970")?;
        // The store's keys are hex and its values sealed base64: plain text (see `encode`).
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| is_plain(v) && is_plain(key))
            .ok_or("key or value is not plain ascii; not written")?;
        // An untrusted or unreadable file is replaced, not merged.
        let contents = self.load().ok().flatten();
        // The others' values are kept as they are (any that are not plain text could not
        // have come from a store, and are dropped).
        let mut tokens: Vec<&FileToken> = contents
            .iter()
            .flat_map(|c| &c.tokens)
            .filter(|t| t.key != key && t.expires_at_ms > now)
            .filter(|t| is_plain(&t.key) && is_plain(&t.value))
            .collect();
        // Bounded: the longest-lived tokens are kept, so a refresh costs the same however
        // many keys the processes use, and the file stays far under its cap. The
        // shortest-lived goes, one at a time: a file over the cap is rare (one more key than
        // it holds), and a sort here would link a second sort into every binary (4 KB). Far
        // more than the cap is no file of ours: which of those go does not matter.
        tokens.truncate(2 * MAX_FILE_KEYS);
        while tokens.len() >= MAX_FILE_KEYS {
            let soonest = (0..tokens.len()).min_by_key(|&i| tokens[i].expires_at_ms);
            tokens.swap_remove(soonest.unwrap_or(0));
        }
        let ours = FileToken {
            key: key.to_owned(),
            expires_at_ms: unix_ms(expires_at).unwrap_or_default(),
            value: value.to_owned(),
        };
        tokens.push(&ours);
        let text = encode(&tokens);
        self.ensure_folder()?;

        let (mut file, tmp) = self.create_temp()?;
        let result = (|| {
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

    /// The one lock of the file, whichever key. Built with Rust 1.89 or newer, an OS lock
    /// on `<file>.lock` that the OS releases when the process dies, so the lease is not
    /// needed; with an older compiler (Debian's 1.85), the lease file `<file>.lease`. Its
    /// holder is about to write: it first removes the temporary files older than `lease`
    /// that killed writers left (see `remove_stale_temps`).
    // File::try_lock is newer than the rust-version, and only built where it exists.
    #[allow(clippy::incompatible_msrv)]
    fn try_lock(
        &self,
        _key: &str,
        lease: Duration,
        left: Duration,
    ) -> Result<Option<CacheLock>, String> {
        let started = Instant::now();
        self.ensure_folder()?;
        #[cfg(logto_file_lock)]
        let lock = {
            let file = open_private(&self.lock_path, false)
                .map_err(|e| format!("cannot open lock file: {e}"))?;
            match file.try_lock() {
                Ok(()) => Box::new(file) as CacheLock,
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(format!("cannot lock: {e}")),
            }
        };
        #[cfg(not(logto_file_lock))]
        let lock = match try_lease(&self.lease_path(), lease)? {
            Some(guard) => Box::new(guard) as CacheLock,
            None => return Ok(None),
        };
        self.remove_stale_temps(lease, left.saturating_sub(started.elapsed()));
        Ok(Some(lock))
    }
}

impl TokenFile {
    /// Where the lease of [`try_lease`] is, beside the file. Not `<file>.lock`, which a
    /// build with OS locks leaves behind for good and a lease would take as held.
    #[cfg_attr(logto_file_lock, allow(dead_code))]
    fn lease_path(&self) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(".lease");
        path.into()
    }
}

/// The lock for compilers without `File::lock` (before 1.89), with no OS call beyond std's
/// portable ones: whoever creates `path` (`create_new`, atomic on local file systems) holds
/// it until it removes it, and writes into it when its hold lapses (`lease` from now) and
/// a name of its own. A holder that died leaves the file behind: once its time has passed,
/// the next one moves it aside and takes its place, so a crash blocks the others no longer
/// than the lease. `Ok(None)` while someone else holds it.
///
/// What the OS lock guarantees holds too, within the lease: one holder at a time, hence one
/// request for N processes; the token file itself is written by rename either way, so no
/// holder, live or lapsed, can leave it torn. A holder past its lease (a refresh longer
/// than the timeout that set it) may be joined by a second one: the cost is a second token
/// request, never a broken file.
#[cfg_attr(logto_file_lock, allow(dead_code))]
fn try_lease(path: &Path, lease: Duration) -> Result<Option<LeaseGuard>, String> {
    // Two rounds: the second after moving a lapsed lease aside.
    for _ in 0..2 {
        let now = SystemTime::now();
        match open_private(path, true) {
            Ok(mut file) => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                // A lease too long for the clock never lapses, as a timeout that long is none.
                let until = now.checked_add(lease).and_then(unix_ms).unwrap_or(u64::MAX);
                let since_epoch = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                let text = format!(
                    "{until} {}.{}.{}\n",
                    std::process::id(),
                    since_epoch.subsec_nanos(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                if let Err(e) = file.write_all(text.as_bytes()) {
                    let _ = fs::remove_file(path);
                    return Err(format!("cannot write lease file: {e}"));
                }
                return Ok(Some(LeaseGuard {
                    path: path.to_owned(),
                    text: text.into_bytes(),
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create lease file: {e}")),
        }
        let Some(seen) = read_lease(path) else {
            continue; // gone in between: its holder let go
        };
        if !lapsed(&seen, now, lease) || !move_aside(path, &seen) {
            return Ok(None);
        }
    }
    Ok(None)
}

/// The lease file's bytes (at most 128: ours are 50), `None` when there is none. What is
/// not a regular file is read as empty: never opened (a FIFO would block), and lapsed.
#[cfg_attr(logto_file_lock, allow(dead_code))]
fn read_lease(path: &Path) -> Option<(Vec<u8>, Option<SystemTime>)> {
    let meta = fs::symlink_metadata(path).ok()?;
    let mut bytes = Vec::new();
    if meta.is_file() {
        let file = File::open(path).ok()?;
        file.take(128).read_to_end(&mut bytes).ok()?;
    }
    Some((bytes, meta.modified().ok()))
}

/// Whether a lease has run out: by the time its holder wrote, or, for a file without one
/// (a holder that died between creating and writing it, or not ours), by its age against
/// our own lease.
#[cfg_attr(logto_file_lock, allow(dead_code))]
fn lapsed(seen: &(Vec<u8>, Option<SystemTime>), now: SystemTime, lease: Duration) -> bool {
    let written = std::str::from_utf8(&seen.0)
        .ok()
        .and_then(|text| text.split(' ').next()?.parse::<u64>().ok());
    match (written, unix_ms(now)) {
        (Some(until), Some(now)) => until <= now,
        _ => seen.1.is_none_or(|modified| {
            modified
                .checked_add(lease)
                .is_some_and(|until| until <= now)
        }),
    }
}

/// Moves the lapsed lease `seen` at `path` out of the way; `false` when what it moved was
/// not that one but a live lease someone took after breaking it first, which is put back.
#[cfg_attr(logto_file_lock, allow(dead_code))]
fn move_aside(path: &Path, seen: &(Vec<u8>, Option<SystemTime>)) -> bool {
    // A name of its own (random, as the temporary files'): with the pid and a counter, two
    // PID 1s of two containers sharing the folder would move leases to the same name, one
    // over the other's.
    let Some(random) = random_hex() else {
        return false;
    };
    let mut aside = path.to_owned().into_os_string();
    aside.push(".lapsed.");
    aside.push(random);
    let aside = PathBuf::from(aside);
    if fs::rename(path, &aside).is_err() {
        return false; // someone else moved it first
    }
    let moved = read_lease(&aside).map(|(bytes, _)| bytes);
    let ours = moved.as_ref() == Some(&seen.0);
    if !ours {
        // Back where it was, unless yet another lease is there by now (hard_link never
        // replaces a file).
        let _ = fs::hard_link(&aside, path);
    }
    let _ = fs::remove_file(&aside);
    ours
}

/// A held lease: dropping it removes the file, if it is still this holder's.
#[cfg_attr(logto_file_lock, allow(dead_code))]
struct LeaseGuard {
    path: PathBuf,
    text: Vec<u8>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if read_lease(&self.path).is_some_and(|(bytes, _)| bytes == self.text) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The file's text. Every key and value is [plain](is_plain), which JSON takes between
/// quotes as it is, so the text is written without a JSON writer: miniserde's serializer
/// would write the same bytes here and link 23.5 KB (its float printer among them) into
/// every program with a token file (a user's `get_token`, stripped: 2,865,488 bytes with
/// this, 2,889,024 with `miniserde::json::to_string`, measured 2026-12-07).
fn encode(tokens: &[&FileToken]) -> String {
    let mut out =
        String::with_capacity(64 + tokens.iter().map(|t| 128 + t.value.len()).sum::<usize>());
    out.push_str(&format!("{{\"version\":{FORMAT_VERSION},\"tokens\":["));
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"key\":\"{}\",\"expires_at_ms\":{},\"value\":\"{}\"}}",
            t.key, t.expires_at_ms, t.value
        ));
    }
    out.push_str("]}");
    out
}

/// Visible ASCII without `"` and `\`: a JSON string's content as it is, with nothing to
/// escape. The store's keys (hex) and values (`logto-m2m:sealed:1:` and URL-safe base64)
/// always are.
fn is_plain(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
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

/// Whether nobody but the owner can read or write the file, as [`open_private`] makes them.
fn is_private(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o077 == 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        true
    }
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

    fn dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("logto-m2m-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn in_an_hour() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    #[test]
    fn foreign_corrupt_and_older_files() {
        for junk in [
            "",
            "{",
            "[]",
            "null",
            "\u{0}",
            r#"{"version":4,"tokens":[]}"#,
            r#"{"version":2,"token_url":"https://x/t","app_id":"app","tokens":[]}"#,
        ] {
            assert!(parse(junk.as_bytes()).is_none(), "{junk:?}");
        }
        // Versions 1 and 2: ignored without a word, then replaced.
        assert!(is_older_format(
            br#"{"version":2,"token_url":"u","app_id":"a","tokens":[]}"#
        ));
        assert!(!is_older_format(b"{"));
        assert!(!is_older_format(br#"{"version":4}"#));
    }

    #[test]
    fn huge_numbers_do_not_panic() {
        let text = format!(
            r#"{{"version":3,"tokens":[{{"key":"k","expires_at_ms":{},"value":"x"}}]}}"#,
            u64::MAX
        );
        assert_eq!(lookup(&parse(text.as_bytes()).unwrap(), "k"), Some("x"));
        let over = text.replace(&u64::MAX.to_string(), "18446744073709551616");
        assert!(parse(over.as_bytes()).is_none());
    }

    #[test]
    fn the_file_keeps_the_longest_lived_keys_only() {
        let dir = dir("cap");
        let file = TokenFile::new(dir.join("tokens.json"));
        let now = SystemTime::now();
        for i in 0..MAX_FILE_KEYS + 20 {
            let expires = now + Duration::from_secs(3600 + i as u64);
            file.write(&format!("k{i}"), b"v", expires, Duration::from_secs(1))
                .unwrap();
        }
        let contents = file.load().unwrap().unwrap();
        assert_eq!(contents.tokens.len(), MAX_FILE_KEYS);
        let read = |i: usize| file.read(&format!("k{i}"), Duration::from_secs(1)).unwrap();
        assert!(read(MAX_FILE_KEYS + 19).is_some(), "the newest is kept");
        assert!(read(20).is_some(), "the shortest-lived kept one");
        assert!(read(19).is_none(), "the shortest-lived fell out");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_created_private() {
        let dir = dir("folder");
        let file = TokenFile::new(dir.join("a/b/tokens.json"));
        assert!(
            file.try_lock("k", Duration::ZERO, Duration::ZERO)
                .unwrap()
                .is_some()
        );
        file.write("k", b"v", in_an_hour(), Duration::from_secs(1))
            .unwrap();
        assert_eq!(file.read("k", Duration::ZERO).unwrap(), Some(b"v".to_vec()));
        #[cfg(unix)]
        for sub in ["a", "a/b"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(sub)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{sub}");
        }
        // A folder that can't be made (under a file: even root can't) is named.
        fs::write(dir.join("plain"), "").unwrap();
        let blocked = TokenFile::new(dir.join("plain/sub/tokens.json"));
        let err = blocked
            .write("k", b"v", in_an_hour(), Duration::from_secs(1))
            .unwrap_err();
        let folder = dir.join("plain/sub");
        assert!(
            err.starts_with(&format!("cannot create its folder {}: ", folder.display())),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The lease lock of compilers before 1.89, tested on whichever compiler runs the tests.
    #[test]
    fn the_lease_is_held_by_one_and_lapses() {
        let dir = dir("lease");
        let path = dir.join("tokens.json.lease");
        let long = Duration::from_secs(3600);

        let held = try_lease(&path, long).unwrap().expect("free");
        assert!(try_lease(&path, long).unwrap().is_none(), "held");
        drop(held);
        assert!(!path.exists(), "released");
        // A lapsed holder's lease is taken over, and its late drop leaves the new one be.
        let lapsed = try_lease(&path, Duration::ZERO)
            .unwrap()
            .expect("free again");
        let next = try_lease(&path, long).unwrap().expect("lapsed");
        drop(lapsed);
        assert!(
            try_lease(&path, long).unwrap().is_none(),
            "still the new holder's"
        );
        drop(next);

        // A file without a time (a holder that died before writing it, or not ours): by
        // its age against our lease.
        fs::write(&path, "").unwrap();
        assert!(try_lease(&path, long).unwrap().is_none(), "young");
        let old = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(try_lease(&path, long).unwrap().is_some(), "old");

        // A time at the end of the clock never lapses, and never panics.
        fs::write(&path, format!("{} x\n", u64::MAX)).unwrap();
        assert!(try_lease(&path, Duration::MAX).unwrap().is_none());
        fs::remove_file(&path).unwrap();
        assert!(try_lease(&path, Duration::MAX).unwrap().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Threads as processes: one holder at a time, however many try.
    #[test]
    fn the_lease_has_one_holder_at_a_time() {
        let dir = dir("leases");
        let path = dir.join("tokens.json.lease");
        let inside = std::sync::atomic::AtomicUsize::new(0);
        let held = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let Some(guard) = try_lease(&path, Duration::from_secs(60)).unwrap() else {
                            std::thread::yield_now();
                            continue;
                        };
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        held.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(guard);
                    }
                });
            }
        });
        assert!(held.load(Ordering::Relaxed) > 0);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 31, item 5: a temporary file left by a writer killed before its rename, under
    /// the very name the next write would have taken (`<file>.tmp.<pid>.<counter>` before
    /// the names were random: in a container, where the program is PID 1 and writes once
    /// a run, the next run's). Each of those names is taken here, as the leftovers of every
    /// write this test process can make. The write goes through, and the leftovers stay
    /// (young, they could be live writers'); before, the write failed, and removed the
    /// file under its name although it was not its own.
    #[test]
    fn a_leftover_temp_file_is_in_no_ones_way() {
        let dir = dir("leftover");
        let path = dir.join("tokens.json");
        let pid = std::process::id();
        for counter in 0..1024 {
            let leftover = dir.join(format!("tokens.json.tmp.{pid}.{counter}"));
            open_private(&leftover, true).unwrap();
        }
        let file = TokenFile::new(path.clone());
        let lock = file
            .try_lock("k", Duration::from_secs(60), Duration::from_secs(10))
            .unwrap();
        file.write("k", b"v", in_an_hour(), Duration::from_secs(1))
            .unwrap();
        drop(lock);
        assert_eq!(file.read("k", Duration::ZERO).unwrap(), Some(b"v".to_vec()));
        let temps = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("tokens.json.tmp.")
            })
            .count();
        assert_eq!(temps, 1024, "the leftovers, and none of ours");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A random name that is taken is tried again, a few times, and then named.
    #[test]
    fn a_taken_temp_name_is_retried_a_few_times() {
        let dir = dir("taken");
        let file = TokenFile::new(dir.join("tokens.json"));
        open_private(&dir.join("tokens.json.tmp.taken"), true).unwrap();
        let mut names = ["taken", "taken", "free"].into_iter();
        let (_, tmp) = file
            .create_temp_named(|| names.next().map(str::to_owned))
            .unwrap();
        assert_eq!(tmp, dir.join("tokens.json.tmp.free"));
        let mut tries = 0;
        let err = file
            .create_temp_named(|| {
                tries += 1;
                Some("taken".into())
            })
            .unwrap_err();
        assert_eq!(tries, TEMP_NAME_TRIES);
        assert!(dir.join("tokens.json.tmp.taken").exists(), "not ours: left");
        assert!(
            err.starts_with("cannot write: 4 random temporary names taken ("),
            "{err}"
        );
        let err = file.create_temp_named(|| None).unwrap_err();
        assert_eq!(err, "cannot write: the system's random source failed");
        // The real names: random, 16 hex digits, each its own.
        let (_, a) = file.create_temp().unwrap();
        let (_, b) = file.create_temp().unwrap();
        assert_ne!(a, b);
        for tmp in [a, b] {
            let name = tmp.file_name().unwrap().to_str().unwrap();
            let random = name.strip_prefix("tokens.json.tmp.").unwrap();
            assert_eq!(random.len(), 16, "{name}");
            assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Whoever takes the lock removes the temporary files older than its lease, and only
    /// those: not a young one (a live writer's), not another file's, not one that is not
    /// a private regular file as ours are, and never through a symlink.
    #[cfg(unix)]
    #[test]
    fn stale_temp_files_are_removed_by_the_lock_holder() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = dir("stale");
        let lease = Duration::from_secs(60);
        let old = SystemTime::now() - Duration::from_secs(7200);
        let make = |name: &str, age: SystemTime, mode: u32| {
            let path = dir.join(name);
            let file = open_private(&path, true).unwrap();
            file.set_modified(age).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let stale = [
            make("tokens.json.tmp.1.0", old, 0o600),
            make("tokens.json.tmp.0123456789abcdef", old, 0o600),
            make("tokens.json.tmp.read-only", old, 0o400),
        ];
        let kept = [
            // Young: a live writer may be about to rename it.
            make("tokens.json.tmp.fedcba9876543210", SystemTime::now(), 0o600),
            // Barely younger than the lease.
            make(
                "tokens.json.tmp.young",
                SystemTime::now() - lease + Duration::from_secs(30),
                0o600,
            ),
            // Not ours: another file's, another name, others may read it.
            make("other.json.tmp.1.0", old, 0o600),
            make("tokens.json.tmpx", old, 0o600),
            make("tokens.json.tmp.shared", old, 0o644),
            // A link to an old private file: neither it nor its target is removed.
            make("target", old, 0o600),
            dir.join("tokens.json.tmp.link"),
            dir.join("tokens.json.tmp.dir"),
        ];
        symlink(dir.join("target"), &kept[6]).unwrap();
        fs::create_dir(&kept[7]).unwrap();

        let file = TokenFile::new(dir.join("tokens.json"));
        let lock = file
            .try_lock("k", lease, Duration::from_secs(10))
            .unwrap()
            .expect("free");
        for path in &stale {
            assert!(fs::symlink_metadata(path).is_err(), "{}", path.display());
        }
        for path in &kept {
            assert!(fs::symlink_metadata(path).is_ok(), "{}", path.display());
        }
        // Who finds the lock held removes nothing.
        let held = make("tokens.json.tmp.held", old, 0o600);
        assert!(
            file.try_lock("k", lease, Duration::from_secs(10))
                .unwrap()
                .is_none()
        );
        assert!(held.exists());
        drop(lock);
        // No time left: nothing is looked at.
        assert!(file.try_lock("k", lease, Duration::ZERO).unwrap().is_some());
        assert!(held.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn written_text_parses_back() {
        let dir = dir("back");
        let path = dir.join("tokens.json");
        let file = TokenFile::new(path.clone());
        // What a store writes: a hex key, a sealed value.
        let key = "0123456789abcdef0123456789abcdef";
        let value = b"logto-m2m:sealed:1:AbC-_09";
        file.write(key, value, in_an_hour(), Duration::from_secs(1))
            .unwrap();
        // Another key's value is kept by a write of this one; an expired one is dropped.
        file.write("other", b"o", in_an_hour(), Duration::from_secs(1))
            .unwrap();
        file.write("old", b"x", SystemTime::now(), Duration::from_secs(1))
            .unwrap();
        file.write("new", b"n", in_an_hour(), Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            file.read(key, Duration::ZERO).unwrap(),
            Some(value.to_vec())
        );
        assert_eq!(
            file.read("other", Duration::ZERO).unwrap(),
            Some(b"o".to_vec())
        );
        assert_eq!(file.read("old", Duration::ZERO).unwrap(), None);
        // JSON takes plain text between quotes as it is: anything else is not written.
        for (key, value) in [
            ("k", &b"\xff"[..]),
            ("k", b"a\"b"),
            ("k", b"a\\b"),
            ("k", b"a b"),
            ("k", b"\n"),
            ("k\"", b"v"),
        ] {
            let err = file
                .write(key, value, in_an_hour(), Duration::from_secs(1))
                .unwrap_err();
            assert_eq!(err, "key or value is not plain ascii; not written");
        }
        // An entry of the file that is not (a hand-edited one, escaped as JSON): read back
        // as it is, and left out of the next write, which stays valid JSON.
        let text = fs::read_to_string(&path).unwrap();
        let edited = text.replacen(
            "\"tokens\":[",
            &format!(
                "\"tokens\":[{{\"key\":\"q\\\"k\",\"expires_at_ms\":{},\"value\":\"v\\\\\"}},",
                unix_ms(in_an_hour()).unwrap()
            ),
            1,
        );
        fs::write(&path, edited).unwrap();
        assert_eq!(
            file.read("q\"k", Duration::ZERO).unwrap(),
            Some(b"v\\".to_vec())
        );
        file.write("new", b"n2", in_an_hour(), Duration::from_secs(1))
            .unwrap();
        assert_eq!(file.read("q\"k", Duration::ZERO).unwrap(), None);
        assert_eq!(
            file.read(key, Duration::ZERO).unwrap(),
            Some(value.to_vec())
        );
        assert!(parse(&fs::read(&path).unwrap()).is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
