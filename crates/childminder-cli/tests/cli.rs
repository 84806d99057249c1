//! Integration tests of the real `childminder` binary.
//!
//! Every child is `sh -c`. Tests synchronise on what the child prints
//! (`ready`, a pid), never on sleeps, and their time bounds are generous:
//! the machines are noisy. Grace periods are ~200 ms to keep the file fast.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any single childminder run may take before the test gives up.
const WATCHDOG: Duration = Duration::from_secs(60);

/// The binary, with INT, TERM, HUP and QUIT at their defaults whatever the
/// test runner left them at (childminder keeps ignored signals ignored),
/// and no core files (a child ended by SIGQUIT would write one).
fn childminder() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_childminder"));
    // SAFETY: signal() and setrlimit() are async-signal-safe; nothing else
    // runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            Ok(())
        });
    }
    cmd
}

/// What a finished run left.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    fn code(&self) -> i32 {
        self.code.unwrap_or_else(|| {
            panic!(
                "childminder died of signal {:?}; stderr: {}",
                self.signal, self.stderr
            )
        })
    }

    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A childminder process the test talks to.
struct Running {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    stdout_reader: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        Running::start_with(childminder().args(args).stdin(Stdio::null()))
    }

    fn start_with(cmd: &mut Command) -> Running {
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start childminder");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        Running {
            child,
            stdout: Some(stdout),
            stdout_reader: None,
            stderr: Some(stderr),
            started,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next line of childminder's stdout (the child's), without `\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        assert!(n > 0, "childminder's stdout ended before a line came");
        line.trim_end_matches('\n').to_owned()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill with integers; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Copies childminder's stdout in the background from now on, so a
    /// large stream cannot fill the pipe while the test does something else.
    fn drain_stdout(&mut self) {
        let mut stdout = self.stdout.take().unwrap();
        self.stdout_reader = Some(std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        }));
    }

    /// Waits for childminder to end (killing it after [`WATCHDOG`]) and
    /// collects the rest of its output.
    fn finish(mut self) -> Finished {
        if self.stdout.is_some() {
            self.drain_stdout();
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > WATCHDOG {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("childminder still running after {WATCHDOG:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        Finished {
            code: status.code(),
            signal: status.signal(),
            stdout: self.stdout_reader.take().unwrap().join().unwrap(),
            stderr: String::from_utf8_lossy(&self.stderr.take().unwrap().join().unwrap())
                .into_owned(),
            elapsed,
        }
    }
}

/// Runs childminder to its end with empty stdin.
fn run(args: &[&str]) -> Finished {
    Running::start(args).finish()
}

/// A fresh path under the target's temporary directory.
fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!(
        "cli-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs childminder with `--report FILE` added in front and returns the
/// run and the parsed report.
fn run_with_report(args: &[&str]) -> (Finished, Value) {
    let path = temp_path("report.json");
    let mut full = vec!["run", "--report", path.to_str().unwrap()];
    full.extend_from_slice(&args[1..]);
    assert_eq!(args[0], "run");
    let finished = run(&full);
    let text = fs::read_to_string(&path).expect("report written");
    let _ = fs::remove_file(&path);
    let report =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}): {text}"));
    (finished, report)
}

/// The report written with `--report -`: the last line of stderr (the
/// child's own stderr comes before it).
fn last_line_json(stderr: &str) -> Value {
    let line = stderr.trim_end().lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no report ({e}) in {stderr}"))
}

/// The state letter of /proc/PID/stat, or `None` when there is no such
/// process.
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Waits up to 2 s for `pid` to be gone (a zombie counts as gone: an
/// orphan may take a moment to be reaped by init). Kills it if not.
fn assert_dies(pid: u32, what: &str) {
    let start = Instant::now();
    loop {
        match proc_state(pid) {
            None | Some('Z') | Some('X') => return,
            Some(_) if start.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Some(state) => {
                // SAFETY: kill with integers; best-effort cleanup.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("{what} (pid {pid}) is still alive (state {state})");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Exit statuses
// ---------------------------------------------------------------------------

#[test]
fn exits_with_the_childs_code() {
    assert_eq!(run(&["run", "--", "sh", "-c", "exit 7"]).code(), 7);
    assert_eq!(run(&["run", "--", "true"]).code(), 0);
    // `--` is optional; the program's own options stay its own.
    let out = run(&["run", "-g", "1s", "sh", "-c", "echo $1", "sh", "-t"]);
    assert_eq!((out.code(), out.stdout_str().as_str()), (0, "-t\n"));
}

#[test]
fn a_signal_death_is_128_plus_n() {
    let out = run(&["run", "--", "sh", "-c", "kill -USR1 $$"]);
    assert_eq!(out.code(), 128 + libc::SIGUSR1);
}

#[test]
fn the_deadline_escalates_and_exits_124() {
    let (out, report) = run_with_report(&["run", "-t", "200ms", "-g", "10s", "--", "sleep", "30"]);
    assert_eq!(out.code(), 124);
    assert!(out.elapsed < Duration::from_secs(8), "{:?}", out.elapsed);
    assert_eq!(report["timed_out"], true);
    assert_eq!(report["termination"], "escalated");
    assert_eq!(report["escalation_cause"], "deadline");
    assert_eq!(report["exit"]["signal"], libc::SIGTERM);
    assert_eq!(report["exit"]["signal_name"], "SIGTERM");
    let term = report["term_sent_after_ms"].as_u64().unwrap();
    assert!((190..5000).contains(&term), "TERM sent after {term} ms");
    assert_eq!(report["kill_sent_after_ms"], Value::Null);
}

#[test]
fn preserve_status_gives_the_childs_status_on_the_deadline() {
    let out = run(&[
        "run",
        "--preserve-status",
        "-t",
        "100ms",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.code(), 128 + libc::SIGTERM);
    // The first signal can be chosen.
    let out = run(&[
        "run",
        "--preserve-status",
        "-t",
        "100ms",
        "-s",
        "INT",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.code(), 128 + libc::SIGINT);
}

#[test]
fn a_deadline_of_zero_means_none() {
    let out = run(&["run", "-t", "0", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code(), 3);
}

#[test]
fn a_child_that_ignores_term_is_killed_after_the_grace_period() {
    let script = "trap '' TERM; echo ready; sleep 30";
    let mut run = Running::start(&[
        "run",
        "--report",
        "-",
        "--preserve-status",
        "-t",
        "100ms",
        "-g",
        "200ms",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(run.line(), "ready");
    let out = run.finish();
    assert_eq!(out.code(), 128 + libc::SIGKILL);
    let report: Value = last_line_json(&out.stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGKILL");
    let term = report["term_sent_after_ms"].as_u64().unwrap();
    let kill = report["kill_sent_after_ms"].as_u64().unwrap();
    assert!(kill >= term + 190, "TERM at {term} ms, KILL at {kill} ms");
    assert_eq!(report["timed_out"], true);

    // Without --preserve-status the same run is a time-out.
    let out = self::run(&[
        "run", "-t", "100ms", "-g", "200ms", "--", "sh", "-c", script,
    ]);
    assert_eq!(out.code(), 124);
}

#[test]
fn a_missing_program_is_127() {
    let out = run(&["run", "--", "no-such-program-childminder-test"]);
    assert_eq!(out.code(), 127);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    let out = run(&["run", "--", "/no/such/dir/program"]);
    assert_eq!(out.code(), 127);
}

#[test]
fn a_program_that_cannot_run_is_126() {
    let path = temp_path("not-executable");
    fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let out = run(&["run", "--", path.to_str().unwrap()]);
    let _ = fs::remove_file(&path);
    assert_eq!(out.code(), 126, "{}", out.stderr);
    assert_eq!(run(&["run", "--", "/"]).code(), 126);
}

#[test]
fn usage_errors_are_125_with_a_clear_message() {
    for (args, message) in [
        (&["run", "-t", "1m30", "--", "true"][..], "30 has no unit"),
        (&["run", "-t", "-1s", "--", "true"], "negative"),
        (&["run", "-t", "", "--", "true"], "empty"),
        (&["run", "-g", "5 minutes", "--", "true"], "unknown unit"),
        (&["run", "-t", "99999999999d", "--", "true"], "too large"),
        (&["run", "-s", "TERMINATE", "--", "true"], "unknown signal"),
        (&["run", "-s", "0", "--", "true"], "unknown signal"),
        (&["run"], "PROGRAM"),
        (&["run", "--"], "PROGRAM"),
        (&["run", "--bogus", "--", "true"], "--bogus"),
        (&[], "Usage"),
        (&["frobnicate"], "frobnicate"),
    ] {
        let out = run(args);
        assert_eq!(out.code(), 125, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(message),
            "{args:?}: {message:?} not in {}",
            out.stderr
        );
    }
}

#[test]
fn an_unwritable_report_is_125_and_nothing_runs() {
    let marker = temp_path("marker");
    let script = format!("touch {}", marker.display());
    let out = run(&[
        "run",
        "--report",
        "/no/such/dir/report.json",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.code(), 125);
    assert!(out.stderr.contains("report"), "{}", out.stderr);
    assert!(!marker.exists(), "the child ran");
}

#[test]
fn help_and_version_exit_0_and_explain_each_option() {
    let out = run(&["--help"]);
    assert_eq!(out.code(), 0);
    assert!(out.stdout_str().contains("childminder run"));
    let out = run(&["--version"]);
    assert_eq!(out.code(), 0);
    assert!(out.stdout_str().starts_with("childminder "));
    for help in [&["run", "--help"][..], &["help", "run"]] {
        let out = run(help);
        assert_eq!(out.code(), 0);
        let text = out.stdout_str();
        for needle in [
            "--timeout",
            "--grace",
            "-k",
            "--signal",
            "--no-group",
            "--report",
            "--inherit-stdio",
            "--preserve-status",
            "124",
            "125",
            "126",
            "127",
            "1m30s",
        ] {
            assert!(text.contains(needle), "{needle} not in run --help");
        }
        assert!(
            text.matches("Example: ").count() >= 7,
            "an example per option"
        );
    }
}

// ---------------------------------------------------------------------------
// Process groups
// ---------------------------------------------------------------------------

#[test]
fn grandchildren_die_with_the_group_on_the_deadline() {
    let mut run = Running::start(&[
        "run",
        "-t",
        "300ms",
        "-g",
        "200ms",
        "--",
        "sh",
        "-c",
        "sleep 300 & echo $!; wait",
    ]);
    let grandchild: u32 = run.line().parse().unwrap();
    let out = run.finish();
    assert_eq!(out.code(), 124);
    assert_dies(grandchild, "the grandchild");
}

#[test]
fn a_grandchild_left_behind_by_a_child_that_exited_is_swept() {
    let mut run = Running::start(&[
        "run",
        "-g",
        "200ms",
        "--",
        "sh",
        "-c",
        "sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
    ]);
    let grandchild: u32 = run.line().parse().unwrap();
    let out = run.finish();
    assert_eq!(out.code(), 0);
    assert_dies(grandchild, "the grandchild");
}

#[test]
fn the_child_leads_its_own_group_unless_no_group() {
    // Field 5 of /proc/PID/stat is the process group.
    let script = "echo $$; cut -d' ' -f5 /proc/$$/stat";
    let out = run(&["run", "--", "sh", "-c", script]);
    let lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    assert_eq!(lines[0], lines[1], "the child is not its group's leader");

    let out = run(&["run", "--no-group", "--", "sh", "-c", script]);
    let lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    // SAFETY: getpgrp has no arguments and cannot fail.
    let ours = unsafe { libc::getpgrp() };
    assert_eq!(
        lines[1],
        ours.to_string(),
        "the child left childminder's group"
    );
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

#[test]
fn sigterm_is_forwarded_to_the_child() {
    let mut run = Running::start(&[
        "run",
        "--report",
        "-",
        "-t",
        "60s",
        "-g",
        "30s",
        "--",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 1; done",
    ]);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGTERM);
    assert_eq!(run.line(), "got TERM");
    let out = run.finish();
    assert_eq!(out.code(), 3);
    let report: Value = last_line_json(&out.stderr);
    assert_eq!(report["signals_received"], serde_json::json!(["SIGTERM"]));
    assert_eq!(report["escalation_cause"], "signal");
    assert_eq!(report["termination"], "escalated");
    assert_eq!(report["timed_out"], false);
    assert_eq!(report["exit"], serde_json::json!({"code": 3}));
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let mut run = Running::start(&[
        "run",
        "--report",
        "-",
        "-t",
        "60s",
        "-g",
        "30s",
        "--",
        "sh",
        "-c",
        "trap 'echo got TERM' TERM; echo ready; while :; do sleep 1; done",
    ]);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGTERM);
    assert_eq!(run.line(), "got TERM");
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.code(), 128 + libc::SIGKILL);
    assert!(
        out.elapsed < Duration::from_secs(20),
        "waited for the grace period: {:?}",
        out.elapsed
    );
    let report: Value = last_line_json(&out.stderr);
    assert_eq!(
        report["signals_received"],
        serde_json::json!(["SIGTERM", "SIGTERM"])
    );
    assert!(report["kill_sent_after_ms"].is_u64());
}

#[test]
fn int_hup_and_quit_are_forwarded_and_end_the_child() {
    for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        let mut run = Running::start(&[
            "run",
            "-t",
            "60s",
            "-g",
            "30s",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 60",
        ]);
        assert_eq!(run.line(), "ready");
        run.signal(sig);
        let out = run.finish();
        assert_eq!(out.code(), 128 + sig, "signal {sig}: {}", out.stderr);
    }
}

#[test]
fn a_forwarded_signal_the_child_ignores_is_followed_by_kill() {
    let mut run = Running::start(&[
        "run",
        "-t",
        "60s",
        "-g",
        "200ms",
        "--",
        "sh",
        "-c",
        "trap '' INT; echo ready; sleep 60",
    ]);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGINT);
    let out = run.finish();
    assert_eq!(out.code(), 128 + libc::SIGKILL);
}

#[test]
fn an_ignored_signal_stays_ignored() {
    let mut cmd = childminder();
    cmd.args([
        "run",
        "--report",
        "-",
        "-t",
        "60s",
        "-g",
        "30s",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 60",
    ])
    .stdin(Stdio::null());
    // SAFETY: signal() is async-signal-safe. Runs after childminder()'s reset.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut run = Running::start_with(&mut cmd);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGHUP);
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.code(), 128 + libc::SIGTERM);
    let report: Value = last_line_json(&out.stderr);
    assert_eq!(report["signals_received"], serde_json::json!(["SIGTERM"]));
}

#[test]
fn sigkill_of_childminder_takes_the_child_along() {
    let mut run = Running::start(&["run", "--", "sh", "-c", "echo $$; exec sleep 300"]);
    let child: u32 = run.line().parse().unwrap();
    assert!(matches!(proc_state(child), Some(s) if s != 'Z'));
    run.signal(libc::SIGKILL);
    let out = run.finish();
    assert_eq!(out.signal, Some(libc::SIGKILL));
    assert_dies(child, "the child of a SIGKILLed childminder");
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// What `seq 1 n` prints.
fn seq(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        writeln!(out, "{i}").unwrap();
    }
    out
}

#[test]
fn a_large_stream_is_copied_byte_exact() {
    let (out, report) =
        run_with_report(&["run", "--", "sh", "-c", "seq 1 1500000; seq 1 200000 >&2"]);
    assert_eq!(
        out.code(),
        0,
        "{}",
        &out.stderr[..out.stderr.len().min(500)]
    );
    let expected = seq(1_500_000);
    assert!(
        out.stdout == expected,
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
    assert!(out.stderr.as_bytes() == seq(200_000), "stderr differs");
    assert_eq!(report["stdout_bytes"], expected.len() as u64);
    assert_eq!(report["stderr_bytes"], seq(200_000).len() as u64);
}

#[test]
fn every_byte_arrives_when_the_escalation_starts_mid_stream() {
    // The child ignores TERM (and so does seq) and exits by itself once
    // seq is done: TERM arrives while megabytes are still in flight.
    let mut run = Running::start(&[
        "run",
        "--report",
        "-",
        "-t",
        "60s",
        "-g",
        "30s",
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo ready; seq 1 500000",
    ]);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout == seq(500_000),
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
    let report: Value = last_line_json(&out.stderr);
    assert_eq!(report["termination"], "escalated");
    assert_eq!(report["stdout_bytes"], seq(500_000).len() as u64 + 6);
}

#[test]
fn every_byte_arrives_when_the_child_is_killed_after_writing() {
    let mut run = Running::start(&[
        "run",
        "-t",
        "60s",
        "-g",
        "200ms",
        "--",
        "sh",
        "-c",
        "seq 1 500000; exec sleep 60",
    ]);
    run.drain_stdout();
    // Handshake: the shell has exec'd sleep, so seq's output is all written
    // (some of it may still be in the pipe or in childminder).
    let start = Instant::now();
    loop {
        let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", run.pid()))
            .unwrap_or_default();
        let sleeping = children.split_whitespace().any(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        if sleeping {
            break;
        }
        assert!(start.elapsed() < WATCHDOG, "the child never reached sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.code(), 128 + libc::SIGTERM);
    assert!(
        out.stdout == seq(500_000),
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
}

#[test]
fn stdin_is_forwarded_to_the_child() {
    let input: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut cmd = childminder();
    cmd.args(["run", "--", "cat"]).stdin(Stdio::piped());
    let mut run = Running::start_with(&mut cmd);
    let mut stdin = run.child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&data).unwrap();
        // Dropping stdin closes it: cat sees EOF and exits.
    });
    let out = run.finish();
    writer.join().unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout == input,
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
}

#[test]
fn a_closed_reader_gives_the_child_sigpipe_like_head() {
    let mut run = Running::start(&["run", "--report", "-", "--", "yes"]);
    let mut first = [0u8; 10];
    run.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\ny\ny\ny\ny\n");
    // Close our end, as `head` does when it has had enough.
    drop(run.stdout.take());
    run.stdout_reader = Some(std::thread::spawn(Vec::new));
    let out = run.finish();
    assert_eq!(out.code(), 128 + libc::SIGPIPE, "{}", out.stderr);
    assert!(
        !out.stderr.contains("warning"),
        "EPIPE is not worth a warning: {}",
        out.stderr
    );
    let report: Value = last_line_json(&out.stderr);
    assert_eq!(report["worker_errors"][0]["stream"], "stdout");
    assert_eq!(report["worker_errors"][0]["op"], "consume");
}

#[test]
fn inherit_stdio_hands_the_streams_to_the_child() {
    let mut cmd = childminder();
    cmd.args([
        "run",
        "--inherit-stdio",
        "--report",
        "-",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; cat",
    ])
    .stdin(Stdio::piped());
    let mut run = Running::start_with(&mut cmd);
    let mut stdin = run.child.stdin.take().unwrap();
    stdin.write_all(b"in\n").unwrap();
    drop(stdin);
    let out = run.finish();
    assert_eq!(out.code(), 0);
    assert_eq!(out.stdout_str(), "out\nin\n");
    let (err, report) = out.stderr.split_once('\n').unwrap();
    assert_eq!(err, "err");
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["stdout_bytes"], Value::Null);
    assert_eq!(report["stderr_bytes"], Value::Null);
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

#[test]
fn the_report_has_every_key_with_its_type() {
    let (out, report) = run_with_report(&["run", "--", "sh", "-c", "echo hello; exit 5"]);
    assert_eq!(out.code(), 5);
    assert_eq!(out.stdout_str(), "hello\n");
    let object = report.as_object().unwrap();
    let expected = [
        ("program", "string"),
        ("args", "array"),
        ("pid", "number"),
        ("exit", "object"),
        ("termination", "string"),
        ("timed_out", "bool"),
        ("escalation_cause", "null"),
        ("term_sent_after_ms", "null"),
        ("kill_sent_after_ms", "null"),
        ("runtime_ms", "number"),
        ("stdout_bytes", "number"),
        ("stderr_bytes", "number"),
        ("output_cut_off", "bool"),
        ("signals_received", "array"),
        ("worker_errors", "array"),
        ("supervisor_error", "null"),
        ("exit_status", "number"),
        ("inherited_streams", "array"),
        ("delivery_cut_off", "bool"),
    ];
    for (key, kind) in expected {
        let value = object
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert_eq!(actual, kind, "{key}: {value}");
    }
    assert_eq!(object.len(), expected.len(), "unexpected keys: {report}");
    assert_eq!(report["program"], "sh");
    assert_eq!(
        report["args"],
        serde_json::json!(["-c", "echo hello; exit 5"])
    );
    assert_eq!(report["exit"], serde_json::json!({"code": 5}));
    assert_eq!(report["termination"], "clean");
    assert_eq!(report["timed_out"], false);
    assert_eq!(report["stdout_bytes"], 6);
    assert_eq!(report["stderr_bytes"], 0);
    assert_eq!(report["exit_status"], 5);
}

#[test]
fn a_report_is_written_when_the_program_cannot_start() {
    let (out, report) = run_with_report(&["run", "--", "no-such-program-childminder-test"]);
    assert_eq!(out.code(), 127);
    assert_eq!(report["pid"], Value::Null);
    assert_eq!(report["exit"], Value::Null);
    assert_eq!(report["exit_status"], 127);
    assert!(
        report["supervisor_error"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
}

// ---------------------------------------------------------------------------
// Where the bytes go: the deadline bounds the copy-out; terminals are
// handed over
// ---------------------------------------------------------------------------

/// Waits for `child` to exit, killing it after [`WATCHDOG`].
fn wait_or_kill(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
}

#[test]
fn output_appended_to_a_file_arrives() {
    // splice(2) refuses O_APPEND files (`>>`): the copy falls back to
    // read/write instead of failing.
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

/// A pseudo-terminal: the master (the test's side) and the slave (what
/// childminder is given as its terminal).
struct Pty {
    master: fs::File,
    slave: fs::File,
}

fn openpty() -> Pty {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into the integers it is given; the
    // name, termios and window size are optional (null).
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned by nobody else.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        Pty {
            master: fs::File::from_raw_fd(master),
            slave: fs::File::from_raw_fd(slave),
        }
    }
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
    /// Runs to the end with `RLIMIT_NOFILE` set to `limit` in the child.
    fn output_with_fd_limit(&mut self, limit: u64) -> std::process::Output {
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            self.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.output().unwrap()
    }
}
