//! Start a child process, stream its stdin/stdout/stderr, and guarantee how
//! it ends: on Linux, race-free, with nothing left behind.
//!
//! A scoped run ([`with_process`]) with a stdin producer, stdout/stderr
//! consumers and a user action; a handle ([`Process`]) to wait, poll,
//! signal and close stdin; and a fixed escalation when the child must end:
//!
//! > close stdin → wait ≤ grace for a natural exit → SIGTERM → wait ≤ grace
//! > → SIGKILL → wait ≤ 1 s → a last non-blocking status check
//!
//! with the result published exactly once and classified [`Termination::Clean`],
//! [`Escalated`](Termination::Escalated) or [`Indeterminate`](Termination::Indeterminate).
//!
//! It started as the Rust form of a Haskell module, `Process.Supervisor`,
//! which these docs call *the seed*; the repository's `docs/history.md` says
//! what that module is and where childminder differs from it. What
//! childminder adds to it:
//! - every wait and signal goes through a **pidfd**, so no signal can reach
//!   a recycled pid;
//! - the child leads its own **process group**, and the escalation reaches
//!   the whole group; nothing of the group outlives the supervision;
//! - the child gets **fds 0, 1, 2 and nothing else**, while staying on the
//!   `posix_spawn` (vfork) fast path;
//! - **event-driven I/O** on tokio: no polling, no thread per stream in the
//!   async API, and backpressure from a slow reader to the child;
//! - optionally, **nothing escapes** the group either: with
//!   [`Command::subreaper`] the descendants that leave it (`setsid`, a
//!   double-forking daemon) are ended and reaped at the end; with
//!   [`Command::cgroup`] the child runs in a cgroup v2 of its own, ended
//!   with `cgroup.kill` (see [`Containment`]);
//! - every byte the child wrote reaches its consumer, teardown included;
//!   producer and consumer failures are recorded, not dropped.
//!
//! # Blocking
//!
//! ```
//! use childminder::{stdin, with_process, Command, Termination};
//! use std::time::Duration;
//!
//! let mut cmd = Command::new("sh");
//! cmd.args(["-c", "read line; echo got $line; sleep 30"])
//!     .grace_period(Duration::from_millis(100));
//! let mut out = Vec::new();
//! let result = with_process(
//!     &cmd,
//!     stdin::bytes("hello\n"),
//!     |chunk: &[u8]| { out.extend_from_slice(chunk); Ok(()) },
//!     childminder::discard,
//!     |process| process.shutdown(), // or just return: teardown escalates
//! )
//! .unwrap();
//! assert_eq!(out, b"got hello\n");
//! assert_eq!(result.termination, Termination::Escalated);
//! ```
//!
//! # One-line calls and the blocking handle, as with std
//!
//! ```
//! use std::io::Write;
//! use childminder::Command;
//!
//! // std's status(): the output shows. output(): captured. run(): quiet.
//! assert!(Command::new("true").status().unwrap().success());
//! let out = Command::new("echo").arg("hi").output().unwrap();
//! assert_eq!(out.stdout, b"hi\n");
//!
//! // std's spawn(): a handle with std's pipe types; dropping it tears the
//! // child down in the background.
//! let mut child = Command::new("cat").start().unwrap();
//! child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
//! let out = child.wait_with_output().unwrap();
//! assert_eq!(out.stdout, b"x");
//! assert!(out.result.resource_usage.is_some());
//! ```
//!
//! What maps to what, from `std::process` and `tokio::process`: the README's
//! "Switching from std / tokio". Ready-made consumers for [`with_process`]:
//! [`consume`].
//!
//! # Async
//!
//! ```
//! use childminder::Command;
//! use tokio::io::AsyncReadExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut child = Command::new("echo").arg("hi").spawn().unwrap();
//! let mut out = String::new();
//! child.stdout.take().unwrap().read_to_string(&mut out).await.unwrap();
//! assert_eq!(out, "hi\n");
//! assert!(child.wait().await.success());
//! # }
//! ```
//!
//! # Platform
//!
//! Linux only (other targets fail to compile, with a message). pidfd needs
//! Linux 5.4; without it waits and signals fall back to the pid with the
//! seed's re-check and [`SupervisionResult::used_pidfd`] says so. Group
//! signals through the pidfd need Linux 6.9; before that they use
//! `kill(-pgid)` while the leader's zombie still holds the group id. glibc
//! 2.34 or later is needed for `posix_spawn_file_actions_addclosefrom_np`.
//! The test suite forces each fallback on a new kernel with the environment
//! variable `CHILDMINDER_FALLBACK=pid` (no pidfd) or `=kill-pgrp` (no pidfd
//! group signals), read once per process.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "childminder supports Linux only: it relies on pidfd, PR_SET_PDEATHSIG and posix_spawn extensions of glibc"
);

mod async_child;
mod at_exit;
mod blocking;
mod blocking_child;
mod command;
pub mod consume;
mod contain;
mod coordinator;
mod direct;
mod error;
mod escalation;
mod input;
mod pool;
mod result;
mod shared;
mod signal;
mod spawn;
pub mod supervisor;
mod sys;
mod target;
mod workers;

pub use async_child::{Child, ChildStderr, ChildStdin, ChildStdout, with_child};
pub use blocking::{Output, Process, discard, with_process, with_process_result};
pub use blocking_child::BlockingChild;
pub use command::{
    Command, DEFAULT_BUFFER_SIZE, DEFAULT_GRACE_PERIOD, MAX_BUFFER_SIZE, MAX_DURATION, Stdio,
};
pub use contain::{Cgroup, CgroupUsage, Containment, subreaper};
pub use error::{Error, Stream, WorkerError, WorkerOp};
pub use input::Input;
pub use result::{EscalationCause, ExitStatus, ResourceUsage, SupervisionResult, Termination};
pub use signal::{ParseSignalError, Signal};

/// Sources for the child's stdin in [`with_process`].
pub mod stdin {
    pub use crate::input::{Input, bytes, empty, from_fn, from_reader};
}

/// The README's Rust examples, compiled and run as doctests, so that what a
/// newcomer pastes from it works.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
