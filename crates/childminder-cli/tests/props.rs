//! Property tests of the CLI's DURATION parser (`src/duration.rs`, included
//! here by path: the CLI is a binary crate, so there is no library to link).
//!
//! This crate has no `proptest` dev-dependency, so the inputs come from a
//! fixed-seed xorshift generator (seed printed; `CHILDMINDER_PROP_SEED`
//! replays, `CHILDMINDER_PROP_CASES` sets the count, default 20,000):
//!
//! - nothing panics, whatever the text; what parses is at most 100 years;
//!   a rejection names the input;
//! - a duration written back as `SECS.NANOS`, as `SECSsNANOSns`, as `NANOSns`
//!   and as whole `d h m s ms us ns` parts, largest first, parses to itself;
//! - parts out of order, repeated units, a sign, or a unitless number after
//!   a part are rejected; above 100 years is rejected.

#[allow(dead_code)]
#[path = "../src/duration.rs"]
mod duration;

use std::time::Duration;

use childminder::MAX_DURATION;
use duration::parse;

struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("CHILDMINDER_PROP_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x00D0_2A71_0475);
        println!("CHILDMINDER_PROP_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cases() -> usize {
    std::env::var("CHILDMINDER_PROP_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// A duration up to 100 years, biased towards small ones and the edges.
fn duration(rng: &mut Rng) -> Duration {
    let max = MAX_DURATION.as_nanos() as u64;
    let nanos = match rng.below(6) {
        0 => rng.below(1_000),
        1 => rng.below(1_000_000_000),
        2 => rng.below(100_000_000_000),
        3 => max - rng.below(1_000),
        _ => rng.below(max + 1),
    };
    Duration::from_nanos(nanos)
}

#[test]
fn random_text_never_panics_and_what_parses_is_bounded() {
    let mut rng = Rng::from_env();
    const ALPHABET: &[u8] = b"0123456789..smhdunx+- \t";
    let mut parsed = 0;
    for _ in 0..cases() {
        let len = rng.below(14) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
            .collect();
        match std::panic::catch_unwind(|| parse(&text)) {
            Err(_) => panic!("parse({text:?}) panicked"),
            Ok(Ok(d)) => {
                parsed += 1;
                assert!(d <= MAX_DURATION, "{text:?} -> {d:?}");
                assert!(
                    !text.starts_with(['-', '+']),
                    "{text:?} accepted with a sign"
                );
            }
            Ok(Err(e)) => assert!(e.to_string().contains(&format!("{text:?}")), "{e}"),
        }
    }
    // Arbitrary Unicode too.
    for _ in 0..cases() / 4 {
        let len = rng.below(8) as usize;
        let text: String = (0..len)
            .filter_map(|_| char::from_u32(rng.below(0x11_0000) as u32))
            .collect();
        let _ = std::panic::catch_unwind(|| parse(&text))
            .unwrap_or_else(|_| panic!("parse({text:?}) panicked"));
    }
    println!("{parsed} random texts parsed, all within 100 years");
}

#[test]
fn durations_written_back_parse_to_themselves() {
    let mut rng = Rng::from_env();
    for _ in 0..cases() {
        let d = duration(&mut rng);
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        for text in [
            format!("{secs}.{nanos:09}"),
            format!("{secs}s{nanos}ns"),
            format!("{}ns", d.as_nanos()),
            parts(d.as_nanos()),
        ] {
            assert_eq!(parse(&text).ok(), Some(d), "{text:?}");
        }
    }
}

/// `d` as whole parts of every unit it needs, largest first.
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

#[test]
fn unit_sequences_follow_the_grammar() {
    let mut rng = Rng::from_env();
    for _ in 0..cases() {
        // 1 to 4 parts with random units, in random order, maybe repeated.
        let n = 1 + rng.below(4) as usize;
        let picks: Vec<usize> = (0..n).map(|_| rng.below(7) as usize).collect();
        let values: Vec<u128> = (0..n)
            .map(|_| {
                let limit = if rng.below(4) == 0 { u64::MAX } else { 1000 };
                u128::from(rng.below(limit))
            })
            .collect();
        let text: String = picks
            .iter()
            .zip(&values)
            .map(|(&u, v)| format!("{v}{}", UNITS[u].0))
            .collect();
        let ordered = picks.windows(2).all(|w| w[0] < w[1]);
        let total: Option<u128> = picks.iter().zip(&values).try_fold(0u128, |acc, (&u, &v)| {
            acc.checked_add(v.checked_mul(UNITS[u].1)?)
        });
        let expected = match total {
            Some(t) if ordered && t <= MAX_DURATION.as_nanos() => Some(t),
            _ => None,
        };
        let got = parse(&text).ok().map(|d| d.as_nanos());
        assert_eq!(got, expected, "{text:?}");

        // Decorations that must always be rejected.
        for bad in [
            format!("-{text}"),
            format!("+{text}"),
            format!("{text}7"),
            format!("{text} "),
            format!(" {text}"),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}

#[test]
fn just_above_the_limit_is_rejected_in_every_unit() {
    let max = MAX_DURATION.as_nanos();
    for (unit, scale) in UNITS {
        let over = max / scale + 1;
        let text = format!("{over}{unit}");
        assert!(parse(&text).is_err(), "{text:?} accepted");
        let at = max / scale;
        let text = format!("{at}{unit}");
        assert_eq!(
            parse(&text).ok().map(|d| d.as_nanos()),
            Some(at * scale),
            "{text:?}"
        );
    }
    assert_eq!(parse("3153600000").ok(), Some(MAX_DURATION));
    assert!(parse("3153600000.000000001").is_err());
}
