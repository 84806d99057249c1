//! The blocking API: the seed's `withProcess` as [`with_process`], its
//! handle [`Process`], and the `run` / `output` conveniences.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use crate::at_exit::Driver;
use crate::command::{Command, Stdio};
use crate::coordinator::{OutputDrain, Policy, supervise};
use crate::error::{Error, Stream, WorkerOp};
use crate::input::{Input, Source};
use crate::pool;
use crate::result::SupervisionResult;
use crate::shared::{REQ_DEADLINE, REQ_KILL, REQ_SHUTDOWN, REQ_TEARDOWN, Shared};
use crate::signal::Signal;
use crate::spawn::{Started, start};
use crate::sys;
use crate::target::PidfdLease;
use crate::workers::{self, ProducerThread, StdinControl, StdinFeed, StdioJob};

/// The runtime that drives every blocking supervision: a current-thread
/// runtime on one thread of its own, started on first use and shared by all
/// calls, so a call starts no runtime of its own.
///
/// Its thread is started here, with `std::thread::Builder`, rather than by
/// tokio's multi-thread builder: when the OS refuses a thread (`ulimit -u`,
/// `ulimit -v`), that builder panics half-way through its start and its
/// unwinding then waits forever for the worker it did start. Here a refusal
/// is an `io::Error`, nothing is left behind, and the next call tries again.
///
/// # Errors
///
/// When the runtime's fds (epoll, eventfd) or its thread cannot be created.
pub(crate) fn engine() -> io::Result<&'static Handle> {
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(handle) = ENGINE.get() {
        return in_its_process(handle);
    }
    let _one_start_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = ENGINE.get() {
        return in_its_process(handle);
    }
    let (running_tx, running) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("childminder-engine".into())
        // Drives every task spawned on the handle, for the life of the
        // process. The runtime is built here, on its own thread: built by
        // the caller, a thread the OS refused would drop it where the
        // caller is, and inside a tokio runtime (a blocking call from
        // async code) tokio answers that with a panic.
        .spawn(move || {
            let runtime = match first_runtime() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = running_tx.send(Err(e));
                    return;
                }
            };
            let _ = running_tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(std::future::pending::<()>())
        })?;
    // A thread can also die as it starts, before running this code (std
    // panics when it cannot map the thread's signal stack): an engine that
    // nothing drives would hang every call, so its start is confirmed.
    let handle = running.recv().unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "the engine's thread died as it started",
        ))
    })?;
    ENGINE_PID.store(sys::getpid(), Ordering::Relaxed);
    Ok(ENGINE.get_or_init(|| handle))
}

/// The process whose thread drives the engine.
static ENGINE_PID: AtomicI32 = AtomicI32::new(0);

/// `handle`, unless this is a `fork` of the process that started the
/// engine: its thread was not copied, nothing would drive a task spawned
/// here, and the call would hang (an acceptance run saw `start()` hang in
/// a forked child).
fn in_its_process(handle: &'static Handle) -> io::Result<&'static Handle> {
    if ENGINE_PID.load(Ordering::Relaxed) == sys::getpid() {
        return Ok(handle);
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "childminder's engine runs in the process that started it, not in a fork of it (a forked child must exec)",
    ))
}

/// The engine's handle, once it runs.
static ENGINE: OnceLock<Handle> = OnceLock::new();

/// [`engine`], its failure as the error of starting `cmd`. Before the
/// engine runs, `cmd` is validated first, so a call refused for its
/// options starts no thread (the spawn validates it again anyway).
pub(crate) fn engine_for(cmd: &Command) -> Result<&'static Handle, Error> {
    if ENGINE.get().is_none() {
        cmd.validate()?;
    }
    engine().map_err(|source| Error::Io {
        program: cmd.program_lossy(),
        context: "starting the engine runtime",
        source,
    })
}

/// The most fds building a runtime takes: epoll, its waker, and with
/// tokio's `signal` feature a socket pair and a copy of one end.
const RUNTIME_FDS: usize = 6;

/// [`current_thread_runtime`] for a runtime that may be the process's
/// first: tokio sets up process-wide state on the first runtime with IO,
/// and panics rather than fails when that runs out of fds (with its
/// `signal` feature, which the program may enable for itself, a socket pair
/// made with `.expect`). So the fds are checked first, and the error is
/// the OS's own.
///
/// # Errors
///
/// As [`current_thread_runtime`]; `EMFILE` or `ENFILE` when the fds are
/// not there.
pub(crate) fn first_runtime() -> io::Result<tokio::runtime::Runtime> {
    sys::check_free_fds(RUNTIME_FDS)?;
    current_thread_runtime()
}

/// A current-thread runtime with IO and time.
///
/// # Errors
///
/// When its fds cannot be created; also when tokio panics instead of
/// failing (see [`engine`]), which is caught and returned as an error.
fn current_thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    let build = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
    };
    catch_unwind(build).unwrap_or_else(|panic| Err(crate::error::panic_to_io(panic)))
}

/// A consumer that drops what it is given.
///
/// # Errors
///
/// Never.
///
/// # Examples
///
/// ```
/// use childminder::{discard, stdin, with_process, Command};
/// with_process(&Command::new("true"), stdin::empty(), discard, discard, |p| p.wait()).unwrap();
/// ```
pub fn discard(_chunk: &[u8]) -> io::Result<()> {
    Ok(())
}

/// The handle the action of [`with_process`] receives: the seed's `Process`.
///
/// # Examples
///
/// ```
/// use childminder::{discard, stdin, with_process, Command, Termination};
///
/// let result = with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
///     assert!(p.try_result().is_none());
///     p.shutdown()
/// }).unwrap();
/// assert_eq!(result.termination, Termination::Escalated);
/// ```
pub struct Process {
    shared: Arc<Shared>,
    pidfd: PidfdLease,
    /// Present while a writer task feeds stdin.
    stdin_close: Option<Arc<StdinControl>>,
}

impl Process {
    /// Blocks until the final result is published: the child has exited (or
    /// the escalation gave up) and, for piped output, every byte has been
    /// handed to the consumers; and the child reaped, unless members of its
    /// group live on (they are swept in the teardown). The seed's
    /// `waitProcess`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// let r = with_process(&Command::new("true"), stdin::empty(), discard, discard, |p| p.wait()).unwrap();
    /// assert!(r.success());
    /// ```
    pub fn wait(&self) -> SupervisionResult {
        self.shared.wait_settled_blocking()
    }

    /// Like [`wait`](Self::wait), but gives up after `limit`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// use std::time::Duration;
    /// with_process(&Command::new("sleep").arg("5"), stdin::empty(), discard, discard, |p| {
    ///     assert!(p.wait_timeout(Duration::from_millis(10)).is_none());
    /// }).unwrap();
    /// ```
    pub fn wait_timeout(&self, limit: std::time::Duration) -> Option<SupervisionResult> {
        self.shared
            .settled
            .wait_blocking_timeout(limit)
            .map(|()| self.shared.final_result())
    }

    /// The final result if it has been published; never blocks. The seed's
    /// `pollResult`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// with_process(&Command::new("sleep").arg("5"), stdin::empty(), discard, discard, |p| {
    ///     assert!(p.try_result().is_none());
    /// }).unwrap();
    /// ```
    pub fn try_result(&self) -> Option<SupervisionResult> {
        self.shared.result.get().cloned()
    }

    /// The child's pid. Advisory: once the child is reaped the number may
    /// name another process. Use [`signal`](Self::signal), which goes
    /// through the pidfd, rather than `kill(pid)`. The seed's
    /// `getAdvisoryPid`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// with_process(&Command::new("true"), stdin::empty(), discard, discard, |p| {
    ///     assert!(p.pid() > 1);
    /// }).unwrap();
    /// ```
    pub fn pid(&self) -> u32 {
        self.shared.target.pid()
    }

    /// The child's pid until it is reaped; `None` afterwards, when the
    /// number may name another process (tokio's `Child::id`).
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// let mut sleeper = Command::new("sleep");
    /// sleeper.arg("30");
    /// with_process(&sleeper, stdin::empty(), discard, discard, |p| {
    ///     assert!(p.id().is_some()); // still running
    ///     p.kill();
    ///     p.wait();
    ///     assert_eq!(p.id(), None); // reaped
    /// }).unwrap();
    /// ```
    pub fn id(&self) -> Option<u32> {
        (!self.shared.target.is_reaped()).then(|| self.pid())
    }

    /// The pidfd, to poll or pass on; `None` on kernels without pidfd.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// with_process(&Command::new("true"), stdin::empty(), discard, discard, |p| {
    ///     assert!(p.pidfd().is_some());
    /// }).unwrap();
    /// ```
    pub fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.borrow()
    }

    /// Sends `signal` to the child alone, through its pidfd. Returns
    /// `Ok(false)` and does nothing once the child has exited: a signal can
    /// never reach a process that merely inherited the pid. The seed's
    /// `sendSignal`.
    ///
    /// # Errors
    ///
    /// The OS error of `pidfd_send_signal`, such as `EPERM`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command, Signal};
    /// let r = with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
    ///     assert!(p.signal(Signal::USR1).unwrap());
    ///     let r = p.wait();
    ///     assert!(!p.signal(Signal::USR1).unwrap());
    ///     r
    /// }).unwrap();
    /// assert_eq!(r.exit.unwrap().signal(), Some(Signal::USR1));
    /// ```
    pub fn signal(&self, signal: Signal) -> io::Result<bool> {
        self.shared.target.signal_child(signal)
    }

    /// Sends `signal` to the child's whole process group (the child and the
    /// descendants that stayed in its group); to the child alone when
    /// [`Command::process_group`] is off. `Ok(false)` when nothing is left
    /// to signal.
    ///
    /// # Errors
    ///
    /// The OS error of the send, such as `EPERM`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command, Signal};
    /// with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
    ///     p.signal_group(Signal::KILL).unwrap();
    ///     p.wait()
    /// }).unwrap();
    /// ```
    pub fn signal_group(&self, signal: Signal) -> io::Result<bool> {
        self.shared.target.signal_group_members(signal)
    }

    /// Closes the child's stdin once the chunk being written (if any) is
    /// fully written; the producer is not called again. A call already
    /// under way (its thread may not have reached the producer's first line
    /// yet) finishes, and its chunk is dropped: nothing it produces reaches
    /// the child. Takes effect even while the producer is blocked in its
    /// own call (unlike the seed's `requestStdinClose`). Does not wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, with_process, Command};
    /// let r = with_process(&Command::new("cat"), || Ok(Some(b"x".to_vec())), discard, discard, |p| {
    ///     p.close_stdin();
    ///     p.wait()
    /// }).unwrap();
    /// assert!(r.success());
    /// ```
    pub fn close_stdin(&self) {
        match &self.stdin_close {
            Some(writer) => {
                writer.stop_producer();
                self.shared.stdin.request_close();
            }
            None => self.shared.stdin.close(),
        }
    }

    /// Begins the escalation now, without waiting for the action to end,
    /// and blocks until the result is published: stdin is closed, then up
    /// to a grace period for a natural exit, SIGTERM, a grace period,
    /// SIGKILL. If the child has already exited this just returns the
    /// result.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command, Termination};
    /// let r = with_process(&Command::new("cat"), stdin::empty(), discard, discard, |p| p.shutdown())
    ///     .unwrap();
    /// assert_eq!(r.termination, Termination::Clean); // cat saw EOF and left
    /// ```
    pub fn shutdown(&self) -> SupervisionResult {
        self.begin_shutdown();
        self.wait()
    }

    /// Begins the escalation at its signal step, now: `signal` goes to the
    /// child's group (the child alone without [`Command::process_group`])
    /// as the escalation's first signal, and SIGKILL follows a grace period
    /// later unless the child has exited. Stdin is left as it is. Returns at
    /// once; a later call changes nothing, nor does a call once the
    /// escalation has sent its first signal (the deadline's, say) — but
    /// after a first step that sent none
    /// ([`Command::term_signal`]`(None)`), `signal` is sent then, once,
    /// within the grace period already running. This is what
    /// `childminder run` does when it receives SIGINT, SIGTERM, SIGHUP or
    /// SIGQUIT.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command, Signal};
    /// let r = with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
    ///     p.terminate(Signal::INT);
    ///     p.wait()
    /// }).unwrap();
    /// assert_eq!(r.exit.unwrap().signal(), Some(Signal::INT));
    /// assert_eq!(r.escalation_cause, Some(childminder::EscalationCause::Requested));
    /// ```
    pub fn terminate(&self, signal: Signal) {
        self.shared.request_terminate(signal);
    }

    /// Starts the escalation now as if the deadline had expired, whether
    /// or not [`Command::deadline`](crate::Command::deadline) was set: the
    /// configured first signal, then SIGKILL a grace period later, and the
    /// result says [`EscalationCause::Deadline`](crate::EscalationCause::Deadline)
    /// ([`timed_out`](crate::SupervisionResult::timed_out) is true). Like
    /// the deadline, it changes nothing once the escalation has reached its
    /// first signal. Returns at once. (`childminder run` does this on
    /// SIGALRM, as GNU `timeout` does.)
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command, Signal};
    /// let r = with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
    ///     p.expire_deadline();
    ///     p.wait()
    /// }).unwrap();
    /// assert!(r.timed_out());
    /// assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
    /// ```
    pub fn expire_deadline(&self) {
        self.shared.request(REQ_DEADLINE);
    }

    /// Sends SIGKILL to the child's group now, the escalation's last step,
    /// whatever step it was at. Returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command, Signal, Termination};
    /// let r = with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
    ///     p.kill();
    ///     p.wait()
    /// }).unwrap();
    /// assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
    /// assert_eq!(r.termination, Termination::Escalated);
    /// ```
    pub fn kill(&self) {
        self.shared.kill_now();
    }

    /// Begins the escalation like [`shutdown`](Self::shutdown) but returns
    /// at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{discard, stdin, with_process, Command};
    /// with_process(&Command::new("sleep").arg("30"), stdin::empty(), discard, discard, |p| {
    ///     p.begin_shutdown();
    ///     p.wait()
    /// }).unwrap();
    /// ```
    pub fn begin_shutdown(&self) {
        self.shared.request(REQ_SHUTDOWN);
    }
}

/// Borrows the pidfd.
///
/// # Panics
///
/// On kernels without pidfd (before Linux 5.4, or with
/// `CHILDMINDER_FALLBACK=pid`); [`Process::pidfd`] is the fallible form.
impl std::os::fd::AsFd for Process {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.expect_fd()
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("program", &self.shared.program)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

/// Runs `cmd` under supervision for the duration of `action`: the seed's
/// `withProcess`.
///
/// - `stdin` feeds the child (see [`Input`]): a producer closure
///   returning `Ok(Some(chunk))`, `Ok(None)` (close stdin) or `Err`.
/// - `on_stdout` and `on_stderr` receive the child's output in order, in
///   chunks of at most [`Command::buffer_size`] bytes, on a thread of their
///   own: a pooled one, which earlier calls (from any thread) may have
///   used, so its thread-locals, signal mask and other per-thread settings
///   are not the caller's. A chunk read from the pipe is never empty: the
///   empty chunk is the end mark, passed once, after the stream ended (end
///   of file, the output cut off, a read error) and its pipe was closed —
///   the only call for an empty stream, none after the consumer's own
///   failure — so a consumer that buffers (as
///   [`Lines`](crate::consume::Lines) does) delivers the rest there, its
///   error recorded as any other. A consumer that returns `Err` or panics
///   is recorded in [`SupervisionResult::worker_errors`] and its pipe is
///   closed (the child sees EPIPE, as with `| head`). Consumers must
///   eventually return: `with_process` waits for them.
/// - `action` runs on the calling thread with the [`Process`] handle.
///
/// When `action` returns **or panics**, the teardown runs: stdin is closed
/// (once the input already handed over — a [`stdin::bytes`](crate::stdin::bytes)
/// buffer, the producer's last chunk — is written, if the child reads it;
/// the producer is not called again), the child gets up to a grace period
/// to exit by itself, then SIGTERM, a
/// grace period, SIGKILL, 1 s, a last status check. Then anything left in
/// its process group gets SIGTERM at once (the child's end was its notice:
/// no grace period first), SIGKILL a grace period later (SIGKILL straight
/// away after an escalation that sent it already). The exception is the
/// output cut-off: if something still holds the child's stdout or stderr
/// a grace period after the child's exit, the pipes are closed and the
/// whole group gets SIGKILL then, with no SIGTERM first. Only then, with every byte of
/// output delivered, every pipe and the pidfd closed and the child reaped,
/// does `with_process` return (or resume the panic).
///
/// # Errors
///
/// [`Error::InvalidOptions`], [`Error::PipeCreationFailed`],
/// [`Error::ProcessStartFailed`] or [`Error::Io`] when the child could not
/// be started, or when a thread it needs (the engine's, the stdio thread,
/// the input thread) or an fd could not be created: out of processes,
/// threads, memory or fds is [`Error::is_resource_exhausted`]. Nothing is
/// left running then: a child that had already started is killed and
/// reaped before the error returns, and the action never runs. Once the action has run, the
/// result is `Ok(action's value)`; what happened to the child is in the
/// [`SupervisionResult`] that [`Process::wait`] returns.
///
/// # Panics
///
/// Resumes the action's panic after the teardown. Panics of the producer
/// and consumers (in their calls) are caught and recorded as worker
/// errors. A panic in their `Drop` (which runs on childminder's threads,
/// after the output was delivered, maybe after the result was written) is
/// caught too, never reaches the caller, and is logged, not recorded.
///
/// # Examples
///
/// ```
/// use childminder::{stdin, with_process, Command};
///
/// let mut lines = Vec::new();
/// let upper = with_process(
///     Command::new("tr").args(["a-z", "A-Z"]),
///     stdin::bytes("hello\n"),
///     |chunk: &[u8]| { lines.extend_from_slice(chunk); Ok(()) },
///     childminder::discard,
///     |process| process.wait().success(),
/// )
/// .unwrap();
/// assert!(upper);
/// assert_eq!(lines, b"HELLO\n");
/// ```
pub fn with_process<T, O, E>(
    cmd: &Command,
    stdin: impl Into<Input>,
    on_stdout: O,
    on_stderr: E,
    action: impl FnOnce(&Process) -> T,
) -> Result<T, Error>
where
    O: FnMut(&[u8]) -> io::Result<()> + Send,
    E: FnMut(&[u8]) -> io::Result<()> + Send,
{
    with_process_result(cmd, stdin, on_stdout, on_stderr, action).map(|(value, _)| value)
}

/// [`with_process`], also returning the final [`SupervisionResult`], which
/// is known only after the teardown when the action returned while the
/// child still ran.
///
/// # Errors
///
/// As [`with_process`].
///
/// # Panics
///
/// As [`with_process`].
///
/// # Examples
///
/// ```
/// use childminder::{discard, stdin, with_process_result, Command, Termination};
///
/// // The action returns at once; the teardown closes cat's stdin and cat
/// // exits by itself.
/// let ((), result) = with_process_result(
///     &Command::new("cat"), stdin::empty(), discard, discard, |_| ()).unwrap();
/// assert_eq!(result.termination, Termination::Clean);
/// ```
pub fn with_process_result<T, O, E>(
    cmd: &Command,
    stdin: impl Into<Input>,
    on_stdout: O,
    on_stderr: E,
    action: impl FnOnce(&Process) -> T,
) -> Result<(T, SupervisionResult), Error>
where
    O: FnMut(&[u8]) -> io::Result<()> + Send,
    E: FnMut(&[u8]) -> io::Result<()> + Send,
{
    let stdin = stdin.into();
    let engine = engine_for(cmd)?;
    // Built before the spawn, so running out of fds is an error before
    // anything runs rather than output lost after.
    let stdio_runtime = if cmd.stdio[1..].iter().any(Stdio::is_piped) {
        // This thread's kept runtime (made now if none is), lent to the
        // stdio thread for the call.
        let runtime = crate::direct::Lent::take().map_err(|source| Error::Io {
            program: cmd.program_lossy(),
            context: "starting the stdio runtime",
            source,
        })?;
        Some(runtime)
    } else {
        None
    };
    let _context = engine.enter();
    let Started {
        shared,
        stdout,
        stderr,
    } = start(cmd)?;
    crate::at_exit::watch(&shared, Driver::engine(cmd.grace_period));
    let policy = Policy {
        grace: cmd.grace_period,
        deadline: cmd.deadline,
        term_signal: cmd.term_signal,
    };
    // Taken before the coordinator runs, which closes its own copy.
    let pidfd = PidfdLease::of(&shared.target);
    let has_stdio_work = stdout.is_some() || stderr.is_some();
    let (exit_seen, exit_seen_rx) = watch::channel(None);
    let (outputs_done_tx, outputs_done) = oneshot::channel();
    // The coordinator runs from here on, so every failure below can still
    // end and reap the child through it.
    engine.spawn(supervise(
        shared.clone(),
        policy,
        has_stdio_work.then_some(OutputDrain {
            exit_seen,
            outputs_done,
        }),
    ));
    let thread_failed = |source: io::Error| {
        shared.request(REQ_KILL | REQ_TEARDOWN);
        shared.finished.wait_blocking();
        Error::Io {
            program: shared.program.clone(),
            context: "starting a worker thread",
            source,
        }
    };
    let StdinSetup {
        feed,
        close_requested: stdin_close,
        producer,
    } = match feed_stdin(&shared, stdin, cmd.flush_stdin) {
        Ok(setup) => setup,
        Err(e) => {
            // Nothing will read the output: the coordinator must not wait.
            drop(outputs_done_tx);
            return Err(thread_failed(e));
        }
    };
    if let Some(feed) = feed {
        match shared.stdin.register() {
            Ok(()) => {
                // Before the task runs, so a close requested meanwhile is
                // already the graceful one.
                shared.stdin.attach_writer();
                engine.spawn(workers::write_stdin(shared.clone(), feed));
            }
            Err(e) => {
                shared.record_worker_error(Stream::Stdin, WorkerOp::Write, e);
                shared.stdin.close();
            }
        }
    }

    let process = Process {
        pidfd,
        shared: shared.clone(),
        stdin_close,
    };
    let run_action = || {
        let outcome = catch_unwind(AssertUnwindSafe(|| action(&process)));
        shared.request(REQ_TEARDOWN);
        shared.finished.wait_blocking();
        outcome
    };
    let outcome = match (has_stdio_work, stdio_runtime) {
        (true, Some(runtime)) => {
            let job = StdioJob {
                runtime,
                shared: shared.clone(),
                stdout: stdout.map(|fd| (fd, on_stdout)),
                stderr: stderr.map(|fd| (fd, on_stderr)),
                buffer_size: cmd.buffer_size,
                grace: cmd.grace_period,
                exit_seen: exit_seen_rx,
                outputs_done: outputs_done_tx,
            };
            let mut lent = None;
            let ran = pool::scope(|| lent = Some(workers::run_stdio(job)), run_action);
            if let Some(runtime) = lent {
                crate::direct::give_back(runtime);
            }
            match ran {
                Ok((outcome, stdio)) => {
                    if let Err(panic) = stdio {
                        // Consumer calls are caught where they run; this is
                        // a panic outside them (a consumer's Drop, say).
                        tracing::warn!(
                            program = %shared.program,
                            error = %crate::error::panic_to_io(panic),
                            "the stdio work panicked after the output was delivered"
                        );
                    }
                    outcome
                }
                Err(e) => return Err(thread_failed(e)),
            }
        }
        _ => run_action(),
    };
    // The coordinator closed stdin before `finished`, so the writer is gone.
    if let Some(producer) = producer {
        producer.finish();
    }
    match outcome {
        Ok(value) => Ok((value, shared.final_result())),
        Err(panic) => resume_unwind(panic),
    }
}

/// Sets up what feeds stdin: the writer's input (a task on the engine),
/// and the close-request handle of the writer, if there is one.
///
/// # Errors
///
/// When the producer's thread cannot be started.
fn feed_stdin(shared: &Arc<Shared>, stdin: Input, flush: bool) -> io::Result<StdinSetup> {
    let mut setup = StdinSetup {
        feed: None,
        close_requested: None,
        producer: None,
    };
    if !shared.stdin.is_open() {
        return Ok(setup);
    }
    let mut producer_thread = None;
    let (tx, chunks) = mpsc::channel(1);
    let control = Arc::new(StdinControl::default());
    let written = match stdin.0 {
        Source::Empty => {
            shared.stdin.close();
            return Ok(setup);
        }
        Source::Bytes(data) => {
            tx.try_send(data)
                .unwrap_or_else(|_| unreachable!("a fresh channel has room for one"));
            None
        }
        Source::Producer(producer) => {
            let (written_tx, written_rx) = if flush {
                let (a, b) = std::sync::mpsc::channel();
                (Some(a), Some(b))
            } else {
                (None, None)
            };
            producer_thread = Some(ProducerThread::start(
                producer,
                tx,
                written_rx,
                control.clone(),
                shared.clone(),
            )?);
            written_tx
        }
    };
    setup.feed = Some(StdinFeed { chunks, written });
    setup.close_requested = Some(control);
    setup.producer = producer_thread;
    Ok(setup)
}

/// What feeds stdin: the writer's input (a task on the engine), the
/// writer's close-request handle, and the producer thread, if any.
struct StdinSetup {
    feed: Option<StdinFeed>,
    close_requested: Option<Arc<StdinControl>>,
    producer: Option<ProducerThread>,
}

/// What [`Command::output`] collects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Output {
    /// Everything the child wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the child wrote to stderr.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub result: SupervisionResult,
}

impl Command {
    /// Runs the command to its end under the full supervision (deadline,
    /// escalation, group sweep), as std's `Command::status`: streams left at
    /// [`Stdio::Piped`] are inherited from this process, so the child's
    /// output shows (and it may read this process's stdin).
    ///
    /// # Errors
    ///
    /// As [`with_process`]: when the child cannot be started. Once it has
    /// run, a failure to wait for it (out of memory) is an [`Error::Io`],
    /// returned after the child and its group were killed and reaped. A
    /// failure to start the sweep of what it left in its group (out of fds)
    /// is not: the group is killed at once, without a grace period, and the
    /// failure is the result's `supervisor_error`.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = childminder::Command::new("echo").arg("shown").status().unwrap();
    /// assert!(r.success());
    /// ```
    pub fn status(&self) -> Result<SupervisionResult, Error> {
        self.run_to_end(self.piped_as(Stdio::Inherit, Stdio::Inherit))
    }

    /// The quiet form of [`status`](Self::status): streams left at
    /// [`Stdio::Piped`] are connected to `/dev/null` instead (empty stdin,
    /// output discarded, and no pipes or output thread to pay for). For a
    /// job whose output nobody wants; `status()` is std's meaning.
    ///
    /// # Errors
    ///
    /// As [`with_process`]: when the child cannot be started. Once it has
    /// run, a failure to wait for it (out of memory) is an [`Error::Io`],
    /// returned after the child and its group were killed and reaped. A
    /// failure to start the sweep of what it left in its group (out of fds)
    /// is not: the group is killed at once, without a grace period, and the
    /// failure is the result's `supervisor_error`.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = childminder::Command::new("sh").args(["-c", "echo hidden; exit 7"]).run().unwrap();
    /// assert_eq!(r.exit.unwrap().code(), Some(7));
    /// ```
    pub fn run(&self) -> Result<SupervisionResult, Error> {
        self.run_to_end(self.piped_as(Stdio::Null, Stdio::Null))
    }

    /// The streams of a one-line call: stdin left at [`Stdio::Piped`]
    /// becomes `stdin`, stdout and stderr left at it become `output`.
    pub(crate) fn piped_as(&self, stdin: Stdio, output: Stdio) -> [Stdio; 3] {
        let mut stdio = self.stdio.clone();
        for (index, slot) in stdio.iter_mut().enumerate() {
            if slot.is_piped() {
                *slot = if index == 0 {
                    stdin.clone()
                } else {
                    output.clone()
                };
            }
        }
        stdio
    }

    /// This command with its streams set as `stdio`.
    fn with_stdio(&self, stdio: [Stdio; 3]) -> Command {
        let mut cmd = self.clone();
        cmd.stdio = stdio;
        cmd
    }

    /// Runs a command without pipes to its end.
    fn run_to_end(&self, stdio: [Stdio; 3]) -> Result<SupervisionResult, Error> {
        if let Some(result) = crate::direct::run(self, &stdio, &mut Vec::new(), &mut Vec::new()) {
            return result;
        }
        // The result after the teardown, with what its sweeps did.
        with_process_result(
            &self.with_stdio(stdio),
            crate::stdin::empty(),
            discard,
            discard,
            |p| drop(p.wait()),
        )
        .map(|((), result)| result)
    }

    /// Runs the command to its end with empty stdin and collects its output.
    /// As std's `output()`, a stdin left at [`Stdio::Piped`] is `/dev/null`
    /// (the child reads end-of-file at once); stdout and stderr left at it
    /// are captured.
    ///
    /// # Errors
    ///
    /// As [`with_process`]: when the child cannot be started. Once it has
    /// run, a failure to wait for it (out of memory) is an [`Error::Io`],
    /// returned after the child and its group were killed and reaped. A
    /// failure to start the sweep of what it left in its group (out of fds)
    /// is not: the group is killed at once, without a grace period, and the
    /// failure is the result's `supervisor_error`.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("sh").args(["-c", "echo out; echo err >&2"])
    ///     .output().unwrap();
    /// assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    /// ```
    pub fn output(&self) -> Result<Output, Error> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let stdio = self.piped_as(Stdio::Null, Stdio::Piped);
        if let Some(result) = crate::direct::run(self, &stdio, &mut stdout, &mut stderr) {
            return Ok(Output {
                stdout,
                stderr,
                result: result?,
            });
        }
        let ((), result) = with_process_result(
            &self.with_stdio(stdio),
            crate::stdin::empty(),
            |c: &[u8]| {
                stdout.extend_from_slice(c);
                Ok(())
            },
            |c: &[u8]| {
                stderr.extend_from_slice(c);
                Ok(())
            },
            |p| drop(p.wait()),
        )?;
        Ok(Output {
            stdout,
            stderr,
            result,
        })
    }
}
