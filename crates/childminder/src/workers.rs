//! The stdio workers of the blocking API.
//!
//! A call's output runs on one thread of its own, the stdio thread, which
//! drives a small current-thread tokio runtime: the pipes are readiness
//! events there, and each chunk read is handed to its consumer right on
//! that thread — no hand-off between threads per chunk. A slow or blocking
//! consumer therefore pauses reading (the pipe fills and the child blocks:
//! backpressure) but never the escalation, whose timers run on the engine
//! runtime. Stdin is written by a task on the engine, in parallel with the
//! reading (what `cat` round trips need); the producer, which may block in
//! its own code, runs on a thread of its own and hands chunks to that task.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use crate::error::{Stream, WorkerOp, panic_to_io};
use crate::input::Producer;
use crate::shared::{Shared, StdinSlot};

/// How a reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderEnd {
    /// End-of-file: every byte was read and consumed.
    Eof,
    /// The child had exited and the pipe was still open a grace period
    /// later (a grandchild holds it): the reader gave up and closed it.
    CutOff,
    /// Reading failed (the pipe was closed).
    Failed,
    /// The consumer failed (or panicked) and the pipe was closed.
    ConsumerFailed,
    /// Cut off, and the consumer failed (or panicked) on what the pipe
    /// still held: the pipe was closed.
    CutOffConsumerFailed,
}

impl ReaderEnd {
    fn cut_off(self) -> bool {
        matches!(self, ReaderEnd::CutOff | ReaderEnd::CutOffConsumerFailed)
    }

    /// The consumer is not called again, not even with the end mark.
    fn consumer_failed(self) -> bool {
        matches!(
            self,
            ReaderEnd::ConsumerFailed | ReaderEnd::CutOffConsumerFailed
        )
    }
}

/// What the stdio thread does for one call.
pub(crate) struct StdioJob<O, E> {
    /// A current-thread runtime with IO and time, the caller's thread's:
    /// a job dropped unrun (no thread for it) gives it back there, where
    /// dropping it inside the caller's own runtime would panic.
    pub runtime: crate::direct::Lent,
    pub shared: Arc<Shared>,
    pub stdout: Option<(OwnedFd, O)>,
    pub stderr: Option<(OwnedFd, E)>,
    pub buffer_size: usize,
    pub grace: Duration,
    pub exit_seen: watch::Receiver<Option<Instant>>,
    /// Told when both readers are done: whether the output was cut off.
    pub outputs_done: oneshot::Sender<bool>,
}

/// Where the writer task gets its chunks.
pub(crate) struct StdinFeed {
    pub chunks: mpsc::Receiver<Vec<u8>>,
    pub written: Option<std::sync::mpsc::Sender<()>>,
}

/// How `close_stdin()` reaches the producer thread.
#[derive(Default)]
pub(crate) struct StdinControl {
    producer: std::sync::Mutex<ProducerState>,
}

impl StdinControl {
    /// Stops the producer from being called again (a call in progress
    /// finishes, its chunk is dropped).
    pub(crate) fn stop_producer(&self) {
        self.producer().over = true;
    }

    fn producer(&self) -> std::sync::MutexGuard<'_, ProducerState> {
        self.producer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The body of the stdio thread.
/// Returns the runtime, for the caller to keep for its next call.
pub(crate) fn run_stdio<O, E>(job: StdioJob<O, E>) -> tokio::runtime::Runtime
where
    O: FnMut(&[u8]) -> io::Result<()>,
    E: FnMut(&[u8]) -> io::Result<()>,
{
    let StdioJob {
        runtime,
        shared,
        stdout,
        stderr,
        buffer_size,
        grace,
        exit_seen,
        outputs_done,
    } = job;
    let runtime = runtime.into_inner();
    runtime.block_on(read_outputs(
        &shared,
        stdout,
        stderr,
        buffer_size,
        grace,
        exit_seen,
        outputs_done,
    ));
    runtime
}

/// Reads both output streams to their ends (or the cut-off), handing each
/// chunk to its consumer, then tells the coordinator whether the output
/// had to be cut off.
pub(crate) async fn read_outputs<O, E>(
    shared: &Shared,
    stdout: Option<(OwnedFd, O)>,
    stderr: Option<(OwnedFd, E)>,
    buffer_size: usize,
    grace: Duration,
    exit_seen: watch::Receiver<Option<Instant>>,
    outputs_done: oneshot::Sender<bool>,
) where
    O: FnMut(&[u8]) -> io::Result<()>,
    E: FnMut(&[u8]) -> io::Result<()>,
{
    let out = read_stream(
        shared,
        Stream::Stdout,
        stdout,
        buffer_size,
        grace,
        exit_seen.clone(),
    );
    let err = read_stream(
        shared,
        Stream::Stderr,
        stderr,
        buffer_size,
        grace,
        exit_seen,
    );
    let (out, err) = tokio::join!(out, err);
    let _ = outputs_done.send(out.cut_off() || err.cut_off());
}

/// Reads one stream (if piped) to its end, handing each chunk to its
/// consumer, then hands it the end mark: one empty chunk, once the pipe is
/// closed, however the stream ended (end of file, the cut-off, a read
/// error) unless the consumer itself failed. A consumer that buffers
/// (`consume::Lines`) delivers the rest there, its error recorded.
async fn read_stream<C>(
    shared: &Shared,
    stream: Stream,
    source: Option<(OwnedFd, C)>,
    buffer_size: usize,
    grace: Duration,
    exit_seen: watch::Receiver<Option<Instant>>,
) -> ReaderEnd
where
    C: FnMut(&[u8]) -> io::Result<()>,
{
    let Some((fd, mut consumer)) = source else {
        return ReaderEnd::Eof;
    };
    let end = read_to_end(
        shared,
        stream,
        fd,
        &mut consumer,
        buffer_size,
        grace,
        exit_seen,
    )
    .await;
    if !end.consumer_failed() {
        if let Err(e) = call_consumer(&mut consumer, &[]) {
            shared.record_worker_error(stream, WorkerOp::Consume, e);
        }
    }
    // Dropped here, not with the joined readers: a panic there would drop
    // the other stream's consumer while unwinding, and a second panic
    // aborts the process (an acceptance run saw it with both `Drop`s
    // panicking).
    drop_caught(consumer, &shared.program, stream);
    end
}

/// Drops a producer or consumer of the caller's, its panic caught so it
/// never unwinds childminder's threads; too late for the result (the output
/// was delivered), so it is logged.
fn drop_caught<T>(value: T, program: &str, stream: Stream) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        tracing::warn!(
            program = %program,
            %stream,
            error = %panic_to_io(panic),
            "the stream's producer or consumer panicked as it was dropped"
        );
    }
}

/// Reads one stream to end-of-file, handing each chunk to `consumer`, or
/// until the cut-off: a grace period after the child's exit with the pipe
/// still held open by a writer. A pipe whose writers have all gone by then
/// is read to its end (what it holds is finite and was all written), so a
/// slow consumer loses nothing. Returning closes the pipe.
async fn read_to_end<C>(
    shared: &Shared,
    stream: Stream,
    fd: OwnedFd,
    consumer: &mut C,
    buffer_size: usize,
    grace: Duration,
    mut exit_seen: watch::Receiver<Option<Instant>>,
) -> ReaderEnd
where
    C: FnMut(&[u8]) -> io::Result<()>,
{
    let fail = |op, e| {
        shared.record_worker_error(stream, op, e);
        match op {
            WorkerOp::Consume => ReaderEnd::ConsumerFailed,
            _ => ReaderEnd::Failed,
        }
    };
    let mut pipe = match pipe::Receiver::from_owned_fd_unchecked(fd) {
        Ok(pipe) => pipe,
        Err(e) => return fail(WorkerOp::Read, e),
    };
    // Fallible: out of memory (`ulimit -v`) is then a recorded failure of
    // this stream (its pipe is closed) rather than an abort.
    let mut buf = Vec::new();
    if let Err(e) = buf.try_reserve_exact(buffer_size) {
        return fail(
            WorkerOp::Read,
            io::Error::new(io::ErrorKind::OutOfMemory, e),
        );
    }
    // Past the cut-off with the writers all gone: read to the end.
    let mut to_the_end = false;
    // At the cut-off: a pipe still held open is closed (returning drops it)
    // and the group killed now, not once the other stream is drained too
    // (which a slow consumer may take long over); one whose writers have
    // all gone is read to its end.
    let reached_cut_off = |pipe: &pipe::Receiver| {
        if crate::sys::writers_gone(pipe.as_fd()) {
            return false;
        }
        let _ = shared.target.signal_escalation(crate::signal::Signal::KILL);
        true
    };
    loop {
        buf.clear();
        let cutoff = exit_seen
            .borrow()
            .map(|at| at + grace)
            .filter(|_| !to_the_end);
        // Checked on every turn, not only when the pipe is empty: a
        // grandchild that keeps writing must not hold the teardown forever.
        // `None`: the cut-off is due.
        let read = if cutoff.is_some_and(|at| Instant::now() >= at) {
            None
        } else {
            tokio::select! {
                biased;
                r = read_chunk(&mut pipe, &mut buf, buffer_size) => Some(r),
                changed = exit_seen.changed(), if cutoff.is_none() && !to_the_end => {
                    if changed.is_err() {
                        // The coordinator is gone without telling: read on.
                        std::future::pending::<()>().await;
                    }
                    continue;
                }
                // Due on the timer's clock, which may not be std's (a paused
                // tokio clock fires early in real time: looping back to the
                // check above would spin until then).
                () = sleep_until(cutoff.unwrap_or_else(Instant::now).into()), if cutoff.is_some() => None,
            }
        };
        let Some(read) = read else {
            if reached_cut_off(&pipe) {
                // What the child wrote before its exit may still be in the
                // pipe, unread behind a slow consumer (an acceptance run
                // lost a third of it): delivered before the pipe is closed.
                buf.clear();
                let delivered =
                    read_what_the_pipe_holds(pipe.as_fd(), &mut buf, buffer_size, |buf| {
                        let consumed = call_consumer(consumer, buf);
                        buf.clear();
                        consumed.map_err(|e| (WorkerOp::Consume, e))
                    });
                // A failure there does not undo the cut-off (the group was
                // killed): recorded, and the result still says so.
                return match delivered {
                    Ok(()) => ReaderEnd::CutOff,
                    Err((op, e)) => match fail(op, e) {
                        ReaderEnd::ConsumerFailed => ReaderEnd::CutOffConsumerFailed,
                        _ => ReaderEnd::CutOff,
                    },
                };
            }
            to_the_end = true;
            continue;
        };
        match read {
            Ok(0) => return ReaderEnd::Eof,
            Ok(_) => {
                if let Err(e) = call_consumer(consumer, &buf) {
                    // Returning drops the pipe: the child sees EPIPE or
                    // SIGPIPE on its next write, as with `| head`.
                    return fail(WorkerOp::Consume, e);
                }
                if to_the_end {
                    // A slow consumer on a pipe with data always ready
                    // would not let the other stream's reader (the same
                    // task) reach its own cut-off.
                    tokio::task::yield_now().await;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return fail(WorkerOp::Read, e),
        }
    }
}

/// At the output cut-off: reads, without waiting, what the pipe holds,
/// passing `buf` to `on_read` after each read (appended to; it may empty
/// it). Everything the child wrote before its end is in the pipe by then,
/// so at most the pipe's capacity is read: a writer still alive (the kill
/// of the group comes before this on the engine's path, after it on a
/// one-line call's) cannot keep the reading going.
pub(crate) fn read_what_the_pipe_holds(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    chunk: usize,
    mut on_read: impl FnMut(&mut Vec<u8>) -> Result<(), (WorkerOp, io::Error)>,
) -> Result<(), (WorkerOp, io::Error)> {
    let capacity = crate::sys::pipe_capacity(fd);
    let mut taken = 0;
    while taken < capacity {
        match crate::sys::read_appending(fd, buf, chunk) {
            Ok(0) => break,
            Ok(n) => {
                taken += n;
                on_read(buf)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                return Err((WorkerOp::Consume, e));
            }
            Err(e) => return Err((WorkerOp::Read, e)),
        }
    }
    Ok(())
}

/// Hands `chunk` to the consumer (an empty one is the end mark), a panic
/// turned into its error.
fn call_consumer<C>(consumer: &mut C, chunk: &[u8]) -> io::Result<()>
where
    C: FnMut(&[u8]) -> io::Result<()>,
{
    match catch_unwind(AssertUnwindSafe(|| consumer(chunk))) {
        Ok(r) => r,
        Err(panic) => Err(panic_to_io(panic)),
    }
}

/// Reads at most `limit` bytes into `buf` (empty on entry). A buffer of
/// exactly that capacity is filled without being zeroed first.
async fn read_chunk(
    pipe: &mut pipe::Receiver,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    if buf.capacity() == limit {
        // read_buf fills the spare capacity only, so at most `limit`.
        return pipe.read_buf(buf).await;
    }
    buf.resize(limit, 0);
    let n = pipe.read(buf).await;
    buf.truncate(*n.as_ref().unwrap_or(&0));
    n
}

/// Writes what the producer hands over into the child's stdin; ends on the
/// producer's end (or failure, which the producer thread records itself), a close request (after the write in progress), stdin
/// being closed by the coordinator, or the child closing its stdin (EPIPE,
/// which is not a failure).
pub(crate) async fn write_stdin(shared: Arc<Shared>, feed: StdinFeed) {
    let StdinFeed {
        mut chunks,
        written,
    } = feed;
    loop {
        let msg = tokio::select! {
            biased;
            () = shared.stdin.closed() => break,
            () = shared.stdin.close_requested() => {
                // Graceful: what was handed over is written first.
                chunks.close();
                while let Some(data) = chunks.recv().await {
                    if write_all(&shared.stdin, &data).await.is_err() {
                        break;
                    }
                }
                break;
            }
            msg = chunks.recv() => msg,
        };
        let Some(data) = msg else { break };
        match write_all(&shared.stdin, &data).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => {
                shared.record_worker_error(Stream::Stdin, WorkerOp::Write, e);
                break;
            }
        }
        if let Some(written) = &written {
            let _ = written.send(());
        }
    }
    shared.stdin.close();
}

async fn write_all(slot: &StdinSlot, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| slot.poll_write(cx, data)).await?;
        data = &data[n..];
    }
    Ok(())
}

/// The producer thread's handle: joined at the end of the call unless the
/// thread is inside the producer's own code, where nothing can stop it.
pub(crate) struct ProducerThread {
    control: Arc<StdinControl>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Default)]
struct ProducerState {
    in_call: bool,
    /// No further call: stdin is closing or the supervision is over.
    over: bool,
}

impl ProducerThread {
    /// Starts the producer thread.
    ///
    /// # Errors
    ///
    /// When the OS refuses a new thread.
    pub(crate) fn start(
        producer: Producer,
        chunks: mpsc::Sender<Vec<u8>>,
        written: Option<std::sync::mpsc::Receiver<()>>,
        control: Arc<StdinControl>,
        shared: Arc<Shared>,
    ) -> io::Result<ProducerThread> {
        let state = control.clone();
        let thread = std::thread::Builder::new()
            .name("childminder-input".into())
            .spawn(move || {
                let mut producer = producer;
                produce(&mut producer, chunks, written, &state, &shared);
                drop_caught(producer, &shared.program, Stream::Stdin);
            })?;
        Ok(ProducerThread { control, thread })
    }

    /// Called once stdin's writer is gone: the thread then ends at once,
    /// unless it is inside the producer, and is joined; otherwise it is left
    /// to end when the producer returns (it will not be called again).
    pub(crate) fn finish(self) {
        let in_call = {
            let mut state = self.control.producer();
            state.over = true;
            state.in_call
        };
        if !in_call {
            let _ = self.thread.join();
        }
    }
}

/// The producer thread: asks for a chunk, hands it to the writer, and (with
/// `flush_stdin`) waits until it is written before asking again.
fn produce(
    producer: &mut Producer,
    chunks: mpsc::Sender<Vec<u8>>,
    written: Option<std::sync::mpsc::Receiver<()>>,
    control: &StdinControl,
    shared: &Shared,
) {
    let set_in_call = |value: bool| {
        let mut state = control.producer();
        if state.over && value {
            return false;
        }
        state.in_call = value;
        true
    };
    loop {
        if chunks.is_closed() || !set_in_call(true) {
            return;
        }
        let outcome = catch_unwind(AssertUnwindSafe(&mut *producer));
        set_in_call(false);
        let failure = match outcome {
            // A call that was already under way when `close_stdin` stopped
            // the producer: its chunk is dropped, so nothing produced after
            // the close can reach the child.
            Ok(Ok(Some(_))) if control.producer().over => return,
            Ok(Ok(Some(data))) => {
                if chunks.blocking_send(data).is_err() {
                    return;
                }
                if let Some(written) = &written {
                    if written.recv().is_err() {
                        return;
                    }
                }
                continue;
            }
            // Dropping the sender tells the writer to close stdin.
            Ok(Ok(None)) => return,
            Ok(Err(e)) => e,
            Err(panic) => panic_to_io(panic),
        };
        // Recorded here, not sent, so it counts even if stdin was closed
        // before the writer could have read it.
        shared.record_worker_error(Stream::Stdin, WorkerOp::Produce, failure);
        return;
    }
}
