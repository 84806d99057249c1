//! The signals childminder receives (INT, TERM, HUP, QUIT) and what it does
//! with them.
//!
//! A signal-hook thread turns each received signal into an [`Event`] on a
//! channel; the action of `with_process` reads that channel, together with
//! the result of the run, and applies [`Forwarding`].

use std::io;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use childminder::{Process, Signal, SupervisionResult};
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// What the action waits for.
#[derive(Debug)]
pub enum Event {
    /// childminder received this signal.
    Signal(Signal),
    /// The run's result was published: the child has ended and its output
    /// has been copied out.
    Done(Box<SupervisionResult>),
}

/// The signals that are forwarded to the child.
const FORWARDED: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// The handler thread; [`close`](Self::close) it when the run is over.
pub struct Receiver {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl Receiver {
    /// Catches INT, TERM, HUP and QUIT from now on and sends each to
    /// `events`. A signal that is ignored now (`nohup`, a background job of
    /// a non-interactive shell) stays ignored, as shells do.
    ///
    /// # Errors
    ///
    /// When the handlers or the thread cannot be set up.
    pub fn start(events: Sender<Event>) -> io::Result<Receiver> {
        let wanted: Vec<i32> = FORWARDED.into_iter().filter(|&s| !is_ignored(s)).collect();
        let mut signals = Signals::new(&wanted)?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("childminder-signals".into())
            .spawn(move || {
                for raw in signals.forever() {
                    let Some(signal) = Signal::from_raw(raw) else {
                        continue;
                    };
                    if events.send(Event::Signal(signal)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Receiver { handle, thread })
    }

    /// Stops the thread. The handlers stay installed, doing nothing, so a
    /// late signal cannot kill childminder before it has written the report.
    pub fn close(self) {
        self.handle.close();
        let _ = self.thread.join();
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
///   the escalation's first signal ([`Process::terminate`]); SIGKILL
///   follows a grace period later;
/// - a later INT or TERM kills at once ([`Process::kill`]);
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
    pub fn on_signal(&mut self, process: &Process, signal: Signal) {
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
