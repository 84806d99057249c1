//! Helpers shared by the integration tests (`mod common;` in each test file).
//!
//! Every test runs in its own process under cargo-nextest, so "our children"
//! and "our open fds" are per-test facts.
#![allow(dead_code)]

pub mod pty;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Path of the `childminder-fixture` binary (see `tests/fixture/main.rs`).
pub fn fixture() -> &'static str {
    env!("CARGO_BIN_EXE_childminder-fixture")
}

/// Environment variable tests put on every process they spawn, set to
/// [`marker_value()`], so [`LeakCheck`] can find escaped descendants.
pub const MARKER_VAR: &str = "CHILDMINDER_TEST_MARKER";

/// A value unique to this test process (pid + start time in nanoseconds).
pub fn marker_value() -> String {
    static VALUE: OnceLock<String> = OnceLock::new();
    VALUE
        .get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("cm-{}-{}", std::process::id(), nanos)
        })
        .clone()
}

/// How long [`LeakCheck::assert_clean`] waits for marked non-children to go.
const MARKER_GRACE: Duration = Duration::from_secs(2);
const MARKER_POLL: Duration = Duration::from_millis(20);

/// Snapshot of this process's open fds; [`LeakCheck::assert_clean`] then
/// checks nothing leaked since: fds, child processes (zombies included) and
/// processes carrying our marker anywhere on the system.
pub struct LeakCheck {
    fds: BTreeMap<i32, String>,
}

impl LeakCheck {
    pub fn new() -> LeakCheck {
        LeakCheck { fds: open_fds() }
    }

    /// Panics, listing every leak, if (a) an fd is open that was not open at
    /// [`LeakCheck::new`] (or the number now names a different file), (b) any
    /// process has this process as its parent, zombies included, or (c) any
    /// other process carries our marker. (a) and (b) are checked once, now;
    /// (c) is re-scanned every 20 ms for up to 2 s, because reaping by init
    /// is asynchronous and there is no event to wait on.
    pub fn assert_clean(&self) {
        let mut problems = Vec::new();

        for (fd, target) in open_fds() {
            match self.fds.get(&fd) {
                None => problems.push(format!("fd {fd} -> {target} (not open at LeakCheck::new)")),
                Some(was) if *was != target => problems.push(format!(
                    "fd {fd} -> {target} (at LeakCheck::new it was -> {was})"
                )),
                Some(_) => {}
            }
        }

        for (pid, state, comm) in our_children() {
            let note = (state == 'Z').then_some(" (zombie: not reaped)");
            problems.push(format!(
                "child process pid {pid} state {state}{} comm {comm:?}",
                note.unwrap_or_default()
            ));
        }

        // With failures already found, scan once rather than wait.
        let retry = problems.is_empty();
        let deadline = Instant::now() + if retry { MARKER_GRACE } else { Duration::ZERO };
        let marked = loop {
            let marked = marker_procs();
            if marked.is_empty() || Instant::now() >= deadline {
                break marked;
            }
            std::thread::sleep(MARKER_POLL);
        };
        let waited = if retry {
            "still there after 2 s"
        } else {
            "single scan"
        };
        for p in marked {
            problems.push(format!(
                "process pid {} state {} ppid {} comm {:?} carries {MARKER_VAR}={} ({waited})",
                p.pid,
                p.state,
                p.ppid,
                p.comm,
                marker_value()
            ));
        }

        if !problems.is_empty() {
            let mut msg = format!("LeakCheck: {} leak(s) found:", problems.len());
            for p in &problems {
                let _ = write!(msg, "\n  - {p}");
            }
            panic!("{msg}");
        }
    }
}

impl Default for LeakCheck {
    fn default() -> Self {
        Self::new()
    }
}

/// Processes other than this one whose environment contains
/// `MARKER_VAR=marker_value()`, as (pid, state). Zombies have no readable
/// environment, so they never show up here.
pub fn marker_processes() -> Vec<(i32, char)> {
    marker_procs()
        .into_iter()
        .map(|p| (p.pid, p.state))
        .collect()
}

/// Processes whose parent is this process, zombies included, as
/// (pid, state, comm).
pub fn our_children() -> Vec<(i32, char, String)> {
    let me = std::process::id() as i32;
    all_pids()
        .filter_map(proc_stat)
        .filter(|p| p.ppid == me)
        .map(|p| (p.pid, p.state, p.comm))
        .collect()
}

/// True if `/proc/PID/stat` exists and the state is neither `Z` nor `X`.
pub fn pid_alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

struct ProcStat {
    pid: i32,
    state: char,
    ppid: i32,
    comm: String,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid ...`. `comm` may itself
/// contain spaces and parentheses, so the fields after it are found from the
/// LAST `)`. None if the process vanished or the file is unreadable.
fn proc_stat(pid: i32) -> Option<ProcStat> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(raw.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(&raw[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        comm,
    })
}

fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .expect("read_dir /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

fn marker_procs() -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    let needle = format!("{MARKER_VAR}={}", marker_value()).into_bytes();
    all_pids()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // Permission errors and vanished processes read as "not marked".
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle))
        })
        .filter_map(proc_stat)
        .collect()
}

/// This process's open fds mapped to their readlink targets, excluding the fd
/// of the directory stream used to list them.
fn open_fds() -> BTreeMap<i32, String> {
    let mut fds = BTreeMap::new();
    // SAFETY: standard opendir/readdir/closedir use; each entry is consumed
    // before the next readdir call and the stream is closed exactly once.
    unsafe {
        let dir = libc::opendir(c"/proc/self/fd".as_ptr());
        assert!(
            !dir.is_null(),
            "opendir /proc/self/fd: {}",
            std::io::Error::last_os_error()
        );
        let own = libc::dirfd(dir);
        loop {
            let ent = libc::readdir(dir);
            if ent.is_null() {
                break;
            }
            let name = CStr::from_ptr((*ent).d_name.as_ptr());
            let Some(fd) = name.to_str().ok().and_then(|s| s.parse::<i32>().ok()) else {
                continue; // "." and ".."
            };
            if fd != own {
                let target = match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
                    Ok(t) => t.display().to_string(),
                    Err(e) => format!("<readlink failed: {e}>"),
                };
                fds.insert(fd, target);
            }
        }
        libc::closedir(dir);
    }
    fds
}

/// The variable a test re-run by [`own_process`] finds its own name in.
const OWN_PROCESS_VAR: &str = "CHILDMINDER_TEST_OWN_PROCESS";

/// How long a test re-run by [`own_process`] may take before it counts as
/// hung: nextest's own limit (`.config/nextest.toml`, 4 x 30 s).
const OWN_PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// The name libtest knows the calling test function by
/// (`module::function`, without the crate), for [`own_process`].
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        let path = path.strip_suffix("::here").unwrap_or(path);
        path.split_once("::").map_or(path, |(_crate, rest)| rest)
    }};
}

/// Gives the calling test a process of its own, for checks that count
/// what the whole process holds ([`LeakCheck`]: fds, children) or that
/// change it for good (resource limits, the uid). Call it first, as
/// `if !own_process(test_name!()) { return; }`.
///
/// Under cargo-nextest every test already has its own process, and this
/// returns true at once. Under plain `cargo test`, where tests are threads
/// of one process, it re-runs the test binary with just this test
/// (`NAME --exact`), waits for it (bounded: a hang fails the test), checks
/// it ran and passed, and returns false; the re-run returns true.
///
/// # Panics
///
/// When the re-run fails, does not run the test, or outlives
/// [`OWN_PROCESS_LIMIT`] (it is killed then).
pub fn own_process(test_name: &str) -> bool {
    if std::env::var_os("NEXTEST").is_some()
        || std::env::var_os(OWN_PROCESS_VAR).is_some_and(|v| v == test_name)
    {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let started = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS_VAR, test_name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("re-run the test binary");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    // No event for a plain child's exit without a pidfd of our own: poll.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the re-run") {
            break status;
        }
        if started.elapsed() > OWN_PROCESS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{test_name}: its own process still ran after {OWN_PROCESS_LIMIT:?} (hung)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test_name} failed in its own process ({status}):\n{stdout}\n{stderr}"
    );
    false
}
