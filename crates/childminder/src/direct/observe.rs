//! What a one-line call on the caller's thread watches of its child: the
//! output pipes read to their end and the child's end (its exit, or the
//! escalation giving up on it), until both are done or the output is cut
//! off a grace period after that end. It waits for nothing
//! itself: a driver waits for readiness (a `poll(2)` loop in
//! [`super::polled`], the caller's task in [`super::awaited`]) and reports
//! it here, so the rules (every byte; the cut-off, once, of only the pipes a
//! writer still holds) are written once for both.

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use crate::error::{Stream, WorkerError, WorkerOp};
use crate::result::{ExitStatus, ResourceUsage};
use crate::sys;

/// The child's exit, as reaped.
#[derive(Clone, Copy, Debug)]
pub(super) struct Exit {
    pub status: ExitStatus,
    pub usage: ResourceUsage,
    /// When the exit was seen: the grace period for the output starts here.
    pub at: Instant,
}

/// How the child's end was seen.
#[derive(Clone, Copy, Debug)]
enum End {
    /// Reaped.
    Exited(Exit),
    /// The escalation gave up at this instant: no signal made the child
    /// exit within a second of SIGKILL (stuck in the kernel), and it was
    /// not reaped.
    GaveUp(Instant),
}

impl End {
    fn at(self) -> Instant {
        match self {
            End::Exited(exit) => exit.at,
            End::GaveUp(at) => at,
        }
    }
}

/// What the driver waits for next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Everything observed: the child's end and the output, every byte of
    /// it or cut off ([`Observation::cut_off`] says which).
    Done,
    /// The exit only: no output pipe is left open.
    Exit,
    /// Readiness of the open output pipes, and of the pidfd when `exit`
    /// (the child's end is still ahead); until the cut-off too, when
    /// [`Observation::cut_off_due_from`] is `Some`.
    Ready { exit: bool },
}

/// How a read of a ready pipe ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Drained {
    /// The pipe is empty for now: its readiness is used up.
    Empty,
    /// A turn's worth was read and there may be more: still ready (reading
    /// in turns lets the driver check the cut-off while a writer floods).
    More,
    /// End-of-file, a read error, or a buffer that cannot grow: the pipe is
    /// closed (an error is recorded as a worker error).
    Closed,
}

/// The child's exit and output pipes as observed so far.
pub(super) struct Observation<'a, P> {
    outputs: [Option<Output<'a, P>>; 2],
    end: Option<End>,
    /// The cut-off has happened: what is still open are pipes whose
    /// writers have all gone, read to their end with no deadline.
    past_cut_off: bool,
    cut_off: bool,
    buffer_size: usize,
    program: &'a str,
    worker_errors: Vec<WorkerError>,
}

impl<'a, P: AsFd> Observation<'a, P> {
    /// `outputs`: stdout's and stderr's read ends (when piped), each with
    /// the buffer it is appended to.
    pub(super) fn new(
        outputs: [Option<(P, &'a mut Vec<u8>)>; 2],
        buffer_size: usize,
        program: &'a str,
    ) -> Self {
        let [out, err] = outputs;
        Observation {
            outputs: [
                out.map(|(pipe, into)| Output::new(pipe, Stream::Stdout, into)),
                err.map(|(pipe, into)| Output::new(pipe, Stream::Stderr, into)),
            ],
            end: None,
            past_cut_off: false,
            cut_off: false,
            buffer_size,
            program,
            worker_errors: Vec::new(),
        }
    }

    /// What to wait for next.
    pub(super) fn next(&self) -> Next {
        let open = self.outputs.iter().any(Option::is_some);
        match (self.end, open) {
            (Some(_), false) => Next::Done,
            (None, false) => Next::Exit,
            (end, true) => Next::Ready {
                exit: end.is_none(),
            },
        }
    }

    /// The child was reaped.
    pub(super) fn exited(&mut self, exit: Exit) {
        self.end = Some(End::Exited(exit));
    }

    /// The escalation gave up on the child at `at`, unreaped: from then on
    /// its output is read as after an exit (to its end, or cut off a grace
    /// period later), as the runtime path's readers do.
    pub(super) fn gave_up(&mut self, at: Instant) {
        self.end = Some(End::GaveUp(at));
    }

    /// The exit, once reaped.
    pub(super) fn exit(&self) -> Option<Exit> {
        match self.end {
            Some(End::Exited(exit)) => Some(exit),
            _ => None,
        }
    }

    /// Whether the child's end was seen: its exit, or the escalation
    /// giving up on it.
    pub(super) fn has_ended(&self) -> bool {
        self.end.is_some()
    }

    /// When the grace period for the output started (the child's end),
    /// while the cut-off is still ahead and something is left to cut off.
    pub(super) fn cut_off_due_from(&self) -> Option<Instant> {
        let open = self.outputs.iter().any(Option::is_some);
        self.end.filter(|_| open && !self.past_cut_off).map(End::at)
    }

    /// The grace period after the child's end is over: closes each pipe a
    /// writer still holds open (a grandchild that inherited it, say). A
    /// pipe whose writers have all gone keeps being read to its end: what
    /// is in it is all there will be, and every byte of it is delivered.
    /// Once only.
    pub(super) fn cut_off_now(&mut self) {
        if self.end.is_none() || self.past_cut_off {
            return;
        }
        self.past_cut_off = true;
        for slot in self.outputs.iter_mut() {
            let Some(output) = slot.as_mut() else {
                continue;
            };
            if sys::writers_gone(output.pipe.as_fd()) {
                continue;
            }
            // What the child wrote before its end may still be in the
            // pipe (with a zero grace period, all of it): taken first.
            let taken = crate::workers::read_what_the_pipe_holds(
                output.pipe.as_fd(),
                output.into,
                self.buffer_size,
                |_| Ok(()),
            );
            if let Err((op, e)) = taken {
                self.worker_errors
                    .push(WorkerError::new(self.program, output.stream, op, e));
            }
            *slot = None;
            self.cut_off = true;
        }
    }

    /// When the child's end was seen (its exit, or the escalation giving
    /// up), once it was.
    pub(super) fn ended_at(&self) -> Option<Instant> {
        self.end.map(End::at)
    }

    /// Whether the output was cut off.
    pub(super) fn cut_off(&self) -> bool {
        self.cut_off
    }

    /// The open output pipes, stdout's then stderr's.
    pub(super) fn pipes(&self) -> [Option<&P>; 2] {
        self.outputs.each_ref().map(|o| o.as_ref().map(|o| &o.pipe))
    }

    /// Reads what output `index` (0: stdout, 1: stderr) holds now, said to
    /// be ready by the driver. A read error closes the pipe (the child sees
    /// EPIPE or SIGPIPE on its next write, as with `| head`) and is
    /// recorded.
    pub(super) fn read(&mut self, index: usize) -> Drained {
        let Some(output) = &mut self.outputs[index] else {
            return Drained::Closed;
        };
        match output.drain(self.buffer_size) {
            Ok(drained) => {
                if drained == Drained::Closed {
                    self.outputs[index] = None;
                }
                drained
            }
            Err((op, e)) => {
                self.worker_errors
                    .push(WorkerError::new(self.program, output.stream, op, e));
                self.outputs[index] = None;
                Drained::Closed
            }
        }
    }

    /// The read errors recorded.
    pub(super) fn take_worker_errors(&mut self) -> Vec<WorkerError> {
        std::mem::take(&mut self.worker_errors)
    }
}

/// One output pipe and the buffer it is appended to.
struct Output<'a, P> {
    pipe: P,
    stream: Stream,
    into: &'a mut Vec<u8>,
}

impl<'a, P: AsFd> Output<'a, P> {
    fn new(pipe: P, stream: Stream, into: &'a mut Vec<u8>) -> Output<'a, P> {
        Output { pipe, stream, into }
    }

    /// Reads what the pipe holds now, a few buffers at most, appending it.
    fn drain(&mut self, buffer_size: usize) -> Result<Drained, (WorkerOp, io::Error)> {
        const READS_PER_TURN: usize = 16;
        for _ in 0..READS_PER_TURN {
            match sys::read_appending(self.pipe.as_fd(), self.into, buffer_size) {
                Ok(0) => return Ok(Drained::Closed),
                Ok(_) => {}
                // Non-blocking reads never sleep, so no signal interrupts
                // them (EINTR cannot happen here).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    return Err((WorkerOp::Consume, e));
                }
                Err(e) => return Err((WorkerOp::Read, e)),
            }
        }
        Ok(Drained::More)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    use super::*;

    /// A non-blocking pipe, as the spawn makes stdout's: (read, write).
    fn pipe() -> (OwnedFd, OwnedFd) {
        let (read, write) = sys::pipe().unwrap();
        sys::set_new_pipe_nonblocking(read.as_fd()).unwrap();
        (read, write)
    }

    fn write(fd: &OwnedFd, bytes: &[u8]) {
        use std::io::Write;
        std::fs::File::from(fd.try_clone().unwrap())
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn before_the_childs_end_the_exit_is_watched_and_nothing_is_cut_off() {
        let (read, write_end) = pipe();
        let mut out = Vec::new();
        let mut observation = Observation::new([Some((read, &mut out)), None], 4096, "test");
        assert_eq!(observation.next(), Next::Ready { exit: true });
        assert!(!observation.has_ended());
        assert_eq!(observation.cut_off_due_from(), None);
        assert_eq!(observation.ended_at(), None);
        observation.cut_off_now();
        assert!(!observation.cut_off());
        assert!(observation.pipes()[0].is_some());
        drop(write_end);
    }

    #[test]
    fn after_a_give_up_the_output_is_read_to_its_end_without_the_exit() {
        let (read, write_end) = pipe();
        let mut out = Vec::new();
        let at = Instant::now();
        {
            let mut observation = Observation::new([Some((read, &mut out)), None], 4096, "test");
            write(&write_end, b"last words");
            drop(write_end);
            observation.gave_up(at);
            assert!(observation.has_ended());
            assert!(observation.exit().is_none());
            assert_eq!(observation.ended_at(), Some(at));
            // The pipe is read on; the pidfd is not waited on any more.
            assert_eq!(observation.next(), Next::Ready { exit: false });
            assert_eq!(observation.read(0), Drained::Closed);
            assert_eq!(observation.next(), Next::Done);
            assert!(!observation.cut_off());
        }
        assert_eq!(out, b"last words");
    }

    #[test]
    fn a_give_up_starts_the_grace_period_of_the_cut_off() {
        let (read, write_end) = pipe();
        let (read_gone, write_gone) = pipe();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let at = Instant::now() - Duration::from_secs(1);
        let mut observation = Observation::new(
            [Some((read, &mut out)), Some((read_gone, &mut err))],
            4096,
            "test",
        );
        write(&write_gone, b"all there is");
        drop(write_gone);
        observation.gave_up(at);
        assert_eq!(observation.cut_off_due_from(), Some(at));
        observation.cut_off_now();
        // The pipe a writer holds is cut off; the one whose writers have
        // gone is read to its end.
        assert!(observation.cut_off());
        assert!(observation.pipes()[0].is_none());
        assert!(observation.pipes()[1].is_some());
        assert_eq!(observation.cut_off_due_from(), None);
        assert_eq!(observation.read(1), Drained::Closed);
        assert_eq!(observation.next(), Next::Done);
        drop(observation);
        assert_eq!(err, b"all there is");
        drop(write_end);
    }

    #[test]
    fn the_cut_off_takes_what_the_held_pipe_holds_before_closing_it() {
        let (read, write_end) = pipe();
        let mut out = Vec::new();
        {
            let mut observation = Observation::new([Some((read, &mut out)), None], 512, "test");
            // The child's last words, unread when its end is seen; a
            // grandchild still holds the write end.
            write(&write_end, &[7u8; 60_000]);
            observation.gave_up(Instant::now());
            observation.cut_off_now();
            assert!(observation.cut_off());
            assert!(observation.pipes()[0].is_none());
            assert!(observation.take_worker_errors().is_empty());
        }
        assert_eq!(out.len(), 60_000);
        // At most the pipe's capacity is taken: a writer that escaped the
        // kill cannot keep the cut-off reading.
        drop(write_end);
    }

    #[test]
    fn the_cut_off_reads_a_flooded_pipe_no_further_than_its_capacity() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (read, write_end) = pipe();
        let capacity = sys::pipe_capacity(read.as_fd());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // A writer that escaped the group's kill and never stops.
        let flood = std::thread::spawn({
            let stop = stop.clone();
            move || {
                use std::io::Write;
                let mut pipe = std::fs::File::from(write_end);
                while !stop.load(Ordering::Relaxed) {
                    let _ = pipe.write(&[1u8; 4096]);
                }
            }
        });
        let mut out = Vec::new();
        {
            let mut observation = Observation::new([Some((read, &mut out)), None], 512, "test");
            observation.gave_up(Instant::now());
            observation.cut_off_now();
            assert!(observation.cut_off());
        }
        stop.store(true, Ordering::Relaxed);
        flood.join().unwrap();
        // One read may take more than the rest of the capacity (the buffer
        // grows ahead), never a second one.
        assert!(out.len() < 3 * capacity, "{} read", out.len());
    }

    #[test]
    fn an_exit_ends_the_observation_once_the_pipes_are_read() {
        let mut observation: Observation<'_, OwnedFd> = Observation::new([None, None], 4096, "t");
        assert_eq!(observation.next(), Next::Exit);
        let at = Instant::now();
        observation.exited(Exit {
            status: ExitStatus::Exited(0),
            usage: ResourceUsage::default(),
            at,
        });
        assert_eq!(observation.next(), Next::Done);
        assert_eq!(observation.ended_at(), Some(at));
        assert!(observation.exit().is_some());
    }
}
