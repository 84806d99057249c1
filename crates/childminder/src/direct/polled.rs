//! The one-line blocking calls driven by `poll(2)` on the caller's thread:
//! the pidfd and the output pipes in one `poll`, read and reaped right
//! there, with no runtime, no task and no shared state. It applies where
//! [`super::by_readiness`] says so; the rules of what is observed are in
//! [`super::observe`], the child's teardown in [`super::child`].
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
use crate::coordinator::engine_answer;
use crate::error::Error;
use crate::result::SupervisionResult;
use crate::sys;

use super::child::{Child, Spawn, io_error, spawn_direct};
use super::deadline::Deadline;
use super::observe::{Next, Observation};

/// Runs `cmd` with its streams set as `stdio`, appending the piped output
/// to `stdout` and `stderr`. `None` when this path does not apply.
pub(super) fn run(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Option<Result<SupervisionResult, Error>> {
    super::by_readiness(cmd).then(|| supervise(cmd, stdio, stdout, stderr))
}

fn supervise(
    cmd: &Command,
    stdio: &[Stdio; 3],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> Result<SupervisionResult, Error> {
    let Spawn {
        pid,
        pidfd,
        outputs: [out_pipe, err_pipe],
        started,
    } = spawn_direct(cmd, stdio)?;
    let mut child = Child::new(pid, pidfd, cmd, started);
    let program = cmd.program_lossy();
    let mut observation = Observation::new(
        [
            out_pipe.map(|fd| (fd, stdout)),
            err_pipe.map(|fd| (fd, stderr)),
        ],
        cmd.buffer_size,
        &program,
    );
    let mut deadline = Deadline::new(cmd, started);
    if let Err(source) = observe(
        &mut child,
        &mut observation,
        &mut deadline,
        cmd.grace_period,
    ) {
        // Dropping `child` kills the group and the child, and reaps.
        return Err(Error::Io {
            program,
            context: "waiting for the child",
            source,
        });
    }
    let mut result = child.publish(&mut observation, &deadline);
    drop(observation);
    if result.exit.is_none() {
        // Given up on: as on the runtime path, the engine sweeps the group
        // and reaps the child whenever it exits; the call returns after
        // the sweep.
        let swept = child
            .hand_over(cmd, result.kill_sent_after.is_some())
            .and_then(|sweep_over| engine_answer(sweep_over.blocking_recv()));
        if child.handed_over(swept) {
            return Ok(result);
        }
        if let Err(e) = child.wait_through_pidfd() {
            tracing::warn!(program = %result.program, pid, error = %e, "reaping the child failed");
        }
    }
    if child.reaped_with_others_left() {
        let swept = super::take_runtime()
            .map_err(|e| {
                io_error(
                    &result.program,
                    "starting the runtime of a one-line call",
                    e,
                )
            })
            .and_then(|runtime| {
                let swept = runtime.block_on(child.sweep(cmd, &result));
                super::give_back(runtime);
                swept
            });
        if let Err(e) = swept {
            // Out of fds or memory for the runtime: no grace period then,
            // but nothing may outlive the call either.
            tracing::warn!(program = %result.program, pid, error = %e, "cannot sweep the rest of the group with a grace period: killing it");
            child.kill_group().for_each(std::thread::sleep);
            result.supervisor_error = Some(std::sync::Arc::new(e));
        }
    }
    child.settled = true;
    Ok(result)
}

/// Reads the outputs and waits for the exit on `poll(2)`, escalating at the
/// deadline, until both are done or the output is cut off (see
/// [`Observation`]); an escalation that gives up ends the wait for the
/// exit, not the reading.
fn observe(
    child: &mut Child<OwnedFd>,
    observation: &mut Observation<'_, OwnedFd>,
    deadline: &mut Deadline,
    grace: Duration,
) -> io::Result<()> {
    loop {
        let now = Instant::now();
        if !observation.has_ended() && deadline.run_due(now, child) {
            // The escalation's last check.
            match child.reap()? {
                Some(exit) => observation.exited(exit),
                None => {
                    child.gave_up = true;
                    observation.gave_up(now);
                }
            }
        }
        // Checked on every turn, not only when the pipes are silent: a
        // grandchild that keeps writing must not hold the call forever.
        let cut_off_at = observation.cut_off_due_from().map(|at| at + grace);
        if cut_off_at.is_some_and(|at| now >= at) {
            observation.cut_off_now();
        }
        let watch_exit = match observation.next() {
            Next::Done => return Ok(()),
            Next::Exit if deadline.wake_at().is_none() => {
                // Nothing else to wait for: one blocking wait, as std's.
                observation.exited(child.wait()?);
                continue;
            }
            Next::Exit => true,
            Next::Ready { exit } => exit,
        };
        let wake_at = [
            observation.cut_off_due_from().map(|at| at + grace),
            deadline.wake_at().filter(|_| watch_exit),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
        let pipes = observation.pipes().map(|p| p.map(AsFd::as_fd));
        let ready = sys::poll_readable(watch_exit.then(|| child.pidfd.as_fd()), pipes, timeout)?;
        for (index, readable) in ready.outputs.into_iter().enumerate() {
            if readable {
                observation.read(index);
            }
        }
        if ready.pidfd {
            if let Some(exit) = child.reap()? {
                observation.exited(exit);
            }
        }
    }
}
