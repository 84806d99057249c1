//! Teardowns still under way when the program exits.
//!
//! A dropped handle's teardown runs in the background, and the background
//! ends with the process: a `BlockingChild` dropped just before `main`
//! returned (its teardown still in its first grace period) was left
//! running, re-parented to init (an acceptance run found it). So at `exit`
//! (`main` returning, or `std::process::exit`), from an `atexit` handler:
//!
//! - a teardown on the engine (the blocking API's) runs to its end, the
//!   exit waiting for it as long as its escalation can take; the engine's
//!   thread keeps running while exit handlers do;
//! - a teardown on a caller's runtime (the async API's), which may never
//!   run again, is finished with SIGKILL to its target (the group or
//!   cgroup), as when that runtime shuts down;
//! - a handle another thread drops while the exit waits is waited for too
//!   (the list is taken again after each round, for the longest teardown
//!   seen and a second at most); one dropped after the last round has its
//!   child SIGKILLed by the dropping thread;
//! - a child nobody asked to end (a handle still held, or forgotten) is
//!   left running, as std leaves its own.
//!
//! A death by a signal runs no exit handler: `kill_on_parent_death` is the
//! guarantee then.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, TryLockError, Weak};
use std::time::{Duration, Instant};

use crate::shared::{REQ_TEARDOWN, Shared};
use crate::signal::Signal;
use crate::sys;

/// Where a supervision's teardown runs, and so what the exit does with it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Driver {
    /// The engine: the exit waits this long at most for the teardown.
    Engine { longest_teardown: Duration },
    /// The caller's runtime: SIGKILL at the exit.
    CallersRuntime,
}

impl Driver {
    /// On the engine, with this grace period: the child's own grace, TERM,
    /// a grace, KILL and its second, then the same for what is left of the
    /// group, and a last margin.
    pub(crate) fn engine(grace: Duration) -> Driver {
        Driver::Engine {
            longest_teardown: grace
                .saturating_mul(4)
                .saturating_add(Duration::from_secs(3)),
        }
    }
}

/// Every supervision started by this process and not yet dropped.
static LIVE: Mutex<Vec<(Weak<Shared>, Driver)>> = Mutex::new(Vec::new());
static REGISTER: Once = Once::new();

/// The process whose supervisions `LIVE` holds: a child of `fork` inherits
/// the list and the handler, and must leave its parent's children alone.
static OWNER: AtomicI32 = AtomicI32::new(0);

/// Set once the exit handler has taken its last list.
static HANDLED: AtomicBool = AtomicBool::new(false);

/// A handle was dropped: its teardown is asked for, and, once the exit
/// handler is done with its list, its child killed at once by the
/// dropping thread, since nothing would see the teardown any more (a
/// review saw children dropped late in the exit left running). One dropped
/// while the handler still takes its rounds is torn down gracefully: the
/// next round finds it.
pub(crate) fn handle_dropped(shared: &Shared) {
    shared.request(REQ_TEARDOWN);
    if HANDLED.load(Ordering::SeqCst) && OWNER.load(Ordering::Relaxed) == sys::getpid() {
        let _ = shared.target.signal_escalation(Signal::KILL);
    }
}

/// Has the exit finish `shared`'s teardown if one is under way then.
pub(crate) fn watch(shared: &Arc<Shared>, driver: Driver) {
    REGISTER.call_once(|| {
        if let Err(e) = sys::at_exit(finish_teardowns) {
            tracing::warn!(error = %e, "atexit refused: a teardown under way at exit is left to it");
        }
    });
    let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let me = sys::getpid();
    if OWNER.swap(me, Ordering::Relaxed) != me {
        // A forked child: its parent's supervisions are not its own.
        live.clear();
    }
    live.retain(|(shared, _)| shared.strong_count() > 0);
    live.push((Arc::downgrade(shared), driver));
}

extern "C" fn finish_teardowns() {
    if OWNER.load(Ordering::Relaxed) != sys::getpid() {
        return;
    }
    let now = Instant::now();
    // Taken again after each round: a handle another thread drops while
    // the exit waits is finished too (an acceptance run saw one left). The
    // rounds end with the longest teardown seen and a second: a thread that
    // keeps starting and dropping children cannot hold the exit.
    let mut until = now + Duration::from_secs(1);
    let mut seen: Vec<Arc<Shared>> = Vec::new();
    loop {
        if Instant::now() >= until {
            break;
        }
        let Some(live) = lock_briefly(&LIVE) else {
            // Held by a thread that cannot let go (an `exit` called from a
            // signal handler that interrupted `watch`): never block the
            // exit.
            break;
        };
        let ending: Vec<(Arc<Shared>, Driver)> = live
            .iter()
            .filter_map(|(shared, driver)| Some((shared.upgrade()?, *driver)))
            .filter(|(shared, _)| shared.end_asked() && shared.finished.get().is_none())
            .filter(|(shared, _)| !seen.iter().any(|s| Arc::ptr_eq(s, shared)))
            .collect();
        drop(live);
        if ending.is_empty() {
            // One more list once drops see the flag: one that came just
            // before it is found there, any later kills its own child.
            if HANDLED.swap(true, Ordering::SeqCst) {
                break;
            }
            continue;
        }
        for (shared, driver) in ending {
            if let Driver::Engine { longest_teardown } = driver {
                until = until.max(now + longest_teardown + Duration::from_secs(1));
            }
            finish(&shared, driver, now);
            seen.push(shared);
        }
    }
    HANDLED.store(true, Ordering::SeqCst);
    // Not dropped: one may hold the last reference, and its drop
    // (deregistering from a runtime being torn down) has no place in an
    // exit handler; the process is going anyway.
    std::mem::forget(seen);
}

/// Waits for `shared`'s teardown on the engine (as long as it can take,
/// from `since`), or ends it with SIGKILL.
fn finish(shared: &Shared, driver: Driver, since: Instant) {
    if let Driver::Engine { longest_teardown } = driver {
        let left = (since + longest_teardown).saturating_duration_since(Instant::now());
        if shared.finished.wait_blocking_timeout(left).is_some() {
            return;
        }
    }
    // Never to a recycled pid: a reaped child's group is not signalled by
    // number, a removed cgroup not at all.
    let _ = shared.target.signal_escalation(Signal::KILL);
    if let Some(cgroup) = shared.target.cgroup() {
        // The teardown would have removed it: `cgroup.kill` empties it at
        // once (the child's zombie does not count).
        if cgroup.wait_emptied_blocking(Duration::from_secs(1)) {
            let _ = cgroup.remove();
        }
    }
}

/// `mutex`, if it can be had within a short while.
fn lock_briefly<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    let until = Instant::now() + Duration::from_millis(100);
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => return None,
        }
    }
}
