//! `childminder run`: builds the [`Command`], runs it with
//! [`with_process`], forwards signals, and decides the exit status.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc;

use childminder::{
    Command, Error, Process, Stdio, SupervisionResult, Termination, stdin, with_process,
};

use crate::cli::RunArgs;
use crate::report::{Report, RunFacts};
use crate::signals::{self, Event, Forwarding};

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
/// | a signal N ended the child (a forwarded one, the escalation's, or any other) | 128 + N |
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

/// Where the report goes.
enum ReportSink {
    Stderr,
    File(File, OsString),
}

impl ReportSink {
    /// Opens (creates, truncates) the report file before the child starts,
    /// so a bad path is a usage error rather than a lost report.
    fn open(path: &OsString) -> Result<ReportSink, String> {
        if path == "-" {
            return Ok(ReportSink::Stderr);
        }
        File::create(path)
            .map(|f| ReportSink::File(f, path.clone()))
            .map_err(|e| format!("cannot create the report file {path:?}: {e}"))
    }

    fn write(self, report: &Report) -> Result<(), String> {
        let line = report.to_json_line();
        match self {
            ReportSink::Stderr => io::stderr()
                .lock()
                .write_all(line.as_bytes())
                .map_err(|e| format!("cannot write the report to stderr: {e}")),
            ReportSink::File(mut file, path) => file
                .write_all(line.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write the report file {path:?}: {e}")),
        }
    }
}

/// Runs the command of `args` and returns the exit status.
pub fn run(args: RunArgs) -> i32 {
    let sink = match args.report.as_ref().map(ReportSink::open).transpose() {
        Ok(sink) => sink,
        Err(message) => {
            diagnose(&message);
            return EXIT_FAILURE;
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
        .kill_on_parent_death(true);
    // 0 and "forever" (100 years or more, `inf`) both mean no deadline.
    if let Some(deadline) = args
        .timeout
        .filter(|d| !d.is_zero() && !crate::duration::is_forever(*d))
    {
        cmd.deadline(deadline);
    }
    if args.inherit_stdio {
        cmd.stdin(Stdio::Inherit)
            .stdout(Stdio::Inherit)
            .stderr(Stdio::Inherit);
    }

    // Catch the signals before the child exists: one arriving during the
    // start is then acted on as soon as the child runs.
    let (events_tx, events) = mpsc::channel();
    let receiver = match signals::Receiver::start(events_tx.clone()) {
        Ok(receiver) => receiver,
        Err(e) => {
            diagnose(&format!("cannot set up the signal handlers: {e}"));
            return EXIT_FAILURE;
        }
    };

    let (mut stdout_bytes, mut stderr_bytes) = (0u64, 0u64);
    let outcome = if args.inherit_stdio {
        with_process(
            &cmd,
            stdin::empty(),
            childminder::discard,
            childminder::discard,
            |p| supervise(p, &events, &events_tx),
        )
    } else {
        let stdout = io::stdout();
        let stderr = io::stderr();
        with_process(
            &cmd,
            forwarded_stdin(),
            |chunk: &[u8]| copy_out(&mut stdout.lock(), chunk, &mut stdout_bytes),
            |chunk: &[u8]| copy_out(&mut stderr.lock(), chunk, &mut stderr_bytes),
            |p| supervise(p, &events, &events_tx),
        )
    };
    receiver.close();

    let (status, report) = match outcome {
        Ok((result, received)) => {
            let status = exit_status(&result, args.preserve_status);
            for failure in &result.worker_errors {
                if failure.source.kind() != io::ErrorKind::BrokenPipe {
                    diagnose(&format!("warning: {failure}"));
                }
            }
            if let Some(e) = &result.supervisor_error {
                diagnose(&format!("warning: {e}"));
            }
            let facts = RunFacts {
                stdout_bytes: (!args.inherit_stdio).then_some(stdout_bytes),
                stderr_bytes: (!args.inherit_stdio).then_some(stderr_bytes),
                signals_received: received,
            };
            (
                status,
                Report::from_result(lossy_args, &result, &facts, status),
            )
        }
        Err(error) => {
            diagnose(&error.to_string());
            let status = start_failure_status(&error);
            (
                status,
                Report::not_started(
                    program.to_string_lossy().into_owned(),
                    lossy_args,
                    &error,
                    status,
                ),
            )
        }
    };
    match sink.map(|sink| sink.write(&report)) {
        Some(Err(message)) => {
            diagnose(&message);
            EXIT_FAILURE
        }
        _ => status,
    }
}

/// The action of `with_process`: waits for the result while acting on the
/// signals childminder receives. Returns the result and the signals.
fn supervise(
    process: &Process,
    events: &mpsc::Receiver<Event>,
    events_tx: &mpsc::Sender<Event>,
) -> (SupervisionResult, Vec<childminder::Signal>) {
    let mut forwarding = Forwarding::default();
    let result = std::thread::scope(|scope| {
        let done = events_tx.clone();
        scope.spawn(move || {
            let _ = done.send(Event::Done(Box::new(process.wait())));
        });
        loop {
            match events.recv() {
                Ok(Event::Signal(signal)) => forwarding.on_signal(process, signal),
                Ok(Event::Done(result)) => return *result,
                // Unreachable: `events_tx` is alive. Wait without the channel.
                Err(mpsc::RecvError) => return process.wait(),
            }
        }
    });
    (result, forwarding.into_received())
}

/// childminder's stdin as the child's, in chunks of up to 64 KiB, as
/// [`stdin::from_reader`] does, with one difference for a terminal: a read
/// from the background (`childminder run ... &` in an interactive shell)
/// ends the input instead of stopping all of childminder with SIGTTIN. The
/// input thread blocks SIGTTIN for itself alone, so the kernel answers such
/// a read with EIO, which is taken as the end of the input.
fn forwarded_stdin() -> stdin::Input {
    // SAFETY: isatty only inspects fd 0.
    let terminal = unsafe { libc::isatty(0) } == 1;
    let mut input = io::stdin();
    let mut buf = vec![0; 64 * 1024];
    let mut first = true;
    stdin::from_fn(move || {
        if std::mem::take(&mut first) && terminal {
            block_sigttin_in_this_thread();
        }
        loop {
            return match input.read(&mut buf) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if terminal && e.raw_os_error() == Some(libc::EIO) => Ok(None),
                Err(e) => Err(e),
            };
        }
    })
}

/// Blocks SIGTTIN for the calling thread (the library's input thread).
fn block_sigttin_in_this_thread() {
    // SAFETY: the set is initialised by sigemptyset before use, and
    // pthread_sigmask changes only the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTIN);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Copies one chunk of the child's output to ours and counts it. An error
/// (EPIPE when our reader has gone, as with `| head`) is returned to the
/// library, which records it and closes that pipe: the child then gets
/// SIGPIPE or EPIPE on its next write, as it would without childminder.
fn copy_out(out: &mut impl Write, chunk: &[u8], count: &mut u64) -> io::Result<()> {
    out.write_all(chunk)?;
    out.flush()?;
    *count += chunk.len() as u64;
    Ok(())
}

/// Prints one of childminder's own messages on stderr.
pub fn diagnose(message: &str) {
    let _ = writeln!(io::stderr().lock(), "childminder: {message}");
}
