//! Every OS resource can run out: each failure is a typed error
//! ([`Error::is_resource_exhausted`]), never a panic or a hang, and a child
//! that had already started is ended and reaped first.
//!
//! Each test lowers a limit of its own process for good (the fd limit, or
//! the uid and then the process limit), so each runs in a process of its
//! own ([`common::own_process`]) under either test runner, and a hang fails
//! it rather than the suite.

mod common;
#[path = "common/support.rs"]
mod support;

use std::io;

use childminder::{Command, Error, Stdio, Stream, WorkerOp, stdin, with_process};
use common::{LeakCheck, marker_processes, our_children, own_process};
use support::{fixture_cmd, warm_up};

/// The lowest free fd: the next one the process would get.
fn lowest_free_fd() -> u64 {
    // SAFETY: dup of fd 0, which the harness keeps open; closed at once.
    let fd = unsafe { libc::dup(0) };
    assert!(fd >= 0, "dup: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by dup and is ours.
    unsafe { libc::close(fd) };
    u64::try_from(fd).expect("an fd is not negative")
}

/// Sets the soft limit of `resource`, keeping the hard one.
fn set_soft_limit(resource: libc::__rlimit_resource_t, soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a plain struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(resource, &mut limit), 0);
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(
            libc::setrlimit(resource, &limit),
            0,
            "setrlimit: {}",
            io::Error::last_os_error()
        );
    }
}

/// The number of tasks (threads) of this process.
fn own_threads() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count() as u64
}

/// Makes this process an unprivileged user of its own, so that
/// `RLIMIT_NPROC` applies (root is exempt): a uid no other process of the
/// machine runs as, so the count is this process's alone. Returns false,
/// with the reason printed, when that is impossible (not root).
fn become_unprivileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: not root, cannot switch to a uid of its own for RLIMIT_NPROC");
        return false;
    }
    let id = 50_000 + std::process::id() % 10_000;
    // SAFETY: plain syscalls with integers; glibc applies setres[ug]id to
    // every thread of the process. PR_SET_DUMPABLE keeps /proc/self
    // readable (LeakCheck) after the switch.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setresgid(id, id, id), 0);
        assert_eq!(libc::setresuid(id, id, id), 0);
        assert_eq!(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0), 0);
    }
    true
}

/// Asserts `err` is a resource failure of the supervisor, with `context`.
fn assert_resource_error(err: &Error, context: &str) {
    assert!(err.is_resource_exhausted(), "not a resource error: {err:?}");
    assert!(
        !err.is_permission_denied() && !err.is_not_found(),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(context),
        "expected {context:?} in {err}"
    );
}

/// With `resource` limited to `refused`, the first call (which starts the
/// engine) fails with a resource error and starts nothing; limited to
/// `enough`, the next call starts the engine and runs.
fn assert_engine_refused_then_started(
    resource: libc::__rlimit_resource_t,
    refused: u64,
    enough: u64,
) {
    set_soft_limit(resource, refused);
    let err = true_on_the_engine().unwrap_err();
    set_soft_limit(resource, enough);
    assert_resource_error(&err, "starting the engine runtime");
    assert!(our_children().is_empty(), "{:?}", our_children());
    let result = true_on_the_engine().expect("the engine starts on the next call");
    assert!(result.success(), "{result:?}");
}

/// `true` through `with_process`, which runs on the engine, with its
/// output on `/dev/null`: no stdio thread either.
fn true_on_the_engine() -> Result<childminder::SupervisionResult, Error> {
    let mut cmd = Command::new("true");
    cmd.stdout(Stdio::Null).stderr(Stdio::Null);
    with_process(
        &cmd,
        stdin::empty(),
        childminder::discard,
        childminder::discard,
        |p| p.wait(),
    )
}

/// As the engine above, for the runtime that the one-line calls (`run`,
/// `output`, `status`) build on the caller's thread when they cannot be
/// driven by readiness alone (here: with the subreaper): out of fds, an
/// error with the OS's words, and the next call builds it. Driven by
/// readiness (with a deadline or without) they need no runtime, and the
/// same limit stops the spawn itself (its pidfd), in `output_async` too.
#[test]
fn a_one_line_call_out_of_fds_is_a_resource_error_not_a_panic() {
    if !own_process(crate::test_name!()) {
        return;
    }
    let mut on_runtime = Command::new("true");
    on_runtime.subreaper(true);
    let mut timed = Command::new("true");
    timed.deadline(std::time::Duration::from_secs(60));
    let runtime = support::current_thread_runtime();
    set_soft_limit(libc::RLIMIT_NOFILE, lowest_free_fd());
    let err = on_runtime.run().unwrap_err();
    let by_readiness = [
        timed.run().unwrap_err(),
        Command::new("true").run().unwrap_err(),
        runtime.block_on(timed.output_async()).unwrap_err(),
    ];
    set_soft_limit(libc::RLIMIT_NOFILE, 1024);
    assert_resource_error(&err, "Too many open files");
    for err in by_readiness {
        assert!(err.is_resource_exhausted(), "{err}");
    }
    assert!(our_children().is_empty(), "{:?}", our_children());
    let result = on_runtime.run().expect("built on the next call");
    assert!(result.success(), "{result:?}");
}

/// Found in review: the polled one-line path (and the async one in the
/// caller's task, since) builds a runtime only to
/// sweep what a child left in its group, and out of fds then, the call
/// returned the error (the output lost) and left the group running. Now
/// the group is killed at once (no grace period), the call returns its
/// result with the error in `supervisor_error`, and nothing outlives it.
#[test]
fn a_group_left_behind_is_killed_even_when_its_sweep_cannot_start() {
    if !own_process(crate::test_name!()) {
        return;
    }
    let runtime = support::current_thread_runtime();
    for call in ["status", "status_async"] {
        let report = std::env::temp_dir().join(format!("childminder-left-{}", std::process::id()));
        let mut cmd = Command::new("sh");
        // The shell moves fds above 10 to redirect: it needs its limit back.
        cmd.args([
            "-c",
            "ulimit -n 64; sleep 30 >/dev/null 2>&1 & echo $! > \"$1\"; exit 0",
            "sh",
        ])
        .arg(&report);
        // One fd free: the pidfd's; the sweep's copy of it then fails.
        set_soft_limit(libc::RLIMIT_NOFILE, lowest_free_fd() + 1);
        let result = match call {
            "status" => cmd.status(),
            _ => runtime.block_on(cmd.status_async()),
        };
        set_soft_limit(libc::RLIMIT_NOFILE, 1024);
        let result = result.expect("the child ran: its result is not lost");
        let left: i32 = std::fs::read_to_string(&report)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&report).unwrap();
        assert!(result.success(), "{call}: {result:?}");
        let error = result
            .supervisor_error
            .as_ref()
            .expect("the sweep's failure is reported");
        assert!(error.is_resource_exhausted(), "{call}: {error}");
        assert!(!common::pid_alive(left), "{call}: {left} outlived the call");
        assert!(our_children().is_empty(), "{call}: {:?}", our_children());
    }
}

/// Caught by an acceptance run: with the subreaper and few fds to spare,
/// the escapee sweep could neither list this process's children in /proc
/// nor open their pidfds, skipped them silently, and the call returned
/// `Ok` with the killed group member left a zombie of ours for good. An
/// exited child is found and reaped by pid now (`waitid` needs no fd),
/// with no fd at all; a live escapee needs the listing (4 fds here), and
/// is ended whenever it can be made.
#[test]
fn the_subreaper_out_of_fds_leaves_no_zombie_and_no_escapee() {
    if !own_process(crate::test_name!()) {
        return;
    }
    for (script, spare) in [
        ("sleep 30 & exit 0", [0, 1, 2, 3]),
        ("setsid sleep 30 & sleep 0.3; exit 0", [4, 5, 6, 7]),
    ] {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .subreaper(true)
            .grace_period(std::time::Duration::from_millis(300));
        cmd.status().expect("warm-up: the kept runtime, the probes");
        for free in spare {
            set_soft_limit(libc::RLIMIT_NOFILE, lowest_free_fd() + free);
            let result = cmd.status();
            set_soft_limit(libc::RLIMIT_NOFILE, 1024);
            if let Err(e) = &result {
                assert!(e.is_resource_exhausted(), "{script}, {free} free: {e}");
            }
            assert!(
                our_children().is_empty(),
                "{script}, {free} free: {:?} after {result:?}",
                our_children()
            );
        }
    }
}

/// Regression: with `ulimit -n` 5-10 the engine's start panicked on an
/// `.expect` (exit 101 in the CLI). Now the fds its runtime needs (epoll,
/// eventfd) failing is an error, and the next call tries again.
#[test]
fn engine_start_out_of_fds_is_a_resource_error_not_a_panic() {
    if !own_process(crate::test_name!()) {
        return;
    }
    assert_engine_refused_then_started(libc::RLIMIT_NOFILE, lowest_free_fd(), 1024);
}

/// Regression: with `ulimit -u` (or `ulimit -v`) tokio's multi-thread
/// runtime failed half-way through the engine's start and waited forever
/// for the worker it had started (the CLI then ignored SIGTERM). Now the
/// engine's thread being refused is an error, at once.
#[test]
fn engine_start_out_of_threads_is_a_resource_error_not_a_hang() {
    if !own_process(crate::test_name!()) || !become_unprivileged() {
        return;
    }
    let tasks = own_threads();
    assert_engine_refused_then_started(libc::RLIMIT_NPROC, tasks, tasks + 16);
}

/// Starts the fixture with `input` and piped output, with room for the
/// child alone and not for the thread that must follow it, and checks the
/// refusal: an error, returned only after the child was ended and reaped,
/// with no fd left behind, and the action never run. With `in_runtime`,
/// the call is made inside a current-thread runtime's `block_on`.
fn assert_a_refused_thread_ends_the_child(input: childminder::Input, in_runtime: bool) {
    // The engine only: a warm-up with piped output would leave an idle
    // stdio thread in the pool, and no thread would be refused.
    let started = true_on_the_engine().expect("start the engine");
    assert!(started.success(), "{started:?}");
    // And this thread's kept runtime, which `with_process` lends to its
    // stdio thread (the subreaper makes a one-line call build it; this
    // test has its process to itself).
    let contained = Command::new("true")
        .subreaper(true)
        .run()
        .expect("build this thread's runtime");
    assert!(contained.success(), "{contained:?}");
    if !become_unprivileged() {
        return;
    }
    let runtime = in_runtime.then(support::current_thread_runtime);
    let leaks = LeakCheck::new();
    set_soft_limit(libc::RLIMIT_NPROC, own_threads() + 1);
    let call = || {
        with_process(
            &fixture_cmd(["sleep", "30"]),
            input,
            childminder::discard,
            childminder::discard,
            |_| unreachable!("the action must not run without its threads"),
        )
    };
    let err = match &runtime {
        Some(runtime) => runtime.block_on(async { call() }),
        None => call(),
    }
    .unwrap_err();
    set_soft_limit(libc::RLIMIT_NPROC, own_threads() + 16);
    assert_resource_error(&err, "starting a worker thread");
    assert!(marker_processes().is_empty(), "{:?}", marker_processes());
    leaks.assert_clean();
}

/// Regression: a thread refused after the child started (the CLI under
/// `ulimit -u 10`) panicked, with the child running and no report. Here the
/// producer's thread is refused.
#[test]
fn a_refused_input_thread_ends_and_reaps_the_started_child() {
    if own_process(crate::test_name!()) {
        assert_a_refused_thread_ends_the_child(stdin::from_fn(|| Ok(Some(b"x".to_vec()))), false);
    }
}

/// As above for the stdio thread that reads the child's output.
#[test]
fn a_refused_stdio_thread_ends_and_reaps_the_started_child() {
    if own_process(crate::test_name!()) {
        assert_a_refused_thread_ends_the_child(stdin::empty(), false);
    }
}

/// Caught by an acceptance run: inside a current-thread runtime, the
/// refused stdio thread dropped the runtime lent to it on the caller's
/// thread, and tokio panicked ("Cannot drop a runtime in a context where
/// blocking is not allowed") instead of the call returning its error.
#[test]
fn a_refused_stdio_thread_inside_a_runtime_is_an_error_not_a_panic() {
    if own_process(crate::test_name!()) {
        assert_a_refused_thread_ends_the_child(stdin::empty(), true);
    }
}

/// Caught by an acceptance run: `pass_fd` to the last fd below the limit
/// passed validation, and every spawn then failed with `EINVAL`: the
/// source was copied above every target, where no number was left. And
/// (found in review) the child cannot close what lies above the limit
/// then: an inheritable fd there, opened before the limit was lowered,
/// is refused rather than leaked.
#[test]
fn pass_fd_to_the_last_fd_below_the_limit_reaches_the_child() {
    if !own_process(crate::test_name!()) {
        return;
    }
    let limit = lowest_free_fd() + 16;
    let top = i32::try_from(limit - 1).unwrap();
    let mut cmd = Command::new("readlink");
    cmd.arg(format!("/proc/self/fd/{top}"))
        .pass_fd(std::fs::File::open("/dev/null").unwrap(), top);
    // What this process inherited without close-on-exec (a CI runner's
    // fd 251, say) is made close-on-exec: this test's own fd 900 is the
    // one to be found.
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        if fd > 2 {
            // SAFETY: fcntl on an fd number, setting a flag only.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    // SAFETY: dup2 of fd 0 (kept open by the harness) to a free number far
    // above the limit to come; without O_CLOEXEC, as an inherited fd is.
    let high = unsafe { libc::dup2(0, 900) };
    assert_eq!(high, 900, "{}", io::Error::last_os_error());
    set_soft_limit(libc::RLIMIT_NOFILE, limit);
    let refused = cmd.output();
    // SAFETY: closes the fd dup2 made above, which nothing else uses.
    unsafe { libc::close(high) };
    let out = cmd.output();
    set_soft_limit(libc::RLIMIT_NOFILE, 1024);
    let refused = refused.expect_err("fd 900 would be inherited");
    assert!(
        matches!(refused, Error::InvalidOptions { .. }) && refused.to_string().contains("fd 900"),
        "{refused}"
    );
    let out = out.expect("a target below the limit is valid");
    assert!(out.result.success(), "{:?}", out.result);
    assert_eq!(out.stdout, b"/dev/null\n");
}

/// Regression: `fork` refused for lack of processes (EAGAIN) was
/// classified as "permission denied" (`childminder run` exited 126, "cannot
/// run"). It is a resource failure: the program may be fine.
#[test]
fn a_refused_fork_is_a_resource_error_not_permission_denied() {
    if !own_process(crate::test_name!()) {
        return;
    }
    warm_up();
    if !become_unprivileged() {
        return;
    }
    // No room for one more task: the spawn itself is refused.
    set_soft_limit(libc::RLIMIT_NPROC, own_threads());
    let err = Command::new("true").run().unwrap_err();
    set_soft_limit(libc::RLIMIT_NPROC, own_threads() + 16);
    assert!(
        matches!(&err, Error::ProcessStartFailed { source, .. }
            if source.raw_os_error() == Some(libc::EAGAIN)),
        "{err:?}"
    );
    assert!(
        err.is_resource_exhausted() && !err.is_permission_denied(),
        "{err:?}"
    );
    assert!(our_children().is_empty(), "{:?}", our_children());
}

/// The errno classification, without processes: which start errors say
/// "cannot run" and which say "out of a resource".
#[test]
fn start_errors_are_classified_by_errno() {
    let start = |errno| Error::ProcessStartFailed {
        program: "p".into(),
        source: io::Error::from_raw_os_error(errno),
    };
    let resource = [
        libc::EAGAIN,
        libc::ENOMEM,
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOBUFS,
    ];
    let cannot_run = [
        libc::EACCES,
        libc::EPERM,
        libc::ENOEXEC,
        libc::EISDIR,
        libc::E2BIG,
    ];
    for (errno, is_resource) in resource
        .map(|e| (e, true))
        .into_iter()
        .chain(cannot_run.map(|e| (e, false)))
    {
        let err = start(errno);
        assert_eq!(err.is_resource_exhausted(), is_resource, "{err}");
        assert_eq!(err.is_permission_denied(), !is_resource, "{err}");
        assert!(!err.is_not_found(), "{err}");
    }
    let err = start(libc::ENOENT);
    assert!(err.is_not_found() && !err.is_permission_denied() && !err.is_resource_exhausted());
    let pipes = Error::PipeCreationFailed {
        program: "p".into(),
        source: io::Error::from_raw_os_error(libc::EMFILE),
    };
    assert!(pipes.is_resource_exhausted() && !pipes.is_permission_denied());
    let io = Error::Io {
        program: "p".into(),
        context: "starting the engine runtime",
        source: io::Error::from_raw_os_error(libc::EAGAIN),
    };
    assert!(io.is_resource_exhausted());
    let denied_io = Error::Io {
        program: "p".into(),
        context: "x",
        source: io::Error::from_raw_os_error(libc::EPERM),
    };
    assert!(!denied_io.is_resource_exhausted());
}

/// The size of this process's address space, in bytes.
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmSize in kB");
    kb * 1024
}

/// `output()` of more than memory holds: the buffer that cannot grow is a
/// recorded failure of the stream (its pipe closed, the child's next write
/// fails), the call returns, and what was read is kept; never an abort,
/// never a loop.
#[test]
fn output_beyond_the_memory_limit_is_a_recorded_failure_not_an_abort() {
    if !own_process(crate::test_name!()) {
        return;
    }
    warm_up();
    let total: u64 = 4 << 30;
    let mut cmd = fixture_cmd(["write", &total.to_string()]);
    // Both paths: poll(2) alone (with a deadline too), and the runtime
    // path, which the subreaper takes.
    cmd.deadline(std::time::Duration::from_secs(600));
    for subreaper in [false, true] {
        cmd.subreaper(subreaper);
        set_soft_limit(libc::RLIMIT_AS, address_space() + (256 << 20));
        let out = cmd.output();
        set_soft_limit(libc::RLIMIT_AS, u64::MAX);
        assert_out_of_memory_recorded(out, total);
    }
    // In the caller's task, with nothing to time.
    let runtime = support::current_thread_runtime();
    let cmd = fixture_cmd(["write", &total.to_string()]);
    set_soft_limit(libc::RLIMIT_AS, address_space() + (256 << 20));
    let out = runtime.block_on(cmd.output_async());
    set_soft_limit(libc::RLIMIT_AS, u64::MAX);
    assert_out_of_memory_recorded(out, total);
    assert!(our_children().is_empty(), "{:?}", our_children());
}

fn assert_out_of_memory_recorded(out: Result<childminder::Output, Error>, total: u64) {
    let out = out.expect("the child ran: its result is returned");
    let errors = &out.result.worker_errors;
    assert_eq!(errors.len(), 1, "{:?}", out.result);
    let e = &errors[0];
    assert_eq!(
        (e.stream, e.op),
        (Stream::Stdout, WorkerOp::Consume),
        "{e:?}"
    );
    assert_eq!(e.source.kind(), io::ErrorKind::OutOfMemory, "{e:?}");
    assert!(!out.stdout.is_empty() && (out.stdout.len() as u64) < total);
}

/// Caught by an acceptance run: a cgroup spawn out of fds at the moment
/// `/proc/self/mountinfo` was read cached "no cgroup v2 mounted" for the
/// rest of the process (every later cgroup spawn failed, or fell back in
/// silence); the kernel's pidfd probe had the same flaw. The limit is
/// raised one fd at a time from none free: every call is a success or a
/// resource error, and with fds again both work.
#[test]
fn running_out_of_fds_turns_no_kernel_feature_off_for_good() {
    if !own_process(crate::test_name!()) {
        return;
    }
    let cgroup_v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - cgroup2 ");
    let base = lowest_free_fd();
    for spare in 0..16 {
        set_soft_limit(libc::RLIMIT_NOFILE, base + spare);
        let mut with_cgroup = Command::new("true");
        with_cgroup.cgroup(childminder::Cgroup::new().fallback(true));
        for (what, outcome) in [
            ("run", Command::new("true").run()),
            ("run with a cgroup", with_cgroup.run()),
        ] {
            match outcome {
                Ok(r) => assert!(r.success(), "{what}, {spare} spare: {r:?}"),
                Err(e) => assert!(e.is_resource_exhausted(), "{what}, {spare} spare: {e}"),
            }
        }
    }
    set_soft_limit(libc::RLIMIT_NOFILE, 1024);
    let r = Command::new("true").run().unwrap();
    assert!(r.used_pidfd, "{r:?}");
    if cgroup_v2 {
        let r = Command::new("true")
            .cgroup(childminder::Cgroup::new().fallback(true))
            .run()
            .unwrap();
        let fallback = r.containment.cgroup_fallback.unwrap_or_default();
        assert!(!fallback.contains("no cgroup v2"), "{fallback}");
    }
    assert!(our_children().is_empty(), "{:?}", our_children());
}

/// Caught by an acceptance run: the first spawn of a process, with no fd
/// free for the kernel's pidfd probe and nothing else needing one (every
/// stream inherited), went on without a pidfd: its exit was seen seconds
/// late, a deadline fired late, and `wait` left a zombie. It is a resource
/// error now, before anything starts, and the next call, with fds, runs on
/// a pidfd.
#[test]
fn a_first_spawn_with_no_fd_free_for_the_pidfd_probe_is_a_resource_error() {
    if !own_process(crate::test_name!()) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let leak = LeakCheck::new();
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::Inherit)
        .stdout(Stdio::Inherit)
        .stderr(Stdio::Inherit);
    set_soft_limit(libc::RLIMIT_NOFILE, lowest_free_fd());
    let status = runtime.block_on(cmd.status_async());
    let spawned = runtime.block_on(async { cmd.spawn().map(drop) });
    set_soft_limit(libc::RLIMIT_NOFILE, 1024);
    for outcome in [status.map(drop), spawned] {
        assert_resource_error(&outcome.unwrap_err(), "asking the kernel for pidfds");
    }
    assert!(our_children().is_empty(), "{:?}", our_children());
    let result = runtime.block_on(cmd.status_async()).unwrap();
    assert!(result.success() && result.used_pidfd, "{result:?}");
    drop(runtime);
    leak.assert_clean();
}

/// The same refusal met from async code (a blocking call inside a task,
/// which runs on the engine): the engine's runtime, built before its
/// thread was refused, was dropped inside the caller's runtime, where
/// tokio panics. It is a resource error there too.
#[test]
fn engine_start_out_of_threads_inside_a_runtime_is_a_resource_error_not_a_panic() {
    if !own_process(crate::test_name!()) || !become_unprivileged() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tasks = own_threads();
    set_soft_limit(libc::RLIMIT_NPROC, tasks);
    let refused = runtime.block_on(async { true_on_the_engine() });
    set_soft_limit(libc::RLIMIT_NPROC, tasks + 16);
    assert_resource_error(&refused.unwrap_err(), "starting the engine runtime");
    let result = runtime
        .block_on(async { true_on_the_engine() })
        .expect("the engine starts on the next call");
    assert!(result.success(), "{result:?}");
    assert!(our_children().is_empty(), "{:?}", our_children());
}
