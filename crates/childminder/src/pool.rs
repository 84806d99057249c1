//! Reusable threads for the blocking API's stdio work.
//!
//! Starting and joining a thread costs more than a whole `posix_spawn` on a
//! small VM (50-70 µs against ~90 µs), and `with_process` needs one per call
//! for its consumers. So finished stdio threads wait, idle, for the next
//! call's work, and end after [`IDLE_TIMEOUT`] without any.
//!
//! The work borrows from the caller's stack (the consumers), as with
//! `std::thread::scope`; [`Running`] guarantees the same thing scope does:
//! the caller cannot get past it, not even by unwinding, before the work has
//! finished. A pooled thread keeps no descriptor between jobs: each job
//! brings its own runtime and drops it.

use std::any::Any;
use std::io;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::shared::Published;
use crate::sys;

/// How long an idle stdio thread waits for more work before it ends.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Set once the work has run (and been dropped), or was dropped unrun.
#[derive(Default)]
struct Done {
    finished: Published<()>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

struct Job {
    work: Box<dyn FnOnce() + Send + 'static>,
    done: Arc<Done>,
}

struct Idle {
    id: u64,
    jobs: Sender<Job>,
}

static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Idle>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Work running on a pooled thread. Dropping it waits for the work to
/// finish; [`join`](Self::join) also resumes a panic of the work.
pub(crate) struct Running<'a> {
    done: Arc<Done>,
    /// The work may borrow for 'a: this guard must not outlive it.
    _borrow: PhantomData<&'a mut ()>,
}

impl Running<'_> {
    /// Waits for the work, resuming its panic if it panicked.
    pub(crate) fn join(self) {
        self.done.finished.wait_blocking();
        let panic = self
            .done
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(self);
        if let Some(panic) = panic {
            resume_unwind(panic);
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // What makes the borrow sound: nobody gets past this point, not even
        // by unwinding, while the work may still touch borrowed data.
        self.done.finished.wait_blocking();
    }
}

/// Runs `work` on an idle pooled thread, or a new one.
///
/// # Errors
///
/// When no thread is idle and the OS refuses a new one; `work` is then
/// dropped without running.
pub(crate) fn run<'a>(work: impl FnOnce() + Send + 'a) -> io::Result<Running<'a>> {
    let done = Arc::new(Done::default());
    let work: Box<dyn FnOnce() + Send + 'a> = Box::new(work);
    // SAFETY: the returned Running waits for `done` in its Drop (and in
    // join), which the worker publishes only after `work` has run and been
    // dropped, or after the job was dropped unrun; so no borrow of 'a is used
    // after 'a ends. Running is never leaked by this crate.
    let work = unsafe { sys::extend_job_lifetime(work) };
    let mut job = Job {
        work,
        done: done.clone(),
    };
    loop {
        let Some(worker) = idle().pop() else { break };
        match worker.jobs.send(job) {
            Ok(()) => {
                return Ok(Running {
                    done,
                    _borrow: PhantomData,
                });
            }
            // That thread has just timed out and gone: try another.
            Err(returned) => job = returned.0,
        }
    }
    let (jobs, inbox) = channel();
    jobs.send(job).expect("the receiver is alive");
    let started = std::thread::Builder::new()
        .name("childminder-stdio".into())
        .spawn(move || serve(jobs, inbox));
    match started {
        Ok(_) => Ok(Running {
            done,
            _borrow: PhantomData,
        }),
        Err(e) => {
            // The closure, and the job inside it, were dropped unrun.
            done.finished.publish(());
            Err(e)
        }
    }
}

/// A pooled thread: runs jobs, and goes idle in between.
fn serve(jobs: Sender<Job>, inbox: Receiver<Job>) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut job = inbox.recv().ok();
    while let Some(Job { work, done }) = job.take() {
        let outcome = catch_unwind(AssertUnwindSafe(work));
        // Listed as idle before the caller learns the work is over, so its
        // next call finds this thread.
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        idle().push(Idle {
            id,
            jobs: jobs.clone(),
        });
        if let Err(panic) = outcome {
            *done.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic);
        }
        done.finished.publish(());
        drop(done);
        job = match inbox.recv_timeout(IDLE_TIMEOUT) {
            Ok(next) => Some(next),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut list = idle();
                match list.iter().position(|w| w.id == id) {
                    // Still listed: nobody can send to us any more.
                    Some(i) => {
                        list.swap_remove(i);
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
