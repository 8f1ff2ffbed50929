//! What a run prints besides its result, and how it ends: stdout written without
//! panicking, the stderr log (warnings by default, at the level `LOGTO_LOG` gives), times
//! as RFC 3339 text, and [`Failure`], the message and exit status of a run that fails.

use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logto_m2m::{Error, ErrorKind};

/// How a run ends when it does not succeed; the number is the exit status.
pub(crate) enum Failure {
    /// 1: the token endpoint, the network, the token itself, or `call`'s answer.
    Token(String),
    /// 2: the command line or the environment.
    Usage(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        // A bad variable or config is the caller's to fix before anything is sent.
        match e.kind() {
            ErrorKind::Env { .. } => Failure::Usage(e.to_string()),
            // The reason alone: the library's advice for a config names its own methods
            // (`allow_insecure_http`, `Config::proxy`), which a command user can't call.
            kind @ ErrorKind::Config { .. } => Failure::Usage(kind.to_string()),
            ErrorKind::Timeout { .. } => Failure::Token(format!(
                "{e}; give it longer with --timeout <seconds> or LOGTO_TIMEOUT"
            )),
            _ => Failure::Token(e.to_string()),
        }
    }
}

/// The target of the command's own log lines (its warnings, the store's counters).
pub(crate) const TARGET: &str = "logto_m2m::command";

pub(crate) fn write_stdout(text: &str) -> Result<(), Failure> {
    write_stdout_bytes(text.as_bytes())
}

pub(crate) fn write_stdout_bytes(bytes: &[u8]) -> Result<(), Failure> {
    // Not println!: it panics when stdout is closed (`| head`); this is an ordinary error.
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Token(format!("writing stdout: {e}")))
}

/// Copies `body` to stdout as it comes, and says whether it ended a line. On a terminal, a
/// body that does not end in a newline gets one, so that the shell's prompt, or a message
/// that follows on stderr, starts on a line of its own; piped, the bytes stay exactly as the
/// API sent them.
pub(crate) fn copy_to_stdout(body: &mut dyn Read) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    let mut last = None;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        last = buf.get(n - 1).copied();
    }
    if ends_open_line(out.is_terminal(), last) {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Whether output whose last byte was `last` needs a newline after it: only on a terminal,
/// and only when something was written and it was not a newline.
pub(crate) fn ends_open_line(terminal: bool, last: Option<u8>) -> bool {
    terminal && last.is_some_and(|b| b != b'\n')
}

/// The library's log events and the command's own warnings on stderr, each as it is:
/// the library logs under the target `logto_m2m` and never logs a secret or token. ureq's
/// own events are left out, because its most detailed level is not redacted.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("logto_m2m")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args();
        // Warnings are for whoever runs the command; the events of the more detailed
        // levels say where they come from.
        match record.level() {
            log::Level::Error => eprintln!("logto-m2m: error: {text}"),
            log::Level::Warn => eprintln!("logto-m2m: warning: {text}"),
            level => eprintln!("logto-m2m: {level} {}: {text}", record.target()),
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

/// The level `LOGTO_LOG` (its value, if set) asks for, in any case: `off`, `error`,
/// `warn` (the default), `info` or `debug`.
pub(crate) fn log_level(value: Option<&str>) -> Result<log::LevelFilter, Failure> {
    Ok(
        match value.unwrap_or_default().to_ascii_lowercase().as_str() {
            "" | "warn" => log::LevelFilter::Warn,
            "off" => log::LevelFilter::Off,
            "error" => log::LevelFilter::Error,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            // Not `trace`: there is nothing more to say, and ureq's trace is not redacted.
            _ => {
                return Err(Failure::Usage(
                    "environment variable LOGTO_LOG: not off, error, warn, info or debug".into(),
                ));
            }
        },
    )
}

/// Sends log events of `level` and above to stderr.
pub(crate) fn init_logger(level: log::LevelFilter) {
    // set_logger fails only when a logger is already set, and this is the only call.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Unix seconds as `2026-11-28T23:59:59Z`; `None` outside years 1970..=9999.
///
/// The calendar is httpdate's (a dependency already): its HTTP date, `Sat, 28 Nov 2026
/// 23:59:59 GMT`, rearranged. Its formatter panics past the year 9999, hence the range.
pub(crate) fn rfc3339(unix: i64) -> Option<String> {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(0..=LAST).contains(&unix) {
        return None;
    }
    let at = UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs());
    let http = httpdate::fmt_http_date(at);
    // "Www, DD Mon YYYY HH:MM:SS GMT": fixed width, English month names.
    let (day, month, year, time) = (&http[5..7], &http[8..11], &http[12..16], &http[17..25]);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|&name| name == month)? + 1;
    Some(format!("{year}-{m:02}-{day}T{time}Z"))
}

pub(crate) fn unix_now() -> i64 {
    // A clock before 1970 is broken; 0 only skews the "in ..." hints.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_newline_only_where_a_terminal_needs_one() {
        assert!(ends_open_line(true, Some(b'}')));
        assert!(!ends_open_line(true, Some(b'\n')));
        assert!(
            !ends_open_line(true, None),
            "nothing written, nothing to end"
        );
        assert!(
            !ends_open_line(false, Some(b'}')),
            "piped: the bytes as sent"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            rfc3339(1_795_910_399).as_deref(),
            Some("2026-11-28T23:59:59Z")
        );
        assert_eq!(rfc3339(-1), None);
        assert_eq!(
            rfc3339(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339(253_402_300_800), None);
        assert_eq!(rfc3339(i64::MIN), None);
        assert_eq!(rfc3339(i64::MAX), None);
    }
}
