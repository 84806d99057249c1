//! Issue 2, rows 2 and 9: invalid options are rejected before anything is
//! spawned, and start failures are `ProcessStartFailed` with the right kind.

mod common;
#[path = "common/support.rs"]
mod support;

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use childminder::{Command, Error, MAX_BUFFER_SIZE, MAX_DURATION, discard, stdin, with_process};
use common::{LeakCheck, MARKER_VAR, marker_value, our_children};
use support::{Scratch, marked, warm_up};

/// Checks that `cmd` is rejected as `InvalidOptions` by `validate`, `run`,
/// `output` and `with_process` (whose action must not run), with a reason
/// containing `needle` and a message naming the program.
fn assert_invalid(cmd: &Command, needle: &str) {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let check = |err: Error, how: &str| match &err {
        Error::InvalidOptions { program: p, reason } => {
            assert_eq!(p, &program, "{how}: program field");
            assert!(
                reason.contains(needle),
                "{how}: reason {reason:?} does not mention {needle:?}"
            );
            assert!(
                err.to_string().contains(&format!("{program:?}")),
                "{how}: message {err} does not name the program"
            );
            assert!(!err.is_not_found() && !err.is_permission_denied());
        }
        other => panic!("{how}: expected InvalidOptions, got {other:?}"),
    };
    check(cmd.validate().unwrap_err(), "validate");
    check(cmd.run().unwrap_err(), "run");
    check(cmd.output().unwrap_err(), "output");
    let mut action_ran = false;
    let err = with_process(cmd, stdin::bytes("x"), discard, discard, |_| {
        action_ran = true;
    })
    .unwrap_err();
    check(err, "with_process");
    assert!(!action_ran, "the action ran for an invalid command");
    assert!(our_children().is_empty(), "something was spawned");
}

#[test]
fn empty_program_is_invalid() {
    warm_up();
    let leak = LeakCheck::new();
    assert_invalid(&marked(""), "empty");
    leak.assert_clean();
}

#[test]
fn nul_in_program_argument_or_environment_is_invalid() {
    warm_up();
    let leak = LeakCheck::new();
    assert_invalid(&marked("tr\0ue"), "NUL");
    assert_invalid(&marked("/bin/true\0"), "NUL");
    assert_invalid(marked("true").args(["ok", "bad\0arg"]), "NUL");
    assert_invalid(marked("true").env("CM_KEY\0", "v"), "NUL");
    assert_invalid(marked("true").env("CM_KEY", "va\0lue"), "NUL");
    leak.assert_clean();
}

#[test]
fn bad_environment_keys_are_invalid() {
    warm_up();
    let leak = LeakCheck::new();
    assert_invalid(marked("true").env("CM_A=B", "1"), "=");
    assert_invalid(marked("true").env("=", "1"), "=");
    assert_invalid(marked("true").env("", "1"), "empty");
    leak.assert_clean();
}

#[test]
fn buffer_size_out_of_range_is_invalid() {
    warm_up();
    let leak = LeakCheck::new();
    assert_invalid(marked("true").buffer_size(0), "buffer_size");
    assert_invalid(
        marked("true").buffer_size(MAX_BUFFER_SIZE + 1),
        "buffer_size",
    );
    assert_invalid(marked("true").buffer_size(usize::MAX), "buffer_size");
    leak.assert_clean();
}

#[test]
fn durations_too_large_are_invalid() {
    warm_up();
    let leak = LeakCheck::new();
    let over = MAX_DURATION + Duration::from_secs(1);
    assert_invalid(marked("true").grace_period(over), "grace_period");
    assert_invalid(marked("true").grace_period(Duration::MAX), "grace_period");
    assert_invalid(marked("true").deadline(over), "deadline");
    assert_invalid(marked("true").deadline(Duration::MAX), "deadline");
    leak.assert_clean();
}

#[test]
fn current_dir_missing_or_not_a_directory_is_invalid() {
    warm_up();
    let scratch = Scratch::new("cwd-invalid");
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"not a dir").unwrap();
    let leak = LeakCheck::new();
    assert_invalid(
        marked("true").current_dir(scratch.path().join("missing")),
        "current_dir",
    );
    assert_invalid(marked("true").current_dir(&file), "current_dir");
    assert_invalid(
        marked("true").current_dir(OsStr::from_bytes(b"/tmp\0x")),
        "current_dir",
    );
    leak.assert_clean();
}

#[test]
fn pass_fd_target_below_3_is_invalid() {
    warm_up();
    let leak = LeakCheck::new();
    for target in [0, 1, 2, -1] {
        let file = std::fs::File::open("/dev/null").unwrap();
        let mut cmd = marked("true");
        cmd.pass_fd(file, target);
        assert_invalid(&cmd, "pass_fd");
    }
    leak.assert_clean();
}

#[test]
fn invalid_options_are_reported_by_async_spawn_too() {
    let rt = support::current_thread_runtime();
    let leak = LeakCheck::new();
    rt.block_on(async {
        let err = marked("true").buffer_size(0).spawn().unwrap_err();
        assert!(matches!(err, Error::InvalidOptions { .. }), "{err:?}");
        let err = childminder::with_child(marked("").arg("x"), async |_| ())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOptions { .. }), "{err:?}");
    });
    assert!(our_children().is_empty());
    leak.assert_clean();
}

/// Checks a start failure: `ProcessStartFailed` naming the program, with
/// the given kind, from `run` and from `with_process` (action not run).
fn assert_start_failed(cmd: &Command, kind: ErrorKind) {
    let program = cmd.get_program().to_string_lossy().into_owned();
    for (how, err) in [
        ("run", cmd.run().unwrap_err()),
        (
            "with_process",
            with_process(cmd, stdin::empty(), discard, discard, |_| {
                panic!("the action ran although the start failed")
            })
            .unwrap_err(),
        ),
    ] {
        match &err {
            Error::ProcessStartFailed { program: p, source } => {
                assert_eq!(p, &program, "{how}");
                assert_eq!(source.kind(), kind, "{how}: {err}");
            }
            other => panic!("{how}: expected ProcessStartFailed, got {other:?}"),
        }
        assert!(
            err.to_string().contains(&program),
            "{how}: message {err} does not name {program}"
        );
        assert_eq!(
            err.is_not_found(),
            kind == ErrorKind::NotFound,
            "{how}: {err}"
        );
        assert_eq!(
            err.is_permission_denied(),
            kind == ErrorKind::PermissionDenied,
            "{how}: {err}"
        );
    }
    assert!(
        our_children().is_empty(),
        "a child is left: {:?}",
        our_children()
    );
}

#[test]
fn missing_program_is_not_found() {
    warm_up();
    let leak = LeakCheck::new();
    assert_start_failed(
        &marked("childminder-no-such-program-xyz"),
        ErrorKind::NotFound,
    );
    assert_start_failed(
        &marked("/nonexistent-dir/childminder-prog"),
        ErrorKind::NotFound,
    );
    // PATH lookup uses the child's PATH when the command sets one.
    assert_start_failed(
        marked("sh").env("PATH", "/nonexistent-dir"),
        ErrorKind::NotFound,
    );
    leak.assert_clean();
}

#[test]
fn directory_as_program_is_permission_denied() {
    warm_up();
    let scratch = Scratch::new("dir-prog");
    let sub = scratch.path().join("cm-dir-prog");
    std::fs::create_dir(&sub).unwrap();
    let leak = LeakCheck::new();
    assert_start_failed(&marked("/"), ErrorKind::PermissionDenied);
    assert_start_failed(&marked(&sub), ErrorKind::PermissionDenied);
    // Found on PATH, but a directory.
    assert_start_failed(
        marked("cm-dir-prog").env("PATH", scratch.path()),
        ErrorKind::PermissionDenied,
    );
    leak.assert_clean();
}

#[test]
fn non_executable_file_is_permission_denied() {
    warm_up();
    let scratch = Scratch::new("noexec");
    let file = scratch.path().join("cm-noexec");
    std::fs::write(&file, b"#!/bin/sh\necho should not run\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let leak = LeakCheck::new();
    assert_start_failed(&marked(&file), ErrorKind::PermissionDenied);
    assert_start_failed(
        marked("cm-noexec").env("PATH", scratch.path()),
        ErrorKind::PermissionDenied,
    );
    leak.assert_clean();
}

/// `PATH` lookup as `execvp` does it: a directory, or a file without the
/// execute bit, that carries the program's name in an earlier `PATH` entry
/// is skipped, and the next real executable runs (untested until mutation
/// testing asked for it).
#[test]
fn a_directory_named_like_the_program_earlier_on_path_is_skipped() {
    warm_up();
    let scratch = Scratch::new("path-order");
    let [dir, noexec, real] = ["a", "b", "c"].map(|d| scratch.path().join(d));
    for d in [&dir, &noexec, &real] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::create_dir(dir.join("cm-shadowed")).unwrap();
    std::fs::write(noexec.join("cm-shadowed"), b"#!/bin/sh\necho wrong one\n").unwrap();
    let program = real.join("cm-shadowed");
    std::fs::write(&program, b"#!/bin/sh\necho the real one\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([&dir, &noexec, &real]).unwrap();
    let leak = LeakCheck::new();
    for kill_on_parent_death in [false, true] {
        let out = marked("cm-shadowed")
            .env("PATH", &path)
            .kill_on_parent_death(kill_on_parent_death)
            .output()
            .unwrap_or_else(|e| panic!("not found past the directory: {e}"));
        assert_eq!(out.stdout, b"the real one\n", "{:?}", out.result);
    }
    leak.assert_clean();
}

/// `Error::is_permission_denied`: "True when the program was found but could
/// not be executed (no execute bit, a directory, a bad interpreter line)".
#[test]
fn bad_interpreter_line_is_permission_denied_not_not_found() {
    warm_up();
    let scratch = Scratch::new("bad-interp");
    let file = scratch.path().join("cm-bad-interp");
    std::fs::write(&file, b"#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let leak = LeakCheck::new();
    let err = marked(&file).run().unwrap_err();
    assert!(
        matches!(err, Error::ProcessStartFailed { .. }),
        "expected ProcessStartFailed, got {err:?}"
    );
    assert!(err.to_string().contains("cm-bad-interp"), "{err}");
    assert!(
        err.is_permission_denied() && !err.is_not_found(),
        "the program was found (it exists and is executable) but its interpreter line is bad; \
         documented as is_permission_denied, got {err:?} (is_not_found = {})",
        err.is_not_found()
    );
    assert!(our_children().is_empty());
    leak.assert_clean();
}

#[test]
fn executable_file_that_is_no_program_fails_to_start_without_leaking() {
    warm_up();
    let scratch = Scratch::new("garbage");
    let file = scratch.path().join("cm-garbage");
    std::fs::write(&file, [0u8, 1, 2, 3, 0xff, 0xfe, 0, 0]).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let leak = LeakCheck::new();
    let err = marked(&file).run().unwrap_err();
    match &err {
        Error::ProcessStartFailed { .. } => {}
        other => panic!("expected ProcessStartFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("cm-garbage"), "{err}");
    assert!(
        err.is_permission_denied(),
        "found but not executable: {err:?}"
    );
    assert!(our_children().is_empty());
    leak.assert_clean();
}

#[test]
fn async_spawn_of_a_missing_program_is_not_found() {
    let rt = support::current_thread_runtime();
    let leak = LeakCheck::new();
    rt.block_on(async {
        let mut cmd = Command::new("childminder-no-such-program-xyz");
        cmd.env(MARKER_VAR, marker_value());
        let err = cmd.spawn().unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(err.to_string().contains("childminder-no-such-program-xyz"));
    });
    assert!(our_children().is_empty());
    leak.assert_clean();
}

/// `Error::PipeCreationFailed`: "The stdio pipes could not be created
/// (typically the fd limit)"; `with_process`: "nothing is left running then".
#[test]
fn fd_exhaustion_is_pipe_creation_failed_and_nothing_is_spawned() {
    warm_up();
    let leak = LeakCheck::new();
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The lowest limit under which exactly 3 fd numbers are free (one more
    // is the directory listing's own, closed again by now): one pipe fits,
    // the second does not.
    let mut limit = 0;
    let mut free = 0;
    while free < 3 {
        if !open.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers; this test process is
    // our own (nextest runs one test per process).
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let low = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
    }
    // `output` (unlike `run`) pipes all three streams.
    let outcome = marked("true").output();
    // SAFETY: as above, restoring the saved limit.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0) };
    let err = outcome.expect_err("the start should fail without fds");
    match &err {
        Error::PipeCreationFailed { program, source } => {
            assert_eq!(program, "true");
            assert_eq!(source.raw_os_error(), Some(libc::EMFILE), "{err}");
        }
        other => panic!("expected PipeCreationFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("\"true\""), "{err}");
    assert!(our_children().is_empty());
    leak.assert_clean();
}

/// `Command::spawn` panics outside a tokio runtime; the library promises
/// "nothing left behind", so the panic must not leave a started child.
#[test]
fn spawn_outside_a_runtime_panics_and_leaves_no_child() {
    let leak = LeakCheck::new();
    let cmd = {
        let mut cmd = marked(common::fixture());
        cmd.args(["sleep", "300"]);
        cmd
    };
    let outcome = std::panic::catch_unwind(|| cmd.spawn().map(drop));
    assert!(outcome.is_err(), "spawn outside a runtime did not panic");
    let children = our_children();
    // Clean up whatever was left, then report it.
    for (pid, _, _) in &children {
        // SAFETY: kill/waitpid of our own unreaped child.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
            libc::waitpid(*pid, std::ptr::null_mut(), 0);
        }
    }
    assert!(
        children.is_empty(),
        "the panicking spawn left a child behind: {children:?}"
    );
    leak.assert_clean();
}
