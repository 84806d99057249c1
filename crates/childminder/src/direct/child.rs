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
use crate::coordinator::{GROUP_POLL_MAX, GROUP_POLL_MIN, Policy, sweep_remaining};
use crate::error::Error;
use crate::result::SupervisionResult;
use crate::shared::Shared;
use crate::signal::Signal;
use crate::spawn::{Spawned, spawn};
use crate::sys;
use crate::target::{Target, signal_group_and_leaver};

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
    reaped: bool,
    /// What the reap found.
    exit: Option<Exit>,
    /// Reaped and nothing left of the group: nothing for `Drop` to do.
    pub settled: bool,
}

impl<F: AsFd> Child<F> {
    pub(super) fn new(pid: u32, pidfd: F, group: bool) -> Self {
        Child {
            pid,
            pidfd,
            group,
            reaped: false,
            exit: None,
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
        let to_child = || match sys::pidfd_signal(self.pidfd.as_fd(), signal) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        };
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
    /// given up on by the escalation, and its output read or cut off), its
    /// pipes closed; a cut-off kills the group (whatever held the pipes
    /// open).
    pub(super) fn publish<P: AsFd>(
        &self,
        cmd: &Command,
        observation: &mut Observation<'_, P>,
        deadline: &Deadline,
        started: Instant,
    ) -> SupervisionResult {
        let ended_at = observation
            .ended_at()
            .expect("an observation is over once the child's end was seen");
        let exit = observation.exit();
        observation.close();
        let program = cmd.program_lossy();
        let cut_off = observation.cut_off();
        if cut_off {
            tracing::warn!(
                program = %program,
                pid = self.pid,
                "output still open a grace period after the child's exit: closing the pipes and killing the group"
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
    /// path's sweep (TERM, a grace period, KILL) on the current runtime: it
    /// is the rare case, and the sweep's logic stays in one place.
    ///
    /// # Errors
    ///
    /// Out of fds or memory for its registration with the runtime.
    pub(super) async fn sweep(
        &self,
        cmd: &Command,
        result: &SupervisionResult,
        started: Instant,
    ) -> Result<(), Error> {
        let exit = self
            .exit
            .expect("only a reaped child's group is swept in the call");
        let pidfd = self
            .pidfd_copy()
            .map_err(|e| io_error(&result.program, REGISTERING, e))?;
        let target = Target::reaped(self.pid, pidfd, self.group, exit.status, Some(exit.usage))
            .map_err(|e| io_error(&result.program, REGISTERING, e))?;
        let shared = Shared::new(result.program.clone(), target, started, None);
        sweep_remaining(&shared, sweep_policy(cmd)).await;
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
    /// coordinator keeps one: what is left of its group is swept there, and
    /// the child is reaped in the background whenever it exits. The
    /// receiver resolves once the sweep is over (the call waits for that,
    /// not for the exit); from then on the child is the engine's and
    /// dropping `self` leaves it alone.
    ///
    /// # Errors
    ///
    /// The engine cannot be started or the pidfd copied (out of fds or
    /// threads), or, through the receiver, the pidfd registered there: the
    /// caller then waits for the exit itself.
    pub(super) fn hand_over(
        &mut self,
        cmd: &Command,
        program: &str,
        started: Instant,
    ) -> io::Result<oneshot::Receiver<io::Result<()>>> {
        let engine = crate::blocking::engine()?;
        let pidfd = self.pidfd_copy()?;
        let (swept, sweep_over) = oneshot::channel();
        let (pid, group, policy) = (self.pid, self.group, sweep_policy(cmd));
        let program = program.to_owned();
        engine.spawn(async move {
            let target = match Target::new(pid, Some(pidfd), group, None) {
                Ok(target) => target,
                Err(e) => {
                    let _ = swept.send(Err(e));
                    return;
                }
            };
            let shared = Shared::new(program, target, started, None);
            sweep_remaining(&shared, policy).await;
            let _ = swept.send(Ok(()));
            if !shared.target.is_reaped() {
                if let Err(e) = shared.target.exited().await {
                    tracing::warn!(program = %shared.program, pid, error = %e, "waiting for a child given up on failed");
                }
                if let Err(e) = shared.target.reap() {
                    tracing::warn!(program = %shared.program, pid, error = %e, "reaping the child failed");
                }
            }
            shared.target.close();
        });
        Ok(sweep_over)
    }

    /// Whether [`hand_over`](Self::hand_over) succeeded (`swept`): then the
    /// child is the engine's, and nothing is left for `Drop` to do; else
    /// (logged) the caller waits for the exit itself.
    pub(super) fn handed_over(&mut self, swept: io::Result<()>, program: &str) -> bool {
        match swept {
            Ok(()) => {
                self.reaped = true;
                self.settled = true;
                true
            }
            Err(e) => {
                tracing::warn!(program, pid = self.pid, error = %e, "cannot hand the child given up on to the engine: waiting for its exit");
                false
            }
        }
    }
}

const REGISTERING: &str = "registering the child with the runtime";

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
            let _ = sys::pidfd_signal(self.pidfd.as_fd(), Signal::KILL);
            let _ = sys::wait_readable(self.pidfd.as_fd(), Duration::from_secs(1));
            let _ = self.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is still our child, dead or alive (not yet reaped).
    fn unreaped(pidfd: BorrowedFd<'_>) -> bool {
        sys::pidfd_try_wait(pidfd, false).is_ok()
    }

    #[test]
    fn a_child_handed_over_is_reaped_by_the_engine_whenever_it_exits() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let spawn = spawn_direct(&cmd, &[Stdio::Null, Stdio::Null, Stdio::Null]).unwrap();
        let watch = spawn.pidfd.try_clone().unwrap();
        let mut child = Child::new(spawn.pid, spawn.pidfd, true);
        let sweep_over = child.hand_over(&cmd, "sleep", spawn.started).unwrap();
        let swept = sweep_over.blocking_recv().unwrap();
        assert!(child.handed_over(swept, "sleep"));
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
