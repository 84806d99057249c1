//! The real `childminder` binary at the edges where a GNU `timeout` user
//! has expectations (issue 8): durations as GNU takes them, every signal
//! with a defined meaning, dispositions and masks passed on, exit by the
//! same signal, and a report that never blocks or changes the verdict.
//!
//! Tests synchronise on what the child prints (`ready`), never on sleeps.

mod common;

use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------
// Durations (§4)
// ---------------------------------------------------------------------------

#[test]
fn a_duration_below_the_resolution_is_the_smallest_deadline_not_none() {
    for tiny in ["1e-10", "0.5ns"] {
        let out = run(&["run", "-t", tiny, "-g", "10s", "--", "sleep", "30"]);
        assert_eq!(out.code(), 124, "-t {tiny}: {}", out.stderr);
        assert!(
            out.elapsed < Duration::from_secs(8),
            "-t {tiny}: {:?}",
            out.elapsed
        );
    }
}

#[test]
fn large_durations_mean_forever_as_in_gnu_timeout() {
    for huge in [
        "4294967296",
        "9223372036854775808d",
        "2.34e+5d",
        "inf",
        "infinity",
    ] {
        let (out, report) =
            run_with_report(&["run", "-t", huge, "-g", huge, "--", "sh", "-c", "exit 3"]);
        assert_eq!(out.code(), 3, "-t {huge}: {}", out.stderr);
        assert_eq!(report["timed_out"], false, "-t {huge}");
    }
}

#[test]
fn an_exponent_followed_by_a_unit_parses() {
    let out = run(&["run", "-t", "1e1s", "-g", "5e2ms", "--", "true"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// Signals (§3)
// ---------------------------------------------------------------------------

/// `-s 0` was a usage error; GNU takes it as "send nothing, then KILL after
/// the grace". A child that dies on any catchable signal dying by KILL
/// proves nothing was sent first.
#[test]
fn dash_s_0_sends_nothing_first_then_kill_after_the_grace() {
    let (out, report) = run_with_report(&[
        "run", "-t", "100ms", "-g", "300ms", "-s", "0", "--", "sleep", "30",
    ]);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGKILL", "{report}");
    let term = report["term_sent_after_ms"].as_u64().unwrap();
    let kill = report["kill_sent_after_ms"].as_u64().unwrap();
    assert!(kill >= term + 290, "{report}");
}

/// Caught by an acceptance run: GNU `timeout -s 0` sends SIGCONT after its
/// (empty) signal, so a stopped command goes on and may finish; childminder
/// left it stopped until the SIGKILL. The command stops itself, and once
/// continued it exits by itself, long before the grace period is over.
#[test]
fn dash_s_0_still_continues_a_stopped_command() {
    let (out, report) = run_with_report(&[
        "run",
        "-t",
        "200ms",
        "-g",
        "30s",
        "-s",
        "0",
        "--",
        "sh",
        "-c",
        "kill -STOP $$; echo continued",
    ]);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert_eq!(out.stdout_str(), "continued\n");
    assert_eq!(report["exit"]["code"], 0, "{report}");
    assert!(report["kill_sent_after_ms"].is_null(), "{report}");
}

/// Found in acceptance: after `-s 0`'s empty step, a TERM to childminder
/// was recorded and nothing sent, so the command ran on to the KILL a
/// grace period later; GNU `timeout` passes it on. The command says when
/// the step's SIGCONT came, then dies of the TERM by its own trap.
#[test]
fn after_dash_s_0_a_received_term_is_sent_on() {
    let report = temp_path("report.json");
    let mut run = Running::start(&[
        "run",
        "--report",
        report.to_str().unwrap(),
        "-t",
        "100ms",
        "-g",
        "30s",
        "-s",
        "0",
        "--",
        "sh",
        "-c",
        "trap 'echo continued' CONT; trap 'exit 9' TERM; echo ready; \
         while :; do sleep 0.05; done",
    ]);
    assert_eq!(run.line(), "ready");
    assert_eq!(run.line(), "continued", "the deadline's empty step");
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.code(), 124, "the deadline had expired: {}", out.stderr);
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report["exit"]["code"], 9,
        "its trap, not the KILL: {report}"
    );
    assert!(report["kill_sent_after_ms"].is_null(), "{report}");
    assert_eq!(report["signals_received"], serde_json::json!(["SIGTERM"]));
}

#[test]
fn a_realtime_signal_name_is_accepted_by_dash_s() {
    let (out, report) = run_with_report(&[
        "run", "-t", "100ms", "-g", "10s", "-s", "RTMIN+1", "--", "sleep", "30",
    ]);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGRTMIN+1", "{report}");
}

/// USR1, USR2, WINCH and the others killed childminder (no report; the
/// command died by the parent-death SIGKILL). Each is now passed on to the
/// command's group and recorded, and childminder stays alive.
#[test]
fn every_other_catchable_signal_is_forwarded_and_recorded() {
    let script = "for s in USR1 USR2 WINCH URG CONT; do trap \"echo got $s\" $s; done; \
                  echo ready; while :; do sleep 1 & wait $!; done";
    let mut run = Running::start(&[
        "run", "--report", "-", "-g", "10s", "--", "sh", "-c", script,
    ]);
    assert_eq!(run.line(), "ready");
    for (sig, name) in [
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGURG, "URG"),
        (libc::SIGCONT, "CONT"),
    ] {
        run.signal(sig);
        assert_eq!(run.line(), format!("got {name}"));
    }
    // A real-time signal the shell does not trap ends it, and childminder
    // then ends itself the same way.
    let rt = libc::SIGRTMIN() + 1;
    run.signal(rt);
    let out = run.finish();
    assert_eq!(out.signal, Some(rt), "{}", out.stderr);
    let report = last_line_json(&out.stderr);
    assert_eq!(
        report["signals_received"],
        serde_json::json!([
            "SIGUSR1",
            "SIGUSR2",
            "SIGWINCH",
            "SIGURG",
            "SIGCONT",
            "SIGRTMIN+1"
        ])
    );
    assert_eq!(report["exit"]["signal_name"], "SIGRTMIN+1");
    assert_eq!(report["exit_status"], 128 + rt);
}

/// SIGALRM killed childminder; GNU `timeout` takes it as "the deadline,
/// now": escalate, exit 124.
#[test]
fn sigalrm_is_the_deadline_now_and_exits_124() {
    let mut run = Running::start(&[
        "run",
        "--report",
        "-",
        "-g",
        "10s",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 60",
    ]);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGALRM);
    let out = run.finish();
    assert_eq!(out.code(), 124, "{}", out.stderr);
    let report = last_line_json(&out.stderr);
    assert_eq!(report["timed_out"], true, "{report}");
    assert_eq!(report["escalation_cause"], "deadline");
    assert_eq!(report["exit"]["signal_name"], "SIGTERM");
    assert_eq!(report["signals_received"], serde_json::json!(["SIGALRM"]));
}

/// A command that dies by SIGINT (Ctrl-C) ends childminder by SIGINT, so
/// `for f in *; do childminder run -- job $f; done` stops as it would
/// without childminder.
#[test]
fn a_forwarded_sigint_ends_childminder_by_sigint() {
    let mut run = Running::start(&["run", "--", "sh", "-c", "echo ready; exec sleep 60"]);
    assert_eq!(run.line(), "ready");
    run.signal(libc::SIGINT);
    let out = run.finish();
    assert_eq!(out.signal, Some(libc::SIGINT), "{}", out.stderr);
}

/// Ending itself by the command's SIGQUIT must not dump childminder's
/// core, even where core dumps are allowed (GNU turns them off first).
#[test]
fn ending_by_the_commands_sigquit_dumps_no_core() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = temp_path("core-dir");
    // The command may dump its own core: in a directory of its own.
    std::fs::create_dir_all(dir.join("command")).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_childminder"));
    cmd.args(["run", "--", "sh", "-c", "cd command && kill -QUIT $$"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null());
    // SAFETY: getrlimit/setrlimit are async-signal-safe; nothing else runs.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &limit);
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "command")
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.signal(), Some(libc::SIGQUIT), "{status:?}");
    assert!(!status.core_dumped(), "childminder dumped core");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------
// Inherited dispositions (§3)
// ---------------------------------------------------------------------------

/// `bash -c "trap '' CHLD; exec childminder run -t 10 -- true"` exited 125
/// "No child processes": the kernel reaped the command by itself.
#[test]
fn started_with_sigchld_ignored_it_still_sees_the_exit() {
    let out = run_shell("trap '' CHLD; exec \"$CM\" run -t 10 -- sh -c 'exit 3'");
    assert_eq!(out.code(), 3, "{}", out.stderr);
}

/// Started with SIGPIPE ignored, GNU passes that on (`trap '' PIPE` then
/// `yes | :` prints "Broken pipe"); childminder reset it to the default.
#[test]
fn started_with_sigpipe_ignored_the_command_inherits_it() {
    let pipe_bit = 1u64 << (libc::SIGPIPE - 1);
    let ignored_in_command = |script: &str| {
        let out = run_shell(script);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        let text = out.stdout_str();
        let mask = text.split_whitespace().nth(1).expect("a SigIgn line");
        u64::from_str_radix(mask, 16).unwrap() & pipe_bit != 0
    };
    let grep = "run -- grep ^SigIgn: /proc/self/status";
    assert!(ignored_in_command(&format!(
        "trap '' PIPE; exec \"$CM\" {grep}"
    )));
    assert!(!ignored_in_command(&format!(
        "trap - PIPE; exec \"$CM\" {grep}"
    )));
    // And the GNU example itself: yes reports the broken pipe.
    let out = run_shell("trap '' PIPE; exec \"$CM\" run -- sh -c 'yes | :'");
    assert!(out.stderr.contains("Broken pipe"), "{}", out.stderr);
}

/// Runs `script` with bash (so `trap '' CHLD` works as the issue shows),
/// with `$CM` the childminder binary.
fn run_shell(script: &str) -> Finished {
    let mut bash = std::process::Command::new("bash");
    bash.args(["-c", script])
        .env("CM", env!("CARGO_BIN_EXE_childminder"))
        .stdin(std::process::Stdio::null());
    Running::start_with(&mut bash).finish()
}

// ---------------------------------------------------------------------------
// The report never blocks or changes the verdict (§2)
// ---------------------------------------------------------------------------

/// `--report /dev/null` exited 125: fsync on a device fails with EINVAL.
#[test]
fn a_report_to_dev_null_keeps_the_commands_status() {
    let out = run(&["run", "--report", "/dev/null", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// A report that cannot be written is a message; the status stays.
#[test]
fn a_report_to_dev_full_is_a_message_and_the_status_stays() {
    let out = run(&["run", "--report", "/dev/full", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot write the report"),
        "{}",
        out.stderr
    );
}

fn mkfifo(name: &str) -> std::path::PathBuf {
    let path = temp_path(name);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    path
}

/// A FIFO nobody reads blocked childminder in `open` before the command
/// started, so the deadline never applied. Now the run goes on, the
/// deadline fires, and the report is given up a grace period later.
#[test]
fn a_report_fifo_nobody_reads_does_not_block_the_deadline() {
    let fifo = mkfifo("report.fifo");
    let out = run(&[
        "run",
        "--report",
        fifo.to_str().unwrap(),
        "-t",
        "100ms",
        "-g",
        "300ms",
        "--",
        "sleep",
        "30",
    ]);
    let _ = std::fs::remove_file(&fifo);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(
        out.stderr.contains("cannot write the report"),
        "{}",
        out.stderr
    );
}

/// A FIFO whose reader comes late (after the command ended) gets the
/// report, and the status is the command's (it was 125).
#[test]
fn a_report_fifo_read_late_gets_the_report() {
    let fifo = mkfifo("late.fifo");
    let run = Running::start(&[
        "run",
        "--report",
        fifo.to_str().unwrap(),
        "-g",
        "30s",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    // Opening for reading waits for childminder to open its end: no sleep.
    let text = std::fs::read_to_string(&fifo).unwrap();
    let out = run.finish();
    let _ = std::fs::remove_file(&fifo);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["exit_status"], 3);
}

/// `--report -` with stderr a closed pipe and a fired deadline: 124.
#[test]
fn a_report_to_a_closed_stderr_keeps_124() {
    let mut child = childminder()
        .args([
            "run", "--report", "-", "-t", "100ms", "-g", "5s", "--", "sleep", "30",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124), "{status:?}");
}

/// `--report -` with stderr a pipe nobody reads (full): the report write
/// is bounded, and childminder exits 124 instead of hanging.
#[test]
fn a_report_to_a_stalled_stderr_does_not_hang() {
    let mut child = childminder()
        .args([
            "run",
            "--report",
            "-",
            "-t",
            "200ms",
            "-g",
            "300ms",
            "--",
            "sh",
            "-c",
            "head -c 300000 /dev/zero >&2; exec sleep 30",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Hold the read end, never read it.
    let _stalled = child.stderr.take();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("childminder hung on a stalled stderr");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(124), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Caught by an acceptance run: with `-s KILL` the first signal is SIGKILL,
/// yet the report had `kill_sent_after_ms: null`, where the README says it
/// tells whether KILL was sent.
#[test]
fn dash_s_kill_reports_sigkill_sent() {
    let (out, report) = run_with_report(&["run", "-t", "0.1", "-s", "KILL", "--", "sleep", "30"]);
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert_eq!(report["exit"]["signal_name"], "SIGKILL");
    assert!(report["term_sent_after_ms"].is_u64(), "{report}");
    assert_eq!(
        report["kill_sent_after_ms"], report["term_sent_after_ms"],
        "{report}"
    );
}
