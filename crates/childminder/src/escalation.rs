//! The escalation as a pure state machine: natural exit → TERM → grace →
//! KILL → 1 s → fallback.
//!
//! It knows nothing of processes, signals or clocks: the driver feeds it
//! events stamped with the current instant and carries out the steps it
//! returns. That keeps every timing rule unit-testable without a child or a
//! sleep. The same machine drives the sweep of a process group whose leader
//! has already exited (see `Escalation::begin_at_term`).

use std::time::{Duration, Instant};

use crate::result::{EscalationCause, Termination};

/// What an escalation did, as a result reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Report {
    pub termination: Termination,
    pub cause: Option<EscalationCause>,
    /// From the spawn.
    pub term_sent_after: Option<Duration>,
    /// From the spawn.
    pub kill_sent_after: Option<Duration>,
}

/// How long to wait after SIGKILL before the last non-blocking check (the
/// seed's fixed 1 s).
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(1);

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Close the child's stdin so a filter can exit by itself.
    CloseStdin,
    /// Send the first signal (SIGTERM unless configured otherwise); report
    /// the outcome with [`Escalation::record_term`].
    SendTerm,
    /// Send SIGKILL; report the outcome with [`Escalation::record_kill`].
    SendKill,
    /// Give up waiting: make the last non-blocking status check and publish.
    Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing asked the child to end yet.
    Running,
    /// Stdin is closed; waiting up to the grace period for a natural exit.
    AwaitNatural { until: Instant },
    /// TERM sent; waiting up to the grace period.
    AwaitAfterTerm { until: Instant },
    /// KILL sent; waiting up to [`KILL_WAIT`].
    AwaitAfterKill { until: Instant },
    /// The exit was observed, or the fallback was reached.
    Done,
}

/// One escalation: its phase and what it has sent so far.
#[derive(Debug, Clone)]
pub(crate) struct Escalation {
    grace: Duration,
    phase: Phase,
    cause: Option<EscalationCause>,
    term_sent_at: Option<Instant>,
    kill_sent_at: Option<Instant>,
    /// The signal step was taken with no signal to send (`timeout -s 0`):
    /// one asked for later is still sent, once.
    term_withheld: bool,
}

impl Escalation {
    pub(crate) fn new(grace: Duration) -> Escalation {
        Escalation {
            grace,
            phase: Phase::Running,
            cause: None,
            term_sent_at: None,
            kill_sent_at: None,
            term_withheld: false,
        }
    }

    /// Something asks the child to end. Teardown and shutdown close stdin
    /// and give the child a grace period to exit by itself; the deadline
    /// sends the first signal at once (it stood in for that first wait). A
    /// deadline arriving during the natural-exit wait cuts it short; a
    /// request for a signal after a signal step that sent none (the
    /// deadline's, with no first signal configured) has it sent then,
    /// within the grace period already running, as GNU `timeout -s 0`
    /// passes a TERM on; any other request once escalating changes nothing.
    pub(crate) fn begin(&mut self, now: Instant, cause: EscalationCause) -> Vec<Step> {
        match (self.phase, cause) {
            (Phase::AwaitAfterTerm { .. }, EscalationCause::Requested) if self.term_withheld => {
                self.term_withheld = false;
                vec![Step::SendTerm]
            }
            (Phase::Running, EscalationCause::Teardown | EscalationCause::Shutdown) => {
                self.cause = Some(cause);
                self.phase = Phase::AwaitNatural {
                    until: now + self.grace,
                };
                vec![Step::CloseStdin]
            }
            (
                Phase::Running | Phase::AwaitNatural { .. },
                EscalationCause::Deadline | EscalationCause::Requested,
            ) => {
                self.cause = Some(cause);
                self.send_term(now)
            }
            _ => Vec::new(),
        }
    }

    /// Jumps to SIGKILL now, from any phase before it (`kill` on a handle).
    pub(crate) fn kill_now(&mut self, now: Instant) -> Vec<Step> {
        match self.phase {
            Phase::Running | Phase::AwaitNatural { .. } | Phase::AwaitAfterTerm { .. } => {
                self.cause.get_or_insert(EscalationCause::Requested);
                self.phase = Phase::AwaitAfterKill {
                    until: now + KILL_WAIT,
                };
                vec![Step::SendKill]
            }
            Phase::AwaitAfterKill { .. } | Phase::Done => Vec::new(),
        }
    }

    /// Starts directly at the first signal: used for the group sweep, where
    /// the leader is gone and there is no natural exit to wait for.
    pub(crate) fn begin_at_term(&mut self, now: Instant) -> Vec<Step> {
        match self.phase {
            Phase::Running => self.send_term(now),
            _ => Vec::new(),
        }
    }

    fn send_term(&mut self, now: Instant) -> Vec<Step> {
        self.phase = Phase::AwaitAfterTerm {
            until: now + self.grace,
        };
        vec![Step::SendTerm]
    }

    /// The exit was observed: nothing more to do.
    pub(crate) fn exited(&mut self) {
        self.phase = Phase::Done;
    }

    /// Time passed; `now` is at or after [`deadline`](Self::deadline).
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Step> {
        match self.phase {
            Phase::AwaitNatural { until } if now >= until => self.send_term(now),
            Phase::AwaitAfterTerm { until } if now >= until => {
                self.phase = Phase::AwaitAfterKill {
                    until: now + KILL_WAIT,
                };
                vec![Step::SendKill]
            }
            Phase::AwaitAfterKill { until } if now >= until => {
                self.phase = Phase::Done;
                vec![Step::Fallback]
            }
            _ => Vec::new(),
        }
    }

    /// When the driver must call [`tick`](Self::tick) next, if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitNatural { until }
            | Phase::AwaitAfterTerm { until }
            | Phase::AwaitAfterKill { until } => Some(until),
            Phase::Running | Phase::Done => None,
        }
    }

    /// The first signal was sent successfully at `at`. (As in the seed, a
    /// failed send does not count as sent.)
    pub(crate) fn record_term(&mut self, at: Instant) {
        self.term_sent_at.get_or_insert(at);
    }

    /// The signal step was taken at `at` with no signal to send: recorded
    /// as taken, and a signal asked for later is still sent.
    pub(crate) fn record_term_withheld(&mut self, at: Instant) {
        self.term_withheld = self.term_sent_at.is_none();
        self.record_term(at);
    }

    /// SIGKILL was sent successfully at `at`.
    pub(crate) fn record_kill(&mut self, at: Instant) {
        self.kill_sent_at.get_or_insert(at);
    }

    /// What it did, with the times counted from `started` (the spawn), for
    /// a child whose exit was seen (`exited`) or not.
    pub(crate) fn report(&self, started: Instant, exited: bool) -> Report {
        let since_start = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(started));
        Report {
            termination: Termination::classify(
                self.term_sent_at.is_some(),
                self.kill_sent_at.is_some(),
                exited,
            ),
            cause: self.cause,
            term_sent_after: since_start(self.term_sent_at),
            kill_sent_after: since_start(self.kill_sent_at),
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub(crate) fn cause(&self) -> Option<EscalationCause> {
        self.cause
    }

    #[cfg(test)]
    pub(crate) fn term_sent_at(&self) -> Option<Instant> {
        self.term_sent_at
    }

    pub(crate) fn kill_sent_at(&self) -> Option<Instant> {
        self.kill_sent_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EscalationCause::*;

    const GRACE: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// More deadlines than any escalation has: a machine that keeps asking
    /// for ticks past this never ends, and fails the test instead of
    /// hanging the suite.
    const MAX_TICKS: usize = 64;

    /// Drives a machine the way the coordinator does, with the child never
    /// exiting, and returns each step with the offset it happened at.
    fn run_to_end(mut esc: Escalation, t0: Instant, first: Vec<Step>) -> Vec<(Duration, Step)> {
        let mut log: Vec<_> = first.into_iter().map(|s| (Duration::ZERO, s)).collect();
        for _ in 0..MAX_TICKS {
            let Some(at) = esc.deadline() else {
                assert!(esc.is_done());
                return log;
            };
            for step in esc.tick(at) {
                log.push((at - t0, step));
            }
        }
        panic!("the escalation did not end after {MAX_TICKS} ticks: {log:?}");
    }

    #[test]
    fn teardown_closes_stdin_then_term_after_grace_then_kill_then_fallback() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        let first = esc.begin(t0, Teardown);
        let log = run_to_end(esc, t0, first);
        assert_eq!(
            log,
            vec![
                (ms(0), Step::CloseStdin),
                (ms(500), Step::SendTerm),
                (ms(1000), Step::SendKill),
                (ms(2000), Step::Fallback),
            ]
        );
    }

    #[test]
    fn deadline_sends_term_at_once() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        let first = esc.begin(t0, Deadline);
        assert_eq!(esc.cause(), Some(Deadline));
        let log = run_to_end(esc, t0, first);
        assert_eq!(
            log,
            vec![
                (ms(0), Step::SendTerm),
                (ms(500), Step::SendKill),
                (ms(1500), Step::Fallback),
            ]
        );
    }

    #[test]
    fn deadline_during_natural_wait_cuts_it_short() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        assert_eq!(esc.begin(t0, Shutdown), vec![Step::CloseStdin]);
        assert_eq!(esc.tick(t0 + ms(100)), vec![]);
        assert_eq!(esc.begin(t0 + ms(200), Deadline), vec![Step::SendTerm]);
        assert_eq!(esc.deadline(), Some(t0 + ms(700)));
    }

    #[test]
    fn a_second_request_changes_nothing() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        esc.begin(t0, Shutdown);
        assert_eq!(esc.begin(t0 + ms(10), Teardown), vec![]);
        assert_eq!(esc.cause(), Some(Shutdown));
        esc.begin(t0, Deadline);
        assert_eq!(esc.begin(t0 + ms(10), Deadline), vec![]);
        assert_eq!(esc.begin(t0 + ms(10), Teardown), vec![]);
    }

    /// Found in acceptance: `run -t 1 -s 0`, then a TERM to childminder,
    /// sent nothing until the KILL a grace period later (GNU `timeout`
    /// passes it on).
    #[test]
    fn a_signal_asked_for_after_a_step_that_sent_none_is_sent_once_within_the_grace() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        assert_eq!(esc.begin(t0, Deadline), vec![Step::SendTerm]);
        esc.record_term_withheld(t0);
        let kill_due = esc.deadline();
        assert_eq!(esc.begin(t0 + ms(10), Requested), vec![Step::SendTerm]);
        assert_eq!(esc.deadline(), kill_due, "the grace period runs on");
        assert_eq!(esc.term_sent_at(), Some(t0), "the step's time stands");
        assert_eq!(esc.cause(), Some(Deadline));
        assert_eq!(esc.begin(t0 + ms(20), Requested), vec![], "once");
        // A step that sent its signal: a request changes nothing.
        let mut sent = Escalation::new(GRACE);
        sent.begin(t0, Deadline);
        sent.record_term(t0);
        assert_eq!(sent.begin(t0 + ms(10), Requested), vec![]);
        // Nor after KILL.
        let mut killed = Escalation::new(GRACE);
        killed.begin(t0, Deadline);
        killed.record_term_withheld(t0);
        assert_eq!(killed.tick(t0 + GRACE), vec![Step::SendKill]);
        assert_eq!(killed.begin(t0 + GRACE + ms(1), Requested), vec![]);
    }

    #[test]
    fn requested_terminate_is_like_the_deadline_and_kill_jumps_ahead() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        assert_eq!(esc.begin(t0, Requested), vec![Step::SendTerm]);
        assert_eq!(esc.cause(), Some(Requested));
        assert_eq!(esc.kill_now(t0 + ms(10)), vec![Step::SendKill]);
        assert_eq!(esc.deadline(), Some(t0 + ms(10) + KILL_WAIT));
        assert_eq!(esc.kill_now(t0 + ms(20)), vec![]);
        let mut fresh = Escalation::new(GRACE);
        assert_eq!(fresh.kill_now(t0), vec![Step::SendKill]);
        assert_eq!(fresh.cause(), Some(Requested));
    }

    #[test]
    fn early_ticks_do_nothing() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        assert_eq!(esc.tick(t0 + ms(10_000)), vec![]);
        esc.begin(t0, Teardown);
        assert_eq!(esc.tick(t0 + ms(499)), vec![]);
        assert_eq!(esc.tick(t0 + ms(500)), vec![Step::SendTerm]);
    }

    #[test]
    fn exit_ends_it_at_any_phase() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        esc.begin(t0, Teardown);
        esc.tick(t0 + GRACE);
        esc.exited();
        assert!(esc.is_done());
        assert_eq!(esc.deadline(), None);
        assert_eq!(esc.tick(t0 + ms(100_000)), vec![]);
        assert_eq!(esc.begin(t0, Deadline), vec![]);
    }

    #[test]
    fn zero_grace_escalates_without_waiting() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(Duration::ZERO);
        let first = esc.begin(t0, Teardown);
        let log = run_to_end(esc, t0, first);
        assert_eq!(
            log,
            vec![
                (ms(0), Step::CloseStdin),
                (ms(0), Step::SendTerm),
                (ms(0), Step::SendKill),
                (KILL_WAIT, Step::Fallback),
            ]
        );
    }

    #[test]
    fn group_sweep_starts_at_term() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        let first = esc.begin_at_term(t0);
        let log = run_to_end(esc, t0, first);
        assert_eq!(log[0], (ms(0), Step::SendTerm));
        assert_eq!(log[1], (ms(500), Step::SendKill));
    }

    #[test]
    fn only_the_first_send_is_recorded() {
        let t0 = Instant::now();
        let mut esc = Escalation::new(GRACE);
        esc.record_term(t0);
        esc.record_term(t0 + ms(5));
        esc.record_kill(t0 + ms(7));
        assert_eq!(esc.term_sent_at(), Some(t0));
        assert_eq!(esc.kill_sent_at(), Some(t0 + ms(7)));
        assert!(esc.is_running());
    }

    #[test]
    fn the_report_counts_from_the_spawn_and_classifies_the_end() {
        let t0 = Instant::now();
        let started = t0 - ms(100);
        let mut esc = Escalation::new(GRACE);
        let none = esc.report(started, true);
        assert_eq!(
            none,
            Report {
                termination: Termination::Clean,
                cause: None,
                term_sent_after: None,
                kill_sent_after: None,
            }
        );
        esc.begin(t0, Deadline);
        esc.record_term(t0);
        let term = esc.report(started, true);
        assert_eq!(term.termination, Termination::Escalated);
        assert_eq!(term.cause, Some(Deadline));
        assert_eq!(term.term_sent_after, Some(ms(100)));
        assert_eq!(term.kill_sent_after, None);
        // The seed's table: a TERM and no exit seen is indeterminate...
        assert_eq!(
            esc.report(started, false).termination,
            Termination::Indeterminate
        );
        esc.tick(t0 + GRACE);
        esc.record_kill(t0 + GRACE);
        let kill = esc.report(started, true);
        assert_eq!(kill.kill_sent_after, Some(ms(100) + GRACE));
        assert_eq!(kill.termination, Termination::Escalated);
        // ... a KILL and no exit seen is escalated.
        assert_eq!(
            esc.report(started, false).termination,
            Termination::Escalated
        );
    }
}
