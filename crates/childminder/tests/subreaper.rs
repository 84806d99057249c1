//! Issue 10, part 1: the subreaper. Daemons that double-fork out of the
//! child's process group re-parent to the supervisor and are ended (TERM,
//! then KILL after the grace) and reaped at the end of the supervision.
//!
//! The subreaper is process-wide, and the sweep runs when the last
//! overlapping subreaper supervision ends: the tests of this file take
//! [`SERIAL`], so under plain `cargo test` (tests as threads of one
//! process) one test's supervision never defers another's sweep.

mod common;
#[path = "common/support.rs"]
mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use childminder::{ExitStatus, discard, stdin, with_process, with_process_result};
use common::{LeakCheck, our_children, pid_alive};
use support::{assert_all_dead, expect_ready, fixture_cmd, line_consumer, stat_field, warm_up};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const GRACE: Duration = Duration::from_millis(300);

/// The session id of `pid` (field 6 of /proc/PID/stat).
fn session_of(pid: i32) -> i32 {
    stat_field(pid, 6)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no session for pid {pid}"))
}

/// Blocks until some child of this process is a zombie (an event: waitid
/// with WNOWAIT), leaving it unreaped.
fn wait_for_a_zombie_child() {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes into `info`; WNOWAIT leaves the child unreaped.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
}

#[test]
fn a_double_forked_daemon_is_ended_and_reaped_by_the_subreaper_sweep() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = fixture_cmd(["daemon", "300"]);
    cmd.grace_period(Duration::from_secs(30)).subreaper(true);
    let (lines, rx) = line_consumer();
    let started = Instant::now();
    let (daemon, r) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let daemon = expect_ready(&rx)[0];
        // It left the group and the session, and is ours now.
        assert_ne!(session_of(daemon), session_of(std::process::id() as i32));
        assert!(pid_alive(daemon));
        let at_exit = p.wait();
        assert_eq!(at_exit.containment.escapees_ended, 0, "not swept yet");
        daemon
    })
    .unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    assert!(r.containment.subreaper);
    assert_eq!(r.containment.escapees_ended, 1, "{r:?}");
    assert_eq!(r.containment.escapees_killed, 0, "TERM was enough: {r:?}");
    // TERM ended it at once: the 30 s grace was not waited for.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!pid_alive(daemon));
    leak.assert_clean();
}

#[test]
fn a_daemon_tree_that_ignores_term_is_killed_after_the_grace_and_reaped() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = fixture_cmd(["daemon", "300", "ignore-term", "5"]);
    cmd.grace_period(GRACE).subreaper(true);
    let (lines, rx) = line_consumer();
    let mut swept_at = None;
    let (daemon, r) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let daemon = expect_ready(&rx)[0];
        p.wait();
        swept_at = Some(Instant::now());
        daemon
    })
    .unwrap();
    let sweep = swept_at.unwrap().elapsed();
    // The daemon, then its five children once they re-parented to us.
    assert_eq!(r.containment.escapees_ended, 6, "{r:?}");
    assert_eq!(r.containment.escapees_killed, 6, "{r:?}");
    assert!(sweep >= GRACE, "KILL came before the grace: {sweep:?}");
    assert!(sweep < GRACE + Duration::from_secs(5), "{sweep:?}");
    assert!(!pid_alive(daemon));
    assert!(our_children().is_empty());
    leak.assert_clean();
}

#[test]
fn a_tree_of_escapees_that_obey_term_is_ended_level_by_level() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = fixture_cmd(["daemon", "300", "term", "50"]);
    cmd.grace_period(Duration::from_secs(30)).subreaper(true);
    let r = cmd.run().unwrap();
    assert_eq!(r.containment.escapees_ended, 51, "{r:?}");
    assert_eq!(r.containment.escapees_killed, 0, "{r:?}");
    leak.assert_clean();
}

#[test]
fn without_the_option_nothing_is_swept_outside_the_group() {
    let _serial = serial();
    warm_up();
    let (lines, rx) = line_consumer();
    let (daemon, r) = with_process_result(
        &fixture_cmd(["daemon", "300"]),
        stdin::empty(),
        lines,
        discard,
        |p| {
            let daemon = expect_ready(&rx)[0];
            p.wait();
            daemon
        },
    )
    .unwrap();
    assert!(!r.containment.subreaper);
    assert_eq!(r.containment.escapees_ended, 0);
    assert!(pid_alive(daemon), "the daemon escaped, as documented");
    // SAFETY: the test's own daemon; kill(2) takes integers.
    unsafe { libc::kill(daemon, libc::SIGKILL) };
    if childminder::subreaper::is_enabled() {
        // An earlier test made this process a subreaper: reap it here.
        wait_for_a_zombie_child();
        assert_eq!(childminder::subreaper::reap_orphans().unwrap(), 1);
    } else {
        assert_all_dead(&[daemon]);
    }
}

/// Runs `during` while a plain supervision's child runs (given its pid),
/// then checks that child was left alone: its own teardown ends it, with
/// TERM.
fn while_a_plain_child_runs(during: impl FnOnce(i32)) {
    let (lines, rx) = line_consumer();
    let r = with_process(
        fixture_cmd(["sleep", "300"]).grace_period(GRACE),
        stdin::empty(),
        lines,
        discard,
        |plain| {
            expect_ready(&rx);
            during(plain.pid() as i32);
            assert!(pid_alive(plain.pid() as i32), "the other child was ended");
            assert!(plain.try_result().is_none());
            plain.shutdown()
        },
    )
    .unwrap();
    assert_eq!(
        r.exit.unwrap().signal(),
        Some(childminder::Signal::TERM),
        "{r:?}"
    );
}

#[test]
fn children_of_other_supervisions_are_never_escapees() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    // A subreaper supervision ends and sweeps while a plain one runs.
    while_a_plain_child_runs(|_| {
        let swept = fixture_cmd(["daemon", "300"])
            .subreaper(true)
            .grace_period(GRACE)
            .run()
            .unwrap();
        assert_eq!(swept.containment.escapees_ended, 1, "{swept:?}");
    });
    leak.assert_clean();
}

#[test]
fn overlapping_subreaper_supervisions_sweep_at_the_end_of_the_last() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    let (lines, rx) = line_consumer();
    let mut outer_daemon = 0;
    let ((), outer) = with_process_result(
        fixture_cmd(["daemon", "300"])
            .subreaper(true)
            .grace_period(GRACE),
        stdin::empty(),
        lines,
        discard,
        |p| {
            outer_daemon = expect_ready(&rx)[0];
            p.wait();
            // This one ends while the outer one still runs: it must not
            // end the outer one's daemon.
            let inner = fixture_cmd(["exit", "0"]).subreaper(true).run().unwrap();
            assert_eq!(inner.containment.escapees_ended, 0, "{inner:?}");
            assert!(pid_alive(outer_daemon), "ended by the inner sweep");
        },
    )
    .unwrap();
    assert_eq!(outer.containment.escapees_ended, 1, "{outer:?}");
    assert!(!pid_alive(outer_daemon));
    leak.assert_clean();
}

#[test]
fn reap_orphans_reaps_exited_orphans_and_nothing_else() {
    let _serial = serial();
    warm_up();
    childminder::subreaper::enable().unwrap();
    let leak = LeakCheck::new();
    while_a_plain_child_runs(|_| {
        // A daemon that exits at once: its zombie is ours to reap.
        let daemon = fixture_cmd(["daemon", "0"]).run().unwrap();
        assert!(daemon.success(), "{daemon:?}");
        wait_for_a_zombie_child();
        assert_eq!(childminder::subreaper::reap_orphans().unwrap(), 1);
        assert_eq!(childminder::subreaper::reap_orphans().unwrap(), 0);
    });
    leak.assert_clean();
}

#[test]
fn the_async_shutdown_returns_the_sweep_in_its_result() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    let runtime = support::current_thread_runtime();
    let r = runtime.block_on(async {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = fixture_cmd(["daemon", "300"]);
        cmd.subreaper(true).grace_period(GRACE);
        let mut child = cmd.spawn().unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("ready "), "{line:?}");
        child.wait().await;
        child.shutdown().await
    });
    drop(runtime);
    assert_eq!(r.containment.escapees_ended, 1, "{r:?}");
    leak.assert_clean();
}

/// Caught by mutation testing: `is_enabled` must ask the kernel too, not
/// only remember its own `enable`.
#[test]
fn is_enabled_sees_a_subreaper_made_by_anyone() {
    let _serial = serial();
    // SAFETY: prctl with integer arguments, on this test process.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    assert!(childminder::subreaper::is_enabled());
    childminder::subreaper::enable().unwrap();
    assert!(childminder::subreaper::is_enabled());
}

/// Caught by an acceptance run: `output_async()` with the subreaper,
/// cancelled while its child ran, killed and reaped the child, but its
/// escapee (a `setsid` daemon) ran on, and the rest of its group stayed a
/// zombie of this process until some later sweep. The cancelled call hands
/// its sweep to the engine, which ends the escapee and reaps both.
#[test]
fn a_cancelled_output_async_still_ends_its_escapees() {
    let _serial = serial();
    warm_up();
    let runtime = support::current_thread_runtime();
    let leak = LeakCheck::new();
    let mut cmd = support::marked("sh");
    cmd.args([
        "-c",
        "setsid sleep 301 </dev/null >/dev/null 2>&1 & sleep 301 & exec sleep 301",
    ])
    .subreaper(true)
    .grace_period(Duration::from_millis(200));
    let all_three_run = async {
        while common::marker_processes().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    runtime.block_on(async {
        tokio::select! {
            out = cmd.output_async() => panic!("the child cannot end by itself: {out:?}"),
            ran = tokio::time::timeout(Duration::from_secs(10), all_three_run) => {
                ran.expect("the child, its group member and its escapee run");
            }
        }
    });
    assert!(
        support::wait_until(Duration::from_secs(5), || {
            common::marker_processes().is_empty() && our_children().is_empty()
        }),
        "left: {:?}, children: {:?}",
        common::marker_processes(),
        our_children()
    );
    drop(runtime);
    leak.assert_clean();
}
