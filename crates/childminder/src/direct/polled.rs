//! The one-line blocking calls driven by `poll(2)` on the caller's thread:
//! the pidfd and the output pipes in one `poll`, read and reaped right
//! there, with no runtime, no task and no shared state.
//!
//! It applies where the supervision of a one-line call has nothing to
//! time: no deadline (so no escalation can start: no user code runs to ask
//! for one) and no cgroup, subreaper or terminal to manage; and where the
//! kernel signals a group through its pidfd (Linux 6.9+), so the child can
//! be reaped the moment it exits and its group still reached afterwards.
//! Everything else falls back to the runtime path in the parent module.
//! What it keeps of that path's guarantees, with the same code where there
//! is code to share (spawn, the group sweep): every byte, the output
//! cut-off a grace period after the exit, the sweep of what is left of the
//! group, nothing leaked on any path.
//!
//! Why it exists: measured on a 2-core VM, the child and the caller run on
//! one CPU in turn while the child starts, so every microsecond the caller
//! spends is a microsecond of the call; the runtime path spent about 30 µs
//! more per call than std's `output()` (1.10x), this one spends about
//! what std does.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::command::{Command, Stdio};
use crate::contain::Containment;
use crate::contain::subreaper;
use crate::coordinator::{GROUP_POLL_MAX, GROUP_POLL_MIN, Policy, sweep_remaining};
use crate::error::{Error, Stream, WorkerError, WorkerOp};
use crate::result::{ExitStatus, ResourceUsage, SupervisionResult, Termination};
use crate::shared::Shared;
use crate::signal::Signal;
use crate::spawn::{Spawned, spawn};
use crate::sys;
use crate::target::Target;

/// Whether `cmd` can be run here (see the module documentation): decided
/// before anything is spawned.
fn applies(cmd: &Command) -> bool {
    let features = sys::features();
    features.pidfd
        && features.pidfd_group_signal
        && cmd.deadline.is_none()
        && cmd.cgroup.is_none()
        && !cmd.subreaper
        && !cmd.terminal_foreground
}

/// Runs `cmd` with its streams set as `stdio`, appending the piped output
/// to `stdout` and `stderr`. `None` when this path does not apply.
pub(super) fn run(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Option<Result<SupervisionResult, Error>> {
    applies(cmd).then(|| supervise(cmd, stdio, stdout, stderr))
}

fn supervise(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Result<SupervisionResult, Error> {
    let Spawned {
        pid,
        pidfd,
        stdin,
        stdout: out_pipe,
        stderr: err_pipe,
        started,
        ..
    } = spawn(cmd, stdio)?;
    // What `stdin::empty()` does (a one-line call leaves none piped).
    drop(stdin);
    let mut child = Child {
        pid,
        pidfd: pidfd.expect("applies() checked for pidfd support"),
        group: cmd.process_group,
        reaped: false,
        settled: false,
    };
    let program = cmd.program_lossy();
    let mut outputs = [
        out_pipe.map(|fd| Output::new(fd, Stream::Stdout, stdout)),
        err_pipe.map(|fd| Output::new(fd, Stream::Stderr, stderr)),
    ];
    let mut worker_errors = Vec::new();
    let observed = observe(
        &mut child,
        &mut outputs,
        cmd.buffer_size,
        cmd.grace_period,
        &program,
        &mut worker_errors,
    );
    let (status, usage, exited_at, cut_off) = match observed {
        Ok(seen) => seen,
        Err(source) => {
            // Dropping `child` kills the group and the child, and reaps.
            return Err(Error::Io {
                program,
                context: "waiting for the child",
                source,
            });
        }
    };
    drop(outputs);
    if cut_off {
        tracing::warn!(
            program = %program,
            pid,
            "output still open a grace period after the child's exit: closing the pipes and killing the group"
        );
        let _ = child.signal_escalation(Signal::KILL);
    }
    tracing::debug!(program = %program, pid, %status, "child exited");
    let mut result = SupervisionResult {
        program,
        pid,
        exit: Some(status),
        termination: Termination::classify(false, false, true),
        escalation_cause: None,
        term_sent_after: None,
        kill_sent_after: None,
        runtime: exited_at - started,
        supervisor_error: None,
        worker_errors,
        output_cut_off: cut_off,
        used_pidfd: true,
        containment: Containment::default(),
        resource_usage: Some(usage),
    };
    tracing::debug!(
        program = %result.program,
        pid,
        exit = ?result.exit,
        termination = result.termination.as_str(),
        runtime_ms = result.runtime.as_millis() as u64,
        "result published"
    );
    if child.group_has_others() {
        if let Err(e) = sweep(cmd, &child, &result, started) {
            // Out of fds or memory for the runtime: no grace period then,
            // but nothing may outlive the call either.
            tracing::warn!(program = %result.program, pid, error = %e, "cannot sweep the rest of the group with a grace period: killing it");
            child.kill_group_and_wait();
            result.supervisor_error = Some(std::sync::Arc::new(e));
        }
    }
    child.settled = true;
    Ok(result)
}

/// Reads the outputs and waits for the exit, until both are done or the
/// output is cut off: a grace period after the exit, a pipe something
/// still holds open is closed (one whose writers have all gone is read to
/// its end: every byte written is delivered, however slowly it is read).
/// Returns the status, the usage, when the exit was seen, and whether the
/// output was cut off.
fn observe(
    child: &mut Child,
    outputs: &mut [Option<Output<'_>>; 2],
    buffer_size: usize,
    grace: Duration,
    program: &str,
    worker_errors: &mut Vec<WorkerError>,
) -> io::Result<(ExitStatus, ResourceUsage, Instant, bool)> {
    let mut exited: Option<(ExitStatus, ResourceUsage, Instant)> = None;
    // Past the cut-off, with what is left open only pipes whose writers
    // have all gone: read to their end, with no deadline.
    let mut past_cut_off = false;
    let mut cut_off = false;
    loop {
        if let Some((_, _, at)) = exited {
            // Checked on every turn, not only when the pipes are silent: a
            // grandchild that keeps writing must not hold the call forever.
            if !past_cut_off && Instant::now() >= at + grace {
                past_cut_off = true;
                for slot in outputs.iter_mut() {
                    if slot
                        .as_ref()
                        .is_some_and(|o| !sys::writers_gone(o.pipe.as_fd()))
                    {
                        *slot = None;
                        cut_off = true;
                    }
                }
            }
        }
        let open = outputs.iter().filter(|o| o.is_some()).count();
        if let Some((status, usage, at)) = exited {
            if open == 0 {
                return Ok((status, usage, at, cut_off));
            }
        }
        if exited.is_none() && open == 0 {
            // Nothing else to wait for: one blocking wait, as std's.
            let (status, usage) = child.wait()?;
            exited = Some((status, usage, Instant::now()));
            continue;
        }
        let timeout = exited
            .filter(|_| !past_cut_off)
            .map(|(_, _, at)| (at + grace).saturating_duration_since(Instant::now()));
        let ready = sys::poll_readable(
            exited.is_none().then(|| child.pidfd.as_fd()),
            outputs
                .each_ref()
                .map(|o| o.as_ref().map(|o| o.pipe.as_fd())),
            timeout,
        )?;
        for (slot, readable) in outputs.iter_mut().zip(ready.outputs) {
            if !readable {
                continue;
            }
            let Some(output) = slot else { continue };
            match output.drain(buffer_size) {
                Ok(Drained::Open) => {}
                Ok(Drained::Eof) => *slot = None,
                Err((op, e)) => {
                    // Closing the pipe: the child sees EPIPE or SIGPIPE on
                    // its next write, as with `| head`.
                    worker_errors.push(WorkerError::new(program, output.stream, op, e));
                    *slot = None;
                }
            }
        }
        if ready.pidfd {
            if let Some((status, usage)) = child.reap()? {
                exited = Some((status, usage, Instant::now()));
            }
        }
    }
}

/// Hands what is left of the child's group to the runtime path's sweep
/// (TERM, a grace period, KILL), on this thread's kept runtime: it is the
/// rare case, and the sweep's logic stays in one place.
fn sweep(
    cmd: &Command,
    child: &Child,
    result: &SupervisionResult,
    started: Instant,
) -> Result<(), Error> {
    let io_error = |context, source| Error::Io {
        program: result.program.clone(),
        context,
        source,
    };
    // The runtime's copy; ours is closed when `child` goes.
    let pidfd = child
        .pidfd
        .try_clone()
        .map_err(|e| io_error("registering the child with the runtime", e))?;
    let runtime = super::take_runtime()
        .map_err(|e| io_error("starting the runtime of a one-line call", e))?;
    let policy = Policy {
        grace: cmd.grace_period,
        deadline: None,
        term_signal: cmd.term_signal,
    };
    let outcome = runtime.block_on(async {
        let exit = result
            .exit
            .expect("the polled path publishes only an observed exit");
        let target = Target::reaped(child.pid, pidfd, child.group, exit, result.resource_usage)?;
        let shared = Shared::new(result.program.clone(), target, started, None);
        sweep_remaining(&shared, policy).await;
        shared.target.close();
        Ok::<(), io::Error>(())
    });
    super::give_back(runtime);
    outcome.map_err(|e| io_error("registering the child with the runtime", e))
}

/// The child, from its spawn until it is reaped and its group swept.
/// Dropped before that (an error, a panic), it kills the group and the
/// child and reaps: nothing outlives the call.
struct Child {
    pid: u32,
    pidfd: OwnedFd,
    group: bool,
    reaped: bool,
    /// Reaped and nothing left of the group: nothing for `Drop` to do.
    settled: bool,
}

impl Child {
    /// Reaps the child if it has exited, with what the kernel accounted
    /// to it. Reaping at once is safe: the pidfd keeps naming the group
    /// (Linux 6.9+), so no signal can reach a recycled pid or group.
    fn reap(&mut self) -> io::Result<Option<(ExitStatus, ResourceUsage)>> {
        let exited = sys::pidfd_try_wait(self.pidfd.as_fd(), true)?;
        if exited.is_some() {
            self.mark_reaped();
        }
        Ok(exited)
    }

    fn mark_reaped(&mut self) {
        self.reaped = true;
        // Its pid may be anyone's now, an escapee's included.
        subreaper::unregister(self.pid);
    }

    /// Blocks until the child exits, and reaps it. By pid, as std waits: it
    /// is our own unreaped child, so the pid is still its own (the pidfd is
    /// non-blocking, for the runtime path).
    fn wait(&mut self) -> io::Result<(ExitStatus, ResourceUsage)> {
        let exited = sys::pid_wait_blocking(self.pid)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
        self.mark_reaped();
        Ok(exited)
    }

    /// Signals the group (or the child alone, without one).
    fn signal_escalation(&self, signal: Signal) -> io::Result<()> {
        if self.group {
            sys::pidfd_signal_group(self.pidfd.as_fd(), signal.as_raw())
        } else {
            sys::pidfd_signal(self.pidfd.as_fd(), signal)
        }
    }

    /// After the reap: whether anything of the group, dead or alive, still
    /// answers (a dead member not yet reaped by its parent counts; the
    /// sweep tells them apart).
    fn group_has_others(&self) -> bool {
        self.group && sys::pidfd_signal_group(self.pidfd.as_fd(), 0).is_ok()
    }

    /// SIGKILL to the group (through the pidfd, so no fd or runtime is
    /// needed), then a wait of at most a second for no live member to be
    /// left (dead ones not yet reaped still answer the probe; `/proc` tells
    /// them apart, or says "maybe" when it cannot be read). No event says
    /// "the group is empty", so it is checked on a backing-off interval, as
    /// the sweep's.
    fn kill_group_and_wait(&self) {
        let _ = self.signal_escalation(Signal::KILL);
        let until = Instant::now() + Duration::from_secs(1);
        let mut pause = GROUP_POLL_MIN;
        let leader = self.pid as i32;
        while self.group_has_others()
            && sys::group_has_members_besides(leader, leader)
            && Instant::now() < until
        {
            std::thread::sleep(pause);
            pause = (pause * 2).min(GROUP_POLL_MAX);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // After the reap too: the pidfd still names the group.
        let _ = self.signal_escalation(Signal::KILL);
        if !self.reaped {
            let _ = sys::pidfd_signal(self.pidfd.as_fd(), Signal::KILL);
            let _ = sys::wait_readable(self.pidfd.as_fd(), Duration::from_secs(1));
            let _ = self.reap();
        }
    }
}

/// One output pipe and the buffer it is appended to.
struct Output<'a> {
    pipe: OwnedFd,
    stream: Stream,
    into: &'a mut Vec<u8>,
}

enum Drained {
    /// The pipe is empty for now.
    Open,
    /// End-of-file: every byte was read.
    Eof,
}

impl<'a> Output<'a> {
    fn new(pipe: OwnedFd, stream: Stream, into: &'a mut Vec<u8>) -> Output<'a> {
        Output { pipe, stream, into }
    }

    /// Reads what the pipe holds now (a few buffers at most, so the cut-off
    /// is checked between turns), appending it.
    fn drain(&mut self, buffer_size: usize) -> Result<Drained, (WorkerOp, io::Error)> {
        const READS_PER_TURN: usize = 16;
        for _ in 0..READS_PER_TURN {
            match sys::read_appending(self.pipe.as_fd(), self.into, buffer_size) {
                Ok(0) => return Ok(Drained::Eof),
                Ok(_) => {}
                // Non-blocking reads never sleep, so no signal interrupts
                // them (EINTR cannot happen here).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Open),
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    return Err((WorkerOp::Consume, e));
                }
                Err(e) => return Err((WorkerOp::Read, e)),
            }
        }
        Ok(Drained::Open)
    }
}
