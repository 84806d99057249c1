//! The supervisions still under way when the program exits.
//!
//! The engine's threads die with the process, mid-escalation: a
//! `BlockingChild` dropped just before `main` returns (its teardown still in
//! its first grace period) was left running, re-parented to init (an
//! acceptance run found it). So at `exit` every supervision not finished
//! gets SIGKILL to what its escalation targets (the child's group or
//! cgroup), as when the runtime of an async `Child` shuts down: nothing of
//! the group outlives the supervision, however the program ends short of
//! being killed itself.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};

use crate::shared::Shared;
use crate::signal::Signal;
use crate::sys;

/// Every supervision started by this process and not yet dropped.
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
static REGISTER: Once = Once::new();

/// The process that registered the handler: a child of a `fork` inherits
/// the list and the handler, and must not kill its parent's children when
/// it calls `exit`.
static OWNER: AtomicI32 = AtomicI32::new(0);

/// Has `shared` killed at exit unless it has finished by then.
pub(crate) fn watch(shared: &Arc<Shared>) {
    REGISTER.call_once(|| {
        OWNER.store(sys::getpid(), Ordering::Relaxed);
        if let Err(e) = sys::at_exit(kill_what_is_left) {
            tracing::warn!(error = %e, "atexit refused: a child still torn down at exit is left to it");
        }
    });
    let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    live.retain(|shared| shared.strong_count() > 0);
    live.push(Arc::downgrade(shared));
}

extern "C" fn kill_what_is_left() {
    if OWNER.load(Ordering::Relaxed) != sys::getpid() {
        return;
    }
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    for shared in live.iter().filter_map(Weak::upgrade) {
        if shared.finished.get().is_none() {
            // Never to a recycled pid: a reaped child's group is not
            // signalled by number.
            let _ = shared.target.signal_escalation(Signal::KILL);
        }
        // Not dropped: this may be the last reference, and its drop
        // (deregistering from a runtime being torn down) has no place in
        // an exit handler; the process is going anyway.
        std::mem::forget(shared);
    }
}
