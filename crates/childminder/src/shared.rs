//! State shared between a supervised child's handles and its coordinator:
//! the result cell (written once), the requests (shutdown, teardown), the
//! stdin slot, and the worker-failure log.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use tokio::net::unix::pipe;
use tokio::sync::Notify;

use crate::contain::Containment;
use crate::contain::subreaper::Participation;
use crate::error::{Stream, WorkerError, WorkerOp};
use crate::result::SupervisionResult;
use crate::spawn::ForegroundTerminal;
use crate::target::Target;

/// A value set once, readable without blocking, awaitable from async code
/// and from threads. Holds the final result, and the "finished" mark.
pub(crate) struct Published<T> {
    value: OnceLock<T>,
    /// How many threads wait in `cond`: `publish` wakes them only if there
    /// are any (std's `notify_all` is a system call even with no waiter,
    /// and most values are published before anyone waits for them).
    blocked_waiters: Mutex<usize>,
    cond: Condvar,
    notify: Notify,
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Published {
            value: OnceLock::new(),
            blocked_waiters: Mutex::new(0),
            cond: Condvar::new(),
            notify: Notify::new(),
        }
    }
}

impl<T> Published<T> {
    /// Publishes `value` unless one already was; returns whether it did.
    pub(crate) fn publish(&self, value: T) -> bool {
        if self.value.set(value).is_err() {
            return false;
        }
        // Taking the lock orders this wake-up after any waiter's check: a
        // waiter that missed the value is counted and in `cond` by now.
        let blocked = *self
            .blocked_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if blocked > 0 {
            self.cond.notify_all();
        }
        self.notify.notify_waiters();
        true
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.get()
    }

    pub(crate) fn wait_blocking(&self) -> &T {
        self.wait_blocking_until(None)
            .expect("without a time limit only the value ends the wait")
    }

    pub(crate) fn wait_blocking_timeout(&self, limit: Duration) -> Option<&T> {
        self.wait_blocking_until(Some(Instant::now() + limit))
    }

    fn wait_blocking_until(&self, end: Option<Instant>) -> Option<&T> {
        let mut blocked = self
            .blocked_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *blocked += 1;
        let value = loop {
            if let Some(v) = self.value.get() {
                break Some(v);
            }
            match end {
                None => blocked = self.cond.wait(blocked).unwrap_or_else(|e| e.into_inner()),
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break None;
                    }
                    blocked = self
                        .cond
                        .wait_timeout(blocked, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        *blocked -= 1;
        value
    }

    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub(crate) async fn wait(&self) -> &T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self.value.get() {
                return v;
            }
            notified.await;
        }
    }
}

/// Requests from the handles to the coordinator.
pub(crate) const REQ_SHUTDOWN: u8 = 1;
pub(crate) const REQ_TEARDOWN: u8 = 2;
pub(crate) const REQ_TERMINATE: u8 = 4;
pub(crate) const REQ_KILL: u8 = 8;
/// The deadline, now (`expire_deadline`).
pub(crate) const REQ_DEADLINE: u8 = 16;
/// Any request that asks the child to end.
pub(crate) const REQ_ANY_END: u8 =
    REQ_SHUTDOWN | REQ_TEARDOWN | REQ_TERMINATE | REQ_KILL | REQ_DEADLINE;

pub(crate) struct Shared {
    pub program: String,
    pub target: Target,
    pub started: Instant,
    pub result: Published<SupervisionResult>,
    /// Set when the coordinator has finished: group swept, child reaped.
    pub finished: Published<()>,
    /// Set once the supervision has settled after the result: finished, or
    /// waiting for a request to sweep what is left of the group. What the
    /// handles' `wait` waits for, so that once it returns the child is
    /// reaped in the usual case (as with std and tokio).
    pub settled: Published<()>,
    pub stdin: Arc<StdinSlot>,
    requests: AtomicU8,
    /// A kill was asked for, ever ([`REQ_KILL`] stays here once taken).
    kill_asked: AtomicBool,
    /// The child was asked to end, ever (any of [`REQ_ANY_END`]): its
    /// teardown is under way, or done.
    end_asked: AtomicBool,
    /// When a handle's `kill()` sent SIGKILL itself ([`Shared::kill_now`]).
    kill_sent_by_caller: Mutex<Option<Instant>>,
    /// The first signal asked for by `terminate`, or 0 for the policy's.
    term_signal_override: AtomicI32,
    wake_coordinator: Notify,
    worker_errors: Mutex<Vec<WorkerError>>,
    /// What the coordinator's escalation has done so far, kept where the
    /// last resort can read it if the coordinator is dropped mid-way.
    escalation: Mutex<Option<crate::escalation::Report>>,
    /// Present from the spawn to the end of a supervision with
    /// `Command::subreaper` on.
    subreaper_sweep: Mutex<Option<Participation>>,
    /// What the end of the supervision did beyond the group; complete once
    /// `finished` is published.
    containment: Mutex<Containment>,
    /// The terminal given to the child's group, to give back at its exit.
    terminal: Option<ForegroundTerminal>,
}

impl Shared {
    pub(crate) fn new(
        program: String,
        target: Target,
        started: Instant,
        stdin: Option<OwnedFd>,
    ) -> Shared {
        Shared {
            program,
            target,
            started,
            result: Published::default(),
            finished: Published::default(),
            settled: Published::default(),
            stdin: Arc::new(StdinSlot::new(stdin)),
            requests: AtomicU8::new(0),
            kill_asked: AtomicBool::new(false),
            end_asked: AtomicBool::new(false),
            kill_sent_by_caller: Mutex::new(None),
            term_signal_override: AtomicI32::new(0),
            wake_coordinator: Notify::new(),
            worker_errors: Mutex::new(Vec::new()),
            escalation: Mutex::new(None),
            subreaper_sweep: Mutex::new(None),
            containment: Mutex::new(Containment::default()),
            terminal: None,
        }
    }

    /// Records the terminal given to the child's group
    /// (`Command::terminal_foreground`).
    pub(crate) fn set_terminal(&mut self, terminal: Option<ForegroundTerminal>) {
        self.terminal = terminal;
    }

    /// Gives the terminal back to the caller's group if the child's group
    /// still holds it: once the child has exited, however it ended.
    pub(crate) fn give_terminal_back(&self) {
        if let Some(terminal) = &self.terminal {
            terminal.give_back(self.target.pid() as libc::pid_t);
        }
    }

    /// Marks the supervision finished (and so settled).
    pub(crate) fn publish_finished(&self) {
        self.settled.publish(());
        self.finished.publish(());
    }

    /// Blocks until the result is published and the supervision settled.
    pub(crate) fn wait_settled_blocking(&self) -> SupervisionResult {
        self.settled.wait_blocking();
        self.final_result()
    }

    /// Waits until the result is published and the supervision settled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub(crate) async fn wait_settled(&self) -> SupervisionResult {
        self.settled.wait().await;
        self.final_result()
    }

    /// Counts this supervision among those whose end sweeps the escapees.
    pub(crate) fn join_subreaper_sweep(&mut self) {
        *self
            .subreaper_sweep
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = Some(Participation::join());
        self.containment
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .subreaper = true;
    }

    /// Leaves the subreaper supervisions: `Some(true)` when this one must
    /// sweep (no other is still running), `None` without subreaper.
    pub(crate) fn leave_subreaper_sweep(&self) -> Option<bool> {
        let participation = self
            .subreaper_sweep
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(participation.finish())
    }

    pub(crate) fn containment(&self) -> Containment {
        self.containment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records what the sweeps did, before `finished` is published.
    pub(crate) fn update_containment(&self, update: impl FnOnce(&mut Containment)) {
        update(&mut self.containment.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn request(&self, what: u8) {
        if what & REQ_KILL != 0 {
            self.kill_asked.store(true, Ordering::SeqCst);
        }
        if what & REQ_ANY_END != 0 {
            self.end_asked.store(true, Ordering::SeqCst);
        }
        self.requests.fetch_or(what, Ordering::SeqCst);
        self.wake_coordinator.notify_one();
    }

    /// Whether the child was ever asked to end (a handle dropped, a
    /// shutdown, a kill, a terminate, the deadline expired on request).
    pub(crate) fn end_asked(&self) -> bool {
        self.end_asked.load(Ordering::SeqCst)
    }

    /// A kill request, with SIGKILL sent right here as well as by the
    /// coordinator when it takes the request: on a current-thread runtime
    /// the coordinator runs only at the caller's next `.await`, and a child
    /// outlived `kill(); exit(0)` (an acceptance test; tokio's `start_kill`
    /// sends before it returns). The coordinator's second SIGKILL is
    /// harmless, and it counts the kill as its own, at the time it was
    /// sent, when the exit it sees is by SIGKILL
    /// ([`kill_sent_by_caller`](Self::kill_sent_by_caller)).
    pub(crate) fn kill_now(&self) {
        self.request(REQ_KILL);
        // Noted before the send: the coordinator, on another thread, may
        // see the exit before this returns. Withdrawn if nothing was sent.
        let at = Instant::now();
        *self.lock_kill_sent() = Some(at);
        let sent = self.target.signal_escalation(crate::signal::Signal::KILL);
        if !matches!(sent, Ok(true)) {
            *self.lock_kill_sent() = None;
        }
    }

    /// When [`kill_now`](Self::kill_now) sent SIGKILL itself, if it did.
    pub(crate) fn kill_sent_by_caller(&self) -> Option<Instant> {
        *self.lock_kill_sent()
    }

    fn lock_kill_sent(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.kill_sent_by_caller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once a kill has been asked for (at once if one was before,
    /// even if the request was taken since).
    pub(crate) async fn kill_asked(&self) {
        while !self.kill_asked.load(Ordering::SeqCst) {
            self.requested().await;
        }
    }

    /// Asks for the escalation to start at its signal step with `signal`.
    pub(crate) fn request_terminate(&self, signal: crate::signal::Signal) {
        // The first request decides; a later one changes nothing.
        let _ = self.term_signal_override.compare_exchange(
            0,
            signal.as_raw(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.request(REQ_TERMINATE);
    }

    /// The first signal of the escalation: the one `terminate` asked for, or
    /// the configured one (`None`: send nothing).
    pub(crate) fn term_signal(
        &self,
        configured: Option<crate::signal::Signal>,
    ) -> Option<crate::signal::Signal> {
        crate::signal::Signal::from_raw(self.term_signal_override.load(Ordering::SeqCst))
            .or(configured)
    }

    pub(crate) fn take_requests(&self) -> u8 {
        self.requests.swap(0, Ordering::SeqCst)
    }

    pub(crate) async fn requested(&self) {
        self.wake_coordinator.notified().await
    }

    /// Records a failure of the worker on `stream` (its `op`): logged,
    /// and kept for the result's `worker_errors`.
    pub(crate) fn record_worker_error(&self, stream: Stream, op: WorkerOp, source: io::Error) {
        let error = WorkerError::new(&self.program, stream, op, source);
        tracing::warn!(program = %error.program, stream = %error.stream, op = %error.op, error = %error.source, "worker failed");
        self.worker_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error);
    }

    /// The published result, or, if the coordinator never published one (it
    /// was dropped with its runtime), an `Indeterminate` one saying so.
    pub(crate) fn final_result(&self) -> SupervisionResult {
        if let Some(r) = self.result.get() {
            let mut r = r.clone();
            if self.finished.get().is_some() {
                r.containment = self.containment();
            }
            return r;
        }
        self.publish_lost(None)
    }

    /// Records what the coordinator's escalation has done so far.
    pub(crate) fn record_escalation(&self, report: crate::escalation::Report) {
        *self.escalation.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }

    /// Publishes, unless the coordinator did, the result of a supervision
    /// whose runtime shut down before it ended: the exit if the last
    /// resort observed one (it reaps the child), what the escalation had
    /// sent by then, and the last resort's SIGKILL (`None`: it sent none,
    /// the child had exited). Returns the result published.
    pub(crate) fn publish_lost(&self, last_resort_kill: Option<Duration>) -> SupervisionResult {
        let exit = self.target.try_status().ok().flatten();
        let sent = *self.escalation.lock().unwrap_or_else(|e| e.into_inner());
        let term_sent_after = sent.and_then(|r| r.term_sent_after);
        let kill_sent_after = sent.and_then(|r| r.kill_sent_after).or(last_resort_kill);
        let escalation_cause = sent
            .and_then(|r| r.cause)
            .or(last_resort_kill.map(|_| crate::result::EscalationCause::Teardown));
        let lost = SupervisionResult {
            program: self.program.clone(),
            pid: self.target.pid(),
            exit,
            termination: crate::result::Termination::classify(
                term_sent_after.is_some(),
                kill_sent_after.is_some(),
                exit.is_some(),
            ),
            escalation_cause,
            term_sent_after,
            kill_sent_after,
            runtime: self.started.elapsed(),
            supervisor_error: Some(Arc::new(crate::error::Error::Io {
                program: self.program.clone(),
                context: "supervising",
                source: io::Error::other(if last_resort_kill.is_some() {
                    "the runtime driving the supervision shut down; the child was killed"
                } else {
                    "the runtime driving the supervision shut down"
                }),
            })),
            worker_errors: self.take_worker_errors(),
            output_cut_off: false,
            used_pidfd: self.target.uses_pidfd(),
            containment: self.containment(),
            resource_usage: exit.and(self.target.resource_usage()),
        };
        self.result.publish(lost);
        self.result.get().cloned().expect("published just above")
    }

    pub(crate) fn take_worker_errors(&self) -> Vec<WorkerError> {
        std::mem::take(&mut *self.worker_errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The parent's end of the child's stdin, closable from the coordinator
/// while a writer is blocked on it: closing wakes the writer, whose next
/// poll then fails with `BrokenPipe`. The fd is registered with a runtime
/// only by whoever writes to it ([`register`](Self::register)), so the
/// readiness events arrive on the writer's own thread.
pub(crate) struct StdinSlot {
    state: Mutex<SlotState>,
    closed: Notify,
    close_requested: Notify,
}

struct SlotState {
    unregistered: Option<OwnedFd>,
    pipe: Option<pipe::Sender>,
    waker: Option<Waker>,
    is_closed: bool,
    /// A writer task feeds this pipe and will close it gracefully on request.
    writer_attached: bool,
}

impl StdinSlot {
    fn new(fd: Option<OwnedFd>) -> StdinSlot {
        StdinSlot {
            state: Mutex::new(SlotState {
                is_closed: fd.is_none(),
                unregistered: fd,
                pipe: None,
                waker: None,
                writer_attached: false,
            }),
            closed: Notify::new(),
            close_requested: Notify::new(),
        }
    }

    /// Marks that a writer task feeds the pipe: from now on
    /// [`request_close`](Self::request_close) asks it to close after what it
    /// was handed, instead of closing at once.
    pub(crate) fn attach_writer(&self) {
        self.lock().writer_attached = true;
    }

    /// Closes stdin gracefully: with a writer task, once what it was handed
    /// is written (it may wait on a child that does not read; `close` is the
    /// forced form); without one, now.
    pub(crate) fn request_close(&self) {
        if self.lock().writer_attached {
            self.close_requested.notify_one();
        } else {
            self.close();
        }
    }

    /// Resolves when [`request_close`](Self::request_close) was called (for
    /// the writer task).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the request is kept until awaited.
    pub(crate) async fn close_requested(&self) {
        self.close_requested.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the pipe with the current runtime.
    ///
    /// # Errors
    ///
    /// When the reactor cannot take it (out of fds or memory).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub(crate) fn register(&self) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(fd) = state.unregistered.take() {
            state.pipe = Some(pipe::Sender::from_owned_fd_unchecked(fd)?);
        }
        Ok(())
    }

    /// Hands the unregistered pipe over to a caller who writes it directly
    /// (the blocking handle), leaving the slot closed: from then on the
    /// pipe is the caller's to close.
    pub(crate) fn take_fd(&self) -> Option<OwnedFd> {
        let mut state = self.lock();
        state.is_closed = true;
        state.unregistered.take()
    }

    /// Closes the pipe now (the child reads EOF once no other copy is open).
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.is_closed = true;
        let pipe = state.pipe.take();
        let fd = state.unregistered.take();
        let waker = state.waker.take();
        drop(state);
        drop((pipe, fd));
        if let Some(w) = waker {
            w.wake();
        }
        self.closed.notify_waiters();
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.lock().is_closed
    }

    /// Resolves once the pipe is closed, by anyone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_open() {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        let Some(pipe) = state.pipe.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the child's stdin was closed",
            )));
        };
        match Pin::new(pipe).poll_write(cx, buf) {
            Poll::Pending => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Published;

    fn blocked(p: &Published<u32>) -> usize {
        *p.blocked_waiters.lock().unwrap()
    }

    #[test]
    fn a_thread_blocked_before_the_publish_is_woken_with_the_value() {
        let p = Arc::new(Published::<u32>::default());
        let waiter = {
            let p = Arc::clone(&p);
            // Bounded, so that a publish that forgot to wake it fails the
            // test instead of hanging it.
            std::thread::spawn(move || p.wait_blocking_timeout(Duration::from_secs(10)).copied())
        };
        // The waiter counts itself under the lock before it sleeps: once it
        // is counted, only `publish` can wake it.
        while blocked(&p) == 0 {
            std::thread::yield_now();
        }
        assert!(p.publish(7));
        assert_eq!(waiter.join().unwrap(), Some(7));
        assert_eq!(blocked(&p), 0);
    }

    #[test]
    fn a_value_published_first_is_returned_without_waiting() {
        let p = Published::<u32>::default();
        assert!(p.publish(3));
        assert!(!p.publish(4), "the value is written once");
        assert_eq!(*p.wait_blocking(), 3);
        assert_eq!(p.wait_blocking_timeout(Duration::ZERO), Some(&3));
        assert_eq!(blocked(&p), 0);
    }

    #[test]
    fn a_timed_wait_without_a_value_ends_and_uncounts_itself() {
        let p = Published::<u32>::default();
        assert_eq!(p.wait_blocking_timeout(Duration::from_millis(20)), None);
        assert_eq!(blocked(&p), 0);
        assert!(p.publish(1));
        assert_eq!(p.wait_blocking_timeout(Duration::from_millis(20)), Some(&1));
    }
}
