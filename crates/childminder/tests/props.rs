//! Property tests: `Signal::from_str` and the `Command` builder.
//!
//! - `Signal::from_str` never panics; it accepts a number exactly when
//!   `Signal::from_raw` does, and every named signal in any case, with or
//!   without `SIG`; whatever it accepts is a real signal number; its error
//!   names the input.
//! - The builder never panics on arbitrary bytes, sizes and durations:
//!   `validate` is an error exactly when the documented rules say so (an
//!   `InvalidOptions`, or a start failure for a program not found), else Ok;
//!   the getters return what was given.
//! - When valid, a command reaches the fixture byte for byte: arguments,
//!   environment values, stdin chunks (empty ones included), and the output
//!   comes back in chunks of at most `buffer_size`, on both spawn paths.
//!
//! Case counts: `PROPTEST_CASES` overrides the defaults below. Failures are
//! not persisted to files (the shrunk input is printed).

mod common;
mod torture_support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use childminder::{
    Command, Error, MAX_BUFFER_SIZE, MAX_DURATION, Signal, discard, stdin, with_process,
};
use common::{LeakCheck, MARKER_VAR, fixture, marker_value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}

// -------------------------------------------------------------- Signal ---

/// The named signals, from the library itself (numbers 1..=31 with a name).
fn named() -> Vec<Signal> {
    (1..=31)
        .filter_map(Signal::from_raw)
        .filter(|s| s.name().is_some())
        .collect()
}

fn rtmax() -> i32 {
    libc::SIGRTMAX()
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn signal_from_str_never_panics_and_accepts_only_real_signals(s in any::<String>()) {
        match s.parse::<Signal>() {
            Ok(sig) => {
                prop_assert!((1..=rtmax()).contains(&sig.as_raw()), "{s:?} -> {sig:?}");
                // Accepted as a number, or as one of the names.
                let t = s.trim();
                let as_number = t.parse::<i32>().ok() == Some(sig.as_raw());
                let upper = t.to_ascii_uppercase();
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                let as_name = sig.name().is_some_and(|n| &n[3..] == bare);
                prop_assert!(as_number || as_name, "{s:?} accepted as {sig:?}");
            }
            Err(e) => {
                prop_assert!(e.to_string().contains(&format!("{s:?}")), "{e}");
            }
        }
    }

    #[test]
    fn signal_from_str_of_ascii_soup_never_panics(s in "[ \\tA-Za-z0-9+\\-.]{0,12}") {
        if let Ok(sig) = s.parse::<Signal>() {
            prop_assert!((1..=rtmax()).contains(&sig.as_raw()));
        }
    }

    #[test]
    fn signal_numbers_parse_exactly_when_from_raw_accepts_them(n in prop_oneof![
        any::<i32>(),
        -2..=70i32,
    ]) {
        let parsed = n.to_string().parse::<Signal>().ok();
        prop_assert_eq!(parsed, Signal::from_raw(n), "{}", n);
        if let Some(sig) = parsed {
            prop_assert_eq!(sig.as_raw(), n);
        }
        prop_assert_eq!(Signal::from_raw(n).is_some(), (1..=rtmax()).contains(&n));
    }

    #[test]
    fn signal_names_parse_in_any_case_with_or_without_sig(
        which in any::<prop::sample::Index>(),
        prefix in any::<bool>(),
        case_mask in any::<u64>(),
    ) {
        let all = named();
        let sig = all[which.index(all.len())];
        let name = sig.name().unwrap();
        let base = if prefix { name } else { &name[3..] };
        let text: String = base
            .chars()
            .enumerate()
            .map(|(i, c)| if case_mask >> (i % 64) & 1 == 1 { c.to_ascii_lowercase() } else { c })
            .collect();
        prop_assert_eq!(text.parse::<Signal>().ok(), Some(sig), "{}", text);
        prop_assert_eq!(sig.to_string().parse::<Signal>().ok(), Some(sig));
    }
}

// ------------------------------------------------------------- Command ---

/// Bytes with no NUL (what an argument or value may hold).
fn no_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..max)
}

/// Any bytes, NUL and `=` likely.
fn any_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => any::<u8>(), 1 => Just(0u8), 1 => Just(b'=')],
        0..max,
    )
}

fn buffer_sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(MAX_BUFFER_SIZE),
        Just(MAX_BUFFER_SIZE + 1),
        Just(usize::MAX),
        1..=MAX_BUFFER_SIZE,
        any::<usize>(),
    ]
}

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0..=MAX_DURATION.as_secs(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

#[derive(Debug, Clone)]
enum Cwd {
    None,
    Root,
    Missing,
    File,
    Bytes(Vec<u8>),
}

fn cwds() -> impl Strategy<Value = Cwd> {
    prop_oneof![
        12 => Just(Cwd::None),
        3 => Just(Cwd::Root),
        1 => Just(Cwd::Missing),
        1 => Just(Cwd::File),
        1 => any_bytes(16).prop_map(Cwd::Bytes),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    /// None: the fixture (exists); Some: arbitrary bytes.
    program: Option<Vec<u8>>,
    args: Vec<Vec<u8>>,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    removed: Vec<Vec<u8>>,
    clear: bool,
    buffer: usize,
    grace: Duration,
    deadline: Option<Duration>,
    cwd: Cwd,
}

fn specs() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![3 => Just(None), 1 => any_bytes(24).prop_map(Some)],
        prop::collection::vec(prop_oneof![19 => no_nul(24), 1 => any_bytes(24)], 0..6),
        prop::collection::vec(
            (
                prop_oneof![19 => "[A-Z_][A-Z0-9_]{0,8}".prop_map(String::into_bytes), 1 => any_bytes(12)],
                prop_oneof![19 => no_nul(24), 1 => any_bytes(24)],
            ),
            0..4,
        ),
        prop::collection::vec(
            prop_oneof![9 => "[A-Z_][A-Z0-9_]{0,8}".prop_map(String::into_bytes), 1 => any_bytes(8)],
            0..2,
        ),
        any::<bool>(),
        prop_oneof![9 => 1..=MAX_BUFFER_SIZE, 1 => buffer_sizes()],
        prop_oneof![9 => (0..3600u64).prop_map(Duration::from_millis), 1 => durations()],
        prop::option::of(prop_oneof![
            9 => (0..3600u64).prop_map(Duration::from_millis),
            1 => durations(),
        ]),
        cwds(),
    )
        .prop_map(
            |(program, args, env, removed, clear, buffer, grace, deadline, cwd)| Spec {
                program,
                args,
                env,
                removed,
                clear,
                buffer,
                grace,
                deadline,
                cwd,
            },
        )
}

impl Spec {
    fn build(&self) -> Command {
        let program: &OsStr = match &self.program {
            None => OsStr::new(fixture()),
            Some(bytes) => OsStr::from_bytes(bytes),
        };
        let mut cmd = Command::new(program);
        for a in &self.args {
            cmd.arg(OsStr::from_bytes(a));
        }
        if self.clear {
            cmd.env_clear();
        }
        for (k, v) in &self.env {
            cmd.env(OsStr::from_bytes(k), OsStr::from_bytes(v));
        }
        for k in &self.removed {
            cmd.env_remove(OsStr::from_bytes(k));
        }
        cmd.buffer_size(self.buffer).grace_period(self.grace);
        if let Some(d) = self.deadline {
            cmd.deadline(d);
        }
        match &self.cwd {
            Cwd::None => {}
            Cwd::Root => {
                cmd.current_dir("/");
            }
            Cwd::Missing => {
                cmd.current_dir("/nonexistent/cm-prop");
            }
            Cwd::File => {
                cmd.current_dir(fixture());
            }
            Cwd::Bytes(b) => {
                cmd.current_dir(OsStr::from_bytes(b));
            }
        }
        cmd
    }

    /// The documented rules of `validate` (`Command::validate`, README):
    /// which option, if any, makes the command invalid.
    fn invalid_because(&self) -> Option<&'static str> {
        let has_nul = |b: &[u8]| b.contains(&0);
        let bad_key = |k: &[u8]| k.is_empty() || k.contains(&b'=') || has_nul(k);
        match &self.program {
            Some(p) if p.is_empty() => return Some("empty program"),
            Some(p) if has_nul(p) => return Some("NUL in the program"),
            _ => {}
        }
        if self.args.iter().any(|a| has_nul(a)) {
            return Some("NUL in an argument");
        }
        // The builder's own view: later settings of a key replace earlier
        // ones, and env_remove replaces a value by "removed".
        let mut vars = std::collections::BTreeMap::new();
        for (k, v) in &self.env {
            vars.insert(k.as_slice(), Some(v.as_slice()));
        }
        for k in &self.removed {
            vars.insert(k.as_slice(), None);
        }
        if vars
            .iter()
            .any(|(k, v)| bad_key(k) || v.is_some_and(has_nul))
        {
            return Some("bad environment variable");
        }
        if self.buffer == 0 || self.buffer > MAX_BUFFER_SIZE {
            return Some("buffer_size");
        }
        if self.grace > MAX_DURATION || self.deadline.is_some_and(|d| d > MAX_DURATION) {
            return Some("duration");
        }
        match &self.cwd {
            Cwd::Missing | Cwd::File => return Some("current_dir"),
            Cwd::Bytes(b) if !std::path::Path::new(OsStr::from_bytes(b)).is_dir() => {
                return Some("current_dir");
            }
            _ => {}
        }
        None
    }
}

#[test]
fn command_builder_never_panics_and_validate_follows_the_documented_rules() {
    let mut runner = TestRunner::new(config(1024));
    let tally: [std::cell::Cell<usize>; 3] = Default::default();
    runner
        .run(&specs(), |spec| {
            let cmd = spec.build();
            // The getters return what was given.
            let given: &[u8] = spec.program.as_deref().unwrap_or(fixture().as_bytes());
            prop_assert_eq!(cmd.get_program().as_bytes(), given);
            let args: Vec<&[u8]> = cmd.get_args().map(OsStr::as_bytes).collect();
            let want: Vec<&[u8]> = spec.args.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(args, want);

            let outcome = std::panic::catch_unwind(|| cmd.validate());
            let outcome = outcome.map_err(|_| TestCaseError::fail("validate panicked"))?;
            match (spec.invalid_because(), outcome) {
                (Some(_), Err(Error::InvalidOptions { .. })) => tally[0].set(tally[0].get() + 1),
                (None, Ok(())) => tally[1].set(tally[1].get() + 1),
                // A program given as bytes may be missing or not executable.
                (None, Err(Error::ProcessStartFailed { .. })) if spec.program.is_some() => {
                    tally[2].set(tally[2].get() + 1);
                }
                (why, got) => {
                    return Err(TestCaseError::fail(format!(
                        "expected {why:?} (None = valid), got {got:?}"
                    )));
                }
            }
            Ok(())
        })
        .unwrap();
    let tally = tally.map(std::cell::Cell::into_inner);
    println!(
        "validate: {} invalid (InvalidOptions), {} valid, {} valid but not startable",
        tally[0], tally[1], tally[2]
    );
    assert!(
        tally.iter().all(|&n| n > 0),
        "a class was never generated: {tally:?}"
    );
}

#[test]
fn durations_and_buffer_sizes_are_accepted_exactly_within_the_bounds() {
    let mut runner = TestRunner::new(config(2048));
    runner
        .run(
            &(durations(), durations(), buffer_sizes()),
            |(grace, deadline, buffer)| {
                let mut cmd = Command::new(fixture());
                cmd.grace_period(grace)
                    .deadline(deadline)
                    .buffer_size(buffer);
                let ok = grace <= MAX_DURATION
                    && deadline <= MAX_DURATION
                    && (1..=MAX_BUFFER_SIZE).contains(&buffer);
                match cmd.validate() {
                    Ok(()) => prop_assert!(ok, "{grace:?} {deadline:?} {buffer} accepted"),
                    Err(Error::InvalidOptions { reason, .. }) => {
                        prop_assert!(!ok, "{grace:?} {deadline:?} {buffer} rejected: {reason}");
                    }
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Valid commands reach the fixture byte for byte: arguments, and an
/// environment value; output comes back in chunks of at most buffer_size.
#[test]
fn valid_commands_round_trip_arguments_and_environment_byte_for_byte() {
    torture_support::warm_up();
    let leak = LeakCheck::new();
    let mut runner = TestRunner::new(config(64));
    let strategy = (
        prop::collection::vec(no_nul(48), 0..12),
        no_nul(64),
        1usize..=256,
        any::<bool>(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(args, value, buffer, fork, clear)| {
            let mut cmd = Command::new(fixture());
            cmd.arg("args")
                .args(args.iter().map(|a| OsStr::from_bytes(a)));
            if clear {
                cmd.env_clear();
            }
            cmd.env(MARKER_VAR, marker_value())
                .buffer_size(buffer)
                .kill_on_parent_death(fork);
            let mut out = Vec::new();
            let mut largest = 0;
            let r = with_process(
                &cmd,
                stdin::empty(),
                |c: &[u8]| {
                    largest = largest.max(c.len());
                    out.extend_from_slice(c);
                    Ok(())
                },
                discard,
                |p| p.wait(),
            )
            .unwrap();
            prop_assert!(r.success(), "{r:?}");
            prop_assert!(
                largest <= buffer,
                "chunk of {largest} > buffer_size {buffer}"
            );
            let want: String = args
                .iter()
                .map(|a| a.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
                .collect();
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);

            let mut cmd = Command::new(fixture());
            cmd.args(["env", "CM_PROP_VALUE"])
                .env(MARKER_VAR, marker_value())
                .env("CM_PROP_VALUE", OsStr::from_bytes(&value))
                .kill_on_parent_death(fork);
            let out = cmd.output().unwrap();
            let mut want = value.clone();
            want.push(b'\n');
            prop_assert_eq!(out.stdout, want);
            Ok(())
        })
        .unwrap();
    leak.assert_clean();
}

/// A producer's chunks (empty ones included) reach the child in order and
/// whole, whatever their sizes, `flush_stdin` and `buffer_size`.
#[test]
fn producer_chunks_round_trip_through_cat() {
    torture_support::warm_up();
    let leak = LeakCheck::new();
    let mut runner = TestRunner::new(config(48));
    let strategy = (
        prop::collection::vec(
            prop_oneof![1 => Just(Vec::new()), 4 => prop::collection::vec(any::<u8>(), 0..20_000)],
            0..24,
        ),
        1usize..=70_000,
        any::<bool>(),
    );
    runner
        .run(&strategy, |(chunks, buffer, flush)| {
            let want: Vec<u8> = chunks.concat();
            let mut feed = chunks.into_iter();
            let mut cmd = Command::new(fixture());
            cmd.arg("cat")
                .env(MARKER_VAR, marker_value())
                .buffer_size(buffer)
                .flush_stdin(flush);
            let mut out = Vec::new();
            let mut largest = 0;
            let r = with_process(
                &cmd,
                stdin::from_fn(move || Ok(feed.next())),
                |c: &[u8]| {
                    largest = largest.max(c.len());
                    out.extend_from_slice(c);
                    Ok(())
                },
                discard,
                |p| p.wait(),
            )
            .unwrap();
            prop_assert!(r.success(), "{r:?}");
            prop_assert!(largest <= buffer);
            prop_assert!(out == want, "{} bytes back, {} sent", out.len(), want.len());
            Ok(())
        })
        .unwrap();
    leak.assert_clean();
}
