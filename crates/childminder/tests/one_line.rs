//! The one-line calls (`output`, `status`, `run`, `output_async`,
//! `status_async`) run on the caller's thread (or in the caller's task):
//! no thread of childminder's is involved, and every guarantee of
//! `with_process` holds — the deadline and the escalation, every byte, the
//! output cut-off, the group sweep, nothing leaked — and inside a tokio
//! runtime, where the direct path cannot apply, the engine path takes over.

mod common;
#[path = "common/support.rs"]
mod support;

use std::time::{Duration, Instant};

use childminder::{Command, Signal, Stdio, Termination};
use common::LeakCheck;
use support::{PatternCheck, fixture_cmd, warm_up};

/// A one-line call that collects the output, by name.
type OutputCall = (&'static str, fn(&Command) -> childminder::Output);

/// `output()` on the caller's thread, and `output_async()` in a task of a
/// current-thread runtime: the two drivers of a call driven by readiness
/// (with a deadline or without).
fn outputs() -> [OutputCall; 2] {
    [
        ("output", |cmd| cmd.output().unwrap()),
        ("output_async", |cmd| {
            support::current_thread_runtime()
                .block_on(cmd.output_async())
                .unwrap()
        }),
    ]
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The engine, if it exists, has its two threads; this checks that the
/// one-line calls add none and never start the engine themselves.
#[test]
fn output_and_status_start_no_thread() {
    let before = threads();
    let out = fixture_cmd(["print-then-exit", "hi", "3"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, b"err:hi\n");
    assert_eq!(out.result.exit.unwrap().code(), Some(3));
    let r = fixture_cmd(["exit", "0"])
        .stdout(Stdio::Null)
        .status()
        .unwrap();
    assert!(r.success());
    assert!(fixture_cmd(["exit", "0"]).run().unwrap().success());
    assert_eq!(threads(), before);
}

#[test]
fn output_delivers_every_byte_of_a_large_stream() {
    warm_up();
    let leak = LeakCheck::new();
    let total = 32 << 20;
    let out = fixture_cmd(["write", &total.to_string()]).output().unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    let mut check = PatternCheck::new();
    check.feed(&out.stdout);
    assert_eq!(check.total, total as u64);
    assert_eq!(check.first_mismatch, None);
    leak.assert_clean();
}

/// The deadline's escalation, driven by the call itself on both drivers:
/// TERM at the deadline, KILL a grace period later for a child that
/// ignores TERM, with the first signal configured or none (`timeout -s 0`),
/// and every byte written before.
#[test]
fn output_honours_the_deadline_and_the_escalation() {
    warm_up();
    let leak = LeakCheck::new();
    let (deadline, grace) = (Duration::from_millis(100), Duration::from_millis(200));
    for term_signal in [Some(Signal::TERM), None] {
        let mut cmd = fixture_cmd(["ignore-term", "30"]);
        cmd.deadline(deadline)
            .grace_period(grace)
            .term_signal(term_signal);
        for (call, output) in outputs() {
            let t = Instant::now();
            let out = output(&cmd);
            let r = out.result;
            let case = format!("{call}, {term_signal:?}: {r:?}");
            assert!(r.timed_out(), "{case}");
            assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{case}");
            assert_eq!(r.termination, Termination::Escalated, "{case}");
            let term = r.term_sent_after.unwrap();
            let kill = r.kill_sent_after.unwrap();
            assert!(term >= deadline, "{case}");
            assert!(kill >= term + grace, "{case}");
            assert!(kill < deadline + grace + Duration::from_secs(5), "{case}");
            assert!(t.elapsed() < Duration::from_secs(10), "{case}");
            assert_eq!(out.stdout, b"ready\n", "{case}");
        }
    }
    leak.assert_clean();
}

/// The one-line calls' escalation signalled the group alone: a child that
/// had moved itself to another group (setpgid) got neither TERM nor KILL,
/// the escalation gave up a second after the KILL it never sent, and the
/// call waited for the child's own end (6 s in review; the deadline not
/// enforced at all). The engine has always signalled such a child through
/// its pidfd too.
#[test]
fn a_child_that_leaves_its_group_is_killed_at_the_deadline_of_a_one_line_call() {
    warm_up();
    let leak = LeakCheck::new();
    let (deadline, grace) = (Duration::from_secs(1), Duration::from_millis(100));
    let mut cmd = support::group_leaver();
    cmd.deadline(deadline).grace_period(grace);
    for (call, output) in outputs() {
        let t = Instant::now();
        let out = output(&cmd);
        let r = out.result;
        let case = format!("{call}: {r:?}");
        assert_eq!(out.stdout, b"ready\n", "{case}");
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{case}");
        assert_eq!(r.termination, Termination::Escalated, "{case}");
        assert!(r.kill_sent_after.unwrap() >= deadline + grace, "{case}");
        assert!(t.elapsed() < Duration::from_secs(10), "{case}");
    }
    leak.assert_clean();
}

/// On a paused tokio clock the deadline's timers fire at once in real
/// time: the escalation follows the runtime's clock, in order, without
/// spinning on std's.
#[test]
fn output_async_on_a_paused_clock_escalates_by_the_runtimes_clock() {
    warm_up();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (deadline, grace) = (Duration::from_secs(30), Duration::from_secs(30));
    // No first signal: the child cannot die of it before it is ready, and
    // KILL must come a grace period after the step.
    let mut cmd = fixture_cmd(["sleep", "300"]);
    cmd.deadline(deadline).grace_period(grace).term_signal(None);
    let (cpu, t) = (support::cpu_time(), Instant::now());
    let out = rt.block_on(cmd.output_async()).unwrap();
    let (cpu, elapsed) = (support::cpu_time() - cpu, t.elapsed());
    let r = out.result;
    assert!(r.timed_out(), "{r:?}");
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    // The steps are reported on the clock that timed them: the first at
    // the deadline, KILL a grace period after it (std's clock, stamped as
    // the signals went out, put both within a millisecond of the start).
    let term = r.term_sent_after.unwrap();
    let kill = r.kill_sent_after.unwrap();
    assert!(term >= deadline, "{r:?}");
    assert!(kill >= term + grace, "{r:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        cpu < Duration::from_secs(2),
        "{cpu:?} of CPU in {elapsed:?}"
    );
}

#[test]
fn output_cuts_off_a_pipe_held_by_a_grandchild_and_sweeps_the_group() {
    warm_up();
    let leak = LeakCheck::new();
    let out = fixture_cmd(["grandchild-holds-pipes", "30"])
        .grace_period(Duration::from_millis(100))
        .output()
        .unwrap();
    let r = out.result;
    assert!(r.output_cut_off, "{r:?}");
    assert_eq!(r.exit.unwrap().code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let pids = support::ready_pids(text.trim());
    support::assert_all_dead(&pids);
    leak.assert_clean();
}

#[test]
fn status_inside_a_tokio_runtime_takes_the_engine_path() {
    warm_up();
    let leak = LeakCheck::new();
    let runtime = support::current_thread_runtime();
    runtime.block_on(async {
        // A blocking call inside async code: allowed, if unwise.
        let out = fixture_cmd(["print-then-exit", "nested", "0"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"nested\n");
        let r = fixture_cmd(["exit", "4"]).run().unwrap();
        assert_eq!(r.exit.unwrap().code(), Some(4));
    });
    drop(runtime);
    leak.assert_clean();
}

#[test]
fn output_async_runs_in_the_callers_task_and_keeps_every_guarantee() {
    warm_up();
    let leak = LeakCheck::new();
    let runtime = support::current_thread_runtime();
    runtime.block_on(async {
        let out = fixture_cmd(["write", "1000000", "err"])
            .output_async()
            .await
            .unwrap();
        assert!(out.result.success());
        let mut check = PatternCheck::new();
        check.feed(&out.stderr);
        assert_eq!((check.total, check.first_mismatch), (1_000_000, None));

        let r = fixture_cmd(["sleep", "30"])
            .stdout(Stdio::Null)
            .deadline(Duration::from_millis(50))
            .status_async()
            .await
            .unwrap();
        assert!(r.timed_out(), "{r:?}");
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
    });
    drop(runtime);
    leak.assert_clean();
}

#[test]
fn cancelling_output_async_kills_and_reaps_the_child() {
    warm_up();
    let leak = LeakCheck::new();
    let runtime = support::current_thread_runtime();
    runtime.block_on(async {
        let mut cmd = fixture_cmd(["grandchildren", "2", "30", "stay"]);
        cmd.grace_period(Duration::from_secs(30));
        let cancelled = tokio::time::timeout(Duration::from_millis(200), cmd.output_async()).await;
        assert!(cancelled.is_err(), "the child sleeps 30 s");
    });
    drop(runtime);
    // The drop of the future killed the group and reaped the child.
    assert!(common::our_children().is_empty());
    assert!(support::wait_until(Duration::from_secs(2), || {
        common::marker_processes().is_empty()
    }));
    leak.assert_clean();
}

#[test]
fn a_command_that_cannot_start_is_a_typed_error_on_the_direct_path() {
    warm_up();
    let leak = LeakCheck::new();
    let err = Command::new("/no/such/program").output().unwrap_err();
    assert!(err.is_not_found());
    let err = Command::new("true").arg("a\0b").status().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    leak.assert_clean();
}

/// What the child of a one-line call finds on fds 0-2: the file and the
/// access mode (0 read, 1 write) of each, read from its own /proc.
fn streams_seen_by_the_child(cmd: &mut Command, call: impl FnOnce(&Command)) -> Vec<(String, u32)> {
    let report = std::env::temp_dir().join(format!("childminder-streams-{}", std::process::id()));
    cmd.args([
        "-c",
        // Read into variables first: a redirection of `echo` would show.
        r#"exec 3>"$1"; for fd in 0 1 2; do l=$(readlink /proc/$$/fd/$fd); f=$(sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/$fd); echo "$l $f" >&3; done"#,
        "sh",
    ])
    .arg(&report);
    call(cmd);
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::remove_file(&report).unwrap();
    text.lines()
        .map(|line| {
            let (file, flags) = line.rsplit_once(' ').unwrap();
            (file.to_owned(), u32::from_str_radix(flags, 8).unwrap() & 3)
        })
        .collect()
}

/// As std's `output()`: a stdin left piped is /dev/null, read-only (it
/// used to be a pipe closed at once); `run()` gives stdout and stderr
/// /dev/null for writing, one open file shared by both.
#[test]
fn the_one_line_calls_give_the_child_the_streams_std_gives() {
    warm_up();
    let leak = LeakCheck::new();
    let null = |mode| ("/dev/null".to_owned(), mode);
    let seen = streams_seen_by_the_child(&mut Command::new("sh"), |cmd| {
        let out = cmd.output().unwrap();
        assert!(out.result.success(), "{:?}", out.result);
    });
    assert_eq!(seen[0], null(0), "{seen:?}");
    assert!(
        seen[1].0.starts_with("pipe:") && seen[2].0.starts_with("pipe:"),
        "{seen:?}"
    );
    let seen = streams_seen_by_the_child(&mut Command::new("sh"), |cmd| {
        assert!(cmd.run().unwrap().success());
    });
    assert_eq!(seen, [null(0), null(1), null(1)]);
    let seen = streams_seen_by_the_child(
        Command::new("sh")
            .stdout(Stdio::Null)
            .stderr(Stdio::ToStdout),
        |cmd| assert!(cmd.output().unwrap().result.success()),
    );
    assert_eq!(seen, [null(0), null(1), null(1)]);
    leak.assert_clean();
}

/// The environment passed on untouched (no `env`, `env_remove` or
/// `env_clear`) is this process's own, read where the C library keeps it:
/// a variable set just before the call reaches the child.
#[test]
fn an_untouched_environment_reaches_the_child_as_it_is_now() {
    // SAFETY: no other thread of this test process reads or writes the
    // environment (nextest runs one test per process; `cargo test` runs
    // them one at a time, RUST_TEST_THREADS=1 in .cargo/config.toml).
    unsafe { std::env::set_var("CHILDMINDER_TEST_FRESH", "set just now") };
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$CHILDMINDER_TEST_FRESH\""])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"set just now");
    // SAFETY: as above.
    unsafe { std::env::remove_var("CHILDMINDER_TEST_FRESH") };
    let out = Command::new("sh")
        .args(["-c", "printf %s \"${CHILDMINDER_TEST_FRESH-unset}\""])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"unset");
}

/// A child that leaves processes behind in its group, neither holding the
/// output pipes: the call returns only once they are gone, the one
/// ignoring SIGTERM killed a grace period later. (Run without a deadline,
/// which is the polled path's case: it hands the group to the sweep.)
#[test]
fn a_one_line_call_returns_with_nothing_left_of_the_group() {
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "(trap '' TERM; exec sleep 30) >/dev/null 2>&1 & a=$!; \
         sleep 30 >/dev/null 2>&1 & echo ready $a $!; exit 0",
    ])
    .grace_period(Duration::from_millis(200));
    for (call, output) in outputs() {
        let t = Instant::now();
        let out = output(&cmd);
        let r = &out.result;
        assert_eq!(r.exit.unwrap().code(), Some(0), "{call}: {r:?}");
        assert_eq!(r.termination, Termination::Clean, "{call}: {r:?}");
        assert!(!r.output_cut_off, "{call}: {r:?}");
        let pids = support::ready_pids(String::from_utf8_lossy(&out.stdout).trim());
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&p| common::pid_alive(p))
            .collect();
        assert!(
            alive.is_empty(),
            "{call}: left alive after the call: {alive:?}"
        );
        // The TERM-ignoring one needed the KILL, a grace period after the TERM.
        let elapsed = t.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{call}: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(20), "{call}: {elapsed:?}");
    }
    leak.assert_clean();
}

fn epoll_instances() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == "anon_inode:[eventpoll]")
        .count()
}

/// The blocking one-line calls run on `poll(2)` alone, their deadline
/// included: a thread that never made a call before builds no runtime (its
/// epoll instance would stay, kept for the thread's next call), while
/// `with_process`, which lends the thread's runtime to its stdio thread,
/// does. (Not the subreaper, which takes the runtime path too: it would
/// make the whole test process a subreaper, and under `cargo test` the
/// grandchildren of the tests after this one its zombies.)
#[test]
fn a_one_line_call_builds_no_runtime_with_or_without_a_deadline() {
    std::thread::spawn(|| {
        let before = epoll_instances();
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .output()
            .unwrap();
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
        assert!(Command::new("true").status().unwrap().success());
        assert!(Command::new("true").run().unwrap().success());
        let timed = Command::new("true")
            .deadline(Duration::from_secs(60))
            .run()
            .unwrap();
        assert!(timed.success());
        let expired = Command::new("sleep")
            .arg("30")
            .deadline(Duration::from_millis(20))
            .run()
            .unwrap();
        assert!(expired.timed_out(), "{expired:?}");
        assert_eq!(epoll_instances(), before, "a runtime was built");
        let scoped = childminder::with_process(
            &Command::new("true"),
            childminder::stdin::empty(),
            childminder::discard,
            childminder::discard,
            |p| p.wait(),
        )
        .unwrap();
        assert!(scoped.success());
        assert!(
            epoll_instances() > before,
            "with_process lends the thread's runtime"
        );
    })
    .join()
    .unwrap();
}

/// The output cut-off of the polled path: a grandchild that holds the
/// output pipes and ignores SIGTERM is cut off one grace period after the
/// child's exit, and killed then, at once (not by the sweep's TERM and a
/// second grace period); the call sleeps through the grace period rather
/// than polling without a timeout.
#[test]
fn a_held_pipe_is_cut_off_after_one_grace_period_asleep_and_its_holder_killed_at_once() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_secs(1);
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "(trap '' TERM; exec sleep 30) & echo ready $!; exit 0",
    ])
    .grace_period(grace);
    for (call, output) in outputs() {
        let (cpu, t) = (support::cpu_time(), Instant::now());
        let out = output(&cmd);
        let (cpu, elapsed) = (support::cpu_time() - cpu, t.elapsed());
        let r = &out.result;
        assert!(r.output_cut_off, "{call}: {r:?}");
        assert_eq!(r.exit.unwrap().code(), Some(0), "{call}: {r:?}");
        let holder = support::ready_pids(String::from_utf8_lossy(&out.stdout).trim())[0];
        assert!(
            !common::pid_alive(holder),
            "{call}: {holder} outlived the call"
        );
        assert!(elapsed >= grace, "{call}: cut off early: {elapsed:?}");
        assert!(
            elapsed < grace * 9 / 5,
            "{call}: a second grace period was waited: {elapsed:?}"
        );
        assert!(
            cpu < grace / 4,
            "{call}: {cpu:?} of CPU while waiting {elapsed:?}"
        );
    }
    leak.assert_clean();
}

/// With no grace period at all, the output a child wrote before it exited
/// still all arrives, on every path (the runtime one, which a deadline
/// takes, used to cut it off while the pipe held it).
#[test]
fn a_zero_grace_period_loses_none_of_the_output_written_before_the_exit() {
    warm_up();
    let leak = LeakCheck::new();
    let total = 2 << 20;
    let mut cmd = fixture_cmd(["write", &total.to_string()]);
    // Small reads: the pipe still holds most of a megabyte at the exit.
    cmd.grace_period(Duration::ZERO)
        .pipe_capacity(1 << 20)
        .buffer_size(64);
    for deadline in [None, Some(Duration::from_secs(600))] {
        if let Some(deadline) = deadline {
            cmd.deadline(deadline);
        }
        for (call, output) in outputs() {
            let out = output(&cmd);
            let r = &out.result;
            assert!(r.success(), "{call}, {deadline:?}: {r:?}");
            assert!(!r.output_cut_off, "{call}, {deadline:?}: {r:?}");
            let mut check = PatternCheck::new();
            check.feed(&out.stdout);
            assert_eq!(
                (check.total, check.first_mismatch),
                (total as u64, None),
                "{call}, {deadline:?}"
            );
        }
    }
    leak.assert_clean();
}

/// Found in review: on a runtime whose clock is paused (tokio's
/// `start_paused`, common in async tests), the cut-off timer fires at once
/// in real time, and the reader, looping back to a check on the real clock,
/// spun a whole core until the grace period had passed in real time. The
/// timer's firing now decides the cut-off itself.
#[test]
fn output_async_on_a_paused_clock_cuts_off_without_spinning() {
    warm_up();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let grace = Duration::from_secs(2);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "(exec sleep 30) & echo ready $!; exit 0"])
        .grace_period(grace);
    let cpu = support::cpu_time();
    let out = rt.block_on(cmd.output_async()).unwrap();
    let cpu = support::cpu_time() - cpu;
    assert!(out.result.output_cut_off, "{:?}", out.result);
    let holder = support::ready_pids(String::from_utf8_lossy(&out.stdout).trim());
    support::assert_all_dead(&holder);
    assert!(
        cpu < grace / 4,
        "{cpu:?} of CPU for a {grace:?} grace period"
    );
}

/// Both streams flooded at once, by two writers, with small reads: every
/// byte of each arrives in order, on both drivers (the async one clears a
/// pipe's readiness before each read, never after one, so no wake-up of a
/// write landing in between is lost).
#[test]
fn two_flooded_streams_are_read_to_the_last_byte() {
    warm_up();
    let leak = LeakCheck::new();
    let total: u64 = 8 << 20;
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "\"$0\" write \"$1\" out & \"$0\" write \"$1\" err; wait",
        common::fixture(),
        &total.to_string(),
    ])
    .buffer_size(512);
    for (call, output) in outputs() {
        let out = output(&cmd);
        assert!(out.result.success(), "{call}: {:?}", out.result);
        for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let mut check = PatternCheck::new();
            check.feed(stream);
            assert_eq!(
                (check.total, check.first_mismatch),
                (total, None),
                "{call}: {name}"
            );
        }
    }
    leak.assert_clean();
}

/// On a runtime without I/O enabled, tokio panics where the child's pidfd
/// is registered, after the spawn: the panic goes on to the caller, and
/// the child is killed and reaped first, not left running.
#[test]
fn output_async_on_a_runtime_without_io_panics_with_no_child_left() {
    warm_up();
    let leak = LeakCheck::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let cmd = fixture_cmd(["sleep", "30"]);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(cmd.output_async())
    }));
    assert!(panicked.is_err(), "tokio's documented panic");
    assert!(common::our_children().is_empty());
    assert!(support::wait_until(Duration::from_secs(2), || {
        common::marker_processes().is_empty()
    }));
    drop(runtime);
    leak.assert_clean();
}
