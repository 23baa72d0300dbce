//! UTC timestamps as django-microservices-communication writes and reads them.
//!
//! Emitted: `YYYY-MM-DDTHH:MM:SS.mmmZ` (always a millisecond fraction, always
//! `Z`). Accepted: with or without a fraction (any number of digits, truncated
//! to milliseconds), `Z`, `z`, `+00:00` or any other `±HH:MM` / `±HHMM` offset,
//! and a space instead of `T`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{snippet, WireError};

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Format a time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds, truncated).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_795_464_265_198);
/// assert_eq!(sinew_events::wire::format_timestamp(t), "2026-11-23T20:04:25.198Z");
/// ```
pub fn format_timestamp(t: SystemTime) -> String {
    let ms = to_millis(t);
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parse an ISO 8601 / RFC 3339 timestamp leniently (see the module docs).
/// The error quotes at most a short, escaped prefix of `s`.
///
/// ```
/// use sinew_events::wire::{format_timestamp, parse_timestamp};
/// for s in ["2026-11-23T20:04:25.198Z", "2026-11-23T20:04:25.198123+00:00", "2026-11-23T23:04:25.198+03:00"] {
///     assert_eq!(format_timestamp(parse_timestamp(s).unwrap()), "2026-11-23T20:04:25.198Z");
/// }
/// assert_eq!(format_timestamp(parse_timestamp("2026-11-23T20:04:25Z").unwrap()), "2026-11-23T20:04:25.000Z");
/// ```
pub fn parse_timestamp(s: &str) -> Result<SystemTime, WireError> {
    let bad = || WireError::Timestamp(snippet(s));
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, WireError> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part
            .iter()
            .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        for k in 0..3 {
            millis = millis * 10
                + b.get(start + k)
                    .filter(|_| start + k < i)
                    .map_or(0, |c| i64::from(c - b'0'));
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (oh, om) = match rest.len() {
                5 if rest[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                2 => (num(i + 1..i + 3)?, 0),
                _ => return Err(bad()),
            };
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_minutes * 60;
    Ok(from_millis(secs * 1000 + millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = parse_timestamp("2000-02-29T12:00:00.5Z").unwrap();
        assert_eq!(format_timestamp(t), "2000-02-29T12:00:00.500Z");
        let t = parse_timestamp("2026-11-23 20:04:25.198-0130").unwrap();
        assert_eq!(format_timestamp(t), "2026-11-23T21:34:25.198Z");
        assert_eq!(
            format_timestamp(from_millis(-1)),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2026-11-23",
            "2026-11-23T20:04:25",
            "2026-11-23T20:04:25.Z",
            "2026-13-23T20:04:25Z",
            "2026-11-23T24:04:25Z",
            "2026-11-23T20:04:25Zjunk",
            "2026-11-23T20:04:25+0",
            "2026-1a-23T20:04:25Z",
            "２026-11-23T20:04:25Z",
        ] {
            assert!(parse_timestamp(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn errors_quote_a_short_prefix() {
        let huge = format!("2026-11-23T20:04:25Z{}", "\"\n".repeat(100_000));
        let Err(WireError::Timestamp(quoted)) = parse_timestamp(&huge) else {
            panic!("accepted")
        };
        assert!(quoted.len() < 100, "{quoted}");
        assert!(
            quoted.starts_with(r#""2026-11-23T20:04:25Z\"\n"#),
            "{quoted}"
        );
        let msg = WireError::Timestamp(quoted).to_string();
        assert!(msg.ends_with("(200020 bytes)"), "{msg}");
        assert!(!msg.contains('\n'));
        assert_eq!(
            parse_timestamp("soon").unwrap_err().to_string(),
            r#"invalid timestamp "soon""#
        );
    }

    proptest! {
        #[test]
        fn round_trip(ms in -62_000_000_000_000i64..253_000_000_000_000i64) {
            let t = from_millis(ms);
            let s = format_timestamp(t);
            prop_assert_eq!(to_millis(parse_timestamp(&s).unwrap()), ms);
            let plus = s.replace('Z', "+00:00");
            prop_assert_eq!(to_millis(parse_timestamp(&plus).unwrap()), ms);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_timestamp(&s);
        }
    }
}
