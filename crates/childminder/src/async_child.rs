//! The async API: [`Command::spawn`] gives a supervised [`Child`] whose
//! streams are `AsyncRead`/`AsyncWrite`, on the caller's tokio runtime, with
//! no thread per child or per stream; [`with_child`] is the scoped form.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

use crate::at_exit::Driver;
use crate::blocking::Output;
use crate::command::{Command, Stdio};
use crate::coordinator::{Policy, supervise};
use crate::error::Error;
use crate::result::SupervisionResult;
use crate::shared::{REQ_DEADLINE, REQ_SHUTDOWN, Shared, StdinSlot};
use crate::signal::Signal;
use crate::spawn::{Started, start};
use crate::target::PidfdLease;

/// A supervised child on the caller's tokio runtime.
///
/// Its streams are yours to read and write; reading slowly slows the child
/// (the pipe fills and its writes block), nothing buffers without bound.
/// Since you do the reading, the blocking API's output cut-off does not
/// apply: if a grandchild keeps stdout open after the child's exit, your
/// read sees end-of-file only when the group is swept (on drop or
/// [`shutdown`](Self::shutdown)); bound it with `tokio::time::timeout` if
/// that matters.
/// Dropping the `Child` starts the teardown in the background (close stdin,
/// grace, TERM, grace, KILL, then the group) and the child is reaped there:
/// nothing leaks, as long as the runtime keeps running; if the runtime
/// shuts down first, the child and its group are SIGKILLed and reaped, and
/// the result says so: `Escalated`, `kill_sent_after` and the exit (or, if
/// the child had exited by itself, that exit), with a `supervisor_error`
/// naming the shutdown. If the program exits ([`std::process::exit`])
/// with a dropped child's teardown still under way on a runtime that may
/// not run it any more, the child and its group get SIGKILL at the exit
/// (from an `atexit` handler; its cgroup, if it has one, is removed); a
/// `Child` not dropped is left running then.
///
/// # Examples
///
/// ```
/// use childminder::Command;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut child = Command::new("cat").spawn().unwrap();
/// let mut stdin = child.stdin.take().unwrap();
/// stdin.write_all(b"ping").await.unwrap();
/// drop(stdin); // EOF for cat
/// let mut out = String::new();
/// child.stdout.take().unwrap().read_to_string(&mut out).await.unwrap();
/// assert_eq!(out, "ping");
/// assert!(child.wait().await.success());
/// # }
/// ```
pub struct Child {
    /// The child's stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if piped.
    pub stderr: Option<ChildStderr>,
    shared: Arc<Shared>,
    pidfd: PidfdLease,
}

impl Command {
    /// Spawns the child under supervision on the current tokio runtime.
    /// The [`deadline`](Self::deadline), if any, is running from now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`], [`Error::PipeCreationFailed`],
    /// [`Error::ProcessStartFailed`], or [`Error::Io`]; nothing is left
    /// running on error.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime, or on one without time enabled
    /// (the escalation's timers), before anything is started. On a runtime without IO,
    /// tokio's panic comes once the child has started: the child (and its
    /// group) is killed and reaped before the panic goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("true").spawn().unwrap();
    /// assert!(child.wait().await.success());
    /// # }
    /// ```
    pub fn spawn(&self) -> Result<Child, Error> {
        // Checked before anything exists, so the documented panic leaves no
        // child behind.
        crate::spawn::require_runtime("childminder::Command::spawn");
        let Started {
            shared,
            stdout,
            stderr,
        } = start(self)?;
        crate::at_exit::watch(&shared, Driver::CallersRuntime);
        // tokio panics here on a runtime without IO (when the pidfd did not
        // panic first: without pidfds): the child is ended first.
        let registered = catch_unwind(AssertUnwindSafe(|| {
            shared.stdin.register()?;
            Ok((
                stdout
                    .map(pipe::Receiver::from_owned_fd_unchecked)
                    .transpose()?,
                stderr
                    .map(pipe::Receiver::from_owned_fd_unchecked)
                    .transpose()?,
            ))
        }));
        let end_child = || {
            let target = &shared.target;
            let _ = target.signal_escalation(Signal::KILL);
            target.wait_exit_blocking(std::time::Duration::from_secs(1));
            let _ = target.reap();
            target.close();
        };
        let (stdout, stderr) = match registered {
            Ok(Ok(pipes)) => pipes,
            Ok(Err(source)) => {
                // The reactor is out of room: end the child we just started.
                end_child();
                return Err(Error::Io {
                    program: shared.program.clone(),
                    context: "registering the stdio pipes",
                    source,
                });
            }
            Err(panic) => {
                end_child();
                resume_unwind(panic)
            }
        };
        let policy = Policy {
            grace: self.grace_period,
            deadline: self.deadline,
            term_signal: self.term_signal,
        };
        // Taken before the coordinator runs, which closes its own copy.
        let pidfd = PidfdLease::of(&shared.target);
        tokio::spawn(supervise(shared.clone(), policy, None));
        Ok(Child {
            stdin: shared.stdin.is_open().then(|| ChildStdin {
                slot: shared.stdin.clone(),
            }),
            stdout: stdout.map(|pipe| ChildStdout { pipe }),
            stderr: stderr.map(|pipe| ChildStderr { pipe }),
            pidfd,
            shared,
        })
    }

    /// Runs the command to its end on the current runtime with stdin at
    /// `/dev/null` (unless set otherwise) and collects stdout and stderr:
    /// tokio's `Command::output`. The supervision (exit, escalation,
    /// deadline, readers) runs inside this future, in the calling task: no
    /// task is spawned, no wake-up crosses threads. Unless a cgroup, the
    /// subreaper or a terminal hand-over is asked for (and on Linux 6.9+),
    /// it waits on the pidfd, the pipes and its own timers alone,
    /// registered with the runtime as tokio's own `output()` does; the
    /// timers follow the runtime's clock: on a paused clock the deadline and
    /// the grace periods pass as soon as the runtime idles, as
    /// `tokio::time::timeout`'s do, while the child runs in real time (a
    /// child that needs real time to finish is escalated against at once),
    /// and the steps' times in the result are on that clock (`runtime`
    /// stays std's).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future kills the child's group (SIGKILL) and reaps the
    /// child before the drop returns (waiting at most 1 s for its exit; a
    /// child stuck in the kernel past that is left to the engine, which
    /// reaps it when it exits).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn), and [`Error::Io`] when reading the output
    /// fails.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime or on one without time enabled (before
    /// anything is spawned), and on a runtime without I/O enabled (tokio's panic; the child is killed and
    /// reaped before it goes on).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let out = childminder::Command::new("echo").arg("hi").output_async().await.unwrap();
    /// assert_eq!(out.stdout, b"hi\n");
    /// assert!(out.result.success());
    /// # }
    /// ```
    pub async fn output_async(&self) -> Result<Output, Error> {
        let stdio = self.piped_as(Stdio::Null, Stdio::Piped);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let result = crate::direct::run_async(self, &stdio, &mut stdout, &mut stderr).await?;
        Ok(Output {
            stdout,
            stderr,
            result,
        })
    }

    /// Runs the command to its end on the current runtime with the
    /// streams left at [`Stdio::Piped`] inherited from this process, as
    /// tokio's (and std's) `Command::status`: the child's output shows.
    /// Runs inside this future, as [`output_async`](Self::output_async).
    ///
    /// # Cancel safety
    ///
    /// As [`output_async`](Self::output_async): dropping the future kills
    /// and reaps the child.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    ///
    /// # Panics
    ///
    /// As [`output_async`](Self::output_async).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let r = childminder::Command::new("sh").args(["-c", "exit 4"]).status_async().await.unwrap();
    /// assert_eq!(r.exit.unwrap().code(), Some(4));
    /// # }
    /// ```
    pub async fn status_async(&self) -> Result<SupervisionResult, Error> {
        let stdio = self.piped_as(Stdio::Inherit, Stdio::Inherit);
        crate::direct::run_async(self, &stdio, &mut Vec::new(), &mut Vec::new()).await
    }
}

impl Child {
    /// The child's pid (advisory: see [`Process::pid`](crate::Process::pid)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("true").spawn().unwrap();
    /// assert!(child.pid() > 1);
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        self.shared.target.pid()
    }

    /// The child's pid until it is reaped; `None` afterwards, when the
    /// number may name another process (tokio's `Child::id`). childminder
    /// reaps in the background, so this can be `None` before
    /// [`wait`](Self::wait) is awaited.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("true").spawn().unwrap();
    /// assert!(child.id().is_some());
    /// child.wait().await;
    /// assert_eq!(child.id(), None);
    /// # }
    /// ```
    pub fn id(&self) -> Option<u32> {
        (!self.shared.target.is_reaped()).then(|| self.pid())
    }

    /// The pidfd, to poll or pass on; `None` on kernels without pidfd. It
    /// stays open as long as this handle.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("true").spawn().unwrap();
    /// assert!(child.pidfd().is_some());
    /// # }
    /// ```
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.borrow()
    }

    /// Closes stdin, reads stdout and stderr to their ends concurrently, and
    /// waits for the result: tokio's `Child::wait_with_output`. A stream
    /// already taken out of the `Child` is returned empty.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when reading either stream fails (the child is then
    /// torn down in the background, as on drop).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the `Child`: the teardown runs in the
    /// background.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("sh").args(["-c", "echo out; echo err >&2"])
    ///     .spawn().unwrap();
    /// let out = child.wait_with_output().await.unwrap();
    /// assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    /// # }
    /// ```
    pub async fn wait_with_output(mut self) -> Result<Output, Error> {
        use tokio::io::AsyncReadExt;
        self.close_stdin();
        async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut buf).await?;
            }
            Ok(buf)
        }
        let (stdout, stderr) =
            tokio::join!(read_all(self.stdout.take()), read_all(self.stderr.take()));
        let failed = |source| Error::Io {
            program: self.shared.program.clone(),
            context: "reading the child's output",
            source,
        };
        let (stdout, stderr) = (stdout.map_err(failed)?, stderr.map_err(failed)?);
        Ok(Output {
            stdout,
            stderr,
            result: self.wait().await,
        })
    }

    /// Signals the child alone through its pidfd; `Ok(false)` once it has
    /// exited.
    ///
    /// # Errors
    ///
    /// The OS error of the send, such as `EPERM`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use childminder::Signal;
    /// let child = childminder::Command::new("sleep").arg("30").spawn().unwrap();
    /// child.signal(Signal::KILL).unwrap();
    /// assert_eq!(child.wait().await.exit.unwrap().signal(), Some(Signal::KILL));
    /// # }
    /// ```
    pub fn signal(&self, signal: Signal) -> io::Result<bool> {
        self.shared.target.signal_child(signal)
    }

    /// Signals the child's process group (the child alone without
    /// [`Command::process_group`]); `Ok(false)` when nothing is left.
    ///
    /// # Errors
    ///
    /// The OS error of the send.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("sleep").arg("30").spawn().unwrap();
    /// child.signal_group(childminder::Signal::TERM).unwrap();
    /// child.wait().await;
    /// # }
    /// ```
    pub fn signal_group(&self, signal: Signal) -> io::Result<bool> {
        self.shared.target.signal_group_members(signal)
    }

    /// The result, if published; never blocks. The supervising task, on
    /// this runtime, publishes it when it next runs after the exit: right
    /// after the [`pidfd`](Self::pidfd) turns readable it can still be
    /// `None` (on a current-thread runtime, until the caller awaits);
    /// [`wait`](Self::wait) is the call that cannot miss it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("sleep").arg("5").spawn().unwrap();
    /// assert!(child.try_result().is_none());
    /// # }
    /// ```
    pub fn try_result(&self) -> Option<SupervisionResult> {
        self.shared.result.get().cloned()
    }

    /// Waits for the child's end and returns the result, once the child is
    /// reaped (as tokio's `wait`; unless members of its process group live
    /// on, which are swept on drop or [`shutdown`](Self::shutdown)). Does
    /// not start any escalation by itself (the deadline, if set, still
    /// applies). Unlike tokio's, it does not close stdin (it takes `&self`,
    /// and [`stdin`](Self::stdin) is yours): a child that reads to the end
    /// of its input, `cat`, waits for you to drop `child.stdin` first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing; wait again.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("false").spawn().unwrap();
    /// assert_eq!(child.wait().await.exit.unwrap().code(), Some(1));
    /// # }
    /// ```
    pub async fn wait(&self) -> SupervisionResult {
        self.shared.wait_settled().await
    }

    /// Runs the escalation now (close stdin, grace, TERM, grace, KILL),
    /// sweeps the process group, reaps, and returns the result.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the escalation, once begun, continues in the
    /// background; calling again waits for the same result.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let child = childminder::Command::new("sleep").arg("30")
    ///     .grace_period(Duration::from_millis(100)).spawn().unwrap();
    /// let r = child.shutdown().await;
    /// assert_eq!(r.termination, childminder::Termination::Escalated);
    /// # }
    /// ```
    pub async fn shutdown(&self) -> SupervisionResult {
        self.shared.request(REQ_SHUTDOWN);
        self.shared.finished.wait().await;
        self.shared.result.wait().await;
        self.shared.final_result()
    }

    /// Begins the escalation at its signal step with `signal` (see
    /// [`Process::terminate`](crate::Process::terminate)); returns at once.
    /// The supervising task sends the signal and times the grace period:
    /// on a current-thread runtime that is at the caller's next `.await`
    /// (unlike [`kill`](Self::kill), which sends before it returns; a
    /// second first signal is not harmless, a second SIGKILL is).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use childminder::Signal;
    /// let child = childminder::Command::new("sleep").arg("30").spawn().unwrap();
    /// child.terminate(Signal::TERM);
    /// assert_eq!(child.wait().await.exit.unwrap().signal(), Some(Signal::TERM));
    /// # }
    /// ```
    pub fn terminate(&self, signal: Signal) {
        self.shared.request_terminate(signal);
    }

    /// Starts the escalation now as if the deadline had expired: the
    /// configured first signal, SIGKILL a grace period later, and
    /// [`timed_out`](crate::SupervisionResult::timed_out) true in the
    /// result. Changes nothing once the escalation has reached its first
    /// signal. Returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("sleep").arg("30").spawn().unwrap();
    /// child.expire_deadline();
    /// assert!(child.wait().await.timed_out());
    /// # }
    /// ```
    pub fn expire_deadline(&self) {
        self.shared.request(REQ_DEADLINE);
    }

    /// Sends SIGKILL to the child's group now, before returning, as tokio's
    /// `start_kill` does (even on a current-thread runtime whose task has
    /// not run yet); [`wait`](Self::wait) then gives the result.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let child = childminder::Command::new("sleep").arg("30").spawn().unwrap();
    /// child.kill();
    /// assert!(child.wait().await.exit.unwrap().signal().is_some());
    /// # }
    /// ```
    pub fn kill(&self) {
        self.shared.kill_now();
    }

    /// Closes the child's stdin now, whether or not [`stdin`](Self::stdin)
    /// was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut child = childminder::Command::new("cat").spawn().unwrap();
    /// child.close_stdin();
    /// assert!(child.wait().await.success());
    /// # }
    /// ```
    pub fn close_stdin(&mut self) {
        self.stdin = None;
        self.shared.stdin.close();
    }
}

/// Borrows the pidfd.
///
/// # Panics
///
/// On kernels without pidfd (before Linux 5.4, or with
/// `CHILDMINDER_FALLBACK=pid`); [`Child::pidfd`] is the fallible form.
impl AsFd for Child {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.expect_fd()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        crate::at_exit::handle_dropped(&self.shared);
    }
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("program", &self.shared.program)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

/// Runs `action` with a supervised child, then tears it down (close stdin,
/// grace, TERM, grace, KILL, the group), reaps it, and returns the action's
/// value: the async form of [`with_process`](crate::with_process).
///
/// If the returned future is dropped (cancelled) or the action panics, the
/// child is still torn down: on a panic before the panic resumes; on
/// cancellation in the background.
///
/// # Errors
///
/// As [`Command::spawn`].
///
/// # Panics
///
/// Resumes the action's panic after the teardown. Panics as
/// [`Command::spawn`] does (outside a tokio runtime, or on one without
/// time or IO enabled).
///
/// # Cancel safety
///
/// Dropping the future starts the teardown in the background; the child is
/// still escalated and reaped.
///
/// # Examples
///
/// ```
/// use childminder::{with_child, Command};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let first_line = with_child(Command::new("yes").arg("hello"), async |child| {
///     let mut buf = [0u8; 6];
///     child.stdout.as_mut().unwrap().read_exact(&mut buf).await.unwrap();
///     buf
/// })
/// .await
/// .unwrap();
/// assert_eq!(&first_line, b"hello\n");
/// # }
/// ```
pub async fn with_child<T, F>(cmd: &Command, action: F) -> Result<T, Error>
where
    F: AsyncFnOnce(&mut Child) -> T,
{
    let mut child = cmd.spawn()?;
    let outcome = CatchUnwind(Box::pin(action(&mut child))).await;
    let shared = child.shared.clone();
    drop(child);
    shared.finished.wait().await;
    match outcome {
        Ok(value) => Ok(value),
        Err(panic) => resume_unwind(panic),
    }
}

/// Polls a future, turning a panic into an `Err` so the teardown can run
/// before the panic resumes.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The child's stdin: `AsyncWrite`. Writes wait while the pipe is full.
/// Dropping it closes the pipe (the child reads EOF).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tokio::io::AsyncWriteExt;
/// let mut child = childminder::Command::new("cat").spawn().unwrap();
/// let mut stdin = child.stdin.take().unwrap();
/// stdin.write_all(b"x").await.unwrap();
/// # }
/// ```
pub struct ChildStdin {
    slot: Arc<StdinSlot>,
}

impl AsyncWrite for ChildStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.slot.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A pipe has no user-space buffer: every write is already in it.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.slot.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChildStdin {
    fn drop(&mut self) {
        self.slot.close();
    }
}

/// The child's stdout: `AsyncRead`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tokio::io::AsyncReadExt;
/// let mut child = childminder::Command::new("echo").arg("hi").spawn().unwrap();
/// let mut out = Vec::new();
/// child.stdout.take().unwrap().read_to_end(&mut out).await.unwrap();
/// assert_eq!(out, b"hi\n");
/// # }
/// ```
pub struct ChildStdout {
    pipe: pipe::Receiver,
}

/// The child's stderr: `AsyncRead`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tokio::io::AsyncReadExt;
/// let mut child = childminder::Command::new("sh").args(["-c", "echo oops >&2"]).spawn().unwrap();
/// let mut err = Vec::new();
/// child.stderr.take().unwrap().read_to_end(&mut err).await.unwrap();
/// assert_eq!(err, b"oops\n");
/// # }
/// ```
pub struct ChildStderr {
    pipe: pipe::Receiver,
}

/// Readiness and raw access for the two output pipes, for a caller that
/// moves the bytes itself (`splice(2)` into another pipe, as the
/// `childminder` command does) instead of reading them through `AsyncRead`.
macro_rules! output_pipe_impls {
    ($name:ident, $field:ident, $script:literal) => {
        impl AsyncRead for $name {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.pipe).poll_read(cx, buf)
            }
        }

        /// The read end of the pipe: non-blocking, registered with the
        /// runtime. Use it only inside [`try_io`](Self::try_io), so the
        /// runtime learns when the pipe is drained.
        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.pipe.as_fd()
            }
        }

        impl $name {
            /// Waits until the pipe may be read: data, end-of-file, or an
            /// error. The readiness can be stale: the read in
            /// [`try_io`](Self::try_io) may still find nothing.
            ///
            /// # Errors
            ///
            /// The runtime's error when the pipe's registration failed.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe.
            ///
            /// # Examples
            ///
            /// See [`try_io`](Self::try_io).
            pub async fn readable(&self) -> io::Result<()> {
                self.pipe.readable().await
            }

            /// Runs `f`, a non-blocking operation on the pipe's fd
            /// ([`as_fd`](AsFd::as_fd)), such as `read(2)` or
            /// `splice(2)`. If `f` returns [`io::ErrorKind::WouldBlock`],
            /// the pipe is marked not readable, so the next
            /// [`readable`](Self::readable) waits for new data. Return
            /// `WouldBlock` from `f` only when the pipe itself was empty.
            ///
            /// # Errors
            ///
            /// `f`'s error; `WouldBlock` when the pipe is not known to be
            /// readable (call [`readable`](Self::readable) first).
            ///
            /// # Examples
            ///
            /// ```
            /// # #[tokio::main(flavor = "current_thread")]
            /// # async fn main() {
            /// use std::os::fd::AsFd;
            #[doc = concat!("let mut child = childminder::Command::new(\"sh\")")]
            #[doc = concat!("    .args([\"-c\", \"", $script, "\"]).spawn().unwrap();")]
            #[doc = concat!("let pipe = child.", stringify!($field), ".take().unwrap();")]
            /// let mut buf = [0u8; 16];
            /// let n = loop {
            ///     pipe.readable().await.unwrap();
            ///     match pipe.try_io(|| Ok(rustix::io::read(pipe.as_fd(), &mut buf)?)) {
            ///         Ok(n) => break n,
            ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            ///         Err(e) => panic!("{e}"),
            ///     }
            /// };
            /// assert_eq!(&buf[..n], b"hi\n");
            /// # }
            /// ```
            pub fn try_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
                self.pipe.try_io(f)
            }
        }
    };
}

output_pipe_impls!(ChildStdout, stdout, "echo hi");
output_pipe_impls!(ChildStderr, stderr, "echo hi >&2");

/// What the supervision tree needs beyond the public API.
impl Child {
    /// Resolves once the coordinator has finished: the child reaped and its
    /// group swept.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub(crate) async fn finished(&self) {
        self.shared.finished.wait().await;
    }

    /// Begins the escalation at its signal step with the command's own
    /// first signal (or none, if it has none): what a supervisor's stop
    /// does.
    pub(crate) fn stop_now(&self) {
        self.shared.request(crate::shared::REQ_TERMINATE);
    }
}

impl ChildStdout {
    pub(crate) fn into_pipe(self) -> pipe::Receiver {
        self.pipe
    }
}

impl ChildStderr {
    pub(crate) fn into_pipe(self) -> pipe::Receiver {
        self.pipe
    }
}
