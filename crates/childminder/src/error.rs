//! The error type, and the record of a failed stdio worker.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Everything that can go wrong starting or supervising a child.
///
/// Every message names the program, so a log line is useful on its own.
/// The variants are the seed's `ProcessError` kinds; [`Error::Io`] is new
/// and covers the supervisor's own OS calls.
///
/// # Examples
///
/// ```
/// use childminder::{Command, Error};
///
/// let err = Command::new("/definitely/not/here").run().unwrap_err();
/// match err {
///     Error::ProcessStartFailed { ref source, .. } => {
///         assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
///         assert!(err.is_not_found());
///     }
///     other => panic!("unexpected {other}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The [`Command`](crate::Command) was rejected before anything was
    /// spawned: empty program, NUL bytes, a bad environment key, a buffer
    /// size out of range, a duration too large to represent, a missing
    /// working directory.
    #[error("invalid options for {program:?}: {reason}")]
    InvalidOptions {
        /// The program as given.
        program: String,
        /// What was wrong, in words.
        reason: String,
    },
    /// The program could not be started: not found
    /// ([`Error::is_not_found`]), found but not executable
    /// ([`Error::is_permission_denied`]), or the OS out of processes or
    /// memory for it ([`Error::is_resource_exhausted`]). `source` is the OS
    /// error of the spawn.
    #[error("failed to start {program:?}: {source}")]
    ProcessStartFailed {
        /// The program as given.
        program: String,
        /// The OS error of the spawn.
        #[source]
        source: io::Error,
    },
    /// The stdio pipes could not be created (typically the fd limit).
    #[error("failed to create the stdio pipes for {program:?}: {source}")]
    PipeCreationFailed {
        /// The program as given.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A stdio worker failed: the producer, a consumer, or the pipe I/O.
    /// Worker failures are recorded in
    /// [`SupervisionResult::worker_errors`](crate::SupervisionResult::worker_errors)
    /// and never change the classification; this variant is how one
    /// travels as an `Error` (see [`WorkerError::into_error`]).
    #[error("{0}")]
    WorkerDied(WorkerError),
    /// [`Command::cgroup`](crate::Command::cgroup) was asked for, and no
    /// cgroup could be made for the child: no cgroup v2 hierarchy (v1
    /// only), a read-only one, no write access to the parent directory (no
    /// delegation), or a kernel without `cgroup.kill` (before 5.14).
    /// Nothing was started. [`Cgroup::fallback`](crate::Cgroup::fallback)
    /// runs the child without a cgroup instead.
    #[error("no cgroup for {program:?}: {reason}: {source}")]
    CgroupUnavailable {
        /// The program as given.
        program: String,
        /// What was tried.
        reason: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An OS call of the supervisor itself failed, or a required kernel
    /// feature is missing.
    #[error("supervising {program:?}: {context}: {source}")]
    Io {
        /// The program as given.
        program: String,
        /// What the supervisor was doing.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Nothing was spawned: this process ignores SIGCHLD (`SIG_IGN`, or a
    /// handler with `SA_NOCLDWAIT`), so the kernel would reap the child by
    /// itself the moment it exits and its exit status would be lost (every
    /// wait would fail with ECHILD). Restore SIGCHLD's default disposition
    /// (`signal(SIGCHLD, SIG_DFL)`, as GNU `timeout` does at its start)
    /// before spawning. A shell's `trap '' CHLD` passes the ignored
    /// SIGCHLD on to the programs it runs.
    #[error(
        "cannot supervise {program:?}: this process ignores SIGCHLD, so the kernel would \
         reap the child and lose its exit status; restore SIGCHLD's default disposition \
         before spawning"
    )]
    ChildrenReapedByTheKernel {
        /// The program as given.
        program: String,
    },
}

impl Error {
    /// True when the program was not found (on `PATH`, or at the path given).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = childminder::Command::new("no-such-program-xyz").run().unwrap_err();
    /// assert!(err.is_not_found());
    /// ```
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::ProcessStartFailed { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True when the program was found but could not be executed: no
    /// execute permission (`EACCES`, `EPERM`), not an executable format
    /// (`ENOEXEC`), a directory, a missing `#!` interpreter or dynamic
    /// loader, an argument list too long (`E2BIG`), and the other refusals
    /// of `execve` itself. `childminder run` exits 126 for these, as GNU
    /// `timeout` does.
    ///
    /// False for a program that was not found ([`is_not_found`](Self::is_not_found))
    /// and for a start that failed for lack of a resource
    /// ([`is_resource_exhausted`](Self::is_resource_exhausted)): the program
    /// itself may be fine then.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = childminder::Command::new("/").run().unwrap_err();
    /// assert!(err.is_permission_denied());
    /// assert!(!err.is_resource_exhausted());
    /// ```
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::ProcessStartFailed { source, .. }
            if source.kind() != io::ErrorKind::NotFound && !is_resource_errno(source))
    }

    /// True when the OS ran out of a resource that childminder needed:
    /// processes or threads (`EAGAIN`, as with `ulimit -u`), memory
    /// (`ENOMEM`, as with `ulimit -v`), file descriptors (`EMFILE`,
    /// `ENFILE`, as with `ulimit -n`) or kernel buffers (`ENOBUFS`), while
    /// starting the child ([`Error::ProcessStartFailed`],
    /// [`Error::PipeCreationFailed`]) or supervising it ([`Error::Io`]:
    /// the engine's thread, a stdio thread, the pidfd). It says nothing
    /// about the program, and trying again later may succeed.
    /// `childminder run` exits 125 for these, with the OS message.
    ///
    /// Whatever failed, nothing is left behind: a child that had already
    /// started is ended (SIGKILL to its group) and reaped before the error
    /// is returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::Error;
    ///
    /// let err = Error::ProcessStartFailed {
    ///     program: "make".into(),
    ///     source: std::io::Error::from_raw_os_error(11), // EAGAIN: fork refused
    /// };
    /// assert!(err.is_resource_exhausted());
    /// assert!(!err.is_permission_denied());
    /// ```
    pub fn is_resource_exhausted(&self) -> bool {
        match self {
            Error::ProcessStartFailed { source, .. }
            | Error::PipeCreationFailed { source, .. }
            | Error::Io { source, .. }
            | Error::CgroupUnavailable { source, .. } => is_resource_errno(source),
            Error::InvalidOptions { .. }
            | Error::WorkerDied(_)
            | Error::ChildrenReapedByTheKernel { .. } => false,
        }
    }
}

/// The errnos that mean "out of a resource", not "this program cannot run".
pub(crate) fn is_resource_errno(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::ENOBUFS)
    ) || error.kind() == io::ErrorKind::OutOfMemory
}

impl Error {
    /// The [`io::ErrorKind`] std would give for this failure:
    /// `InvalidInput` for rejected options (std's kind for a NUL byte), the
    /// OS error's kind otherwise. Two differ from std's, where childminder
    /// decides before the OS does: an empty program and a missing (or
    /// not-a-directory) working directory are rejected options here,
    /// `InvalidInput`, where std's spawn fails with `NotFound` (or
    /// `NotADirectory`); and a script whose `#!` interpreter is missing is
    /// `PermissionDenied` here (found but cannot run: 126, as the shells
    /// say), where std passes the exec's `NotFound` on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// let err = childminder::Command::new("true").arg("a\0b").run().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::InvalidOptions { .. } => io::ErrorKind::InvalidInput,
            Error::ProcessStartFailed { source, .. }
            | Error::PipeCreationFailed { source, .. }
            | Error::Io { source, .. }
            | Error::CgroupUnavailable { source, .. } => source.kind(),
            Error::WorkerDied(worker) => worker.source.kind(),
            Error::ChildrenReapedByTheKernel { .. } => io::ErrorKind::Unsupported,
        }
    }
}

/// So `?` works in a function returning `io::Result`, as with std's
/// process calls: the kind is [`Error::kind`], the message the whole
/// error's, and the `Error` is the source.
///
/// # Examples
///
/// ```
/// fn run() -> std::io::Result<bool> {
///     Ok(childminder::Command::new("true").run()?.success())
/// }
/// assert!(run().unwrap());
/// ```
impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        io::Error::new(error.kind(), error)
    }
}

/// Which standard stream a worker served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The child's standard input.
    Stdin,
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Stdin => "stdin",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// What a failed worker was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerOp {
    /// The stdin producer returned an error or panicked.
    Produce,
    /// Writing to the child's stdin failed (other than the child closing it).
    Write,
    /// Reading the child's stdout or stderr failed.
    Read,
    /// The stdout or stderr consumer returned an error or panicked.
    Consume,
}

impl fmt::Display for WorkerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerOp::Produce => "produce",
            WorkerOp::Write => "write",
            WorkerOp::Read => "read",
            WorkerOp::Consume => "consume",
        })
    }
}

/// A stdio worker's failure, as recorded in
/// [`SupervisionResult::worker_errors`](crate::SupervisionResult::worker_errors).
///
/// The seed dropped these silently; childminder keeps them. A panic in a
/// producer or consumer is recorded here too, with the panic message, and
/// does not unwind through the supervisor.
///
/// # Examples
///
/// ```
/// use childminder::{Command, Stream, WorkerOp};
///
/// let result = childminder::with_process(
///     Command::new("sh").args(["-c", "echo hello"]),
///     childminder::stdin::empty(),
///     |_chunk: &[u8]| Err(std::io::Error::other("disk full")),
///     childminder::discard,
///     |p| p.wait(),
/// )
/// .unwrap();
/// let failure = &result.worker_errors[0];
/// assert_eq!((failure.stream, failure.op), (Stream::Stdout, WorkerOp::Consume));
/// assert!(failure.to_string().contains("disk full"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{program:?}: {stream} worker failed to {op}: {source}")]
pub struct WorkerError {
    /// The program the worker served.
    pub program: String,
    /// The stream.
    pub stream: Stream,
    /// What it was doing.
    pub op: WorkerOp,
    /// The underlying error; a panic is carried as an [`io::Error`] of kind
    /// [`Other`](io::ErrorKind::Other) whose message is the panic's.
    #[source]
    pub source: Arc<io::Error>,
}

impl WorkerError {
    pub(crate) fn new(program: &str, stream: Stream, op: WorkerOp, source: io::Error) -> Self {
        WorkerError {
            program: program.to_owned(),
            stream,
            op,
            source: Arc::new(source),
        }
    }

    /// Wraps this failure as an [`Error::WorkerDied`], for callers that want
    /// to fail with `?` when any worker failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), childminder::Error> {
    /// let result = childminder::Command::new("true").run()?;
    /// if let Some(e) = result.worker_errors.first() {
    ///     return Err(e.clone().into_error());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn into_error(self) -> Error {
        Error::WorkerDied(self)
    }
}

impl From<WorkerError> for Error {
    fn from(e: WorkerError) -> Error {
        Error::WorkerDied(e)
    }
}

/// Turns a caught panic payload into the `io::Error` a [`WorkerError`] carries.
pub(crate) fn panic_to_io(payload: Box<dyn std::any::Any + Send>) -> io::Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    io::Error::other(format!("panicked: {msg}"))
}
