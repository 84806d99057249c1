//! Containment beyond the process group: what reaches the descendants that
//! leave it.
//!
//! - [`subreaper`]: orphaned descendants re-parent to this process; at the
//!   end of a supervision they are ended and reaped.
//! - [`cgroup`]: the child runs in a cgroup v2 of its own, which nothing it
//!   starts can leave; ended with `cgroup.kill`, removed afterwards.

pub(crate) mod cgroup;
pub mod subreaper;

pub use cgroup::{Cgroup, CgroupUsage};

/// What the end of a supervision found and did outside the child's
/// process group: part of [`SupervisionResult`](crate::SupervisionResult).
///
/// Complete in the final result, the one returned after the teardown
/// ([`Command::run`](crate::Command::run), [`Command::output`](crate::Command::output),
/// [`with_process_result`](crate::with_process_result),
/// [`Child::shutdown`](crate::Child::shutdown)). A result seen at the
/// child's exit ([`Process::wait`](crate::Process::wait)) comes before the
/// sweep: its counts are still 0.
///
/// # Examples
///
/// ```
/// let mut cmd = childminder::Command::new("sh");
/// // A daemon: leaves the group with setsid, is orphaned by its parent.
/// cmd.args(["-c", "setsid sleep 30 & exit 0"]).subreaper(true);
/// let result = cmd.run().unwrap();
/// assert!(result.containment.subreaper);
/// // The daemon was ended: by the group sweep if it had not left the
/// // group yet, else as an escapee. Nothing is left to reap.
/// assert!(result.containment.escapees_ended <= 1);
/// assert_eq!(childminder::subreaper::reap_orphans().unwrap(), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Containment {
    /// The supervision ran with [`Command::subreaper`](crate::Command::subreaper).
    pub subreaper: bool,
    /// Escapees the subreaper sweep ended and reaped: processes that left
    /// the child's group and were orphaned to this process, found at the
    /// end (0 when another subreaper supervision was still running: the
    /// last one to end sweeps).
    pub escapees_ended: u32,
    /// Of those, how many needed SIGKILL.
    pub escapees_killed: u32,
    /// The child's own cgroup, with [`Command::cgroup`](crate::Command::cgroup):
    /// its path, and in the final result the CPU and memory figures of
    /// everything that ran in it.
    pub cgroup: Option<CgroupUsage>,
    /// With [`Cgroup::fallback`]: why no cgroup could be used, so the
    /// process group and the subreaper contained the child instead.
    pub cgroup_fallback: Option<String>,
}
