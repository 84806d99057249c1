//! The stdio workers of the blocking API.
//!
//! - Readers are tasks on the engine runtime: they wait for pipe readiness,
//!   read up to `buffer_size` bytes, and hand the chunk over a bounded
//!   channel; when the channel is full they stop reading, so a slow consumer
//!   slows the child (backpressure) instead of growing a buffer.
//! - One delivery thread per call runs the consumers, in order, so a
//!   consumer may block or be slow without stalling the timers of the
//!   escalation.
//! - The writer is a task; the producer, which may block, runs on a thread.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::sleep_until;

use crate::error::{Stream, WorkerError, WorkerOp, panic_to_io};
use crate::input::Producer;
use crate::shared::{Shared, StdinSlot};

/// Chunks in flight between the readers and the delivery thread.
pub(crate) const CHANNEL_CHUNKS: usize = 4;

/// How a reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderEnd {
    /// End-of-file: every byte was read.
    Eof,
    /// The child had exited and the pipe stayed open, silent, for a grace
    /// period (a grandchild holds it): the reader gave up and closed it.
    CutOff,
    /// Reading failed, or the delivery side is gone.
    Failed,
}

pub(crate) struct Chunk {
    stream: Stream,
    data: Vec<u8>,
}

/// Buffers returned by the delivery thread for the readers to reuse, so a
/// long stream allocates a handful of buffers, not one per chunk.
#[derive(Default)]
pub(crate) struct BufferPool(Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    fn take(&self, capacity: usize) -> Vec<u8> {
        let recycled = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        recycled.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 2 * CHANNEL_CHUNKS + 2 {
            pool.push(buf);
        }
    }
}

pub(crate) struct ReaderSetup {
    pub shared: Arc<Shared>,
    pub stream: Stream,
    pub pipe: pipe::Receiver,
    pub buffer_size: usize,
    pub grace: Duration,
    pub exit_seen: watch::Receiver<Option<Instant>>,
    pub chunks: mpsc::Sender<Chunk>,
    pub pool: Arc<BufferPool>,
}

/// Reads one stream to end-of-file, or until the cut-off: a grace period
/// after the child's exit with the pipe still open and silent.
///
/// # Cancel safety
///
/// Dropping it (abort) closes the pipe; the child then gets EPIPE/SIGPIPE.
pub(crate) async fn read_stream(setup: ReaderSetup) -> ReaderEnd {
    let ReaderSetup {
        shared,
        stream,
        mut pipe,
        buffer_size,
        grace,
        mut exit_seen,
        chunks,
        pool,
    } = setup;
    loop {
        let mut buf = pool.take(buffer_size);
        let cutoff = exit_seen.borrow().map(|at| at + grace);
        let read = tokio::select! {
            biased;
            r = read_chunk(&mut pipe, &mut buf, buffer_size) => r,
            changed = exit_seen.changed(), if cutoff.is_none() => {
                if changed.is_err() {
                    // The coordinator is gone without telling: read on.
                    std::future::pending::<()>().await;
                }
                pool.give(buf);
                continue;
            }
            () = sleep_until(cutoff.unwrap_or_else(Instant::now).into()), if cutoff.is_some() => {
                return ReaderEnd::CutOff;
            }
        };
        match read {
            Ok(0) => return ReaderEnd::Eof,
            Ok(_) => {
                if chunks.send(Chunk { stream, data: buf }).await.is_err() {
                    return ReaderEnd::Failed;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => pool.give(buf),
            Err(e) => {
                shared.record_worker_error(WorkerError::new(
                    &shared.program,
                    stream,
                    WorkerOp::Read,
                    e,
                ));
                return ReaderEnd::Failed;
            }
        }
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

/// Runs the consumers on the delivery thread until both readers are done.
pub(crate) fn deliver<O, E>(
    shared: &Shared,
    mut chunks: mpsc::Receiver<Chunk>,
    mut on_stdout: O,
    mut on_stderr: E,
    readers: [Option<AbortHandle>; 2],
    pool: &BufferPool,
    done: oneshot::Sender<()>,
) where
    O: FnMut(&[u8]) -> io::Result<()>,
    E: FnMut(&[u8]) -> io::Result<()>,
{
    let mut failed = [false, false];
    while let Some(chunk) = chunks.blocking_recv() {
        let i = usize::from(chunk.stream == Stream::Stderr);
        if !failed[i] {
            let consumer: &mut dyn FnMut(&[u8]) -> io::Result<()> = if i == 0 {
                &mut on_stdout
            } else {
                &mut on_stderr
            };
            let outcome = match catch_unwind(AssertUnwindSafe(|| consumer(&chunk.data))) {
                Ok(r) => r,
                Err(panic) => Err(panic_to_io(panic)),
            };
            if let Err(e) = outcome {
                // Stop reading this stream: its pipe closes and the child
                // sees EPIPE/SIGPIPE, as with `| head`.
                failed[i] = true;
                if let Some(reader) = &readers[i] {
                    reader.abort();
                }
                shared.record_worker_error(WorkerError::new(
                    &shared.program,
                    chunk.stream,
                    WorkerOp::Consume,
                    e,
                ));
            }
        }
        pool.give(chunk.data);
    }
    let _ = done.send(());
}

/// From the producer thread to the writer task.
pub(crate) enum ProducerMsg {
    Data(Vec<u8>),
    Failed(io::Error),
}

/// Writes what the producer hands over into the child's stdin; ends on the
/// producer's end, a close request (after the write in progress), or the
/// child closing its stdin (EPIPE, which is not a failure).
pub(crate) async fn write_stdin(
    shared: Arc<Shared>,
    mut chunks: mpsc::Receiver<ProducerMsg>,
    written: Option<std::sync::mpsc::Sender<()>>,
    close_requested: Arc<Notify>,
) {
    loop {
        let msg = tokio::select! {
            biased;
            () = close_requested.notified() => break,
            msg = chunks.recv() => msg,
        };
        match msg {
            None => break,
            Some(ProducerMsg::Failed(e)) => {
                shared.record_worker_error(WorkerError::new(
                    &shared.program,
                    Stream::Stdin,
                    WorkerOp::Produce,
                    e,
                ));
                break;
            }
            Some(ProducerMsg::Data(data)) => {
                match write_all(&shared.stdin, &data).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                    Err(e) => {
                        shared.record_worker_error(WorkerError::new(
                            &shared.program,
                            Stream::Stdin,
                            WorkerOp::Write,
                            e,
                        ));
                        break;
                    }
                }
                if let Some(written) = &written {
                    let _ = written.send(());
                }
            }
        }
    }
    shared.stdin.close();
}

pub(crate) async fn write_all(slot: &StdinSlot, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| slot.poll_write(cx, data)).await?;
        data = &data[n..];
    }
    Ok(())
}

/// The producer thread: asks for a chunk, hands it to the writer, and (with
/// `flush_stdin`) waits until it is written before asking again.
pub(crate) fn produce(
    mut producer: Producer,
    chunks: mpsc::Sender<ProducerMsg>,
    written: Option<std::sync::mpsc::Receiver<()>>,
) {
    loop {
        if chunks.is_closed() {
            return;
        }
        let msg = match catch_unwind(AssertUnwindSafe(&mut producer)) {
            Ok(Ok(Some(data))) => ProducerMsg::Data(data),
            Ok(Ok(None)) => return,
            Ok(Err(e)) => ProducerMsg::Failed(e),
            Err(panic) => ProducerMsg::Failed(panic_to_io(panic)),
        };
        let last = matches!(msg, ProducerMsg::Failed(_));
        if chunks.blocking_send(msg).is_err() || last {
            return;
        }
        if let Some(written) = &written {
            if written.recv().is_err() {
                return;
            }
        }
    }
}
