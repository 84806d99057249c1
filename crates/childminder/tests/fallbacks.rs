//! The fallbacks for older kernels, forced on this one with
//! `CHILDMINDER_FALLBACK` (read once per process): `pid` (no pidfd at all)
//! and `kill-pgrp` (pidfd, but no `PIDFD_SIGNAL_PROCESS_GROUP`). Each outer
//! test re-runs the ignored `scenarios_in_forced_mode` test in a child
//! process of this test binary with the variable set.

mod common;
#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use childminder::{
    Command, ExitStatus, Signal, Termination, discard, stdin, with_process, with_process_result,
};
use common::{LeakCheck, MARKER_VAR, fixture, marker_value, our_children, pid_alive};

fn run_scenarios_with(mode: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("CHILDMINDER_FALLBACK", mode)
        .args([
            "--exact",
            "scenarios_in_forced_mode",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mode {mode}:\n{text}");
    assert!(
        text.contains("1 passed"),
        "mode {mode} ran nothing:\n{text}"
    );
}

#[test]
fn pid_fallback_waits_escalates_and_sweeps_the_group() {
    run_scenarios_with("pid");
}

#[test]
fn kill_pgrp_fallback_waits_escalates_and_sweeps_the_group() {
    run_scenarios_with("kill-pgrp");
}

#[test]
#[ignore = "entry point run by the fallback tests in a child process with CHILDMINDER_FALLBACK set"]
fn scenarios_in_forced_mode() {
    let mode = std::env::var("CHILDMINDER_FALLBACK").expect("run through the fallback tests");
    support::warm_up();
    let leak = LeakCheck::new();

    let r = Command::new("sh")
        .args(["-c", "exit 3"])
        .env(MARKER_VAR, marker_value())
        .run()
        .unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(3)));
    assert_eq!(r.termination, Termination::Clean);
    assert_eq!(r.used_pidfd, mode != "pid");

    // A child that ignores TERM is killed a grace after the TERM.
    let mut cmd = Command::new(fixture());
    cmd.args(["ignore-term", "300"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_millis(100));
    let (lines, rx) = support::line_consumer();
    let ((), r) = with_process_result(&cmd, stdin::empty(), lines, discard, |_| {
        support::expect_ready(&rx);
    })
    .unwrap();
    assert_eq!(r.termination, Termination::Escalated);
    assert!(r.kill_sent_after.unwrap() > r.term_sent_after.unwrap());

    // Grandchildren left behind by an exited child die with the group.
    let mut cmd = Command::new(fixture());
    cmd.args(["grandchildren", "3", "300", "exit"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_millis(100));
    let (lines, rx) = support::line_consumer();
    let pids: Vec<i32> = with_process(&cmd, stdin::empty(), lines, discard, |p| {
        let pids = support::expect_ready(&rx);
        assert!(p.wait().exit.unwrap().success());
        pids
    })
    .unwrap();
    assert_eq!(pids.len(), 3);

    // signal() after the exit is a no-op, never a signal to a recycled pid.
    with_process(
        &Command::new("true"),
        stdin::empty(),
        discard,
        discard,
        |p| {
            p.wait();
            assert!(!p.signal(Signal::KILL).unwrap());
        },
    )
    .unwrap();

    // A lone child is reaped before `wait` returns: before Linux 6.9 its
    // zombie, which holds the group id, was kept until the handle's drop
    // (an acceptance run of std's and tokio's tests found `id()` still
    // `Some` and the zombie in /proc).
    let mut child = Command::new("true")
        .env(MARKER_VAR, marker_value())
        .start()
        .unwrap();
    let pid = child.pid();
    assert!(child.wait().exit.unwrap().success());
    assert_eq!(child.id(), None, "mode {mode}");
    assert!(
        !our_children().iter().any(|(p, ..)| *p == pid as i32),
        "mode {mode}: {pid} not reaped"
    );
    drop(child);

    leak.assert_clean();
    for pid in pids {
        assert!(!pid_alive(pid), "grandchild {pid} survived");
    }
}
