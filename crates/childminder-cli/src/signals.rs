//! The signals childminder receives, and what each one means.
//!
//! As `childminder init` ([`Role::Init`]) every signal of [`init_forwarded`]
//! is forwarded to the command's group as it is (the command decides what
//! it means, as under tini), and SIGCHLD reaps every orphan that has
//! exited, so no zombie accumulates.
//!
//! As `childminder run` ([`Role::Run`]) every catchable signal has a
//! defined meaning (the README's table):
//!
//! - SIGALRM is "the deadline, now", as GNU `timeout` takes it: the
//!   escalation starts with the first signal (`-s`) and the exit status is
//!   124.
//! - SIGINT, SIGTERM, SIGHUP and SIGQUIT ask the command to end: the first
//!   one starts the escalation with that signal; a later SIGINT or SIGTERM
//!   kills at once; a later SIGHUP or SIGQUIT is passed on as it is.
//! - Every other catchable signal (USR1, USR2, WINCH, CONT, the real-time
//!   signals, ...) is passed on to the command's process group (the command
//!   alone with `--no-group`), as tini and dumb-init do; childminder stays
//!   alive.
//! - Not caught, so they keep their default meaning for childminder itself
//!   ([`NOT_CAUGHT`]): SIGKILL and SIGSTOP (they cannot be); SIGCHLD
//!   (childminder's own children; the command's exit is seen through its
//!   pidfd); SIGTSTP, SIGTTIN and SIGTTOU (job control of childminder
//!   itself: the terminal stops childminder); SIGPIPE (childminder ignores
//!   it for itself, so a closed reader is an error it can handle); and the
//!   faults SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGSYS (a fault in
//!   childminder must end it, not be passed on).
//! - A signal that was ignored when childminder started (`nohup`, a
//!   background job of a non-interactive shell) stays ignored, as shells do.
//!
//! Each received signal is recorded (`signals_received` in the report).
//! The policy ([`Forwarding::decide`], [`caught_signals`]) does not care
//! how signals arrive. They arrive on a signalfd: the caught signals are
//! blocked (one `pthread_sigmask`, before any other thread exists) and read
//! by the event loop on childminder's one thread, with no handler and no
//! thread of their own. [`Receiver::recv`] yields each received signal,
//! and the run loop applies [`Forwarding`].

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use childminder::{Child, Signal};
use tokio::io::unix::AsyncFd;

use crate::sys;

/// The signals childminder never catches: they keep their default meaning
/// for childminder itself (see the module documentation for why).
pub const NOT_CAUGHT: [i32; 14] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGCHLD,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGPIPE,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
    // glibc keeps 32 and 33 (below SIGRTMIN) for its threads.
    32,
];

/// What `init` forwards to the command's group as it is, as tini does:
/// every signal `run` catches ([`caught_signals`]: the real-time signals
/// and SIGABRT included), and SIGTSTP, which stops an init's command rather
/// than the init. Not PID 1, a signal left out here would keep its default
/// action and end childminder with the tree still running (so would one
/// left out as PID 1, if a later kernel delivered it).
pub fn init_forwarded(ignored_at_start: impl Fn(i32) -> bool) -> Vec<i32> {
    let mut forwarded = caught_signals(&ignored_at_start);
    if !ignored_at_start(libc::SIGTSTP) {
        forwarded.push(libc::SIGTSTP);
        forwarded.sort_unstable();
    }
    forwarded
}

/// The signals that ask `run` to end the command (the first starts the
/// escalation) and, after its exit, end the delivery of its output.
const ENDING: [Signal; 4] = [Signal::INT, Signal::TERM, Signal::HUP, Signal::QUIT];

/// Which face of childminder receives the signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `childminder run`: every signal has the meaning of the module
    /// documentation.
    Run,
    /// `childminder init`: every signal of [`init_forwarded`] is forwarded
    /// as it is, and SIGCHLD reaps the orphans.
    Init,
}

/// The signals `role` catches, leaving out those for which
/// `ignored_at_start` is true (SIGCHLD, init's "reap", is always caught).
pub fn caught_by(role: Role, ignored_at_start: impl Fn(i32) -> bool) -> Vec<i32> {
    match role {
        Role::Run => caught_signals(ignored_at_start),
        Role::Init => {
            let mut caught = init_forwarded(ignored_at_start);
            caught.push(libc::SIGCHLD);
            caught
        }
    }
}

/// The signals `run` catches: every signal up to `SIGRTMAX` except
/// [`NOT_CAUGHT`], glibc's own (32 up to `SIGRTMIN`), and those for which
/// `ignored_at_start` is true.
pub fn caught_signals(ignored_at_start: impl Fn(i32) -> bool) -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        .filter(|&s| !NOT_CAUGHT.contains(&s))
        .filter(|&s| !(32..libc::SIGRTMIN()).contains(&s))
        .filter(|&s| !ignored_at_start(s))
        .collect()
}

/// The signals a role catches, blocked: what a [`Receiver`] reads.
pub struct Blocked(Vec<i32>);

/// Blocks the signals `role` catches ([`caught_by`]; a signal ignored now
/// stays ignored), before anything of the run exists: from then on one
/// stays pending until the [`Receiver`] reads it, rather than ending
/// childminder by its default action (an acceptance run caught a TERM in
/// the first millisecond leaving an empty report file, created before the
/// signals were blocked). Call it before any other thread exists: a thread
/// started earlier would still take the signals with their default action.
///
/// # Errors
///
/// The OS error of `pthread_sigmask`.
pub fn block_caught(role: Role) -> io::Result<Blocked> {
    let caught = caught_by(role, sys::is_ignored);
    sys::block_signals(&caught)?;
    Ok(Blocked(caught))
}

/// The caught signals, blocked and read from a signalfd. They stay
/// blocked when this is dropped, so a late signal stays pending and cannot
/// end childminder before it has written the report.
pub struct Receiver {
    fd: AsyncFd<OwnedFd>,
}

impl Receiver {
    /// Receives the `blocked` signals, those pending already first.
    ///
    /// # Errors
    ///
    /// When the signalfd cannot be created or registered (out of fds).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with IO enabled.
    pub fn start(blocked: &Blocked) -> io::Result<Receiver> {
        let fd = sys::signalfd_for(&blocked.0)?;
        Ok(Receiver {
            fd: sys::register(fd)?,
        })
    }

    /// The next signal received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal is taken from the kernel only in the poll that
    /// returns it.
    pub async fn recv(&mut self) -> Signal {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            match sys::read_signal(ready.get_inner().as_fd()) {
                Ok(Some(raw)) => {
                    if let Some(signal) = Signal::from_raw(raw) {
                        return signal;
                    }
                }
                Ok(None) => ready.clear_ready(),
                // Unreadable: no signal will come from it.
                Err(_) => return std::future::pending().await,
            }
        }
    }
}

/// What to do with one received signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the escalation as the deadline would ([`Child::expire_deadline`]).
    ExpireDeadline,
    /// Start the escalation with this signal ([`Child::terminate`]).
    Terminate(Signal),
    /// SIGKILL now ([`Child::kill`]).
    Kill,
    /// Pass the signal on to the group ([`Child::signal_group`]).
    Forward(Signal),
    /// Reap every orphan that has exited (`init`'s SIGCHLD).
    ReapOrphans,
}

/// What a signal received after the command's exit, while its output is
/// still delivered, means ([`Forwarding::decide_after_exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Stop delivering, and end childminder by the signal.
    EndDelivery,
    /// The deadline, now: the delivery ends a grace period from now at
    /// the latest.
    DeadlineNow,
    /// As before the exit.
    Act(Action),
}

/// The forwarding policy, applied to each received signal in order (see
/// the module documentation). If the deadline has already started the
/// escalation, a first INT/TERM/HUP/QUIT is the library's `terminate`
/// as ever: it sends that signal only if the deadline's step sent none
/// (`-s 0`), and otherwise changes nothing (the command has had its first
/// signal and SIGKILL is on its way); a second kills now.
#[derive(Debug)]
pub struct Forwarding {
    role: Role,
    received: Vec<Signal>,
    end_requested: bool,
    orphans_reaped: u64,
}

impl Forwarding {
    /// The policy of `role`, before any signal.
    pub fn new(role: Role) -> Forwarding {
        Forwarding {
            role,
            received: Vec::new(),
            end_requested: false,
            orphans_reaped: 0,
        }
    }

    /// Records `signal` (but init's SIGCHLD) and decides what it means.
    pub fn decide(&mut self, signal: Signal) -> Action {
        if self.role == Role::Init {
            if signal.as_raw() == libc::SIGCHLD {
                return Action::ReapOrphans;
            }
            self.received.push(signal);
            return Action::Forward(signal);
        }
        self.received.push(signal);
        if signal.as_raw() == libc::SIGALRM {
            Action::ExpireDeadline
        } else if !ENDING.contains(&signal) {
            Action::Forward(signal)
        } else if !std::mem::replace(&mut self.end_requested, true) {
            Action::Terminate(signal)
        } else if signal == Signal::INT || signal == Signal::TERM {
            Action::Kill
        } else {
            Action::Forward(signal)
        }
    }

    /// Decides what `signal` means and does it to `process`.
    pub fn on_signal(&mut self, process: &Child, signal: Signal) {
        let action = self.decide(signal);
        self.apply(process, action);
    }

    /// Records `signal` once the command has exited and only its output is
    /// still being delivered, and says what it means then: INT, TERM, HUP
    /// and QUIT (whatever the role) end the delivery, as they would end a
    /// `cat` copying that output, and childminder with it; ALRM (`run`)
    /// is the deadline, now, which bounds the delivery; any other is
    /// handled as before the exit (passed on to what is left of the group,
    /// or, SIGCHLD, reaping).
    pub fn decide_after_exit(&mut self, signal: Signal) -> AfterExit {
        if ENDING.contains(&signal) {
            self.received.push(signal);
            return AfterExit::EndDelivery;
        }
        match self.decide(signal) {
            Action::ExpireDeadline => AfterExit::DeadlineNow,
            action => AfterExit::Act(action),
        }
    }

    /// Does `action` to `process`.
    pub fn apply(&mut self, process: &Child, action: Action) {
        match action {
            Action::ExpireDeadline => process.expire_deadline(),
            Action::Terminate(signal) => process.terminate(signal),
            Action::Kill => process.kill(),
            Action::Forward(signal) => {
                let _ = process.signal_group(signal);
            }
            Action::ReapOrphans => match childminder::subreaper::reap_orphans() {
                Ok(n) => self.orphans_reaped += n as u64,
                Err(e) => crate::run::diagnose(&format!("warning: reaping orphans: {e}")),
            },
        }
    }

    /// Every signal received (but init's SIGCHLD), in order, and how many
    /// orphans were reaped.
    pub fn into_received(self) -> (Vec<Signal>, u64) {
        (self.received, self.orphans_reaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(raw: i32) -> Signal {
        Signal::from_raw(raw).unwrap()
    }

    #[test]
    fn alarm_is_the_deadline_now_every_time() {
        let mut f = Forwarding::new(Role::Run);
        assert_eq!(f.decide(sig(libc::SIGALRM)), Action::ExpireDeadline);
        assert_eq!(f.decide(Signal::TERM), Action::Terminate(Signal::TERM));
        assert_eq!(f.decide(sig(libc::SIGALRM)), Action::ExpireDeadline);
    }

    #[test]
    fn the_first_ending_signal_terminates_with_itself() {
        for first in [Signal::INT, Signal::TERM, Signal::HUP, Signal::QUIT] {
            let mut f = Forwarding::new(Role::Run);
            assert_eq!(f.decide(first), Action::Terminate(first));
        }
    }

    #[test]
    fn a_second_int_or_term_kills_and_a_second_hup_or_quit_is_forwarded() {
        let mut f = Forwarding::new(Role::Run);
        f.decide(Signal::HUP);
        assert_eq!(f.decide(Signal::HUP), Action::Forward(Signal::HUP));
        assert_eq!(f.decide(Signal::QUIT), Action::Forward(Signal::QUIT));
        assert_eq!(f.decide(Signal::INT), Action::Kill);
        assert_eq!(f.decide(Signal::TERM), Action::Kill);
    }

    #[test]
    fn other_signals_are_forwarded_and_do_not_count_as_a_first_end() {
        let mut f = Forwarding::new(Role::Run);
        for other in [
            Signal::USR1,
            Signal::USR2,
            Signal::CONT,
            sig(libc::SIGWINCH),
        ] {
            assert_eq!(f.decide(other), Action::Forward(other));
        }
        let rt = sig(libc::SIGRTMIN() + 1);
        assert_eq!(f.decide(rt), Action::Forward(rt));
        assert_eq!(f.decide(Signal::TERM), Action::Terminate(Signal::TERM));
        assert_eq!(
            f.into_received().0,
            [
                Signal::USR1,
                Signal::USR2,
                Signal::CONT,
                sig(libc::SIGWINCH),
                rt,
                Signal::TERM
            ]
        );
    }

    #[test]
    fn init_forwards_every_signal_as_it_is_and_reaps_on_sigchld() {
        let mut f = Forwarding::new(Role::Init);
        let forwarded = init_forwarded(|_| false);
        for &raw in &forwarded {
            assert_eq!(f.decide(sig(raw)), Action::Forward(sig(raw)));
        }
        assert_eq!(f.decide(sig(libc::SIGCHLD)), Action::ReapOrphans);
        assert_eq!(f.into_received().0.len(), forwarded.len());
        let caught = caught_by(Role::Init, |s| s == libc::SIGHUP);
        assert!(caught.contains(&libc::SIGCHLD) && !caught.contains(&libc::SIGHUP));
        assert_eq!(caught_by(Role::Run, |_| false), caught_signals(|_| false));
    }

    #[test]
    fn init_forwards_what_run_passes_on_and_tstp_so_no_catchable_signal_ends_it() {
        // Caught by a regression: not PID 1, SIGRTMIN and SIGABRT kept
        // their default action and ended init with the tree running.
        let forwarded = init_forwarded(|_| false);
        for s in [
            libc::SIGABRT,
            libc::SIGRTMIN(),
            libc::SIGRTMIN() + 5,
            libc::SIGRTMAX(),
            libc::SIGTSTP,
            libc::SIGALRM,
            libc::SIGTERM,
        ] {
            assert!(forwarded.contains(&s), "{s} not forwarded");
        }
        // Every signal up to SIGRTMAX but those run leaves to their
        // default (SIGTSTP excepted) and glibc's own.
        for s in 1..=libc::SIGRTMAX() {
            let expected = s == libc::SIGTSTP
                || !(NOT_CAUGHT.contains(&s) || (32..libc::SIGRTMIN()).contains(&s));
            assert_eq!(forwarded.contains(&s), expected, "signal {s}");
        }
        let without_tstp = init_forwarded(|s| s == libc::SIGTSTP);
        assert_eq!(without_tstp.len(), forwarded.len() - 1);
        assert!(
            forwarded.windows(2).all(|w| w[0] < w[1]),
            "sorted, once each"
        );
    }

    #[test]
    fn after_the_exit_an_ending_signal_ends_the_delivery_in_both_roles() {
        for role in [Role::Run, Role::Init] {
            let mut f = Forwarding::new(role);
            for end in [Signal::INT, Signal::TERM, Signal::HUP, Signal::QUIT] {
                assert_eq!(f.decide_after_exit(end), AfterExit::EndDelivery, "{role:?}");
            }
            assert_eq!(
                f.decide_after_exit(Signal::USR1),
                AfterExit::Act(Action::Forward(Signal::USR1))
            );
            assert_eq!(f.into_received().0.len(), 5, "every one recorded");
        }
        let mut run = Forwarding::new(Role::Run);
        assert_eq!(
            run.decide_after_exit(sig(libc::SIGALRM)),
            AfterExit::DeadlineNow
        );
        let mut init = Forwarding::new(Role::Init);
        assert_eq!(
            init.decide_after_exit(sig(libc::SIGCHLD)),
            AfterExit::Act(Action::ReapOrphans)
        );
        assert_eq!(
            init.decide_after_exit(sig(libc::SIGALRM)),
            AfterExit::Act(Action::Forward(sig(libc::SIGALRM)))
        );
    }

    #[test]
    fn caught_signals_are_all_but_the_exceptions_and_the_ignored() {
        let all = caught_signals(|_| false);
        for s in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGALRM,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
            libc::SIGCONT,
            libc::SIGURG,
            libc::SIGABRT,
            libc::SIGRTMIN(),
            libc::SIGRTMAX(),
        ] {
            assert!(all.contains(&s), "{s} not caught");
        }
        for s in NOT_CAUGHT.into_iter().chain(32..libc::SIGRTMIN()) {
            assert!(!all.contains(&s), "{s} caught");
        }
        let without_hup = caught_signals(|s| s == libc::SIGHUP);
        assert!(!without_hup.contains(&libc::SIGHUP));
        assert_eq!(without_hup.len(), all.len() - 1);
    }
}
