//! Helpers for the torture, soak, bad-input, security and property tests
//! (issue 5), on top of `common/mod.rs`. Include with
//! `mod common; mod torture_support;` (this is a directory module, so cargo
//! does not build it as a test target of its own).
//!
//! - marked commands (the leak marker on every child), the warm-up;
//! - a fixed-seed xorshift PRNG whose seed is printed and can be replayed;
//! - line handshakes (`ready`) through a consumer forwarding to a channel;
//! - a streaming check of the fixture's byte pattern, and an FNV checksum;
//! - bounded polls for facts the kernel has no event for (a non-child
//!   being reaped by init), memory figures from `/proc/self/status`;
//! - a panic hook that keeps deliberate `torture:` panics out of the log.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::sync::Once;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use childminder::Command;

use crate::common::{fixture, our_children, pid_alive};

// The helpers the core tests use too, shared rather than copied.
#[path = "../common/support.rs"]
mod support;
// Each test file uses its own subset.
#[allow(unused_imports)]
pub use support::{
    PERIOD, current_thread_runtime, expect_ready, line_consumer, line_forwarder, marked, next_line,
    pattern, pattern_producer, ready_pids, wait_until, warm_up,
};

/// How long any handshake may take before the test gives up: generous,
/// the machine is shared with other builds.
pub const HANDSHAKE: Duration = Duration::from_secs(20);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// A byte count the fixture's `write` never reaches: "write until stopped".
pub const ENDLESS: u64 = 1 << 50;

/// The fixture with `args`, carrying the leak marker.
pub fn fx<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = marked(fixture());
    cmd.args(args);
    cmd
}

// ---------------------------------------------------------------- PRNG ---

/// xorshift64*: small, fast, reproducible. Not for anything but picking
/// faults and sizes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's fixed point; splitmix the seed once.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// Seed from `var` (decimal or 0x-hex) or `default`; prints it so a
    /// failing run can be replayed.
    pub fn from_env(var: &str, default: u64) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| {
                let s = s.trim();
                match s.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok(),
                    None => s.parse().ok(),
                }
            })
            .unwrap_or(default);
        println!("PRNG seed {var}={seed:#x} (set it to replay this run)");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// A new generator derived from this one (for per-task streams).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

// ------------------------------------------------------------ checksums ---

/// FNV-1a 64 over a stream, fed chunk by chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn feed(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    pub fn of(data: &[u8]) -> u64 {
        let mut f = Fnv::default();
        f.feed(data);
        f.0
    }
}

/// Checks a stream against the fixture's pattern, in order, without
/// keeping it: every byte at its offset.
#[derive(Debug)]
pub struct PatternCheck {
    pub total: u64,
    pub chunks: u64,
    pub largest_chunk: usize,
    pub first_mismatch: Option<u64>,
    table: Vec<u8>,
}

const CHECK_SPAN: usize = 64 * 1024;

impl Default for PatternCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl PatternCheck {
    pub fn new() -> PatternCheck {
        PatternCheck {
            total: 0,
            chunks: 0,
            largest_chunk: 0,
            first_mismatch: None,
            table: pattern(0, CHECK_SPAN + PERIOD as usize),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        self.chunks += 1;
        self.largest_chunk = self.largest_chunk.max(chunk.len());
        while !chunk.is_empty() {
            let n = chunk.len().min(CHECK_SPAN);
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

    /// Panics unless every byte so far matched.
    pub fn assert_in_order(&self, what: &str) {
        assert_eq!(
            self.first_mismatch,
            None,
            "{what}: byte {} of {} is out of order or corrupt",
            self.first_mismatch.unwrap_or(0),
            self.total
        );
    }
}

// ----------------------------------------------------------- handshakes ---

// ------------------------------------------------------- bounded polls ---

/// Which of `pids` are still alive (not a zombie) after up to `limit`.
pub fn survivors(pids: &[i32], limit: Duration) -> Vec<i32> {
    wait_until(limit, || pids.iter().all(|&p| !pid_alive(p)));
    pids.iter().copied().filter(|&p| pid_alive(p)).collect()
}

pub fn assert_all_dead(pids: &[i32], what: &str) {
    let alive = survivors(pids, Duration::from_secs(5));
    assert!(alive.is_empty(), "{what}: still alive after 5 s: {alive:?}");
}

/// Waits (bounded) until this process has no child process at all, zombies
/// included; for teardowns that run in the background (a dropped `Child`).
pub fn wait_no_children(limit: Duration) -> bool {
    wait_until(limit, || our_children().is_empty())
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    // The read_dir's own fd is counted too, consistently every time.
    std::fs::read_dir("/proc/self/fd")
        .expect("read_dir /proc/self/fd")
        .count()
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The process group of `pid`, from `/proc/PID/stat` (field 5).
pub fn pgid_of(pid: i32) -> Option<i32> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &raw[raw.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// `kill(pid, sig)`; true if the signal was sent.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

// -------------------------------------------------------------- panics ---

/// Deliberate panics in these tests carry this prefix.
pub const PANIC_TAG: &str = "torture:";

/// Installs (once) a panic hook that stays silent for `torture:` panics and
/// defers to the default hook for everything else.
pub fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if msg.is_some_and(|m| m.starts_with(PANIC_TAG)) {
                return;
            }
            previous(info);
        }));
    });
}

/// The message of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned())
}

/// Runs `f` on a thread and panics if it has not finished within `limit`
/// (a deadlock); the stuck thread is left behind, the test fails anyway.
pub fn with_watchdog<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            worker.join().expect("watchdog worker");
            v
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished within {limit:?} (deadlock?)")
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    }
}

// ------------------------------------------- background teardowns ---

/// pidfds this process has open.
pub fn open_pidfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read_dir /proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.as_os_str().to_string_lossy().contains("[pidfd]"))
        .count()
}

/// After an async warm-up whose `Child` was dropped: waits (bounded) for its
/// background teardown, so a `LeakCheck` taken next starts clean.
pub fn settle_background_teardown() {
    settle_background_teardown_except(&[]);
}

/// [`settle_background_teardown`], with children of our own (started
/// outside childminder) that are meant to stay.
pub fn settle_background_teardown_except(keep: &[i32]) {
    let others = || {
        our_children()
            .into_iter()
            .filter(|(pid, _, _)| !keep.contains(pid))
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(HANDSHAKE, || others().is_empty()),
        "background teardown: children not reaped: {:?}",
        others()
    );
    wait_until(Duration::from_secs(2), || open_pidfds() == 0);
}

/// For teardowns that run in the background (a dropped `Child`, a
/// cancelled `with_child`): no handle is left to wait on, so wait (bounded)
/// until no child process is left and the last pidfd is closed, then take
/// the leak account. Blocking tests call `leak.assert_clean()` directly:
/// `with_process` promises to return with "every pipe and the pidfd closed".
pub fn assert_clean_after_background_teardown(leak: &crate::common::LeakCheck) {
    assert!(
        wait_no_children(Duration::from_secs(60)),
        "children left after 60 s: {:?}",
        our_children()
    );
    wait_until(Duration::from_secs(2), || open_pidfds() == 0);
    leak.assert_clean();
}
