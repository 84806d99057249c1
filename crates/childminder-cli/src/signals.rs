//! The signals childminder receives (INT, TERM, HUP, QUIT) and what it does
//! with them.
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
    pub fn start() -> io::Result<Receiver> {
        let mut streams = Vec::new();
        for raw in FORWARDED.into_iter().filter(|&s| !is_ignored(s)) {
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
#[derive(Debug, Default)]
pub struct Forwarding {
    received: Vec<Signal>,
}

impl Forwarding {
    /// Acts on `signal`.
    pub fn on_signal(&mut self, process: &Child, signal: Signal) {
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

    /// Every signal received, in order.
    pub fn into_received(self) -> Vec<Signal> {
        self.received
    }
}
