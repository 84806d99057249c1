//! The deadline of a one-line call driven on the caller's thread or task:
//! the escalation's machine ([`crate::escalation`]) started when the
//! deadline falls (TERM, a grace period, KILL, a second, the last check),
//! its steps carried out through the child's pidfd by the same code as the
//! engine's ([`run_steps`]). The drivers wake for it at
//! [`Deadline::wake_at`]; nothing here waits.

use std::os::fd::AsFd;
use std::time::Instant;

use crate::command::Command;
use crate::coordinator::{EscalationTarget, run_steps};
use crate::escalation::{Escalation, Step};
use crate::result::EscalationCause;
use crate::signal::Signal;

use super::child::Child;

/// The escalation of one call, and when its deadline falls.
pub(super) struct Deadline {
    esc: Escalation,
    /// When the deadline falls, until it has (or the child has exited).
    at: Option<Instant>,
    term_signal: Option<Signal>,
    program: String,
}

impl Deadline {
    /// The deadline of `cmd` (none without [`Command::deadline`]), counted
    /// from the spawn.
    pub(super) fn new(cmd: &Command, started: Instant) -> Deadline {
        Deadline {
            esc: Escalation::new(cmd.grace_period),
            at: cmd.deadline.map(|d| started + d),
            term_signal: cmd.term_signal,
            program: cmd.program_lossy(),
        }
    }

    /// When the driver must next call [`run_due`](Self::run_due), if ever.
    /// Once the child's end is seen the drivers ask no more: nothing is
    /// due then, whatever the machine says.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        [self.esc.deadline(), self.at].into_iter().flatten().min()
    }

    /// Carries out what is due at `now` against `child`: the first signal
    /// at the deadline, SIGKILL a grace period later. True once the
    /// escalation has given up (a second after SIGKILL): its last check is
    /// the driver's, a non-blocking reap.
    pub(super) fn run_due<F: AsFd>(&mut self, now: Instant, child: &Child<F>) -> bool {
        let mut steps = Vec::new();
        if self.at.is_some_and(|at| now >= at) {
            self.at = None;
            tracing::info!(program = %self.program, pid = child.pid, "deadline expired");
            steps = self.esc.begin(now, EscalationCause::Deadline);
        }
        self.run(child, now, steps);
        let steps = self.esc.tick(now);
        let gave_up = steps.contains(&Step::Fallback);
        self.run(child, now, steps);
        gave_up
    }

    fn run<F: AsFd>(&mut self, child: &Child<F>, now: Instant, steps: Vec<Step>) {
        if steps.is_empty() {
            return;
        }
        let target = Target {
            child,
            program: &self.program,
            term_signal: self.term_signal,
        };
        run_steps(&target, &mut self.esc, now, steps);
    }

    /// What the escalation did, for the result.
    pub(super) fn escalation(&self) -> &Escalation {
        &self.esc
    }
}

/// The child as the escalation's target.
struct Target<'a, F: AsFd> {
    child: &'a Child<F>,
    program: &'a str,
    term_signal: Option<Signal>,
}

impl<F: AsFd> EscalationTarget for Target<'_, F> {
    fn program(&self) -> &str {
        self.program
    }

    fn pid(&self) -> u32 {
        self.child.pid
    }

    fn close_stdin(&self) {
        // A one-line call closes the child's stdin at the spawn.
    }

    fn term_signal(&self) -> Option<Signal> {
        self.term_signal
    }

    fn signal_escalation(&self, signal: Signal) -> std::io::Result<bool> {
        self.child.signal_escalation(signal)
    }
}
