//! The child of a one-line call driven on the caller's thread, from its
//! spawn until it is reaped and what is left of its group is swept, for
//! both drivers ([`super::polled`], [`super::awaited`]). Dropped before
//! that (an error, a panic, a dropped future), it kills the group and the
//! child and reaps: nothing outlives the call.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

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
use crate::target::Target;

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
        Exit { status, usage, at }
    }

    /// Signals the group (or the child alone, without one).
    pub(super) fn signal_escalation(&self, signal: Signal) -> io::Result<()> {
        if self.group {
            sys::pidfd_signal_group(self.pidfd.as_fd(), signal.as_raw())
        } else {
            sys::pidfd_signal(self.pidfd.as_fd(), signal)
        }
    }

    /// The result of an observation that has ended at `ended_at` (the
    /// child reaped, or given up on by the escalation), its pipes closed; a
    /// cut-off kills the group (whatever held the pipes open).
    pub(super) fn publish<P: AsFd>(
        &self,
        cmd: &Command,
        observation: &mut Observation<'_, P>,
        deadline: &Deadline,
        started: Instant,
        ended_at: Instant,
    ) -> SupervisionResult {
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

    /// After the reap: whether anything of the group, dead or alive, still
    /// answers (a dead member not yet reaped by its parent counts; the
    /// sweep tells them apart).
    pub(super) fn group_has_others(&self) -> bool {
        self.group && sys::pidfd_signal_group(self.pidfd.as_fd(), 0).is_ok()
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

    /// Hands what is left of the group to the runtime path's sweep (TERM,
    /// a grace period, KILL) on the current runtime: it is the rare case,
    /// and the sweep's logic stays in one place.
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
        let registering = "registering the child with the runtime";
        // The sweep's own copy; ours is closed when `self` goes.
        let pidfd = self
            .pidfd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| io_error(&result.program, registering, e))?;
        let exit = result
            .exit
            .expect("a one-line call publishes only an observed exit");
        let target = Target::reaped(self.pid, pidfd, self.group, exit, result.resource_usage)
            .map_err(|e| io_error(&result.program, registering, e))?;
        let shared = Shared::new(result.program.clone(), target, started, None);
        let policy = Policy {
            grace: cmd.grace_period,
            deadline: None,
            term_signal: cmd.term_signal,
        };
        sweep_remaining(&shared, policy).await;
        shared.target.close();
        Ok(())
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
