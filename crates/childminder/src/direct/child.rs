//! The child of a one-line call driven on the caller's thread, from its
//! spawn until it is reaped and what is left of its group is swept, for
//! both drivers ([`super::polled`], [`super::awaited`]). Dropped before
//! that (an error, a panic, a dropped future), it kills the group and the
//! child and reaps: nothing outlives the call.

use std::io;
#[cfg(test)]
use std::os::fd::BorrowedFd;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::command::{Command, Stdio};
use crate::contain::Containment;
use crate::contain::subreaper;
use crate::coordinator::{
    GROUP_POLL_MAX, GROUP_POLL_MIN, GivenUp, Policy, hand_to_engine, sweep_remaining,
};
use crate::error::Error;
use crate::result::SupervisionResult;
use crate::shared::Shared;
use crate::signal::Signal;
use crate::spawn::{Spawned, spawn};
use crate::sys;
use crate::target::{Target, delivered, signal_group_and_leaver};

use super::deadline::Deadline;
use super::observe::{Exit, Observation};

/// A child just spawned for a one-line call driven by readiness, before
/// its driver takes it: what `spawn` gave, with stdin already closed (what
/// `stdin::empty()` does; a one-line call leaves none piped).
pub(super) struct Spawn {
    pub pid: u32,
    pub pidfd: OwnedFd,
    /// stdout's and stderr's read ends, when piped.
    pub outputs: [Option<OwnedFd>; 2],
    pub started: Instant,
}

/// Spawns `cmd` for a driver of [`super::by_readiness`] calls.
///
/// # Errors
///
/// As [`spawn`].
pub(super) fn spawn_direct(cmd: &Command, stdio: &[Stdio; 3]) -> Result<Spawn, Error> {
    let Spawned {
        pid,
        pidfd,
        stdin,
        stdout,
        stderr,
        started,
        ..
    } = spawn(cmd, stdio)?;
    drop(stdin);
    Ok(Spawn {
        pid,
        pidfd: pidfd.expect("by_readiness() checked for pidfd support"),
        outputs: [stdout, stderr],
        started,
    })
}

/// The child; `F` holds its pidfd (an `OwnedFd`, or one registered with
/// the caller's runtime).
pub(super) struct Child<F: AsFd> {
    pub pid: u32,
    pub pidfd: F,
    group: bool,
    program: String,
    started: Instant,
    reaped: bool,
    /// What the reap found.
    exit: Option<Exit>,
    /// The escalation gave up on it: it survived SIGKILL a second already.
    pub gave_up: bool,
    /// Reaped and nothing left of the group, or the engine's: nothing for
    /// `Drop` to do.
    pub settled: bool,
}

impl<F: AsFd> Child<F> {
    /// The child of `cmd`, spawned at `started`.
    pub(super) fn new(pid: u32, pidfd: F, cmd: &Command, started: Instant) -> Self {
        Child {
            pid,
            pidfd,
            group: cmd.process_group,
            program: cmd.program_lossy(),
            started,
            reaped: false,
            exit: None,
            gave_up: false,
            settled: false,
        }
    }

    /// Reaps the child if it has exited, with what the kernel accounted
    /// to it. Reaping at once is safe: the pidfd keeps naming the group
    /// (Linux 6.9+), so no signal can reach a recycled pid or group.
    pub(super) fn reap(&mut self) -> io::Result<Option<Exit>> {
        let exited = sys::pidfd_try_wait(self.pidfd.as_fd(), true)?;
        Ok(exited.map(|(status, usage)| self.mark_reaped(status, usage)))
    }

    /// [`reap`](Self::reap) for a child the engine may have reaped (a
    /// hand-over that failed half-way): whether it is reaped now, by
    /// either.
    pub(super) fn reap_unless_reaped(&mut self) -> io::Result<bool> {
        match self.reap() {
            Ok(exit) => Ok(exit.is_some()),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                self.reaped = true;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Blocks until the child exits, and reaps it (see
    /// [`reap_unless_reaped`](Self::reap_unless_reaped)). Through the
    /// pidfd, which cannot name another process.
    pub(super) fn wait_through_pidfd(&mut self) -> io::Result<()> {
        while !self.reap_unless_reaped()? {
            sys::wait_readable(self.pidfd.as_fd(), Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Blocks until the child exits, and reaps it. By pid, as std waits: it
    /// is our own unreaped child, so the pid is still its own (the pidfd is
    /// non-blocking, for the runtime path).
    pub(super) fn wait(&mut self) -> io::Result<Exit> {
        let (status, usage) = sys::pid_wait_blocking(self.pid)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
        Ok(self.mark_reaped(status, usage))
    }

    fn mark_reaped(
        &mut self,
        status: crate::result::ExitStatus,
        usage: crate::result::ResourceUsage,
    ) -> Exit {
        let at = Instant::now();
        self.reaped = true;
        // Its pid may be anyone's now, an escapee's included.
        subreaper::unregister(self.pid);
        let exit = Exit { status, usage, at };
        self.exit = Some(exit);
        exit
    }

    /// Signals the group (or the child alone, without one), and the child
    /// itself when it has left the group, as the engine does
    /// ([`signal_group_and_leaver`]). `Ok(false)` when nothing was there to
    /// receive it.
    pub(super) fn signal_escalation(&self, signal: Signal) -> io::Result<bool> {
        let to_child = || delivered(sys::pidfd_signal(self.pidfd.as_fd(), signal));
        if !self.group {
            return to_child();
        }
        let to_group = sys::pidfd_signal_group(self.pidfd.as_fd(), signal.as_raw());
        signal_group_and_leaver(to_group, || self.left_group(), to_child)
    }

    /// Whether the child, running, is no longer in the group it was
    /// started to lead. Asked by pid, which is still its own while it is
    /// unreaped (only this call reaps it); an exited child is not asked,
    /// as the engine does not signal a zombie.
    fn left_group(&self) -> bool {
        !self.reaped
            && matches!(sys::pidfd_try_wait(self.pidfd.as_fd(), false), Ok(None))
            && sys::getpgid(self.pid).is_ok_and(|pgid| pgid != self.pid)
    }

    /// The result of an observation that is over (the child reaped, or
    /// given up on by the escalation, and its output read or cut off; the
    /// driver drops it next, closing what is left open); a cut-off kills
    /// the group (whatever held the pipes open). A child given up on whose
    /// exit has come since is reaped now, and reported as exited.
    pub(super) fn publish<P: AsFd>(
        &mut self,
        observation: &mut Observation<'_, P>,
        deadline: &Deadline,
    ) -> SupervisionResult {
        if observation.exit().is_none() {
            if let Ok(Some(exit)) = self.reap() {
                observation.exited(exit);
            }
        }
        let started = self.started;
        let ended_at = observation
            .ended_at()
            .expect("an observation is over once the child's end was seen");
        let exit = observation.exit();
        let program = self.program.clone();
        let cut_off = observation.cut_off();
        if cut_off {
            tracing::warn!(
                program = %program,
                pid = self.pid,
                "output still open a grace period after the child's end: closing the pipes and killing the group"
            );
            let _ = self.signal_escalation(Signal::KILL);
        }
        if let Some(exit) = exit {
            tracing::debug!(program = %program, pid = self.pid, status = %exit.status, "child exited");
        }
        let report = deadline.escalation().report(started, exit.is_some());
        let result = SupervisionResult {
            program,
            pid: self.pid,
            exit: exit.map(|e| e.status),
            termination: report.termination,
            escalation_cause: report.cause,
            term_sent_after: report.term_sent_after,
            kill_sent_after: report.kill_sent_after,
            runtime: ended_at - started,
            supervisor_error: None,
            worker_errors: observation.take_worker_errors(),
            output_cut_off: cut_off,
            used_pidfd: true,
            containment: Containment::default(),
            resource_usage: exit.map(|e| e.usage),
        };
        tracing::debug!(
            program = %result.program,
            pid = self.pid,
            exit = ?result.exit,
            termination = result.termination.as_str(),
            runtime_ms = result.runtime.as_millis() as u64,
            "result published"
        );
        result
    }

    /// Whether anything of the group, dead or alive, still answers (a dead
    /// member not yet reaped by its parent counts; the sweep tells them
    /// apart). Asked after the reap, else the child itself would answer.
    fn group_has_others(&self) -> bool {
        self.group && sys::pidfd_signal_group(self.pidfd.as_fd(), 0).is_ok()
    }

    /// Whether the child was reaped and something of its group is left,
    /// for [`sweep`](Self::sweep).
    pub(super) fn reaped_with_others_left(&self) -> bool {
        self.exit.is_some() && self.group_has_others()
    }

    /// Whether a live member is left of the group: dead ones not yet reaped
    /// still answer the probe, `/proc` tells them apart (or says "maybe"
    /// when it cannot be read).
    fn group_has_live_others(&self) -> bool {
        let leader = self.pid as i32;
        self.group_has_others() && sys::group_has_members_besides(leader, leader)
    }

    /// SIGKILL to the group, through the pidfd (no fd or runtime needed),
    /// for when it cannot be swept with a grace period; then the pauses to
    /// wait, on a backing-off interval as the sweep's, while a live member
    /// is left, for a second at most (no event says "the group is empty").
    pub(super) fn kill_group(&self) -> impl Iterator<Item = Duration> + '_ {
        let _ = self.signal_escalation(Signal::KILL);
        let until = Instant::now() + Duration::from_secs(1);
        let mut pause = GROUP_POLL_MIN;
        std::iter::from_fn(move || {
            let wait = self.group_has_live_others() && Instant::now() < until;
            let this = pause;
            pause = (pause * 2).min(GROUP_POLL_MAX);
            wait.then_some(this)
        })
    }

    /// Hands what is left of the group of a reaped child to the runtime
    /// path's sweep (TERM, a grace period, KILL; KILL at once when the
    /// escalation sent it) on the current runtime: it is the rare case, and
    /// the sweep's logic stays in one place.
    ///
    /// # Errors
    ///
    /// Out of fds or memory for its registration with the runtime.
    pub(super) async fn sweep(
        &self,
        cmd: &Command,
        result: &SupervisionResult,
    ) -> Result<(), Error> {
        let exit = self
            .exit
            .expect("only a reaped child's group is swept in the call");
        let pidfd = self
            .pidfd_copy()
            .map_err(|e| io_error(&result.program, REGISTERING, e))?;
        let target = Target::reaped(self.pid, pidfd, self.group, exit.status, Some(exit.usage))
            .map_err(|e| io_error(&result.program, REGISTERING, e))?;
        let shared = Shared::new(result.program.clone(), target, self.started, None);
        let killed = result.kill_sent_after.is_some();
        sweep_remaining(&shared, sweep_policy(cmd), killed).await;
        shared.target.close();
        Ok(())
    }

    /// A copy of the pidfd for a target of the runtime path; ours is closed
    /// when `self` goes.
    fn pidfd_copy(&self) -> io::Result<OwnedFd> {
        self.pidfd.as_fd().try_clone_to_owned()
    }

    /// Hands a child the escalation gave up on (unreaped: stuck in the
    /// kernel past SIGKILL) to the engine, as the runtime path's
    /// coordinator does ([`hand_to_engine`]): what is left of its group is
    /// swept there (from KILL, when the escalation sent it: `killed`), and
    /// the child is reaped in the background whenever it exits. The
    /// receiver resolves once the sweep is over (the call waits for that,
    /// not for the exit). From a successful return on the child is the
    /// engine's: dropping `self` (a cancelled call) leaves it alone.
    ///
    /// # Errors
    ///
    /// The engine cannot be started, or the pidfd copied or registered
    /// there (out of fds or threads): the child is still the caller's.
    pub(super) fn hand_over(
        &mut self,
        cmd: &Command,
        killed: bool,
    ) -> io::Result<oneshot::Receiver<()>> {
        let sweep_over = hand_to_engine(self.given_up(Some((sweep_policy(cmd), killed)))?)?;
        self.settled = true;
        Ok(sweep_over)
    }

    /// The child, as [`hand_to_engine`] takes it.
    fn given_up(&self, sweep: Option<(Policy, bool)>) -> io::Result<GivenUp> {
        Ok(GivenUp {
            pid: self.pid,
            pidfd: self.pidfd_copy()?,
            group: self.group,
            program: self.program.clone(),
            started: self.started,
            // The readiness paths take no cgroup.
            cgroup: None,
            sweep,
            led_group: self.group,
        })
    }

    /// Whether the engine kept the child [`hand_over`](Self::hand_over)
    /// gave it (`swept`: the hand-over's error, or the engine's answer
    /// through [`engine_answer`]). If not (logged), the child is the
    /// caller's again, to wait for through its pidfd (the engine may have
    /// reaped it before it failed).
    pub(super) fn handed_over(&mut self, swept: io::Result<()>) -> bool {
        match swept {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(program = %self.program, pid = self.pid, error = %e, "the engine could not keep the child given up on: waiting for its exit");
                self.settled = false;
                false
            }
        }
    }
}

pub(super) const REGISTERING: &str = "registering the child with the runtime";

/// The policy of a sweep of the group after the child's end: the command's
/// grace period and first signal, no deadline.
fn sweep_policy(cmd: &Command) -> Policy {
    Policy {
        grace: cmd.grace_period,
        deadline: None,
        term_signal: cmd.term_signal,
    }
}

/// An I/O error of the call running `program`.
pub(super) fn io_error(program: &str, context: &'static str, source: io::Error) -> Error {
    Error::Io {
        program: program.to_owned(),
        context,
        source,
    }
}

impl<F: AsFd> Drop for Child<F> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // After the reap too: the pidfd still names the group.
        let _ = self.signal_escalation(Signal::KILL);
        if !self.reaped {
            // One already given up on is not waited for a second time.
            if !self.gave_up {
                let _ = sys::pidfd_signal(self.pidfd.as_fd(), Signal::KILL);
                let _ = sys::wait_readable(self.pidfd.as_fd(), Duration::from_secs(1));
            }
            if let Ok(None) = self.reap() {
                // Alive a second after SIGKILL (stuck in the kernel): the
                // engine reaps it whenever it exits.
                let handed = self.given_up(None).and_then(hand_to_engine);
                if let Err(e) = handed {
                    tracing::warn!(program = %self.program, pid = self.pid, error = %e, "cannot hand a child stuck past SIGKILL to the engine: it stays a zombie once it exits");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::engine_answer;

    /// Whether `pid` is still our child, dead or alive (not yet reaped).
    fn unreaped(pidfd: BorrowedFd<'_>) -> bool {
        sys::pidfd_try_wait(pidfd, false).is_ok()
    }

    /// `program args` spawned (in a group of its own with `group`), its
    /// stdout piped, blocking.
    fn child_of(program: &str, args: &[&str], group: bool) -> (Child<OwnedFd>, OwnedFd) {
        let mut cmd = Command::new(program);
        cmd.args(args).process_group(group);
        let spawn = spawn_direct(&cmd, &[Stdio::Null, Stdio::Piped, Stdio::Null]).unwrap();
        let [stdout, _] = spawn.outputs;
        let stdout = stdout.unwrap();
        sys::set_blocking(stdout.as_fd()).unwrap();
        (
            Child::new(spawn.pid, spawn.pidfd, &cmd, spawn.started),
            stdout,
        )
    }

    /// The child's first line (its handshake).
    fn first_line(stdout: OwnedFd) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(std::fs::File::from(stdout))
            .read_line(&mut line)
            .unwrap();
        line
    }

    /// Kills the child and waits for its exit, unreaped.
    fn kill_and_wait(child: &Child<OwnedFd>) {
        sys::pidfd_signal(child.pidfd.as_fd(), Signal::KILL).unwrap();
        assert!(sys::wait_readable(child.pidfd.as_fd(), Duration::from_secs(10)).unwrap());
    }

    #[test]
    fn a_child_in_its_group_has_not_left_it() {
        let (mut child, _stdout) = child_of("sleep", &["30"], true);
        assert!(!child.left_group());
        kill_and_wait(&child);
        assert!(!child.left_group());
        child.reap().unwrap().unwrap();
        assert!(!child.left_group());
        // Nothing of the group is left to signal.
        assert!(!child.signal_escalation(Signal::KILL).unwrap());
        child.settled = true;
    }

    #[test]
    fn a_child_that_left_its_group_is_signalled_itself_until_it_exits() {
        let (mut child, stdout) = child_of(
            "python3",
            &[
                "-c",
                "import os, time\n\
                 os.setpgid(0, os.getpgid(os.getppid()))\n\
                 print('ready', flush=True)\n\
                 time.sleep(30)",
            ],
            true,
        );
        assert_eq!(first_line(stdout), "ready\n");
        assert!(child.left_group());
        // Its own group is empty: only the pidfd reaches it.
        assert!(child.signal_escalation(Signal::KILL).unwrap());
        assert!(sys::wait_readable(child.pidfd.as_fd(), Duration::from_secs(10)).unwrap());
        // A zombie is not signalled (nor asked by pid).
        assert!(!child.left_group());
        assert!(!child.signal_escalation(Signal::KILL).unwrap());
        child.reap().unwrap().unwrap();
        assert!(!child.left_group());
        child.settled = true;
    }

    #[test]
    fn a_child_without_a_group_of_its_own_is_signalled_alone_until_it_is_reaped() {
        let (mut child, _stdout) = child_of("sleep", &["30"], false);
        assert!(child.signal_escalation(Signal::KILL).unwrap());
        assert!(sys::wait_readable(child.pidfd.as_fd(), Duration::from_secs(10)).unwrap());
        child.reap().unwrap().unwrap();
        assert!(!child.signal_escalation(Signal::KILL).unwrap());
        child.settled = true;
    }

    #[test]
    fn a_hand_over_the_engine_could_not_keep_leaves_the_child_to_wait_for() {
        let (mut child, _stdout) = child_of("sh", &["-c", "sleep 0.2"], true);
        // As after `hand_over`, whose task then failed.
        child.settled = true;
        assert!(!child.handed_over(Err(io::Error::other("registration failed"))));
        assert!(!child.settled);
        // Blocks until the exit (200 ms from the spawn), and reaps it.
        child.wait_through_pidfd().unwrap();
        assert!(!unreaped(child.pidfd.as_fd()));
        child.settled = true;
    }

    #[test]
    fn a_child_reaped_by_the_engine_counts_as_reaped() {
        let (mut child, _stdout) = child_of("true", &[], true);
        let engines = child.pidfd.try_clone().unwrap();
        assert!(sys::wait_readable(engines.as_fd(), Duration::from_secs(10)).unwrap());
        assert!(
            sys::pidfd_try_wait(engines.as_fd(), true)
                .unwrap()
                .is_some()
        );
        assert!(child.reap_unless_reaped().unwrap());
        child.wait_through_pidfd().unwrap();
        child.settled = true;
    }

    #[test]
    fn an_engine_task_that_ended_without_an_answer_is_a_failed_hand_over() {
        let (answer, received) = oneshot::channel::<()>();
        drop(answer);
        assert!(engine_answer(received.blocking_recv()).is_err());
        let (answer, received) = oneshot::channel();
        answer.send(()).unwrap();
        assert!(engine_answer(received.blocking_recv()).is_ok());
    }

    #[test]
    fn a_child_handed_over_is_reaped_by_the_engine_whenever_it_exits() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let spawn = spawn_direct(&cmd, &[Stdio::Null, Stdio::Null, Stdio::Null]).unwrap();
        let watch = spawn.pidfd.try_clone().unwrap();
        let mut child = Child::new(spawn.pid, spawn.pidfd, &cmd, spawn.started);
        let sweep_over = child.hand_over(&cmd, false).unwrap();
        assert!(child.handed_over(engine_answer(sweep_over.blocking_recv())));
        // The sweep spared the child itself, and dropping ours leaves it
        // alone: it is the engine's, alive until it exits.
        drop(child);
        assert!(matches!(
            sys::pidfd_try_wait(watch.as_fd(), false),
            Ok(None)
        ));
        sys::pidfd_signal(watch.as_fd(), Signal::KILL).unwrap();
        // No event says "reaped by someone else": look, for 10 s at most.
        let until = Instant::now() + Duration::from_secs(10);
        while unreaped(watch.as_fd()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !unreaped(watch.as_fd()),
            "the engine did not reap the child"
        );
    }
}
