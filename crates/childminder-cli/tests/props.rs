//! Property tests of the CLI's parsers: DURATION ([`duration::parse`], for
//! `-t` and `-g`) and SIGNAL ([`parse_signal`], for `-s`).
//!
//! DURATION:
//! - nothing panics, whatever the text; what parses is at most 100 years
//!   ([`MAX_DURATION`]); a rejection names the input;
//! - a duration written back as `SECS.NANOS`, as `SECSsNANOSns`, as `NANOSns`
//!   and as whole `d h m s ms us ns` parts, largest first, parses to itself;
//! - parts out of order, repeated units, a minus sign, or a unitless number
//!   after a part are rejected; leading blanks and a `+` are skipped (as
//!   `strtod` skips them);
//! - 100 years or more clamps to [`MAX_DURATION`] ("forever"), as GNU
//!   `timeout` clamps; a number with an exponent (`NeXs`, `Ne-Kns`) is its
//!   exact value rounded up to whole nanoseconds, so a positive one is never
//!   zero.
//!
//! SIGNAL:
//! - every name, with and without `SIG`, in any case, every real-time name
//!   (`RTMIN+N`, `RTMAX-N`) in range, and every number from 1 to 64 parses
//!   to that signal;
//! - anything else is rejected with a message naming the input, never a
//!   panic.
//!
//! Case counts are kept moderate so the file runs in well under 5 s in a
//! debug build; `PROPTEST_CASES` overrides them, and `PROPTEST_RNG_SEED`
//! picks the seed. A failing case is saved in `tests/props.proptest-regressions`
//! and replayed first on the next run.

use std::time::Duration;

use childminder::{MAX_DURATION, Signal};
use childminder_cli::cli::parse_signal;
use childminder_cli::duration::{self, parse};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;

/// `cases` cases, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// ---------------------------------------------------------------------------
// DURATION
// ---------------------------------------------------------------------------

const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn max_nanos() -> u64 {
    u64::try_from(MAX_DURATION.as_nanos()).expect("100 years fit in u64 nanoseconds")
}

/// A duration up to 100 years, biased towards small ones and the edges.
fn any_duration() -> impl Strategy<Value = Duration> {
    let max = max_nanos();
    prop_oneof![
        0..1_000u64,
        0..1_000_000_000u64,
        0..100_000_000_000u64,
        (max - 1_000)..=max,
        0..=max,
        0..=max,
    ]
    .prop_map(Duration::from_nanos)
}

/// `nanos` as whole parts of every unit it needs, largest first.
fn parts(mut nanos: u128) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, scale) in UNITS {
        if nanos >= scale {
            text += &format!("{}{unit}", nanos / scale);
            nanos %= scale;
        }
    }
    text
}

/// What `parse(text)` must satisfy whatever `text` is.
fn check_any_text(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(d) => {
            prop_assert!(d <= MAX_DURATION, "{text:?} -> {d:?}");
            // "-0" is zero, as strtod reads it; no other minus is taken.
            prop_assert!(
                !text.trim_start().starts_with('-') || d.is_zero(),
                "{text:?} accepted with a minus sign"
            );
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.contains(&format!("{text:?}")), "{message}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    /// Text made of the characters of the syntax, and others close to it.
    #[test]
    fn duration_text_never_panics_and_what_parses_is_bounded(
        text in "[0-9..smhdunxeEiInfF+\\- \t]{0,14}",
    ) {
        check_any_text(&text)?;
    }

    /// Arbitrary Unicode too.
    #[test]
    fn duration_unicode_never_panics(text in "\\PC{0,8}|.{0,8}") {
        check_any_text(&text)?;
    }

    #[test]
    fn durations_written_back_parse_to_themselves(d in any_duration()) {
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        for text in [
            format!("{secs}.{nanos:09}"),
            format!("{secs}s{nanos}ns"),
            format!("{}ns", d.as_nanos()),
            parts(d.as_nanos()),
        ] {
            prop_assert_eq!(parse(&text).ok(), Some(d), "{:?}", text);
        }
    }

    /// 1 to 4 parts with arbitrary units, in arbitrary order, maybe
    /// repeated: accepted exactly when the units are strictly decreasing and
    /// the total is within 100 years.
    #[test]
    fn unit_sequences_follow_the_grammar(
        picks in prop::collection::vec(
            (0..UNITS.len(), prop_oneof![3 => 0..1_000u64, 1 => any::<u64>()]),
            1..=4,
        ),
    ) {
        let text: String = picks
            .iter()
            .map(|&(u, v)| format!("{v}{}", UNITS[u].0))
            .collect();
        let ordered = picks.windows(2).all(|w| w[0].0 < w[1].0);
        let total: Option<u128> = picks.iter().try_fold(0u128, |acc, &(u, v)| {
            acc.checked_add(u128::from(v).checked_mul(UNITS[u].1)?)
        });
        let max = MAX_DURATION.as_nanos();
        let expected = ordered.then(|| total.map_or(max, |t| t.min(max)));
        let got = parse(&text).ok().map(|d| d.as_nanos());
        prop_assert_eq!(got, expected, "{:?}", text);

        // Decorations that must always be rejected (a minus only takes a
        // zero, as strtod reads "-0").
        for bad in [format!("{text}7"), format!("{text} ")] {
            prop_assert!(parse(&bad).is_err(), "{:?} accepted", bad);
        }
        let negated = parse(&format!("-{text}")).ok().map(|d| d.as_nanos());
        prop_assert!(
            negated.is_none() || (negated == Some(0) && expected == Some(0)),
            "-{:?} -> {:?}",
            text,
            negated
        );
        // Those strtod skips.
        for same in [format!("+{text}"), format!(" {text}"), format!("\t +{text}")] {
            prop_assert_eq!(parse(&same).ok().map(|d| d.as_nanos()), expected, "{:?}", same);
        }
    }

    /// Anything at or over 100 years is "forever", in every unit.
    #[test]
    fn above_the_limit_clamps_to_forever(unit in 0..UNITS.len(), extra in 0..=u64::MAX) {
        let (name, scale) = UNITS[unit];
        let text = format!("{}{name}", MAX_DURATION.as_nanos().div_ceil(scale) + u128::from(extra));
        let got = parse(&text);
        prop_assert_eq!(got.clone().ok(), Some(MAX_DURATION), "{:?} -> {:?}", text, got);
        prop_assert!(duration::is_forever(MAX_DURATION));
    }

    /// MANTISSA e EXPONENT UNIT is the exact value, rounded up to whole
    /// nanoseconds; a positive one is never zero.
    #[test]
    fn exponents_are_exact_and_round_up(
        mantissa in prop_oneof![0..1_000u64, any::<u64>()],
        exponent in -40i32..=25,
        unit in 0..UNITS.len(),
        upper in any::<bool>(),
    ) {
        let (name, scale) = UNITS[unit];
        let e = if upper { 'E' } else { 'e' };
        let text = format!("{mantissa}{e}{exponent}{name}");
        let exact = exact_nanos_rounded_up(u128::from(mantissa), exponent, scale);
        let expected = exact.min(MAX_DURATION.as_nanos());
        let got = parse(&text).map(|d| d.as_nanos());
        prop_assert_eq!(got.clone().ok(), Some(expected), "{:?} -> {:?}", text, got);
        prop_assert_eq!(got.clone().ok() == Some(0), mantissa == 0, "{:?}", text);
        // The same value with the exponent moved into a fraction.
        if (-20..=0).contains(&exponent) {
            let digits = format!("{mantissa:0>width$}", width = (-exponent) as usize + 1);
            let (whole, fraction) = digits.split_at(digits.len() - (-exponent) as usize);
            let text = format!("{whole}.{fraction}{name}");
            prop_assert_eq!(parse(&text).ok().map(|d| d.as_nanos()), Some(expected), "{:?}", text);
        }
    }
}

/// `mantissa` × 10^`exponent` × `scale` ns, rounded up, saturating.
fn exact_nanos_rounded_up(mantissa: u128, exponent: i32, scale: u128) -> u128 {
    let value = mantissa.saturating_mul(scale);
    if exponent >= 0 {
        (0..exponent).fold(value, |v, _| v.saturating_mul(10))
    } else if exponent < -38 {
        u128::from(value > 0)
    } else {
        value.div_ceil(10u128.pow(exponent.unsigned_abs()))
    }
}

#[test]
fn just_above_the_limit_is_forever_in_every_unit() {
    let max = MAX_DURATION.as_nanos();
    for (unit, scale) in UNITS {
        let over = max / scale + 1;
        let text = format!("{over}{unit}");
        assert_eq!(parse(&text).ok(), Some(MAX_DURATION), "{text:?}");
        let at = max / scale;
        let text = format!("{at}{unit}");
        assert_eq!(
            parse(&text).ok().map(|d| d.as_nanos()),
            Some(at * scale),
            "{text:?}"
        );
    }
    assert_eq!(parse("3153600000").ok(), Some(MAX_DURATION));
    assert_eq!(parse("3153600000.000000001").ok(), Some(MAX_DURATION));
    assert_eq!(parse(&format!("{}ns", max + 1)).ok(), Some(MAX_DURATION));
    // The syntax named in error messages is the one documented.
    assert!(duration::SYNTAX.contains("1m30s"));
}

// ---------------------------------------------------------------------------
// SIGNAL
// ---------------------------------------------------------------------------

/// Every signal name `-s` knows (Linux), without `SIG`, and its number.
/// The other names `kill(1)` and GNU `timeout -s` take.
const ALIASES: [(&str, i32); 3] = [
    ("IOT", libc::SIGABRT),
    ("POLL", libc::SIGIO),
    ("CLD", libc::SIGCHLD),
];

const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The highest signal number `-s` takes (`SIGRTMAX` on Linux).
const MAX_SIGNAL: i32 = 64;

/// The signal number `text` must parse to, or `None` when it must be
/// rejected: after surrounding whitespace, a name from [`NAMES`] or [`ALIASES`] with or
/// without `SIG` in any ASCII case, or a decimal number (an optional `+`,
/// leading zeros allowed) from 1 to 64.
fn expected_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let significant = digits.trim_start_matches('0');
        return (significant.len() <= 2)
            .then(|| significant.parse::<i32>().unwrap_or(0))
            .filter(|n| (1..=MAX_SIGNAL).contains(n));
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let offset = |n: &str| {
        (!n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<i32>().unwrap())
    };
    match bare {
        "RTMIN" => return Some(min),
        "RTMAX" => return Some(max),
        _ => {}
    }
    if let Some(n) = bare.strip_prefix("RTMIN+") {
        return offset(n).map(|n| min + n).filter(|&s| s <= max);
    }
    if let Some(n) = bare.strip_prefix("RTMAX-") {
        return offset(n).map(|n| max - n).filter(|&s| s >= min);
    }
    NAMES
        .iter()
        .chain(&ALIASES)
        .find(|&&(name, _)| name == bare)
        .map(|&(_, raw)| raw)
}

/// What `parse_signal(text)` must satisfy whatever `text` is.
fn check_signal_text(text: &str) -> Result<(), TestCaseError> {
    let got = parse_signal(text);
    match expected_signal(text) {
        Some(raw) => prop_assert_eq!(got.map(Signal::as_raw), Ok(raw), "{:?}", text),
        None => {
            let message = got.expect_err(&format!("{text:?} accepted"));
            prop_assert!(message.contains(&format!("{text:?}")), "{}", message);
        }
    }
    Ok(())
}

/// `text` with the case of each letter picked by `upper` (cycled).
fn with_case(text: &str, upper: &[bool]) -> String {
    text.chars()
        .zip(upper.iter().cycle())
        .map(|(c, &up)| {
            if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[test]
fn every_name_and_number_parses() {
    for (name, raw) in NAMES {
        let expected = Signal::from_raw(raw).expect("a valid signal");
        for text in [
            name.to_owned(),
            format!("SIG{name}"),
            name.to_ascii_lowercase(),
            format!("sig{}", name.to_ascii_lowercase()),
        ] {
            assert_eq!(parse_signal(&text), Ok(expected), "{text:?}");
        }
        assert_eq!(expected.name(), Some(format!("SIG{name}").as_str()));
    }
    for n in 1..=MAX_SIGNAL {
        assert_eq!(parse_signal(&n.to_string()).map(Signal::as_raw), Ok(n));
    }
    for bad in [
        "",
        "0",
        "-1",
        "65",
        "SIG",
        "sig",
        "TERMX",
        "SIGSIGTERM",
        "1.5",
    ] {
        assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
    }
}

/// A text close to a signal's name or number: the places where a parser
/// goes wrong.
fn near_signal_text() -> impl Strategy<Value = String> {
    let name = (select(&NAMES[..]), any::<bool>()).prop_map(|((name, _), sig)| {
        if sig {
            format!("SIG{name}")
        } else {
            name.to_owned()
        }
    });
    prop_oneof![
        // A name with one character inserted or removed.
        (name.clone(), any::<prop::sample::Index>(), any::<char>()).prop_map(|(n, at, c)| {
            let mut n = n;
            n.insert(at.index(n.len() + 1), c);
            n
        }),
        (name.clone(), any::<prop::sample::Index>()).prop_map(|(n, at)| {
            let mut n = n;
            n.remove(at.index(n.len()));
            n
        }),
        // A name with something around it.
        ("[ \tSIGsig_+-]{0,3}", name, "[ \t0-9A-Za-z]{0,2}")
            .prop_map(|(before, n, after)| format!("{before}{n}{after}")),
        // Numbers, in and out of range, signed, padded.
        any::<i64>().prop_map(|n| n.to_string()),
        (-3i64..=70, "[+ ]?0{0,3}").prop_map(|(n, pad)| if n < 0 {
            n.to_string()
        } else {
            format!("{pad}{n}")
        }),
        "[SIGsig]{0,3}[0-9]{1,3}",
        // Real-time names, in and out of range.
        "(SIG|sig)?(RT|rt)(MIN|MAX|min|max)([+-][0-9]{0,3})?",
        // The characters of the syntax, at random.
        "[A-Za-z0-9+\\- ]{0,8}",
    ]
}

proptest! {
    #![proptest_config(config(1_000))]

    /// Every name, with or without `SIG`, in any mix of cases.
    #[test]
    fn signal_names_parse_in_any_case(
        (name, raw) in select(&NAMES[..]),
        sig in any::<bool>(),
        upper in prop::collection::vec(any::<bool>(), 1..=9),
    ) {
        let text = with_case(&if sig { format!("SIG{name}") } else { name.to_owned() }, &upper);
        prop_assert_eq!(parse_signal(&text).map(Signal::as_raw), Ok(raw), "{:?}", text);
    }

    #[test]
    fn signal_numbers_parse(n in 1..=MAX_SIGNAL) {
        prop_assert_eq!(parse_signal(&n.to_string()).map(Signal::as_raw), Ok(n));
    }

    /// Near misses: exactly what [`expected_signal`] accepts parses, the
    /// rest is rejected with a message naming the input.
    #[test]
    fn signal_near_misses_are_rejected(text in near_signal_text()) {
        check_signal_text(&text)?;
    }

    /// Arbitrary Unicode: rejected (unless it happens to be a signal),
    /// never a panic.
    #[test]
    fn signal_arbitrary_text_never_panics(text in any::<String>()) {
        check_signal_text(&text)?;
    }
}
