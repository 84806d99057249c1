//! What a tree reports: its event stream, its children's output, and the
//! outcome that says why it ended.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::error::{Error, Stream};
use crate::result::SupervisionResult;

/// One state change of one child (or supervisor) in a tree.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, EventKind, Restart, SupervisorSpec, Tree, TreeOptions};
/// use childminder::Command;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let spec = SupervisorSpec::new()
///     .child(ChildSpec::process("hello", Command::new("true")).restart(Restart::Temporary));
/// let mut options = TreeOptions::new();
/// let mut events = options.events();
/// let tree = Tree::start_with(&spec, options).unwrap();
/// let mut names = Vec::new();
/// while let Some(event) = events.recv().await {
///     names.push(format!("{} {}", event.path, event.kind.as_str()));
/// }
/// assert_eq!(names[..3], ["hello starting", "hello ready", "hello exited"]);
/// tree.wait().await;
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event {
    /// When it happened (wall clock).
    pub time: SystemTime,
    /// The child's name path: nested names joined with `/`
    /// (`backend/api`); empty for the root supervisor itself.
    pub path: Arc<str>,
    /// The pid of the process's current run: `None` for a supervisor, and
    /// for a process when no run is current: before the spawn
    /// (`starting`, `spawn_failed`) and after the run's `exited`
    /// (`restarting`, `stopped`).
    pub pid: Option<u32>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a child. After `exited`, `spawn_failed` or (for a
/// supervisor) `finished` comes `restarting` (it will be started again
/// after the delay) or `stopped` (it stays down); when the tree stops
/// during the delay, a `restarting` is followed by `stopped` (it stays
/// down after all).
///
/// # Examples
///
/// ```
/// use childminder::supervisor::EventKind;
/// assert_eq!(EventKind::Stopping.as_str(), "stopping");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// About to be started (a process: before the spawn, `pid` is `None`).
    Starting,
    /// Running: its readiness check passed (at once without one).
    Ready,
    /// Not ready within its start timeout: it is being stopped, and the
    /// start counts as its abnormal end.
    StartTimeout,
    /// A process ended (or a stop of it completed), with the single-process
    /// engine's result and how the supervisor judged the end.
    Exited {
        /// Exit status, termination, who stopped it, timings.
        result: Box<SupervisionResult>,
        /// Normal, abnormal, or stopped on request.
        verdict: Verdict,
    },
    /// The process could not be spawned (an abnormal end).
    SpawnFailed {
        /// Why.
        error: Arc<Error>,
    },
    /// A nested supervisor (or the root) ended.
    Finished {
        /// Why it ended.
        outcome: Arc<Outcome>,
    },
    /// It will be started again after `delay` (jitter included).
    Restarting {
        /// The delay before the restart.
        delay: Duration,
        /// 1 for the first restart of the current streak (a streak ends
        /// when the child stayed up for its backoff's `reset_after`); 0
        /// for a restart asked through the handle (`restart_child`), which
        /// counts toward no streak and no intensity.
        restart_count: u32,
    },
    /// A stop of it began (the first signal was sent, or a nested
    /// supervisor began stopping its children).
    Stopping,
    /// It is down and stays down (stopped on request, temporary, a normal
    /// end of a transient child, or its supervisor is ending).
    Stopped,
    /// This supervisor exceeded its restart intensity: it stops all its
    /// children in reverse order and ends abnormally.
    GaveUp {
        /// The path of the child whose end tripped the limit.
        child: Arc<str>,
    },
}

impl EventKind {
    /// The name used in the CLI's JSON events: `starting`, `ready`,
    /// `start_timeout`, `exited`, `spawn_failed`, `finished`, `restarting`,
    /// `stopping`, `stopped`, `gave_up`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::EventKind::Ready.as_str(), "ready");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Starting => "starting",
            EventKind::Ready => "ready",
            EventKind::StartTimeout => "start_timeout",
            EventKind::Exited { .. } => "exited",
            EventKind::SpawnFailed { .. } => "spawn_failed",
            EventKind::Finished { .. } => "finished",
            EventKind::Restarting { .. } => "restarting",
            EventKind::Stopping => "stopping",
            EventKind::Stopped => "stopped",
            EventKind::GaveUp { .. } => "gave_up",
        }
    }
}

/// How a supervisor judged a child's end.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::Verdict;
/// assert!(Verdict::Abnormal.is_abnormal());
/// assert!(!Verdict::Requested.is_abnormal());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Ended by itself with a success exit code (or, for a supervisor,
    /// without giving up).
    Normal,
    /// Ended by itself otherwise: another code, a signal we did not send, a
    /// failed spawn, a start timeout, a supervisor that gave up.
    Abnormal,
    /// Stopped because its supervisor asked (a stop, a strategy's restart
    /// of a sibling, a shutdown). Never abnormal, whatever the exit status.
    Requested,
}

impl Verdict {
    /// True for [`Verdict::Abnormal`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!childminder::supervisor::Verdict::Normal.is_abnormal());
    /// ```
    pub fn is_abnormal(self) -> bool {
        self == Verdict::Abnormal
    }
}

/// How one run of a child ended.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::ChildExit;
/// let e = ChildExit::StartTimeout(None);
/// assert_eq!(e.exit_code(), 1);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChildExit {
    /// The process ran and ended.
    Exited(Box<SupervisionResult>),
    /// The process could not be spawned.
    SpawnFailed(Arc<Error>),
    /// The child was not ready within its start timeout and was stopped;
    /// the result of that stop, for a process.
    StartTimeout(Option<Box<SupervisionResult>>),
    /// A nested supervisor ended.
    Supervisor(Arc<Outcome>),
}

impl ChildExit {
    /// The shell-style status `childminder up` exits with for this end:
    /// the exit code, or 128 + the signal; 1 for a start timeout; for a
    /// failed spawn, as `childminder run` reports it, 127 (not found), 126
    /// (not executable) or 125 (anything else); a nested supervisor's
    /// [`Outcome::exit_code`].
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildExit, Outcome};
    /// use std::sync::Arc;
    /// assert_eq!(ChildExit::Supervisor(Arc::new(Outcome::Stopped)).exit_code(), 0);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            ChildExit::Exited(result) => result.exit.map_or(1, |e| e.shell_code()),
            ChildExit::SpawnFailed(error) if error.is_not_found() => 127,
            ChildExit::SpawnFailed(error) if error.is_permission_denied() => 126,
            ChildExit::SpawnFailed(_) => 125,
            ChildExit::StartTimeout(_) => 1,
            ChildExit::Supervisor(outcome) => outcome.exit_code(),
        }
    }

    /// The process result, if a process ran.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(childminder::supervisor::ChildExit::StartTimeout(None).result().is_none());
    /// ```
    pub fn result(&self) -> Option<&SupervisionResult> {
        match self {
            ChildExit::Exited(r) => Some(r),
            ChildExit::StartTimeout(r) => r.as_deref(),
            ChildExit::SpawnFailed(_) | ChildExit::Supervisor(_) => None,
        }
    }
}

/// The last run of one child, as a [`Outcome::Completed`] tree reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LastRun {
    /// The child's path.
    pub path: Arc<str>,
    /// How its last run ended; `None` if it never ran.
    pub exit: Option<ChildExit>,
    /// How its supervisor judged that end.
    pub verdict: Verdict,
}

/// Why a tree (or a nested supervisor) ended.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, Outcome, Restart, SupervisorSpec, Tree};
/// use childminder::Command;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "exit 3"]);
/// let spec = SupervisorSpec::new()
///     .child(ChildSpec::process("job", cmd).restart(Restart::Temporary));
/// let outcome = Tree::start(&spec).unwrap().wait().await;
/// assert!(matches!(*outcome, Outcome::Completed { .. }));
/// assert_eq!(outcome.exit_code(), 3);
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// Stopped on request ([`Tree::stop`](super::Tree::stop), or its parent
    /// stopped it).
    Stopped,
    /// A significant child's end triggered the auto-shutdown.
    AutoShutdown {
        /// The path of the significant child whose end triggered it.
        child: Arc<str>,
        /// How it ended.
        exit: ChildExit,
        /// How that end was judged: normal (a success exit code) or
        /// abnormal.
        verdict: Verdict,
    },
    /// The restart intensity was exceeded.
    GaveUp {
        /// The path of the child whose end tripped the limit. When that
        /// child is a nested supervisor that itself gave up, this is still
        /// the nested supervisor; [`Outcome::culprit`] follows the chain.
        child: Arc<str>,
        /// How it ended.
        exit: ChildExit,
    },
    /// No child is left running and none will be restarted: each child's
    /// last run, in start order.
    Completed {
        /// Each child's last run.
        last: Vec<LastRun>,
    },
    /// The tree was killed ([`Tree::kill`](super::Tree::kill), also during
    /// a stop), or, for a nested supervisor, its parent stopped it with
    /// [`Shutdown::BrutalKill`](super::Shutdown::BrutalKill).
    Killed,
}

impl Outcome {
    /// The exit status `childminder up` derives from the outcome:
    ///
    /// - stopped on request or killed: 0;
    /// - auto-shutdown: 0 if the triggering child succeeded (its exit
    ///   code is one of its success codes), else its status; for a nested
    ///   supervisor, its own outcome's status;
    /// - gave up: the status of the process whose failure tripped it,
    ///   followed down nested supervisors (1 for a start timeout);
    /// - completed: 0 if every child's last run was normal, else the
    ///   status of the first (in start order) that was abnormal; a nested
    ///   supervisor counts with its own status, so a failure inside it
    ///   counts where the supervisor stands.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::Outcome::Stopped.exit_code(), 0);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Stopped | Outcome::Killed => 0,
            // A nested supervisor's end is judged by whether it gave up;
            // its status is its own outcome's (a failed process that shut
            // it down included).
            Outcome::AutoShutdown {
                exit: ChildExit::Supervisor(inner),
                ..
            } => inner.exit_code(),
            Outcome::AutoShutdown { verdict, .. } if *verdict != Verdict::Abnormal => 0,
            Outcome::AutoShutdown { exit, .. } | Outcome::GaveUp { exit, .. } => {
                match exit.exit_code() {
                    0 => 1,
                    code => code,
                }
            }
            Outcome::Completed { last } => last
                .iter()
                .find_map(|run| match run.exit.as_ref()? {
                    // A nested supervisor's own status, failures inside
                    // it included (it may have completed with some).
                    ChildExit::Supervisor(inner) => Some(inner.exit_code()).filter(|&c| c != 0),
                    // An abnormal end whose status reads 0 (0 left out of
                    // the success codes) is still a failure.
                    exit if run.verdict.is_abnormal() => Some(match exit.exit_code() {
                        0 => 1,
                        code => code,
                    }),
                    _ => None,
                })
                .unwrap_or(0),
        }
    }

    /// For [`Outcome::GaveUp`] and [`Outcome::AutoShutdown`]: the path and
    /// end of the process at the bottom of the chain (through nested
    /// supervisors that gave up or shut down).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(childminder::supervisor::Outcome::Stopped.culprit().is_none());
    /// ```
    pub fn culprit(&self) -> Option<(&Arc<str>, &ChildExit)> {
        match self {
            Outcome::AutoShutdown { child, exit, .. } | Outcome::GaveUp { child, exit } => {
                match exit {
                    ChildExit::Supervisor(inner) => inner.culprit().or(Some((child, exit))),
                    _ => Some((child, exit)),
                }
            }
            _ => None,
        }
    }

    /// True when the supervisor gave up: the outcome its parent treats as
    /// an abnormal end.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!childminder::supervisor::Outcome::Stopped.is_failure());
    /// ```
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::GaveUp { .. })
    }
}

/// A piece of a child's stdout or stderr, as it arrived.
///
/// Chunks of one stream of one run come in order; chunks of different
/// children interleave in arrival order. After the last chunk of a stream
/// comes one with [`eof`](Self::eof) set and no bytes: flush any partial
/// line then.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OutputChunk {
    /// The child's name path.
    pub path: Arc<str>,
    /// The pid of the run that wrote it.
    pub pid: u32,
    /// [`Stream::Stdout`] or [`Stream::Stderr`].
    pub stream: Stream,
    /// The bytes (empty when `eof`).
    pub bytes: Vec<u8>,
    /// The stream of this run has ended.
    pub eof: bool,
}

/// The receiving end of a tree's event stream
/// ([`TreeOptions::events`](super::TreeOptions::events)). Unbounded: the
/// tree never waits for it.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the tree has ended and every event was
    /// received (the last is the root's `finished`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no event is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{SupervisorSpec, Tree, TreeOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut options = TreeOptions::new();
    /// let mut events = options.events();
    /// Tree::start_with(&SupervisorSpec::new(), options).unwrap();
    /// let last = events.recv().await.unwrap();
    /// assert_eq!(last.kind.as_str(), "finished");
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting; never blocks.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut options = childminder::supervisor::TreeOptions::new();
    /// let mut events = options.events();
    /// assert!(events.try_recv().is_none());
    /// ```
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// The receiving end of a tree's output channel
/// ([`TreeOptions::output`](super::TreeOptions::output)). Bounded: while it
/// is full the readers wait, the children's pipes fill, and the children
/// block on their writes — backpressure. Stops, restarts and escalations
/// never wait for it. Dropping it discards the rest of the output (the
/// pipes are still drained).
#[derive(Debug)]
pub struct Output {
    pub(crate) rx: mpsc::Receiver<OutputChunk>,
}

impl Output {
    /// The next chunk; `None` once the tree has ended and every reader has
    /// delivered everything.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no chunk is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Restart, SupervisorSpec, Tree, TreeOptions};
    /// use childminder::Command;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut cmd = Command::new("echo");
    /// cmd.arg("hi");
    /// let spec = SupervisorSpec::new()
    ///     .child(ChildSpec::process("echo", cmd).restart(Restart::Temporary));
    /// let mut options = TreeOptions::new();
    /// let mut output = options.output(16);
    /// let tree = Tree::start_with(&spec, options).unwrap();
    /// let chunk = output.recv().await.unwrap();
    /// assert_eq!((&*chunk.path, &chunk.bytes[..]), ("echo", &b"hi\n"[..]));
    /// tree.wait().await;
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<OutputChunk> {
        self.rx.recv().await
    }
}
