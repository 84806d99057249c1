//! `childminder run` (and `up`) when an OS resource runs out: file descriptors
//! (`ulimit -n`), memory (`ulimit -v`), processes and threads (`ulimit -u`,
//! as an unprivileged user: root is exempt).
//!
//! Each test sweeps the limit over every value from "nothing can start" to
//! "everything fits", so each thread, fd and allocation childminder needs
//! is refused at least once, wherever it is in the start-up order. The
//! promise, for every value: childminder ends by itself (a bounded wait; a
//! hang fails the test), never panics, exits 0 or 125 with a one-line
//! message and the OS's words, writes its report, and leaves no process
//! behind.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest one limited run may take.
const WATCHDOG: Duration = Duration::from_secs(30);

/// What one limited run left.
#[derive(Debug)]
struct Outcome {
    /// The setting, for messages.
    limit: String,
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// childminder's own lines on stderr (the report is JSON, the child's
    /// lines are the child's).
    fn messages(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("childminder:"))
            .collect()
    }

    /// The report `--report -` wrote: the last line of stderr.
    fn report(&self) -> Value {
        let line = self.stderr.trim_end().lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: no report ({e}) in {:?}", self.limit, self.stderr))
    }
}

/// A marker put into childminder's environment (and so its child's), unique
/// to this test process and run.
fn marker(run: usize) -> String {
    format!("cm-resources-{}-{run}", std::process::id())
}

/// Processes carrying `CM_RESOURCES_MARKER=marker`, as pids.
fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("CM_RESOURCES_MARKER={marker}").into_bytes();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle))
        })
        .collect()
}

/// Asserts that nothing carrying `marker` is alive, allowing 2 s for a
/// child killed by the parent-death signal to be reaped by init (no event
/// to wait on there). Kills what is left.
fn assert_nothing_left(marker: &str, limit: &str) {
    let start = Instant::now();
    loop {
        let left = marked_processes(marker);
        if left.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(2) {
            for pid in &left {
                // SAFETY: kill with integers; best-effort cleanup.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            panic!("{limit}: processes left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `program args` (which execs childminder under a limit) with the
/// marker, to its end or the watchdog.
fn run_limited(limit: &str, marker: &str, program: &str, args: &[&str]) -> Outcome {
    let mut child = Command::new(program)
        .args(args)
        .env("CM_RESOURCES_MARKER", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    // A plain child has no exit event without a pidfd of our own: poll.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            let gdb = Command::new("gdb")
                .args([
                    "-p",
                    &child.id().to_string(),
                    "-batch",
                    "-ex",
                    "thread apply all bt 30",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            std::fs::write(format!("/tmp/hang-{}.txt", child.id()), gdb).unwrap();
            let _ = child.kill();
            let _ = child.wait();
            panic!("{limit}: childminder still running after {WATCHDOG:?} (hung)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    Outcome {
        limit: limit.to_owned(),
        code: status.code(),
        signal: status.signal(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// True when childminder can start at all under `ulimit_flag value`
/// (`--version` exits 0): below that the dynamic loader, not childminder,
/// is what fails (a SIGSEGV in `ld.so`, "error while loading shared
/// libraries"), and there is nothing of ours to test.
fn binary_starts_under(ulimit_flag: &str, value: u64) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("ulimit {ulimit_flag} {value}; exec {CHILDMINDER} --version"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `stderr` shows a panic other than std's own when it cannot
/// map a new thread's signal stack: that one happens in the new thread
/// before any of childminder's code runs there, and childminder's answer
/// (the thread's work is taken as failed) is what the tests check.
fn own_panic(stderr: &str) -> bool {
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        if line.contains("panicked at") {
            let std_thread_start = line.contains("stack_overflow.rs")
                && lines
                    .next()
                    .is_some_and(|l| l.contains("failed to allocate an alternative stack"));
            if !std_thread_start {
                return true;
            }
        }
    }
    false
}

/// The promise for one run that ended with an exit code: 0, or 125 with
/// one message line that carries the OS's words, and a report saying 125.
/// Returns the code.
fn check_exit(outcome: &Outcome, os_words: &str) -> i32 {
    let code = outcome
        .code
        .unwrap_or_else(|| panic!("{}: killed by a signal: {outcome:?}", outcome.limit));
    assert!(
        !own_panic(&outcome.stderr),
        "{}: panicked: {}",
        outcome.limit,
        outcome.stderr
    );
    match code {
        0 => {}
        125 => {
            let messages = outcome.messages();
            let errors: Vec<_> = messages
                .iter()
                .filter(|m| !m.starts_with("childminder: warning:"))
                .collect();
            assert_eq!(errors.len(), 1, "{}: {:?}", outcome.limit, outcome.stderr);
            assert!(
                errors[0].contains(os_words),
                "{}: {:?} lacks {os_words:?}",
                outcome.limit,
                errors[0]
            );
            assert_eq!(
                outcome.report()["exit_status"],
                125,
                "{}: {}",
                outcome.limit,
                outcome.stderr
            );
        }
        other => panic!(
            "{}: exit {other}, expected 0 or 125: {outcome:?}",
            outcome.limit
        ),
    }
    code
}

const CHILDMINDER: &str = env!("CARGO_BIN_EXE_childminder");

/// Regression: `ulimit -n` 5-10 panicked (an `.expect` in the engine's
/// start), exit 101 with a backtrace. Every fd limit from 3 up: 0 or 125.
#[test]
fn every_fd_limit_gives_125_or_success_never_a_panic() {
    sweep_fd_limits("run --report - -- sh -c 'echo hi'", 0, |outcome| {
        let code = check_exit(outcome, "Too many open files");
        if code == 0 {
            assert_eq!(outcome.stdout, "hi\n", "{}", outcome.limit);
        }
        code
    });
}

/// Runs `childminder ARGS` under every fd limit from 3 to 40 (markers from
/// `first_marker`), checking each run with `check`: some limit must give
/// 125, and 40 fds must give 0.
fn sweep_fd_limits(args: &str, first_marker: usize, check: fn(&Outcome) -> i32) {
    let mut codes = Vec::new();
    for n in 3..=40 {
        if !binary_starts_under("-n", n) {
            continue;
        }
        let limit = format!("ulimit -n {n} ({args})");
        let marker = marker(first_marker + n as usize);
        let script = format!("ulimit -n {n}; exec {CHILDMINDER} {args}");
        let outcome = run_limited(&limit, &marker, "sh", &["-c", &script]);
        let code = check(&outcome);
        assert_nothing_left(&marker, &limit);
        codes.push(code);
    }
    assert_refused_then_plenty(&codes, "40 fds");
}

/// Regression: `ulimit -v 10000` made the engine's runtime start fail
/// half-way and wait forever (SIGTERM ignored, only SIGKILL ended it);
/// other values panicked in a thread spawned after the child started.
/// Every address-space limit over the range where threads stop fitting: a
/// bounded run, 0 or 125, never a panic.
///
/// Two things of Rust's own are allowed besides, which no library can
/// change: a failed small allocation of the Rust heap aborts the process
/// (SIGABRT), the OS then killing the child through the parent-death
/// signal, which must still leave nothing behind; and std's message when a
/// new thread dies as it starts, unable to map its signal stack (see
/// [`own_panic`]).
#[test]
fn every_memory_limit_gives_125_or_success_never_a_hang_or_panic() {
    // (No 125 is required here: childminder run starts no thread, and what
    // fails first under this limit depends on the build.)
    sweep_memory_limits("run --report - -- sh -c 'echo hi'", 1_000, 0, |outcome| {
        check_exit(outcome, "")
    });
}

/// Runs `childminder ARGS` under every address-space limit from 4 MB to 60
/// MB in steps of `step` KiB (markers from `first_marker`), checking each
/// run that ends with a status with `check`; a run aborted by Rust for a
/// failed allocation is allowed. The largest limit must give 0.
fn sweep_memory_limits(args: &str, step: usize, first_marker: usize, check: fn(&Outcome) -> i32) {
    let mut codes = Vec::new();
    for (i, kib) in (4_000..=60_000).step_by(step).enumerate() {
        if !binary_starts_under("-v", kib) {
            continue;
        }
        let limit = format!("ulimit -v {kib} ({args})");
        let marker = marker(first_marker + i);
        let script = format!("ulimit -v {kib}; exec {CHILDMINDER} {args}");
        let outcome = run_limited(&limit, &marker, "sh", &["-c", &script]);
        if outcome.signal == Some(libc::SIGABRT) {
            assert!(
                outcome.stderr.contains("memory allocation of")
                    || outcome.stderr.contains("out of memory"),
                "{limit}: aborted, not for memory: {}",
                outcome.stderr
            );
        } else {
            codes.push(check(&outcome));
        }
        assert_nothing_left(&marker, &limit);
    }
    assert!(!codes.is_empty(), "childminder started under no limit");
    assert_eq!(codes.last(), Some(&0), "60 MB should be plenty: {codes:?}");
}

/// Regression: as an unprivileged user, `ulimit -u 3` or `4` hung in the
/// engine's start, `2` panicked there, `8` panicked in a thread spawned
/// after the child started (the child ran, no report), and `5` (fork
/// refused, EAGAIN) exited 126 "cannot run". Every process limit from 1 up,
/// with streamed and with inherited stdio: 0 or 125 with the OS's words,
/// never 126, and a child that had started is gone.
#[test]
fn every_process_limit_gives_125_or_success_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: not root, cannot run as a uid of its own for RLIMIT_NPROC");
        return;
    }
    let tools = ["setpriv", "prlimit"];
    if let Some(missing) = tools.iter().find(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
    }) {
        println!("skipped: {missing} (util-linux) is not installed");
        return;
    }
    // A uid no other process runs as, so the limit counts ours alone.
    let uid = (50_000 + std::process::id() % 10_000).to_string();
    let id_flags = [
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_owned(),
    ];
    let mut run = 0;
    for stdio in [None, Some("--inherit-stdio")] {
        let mut codes = Vec::new();
        for n in 1..=12 {
            run += 1;
            let limit = format!("ulimit -u {n} {}", stdio.unwrap_or_default());
            let marker = marker(run);
            let nproc = format!("--nproc={n}:{n}");
            let mut args: Vec<&str> = id_flags.iter().map(String::as_str).collect();
            args.extend(["prlimit", &nproc, "--", CHILDMINDER, "run", "--report", "-"]);
            args.extend(stdio);
            args.extend(["--", "sleep", "0.2"]);
            let outcome = run_limited(&limit, &marker, "setpriv", &args);
            let code = check_exit(&outcome, "Resource temporarily unavailable");
            if code == 125 {
                let report = outcome.report();
                assert!(
                    report["supervisor_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("Resource temporarily unavailable")),
                    "{limit}: {report}"
                );
            }
            assert_nothing_left(&marker, &limit);
            codes.push(code);
        }
        assert_refused_then_plenty(&codes, "12 tasks");
    }
}

/// The exit codes of a sweep from "nothing fits" to `plenty`: some limit
/// was low enough for a 125, and the last one let the run succeed.
fn assert_refused_then_plenty(codes: &[i32], plenty: &str) {
    assert!(codes.contains(&125), "no limit was low enough: {codes:?}");
    assert_eq!(
        codes.last(),
        Some(&0),
        "{plenty} should be plenty: {codes:?}"
    );
}

/// A Procfile of one process that prints `hi` and exits 0, so `up` ends
/// with 0 once it has run; its path.
fn one_line_procfile(run: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("up-resources-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Unprivileged runs must be able to read it.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.join("Procfile");
    std::fs::write(&path, "a: echo hi\n").unwrap();
    path.to_str().unwrap().to_owned()
}

/// The promise for one `up` under a limit: it ends by itself with a status
/// (0, 125 with the OS's words, or the status of a process that failed for
/// lack of the resource, as the Procfile runners do), never a panic.
fn check_up(outcome: &Outcome, os_words: &str) -> i32 {
    let code = outcome
        .code
        .unwrap_or_else(|| panic!("{}: killed by a signal: {outcome:?}", outcome.limit));
    assert!(
        !own_panic(&outcome.stderr) && code != 101,
        "{}: panicked: {}",
        outcome.limit,
        outcome.stderr
    );
    if code == 125 {
        assert!(
            outcome.messages().iter().any(|m| m.contains(os_words)),
            "{}: no message with {os_words:?}: {:?}",
            outcome.limit,
            outcome.stderr
        );
    }
    code
}

/// Caught by an acceptance run: `up` panicked (exit 101) at `ulimit -n 6`
/// and `7` (tokio's signal driver as its runtime was built).
#[test]
fn every_fd_limit_gives_up_a_status_never_a_panic() {
    let procfile = one_line_procfile("fds");
    sweep_fd_limits(&format!("up -f {procfile}"), 1_000, |outcome| {
        check_up(outcome, "Too many open files")
    });
}

/// Caught by an acceptance run: as an unprivileged user, `up` under
/// `ulimit -u 1` panicked dropping the output thread's runtime inside its
/// own, and under `ulimit -u 2` in `spawn_blocking`.
#[test]
fn every_process_limit_gives_up_a_status_never_a_panic() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: not root, cannot run as a uid of its own for RLIMIT_NPROC");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err()
        || Command::new("prlimit").arg("--version").output().is_err()
    {
        println!("skipped: setpriv or prlimit (util-linux) is not installed");
        return;
    }
    let procfile = one_line_procfile("nproc");
    let uid = (50_000 + std::process::id() % 10_000).to_string();
    let (ruid, rgid) = (format!("--reuid={uid}"), format!("--regid={uid}"));
    let mut codes = Vec::new();
    for n in 1..=12 {
        let limit = format!("ulimit -u {n} (up)");
        let marker = marker(2_000 + n);
        let nproc = format!("--nproc={n}:{n}");
        let args = [
            ruid.as_str(),
            &rgid,
            "--clear-groups",
            "prlimit",
            &nproc,
            "--",
            CHILDMINDER,
            "up",
            "-f",
            &procfile,
        ];
        let outcome = run_limited(&limit, &marker, "setpriv", &args);
        let code = check_up(&outcome, "Resource temporarily unavailable");
        assert_nothing_left(&marker, &limit);
        codes.push(code);
    }
    assert_refused_then_plenty(&codes, "12 tasks");
}

/// Caught by an acceptance run: `up` under `ulimit -v 8000` to `10000`
/// panicked as under `ulimit -u` (the output thread refused). Rust's own
/// abort on a failed small allocation is allowed, as for `run`.
#[test]
fn every_memory_limit_gives_up_a_status_never_a_panic() {
    let procfile = one_line_procfile("memory");
    sweep_memory_limits(&format!("up -f {procfile}"), 2_000, 3_000, |outcome| {
        check_up(outcome, "")
    });
}
