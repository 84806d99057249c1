//! The terminal handed to the command's process group, and Ctrl-Z.
//!
//! When the command leads its own group and a terminal is handed over,
//! the library makes that group the terminal's foreground group
//! ([`childminder::Command::terminal_foreground`]) and gives the terminal
//! back when the command exits. What a shell also does for a foreground
//! job is left to childminder: when the command is stopped (Ctrl-Z, which
//! the terminal sends to the command's group, not to childminder), take
//! the terminal back and stop childminder's own group, so the shell sees
//! its job stopped; when continued (`fg`), give the terminal to the
//! command's group again and continue it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use childminder::{Child, Signal};
use tokio::signal::unix::{SignalKind, signal};

use crate::sys;

/// The terminal the command's group holds, and the SIGCHLD stream that
/// tells of its stops.
pub struct Foreground {
    tty: OwnedFd,
    command_group: libc::pid_t,
    own_group: libc::pid_t,
    child_events: tokio::signal::unix::Signal,
    /// A stop before `child_events` existed sent a SIGCHLD nobody caught:
    /// the first wait asks for a stop report before waiting for a signal.
    checked_before_signals: bool,
}

impl Foreground {
    /// The terminal among our fds 0-2 whose foreground group is now the
    /// command's (`pid`, the leader of its group), if the library gave it
    /// one.
    ///
    /// # Errors
    ///
    /// When the terminal's fd cannot be copied or SIGCHLD cannot be caught
    /// (out of fds).
    pub fn of_command(pid: u32) -> io::Result<Option<Foreground>> {
        let command_group = pid as libc::pid_t;
        let Some(fd) = (0..3)
            .filter_map(sys::stdio_fd)
            .find(|&fd| sys::foreground_group(fd) == Some(command_group))
        else {
            return Ok(None);
        };
        Ok(Some(Foreground {
            tty: sys::dup(fd)?,
            command_group,
            own_group: sys::own_group(),
            child_events: signal(SignalKind::child())?,
            checked_before_signals: false,
        }))
    }

    /// Waits until the command has been stopped (Ctrl-Z, SIGTTIN, SIGSTOP).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn stopped(&mut self) {
        // Caught by CI under load: a Ctrl-Z between the spawn and the
        // handler's installation was lost, and childminder never stopped.
        if !self.checked_before_signals {
            self.checked_before_signals = true;
            if sys::take_stop_report(self.command_group) {
                return;
            }
        }
        loop {
            self.child_events.recv().await;
            if sys::take_stop_report(self.command_group) {
                return;
            }
        }
    }

    /// The command has stopped: take the terminal back and stop our own
    /// group (childminder and its shell job) as the terminal would have;
    /// when continued, hand the terminal back if the shell gave it to us
    /// (`fg`; after `bg` it stays the shell's) and continue the command.
    pub fn suspend_with(&self, child: &Child) {
        sys::give_terminal(self.tty.as_fd(), Some(self.command_group), self.own_group);
        sys::stop_own_group(self.own_group);
        // Continued.
        sys::give_terminal(self.tty.as_fd(), Some(self.own_group), self.command_group);
        let _ = child.signal_group(Signal::CONT);
    }
}
