//! The supervised process and its group as a signal and wait target.
//!
//! With a pidfd, every signal and wait names the process itself, never a
//! number that could be recycled. Group signals use
//! `PIDFD_SIGNAL_PROCESS_GROUP` where the kernel has it (6.9+), which keeps
//! working after the leader is reaped; elsewhere they use `kill(-pgid)`, and
//! then the leader is left unreaped until the group is done with, so its
//! zombie holds the group id and no signal can reach a recycled one.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::contain::cgroup::Leaf;
use crate::result::{ExitStatus, ResourceUsage};
use crate::signal::Signal;
use crate::sys;

/// Interval of the exit check on kernels without pidfd (no event exists).
const PID_POLL: Duration = Duration::from_millis(10);

pub(crate) struct Target {
    pid: u32,
    uses_pidfd: bool,
    group: bool,
    /// The child's own cgroup: then the escalation reaches its members
    /// instead of the group.
    cgroup: Option<Arc<Leaf>>,
    state: Mutex<State>,
}

/// Every signal, wait and reap runs under this lock, so none can race the
/// reap or the closing of the pidfd.
struct State {
    /// The pidfd, registered with the runtime (it turns readable when the
    /// child exits); `None` without pidfd support, and once closed.
    pidfd: Option<Arc<AsyncFd<OwnedFd>>>,
    /// Whether the zombie has been reaped: no pid-based signal after that.
    reaped: bool,
    /// The exit status, once seen: a reap (from any path) must not lose it.
    exit: Option<ExitStatus>,
    /// What the kernel accounted to the child, read with the exit status.
    usage: Option<ResourceUsage>,
}

impl State {
    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_deref().map(|fd| fd.get_ref().as_fd())
    }
}

fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ESRCH)
}

/// A signal's send, as whether anything received it: ESRCH means nothing
/// was there (`Ok(false)`), not a failure.
pub(crate) fn delivered(sent: io::Result<()>) -> io::Result<bool> {
    match sent {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The escalation's signal to a child that leads a group, once the group
/// was signalled (`to_group`): a child that moved to another group
/// (setpgid) is missed by the group signal, so it is reached through its
/// pidfd (`to_child`), but only when it has (`left_group`), since a second
/// copy of SIGINT means "force" to many programs. `Ok(false)` when neither
/// the group nor the child was there. For every child the escalation
/// signals: the engine's ([`Target`]) and a one-line call's.
pub(crate) fn signal_group_and_leaver(
    to_group: io::Result<()>,
    left_group: impl FnOnce() -> bool,
    to_child: impl FnOnce() -> io::Result<bool>,
) -> io::Result<bool> {
    let to_child = if left_group() { to_child() } else { Ok(false) };
    match to_group {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => to_child,
        Err(e) => Err(e),
    }
}

impl Target {
    /// Must be called inside a tokio runtime (registers the pidfd).
    pub(crate) fn new(
        pid: u32,
        pidfd: Option<OwnedFd>,
        group: bool,
        cgroup: Option<Arc<Leaf>>,
    ) -> io::Result<Target> {
        let uses_pidfd = pidfd.is_some();
        let pidfd = pidfd.map(sys::register_pidfd).transpose()?.map(Arc::new);
        Ok(Target {
            pid,
            uses_pidfd,
            group,
            cgroup,
            state: Mutex::new(State {
                pidfd,
                reaped: false,
                exit: None,
                usage: None,
            }),
        })
    }

    /// A target for a child already reaped through `pidfd` (by the polled
    /// one-line path), for the sweep of what is left of its group. Must be
    /// called inside a tokio runtime, as [`new`](Self::new).
    pub(crate) fn reaped(
        pid: u32,
        pidfd: OwnedFd,
        group: bool,
        exit: ExitStatus,
        usage: Option<ResourceUsage>,
    ) -> io::Result<Target> {
        let target = Target::new(pid, Some(pidfd), group, None)?;
        {
            let mut state = target.state();
            state.reaped = true;
            state.exit = Some(exit);
            state.usage = usage;
        }
        Ok(target)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn uses_pidfd(&self) -> bool {
        self.uses_pidfd
    }

    /// Whether the child leads its own process group.
    pub(crate) fn leads_group(&self) -> bool {
        self.group
    }

    /// The child's own cgroup, with `Command::cgroup`.
    pub(crate) fn cgroup(&self) -> Option<&Leaf> {
        self.cgroup.as_deref()
    }

    /// The cgroup, shared, for the engine to remove once the child it was
    /// handed has exited.
    pub(crate) fn cgroup_shared(&self) -> Option<Arc<Leaf>> {
        self.cgroup.clone()
    }

    /// The child is the engine's now ([`crate::coordinator::hand_to_engine`]),
    /// which reaps it: nothing keyed by its pid may be sent from here any
    /// more (on kernels without group signals through the pidfd, the
    /// group's id could be anyone's once it is reaped).
    pub(crate) fn handed_over(&self) {
        self.state().reaped = true;
    }

    /// Undoes [`handed_over`](Self::handed_over) when the hand-over failed:
    /// no one else reaps the child, which is ours again.
    pub(crate) fn taken_back(&self) {
        self.state().reaped = false;
    }

    /// Signals the child alone. `Ok(false)` when it is already gone (a
    /// no-op, never a signal to whatever now has its pid).
    pub(crate) fn signal_child(&self, sig: Signal) -> io::Result<bool> {
        let mut state = self.state();
        // The seed's check, made race-free by the pidfd (or, without one, by
        // holding the lock the reap takes): a child that exits right after
        // it gets the signal as a zombie, which ignores it.
        if state.reaped || self.status_of(&mut state, false)?.is_some() {
            return Ok(false);
        }
        let sent = match (self.uses_pidfd, state.pidfd()) {
            (true, Some(fd)) => sys::pidfd_signal(fd, sig),
            (true, None) => Err(gone()),
            (false, _) => sys::kill(self.pid as i32, sig.as_raw()),
        };
        delivered(sent)
    }

    /// Signals what the escalation targets: the whole group when the child
    /// leads one, else the child.
    pub(crate) fn signal_escalation(&self, sig: Signal) -> io::Result<bool> {
        if let Some(cgroup) = &self.cgroup {
            // Every member, the child and anything that left its group
            // alike; SIGKILL as cgroup.kill.
            return cgroup.signal_members(sig);
        }
        if !self.group {
            return self.signal_child(sig);
        }
        let to_group = self.signal_group(&self.state(), sig.as_raw());
        signal_group_and_leaver(
            to_group,
            || self.child_left_group(),
            || self.signal_child(sig),
        )
    }

    /// Whether the running child is no longer in the group it was started
    /// to lead. Asked by pid, which is safe while it is unreaped (checked
    /// under the lock the reap takes).
    fn child_left_group(&self) -> bool {
        let mut state = self.state();
        if state.reaped || !matches!(self.status_of(&mut state, false), Ok(None)) {
            return false;
        }
        sys::getpgid(self.pid).is_ok_and(|pgid| pgid != self.pid)
    }

    /// What the handles' `signal_group` does: like
    /// [`signal_escalation`](Self::signal_escalation), but `Ok(false)` once
    /// the child has exited and no live member of its group is left (its
    /// own zombie would otherwise still count).
    pub(crate) fn signal_group_members(&self, sig: Signal) -> io::Result<bool> {
        if let Some(cgroup) = &self.cgroup {
            return cgroup.signal_members(sig);
        }
        let exited = self.state().reaped || self.try_status()?.is_some();
        if self.group && exited && !self.group_has_others()? {
            return Ok(false);
        }
        self.signal_escalation(sig)
    }

    fn signal_group(&self, state: &State, sig: i32) -> io::Result<()> {
        if self.group_via_pidfd() {
            return match state.pidfd() {
                Some(fd) => sys::pidfd_signal_group(fd, sig),
                None => Err(gone()),
            };
        }
        if state.reaped {
            // The group id may belong to someone else now.
            return Err(gone());
        }
        sys::kill(-(self.pid as i32), sig)
    }

    /// Whether any member of the child's group other than the child itself
    /// is still alive. Only meaningful once the child has exited.
    pub(crate) fn group_has_others(&self) -> io::Result<bool> {
        if let Some(cgroup) = &self.cgroup {
            // Zombies are not members: once the child has exited, any
            // member is another process.
            return cgroup.populated();
        }
        if !self.group {
            return Ok(false);
        }
        match self.probe_group_through_pidfd() {
            Some(Ok(false)) => Ok(false),
            Some(Err(e)) => Err(e),
            // Dead members that init has not reaped yet still answer signal
            // 0; only a live one counts. Reading /proc costs a scan, so it is
            // done only when the fast probe says "some" (or cannot be made).
            Some(Ok(true)) | None => Ok(sys::group_has_members_besides(
                self.pid as i32,
                self.pid as i32,
            )),
        }
    }

    /// After the child's exit: true when its group certainly has no other
    /// member (always for no group; through the pidfd on Linux 6.9+, which
    /// reaps the child first). False means "maybe": the teardown's sweep
    /// finds out.
    pub(crate) fn nothing_left_of_group(&self) -> bool {
        if let Some(cgroup) = &self.cgroup {
            return matches!(cgroup.populated(), Ok(false));
        }
        if !self.group {
            return true;
        }
        match self.probe_group_through_pidfd() {
            Some(probe) => matches!(probe, Ok(false)),
            // Before Linux 6.9 the zombie answers signal 0 for the group
            // itself, so only /proc can say that no live member is left (an
            // acceptance run caught `wait` returning with a lone child
            // unreaped, `id()` still `Some`). A group with no live member
            // gains none: nothing in it is left to fork.
            None => !sys::group_has_members_besides(self.pid as i32, self.pid as i32),
        }
    }

    /// Whether group signals go through the pidfd (Linux 6.9+).
    fn group_via_pidfd(&self) -> bool {
        self.uses_pidfd && sys::features().pidfd_group_signal
    }

    /// Once the child has exited: does anything in its group, dead or
    /// alive, still answer signal 0? `None` where the pidfd cannot ask.
    /// Reaps the child first (its zombie would answer), which is safe in
    /// this mode because the pidfd keeps naming the group.
    fn probe_group_through_pidfd(&self) -> Option<io::Result<bool>> {
        if !self.group_via_pidfd() {
            return None;
        }
        match self.reap() {
            Ok(true) => {}
            Ok(false) => return Some(Ok(true)),
            Err(e) => return Some(Err(e)),
        }
        Some(delivered(self.signal_group(&self.state(), 0)))
    }

    /// Waits until the child has exited and returns its status, leaving the
    /// zombie in place.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed until the status is returned.
    pub(crate) async fn exited(&self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            let pidfd = self.state().pidfd.clone();
            match pidfd {
                Some(fd) => {
                    let mut guard = fd.readable().await?;
                    // The pidfd stays readable once the child has exited,
                    // so clearing cannot lose the edge: the loop re-checks.
                    guard.clear_ready();
                }
                None if self.uses_pidfd => return Err(gone()),
                None => tokio::time::sleep(PID_POLL).await,
            }
        }
    }

    /// The exit status if the child has exited, without blocking or reaping.
    pub(crate) fn try_status(&self) -> io::Result<Option<ExitStatus>> {
        self.status_of(&mut self.state(), false)
    }

    /// The exit status if known or now observable, reaping if asked. Once
    /// seen, the status is kept, so whoever reaps first loses nothing.
    fn status_of(&self, state: &mut State, reap: bool) -> io::Result<Option<ExitStatus>> {
        if state.exit.is_some() && (state.reaped || !reap) {
            return Ok(state.exit);
        }
        if state.reaped {
            return Ok(None);
        }
        let status = match (state.pidfd(), self.uses_pidfd) {
            (Some(fd), _) => sys::pidfd_try_wait(fd, reap)?,
            // Closed: nothing more can be learnt without risking the pid.
            (None, true) => None,
            (None, false) => sys::pid_try_wait(self.pid, reap)?,
        };
        if let Some((status, usage)) = status {
            state.exit = Some(status);
            // The reap's figures are the final ones (a zombie's can still
            // grow by its last time slice).
            state.usage = Some(usage);
            if reap {
                state.reaped = true;
                // Its pid may be anyone's now, an escapee's included.
                crate::contain::subreaper::unregister(self.pid);
            }
        }
        Ok(state.exit)
    }

    /// A copy of the pidfd (`None` without one, or once closed), for a
    /// registration elsewhere ([`crate::coordinator::hand_to_engine`]).
    pub(crate) fn pidfd_copy(&self) -> Option<io::Result<OwnedFd>> {
        self.state().pidfd().map(|fd| fd.try_clone_to_owned())
    }

    /// Whether the child has been reaped (its pid may be reused since).
    pub(crate) fn is_reaped(&self) -> bool {
        self.state().reaped
    }

    /// What the kernel accounted to the child, once its exit was seen.
    pub(crate) fn resource_usage(&self) -> Option<ResourceUsage> {
        self.state().usage
    }

    /// Reaps the child if it has exited. Returns whether it is reaped now.
    pub(crate) fn reap(&self) -> io::Result<bool> {
        let mut state = self.state();
        if !state.reaped {
            self.status_of(&mut state, true)?;
        }
        Ok(state.reaped)
    }

    /// Closes the pidfd (after the reap), so no descriptor outlives the
    /// supervision; the handles then treat the child as gone.
    pub(crate) fn close(&self) {
        let pidfd = self.state().pidfd.take();
        drop(pidfd);
    }

    /// Blocks the thread until the child has exited or `limit` passed. For
    /// the last-resort path only, where no runtime is left to await on.
    pub(crate) fn wait_exit_blocking(&self, limit: Duration) {
        let pidfd = self.state().pidfd.clone();
        match pidfd {
            Some(fd) => {
                let _ = sys::wait_readable(fd.get_ref().as_fd(), limit);
            }
            None => {
                let end = std::time::Instant::now() + limit;
                while matches!(self.try_status(), Ok(None)) && std::time::Instant::now() < end {
                    std::thread::sleep(PID_POLL);
                }
            }
        }
    }
}

/// A handle's own reference to the pidfd, lent out through `AsFd`: it
/// keeps the descriptor open for the handle's life, even after the
/// coordinator has closed its copy, so a borrowed fd never dangles.
pub(crate) struct PidfdLease(Option<Arc<AsyncFd<OwnedFd>>>);

impl PidfdLease {
    pub(crate) fn of(target: &Target) -> PidfdLease {
        PidfdLease(target.state().pidfd.clone())
    }

    pub(crate) fn borrow(&self) -> Option<BorrowedFd<'_>> {
        self.0.as_deref().map(|fd| fd.get_ref().as_fd())
    }

    /// # Panics
    ///
    /// Without pidfd support.
    pub(crate) fn expect_fd(&self) -> BorrowedFd<'_> {
        self.borrow().expect(
            "childminder: this kernel has no pidfd (Linux 5.4+); use pidfd() instead of as_fd()",
        )
    }
}
