//! Parsers and formatters for the deadline headers.
//!
//! Every parser takes the raw header bytes a peer sent and returns a typed
//! error for anything it does not accept; none of them panics on any input
//! (a property test checks that).
//!
//! | header | form | example |
//! |---|---|---|
//! | `x-request-timeout` | remaining seconds, decimal | `4.999`, `20`, `0.25` |
//! | `x-request-deadline-at` | naive UTC ISO-8601 | `2026-11-24T08:40:00.250` |
//! | `grpc-timeout` | 1–8 digits and a unit of `H M S m u n` | `250m`, `2S` |
//! | `x-envoy-expected-rq-timeout-ms` | integer milliseconds | `1500` |
//!
//! ```
//! use std::time::Duration;
//! use sinew_deadline::parse;
//!
//! assert_eq!(parse::request_timeout(b"4.999"), Ok(Duration::from_millis(4999)));
//! assert_eq!(parse::grpc_timeout(b"250m"), Ok(Duration::from_millis(250)));
//! assert!(parse::request_timeout(b"-1").is_err());
//! assert_eq!(parse::format_request_timeout(Duration::from_micros(4_999_900)), "4.999");
//! assert_eq!(parse::format_grpc_timeout(Duration::from_millis(250)), "250000u");
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Why a header value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The value is empty.
    Empty,
    /// The value does not have the header's form.
    Malformed,
    /// A negative duration.
    Negative,
    /// `inf`, `nan` or a number too large to be finite.
    NonFinite,
    /// A date or time field out of range (month 13, 25 o'clock, …).
    OutOfRange,
}

impl ParseErrorKind {
    /// A short snake_case name (used as a metric label and in problem
    /// documents).
    pub fn as_str(&self) -> &'static str {
        match self {
            ParseErrorKind::Empty => "empty",
            ParseErrorKind::Malformed => "malformed",
            ParseErrorKind::Negative => "negative",
            ParseErrorKind::NonFinite => "non_finite",
            ParseErrorKind::OutOfRange => "out_of_range",
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseErrorKind::Empty => "empty value",
            ParseErrorKind::Malformed => "malformed value",
            ParseErrorKind::Negative => "negative value",
            ParseErrorKind::NonFinite => "non-finite value",
            ParseErrorKind::OutOfRange => "field out of range",
        })
    }
}

impl std::error::Error for ParseErrorKind {}

/// Parse `x-request-timeout`: the caller's remaining time in seconds as a
/// non-negative decimal (`4.99990`, `20`, `1e-3`). Values too large for a
/// [`Duration`] saturate (the server layer caps them anyway); `inf`/`nan`
/// and negative values are refused.
pub fn request_timeout(value: &[u8]) -> Result<Duration, ParseErrorKind> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    // Only the characters of a decimal number: refuses `inf`, `nan`,
    // `infinity` and anything else `f64::from_str` would be lenient about.
    if !v
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        let lower = v.to_ascii_lowercase();
        let t = lower
            .strip_prefix(b"-")
            .or_else(|| lower.strip_prefix(b"+"));
        let t = t.unwrap_or(&lower);
        return Err(if matches!(t, b"inf" | b"infinity" | b"nan") {
            ParseErrorKind::NonFinite
        } else {
            ParseErrorKind::Malformed
        });
    }
    if !v.iter().any(u8::is_ascii_digit) {
        return Err(ParseErrorKind::Malformed);
    }
    // The usual form, `[+-]digits[.digits]`, is read exactly (no float
    // rounding); exponent forms go through f64.
    let (negative, unsigned) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, v),
    };
    if let Some(d) = plain_decimal(unsigned) {
        return if negative && !d.is_zero() {
            Err(ParseErrorKind::Negative)
        } else {
            Ok(d)
        };
    }
    let s = std::str::from_utf8(v).map_err(|_| ParseErrorKind::Malformed)?;
    let secs: f64 = s.parse().map_err(|_| ParseErrorKind::Malformed)?;
    if !secs.is_finite() {
        return Err(ParseErrorKind::NonFinite);
    }
    if secs < 0.0 {
        return Err(ParseErrorKind::Negative);
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `digits[.digits]` (either side may be empty, not both) as exact seconds,
/// saturating; fraction digits past nanoseconds are dropped.
fn plain_decimal(v: &[u8]) -> Option<Duration> {
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &v[v.len()..]),
    };
    if int.is_empty() && frac.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let mut secs: u64 = 0;
    for d in int {
        secs = match secs
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
        {
            Some(s) => s,
            None => return Some(Duration::MAX),
        };
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(Duration::new(secs, nanos))
}

/// Parse `grpc-timeout`: 1–8 ASCII digits followed by one unit of `H`
/// (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u`
/// (microseconds) or `n` (nanoseconds), no space.
pub fn grpc_timeout(value: &[u8]) -> Result<Duration, ParseErrorKind> {
    let v = value.trim_ascii();
    let Some((&unit, digits)) = v.split_last() else {
        return Err(ParseErrorKind::Empty);
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(if digits.first() == Some(&b'-') {
            ParseErrorKind::Negative
        } else {
            ParseErrorKind::Malformed
        });
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(ParseErrorKind::Malformed),
    })
}

/// Parse `x-envoy-expected-rq-timeout-ms`: a non-negative integer number of
/// milliseconds (saturating when larger than `u64`).
pub fn envoy_timeout_ms(value: &[u8]) -> Result<Duration, ParseErrorKind> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    if v[0] == b'-' && v.len() > 1 && v[1..].iter().all(u8::is_ascii_digit) {
        return Err(ParseErrorKind::Negative);
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseErrorKind::Malformed);
    }
    let ms = v.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Ok(Duration::from_millis(ms))
}

/// Parse `x-request-deadline-at`: an absolute deadline as naive UTC
/// ISO-8601, `YYYY-MM-DDTHH:MM:SS` with an optional fraction of 1–9 digits
/// (more are truncated to nanoseconds). Also accepted, leniently: a space
/// instead of `T`, and a trailing `Z` or `±HH:MM` offset.
pub fn deadline_at(value: &[u8]) -> Result<SystemTime, ParseErrorKind> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    let mut p = Cursor { s: v, i: 0 };
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    match p.next() {
        Some(b'T' | b't' | b' ') => {}
        _ => return Err(ParseErrorKind::Malformed),
    }
    let hour = p.digits(2)?;
    p.expect(b':')?;
    let minute = p.digits(2)?;
    p.expect(b':')?;
    let second = p.digits(2)?;
    let mut nanos: u64 = 0;
    if p.peek() == Some(b'.') {
        p.i += 1;
        let mut count = 0;
        while let Some(c) = p.peek().filter(u8::is_ascii_digit) {
            if count < 9 {
                nanos = nanos * 10 + u64::from(c - b'0');
            }
            count += 1;
            p.i += 1;
        }
        if count == 0 {
            return Err(ParseErrorKind::Malformed);
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match p.next() {
        None => 0,
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = p.digits(2)?;
            p.expect(b':')?;
            let m = p.digits(2)?;
            if h > 23 || m > 59 {
                return Err(ParseErrorKind::OutOfRange);
            }
            let off = i64::from(h * 3600 + m * 60);
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        Some(_) => return Err(ParseErrorKind::Malformed),
    };
    if p.peek().is_some() {
        return Err(ParseErrorKind::Malformed);
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(ParseErrorKind::OutOfRange);
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    // Before the epoch: long expired, which is what the caller meant.
    let secs = u64::try_from(secs).unwrap_or(0);
    Ok(UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).unwrap_or(0)))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }
    fn expect(&mut self, c: u8) -> Result<(), ParseErrorKind> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(ParseErrorKind::Malformed)
        }
    }
    fn digits(&mut self, n: usize) -> Result<u32, ParseErrorKind> {
        let mut out = 0u32;
        for _ in 0..n {
            match self.next() {
                Some(c) if c.is_ascii_digit() => out = out * 10 + u32::from(c - b'0'),
                _ => return Err(ParseErrorKind::Malformed),
            }
        }
        Ok(out)
    }
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Format `x-request-timeout`: remaining seconds with millisecond precision,
/// rounded down so a callee never believes it has more time than it has
/// (`4.999`, `0.000`).
pub fn format_request_timeout(remaining: Duration) -> HeaderValue {
    use std::io::Write as _;
    let ms = remaining.as_millis();
    // Written in place (u128 seconds take at most 36 digits): one
    // allocation, the header value's own.
    let mut buf = [0u8; 48];
    let mut rest = &mut buf[..];
    let written = write!(rest, "{}.{:03}", ms / 1000, ms % 1000).is_ok();
    let len = 48 - rest.len();
    match written {
        true => HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("0.000")),
        false => HeaderValue::from_static("0.000"),
    }
}

/// Format `grpc-timeout`: the finest unit whose value fits in 8 digits,
/// rounded down (`250000u`, `2000m`, `99999999H` at most).
pub fn format_grpc_timeout(remaining: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = remaining.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (value, unit) = units
        .iter()
        .map(|&(scale, unit)| (nanos / scale, unit))
        .find(|&(v, _)| v <= MAX)
        .unwrap_or((MAX, 'H'));
    HeaderValue::try_from(format!("{value}{unit}")).unwrap_or(HeaderValue::from_static("0n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unix(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn request_timeout_forms() {
        let ok = |s: &str, ms: u64| {
            assert_eq!(
                request_timeout(s.as_bytes()),
                Ok(Duration::from_millis(ms)),
                "{s}"
            )
        };
        ok("4.999", 4999);
        ok("20", 20_000);
        ok("0", 0);
        ok("0.25", 250);
        ok(".5", 500);
        ok("5.", 5000);
        ok("1e-3", 1);
        ok("+2", 2000);
        ok(" 3 ", 3000);
        ok("-0", 0);
        assert_eq!(
            request_timeout(b"4.99990"),
            Ok(Duration::from_nanos(4_999_900_000))
        );
        assert_eq!(request_timeout(b"1e300"), Ok(Duration::MAX));
    }

    #[test]
    fn request_timeout_bad_values() {
        use ParseErrorKind::*;
        for (s, kind) in [
            ("", Empty),
            ("   ", Empty),
            ("-1", Negative),
            ("-0.001", Negative),
            ("inf", NonFinite),
            ("-inf", NonFinite),
            ("Infinity", NonFinite),
            ("NaN", NonFinite),
            ("1e400", NonFinite),
            ("abc", Malformed),
            ("1,5", Malformed),
            ("1.2.3", Malformed),
            ("5s", Malformed),
            ("0x10", Malformed),
            ("1_000", Malformed),
            (".", Malformed),
            ("e", Malformed),
            ("--1", Malformed),
        ] {
            assert_eq!(request_timeout(s.as_bytes()), Err(kind), "{s:?}");
        }
        assert_eq!(request_timeout(&[0xff, b'1']), Err(Malformed));
    }

    #[test]
    fn grpc_timeout_forms() {
        assert_eq!(grpc_timeout(b"1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"2M"), Ok(Duration::from_secs(120)));
        assert_eq!(grpc_timeout(b"3S"), Ok(Duration::from_secs(3)));
        assert_eq!(grpc_timeout(b"250m"), Ok(Duration::from_millis(250)));
        assert_eq!(grpc_timeout(b"7u"), Ok(Duration::from_micros(7)));
        assert_eq!(grpc_timeout(b"9n"), Ok(Duration::from_nanos(9)));
        assert_eq!(
            grpc_timeout(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(grpc_timeout(b"00000001S"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn grpc_timeout_bad_values() {
        use ParseErrorKind::*;
        for (s, kind) in [
            ("", Empty),
            ("S", Malformed),
            ("123456789S", Malformed),
            ("10s", Malformed),
            ("10 S", Malformed),
            ("1.5S", Malformed),
            ("-1S", Negative),
            ("10", Malformed),
            ("10X", Malformed),
            ("+1S", Malformed),
        ] {
            assert_eq!(grpc_timeout(s.as_bytes()), Err(kind), "{s:?}");
        }
    }

    #[test]
    fn envoy_forms_and_bad_values() {
        assert_eq!(envoy_timeout_ms(b"1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(envoy_timeout_ms(b"0"), Ok(Duration::ZERO));
        assert_eq!(
            envoy_timeout_ms(b"99999999999999999999999"),
            Ok(Duration::from_millis(u64::MAX))
        );
        assert_eq!(envoy_timeout_ms(b""), Err(ParseErrorKind::Empty));
        assert_eq!(envoy_timeout_ms(b"-5"), Err(ParseErrorKind::Negative));
        assert_eq!(envoy_timeout_ms(b"1.5"), Err(ParseErrorKind::Malformed));
        assert_eq!(envoy_timeout_ms(b"1500ms"), Err(ParseErrorKind::Malformed));
        assert_eq!(envoy_timeout_ms(b"-"), Err(ParseErrorKind::Malformed));
    }

    #[test]
    fn deadline_at_forms() {
        // 2026-11-24T08:40:00 UTC = 1795509600.
        assert_eq!(
            deadline_at(b"2026-11-24T08:40:00"),
            Ok(unix(1_795_509_600, 0))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T08:40:00.25"),
            Ok(unix(1_795_509_600, 250_000_000))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T08:40:00.123456"),
            Ok(unix(1_795_509_600, 123_456_000))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T08:40:00.1234567891"),
            Ok(unix(1_795_509_600, 123_456_789))
        );
        assert_eq!(
            deadline_at(b"2026-11-24 08:40:00"),
            Ok(unix(1_795_509_600, 0))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T08:40:00Z"),
            Ok(unix(1_795_509_600, 0))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T08:40:00+00:00"),
            Ok(unix(1_795_509_600, 0))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T10:40:00+02:00"),
            Ok(unix(1_795_509_600, 0))
        );
        assert_eq!(
            deadline_at(b"2026-11-24T07:40:00-01:00"),
            Ok(unix(1_795_509_600, 0))
        );
        assert_eq!(deadline_at(b"1970-01-01T00:00:00"), Ok(UNIX_EPOCH));
        assert_eq!(deadline_at(b"1969-12-31T23:59:59"), Ok(UNIX_EPOCH));
        assert_eq!(
            deadline_at(b"2024-02-29T00:00:00"),
            Ok(unix(1_709_164_800, 0))
        );
        assert_eq!(
            deadline_at(b"2000-03-01T00:00:00"),
            Ok(unix(951_868_800, 0))
        );
    }

    #[test]
    fn deadline_at_bad_values() {
        use ParseErrorKind::*;
        for (s, kind) in [
            ("", Empty),
            ("tomorrow", Malformed),
            ("2026-11-24", Malformed),
            ("2026-11-24T08:40", Malformed),
            ("2026-11-24T08:40:00.", Malformed),
            ("2026-11-24T08:40:00.25x", Malformed),
            ("2026/11/24T08:40:00", Malformed),
            ("26-11-24T08:40:00", Malformed),
            ("2026-11-24T08:40:00+0200", Malformed),
            ("2026-13-01T00:00:00", OutOfRange),
            ("2026-00-01T00:00:00", OutOfRange),
            ("2026-02-29T00:00:00", OutOfRange),
            ("2026-11-31T00:00:00", OutOfRange),
            ("2026-11-24T24:00:00", OutOfRange),
            ("2026-11-24T08:60:00", OutOfRange),
            ("2026-11-24T08:40:60", OutOfRange),
            ("2026-11-24T08:40:00+24:00", OutOfRange),
            ("1795509600", Malformed),
        ] {
            assert_eq!(deadline_at(s.as_bytes()), Err(kind), "{s:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_request_timeout(Duration::from_secs(5)), "5.000");
        assert_eq!(
            format_request_timeout(Duration::from_micros(4_999_999)),
            "4.999"
        );
        assert_eq!(format_request_timeout(Duration::from_micros(999)), "0.000");
        assert_eq!(
            format_request_timeout(Duration::from_millis(12_345_678)),
            "12345.678"
        );
        assert_eq!(format_grpc_timeout(Duration::from_nanos(5)), "5n");
        assert_eq!(format_grpc_timeout(Duration::from_millis(99)), "99000000n");
        assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(2)), "2000000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200)), "200000m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = request_timeout(&bytes);
            let _ = grpc_timeout(&bytes);
            let _ = envoy_timeout_ms(&bytes);
            let _ = deadline_at(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_near_misses(s in "[0-9eE+.\\-:TZ nmuSMH]{0,32}") {
            let _ = request_timeout(s.as_bytes());
            let _ = grpc_timeout(s.as_bytes());
            let _ = envoy_timeout_ms(s.as_bytes());
            let _ = deadline_at(s.as_bytes());
        }

        #[test]
        fn deadline_at_never_panics_on_date_shapes(
            y in 0u32..10000, mo in 0u32..100, d in 0u32..100, h in 0u32..100,
            mi in 0u32..100, s in 0u32..100, frac in proptest::option::of("[0-9]{1,12}"),
            tz in proptest::option::of("(Z|[+-][0-9]{2}:[0-9]{2})"),
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{}",
                frac.map(|f| format!(".{f}")).unwrap_or_default(), tz.unwrap_or_default());
            let _ = deadline_at(text.as_bytes());
        }

        #[test]
        fn request_timeout_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            let v = format_request_timeout(d);
            prop_assert_eq!(request_timeout(v.as_bytes()), Ok(d));
        }

        #[test]
        fn grpc_timeout_round_trips_within_a_unit(nanos in 0u64..u64::MAX) {
            let d = Duration::from_nanos(nanos);
            let v = format_grpc_timeout(d);
            let back = grpc_timeout(v.as_bytes()).unwrap();
            prop_assert!(back <= d);
            // Rounded down by less than one unit of the chosen scale, which
            // is under 60/99999999 of the value.
            prop_assert!(d == back || (d - back).as_nanos() * 99_999_999 < d.as_nanos() * 60);
        }
    }
}
