//! The DURATION syntax of the command line.
//!
//! A duration is either
//! - a bare number, in seconds, as `timeout(1)` takes it: `10`, `1.5`, `.5`,
//!   `1e-1`, `inf`;
//! - or one or more `NUMBER UNIT` parts, largest unit first, each unit at
//!   most once: `500ms`, `2s`, `1m30s`, `1h`, `1.5m`, `2d`, `1e1s`,
//!   `2.34e+5d`.
//!
//! Units: `d` (days), `h`, `m`, `s`, `ms`, `us`, `ns`. A NUMBER is decimal,
//! with an optional fraction and an optional exponent (`1e-3`, `2.5E1`), or
//! `inf` / `infinity` (any case). Leading blanks and one leading `+` are
//! skipped, as `strtod(3)` (and so GNU `timeout`) skips them.
//!
//! The value is what GNU `timeout` makes of it:
//! - it is rounded **up** to whole nanoseconds, so a positive duration is
//!   never zero: `1e-10` and `0.5ns` are 1 ns, the smallest deadline;
//! - a value of [`childminder::MAX_DURATION`] (100 years) or more, `inf`
//!   included, is clamped to it, and [`is_forever`] says it means "never":
//!   `4294967296`, `9223372036854775808d`, `2.34e+5d`.
//!
//! Anything else is rejected with a message that says what was wrong: a
//! negative sign, an empty string, a missing unit after a number that
//! follows another part (`1m30`), an unknown unit, units out of order, `nan`.
//! Not accepted, although `strtod` takes them: hexadecimal numbers (`0x10`)
//! and a locale's decimal comma.

use std::time::Duration;

use childminder::MAX_DURATION;

/// Why a DURATION was rejected. The message is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: String,
}

const UNITS: &[(&str, u128)] = &[
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The accepted forms, for error messages and `--help`.
pub const SYNTAX: &str = "a number of seconds (1.5, 1e-3, inf) or parts such as 500ms, 2s, \
     1m30s (units: d, h, m, s, ms, us, ns)";

/// True when `duration` means "forever": [`parse`] clamps every value of
/// 100 years or more (`inf` included) to [`MAX_DURATION`].
///
/// # Examples
///
/// ```
/// use childminder_cli::duration::{is_forever, parse};
///
/// assert!(is_forever(parse("inf").unwrap()));
/// assert!(is_forever(parse("4294967296").unwrap()));
/// assert!(!is_forever(parse("1d").unwrap()));
/// ```
pub fn is_forever(duration: Duration) -> bool {
    duration >= MAX_DURATION
}

/// Parses a DURATION (see the module documentation).
///
/// # Errors
///
/// [`ParseDurationError`] naming the input and the problem.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use childminder_cli::duration::parse;
///
/// assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse("1e1s").unwrap(), Duration::from_secs(10));
/// assert_eq!(parse("1e-10").unwrap(), Duration::from_nanos(1));
/// assert_eq!(parse("inf").unwrap(), childminder::MAX_DURATION);
/// assert!(parse("1m30").unwrap_err().to_string().contains("\"1m30\""));
/// ```
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let fail = |reason: String| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    // strtod's blanks (isspace in the C locale), then one optional '+'.
    let trimmed = input.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    if trimmed.is_empty() {
        return Err(fail(format!("it is empty; expected {SYNTAX}")));
    }
    if let Some(magnitude) = trimmed.strip_prefix('-') {
        return match parse(magnitude) {
            // strtod reads "-0" as zero, and so does timeout(1).
            Ok(zero) if zero.is_zero() => Ok(zero),
            _ if magnitude.starts_with(['+', '-']) => {
                Err(fail(format!("one sign at most; expected {SYNTAX}")))
            }
            _ => Err(fail("durations cannot be negative".to_owned())),
        };
    }
    let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if unsigned.is_empty() {
        // A sign alone (`+` was read as 0, no deadline).
        return Err(fail(format!("a sign without a number; expected {SYNTAX}")));
    }
    if unsigned.starts_with(['+', '-']) {
        return Err(fail(format!("one sign at most; expected {SYNTAX}")));
    }

    let mut rest = unsigned;
    let mut total: u128 = 0;
    let mut parts = 0;
    // Index into UNITS of the last unit used: each later one must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let (number, after) = Number::parse(rest).map_err(fail)?;
        rest = after;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];

        let (unit_index, scale) = if unit.is_empty() {
            if parts > 0 {
                return Err(fail(format!(
                    "the number {} has no unit; write it with one, such as {input}s",
                    number.text
                )));
            }
            // A bare number: seconds, as timeout(1) takes it.
            (3, NANOS_PER_SEC)
        } else {
            match UNITS.iter().position(|&(name, _)| name == unit) {
                Some(i) => (i, UNITS[i].1),
                None => {
                    return Err(fail(format!(
                        "unknown unit {unit:?}; the units are d, h, m, s, ms, us, ns"
                    )));
                }
            }
        };
        if let Some(last) = last_unit {
            if unit_index <= last {
                return Err(fail(format!(
                    "the unit {:?} comes after {:?}; write each unit once, largest first (1m30s)",
                    UNITS[unit_index].0, UNITS[last].0
                )));
            }
        }
        last_unit = Some(unit_index);
        parts += 1;
        total = total.saturating_add(number.nanos_rounded_up(scale));
    }

    let total = total.min(MAX_DURATION.as_nanos());
    let secs = (total / NANOS_PER_SEC) as u64; // at most 100 years of seconds
    let nanos = (total % NANOS_PER_SEC) as u32; // below one second
    Ok(Duration::new(secs, nanos))
}

/// One NUMBER, exactly as written: `digits` (without the point, leading
/// zeros removed) times ten to the power `point - digits.len()`, so that
/// `point` is the number of digits before the decimal point; or infinity.
struct Number<'a> {
    text: &'a str,
    value: Value,
}

enum Value {
    Infinite,
    Decimal { digits: String, point: i64 },
}

/// Above 10^30 of any unit, the value is far beyond [`MAX_DURATION`]
/// (10^30 ns is 3·10^13 years); below 10^-40, it is far below one
/// nanosecond in every unit (a day is under 10^14 ns).
const DIGITS_ABOVE_ANY_LIMIT: i64 = 30;
const ZEROS_BELOW_ANY_NANOSECOND: i64 = 40;

impl<'a> Number<'a> {
    /// The NUMBER at the start of `text`, and what follows it.
    fn parse(text: &'a str) -> Result<(Number<'a>, &'a str), String> {
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        for word in ["infinity", "inf"] {
            if lower.starts_with(word) {
                let (number, rest) = text.split_at(word.len());
                return Ok((
                    Number {
                        text: number,
                        value: Value::Infinite,
                    },
                    rest,
                ));
            }
        }
        if lower.starts_with("nan") {
            return Err("NaN is not a duration".to_owned());
        }
        let mantissa_len = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let mantissa = &text[..mantissa_len];
        if mantissa.is_empty() {
            return Err(format!("expected a number at {text:?}; expected {SYNTAX}"));
        }
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
            return Err(format!("{mantissa:?} is not a number"));
        }
        let (exponent, exponent_len) = exponent_at(&text[mantissa_len..]);
        let end = mantissa_len + exponent_len;

        let all_digits = format!("{whole}{fraction}");
        let significant = all_digits.trim_start_matches('0');
        let leading_zeros = (all_digits.len() - significant.len()) as i64;
        let point = (whole.len() as i64 - leading_zeros).saturating_add(exponent);
        Ok((
            Number {
                text: &text[..end],
                value: Value::Decimal {
                    digits: significant.trim_end_matches('0').to_owned(),
                    point,
                },
            },
            &text[end..],
        ))
    }

    /// The number times `scale` nanoseconds, rounded up to a whole
    /// nanosecond as GNU `timeout` rounds (`dtotimespec`); saturating
    /// (anything above [`MAX_DURATION`] is clamped by the caller).
    fn nanos_rounded_up(&self, scale: u128) -> u128 {
        let (digits, point) = match &self.value {
            Value::Infinite => return u128::MAX,
            Value::Decimal { digits, point } => (digits.as_str(), *point),
        };
        if digits.is_empty() {
            return 0;
        }
        if point > DIGITS_ABOVE_ANY_LIMIT {
            return u128::MAX;
        }
        if point < -ZEROS_BELOW_ANY_NANOSECOND {
            return 1;
        }
        // Split the digits at the decimal point: the whole part has at most
        // 30 digits (it fits a u128); the fraction is exact, however long.
        let point = point as isize;
        let (whole, fraction): (String, String) = if point >= digits.len() as isize {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else if point >= 0 {
            let (w, f) = digits.split_at(point as usize);
            (w.to_owned(), f.to_owned())
        } else {
            (
                String::new(),
                format!("{}{digits}", "0".repeat(-point as usize)),
            )
        };
        let whole: u128 = whole.parse().unwrap_or(0);
        whole
            .saturating_mul(scale)
            .saturating_add(fraction_times_rounded_up(&fraction, scale))
    }
}

/// An exponent (`e5`, `E-3`, `e+07`) at the start of `text`: its value
/// (saturated far beyond any limit) and length, or `(0, 0)` when there is
/// none (an `e` without digits is then read as a unit, and rejected).
fn exponent_at(text: &str) -> (i64, usize) {
    let bytes = text.as_bytes();
    if !matches!(bytes.first(), Some(b'e' | b'E')) {
        return (0, 0);
    }
    let sign_len = usize::from(matches!(bytes.get(1), Some(b'+' | b'-')));
    let digits_len = bytes[1 + sign_len..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits_len == 0 {
        return (0, 0);
    }
    let digits = &text[1 + sign_len..1 + sign_len + digits_len];
    let magnitude = digits
        .parse::<i64>()
        .unwrap_or(i64::MAX / 2)
        .min(i64::MAX / 2);
    let value = if bytes[1] == b'-' {
        -magnitude
    } else {
        magnitude
    };
    (value, 1 + sign_len + digits_len)
}

/// `0.FRACTION` times `scale`, rounded up, exactly: Horner's rule from the
/// last digit, keeping the whole part and whether anything was dropped
/// (floor((k + y) / 10) = floor((k + floor(y)) / 10) for a whole k).
fn fraction_times_rounded_up(fraction: &str, scale: u128) -> u128 {
    let mut whole: u128 = 0;
    let mut inexact = false;
    for digit in fraction.bytes().rev() {
        let t = u128::from(digit - b'0') * scale + whole;
        inexact |= t % 10 != 0;
        whole = t / 10;
    }
    whole + u128::from(inexact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_may_carry_an_exponent_as_timeout_takes_them() {
        assert_eq!(parse("1e-1").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("2.5E1").unwrap(), Duration::from_secs(25));
        assert_eq!(parse("1E+2").unwrap(), Duration::from_secs(100));
        assert_eq!(parse(".5e1").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("5.e-1").unwrap(), Duration::from_millis(500));
        for bad in ["1e", "e5", "-1e1", "1e-1-1", "1e+", "1ee1"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn an_exponent_followed_by_a_unit_parses() {
        assert_eq!(ok("1e1s"), Duration::from_secs(10));
        assert_eq!(ok("1e3ms"), Duration::from_secs(1));
        assert_eq!(ok("1e-3s"), Duration::from_millis(1));
        assert_eq!(ok("1e0m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5e1m"), Duration::from_secs(900));
    }

    #[test]
    fn a_positive_duration_below_the_resolution_rounds_up_to_one_nanosecond() {
        for tiny in [
            "1e-10",
            "0.5ns",
            "1e-300",
            "1e-99999999999999999999",
            "0.0000000001",
        ] {
            assert_eq!(ok(tiny), Duration::from_nanos(1), "{tiny:?}");
        }
        assert_eq!(ok("1.5ns"), Duration::from_nanos(2));
        assert_eq!(ok("0.0000000019"), Duration::from_nanos(2), "rounded up");
        assert_eq!(
            ok("1.0000000000000000000000000001d"),
            Duration::new(86_400, 1)
        );
        // Zero stays zero ("no deadline"), however it is written.
        for zero in ["0", "0.0", "0e5", "0ns", "0e-999", ".0s", "000"] {
            assert_eq!(ok(zero), Duration::ZERO, "{zero:?}");
        }
    }

    #[test]
    fn large_values_clamp_to_forever_as_gnu_timeout_does() {
        for huge in [
            "4294967296",
            "9223372036854775808d",
            "2.34e+5d",
            "inf",
            "INF",
            "infinity",
            "Infinity",
            "infs",
            "infd",
            "1e99",
            "1e99999999999999999999",
            "99999999999999999999999999999999999999999",
            "1000000000000000000000000000d",
            "3153600001",
            "36501d",
            "36500d1ns",
        ] {
            let d = ok(huge);
            assert_eq!(d, MAX_DURATION, "{huge:?}");
            assert!(is_forever(d), "{huge:?}");
        }
        assert!(is_forever(ok("3153600000")));
        assert!(!is_forever(ok("3153599999.999999999")));
    }

    #[test]
    fn blanks_and_one_plus_sign_are_skipped_as_strtod_skips_them() {
        assert_eq!(ok(" 5"), Duration::from_secs(5));
        assert_eq!(ok("\t+5s"), Duration::from_secs(5));
        assert_eq!(ok("+1m30s"), Duration::from_secs(90));
        assert!(err("++5").contains("sign"));
        assert!(err("+-5").contains("sign"));
        assert!(err(" ").contains("empty"));
        assert!(err("5 ").contains("unknown unit"));
        assert!(err("nan").contains("NaN"));
        assert!(err("0x10").contains("unknown unit"));
    }

    fn ok(s: &str) -> Duration {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse(s) {
            Ok(d) => panic!("{s:?} parsed as {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("10"), Duration::from_secs(10));
        assert_eq!(ok("1.5"), Duration::from_millis(1500));
        assert_eq!(ok(".5"), Duration::from_millis(500));
        assert_eq!(ok("2."), Duration::from_secs(2));
        assert_eq!(ok("0.000000001"), Duration::from_nanos(1));
    }

    #[test]
    fn units() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("0.5ms"), Duration::from_micros(500));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
    }

    #[test]
    fn minus_zero_is_zero_as_in_timeout() {
        for zero in ["-0", "-0s", "-0.0", "-0ms"] {
            assert_eq!(parse(zero).unwrap(), Duration::ZERO, "{zero}");
        }
        assert!(err("--").contains("one sign at most"), "{}", err("--"));
        assert!(err("-+1").contains("one sign at most"));
        assert!(err("-0.5").contains("negative"));
        assert!(err("+").contains("without a number"), "{}", err("+"));
        assert!(err("-").contains("negative") || err("-").contains("without a number"));
    }

    #[test]
    fn rejects_empty_and_negative() {
        assert!(err("").contains("empty"));
        assert!(err("-1").contains("negative"));
        assert!(err("-1s").contains("negative"));
        assert!(err(" -1s").contains("negative"));
    }

    #[test]
    fn rejects_a_number_without_unit_after_a_part() {
        let e = err("1m30");
        assert!(e.contains("30 has no unit"), "{e}");
        assert!(e.contains("1m30s"), "{e}");
    }

    #[test]
    fn rejects_unknown_units_and_bad_order() {
        assert!(err("5x").contains("unknown unit \"x\""));
        assert!(err("5sec").contains("unknown unit"));
        assert!(err("5S").contains("unknown unit"));
        assert!(err("1 s").contains("unknown unit"));
        assert!(err("30s1m").contains("largest first"));
        assert!(err("1s1s").contains("largest first"));
        assert!(err("s").contains("expected a number"));
        assert!(err("ms5").contains("expected a number"));
    }

    #[test]
    fn rejects_malformed_numbers() {
        assert!(err(".").contains("not a number"));
        assert!(err("1.2.3").contains("not a number"));
        assert!(err("1..2s").contains("not a number"));
    }

    #[test]
    fn the_limit_is_exact() {
        assert_eq!(ok("3153600000"), MAX_DURATION);
        assert_eq!(ok("36500d"), MAX_DURATION);
        assert_eq!(
            ok("36499d23h59m59s999ms999us999ns"),
            MAX_DURATION - Duration::from_nanos(1)
        );
    }
}
