//! Issue 2, row 8: the async API — `Command::spawn`, the `Child` handle and
//! its streams, dropping, `with_child` and its cancellation, backpressure.
//!
//! Each test builds its own current-thread runtime first and takes the
//! LeakCheck baseline after it, then checks for leaks while it still exists.

mod common;
#[path = "common/support.rs"]
mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use childminder::{
    Child, ChildStdout, EscalationCause, ExitStatus, Signal, Termination, with_child,
};
use common::{LeakCheck, our_children, pid_alive};
use support::{
    HANDSHAKE, PatternCheck, assert_all_dead, fixture_cmd, marked, pattern, ready_pids,
    wait_until_write_blocked,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    support::current_thread_runtime()
}

/// The runtime, then the leak baseline (so the runtime's own fds are not
/// counted), as every test here starts.
fn start() -> (Runtime, LeakCheck) {
    let rt = runtime();
    support::mark_fd_baseline();
    (rt, LeakCheck::new())
}

/// Awaits `fut`, failing the test after [`HANDSHAKE`].
async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANDSHAKE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {HANDSHAKE:?}"))
}

/// Reads the fixture's `ready` line from the child's stdout; returns the
/// pids on it and the reader (dropping it would close the pipe).
async fn read_ready(child: &mut Child) -> (Vec<i32>, BufReader<ChildStdout>) {
    let mut reader = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    bounded("ready line", reader.read_line(&mut line))
        .await
        .unwrap();
    (ready_pids(line.trim_end()), reader)
}

/// Polls (yielding to the runtime, which runs the background teardown)
/// until the teardown is over: our children reaped, and no pidfd or pipe of
/// the supervision left open. No event is exposed for it, hence the poll.
async fn background_teardown_done() {
    eventually("background teardown", || {
        our_children().is_empty() && support::supervision_fds().is_empty()
    })
    .await;
}

/// Polls (yielding to the runtime, which runs the background teardown)
/// until `cond` holds, for at most 15 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            Instant::now() < end,
            "{what}: still not the case after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn async_stdin_and_stdout_round_trip_through_cat() {
    let (rt, leak) = start();
    rt.block_on(async {
        const TOTAL: usize = 4 * 1024 * 1024 + 17;
        let mut child = fixture_cmd(["cat"]).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let data = pattern(0, TOTAL);
        let writer = async {
            for chunk in data.chunks(100_003) {
                stdin.write_all(chunk).await.unwrap();
            }
            stdin.flush().await.unwrap();
            stdin.shutdown().await.unwrap(); // EOF for cat
        };
        let reader = async {
            let mut check = PatternCheck::new();
            let mut buf = vec![0; 50_000];
            loop {
                let n = stdout.read(&mut buf).await.unwrap();
                if n == 0 {
                    break check;
                }
                check.feed(&buf[..n]);
            }
        };
        let ((), check) = bounded("round trip", async { tokio::join!(writer, reader) }).await;
        assert_eq!((check.total, check.first_mismatch), (TOTAL as u64, None));
        drop(stdin);
        let r = bounded("wait", child.wait()).await;
        assert!(r.success(), "{r:?}");
        assert_eq!(r.termination, Termination::Clean);
        drop((child, stdout));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn async_wait_reports_the_exit_and_signal_after_exit_is_false() {
    let (rt, leak) = start();
    rt.block_on(async {
        let child = fixture_cmd(["exit", "7"]).spawn().unwrap();
        assert!(child.pid() > 1);
        let r = bounded("wait", child.wait()).await;
        assert_eq!(r.exit, Some(ExitStatus::Exited(7)));
        assert_eq!(r.termination, Termination::Clean);
        assert_eq!(r.pid, child.pid());
        let polled = child.try_result().expect("published");
        assert_eq!(polled.exit, r.exit);
        // wait again: the same result.
        assert_eq!(child.wait().await.runtime, r.runtime);
        assert!(!child.signal(Signal::TERM).unwrap());
        drop(child);
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn async_try_result_is_none_while_running_and_signal_is_delivered() {
    let (rt, leak) = start();
    rt.block_on(async {
        let mut child = fixture_cmd(["sleep", "300"]).spawn().unwrap();
        let (_, out) = read_ready(&mut child).await;
        assert!(child.try_result().is_none());
        assert!(child.signal(Signal::USR1).unwrap());
        let r = bounded("wait", child.wait()).await;
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::USR1));
        assert_eq!(r.termination, Termination::Clean);
        assert!(!child.signal(Signal::USR1).unwrap());
        drop((child, out));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn async_shutdown_escalates_sweeps_and_reaps() {
    let (rt, leak) = start();
    rt.block_on(async {
        let grace = Duration::from_millis(100);
        let mut child = fixture_cmd(["grandchildren", "2", "300", "stay"])
            .grace_period(grace)
            .spawn()
            .unwrap();
        let (grandchildren, _out) = read_ready(&mut child).await;
        let t = Instant::now();
        let r = bounded("shutdown", child.shutdown()).await;
        assert!(t.elapsed() >= grace);
        assert_eq!(r.termination, Termination::Escalated, "{r:?}");
        assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
        // "sweeps the process group, reaps, and returns the result"
        assert!(
            our_children().is_empty(),
            "not reaped: {:?}",
            our_children()
        );
        assert_all_dead(&grandchildren);
        // Calling again waits for the same result.
        assert_eq!(child.shutdown().await.runtime, r.runtime);
    });
    leak.assert_clean();
}

#[test]
fn async_shutdown_of_cat_closes_stdin_and_is_clean() {
    let (rt, leak) = start();
    rt.block_on(async {
        // stdin stays in the Child: shutdown must close it.
        let child = fixture_cmd(["cat"])
            .grace_period(Duration::from_secs(4))
            .spawn()
            .unwrap();
        let t = Instant::now();
        let r = bounded("shutdown", child.shutdown()).await;
        assert_eq!(r.termination, Termination::Clean, "{r:?}");
        assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
        assert!(t.elapsed() < Duration::from_secs(3));
    });
    leak.assert_clean();
}

#[test]
fn async_close_stdin_and_dropping_stdin_give_eof() {
    let (rt, leak) = start();
    rt.block_on(async {
        let mut child = fixture_cmd(["count-stdin"]).spawn().unwrap();
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"12345")
            .await
            .unwrap();
        child.close_stdin();
        assert!(child.stdin.is_none());
        let mut out = String::new();
        let mut stdout = child.stdout.take().unwrap();
        bounded("read", stdout.read_to_string(&mut out))
            .await
            .unwrap();
        assert_eq!(out, "5\n");
        assert!(bounded("wait", child.wait()).await.success());
        drop((child, stdout));

        // Taken and dropped: EOF too; close_stdin afterwards is harmless.
        let mut child = fixture_cmd(["count-stdin"]).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"abc").await.unwrap();
        drop(stdin);
        child.close_stdin();
        let mut out = String::new();
        let mut stdout = child.stdout.take().unwrap();
        bounded("read", stdout.read_to_string(&mut out))
            .await
            .unwrap();
        assert_eq!(out, "3\n");
        assert!(bounded("wait", child.wait()).await.success());
        drop((child, stdout));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn async_stderr_is_readable() {
    let (rt, leak) = start();
    rt.block_on(async {
        let mut child = fixture_cmd(["print-then-exit", "both", "0"])
            .spawn()
            .unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (a, b) = bounded("read", async {
            tokio::join!(
                stdout.read_to_string(&mut out),
                stderr.read_to_string(&mut err)
            )
        })
        .await;
        a.unwrap();
        b.unwrap();
        assert_eq!((out.as_str(), err.as_str()), ("both\n", "err:both\n"));
        assert!(bounded("wait", child.wait()).await.success());
        drop((child, stdout, stderr));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn async_kill_and_terminate() {
    let (rt, leak) = start();
    rt.block_on(async {
        let mut child = fixture_cmd(["ignore-term", "300"])
            .grace_period(Duration::from_secs(5))
            .spawn()
            .unwrap();
        let (_, out) = read_ready(&mut child).await;
        let t = Instant::now();
        child.kill();
        let r = bounded("wait", child.wait()).await;
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
        assert_eq!(r.termination, Termination::Escalated);
        assert_eq!(r.escalation_cause, Some(EscalationCause::Requested));
        drop((child, out));

        let mut child = fixture_cmd(["sleep", "300"]).spawn().unwrap();
        let (_, out) = read_ready(&mut child).await;
        child.terminate(Signal::INT);
        let r = bounded("wait", child.wait()).await;
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::INT));
        assert_eq!(r.escalation_cause, Some(EscalationCause::Requested));
        assert!(r.term_sent_after.is_some() && r.kill_sent_after.is_none());
        drop((child, out));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

/// Caught by an acceptance test: on a current-thread runtime `kill()` only
/// asked the supervising task, which runs at the caller's next `.await`,
/// so `kill(); exit(0)` left the child running (tokio's `start_kill` sends
/// before it returns). Here the caller blocks without yielding: the child
/// must die all the same, and the result still counts the kill as ours.
#[test]
fn async_kill_sends_sigkill_before_it_returns_even_on_a_current_thread_runtime() {
    let (rt, leak) = start();
    rt.block_on(async {
        let mut child = fixture_cmd(["ignore-term", "300"]).spawn().unwrap();
        let (_, out) = read_ready(&mut child).await;
        child.kill();
        {
            // No `.await` from the kill to here: the task has not run.
            let pidfd = child.pidfd().unwrap();
            let mut exit = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(HANDSHAKE).unwrap();
            let ready = rustix::event::poll(&mut exit, Some(&timeout)).unwrap();
            assert_eq!(ready, 1, "the child outlived kill() by {HANDSHAKE:?}");
        }
        let r = bounded("wait", child.wait()).await;
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
        assert_eq!(r.termination, Termination::Escalated, "{r:?}");
        assert_eq!(r.escalation_cause, Some(EscalationCause::Requested));
        assert!(r.kill_sent_after.is_some(), "{r:?}");
        drop((child, out));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn async_deadline_runs_from_spawn() {
    let (rt, leak) = start();
    rt.block_on(async {
        let deadline = Duration::from_millis(300);
        let child = fixture_cmd(["sleep", "300"])
            .deadline(deadline)
            .spawn()
            .unwrap();
        // wait starts no escalation itself; the deadline does.
        let r = bounded("wait", child.wait()).await;
        assert!(r.timed_out(), "{r:?}");
        assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
        assert!(r.term_sent_after.unwrap() >= deadline);
        drop(child);
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn dropping_a_running_child_tears_it_down_in_the_background() {
    let (rt, leak) = start();
    rt.block_on(async {
        let mut child = fixture_cmd(["grandchildren", "2", "300", "stay"])
            .grace_period(Duration::from_millis(100))
            .spawn()
            .unwrap();
        let (grandchildren, out) = read_ready(&mut child).await;
        let pid = child.pid() as i32;
        drop(out);
        drop(child);
        eventually("child reaped", || {
            !pid_alive(pid) && our_children().is_empty()
        })
        .await;
        eventually("grandchildren gone", || {
            grandchildren.iter().all(|&g| !pid_alive(g))
        })
        .await;
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn with_child_tears_down_after_the_action_and_returns_its_value() {
    let (rt, leak) = start();
    rt.block_on(async {
        let cmd = fixture_cmd(["grandchildren", "2", "300", "stay"])
            .grace_period(Duration::from_millis(100))
            .clone();
        let (pid, grandchildren) = bounded(
            "with_child",
            with_child(&cmd, async |child: &mut Child| {
                let (grandchildren, _out) = read_ready(child).await;
                (child.pid() as i32, grandchildren)
            }),
        )
        .await
        .unwrap();
        // Returned after the teardown: reaped already.
        assert!(!pid_alive(pid));
        assert!(
            our_children().is_empty(),
            "not reaped: {:?}",
            our_children()
        );
        assert_all_dead(&grandchildren);
    });
    leak.assert_clean();
}

#[test]
fn with_child_scoped_round_trip() {
    let (rt, leak) = start();
    rt.block_on(async {
        let cmd = fixture_cmd(["cat"]);
        let echoed = with_child(&cmd, async |child: &mut Child| {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"scoped\n").await.unwrap();
            drop(stdin);
            let mut out = String::new();
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_to_string(&mut out)
                .await
                .unwrap();
            let r = child.wait().await;
            (out, r)
        })
        .await
        .unwrap();
        assert_eq!(echoed.0, "scoped\n");
        assert!(echoed.1.success(), "{:?}", echoed.1);
        assert!(our_children().is_empty());
    });
    leak.assert_clean();
}

#[test]
fn cancelling_with_child_reaps_the_child_in_the_background() {
    let (rt, leak) = start();
    rt.block_on(async {
        let cmd = fixture_cmd(["grandchildren", "1", "300", "stay"])
            .grace_period(Duration::from_millis(100))
            .clone();
        let (pids_tx, pids_rx) = std::sync::mpsc::channel();
        let outcome = tokio::time::timeout(
            Duration::from_millis(1500),
            with_child(&cmd, async |child: &mut Child| {
                let (grandchildren, _out) = read_ready(child).await;
                pids_tx.send((child.pid() as i32, grandchildren)).unwrap();
                std::future::pending::<()>().await
            }),
        )
        .await;
        assert!(outcome.is_err(), "the timeout did not fire");
        let (pid, grandchildren) = pids_rx
            .try_recv()
            .expect("the child was not ready within the 1.5 s timeout");
        eventually("child reaped", || {
            !pid_alive(pid) && our_children().is_empty()
        })
        .await;
        eventually("grandchildren gone", || {
            grandchildren.iter().all(|&g| !pid_alive(g))
        })
        .await;
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn cancelling_with_child_by_select_reaps_the_child_in_the_background() {
    let (rt, leak) = start();
    rt.block_on(async {
        let cmd = fixture_cmd(["ignore-term", "300"])
            .grace_period(Duration::from_millis(100))
            .clone();
        let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
        let mut pid_tx = Some(pid_tx);
        let scoped = with_child(&cmd, async |child: &mut Child| {
            let (_, _out) = read_ready(child).await;
            let _ = pid_tx.take().unwrap().send(child.pid() as i32);
            std::future::pending::<()>().await
        });
        let pid = tokio::select! {
            _ = scoped => unreachable!("the action never ends"),
            pid = bounded("ready", pid_rx) => pid.unwrap(),
        };
        // The with_child future is dropped: the teardown (grace, TERM
        // ignored, grace, KILL) runs in the background.
        eventually("child reaped", || {
            !pid_alive(pid) && our_children().is_empty()
        })
        .await;
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn with_child_action_panic_resumes_after_the_teardown() {
    let (rt, leak) = start();
    let mut pid = 0;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async {
            let cmd = fixture_cmd(["sleep", "300"])
                .grace_period(Duration::from_millis(100))
                .clone();
            with_child(&cmd, async |child: &mut Child| {
                let (_, _out) = read_ready(child).await;
                pid = child.pid() as i32;
                panic!("async action boom");
            })
            .await
        })
    }));
    let payload = outcome.expect_err("the panic must resume");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"async action boom"));
    assert!(pid > 0);
    assert!(!pid_alive(pid));
    assert!(
        our_children().is_empty(),
        "not reaped: {:?}",
        our_children()
    );
    leak.assert_clean();
}

#[test]
fn backpressure_a_slow_reader_blocks_the_child_and_every_byte_arrives() {
    let (rt, leak) = start();
    rt.block_on(async {
        const TOTAL: u64 = 64 * 1024 * 1024;
        let mut child = marked("head")
            .args(["-c", &TOTAL.to_string(), "/dev/zero"])
            .spawn()
            .unwrap();
        let pid = child.pid() as i32;
        // Not reading: the child fills the pipe and blocks in write. The
        // check blocks this (only) runtime thread, which is the point: no
        // task may be reading for us meanwhile.
        let written = wait_until_write_blocked(pid, Duration::from_secs(8));
        assert!(
            written < 4 * 1024 * 1024,
            "the child wrote {written} bytes with nobody reading: something buffers"
        );
        let state = support::stat_field(pid, 3).unwrap();
        assert_eq!(state, "S", "the child is not blocked (state {state})");
        assert!(child.try_result().is_none());

        let mut stdout = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let (mut total, mut nonzero) = (0u64, 0u64);
        bounded("read 64 MiB", async {
            loop {
                let n = stdout.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n as u64;
                nonzero += buf[..n].iter().filter(|&&b| b != 0).count() as u64;
            }
        })
        .await;
        assert_eq!((total, nonzero), (TOTAL, 0));
        let r = bounded("wait", child.wait()).await;
        assert!(r.success(), "{r:?}");
        drop((child, stdout));
        background_teardown_done().await;
    });
    leak.assert_clean();
}

#[test]
fn runtime_shutdown_kills_and_reaps_a_live_child() {
    // A first runtime sets up what tokio keeps for the whole process (its
    // signal-handling socket pair), so the check below sees only ours.
    drop(runtime());
    support::mark_fd_baseline();
    let leak = LeakCheck::new();
    let rt = runtime();
    let (child, pid) = rt.block_on(async {
        let mut child = fixture_cmd(["ignore-term", "300"]).spawn().unwrap();
        let (_, out) = read_ready(&mut child).await;
        drop(out);
        let pid = child.pid() as i32;
        (child, pid)
    });
    // The runtime goes first, with the Child still held.
    drop(rt);
    assert!(!pid_alive(pid), "the child outlived the runtime");
    assert!(
        our_children().is_empty(),
        "not reaped: {:?}",
        our_children()
    );
    drop(child);
    leak.assert_clean();
}

/// The text of a panic's payload (tokio's are `String`s or `&str`s).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default()
}

/// Caught by an acceptance test: on a runtime without timers, `spawn`
/// returned `Ok` and the supervising task panicked at its first timer, so
/// a deadline became an immediate SIGKILL reported as "the runtime shut
/// down". Every async entry point now panics before anything starts, and
/// `Tree::start` also without I/O.
#[test]
fn every_async_call_on_a_runtime_without_timers_or_io_panics_before_anything_starts() {
    support::warm_up();
    let leak = LeakCheck::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let mut cmd = marked("sleep");
    cmd.arg("30").deadline(Duration::from_secs(10));
    let tree = childminder::supervisor::SupervisorSpec::new().child(
        childminder::supervisor::ChildSpec::process("sleep", cmd.clone()),
    );
    let calls: [(&str, &dyn Fn()); 5] = [
        ("Tree::start", &|| {
            drop(runtime.block_on(async { childminder::supervisor::Tree::start(&tree) }))
        }),
        ("spawn", &|| {
            drop(runtime.block_on(async { cmd.spawn().map(drop) }))
        }),
        ("output_async", &|| {
            drop(runtime.block_on(cmd.output_async()))
        }),
        ("status_async", &|| {
            drop(runtime.block_on(cmd.status_async()))
        }),
        ("with_child", &|| {
            drop(runtime.block_on(with_child(&cmd, async |child| child.wait().await)))
        }),
    ];
    for (name, call) in calls {
        let panic = catch_unwind(AssertUnwindSafe(call)).expect_err(name);
        let message = panic_message(&*panic);
        assert!(message.contains("timers are disabled"), "{name}: {message}");
        assert!(
            common::marker_processes().is_empty(),
            "{name} started a child"
        );
    }
    drop(runtime);
    // Caught by a later acceptance run: on a runtime without I/O,
    // `Tree::start` returned `Ok`, tokio's panic stayed inside the tree's
    // task at its first child, and the caller saw `Outcome::Killed` and
    // events that stopped after `starting`. (The calls with a child of
    // their own panic once it is killed: the next test.)
    let without_io = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        drop(without_io.block_on(async { childminder::supervisor::Tree::start(&tree) }))
    }))
    .expect_err("Tree::start without IO");
    let message = panic_message(&*panic);
    assert!(message.contains("IO is disabled"), "{message}");
    assert!(common::marker_processes().is_empty(), "a child started");
    drop(without_io);
    leak.assert_clean();
}

/// Caught by an acceptance run: on a runtime without I/O, tokio panicked in
/// `spawn` after the child had started, and the child and its group ran on
/// unsupervised (or stayed a zombie of ours). The panic goes on to the
/// caller, as documented; the child and its grandchildren are killed and
/// reaped first. The same for `with_child`.
#[test]
fn spawn_on_a_runtime_without_io_panics_with_nothing_left() {
    support::warm_up();
    let leak = LeakCheck::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let cmd = fixture_cmd(["grandchildren", "2", "30", "stay"]);
    let spawned = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async { cmd.spawn().map(drop) })
    }));
    assert!(spawned.is_err(), "tokio's documented panic");
    let with = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(with_child(&cmd, async |child| child.wait().await))
    }));
    assert!(with.is_err(), "tokio's documented panic");
    assert!(our_children().is_empty(), "{:?}", our_children());
    assert!(support::wait_until(Duration::from_secs(2), || {
        common::marker_processes().is_empty()
    }));
    drop(runtime);
    leak.assert_clean();
}
