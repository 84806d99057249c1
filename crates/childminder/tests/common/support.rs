//! Helpers for the integration tests, on top of `common/mod.rs`: commands
//! that carry the leak marker, a consumer that forwards the child's lines to
//! a channel (for `ready` handshakes), the fixture's byte pattern, and
//! bounded waits for conditions that have no event.
//!
//! Include with `mod common; #[path = "common/support.rs"] mod support;`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use childminder::Command;

use crate::common::{MARKER_VAR, fixture, marker_value};

/// How long a handshake may take before the test gives up: generous, the
/// machine is shared.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// The period of the fixture's pattern: byte `i` is `(i % 251) as u8`.
pub const PERIOD: u64 = 251;

/// `Command::new(program)` with the leak marker in its environment, so the
/// child and everything it starts are accounted by `LeakCheck`.
pub fn marked(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env(MARKER_VAR, marker_value());
    cmd
}

/// A marked child that moves itself into its parent's process group (out
/// of the one it was started to lead), ignores SIGTERM, prints `ready` and
/// sleeps for 300 s.
pub fn group_leaver() -> Command {
    let mut cmd = marked("python3");
    cmd.args([
        "-c",
        "import os, signal, time\n\
         os.setpgid(0, os.getpgid(os.getppid()))\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         print('ready', flush=True)\n\
         time.sleep(300)",
    ]);
    cmd
}

/// The fixture with `args`, marked.
pub fn fixture_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = marked(fixture());
    cmd.args(args);
    cmd
}

/// A current-thread tokio runtime with every driver enabled: what each
/// async test here runs on.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts the library's global engine and this thread's runtime for the
/// one-line calls (threads, epoll and eventfd fds) so a `LeakCheck` taken
/// afterwards does not count them.
pub fn warm_up() {
    // `with_process` starts the shared engine, and, with piped output,
    // builds this thread's own runtime (lent to its stdio thread; the
    // one-line calls use it for a group sweep): both are kept for later
    // calls. The one-line call warms up the rest (the probes of the
    // kernel's features).
    let r = Command::new("true")
        .deadline(std::time::Duration::from_secs(3600))
        .run()
        .expect("warm-up run of `true`");
    assert!(r.success(), "warm-up: {r:?}");
    let r = childminder::with_process(
        &Command::new("true"),
        childminder::stdin::empty(),
        childminder::discard,
        childminder::discard,
        |p| p.wait(),
    )
    .expect("warm-up with_process of `true`");
    assert!(r.success(), "warm-up: {r:?}");
}

/// A consumer that forwards every complete line (without its `\n`) to the
/// returned channel, lossily decoded. Lines after the receiver is gone are
/// dropped silently.
pub fn line_consumer() -> (
    impl FnMut(&[u8]) -> io::Result<()> + Send + 'static,
    Receiver<String>,
) {
    let (tx, rx) = channel();
    (line_forwarder(tx), rx)
}

/// Like [`line_consumer`], with a given sender (to merge streams).
pub fn line_forwarder(tx: Sender<String>) -> impl FnMut(&[u8]) -> io::Result<()> + Send + 'static {
    let mut partial = Vec::new();
    move |chunk: &[u8]| {
        partial.extend_from_slice(chunk);
        while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=nl).collect();
            let _ = tx.send(String::from_utf8_lossy(&line[..nl]).into_owned());
        }
        Ok(())
    }
}

/// A producer that gives `chunk`, then blocks in its next call until the
/// returned sender is dropped (or sent to), and then ends stdin: stdin stays
/// open, with the producer stuck in its own code, for as long as the test
/// wants.
pub fn one_chunk_then_hold(
    chunk: &'static [u8],
) -> (
    impl FnMut() -> io::Result<Option<Vec<u8>>> + Send + 'static,
    Sender<()>,
) {
    let (hold_tx, hold_rx) = channel::<()>();
    let mut first = true;
    let producer = move || {
        if std::mem::take(&mut first) {
            return Ok(Some(chunk.to_vec()));
        }
        let _ = hold_rx.recv();
        Ok(None)
    };
    (producer, hold_tx)
}

/// The next line from a [`line_consumer`], or a panic after [`HANDSHAKE`].
pub fn next_line(rx: &Receiver<String>) -> String {
    match rx.recv_timeout(HANDSHAKE) {
        Ok(line) => line,
        Err(RecvTimeoutError::Timeout) => panic!("no line from the child within {HANDSHAKE:?}"),
        Err(RecvTimeoutError::Disconnected) => {
            panic!("the child's output ended before the expected line")
        }
    }
}

/// Reads the fixture's `ready [pid...]` line and returns the pids.
pub fn expect_ready(rx: &Receiver<String>) -> Vec<i32> {
    let line = next_line(rx);
    ready_pids(&line)
}

/// Parses `ready 12 34` into `[12, 34]`; panics on anything but a ready line.
pub fn ready_pids(line: &str) -> Vec<i32> {
    let mut words = line.split_ascii_whitespace();
    assert_eq!(
        words.next(),
        Some("ready"),
        "expected a ready line, got {line:?}"
    );
    words
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("bad pid {w:?} in {line:?}"))
        })
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns
/// whether it held. For conditions the kernel has no event for (a process
/// that is not our child being reaped by init, a child blocking in write).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that every pid in `pids` is gone (or a zombie) within 2 s, the
/// time `LeakCheck` also allows init to reap.
pub fn assert_all_dead(pids: &[i32]) {
    let dead = wait_until(Duration::from_secs(2), || {
        pids.iter().all(|&p| !crate::common::pid_alive(p))
    });
    let alive: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&p| crate::common::pid_alive(p))
        .collect();
    assert!(dead, "processes still alive: {alive:?}");
}

/// `len` bytes of the fixture's pattern starting at stream offset `offset`.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((offset + i) % PERIOD) as u8)
        .collect()
}

/// Checks a stream against the pattern chunk by chunk, without keeping it.
#[derive(Debug, Default)]
pub struct PatternCheck {
    /// Bytes checked so far.
    pub total: u64,
    /// Offset of the first mismatch, if any.
    pub first_mismatch: Option<u64>,
    table: Vec<u8>,
}

impl PatternCheck {
    pub fn new() -> PatternCheck {
        PatternCheck {
            total: 0,
            first_mismatch: None,
            // One period more than any chunk we check at once.
            table: pattern(0, 64 * 1024 + PERIOD as usize),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let n = chunk.len().min(64 * 1024);
            let start = (self.total % PERIOD) as usize;
            let expected = &self.table[start..start + n];
            if self.first_mismatch.is_none() && &chunk[..n] != expected {
                let i = chunk[..n]
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.first_mismatch = Some(self.total + i as u64);
            }
            self.total += n as u64;
            chunk = &chunk[n..];
        }
    }
}

/// A producer of `total` pattern bytes in chunks of `chunk` bytes, then EOF.
pub fn pattern_producer(
    total: u64,
    chunk: usize,
) -> impl FnMut() -> io::Result<Option<Vec<u8>>> + Send + 'static {
    let table = pattern(0, chunk + PERIOD as usize);
    let mut sent = 0u64;
    move || {
        if sent >= total {
            return Ok(None);
        }
        let n = (total - sent).min(chunk as u64) as usize;
        let start = (sent % PERIOD) as usize;
        sent += n as u64;
        Ok(Some(table[start..start + n].to_vec()))
    }
}

/// This process's process group.
pub fn own_pgid() -> i32 {
    // SAFETY: getpgrp has no preconditions.
    unsafe { libc::getpgrp() }
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`, read after the
/// command name. `None` if the process is gone.
pub fn stat_field(pid: i32, n: usize) -> Option<String> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = raw.rfind(')')?;
    // Field 3 (state) is the first after the name.
    raw[close + 1..]
        .split_ascii_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_owned)
}

/// CPU time this test process has used so far, all its threads summed
/// (the first field of each `/proc/self/task/*/schedstat`). A supervision
/// that waits by sleeping on events adds next to nothing while it waits; a
/// loop that polls without sleeping adds the whole wait.
pub fn cpu_time() -> Duration {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
        let path = task.expect("a task entry").path().join("schedstat");
        // A thread that ended since the listing has nothing left to count.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        let on_cpu: u64 = stat
            .split_ascii_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .expect("schedstat starts with the time on the CPU in ns");
        total += Duration::from_nanos(on_cpu);
    }
    total
}

/// The `wchar` counter of `/proc/PID/io`: bytes the process asked to write.
pub fn wchar(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the process's written-byte count stops growing for 200 ms
/// (it is blocked in a write), within `limit`; returns the count then.
pub fn wait_until_write_blocked(pid: i32, limit: Duration) -> u64 {
    let mut last = (wchar(pid).expect("read /proc/PID/io"), Instant::now());
    let mut stable_since = Instant::now();
    let settled = wait_until(limit, || {
        let now = wchar(pid).expect("read /proc/PID/io");
        if now != last.0 {
            last = (now, Instant::now());
            stable_since = Instant::now();
            false
        } else {
            now > 0 && stable_since.elapsed() >= Duration::from_millis(200)
        }
    });
    assert!(settled, "pid {pid} kept writing for {limit:?}");
    last.0
}

/// A unique scratch directory for this test process, removed on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("childminder-{}-{name}", marker_value()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static FD_BASELINE: std::sync::OnceLock<Vec<(i32, String)>> = std::sync::OnceLock::new();

/// Records the pidfds and pipes open now (the test runner's, the runtime's)
/// so [`supervision_fds`] reports only newer ones. Call once, early.
pub fn mark_fd_baseline() {
    let now = pidfds_and_pipes();
    let _ = FD_BASELINE.set(now);
}

/// This process's open pidfds and pipes that were not open at
/// [`mark_fd_baseline`], as (fd, target): once a supervision is over, none
/// of them may be open (the tests open none themselves).
pub fn supervision_fds() -> Vec<(i32, String)> {
    let base = FD_BASELINE.get().expect("call mark_fd_baseline first");
    pidfds_and_pipes()
        .into_iter()
        .filter(|fd| !base.contains(fd))
        .collect()
}

fn pidfds_and_pipes() -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?.display().to_string();
        (target.contains("pidfd") || target.starts_with("pipe:")).then_some((fd, target))
    })
    .collect()
}
