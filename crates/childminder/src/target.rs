//! The supervised process and its group as a signal and wait target.
//!
//! With a pidfd, every signal and wait names the process itself, never a
//! number that could be recycled. Group signals use
//! `PIDFD_SIGNAL_PROCESS_GROUP` where the kernel has it (6.9+), which keeps
//! working after the leader is reaped; elsewhere they use `kill(-pgid)`, and
//! then the leader is left unreaped until the group is done with, so its
//! zombie holds the group id and no signal can reach a recycled one.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::result::ExitStatus;
use crate::signal::Signal;
use crate::sys;

/// How the child's exit becomes known.
enum Exit {
    /// The pidfd turns readable when the child exits.
    Pidfd(AsyncFd<OwnedFd>),
    /// No pidfd on this kernel: the pid, checked on a timer.
    Pid,
}

/// Interval of the exit check on kernels without pidfd (no event exists).
const PID_POLL: Duration = Duration::from_millis(10);

pub(crate) struct Target {
    pid: u32,
    exit: Exit,
    group: bool,
    /// Whether the zombie has been reaped; guards every pid-based signal so
    /// none can be sent after the reap.
    reaped: Mutex<bool>,
}

impl Target {
    /// Must be called inside a tokio runtime (registers the pidfd).
    pub(crate) fn new(pid: u32, pidfd: Option<OwnedFd>, group: bool) -> io::Result<Target> {
        let exit = match pidfd {
            Some(fd) => Exit::Pidfd(sys::register_pidfd(fd)?),
            None => Exit::Pid,
        };
        Ok(Target {
            pid,
            exit,
            group,
            reaped: Mutex::new(false),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn uses_pidfd(&self) -> bool {
        matches!(self.exit, Exit::Pidfd(_))
    }

    fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.exit {
            Exit::Pidfd(fd) => Some(fd.get_ref().as_fd()),
            Exit::Pid => None,
        }
    }

    /// Signals the child alone. `Ok(false)` when it is already gone (a
    /// no-op, never a signal to whatever now has its pid).
    pub(crate) fn signal_child(&self, sig: Signal) -> io::Result<bool> {
        // The seed's check, made race-free by the pidfd: a child that exits
        // right after it gets the signal as a zombie, which ignores it.
        if self.try_status()?.is_some() {
            return Ok(false);
        }
        let sent = match self.pidfd() {
            Some(fd) => sys::pidfd_signal(fd, sig),
            None => {
                let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
                if *reaped {
                    return Ok(false);
                }
                sys::kill(self.pid as i32, sig.as_raw())
            }
        };
        match sent {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Signals what the escalation targets: the whole group when the child
    /// leads one, else the child.
    pub(crate) fn signal_escalation(&self, sig: Signal) -> io::Result<bool> {
        if !self.group {
            return self.signal_child(sig);
        }
        match self.signal_group(sig.as_raw()) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn signal_group(&self, sig: i32) -> io::Result<()> {
        if let (Some(fd), true) = (self.pidfd(), sys::features().pidfd_group_signal) {
            return sys::pidfd_signal_group(fd, sig);
        }
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if *reaped {
            // The group id may belong to someone else now.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        sys::kill(-(self.pid as i32), sig)
    }

    /// Whether any member of the child's group other than the child itself
    /// is still alive. Only meaningful once the child has exited.
    pub(crate) fn group_has_others(&self) -> io::Result<bool> {
        if !self.group {
            return Ok(false);
        }
        if self.pidfd().is_some() && sys::features().pidfd_group_signal {
            // The unreaped leader would count as a member: reap it first,
            // which is safe because the pidfd keeps naming this group.
            self.reap()?;
            return match self.signal_group(0) {
                Ok(()) => Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
                Err(e) => Err(e),
            };
        }
        Ok(sys::group_has_members_besides(
            self.pid as i32,
            self.pid as i32,
        ))
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
            match &self.exit {
                Exit::Pidfd(fd) => {
                    let mut guard = fd.readable().await?;
                    // The pidfd stays readable once the child has exited,
                    // so clearing cannot lose the edge: the loop re-checks.
                    guard.clear_ready();
                }
                Exit::Pid => tokio::time::sleep(PID_POLL).await,
            }
        }
    }

    /// The exit status if the child has exited, without blocking or reaping.
    pub(crate) fn try_status(&self) -> io::Result<Option<ExitStatus>> {
        if *self.reaped.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(None);
        }
        match self.pidfd() {
            Some(fd) => sys::pidfd_try_wait(fd, false),
            None => sys::pid_try_wait(self.pid, false),
        }
    }

    /// Reaps the child if it has exited. Returns whether it is reaped now.
    pub(crate) fn reap(&self) -> io::Result<bool> {
        let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if *reaped {
            return Ok(true);
        }
        let status = match self.pidfd() {
            Some(fd) => sys::pidfd_try_wait(fd, true)?,
            None => sys::pid_try_wait(self.pid, true)?,
        };
        *reaped = status.is_some();
        Ok(*reaped)
    }

    /// Blocks the thread until the child has exited or `limit` passed. For
    /// the last-resort path only, where no runtime is left to await on.
    pub(crate) fn wait_exit_blocking(&self, limit: Duration) {
        match self.pidfd() {
            Some(fd) => {
                let _ = sys::wait_readable(fd, limit);
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
