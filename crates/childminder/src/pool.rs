//! Reusable threads for the blocking API's stdio work.
//!
//! Starting and joining a thread costs more than a whole `posix_spawn` on a
//! small VM (50-70 µs against ~90 µs), and `with_process` needs one per call
//! for its consumers. So finished stdio threads wait, idle, for the next
//! call's work, and end after [`IDLE_TIMEOUT`] without any.
//!
//! The work borrows from the caller's stack (the consumers), as with
//! `std::thread::scope`, and [`scope`] guarantees what that does: the caller
//! cannot get past it, not even by unwinding, before the work has finished. A pooled thread keeps no descriptor between jobs: each job
//! brings its runtime (the caller's kept one) and hands it back.

use std::any::Any;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::shared::Published;
use crate::sys;

/// How long an idle stdio thread waits for more work before it ends.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the pooled work ended: `Err` with its panic's payload if it panicked.
pub(crate) type WorkOutcome = Result<(), Box<dyn Any + Send>>;

/// Set once the work has run and been dropped, or was dropped unrun.
#[derive(Default)]
struct Done {
    finished: Published<()>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// Publishes [`Done`] when dropped: whichever way a job goes (run, panicked,
/// or dropped unrun in a channel or a failed thread start), its caller is
/// released only once the job's closure is gone.
struct DoneOnDrop(Arc<Done>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.finished.publish(());
    }
}

struct Job {
    // Declared first, so it is dropped before `done` publishes.
    work: Box<dyn FnOnce() + Send + 'static>,
    done: DoneOnDrop,
}

struct Idle {
    id: u64,
    jobs: Sender<Job>,
}

static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Idle>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for the work when dropped, unwinding included. Private to
/// [`scope`], which owns it for its whole life: it cannot be leaked, which
/// is what the lifetime extension relies on.
struct WaitOnDrop(Arc<Done>);

impl Drop for WaitOnDrop {
    fn drop(&mut self) {
        self.0.finished.wait_blocking();
    }
}

/// Runs `work` on a pooled thread (an idle one, or a new one) while `body`
/// runs on this one, and returns `body`'s value once `work` has finished,
/// as `std::thread::scope` would with a fresh thread. A panic in `work` is
/// returned as `Err` beside `body`'s value; a panic in `body` unwinds after
/// `work` has finished.
///
/// # Errors
///
/// When no thread is idle and the OS refuses a new one: `work` is then
/// dropped unrun and `body` does not run.
pub(crate) fn scope<'a, R>(
    work: impl FnOnce() + Send + 'a,
    body: impl FnOnce() -> R,
) -> io::Result<(R, WorkOutcome)> {
    let done = Arc::new(Done::default());
    let work: Box<dyn FnOnce() + Send + 'a> = Box::new(work);
    // SAFETY: `wait` below is owned by this function and cannot be leaked;
    // whether `body` returns or unwinds, its drop waits until `done` is
    // published, which happens only after the job's closure has run and been
    // dropped, or been dropped unrun (DoneOnDrop, dropped after `work`). So
    // nothing borrowed for 'a is used after this function returns.
    let work = unsafe { sys::extend_job_lifetime(work) };
    let wait = WaitOnDrop(done.clone());
    submit(Job {
        work,
        done: DoneOnDrop(done.clone()),
    })?;
    let value = body();
    drop(wait);
    let panic = done.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok((value, panic.map_or(Ok(()), Err)))
}

/// Hands the job to an idle thread, or starts one.
fn submit(mut job: Job) -> io::Result<()> {
    loop {
        let Some(worker) = idle().pop() else { break };
        match worker.jobs.send(job) {
            Ok(()) => return Ok(()),
            // That thread has just timed out and gone: try another.
            Err(returned) => job = returned.0,
        }
    }
    let (jobs, inbox) = channel();
    jobs.send(job).expect("the receiver is alive");
    std::thread::Builder::new()
        .name("childminder-stdio".into())
        .spawn(move || serve(jobs, inbox))
        // On failure the closure, with the job, was dropped: DoneOnDrop
        // has published, and `scope`'s wait returns at once.
        .map(drop)
}

/// A pooled thread: runs jobs, and goes idle in between.
fn serve(jobs: Sender<Job>, inbox: Receiver<Job>) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut job = inbox.recv().ok();
    while let Some(Job { work, done }) = job.take() {
        // The closure is consumed (and its captures dropped) inside.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(work)) {
            *done.0.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic);
        }
        // Listed as idle before the caller learns the work is over, so its
        // next call finds this thread.
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        idle().push(Idle {
            id,
            jobs: jobs.clone(),
        });
        drop(done);
        job = match inbox.recv_timeout(IDLE_TIMEOUT) {
            Ok(next) => Some(next),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut list = idle();
                match list.iter().position(|w| w.id == id) {
                    // Still listed: nobody can send to us any more. (The
                    // oldest idle threads are at the front; `remove` keeps
                    // the order, so the freshest is popped first.)
                    Some(i) => {
                        list.remove(i);
                        None
                    }
                    // Taken by a caller just now: its job is on the way.
                    None => {
                        drop(list);
                        inbox.recv().ok()
                    }
                }
            }
        };
    }
}
