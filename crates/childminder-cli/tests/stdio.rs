//! Integration tests of how `childminder run` connects and copies the
//! command's streams: the deadline bounds the copy-out, undelivered output
//! is not a success, terminals are handed over, and running out of fds is
//! a clean 125.

use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
#[path = "../../childminder/tests/common/pty.rs"]
mod pty;

use common::*;

// ---------------------------------------------------------------------------
// Where the bytes go: the deadline bounds the copy-out; terminals are
// handed over
// ---------------------------------------------------------------------------

/// Waits for `child` to exit, killing it after [`WATCHDOG`].
fn wait_or_kill(child: &mut Child, what: &str) -> std::process::ExitStatus {
    wait_or_kill_after(child, what, WATCHDOG)
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_or_kill_after(child: &mut Child, what: &str, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// At the output cut-off (a process left behind holding stdout), the copy
/// ended at once: what the command itself had written, still in the pipe
/// behind a slow reader, was lost (an acceptance run got 147,456 of
/// 300,000 bytes, and exit 0).
#[test]
fn the_commands_output_behind_a_slow_reader_survives_the_cut_off() {
    let path = temp_path("report.json");
    let mut run = Running::start(&[
        "run",
        "-g",
        "300ms",
        "--report",
        path.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "sleep 30 & head -c 300000 /dev/zero",
    ]);
    let mut stdout = run.stdout.take().unwrap();
    let mut total = 0;
    let mut chunk = [0u8; 8192];
    loop {
        let n = stdout.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        // 160 KB/s: the two pipes' 128 KiB left at the exit take longer
        // than the grace period.
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = wait_or_kill(&mut run.child, "childminder behind a slow reader");
    let report: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let _ = fs::remove_file(&path);
    assert_eq!(status.code(), Some(0), "{report}");
    assert_eq!(report["output_cut_off"], true, "{report}");
    assert_eq!(total, 300_000, "{report}");
    assert_eq!(report["stdout_bytes"], 300_000, "{report}");
}

#[test]
fn a_reader_that_never_reads_cannot_keep_childminder_past_the_deadline() {
    // `(childminder run -t 1s -g 1s -- yes) | sleep 5` used to end only
    // when `sleep` did; a reader that never reads kept it alive forever.
    // Here the reader never reads at all: childminder must still end.
    let path = temp_path("report.json");
    let mut run = Running::start(&[
        "run",
        "-t",
        "300ms",
        "-g",
        "300ms",
        "--report",
        path.to_str().unwrap(),
        "--",
        "yes",
    ]);
    let status = wait_or_kill(&mut run.child, "childminder with a stalled reader");
    assert_eq!(status.code(), Some(124));
    let report: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let _ = fs::remove_file(&path);
    assert_eq!(report["delivery_cut_off"], true, "{report}");
    assert_eq!(report["timed_out"], true, "{report}");
    assert_eq!(report["exit_status"], 124, "{report}");
    // What was counted was delivered: at most what the pipe to us holds.
    let delivered = report["stdout_bytes"].as_u64().unwrap();
    drop(run.stdout.take());
    assert!(delivered <= 1 << 20, "{report}");
}

/// `childminder run -g GRACE --report REPORT -- sh -c SCRIPT`, its stdout
/// never read unless the test reads it.
fn run_sh_with_report(grace: &str, report: &std::path::Path, script: &str) -> Running {
    Running::start(&[
        "run",
        "-g",
        grace,
        "--report",
        report.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// Waits up to the watchdog for the process whose pid `pidfile` will hold
/// to be gone altogether (reaped, not even a zombie).
fn wait_until_reaped(pidfile: &std::path::Path) -> u32 {
    let started = Instant::now();
    let pid = loop {
        if let Some(pid) = fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(started.elapsed() < WATCHDOG, "no pid in {pidfile:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    while proc_state(pid).is_some() {
        assert!(started.elapsed() < WATCHDOG, "{pid} never reaped");
        std::thread::sleep(Duration::from_millis(5));
    }
    pid
}

#[test]
fn a_term_after_the_exit_ends_a_delivery_its_reader_does_not_take() {
    // Caught by an acceptance test: once the command had exited with
    // output still undelivered to a reader that did not read, TERM, INT,
    // HUP and QUIT did nothing (without -t: forever), so a cancelled CI
    // job hung until SIGKILL. `cat` would have died of the TERM.
    let (report, pidfile) = (temp_path("report.json"), temp_path("pid"));
    let script = format!(
        "echo $$ > {}; exec head -c 100000 /dev/zero",
        pidfile.display()
    );
    let mut run = run_sh_with_report("30s", &report, &script);
    // 100,000 bytes fit in the two pipes (the command's and ours, which
    // this test never reads): head exits with some still undelivered.
    wait_until_reaped(&pidfile);
    let sent = Instant::now();
    run.signal(libc::SIGTERM);
    let status = wait_or_kill(&mut run.child, "childminder after a TERM");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "the grace period (30 s) is not waited for: {:?}",
        sent.elapsed()
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "ends by it, as cat would"
    );
    let report: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["delivery_cut_off"], true, "{report}");
    assert_eq!(report["exit"]["code"], 0, "the command's own end: {report}");
    assert_eq!(report["signals_received"], serde_json::json!(["SIGTERM"]));
    drop(run.stdout.take());
}

/// `signal` to childminder while its command runs, with output the
/// command wrote still undelivered to a reader that never reads: how
/// childminder ended (within a quarter of the watchdog), and its report.
fn signal_with_a_stalled_delivery(signal: i32) -> (std::process::ExitStatus, Value) {
    let (report, written) = (temp_path("report.json"), temp_path("written"));
    // 100,000 bytes fit in the two pipes (the command's and ours, never
    // read), but not in ours alone: some stay undelivered. Nothing left
    // running holds the output afterwards (sleep is the command itself).
    let script = format!(
        "head -c 100000 /dev/zero; echo $$ > {}; exec sleep 1000",
        written.display()
    );
    let mut run = run_sh_with_report("300ms", &report, &script);
    while fs::read_to_string(&written).map_or(true, |pid| !pid.ends_with('\n')) {
        assert!(
            run.started.elapsed() < WATCHDOG,
            "the output was never written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    run.signal(signal);
    let status = wait_or_kill_after(&mut run.child, "childminder after a signal", WATCHDOG / 4);
    drop(run.stdout.take());
    let report = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    (status, report)
}

#[test]
fn a_term_that_ended_the_command_bounds_the_delivery_by_a_grace_period() {
    // The same stalled reader, the TERM while the command still runs: the
    // command dies of it, and the copy-out then gets one grace period, as
    // after the deadline, not forever.
    let (status, report) = signal_with_a_stalled_delivery(libc::SIGTERM);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "ends by the TERM");
    assert_eq!(report["delivery_cut_off"], true, "{report}");
    assert_eq!(report["exit"]["signal"], libc::SIGTERM, "{report}");
}

#[test]
fn an_alrm_without_a_deadline_bounds_the_delivery_as_the_deadline_would() {
    // ALRM is the deadline, now: the copy-out gets a grace period after
    // it, and the status is the deadline's.
    let (status, report) = signal_with_a_stalled_delivery(libc::SIGALRM);
    assert_eq!(status.code(), Some(124), "{report}");
    assert_eq!(report["delivery_cut_off"], true, "{report}");
    assert_eq!(report["timed_out"], true, "{report}");
}

#[test]
fn a_stdin_pipe_is_handed_over_so_a_while_read_loop_keeps_its_input() {
    // Caught by an acceptance test: stdin pipes were streamed, so
    // childminder read ahead of a command that never read its stdin, and a
    // shell loop feeding on the same pipe lost the rest of its lines.
    let script = format!(
        "printf 'a\\nb\\nc\\n' | while read l; do echo $l; {} run -- true; done",
        env!("CARGO_BIN_EXE_childminder")
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\nc\n", "{out:?}");
    // And what a reading command leaves in the pipe stays for the next.
    let script = format!(
        "seq 3 | {{ {} run --report /dev/stderr -- sh -c 'read l; echo $l'; cat; }}",
        env!("CARGO_BIN_EXE_childminder")
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n", "{out:?}");
    let report = last_line_json(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        report["inherited_streams"],
        serde_json::json!(["stdin"]),
        "{report}"
    );
}

/// Runs childminder with `args`, its stdout `stdout` (stdin and stderr on
/// `/dev/null`), to its end: due well within a second, killed after 15 s,
/// where a copy-out blocked on its destination would still be.
fn run_with_stdout(args: &[&str], stdout: impl Into<Stdio>) -> std::process::ExitStatus {
    let mut child = childminder()
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_or_kill_after(
        &mut child,
        &format!("childminder {args:?}"),
        Duration::from_secs(15),
    )
}

/// `yes` under `-t 300ms -g 300ms`, its stdout `stdout`, nothing reading
/// it: childminder must still end at the deadline's bound with 124 and say
/// it cut the delivery off.
fn stalled_destination_is_cut_off(extra: &[&str], stdout: impl Into<Stdio>) {
    let path = temp_path("report.json");
    let mut args = vec!["run", "-t", "300ms", "-g", "300ms"];
    args.extend(extra);
    args.extend(["--report", path.to_str().unwrap(), "--", "yes"]);
    let status = run_with_stdout(&args, stdout);
    let report: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let _ = fs::remove_file(&path);
    assert_eq!(status.code(), Some(124), "{report}");
    assert_eq!(report["delivery_cut_off"], true, "{report}");
}

#[test]
fn a_terminal_nobody_reads_cannot_keep_stream_stdio_past_the_deadline() {
    // A paused terminal: its buffer fills and a blocking write would wait
    // for ever. The copy-out writes through a private non-blocking
    // description of it, so the deadline still bounds childminder.
    let pty = openpty();
    stalled_destination_is_cut_off(&["--stream-stdio"], terminal(&pty));
    drop(pty);
}

#[test]
fn a_socket_nobody_reads_cannot_keep_childminder_past_the_deadline() {
    // A stuck log shipper on a socket: the socket's buffer fills, and
    // neither a blocking write nor a splice may wait on it.
    let (ours, unread) = std::os::unix::net::UnixStream::pair().unwrap();
    stalled_destination_is_cut_off(&[], std::os::fd::OwnedFd::from(ours));
    drop(unread);
}

#[test]
fn a_socket_whose_reader_has_gone_ends_the_command_like_a_closed_pipe() {
    // EPIPE from the socket: the copy-out stops, and the command meets the
    // closed pipe at its next write, as in a pipeline; nothing spins.
    let (ours, gone) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(gone);
    let status = run_with_stdout(&["run", "--", "yes"], std::os::fd::OwnedFd::from(ours));
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
}

#[test]
fn a_slow_reader_without_a_deadline_still_gets_every_byte() {
    // The bound is the deadline's: without one, childminder waits for its
    // reader as long as `cat` would, and nothing is cut off.
    let run = Running::start(&[
        "run",
        "--report",
        "-",
        "--",
        "head",
        "-c",
        "300000",
        "/dev/zero",
    ]);
    std::thread::sleep(Duration::from_millis(300)); // a reader that is late, not absent
    let out = run.finish();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.len(), 300_000);
    let report = last_line_json(&out.stderr);
    assert_eq!(report["delivery_cut_off"], false);
    assert_eq!(report["output_cut_off"], false);
    assert_eq!(report["stdout_bytes"], 300_000);
}

/// childminder with stdout on `/dev/full`: every write fails with ENOSPC.
fn run_into_dev_full(args: &[&str]) -> (i32, String) {
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = childminder()
        .args(args)
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_that_cannot_be_delivered_is_not_a_success() {
    // `childminder run -- echo hello > /dev/full` exited 0.
    let (code, stderr) = run_into_dev_full(&["run", "--report", "-", "--", "echo", "hello"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let report = last_line_json(&stderr);
    assert_eq!(report["worker_errors"][0]["stream"], "stdout");
    assert_eq!(report["worker_errors"][0]["op"], "consume");
    assert_eq!(report["exit_status"], 125);
    // A failure status of the command says more, and stays.
    let (code, stderr) = run_into_dev_full(&["run", "--", "sh", "-c", "echo hello; exit 3"]);
    assert_eq!(code, 3, "{stderr}");
    // More than the pipes hold: the pipe closed on the failure ends the
    // command by SIGPIPE, which is childminder's doing, not the command's
    // failure (an acceptance run got 141, as for a reader that left).
    let (code, stderr) = run_into_dev_full(&[
        "run",
        "--report",
        "-",
        "--",
        "head",
        "-c",
        "3000000",
        "/dev/zero",
    ]);
    assert_eq!(code, 125, "{stderr}");
    let report = last_line_json(&stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGPIPE", "{report}");
    assert_eq!(report["exit_status"], 125, "{report}");
    // The escalation's own SIGPIPE (`-s PIPE`) is the deadline's, not the
    // closed pipe's (a review got 125).
    let (code, stderr) = run_into_dev_full(&[
        "run",
        "-s",
        "PIPE",
        "-t",
        "300ms",
        "--",
        "sh",
        "-c",
        "echo hi; sleep 5",
    ]);
    assert_eq!(code, 124, "{stderr}");
}

/// A reader gone before the command wrote anything was reported as a
/// failed copy (`worker_errors`: EPIPE on stdout), though no byte was lost:
/// splice checks the destination before finding the source at its end.
#[test]
fn a_reader_that_left_before_any_output_is_no_failed_copy() {
    let path = temp_path("left-early.json");
    let mut child = childminder()
        .args([
            "run",
            "--report",
            path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "sleep 0.3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_or_kill(&mut child, "childminder with its reader gone");
    let report: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let _ = fs::remove_file(&path);
    assert_eq!(status.code(), Some(0), "{report}");
    assert_eq!(report["worker_errors"], serde_json::json!([]), "{report}");
}

#[test]
fn output_appended_to_a_file_arrives() {
    // splice(2) refuses O_APPEND files (`>>`): whatever path the copy-out
    // takes into a file, an appended one gets every byte.
    let path = temp_path("append.txt");
    fs::write(&path, "before\n").unwrap();
    let file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    let status = childminder()
        .args(["run", "--", "seq", "3"])
        .stdin(Stdio::null())
        .stdout(file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(fs::read_to_string(&path).unwrap(), "before\n1\n2\n3\n");
    let _ = fs::remove_file(&path);
}

#[test]
fn output_written_in_bursts_into_a_file_all_arrives() {
    // Into a file the copy-out reads the command's pipe into a buffer.
    // After a read that found data it reads again: while the command
    // pauses between bursts that read finds the pipe empty (EAGAIN), which
    // means "wait", not "stop copying".
    let path = temp_path("bursts.txt");
    let file = fs::File::create(&path).unwrap();
    let status = childminder()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo one; sleep 0.2; echo two; sleep 0.2; echo three",
        ])
        .stdin(Stdio::null())
        .stdout(file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
    let _ = fs::remove_file(&path);
}

/// A pseudo-terminal: the master (the test's side) and the slave (what
/// childminder is given as its terminal).
struct Pty {
    master: fs::File,
    slave: fs::File,
}

fn openpty() -> Pty {
    let (master, slave) = pty::openpty();
    Pty { master, slave }
}

impl Pty {
    /// Everything the terminal shows until every slave fd is closed.
    fn read_all(mut self) -> String {
        drop(self.slave);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // EIO: the last slave fd was closed.
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

const WHAT_IS_A_TERMINAL: &str = "for fd in 0 1 2; do if [ -t $fd ]; then printf 'tty%s ' $fd; else printf 'no%s ' $fd; fi; done; echo";

/// Runs childminder with `args` (the report goes to a file) and the
/// streams `stdio` makes of a fresh terminal; returns what the command
/// printed there (or on the stdout pipe), its status and the report.
fn run_at_terminal(args: &[&str], stdio: impl FnOnce(&mut Command, &Pty)) -> (String, i32, Value) {
    let pty = openpty();
    let path = temp_path("report.json");
    let mut cmd = childminder();
    cmd.arg("run")
        .args(["--report", path.to_str().unwrap()])
        .args(args)
        .args(["--", "sh", "-c", WHAT_IS_A_TERMINAL])
        .stdout(Stdio::piped());
    stdio(&mut cmd, &pty);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut piped = String::new();
    child
        .stdout
        .take()
        .map(|mut out| out.read_to_string(&mut piped));
    let shown = pty.read_all();
    let code = wait_or_kill(&mut child, "childminder").code().unwrap();
    let report: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let _ = fs::remove_file(&path);
    (shown + &piped, code, report)
}

fn terminal(pty: &Pty) -> fs::File {
    pty.slave.try_clone().unwrap()
}

#[test]
fn streams_that_are_terminals_are_handed_to_the_command() {
    // `childminder run -- cargo test` at a terminal gave the command pipes:
    // no colours, no progress bars, no line editing.
    let (shown, code, report) = run_at_terminal(&[], |cmd, pty| {
        cmd.stdin(terminal(pty))
            .stdout(terminal(pty))
            .stderr(terminal(pty));
    });
    assert_eq!(code, 0);
    assert!(shown.contains("tty0 tty1 tty2"), "{shown:?}");
    assert_eq!(
        report["inherited_streams"],
        serde_json::json!(["stdin", "stdout", "stderr"])
    );
    assert_eq!(report["stdout_bytes"], Value::Null);
}

#[test]
fn a_pipe_next_to_a_terminal_is_still_streamed_and_counted() {
    let (shown, code, report) = run_at_terminal(&[], |cmd, pty| {
        cmd.stdin(terminal(pty)).stderr(terminal(pty));
    });
    assert_eq!(code, 0);
    assert!(shown.contains("tty0 no1 tty2 \n"), "{shown:?}");
    assert_eq!(
        report["inherited_streams"],
        serde_json::json!(["stdin", "stderr"])
    );
    assert_eq!(report["stdout_bytes"], 15);
}

#[test]
fn stream_stdio_streams_terminals_too() {
    let (shown, code, report) = run_at_terminal(&["--stream-stdio"], |cmd, pty| {
        cmd.stdin(Stdio::null())
            .stdout(terminal(pty))
            .stderr(terminal(pty));
    });
    assert_eq!(code, 0);
    assert!(shown.contains("no0 no1 no2"), "{shown:?}");
    // stdin is /dev/null, a file: nothing to stream, so it is handed over.
    assert_eq!(report["inherited_streams"], serde_json::json!(["stdin"]));
    assert_eq!(report["stdout_bytes"], 13);
}

#[test]
fn running_out_of_fds_at_any_step_of_the_start_is_a_clean_125() {
    // tokio's signal driver panicked (101, a backtrace) at `ulimit -n 6`.
    for limit in 5..=16 {
        let out = childminder()
            .args(["run", "--", "true"])
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output_with_fd_limit(limit);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        if stderr.contains("failed to start") {
            // From here on the limit hits the library's spawn, whose
            // errors the library's tests cover.
            break;
        }
        assert!(
            code == Some(0) || (code == Some(125) && stderr.starts_with("childminder: ")),
            "ulimit -n {limit}: {code:?} {stderr}"
        );
        assert!(!stderr.contains("panicked"), "ulimit -n {limit}: {stderr}");
    }
}

trait WithFdLimit {
    fn output_with_fd_limit(&mut self, limit: u64) -> std::process::Output;
}

impl WithFdLimit for Command {
    /// Runs to the end with `RLIMIT_NOFILE` set to `limit` in the child,
    /// which starts with fds 0-2 only: whatever else the test runner left
    /// open and inheritable (cargo-mutants' jobserver pipe, say) would
    /// otherwise take the few fds the limit leaves, and the dynamic loader
    /// would fail before childminder runs at all.
    fn output_with_fd_limit(&mut self, limit: u64) -> std::process::Output {
        // SAFETY: setrlimit and close_range are async-signal-safe and
        // touch only the child; CLOEXEC (not closing) keeps std's own
        // exec-error pipe working.
        unsafe {
            self.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let first_extra: libc::c_uint = 3;
                if libc::syscall(
                    libc::SYS_close_range,
                    first_extra,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.output().unwrap()
    }
}

/// A shell leading a new session whose controlling terminal is a fresh
/// pseudo-terminal, as a terminal emulator starts one; the test types into
/// it and reads what it shows.
struct Session {
    typing: fs::File,
    shown: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: String,
    shell: Child,
}

impl Session {
    fn start(script: &str) -> Session {
        let pty = openpty();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .env("CM", env!("CARGO_BIN_EXE_childminder"))
            .stdin(terminal(&pty))
            .stdout(terminal(&pty))
            .stderr(terminal(&pty));
        // SAFETY: setsid and ioctl are async-signal-safe; only the child runs
        // them.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let shell = cmd.spawn().unwrap();
        drop(cmd);
        let Pty { mut master, slave } = pty;
        drop(slave);
        let typing = master.try_clone().unwrap();
        let (tx, shown) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Session {
            typing,
            shown,
            seen: String::new(),
            shell,
        }
    }

    /// Waits until the terminal has shown `needle`; returns all it showed.
    fn wait_for(&mut self, needle: &str) -> &str {
        let started = Instant::now();
        while !self.seen.contains(needle) {
            self.more(started, needle);
        }
        &self.seen
    }

    /// Adds the terminal's next output to `seen`; gives up (and ends the
    /// session) [`WATCHDOG`] after `started`.
    fn more(&mut self, started: Instant, waiting_for: &str) {
        let left = WATCHDOG.saturating_sub(started.elapsed());
        match self.shown.recv_timeout(left) {
            Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => {
                let _ = self.shell.kill();
                panic!(
                    "the terminal never showed {waiting_for:?}; it showed {:?}",
                    self.seen
                );
            }
        }
    }

    fn type_in(&mut self, keys: &[u8]) {
        std::io::Write::write_all(&mut self.typing, keys).unwrap();
    }

    /// The `pgrp=P tpgid=T.` line after `label`: whether P == T.
    fn held_by_printer(&mut self, label: &str) -> bool {
        let start = format!("{label} pgrp=");
        self.wait_for(&start);
        // The whole line: it ends with a '.'.
        let started = Instant::now();
        while !self.seen[self.seen.find(&start).unwrap()..].contains('.') {
            self.more(started, "the end of the line");
        }
        pty::holds_terminal(&self.seen, label)
    }

    fn finish(mut self) {
        wait_or_kill(&mut self.shell, "the session's shell");
    }
}

#[test]
fn a_terminal_program_in_its_own_group_reads_the_terminal_and_gives_it_back() {
    // `childminder run --inherit-stdio -t 1h -- ./tool` (the --help
    // example) hung on a terminal: the tool, in its own group, was stopped
    // by SIGTTIN at its first read.
    let mut session = Session::start(&format!(
        r#""$CM" run -t 60 -- sh -c 'echo ready; read x; echo "got $x"; {during}'; echo "status $?"; {after}"#,
        during = pty::who_has_the_terminal("during"),
        after = pty::who_has_the_terminal("after"),
    ));
    session.wait_for("ready");
    session.type_in(b"hello\n");
    session.wait_for("got hello");
    assert!(
        session.held_by_printer("during"),
        "the command's group had no terminal: {}",
        session.seen
    );
    session.wait_for("status 0");
    assert!(
        session.held_by_printer("after"),
        "the terminal was not given back: {}",
        session.seen
    );
    session.finish();
}

#[test]
fn the_terminal_is_given_back_after_an_escalation() {
    let mut session = Session::start(&format!(
        r#""$CM" run -t 300ms -g 300ms -- sh -c 'trap "" TERM; echo ready; read x'; echo "status $?"; {after}"#,
        after = pty::who_has_the_terminal("after"),
    ));
    session.wait_for("ready");
    session.wait_for("status 124");
    assert!(
        session.held_by_printer("after"),
        "the terminal was not given back: {}",
        session.seen
    );
    session.finish();
}

#[test]
fn ctrl_z_stops_the_command_with_childminder_and_fg_continues_it_at_the_terminal() {
    // A job-control shell (`set -m`, as an interactive one) runs
    // childminder as a job of its own. Ctrl-Z stops the command (the
    // terminal's foreground group); childminder must then stop too, or the
    // shell waits forever on a job whose command is stopped; `fg` must
    // bring the command back to the terminal.
    let mut session = Session::start(&format!(
        r#"set -m; "$CM" run -- sh -c 'echo ready; read x; echo "got $x"'; echo "stopped $?"; fg >/dev/null; echo "status $?"; {after}"#,
        after = pty::who_has_the_terminal("after"),
    ));
    session.wait_for("ready");
    session.type_in(b"\x1a"); // Ctrl-Z: SIGTSTP to the terminal's foreground group
    session.wait_for(&format!("stopped {}", 128 + libc::SIGTSTP));
    session.type_in(b"again\n");
    session.wait_for("got again");
    session.wait_for("status 0");
    assert!(
        session.held_by_printer("after"),
        "the terminal was not given back: {}",
        session.seen
    );
    session.finish();
}

#[test]
fn a_pipeline_stage_leaves_the_terminal_to_its_job() {
    // Caught by an acceptance run: in `cat | childminder run -- ...` at a
    // job-control shell, childminder gave the terminal to its command's
    // group, and the stage before it, left in the background, was stopped
    // by SIGTTIN at its first read of the terminal. The first stage reads
    // only once the command runs (it waits for the command's file).
    let ran = temp_path("running");
    let mut session = Session::start(&format!(
        r#"set -m; {{ while [ ! -e {ran} ]; do :; done; read x; echo "read $x"; }} | "$CM" run -- sh -c 'touch {ran}; echo ready >&2; cat'; echo "status $?""#,
        ran = ran.display(),
    ));
    session.wait_for("ready");
    session.type_in(b"hello\n");
    session.wait_for("read hello");
    session.wait_for("status 0");
    session.finish();
}
