//! Issue 2, row 7: containment — the process group and its sweep, the
//! cut-off of pipes held by grandchildren, and the child's fds.

mod common;
#[path = "common/support.rs"]
mod support;

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use childminder::{
    Command, EscalationCause, ExitStatus, Signal, Termination, discard, stdin, with_process,
    with_process_result,
};
use common::{LeakCheck, MARKER_VAR, fixture, marker_value, pid_alive};
use support::{
    HANDSHAKE, Scratch, assert_all_dead, cpu_time, expect_ready, fixture_cmd, line_consumer,
    marked, next_line, own_pgid, warm_up,
};

const SLACK: Duration = Duration::from_secs(4);

#[test]
fn grandchildren_are_gone_when_with_process_returns() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let mut grandchildren = Vec::new();
    let r = with_process(
        fixture_cmd(["grandchildren", "3", "300", "exit"]).grace_period(Duration::from_millis(200)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            grandchildren = expect_ready(&lines);
            p.wait()
        },
    )
    .unwrap();
    assert_eq!(grandchildren.len(), 3);
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    assert_eq!(r.termination, Termination::Clean);
    assert_all_dead(&grandchildren);
    leak.assert_clean();
}

#[test]
fn run_sweeps_the_group_too() {
    warm_up();
    let leak = LeakCheck::new();
    // `run` discards the output, so the grandchildren are found by the
    // marker in their environment (LeakCheck).
    let r = fixture_cmd(["grandchildren", "2", "300", "exit"])
        .grace_period(Duration::from_millis(200))
        .run()
        .unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    leak.assert_clean();
}

#[test]
fn grandchildren_of_a_running_child_die_with_the_teardown() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let mut grandchildren = Vec::new();
    let mut child = 0;
    with_process(
        fixture_cmd(["grandchildren", "2", "300", "stay"]).grace_period(Duration::from_millis(100)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            child = p.pid() as i32;
            grandchildren = expect_ready(&lines);
        },
    )
    .unwrap();
    assert!(!pid_alive(child));
    assert_all_dead(&grandchildren);
    leak.assert_clean();
}

#[test]
fn grandchild_holding_the_pipes_is_cut_off_a_grace_after_the_childs_exit() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(300);
    let (on_out, lines) = line_consumer();
    let mut gpid = Vec::new();
    let mut ready_at = None;
    let r = with_process(
        fixture_cmd(["grandchild-holds-pipes", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            gpid = expect_ready(&lines);
            // The child exits right after `ready`.
            ready_at = Some(Instant::now());
            p.wait_timeout(grace + SLACK)
                .expect("the result was not published a grace after the child's exit")
        },
    )
    .unwrap();
    let took = ready_at.unwrap().elapsed();
    assert_eq!(gpid.len(), 1);
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    assert!(r.output_cut_off, "{r:?}");
    assert!(took < grace + SLACK, "{took:?}");
    // "the pipes were closed before end-of-file and the process group was
    // killed"
    assert_all_dead(&gpid);
    leak.assert_clean();
}

#[test]
fn grandchild_holding_the_pipes_does_not_hold_up_the_teardown() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(300);
    let (on_out, lines) = line_consumer();
    let mut gpid = Vec::new();
    let mut action_end = None;
    let ((), r) = with_process_result(
        fixture_cmd(["grandchild-holds-pipes", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |_p| {
            gpid = expect_ready(&lines);
            action_end = Some(Instant::now());
        },
    )
    .unwrap();
    let took = action_end.unwrap().elapsed();
    assert!(took < grace + SLACK, "{took:?}");
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    assert!(r.output_cut_off, "{r:?}");
    assert_all_dead(&gpid);
    leak.assert_clean();
}

#[test]
fn grandchild_ignoring_term_is_killed() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(200);
    let (on_out, lines) = line_consumer();
    let mut gpid = Vec::new();
    let mut action_end = None;
    let ((), r) = with_process_result(
        fixture_cmd(["grandchild-ignores-term", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |_p| {
            gpid = expect_ready(&lines);
            action_end = Some(Instant::now());
        },
    )
    .unwrap();
    // The child itself ends on TERM.
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM), "{r:?}");
    assert_eq!(r.termination, Termination::Escalated);
    assert_eq!(r.escalation_cause, Some(EscalationCause::Teardown));
    let took = action_end.unwrap().elapsed();
    // Natural-exit wait, TERM (the child dies, the grandchild not), then the
    // group gets TERM, a grace, KILL: at least two graces in all.
    assert!(took >= 2 * grace, "{took:?}");
    assert!(took < 3 * grace + SLACK, "{took:?}");
    assert_eq!(gpid.len(), 1);
    assert_all_dead(&gpid);
    leak.assert_clean();
}

#[test]
fn the_group_sweep_sleeps_between_its_liveness_checks() {
    // After the leader's exit no event tells when the rest of its group has
    // gone: the sweep checks, backing off to a pause between checks. Without
    // the pause it would still kill the grandchild on time, spinning.
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_secs(1);
    let (on_out, lines) = line_consumer();
    let mut gpid = Vec::new();
    let mut used = Duration::ZERO;
    let ((), r) = with_process_result(
        fixture_cmd(["grandchild-ignores-term", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            gpid = expect_ready(&lines);
            // The leader ends on TERM, its TERM-ignoring grandchild is left
            // for the sweep: TERM, a grace of liveness checks, KILL.
            p.terminate(Signal::TERM);
            used = cpu_time();
        },
    )
    .unwrap();
    let used = cpu_time() - used;
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM), "{r:?}");
    assert_all_dead(&gpid);
    assert!(
        used < grace / 5,
        "{used:?} of CPU over a sweep of {grace:?}"
    );
    leak.assert_clean();
}

#[test]
fn the_child_leads_its_own_process_group_by_default() {
    warm_up();
    let leak = LeakCheck::new();
    let out = fixture_cmd(["pgid"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (pid, pgid) = text.trim().split_once(' ').unwrap();
    assert_eq!(pid, pgid, "not a group leader: {text:?}");
    assert_ne!(pgid.parse::<i32>().unwrap(), own_pgid());
    leak.assert_clean();
}

#[test]
fn process_group_false_keeps_the_callers_group() {
    warm_up();
    let leak = LeakCheck::new();
    let out = fixture_cmd(["pgid"]).process_group(false).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (_pid, pgid) = text.trim().split_once(' ').unwrap();
    assert_eq!(pgid.parse::<i32>().unwrap(), own_pgid(), "{text:?}");
    leak.assert_clean();
}

#[test]
fn process_group_false_signals_only_the_child() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let mut gpid = Vec::new();
    let r = with_process(
        fixture_cmd(["grandchildren", "1", "300", "stay"])
            .process_group(false)
            .grace_period(Duration::from_millis(100)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            gpid = expect_ready(&lines);
            p.shutdown()
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM), "{r:?}");
    assert_eq!(gpid.len(), 1);
    let survived = pid_alive(gpid[0]);
    // Clean up ourselves: the grandchild is in our group, out of reach of
    // the supervision by design.
    // SAFETY: plain kill(2) of a pid we were just told about.
    unsafe { libc::kill(gpid[0], libc::SIGKILL) };
    assert!(
        survived,
        "with process_group(false) only the child may be signalled"
    );
    assert_all_dead(&gpid);
    leak.assert_clean();
}

/// Opens /dev/null twice without close-on-exec: once by clearing the flag
/// with fcntl, once with dup (which never sets it).
fn inheritable_fds() -> (OwnedFd, OwnedFd) {
    let file = File::open("/dev/null").unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a valid fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert!(flags >= 0);
        assert_eq!(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC), 0);
        assert_eq!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
    }
    // SAFETY: dup of a valid fd; the new fd is owned by the OwnedFd.
    let dup = unsafe { libc::dup(fd) };
    assert!(dup >= 0);
    // SAFETY: dup returned a fresh fd nobody else owns.
    let dup = unsafe { OwnedFd::from_raw_fd(dup) };
    (file.into(), dup)
}

fn listed_fds(cmd: &Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

#[test]
fn the_child_gets_only_fds_0_1_2_even_with_inheritable_fds_open() {
    warm_up();
    let extra = inheritable_fds();
    let leak = LeakCheck::new();
    assert_eq!(listed_fds(&fixture_cmd(["list-fds"])), "0 1 2");
    assert_eq!(
        listed_fds(fixture_cmd(["list-fds"]).stdin(childminder::Stdio::Null)),
        "0 1 2"
    );
    leak.assert_clean();
    drop(extra);
}

#[test]
fn the_fork_path_also_gives_only_fds_0_1_2() {
    warm_up();
    let extra = inheritable_fds();
    let leak = LeakCheck::new();
    assert_eq!(
        listed_fds(fixture_cmd(["list-fds"]).kill_on_parent_death(true)),
        "0 1 2"
    );
    leak.assert_clean();
    drop(extra);
}

fn file_with(scratch: &Scratch, name: &str, content: &str) -> File {
    let path = scratch.path().join(name);
    File::create(&path)
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    File::open(path).unwrap()
}

#[test]
fn pass_fd_gives_the_child_that_fd_at_the_target_number() {
    warm_up();
    let scratch = Scratch::new("pass-fd");
    let _extra = inheritable_fds();
    let leak = LeakCheck::new();
    // The fork path (kill_on_parent_death) refuses pass_fd: its dup2 could
    // land on std's own exec-error pipe.
    let mut cmd = fixture_cmd(["list-fds"]);
    cmd.kill_on_parent_death(true)
        .pass_fd(file_with(&scratch, "a", "A"), 3);
    assert!(matches!(
        cmd.validate(),
        Err(childminder::Error::InvalidOptions { .. })
    ));
    drop(cmd);
    {
        let fork = false;
        let mut cmd = fixture_cmd(["list-fds"]);
        cmd.kill_on_parent_death(fork)
            .pass_fd(file_with(&scratch, "a", "A"), 3);
        assert_eq!(listed_fds(&cmd), "0 1 2 3", "fork path: {fork}");

        let mut cmd = fixture_cmd(["list-fds"]);
        cmd.kill_on_parent_death(fork)
            .pass_fd(file_with(&scratch, "a", "A"), 7);
        assert_eq!(listed_fds(&cmd), "0 1 2 7", "fork path: {fork}");

        // The right file at each number, even when targets cross.
        let mut cmd = marked("sh");
        cmd.args(["-c", "cat <&3; cat <&4; cat <&5"])
            .kill_on_parent_death(fork)
            .pass_fd(file_with(&scratch, "four", "four;"), 4)
            .pass_fd(file_with(&scratch, "three", "three;"), 3)
            .pass_fd(file_with(&scratch, "five", "five;"), 5);
        let out = cmd.output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "three;four;five;",
            "fork path: {fork}"
        );

        // A later pass_fd to the same target replaces the earlier one.
        let mut cmd = marked("sh");
        cmd.args(["-c", "cat <&3"])
            .kill_on_parent_death(fork)
            .pass_fd(file_with(&scratch, "old", "old"), 3)
            .pass_fd(file_with(&scratch, "new", "new"), 3);
        let out = cmd.output().unwrap();
        assert_eq!(out.stdout, b"new", "fork path: {fork}");
        drop(cmd);
    }
    leak.assert_clean();
}

#[test]
fn kill_on_parent_death_spawns_and_supervises_normally() {
    warm_up();
    let scratch = Scratch::new("pdeath");
    let dir = scratch.path().canonicalize().unwrap();
    let leak = LeakCheck::new();

    // Output, exit code.
    let out = fixture_cmd(["print-then-exit", "hi there", "3"])
        .kill_on_parent_death(true)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi there\n");
    assert_eq!(out.stderr, b"err:hi there\n");
    assert_eq!(out.result.exit, Some(ExitStatus::Exited(3)));

    // Arguments byte-exact, including non-UTF-8.
    let raw = OsStr::from_bytes(b"a\xffb $(x)\n");
    let out = fixture_cmd(["args"])
        .arg(raw)
        .kill_on_parent_death(true)
        .output()
        .unwrap();
    let expected: String = raw.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected + "\n");

    // env_clear + env is the whole environment; cwd.
    let mut cmd = Command::new(fixture());
    cmd.arg("env-count")
        .env_clear()
        .env(MARKER_VAR, marker_value())
        .env("ONLY", "me")
        .kill_on_parent_death(true);
    assert_eq!(cmd.output().unwrap().stdout, b"2\n");
    let out = fixture_cmd(["cwd"])
        .current_dir(&dir)
        .kill_on_parent_death(true)
        .output()
        .unwrap();
    assert_eq!(out.stdout, [dir.as_os_str().as_bytes(), b"\n"].concat());

    // Its own group, and the escalation still works.
    let out = fixture_cmd(["pgid"])
        .kill_on_parent_death(true)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (pid, pgid) = text.trim().split_once(' ').unwrap();
    assert_eq!(pid, pgid);

    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["ignore-term", "300"])
            .kill_on_parent_death(true)
            .grace_period(Duration::from_millis(100)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            p.shutdown()
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    assert_eq!(r.termination, Termination::Escalated);

    // stdin through the fork path.
    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["cat"]).kill_on_parent_death(true),
        stdin::bytes("through fork\n"),
        on_out,
        discard,
        |p| {
            assert_eq!(next_line(&lines), "through fork");
            p.wait_timeout(HANDSHAKE).expect("cat ended")
        },
    )
    .unwrap();
    assert!(r.success(), "{r:?}");
    leak.assert_clean();
}
