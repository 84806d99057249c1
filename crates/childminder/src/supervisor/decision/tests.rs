//! The decision machine on an injected clock: no processes, no sleeps.

use super::Finish as Why;
use super::*;
use Action::*;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

fn child(restart: Restart) -> ChildParams {
    ChildParams {
        restart,
        significant: false,
        backoff: Backoff::NONE,
        start_timeout: None,
    }
}

fn params(strategy: Strategy, children: Vec<ChildParams>) -> Params {
    Params {
        strategy,
        intensity: 3,
        period: 5 * S,
        auto_shutdown: AutoShutdown::Never,
        children,
    }
}

fn permanent(n: usize) -> Vec<ChildParams> {
    (0..n).map(|_| child(Restart::Permanent)).collect()
}

/// A machine and its clock.
struct Sim {
    m: Machine,
    now: Instant,
}

impl Sim {
    fn new(params: Params) -> Sim {
        Sim {
            m: Machine::new(params, 1),
            now: Instant::now(),
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        self.m.handle(self.now, input)
    }

    fn after(&mut self, d: Duration, input: Input) -> Vec<Action> {
        self.now += d;
        self.feed(input)
    }

    /// Starts all children, each ready at once; returns the actions.
    fn start_all(&mut self) -> Vec<Action> {
        let mut all = self.feed(Input::Start);
        let mut i = 0;
        while i < self.m.slots.len() {
            all.extend(self.feed(Input::Ready(i)));
            i += 1;
        }
        all
    }

    fn delay_of(actions: &[Action], who: usize) -> Duration {
        actions
            .iter()
            .find_map(|a| match a {
                Restarting { child, delay, .. } if *child == who => Some(*delay),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Restarting for {who} in {actions:?}"))
    }
}

fn restarting(child: usize, count: u32) -> Action {
    Restarting {
        child,
        delay: Duration::ZERO,
        restart_count: count,
    }
}

#[test]
fn children_start_in_order_each_after_the_previous_is_running() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    assert_eq!(sim.feed(Input::Start), [Start(0)]);
    assert_eq!(sim.feed(Input::Tick), []);
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
    assert_eq!(sim.feed(Input::Ready(1)), [Running(1), Start(2)]);
    assert_eq!(sim.feed(Input::Ready(2)), [Running(2), AllRunning]);
    assert_eq!(sim.feed(Input::Ready(2)), []);
    assert_eq!(sim.m.next_deadline(), None);
}

#[test]
fn stop_goes_in_reverse_order_one_at_a_time() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    sim.start_all();
    assert_eq!(sim.feed(Input::Stop), [Stop(2)]);
    assert_eq!(sim.feed(Input::Tick), []);
    assert_eq!(
        sim.feed(Input::Ended(2, End::Failure)),
        [Judged(2, Verdict::Requested), Stopped(2), Stop(1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), Stopped(1), Stop(0)]
    );
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::Stopped)
        ]
    );
    assert!(sim.m.is_finished());
    assert_eq!(sim.feed(Input::Start), []);
}

#[test]
fn a_stop_during_the_start_stops_the_starting_child_and_starts_no_more() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    sim.feed(Input::Start);
    sim.feed(Input::Ready(0));
    assert_eq!(sim.feed(Input::Stop), [Stop(1)]);
    assert_eq!(sim.feed(Input::Ready(1)), []);
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), Stopped(1), Stop(0)]
    );
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::Stopped)
        ]
    );
}

#[test]
fn one_for_one_restarts_only_the_child_that_ended() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1), Start(1)]
    );
    assert_eq!(sim.feed(Input::Ready(1)), [Running(1), AllRunning]);
}

#[test]
fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    let mut sim = Sim::new(params(Strategy::OneForAll, permanent(3)));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1), Stop(2)]
    );
    assert_eq!(
        sim.feed(Input::Ended(2, End::Failure)),
        [Judged(2, Verdict::Requested), restarting(2, 1), Stop(0)]
    );
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [Judged(0, Verdict::Requested), restarting(0, 1), Start(0)]
    );
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
    assert_eq!(sim.feed(Input::Ready(1)), [Running(1), Start(2)]);
    assert_eq!(sim.feed(Input::Ready(2)), [Running(2), AllRunning]);
}

#[test]
fn rest_for_one_stops_and_restarts_the_later_children_only() {
    let mut sim = Sim::new(params(Strategy::RestForOne, permanent(4)));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1), Stop(3)]
    );
    assert_eq!(
        sim.feed(Input::Ended(3, End::Success)),
        [Judged(3, Verdict::Requested), restarting(3, 1), Stop(2)]
    );
    assert_eq!(
        sim.feed(Input::Ended(2, End::Success)),
        [Judged(2, Verdict::Requested), restarting(2, 1), Start(1)]
    );
    assert_eq!(sim.feed(Input::Ready(1)), [Running(1), Start(2)]);
    assert_eq!(sim.feed(Input::Ready(2)), [Running(2), Start(3)]);
    assert_eq!(sim.feed(Input::Ready(3)), [Running(3), AllRunning]);
}

#[test]
fn the_last_childs_failure_under_rest_for_one_restarts_only_it() {
    let mut sim = Sim::new(params(Strategy::RestForOne, permanent(2)));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1), Start(1)]
    );
}

#[test]
fn a_temporary_sibling_stopped_by_the_strategy_is_not_restarted() {
    let mut sim = Sim::new(params(
        Strategy::OneForAll,
        vec![child(Restart::Permanent), child(Restart::Temporary)],
    ));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1), Stop(1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), Stopped(1), Start(0)]
    );
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), AllRunning]);
}

#[test]
fn restart_types_decide_after_a_normal_and_an_abnormal_end() {
    let cases = [
        (Restart::Permanent, End::Success, true),
        (Restart::Permanent, End::Failure, true),
        (Restart::Transient, End::Success, false),
        (Restart::Transient, End::Failure, true),
        (Restart::Temporary, End::Success, false),
        (Restart::Temporary, End::Failure, false),
    ];
    for (restart, end, restarted) in cases {
        let mut sim = Sim::new(params(
            Strategy::OneForOne,
            vec![child(Restart::Permanent), child(restart)],
        ));
        sim.start_all();
        let verdict = if end == End::Success {
            Verdict::Normal
        } else {
            Verdict::Abnormal
        };
        let expected = if restarted {
            vec![Judged(1, verdict), restarting(1, 1), Start(1)]
        } else {
            vec![Judged(1, verdict), Stopped(1)]
        };
        assert_eq!(
            sim.after(S, Input::Ended(1, end)),
            expected,
            "{restart:?} after {end:?}"
        );
    }
}

#[test]
fn a_requested_stop_is_never_abnormal_even_with_a_failure_status() {
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![child(Restart::Transient)]));
    sim.start_all();
    assert_eq!(sim.feed(Input::StopChild(0)), [Stop(0)]);
    assert_eq!(
        sim.feed(Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Requested), Stopped(0)]
    );
}

#[test]
fn the_children_ending_for_good_completes_the_supervisor() {
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![child(Restart::Temporary), child(Restart::Transient)],
    ));
    sim.start_all();
    assert_eq!(
        sim.feed(Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), Stopped(0)]
    );
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [
            Judged(1, Verdict::Normal),
            Stopped(1),
            Finish(Why::Completed)
        ]
    );
}

#[test]
fn a_supervisor_without_children_completes_at_once() {
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![]));
    assert_eq!(sim.feed(Input::Start), [AllRunning, Finish(Why::Completed)]);
}

#[test]
fn more_than_intensity_restarts_within_the_period_give_up() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(2)));
    sim.start_all();
    for n in 1..=3 {
        let actions = sim.after(S, Input::Ended(1, End::Failure));
        assert_eq!(
            actions,
            [Judged(1, Verdict::Abnormal), restarting(1, n), Start(1)]
        );
        sim.feed(Input::Ready(1));
    }
    // Four restarts within 4 s: more than 3 in 5 s.
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), GaveUp(1), Stopped(1), Stop(0)]
    );
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::GaveUp(1))
        ]
    );
}

#[test]
fn restarts_older_than_the_period_leave_the_window() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(1)));
    sim.start_all();
    // One failure every 2 s: at most three within any 5 s.
    for _ in 0..10 {
        let actions = sim.after(2 * S, Input::Ended(0, End::Failure));
        assert!(!actions.contains(&GaveUp(0)), "{actions:?}");
        sim.feed(Input::Ready(0));
    }
}

#[test]
fn the_window_boundary_is_inclusive() {
    let mut p = params(Strategy::OneForOne, permanent(1));
    p.intensity = 1;
    let mut sim = Sim::new(p.clone());
    sim.start_all();
    sim.after(S, Input::Ended(0, End::Failure));
    sim.feed(Input::Ready(0));
    // Exactly `period` later: both are within the window.
    assert!(
        sim.after(5 * S, Input::Ended(0, End::Failure))
            .contains(&GaveUp(0))
    );
    let mut sim = Sim::new(p);
    sim.start_all();
    sim.after(S, Input::Ended(0, End::Failure));
    sim.feed(Input::Ready(0));
    assert!(
        !sim.after(5 * S + MS, Input::Ended(0, End::Failure))
            .contains(&GaveUp(0))
    );
}

#[test]
fn intensity_zero_gives_up_at_the_first_restart() {
    let mut p = params(Strategy::OneForOne, permanent(1));
    p.intensity = 0;
    let mut sim = Sim::new(p);
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [
            Judged(0, Verdict::Abnormal),
            GaveUp(0),
            Stopped(0),
            Finish(Why::GaveUp(0))
        ]
    );
}

/// Runs a child that fails `uptime` after each start, waiting out every
/// restart delay, until the supervisor gives up or `limit` crashes passed.
/// Returns the number of crashes and the wall time.
fn crash_loop(backoff: Backoff, uptime: Duration, limit: usize) -> (usize, Duration) {
    let mut c = child(Restart::Permanent);
    c.backoff = backoff;
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![c]));
    let t0 = sim.now;
    sim.start_all();
    for crash in 1..=limit {
        let actions = sim.after(uptime, Input::Ended(0, End::Failure));
        if actions.contains(&GaveUp(0)) {
            return (crash, sim.now - t0);
        }
        let delay = Sim::delay_of(&actions, 0);
        assert_eq!(sim.m.next_deadline(), Some(sim.now + delay));
        assert_eq!(sim.after(delay, Input::Tick), [Start(0)]);
        sim.feed(Input::Ready(0));
    }
    (limit + 1, sim.now - t0)
}

#[test]
fn the_documented_worked_example_gives_up_at_the_fourth_crash() {
    let (crashes, wall) = crash_loop(Backoff::default(), S, 50);
    assert_eq!(crashes, 4);
    // 4 s of runs plus ~0.7 s of delays (jitter ±10 %).
    assert!(wall > 4630 * MS && wall < 4770 * MS, "{wall:?}");
}

#[test]
fn backoff_longer_than_the_period_still_trips_the_limit() {
    // systemd's trap: delays of 10 s, 20 s, 40 s against a 5 s window.
    let slow = Backoff {
        initial: 10 * S,
        max: 60 * S,
        reset_after: 10 * S,
    };
    let (crashes, wall) = crash_loop(slow, S, 50);
    assert_eq!(crashes, 4);
    assert!(wall > 60 * S, "{wall:?}");
    // With the cap below the period too.
    let capped = Backoff {
        initial: 100 * MS,
        max: 30 * S,
        reset_after: 10 * S,
    };
    assert_eq!(crash_loop(capped, 1500 * MS, 50).0, 4);
}

#[test]
fn a_child_failing_slower_than_the_window_allows_is_restarted_forever() {
    // Three 2 s runs span 6 s > 5 s: never more than three in the window.
    assert_eq!(crash_loop(Backoff::default(), 2 * S, 30).0, 31);
}

#[test]
fn a_siblings_long_backoff_does_not_make_other_restarts_count_longer() {
    let mut slow = child(Restart::Permanent);
    slow.backoff = Backoff {
        initial: 60 * S,
        max: 60 * S,
        reset_after: 10 * S,
    };
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![slow, child(Restart::Permanent)],
    ));
    sim.start_all();
    // Child 0 fails once and waits 60 s (±10 %).
    sim.after(S, Input::Ended(0, End::Failure));
    // Child 1 fails every 3 s meanwhile: at most two in any 5 s, and child
    // 0's single restart ages normally (its clock runs only while it runs,
    // but it is not running, so its entry stays: 1 + 2 = 3, not more).
    for _ in 0..15 {
        let actions = sim.after(3 * S, Input::Ended(1, End::Failure));
        assert!(
            !actions.iter().any(|a| matches!(a, GaveUp(_))),
            "{actions:?}"
        );
        sim.feed(Input::Ready(1));
    }
}

#[test]
fn backoff_doubles_within_a_streak_with_bounded_jitter() {
    let mut c = child(Restart::Permanent);
    c.backoff = Backoff::default();
    let mut p = params(Strategy::OneForOne, vec![c]);
    p.intensity = 100;
    let mut sim = Sim::new(p);
    sim.start_all();
    let mut delays = Vec::new();
    for n in 1..=12u32 {
        let actions = sim.after(S, Input::Ended(0, End::Failure));
        let delay = Sim::delay_of(&actions, 0);
        assert!(actions.contains(&Restarting {
            child: 0,
            delay,
            restart_count: n
        }));
        delays.push(delay);
        sim.after(delay, Input::Tick);
        sim.feed(Input::Ready(0));
    }
    for (n, delay) in delays.iter().enumerate() {
        let base = (100 * MS * (1 << n)).min(30 * S);
        assert!(
            *delay >= base.mul_f64(0.9) && *delay <= base.mul_f64(1.1),
            "restart {}: {delay:?} vs {base:?}",
            n + 1
        );
    }
    // Jitter moves the delays: not all exactly on the base.
    assert!(
        delays
            .iter()
            .enumerate()
            .any(|(n, d)| *d != (100 * MS * (1 << n)).min(30 * S))
    );
}

#[test]
fn staying_up_for_reset_after_starts_a_new_streak() {
    let mut c = child(Restart::Permanent);
    c.backoff = Backoff {
        initial: S,
        max: 100 * S,
        reset_after: 10 * S,
    };
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![c]));
    sim.start_all();
    let restart = |sim: &mut Sim, uptime: Duration, count: u32| {
        let actions = sim.after(uptime, Input::Ended(0, End::Failure));
        let delay = Sim::delay_of(&actions, 0);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Restarting { restart_count, .. } if *restart_count == count)),
            "{actions:?}"
        );
        sim.after(delay, Input::Tick);
        sim.feed(Input::Ready(0));
        delay
    };
    restart(&mut sim, 20 * S, 1);
    restart(&mut sim, 20 * S, 1);
    let d2 = { restart(&mut sim, 9 * S, 2) };
    assert!(d2 >= 1800 * MS && d2 <= 2200 * MS, "{d2:?}");
    // Exactly reset_after is long enough.
    let d = restart(&mut sim, 10 * S, 1);
    assert!(d <= 1100 * MS, "{d:?}");
}

#[test]
fn a_restart_waits_for_its_delay_and_the_deadline_says_when() {
    let mut c = child(Restart::Permanent);
    c.backoff = Backoff {
        initial: 2 * S,
        max: 2 * S,
        reset_after: 10 * S,
    };
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![c]));
    sim.start_all();
    let actions = sim.after(S, Input::Ended(0, End::Failure));
    let delay = Sim::delay_of(&actions, 0);
    assert!(!actions.contains(&Start(0)));
    assert_eq!(sim.m.next_deadline(), Some(sim.now + delay));
    assert_eq!(sim.after(delay - MS, Input::Tick), []);
    assert_eq!(sim.after(MS, Input::Tick), [Start(0)]);
    assert_eq!(sim.m.next_deadline(), None);
}

#[test]
fn a_start_timeout_stops_the_child_and_counts_as_its_abnormal_end() {
    let mut c = child(Restart::Transient);
    c.start_timeout = Some(10 * S);
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![c, child(Restart::Permanent)],
    ));
    assert_eq!(sim.feed(Input::Start), [Start(0)]);
    assert_eq!(sim.m.next_deadline(), Some(sim.now + 10 * S));
    assert_eq!(sim.after(10 * S - MS, Input::Tick), []);
    assert_eq!(sim.after(MS, Input::Tick), [StartTimedOut(0), Stop(0)]);
    assert_eq!(sim.m.next_deadline(), None);
    // A late readiness changes nothing.
    assert_eq!(sim.feed(Input::Ready(0)), []);
    // Stopped on our request with exit 0, it is still abnormal: restarted,
    // and the child after it still waits.
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1), Start(0)]
    );
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
}

#[test]
fn a_failure_during_the_initial_start_keeps_the_start_order() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    let mut c = params(Strategy::OneForOne, permanent(3));
    c.children[0].backoff = Backoff {
        initial: S,
        max: S,
        reset_after: S,
    };
    sim.m = Machine::new(c, 3);
    assert_eq!(sim.feed(Input::Start), [Start(0)]);
    let actions = sim.after(MS, Input::Ended(0, End::Failure));
    let delay = Sim::delay_of(&actions, 0);
    // Child 1 does not start while child 0 waits to be restarted.
    assert_eq!(sim.after(delay, Input::Tick), [Start(0)]);
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
}

#[test]
fn a_child_ending_normally_before_ready_lets_the_next_start() {
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![child(Restart::Transient), child(Restart::Permanent)],
    ));
    sim.feed(Input::Start);
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [Judged(0, Verdict::Normal), Stopped(0), Start(1)]
    );
}

#[test]
fn any_significant_ends_the_supervisor_when_one_ends_for_good() {
    let mut sig = child(Restart::Temporary);
    sig.significant = true;
    let mut p = params(
        Strategy::OneForOne,
        vec![child(Restart::Permanent), sig, child(Restart::Permanent)],
    );
    p.auto_shutdown = AutoShutdown::AnySignificant;
    let mut sim = Sim::new(p);
    sim.start_all();
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Normal), Stopped(1), Stop(2)]
    );
    sim.feed(Input::Ended(2, End::Success));
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::AutoShutdown(1))
        ]
    );
}

#[test]
fn a_significant_transient_child_that_is_restarted_has_not_ended() {
    let mut sig = child(Restart::Transient);
    sig.significant = true;
    let mut p = params(Strategy::OneForOne, vec![child(Restart::Permanent), sig]);
    p.auto_shutdown = AutoShutdown::AnySignificant;
    let mut sim = Sim::new(p);
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1), Start(1)]
    );
    sim.feed(Input::Ready(1));
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Normal), Stopped(1), Stop(0)]
    );
}

#[test]
fn all_significant_waits_for_the_last_significant_child() {
    let mut sig = child(Restart::Temporary);
    sig.significant = true;
    let mut p = params(
        Strategy::OneForOne,
        vec![sig.clone(), child(Restart::Permanent), sig],
    );
    p.auto_shutdown = AutoShutdown::AllSignificant;
    let mut sim = Sim::new(p);
    sim.start_all();
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [Judged(0, Verdict::Normal), Stopped(0)]
    );
    assert_eq!(
        sim.feed(Input::Ended(2, End::Failure)),
        [Judged(2, Verdict::Abnormal), Stopped(2), Stop(1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [
            Judged(1, Verdict::Requested),
            Stopped(1),
            Finish(Why::AutoShutdown(2))
        ]
    );
}

#[test]
fn never_ignores_significant_ends_and_non_significant_ends_trigger_nothing() {
    let mut sig = child(Restart::Temporary);
    sig.significant = true;
    let mut p = params(
        Strategy::OneForOne,
        vec![sig, child(Restart::Temporary), child(Restart::Permanent)],
    );
    p.auto_shutdown = AutoShutdown::Never;
    let mut sim = Sim::new(p.clone());
    sim.start_all();
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [Judged(0, Verdict::Normal), Stopped(0)]
    );
    p.auto_shutdown = AutoShutdown::AnySignificant;
    let mut sim = Sim::new(p);
    sim.start_all();
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Normal), Stopped(1)]
    );
}

#[test]
fn a_significant_child_stopped_through_the_handle_does_not_trigger() {
    let mut sig = child(Restart::Temporary);
    sig.significant = true;
    let mut p = params(Strategy::OneForOne, vec![child(Restart::Permanent), sig]);
    p.auto_shutdown = AutoShutdown::AnySignificant;
    let mut sim = Sim::new(p);
    sim.start_all();
    assert_eq!(sim.feed(Input::StopChild(1)), [Stop(1)]);
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), Stopped(1)]
    );
}

#[test]
fn stop_child_keeps_it_down_and_start_child_brings_it_back() {
    let mut sim = Sim::new(params(Strategy::OneForAll, permanent(2)));
    sim.start_all();
    assert_eq!(sim.feed(Input::StopChild(0)), [Stop(0)]);
    // No strategy action, no restart, and the held child keeps the
    // supervisor from completing.
    assert_eq!(
        sim.feed(Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Requested), Stopped(0)]
    );
    assert!(!sim.m.is_finished());
    assert_eq!(sim.feed(Input::StartChild(0)), [Start(0)]);
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), AllRunning]);
    // Starting a running child does nothing.
    assert_eq!(sim.feed(Input::StartChild(0)), []);
}

#[test]
fn stop_child_cancels_a_pending_restart() {
    let mut c = child(Restart::Permanent);
    c.backoff = Backoff::default();
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![c, child(Restart::Permanent)],
    ));
    sim.start_all();
    sim.after(S, Input::Ended(0, End::Failure));
    assert_eq!(sim.feed(Input::StopChild(0)), [Stopped(0), AllRunning]);
    assert_eq!(sim.after(10 * S, Input::Tick), []);
    assert_eq!(sim.m.next_deadline(), None);
    // start_child skips what is left of a delay.
    let mut c = child(Restart::Permanent);
    c.backoff = Backoff::default();
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![c]));
    sim.start_all();
    sim.after(S, Input::Ended(0, End::Failure));
    assert_eq!(sim.feed(Input::StartChild(0)), [Start(0)]);
}

#[test]
fn restart_child_cycles_it_without_counting() {
    let mut p = params(Strategy::OneForAll, permanent(2));
    p.intensity = 0;
    let mut sim = Sim::new(p);
    sim.start_all();
    for _ in 0..5 {
        assert_eq!(sim.feed(Input::RestartChild(1)), [Stop(1)]);
        assert_eq!(
            sim.feed(Input::Ended(1, End::Failure)),
            [Judged(1, Verdict::Requested), restarting(1, 0), Start(1)]
        );
        assert_eq!(sim.feed(Input::Ready(1)), [Running(1), AllRunning]);
    }
    // A down child is simply started.
    sim.feed(Input::StopChild(0));
    sim.feed(Input::Ended(0, End::Success));
    assert_eq!(sim.feed(Input::RestartChild(0)), [Start(0)]);
}

#[test]
fn start_or_restart_while_stopping_brings_it_back_after_the_stop() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(1)));
    sim.start_all();
    sim.feed(Input::StopChild(0));
    assert_eq!(sim.feed(Input::StartChild(0)), []);
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [Judged(0, Verdict::Requested), restarting(0, 0), Start(0)]
    );
}

#[test]
fn kill_kills_every_child_at_once_and_ends() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    sim.feed(Input::Start);
    sim.feed(Input::Ready(0));
    sim.feed(Input::Ready(1));
    assert_eq!(sim.feed(Input::Stop), [Stop(2)]);
    // A kill during the orderly stop hurries it: the tree ends killed
    // (an acceptance run caught `Stopped`, against `Tree::kill`'s docs).
    assert_eq!(sim.feed(Input::Kill), [Kill(0), Kill(1), Kill(2)]);
    sim.feed(Input::Ended(1, End::Failure));
    sim.feed(Input::Ended(2, End::Failure));
    assert_eq!(
        sim.feed(Input::Ended(0, End::Failure)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::Killed)
        ]
    );
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(2)));
    sim.start_all();
    assert_eq!(sim.feed(Input::Kill), [Kill(0), Kill(1)]);
    sim.feed(Input::Ended(0, End::Failure));
    assert_eq!(
        sim.feed(Input::Ended(1, End::Failure)),
        [
            Judged(1, Verdict::Requested),
            Stopped(1),
            Finish(Why::Killed)
        ]
    );
}

#[test]
fn a_kill_while_giving_up_keeps_the_give_up_as_the_outcome() {
    let mut sim = Sim::new(Params {
        intensity: 0,
        ..params(Strategy::OneForOne, permanent(2))
    });
    sim.start_all();
    assert_eq!(
        sim.feed(Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), GaveUp(1), Stopped(1), Stop(0)]
    );
    assert_eq!(sim.feed(Input::Kill), [Kill(0)]);
    assert_eq!(
        sim.feed(Input::Ended(0, End::Failure)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::GaveUp(1))
        ]
    );
}

#[test]
fn a_stop_cancels_pending_restarts_and_says_so() {
    let mut c = child(Restart::Permanent);
    c.backoff = Backoff::default();
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![child(Restart::Permanent), c],
    ));
    sim.start_all();
    sim.after(S, Input::Ended(1, End::Failure));
    assert_eq!(sim.feed(Input::Stop), [Stopped(1), Stop(0)]);
    assert_eq!(sim.m.next_deadline(), None);
    assert_eq!(
        sim.feed(Input::Ended(0, End::Success)),
        [
            Judged(0, Verdict::Requested),
            Stopped(0),
            Finish(Why::Stopped)
        ]
    );
    // Requests after the stop began change nothing.
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(2)));
    sim.start_all();
    sim.feed(Input::Stop);
    assert_eq!(sim.feed(Input::StartChild(1)), []);
    assert_eq!(sim.feed(Input::RestartChild(0)), []);
    assert_eq!(sim.feed(Input::StopChild(0)), []);
    assert_eq!(sim.feed(Input::Stop), []);
}

#[test]
fn stale_reports_are_ignored() {
    let mut sim = Sim::new(params(Strategy::OneForOne, vec![child(Restart::Temporary)]));
    sim.feed(Input::Start);
    sim.feed(Input::Ready(0));
    sim.feed(Input::StopChild(0));
    sim.feed(Input::Ended(0, End::Success));
    assert_eq!(sim.feed(Input::Ended(0, End::Failure)), []);
    assert_eq!(sim.feed(Input::Ready(0)), []);
}

#[test]
fn restarts_wait_while_a_stop_is_under_way() {
    let mut sim = Sim::new(params(Strategy::OneForOne, permanent(3)));
    sim.start_all();
    assert_eq!(sim.feed(Input::StopChild(2)), [Stop(2)]);
    // Child 0 fails while child 2 is stopping: its restart waits.
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(2, End::Success)),
        [Judged(2, Verdict::Requested), Stopped(2), Start(0)]
    );
}

#[test]
fn one_for_all_failure_while_a_sibling_is_still_starting_restarts_it_too() {
    let mut sim = Sim::new(params(Strategy::OneForAll, permanent(2)));
    sim.feed(Input::Start);
    sim.feed(Input::Ready(0));
    // Child 1 is starting when child 0 fails.
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1), Stop(1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Requested), restarting(1, 1), Start(0)]
    );
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
}

#[test]
fn a_one_for_all_failure_during_a_pending_restart_keeps_the_later_delay() {
    let mut a = child(Restart::Permanent);
    a.backoff = Backoff {
        initial: 5 * S,
        max: 5 * S,
        reset_after: 10 * S,
    };
    let mut b = child(Restart::Permanent);
    b.backoff = Backoff {
        initial: S,
        max: S,
        reset_after: 10 * S,
    };
    let mut sim = Sim::new(params(Strategy::OneForAll, vec![a, b]));
    sim.start_all();
    let first = sim.after(S, Input::Ended(0, End::Failure));
    let d0 = Sim::delay_of(&first, 0);
    sim.feed(Input::Ended(1, End::Success));
    // Nothing starts before child 0's delay, whatever child 1's says.
    assert_eq!(sim.after(d0 - MS, Input::Tick), []);
    assert_eq!(sim.after(MS, Input::Tick), [Start(0)]);
}

#[test]
fn a_timed_out_start_waiting_for_its_stop_sets_no_deadline() {
    let mut c = child(Restart::Permanent);
    c.start_timeout = Some(10 * S);
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![c, child(Restart::Permanent)],
    ));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1), Start(0)]
    );
    // Child 1's stop is under way when child 0's start times out: child 0
    // must wait its turn, and there is nothing to wake up for meanwhile.
    assert_eq!(sim.feed(Input::StopChild(1)), [Stop(1)]);
    assert_eq!(sim.after(10 * S, Input::Tick), [StartTimedOut(0)]);
    assert_eq!(sim.m.next_deadline(), None);
    // Ready after all, too late: it stays failed.
    assert_eq!(sim.feed(Input::Ready(0)), []);
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), Stopped(1), Stop(0)]
    );
}

#[test]
fn a_stopping_supervisor_sets_no_deadline_for_a_child_still_starting() {
    let mut c = child(Restart::Permanent);
    c.start_timeout = Some(10 * S);
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![child(Restart::Permanent), c, child(Restart::Permanent)],
    ));
    sim.start_all();
    sim.after(S, Input::Ended(1, End::Failure));
    // Child 1 is starting again (deadline: its start timeout) ...
    assert_eq!(sim.m.next_deadline(), Some(sim.now + 10 * S));
    // ... when the stop begins with child 2: no timeout applies any more.
    assert_eq!(sim.feed(Input::Stop), [Stop(2)]);
    assert_eq!(sim.m.next_deadline(), None);
    assert_eq!(sim.after(20 * S, Input::Tick), []);
}

#[test]
fn a_cycled_sibling_that_ends_by_itself_first_leaves_no_deadline() {
    let mut slow = child(Restart::Permanent);
    slow.backoff = Backoff {
        initial: 5 * S,
        max: 5 * S,
        reset_after: 10 * S,
    };
    let mut sim = Sim::new(params(
        Strategy::OneForAll,
        vec![slow, child(Restart::Transient), child(Restart::Permanent)],
    ));
    sim.start_all();
    // Child 0 fails: 2 then 1 are to be stopped, then all restart in 5 s.
    let actions = sim.after(S, Input::Ended(0, End::Failure));
    assert!(actions.ends_with(&[Stop(2)]), "{actions:?}");
    // Child 1 ends normally by itself while child 2's stop is under way
    // (transient: it stays down).
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Normal), Stopped(1)]
    );
    let actions = sim.feed(Input::Ended(2, End::Success));
    assert!(
        matches!(
            actions[..],
            [Judged(2, Verdict::Requested), Restarting { child: 2, .. }]
        ),
        "{actions:?}"
    );
    // Keep the others down too: nothing is left to wake up for.
    assert_eq!(sim.feed(Input::StopChild(0)), [Stopped(0)]);
    assert_eq!(sim.feed(Input::StopChild(2)), [Stopped(2), AllRunning]);
    assert_eq!(sim.m.next_deadline(), None);
}

#[test]
fn one_for_one_restarts_do_not_wait_for_a_sibling_in_backoff() {
    let mut slow = child(Restart::Permanent);
    slow.backoff = Backoff {
        initial: 30 * S,
        max: 30 * S,
        reset_after: 10 * S,
    };
    let mut sim = Sim::new(params(
        Strategy::OneForOne,
        vec![slow, child(Restart::Permanent)],
    ));
    sim.start_all();
    let actions = sim.after(S, Input::Ended(0, End::Failure));
    assert!(!actions.contains(&Start(0)));
    // Child 1 is restarted at once: it is not part of child 0's restart.
    assert_eq!(
        sim.after(S, Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1), Start(1)]
    );
}

#[test]
fn a_sibling_already_stopping_joins_the_new_restart_in_order() {
    let mut sim = Sim::new(params(Strategy::OneForAll, permanent(3)));
    sim.start_all();
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1), Stop(2)]
    );
    // Child 1 fails too while child 2 is being stopped.
    assert_eq!(
        sim.feed(Input::Ended(1, End::Failure)),
        [Judged(1, Verdict::Abnormal), restarting(1, 1)]
    );
    // Child 2 comes back after 0 and 1, in order.
    assert_eq!(
        sim.feed(Input::Ended(2, End::Success)),
        [Judged(2, Verdict::Requested), restarting(2, 1), Start(0)]
    );
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
    assert_eq!(sim.feed(Input::Ready(1)), [Running(1), Start(2)]);
}

#[test]
fn a_sibling_being_stopped_through_the_handle_stays_down_when_another_fails() {
    let mut sim = Sim::new(params(Strategy::OneForAll, permanent(3)));
    sim.start_all();
    assert_eq!(sim.feed(Input::StopChild(2)), [Stop(2)]);
    assert_eq!(
        sim.after(S, Input::Ended(0, End::Failure)),
        [Judged(0, Verdict::Abnormal), restarting(0, 1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(2, End::Success)),
        [Judged(2, Verdict::Requested), Stopped(2), Stop(1)]
    );
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), restarting(1, 1), Start(0)]
    );
    assert_eq!(sim.feed(Input::Ready(0)), [Running(0), Start(1)]);
    assert_eq!(sim.feed(Input::Ready(1)), [Running(1), AllRunning]);
}

#[test]
fn a_temporary_child_with_a_queued_restart_is_not_restarted_by_the_strategy() {
    let mut sim = Sim::new(params(
        Strategy::OneForAll,
        vec![
            child(Restart::Permanent),
            child(Restart::Temporary),
            child(Restart::Permanent),
        ],
    ));
    sim.start_all();
    // A stop of child 2 is under way, so the handle's restart of child 1
    // waits in line ...
    assert_eq!(sim.feed(Input::StopChild(2)), [Stop(2)]);
    assert_eq!(sim.feed(Input::RestartChild(1)), []);
    // ... when child 0 fails: the temporary child 1 is stopped for good.
    sim.after(S, Input::Ended(0, End::Failure));
    sim.feed(Input::Ended(2, End::Success));
    assert_eq!(
        sim.feed(Input::Ended(1, End::Success)),
        [Judged(1, Verdict::Requested), Stopped(1), Start(0)]
    );
}
