//! The signals childminder receives (INT, TERM, HUP, QUIT; every catchable
//! one as `init`) and what it does with them.
//!
//! The handlers are tokio's (a self-pipe read by the event loop on
//! childminder's one thread, no thread of their own): [`Receiver::recv`]
//! yields each received signal, and the run loop applies [`Forwarding`].

use std::future::poll_fn;
use std::io;
use std::task::Poll;

use childminder::{Child, Signal};
use tokio::signal::unix::SignalKind;

/// The signals that are forwarded to the child.
const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// What `init` forwards to the command's group as it is, as tini does:
/// every catchable signal but SIGCHLD (which means "reap"), the ones a
/// fault raises in the process itself (ILL, TRAP, ABRT, BUS, FPE, SEGV,
/// SYS), SIGPIPE (about childminder's own writes) and the terminal's
/// stop signals for background reads and writes (TTIN, TTOU).
const INIT_FORWARDED: [i32; 18] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGSTKFLT,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
];

/// Which face of childminder receives the signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `childminder run` (and `up`): INT, TERM, HUP and QUIT.
    Run,
    /// `childminder init`: every catchable signal is forwarded as it is,
    /// and SIGCHLD reaps the orphans.
    Init,
}

/// The installed handlers. They stay installed when this is dropped
/// (tokio never uninstalls one), doing nothing, so a late signal cannot
/// kill childminder before it has written the report.
pub struct Receiver {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Receiver {
    /// Catches INT, TERM, HUP and QUIT from now on. A signal that is
    /// ignored now (`nohup`, a background job of a non-interactive shell)
    /// stays ignored, as shells do.
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed (the runtime's signal driver
    /// could not be set up: out of fds).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with IO enabled.
    pub fn start(role: Role) -> io::Result<Receiver> {
        let caught: &[i32] = match role {
            Role::Run => &FORWARDED,
            Role::Init => &INIT_FORWARDED,
        };
        let mut streams = Vec::new();
        let reap = (role == Role::Init).then_some(libc::SIGCHLD);
        for raw in caught
            .iter()
            .copied()
            .filter(|&s| !is_ignored(s))
            .chain(reap)
        {
            let Some(signal) = Signal::from_raw(raw) else {
                continue;
            };
            streams.push((
                signal,
                tokio::signal::unix::signal(SignalKind::from_raw(raw))?,
            ));
        }
        Ok(Receiver { streams })
    }

    /// The next signal received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal not yet returned stays pending.
    pub async fn recv(&mut self) -> Signal {
        poll_fn(|cx| {
            for (signal, stream) in &mut self.streams {
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready(*signal);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// True when `signal`'s disposition is `SIG_IGN`.
pub(crate) fn is_ignored(signal: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one
    // into `old`, a plain C struct we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The forwarding policy, applied to each received signal in order:
///
/// - the first INT, TERM, HUP or QUIT is forwarded to the child's group as
///   the escalation's first signal ([`Child::terminate`]); SIGKILL
///   follows a grace period later;
/// - a later INT or TERM kills at once ([`Child::kill`]);
/// - a later HUP or QUIT is forwarded to the group as it is.
///
/// If the deadline has already started the escalation, the first signal
/// changes nothing: the child has had its signal and SIGKILL is on its way.
///
/// As `init` ([`Role::Init`]) every signal is forwarded to the group as it
/// is (the command decides what it means, as under tini), and SIGCHLD reaps
/// every orphan that has exited, so no zombie accumulates.
#[derive(Debug)]
pub struct Forwarding {
    role: Role,
    received: Vec<Signal>,
    orphans_reaped: u64,
}

impl Forwarding {
    pub fn new(role: Role) -> Forwarding {
        Forwarding {
            role,
            received: Vec::new(),
            orphans_reaped: 0,
        }
    }

    /// Acts on `signal`.
    pub fn on_signal(&mut self, process: &Child, signal: Signal) {
        if self.role == Role::Init {
            if signal.as_raw() == libc::SIGCHLD {
                match childminder::subreaper::reap_orphans() {
                    Ok(n) => self.orphans_reaped += n as u64,
                    Err(e) => crate::run::diagnose(&format!("warning: reaping orphans: {e}")),
                }
            } else {
                self.received.push(signal);
                let _ = process.signal_group(signal);
            }
            return;
        }
        let first = self.received.is_empty();
        self.received.push(signal);
        if first {
            process.terminate(signal);
        } else if signal == Signal::INT || signal == Signal::TERM {
            process.kill();
        } else {
            let _ = process.signal_group(signal);
        }
    }

    /// Every signal received (but SIGCHLD), in order, and how many orphans
    /// were reaped.
    pub fn into_received(self) -> (Vec<Signal>, u64) {
        (self.received, self.orphans_reaped)
    }
}
