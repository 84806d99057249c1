//! The async one-line calls (`output_async`, `status_async`) driven by
//! readiness in the caller's own task: the pidfd and the output pipes
//! registered with the caller's runtime, read and reaped right there, with
//! no spawned task, no channel and no shared state: what tokio's own
//! `output()` does, plus the guarantees. It applies where
//! [`super::by_readiness`] says so; the rules of what is observed are in
//! [`super::observe`], the child's teardown in [`super::child`].

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

use crate::command::{Command, Stdio};
use crate::coordinator::engine_answer;
use crate::error::Error;
use crate::escalation::KILL_WAIT;
use crate::result::SupervisionResult;
use crate::sys;

use super::child::{Child, REGISTERING, Spawn, io_error, spawn_direct};
use super::deadline::Deadline;
use super::observe::{Drained, Next, Observation};

/// Runs `cmd` with its streams set as `stdio`, appending the piped output
/// to `stdout` and `stderr`, in this task. The caller checked
/// [`super::by_readiness`].
pub(super) async fn supervise(
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
    let program = cmd.program_lossy();
    // tokio panics on a runtime without I/O enabled: the child is killed
    // and reaped before the panic goes on (the pid is still certainly its
    // own: nothing has reaped it).
    let registered = panic::catch_unwind(AssertUnwindSafe(|| sys::register_readable(pidfd)))
        .unwrap_or_else(|panic| {
            crate::spawn::end_unsupervised(pid, cmd.process_group);
            panic::resume_unwind(panic)
        });
    let mut child = match registered {
        Ok(pidfd) => Child::new(pid, pidfd, cmd, started),
        Err(e) => {
            let (pidfd, source) = e.into_parts();
            // Dropped at once: kills the group and the child, and reaps.
            drop(Child::new(pid, pidfd, cmd, started));
            return Err(io_error(&program, REGISTERING, source));
        }
    };
    // From here on, an early return drops `child`, which kills and reaps.
    let register = |pipe: Option<OwnedFd>| {
        pipe.map(sys::register_readable)
            .transpose()
            .map_err(|e| io_error(&program, REGISTERING, e.into()))
    };
    let out_pipe = register(out_pipe)?;
    let err_pipe = register(err_pipe)?;
    let mut observation = Observation::new(
        [
            out_pipe.map(|fd| (fd, stdout)),
            err_pipe.map(|fd| (fd, stderr)),
        ],
        cmd.buffer_size,
        &program,
    );
    let mut deadline = Deadline::new(cmd, started);
    observe(
        &mut child,
        &mut observation,
        &mut deadline,
        cmd.grace_period,
    )
    .await
    .map_err(|source| io_error(&program, "waiting for the child", source))?;
    let mut result = child.publish(&mut observation, &deadline);
    drop(observation);
    if result.exit.is_none() {
        // Given up on: as on the runtime path, the engine sweeps the group
        // and reaps the child whenever it exits; the call returns after
        // the sweep (and, cancelled meanwhile, leaves the child to it).
        let swept = match child.hand_over(cmd, result.kill_sent_after.is_some()) {
            Ok(sweep_over) => engine_answer(sweep_over.await),
            Err(e) => Err(e),
        };
        if child.handed_over(swept) {
            return Ok(result);
        }
        if let Err(e) = reap_when_exited(&mut child).await {
            tracing::warn!(program = %result.program, pid, error = %e, "reaping the child failed");
        }
    }
    if child.reaped_with_others_left() {
        if let Err(e) = child.sweep(cmd, &result).await {
            // Out of fds or memory for the registration: no grace period
            // then, but nothing may outlive the call either.
            tracing::warn!(program = %result.program, pid, error = %e, "cannot sweep the rest of the group with a grace period: killing it");
            for pause in child.kill_group() {
                tokio::time::sleep(pause).await;
            }
            result.supervisor_error = Some(std::sync::Arc::new(e));
        }
    }
    child.settled = true;
    Ok(result)
}

/// Waits for the child's exit, and reaps it.
async fn reap_when_exited(child: &mut Child<AsyncFd<OwnedFd>>) -> io::Result<()> {
    while !child.reap_unless_reaped()? {
        child.pidfd.readable().await?.clear_ready();
    }
    Ok(())
}

/// What woke the task.
#[derive(Default)]
struct Woken {
    pidfd: bool,
    outputs: [bool; 2],
    cut_off_due: bool,
    escalation_due: bool,
}

/// A timer on the runtime's clock, for one instant: its firing decides that
/// the instant has come (a paused clock fires it early in real time; a
/// second opinion from std's clock would spin until they agree).
struct Timer {
    at: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    fn new(at: Instant) -> Timer {
        Timer {
            at,
            sleep: Box::pin(tokio::time::sleep_until(at.into())),
        }
    }
}

/// Reads the outputs and waits for the exit, escalating at the deadline,
/// until both are done or the output is cut off (see [`Observation`]); an
/// escalation that gives up ends the wait for the exit, not the reading.
///
/// Readiness is cleared before each read, never after one: a write that
/// lands after the clear sets it again, so no wake-up is lost (clearing
/// after a read that found the pipe empty could erase the readiness of a
/// write that landed in between).
async fn observe(
    child: &mut Child<AsyncFd<OwnedFd>>,
    observation: &mut Observation<'_, AsyncFd<OwnedFd>>,
    deadline: &mut Deadline,
    grace: Duration,
) -> io::Result<()> {
    // The grace period after the exit.
    let mut cut_off_timer: Option<Timer> = None;
    // The escalation's next step (the deadline, then its grace periods).
    let mut escalation_timer: Option<Timer> = None;
    let mut escalation_due = false;
    // Pipes whose last turn stopped with more to read: ready without a
    // new event.
    let mut more = [false; 2];
    loop {
        if !observation.has_ended() {
            // What the timer said is due has come, whatever std's clock says.
            let fired_at = escalation_timer.as_ref().filter(|_| escalation_due);
            let now = fired_at.map_or_else(Instant::now, |t| t.at.max(Instant::now()));
            if deadline.run_due(now, child) {
                // The escalation's last check. A clock that fired the
                // timer before its instant (a paused one) ran through the
                // wait after SIGKILL in no real time: the kill is real, so
                // is its effect, which takes real time (microseconds,
                // unless the child is stuck in the kernel), so it is
                // waited for here, on the pidfd, a second at most. This
                // blocks the thread, which only such a clock makes happen.
                if fired_at.is_some_and(|timer| timer.at > Instant::now()) {
                    let _ = sys::wait_readable(child.pidfd.as_fd(), KILL_WAIT);
                }
                match child.reap()? {
                    Some(exit) => observation.exited(exit),
                    None => {
                        child.gave_up = true;
                        observation.gave_up(now);
                    }
                }
            }
            escalation_timer = match (deadline.wake_at(), escalation_timer.take()) {
                (Some(at), Some(timer)) if timer.at == at && !escalation_due => Some(timer),
                (Some(at), _) => Some(Timer::new(at)),
                (None, _) => None,
            };
        } else {
            escalation_timer = None;
        }
        let watch_exit = match observation.next() {
            Next::Done => return Ok(()),
            Next::Exit => true,
            Next::Ready { exit } => exit,
        };
        if cut_off_timer.is_none() {
            cut_off_timer = observation
                .cut_off_due_from()
                .map(|_| Timer::new(Instant::now() + grace));
        }
        if more.contains(&true) {
            // Reading on without waiting: let the runtime's other tasks
            // run now and then, as a read that waited would.
            tokio::task::consume_budget().await;
        }
        let woken = poll_fn(|cx| {
            let mut woken = Woken::default();
            if watch_exit {
                if let Poll::Ready(ready) = child.pidfd.poll_read_ready(cx) {
                    ready?.clear_ready();
                    woken.pidfd = true;
                }
            }
            for (index, pipe) in observation.pipes().into_iter().enumerate() {
                let Some(pipe) = pipe else { continue };
                if let Poll::Ready(ready) = pipe.poll_read_ready(cx) {
                    ready?.clear_ready();
                    woken.outputs[index] = true;
                }
                woken.outputs[index] |= more[index];
            }
            if let Some(timer) = &mut cut_off_timer {
                woken.cut_off_due = timer.sleep.as_mut().poll(cx).is_ready();
            }
            if let Some(timer) = &mut escalation_timer {
                woken.escalation_due = timer.sleep.as_mut().poll(cx).is_ready();
            }
            let Woken {
                pidfd,
                outputs,
                cut_off_due,
                escalation_due,
            } = woken;
            if pidfd || outputs.contains(&true) || cut_off_due || escalation_due {
                Poll::Ready(Ok::<_, io::Error>(woken))
            } else {
                Poll::Pending
            }
        })
        .await?;
        escalation_due = woken.escalation_due;
        for (index, readable) in woken.outputs.into_iter().enumerate() {
            if readable {
                more[index] = observation.read(index) == Drained::More;
            }
        }
        if woken.pidfd {
            if let Some(exit) = child.reap()? {
                observation.exited(exit);
            }
        }
        // The timer is polled on every turn, not only when the pipes are
        // silent: a grandchild that keeps writing must not hold the call
        // forever.
        if woken.cut_off_due {
            observation.cut_off_now();
            // Once: what is left open is read to its end, with no timer.
            cut_off_timer = None;
        }
    }
}
