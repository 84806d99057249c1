//! Bad input at volume: every bad option and every start failure, through
//! every entry point (validate, run, output, with_process,
//! with_process_result, async spawn, with_child), many times over, is a
//! typed error with nothing spawned, nothing called and nothing leaked.
//!
//! "Nothing spawned" is proven, not assumed: the commands with bad options
//! run a canary script that would append to a file if it ever started.
//! (`errors.rs` has the basic row per option; this file adds the volume, the
//! async entry points, inputs holding fds, the fork path and the fd limit.)

mod common;
mod torture_support;

use std::ffi::{OsStr, OsString};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use childminder::{
    Command, Error, MAX_BUFFER_SIZE, MAX_DURATION, Stdio, stdin, with_child, with_process,
    with_process_result,
};
use common::{LeakCheck, MARKER_VAR, marker_value, our_children};
use tokio::runtime::Runtime;
use torture_support::*;

/// A change to a command, for running one case through several setups.
type Tweak = fn(&mut Command);

/// How many times each bad input goes through all seven entry points.
const REPEATS: usize = 20;

/// What a bad input must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `InvalidOptions` whose reason contains this.
    Invalid(&'static str),
    /// `ProcessStartFailed` of this kind.
    StartFailed(ErrorKind),
}

/// A scratch directory with a canary script, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("cm-bad-input-{}", marker_value()));
        std::fs::create_dir_all(dir.join("a directory")).unwrap();
        let canary = dir.join("canary");
        std::fs::write(
            &canary,
            format!("#!/bin/sh\necho ran >> '{}'\n", dir.join("ran").display()),
        )
        .unwrap();
        std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let noexec = dir.join("no-exec-bit");
        std::fs::write(&noexec, "#!/bin/sh\necho ran\n").unwrap();
        std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
        Scratch { dir }
    }

    fn canary(&self) -> PathBuf {
        self.dir.join("canary")
    }

    fn canary_ran(&self) -> bool {
        self.dir.join("ran").exists()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runtime() -> Runtime {
    current_thread_runtime()
}

/// Checks one error against the expectation and the program's name.
fn check_error(err: &Error, cmd: &Command, expect: Expect, how: &str, label: &str) {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let text = err.to_string();
    assert!(
        text.contains(&format!("{program:?}")),
        "{label} / {how}: message {text:?} does not name {program:?}"
    );
    match (expect, err) {
        (Expect::Invalid(needle), Error::InvalidOptions { program: p, reason }) => {
            assert_eq!(p, &program, "{label} / {how}");
            assert!(
                reason.contains(needle),
                "{label} / {how}: reason {reason:?} lacks {needle:?}"
            );
            assert!(!err.is_not_found() && !err.is_permission_denied());
        }
        (Expect::StartFailed(kind), Error::ProcessStartFailed { program: p, source }) => {
            assert_eq!(p, &program, "{label} / {how}");
            assert_eq!(source.kind(), kind, "{label} / {how}: {err}");
            assert_eq!(err.is_not_found(), kind == ErrorKind::NotFound);
            assert_eq!(
                err.is_permission_denied(),
                kind == ErrorKind::PermissionDenied
            );
        }
        _ => panic!("{label} / {how}: expected {expect:?}, got {err:?}"),
    }
}

/// Sends `cmd` through all seven entry points; returns how many attempts.
fn reject_everywhere(rt: &Runtime, cmd: &Command, expect: Expect, label: &str) -> usize {
    let fds_before = fd_count();
    let mut attempts = 0;
    let mut check = |err: Error, how: &str| {
        check_error(&err, cmd, expect, how, label);
        assert!(our_children().is_empty(), "{label} / {how}: a child exists");
        attempts += 1;
    };

    if let Expect::Invalid(_) = expect {
        check(cmd.validate().unwrap_err(), "validate");
    }
    check(cmd.run().unwrap_err(), "run");
    check(cmd.output().unwrap_err(), "output");

    // An input holding an fd, consumers and an action that must not run.
    let calls = AtomicUsize::new(0);
    let input = stdin::from_reader(std::fs::File::open("/dev/null").unwrap());
    let err = with_process(
        cmd,
        input,
        |_: &[u8]| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
        |_: &[u8]| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
        |_| {
            calls.fetch_add(1, Ordering::SeqCst);
        },
    )
    .unwrap_err();
    check(err, "with_process");

    let produced = Arc::new(AtomicUsize::new(0));
    let producer = {
        let produced = produced.clone();
        move || -> io::Result<Option<Vec<u8>>> {
            produced.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    };
    let err = with_process_result(
        cmd,
        producer,
        childminder::discard,
        childminder::discard,
        |_| calls.fetch_add(1, Ordering::SeqCst),
    )
    .unwrap_err();
    check(err, "with_process_result");

    let err = rt.block_on(async { cmd.spawn().unwrap_err() });
    check(err, "spawn");
    let err = rt
        .block_on(with_child(cmd, async |_| {
            calls.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap_err();
    check(err, "with_child");

    assert_eq!(calls.load(Ordering::SeqCst), 0, "{label}: user code ran");
    assert_eq!(produced.load(Ordering::SeqCst), 0, "{label}: producer ran");
    assert_eq!(fd_count(), fds_before, "{label}: fds leaked");
    attempts
}

fn marked_canary(scratch: &Scratch) -> Command {
    marked(scratch.canary())
}

fn invalid_cases(s: &Scratch) -> Vec<(&'static str, Command, &'static str)> {
    let canary = s.canary();
    let with = |f: &dyn Fn(&mut Command)| {
        let mut cmd = marked_canary(s);
        f(&mut cmd);
        cmd
    };
    let program = |bytes: &[u8]| marked(OsStr::from_bytes(bytes));
    let mut nul_end = canary.as_os_str().as_bytes().to_vec();
    nul_end.push(0);
    let mut nul_mid = canary.as_os_str().as_bytes().to_vec();
    nul_mid.extend_from_slice(b"\0x");
    let devnull = || std::fs::File::open("/dev/null").unwrap();
    vec![
        ("empty program", marked(""), "empty"),
        ("NUL first in the program", program(b"\0canary"), "NUL"),
        ("NUL inside the program", program(&nul_mid), "NUL"),
        ("NUL last in the program", program(&nul_end), "NUL"),
        ("program of a single NUL", program(b"\0"), "NUL"),
        (
            "NUL in an argument",
            with(&|c| {
                c.arg("a\0b");
            }),
            "NUL",
        ),
        (
            "argument of a single NUL",
            with(&|c| {
                c.arg("\0");
            }),
            "NUL",
        ),
        (
            "NUL in one argument of many",
            with(&|c| {
                c.args(["ok", "also ok", "bad\0", "after"]);
            }),
            "NUL",
        ),
        (
            // Caught by an acceptance run: reported as a missing directory.
            "NUL in the working directory",
            with(&|c| {
                c.current_dir("/tm\0p");
            }),
            "NUL",
        ),
        (
            "NUL in an env value",
            with(&|c| {
                c.env("CM_K", "v\0");
            }),
            "NUL",
        ),
        (
            "NUL in an env key",
            with(&|c| {
                c.env("CM\0K", "v");
            }),
            "NUL",
        ),
        (
            "'=' inside an env key",
            with(&|c| {
                c.env("A=B", "v");
            }),
            "'='",
        ),
        (
            "'=' first in an env key",
            with(&|c| {
                c.env("=A", "v");
            }),
            "'='",
        ),
        (
            "'=' last in an env key",
            with(&|c| {
                c.env("A=", "v");
            }),
            "'='",
        ),
        (
            "env key of a single '='",
            with(&|c| {
                c.env("=", "v");
            }),
            "'='",
        ),
        (
            "empty env key",
            with(&|c| {
                c.env("", "v");
            }),
            "empty",
        ),
        (
            "one bad key among good ones",
            with(&|c| {
                c.envs([("CM_A", "1"), ("B=C", "2"), ("CM_D", "3")]);
            }),
            "'='",
        ),
        (
            "env_remove of an empty key",
            with(&|c| {
                c.env_remove("");
            }),
            "empty",
        ),
        (
            "env_remove of a key with '='",
            with(&|c| {
                c.env_remove("X=Y");
            }),
            "'='",
        ),
        (
            "bad key after env_clear",
            with(&|c| {
                c.env_clear()
                    .env(MARKER_VAR, marker_value())
                    .env("X=Y", "1");
            }),
            "'='",
        ),
        (
            "missing current_dir",
            with(&|c| {
                c.current_dir("/nonexistent/cm-dir");
            }),
            "current_dir",
        ),
        (
            "current_dir is a file",
            with(&|c| {
                c.current_dir(&canary);
            }),
            "current_dir",
        ),
        (
            "NUL in current_dir",
            with(&|c| {
                c.current_dir(OsStr::from_bytes(b"/tmp\0x"));
            }),
            "current_dir",
        ),
        (
            "buffer_size 0",
            with(&|c| {
                c.buffer_size(0);
            }),
            "buffer_size",
        ),
        (
            "buffer_size 16 MiB + 1",
            with(&|c| {
                c.buffer_size(MAX_BUFFER_SIZE + 1);
            }),
            "buffer_size",
        ),
        (
            "buffer_size usize::MAX",
            with(&|c| {
                c.buffer_size(usize::MAX);
            }),
            "buffer_size",
        ),
        (
            "grace_period 100 years + 1 ns",
            with(&|c| {
                c.grace_period(MAX_DURATION + Duration::from_nanos(1));
            }),
            "grace_period",
        ),
        (
            "grace_period Duration::MAX",
            with(&|c| {
                c.grace_period(Duration::MAX);
            }),
            "grace_period",
        ),
        (
            "grace_period u64::MAX s",
            with(&|c| {
                c.grace_period(Duration::from_secs(u64::MAX));
            }),
            "grace_period",
        ),
        (
            "deadline 100 years + 1 ns",
            with(&|c| {
                c.deadline(MAX_DURATION + Duration::from_nanos(1));
            }),
            "deadline",
        ),
        (
            "deadline Duration::MAX",
            with(&|c| {
                c.deadline(Duration::MAX);
            }),
            "deadline",
        ),
        (
            "pass_fd to fd 2",
            with(&|c| {
                c.pass_fd(devnull(), 2);
            }),
            "pass_fd",
        ),
        (
            "pass_fd to fd 0",
            with(&|c| {
                c.pass_fd(devnull(), 0);
            }),
            "pass_fd",
        ),
        (
            "pass_fd to fd -1",
            with(&|c| {
                c.pass_fd(devnull(), -1);
            }),
            "pass_fd",
        ),
        (
            "bad option and a missing program",
            {
                let mut c = marked("/nonexistent/cm-prog");
                c.buffer_size(0);
                c
            },
            "buffer_size",
        ),
        (
            "bad option and a program missing from PATH",
            {
                let mut c = marked("cm-no-such-program-xyz");
                c.deadline(Duration::MAX);
                c
            },
            "deadline",
        ),
        (
            "bad option on the fork path",
            with(&|c| {
                c.kill_on_parent_death(true).buffer_size(0);
            }),
            "buffer_size",
        ),
    ]
}

#[test]
fn invalid_options_fail_typed_through_every_entry_point_and_spawn_nothing() {
    warm_up();
    let scratch = Scratch::new();
    let rt = runtime();
    let leak = LeakCheck::new();
    let mut attempts = 0;
    let cases = invalid_cases(&scratch).len();
    for _ in 0..REPEATS {
        // Fresh commands each round: a pass_fd descriptor is owned by its
        // command and must close with it.
        for (label, cmd, needle) in invalid_cases(&scratch) {
            attempts += reject_everywhere(&rt, &cmd, Expect::Invalid(needle), label);
        }
    }
    assert!(
        !scratch.canary_ran(),
        "a command with bad options was started"
    );
    leak.assert_clean();
    println!(
        "{cases} bad inputs x {REPEATS} rounds: {attempts} rejected attempts, nothing spawned"
    );

    // Positive control: the canary does leave its mark when it may run.
    let r = marked_canary(&scratch).run().unwrap();
    assert!(r.success(), "{r:?}");
    assert!(scratch.canary_ran());
}

fn start_failure_cases(s: &Scratch) -> Vec<(String, Command, ErrorKind)> {
    use ErrorKind::{NotFound, PermissionDenied};
    let noexec = s.dir.join("no-exec-bit");
    let dir = s.dir.join("a directory");
    let mut cases: Vec<(String, Command, ErrorKind)> = vec![
        (
            "missing, absolute".into(),
            marked("/nonexistent/cm-prog"),
            NotFound,
        ),
        (
            "missing on PATH".into(),
            marked("cm-no-such-program-xyz"),
            NotFound,
        ),
        (
            "missing, non-UTF-8 name".into(),
            marked(OsStr::from_bytes(b"cm-\xff\xfe-missing")),
            NotFound,
        ),
        (
            "missing, relative".into(),
            marked("./cm-no-such-program"),
            NotFound,
        ),
        ("a directory: /".into(), marked("/"), PermissionDenied),
        (
            "a directory with a space".into(),
            marked(&dir),
            PermissionDenied,
        ),
        ("no execute bit".into(), marked(&noexec), PermissionDenied),
    ];
    // The same through the other spawn paths: fork (kill_on_parent_death),
    // the caller's group, no pipes, a working directory.
    let variants: [(&str, Tweak); 4] = [
        ("fork path", |c| {
            c.kill_on_parent_death(true);
        }),
        ("own group off", |c| {
            c.process_group(false);
        }),
        ("no pipes", |c| {
            c.stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Inherit);
        }),
        ("current_dir /", |c| {
            c.current_dir("/");
        }),
    ];
    let base: Vec<(OsString, ErrorKind)> = vec![
        ("/nonexistent/cm-prog".into(), NotFound),
        ("/".into(), PermissionDenied),
        (noexec.clone().into_os_string(), PermissionDenied),
    ];
    for (name, tweak) in variants {
        for (program, kind) in &base {
            let mut cmd = marked(program);
            tweak(&mut cmd);
            cases.push((format!("{program:?}, {name}"), cmd, *kind));
        }
    }
    cases
}

#[test]
fn start_failures_fail_typed_through_every_entry_point_and_leave_nothing() {
    warm_up();
    let scratch = Scratch::new();
    let rt = runtime();
    let leak = LeakCheck::new();
    let mut attempts = 0;
    let cases = start_failure_cases(&scratch);
    for _ in 0..REPEATS {
        for (label, cmd, kind) in &cases {
            attempts += reject_everywhere(&rt, cmd, Expect::StartFailed(*kind), label);
        }
    }
    leak.assert_clean();
    println!(
        "{} start failures x {REPEATS} rounds: {attempts} typed errors, no child, no fd left",
        cases.len()
    );
}

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

/// The fd limit is bad input from the environment: with room for 0, 1, 2
/// ... more descriptors, each attempt is either a typed error or a normal
/// run, and nothing leaks either way.
#[test]
fn tight_fd_limit_fails_typed_or_runs_and_leaks_nothing() {
    warm_up();
    // Multi-threaded: a dropped async Child is torn down in the background,
    // which needs the runtime running, not idle between block_on calls.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let leak = LeakCheck::new();
    let open: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    // The limit that leaves exactly `room` free descriptor numbers below it.
    let limit_with_room = |room: u64| {
        let (mut free, mut n) = (0, 0);
        while free < room || open.contains(&n) {
            if !open.contains(&n) {
                free += 1;
            }
            n += 1;
        }
        n
    };
    let fds_before = fd_count();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for room in 0..12u64 {
        for api in 0..2 {
            let mut cmd = fx(["print-then-exit", "hello", "0"]);
            cmd.grace_period(Duration::from_secs(5));
            let old = set_nofile(limit_with_room(room));
            let outcome = if api == 0 {
                cmd.output().map(|o| (o.stdout, o.result))
            } else {
                rt.block_on(async {
                    use tokio::io::AsyncReadExt;
                    let mut child = cmd.spawn()?;
                    let mut out = Vec::new();
                    child
                        .stdout
                        .take()
                        .unwrap()
                        .read_to_end(&mut out)
                        .await
                        .unwrap();
                    let r = child.wait().await;
                    Ok((out, r))
                })
            };
            set_nofile(old);
            let key = match outcome {
                Ok((out, r)) if r.worker_errors.is_empty() => {
                    assert!(r.success(), "room {room}: {r:?}");
                    assert_eq!(out, b"hello\n");
                    "ran".to_owned()
                }
                // Started, but the supervisor could not set up the reading
                // of the output: a recorded, typed worker failure (the
                // child may then see EPIPE: the fixture exits 1).
                Ok((_, r)) => {
                    assert!(
                        matches!(r.exit, Some(childminder::ExitStatus::Exited(0 | 1))),
                        "{r:?}"
                    );
                    assert!(
                        r.worker_errors
                            .iter()
                            .all(|e| e.op == childminder::WorkerOp::Read
                                && e.source.raw_os_error() == Some(libc::EMFILE)),
                        "room {room}: {r:?}"
                    );
                    "ran, output unread (worker error Read: EMFILE)".to_owned()
                }
                Err(e @ (Error::PipeCreationFailed { .. } | Error::Io { .. })) => format!("{e:?}")
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned(),
                Err(Error::ProcessStartFailed { source, .. })
                    if source.raw_os_error() == Some(libc::EMFILE) =>
                {
                    "ProcessStartFailed(EMFILE)".to_owned()
                }
                Err(other) => panic!("room {room}: unexpected {other:?}"),
            };
            *outcomes
                .entry(format!(
                    "{} {key}",
                    if api == 0 { "output" } else { "spawn" }
                ))
                .or_default() += 1;
            settle_background_teardown();
            assert_eq!(fd_count(), fds_before, "room {room} api {api}: fds leaked");
        }
    }
    println!("fd limit leaving 0 .. 11 free descriptors: {outcomes:?}");
    assert!(
        outcomes.keys().any(|k| k.ends_with(" ran")),
        "never ran even with room: {outcomes:?}"
    );
    assert!(
        outcomes.keys().any(|k| !k.ends_with(" ran")),
        "never failed even without room: {outcomes:?}"
    );
    leak.assert_clean();
}

#[test]
fn after_thousands_of_rejections_the_library_still_runs_children() {
    warm_up();
    let scratch = Scratch::new();
    let leak = LeakCheck::new();
    for round in 0..200 {
        for (_, cmd, _) in invalid_cases(&scratch) {
            assert!(matches!(cmd.run(), Err(Error::InvalidOptions { .. })));
        }
        for (_, cmd, _) in start_failure_cases(&scratch) {
            assert!(matches!(cmd.run(), Err(Error::ProcessStartFailed { .. })));
        }
        if round % 50 == 0 {
            let out = fx(["print-then-exit", "still fine", "0"]).output().unwrap();
            assert_eq!(out.stdout, b"still fine\n");
            assert!(out.result.success());
        }
    }
    assert!(!scratch.canary_ran());
    leak.assert_clean();
}

/// Caught by an acceptance run: `start()` with bad options, as the
/// process's first call, started the engine's thread (and its six fds)
/// before it refused them.
#[test]
fn a_start_refused_for_its_options_starts_no_engine_thread() {
    if !common::own_process(crate::test_name!()) {
        return;
    }
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("childminder"))
            .collect::<Vec<_>>()
    };
    let mut cmd = Command::new("true");
    cmd.grace_period(MAX_DURATION + Duration::from_secs(1));
    assert!(matches!(cmd.start(), Err(Error::InvalidOptions { .. })));
    let refused = with_process(
        &cmd,
        stdin::empty(),
        |_: &[u8]| Ok(()),
        |_: &[u8]| Ok(()),
        |_| (),
    );
    assert!(matches!(refused, Err(Error::InvalidOptions { .. })));
    assert_eq!(threads(), Vec::<String>::new());
}
