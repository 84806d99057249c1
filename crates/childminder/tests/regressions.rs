//! Regression tests, each named after what it caught.

mod common;
#[path = "common/support.rs"]
mod support;

use std::time::{Duration, Instant};

use childminder::{Command, Signal, Termination, discard, stdin, with_process_result};
use common::{LeakCheck, MARKER_VAR, fixture, marker_value, pid_alive};

/// The group sweep took killed grandchildren, zombies until init reaped
/// them, for live members: every such teardown waited a grace period and
/// the 1 s after KILL.
#[test]
fn group_sweep_does_not_wait_for_init_to_reap_dead_grandchildren() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new(fixture());
    cmd.args(["grandchildren", "5", "300", "exit"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_secs(3));
    let (lines, rx) = support::line_consumer();
    let mut exited_at = None;
    let (pids, result) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let pids = support::expect_ready(&rx);
        p.wait();
        exited_at = Some(Instant::now());
        pids
    })
    .unwrap();
    let teardown = exited_at.unwrap().elapsed();
    assert_eq!(result.termination, Termination::Clean);
    // The sleepers die on TERM at once; waiting for the grace (3 s) would
    // mean dead members were taken for live ones.
    assert!(
        teardown < Duration::from_millis(2500),
        "teardown took {teardown:?}"
    );
    leak.assert_clean();
    for pid in pids {
        assert!(!pid_alive(pid), "grandchild {pid} survived");
    }
}

/// A stopped child did not act on SIGTERM and sat out the grace period
/// until SIGKILL; the escalation now follows the first signal with SIGCONT.
#[test]
fn escalation_wakes_a_stopped_child_so_it_acts_on_term() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new(fixture());
    cmd.args(["sleep", "300"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_secs(3));
    let (lines, rx) = support::line_consumer();
    let ((), result) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        support::expect_ready(&rx);
        assert!(p.signal(Signal::STOP).unwrap());
        // Stopped for sure before the escalation starts (state T): sent
        // and not yet delivered, the STOP would land after the TERM and a
        // dropped SIGCONT would go unnoticed half the time.
        let pid = p.pid() as i32;
        assert!(
            support::wait_until(support::HANDSHAKE, || {
                support::stat_field(pid, 3).as_deref() == Some("T")
            }),
            "the child never stopped: state {:?}",
            support::stat_field(pid, 3)
        );
        p.terminate(Signal::TERM);
    })
    .unwrap();
    assert_eq!(result.termination, Termination::Escalated);
    assert_eq!(result.exit.unwrap().signal(), Some(Signal::TERM));
    assert!(result.kill_sent_after.is_none(), "{result:?}");
    leak.assert_clean();
}

/// The posix_spawn path reset every signal to its default, so `nohup
/// childminder run ...` lost the ignored SIGHUP that exec passes on (and
/// the fork path, like std, kept it). Only SIGPIPE, which Rust ignores for
/// itself, is reset now, on both paths.
#[test]
fn ignored_signals_pass_to_the_child_except_sigpipe() {
    let out = std::process::Command::new("sh")
        .args(["-c", "trap '' HUP; exec \"$@\"", "sh"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_sees_sighup_ignored_and_sigpipe_default",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run by ignored_signals_pass_to_the_child_except_sigpipe with SIGHUP ignored"]
fn child_sees_sighup_ignored_and_sigpipe_default() {
    for fork_path in [false, true] {
        let mut cmd = Command::new("grep");
        cmd.args(["SigIgn", "/proc/self/status"])
            .kill_on_parent_death(fork_path);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mask = u64::from_str_radix(text.split_whitespace().nth(1).unwrap(), 16).unwrap();
        let hup = 1 << (libc_sig::HUP - 1);
        let pipe = 1 << (libc_sig::PIPE - 1);
        assert_eq!(
            mask & hup,
            hup,
            "fork path {fork_path}: SIGHUP not ignored: {text}"
        );
        assert_eq!(
            mask & pipe,
            0,
            "fork path {fork_path}: SIGPIPE ignored: {text}"
        );
    }
}

mod libc_sig {
    pub const HUP: u32 = 1;
    pub const PIPE: u32 = 13;
}

/// `signal_group()` after the exit reaped the child from the handle; the
/// coordinator then lost the status and spun on the pidfd forever.
#[test]
fn signal_group_after_the_exit_does_not_freeze_the_supervision() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exit 3"]).env(MARKER_VAR, marker_value());
    let ((), result) = with_process_result(&cmd, stdin::empty(), discard, discard, |p| {
        while p.signal_group(Signal::CONT).unwrap() {}
        let r = p
            .wait_timeout(Duration::from_secs(10))
            .expect("the result was published");
        assert_eq!(r.exit.unwrap().code(), Some(3));
    })
    .unwrap();
    assert_eq!(result.exit.unwrap().code(), Some(3));
    leak.assert_clean();
}

/// The output cut-off was only checked while the pipe was empty, so a
/// grandchild that kept writing held the teardown forever.
#[test]
fn output_cut_off_fires_while_a_grandchild_keeps_writing() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "yes & sleep 0.05; exit 0"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_millis(200));
    let started = Instant::now();
    let (r, result) = with_process_result(
        &cmd,
        stdin::empty(),
        |_: &[u8]| {
            // A slow consumer: the pipe is never empty when it is read.
            std::thread::sleep(Duration::from_micros(200));
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(r.output_cut_off && result.output_cut_off, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    leak.assert_clean();
}

/// At the output cut-off (a grandchild holding stdout), the reader closed
/// the pipe at once: what the exited child had written but a slow consumer
/// had not taken yet was lost (an acceptance run got 40,960 of 60,000
/// bytes).
#[test]
fn the_childs_output_behind_a_slow_consumer_survives_the_cut_off() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut got = 0;
    let result = through_a_slow_consumer_past_the_cut_off(|chunk| {
        got += chunk.len();
        Ok(())
    });
    assert!(result.output_cut_off, "{result:?}");
    assert_eq!(result.exit.unwrap().code(), Some(0));
    assert_eq!(got, 60_000);
    leak.assert_clean();
}

/// 60,000 bytes of a child that leaves `sleep 30` holding its stdout, to
/// `consume`, slowed to 50 ms a 4 KiB chunk: the cut-off (200 ms after the
/// exit) comes before the 15 chunks are taken.
fn through_a_slow_consumer_past_the_cut_off(
    mut consume: impl FnMut(&[u8]) -> std::io::Result<()> + Send,
) -> childminder::SupervisionResult {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 30 & head -c 60000 /dev/zero"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_millis(200))
        .buffer_size(4096);
    let ((), result) = with_process_result(
        &cmd,
        stdin::empty(),
        |chunk: &[u8]| {
            std::thread::sleep(Duration::from_millis(50));
            consume(chunk)
        },
        discard,
        |p| {
            p.wait();
        },
    )
    .unwrap();
    result
}

/// The drain at the cut-off reads at most what the pipe can hold: a writer
/// outside the group (not killed with it) that floods the pipe faster than
/// a slow consumer takes it must not keep the reader going.
#[test]
fn a_writer_outside_the_group_cannot_keep_the_cut_off_reading() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new("sh");
    // `setsid yes` leaves the group, so the cut-off's kill misses it; the
    // pipe closed, its next write ends it (SIGPIPE). No subreaper here: it
    // would stay on this process, and under `cargo test` the next tests
    // would inherit every orphan as a zombie of theirs.
    cmd.args(["-c", "setsid yes & head -c 1000 /dev/zero"])
        .env(MARKER_VAR, marker_value())
        .grace_period(Duration::from_millis(200))
        .buffer_size(4096);
    let started = Instant::now();
    let ((), result) = with_process_result(
        &cmd,
        stdin::empty(),
        |_: &[u8]| {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        },
        discard,
        |p| {
            p.wait();
        },
    )
    .unwrap();
    assert!(result.output_cut_off, "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    leak.assert_clean();
}

/// A consumer failing on what the pipe still held at the cut-off made the
/// result say `output_cut_off: false`, though the pipe was cut off and the
/// group killed (a review found it).
#[test]
fn a_consumer_failing_after_the_cut_off_leaves_it_reported() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut chunks = 0;
    let result = through_a_slow_consumer_past_the_cut_off(|_| {
        chunks += 1;
        // The 10th chunk comes after the cut-off (200 ms): from the
        // pipe's remains.
        if chunks == 10 {
            return Err(std::io::Error::other("enough"));
        }
        Ok(())
    });
    assert!(result.output_cut_off, "{result:?}");
    let [error] = &result.worker_errors[..] else {
        panic!("{result:?}");
    };
    assert_eq!(
        (error.stream, error.op),
        (childminder::Stream::Stdout, childminder::WorkerOp::Consume)
    );
    assert_eq!(chunks, 10, "called again after its failure");
    leak.assert_clean();
}

/// Both consumers were dropped together when the readers ended: the first
/// `Drop` panic unwound through the other's drop, whose panic aborted the
/// whole process.
#[test]
fn two_consumers_panicking_as_they_are_dropped_do_not_abort() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("a consumer's drop");
        }
    }
    support::warm_up();
    let leak = LeakCheck::new();
    let (on_stdout, on_stderr) = (PanicsOnDrop, PanicsOnDrop);
    let (status, result) = with_process_result(
        Command::new("cat").env(MARKER_VAR, marker_value()),
        stdin::bytes("x"),
        move |_: &[u8]| {
            let _held = &on_stdout;
            Ok(())
        },
        move |_: &[u8]| {
            let _held = &on_stderr;
            Ok(())
        },
        |p| p.wait().success(),
    )
    .unwrap();
    assert!(status && result.success(), "{result:?}");
    leak.assert_clean();
}

/// A `BlockingChild` dropped just before the program exited was never torn
/// down: its teardown, waiting out the grace period on the engine's
/// threads, died with the process, and the child ran on under init. The
/// exit now waits for the teardown: the child gets its grace period, then
/// SIGTERM, as documented.
#[test]
fn a_child_dropped_just_before_the_program_exits_is_torn_down_gracefully() {
    let dir = tempdir();
    let pid = child_pid_of_a_process_that_exits("drop_a_child_and_exit", &dir);
    let ended = wait_until_gone(pid);
    let said = std::fs::read_to_string(dir.join("said")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ended, "the dropped child {pid} outlived the program");
    assert_eq!(said, "term\n", "the child was not asked with SIGTERM");
}

/// The same for an async `Child` dropped before `exit`, on a runtime that
/// cannot run its teardown any more: SIGKILL at the exit.
#[test]
fn an_async_child_dropped_before_exit_does_not_outlive_the_program() {
    let dir = tempdir();
    let pid = child_pid_of_a_process_that_exits("drop_an_async_child_and_exit", &dir);
    let ended = wait_until_gone(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ended, "the dropped child {pid} outlived the program");
}

/// A handle dropped by another thread while the exit already waited for
/// an earlier teardown was not waited for: the exit had taken its list
/// once, and the child was left running, never asked with SIGTERM.
#[test]
fn a_child_dropped_while_the_exit_waits_is_torn_down_too() {
    let dir = tempdir();
    let first = child_pid_of_a_process_that_exits("drop_a_child_while_exiting", &dir);
    let second: i32 = std::fs::read_to_string(dir.join("second pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ended = wait_until_gone(first) & wait_until_gone(second);
    let said =
        ["first", "second"].map(|name| std::fs::read_to_string(dir.join(name)).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ended, "a dropped child outlived the program");
    assert_eq!(said, ["term\n", "term\n"]);
}

/// An async `Child` in a cgroup, dropped before `exit`: the SIGKILL at the
/// exit emptied its cgroup, but nothing removed it.
#[test]
fn an_async_child_in_a_cgroup_dropped_before_exit_leaves_no_cgroup() {
    if let Err(e) = Command::new("true")
        .cgroup(childminder::Cgroup::new())
        .run()
    {
        eprintln!("SKIPPED: no writable cgroup v2 here: {e}");
        return;
    }
    let dir = tempdir();
    let cgroup =
        said_by_a_process_that_exits("drop_an_async_child_in_a_cgroup_and_exit", &dir, "cgroup ");
    let _ = std::fs::remove_dir_all(&dir);
    let cgroup = std::path::Path::new(&cgroup);
    let gone = support::wait_until(Duration::from_secs(10), || !cgroup.exists());
    if !gone {
        let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
        let _ = std::fs::remove_dir(cgroup);
    }
    assert!(gone, "{} was left", cgroup.display());
}

/// In a `fork` of a program whose engine ran, `start()` hung: the engine's
/// thread is not copied, and nothing drove the supervision. An error now.
#[test]
fn start_in_a_forked_child_is_an_error_not_a_hang() {
    support::warm_up();
    // SAFETY: the child calls only async-signal-safe functions and
    // childminder's engine check (no lock, no allocation before the error
    // it returns: validation of a bare `true` allocates nothing but what
    // its `Command` holds), then `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm only schedules a signal: a hang ends the child.
        unsafe { libc::alarm(10) };
        let refused = Command::new("true").start().is_err();
        // SAFETY: _exit ends the child without running the parent's exit
        // handlers or destructors.
        unsafe { libc::_exit(if refused { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child, with a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child's start: status {status:#x} (SIGALRM: it hung)"
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cm-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the ignored test `entry` in a child process of this test binary
/// (given `dir`), and returns the pid of the child it started.
fn child_pid_of_a_process_that_exits(entry: &str, dir: &std::path::Path) -> i32 {
    said_by_a_process_that_exits(entry, dir, "child pid ")
        .parse()
        .unwrap()
}

/// Runs the ignored test `entry` as [`child_pid_of_a_process_that_exits`]
/// does, and returns the word it printed after `label`.
fn said_by_a_process_that_exits(entry: &str, dir: &std::path::Path, label: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            entry,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EXIT_TEST_DIR, dir)
        // Inherited by what it starts: this process's LeakCheck finds it.
        .env(MARKER_VAR, marker_value())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    text.lines()
        // The harness prints the test's name on the same line.
        .find_map(|line| line.split(label).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
        .to_owned()
}

/// Whether `pid` ended within 10 s; SIGKILLed if it did not.
fn wait_until_gone(pid: i32) -> bool {
    let ended = support::wait_until(Duration::from_secs(10), || !pid_alive(pid));
    if !ended {
        // SAFETY: kill has no memory effects; the pid is the lingering
        // child this test started (its parent is gone, not yet recycled).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    ended
}

const EXIT_TEST_DIR: &str = "CHILDMINDER_TEST_EXIT_DIR";

#[test]
#[ignore = "entry point run in a child process by a_child_dropped_just_before_the_program_exits_is_torn_down_gracefully"]
fn drop_a_child_and_exit() {
    let child = says_term_in(exit_test_dir().join("said"), Duration::from_millis(300))
        .start()
        .unwrap();
    println!("child pid {}", child.pid());
    // The teardown starts, in its first grace period when the test
    // harness exits.
    drop(child);
}

/// A shell that says "term" in `file` on SIGTERM, with nothing to say on
/// stdout or stderr (sh says "Terminated" of its sleep there: to a pipe
/// nobody reads, SIGPIPE would end it before its trap).
fn says_term_in(file: std::path::PathBuf, grace: Duration) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"trap 'echo term > "$0"; exit 0' TERM; while :; do sleep 0.05; done"#,
    ])
    .arg(file)
    .stdin(childminder::Stdio::Null)
    .stdout(childminder::Stdio::Null)
    .stderr(childminder::Stdio::Null)
    .grace_period(grace);
    cmd
}

fn exit_test_dir() -> std::path::PathBuf {
    std::env::var_os(EXIT_TEST_DIR).unwrap().into()
}

#[test]
#[ignore = "entry point run in a child process by a_child_dropped_while_the_exit_waits_is_torn_down_too"]
fn drop_a_child_while_exiting() {
    let dir = exit_test_dir();
    let grace = Duration::from_secs(1);
    let first = says_term_in(dir.join("first"), grace).start().unwrap();
    let second = says_term_in(dir.join("second"), grace).start().unwrap();
    std::fs::write(dir.join("second pid"), second.pid().to_string()).unwrap();
    println!("child pid {}", first.pid());
    let (returning, returned) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = returned.recv();
        // The exit is waiting out the first child's grace period (1 s).
        std::thread::sleep(Duration::from_millis(300));
        drop(second);
    });
    drop(first);
    returning.send(()).unwrap();
}

#[test]
#[ignore = "entry point run in a child process by an_async_child_in_a_cgroup_dropped_before_exit_leaves_no_cgroup"]
fn drop_an_async_child_in_a_cgroup_and_exit() {
    use std::io::Write;
    support::current_thread_runtime().block_on(async {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(childminder::Stdio::Null)
            .cgroup(childminder::Cgroup::new())
            .spawn()
            .unwrap();
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid())).unwrap();
        let relative = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|m| std::path::Path::new(m).join("cgroup.controllers").exists())
            .unwrap();
        println!("cgroup {mount}{relative}");
        std::io::stdout().flush().unwrap();
        drop(child);
        std::process::exit(0);
    });
}

#[test]
#[ignore = "entry point run in a child process by an_async_child_dropped_before_exit_does_not_outlive_the_program"]
fn drop_an_async_child_and_exit() {
    use std::io::Write;
    support::current_thread_runtime().block_on(async {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(childminder::Stdio::Null)
            .grace_period(Duration::from_secs(60))
            .spawn()
            .unwrap();
        println!("child pid {}", child.pid());
        std::io::stdout().flush().unwrap();
        drop(child);
        std::process::exit(0);
    });
}

/// A child that moved itself to another process group was missed by every
/// group signal, and the teardown gave up with the child still running.
#[test]
fn a_child_that_leaves_its_group_is_still_killed() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = support::group_leaver();
    cmd.grace_period(Duration::from_millis(100));
    let (lines, rx) = support::line_consumer();
    let ((), result) = with_process_result(&cmd, stdin::empty(), lines, discard, |_| {
        support::expect_ready(&rx);
    })
    .unwrap();
    assert_eq!(
        result.exit.unwrap().signal(),
        Some(Signal::KILL),
        "{result:?}"
    );
    assert_eq!(result.termination, Termination::Escalated);
    leak.assert_clean();
}

/// `pass_fd(fd, i32::MAX)` passed validation and overflowed in the spawn.
#[test]
fn pass_fd_targets_beyond_the_fd_limit_are_invalid_options() {
    for (target, fork) in [(i32::MAX, false), (1 << 24, false), (3, true)] {
        let file = std::fs::File::open("/dev/null").unwrap();
        let mut cmd = Command::new("true");
        cmd.pass_fd(file, target).kill_on_parent_death(fork);
        let err = cmd.run().unwrap_err();
        assert!(
            matches!(err, childminder::Error::InvalidOptions { .. }),
            "target {target}, fork path {fork}: {err}"
        );
    }
}

/// The teardown's close of stdin raced the writer: input handed over with
/// `stdin::bytes` could be dropped unwritten when the action returned at
/// once (`read line` then saw end-of-file).
#[test]
fn teardown_writes_the_input_already_handed_over_before_closing_stdin() {
    support::warm_up();
    let leak = LeakCheck::new();
    for _ in 0..20 {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "read line; echo got $line"])
            .env(MARKER_VAR, marker_value());
        let mut out = Vec::new();
        let ((), result) = with_process_result(
            &cmd,
            stdin::bytes("hello\n"),
            |c: &[u8]| {
                out.extend_from_slice(c);
                Ok(())
            },
            discard,
            |_| (),
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "got hello\n");
        assert_eq!(result.termination, Termination::Clean);
    }
    leak.assert_clean();
}

/// A panic in the stdio work outside the consumer calls (here a consumer's
/// `Drop`) escaped `with_process`, replacing the action's own outcome.
#[test]
fn a_consumer_that_panics_when_dropped_does_not_unwind_out_of_with_process() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("deliberate panic in a consumer's drop");
        }
    }
    support::warm_up();
    let leak = LeakCheck::new();
    let guard = PanicsOnDrop;
    let consumer = move |_: &[u8]| {
        let _keep = &guard;
        Ok(())
    };
    let value = with_process_result(
        Command::new("echo").arg("hi"),
        stdin::empty(),
        consumer,
        discard,
        |p| p.wait().success(),
    )
    .unwrap()
    .0;
    assert!(value);
    leak.assert_clean();
}

/// As for a consumer: a producer whose `Drop` panics (on childminder's
/// input thread, once its input has ended) does not unwind out of
/// `with_process`, is not mistaken for a failure of the run, every byte it
/// gave is delivered, and nothing leaks.
#[test]
fn a_producer_that_panics_when_dropped_does_not_unwind_out_of_with_process() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("deliberate panic in a producer's drop");
        }
    }
    support::warm_up();
    let leak = LeakCheck::new();
    let guard = PanicsOnDrop;
    let mut sent = false;
    let producer = move || {
        let _keep = &guard;
        Ok((!std::mem::replace(&mut sent, true)).then(|| b"hello\n".to_vec()))
    };
    let (lines, rx) = support::line_consumer();
    let (value, result) = with_process_result(
        &Command::new("cat"),
        stdin::from_fn(producer),
        lines,
        discard,
        |p| p.wait().success(),
    )
    .unwrap();
    assert!(value && result.worker_errors.is_empty(), "{result:?}");
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["hello"]);
    leak.assert_clean();
}

/// Mutation testing found that sweeping a leftover group as soon as the
/// leader exits, instead of when the action ends (the teardown) or asks
/// for it, went unnoticed: nothing checked that a background grandchild is
/// left alone while the action still runs. The action may still want it
/// (a daemon the child started, output still coming); only the teardown
/// ends it.
#[test]
fn a_leftover_group_is_swept_at_teardown_not_when_the_leader_exits() {
    support::warm_up();
    let leak = LeakCheck::new();
    let mut cmd = support::marked("sh");
    cmd.args(["-c", "sleep 30 >/dev/null 2>&1 & echo ready $!; exit 0"]);
    let (lines, rx) = support::line_consumer();
    let (grandchild, result) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let grandchild = support::expect_ready(&rx)[0];
        let leader = p.wait();
        assert_eq!(leader.exit.unwrap().code(), Some(0), "{leader:?}");
        // No event marks "not swept": it must stay alive for a while after
        // the leader's exit was published, where a sweep takes a few ms.
        let swept = support::wait_until(Duration::from_millis(300), || !pid_alive(grandchild));
        assert!(
            !swept,
            "the grandchild {grandchild} was ended while the action ran"
        );
        grandchild
    })
    .unwrap();
    assert_eq!(result.termination, Termination::Clean, "{result:?}");
    support::assert_all_dead(&[grandchild]);
    leak.assert_clean();
}

/// Passing `environ` itself to `posix_spawn` (to save copying it) let a
/// `set_var` in another thread move the array under the child's `execve`:
/// in review, 241 of 2,313 spawns failed with EFAULT or started with an
/// empty environment. The block is now copied through `vars_os`, under
/// std's environment lock, as std's own spawn reads it.
#[test]
fn a_set_var_in_another_thread_never_corrupts_a_childs_environment() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let names: Vec<String> = (0..200).map(|i| format!("CHILDMINDER_CHURN_{i}")).collect();
            while !stop.load(Ordering::Relaxed) {
                for name in &names {
                    // SAFETY: every thread of this test reads the
                    // environment through std only (the spawns below copy
                    // it through `vars_os`, under std's lock); that is the
                    // contract, and what this test checks childminder keeps.
                    unsafe { std::env::remove_var(name) };
                }
                for name in &names {
                    // SAFETY: as above.
                    unsafe { std::env::set_var(name, "churn") };
                }
            }
        });
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf %s \"$CHILDMINDER_STABLE\""])
            .env("CHILDMINDER_STABLE", "stable");
        let mut bare = Command::new("sh");
        bare.args(["-c", "printf %s \"${HOME+home}\""]);
        for round in 0..150 {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(out.stdout, b"stable", "round {round}: {:?}", out.result);
            let out = bare
                .output()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(out.stdout, b"home", "round {round}: {:?}", out.result);
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// Found in review: `with_process` nested in another's action, both inside
/// a runtime's `block_on`, each lent this thread's kept runtime to its
/// stdio thread; the outer one, given back to a slot the inner one had
/// filled, was dropped on the caller's thread, inside the caller's
/// runtime, where tokio panics. It is shut down without blocking now.
#[test]
fn nested_blocking_calls_inside_a_runtime_give_their_runtimes_back_without_a_panic() {
    // No leak check: the engine and this thread's kept runtime stay, as
    // they are meant to.
    let runtime = support::current_thread_runtime();
    let value = runtime.block_on(async {
        childminder::with_process(
            &Command::new("true"),
            stdin::empty(),
            discard,
            discard,
            |_| {
                childminder::with_process(
                    &Command::new("true"),
                    stdin::empty(),
                    discard,
                    discard,
                    |_| 7,
                )
                .unwrap()
            },
        )
        .unwrap()
    });
    assert_eq!(value, 7);
}
