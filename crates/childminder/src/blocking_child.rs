//! The blocking, non-scoped handle: [`Command::start`] gives a
//! [`BlockingChild`] shaped like `std::process::Child` — std's own pipe
//! types, `wait`, `try_wait`, `kill`, `id` — whose drop tears the child
//! down in the background, as the async [`Child`](crate::Child)'s does.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::at_exit::Driver;
use crate::blocking::{Output, engine_for};
use crate::command::Command;
use crate::coordinator::{Policy, supervise};
use crate::error::Error;
use crate::pool;
use crate::result::SupervisionResult;
use crate::shared::{REQ_KILL, REQ_SHUTDOWN, REQ_TEARDOWN, Shared};
use crate::signal::Signal;
use crate::spawn::{Started, start};
use crate::sys;
use crate::target::PidfdLease;

/// The longest [`BlockingChild::try_wait`] waits, after seeing the exit,
/// for the engine to publish the result: far above the microseconds it
/// takes, for an engine thread the OS does not schedule at once; past it,
/// `None`, as before the exit.
const EXIT_TO_RESULT: Duration = Duration::from_secs(1);

/// A supervised child driven from blocking code: `std::process::Child`'s
/// shape, with the supervision of the rest of childminder.
///
/// | `std::process::Child` | `BlockingChild` |
/// |---|---|
/// | `stdin`, `stdout`, `stderr` (`Option<ChildStdin>` ...) | the same fields, of std's own types (`Write`, `Read`, `AsFd`, into `std::process::Stdio`) |
/// | `id() -> u32` | [`id()`](Self::id) `-> Option<u32>`, `None` once the child has ended (as tokio's); [`pid()`](Self::pid) always |
/// | `wait() -> io::Result<ExitStatus>` | [`wait()`](Self::wait) `-> SupervisionResult` (closes stdin first, as std does) |
/// | `try_wait() -> io::Result<Option<ExitStatus>>` | [`try_wait()`](Self::try_wait) `-> Option<SupervisionResult>` |
/// | `wait_with_output()` | [`wait_with_output()`](Self::wait_with_output) |
/// | `kill()`: SIGKILL to the child | [`kill()`](Self::kill): SIGKILL to its process group |
/// | dropping it: the child runs on, unreaped | dropping it: the teardown (grace, TERM, grace, KILL, the group) runs in the background, and the child is reaped |
///
/// Added: [`signal`](Self::signal), [`signal_group`](Self::signal_group),
/// [`terminate`](Self::terminate), [`shutdown`](Self::shutdown), the
/// [`deadline`](Command::deadline), and the pidfd through [`AsFd`].
///
/// The pipes are yours, as with std: the escalation cannot close a stdin
/// you hold (drop it, or call [`wait`](Self::wait), for EOF), and there is
/// no output cut-off — a grandchild holding stdout open keeps your read
/// waiting until the group is swept (on drop, [`kill`](Self::kill) or
/// [`shutdown`](Self::shutdown)).
///
/// The teardown a drop starts runs on childminder's engine thread: the
/// program's exit (`main` returning, or [`std::process::exit`]) waits for
/// it if it is still under way (from an `atexit` handler; at most about
/// four grace periods and 3 s, for a child that ignores SIGTERM), so the
/// child still gets its grace period and SIGTERM first. A handle not
/// dropped (still held, or forgotten) leaves its child running at exit,
/// as std's does; a program killed by a signal runs no exit handler (see
/// [`Command::kill_on_parent_death`]).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let mut child = childminder::Command::new("cat").start().unwrap();
/// child.stdin.take().unwrap().write_all(b"ping").unwrap(); // dropped: EOF
/// let mut out = String::new();
/// child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
/// assert_eq!(out, "ping");
/// assert!(child.wait().success());
/// ```
pub struct BlockingChild {
    /// The child's stdin, if piped: a blocking `Write`.
    pub stdin: Option<std::process::ChildStdin>,
    /// The child's stdout, if piped: a blocking `Read`.
    pub stdout: Option<std::process::ChildStdout>,
    /// The child's stderr, if piped: a blocking `Read`.
    pub stderr: Option<std::process::ChildStderr>,
    shared: Arc<Shared>,
    pidfd: PidfdLease,
}

impl Command {
    /// Spawns the child under supervision and returns at once with a
    /// blocking handle: std's `Command::spawn`. The coordinator (exit,
    /// escalation, deadline) runs on childminder's engine thread; nothing
    /// is tied to the calling thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`], [`Error::PipeCreationFailed`],
    /// [`Error::ProcessStartFailed`], or [`Error::Io`] (out of processes,
    /// threads, memory or fds is [`Error::is_resource_exhausted`]); nothing
    /// is left running on error.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = childminder::Command::new("sh").args(["-c", "exit 3"]).start().unwrap();
    /// assert_eq!(child.wait().exit.unwrap().code(), Some(3));
    /// ```
    pub fn start(&self) -> Result<BlockingChild, Error> {
        let engine = engine_for(self)?;
        let _context = engine.enter();
        let Started {
            shared,
            stdout,
            stderr,
        } = start(self)?;
        crate::at_exit::watch(&shared, Driver::engine(self.grace_period));
        // Taken before the coordinator runs, which closes its own copy.
        let pidfd = PidfdLease::of(&shared.target);
        let stdin = shared.stdin.take_fd();
        let blocking = |fd: Option<OwnedFd>| -> io::Result<Option<OwnedFd>> {
            fd.map(|fd| sys::set_blocking(fd.as_fd()).map(|()| fd))
                .transpose()
        };
        let pipes = (|| Ok((blocking(stdin)?, blocking(stdout)?, blocking(stderr)?)))();
        let policy = Policy {
            grace: self.grace_period,
            deadline: self.deadline,
            term_signal: self.term_signal,
        };
        engine.spawn(supervise(shared.clone(), policy, None));
        let (stdin, stdout, stderr) = match pipes {
            Ok(pipes) => pipes,
            Err(source) => {
                shared.request(REQ_KILL | REQ_TEARDOWN);
                shared.finished.wait_blocking();
                return Err(Error::Io {
                    program: shared.program.clone(),
                    context: "making the stdio pipes blocking",
                    source,
                });
            }
        };
        Ok(BlockingChild {
            stdin: stdin.map(Into::into),
            stdout: stdout.map(Into::into),
            stderr: stderr.map(Into::into),
            pidfd,
            shared,
        })
    }
}

impl BlockingChild {
    /// The child's pid until it is reaped; `None` afterwards, when the
    /// number may name another process (tokio's `Child::id`). childminder
    /// reaps in the background, so this can be `None` before
    /// [`wait`](Self::wait) is called.
    ///
    /// # Examples
    ///
    /// ```
    /// // A child that is still running is certainly not reaped yet.
    /// let mut child = childminder::Command::new("sleep").arg("30").start().unwrap();
    /// assert!(child.id().is_some());
    /// child.kill();
    /// child.wait();
    /// assert_eq!(child.id(), None);
    /// ```
    pub fn id(&self) -> Option<u32> {
        (!self.shared.target.is_reaped()).then(|| self.pid())
    }

    /// The child's pid, also after its end (advisory: see
    /// [`Process::pid`](crate::Process::pid)).
    ///
    /// # Examples
    ///
    /// ```
    /// let child = childminder::Command::new("true").start().unwrap();
    /// assert!(child.pid() > 1);
    /// ```
    pub fn pid(&self) -> u32 {
        self.shared.target.pid()
    }

    /// Closes stdin (as std's `wait` does), then blocks until the result is
    /// published and the child reaped (unless members of its process group
    /// live on: they are swept on drop, [`kill`](Self::kill) or
    /// [`shutdown`](Self::shutdown), and the child, whose zombie holds the
    /// group id on kernels before 6.9, is reaped then). Starts no
    /// escalation by itself (the deadline, if set, still applies); every
    /// later call returns the same result.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = childminder::Command::new("false").start().unwrap();
    /// assert_eq!(child.wait().exit.unwrap().code(), Some(1));
    /// ```
    pub fn wait(&mut self) -> SupervisionResult {
        self.stdin = None;
        self.shared.wait_settled_blocking()
    }

    /// Like [`wait`](Self::wait), giving up after `limit` (stdin is closed
    /// either way).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut child = childminder::Command::new("sleep").arg("5").start().unwrap();
    /// assert!(child.wait_timeout(Duration::from_millis(10)).is_none());
    /// ```
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<SupervisionResult> {
        self.stdin = None;
        self.shared
            .settled
            .wait_blocking_timeout(limit)
            .map(|()| self.shared.final_result())
    }

    /// The result if the child has ended; closes nothing. Never blocks
    /// on the child: once its exit is visible (its [`pidfd`](Self::pidfd)
    /// readable), the result is returned, waiting the moment the engine
    /// takes to publish it — microseconds; up to its 10 ms exit check on a
    /// kernel without pidfd; `None` if it takes over a second (an engine
    /// thread the OS does not run).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = childminder::Command::new("sleep").arg("5").start().unwrap();
    /// assert!(child.try_wait().is_none());
    /// ```
    pub fn try_wait(&mut self) -> Option<SupervisionResult> {
        if let Some(result) = self.shared.result.get() {
            return Some(result.clone());
        }
        // The exit can be visible (the pidfd a caller polls turned
        // readable) a moment before the engine, on its own thread, has
        // published the result: an acceptance test saw `None` there 28
        // times in 30, about 190 µs early, where std's `try_wait` reaps.
        // That moment is waited out; no user code runs in it.
        if matches!(self.shared.target.try_status(), Ok(Some(_))) {
            return self
                .shared
                .result
                .wait_blocking_timeout(EXIT_TO_RESULT)
                .cloned();
        }
        None
    }

    /// Closes stdin, reads stdout and stderr to their ends (both at once,
    /// so neither pipe can fill and stall the child), and waits: std's
    /// `wait_with_output`. A stream already taken out of the handle is
    /// returned empty.
    ///
    /// As with std, the ends are the pipes' end-of-file: a process the
    /// child left behind that still holds them (`sleep 30 &` in a shell)
    /// keeps this call reading until it closes them or exits, whatever the
    /// [`deadline`](Command::deadline) (the child itself has exited, so
    /// there is nothing left for it to end), and the handle is taken, so
    /// nothing can kill it meanwhile. [`Command::output`] is the bounded
    /// form: it cuts the output off a grace period after the child's exit
    /// and kills its group.
    ///
    /// # Errors
    ///
    /// A read error of either pipe ([`Error::Io`]); the child is torn down
    /// as on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// let child = childminder::Command::new("sh").args(["-c", "echo out; echo err >&2"])
    ///     .start().unwrap();
    /// let out = child.wait_with_output().unwrap();
    /// assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    /// assert!(out.result.success());
    /// ```
    pub fn wait_with_output(mut self) -> Result<Output, Error> {
        self.stdin = None;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let read = read_both(
            self.stdout.take(),
            &mut stdout,
            self.stderr.take(),
            &mut stderr,
        );
        let read = read.map_err(|source| Error::Io {
            program: self.shared.program.clone(),
            context: "reading the child's output",
            source,
        });
        read?;
        Ok(Output {
            stdout,
            stderr,
            result: self.wait(),
        })
    }

    /// Sends SIGKILL to the child's process group now (the escalation's last
    /// step), returning once it is sent (or the child had already ended);
    /// [`wait`](Self::wait) then gives the result.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = childminder::Command::new("sleep").arg("30").start().unwrap();
    /// child.kill();
    /// assert_eq!(child.wait().exit.unwrap().signal(), Some(childminder::Signal::KILL));
    /// ```
    pub fn kill(&mut self) {
        // As std's, the signal is sent when this returns (`kill_now` sends
        // it here), so closing stdin next (in `wait`) cannot let the child
        // exit by itself first.
        self.shared.kill_now();
    }

    /// Sends `signal` to the child alone, through its pidfd; `Ok(false)`
    /// once it has exited.
    ///
    /// # Errors
    ///
    /// The OS error of the send, such as `EPERM`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::Signal;
    /// let mut child = childminder::Command::new("sleep").arg("30").start().unwrap();
    /// assert!(child.signal(Signal::TERM).unwrap());
    /// assert_eq!(child.wait().exit.unwrap().signal(), Some(Signal::TERM));
    /// ```
    pub fn signal(&self, signal: Signal) -> io::Result<bool> {
        self.shared.target.signal_child(signal)
    }

    /// Sends `signal` to the child's process group; `Ok(false)` when
    /// nothing is left.
    ///
    /// # Errors
    ///
    /// The OS error of the send.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = childminder::Command::new("sleep").arg("30").start().unwrap();
    /// child.signal_group(childminder::Signal::KILL).unwrap();
    /// child.wait();
    /// ```
    pub fn signal_group(&self, signal: Signal) -> io::Result<bool> {
        self.shared.target.signal_group_members(signal)
    }

    /// Begins the escalation at its signal step with `signal` (see
    /// [`Process::terminate`](crate::Process::terminate)); returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::Signal;
    /// let mut child = childminder::Command::new("sleep").arg("30").start().unwrap();
    /// child.terminate(Signal::INT);
    /// assert_eq!(child.wait().exit.unwrap().signal(), Some(Signal::INT));
    /// ```
    pub fn terminate(&self, signal: Signal) {
        self.shared.request_terminate(signal);
    }

    /// Runs the whole escalation now (stdin closed, grace, TERM, grace,
    /// KILL), sweeps the group, reaps, and returns the result.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut child = childminder::Command::new("sleep").arg("30")
    ///     .grace_period(Duration::from_millis(50)).start().unwrap();
    /// assert_eq!(child.shutdown().termination, childminder::Termination::Escalated);
    /// ```
    pub fn shutdown(&mut self) -> SupervisionResult {
        self.stdin = None;
        self.shared.request(REQ_SHUTDOWN);
        self.shared.finished.wait_blocking();
        self.shared.final_result()
    }

    /// The pidfd, to poll (it turns readable when the child exits) or to
    /// pass on; `None` on kernels without pidfd. It stays open as long as
    /// this handle.
    ///
    /// # Examples
    ///
    /// ```
    /// let child = childminder::Command::new("true").start().unwrap();
    /// assert!(child.pidfd().is_some());
    /// ```
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.borrow()
    }
}

/// Borrows the pidfd.
///
/// # Panics
///
/// On kernels without pidfd (before Linux 5.4, or with
/// `CHILDMINDER_FALLBACK=pid`); [`BlockingChild::pidfd`] is the fallible form.
impl AsFd for BlockingChild {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.expect_fd()
    }
}

impl Drop for BlockingChild {
    fn drop(&mut self) {
        crate::at_exit::handle_dropped(&self.shared);
    }
}

impl std::fmt::Debug for BlockingChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingChild")
            .field("program", &self.shared.program)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

/// Reads both pipes to their ends at once: stderr on a pooled thread,
/// stdout on this one, as std's `read2` keeps either from filling up.
fn read_both(
    stdout: Option<impl Read + Send>,
    out: &mut Vec<u8>,
    stderr: Option<impl Read + Send>,
    err: &mut Vec<u8>,
) -> io::Result<()> {
    if stdout.is_none() || stderr.is_none() {
        read_to_end(stdout, out)?;
        return read_to_end(stderr, err);
    }
    let mut err_read = Ok(());
    let (out_read, _) = pool::scope(
        || err_read = read_to_end(stderr, err),
        || read_to_end(stdout, out),
    )?;
    out_read?;
    err_read
}

fn read_to_end(pipe: Option<impl Read>, buf: &mut Vec<u8>) -> io::Result<()> {
    match pipe {
        Some(mut pipe) => pipe.read_to_end(buf).map(drop),
        None => Ok(()),
    }
}
