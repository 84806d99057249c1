//! The handle of a running tree: its status, control of single children,
//! stopping or killing the whole tree, and awaiting its end.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};

use super::SpecError;
use super::driver::{self, Control, Shared};
use super::events::{ChildExit, Event, Events, Outcome, Output, OutputChunk, Verdict};
use super::spec::SupervisorSpec;
use crate::signal::Signal;

/// How a tree runs: where its events and output go, and whether its
/// processes die with this one. Each channel exists only if asked for.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::TreeOptions;
/// let mut options = TreeOptions::new();
/// let events = options.events();
/// let output = options.output(64);
/// options.kill_on_parent_death(true);
/// # let _ = (events, output);
/// ```
#[derive(Debug, Default)]
pub struct TreeOptions {
    pub(crate) events: Option<mpsc::UnboundedSender<Event>>,
    pub(crate) output: Option<mpsc::Sender<OutputChunk>>,
    pub(crate) kill_on_parent_death: bool,
    pub(crate) jitter_seed: Option<u64>,
}

impl TreeOptions {
    /// No event stream, no output channel (children inherit this
    /// process's stdout and stderr), `kill_on_parent_death` off.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = childminder::supervisor::TreeOptions::new();
    /// # let _ = options;
    /// ```
    pub fn new() -> TreeOptions {
        TreeOptions::default()
    }

    /// Asks for the event stream: every state change of every child, with
    /// a timestamp, in the order they happened in each supervisor. The
    /// channel is unbounded (the tree never waits for the reader), so read
    /// it. Calling it again replaces the earlier stream.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut options = childminder::supervisor::TreeOptions::new();
    /// let mut events = options.events();
    /// # let _ = &mut events;
    /// ```
    pub fn events(&mut self) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        Events { rx }
    }

    /// Asks for the children's piped stdout and stderr as tagged chunks
    /// in one channel of `capacity` chunks (at least 1), instead of
    /// inheriting this process's. The tree drains every pipe itself; a
    /// full channel slows the children, never a stop.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut options = childminder::supervisor::TreeOptions::new();
    /// let mut output = options.output(64);
    /// # let _ = &mut output;
    /// ```
    pub fn output(&mut self, capacity: usize) -> Output {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.output = Some(tx);
        Output { rx }
    }

    /// Sets [`Command::kill_on_parent_death`](crate::Command::kill_on_parent_death)
    /// on every process of the tree, so a SIGKILL of this process still
    /// takes them along (their groups are reached by the tree's own stop
    /// otherwise). Default off: it moves each spawn to the slower fork
    /// path. Each spawn happens on a runtime worker thread, which lives as
    /// long as the runtime does. A process that is passed fds (a
    /// [`Readiness::Fd`](super::Readiness::Fd) check, or
    /// [`Command::pass_fd`](crate::Command::pass_fd)) cannot take the fork
    /// path and is spawned without it.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::supervisor::TreeOptions::new().kill_on_parent_death(true);
    /// ```
    pub fn kill_on_parent_death(&mut self, enable: bool) -> &mut TreeOptions {
        self.kill_on_parent_death = enable;
        self
    }

    /// Seeds the backoff jitter, for reproducible delays (tests). Default:
    /// seeded from the clock and the pid.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::supervisor::TreeOptions::new().jitter_seed(42);
    /// ```
    pub fn jitter_seed(&mut self, seed: u64) -> &mut TreeOptions {
        self.jitter_seed = Some(seed);
        self
    }
}

/// Where a child is in its life, as [`Tree::status`] reports it.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::ChildState;
/// assert_eq!(ChildState::Running.as_str(), "running");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChildState {
    /// Not started yet, or waiting for the children before it.
    Pending,
    /// Spawned, its readiness not yet seen.
    Starting,
    /// Ready.
    Running,
    /// A stop of it is under way.
    Stopping,
    /// Waiting out its restart delay.
    Restarting,
    /// Down, and staying down.
    Stopped,
}

impl ChildState {
    /// Lower-case name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::ChildState::Stopped.as_str(), "stopped");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Pending => "pending",
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Stopping => "stopping",
            ChildState::Restarting => "restarting",
            ChildState::Stopped => "stopped",
        }
    }
}

/// One child's status: a snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChildStatus {
    /// Its name path.
    pub path: Arc<str>,
    /// True for a nested supervisor.
    pub is_supervisor: bool,
    /// Where it is.
    pub state: ChildState,
    /// Its current process's pid, while it has one.
    pub pid: Option<u32>,
    /// How often it was restarted since the tree started.
    pub restarts: u32,
    /// How its last run ended, and the verdict.
    pub last_exit: Option<(ChildExit, Verdict)>,
    /// When its state last changed.
    pub since: SystemTime,
}

/// A request the tree could not take.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::ControlError;
/// let e = ControlError::NoSuchChild("web".into());
/// assert_eq!(e.to_string(), "no child named \"web\" in the tree");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No child has this path.
    #[error("no child named {0:?} in the tree")]
    NoSuchChild(String),
    /// The tree (or the nested supervisor holding the child) is not
    /// running, so nothing can be done to the child now.
    #[error("the supervisor of {0:?} is not running")]
    NotRunning(String),
}

/// A running supervision tree: the handle.
///
/// The tree runs on tokio tasks of the runtime it was started on: one per
/// supervisor and one per running process, no thread of its own. Dropping
/// the handle does not stop the tree; [`stop`](Self::stop) or
/// [`shutdown`](Self::shutdown) does. (If the runtime itself shuts down,
/// every process is SIGKILLed and reaped, as for a single child.)
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, Outcome, SupervisorSpec, Tree};
/// use childminder::Command;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut sleeper = Command::new("sleep");
/// sleeper.arg("30");
/// let spec = SupervisorSpec::new()
///     .child(ChildSpec::process("a", sleeper.clone()))
///     .child(ChildSpec::process("b", sleeper));
/// let tree = Tree::start(&spec).unwrap();
/// tree.running().await; // every child is up
/// let outcome = tree.shutdown().await; // b, then a
/// assert!(matches!(*outcome, Outcome::Stopped));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Tree {
    pub(crate) root: mpsc::UnboundedSender<Control>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) outcome: watch::Receiver<Option<Arc<Outcome>>>,
    pub(crate) paths: Arc<Vec<Arc<str>>>,
}

impl Tree {
    /// Validates the spec and starts the tree with default options
    /// (children inherit stdio, no event stream). Children start in order,
    /// each after the one before it is running.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] (see [`SupervisorSpec::validate`]); nothing is
    /// started then.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or on one without IO or without time
    /// enabled, before anything starts (tokio's own message for the
    /// missing driver).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// tree.wait().await; // no children: completed at once
    /// # }
    /// ```
    pub fn start(spec: &SupervisorSpec) -> Result<Tree, SpecError> {
        Tree::start_with(spec, TreeOptions::new())
    }

    /// Validates the spec and starts the tree with these options.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{SupervisorSpec, Tree, TreeOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut options = TreeOptions::new();
    /// let _events = options.events();
    /// let tree = Tree::start_with(&SupervisorSpec::new(), options).unwrap();
    /// tree.wait().await;
    /// # }
    /// ```
    pub fn start_with(spec: &SupervisorSpec, options: TreeOptions) -> Result<Tree, SpecError> {
        spec.validate()?;
        crate::spawn::require_runtime("childminder::supervisor::Tree::start");
        crate::spawn::require_io();
        Ok(driver::start_tree(spec, options))
    }

    /// A snapshot of every child of the tree, depth first in start order
    /// (a nested supervisor before its children).
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, SupervisorSpec, Tree};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut cmd = childminder::Command::new("sleep");
    /// cmd.arg("30");
    /// let tree = Tree::start(&SupervisorSpec::new().child(ChildSpec::process("s", cmd))).unwrap();
    /// tree.running().await;
    /// let status = tree.status();
    /// assert_eq!(&*status[0].path, "s");
    /// assert!(status[0].pid.is_some());
    /// tree.shutdown().await;
    /// # }
    /// ```
    pub fn status(&self) -> Vec<ChildStatus> {
        self.shared.status_snapshot()
    }

    /// The status of one child.
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchChild`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// assert!(tree.child_status("nope").is_err());
    /// # }
    /// ```
    pub fn child_status(&self, path: &str) -> Result<ChildStatus, ControlError> {
        self.status()
            .into_iter()
            .find(|s| &*s.path == path)
            .ok_or_else(|| ControlError::NoSuchChild(path.to_owned()))
    }

    fn control(&self, path: &str, make: fn(Arc<str>) -> Control) -> Result<(), ControlError> {
        let Some(path) = self.paths.iter().find(|p| &***p == path) else {
            return Err(ControlError::NoSuchChild(path.to_owned()));
        };
        // The outcome is published before the root's task lets go of its
        // receiver: a send in between would be taken, and dropped (an
        // acceptance run got `Ok` right after `shutdown().await`).
        if self.outcome.borrow().is_some() {
            return Err(ControlError::NotRunning(path.to_string()));
        }
        self.root
            .send(make(path.clone()))
            .map_err(|_| ControlError::NotRunning(path.to_string()))
    }

    /// Stops one child (as its shutdown spec says) and keeps it down: no
    /// restart, no strategy action, no auto-shutdown. Returns once the
    /// request is queued; the `stopping`/`exited`/`stopped` events tell the
    /// progress.
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchChild`], or [`ControlError::NotRunning`] when
    /// the tree has ended. A request for a child of a nested supervisor that
    /// is down is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// assert!(tree.stop_child("web").is_err());
    /// # }
    /// ```
    pub fn stop_child(&self, path: &str) -> Result<(), ControlError> {
        self.control(path, Control::StopChild)
    }

    /// Starts a child that is down (stopped through the handle, or ended
    /// for good), at once, without counting a restart. A running child is
    /// left alone.
    ///
    /// # Errors
    ///
    /// As [`stop_child`](Self::stop_child).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// assert!(tree.start_child("web").is_err());
    /// # }
    /// ```
    pub fn start_child(&self, path: &str) -> Result<(), ControlError> {
        self.control(path, Control::StartChild)
    }

    /// Stops a child and starts it again at once, without counting a
    /// restart against the intensity and without applying the strategy to
    /// its siblings.
    ///
    /// # Errors
    ///
    /// As [`stop_child`](Self::stop_child).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// assert!(tree.restart_child("web").is_err());
    /// # }
    /// ```
    pub fn restart_child(&self, path: &str) -> Result<(), ControlError> {
        self.control(path, Control::RestartChild)
    }

    /// Begins an orderly stop of the whole tree: every supervisor stops its
    /// children in reverse order, each as its shutdown spec says (first
    /// signal, grace, KILL). Returns at once; [`wait`](Self::wait) for the
    /// end. The outcome is [`Outcome::Stopped`] unless the tree had already
    /// ended or was ending by its own verdict (it gave up, or an
    /// auto-shutdown began): that outcome stands, as for [`kill`](Self::kill).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// tree.stop();
    /// tree.wait().await;
    /// # }
    /// ```
    pub fn stop(&self) {
        let _ = self.root.send(Control::Stop);
    }

    /// [`stop`](Self::stop), then [`wait`](Self::wait).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the stop, once begun, continues.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// tree.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(&self) -> Arc<Outcome> {
        self.stop();
        self.wait().await
    }

    /// SIGKILLs every process of the tree now, in no particular order (the
    /// second Ctrl-C), and ends the tree without restarting anything. The
    /// outcome is [`Outcome::Killed`] (also when a [`stop`](Self::stop)
    /// was under way), unless the tree had already ended or was ending by
    /// its own verdict (it gave up, or an auto-shutdown began): that
    /// outcome stands, since it says why.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// tree.kill();
    /// tree.wait().await;
    /// # }
    /// ```
    pub fn kill(&self) {
        let _ = self.root.send(Control::Kill);
    }

    /// Sends `signal` to the process group of every running process in the
    /// tree (e.g. forwarding SIGHUP). It changes nothing in the
    /// supervision: a child that ends because of it is judged by its exit
    /// as usual.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// tree.signal(childminder::Signal::HUP);
    /// # }
    /// ```
    pub fn signal(&self, signal: Signal) {
        let _ = self.root.send(Control::Signal(signal));
    }

    /// Resolves when every child of the tree has started and is running
    /// (the first time), or when the tree ended before that. A child that
    /// ended before it was ready and is not restarted (a temporary one)
    /// counts as started: the rest of the tree goes on without it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// tree.running().await;
    /// # }
    /// ```
    pub async fn running(&self) {
        let mut ready = self.shared.ready.subscribe();
        let mut outcome = self.outcome.clone();
        tokio::select! {
            _ = ready.wait_for(|r| *r) => {}
            _ = outcome.wait_for(Option::is_some) => {}
        }
    }

    /// Waits for the tree's end and says why it ended. Every process of the
    /// tree has been reaped, its group swept, when this resolves.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tree = childminder::supervisor::Tree::start(&childminder::supervisor::SupervisorSpec::new()).unwrap();
    /// let outcome = tree.wait().await;
    /// assert_eq!(outcome.exit_code(), 0);
    /// # }
    /// ```
    pub async fn wait(&self) -> Arc<Outcome> {
        let mut outcome = self.outcome.clone();
        let value = outcome
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone())
            .ok()
            .flatten();
        value.unwrap_or_else(|| Arc::new(Outcome::Killed))
    }

    /// The outcome, if the tree has ended; never blocks.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut cmd = childminder::Command::new("sleep");
    /// cmd.arg("30");
    /// let spec = childminder::supervisor::SupervisorSpec::new()
    ///     .child(childminder::supervisor::ChildSpec::process("s", cmd));
    /// let tree = childminder::supervisor::Tree::start(&spec).unwrap();
    /// assert!(tree.try_outcome().is_none());
    /// tree.shutdown().await;
    /// # }
    /// ```
    pub fn try_outcome(&self) -> Option<Arc<Outcome>> {
        self.outcome.borrow().clone()
    }
}
