//! Issue 2, row 5: the fixed escalation (close stdin → grace → TERM → grace
//! → KILL), the deadline, and the classification, against real children.

mod common;
#[path = "common/support.rs"]
mod support;

use std::time::{Duration, Instant};

use childminder::{
    EscalationCause, ExitStatus, Signal, Termination, discard, stdin, with_process,
    with_process_result,
};
use common::{LeakCheck, pid_alive};
use support::{cpu_time, expect_ready, fixture_cmd, line_consumer, warm_up};

const SLACK: Duration = Duration::from_secs(4);

#[test]
fn teardown_of_a_term_ignoring_child_kills_it_two_graces_after_the_action() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(200);
    let (on_out, lines) = line_consumer();
    let mut pid = 0;
    let mut action_end = None;
    let ((), r) = with_process_result(
        fixture_cmd(["ignore-term", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            pid = p.pid() as i32;
            action_end = Some(Instant::now());
        },
    )
    .unwrap();
    let took = action_end.unwrap().elapsed();
    // grace for a natural exit, TERM (ignored), grace, KILL.
    assert!(took >= 2 * grace, "teardown took only {took:?}");
    assert!(took < 2 * grace + SLACK, "teardown took {took:?}");
    assert!(!pid_alive(pid));
    assert_eq!(r.termination, Termination::Escalated, "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Teardown));
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
    let term = r.term_sent_after.expect("TERM was sent");
    let kill = r.kill_sent_after.expect("KILL was sent");
    assert!(term >= grace, "TERM at {term:?}, before one grace");
    assert!(kill >= term + grace, "KILL at {kill:?}, TERM at {term:?}");
    assert!(!r.timed_out());
    leak.assert_clean();
}

#[test]
fn shutdown_of_a_term_ignoring_child_is_escalated_with_term_then_kill() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(200);
    let (on_out, lines) = line_consumer();
    let (r, took) = with_process(
        fixture_cmd(["ignore-term", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            (p.shutdown(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(r.termination, Termination::Escalated, "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
    assert_eq!(
        r.exit,
        Some(ExitStatus::Signaled {
            signal: Signal::KILL,
            core_dumped: false
        })
    );
    let term = r.term_sent_after.expect("TERM was sent");
    let kill = r.kill_sent_after.expect("KILL was sent");
    assert!(term >= grace, "TERM at {term:?}, before one grace");
    assert!(kill >= term + grace, "KILL at {kill:?}, TERM at {term:?}");
    assert!(r.runtime >= kill, "runtime {:?} < kill {kill:?}", r.runtime);
    assert!(took >= 2 * grace && took < 2 * grace + SLACK, "{took:?}");
    assert!(!r.timed_out());
    leak.assert_clean();
}

#[test]
fn a_child_that_exits_at_once_is_clean_and_nothing_is_sent() {
    warm_up();
    let leak = LeakCheck::new();
    let r = fixture_cmd(["exit", "0"]).run().unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
    assert_eq!(r.termination, Termination::Clean);
    assert_eq!(r.escalation_cause, None);
    assert_eq!((r.term_sent_after, r.kill_sent_after), (None, None));
    assert!(r.success() && !r.timed_out());

    // The action returns at once; the child exits by itself: the teardown
    // does not wait the (default, 5 s) grace period.
    let t = Instant::now();
    let ((), r) = with_process_result(
        &fixture_cmd(["exit", "0"]),
        stdin::empty(),
        discard,
        discard,
        |p| {
            // Seen to have exited before the action returns.
            let _ = p.wait();
        },
    )
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(r.termination, Termination::Clean, "{r:?}");
    assert_eq!(r.escalation_cause, None);
    assert_eq!((r.term_sent_after, r.kill_sent_after), (None, None));
    leak.assert_clean();
}

#[test]
fn deadline_sends_term_at_the_deadline_and_reports_timed_out() {
    warm_up();
    let leak = LeakCheck::new();
    let deadline = Duration::from_millis(300);
    let t = Instant::now();
    let r = fixture_cmd(["sleep", "300"])
        .deadline(deadline)
        .run()
        .unwrap();
    let took = t.elapsed();
    assert!(r.timed_out(), "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Deadline));
    assert_eq!(r.termination, Termination::Escalated);
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
    let term = r.term_sent_after.expect("TERM sent");
    assert!(term >= deadline && term < deadline + SLACK, "{term:?}");
    assert_eq!(r.kill_sent_after, None);
    // No natural-exit wait before the deadline's TERM: well under the
    // default 5 s grace.
    assert!(took >= deadline && took < deadline + SLACK, "{took:?}");
    leak.assert_clean();
}

#[test]
fn deadline_on_a_term_ignoring_child_kills_a_grace_after_the_deadline() {
    warm_up();
    let leak = LeakCheck::new();
    let (deadline, grace) = (Duration::from_millis(200), Duration::from_millis(300));
    let r = fixture_cmd(["ignore-term", "300"])
        .deadline(deadline)
        .grace_period(grace)
        .run()
        .unwrap();
    assert!(r.timed_out(), "{r:?}");
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
    assert_eq!(r.termination, Termination::Escalated);
    let term = r.term_sent_after.expect("TERM sent");
    let kill = r.kill_sent_after.expect("KILL sent");
    assert!(term >= deadline, "{term:?}");
    assert!(kill >= term + grace, "TERM {term:?}, KILL {kill:?}");
    assert!(kill < deadline + grace + SLACK, "{kill:?}");
    leak.assert_clean();
}

#[test]
fn deadline_fires_while_the_action_is_still_running() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["sleep", "300"]).deadline(Duration::from_millis(200)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            // Blocks: only the deadline can end the child.
            p.wait_timeout(Duration::from_secs(8))
                .expect("the deadline did not end the child")
        },
    )
    .unwrap();
    assert!(r.timed_out());
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
    leak.assert_clean();
}

#[test]
fn a_deadline_that_does_not_expire_changes_nothing() {
    warm_up();
    let leak = LeakCheck::new();
    let r = fixture_cmd(["exit", "4"])
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(4)));
    assert_eq!(r.termination, Termination::Clean);
    assert!(!r.timed_out());
    assert_eq!(r.escalation_cause, None);
    leak.assert_clean();
}

#[test]
fn zero_grace_sends_term_and_kill_without_waiting() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let (r, took) = with_process(
        fixture_cmd(["ignore-term", "300"]).grace_period(Duration::ZERO),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            (p.shutdown(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    assert!(r.term_sent_after.is_some() && r.kill_sent_after.is_some());
    assert!(r.term_sent_after <= r.kill_sent_after);
    assert!(took < Duration::from_secs(3), "{took:?}");
    leak.assert_clean();
}

#[test]
fn a_child_that_exits_on_term_is_escalated_without_kill() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(100);
    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["sleep", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            p.shutdown()
        },
    )
    .unwrap();
    assert_eq!(r.termination, Termination::Escalated);
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
    assert!(r.term_sent_after.is_some());
    assert_eq!(r.kill_sent_after, None);
    leak.assert_clean();
}

#[test]
fn classification_table_is_the_seeds() {
    use Termination::*;
    let cases = [
        // (term sent, kill sent, exit observed) -> termination
        ((false, false, true), Clean),
        ((true, false, true), Escalated),
        ((false, true, true), Escalated),
        ((true, true, true), Escalated),
        ((false, true, false), Escalated),
        ((true, true, false), Escalated),
        ((true, false, false), Indeterminate),
        ((false, false, false), Indeterminate),
    ];
    for ((term, kill, exit), expected) in cases {
        assert_eq!(
            Termination::classify(term, kill, exit),
            expected,
            "classify({term}, {kill}, {exit})"
        );
    }
    assert_eq!(Clean.as_str(), "clean");
    assert_eq!(Escalated.as_str(), "escalated");
    assert_eq!(Indeterminate.as_str(), "indeterminate");
}

#[test]
fn a_signal_from_outside_is_clean_but_visible_in_exit() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let r = with_process(
        &fixture_cmd(["sleep", "300"]),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            // An outside `kill -9`, not through the handle.
            // SAFETY: the child is alive and unreaped (we hold it), so the pid
            // is certainly its own.
            assert_eq!(unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) }, 0);
            p.wait()
        },
    )
    .unwrap();
    assert_eq!(r.termination, Termination::Clean, "{r:?}");
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
    assert_eq!((r.term_sent_after, r.kill_sent_after), (None, None));
    assert!(!r.success());
    leak.assert_clean();
}

/// `Command::deadline`: "Begins the escalation this long after the spawn,
/// whatever the action is doing: the first signal at once".
#[test]
fn deadline_cuts_a_shutdowns_natural_exit_wait_short() {
    warm_up();
    let leak = LeakCheck::new();
    let (deadline, grace) = (Duration::from_millis(400), Duration::from_secs(3));
    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["sleep", "300"])
            .deadline(deadline)
            .grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            // Waits up to 3 s for a natural exit that never comes...
            p.shutdown()
        },
    )
    .unwrap();
    // ...but the deadline sends TERM when it expires.
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM), "{r:?}");
    let term = r.term_sent_after.expect("TERM sent");
    assert!(term >= deadline, "{term:?}");
    assert!(term < Duration::from_millis(2500), "TERM only at {term:?}");
    leak.assert_clean();
}

#[test]
fn the_coordinator_sleeps_until_the_deadline() {
    // A coordinator that polled for the deadline instead of setting a timer
    // would still keep every deadline: only its CPU time shows it.
    warm_up();
    let leak = LeakCheck::new();
    let wait = Duration::from_secs(1);
    let (on_out, lines) = line_consumer();
    let (used, r) = with_process(
        fixture_cmd(["sleep", "300"])
            .deadline(wait)
            .grace_period(Duration::from_millis(100)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let before = cpu_time();
            let r = p.wait();
            (cpu_time() - before, r)
        },
    )
    .unwrap();
    assert!(r.timed_out(), "{r:?}");
    // Sleeping, the wait costs well under a millisecond; a busy loop costs
    // most of the second even on a loaded machine.
    assert!(used < wait / 5, "{used:?} of CPU while waiting {wait:?}");
    leak.assert_clean();
}
