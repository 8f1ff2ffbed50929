//! Time as the crate reads and writes it: durations as people write them (`2.5`, `30s`),
//! and Unix times. By integer arithmetic throughout: floats would link their parsing and
//! formatting code into every binary for these few values.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A positive number of seconds, `10`, `2.5` or `.25`: digits, at most one dot, up to
/// nanoseconds (further digits are cut, as a float would round them away).
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, &'static str> {
    const NAN: &str = "not a number of seconds";
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(NAN);
    }
    // Past nine digits the fraction is below a nanosecond: cut, as a float would round.
    let mut nanos = 0u32;
    for (i, b) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    let secs = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too many seconds")?
    };
    Some(Duration::new(secs, nanos))
        .filter(|d| !d.is_zero())
        .ok_or("not a positive number of seconds")
}

/// Durations as people write them: `30s`, `1.5s`, `250ms`.
pub(crate) struct DisplayDuration(pub(crate) Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d < Duration::from_secs(1) {
            // u32, as a u128 would link its own printer (1 KB) for this one line.
            write!(f, "{}ms", d.subsec_millis())
        } else {
            // Whole milliseconds by integer arithmetic: float formatting would link tens of
            // kilobytes of tables into every binary for this one line.
            write!(f, "{}.{:03}s", d.as_secs(), d.subsec_millis())
        }
    }
}

/// Milliseconds since 1970, `None` before then or too far ahead.
pub(crate) fn unix_ms(t: SystemTime) -> Option<u64> {
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// Seconds since 1970 now; 0 for a clock before then.
pub(crate) fn unix_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn seconds_without_floats() {
        let s = |t: &str| parse_seconds(t).map(|d| d.as_nanos());
        assert_eq!(s("10"), Ok(10_000_000_000));
        assert_eq!(s("2.5"), Ok(2_500_000_000));
        assert_eq!(s(".25"), Ok(250_000_000));
        assert_eq!(s("1."), Ok(1_000_000_000));
        assert_eq!(s("0.0000000019"), Ok(1));
        for zero in ["0", "0.0", "0.0000000001"] {
            assert_eq!(s(zero), Err("not a positive number of seconds"), "{zero:?}");
        }
        for bad in ["", ".", "-1", "1e3", "1.2.3", " 1", "abc", "soon"] {
            assert_eq!(s(bad), Err("not a number of seconds"), "{bad:?}");
        }
        assert_eq!(s("99999999999999999999"), Err("too many seconds"));
    }

    #[test]
    fn durations_display_plainly() {
        assert_eq!(DisplayDuration(Duration::from_secs(30)).to_string(), "30s");
        assert_eq!(
            DisplayDuration(Duration::from_millis(250)).to_string(),
            "250ms"
        );
        assert_eq!(
            DisplayDuration(Duration::from_millis(1500)).to_string(),
            "1.500s"
        );
    }
}
