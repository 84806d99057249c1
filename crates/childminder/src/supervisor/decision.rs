//! The decision machine of one supervisor: strategy, restart types,
//! ordered start and reverse stop, the intensity window, backoff, start
//! timeouts and auto-shutdown. Pure: it is fed inputs stamped with an
//! injected clock and answers with actions; it never touches a process, a
//! timer or a task. The driver carries the actions out and feeds back what
//! happened.
//!
//! Each child is a slot with a *state* (down, starting, running, stopping)
//! and a *wish* (`want`: it should be up). The machine reconciles the two
//! under three ordering rules:
//!
//! 1. one stop at a time, highest index first (reverse order), and no
//!    start while a stop is pending;
//! 2. children restarted together share an *epoch*; within an epoch a child
//!    starts only once every lower-indexed member is running or done
//!    (start order);
//! 3. a restart waits for its `not_before` (backoff).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::backoff::{Jitter, base_delay, with_jitter};
use super::events::Verdict;
use super::spec::{AutoShutdown, Backoff, Restart, Strategy, SupervisorSpec};

/// What the machine needs to know about one child.
#[derive(Debug, Clone)]
pub(crate) struct ChildParams {
    pub restart: Restart,
    pub significant: bool,
    pub backoff: Backoff,
    pub start_timeout: Option<Duration>,
}

/// What the machine needs to know about its supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub strategy: Strategy,
    pub intensity: u32,
    pub period: Duration,
    pub auto_shutdown: AutoShutdown,
    pub children: Vec<ChildParams>,
}

impl Params {
    pub(crate) fn from_spec(spec: &SupervisorSpec) -> Params {
        Params {
            strategy: spec.strategy,
            intensity: spec.intensity,
            period: spec.period,
            auto_shutdown: spec.auto_shutdown,
            children: spec
                .children
                .iter()
                .map(|c| ChildParams {
                    restart: c.restart,
                    significant: c.significant,
                    backoff: c.backoff,
                    start_timeout: c.start_timeout,
                })
                .collect(),
        }
    }
}

/// How a child ended, as the driver classified it from the exit alone
/// (success exit codes; a nested supervisor that gave up is a failure).
/// Whether the end was requested is the machine's knowledge, not this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Success,
    Failure,
}

/// What the driver reports, or the handle asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// Start the children, in order.
    Start,
    /// Child `i` is ready (running).
    Ready(usize),
    /// Child `i` ended (or could not be spawned: `Failure`).
    Ended(usize, End),
    /// Time passed: act on due restarts and start timeouts.
    Tick,
    /// Handle: stop child `i` and keep it down.
    StopChild(usize),
    /// Handle: start child `i` if it is down.
    StartChild(usize),
    /// Handle: stop and start child `i`, uncounted.
    RestartChild(usize),
    /// Stop every child in reverse order and end.
    Stop,
    /// SIGKILL every child now and end.
    Kill,
}

/// Why the supervisor ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stopped,
    Killed,
    GaveUp(usize),
    AutoShutdown(usize),
    Completed,
}

/// What the driver must do (or report), in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Action {
    /// Start child `i` (spawn, or start the nested supervisor).
    Start(usize),
    /// Stop child `i` as its shutdown spec says.
    Stop(usize),
    /// SIGKILL child `i` (its whole subtree) now.
    Kill(usize),
    /// Report: child `i` is running (its readiness was seen while it was
    /// starting).
    Running(usize),
    /// Report: child `i` was not ready in time (a `Stop(i)` follows).
    StartTimedOut(usize),
    /// Report how child `i`'s end was judged (answers `Ended`).
    Judged(usize, Verdict),
    /// Report: child `i` will be started again after `delay`.
    Restarting {
        child: usize,
        delay: Duration,
        restart_count: u32,
    },
    /// Report: child `i` is down and stays down.
    Stopped(usize),
    /// Report: the intensity was exceeded because of child `i`.
    GaveUp(usize),
    /// Report: every child that should run is running (once per time it
    /// becomes true).
    AllRunning,
    /// The supervisor has ended: every child is down.
    Finish(Finish),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Down,
    Starting { since: Instant },
    Running { since: Instant },
    Stopping,
}

#[derive(Debug, Clone)]
struct Slot {
    state: State,
    /// It should be up: a down slot with `want` is a pending start.
    want: bool,
    /// Stop it, then start it again (a strategy's restart or the handle's).
    cycle: bool,
    /// The pending cycle is the handle's: uncounted, at once.
    manual_cycle: bool,
    /// Stopped through the handle: kept down, not "done".
    held: bool,
    /// Its start timed out: it is being stopped and the end is abnormal.
    timed_out: bool,
    /// A stop (or kill) was asked of its current run.
    stop_sent: bool,
    /// Ended by itself and will not be restarted (for auto-shutdown).
    done: bool,
    epoch: u64,
    not_before: Option<Instant>,
    /// Restarts in the current streak.
    streak: u32,
    /// When its current (or last) run began.
    run_began: Option<Instant>,
    /// A `Restarting` was reported for the pending start.
    announced: bool,
    /// Total time it spent down waiting to be restarted, up to
    /// `waiting_since`.
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: State::Down,
            want: false,
            cycle: false,
            manual_cycle: false,
            held: false,
            timed_out: false,
            stop_sent: false,
            done: false,
            epoch: 0,
            not_before: None,
            streak: 0,
            run_began: None,
            announced: false,
            waited: Duration::ZERO,
            waiting_since: None,
        }
    }

    fn active(&self) -> bool {
        matches!(self.state, State::Starting { .. } | State::Running { .. })
    }

    fn pending(&self) -> bool {
        self.state == State::Down && self.want
    }

    /// The child's run clock: time not spent down waiting for a restart.
    fn waited_until(&self, now: Instant) -> Duration {
        self.waited
            + self
                .waiting_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// One counted restart in the intensity window.
#[derive(Debug, Clone, Copy)]
struct Restarted {
    child: usize,
    at: Instant,
    /// The child's total waiting time at `at`.
    waited: Duration,
}

/// The decision machine of one supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    params: Params,
    slots: Vec<Slot>,
    window: VecDeque<Restarted>,
    finishing: Option<Finish>,
    finished: bool,
    all_running_reported: bool,
    next_epoch: u64,
    jitter: Jitter,
}

impl Machine {
    pub(crate) fn new(params: Params, jitter_seed: u64) -> Machine {
        let slots = params.children.iter().map(|_| Slot::new()).collect();
        Machine {
            params,
            slots,
            window: VecDeque::new(),
            finishing: None,
            finished: false,
            all_running_reported: false,
            next_epoch: 1,
            jitter: Jitter::new(jitter_seed),
        }
    }

    /// Feeds one input at `now` and returns what to do, in order.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match input {
            Input::Start => {
                let epoch = self.new_epoch();
                for slot in &mut self.slots {
                    slot.want = true;
                    slot.epoch = epoch;
                }
            }
            Input::Ready(i) => {
                let slot = &mut self.slots[i];
                // A start that timed out stays failed, ready or not.
                if matches!(slot.state, State::Starting { .. }) && !slot.timed_out {
                    slot.state = State::Running { since: now };
                    out.push(Action::Running(i));
                }
            }
            Input::Ended(i, end) => self.on_ended(now, i, end, &mut out),
            Input::Tick => {}
            Input::StopChild(i) => self.on_stop_child(i, &mut out),
            Input::StartChild(i) => self.on_start_child(i, false),
            Input::RestartChild(i) => self.on_start_child(i, true),
            Input::Stop => self.begin_finish(Finish::Stopped, &mut out),
            Input::Kill => {
                self.begin_finish(Finish::Killed, &mut out);
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    if slot.state != State::Down {
                        slot.state = State::Stopping;
                        slot.stop_sent = true;
                        out.push(Action::Kill(i));
                    }
                }
            }
        }
        self.advance(now, &mut out);
        out
    }

    /// When the machine wants a `Tick`: the next due restart or start
    /// timeout, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.finished || self.finishing.is_some() {
            return None;
        }
        self.slots
            .iter()
            .zip(&self.params.children)
            .filter_map(|(slot, params)| match slot.state {
                // Only a pending start has one (a slot that stops wanting
                // to run loses its delay).
                State::Down => slot.not_before,
                State::Starting { since } if !slot.timed_out => {
                    params.start_timeout.map(|t| since + t)
                }
                _ => None,
            })
            .min()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    fn new_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn on_ended(&mut self, now: Instant, i: usize, end: End, out: &mut Vec<Action>) {
        let slot = &mut self.slots[i];
        if slot.state == State::Down {
            return; // a stale report
        }
        let requested = slot.stop_sent && !slot.timed_out;
        let verdict = if slot.timed_out || (!requested && end == End::Failure) {
            Verdict::Abnormal
        } else if requested {
            Verdict::Requested
        } else {
            Verdict::Normal
        };
        let uptime = slot
            .run_began
            .map_or(Duration::ZERO, |b| now.saturating_duration_since(b));
        slot.state = State::Down;
        slot.stop_sent = false;
        slot.timed_out = false;
        out.push(Action::Judged(i, verdict));

        if self.finishing.is_some() {
            let slot = &mut self.slots[i];
            slot.want = false;
            slot.cycle = false;
            out.push(Action::Stopped(i));
            return;
        }

        if verdict == Verdict::Requested {
            let slot = &mut self.slots[i];
            // A pending cycle always wants the child up again: whatever
            // drops the wish (a stop, the end) drops the cycle with it.
            if slot.cycle {
                slot.cycle = false;
                let manual = std::mem::take(&mut slot.manual_cycle);
                let count = if manual {
                    slot.streak
                } else {
                    reset_streak_if_long(slot, uptime, &self.params.children[i].backoff);
                    slot.streak += 1;
                    slot.streak
                };
                self.start_waiting(now, i);
                let delay = self.slots[i]
                    .not_before
                    .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                self.slots[i].announced = true;
                out.push(Action::Restarting {
                    child: i,
                    delay,
                    restart_count: count,
                });
            } else {
                slot.want = false;
                slot.cycle = false;
                slot.not_before = None;
                out.push(Action::Stopped(i));
            }
            return;
        }

        let params = self.params.children[i].clone();
        let restart = match params.restart {
            Restart::Permanent => true,
            Restart::Transient => verdict == Verdict::Abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            let slot = &mut self.slots[i];
            slot.want = false;
            slot.cycle = false;
            slot.not_before = None;
            slot.done = true;
            out.push(Action::Stopped(i));
            if params.significant {
                self.check_auto_shutdown(i, out);
            }
            return;
        }

        // A counted restart: the give-up rule first.
        if self.exceeds_intensity(now, i) {
            out.push(Action::GaveUp(i));
            let slot = &mut self.slots[i];
            slot.want = false;
            out.push(Action::Stopped(i));
            self.begin_finish(Finish::GaveUp(i), out);
            return;
        }

        let slot = &mut self.slots[i];
        reset_streak_if_long(slot, uptime, &params.backoff);
        slot.streak += 1;
        let count = slot.streak;
        let base = base_delay(&params.backoff, count);
        let delay = if base.is_zero() {
            base
        } else {
            with_jitter(base, self.jitter.next_unit())
        };
        let not_before = now + delay;

        let affected: Vec<usize> = match self.params.strategy {
            Strategy::OneForOne => vec![i],
            Strategy::OneForAll => (0..self.slots.len()).collect(),
            Strategy::RestForOne => (i..self.slots.len()).collect(),
        };
        let epoch = self.new_epoch();
        let old_epoch = self.slots[i].epoch;
        for &j in &affected {
            let temporary = self.params.children[j].restart == Restart::Temporary;
            let slot = &mut self.slots[j];
            if j == i {
                // It has ended: a stop it was waiting for is moot.
                slot.want = true;
                slot.cycle = false;
                slot.manual_cycle = false;
                slot.epoch = epoch;
                slot.not_before = Some(not_before);
            } else if slot.active() {
                if temporary {
                    // OTP: a temporary sibling is stopped, never restarted
                    // (even if the handle had asked for its restart).
                    slot.want = false;
                    slot.cycle = false;
                } else if slot.want {
                    slot.cycle = true;
                    slot.epoch = epoch;
                    slot.not_before = Some(not_before);
                }
            } else if slot.pending() {
                slot.epoch = epoch;
                slot.not_before = Some(slot.not_before.map_or(not_before, |t| t.max(not_before)));
            } else if slot.state == State::Stopping && slot.want && !temporary {
                slot.cycle = true;
                slot.epoch = epoch;
                slot.not_before = Some(not_before);
            }
        }
        // Children still waiting behind it in its old start sequence wait
        // behind it in the new one. (None can wait *before* it there: it
        // could not have started while they were pending.)
        for slot in &mut self.slots {
            if slot.pending() && slot.epoch == old_epoch {
                slot.epoch = epoch;
            }
        }
        self.start_waiting(now, i);
        self.slots[i].announced = true;
        out.push(Action::Restarting {
            child: i,
            delay,
            restart_count: count,
        });
    }

    /// Marks child `i` down and waiting: its run clock stops.
    fn start_waiting(&mut self, now: Instant, i: usize) {
        let slot = &mut self.slots[i];
        if slot.waiting_since.is_none() {
            slot.waiting_since = Some(now);
        }
    }

    /// The give-up rule. Each counted restart is remembered with the time
    /// it happened; its age is the time since, *minus the time its child
    /// has since spent down waiting to be restarted* (the child's run
    /// clock). More than `intensity` restarts younger than `period`
    /// (including this one) exceed the intensity.
    fn exceeds_intensity(&mut self, now: Instant, i: usize) -> bool {
        let period = self.params.period;
        let slots = &self.slots;
        self.window.retain(|r| {
            let waited_since = slots[r.child].waited_until(now).saturating_sub(r.waited);
            let age = now
                .saturating_duration_since(r.at)
                .saturating_sub(waited_since);
            age <= period
        });
        self.window.push_back(Restarted {
            child: i,
            at: now,
            waited: self.slots[i].waited_until(now),
        });
        self.window.len() > self.params.intensity as usize
    }

    fn check_auto_shutdown(&mut self, i: usize, out: &mut Vec<Action>) {
        let trigger = match self.params.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => self
                .slots
                .iter()
                .zip(&self.params.children)
                .filter(|(_, p)| p.significant)
                .all(|(s, _)| s.done),
        };
        if trigger {
            self.begin_finish(Finish::AutoShutdown(i), out);
        }
    }

    fn on_stop_child(&mut self, i: usize, out: &mut Vec<Action>) {
        if self.finishing.is_some() {
            return;
        }
        let slot = &mut self.slots[i];
        slot.held = true;
        slot.cycle = false;
        slot.manual_cycle = false;
        slot.not_before = None;
        if slot.pending() {
            slot.want = false;
            out.push(Action::Stopped(i));
        }
        slot.want = false;
    }

    fn on_start_child(&mut self, i: usize, restart_running: bool) {
        if self.finishing.is_some() {
            return;
        }
        let epoch = self.new_epoch();
        let slot = &mut self.slots[i];
        slot.held = false;
        slot.done = false;
        match slot.state {
            State::Down => {
                slot.want = true;
                slot.epoch = epoch;
                slot.not_before = None;
            }
            State::Starting { .. } | State::Running { .. } if restart_running => {
                slot.want = true;
                slot.cycle = true;
                slot.manual_cycle = true;
                slot.epoch = epoch;
                slot.not_before = None;
            }
            State::Stopping => {
                // Comes back up once the stop under way completes.
                slot.want = true;
                slot.cycle = true;
                slot.manual_cycle = true;
                slot.epoch = epoch;
                slot.not_before = None;
            }
            State::Starting { .. } | State::Running { .. } => slot.want = true,
        }
    }

    fn begin_finish(&mut self, why: Finish, out: &mut Vec<Action>) {
        if let Some(current) = self.finishing {
            // A kill hurries an orderly stop under way, and the tree ends
            // killed; an end of the tree's own (gave up, auto-shutdown)
            // keeps its outcome, which says why.
            if current == Finish::Stopped && why == Finish::Killed {
                self.finishing = Some(why);
            }
            return;
        }
        self.finishing = Some(why);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.pending() && slot.announced {
                // It had a `restarting`: say it stays down after all.
                out.push(Action::Stopped(i));
            }
            slot.want = false;
            slot.cycle = false;
            slot.not_before = None;
        }
    }

    /// Reconciles states with wishes under the ordering rules.
    fn advance(&mut self, now: Instant, out: &mut Vec<Action>) {
        // Start timeouts.
        if self.finishing.is_none() {
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let State::Starting { since } = slot.state {
                    let due = self.params.children[i]
                        .start_timeout
                        .is_some_and(|t| now >= since + t);
                    if due && !slot.timed_out {
                        slot.timed_out = true;
                        out.push(Action::StartTimedOut(i));
                    }
                }
            }
        }

        // Rule 1: one stop at a time, in reverse order; starts wait for it.
        if self.slots.iter().any(|s| s.state == State::Stopping) {
            return;
        }
        let to_stop = self
            .slots
            .iter()
            .rposition(|s| s.active() && (!s.want || s.cycle || s.timed_out));
        if let Some(i) = to_stop {
            let slot = &mut self.slots[i];
            slot.state = State::Stopping;
            slot.stop_sent = true;
            out.push(Action::Stop(i));
            return;
        }

        if let Some(why) = self.finishing {
            if self.slots.iter().all(|s| s.state == State::Down) {
                self.finished = true;
                out.push(Action::Finish(why));
            }
            return;
        }

        // Rule 3: a delay once served is gone (so no deadline lies in the
        // past while a start waits for its turn).
        for slot in &mut self.slots {
            if slot.not_before.is_some_and(|t| t <= now) {
                slot.not_before = None;
            }
        }
        // Rule 2: starts in epoch order.
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if !slot.pending() || slot.not_before.is_some() {
                continue;
            }
            let epoch = slot.epoch;
            let blocked = self.slots[..i].iter().any(|s| {
                s.epoch == epoch && (s.pending() || matches!(s.state, State::Starting { .. }))
            });
            if blocked {
                continue;
            }
            let slot = &mut self.slots[i];
            if let Some(since) = slot.waiting_since.take() {
                slot.waited += now.saturating_duration_since(since);
            }
            slot.state = State::Starting { since: now };
            slot.announced = false;
            slot.run_began = Some(now);
            out.push(Action::Start(i));
        }

        let all_running = self.slots.iter().all(|s| {
            matches!(s.state, State::Running { .. }) || (s.state == State::Down && !s.want)
        });
        if all_running && !self.all_running_reported {
            self.all_running_reported = true;
            out.push(Action::AllRunning);
        } else if !all_running {
            self.all_running_reported = false;
        }

        let nothing_left = self
            .slots
            .iter()
            .all(|s| s.state == State::Down && !s.want && !s.held);
        if nothing_left {
            self.finished = true;
            out.push(Action::Finish(Finish::Completed));
        }
    }
}

/// A child that stayed up for its backoff's `reset_after` starts a new
/// streak.
fn reset_streak_if_long(slot: &mut Slot, uptime: Duration, backoff: &Backoff) {
    if uptime >= backoff.reset_after {
        slot.streak = 0;
    }
}

#[cfg(test)]
mod tests;
