//! The subreaper: descendants that leave the child's process group
//! (`setsid`, a double-forking daemon) and are orphaned re-parent to this
//! process instead of to init. At the end of a supervision they are the
//! escapees: every child of this process that childminder did not start.
//! They are ended here, through pidfds opened while they are our children
//! (so unreaped: their pids cannot have been recycled), TERM first, KILL a
//! grace period later, and reaped, until none is left.

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::signal::Signal;
use crate::sys;

/// How long the sweep waits for escapees to go after SIGKILL before it
/// gives up on them (a process stuck in the kernel): the seed's 1 s.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// Interval of the exit check where the kernel has no pidfd.
const PID_POLL: Duration = Duration::from_millis(10);

/// Children that childminder itself started and has not reaped yet: never
/// escapees, whichever supervision sweeps.
static STARTED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Held shared by every spawn from before the child exists until it is in
/// [`STARTED`]; held exclusively while the sweep lists our children. So no
/// sweep can see a child of childminder before it is registered.
static SPAWN_GATE: RwLock<()> = RwLock::new(());

/// Processes handed to a background reaper (stuck past their SIGKILL):
/// never adopted again by a sweep, which would give up on them once more
/// and hand them over again (another task and two more fds each time).
static GIVEN_UP: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn given_up() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    GIVEN_UP.lock().unwrap_or_else(|e| e.into_inner())
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Subreaper supervisions not yet at their end: the sweep runs when the
/// last one ends, so no escapee of a supervision still running is ended by
/// another's.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`), for
/// the rest of its life.
///
/// What that changes for the whole program: every process that any of its
/// descendants orphans (the grandchild of a child that exited, a daemon
/// that double-forked) re-parents to this process instead of to init, and
/// stays a zombie until this process reaps it. childminder reaps those it
/// finds at the end of every supervision with
/// [`Command::subreaper`](crate::Command::subreaper) on, and
/// [`reap_orphans`] reaps the ones that already exited. A program that
/// also starts children outside childminder and waits for them with
/// `waitpid(-1)` would steal childminder's statuses; one that waits by pid
/// is unaffected.
///
/// Calling it again does nothing.
///
/// # Errors
///
/// The OS error of `prctl` (a seccomp filter may forbid it).
///
/// # Examples
///
/// ```
/// childminder::subreaper::enable().unwrap();
/// assert!(childminder::subreaper::is_enabled());
/// ```
pub fn enable() -> io::Result<()> {
    if ENABLED.load(Ordering::Acquire) {
        return Ok(());
    }
    sys::set_child_subreaper()?;
    ENABLED.store(true, Ordering::Release);
    tracing::debug!("this process is now a child subreaper");
    Ok(())
}

/// Whether this process is a child subreaper, by [`enable`] or by anything
/// else (asked of the kernel).
///
/// # Examples
///
/// ```
/// childminder::subreaper::enable().unwrap();
/// assert!(childminder::subreaper::is_enabled());
/// ```
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Acquire) || sys::is_child_subreaper().unwrap_or(false)
}

/// Reaps every zombie child of this process that childminder did not start:
/// the orphans a subreaper (or PID 1) adopts, once they have exited.
/// Returns how many it reaped. Never touches a running process, nor a
/// child of a supervision in progress. What an init process calls on every
/// SIGCHLD, so no zombie accumulates.
///
/// It cannot tell the orphans from children this program started by other
/// means (`std::process`): call it only in a program whose children are all
/// started through childminder, or that does not wait for its own.
///
/// # Errors
///
/// Never fails for a single process (one that vanished is skipped); the
/// `Result` is for the listing of `/proc`.
///
/// # Examples
///
/// ```
/// let reaped = childminder::subreaper::reap_orphans().unwrap();
/// assert_eq!(reaped, 0); // nothing was orphaned to this process
/// ```
pub fn reap_orphans() -> io::Result<usize> {
    let mut reaped = 0;
    loop {
        // Out of fds, the listing finds one exited child at a time.
        let before = reaped;
        for adopted in adopt(&[], |stat| !stat.is_alive(), false) {
            if matches!(adopted.try_reap(), Ok(true)) {
                reaped += 1;
            }
        }
        if reaped == before {
            return Ok(reaped);
        }
    }
}

/// Taken around a spawn: the child is registered before any sweep can list
/// it.
pub(crate) fn spawn_gate() -> RwLockReadGuard<'static, ()> {
    SPAWN_GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Records a child childminder started (under the [`spawn_gate`]).
pub(crate) fn register(pid: u32) {
    started().insert(pid);
}

/// Forgets a child once reaped: its pid may now be anyone's.
pub(crate) fn unregister(pid: u32) {
    started().remove(&pid);
}

fn started() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A subreaper supervision that has not reached its end yet. Dropping it
/// without [`finish`](Self::finish) (the runtime shut down) just leaves.
#[derive(Debug)]
pub(crate) struct Participation {
    left: bool,
}

impl Participation {
    pub(crate) fn join() -> Participation {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Participation { left: false }
    }

    /// Leaves; true when no other subreaper supervision is still running,
    /// so this one must sweep.
    pub(crate) fn finish(mut self) -> bool {
        self.left = true;
        RUNNING.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

impl Drop for Participation {
    fn drop(&mut self) {
        if !self.left {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One child of ours that childminder did not start, held by a pidfd
/// opened while it was our unreaped child.
struct Adopted {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl Adopted {
    fn signal(&self, sig: Signal) -> io::Result<()> {
        match &self.pidfd {
            Some(fd) => sys::pidfd_signal(fd.as_fd(), sig),
            // Still our unreaped child: the pid is certainly its own.
            None => sys::kill(self.pid as i32, sig.as_raw()),
        }
    }

    /// Reaps it if it has exited. `Ok(true)` when it is gone for good
    /// (reaped now, or by someone else).
    fn try_reap(&self) -> io::Result<bool> {
        let status = match &self.pidfd {
            Some(fd) => sys::pidfd_try_wait(fd.as_fd(), true),
            None => sys::pid_try_wait(self.pid, true),
        };
        match status {
            Ok(status) => Ok(status.is_some()),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// Lists the children of this process that childminder did not start and
/// that are not in `known`, each with a pidfd verified to name it (opened
/// by pid, then the parent checked again: still ours, so the pid was not
/// recycled in between), of those whose stat is `wanted`.
///
/// Out of fds (an acceptance run left zombies behind, with an `Ok`), a
/// child whose stat cannot be read is still adopted by pid when it has
/// exited, or, with `unread_alive`, when it is alive: verified through
/// `waitid(WNOWAIT)`, which needs no fd and is sound on our own unreaped
/// child, as without pidfds. When `/proc` cannot be listed at all, only
/// exited children are found (through `waitid` too), and that is said.
fn adopt(
    known: &[u32],
    wanted: impl Fn(sys::ProcStat) -> bool,
    unread_alive: bool,
) -> Vec<Adopted> {
    let _gate = SPAWN_GATE.write().unwrap_or_else(|e| e.into_inner());
    let started = started();
    let given_up = given_up();
    let me = sys::getpid() as u32;
    let use_pidfd = sys::features().pidfd;
    let ours =
        |pid: &u32| !started.contains(pid) && !given_up.contains(pid) && !known.contains(pid);
    // Our unreaped child (exited: `Some`); anything else is ECHILD.
    let unread_ours = |pid: u32| match sys::pid_try_wait(pid, false) {
        Ok(Some(_)) => true,
        Ok(None) => unread_alive,
        Err(_) => false,
    };
    let Some(children) = sys::own_children() else {
        tracing::warn!(
            "cannot list this process's children (out of fds?): only an exited one is reaped"
        );
        return sys::an_exited_child()
            .filter(ours)
            .map(|pid| Adopted { pid, pidfd: None })
            .into_iter()
            .collect();
    };
    let mut adopted = Vec::new();
    for pid in children.into_iter().filter(ours) {
        let pidfd = match use_pidfd.then(|| sys::pidfd_open(pid)) {
            None => None,
            Some(Ok(pidfd)) => Some(pidfd),
            // Gone (reaped by someone else).
            Some(Err(e)) if e.raw_os_error() == Some(libc::ESRCH) => continue,
            // Out of fds or memory: by pid, below.
            Some(Err(_)) => None,
        };
        match sys::proc_stat(pid) {
            Some(stat) if stat.ppid == me && wanted(stat) => adopted.push(Adopted { pid, pidfd }),
            Some(_) => {}
            None if unread_ours(pid) => adopted.push(Adopted { pid, pidfd: None }),
            None => {}
        }
    }
    adopted
}

/// What the escapee sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SweepTally {
    /// Escapees found alive and ended. One found already exited (a
    /// group member orphaned to us while it was dying) is reaped, not
    /// counted: it did not escape anything.
    pub ended: u32,
    /// Of those, how many needed SIGKILL.
    pub killed: u32,
    /// Escapees still there when the sweep gave up (stuck in the kernel).
    pub survivors: u32,
}

/// An escapee being ended, with its pidfd registered for the exit event.
struct Tracked {
    adopted: Adopted,
    exit_event: Option<AsyncFd<OwnedFd>>,
    /// The last signal of the escalation it got: none yet, the first
    /// signal, or KILL.
    sent: Option<Signal>,
}

impl Tracked {
    fn new(adopted: Adopted) -> Tracked {
        // Registration fails only when the reactor is out of room: fall
        // back to checking on the poll interval.
        let exit_event = adopted
            .pidfd
            .as_ref()
            .and_then(|fd| fd.try_clone().ok())
            .and_then(|fd| sys::register_pidfd(fd).ok());
        Tracked {
            adopted,
            exit_event,
            sent: None,
        }
    }

    fn send(&mut self, program: &str, sig: Signal) {
        self.sent = Some(sig);
        match self.adopted.signal(sig) {
            Ok(()) => {
                tracing::info!(program, pid = self.adopted.pid, signal = %sig, "escapee: signal sent");
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                tracing::warn!(program, pid = self.adopted.pid, signal = %sig, error = %e, "escapee: signal failed");
            }
        }
    }
}

/// Ends every escapee: the first signal (and CONT, so a stopped one acts on
/// it) at once to each found, SIGKILL to those still there `grace` later,
/// and to any found after that at once; each reaped. An escapee's own
/// children re-parent to us when it exits (before its pidfd turns
/// readable), so the listing is repeated after every exit until none is
/// left. When `kill_requested` resolves (a kill asked for during the
/// sweep: `up`'s second Ctrl-C), the grace ends there: SIGKILL at once.
pub(crate) async fn end_escapees(
    program: &str,
    term_signal: Signal,
    grace: Duration,
    kill_requested: impl std::future::Future<Output = ()>,
) -> SweepTally {
    let mut tally = SweepTally::default();
    if !sys::has_children() {
        // The common case, known without a scan of /proc.
        return tally;
    }
    let mut kill_at = Instant::now() + grace;
    let mut kill_requested = std::pin::pin!(kill_requested);
    let mut kill_pending = true;
    let mut tracked: Vec<Tracked> = Vec::new();
    loop {
        for adopted in adopt(&pids(&tracked), |_| true, true) {
            tracked.push(Tracked::new(adopted));
        }
        if !reap_exited(program, &mut tracked).is_empty() {
            // Its children are ours now: list again before waiting.
            continue;
        }
        if tracked.is_empty() {
            break;
        }
        let now = Instant::now();
        let killing = now >= kill_at;
        for escapee in &mut tracked {
            if escapee.sent.is_none() {
                // Alive after the reap above: an escapee we end.
                tally.ended += 1;
            }
            match (escapee.sent, killing) {
                (None, false) if term_signal == Signal::KILL => {
                    escapee.send(program, Signal::KILL);
                    tally.killed += 1;
                }
                (None, false) => {
                    escapee.send(program, term_signal);
                    if term_signal != Signal::CONT {
                        escapee.send(program, Signal::CONT);
                    }
                    escapee.sent = Some(term_signal);
                }
                (Some(Signal::KILL), _) | (Some(_), false) => {}
                (_, true) => {
                    escapee.send(program, Signal::KILL);
                    tally.killed += 1;
                }
            }
        }
        if now >= kill_at + AFTER_KILL {
            tracing::warn!(program, left = tracked.len(), "escapees survived SIGKILL");
            tally.survivors = tracked.len() as u32;
            reap_in_the_background(program, tracked);
            break;
        }
        let wake_at = if killing {
            kill_at + AFTER_KILL
        } else {
            kill_at
        };
        tokio::select! {
            _ = tokio::time::timeout_at(wake_at.into(), any_exit(&tracked)) => {}
            () = &mut kill_requested, if kill_pending => {
                kill_pending = false;
                kill_at = kill_at.min(Instant::now());
            }
        }
    }
    tally
}

/// The escapee sweep of a supervision that could not run its own: its
/// future was dropped (cancelled, or its runtime shut down) before or while
/// it swept. Run on the engine, which outlives that runtime, with SIGKILL
/// at once, as the child got (caught by an acceptance run: a cancelled
/// `output_async` with the subreaper left its escapees running, and the
/// rest of its group as zombies of this process).
pub(crate) fn end_escapees_on_the_engine(program: &str) {
    let engine = match crate::blocking::engine() {
        Ok(engine) => engine,
        Err(e) => {
            tracing::warn!(program, error = %e, "cannot hand the escapee sweep to the engine: left to the next sweep");
            return;
        }
    };
    let program = program.to_owned();
    engine.spawn(async move {
        end_escapees(
            &program,
            Signal::KILL,
            Duration::ZERO,
            std::future::pending::<()>(),
        )
        .await
    });
}

/// Hands escapees the sweep gave up on (stuck in the kernel, their SIGKILL
/// pending) to the engine, which reaps each when it finally exits: else
/// each would stay a zombie of this process. Where the engine cannot take
/// them (out of threads or fds) they are left to the next sweep or
/// [`reap_orphans`].
fn reap_in_the_background(program: &str, survivors: Vec<Tracked>) {
    let engine = match crate::blocking::engine() {
        Ok(engine) => engine,
        Err(e) => {
            tracing::warn!(program, error = %e, "cannot hand the escapees given up on to the engine");
            return;
        }
    };
    let adopted: Vec<Adopted> = survivors.into_iter().map(|t| t.adopted).collect();
    // Before the task runs: a sweep starting meanwhile must not take them.
    given_up().extend(adopted.iter().map(|a| a.pid));
    let program = program.to_owned();
    engine.spawn(async move {
        // Registered on the engine's own reactor, in its task.
        let tracked = adopted.into_iter().map(Tracked::new).collect();
        reap_as_they_exit(&program, tracked, |_| false).await;
    });
}

/// Reaps the members of `group` that were orphaned to this process (a
/// subreaper) with the child that led it, once that child, given up on
/// after its SIGKILL, has exited and been reaped: they were stuck with it,
/// and nothing else would reap them. Each gets SIGKILL (the end it was
/// being given), each is reaped as it exits, and the members each one
/// orphans in turn with it; returns when none is left, however long that
/// takes (it runs on the engine). Does nothing when this process is no
/// subreaper: the orphans went to init.
pub(crate) async fn reap_group_orphans(program: &str, group: u32) {
    if !is_enabled() {
        return;
    }
    let in_group = move |stat: sys::ProcStat| i64::from(stat.pgrp) == i64::from(group);
    reap_as_they_exit(program, Vec::new(), in_group).await;
}

/// Waits for each tracked process to exit and reaps it; after each reap,
/// adopts the children of ours that `joins` accepts (a reaped process's
/// children are ours now) and sends them SIGKILL. Returns when nothing is
/// tracked.
async fn reap_as_they_exit(
    program: &str,
    mut tracked: Vec<Tracked>,
    joins: impl Fn(sys::ProcStat) -> bool + Copy,
) {
    loop {
        for adopted in adopt(&pids(&tracked), joins, false) {
            given_up().insert(adopted.pid);
            let mut joined = Tracked::new(adopted);
            joined.send(program, Signal::KILL);
            tracked.push(joined);
        }
        let reaped = reap_exited(program, &mut tracked);
        if !reaped.is_empty() {
            forget_reaped(&mut given_up(), &reaped);
            // Its children are ours now: list again before waiting.
            continue;
        }
        if tracked.is_empty() {
            return;
        }
        any_exit(&tracked).await;
    }
}

/// Drops the `reaped` pids from `given_up`: they may be anyone's now.
/// Another task's pids stay.
fn forget_reaped(given_up: &mut BTreeSet<u32>, reaped: &[u32]) {
    given_up.retain(|pid| !reaped.contains(pid));
}

fn pids(tracked: &[Tracked]) -> Vec<u32> {
    tracked.iter().map(|t| t.adopted.pid).collect()
}

/// Reaps and drops the tracked processes that have exited (or that cannot
/// be waited for); returns their pids.
fn reap_exited(program: &str, tracked: &mut Vec<Tracked>) -> Vec<u32> {
    let mut gone = Vec::new();
    tracked.retain(|t| {
        let went = match t.adopted.try_reap() {
            Ok(went) => went,
            Err(e) => {
                tracing::warn!(program, pid = t.adopted.pid, error = %e, "escapee: reaping failed");
                true
            }
        };
        if went {
            gone.push(t.adopted.pid);
        }
        !went
    });
    gone
}

/// Resolves when any tracked escapee has exited (its pidfd turned
/// readable), or after the poll interval when one has no exit event.
async fn any_exit(tracked: &[Tracked]) {
    if tracked.iter().any(|t| t.exit_event.is_none()) {
        tokio::time::sleep(PID_POLL).await;
        return;
    }
    poll_fn(|cx| {
        for t in tracked {
            if let Some(fd) = &t.exit_event {
                if fd.poll_read_ready(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caught by mutation testing: a reaped child left in the registry
    /// would make an escapee that got its pid invisible to the sweep.
    #[test]
    fn a_reaped_child_is_no_longer_registered() {
        let r = crate::Command::new("true").run().unwrap();
        assert!(r.success());
        assert!(!started().contains(&r.pid), "{} still registered", r.pid);
    }

    /// Caught by mutation testing: a supervision that ended without its
    /// sweep (its runtime shut down) must not keep the others from
    /// sweeping.
    #[test]
    fn a_participation_dropped_unfinished_leaves_too() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let last = Participation::join();
        drop(Participation::join());
        assert!(last.finish(), "the dropped one still counts as running");
        let first = Participation::join();
        let second = Participation::join();
        assert!(!first.finish());
        assert!(second.finish());
    }

    /// Caught by mutation testing: the reaped pids leave the given-up
    /// registry (a recycled pid would be skipped by every sweep), and the
    /// pids another background task still tracks stay in it.
    #[test]
    fn only_the_reaped_leave_the_given_up_registry() {
        let mut given_up: BTreeSet<u32> = [10, 11, 20].into();
        forget_reaped(&mut given_up, &[10]);
        assert_eq!(given_up, [11, 20].into());
    }

    /// The unit tests that count participations take turns.
    static SERIAL: Mutex<()> = Mutex::new(());
}
