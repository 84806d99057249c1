//! The final result of a supervision: what the child did and what we did to it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::contain::Containment;
use crate::error::{Error, WorkerError};
use crate::signal::Signal;

/// How the child's process ended, as the kernel reported it.
///
/// Unlike the seed, which folded a signal into `ExitFailure (-N)`, a death
/// by signal is its own variant, with the core-dump flag.
///
/// # Examples
///
/// ```
/// use childminder::{Command, ExitStatus};
///
/// let result = Command::new("sh").args(["-c", "exit 3"]).run().unwrap();
/// assert_eq!(result.exit, Some(ExitStatus::Exited(3)));
/// assert_eq!(result.exit.unwrap().code(), Some(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The child called `exit` with this code.
    Exited(i32),
    /// A signal ended the child.
    Signaled {
        /// The terminating signal.
        signal: Signal,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// True for `Exited(0)`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(childminder::ExitStatus::Exited(0).success());
    /// ```
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code, if the child exited rather than being signalled.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::ExitStatus::Exited(2).code(), Some(2));
    /// ```
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(code),
            ExitStatus::Signaled { .. } => None,
        }
    }

    /// The terminating signal, if a signal ended the child.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{ExitStatus, Signal};
    /// let st = ExitStatus::Signaled { signal: Signal::KILL, core_dumped: false };
    /// assert_eq!(st.signal(), Some(Signal::KILL));
    /// ```
    pub fn signal(self) -> Option<Signal> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled { signal, .. } => Some(signal),
        }
    }

    /// The shell's convention: the code, or 128 + the signal number.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{ExitStatus, Signal};
    /// let st = ExitStatus::Signaled { signal: Signal::TERM, core_dumped: false };
    /// assert_eq!(st.shell_code(), 143);
    /// ```
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled { signal, .. } => 128 + signal.as_raw(),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {signal}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// The classification of how the child ended, exactly the seed's
/// `classifyTerm`: derived only from whether TERM or KILL was sent and
/// whether an exit was observed.
///
/// | TERM or KILL sent | KILL sent | exit observed | termination |
/// |---|---|---|---|
/// | no | no | yes | `Clean` |
/// | yes | any | yes | `Escalated` |
/// | any | yes | no | `Escalated` |
/// | otherwise | | | `Indeterminate` |
///
/// A child killed by a signal that the supervisor did not send (a crash,
/// an outside `kill -9`) is `Clean` here, as in the seed; look at
/// [`SupervisionResult::exit`] to tell it apart.
///
/// # Examples
///
/// ```
/// use childminder::Termination;
/// assert_eq!(Termination::classify(false, false, true), Termination::Clean);
/// assert_eq!(Termination::classify(true, false, true), Termination::Escalated);
/// assert_eq!(Termination::classify(false, true, false), Termination::Escalated);
/// assert_eq!(Termination::classify(true, false, false), Termination::Indeterminate);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Termination {
    /// The child exited with no escalation step taken: nothing sent to it
    /// but what the caller sent itself ([`Child::signal`](crate::Child::signal),
    /// [`Child::signal_group`](crate::Child::signal_group)), even when
    /// that ended it.
    Clean,
    /// The escalation's first signal (or its first step, with no first
    /// signal) or KILL was sent (and the child's end observed, or KILL sent).
    Escalated,
    /// No exit observed and no conclusive escalation.
    Indeterminate,
}

impl Termination {
    /// The seed's `classifyTerm`, verbatim.
    pub fn classify(term_sent: bool, kill_sent: bool, exit_observed: bool) -> Termination {
        match (term_sent || kill_sent, kill_sent, exit_observed) {
            (false, false, true) => Termination::Clean,
            (true, _, true) => Termination::Escalated,
            (_, true, false) => Termination::Escalated,
            _ => Termination::Indeterminate,
        }
    }

    /// Lower-case name, as used in the CLI's JSON report.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Termination::Escalated.as_str(), "escalated");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Termination::Clean => "clean",
            Termination::Escalated => "escalated",
            Termination::Indeterminate => "indeterminate",
        }
    }
}

/// What started the escalation, if anything did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EscalationCause {
    /// The scoped action ended (returned or panicked), the async child
    /// was dropped, or the runtime driving its supervision shut down
    /// (SIGKILL at once then), while the child still ran.
    Teardown,
    /// [`Process::shutdown`](crate::Process::shutdown) (or the async form)
    /// was called.
    Shutdown,
    /// The [`deadline`](crate::Command::deadline) expired.
    Deadline,
    /// `terminate` or `kill` was called on the handle (the CLI does so when
    /// it receives SIGINT, SIGTERM, SIGHUP or SIGQUIT).
    Requested,
}

/// What the child used, as the kernel accounted it when the child exited
/// (the `struct rusage` that `waitid` fills in): the child's own usage plus
/// that of the descendants it waited for, the same figures as `wait4(2)`,
/// GNU `time` or `getrusage(RUSAGE_CHILDREN)` report.
///
/// The peak memory needs care: Linux charges a child, at its `exec`, with
/// the peak of the memory it had until then, which for a child started by
/// `posix_spawn` (vfork) is this process's own memory, and for a forked one
/// a copy of it. So the kernel's figure ([`reported_max_rss`](Self::reported_max_rss),
/// what `wait4` and std show too) is at least this process's peak, and
/// [`max_rss`](Self::max_rss) gives the child's own peak only where it can
/// be told from this process's.
///
/// # Examples
///
/// ```
/// let result = childminder::Command::new("true").run().unwrap();
/// let usage = result.resource_usage.unwrap();
/// assert!(usage.reported_max_rss > 0);
/// // `true` is smaller than this program: its own peak cannot be told.
/// assert!(usage.max_rss().is_none_or(|peak| peak <= usage.reported_max_rss));
/// assert!(usage.cpu_time() < std::time::Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// CPU time spent in user mode (`ru_utime`).
    pub user_time: Duration,
    /// CPU time spent in the kernel on the child's behalf (`ru_stime`).
    pub system_time: Duration,
    /// Peak resident set size in bytes as the kernel reports it
    /// (`ru_maxrss`, which Linux counts in KiB): the largest of the
    /// child's and of each waited-for descendant's, where the child's
    /// includes the peak of this process's memory at its `exec` (see the
    /// type's docs). [`max_rss`](Self::max_rss) is the child's own.
    pub reported_max_rss: u64,
}

impl ResourceUsage {
    /// User plus system CPU time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let u = childminder::ResourceUsage::default();
    /// assert_eq!(u.cpu_time(), Duration::ZERO);
    /// ```
    pub fn cpu_time(&self) -> Duration {
        self.user_time + self.system_time
    }

    /// The peak resident memory of the child (and of its waited-for
    /// descendants), in bytes: [`reported_max_rss`](Self::reported_max_rss)
    /// where it is larger than this process's own peak (`VmHWM`), so that
    /// it cannot be this process's memory charged to the child at its
    /// `exec`; `None` where it is not (a child smaller than this program,
    /// whose own peak is then unknown, at most `reported_max_rss`), or
    /// where this process's peak cannot be read. Reads `/proc/self/status`
    /// when called, and compares with this process's peak *then*: a
    /// program whose memory grew past the child's figure since gets
    /// `None` (call it when the result arrives to keep the figure). A
    /// program that resets its own peak through `/proc/self/clear_refs`
    /// voids the comparison.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::Command;
    /// // A child that holds 64 MB, more than this program ever did.
    /// let r = Command::new("sh")
    ///     .args(["-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a)"])
    ///     .run()
    ///     .unwrap();
    /// let peak = r.resource_usage.unwrap().max_rss().unwrap();
    /// assert!(peak >= 64_000_000);
    /// ```
    pub fn max_rss(&self) -> Option<u64> {
        let own = crate::sys::own_peak_rss()?;
        (self.reported_max_rss > own).then_some(self.reported_max_rss)
    }
}

/// The final outcome of one supervised child, published exactly once.
///
/// # Examples
///
/// ```
/// use childminder::{Command, Termination};
/// use std::time::Duration;
///
/// let result = Command::new("sleep")
///     .arg("30")
///     .deadline(Duration::from_millis(50))
///     .run()
///     .unwrap();
/// assert_eq!(result.termination, Termination::Escalated);
/// assert!(result.timed_out());
/// assert_eq!(result.exit.unwrap().signal(), Some(childminder::Signal::TERM));
/// assert!(result.term_sent_after.is_some() && result.kill_sent_after.is_none());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SupervisionResult {
    /// The program as given.
    pub program: String,
    /// The child's pid (advisory: after the reap it may name another process).
    pub pid: u32,
    /// How the child ended, if that was observed.
    pub exit: Option<ExitStatus>,
    /// The seed's classification (see [`Termination`]).
    pub termination: Termination,
    /// What started the escalation; `None` if the child exited by itself
    /// before anything asked it to.
    pub escalation_cause: Option<EscalationCause>,
    /// When SIGTERM (or the configured first signal) was sent, measured from
    /// the spawn.
    pub term_sent_after: Option<Duration>,
    /// When SIGKILL was sent, measured from the spawn (the same time as
    /// `term_sent_after` when SIGKILL was the first signal).
    pub kill_sent_after: Option<Duration>,
    /// From the spawn to the observed exit (or to publication, if no exit
    /// was observed).
    pub runtime: Duration,
    /// The supervisor's own failure, if it had one (the seed's
    /// `srSupervisorException`).
    pub supervisor_error: Option<Arc<Error>>,
    /// Every stdio worker that failed, in the order they failed. These
    /// never change [`termination`](Self::termination).
    pub worker_errors: Vec<WorkerError>,
    /// True when the child exited (or the escalation gave up on it) but
    /// something (a grandchild, or the child itself) kept its stdout or
    /// stderr open past the grace period, so the process group (or,
    /// without one, the child) was killed and the pipes were closed before
    /// end-of-file, once what they held then (the child's own last output,
    /// at most a pipe's capacity) was delivered. (A pipe
    /// whose writers had all gone by then is read to its end, however
    /// slowly it is consumed: that is no cut-off.)
    pub output_cut_off: bool,
    /// False only on kernels without pidfd, where waits and signals fell
    /// back to the pid with the seed's re-check.
    pub used_pidfd: bool,
    /// What the end of the supervision did beyond the process group: the
    /// escapees of [`Command::subreaper`](crate::Command::subreaper).
    /// Complete only in the final result (see [`Containment`]).
    pub containment: Containment,
    /// The CPU time and peak memory the child used, read from the kernel
    /// when its exit was observed; `None` when no exit was observed.
    pub resource_usage: Option<ResourceUsage>,
}

impl SupervisionResult {
    /// True when the [`deadline`](crate::Command::deadline) started the
    /// escalation.
    ///
    /// # Examples
    ///
    /// ```
    /// let result = childminder::Command::new("true").run().unwrap();
    /// assert!(!result.timed_out());
    /// ```
    pub fn timed_out(&self) -> bool {
        self.escalation_cause == Some(EscalationCause::Deadline)
    }

    /// True when the child exited with code 0, nothing was sent to it, and
    /// no worker failed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(childminder::Command::new("true").run().unwrap().success());
    /// assert!(!childminder::Command::new("false").run().unwrap().success());
    /// ```
    pub fn success(&self) -> bool {
        self.termination == Termination::Clean
            && self.exit.is_some_and(ExitStatus::success)
            && self.worker_errors.is_empty()
    }
}
