//! `childminder run`: builds the [`Command`], spawns it with the library's
//! async API on a current-thread event loop, forwards signals, copies the
//! output (see [`stdio`]), and decides the exit status.

use std::cell::Cell;
use std::io;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use childminder::{Command, Error, ExitStatus, Signal, Stdio, SupervisionResult, Termination};

use crate::cli::RunArgs;
use crate::report::{Report, RunFacts};
use crate::report_sink::{self, ReportSink};
use crate::signals::{self, Action, AfterExit, Forwarding, Role};
use crate::stdio;
use crate::sys;
use crate::terminal;

/// childminder's own failure: bad options, usage, an unwritable report.
pub const EXIT_FAILURE: i32 = 125;
/// The deadline expired and the child was escalated.
pub const EXIT_TIMED_OUT: i32 = 124;
/// The program was found but could not be run.
pub const EXIT_CANNOT_RUN: i32 = 126;
/// The program was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// The exit status of `childminder run`, in one place (GNU `timeout`
/// conventions):
///
/// | what happened | status |
/// |---|---|
/// | the deadline expired and childminder escalated (sent the first signal or SIGKILL), without `--preserve-status` | 124 |
/// | the child exited with code N | N |
/// | a signal N ended the child (a forwarded one, the escalation's, or any other) | 128 + N, and `run` then ends itself by N ([`dies_by`]) |
/// | no exit was observed (the child survived SIGKILL, stuck in the kernel) | 125 |
///
/// A deadline that expired as the child was exiting by itself (nothing
/// could be sent) is not a time-out: the child's own status is returned.
/// Failures before the child ran are mapped by [`start_failure_status`].
pub fn exit_status(result: &SupervisionResult, preserve_status: bool) -> i32 {
    if result.timed_out() && result.termination == Termination::Escalated && !preserve_status {
        return EXIT_TIMED_OUT;
    }
    match result.exit {
        Some(status) => status.shell_code(),
        None => EXIT_FAILURE,
    }
}

/// The signal `childminder run` ends itself with, after writing the
/// report, as GNU `timeout` does: the one that ended the command, unless
/// the deadline expired (then the status is 124, or the command's with
/// `--preserve-status`). A shell loop around `childminder run` then stops
/// on Ctrl-C, as it would around the command itself.
pub fn dies_by(result: &SupervisionResult) -> Option<Signal> {
    match result.exit {
        Some(ExitStatus::Signaled { signal, .. }) if !result.timed_out() => Some(signal),
        _ => None,
    }
}

/// How childminder ends: with `status`, or first by `die_by` (the
/// command's signal), falling back to `status` (128+N) if that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// The exit status (also the report's `exit_status`).
    pub status: i32,
    /// The signal to end childminder with, after the report is written.
    pub die_by: Option<Signal>,
}

impl From<i32> for Ending {
    fn from(status: i32) -> Ending {
        Ending {
            status,
            die_by: None,
        }
    }
}

/// The exit status when the child could not be started: 127 when the
/// program was not found, 126 when it was found but could not be executed,
/// 125 for anything else (invalid options, out of fds).
pub fn start_failure_status(error: &Error) -> i32 {
    if error.is_not_found() {
        EXIT_NOT_FOUND
    } else if error.is_permission_denied() {
        EXIT_CANNOT_RUN
    } else {
        EXIT_FAILURE
    }
}

/// Runs the command of `args` and returns how childminder ends.
pub fn run(args: RunArgs) -> Ending {
    run_as(args, Role::Run)
}

/// `run` or `init` (which forwards every signal as it is, reaps orphans as
/// they exit, and is always a subreaper): returns how childminder ends
/// (`init` exits with 128+N rather than ending itself by the command's
/// signal, as tini does).
pub fn run_as(args: RunArgs, role: Role) -> Ending {
    // Started with SIGCHLD ignored, the kernel would reap the command and
    // its status would be lost: back to the default, as GNU timeout does.
    if let Err(e) = sys::reset_sigchld() {
        diagnose(&format!("cannot reset SIGCHLD to its default: {e}"));
        return EXIT_FAILURE.into();
    }
    // Before the report file is made: a signal from now on is the event
    // loop's, and the report is written.
    let blocked = match signals::block_caught(role) {
        Ok(blocked) => blocked,
        Err(e) => {
            diagnose(&format!(
                "cannot block the signals childminder catches: {e}"
            ));
            return EXIT_FAILURE.into();
        }
    };
    let sink = match args.report.as_deref().map(ReportSink::open).transpose() {
        Ok(sink) => sink,
        Err(message) => {
            diagnose(&message);
            return EXIT_FAILURE.into();
        }
    };
    let (program, program_args) = args.command.split_first().expect("clap requires PROGRAM");
    let lossy_args: Vec<String> = program_args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();

    let mut cmd = Command::new(program);
    cmd.args(program_args)
        .grace_period(args.grace())
        .term_signal(args.signal())
        .process_group(!args.no_group)
        .subreaper(role == Role::Init || !args.no_subreaper)
        .kill_on_parent_death(true)
        .pipe_capacity(1 << 20)
        .terminal_foreground(takes_the_terminal())
        // SIGPIPE as our parent gave it (recorded before the Rust runtime
        // ignored it): `trap '' PIPE` reaches the command, as with timeout.
        .inherit_sigpipe(sys::sigpipe_was_ignored_at_start());
    if let Some(cgroup) = args.cgroup() {
        cmd.cgroup(cgroup);
    }
    // 0 and "forever" (100 years or more, `inf`) both mean no deadline.
    let deadline = args
        .timeout
        .filter(|d| !d.is_zero() && !crate::duration::is_forever(*d));
    if let Some(deadline) = deadline {
        cmd.deadline(deadline);
    }

    // One thread: the event loop runs here, on the main thread, and drives
    // the child's supervision, the copy of its output, the deadline and the
    // signals. The fork path of `kill_on_parent_death` ties the child to
    // the thread that spawns it, and this one lives until the end.
    let report = |outcome: Outcome| match outcome {
        Outcome::Ran(result, facts) => {
            let status = run_status(&result, &facts, args.preserve_status);
            // Only when the status is the command's signal (not a time-out,
            // not a delivery failure), and not as init.
            let die_by = facts
                .ended_by
                .or_else(|| dies_by(&result))
                .filter(|s| role == Role::Run && status == 128 + s.as_raw());
            for failure in &facts.worker_errors {
                if failure.error_kind != Some(io::ErrorKind::BrokenPipe) {
                    diagnose(&format!(
                        "warning: {} {}: {}",
                        failure.stream, failure.op, failure.error
                    ));
                }
            }
            if let Some(signal) = facts.ended_by {
                diagnose(&format!(
                    "{signal} asked childminder to end before all the command's output was delivered: output cut off"
                ));
            } else if facts.delivery_cut_off {
                diagnose(
                    "the deadline's bound passed before all output was delivered: output cut off",
                );
            }
            if result.exit.is_none() {
                diagnose(&format!(
                    "the command (pid {}) survived SIGKILL for a second (stuck in the kernel): \
                     it dies of it when it can, no longer childminder's",
                    result.pid
                ));
            }
            if let Some(e) = &result.supervisor_error {
                diagnose(&format!("warning: {e}"));
            }
            if let Some(why) = &result.containment.cgroup_fallback {
                diagnose(&format!(
                    "warning: no cgroup ({why}): the process group and the subreaper contained the command instead"
                ));
            }
            (
                Ending { status, die_by },
                Report::from_result(lossy_args.clone(), &result, &facts, status),
            )
        }
        Outcome::NotStarted(error) => {
            diagnose(&error.to_string());
            let status = start_failure_status(&error);
            (
                Ending::from(status),
                Report::not_started(
                    program.to_string_lossy().into_owned(),
                    lossy_args.clone(),
                    &error,
                    status,
                ),
            )
        }
        Outcome::Failed(message) => {
            diagnose(&message);
            (
                Ending::from(EXIT_FAILURE),
                Report::failed(
                    program.to_string_lossy().into_owned(),
                    lossy_args.clone(),
                    message,
                    EXIT_FAILURE,
                ),
            )
        }
    };
    let started = Instant::now();
    let outcome = match event_loop() {
        Ok(runtime) => runtime.block_on(supervise(
            role,
            &blocked,
            &mut cmd,
            stdio_mode(&args),
            deadline,
            args.grace(),
        )),
        // Out of fds (`ulimit -n`): reported like any other failure.
        Err(e) => Outcome::Failed(format!("cannot start the event loop: {e}")),
    };
    let (ending, report) = report(outcome);
    // The report never changes the verdict: a report that cannot be
    // written is a message, and the status stays the command's.
    if let Some(sink) = sink {
        let limit =
            report_sink::write_limit(Instant::now(), args.grace(), deadline.map(|d| started + d));
        if let Err(message) = sink.write(&report.to_json_line(), limit) {
            diagnose(&message);
        }
    }
    ending
}

/// Whether the command's group is to hold the terminal for the run: yes,
/// unless childminder is one stage of a shell pipeline (another child of
/// its parent shares its group, the shell's job). There the terminal stays
/// with the job, as under `timeout`: taken, it left the other stages in
/// the background, so `cat | childminder run -- ...` stopped at cat's
/// first read (SIGTTIN), and `childminder run -- a | childminder run -- b`
/// needed a Ctrl-C per stage (caught by an acceptance run). Asked only
/// when our group holds a terminal among fds 0-2, where it can matter.
fn takes_the_terminal() -> bool {
    let own = sys::own_group();
    let holds_a_terminal = (0..3)
        .filter_map(sys::stdio_fd)
        .any(|fd| sys::foreground_group(fd) == Some(own));
    holds_a_terminal && !sys::shares_group_with_a_sibling()
}

/// The current-thread runtime. Building it can panic rather than fail:
/// tokio's signal driver creates its self-pipe with an `expect` (out of
/// fds at `ulimit -n 6`). That panic is caught (silently: the message is
/// ours) and becomes the error it is, so childminder exits 125 with one
/// line instead of 101 with a backtrace.
pub(crate) fn event_loop() -> io::Result<tokio::runtime::Runtime> {
    // The common case, and the OS's own words for it: the fds the runtime
    // takes (epoll, its waker, the signal driver's socket pair and a copy
    // of one end) are not there.
    sys::check_free_fds(6)?;
    let build = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let built = std::panic::catch_unwind(build);
    std::panic::set_hook(hook);
    built.unwrap_or_else(|_| {
        Err(io::Error::other(
            "out of file descriptors for its signal handling",
        ))
    })
}

fn stdio_mode(args: &RunArgs) -> stdio::Mode {
    if args.inherit_stdio {
        stdio::Mode::InheritAll
    } else if args.stream_stdio {
        stdio::Mode::StreamAll
    } else {
        stdio::Mode::Auto
    }
}

/// The exit status of a run: [`exit_status`], then what the copy-out adds.
/// A signal that ended the copy-out after the command's exit is the
/// status (childminder ends by it, as `cat` would have); the deadline's
/// bound cutting the output off is a time-out (124);
/// output that could not be delivered (other than to a reader that went
/// away) turns a status of 0 into 125, and so does the SIGPIPE that the
/// pipe closed on that failure gave the command (an acceptance run got
/// 141 from `> /dev/full` for a command that wrote more than the pipes
/// hold, 125 for one that wrote less), while a failure status of the
/// command's own stays as it is.
fn run_status(result: &SupervisionResult, facts: &RunFacts, preserve_status: bool) -> i32 {
    let status = exit_status(result, preserve_status);
    // Not the escalation's own SIGPIPE (`-s PIPE`): childminder passes no
    // received SIGPIPE on, so any other is the closed pipe's.
    let our_sigpipe = result.escalation_cause.is_none()
        && matches!(
            result.exit,
            Some(ExitStatus::Signaled {
                signal: Signal::PIPE,
                ..
            })
        );
    if let Some(signal) = facts.ended_by {
        128 + signal.as_raw()
    } else if facts.delivery_cut_off {
        EXIT_TIMED_OUT
    } else if facts.undelivered() && (status == 0 || our_sigpipe) {
        EXIT_FAILURE
    } else {
        status
    }
}

/// How a run went.
enum Outcome {
    /// The command ran: the library's result, and what the run adds.
    Ran(Box<SupervisionResult>, RunFacts),
    /// It could not be started.
    NotStarted(Error),
    /// childminder could not set itself up (signals, streams): nothing ran.
    Failed(String),
}

/// Starts the command and supervises it to the end: forwards signals,
/// copies its output, bounds the copy-out, sweeps its group.
async fn supervise(
    role: Role,
    blocked: &signals::Blocked,
    cmd: &mut Command,
    mode: stdio::Mode,
    deadline: Option<Duration>,
    grace: Duration,
) -> Outcome {
    // Read the signals before the child exists: one arriving during the
    // start is then acted on as soon as the child runs.
    let mut signals = match signals::Receiver::start(blocked) {
        Ok(receiver) => receiver,
        Err(e) => return Outcome::Failed(format!("cannot set up the signal handlers: {e}")),
    };
    let plan = match stdio::Plan::decide(mode) {
        Ok(plan) => plan,
        Err(e) => return Outcome::Failed(format!("cannot set up the streams: {e}")),
    };
    let piped = |streamed: bool| {
        if streamed {
            Stdio::Piped
        } else {
            Stdio::Inherit
        }
    };
    cmd.stdin(piped(plan.stdin.is_some()))
        .stdout(piped(plan.stdout.is_some()))
        .stderr(piped(plan.stderr.is_some()));
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => return Outcome::NotStarted(error),
    };
    let deadline_at = deadline.map(|d| Instant::now() + d);
    // Without it, Ctrl-Z stops the command but leaves childminder running
    // and the terminal with the stopped group: a warning, not a failure.
    let mut foreground = terminal::Foreground::of_command(child.pid()).unwrap_or_else(|e| {
        diagnose(&format!("warning: no job control for the command: {e}"));
        None
    });

    let mut facts = RunFacts {
        stdout_bytes: plan.stdout.is_some().then_some(0),
        stderr_bytes: plan.stderr.is_some().then_some(0),
        inherited_streams: plan.inherited.clone(),
        ..RunFacts::default()
    };
    let counts = (Cell::new(0u64), Cell::new(0u64));
    let stdout = child.stdout.take().map(Rc::new);
    let stderr = child.stderr.take().map(Rc::new);
    let watch = (
        stdout.as_ref().map(Rc::downgrade),
        stderr.as_ref().map(Rc::downgrade),
    );
    // Boxed, not pinned on the stack, so that dropping them closes the
    // pipes at the cut-off.
    let mut outputs = Box::pin(async {
        tokio::join!(
            copy_out(stdout, plan.stdout.as_ref(), &counts.0),
            copy_out(stderr, plan.stderr.as_ref(), &counts.1),
        )
    });
    let stdin = child.stdin.take();
    let mut input = Box::pin(async {
        match (&plan.stdin, stdin) {
            (Some(source), Some(to)) => stdio::forward_input(source, to).await,
            _ => Ok(()),
        }
    });
    let (mut outputs_done, mut input_done) = (false, false);
    let mut forwarding = Forwarding::new(role);

    // The first INT, TERM, HUP, QUIT or ALRM (`run`), and when it came.
    let mut end_asked: Option<DeliveryBound> = None;
    // A signal taken in this loop after the exit was published.
    let mut late_signal = None;
    // Until the command's exit.
    let result = loop {
        tokio::select! {
            biased;
            signal = signals.recv() => {
                if let Some(result) = child.try_result() {
                    // The exit came first (this loop would have seen it
                    // next): the signal is one after it.
                    late_signal = Some(signal);
                    break result;
                }
                let action = forwarding.decide(signal);
                let asked_by = match action {
                    Action::Terminate(signal) => Some(Some(signal)),
                    // ALRM: the deadline, now, and its bound with it.
                    Action::ExpireDeadline => Some(None),
                    _ => None,
                };
                if let Some(by) = asked_by {
                    let asked = DeliveryBound { at: Instant::now(), by };
                    end_asked = DeliveryBound::earlier(end_asked, Some(asked));
                }
                forwarding.apply(&child, action);
            }
            result = child.wait() => break result,
            () = stopped(&mut foreground) => {
                if let Some(foreground) = &foreground {
                    foreground.suspend_with(&child);
                }
            }
            ends = &mut outputs, if !outputs_done => {
                outputs_done = true;
                facts.record_outputs(ends);
            }
            e = &mut input, if !input_done => {
                input_done = true;
                if let Err((op, e)) = e {
                    facts.record("stdin", op, &e);
                }
            }
        }
    };

    // Then the output: everything still in the pipes is delivered, with
    // two bounds. A grace period after the exit, a pipe that a process
    // left behind still holds open is cut off and the group killed (Go's
    // WaitDelay); a pipe whose writers are all gone is only waiting for our
    // reader. With a deadline, the whole copy-out ends a grace period after
    // the later of the deadline and the exit, delivered or not: a reader
    // that does not read cannot keep childminder alive.
    //
    // A signal that asked childminder to end bounds it the same way: the
    // copy-out ends a grace period after the later of that signal and the
    // exit, and a second one after the exit ends it at once (a reader that
    // does not read cannot keep a cancelled job alive).
    let exited_at = Instant::now();
    let held_open_check = exited_at + grace;
    let after = |from: Instant, by| DeliveryBound {
        at: from.max(exited_at) + grace,
        by,
    };
    let mut delivery_bound = DeliveryBound::earlier(
        deadline_at.map(|d| after(d, None)),
        end_asked.map(|asked| after(asked.at, asked.by)),
    );
    let mut checked = false;
    // Once the holders were killed, what the pipes still hold (the
    // command's own last output, behind a slow reader) is delivered: to
    // end-of-file, however slow the reader, once no writer is left (as for
    // pipes whose writers all left by themselves); a pipe that a process
    // outside the group still holds a grace period later is cut off then.
    let mut remains_until = None;
    let output_held = || held_open(&watch.0) || held_open(&watch.1);
    let mut on_signal = |signal, delivery_bound: &mut Option<DeliveryBound>| match forwarding
        .decide_after_exit(signal)
    {
        AfterExit::EndDelivery => Some(signal),
        AfterExit::DeadlineNow => {
            *delivery_bound =
                DeliveryBound::earlier(*delivery_bound, Some(after(Instant::now(), None)));
            None
        }
        AfterExit::Act(action) => {
            forwarding.apply(&child, action);
            None
        }
    };
    // With everything delivered there is nothing left for it to end.
    let mut ended_by = late_signal
        .and_then(|signal| on_signal(signal, &mut delivery_bound))
        .filter(|_| !outputs_done);
    while !outputs_done && ended_by.is_none() {
        tokio::select! {
            biased;
            signal = signals.recv() => ended_by = on_signal(signal, &mut delivery_bound),
            ends = &mut outputs => {
                outputs_done = true;
                facts.record_outputs(ends);
            }
            () = tokio::time::sleep_until(held_open_check.into()), if !checked => {
                checked = true;
                if output_held() {
                    facts.output_cut_off = true;
                    let _ = child.signal_group(Signal::KILL);
                    // Breaking here dropped what the pipes held: an
                    // acceptance run behind a slow reader lost half of what
                    // the command wrote.
                    remains_until = Some(Instant::now() + grace);
                }
            }
            () = sleep_until_opt(remains_until) => {
                if output_held() {
                    break;
                }
                remains_until = None;
            }
            () = sleep_until_opt(delivery_bound.map(|b| b.at)) => {
                facts.delivery_cut_off = true;
                facts.ended_by = delivery_bound.and_then(|b| b.by);
                break;
            }
        }
    }
    if ended_by.is_some() {
        facts.delivery_cut_off = true;
        facts.ended_by = ended_by;
    }
    // Whatever was not copied is cut off here: the pipes close.
    drop((outputs, input));
    facts.stdout_bytes = facts.stdout_bytes.map(|_| counts.0.get());
    facts.stderr_bytes = facts.stderr_bytes.map(|_| counts.1.get());

    // Last, nothing of the command's group (or cgroup) may stay, nor any
    // escapee: the same escalation against what is left, then the child is
    // reaped. The final result says what the sweeps found.
    let swept = loop {
        tokio::select! {
            biased;
            signal = signals.recv() => forwarding.on_signal(&child, signal),
            swept = child.shutdown() => break swept,
        }
    };
    let mut result = result;
    result.containment = swept.containment;
    (facts.signals_received, facts.orphans_reaped) = forwarding.into_received();
    Outcome::Ran(Box::new(result), facts)
}

/// When the copy-out of the command's output must end, delivered or not,
/// and the signal that set that instant (`None`: the deadline).
#[derive(Debug, Clone, Copy)]
struct DeliveryBound {
    at: Instant,
    by: Option<Signal>,
}

impl DeliveryBound {
    /// The earlier of two bounds (the deadline's on a tie: it says 124).
    fn earlier(a: Option<DeliveryBound>, b: Option<DeliveryBound>) -> Option<DeliveryBound> {
        match (a, b) {
            (Some(a), Some(b)) if b.at < a.at => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }
}

/// Copies one output pipe to its sink, then closes the pipe: at its end,
/// or when the copy failed (the command then gets EPIPE or SIGPIPE on its
/// next write, as in a plain pipeline).
async fn copy_out<P: stdio::OutputPipe>(
    pipe: Option<Rc<P>>,
    sink: Option<&stdio::Sink>,
    delivered: &Cell<u64>,
) -> Result<(), stdio::PumpError> {
    match (pipe, sink) {
        (Some(pipe), Some(sink)) => stdio::pump(&*pipe, sink, delivered).await,
        _ => Ok(()),
    }
}

/// A pipe still being copied whose write end something still holds.
fn held_open<P: stdio::OutputPipe>(pipe: &Option<Weak<P>>) -> bool {
    pipe.as_ref()
        .and_then(Weak::upgrade)
        .is_some_and(|p| !stdio::writers_gone(&*p))
}

/// Resolves when the command holding the terminal has been stopped; never
/// without a terminal.
async fn stopped(foreground: &mut Option<terminal::Foreground>) {
    match foreground {
        Some(foreground) => foreground.stopped().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// How long one of childminder's own messages may wait for room on a
/// stderr pipe that is full: a reader that does not read drops the
/// message instead of holding childminder past the deadline's bound.
const MESSAGE_WAIT: Duration = Duration::from_millis(100);

/// Prints one of childminder's own messages on stderr, waiting at most
/// [`MESSAGE_WAIT`] for a full pipe.
pub fn diagnose(message: &str) {
    let line = format!("childminder: {message}\n");
    let _ = sys::write_stderr_until(line.as_bytes(), Instant::now() + MESSAGE_WAIT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_delivery_bound_wins_and_the_deadline_on_a_tie() {
        let now = Instant::now();
        let deadline = |at| DeliveryBound { at, by: None };
        let asked = |at| DeliveryBound {
            at,
            by: Some(Signal::TERM),
        };
        let later = now + Duration::from_secs(1);
        let earlier = |a, b| DeliveryBound::earlier(a, b).map(|b: DeliveryBound| (b.at, b.by));
        assert_eq!(earlier(None, None), None);
        assert_eq!(earlier(Some(deadline(now)), None), Some((now, None)));
        assert_eq!(
            earlier(None, Some(asked(now))),
            Some((now, Some(Signal::TERM)))
        );
        assert_eq!(
            earlier(Some(deadline(later)), Some(asked(now))),
            Some((now, Some(Signal::TERM)))
        );
        assert_eq!(
            earlier(Some(deadline(now)), Some(asked(later))),
            Some((now, None))
        );
        // A tie is the deadline's: the status says 124.
        assert_eq!(
            earlier(Some(deadline(now)), Some(asked(now))),
            Some((now, None))
        );
    }
}
