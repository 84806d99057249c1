//! Security: no shell anywhere (arguments, environment values and the
//! program's own name reach exec byte for byte, and a canary file proves no
//! shell ran them); the child inherits fds 0, 1, 2 and nothing else, even
//! descriptors held without CLOEXEC or opened by another thread during the
//! spawn; `env_clear` leaves nothing of the parent's environment; and no
//! signal reaches a process that is not the supervised child or its group.

mod common;
mod torture_support;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use childminder::{Command, ExitStatus, Signal, Stdio, Termination, discard, stdin, with_process};
use common::{LeakCheck, MARKER_VAR, fixture, marker_value, pid_alive};
use tokio::io::AsyncReadExt;
use torture_support::*;

/// A change to a command, for running one case through several setups.
type Tweak = fn(&mut Command);

/// A scratch directory whose `pwned` file must never appear; removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("cm-security-{}", marker_value()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn canary(&self) -> String {
        self.dir.join("pwned").display().to_string()
    }

    fn assert_untouched(&self) {
        assert!(
            !self.dir.join("pwned").exists(),
            "a shell ran something: {} exists",
            self.canary()
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hex_lines(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let mut line: String = a.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
            line.push('\n');
            line
        })
        .collect()
}

/// Arguments a shell would act on, and bytes a careless conversion would
/// change.
fn nasty_args(canary: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        format!("$(touch {canary})"),
        format!("`touch {canary}`"),
        format!("; touch {canary}"),
        format!("| touch {canary}"),
        format!("&& touch {canary}"),
        format!("\n touch {canary}\n"),
        format!("> {canary}"),
        format!("$(printf x > {canary})"),
        "'single quotes'".into(),
        "\"double quotes\"".into(),
        "\\\"escaped\\\"".into(),
        "a b  c".into(),
        " ".into(),
        String::new(),
        "\t\r\n".into(),
        "*".into(),
        "~".into(),
        "$HOME".into(),
        "${PATH}".into(),
        "!!".into(),
        "-n".into(),
        "--".into(),
        "%s%n%x".into(),
        "\\".into(),
        "日本語 ✓".into(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(OsString::from_vec(vec![0xff, 0xfe, 0x80, b'x', 0xc3]));
    args.push(OsString::from_vec((1..=255u8).collect()));
    args.push(OsString::from_vec(vec![b'A'; 100 * 1024]));
    args
}

fn args_output(cmd: &Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn arguments_reach_the_child_byte_for_byte_and_no_shell_runs_them() {
    warm_up();
    let leak = LeakCheck::new();
    let scratch = Scratch::new();
    let args = nasty_args(&scratch.canary());
    let expected = hex_lines(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    for path in ["posix_spawn", "fork (kill_on_parent_death)", "async spawn"] {
        let mut cmd = fx(["args"]);
        cmd.args(&args);
        if path.starts_with("fork") {
            cmd.kill_on_parent_death(true);
        }
        let got = if path == "async spawn" {
            rt.block_on(async {
                let mut child = cmd.spawn().unwrap();
                let mut out = String::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .await
                    .unwrap();
                assert!(child.shutdown().await.success());
                out
            })
        } else {
            args_output(&cmd)
        };
        assert!(got == expected, "{path}: arguments changed on the way");
    }

    // Thousands of arguments, each its own argv entry.
    let many: Vec<OsString> = (0..5000).map(|i| format!("arg {i};").into()).collect();
    let mut cmd = fx(["args"]);
    cmd.args(&many);
    assert_eq!(args_output(&cmd), hex_lines(&many));

    drop(rt);
    scratch.assert_untouched();
    leak.assert_clean();
}

#[test]
fn environment_values_and_the_program_name_are_never_interpreted() {
    warm_up();
    let leak = LeakCheck::new();
    let scratch = Scratch::new();
    let canary = scratch.canary();

    // Values a shell would expand, passed through untouched.
    for value in [
        format!("$(touch {canary})"),
        format!("`touch {canary}`"),
        "() { :; }; echo shellshock".to_owned(),
        "a\nb".to_owned(),
    ] {
        let out = fx(["env", "CM_VALUE"])
            .env("CM_VALUE", &value)
            .output()
            .unwrap();
        assert_eq!(out.stdout, format!("{value}\n").as_bytes());
    }

    // A program whose own name is full of shell syntax runs as itself (in
    // the scratch directory, where a shell's `touch pwned` would land).
    let odd = scratch
        .dir
        .join("odd name; $(touch pwned) 'q' \"d\" `touch pwned` > pwned");
    std::os::unix::fs::symlink(fixture(), &odd).unwrap();
    let out = marked(&odd)
        .args(["args", "ok"])
        .current_dir(&scratch.dir)
        .output()
        .unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    assert_eq!(out.stdout, b"6f6b\n");

    // A command line is not a program: no shell splits it.
    for line in [
        format!("true; touch {canary}"),
        format!("sh -c 'touch {canary}'"),
        "echo hi".to_owned(),
    ] {
        let err = marked(&line).run().unwrap_err();
        assert!(err.is_not_found(), "{line:?}: {err}");
    }

    scratch.assert_untouched();
    leak.assert_clean();
}

// ------------------------------------------------------------------ fds ---

/// Clears FD_CLOEXEC: the descriptor would survive a plain exec.
fn inheritable(fd: RawFd) {
    // SAFETY: F_GETFD/F_SETFD on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert!(flags >= 0);
        assert_eq!(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC), 0);
        assert_eq!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
    }
}

/// Descriptors the test holds without CLOEXEC: a file, both ends of a pipe,
/// a socket pair, and a file dup'ed to fd 1000.
fn leaky_fds() -> Vec<OwnedFd> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    fds.push(std::fs::File::open("/etc/hostname").unwrap().into());
    let mut p = [0; 2];
    // SAFETY: pipe into a valid array; both ends are owned right below.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // SAFETY: pipe returned two new descriptors that nothing else owns.
    fds.extend(p.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    fds.push(a.into());
    fds.push(b.into());
    let file = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: dup2 onto a number we then own; it is free in a test process.
    let high = unsafe { libc::dup2(file.as_raw_fd(), 1000) };
    assert_eq!(high, 1000);
    // SAFETY: dup2 returned a new descriptor that nothing else owns.
    fds.push(unsafe { OwnedFd::from_raw_fd(high) });
    for fd in &fds {
        inheritable(fd.as_raw_fd());
    }
    fds
}

fn list_fds(cmd: &Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

#[test]
fn the_child_inherits_only_0_1_2_even_from_fds_without_cloexec() {
    warm_up();
    let leak = LeakCheck::new();
    let held = leaky_fds();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let variants: [(&str, Tweak); 6] = [
        ("defaults (posix_spawn, pipes)", |_| {}),
        ("stdin and stderr null", |c| {
            c.stdin(Stdio::Null).stderr(Stdio::Null);
        }),
        ("stdin and stderr inherited", |c| {
            c.stdin(Stdio::Inherit).stderr(Stdio::Inherit);
        }),
        ("fork path (kill_on_parent_death)", |c| {
            c.kill_on_parent_death(true);
        }),
        ("caller's group", |c| {
            c.process_group(false);
        }),
        ("working directory set", |c| {
            c.current_dir("/");
        }),
    ];
    for (name, tweak) in variants {
        let mut cmd = fx(["list-fds"]);
        tweak(&mut cmd);
        assert_eq!(list_fds(&cmd), "0 1 2", "{name}");
    }
    let got = rt.block_on(async {
        let mut child = fx(["list-fds"]).spawn().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        child.shutdown().await;
        out
    });
    assert_eq!(got.trim_end(), "0 1 2", "async spawn");

    // pass_fd adds exactly the one descriptor asked for.
    let extra: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let mut cmd = fx(["list-fds"]);
    cmd.pass_fd(extra, 7);
    assert_eq!(list_fds(&cmd), "0 1 2 7", "pass_fd(_, 7)");
    drop(cmd);

    drop(rt);
    drop(held);
    leak.assert_clean();
}

#[test]
fn fds_opened_without_cloexec_by_another_thread_during_spawns_never_reach_a_child() {
    warm_up();
    let leak = LeakCheck::new();
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicUsize::new(0));
    // The classic race: another thread creates inheritable descriptors
    // (pipe() without O_CLOEXEC) at any moment of our spawns.
    let churner = {
        let (stop, churned) = (stop.clone(), churned.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut p = [0; 2];
                // SAFETY: pipe into a valid array; both ends closed below.
                unsafe {
                    if libc::pipe(p.as_mut_ptr()) == 0 {
                        libc::close(p[0]);
                        libc::close(p[1]);
                    }
                }
                churned.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut spawns = 0;
    for i in 0..200 {
        let mut cmd = fx(["list-fds"]);
        if i % 4 == 3 {
            cmd.kill_on_parent_death(true);
        }
        assert_eq!(list_fds(&cmd), "0 1 2", "spawn {i}");
        spawns += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    println!(
        "{spawns} spawns while another thread opened {} inheritable pipes: every child saw 0 1 2",
        churned.load(Ordering::Relaxed)
    );
    leak.assert_clean();
}

// ------------------------------------------------------------------ env ---

fn env_count(cmd: &Command) -> usize {
    let out = cmd.output().unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn env_clear_leaves_nothing_of_the_parents_environment() {
    warm_up();
    let leak = LeakCheck::new();
    let parent_vars = std::env::vars_os().count();
    assert!(parent_vars > 0);

    // Without env_clear the child sees the parent's variables.
    assert!(env_count(&fx(["env-count"])) > parent_vars);

    for extra in [0usize, 1, 3] {
        for fork in [false, true] {
            let mut cmd = fx(["env-count"]);
            cmd.env("CM_DROPPED_BEFORE_CLEAR", "x")
                .env_clear()
                .env(MARKER_VAR, marker_value())
                .kill_on_parent_death(fork);
            for i in 0..extra {
                cmd.env(format!("CM_SET_{i}"), "v");
            }
            assert_eq!(env_count(&cmd), 1 + extra, "{extra} set, fork {fork}");
        }
    }
    for name in [
        "PATH",
        "HOME",
        "CM_DROPPED_BEFORE_CLEAR",
        "CARGO_MANIFEST_DIR",
    ] {
        let mut cmd = fx(["env", name]);
        cmd.env("CM_DROPPED_BEFORE_CLEAR", "x")
            .env_clear()
            .env(MARKER_VAR, marker_value());
        let out = cmd.output().unwrap();
        assert_eq!(out.stdout, b"<unset>\n", "{name} leaked through env_clear");
    }
    // The environment the child gets is exactly the one set.
    let mut cmd = marked("/usr/bin/env");
    cmd.env_clear()
        .env(MARKER_VAR, marker_value())
        .env("CM_ONLY", "me");
    let mut lines: Vec<Vec<u8>> = cmd
        .output()
        .unwrap()
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    lines.sort();
    let mut want = vec![
        b"CM_ONLY=me".to_vec(),
        format!("{MARKER_VAR}={}", marker_value()).into_bytes(),
    ];
    want.sort();
    assert_eq!(lines, want);
    leak.assert_clean();
}

// -------------------------------------------------------------- signals ---

/// An unrelated process we look up by pid: a plain `sleep` in our own
/// process group, started outside childminder.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Bystander {
        Bystander(
            std::process::Command::new("sleep")
                .arg("300")
                .env(MARKER_VAR, marker_value())
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn assert_untouched(&mut self, what: &str) {
        assert!(
            self.0.try_wait().unwrap().is_none() && pid_alive(self.pid()),
            "{what}: the bystander {} was signalled",
            self.pid()
        );
    }

    fn end(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

#[test]
fn after_the_exit_every_signal_call_is_a_no_op_and_a_bystander_is_untouched() {
    warm_up();
    let leak = LeakCheck::new();
    let mut bystander = Bystander::start();
    for _ in 0..50 {
        let r = with_process(&fx(["exit", "0"]), stdin::empty(), discard, discard, |p| {
            let r = p.wait();
            for sig in [Signal::KILL, Signal::TERM, Signal::STOP, Signal::USR1] {
                assert!(!p.signal(sig).unwrap(), "signal({sig}) after the exit");
            }
            p.kill();
            p.terminate(Signal::KILL);
            p.begin_shutdown();
            let again = p.shutdown();
            assert_eq!(again.exit, r.exit);
            r
        })
        .unwrap();
        assert!(r.success(), "{r:?}");
        assert_eq!(r.termination, Termination::Clean);
        assert_eq!((r.term_sent_after, r.kill_sent_after), (None, None));
    }
    bystander.assert_untouched("blocking");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..50 {
            let child = fx(["exit", "0"]).spawn().unwrap();
            child.wait().await;
            // Exited, its zombie still held by the handle: a no-op.
            assert!(!child.signal(Signal::KILL).unwrap());
            // Reaped: still a no-op.
            let r = child.shutdown().await;
            assert!(r.success(), "{r:?}");
            assert!(!child.signal(Signal::KILL).unwrap());
            child.kill();
        }
    });
    settle_background_teardown_except(&[bystander.pid()]);
    drop(rt);
    bystander.assert_untouched("async");
    bystander.end();
    leak.assert_clean();
}

/// `Process::signal_group`: "`Ok(false)` when nothing is left to signal".
/// A child that exited with no descendants leaves nothing to signal.
#[test]
fn signal_group_returns_false_once_nothing_is_left_to_signal() {
    warm_up();
    let leak = LeakCheck::new();
    let mut bystander = Bystander::start();
    let mut answers = Vec::new();
    with_process(&fx(["exit", "0"]), stdin::empty(), discard, discard, |p| {
        p.wait();
        answers.push((
            "blocking, after wait()",
            p.signal_group(Signal::KILL).unwrap(),
        ));
        p.shutdown();
        answers.push((
            "blocking, after shutdown()",
            p.signal_group(Signal::KILL).unwrap(),
        ));
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let child = fx(["exit", "0"]).spawn().unwrap();
        child.wait().await;
        answers.push((
            "async, after wait()",
            child.signal_group(Signal::KILL).unwrap(),
        ));
        child.shutdown().await;
        answers.push((
            "async, after shutdown()",
            child.signal_group(Signal::KILL).unwrap(),
        ));
    });
    settle_background_teardown_except(&[bystander.pid()]);
    drop(rt);
    bystander.assert_untouched("signal_group after the exit");
    bystander.end();
    leak.assert_clean();
    let sent: Vec<_> = answers.iter().filter(|(_, sent)| *sent).collect();
    println!(
        "signal_group(KILL) once the child has exited: Ok(true) in {} of {} calls: {sent:?}",
        sent.len(),
        answers.len()
    );
    assert!(
        sent.is_empty(),
        "signal_group returned Ok(true) with nothing left: {sent:?}"
    );
}

#[test]
fn without_its_own_group_no_signal_reaches_the_callers_group() {
    warm_up();
    let leak = LeakCheck::new();
    let mut bystander = Bystander::start();
    // SAFETY: getpgrp has no preconditions.
    let our_group = unsafe { libc::getpgrp() };
    assert_eq!(
        pgid_of(bystander.pid()),
        Some(our_group),
        "bystander shares our group"
    );

    // signal_group on a child in our group reaches the child alone.
    let mut cmd = fx(["sleep", "300"]);
    cmd.process_group(false)
        .grace_period(Duration::from_millis(100));
    let (lines, rx) = line_consumer();
    let r = with_process(&cmd, stdin::empty(), lines, discard, |p| {
        expect_ready(&rx);
        assert_eq!(pgid_of(p.pid() as i32), Some(our_group));
        assert!(p.signal_group(Signal::TERM).unwrap());
        p.wait()
    })
    .unwrap();
    assert_eq!(r.exit.and_then(ExitStatus::signal), Some(Signal::TERM));
    bystander.assert_untouched("signal_group");

    // The full escalation (TERM ignored, then KILL) and kill() likewise.
    for how in ["teardown", "kill", "terminate", "deadline"] {
        let mut cmd = fx(["ignore-term", "300"]);
        cmd.process_group(false)
            .grace_period(Duration::from_millis(100));
        if how == "deadline" {
            cmd.deadline(Duration::from_millis(50));
        }
        let (lines, rx) = line_consumer();
        let ((), r) = childminder::with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
            expect_ready(&rx);
            match how {
                "kill" => p.kill(),
                "terminate" => p.terminate(Signal::KILL),
                "deadline" => {
                    p.wait();
                }
                _ => {}
            }
        })
        .unwrap();
        assert_eq!(
            r.exit.and_then(ExitStatus::signal),
            Some(Signal::KILL),
            "{how}: {r:?}"
        );
        assert_eq!(r.termination, Termination::Escalated);
        bystander.assert_untouched(how);
    }
    bystander.end();
    leak.assert_clean();
}

#[test]
fn signals_with_a_group_reach_the_group_and_nothing_outside_it() {
    warm_up();
    let leak = LeakCheck::new();
    let mut bystander = Bystander::start();
    let mut cmd = fx(["grandchildren", "3", "300", "stay"]);
    cmd.grace_period(Duration::from_millis(100));
    let (lines, rx) = line_consumer();
    let (pids, r) = with_process(&cmd, stdin::empty(), lines, discard, |p| {
        let pids = expect_ready(&rx);
        assert!(p.signal_group(Signal::KILL).unwrap());
        (pids, p.wait())
    })
    .unwrap();
    assert_eq!(r.exit.and_then(ExitStatus::signal), Some(Signal::KILL));
    assert_all_dead(&pids, "the group's grandchildren");
    bystander.assert_untouched("group KILL");
    bystander.end();
    leak.assert_clean();
}
