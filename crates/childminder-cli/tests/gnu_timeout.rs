//! The real `childminder` binary at the edges where a GNU `timeout` user
//! has expectations (issue 8): durations as GNU takes them, every signal
//! with a defined meaning, dispositions and masks passed on, exit by the
//! same signal, and a report that never blocks or changes the verdict.
//!
//! Tests synchronise on what the child prints (`ready`), never on sleeps.

mod common;

use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------
// Durations (§4)
// ---------------------------------------------------------------------------

#[test]
fn a_duration_below_the_resolution_is_the_smallest_deadline_not_none() {
    for tiny in ["1e-10", "0.5ns"] {
        let out = run(&["run", "-t", tiny, "-g", "10s", "--", "sleep", "30"]);
        assert_eq!(out.code(), 124, "-t {tiny}: {}", out.stderr);
        assert!(
            out.elapsed < Duration::from_secs(8),
            "-t {tiny}: {:?}",
            out.elapsed
        );
    }
}

#[test]
fn large_durations_mean_forever_as_in_gnu_timeout() {
    for huge in [
        "4294967296",
        "9223372036854775808d",
        "2.34e+5d",
        "inf",
        "infinity",
    ] {
        let (out, report) =
            run_with_report(&["run", "-t", huge, "-g", huge, "--", "sh", "-c", "exit 3"]);
        assert_eq!(out.code(), 3, "-t {huge}: {}", out.stderr);
        assert_eq!(report["timed_out"], false, "-t {huge}");
    }
}

#[test]
fn an_exponent_followed_by_a_unit_parses() {
    let out = run(&["run", "-t", "1e1s", "-g", "5e2ms", "--", "true"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// Signals (§3)
// ---------------------------------------------------------------------------

/// `-s 0` was a usage error; GNU takes it as "send nothing, then KILL after
/// the grace". A child that dies on any catchable signal dying by KILL
/// proves nothing was sent first.
#[test]
fn dash_s_0_sends_nothing_first_then_kill_after_the_grace() {
    let (out, report) = run_with_report(&[
        "run", "-t", "100ms", "-g", "300ms", "-s", "0", "--", "sleep", "30",
    ]);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGKILL", "{report}");
    let term = report["term_sent_after_ms"].as_u64().unwrap();
    let kill = report["kill_sent_after_ms"].as_u64().unwrap();
    assert!(kill >= term + 290, "{report}");
}

#[test]
fn a_realtime_signal_name_is_accepted_by_dash_s() {
    let (out, report) = run_with_report(&[
        "run", "-t", "100ms", "-g", "10s", "-s", "RTMIN+1", "--", "sleep", "30",
    ]);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGRTMIN+1", "{report}");
}
