//! The one-line calls (`output`, `status`, `run`) driven on the caller's
//! own thread, and their async twins in the caller's own task.
//!
//! `with_process` runs the coordinator on the engine and the readers on a
//! pooled stdio thread because user code (the action, the consumers) may
//! block, and must never stall the escalation's timers. The one-line calls
//! run no user code: their consumers append to a `Vec`. So nothing forces
//! those threads, and each hop between them (engine worker → stdio thread
//! → caller) costs a wake-up. Here the caller's thread does it all: where
//! [`by_readiness`] says so, on `poll(2)` alone ([`polled`]); otherwise it
//! drives the coordinator, the readers and the teardown together on a
//! current-thread tokio runtime of its own ([`drive`]): the same futures,
//! the same escalation and timings, every byte, with no other thread
//! involved.
//!
//! The blocking calls cannot run here inside a tokio runtime (a runtime
//! cannot block on another): they fall back to the engine path then. The
//! async one-line calls (`output_async`, `status_async`) run in the
//! caller's task, on its runtime: by readiness alone ([`awaited`]), or on
//! [`drive`].

mod awaited;
mod child;
mod deadline;
mod observe;
mod polled;

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;

use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};

use crate::command::{Command, Stdio};
use crate::coordinator::{OutputDrain, Policy, supervise};
use crate::error::Error;
use crate::result::SupervisionResult;
use crate::shared::REQ_TEARDOWN;
use crate::spawn::{Started, start_with};
use crate::workers::read_outputs;

thread_local! {
    /// This thread's runtime for the one-line calls that need one and for
    /// `with_process`'s stdio work, built on first use and kept: building
    /// one costs an epoll instance and an eventfd, about as much as the rest
    /// of a call's overhead.
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
}

/// Runs `cmd` to its end with its streams set as `stdio`: a piped stdin
/// closed at once, the piped output streams appended to `stdout` and
/// `stderr`, all on this thread. `None` when the direct path cannot apply
/// here (inside a tokio runtime): the caller takes the engine path.
pub(crate) fn run(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Option<Result<SupervisionResult, Error>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return None;
    }
    if let Some(outcome) = polled::run(cmd, stdio, stdout, stderr) {
        return Some(outcome);
    }
    let runtime = match take_runtime() {
        Ok(runtime) => runtime,
        Err(source) => {
            return Some(Err(Error::Io {
                program: cmd.program_lossy(),
                context: "starting the runtime of a one-line call",
                source,
            }));
        }
    };
    let outcome = runtime.block_on(drive(cmd, stdio, stdout, stderr));
    give_back(runtime);
    Some(outcome)
}

/// Whether a one-line call running `cmd` can be driven by readiness alone,
/// on the caller's thread ([`polled`]) or in the caller's task
/// ([`awaited`]): the pidfd, the output pipes and the call's own timers
/// (the deadline's escalation, the output cut-off). It can where there is
/// no cgroup, subreaper or terminal to manage, and the kernel signals a
/// group through its pidfd (Linux 6.9+), so the child can be reaped the
/// moment it exits and its group still reached afterwards. Decided before
/// anything is spawned; otherwise the runtime path ([`drive`]) runs the
/// call. What these drivers keep of that path's guarantees, with the same
/// code where there is code to share (spawn, the escalation's machine and
/// steps, the group sweep): the escalation's timings, every byte, the
/// output cut-off a grace period after the exit, the sweep of what is left
/// of the group, nothing leaked on any path.
fn by_readiness(cmd: &Command) -> bool {
    let features = crate::sys::features();
    features.pidfd
        && features.pidfd_group_signal
        && cmd.cgroup.is_none()
        && !cmd.subreaper
        && !cmd.terminal_foreground
}

/// This thread's kept runtime, or a new one. Taken out while in use, so a
/// nested call (from a Drop run inside, say) builds its own instead of
/// failing to borrow.
fn take_runtime() -> io::Result<Runtime> {
    match RUNTIME.try_with(|cell| cell.borrow_mut().take()) {
        Ok(Some(runtime)) => Ok(runtime),
        // None kept, or the thread is exiting.
        _ => crate::blocking::first_runtime(),
    }
}

/// A runtime for `with_process`'s stdio thread: this thread's kept one, or
/// a new one that is kept after the call (building one costs an epoll
/// instance and an eventfd, about a tenth of a spawn-wait). Given back when
/// the `Lent` is dropped, on every path, an error before it was used
/// included.
pub(crate) struct Lent {
    runtime: Option<Runtime>,
}

impl Lent {
    /// This thread's kept runtime, or a new one.
    ///
    /// # Errors
    ///
    /// When a new one cannot be built (out of fds or memory).
    pub(crate) fn take() -> io::Result<Lent> {
        take_runtime().map(|runtime| Lent {
            runtime: Some(runtime),
        })
    }

    /// The runtime, for work elsewhere: handed to [`give_back`] on this
    /// thread when the work is done.
    pub(crate) fn into_inner(mut self) -> Runtime {
        self.runtime
            .take()
            .expect("a Lent holds its runtime until taken")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            give_back(runtime);
        }
    }
}

/// Keeps `runtime` for this thread's next call, or, if one is kept already
/// or the thread is exiting, shuts it down without blocking: the caller
/// may be inside a runtime of its own (a one-line call in `block_on`),
/// where dropping a runtime panics.
pub(crate) fn give_back(runtime: Runtime) {
    let mut spare = Some(runtime);
    let _ = RUNTIME.try_with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = spare.take();
        }
    });
    if let Some(runtime) = spare {
        runtime.shutdown_background();
    }
}

/// The async one-line calls: runs `cmd` to its end in the caller's task,
/// as [`run`] does on the caller's thread (by readiness alone where
/// [`by_readiness`] says so, otherwise on [`drive`]).
pub(crate) async fn run_async(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Result<SupervisionResult, Error> {
    // Checked before anything exists, so the documented panic leaves no
    // child behind.
    crate::spawn::require_runtime("childminder's async one-line calls");
    if by_readiness(cmd) {
        awaited::supervise(cmd, stdio, stdout, stderr).await
    } else {
        drive(cmd, stdio, stdout, stderr).await
    }
}

/// Spawns on the current runtime, then drives the coordinator, the readers
/// and the teardown together, inside this future, until the supervision
/// has finished. Dropped early, the coordinator's last resort kills and
/// reaps the child.
pub(crate) async fn drive(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Result<SupervisionResult, Error> {
    let Started {
        shared,
        stdout: out_pipe,
        stderr: err_pipe,
    } = start_with(cmd, stdio)?;
    // What `stdin::empty()` does: the child reads EOF at once.
    shared.stdin.close();
    let policy = Policy {
        grace: cmd.grace_period,
        deadline: cmd.deadline,
        term_signal: cmd.term_signal,
    };
    let reads_output = out_pipe.is_some() || err_pipe.is_some();
    let (exit_seen, exit_seen_rx) = watch::channel(None);
    let (outputs_done_tx, outputs_done) = oneshot::channel();
    let coordinator = supervise(
        shared.clone(),
        policy,
        reads_output.then_some(OutputDrain {
            exit_seen,
            outputs_done,
        }),
    );
    let readers = read_outputs(
        &shared,
        out_pipe.map(|fd: OwnedFd| (fd, appender(stdout))),
        err_pipe.map(|fd: OwnedFd| (fd, appender(stderr))),
        cmd.buffer_size,
        cmd.grace_period,
        exit_seen_rx,
        outputs_done_tx,
    );
    // What the action `|p| p.wait()` and its return do in `with_process`.
    let teardown = async {
        shared.result.wait().await;
        shared.request(REQ_TEARDOWN);
    };
    tokio::join!(coordinator, readers, teardown);
    Ok(shared.final_result())
}

/// Appends each chunk; a buffer that cannot grow (out of memory) fails
/// the stream, as a consumer's error, instead of aborting the process.
fn appender(buf: &mut Vec<u8>) -> impl FnMut(&[u8]) -> io::Result<()> + '_ {
    |chunk: &[u8]| {
        buf.try_reserve(chunk.len())
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        buf.extend_from_slice(chunk);
        Ok(())
    }
}
