//! What a tree is made of: supervisor and child specs, their builders, their
//! defaults, and their validation before anything starts.

use std::collections::{BTreeSet, HashSet};
use std::os::fd::RawFd;
use std::time::Duration;

use crate::command::{Command, MAX_DURATION};

/// Default [`SupervisorSpec::intensity`]: 3 restarts (Elixir's default).
pub const DEFAULT_INTENSITY: u32 = 3;
/// Default [`SupervisorSpec::period`]: 5 seconds (OTP's and Elixir's).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);
/// Default [`ChildSpec::start_timeout`] of a process: 60 seconds.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a supervisor does when one of its children ends and must be
/// restarted (OTP's restart strategies).
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{Strategy, SupervisorSpec};
/// let spec = SupervisorSpec::new().strategy(Strategy::RestForOne);
/// assert_eq!(spec.get_strategy(), Strategy::RestForOne);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Restart only the child that ended (the default).
    #[default]
    OneForOne,
    /// Stop all the other children in reverse order, then restart all of
    /// them in order.
    OneForAll,
    /// Stop the children started after the one that ended, in reverse
    /// order, then restart it and them in order.
    RestForOne,
}

impl Strategy {
    /// The OTP name: `one_for_one`, `one_for_all`, `rest_for_one`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::Strategy::OneForAll.as_str(), "one_for_all");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }
}

/// When a child is restarted after it ended (OTP's restart types; systemd's
/// `Restart=` words in brackets).
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, Restart};
/// use childminder::Command;
/// let web = ChildSpec::process("web", Command::new("server")).restart(Restart::Transient);
/// assert_eq!(web.get_restart(), Restart::Transient);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Always restarted (`Restart=always`). The default for a process.
    #[default]
    Permanent,
    /// Restarted only after an abnormal end (`Restart=on-failure`): an exit
    /// code outside [`ChildSpec::success_exit_codes`], a death by a signal
    /// we did not send, a failed spawn, a start timeout, or — for a nested
    /// supervisor — giving up. A stop we asked for is never abnormal. The
    /// default for a nested supervisor.
    Transient,
    /// Never restarted (`Restart=no`).
    Temporary,
}

impl Restart {
    /// The OTP name: `permanent`, `transient`, `temporary`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::Restart::Temporary.as_str(), "temporary");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }
}

/// When a supervisor ends by itself because significant children ended
/// (OTP 24's `auto_shutdown`).
///
/// Only an end the child reached by itself counts: a child stopped through
/// the handle, or by its supervisor's strategy, does not trigger it. A
/// significant child that will be restarted has not ended.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{AutoShutdown, SupervisorSpec};
/// // The Procfile model: when one ends, all stop.
/// let spec = SupervisorSpec::new().auto_shutdown(AutoShutdown::AnySignificant);
/// assert_eq!(spec.get_auto_shutdown(), AutoShutdown::AnySignificant);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutoShutdown {
    /// Never (the default). No child may then be significant.
    #[default]
    Never,
    /// When any significant child has ended and will not be restarted,
    /// stop all the others in reverse order and end.
    AnySignificant,
    /// When every significant child has ended and none will be restarted.
    /// A significant child stopped through the handle (`stop_child`) has
    /// not ended in this sense: until it is started again and ends, the
    /// shutdown does not come.
    AllSignificant,
}

impl AutoShutdown {
    /// The OTP name: `never`, `any_significant`, `all_significant`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::AutoShutdown::Never.as_str(), "never");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AutoShutdown::Never => "never",
            AutoShutdown::AnySignificant => "any_significant",
            AutoShutdown::AllSignificant => "all_significant",
        }
    }
}

/// How a child is stopped (OTP's shutdown spec).
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, Shutdown};
/// use childminder::Command;
/// let cache = ChildSpec::process("cache", Command::new("memcached")).shutdown(Shutdown::BrutalKill);
/// assert_eq!(cache.get_shutdown(), Shutdown::BrutalKill);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Shutdown {
    /// The default. A process: its first signal
    /// ([`Command::term_signal`], TERM by default) at once to its process
    /// group, SIGKILL after its [`Command::grace_period`] (5 s by default);
    /// its stdin is not closed first (a service is not a filter). A nested
    /// supervisor: it stops its own children first, in reverse order, each
    /// as its spec says, and then ends (OTP's `infinity` for supervisors).
    #[default]
    Graceful,
    /// SIGKILL to the group at once (OTP's `brutal_kill`); for a nested
    /// supervisor, SIGKILL to every process of its subtree at once.
    BrutalKill,
}

/// How a child says it is ready. Until then it is *starting*, and the next
/// child in order waits; after [`ChildSpec::start_timeout`] without it, the
/// child is stopped and the start counts as an abnormal end of that child.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, Readiness};
/// use childminder::Command;
/// let db = ChildSpec::process("db", Command::new("postgres")).ready(Readiness::Notify);
/// let web = ChildSpec::process("web", Command::new("server"))
///     .ready(Readiness::Tcp("127.0.0.1:8000".into()));
/// # let _ = (db, web);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Readiness {
    /// Ready as soon as it was spawned (the default). For a nested
    /// supervisor: once all its children are running.
    #[default]
    Spawned,
    /// The systemd notify protocol: the child gets `NOTIFY_SOCKET` naming a
    /// unix datagram socket (in the abstract namespace, `@...`) and is
    /// ready when a datagram holds the line `READY=1` (what
    /// `sd_notify(0, "READY=1")` and `systemd-notify --ready` send). Other
    /// lines (`STATUS=`, ...) are ignored. The socket stays open, read and
    /// ignored, until the run ends, as systemd's does: `systemd-notify
    /// --ready` sends a barrier after `READY=1`, and a later `STATUS=` is
    /// not refused. The sender is not checked (an
    /// abstract socket has no permissions; its name holds the pid, a counter
    /// and clock bits): a process of the same network namespace that learns
    /// the name could declare the child ready.
    Notify,
    /// s6's notification-fd: the child gets the write end of a pipe as
    /// this descriptor number (3 or more) and is ready when it has written
    /// a newline to it. Not a descriptor the command also gets from
    /// [`Command::pass_fd`] ([`SupervisorSpec::validate`] refuses it).
    Fd(RawFd),
    /// Ready once a TCP connection to this address (`host:port`, resolved
    /// at each attempt) is accepted. There is no event for "a port opened",
    /// so this one polls: every 20 ms, doubling to 500 ms.
    Tcp(String),
}

/// The exponential backoff between a child's end and its restart.
///
/// The n-th restart of a streak waits `initial × 2^(n-1)`, capped at `max`,
/// then moved by a random jitter of at most ±10 %. A child that stayed up
/// `reset_after` or longer starts a new streak: its next restart waits
/// `initial` again. [`Backoff::NONE`] restarts at once.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::Backoff;
/// use std::time::Duration;
/// let b = Backoff::default();
/// assert_eq!(b.initial, Duration::from_millis(100));
/// assert_eq!(b.max, Duration::from_secs(30));
/// assert_eq!(b.reset_after, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// The first delay of a streak. Zero: no delay at all (and no jitter).
    pub initial: Duration,
    /// The cap before jitter.
    pub max: Duration,
    /// How long a child must stay up for its next restart to begin a new
    /// streak (and its restart count to start over).
    pub reset_after: Duration,
}

impl Backoff {
    /// No delay: restart at once (OTP's behaviour).
    pub const NONE: Backoff = Backoff {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        reset_after: Duration::from_secs(10),
    };
}

impl Default for Backoff {
    /// 100 ms doubling to 30 s, reset after 10 s up.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

/// What a child is: a process or a nested supervisor.
#[derive(Debug, Clone)]
pub(crate) enum ChildKind {
    Process(Box<Command>),
    Supervisor(SupervisorSpec),
}

/// One child of a supervisor: a process (a [`Command`], with everything the
/// single-process engine has: grace period, deadline, first signal, process
/// group, environment, ...) or a nested supervisor, with how it is
/// restarted, stopped and judged ready.
///
/// Defaults: [`Restart::Permanent`] ([`Restart::Transient`] for a nested
/// supervisor), success exit codes `{0}`,
/// [`Shutdown::Graceful`], not significant, [`Backoff::default`],
/// [`Readiness::Spawned`], start timeout [`DEFAULT_START_TIMEOUT`] for a
/// process and none for a nested supervisor (its children have their own).
///
/// A process's stdio in a tree: a piped stdin becomes `/dev/null` (nobody
/// writes to it); piped stdout and stderr go to the tree's output channel
/// ([`TreeOptions::output`](super::TreeOptions::output)), or are inherited
/// from this process when the tree has none. `Inherit` and `Null` are kept.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{Backoff, ChildSpec, Readiness, Restart};
/// use childminder::Command;
/// use std::time::Duration;
///
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "exec ./server --port 8000"]).env("PORT", "8000")
///     .grace_period(Duration::from_secs(2));
/// let web = ChildSpec::process("web", cmd)
///     .restart(Restart::Transient)
///     .success_exit_codes([0, 3])
///     .backoff(Backoff { initial: Duration::from_millis(100), ..Backoff::default() })
///     .ready(Readiness::Tcp("127.0.0.1:8000".into()))
///     .start_timeout(Duration::from_secs(30));
/// assert_eq!(web.name(), "web");
/// ```
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub(crate) name: String,
    pub(crate) kind: ChildKind,
    pub(crate) restart: Restart,
    pub(crate) success_exit_codes: BTreeSet<i32>,
    pub(crate) shutdown: Shutdown,
    pub(crate) significant: bool,
    pub(crate) backoff: Backoff,
    pub(crate) readiness: Readiness,
    pub(crate) start_timeout: Option<Duration>,
}

impl ChildSpec {
    fn with_kind(name: impl Into<String>, kind: ChildKind) -> ChildSpec {
        let start_timeout = match kind {
            ChildKind::Process(_) => Some(DEFAULT_START_TIMEOUT),
            ChildKind::Supervisor(_) => None,
        };
        // A nested supervisor whose children have all ended has completed
        // (a normal end): permanent, it would be run again and again until
        // its parent gave up (an acceptance test saw an empty one do so).
        // OTP's guidance for a supervisor that can end is transient too.
        let restart = match kind {
            ChildKind::Process(_) => Restart::Permanent,
            ChildKind::Supervisor(_) => Restart::Transient,
        };
        ChildSpec {
            name: name.into(),
            kind,
            restart,
            success_exit_codes: BTreeSet::from([0]),
            shutdown: Shutdown::Graceful,
            significant: false,
            backoff: Backoff::default(),
            readiness: Readiness::Spawned,
            start_timeout,
        }
    }

    /// A process child named `name` (unique among its siblings, no `/`).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = childminder::supervisor::ChildSpec::process("db", childminder::Command::new("postgres"));
    /// assert_eq!(c.name(), "db");
    /// ```
    pub fn process(name: impl Into<String>, command: Command) -> ChildSpec {
        ChildSpec::with_kind(name, ChildKind::Process(Box::new(command)))
    }

    /// A nested supervisor named `name`. Its events carry paths such as
    /// `name/child`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Strategy, SupervisorSpec};
    /// use childminder::Command;
    /// let backend = SupervisorSpec::new()
    ///     .strategy(Strategy::OneForAll)
    ///     .child(ChildSpec::process("api", Command::new("api")));
    /// let child = ChildSpec::supervisor("backend", backend);
    /// assert!(child.is_supervisor());
    /// ```
    pub fn supervisor(name: impl Into<String>, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec::with_kind(name, ChildKind::Supervisor(spec))
    }

    /// When it is restarted. Default [`Restart::Permanent`] for a process,
    /// [`Restart::Transient`] for a nested supervisor: one that gave up is
    /// restarted, one whose children have all ended
    /// ([`Outcome::Completed`](super::Outcome::Completed), a normal end) is
    /// not run again. (A permanent one would be, until its parent gave up.)
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Restart};
    /// ChildSpec::process("job", childminder::Command::new("true")).restart(Restart::Temporary);
    /// ```
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// The exit codes that are a normal end (systemd's
    /// `SuccessExitStatus=`). Default `{0}`. An empty set makes every exit
    /// abnormal. Does not apply to a nested supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::ChildSpec;
    /// let c = ChildSpec::process("w", childminder::Command::new("w")).success_exit_codes([0, 3]);
    /// assert!(c.get_success_exit_codes().contains(&3));
    /// ```
    pub fn success_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> ChildSpec {
        self.success_exit_codes = codes.into_iter().collect();
        self
    }

    /// How it is stopped. Default [`Shutdown::Graceful`].
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Shutdown};
    /// ChildSpec::process("w", childminder::Command::new("w")).shutdown(Shutdown::BrutalKill);
    /// ```
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Marks the child significant for its supervisor's
    /// [`AutoShutdown`]. A significant child must be transient or
    /// temporary, and its supervisor's `auto_shutdown` not `never` (as in
    /// OTP); [`validate`](SupervisorSpec::validate) checks both.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Restart};
    /// ChildSpec::process("w", childminder::Command::new("w"))
    ///     .restart(Restart::Temporary)
    ///     .significant(true);
    /// ```
    pub fn significant(mut self, significant: bool) -> ChildSpec {
        self.significant = significant;
        self
    }

    /// The restart delays. Default [`Backoff::default`]: 100 ms doubling to
    /// 30 s, reset after 10 s up.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{Backoff, ChildSpec};
    /// ChildSpec::process("w", childminder::Command::new("w")).backoff(Backoff::NONE);
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> ChildSpec {
        self.backoff = backoff;
        self
    }

    /// How it says it is ready. Default [`Readiness::Spawned`].
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Readiness};
    /// ChildSpec::process("w", childminder::Command::new("w")).ready(Readiness::Fd(3));
    /// ```
    pub fn ready(mut self, readiness: Readiness) -> ChildSpec {
        self.readiness = readiness;
        self
    }

    /// How long it may take to become ready; past that it is stopped and
    /// the start counts as its abnormal end. Default 60 s for a process,
    /// none for a nested supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// childminder::supervisor::ChildSpec::process("w", childminder::Command::new("w"))
    ///     .start_timeout(Duration::from_secs(30));
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> ChildSpec {
        self.start_timeout = Some(timeout);
        self
    }

    /// The name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::ChildSpec::process("x", childminder::Command::new("x")).name(), "x");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for a nested supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!childminder::supervisor::ChildSpec::process("x", childminder::Command::new("x")).is_supervisor());
    /// ```
    pub fn is_supervisor(&self) -> bool {
        matches!(self.kind, ChildKind::Supervisor(_))
    }

    /// The restart type.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Restart};
    /// assert_eq!(ChildSpec::process("x", childminder::Command::new("x")).get_restart(), Restart::Permanent);
    /// ```
    pub fn get_restart(&self) -> Restart {
        self.restart
    }

    /// The success exit codes.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = childminder::supervisor::ChildSpec::process("x", childminder::Command::new("x"));
    /// assert_eq!(c.get_success_exit_codes().iter().copied().collect::<Vec<_>>(), [0]);
    /// ```
    pub fn get_success_exit_codes(&self) -> &BTreeSet<i32> {
        &self.success_exit_codes
    }

    /// The shutdown spec.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, Shutdown};
    /// assert_eq!(ChildSpec::process("x", childminder::Command::new("x")).get_shutdown(), Shutdown::Graceful);
    /// ```
    pub fn get_shutdown(&self) -> Shutdown {
        self.shutdown
    }
}

/// A supervisor: its strategy, its give-up rule, its auto-shutdown, and its
/// ordered children (start order; stop order is the reverse).
///
/// Defaults: [`Strategy::OneForOne`], intensity [`DEFAULT_INTENSITY`] (3)
/// within [`DEFAULT_PERIOD`] (5 s), [`AutoShutdown::Never`].
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, Strategy, SupervisorSpec};
/// use childminder::Command;
/// use std::time::Duration;
///
/// let spec = SupervisorSpec::new()
///     .strategy(Strategy::RestForOne)
///     .intensity(5)
///     .period(Duration::from_secs(10))
///     .child(ChildSpec::process("db", Command::new("sleep")))
///     .child(ChildSpec::process("web", Command::new("cat")));
/// spec.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    pub(crate) strategy: Strategy,
    pub(crate) intensity: u32,
    pub(crate) period: Duration,
    pub(crate) auto_shutdown: AutoShutdown,
    pub(crate) children: Vec<ChildSpec>,
}

impl Default for SupervisorSpec {
    fn default() -> SupervisorSpec {
        SupervisorSpec::new()
    }
}

impl SupervisorSpec {
    /// A supervisor with the defaults and no children.
    ///
    /// # Examples
    ///
    /// ```
    /// let spec = childminder::supervisor::SupervisorSpec::new();
    /// assert_eq!(spec.get_intensity(), 3);
    /// ```
    pub fn new() -> SupervisorSpec {
        SupervisorSpec {
            strategy: Strategy::OneForOne,
            intensity: DEFAULT_INTENSITY,
            period: DEFAULT_PERIOD,
            auto_shutdown: AutoShutdown::Never,
            children: Vec::new(),
        }
    }

    /// The restart strategy. Default [`Strategy::OneForOne`].
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{Strategy, SupervisorSpec};
    /// SupervisorSpec::new().strategy(Strategy::OneForAll);
    /// ```
    pub fn strategy(mut self, strategy: Strategy) -> SupervisorSpec {
        self.strategy = strategy;
        self
    }

    /// More than `intensity` restarts within [`period`](Self::period) and
    /// the supervisor gives up (see the module docs for how the period is
    /// measured with backoff). Default 3. Zero: the first restart gives up.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::supervisor::SupervisorSpec::new().intensity(10);
    /// ```
    pub fn intensity(mut self, intensity: u32) -> SupervisorSpec {
        self.intensity = intensity;
        self
    }

    /// The window of the give-up rule. Default 5 s. Must not be zero.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::supervisor::SupervisorSpec::new().period(std::time::Duration::from_secs(10));
    /// ```
    pub fn period(mut self, period: Duration) -> SupervisorSpec {
        self.period = period;
        self
    }

    /// When it ends by itself. Default [`AutoShutdown::Never`].
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{AutoShutdown, SupervisorSpec};
    /// SupervisorSpec::new().auto_shutdown(AutoShutdown::AllSignificant);
    /// ```
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> SupervisorSpec {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// Appends a child: it starts after the ones before it and stops
    /// before them.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, SupervisorSpec};
    /// let spec = SupervisorSpec::new().child(ChildSpec::process("a", childminder::Command::new("a")));
    /// assert_eq!(spec.get_children().len(), 1);
    /// ```
    pub fn child(mut self, child: ChildSpec) -> SupervisorSpec {
        self.children.push(child);
        self
    }

    /// Appends several children, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, SupervisorSpec};
    /// use childminder::Command;
    /// let spec = SupervisorSpec::new().children([
    ///     ChildSpec::process("a", Command::new("a")),
    ///     ChildSpec::process("b", Command::new("b")),
    /// ]);
    /// assert_eq!(spec.get_children().len(), 2);
    /// ```
    pub fn children(mut self, children: impl IntoIterator<Item = ChildSpec>) -> SupervisorSpec {
        self.children.extend(children);
        self
    }

    /// The strategy.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{Strategy, SupervisorSpec};
    /// assert_eq!(SupervisorSpec::new().get_strategy(), Strategy::OneForOne);
    /// ```
    pub fn get_strategy(&self) -> Strategy {
        self.strategy
    }

    /// The intensity.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::SupervisorSpec::new().get_intensity(), 3);
    /// ```
    pub fn get_intensity(&self) -> u32 {
        self.intensity
    }

    /// The period.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::supervisor::SupervisorSpec::new().get_period().as_secs(), 5);
    /// ```
    pub fn get_period(&self) -> Duration {
        self.period
    }

    /// The auto-shutdown mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{AutoShutdown, SupervisorSpec};
    /// assert_eq!(SupervisorSpec::new().get_auto_shutdown(), AutoShutdown::Never);
    /// ```
    pub fn get_auto_shutdown(&self) -> AutoShutdown {
        self.auto_shutdown
    }

    /// The children, in start order.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(childminder::supervisor::SupervisorSpec::new().get_children().is_empty());
    /// ```
    pub fn get_children(&self) -> &[ChildSpec] {
        &self.children
    }

    /// Checks the whole tree without starting anything. [`Tree::start`]
    /// does it too.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] naming the child (its path) and what is wrong: an
    /// empty name or one holding `/`; two siblings with the same name; a
    /// zero period; a backoff whose `initial` exceeds its `max`, or a
    /// duration over 100 years; a readiness fd below 3, or one the command
    /// also gets from [`Command::pass_fd`]; a TCP readiness
    /// address that is empty; a significant child that is permanent, or
    /// under a supervisor whose `auto_shutdown` is `never`; a process whose
    /// [`Command`] is invalid ([`Command::validate`], which also looks the
    /// program up on `PATH`).
    ///
    /// [`Tree::start`]: super::Tree::start
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::supervisor::{ChildSpec, SupervisorSpec};
    /// use childminder::Command;
    /// let err = SupervisorSpec::new()
    ///     .child(ChildSpec::process("a", Command::new("true")))
    ///     .child(ChildSpec::process("a", Command::new("true")))
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(err.path, "a");
    /// assert!(err.reason.contains("twice"));
    /// ```
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_at("")
    }

    fn validate_at(&self, prefix: &str) -> Result<(), SpecError> {
        let err = |path: &str, setting: &'static str, reason: String| SpecError {
            path: path.to_owned(),
            setting: Some(setting),
            reason,
            start_failure: None,
        };
        let own = prefix.trim_end_matches('/');
        if self.period.is_zero() {
            return Err(err(
                own,
                "period",
                "period must be greater than zero".into(),
            ));
        }
        if self.period > MAX_DURATION {
            return Err(err(own, "period", "period is over 100 years".into()));
        }
        let mut seen = HashSet::new();
        for (index, child) in self.children.iter().enumerate() {
            let path = format!("{prefix}{}", child.name);
            if child.name.is_empty() {
                // No path names it: its supervisor's, and which child.
                return Err(err(
                    own,
                    "name",
                    format!(
                        "a child's name must not be empty (child {} of this supervisor)",
                        index + 1
                    ),
                ));
            }
            if child.name.contains('/') {
                return Err(err(
                    &path,
                    "name",
                    "a child's name must not contain '/'".into(),
                ));
            }
            if !seen.insert(child.name.as_str()) {
                return Err(err(
                    &path,
                    "name",
                    "the same name is used twice among siblings".into(),
                ));
            }
            let b = child.backoff;
            if b.initial > b.max {
                return Err(err(
                    &path,
                    "backoff",
                    format!("backoff initial {:?} is above max {:?}", b.initial, b.max),
                ));
            }
            for (setting, what, d) in [
                ("backoff", "backoff initial", Some(b.initial)),
                ("backoff", "backoff max", Some(b.max)),
                ("backoff", "backoff reset_after", Some(b.reset_after)),
                ("start_timeout", "start_timeout", child.start_timeout),
            ] {
                if d.is_some_and(|d| d > MAX_DURATION) {
                    return Err(err(&path, setting, format!("{what} is over 100 years")));
                }
            }
            match &child.readiness {
                Readiness::Fd(fd) if *fd < 3 => {
                    return Err(err(
                        &path,
                        "ready",
                        format!("readiness fd {fd} must be 3 or more (0-2 are stdio)"),
                    ));
                }
                // The notification pipe would take the passed fd's place
                // (an acceptance test saw the user's pipe silently lost).
                Readiness::Fd(fd)
                    if matches!(&child.kind, ChildKind::Process(cmd)
                        if cmd.extra_fds.iter().any(|(_, target)| target == fd)) =>
                {
                    return Err(err(
                        &path,
                        "ready",
                        format!("readiness fd {fd} is also given to pass_fd"),
                    ));
                }
                Readiness::Tcp(addr) if addr.trim().is_empty() => {
                    return Err(err(&path, "ready", "readiness tcp address is empty".into()));
                }
                _ => {}
            }
            if child.is_supervisor() && child.readiness != Readiness::Spawned {
                return Err(err(
                    &path,
                    "ready",
                    "a nested supervisor is ready when its children are; it takes no readiness check".into(),
                ));
            }
            if child.significant {
                if child.restart == Restart::Permanent {
                    return Err(err(
                        &path,
                        "significant",
                        "a significant child must be transient or temporary, not permanent".into(),
                    ));
                }
                if self.auto_shutdown == AutoShutdown::Never {
                    return Err(err(
                        &path,
                        "significant",
                        "a significant child needs auto_shutdown any_significant or all_significant on its supervisor".into(),
                    ));
                }
            }
            match &child.kind {
                ChildKind::Process(cmd) => {
                    cmd.validate().map_err(|e| SpecError {
                        start_failure: if e.is_not_found() {
                            Some(std::io::ErrorKind::NotFound)
                        } else if e.is_permission_denied() {
                            Some(std::io::ErrorKind::PermissionDenied)
                        } else {
                            None
                        },
                        ..err(&path, "command", e.to_string())
                    })?;
                }
                ChildKind::Supervisor(spec) => spec.validate_at(&format!("{path}/"))?,
            }
        }
        Ok(())
    }
}

/// A tree spec that cannot run, found before anything started.
///
/// # Examples
///
/// ```
/// use childminder::supervisor::{ChildSpec, SupervisorSpec};
/// let err = SupervisorSpec::new()
///     .child(ChildSpec::process("a/b", childminder::Command::new("true")))
///     .validate()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "a/b: a child's name must not contain '/'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
#[non_exhaustive]
pub struct SpecError {
    /// The child's path (`parent/child`), empty for the root supervisor.
    /// For a child whose name is empty, its supervisor's path (the reason
    /// says which child).
    pub path: String,
    /// The setting at fault, named as the spec's method is (`period`,
    /// `name`, `backoff`, `start_timeout`, `ready`, `significant`, or
    /// `command` for what [`Command::validate`] refused): what
    /// `childminder up` maps back to a line of its file.
    pub setting: Option<&'static str>,
    /// What is wrong, in words.
    pub reason: String,
    /// When a process's program cannot be started as the check found it:
    /// `NotFound` (not on `PATH`) or `PermissionDenied` (found, but not
    /// executable); what `childminder up` exits with 127 and 126 for.
    pub start_failure: Option<std::io::ErrorKind>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(name: &str) -> ChildSpec {
        ChildSpec::process(name, Command::new("true"))
    }

    fn reason(spec: SupervisorSpec) -> (String, String) {
        let e = spec.validate().unwrap_err();
        (e.path, e.reason)
    }

    #[test]
    fn rejects_each_bad_spec_with_its_path() {
        let (p, r) = reason(SupervisorSpec::new().child(proc("")));
        assert_eq!(p, "");
        assert!(r.contains("empty"));
        // Found in acceptance: a nested empty name said "sub/", a path no
        // child has. Its supervisor's path, and which child.
        let unnamed = SupervisorSpec::new().child(proc("a")).child(proc(""));
        let (p, r) = reason(SupervisorSpec::new().child(ChildSpec::supervisor("sub", unnamed)));
        assert_eq!(p, "sub");
        assert!(r.contains("child 2"), "{r}");
        // And a backoff whose `initial` is out of range is named so.
        let endless = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            ..Backoff::default()
        };
        let (_, r) = reason(SupervisorSpec::new().child(proc("a").backoff(endless)));
        assert!(r.contains("backoff initial"), "{r}");
        let nested = SupervisorSpec::new().child(proc("x")).child(proc("x"));
        let (p, r) = reason(SupervisorSpec::new().child(ChildSpec::supervisor("sub", nested)));
        assert_eq!(p, "sub/x");
        assert!(r.contains("twice"));
        assert!(
            reason(SupervisorSpec::new().period(Duration::ZERO))
                .1
                .contains("period")
        );
        let slow = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
            ..Backoff::default()
        };
        assert!(
            reason(SupervisorSpec::new().child(proc("a").backoff(slow)))
                .1
                .contains("initial")
        );
        assert!(
            reason(SupervisorSpec::new().child(proc("a").ready(Readiness::Fd(2))))
                .1
                .contains("fd 2")
        );
        let (_, write) = std::io::pipe().unwrap();
        let mut passes_3 = Command::new("true");
        passes_3.pass_fd(write, 3);
        assert!(
            reason(
                SupervisorSpec::new()
                    .child(ChildSpec::process("a", passes_3.clone()).ready(Readiness::Fd(3)))
            )
            .1
            .contains("pass_fd")
        );
        SupervisorSpec::new()
            .child(ChildSpec::process("a", passes_3).ready(Readiness::Fd(4)))
            .validate()
            .unwrap();
        assert!(
            reason(SupervisorSpec::new().child(proc("a").ready(Readiness::Tcp(" ".into()))))
                .1
                .contains("tcp")
        );
        let sig = proc("a").significant(true);
        assert!(
            reason(
                SupervisorSpec::new()
                    .auto_shutdown(AutoShutdown::AnySignificant)
                    .child(sig.clone())
            )
            .1
            .contains("permanent")
        );
        assert!(
            reason(SupervisorSpec::new().child(sig.restart(Restart::Temporary)))
                .1
                .contains("auto_shutdown")
        );
        let (p, r) = reason(SupervisorSpec::new().child(ChildSpec::process(
            "missing",
            Command::new("no-such-program-childminder"),
        )));
        assert_eq!(p, "missing");
        assert!(r.contains("not found"), "{r}");
    }

    #[test]
    fn accepts_a_valid_two_level_tree() {
        let sub = SupervisorSpec::new()
            .strategy(Strategy::OneForAll)
            .auto_shutdown(AutoShutdown::AllSignificant)
            .child(proc("a").restart(Restart::Transient).significant(true));
        SupervisorSpec::new()
            .child(proc("a"))
            .child(ChildSpec::supervisor("sub", sub))
            .validate()
            .unwrap();
    }
}
