//! The DURATION syntax of the command line.
//!
//! A duration is either
//! - a bare number, in seconds, as `timeout(1)` takes it: `10`, `1.5`, `.5`,
//!   `1e-1`;
//! - or one or more `NUMBER UNIT` parts, largest unit first, each unit at
//!   most once: `500ms`, `2s`, `1m30s`, `1h`, `1.5m`, `2d`.
//!
//! Units: `d` (days), `h`, `m`, `s`, `ms`, `us`, `ns`. Numbers are decimal,
//! with an optional fraction (a bare number may also carry an exponent). Anything else is rejected with a message
//! that says what was wrong: a sign, an empty string, a missing unit after
//! a number that follows another part (`1m30`), an unknown unit, units out
//! of order, or a value over [`childminder::MAX_DURATION`] (100 years).

use std::time::Duration;

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
pub const SYNTAX: &str = "a number of seconds (1.5) or parts such as 500ms, 2s, 1m30s \
     (units: d, h, m, s, ms, us, ns)";

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
/// assert!(parse("1m30").unwrap_err().to_string().contains("\"1m30\""));
/// ```
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let fail = |reason: String| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(fail(format!("it is empty; expected {SYNTAX}")));
    }
    if input.starts_with('-') {
        return Err(fail("durations cannot be negative".to_owned()));
    }
    if input.starts_with('+') {
        return Err(fail(format!("no sign is allowed; expected {SYNTAX}")));
    }
    let float_chars = |c: char| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-');
    if input.contains(['e', 'E']) && input.chars().all(float_chars) {
        // timeout(1) takes a floating-point number, exponent included.
        return match input.parse::<f64>() {
            Ok(secs) if secs.is_finite() => Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| *d <= childminder::MAX_DURATION)
                .ok_or_else(|| fail("too large: the limit is 100 years".to_owned())),
            _ => Err(fail(format!("expected {SYNTAX}"))),
        };
    }

    let mut rest = input;
    let mut total: u128 = 0;
    let mut parts = 0;
    // Index into UNITS of the last unit used: each later one must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() {
            return Err(fail(format!(
                "expected a number at {rest:?}; expected {SYNTAX}"
            )));
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];

        let (unit_index, scale) = if unit.is_empty() {
            if parts > 0 {
                return Err(fail(format!(
                    "the number {number} has no unit; write it with one, such as {input}s"
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

        let nanos = scaled(number, scale).ok_or_else(|| fail(too_large_or_bad(number)))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| fail(too_large_or_bad(number)))?;
    }

    let max = childminder::MAX_DURATION.as_nanos();
    if total > max {
        return Err(fail(
            "it is too large: the limit is 100 years (3153600000s)".to_owned(),
        ));
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).expect("bounded by MAX_DURATION");
    let nanos = u32::try_from(total % NANOS_PER_SEC).expect("below one second");
    Ok(Duration::new(secs, nanos))
}

fn too_large_or_bad(number: &str) -> String {
    if number.matches('.').count() > 1 || number == "." {
        format!("{number:?} is not a number")
    } else {
        "it is too large: the limit is 100 years (3153600000s)".to_owned()
    }
}

/// `number` (digits, at most one `.`) times `scale` nanoseconds, truncated
/// to whole nanoseconds; `None` for a malformed number or an overflow.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let mut value: u128 = 0;
    for digit in whole.bytes() {
        value = value
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
    }
    let mut nanos = value.checked_mul(scale)?;
    // Each fraction digit is worth a tenth of the previous one; digits past
    // nanosecond precision add nothing.
    let mut place = scale;
    for digit in fraction.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        nanos = nanos.checked_add(u128::from(digit - b'0') * place)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_may_carry_an_exponent_as_timeout_takes_them() {
        assert_eq!(parse("1e-1").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("2.5E1").unwrap(), Duration::from_secs(25));
        for bad in ["1e", "e5", "1e99", "-1e1", "1e-1-1"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
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
        assert_eq!(ok("0.0000000019"), Duration::from_nanos(1), "truncated");
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
    fn rejects_empty_and_signs() {
        assert!(err("").contains("empty"));
        assert!(err("-1").contains("negative"));
        assert!(err("-1s").contains("negative"));
        assert!(err("+1s").contains("sign"));
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
    fn rejects_overflow() {
        assert!(err("99999999999999999999999999999999999999999").contains("too large"));
        assert!(err("3153600001").contains("100 years"));
        assert!(err("36501d").contains("100 years"));
        assert!(err("1000000000000000000000000000d").contains("too large"));
        assert_eq!(ok("3153600000"), childminder::MAX_DURATION);
    }
}
