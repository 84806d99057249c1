//! The driver of [`Prefixer`]: a thread of its own that receives the
//! tree's output chunks, writes each batch of prefixed lines to stdout in
//! one write, and flushes partial lines when their wait is over.
//!
//! A thread, so that a slow stdout (a pager, a full pipe) blocks only this
//! writer; the tree's bounded output channel then fills and the children
//! slow down, while stops and restarts go on.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

use childminder::Stream;
use childminder::supervisor::{Output, OutputChunk};

use super::prefix::{Prefixer, SourceId};

/// Write when this much is gathered, even if more chunks are waiting.
const BATCH_BYTES: usize = 256 * 1024;

/// The printing thread.
pub struct Printer {
    thread: JoinHandle<()>,
    /// Fires (or is dropped, on a panic) when the thread has printed
    /// everything, with the error that made it discard output, if any.
    done: tokio::sync::oneshot::Receiver<Option<io::Error>>,
    /// Which runs' streams have had their last line written.
    ends: Arc<Ends>,
}

/// The streams of each run (path, pid) whose end-of-file the printing
/// thread has written out, so that a message about the run's end can wait
/// for its last lines: the two travel apart (the output channel to this
/// thread, the events to `up`'s loop), and an acceptance run saw
/// "aa exited with code 0" printed before `aa | hi`.
/// A run: its name path and pid.
type Run = (Arc<str>, u32);

/// Per run, how many of its streams have ended, and since when.
type Written = HashMap<Run, (u8, Instant)>;

#[derive(Default)]
struct Ends {
    written: std::sync::Mutex<Written>,
    changed: tokio::sync::Notify,
}

/// How long a run's ends are kept for a wait that may still come; a wait
/// that gave up before they came takes none (a review caught the map
/// growing by one run per restart of a process whose stream outlived it).
const ENDS_KEPT: std::time::Duration = std::time::Duration::from_secs(10);

impl Ends {
    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, ended: &mut Vec<Run>) {
        if ended.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut written = self.lock();
        written.retain(|_, (_, since)| now.duration_since(*since) < ENDS_KEPT);
        for run in ended.drain(..) {
            written.entry(run).or_insert((0, now)).0 += 1;
        }
        drop(written);
        self.changed.notify_waiters();
    }
}

impl Printer {
    /// Starts printing `output` to stdout. `paths` are the name paths of
    /// every process, in start order (they set the padding and colours).
    ///
    /// The thread builds its own runtime: built here, a thread the OS
    /// refused would drop it inside `up`'s runtime, which tokio answers with
    /// a panic (an acceptance run under `ulimit -u 1` caught it).
    ///
    /// # Errors
    ///
    /// The thread or its runtime could not be created.
    pub fn start(output: Output, paths: Vec<String>, colour: bool) -> io::Result<Printer> {
        let (started_tx, started) = std::sync::mpsc::sync_channel(1);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let ends = Arc::new(Ends::default());
        let ends_written = ends.clone();
        let thread = std::thread::Builder::new()
            .name("childminder-output".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(()));
                let printer = Sources::new(paths, colour);
                let failed = runtime.block_on(print(output, printer, io::stdout(), &ends_written));
                let _ = done_tx.send(failed);
            })?;
        // A thread can also die as it starts (std panics when it cannot map
        // the thread's signal stack): its start is confirmed.
        started.recv().unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "the output thread died as it started",
            ))
        })?;
        Ok(Printer { thread, done, ends })
    }

    /// Waits until both streams of the run of `path` with `pid` have had
    /// their last line printed, for at most `limit` (a stream held open by
    /// something that outlived the run must not hold the message back).
    pub async fn run_printed(&self, path: &Arc<str>, pid: u32, limit: std::time::Duration) {
        let key = (path.clone(), pid);
        let wait = async {
            loop {
                let changed = self.ends.changed.notified();
                if self.ends.lock().get(&key).is_some_and(|&(n, _)| n >= 2) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.ends.lock().remove(&key);
    }

    /// Waits, without blocking the runtime, until every chunk is printed
    /// (the tree has ended and its readers have delivered everything).
    /// Returns the write error that made the rest be discarded, unless it
    /// was a reader that went away (EPIPE, as with `| head`: not a failure).
    pub async fn finished(self) -> Option<io::Error> {
        let failed = self.done.await.ok().flatten();
        let _ = self.thread.join();
        failed
    }
}

/// The prefixer with the map from (path, stream) to its sources.
struct Sources {
    prefixer: Prefixer,
    paths: Vec<String>,
    ids: HashMap<(Arc<str>, Stream), SourceId>,
}

impl Sources {
    fn new(paths: Vec<String>, colour: bool) -> Sources {
        Sources {
            prefixer: Prefixer::new(paths.iter().map(String::as_str), colour),
            paths,
            ids: HashMap::new(),
        }
    }

    /// Adds the chunk's lines to `out`; an end-of-file chunk's run is
    /// pushed on `ended`.
    fn take(&mut self, chunk: OutputChunk, out: &mut Vec<u8>, ended: &mut Vec<Run>) {
        if chunk.eof {
            ended.push((chunk.path.clone(), chunk.pid));
        }
        let key = (chunk.path, chunk.stream);
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => {
                let index = self
                    .paths
                    .iter()
                    .position(|p| **p == *key.0)
                    .unwrap_or(self.paths.len());
                let id = self.prefixer.add_source(&key.0, index);
                self.ids.insert(key, id);
                id
            }
        };
        if chunk.eof {
            self.prefixer.finish(id, out);
        } else {
            self.prefixer.feed(id, &chunk.bytes, Instant::now(), out);
        }
    }
}

async fn print(
    mut output: Output,
    mut sources: Sources,
    out: impl Write,
    ends: &Ends,
) -> Option<io::Error> {
    let mut out = Sink::new(out);
    let mut buf = Vec::with_capacity(BATCH_BYTES);
    let mut ended = Vec::new();
    loop {
        let deadline = sources.prefixer.next_deadline();
        let chunk = tokio::select! {
            chunk = output.recv() => chunk,
            () = sleep_until(deadline) => {
                sources.prefixer.expire(Instant::now(), &mut buf);
                out.write(&mut buf);
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        sources.take(chunk, &mut buf, &mut ended);
        // Gather what is already waiting into the same write.
        while buf.len() < BATCH_BYTES {
            match now_or_never(output.recv()) {
                Some(Some(chunk)) => sources.take(chunk, &mut buf, &mut ended),
                _ => break,
            }
        }
        out.write(&mut buf);
        ends.mark(&mut ended);
    }
    // Every stream has had its end-of-file chunk; nothing is left over,
    // but a partial line of a stream without one must not be lost.
    sources.prefixer.expire(far_future(), &mut buf);
    out.write(&mut buf);
    out.failure
        .filter(|e| e.kind() != io::ErrorKind::BrokenPipe)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

/// Polls a cancel-safe future once.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// stdout, until it fails: then the output is discarded (the reader went
/// away, as with `| head`, or the disk is full), so that the children are
/// never blocked by it. A failure other than EPIPE is said on stderr at
/// once, and makes `up`'s status 125 where it would be 0.
struct Sink<W> {
    out: W,
    failure: Option<io::Error>,
}

impl<W: Write> Sink<W> {
    fn new(out: W) -> Sink<W> {
        Sink { out, failure: None }
    }

    fn write(&mut self, buf: &mut Vec<u8>) {
        if !buf.is_empty() && self.failure.is_none() {
            if let Err(e) = self.out.write_all(buf).and_then(|()| self.out.flush()) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    crate::run::diagnose(&format!(
                        "writing the output failed: {e}: the rest is discarded"
                    ));
                }
                self.failure = Some(e);
            }
        }
        buf.clear();
    }
}
