//! `childminder run` against daemons that leave the command's process
//! group: the subreaper (on by default, `--no-subreaper`), `--cgroup` and
//! `--cgroup=auto`. Issue 10.
//!
//! The daemon is `setsid sh -c 'sleep 300 & echo $!'`: the middle shell
//! leads a new session, starts the daemon in it, prints its pid and exits,
//! so when the test reads the pid the daemon is out of the command's group
//! and orphaned.

use std::path::Path;

use serde_json::Value;

mod common;

use common::*;

const DAEMON: &str = "setsid sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $!'";

/// Runs `childminder run --report - [options] -- sh -c DAEMON`, returns the
/// daemon's pid, the run and its report.
fn run_daemon(options: &[&str]) -> (u32, Finished, Value) {
    let mut args = vec!["run", "--report", "-", "-g", "300ms"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--", "sh", "-c", DAEMON]);
    let mut running = Running::start(&args);
    let daemon: u32 = running.line().parse().unwrap();
    let out = running.finish();
    let report = last_line_json(&out.stderr);
    (daemon, out, report)
}

fn cgroup_available() -> bool {
    let out = run(&["run", "--cgroup", "--", "true"]);
    if out.code() == 0 {
        return true;
    }
    eprintln!("SKIPPED: no writable cgroup v2 here: {}", out.stderr);
    false
}

#[test]
fn a_double_forked_setsid_daemon_is_ended_by_the_subreaper() {
    let (daemon, out, report) = run_daemon(&[]);
    assert_eq!(out.code(), 0, "the status stays the command's: {report}");
    assert_eq!(report["subreaper"], true);
    assert_eq!(report["escapees_ended"], 1, "{report}");
    assert_eq!(report["escapees_killed"], 0, "TERM was enough: {report}");
    assert_dies(daemon, "the daemon");
}

#[test]
fn no_subreaper_leaves_the_daemon_running() {
    let (daemon, out, report) = run_daemon(&["--no-subreaper"]);
    assert_eq!(out.code(), 0);
    assert_eq!(report["subreaper"], false);
    assert_eq!(report["escapees_ended"], 0);
    assert!(
        matches!(proc_state(daemon), Some(s) if s != 'Z'),
        "the daemon was ended"
    );
    // SAFETY: the test's own daemon; kill takes integers.
    unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
}

#[test]
fn with_cgroup_the_daemon_is_ended_and_the_cgroup_removed() {
    if !cgroup_available() {
        return;
    }
    let (daemon, out, report) = run_daemon(&["--cgroup"]);
    assert_eq!(out.code(), 0, "{report}");
    let cgroup = report["cgroup"].as_str().unwrap();
    assert!(!Path::new(cgroup).exists(), "{cgroup} was not removed");
    assert!(report["cgroup_cpu_ms"].is_number(), "{report}");
    assert_eq!(report["cgroup_fallback"], Value::Null);
    assert_dies(daemon, "the daemon");
}

#[test]
fn cgroup_auto_falls_back_and_says_so() {
    let (daemon, out, report) = run_daemon(&["--cgroup=auto", "--cgroup-parent", "/proc/no-such"]);
    assert_eq!(out.code(), 0, "{report}");
    assert_eq!(report["cgroup"], Value::Null);
    let why = report["cgroup_fallback"].as_str().unwrap();
    assert!(why.contains("/proc/no-such"), "{why}");
    assert!(out.stderr.contains("warning: no cgroup"), "{}", out.stderr);
    assert_eq!(report["escapees_ended"], 1, "{report}");
    assert_dies(daemon, "the daemon");
}

#[test]
fn cgroup_without_a_writable_cgroup_is_125_and_nothing_runs() {
    let marker = temp_path("ran");
    let script = format!("touch {}", marker.display());
    let out = run(&[
        "run",
        "--cgroup",
        "--cgroup-parent",
        "/proc/no-such",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.code(), 125);
    assert!(out.stderr.contains("no cgroup"), "{}", out.stderr);
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn a_group_member_orphaned_while_dying_is_not_counted_as_an_escapee() {
    // The deadline's TERM reaches the whole group; the shell dies before
    // its `sleep`, which is then orphaned to childminder while it dies of
    // the same TERM. It never left the group: not an escapee.
    let mut running = Running::start(&[
        "run",
        "--report",
        "-",
        "-t",
        "200ms",
        "-g",
        "300ms",
        "--",
        "sh",
        "-c",
        "echo ready; sleep 30; true",
    ]);
    assert_eq!(running.line(), "ready");
    let out = running.finish();
    let report = last_line_json(&out.stderr);
    assert_eq!(out.code(), 124, "{report}");
    assert_eq!(report["escapees_ended"], 0, "{report}");
    assert_eq!(report["escapees_killed"], 0, "{report}");
}

/// What `up` does (`up::a_second_term_kills_an_escapee_at_once_too`), for
/// `run`: once the command has exited and its escapee, which catches TERM
/// and goes on, has had the sweep's TERM, an INT asks the command to end
/// (it already has) and a TERM after it kills: the escapee gets SIGKILL
/// then, not a minute later at the end of its grace.
#[test]
fn a_second_term_during_the_escapee_sweep_kills_at_once() {
    let (pidfile, termed) = (temp_path("escapee.pid"), temp_path("termed"));
    let escapee = format!(
        "trap 'echo > {termed}' TERM; echo \\$\\$ > {pid}; \
         while :; do sleep 1 </dev/null >/dev/null 2>&1; done",
        termed = termed.display(),
        pid = pidfile.display()
    );
    let script = format!(
        "setsid sh -c \"{escapee}\" </dev/null >/dev/null 2>&1 & \
         while [ ! -s {pid} ]; do :; done",
        pid = pidfile.display()
    );
    let run = Running::start(&["run", "-g", "1m", "--", "sh", "-c", &script]);
    let started = std::time::Instant::now();
    // The sweep has begun: the escapee caught its TERM.
    while !termed.exists() {
        assert!(started.elapsed() < WATCHDOG, "the escapee never got TERM");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let escapee: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first = std::time::Instant::now();
    // Two different signals: two TERMs sent at once would be one pending.
    run.signal(libc::SIGINT);
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.code(), 0, "the command's own status: {}", out.stderr);
    assert!(
        first.elapsed() < std::time::Duration::from_secs(30),
        "the escapee's grace (1 min) was waited for: {:?}",
        first.elapsed()
    );
    assert_dies(escapee, "the escapee");
}
