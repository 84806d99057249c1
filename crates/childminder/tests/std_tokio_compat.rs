//! std's and tokio's own process tests, ported to childminder's calls
//! wherever it has the call they use, so a user switching over hits no
//! wall: `library/std/src/process/tests.rs` (against `Command::start`'s
//! `BlockingChild`, `status`, `output`) and tokio's `tests/process_*.rs`
//! (against the async `Child`, `output_async`). Each test names its
//! original; where childminder means something else on purpose (a dropped
//! child is torn down with its group), the test asserts childminder's
//! documented behaviour and says so. Then the new std-shaped calls
//! themselves: the blocking handle's drop, `id`, the pidfd, `arg0`,
//! `uid`/`gid`/`groups`, `status` showing the output.

mod common;
#[path = "common/support.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use childminder::{Command, Signal, Stdio, Termination};
use common::{LeakCheck, our_children};
use support::{HANDSHAKE, fixture_cmd, marked, wait_until, warm_up};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn shell(script: &str) -> Command {
    let mut cmd = marked("/bin/sh");
    cmd.args(["-c", script]);
    cmd
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// std: library/std/src/process/tests.rs
// ---------------------------------------------------------------------------

#[test]
fn std_smoke() {
    warm_up();
    let leak = LeakCheck::new();
    let mut p = shell("true").start().unwrap();
    assert!(p.wait().success());
    drop(p);
    leak.assert_clean();
}

#[test]
fn std_smoke_failure() {
    let err = Command::new("if-this-is-a-binary-then-the-world-has-ended")
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn std_exit_reported_right_and_finish_twice() {
    warm_up();
    let leak = LeakCheck::new();
    let mut p = shell("false").start().unwrap();
    assert_eq!(p.wait().exit.unwrap().code(), Some(1));
    assert_eq!(p.wait().exit.unwrap().code(), Some(1));
    drop(p);
    leak.assert_clean();
}

#[test]
fn std_signal_reported_right() {
    warm_up();
    let leak = LeakCheck::new();
    let mut p = shell("read a").stdin(Stdio::piped()).start().unwrap();
    p.kill();
    assert_eq!(p.wait().exit.unwrap().signal(), Some(Signal::KILL));
    drop(p);
    leak.assert_clean();
}

fn run_output(cmd: &Command) -> String {
    let mut p = cmd.start().unwrap();
    assert!(p.stdout.is_some());
    let mut ret = String::new();
    p.stdout.as_mut().unwrap().read_to_string(&mut ret).unwrap();
    assert!(p.wait().success());
    ret
}

#[test]
fn std_stdout_works_and_set_current_dir_works() {
    warm_up();
    let leak = LeakCheck::new();
    assert_eq!(run_output(&shell("echo foobar")), "foobar\n");
    assert_eq!(run_output(shell("pwd").current_dir("/")), "/\n");
    leak.assert_clean();
}

#[test]
fn std_stdin_works() {
    warm_up();
    let leak = LeakCheck::new();
    let mut p = shell("read line; echo $line").start().unwrap();
    p.stdin.as_mut().unwrap().write_all(b"foobar").unwrap();
    drop(p.stdin.take());
    let mut out = String::new();
    p.stdout.as_mut().unwrap().read_to_string(&mut out).unwrap();
    assert!(p.wait().success());
    assert_eq!(out, "foobar\n");
    drop(p);
    leak.assert_clean();
}

#[test]
fn std_test_process_status() {
    warm_up();
    let leak = LeakCheck::new();
    assert_eq!(
        shell("false").status().unwrap().exit.unwrap().code(),
        Some(1)
    );
    assert!(shell("true").status().unwrap().success());
    leak.assert_clean();
}

#[test]
fn std_test_process_output_fail_to_start() {
    let err = Command::new("/no-binary-by-this-name-should-exist")
        .output()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), ErrorKind::NotFound);
}

#[test]
fn std_test_process_output_output_and_error() {
    warm_up();
    let leak = LeakCheck::new();
    let out = shell("echo hello").output().unwrap();
    assert!(out.result.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "hello");
    assert!(out.stderr.is_empty());

    let out = marked("mkdir").arg("./").output().unwrap();
    let code = out.result.exit.unwrap().code();
    assert!(code.is_some() && code != Some(0));
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
    leak.assert_clean();
}

#[test]
fn std_test_wait_with_output_once() {
    warm_up();
    let leak = LeakCheck::new();
    let out = shell("echo hello")
        .start()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(out.result.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "hello");
    assert!(out.stderr.is_empty());
    leak.assert_clean();
}

#[test]
fn std_test_override_env_and_add_to_env() {
    warm_up();
    let mut cmd = marked("env");
    cmd.env_clear().env("RUN_TEST_NEW_ENV", "123");
    if let Some(p) = std::env::var_os("PATH") {
        cmd.env("PATH", p);
    }
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    assert!(out.contains("RUN_TEST_NEW_ENV=123"), "{out}");
    assert!(!out.contains("HOME="), "{out}");

    let out = marked("env")
        .env("RUN_TEST_NEW_ENV", "123")
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.contains("RUN_TEST_NEW_ENV=123") && out.contains("PATH="),
        "{out}"
    );
}

#[test]
fn std_test_interior_nul_is_an_invalid_input_error() {
    let cases = [
        Command::new("has-some-\0\0s-inside"),
        Command::new("echo").arg("has-some-\0\0s-inside").clone(),
        Command::new("echo").args(["has-some-\0\0s-inside"]).clone(),
        Command::new("echo")
            .current_dir("has-some-\0\0s-inside")
            .clone(),
        Command::new("env")
            .env("has-some-\0\0s-inside", "value")
            .clone(),
        Command::new("env")
            .env("key", "has-some-\0\0s-inside")
            .clone(),
    ];
    for cmd in cases {
        assert_eq!(cmd.start().unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn std_test_command_implements_send_sync() {
    fn take_send_sync_type<T: Send + Sync>(_: T) {}
    take_send_sync_type(Command::new(""));
    fn send<T: Send>() {}
    send::<childminder::BlockingChild>();
}

// ---------------------------------------------------------------------------
// tokio: tests/process_*.rs
// ---------------------------------------------------------------------------

/// process_smoke.rs `simple`: `wait` is fused, `id` is `None` afterwards.
#[test]
fn tokio_process_smoke_simple() {
    warm_up();
    let leak = LeakCheck::new();
    runtime().block_on(async {
        // tokio's child is `exit 2`, reaped only by its `wait`; childminder
        // reaps in the background, so the child waits for stdin's EOF here
        // to keep its id meaningful while it is checked.
        let mut child = shell("read a; exit 2").spawn().unwrap();
        assert!(child.id().expect("missing id") > 0);
        child.close_stdin();
        assert_eq!(child.wait().await.exit.unwrap().code(), Some(2));
        assert_eq!(child.wait().await.exit.unwrap().code(), Some(2));
        assert_eq!(child.id(), None);
        child.kill();
    });
    leak.assert_clean();
}

/// process_arg0.rs
#[test]
fn tokio_process_arg0() {
    runtime().block_on(async {
        let mut cmd = marked("sh");
        cmd.arg0("test_string").arg("-c").arg("echo $0");
        let output = cmd.output_async().await.unwrap();
        assert_eq!(output.stdout, b"test_string\n");
    });
}

/// process_kill_after_wait.rs
#[test]
fn tokio_process_kill_after_wait() {
    runtime().block_on(async {
        let child = shell("exit 2").spawn().unwrap();
        child.kill();
        child.wait().await;
        child.kill();
        assert!(!child.signal(Signal::KILL).unwrap());
    });
}

/// process_issue_42.rs: 10 tasks spawning 10 children each, at once.
#[test]
fn tokio_process_issue_42() {
    warm_up();
    let leak = LeakCheck::new();
    runtime().block_on(async {
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                tokio::spawn(async {
                    let children: Vec<_> = (0..10)
                        .map(|i| {
                            marked("echo")
                                .arg(format!("I am spawned process #{i}"))
                                .stdin(Stdio::Null)
                                .stdout(Stdio::Null)
                                .stderr(Stdio::Null)
                                .spawn()
                                .unwrap()
                        })
                        .collect();
                    for child in children {
                        assert!(child.wait().await.success());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    leak.assert_clean();
}

/// process_issue_2174.rs: a writer blocked on a full pipe fails once the
/// child is killed, instead of hanging.
#[test]
fn tokio_process_issue_2174() {
    warm_up();
    let leak = LeakCheck::new();
    runtime().block_on(async {
        let mut child = fixture_cmd(["sleep", "30"])
            .stdout(Stdio::Null)
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = vec![0u8; 1 << 20];
        // More than a pipe holds, to a child that never reads: it cannot
        // complete, so the timer is a bound, not a guess.
        let blocked =
            tokio::time::timeout(Duration::from_millis(100), input.write_all(&data)).await;
        assert!(
            blocked.is_err(),
            "the write should be stuck on the full pipe"
        );
        child.kill();
        let err = input.write_all(&data).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        assert_eq!(
            child.wait().await.exit.unwrap().signal(),
            Some(Signal::KILL)
        );
    });
    leak.assert_clean();
}

/// process_issue_8042.rs: stdout delivers a chunk while the child lives.
#[test]
fn tokio_child_stdout_receives_second_chunk_before_exit() {
    warm_up();
    let leak = LeakCheck::new();
    runtime().block_on(async {
        let mut child = shell("printf 'chunk1\\n'; read gate; printf 'chunk2\\n'; read gate")
            .stderr(Stdio::Null)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = [0u8; 7];
        stdout.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"chunk1\n");
        stdin.write_all(b"continue\n").await.unwrap();
        stdout.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"chunk2\n");
        stdin.write_all(b"exit\n").await.unwrap();
        assert_eq!(stdout.read(&mut buf).await.unwrap(), 0);
        assert!(child.wait().await.success());
    });
    leak.assert_clean();
}

/// process_issue_8042.rs `child_stdin_rearms_after_pipe_is_full`, with
/// stderr given as an `OwnedFd` (a socket), as there.
#[test]
fn tokio_child_stdin_rearms_after_pipe_is_full() {
    warm_up();
    let leak = LeakCheck::new();
    runtime().block_on(async {
        let (mut gate, child_gate) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut child = shell("read gate <&2; wc -c")
            .stderr(std::os::fd::OwnedFd::from(child_gate))
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let chunk = [b'x'; 8192];
        let mut written = 0;
        // Fill the pipe: a write that cannot finish within the bound is
        // blocked on it (the child reads nothing before the gate opens).
        while let Ok(n) = tokio::time::timeout(Duration::from_millis(50), stdin.write(&chunk)).await
        {
            written += n.unwrap();
        }
        assert!(written > 0);
        gate.write_all(b"continue\n").unwrap();
        stdin.write_all(b"x").await.unwrap();
        drop(stdin);
        let mut output = String::new();
        stdout.read_to_string(&mut output).await.unwrap();
        assert_eq!(output.trim().parse::<usize>().unwrap(), written + 1);
        assert!(child.wait().await.success());
    });
    leak.assert_clean();
}

/// process_change_of_runtime.rs: spawned on one runtime, waited on
/// another. childminder's coordinator lives on the first runtime, so when
/// that one shuts down the child is killed and reaped (documented on
/// `Child`); the wait on the second runtime returns at once.
#[test]
fn tokio_process_spawned_and_wait_in_different_runtime() {
    warm_up();
    let leak = LeakCheck::new();
    let child = runtime().block_on(async {
        fixture_cmd(["sleep", "30"])
            .stdout(Stdio::Null)
            .spawn()
            .unwrap()
    });
    let result = runtime().block_on(child.wait());
    // Killed and reaped when its runtime shut down, and reported so (an
    // acceptance run caught `Indeterminate` with no kill time and no exit).
    assert_eq!(result.termination, Termination::Escalated, "{result:?}");
    assert!(result.kill_sent_after.is_some(), "{result:?}");
    assert_eq!(
        result.exit.and_then(|e| e.signal()),
        Some(childminder::Signal::KILL),
        "{result:?}"
    );
    assert!(result.supervisor_error.is_some());
    drop(child);
    leak.assert_clean();
}

/// A child that exited by itself before its runtime shut down, with its
/// coordinator never run, is reported with its own exit: not killed, not
/// escalated (the last resort sends SIGKILL to what is left of the group
/// all the same).
#[test]
fn a_child_that_exited_before_its_runtime_shut_down_is_reported_with_its_own_exit() {
    warm_up();
    let leak = LeakCheck::new();
    let rt = support::current_thread_runtime();
    // The block never yields: the coordinator task does not run.
    let child = rt.block_on(async {
        fixture_cmd(["exit", "3"])
            .stdout(Stdio::Null)
            .spawn()
            .unwrap()
    });
    {
        let pidfd = child.pidfd().unwrap();
        let mut exit = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut exit, None).unwrap();
    }
    assert!(child.try_result().is_none());
    drop(rt);
    let result = child.try_result().unwrap();
    assert_eq!(result.exit.and_then(|e| e.code()), Some(3), "{result:?}");
    assert_eq!(result.kill_sent_after, None, "{result:?}");
    assert_eq!(result.termination, Termination::Clean, "{result:?}");
    drop(child);
    leak.assert_clean();
}

/// Found in review: a child that exited of the deadline's TERM after its
/// runtime stopped being driven, but before the coordinator saw the exit,
/// was reported `Clean` when the runtime shut down (the escalation's
/// record lived only in the dropped coordinator).
#[test]
fn a_child_that_exited_of_the_escalations_term_is_reported_escalated_after_a_shutdown() {
    warm_up();
    let leak = LeakCheck::new();
    let go = std::env::temp_dir().join(format!("childminder-term-go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let rt = support::current_thread_runtime();
    let child = rt.block_on(async {
        let mut child = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "trap 'echo term; while [ ! -e {} ]; do sleep 0.01; done; exit 3' TERM; \
                     echo ready; sleep 30 & wait",
                    go.display()
                ),
            ])
            .deadline(Duration::from_millis(100))
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = String::new();
        while !seen.contains("term") {
            let mut buf = [0u8; 64];
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF before the TERM: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        child
    });
    // The runtime is no longer driven: the child exits now, unseen.
    std::fs::write(&go, "").unwrap();
    {
        let pidfd = child.pidfd().unwrap();
        let mut exit = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut exit, None).unwrap();
    }
    drop(rt);
    let _ = std::fs::remove_file(&go);
    let result = child.try_result().unwrap();
    assert_eq!(result.exit.and_then(|e| e.code()), Some(3), "{result:?}");
    assert_eq!(result.termination, Termination::Escalated, "{result:?}");
    assert!(result.term_sent_after.is_some(), "{result:?}");
    assert_eq!(
        result.escalation_cause,
        Some(childminder::EscalationCause::Deadline),
        "{result:?}"
    );
    drop(child);
    leak.assert_clean();
}

/// process_change_of_runtime.rs `process_spawned_outside_runtime`.
#[test]
#[should_panic(expected = "must be called inside a tokio runtime")]
fn tokio_process_spawned_outside_runtime() {
    let _ = Command::new("true").spawn();
}

/// process_kill_on_drop.rs, where childminder differs on purpose: tokio's
/// `kill_on_drop` kills the child alone, and its disowned grandchild then
/// prints "child ran"; childminder's drop tears down the whole process
/// group, so the grandchild dies too and the output ends empty.
#[test]
fn tokio_process_kill_on_drop_takes_the_group_along() {
    warm_up();
    let leak = LeakCheck::new();
    runtime().block_on(async {
        let mut child = shell("(sleep 1; echo child ran) & echo started; sleep 5; echo beyond")
            .grace_period(Duration::from_millis(100))
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 8];
        out.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"started\n");
        drop(child);
        let mut msg = String::new();
        out.read_to_string(&mut msg).await.unwrap();
        assert_eq!(msg, "");
    });
    leak.assert_clean();
}

// ---------------------------------------------------------------------------
// The new std-shaped calls
// ---------------------------------------------------------------------------

#[test]
fn dropping_a_blocking_child_tears_it_and_its_group_down() {
    warm_up();
    let leak = LeakCheck::new();
    let mut child = fixture_cmd(["grandchildren", "2", "30", "stay"])
        .grace_period(Duration::from_millis(100))
        .start()
        .unwrap();
    let mut line = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8];
    while !line.ends_with('\n') {
        stdout.read_exact(&mut byte).unwrap();
        line.push(byte[0] as char);
    }
    let pids = support::ready_pids(line.trim());
    let pidfds_before = open_pidfds();
    let pidfd = child.as_fd().try_clone_to_owned().unwrap();
    drop(child);
    // The pidfd turns readable when the child exits: an event, not a sleep.
    let mut fds = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&pidfd),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, for at most 10 s.
    assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 10_000) }, 1);
    support::assert_all_dead(&pids);
    drop((pidfd, stdout));
    // The teardown finishes in the background: the coordinator closes its
    // pidfd last (the kernel has no event for that).
    assert!(wait_until(Duration::from_secs(5), || {
        our_children().is_empty() && open_pidfds() < pidfds_before
    }));
    leak.assert_clean();
}

fn open_pidfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("pidfd"))
        .count()
}

#[test]
fn a_blocking_childs_id_is_none_once_it_ended_and_pid_stays() {
    warm_up();
    let mut child = shell("read a; exit 0").start().unwrap();
    let pid = child.id().unwrap();
    assert_eq!(child.pid(), pid);
    assert!(child.wait().success());
    assert_eq!(child.id(), None);
    assert_eq!(child.pid(), pid);
    assert!(child.try_wait().is_some());
}

/// Caught by an acceptance test: a loop that polls the pidfd and calls
/// `try_wait` once per wake-up got `None` right after the pidfd turned
/// readable (28 times in 30): the engine, on its own thread, had not
/// published the result yet. std's `try_wait` reaps there and says `Some`.
#[test]
fn try_wait_has_the_result_once_the_pidfd_is_readable() {
    warm_up();
    let leak = LeakCheck::new();
    for round in 0..30 {
        let mut child = fixture_cmd(["exit", "0"])
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null)
            .start()
            .unwrap();
        {
            let mut exit = [rustix::event::PollFd::new(
                &child,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(HANDSHAKE).unwrap();
            assert_eq!(rustix::event::poll(&mut exit, Some(&timeout)).unwrap(), 1);
        }
        let result = child.try_wait();
        assert!(result.is_some_and(|r| r.success()), "round {round}");
        // The supervision goes on a moment after the result (the pidfd
        // closed last): `wait` is what says it is over.
        child.wait();
    }
    leak.assert_clean();
}

#[test]
fn a_blocking_child_honours_the_deadline_and_shutdown() {
    warm_up();
    let leak = LeakCheck::new();
    let mut child = fixture_cmd(["sleep", "30"])
        .deadline(Duration::from_millis(50))
        .start()
        .unwrap();
    let r = child.wait();
    assert!(r.timed_out(), "{r:?}");
    drop(child);

    let mut child = fixture_cmd(["ignore-term", "30"])
        .grace_period(Duration::from_millis(50))
        .start()
        .unwrap();
    let mut ready = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    let r = child.shutdown();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
    assert_eq!(r.termination, Termination::Escalated);
    drop(child);
    leak.assert_clean();
}

#[test]
fn the_pidfd_is_lent_by_every_handle() {
    warm_up();
    let leak = LeakCheck::new();
    childminder::with_process(
        &fixture_cmd(["exit", "0"]),
        childminder::stdin::empty(),
        childminder::discard,
        childminder::discard,
        |p| {
            assert!(p.pidfd().is_some());
            let _ = p.as_fd();
            p.wait();
            // Still open after the coordinator closed its own copy.
            assert!(p.pidfd().is_some());
        },
    )
    .unwrap();
    runtime().block_on(async {
        let child = fixture_cmd(["exit", "0"]).spawn().unwrap();
        assert!(child.pidfd().is_some());
        child.wait().await;
        let _ = child.as_fd();
    });
    leak.assert_clean();
}

#[test]
fn uid_gid_and_groups_reach_the_child_on_the_fork_path() {
    if !running_as_root() {
        eprintln!("not root: only the refusal is checked");
        let err = marked("true").uid(0).run().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        return;
    }
    warm_up();
    let leak = LeakCheck::new();
    let id = |args: &[&str], uid: u32, gid: u32, groups: Option<&[u32]>| {
        let mut cmd = marked("id");
        cmd.args(args).uid(uid).gid(gid).current_dir("/");
        if let Some(groups) = groups {
            cmd.groups(groups);
        }
        let out = cmd.output().unwrap();
        assert!(out.result.success(), "{:?}", out.result);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(id(&["-u"], 65534, 65534, None), "65534");
    assert_eq!(id(&["-g"], 65534, 65534, None), "65534");
    // Without groups, root's supplementary groups are dropped (as std).
    assert_eq!(id(&["-G"], 65534, 65534, None), "65534");
    assert_eq!(id(&["-G"], 65534, 65534, Some(&[100, 65534])), "65534 100");
    leak.assert_clean();
}

/// Caught by an acceptance run: with `uid`/`gid`, the working directory
/// was entered before the credentials changed (as root), so a child of
/// uid 65534 started in a directory only root may enter; std refuses it.
#[test]
fn the_working_directory_is_entered_as_the_new_user() {
    use std::os::unix::process::CommandExt;
    if !running_as_root() {
        eprintln!("skipped: not root");
        return;
    }
    warm_up();
    let leak = LeakCheck::new();
    let private = std::env::temp_dir().join(format!("childminder-private-{}", std::process::id()));
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut cmd = marked("pwd");
    cmd.uid(65534).gid(65534).current_dir(&private);
    let ours = cmd.output();
    let std_says = std::process::Command::new("pwd")
        .uid(65534)
        .gid(65534)
        .current_dir(&private)
        .output();
    // As root the directory is open to us; for the child it is not.
    let entered_as_root = marked("pwd").current_dir(&private).output().unwrap();
    std::fs::remove_dir(&private).unwrap();
    assert!(entered_as_root.result.success());
    let err = ours.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(std_says.unwrap_err().kind(), ErrorKind::PermissionDenied);
    leak.assert_clean();
}

#[test]
fn pass_fd_cannot_be_combined_with_uid() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = Command::new("true")
        .uid(0)
        .pass_fd(file, 3)
        .validate()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// `status()` shows the child's output, as std's does: checked from a
/// copy of this test binary whose stdout is a pipe we read.
#[test]
fn status_shows_the_childs_output_as_std_does() {
    const CHILD: &str = "CHILDMINDER_COMPAT_STATUS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let r = Command::new("sh")
            .args(["-c", "echo to-stdout; echo to-stderr >&2"])
            .status()
            .unwrap();
        assert!(r.success());
        let quiet = Command::new("echo").arg("never-shown").run().unwrap();
        assert!(quiet.success());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "status_shows_the_childs_output_as_std_does",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("to-stdout\n"), "{stdout}");
    assert!(stderr.contains("to-stderr\n"), "{stderr}");
    assert!(!stdout.contains("never-shown"), "{stdout}");
}

/// A scratch directory of mode 755 (searchable by any user).
fn open_scratch(name: &str) -> support::Scratch {
    let dir = support::Scratch::new(name);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

/// Writes an executable script printing `text`, with `mode`.
fn script(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, format!("#!/bin/sh\necho {text}\n")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Caught by an acceptance test: with `uid`, the PATH lookup asked whether
/// *this* process (root) could execute each candidate, so a root-only file
/// first on PATH was picked and the child's exec refused, where std's
/// `execvp` (run as the new user) skips it and runs the next one.
#[test]
fn a_path_lookup_with_uid_skips_what_the_new_user_cannot_execute() {
    use std::os::unix::process::CommandExt;
    if !running_as_root() {
        eprintln!("skipped: not root");
        return;
    }
    warm_up();
    let leak = LeakCheck::new();
    let dir = open_scratch("uid-path");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    script(&a.join("cm-tool"), "A", 0o700);
    script(&b.join("cm-tool"), "B", 0o755);
    let path = format!("{}:{}:/usr/bin:/bin", a.display(), b.display());
    let ours = marked("cm-tool")
        .uid(65534)
        .gid(65534)
        .env("PATH", &path)
        .current_dir("/")
        .output()
        .unwrap();
    let std_says = std::process::Command::new("cm-tool")
        .uid(65534)
        .gid(65534)
        .env("PATH", &path)
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(std_says.stdout, b"B\n");
    assert_eq!(ours.stdout, b"B\n", "{:?}", ours.result);
    // Found nowhere: still NotFound before anything is spawned.
    let err = marked("cm-no-such-tool")
        .uid(65534)
        .gid(65534)
        .env("PATH", &path)
        .output()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    leak.assert_clean();
}

/// Caught by an acceptance test: a symlink loop met on PATH was reported
/// as "not found"; `execvp` stops there with ELOOP, and std reports that.
#[test]
fn a_symlink_loop_on_path_is_reported_as_std_reports_it() {
    warm_up();
    let leak = LeakCheck::new();
    let dir = open_scratch("path-loop");
    std::os::unix::fs::symlink("cm-loop", dir.path().join("cm-loop")).unwrap();
    let path = dir.path().display().to_string();
    let ours = std::io::Error::from(marked("cm-loop").env("PATH", &path).output().unwrap_err());
    let std_says = std::process::Command::new("cm-loop")
        .env("PATH", &path)
        .output()
        .unwrap_err();
    assert_eq!(std_says.raw_os_error(), Some(libc::ELOOP));
    assert_eq!(ours.kind(), std_says.kind(), "{ours}");
    assert!(ours.to_string().contains("symbolic links"), "{ours}");
    leak.assert_clean();
}

/// Caught by an acceptance test: a working directory this process may not
/// search was refused as "does not exist" (`InvalidOptions`); std lets the
/// child's chdir fail with `PermissionDenied`. Run as uid 65534 (a copy of
/// this test binary) when we are root, whom no directory refuses.
#[test]
fn a_working_directory_we_may_not_search_is_the_childs_permission_error() {
    use std::os::unix::process::CommandExt;
    const CHILD: &str = "CHILDMINDER_COMPAT_CWD_CHILD";
    if let Some(sub) = std::env::var_os(CHILD) {
        let err = Command::new("pwd").current_dir(&sub).output().unwrap_err();
        let std_says = std::process::Command::new("pwd")
            .current_dir(&sub)
            .output()
            .unwrap_err();
        println!("ours={:?} std={:?} {err}", err.kind(), std_says.kind());
        return;
    }
    let dir = open_scratch("cwd-denied");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::create_dir(private.join("sub")).unwrap();
    // Readable but not searchable, even by its owner (the test may not be
    // root; as root, the copy runs as another user).
    let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(&private, mode(0o600)).unwrap();
    let mut copy = std::process::Command::new(std::env::current_exe().unwrap());
    copy.args([
        "--exact",
        "a_working_directory_we_may_not_search_is_the_childs_permission_error",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, private.join("sub"));
    if running_as_root() {
        copy.uid(65534).gid(65534);
    }
    let out = copy.output().unwrap();
    // Searchable again, so the scratch directory can be removed.
    std::fs::set_permissions(&private, mode(0o755)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("ours=PermissionDenied std=PermissionDenied"),
        "{stdout}"
    );
}

/// Whether this test runs as root (the credential tests need it).
fn running_as_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}
