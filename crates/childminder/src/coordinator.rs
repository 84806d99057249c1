//! The coordinator: the one task that observes the child's exit, drives the
//! escalation, publishes the result exactly once, sweeps the process group
//! and reaps. It sleeps on events only: the pidfd, the handles' requests,
//! and a timer set to the escalation's next deadline.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::time::sleep_until;

use crate::contain::cgroup::EventsWatch;
use crate::contain::subreaper;
use crate::error::Error;
use crate::escalation::{Escalation, Step};
use crate::result::{EscalationCause, ExitStatus, SupervisionResult};
use crate::shared::{
    REQ_ANY_END, REQ_DEADLINE, REQ_KILL, REQ_SHUTDOWN, REQ_TEARDOWN, REQ_TERMINATE, Shared,
};
use crate::signal::Signal;
use crate::target::Target;

/// The supervision settings the coordinator needs from the `Command`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub grace: Duration,
    pub deadline: Option<Duration>,
    /// `None`: the first step sends nothing (`timeout -s 0`).
    pub term_signal: Option<Signal>,
}

/// The stdout/stderr readers of the blocking API, which the coordinator
/// waits for before publishing, so every byte is delivered first.
pub(crate) struct OutputDrain {
    /// Tells the readers when the child's exit was seen: from then on they
    /// wait at most a grace period for end-of-file.
    pub exit_seen: watch::Sender<Option<Instant>>,
    /// Resolves when both readers have finished and every chunk was handed
    /// to its consumer; carries whether the output had to be cut off.
    pub outputs_done: oneshot::Receiver<bool>,
}

/// Longest pause between liveness checks of a process group whose leader
/// has exited: the kernel has no event for "the group is empty".
pub(crate) const GROUP_POLL_MAX: Duration = Duration::from_millis(50);

/// The first pause between those checks, doubled up to [`GROUP_POLL_MAX`].
pub(crate) const GROUP_POLL_MIN: Duration = Duration::from_millis(1);

/// Kills and reaps the child if the coordinator is dropped before it
/// finished (the runtime shut down under it): nothing may outlive us.
struct LastResort(Arc<Shared>);

impl Drop for LastResort {
    fn drop(&mut self) {
        let shared = &self.0;
        if shared.finished.get().is_some() {
            return;
        }
        shared.give_terminal_back();
        // A child that exited by itself is reported so, not as killed;
        // what is left of its group gets the KILL all the same.
        let exited = matches!(shared.target.try_status(), Ok(Some(_)));
        let kill_sent_after = (!exited).then(|| shared.started.elapsed());
        let _ = shared.target.signal_escalation(Signal::KILL);
        let _ = shared.target.signal_child(Signal::KILL);
        // No runtime is left to await on: block (briefly) on the exit event.
        shared.target.wait_exit_blocking(Duration::from_secs(1));
        if !matches!(shared.target.reap(), Ok(true)) {
            // Stuck past its SIGKILL: the engine, which outlives this
            // runtime, reaps it (and what of its group is orphaned to us)
            // when it exits, and removes its cgroup then.
            let _ = hand_over(shared);
        } else if let Some(cgroup) = shared.target.cgroup() {
            // cgroup.kill was the KILL above: once its members are gone the
            // cgroup can be removed.
            let _ = cgroup.wait_emptied_blocking(Duration::from_secs(1));
            if let Err(e) = cgroup.remove() {
                tracing::warn!(program = %shared.program, cgroup = %cgroup.path().display(), error = %e, "removing the cgroup failed");
            }
        }
        if shared.leave_subreaper_sweep() == Some(true) {
            subreaper::end_escapees_on_the_engine(&shared.program);
        }
        shared.target.close();
        shared.publish_lost(kill_sent_after);
        shared.publish_finished();
    }
}

/// An escapee sweep under way: dropped before it is done (its future
/// cancelled), it hands the sweep to the engine.
struct SweepUnderWay<'a> {
    program: &'a str,
    done: bool,
}

impl Drop for SweepUnderWay<'_> {
    fn drop(&mut self) {
        if !self.done {
            subreaper::end_escapees_on_the_engine(self.program);
        }
    }
}

/// The coordinator's future. Its last-resort guard exists from the call
/// on, not from the first poll: a runtime that shuts down before it ever
/// ran the task still kills and reaps the child.
pub(crate) fn supervise(
    shared: Arc<Shared>,
    policy: Policy,
    drain: Option<OutputDrain>,
) -> impl std::future::Future<Output = ()> + Send {
    let guard = LastResort(shared.clone());
    run(shared, policy, drain, guard)
}

async fn run(shared: Arc<Shared>, policy: Policy, drain: Option<OutputDrain>, guard: LastResort) {
    let mut esc = Escalation::new(policy.grace);
    let deadline_at = policy.deadline.map(|d| shared.started + d);
    let (exit, supervisor_error) = observe_exit(&shared, policy, &mut esc, deadline_at).await;
    let exited_at = Instant::now();
    shared.give_terminal_back();

    let output_cut_off = match drain {
        Some(drain) => finish_output(&shared, drain, exited_at).await,
        None => false,
    };
    let runtime = exited_at - shared.started;
    let report = esc.report(shared.started, exit.is_some());
    let result = SupervisionResult {
        program: shared.program.clone(),
        pid: shared.target.pid(),
        exit,
        termination: report.termination,
        escalation_cause: report.cause,
        term_sent_after: report.term_sent_after,
        kill_sent_after: report.kill_sent_after,
        runtime,
        supervisor_error: supervisor_error.map(Arc::new),
        worker_errors: shared.take_worker_errors(),
        output_cut_off,
        used_pidfd: shared.target.uses_pidfd(),
        containment: shared.containment(),
        resource_usage: exit.and(shared.target.resource_usage()),
    };
    tracing::debug!(
        program = %result.program,
        pid = result.pid,
        exit = ?result.exit,
        termination = result.termination.as_str(),
        runtime_ms = runtime.as_millis() as u64,
        "result published"
    );
    shared.result.publish(result);
    // Whatever had the child's stdin open has no reader any more.
    shared.stdin.close();

    // Whatever is left of the group (and, with the subreaper, outside it:
    // escapees cannot be counted without a scan of /proc, so their sweep
    // always waits) is dealt with once something asked the child to end;
    // when nothing is left, the supervision is over now, and the teardown
    // will find it done.
    let subreaper = shared.containment().subreaper;
    let group_left = exit.is_none() || !shared.target.nothing_left_of_group();
    if !group_left {
        // Nothing of the group needs the zombie any more: reap it before
        // `wait` can return.
        reap(&shared);
    }
    if group_left || subreaper {
        shared.settled.publish(());
        while esc.cause().is_none() && shared.take_requests() & REQ_ANY_END == 0 {
            shared.requested().await;
        }
        if group_left {
            sweep_remaining(&shared, policy, esc.kill_sent_at().is_some()).await;
        }
    }
    if let Some(cgroup) = shared.target.cgroup() {
        let usage = cgroup.usage();
        // A child given up on is still in it: removed once it has exited.
        if exit.is_some() {
            remove_cgroup(&shared);
        }
        shared.update_containment(|c| c.cgroup = Some(usage));
    }
    if exit.is_some() {
        // Reaped before the escapee sweep, so that with no other child
        // left the sweep knows there is nothing to find without a scan.
        reap(&shared);
    }
    if shared.leave_subreaper_sweep() == Some(true) {
        let mut under_way = SweepUnderWay {
            program: &shared.program,
            done: false,
        };
        // A kill asked for (a tree's second Ctrl-C, caught by an
        // acceptance run waiting out the grace) ends the sweep's grace.
        let tally = subreaper::end_escapees(
            &shared.program,
            // With no first signal (`timeout -s 0`) escapees get SIGKILL
            // at once: they are strays, not the command being stopped.
            shared
                .term_signal(policy.term_signal)
                .unwrap_or(Signal::KILL),
            policy.grace,
            shared.kill_asked(),
        )
        .await;
        under_way.done = true;
        shared.update_containment(|c| {
            c.escapees_ended = tally.ended;
            c.escapees_killed = tally.killed;
        });
    }
    if exit.is_none() {
        // The fallback found no exit (a process stuck in the kernel): the
        // engine waits for it in the background, so it is reaped when it
        // finally goes, while this supervision ends now (a caller driving
        // it on its own thread stops driving it when it returns).
        shared.publish_finished();
        match hand_over(&shared) {
            Some(Ok(())) => {}
            other => {
                if let Some(Err(e)) = other {
                    // Out of fds or threads: wait here.
                    tracing::warn!(program = %shared.program, error = %e, "cannot hand the child given up on to the engine: waiting for its exit");
                }
                let _ = shared.target.exited().await;
                finish_given_up(&shared, shared.target.leads_group()).await;
            }
        }
    }
    // Closed here, not when the last handle goes: the caller may return
    // before this task has dropped its references.
    shared.target.close();
    shared.publish_finished();
    drop(guard);
}

fn remove_cgroup(shared: &Shared) {
    if let Some(cgroup) = shared.target.cgroup() {
        if let Err(e) = cgroup.remove() {
            tracing::warn!(program = %shared.program, cgroup = %cgroup.path().display(), error = %e, "removing the cgroup failed");
        }
    }
}

fn reap(shared: &Shared) {
    if let Err(e) = shared.target.reap() {
        tracing::warn!(program = %shared.program, error = %e, "reaping the child failed");
    }
}

/// Phase 1: until the child's exit is seen or the escalation gives up.
async fn observe_exit(
    shared: &Shared,
    policy: Policy,
    esc: &mut Escalation,
    deadline_at: Option<Instant>,
) -> (Option<ExitStatus>, Option<Error>) {
    let mut deadline_pending = deadline_at.is_some();
    loop {
        let requests = shared.take_requests();
        let now = Instant::now();
        if requests & REQ_SHUTDOWN != 0 {
            let steps = esc.begin(now, EscalationCause::Shutdown);
            run_steps(&Engine(shared, policy), esc, now, steps);
        }
        if requests & REQ_TEARDOWN != 0 {
            let steps = esc.begin(now, EscalationCause::Teardown);
            run_steps(&Engine(shared, policy), esc, now, steps);
        }
        if requests & REQ_TERMINATE != 0 {
            let steps = esc.begin(now, EscalationCause::Requested);
            run_steps(&Engine(shared, policy), esc, now, steps);
        }
        if requests & REQ_KILL != 0 {
            let steps = esc.kill_now(now);
            run_steps(&Engine(shared, policy), esc, now, steps);
        }
        let deadline_due = deadline_pending && deadline_at.is_some_and(|d| now >= d);
        if deadline_due || requests & REQ_DEADLINE != 0 {
            deadline_pending = false;
            tracing::info!(program = %shared.program, pid = shared.target.pid(), "deadline expired");
            let steps = esc.begin(now, EscalationCause::Deadline);
            run_steps(&Engine(shared, policy), esc, now, steps);
        }
        let steps = esc.tick(now);
        let gave_up = steps.contains(&Step::Fallback);
        run_steps(&Engine(shared, policy), esc, now, steps);
        if gave_up {
            // The seed's last resort: one non-blocking status check.
            return match shared.target.try_status() {
                Ok(status) => (status, None),
                Err(e) => (
                    None,
                    Some(io_error(shared, "checking the child's status", e)),
                ),
            };
        }

        let wake_at = [esc.deadline(), deadline_at.filter(|_| deadline_pending)]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            biased;
            status = shared.target.exited() => {
                let killed = matches!(&status, Ok(s) if s.signal() == Some(Signal::KILL));
                if let Some(sent_at) = shared.kill_sent_by_caller().filter(|_| killed) {
                    // `kill()` sent it before this task took the request
                    // (the child may be reaped already: nothing to send).
                    let _ = esc.kill_now(sent_at);
                    esc.record_kill(sent_at);
                }
                esc.exited();
                return match status {
                    Ok(status) => {
                        tracing::debug!(program = %shared.program, pid = shared.target.pid(), %status, "child exited");
                        (Some(status), None)
                    }
                    Err(e) => (None, Some(io_error(shared, "waiting for the child", e))),
                };
            }
            () = shared.requested() => {}
            () = sleep_until_opt(wake_at) => {}
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn io_error(shared: &Shared, context: &'static str, source: std::io::Error) -> Error {
    Error::Io {
        program: shared.program.clone(),
        context,
        source,
    }
}

/// What the escalation's steps act on: the engine's child (its shared
/// state), or the child of a one-line call driven on the caller's thread.
pub(crate) trait EscalationTarget {
    fn program(&self) -> &str;
    fn pid(&self) -> u32;
    /// [`Step::CloseStdin`].
    fn close_stdin(&self);
    /// The first signal; `None` sends nothing (`timeout -s 0`).
    fn term_signal(&self) -> Option<Signal>;
    /// Sends `signal` to the group (or the child alone, without one);
    /// `Ok(false)` when nothing is left to receive it.
    fn signal_escalation(&self, signal: Signal) -> std::io::Result<bool>;
    /// Keeps what the escalation has done after each run of steps, for
    /// whoever reports if the driver is dropped mid-way.
    fn record(&self, _escalation: &Escalation) {}
}

/// The engine's child, with the command's policy.
struct Engine<'a>(&'a Shared, Policy);

impl EscalationTarget for Engine<'_> {
    fn program(&self) -> &str {
        &self.0.program
    }

    fn pid(&self) -> u32 {
        self.0.target.pid()
    }

    fn close_stdin(&self) {
        self.0.stdin.request_close();
    }

    fn term_signal(&self) -> Option<Signal> {
        self.0.term_signal(self.1.term_signal)
    }

    fn signal_escalation(&self, signal: Signal) -> std::io::Result<bool> {
        self.0.target.signal_escalation(signal)
    }

    fn record(&self, escalation: &Escalation) {
        // For the last resort: a runtime shut down mid-escalation still
        // reports the signals sent (else a child that exited of the TERM
        // would read as a clean exit).
        self.0
            .record_escalation(escalation.report(self.0.started, false));
    }
}

/// Carries out the escalation's steps against the child (or its group),
/// due at `now`: the instant the machine decided them on, which the
/// signals sent are recorded at (so the recorded times keep the machine's
/// spacing, a grace period from TERM to KILL, on whatever clock drives it).
pub(crate) fn run_steps(
    target: &impl EscalationTarget,
    esc: &mut Escalation,
    now: Instant,
    steps: Vec<Step>,
) {
    let (program, pid) = (target.program(), target.pid());
    let any = !steps.is_empty();
    for step in steps {
        let signal = match step {
            Step::CloseStdin => {
                tracing::debug!(program, pid, "escalation: closing stdin");
                target.close_stdin();
                continue;
            }
            Step::Fallback => continue,
            Step::SendTerm => match target.term_signal() {
                Some(signal) => signal,
                None => {
                    // `timeout -s 0`: the step is taken, nothing is sent
                    // but SIGCONT (a stopped child goes on, as GNU timeout
                    // has it), and SIGKILL follows a grace period later.
                    tracing::info!(program, pid, "escalation: first step, no signal configured");
                    esc.record_term_withheld(now);
                    let _ = target.signal_escalation(Signal::CONT);
                    continue;
                }
            },
            Step::SendKill => Signal::KILL,
        };
        match target.signal_escalation(signal) {
            Ok(true) => {
                tracing::info!(program, pid, %signal, "escalation: signal sent");
                if step == Step::SendTerm {
                    esc.record_term(now);
                    // A stopped process (Ctrl-Z, SIGTTIN) would not act on
                    // the signal until the KILL: wake it, as timeout(1) does.
                    // (A second CONT, when CONT was the signal, is harmless.)
                    if signal != Signal::KILL {
                        let _ = target.signal_escalation(Signal::CONT);
                    } else {
                        // SIGKILL as the first signal (`-s KILL`) is SIGKILL
                        // sent: the report says so (an acceptance run found
                        // `kill_sent_after` null then).
                        esc.record_kill(now);
                    }
                } else {
                    esc.record_kill(now);
                }
            }
            Ok(false) => {
                tracing::debug!(program, %signal, "escalation: child already gone");
            }
            Err(e) => {
                tracing::warn!(program, %signal, error = %e, "escalation: signal failed");
            }
        }
    }
    if any {
        target.record(esc);
    }
}

/// Phase 2 (blocking API): wait for the readers and the delivery of every
/// chunk. Returns whether the output had to be cut off.
async fn finish_output(shared: &Shared, drain: OutputDrain, exited_at: Instant) -> bool {
    let _ = drain.exit_seen.send(Some(exited_at));
    // A stdio thread that died without answering has nothing left to read.
    let cut_off = drain.outputs_done.await.unwrap_or(false);
    if cut_off {
        // The reader that cut its pipe off killed the group then.
        tracing::warn!(
            program = %shared.program,
            pid = shared.target.pid(),
            "output still open a grace period after the child's end: closing the pipes and killing the group"
        );
    }
    cut_off
}

/// Phase 3: once the child has exited, nothing of its group (or of its
/// cgroup) may stay. The same escalation runs against the remaining
/// members, starting at TERM (the leader is gone: there is no natural exit
/// to wait for), or at KILL when the escalation `killed` the group already
/// (what survived that gets no TERM and no grace period first).
pub(crate) async fn sweep_remaining(shared: &Shared, policy: Policy, killed: bool) {
    let mut esc = Escalation::new(policy.grace);
    let mut wake = Wakeup::new(shared);
    loop {
        match shared.target.group_has_others() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(program = %shared.program, error = %e, "checking what is left of the child failed");
                return;
            }
        }
        let now = Instant::now();
        if esc.is_running() {
            tracing::info!(program = %shared.program, pgid = shared.target.pid(), cgroup = shared.target.cgroup().is_some(), "child exited but its group or cgroup lives on: escalating against the rest");
            let steps = if killed {
                esc.kill_now(now)
            } else {
                esc.begin_at_term(now)
            };
            run_steps(&Engine(shared, policy), &mut esc, now, steps);
        }
        let steps = esc.tick(now);
        if steps.contains(&Step::Fallback) {
            tracing::warn!(program = %shared.program, pgid = shared.target.pid(), "the rest of the group or cgroup survived SIGKILL");
            return;
        }
        run_steps(&Engine(shared, policy), &mut esc, now, steps);
        wake.next(shared, esc.deadline()).await;
    }
}

/// How the sweep learns that members have gone.
enum Wakeup {
    /// A process group whose leader has exited cannot be waited on by any
    /// event: check its liveness every 1 -> 50 ms (backing off).
    Poll { pause: Duration },
    /// A cgroup's `populated 0` is an inotify event on `cgroup.events`.
    Event(EventsWatch),
}

impl Wakeup {
    fn new(shared: &Shared) -> Wakeup {
        let Some(cgroup) = shared.target.cgroup() else {
            return Wakeup::Poll {
                pause: GROUP_POLL_MIN,
            };
        };
        match cgroup.watch() {
            Ok(watch) => Wakeup::Event(watch),
            Err(e) => {
                // Out of fds or inotify watches: check on the poll interval.
                tracing::warn!(program = %shared.program, error = %e, "cannot watch cgroup.events: checking it periodically");
                Wakeup::Poll {
                    pause: GROUP_POLL_MAX,
                }
            }
        }
    }

    /// Returns when members may have gone, or at the escalation's next step.
    async fn next(&mut self, shared: &Shared, step_at: Option<Instant>) {
        match self {
            Wakeup::Poll { pause } => {
                let now = Instant::now();
                let next = step_at.map_or(*pause, |d| d.saturating_duration_since(now).min(*pause));
                tokio::time::sleep(next).await;
                *pause = (*pause * 2).min(GROUP_POLL_MAX);
            }
            Wakeup::Event(watch) => {
                let cgroup = shared.target.cgroup().expect("an event only with a cgroup");
                tokio::select! {
                    emptied = cgroup.emptied(watch) => {
                        if let Err(e) = emptied {
                            tracing::warn!(program = %shared.program, error = %e, "watching cgroup.events failed");
                            *self = Wakeup::Poll { pause: GROUP_POLL_MAX };
                        }
                    }
                    () = sleep_until_opt(step_at) => {}
                }
            }
        }
    }
}

/// A child the escalation gave up on (alive a second after SIGKILL: stuck
/// in the kernel), for [`hand_to_engine`].
pub(crate) struct GivenUp {
    pub pid: u32,
    /// A copy of its pidfd, for the engine's registration.
    pub pidfd: OwnedFd,
    pub group: bool,
    pub program: String,
    pub started: Instant,
    /// Its cgroup, removed once it has exited (the caller's removal failed
    /// while the child was in it).
    pub cgroup: Option<Arc<crate::contain::cgroup::Leaf>>,
    /// The sweep of what is left of its group, when it is still to run
    /// (the policy, and whether the escalation sent KILL already).
    pub sweep: Option<(Policy, bool)>,
    /// It leads its group: members stuck with it and orphaned to this
    /// process (a subreaper) are reaped after it.
    pub led_group: bool,
}

/// Hands the coordinator's child, given up on, to the engine, and marks
/// its target handed over when the engine has it. `None` without a pidfd
/// (Linux < 5.3: nothing to hand over); `Some(Err)` when the engine could
/// not take it, so it is still ours.
fn hand_over(shared: &Shared) -> Option<std::io::Result<()>> {
    let pidfd = match shared.target.pidfd_copy()? {
        Ok(pidfd) => pidfd,
        Err(e) => return Some(Err(e)),
    };
    // Marked before the engine's task exists, which may reap at once: from
    // then on nothing keyed by the pid may be sent from here (a `kill()`
    // from a handle included). Taken back if the hand-over fails.
    shared.target.handed_over();
    let handed = hand_to_engine(given_up(shared, pidfd)).map(drop);
    if handed.is_err() {
        shared.target.taken_back();
    }
    Some(handed)
}

/// The end of a child given up on, once it has exited: reaped, then (when
/// it `led_group`) the members of its group stuck with it and orphaned to
/// this process, then its cgroup removed.
async fn finish_given_up(shared: &Shared, led_group: bool) {
    reap(shared);
    if led_group {
        subreaper::reap_group_orphans(&shared.program, shared.target.pid()).await;
    }
    remove_cgroup(shared);
}

/// [`GivenUp`] for the engine's child, whose group was swept already.
fn given_up(shared: &Shared, pidfd: OwnedFd) -> GivenUp {
    GivenUp {
        pid: shared.target.pid(),
        pidfd,
        group: false,
        program: shared.program.clone(),
        started: shared.started,
        cgroup: shared.target.cgroup_shared(),
        sweep: None,
        led_group: shared.target.leads_group(),
    }
}

/// The engine's word that [`hand_to_engine`]'s sweep is over, as
/// received: a task that ended without it failed.
pub(crate) fn engine_answer(answer: Result<(), oneshot::error::RecvError>) -> std::io::Result<()> {
    answer.map_err(|_| std::io::Error::other("the engine's task ended before the sweep did"))
}

/// Hands a child the escalation gave up on to the engine, which outlives
/// any caller's runtime: there the rest of its group is swept (if asked),
/// the receiver told when that is over (it errs only if the task ended
/// before), and the child reaped whenever it exits. From a successful
/// return on, the child is the engine's.
///
/// # Errors
///
/// The engine cannot be started, or the pidfd registered there (out of
/// fds or threads): the child is still the caller's. (The registration is
/// made here, on the caller's thread, so no failure can come after the
/// child changed hands.)
pub(crate) fn hand_to_engine(given_up: GivenUp) -> std::io::Result<oneshot::Receiver<()>> {
    let engine = crate::blocking::engine()?;
    let GivenUp {
        pid,
        pidfd,
        group,
        program,
        started,
        cgroup,
        sweep,
        led_group,
    } = given_up;
    let target = {
        let _engine = engine.enter();
        Target::new(pid, Some(pidfd), group, cgroup)?
    };
    let (swept, sweep_over) = oneshot::channel();
    engine.spawn(async move {
        let shared = Shared::new(program, target, started, None);
        if let Some((policy, killed)) = sweep {
            sweep_remaining(&shared, policy, killed).await;
        }
        let _ = swept.send(());
        if !shared.target.is_reaped() {
            if let Err(e) = shared.target.exited().await {
                tracing::warn!(program = %shared.program, pid, error = %e, "waiting for a child given up on failed");
            }
        }
        finish_given_up(&shared, led_group).await;
        shared.target.close();
    });
    Ok(sweep_over)
}
