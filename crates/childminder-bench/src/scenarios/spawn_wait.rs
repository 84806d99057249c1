//! spawn-wait: `/bin/true` to completion, all three streams piped, output
//! drained, child reaped: through `with_process` (consumers and an action),
//! the one-line `output()` (with and without a deadline that does not
//! expire), the blocking handle (`start()` then
//! `wait_with_output()`), and the async forms. Then the same with all three streams to
//! /dev/null, which takes the pipes (and, in childminder's blocking API,
//! the delivery thread) out of the picture and leaves spawn, exit
//! detection and reaping.

use std::os::fd::AsFd;
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use childminder::{Command, Stdio, discard, stdin, with_child, with_process};
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

use super::{Config, TRUE};
use crate::runner::{Contender, interleave, micros, on_runtime};
use crate::table::{Better, Row};

/// A deadline no spawn-wait run reaches: the rows with it measure what
/// arming the escalation costs, not the escalation.
const UNEXPIRED: Duration = Duration::from_secs(60);

/// `output()` of `/bin/true` as `configure` sets it up, timed from building
/// the command to the result (as the std and tokio rows are).
fn timed_output(configure: fn(&mut Command)) -> f64 {
    let t = Instant::now();
    let mut cmd = Command::new(TRUE);
    configure(&mut cmd);
    let out = cmd.output().expect("spawning true");
    let elapsed = t.elapsed();
    assert!(out.result.success() && out.stdout.is_empty(), "{out:?}");
    micros(elapsed)
}

/// `output_async()` of `/bin/true` on `rt`, as [`timed_output`].
fn timed_output_async(rt: &Runtime, configure: fn(&mut Command)) -> f64 {
    on_runtime(rt, async move {
        let t = Instant::now();
        let mut cmd = Command::new(TRUE);
        configure(&mut cmd);
        let out = cmd.output_async().await.expect("spawning true");
        let elapsed = t.elapsed();
        assert!(out.result.success() && out.stdout.is_empty(), "{out:?}");
        micros(elapsed)
    })
}

fn piped<'a>(rt: &'a Runtime) -> Vec<Contender<'a, f64>> {
    vec![
        Contender::new("childminder", || {
            let t = Instant::now();
            let (mut out, mut err) = (0usize, 0usize);
            let result = with_process(
                &Command::new(TRUE),
                stdin::empty(),
                |c: &[u8]| {
                    out += c.len();
                    Ok(())
                },
                |c: &[u8]| {
                    err += c.len();
                    Ok(())
                },
                |p| p.wait(),
            )
            .expect("spawning true");
            let elapsed = t.elapsed();
            assert!(result.success() && out == 0 && err == 0, "{result:?}");
            micros(elapsed)
        }),
        Contender::new("childminder output()", || timed_output(|_| {})),
        Contender::new("childminder output() deadline", || {
            timed_output(|c| {
                c.deadline(UNEXPIRED);
            })
        }),
        Contender::new("childminder start()", || {
            let t = Instant::now();
            let out = Command::new(TRUE)
                .start()
                .expect("spawning true")
                .wait_with_output()
                .expect("reading true's output");
            let elapsed = t.elapsed();
            assert!(out.result.success() && out.stdout.is_empty(), "{out:?}");
            micros(elapsed)
        }),
        Contender::new("childminder-async output_async()", || {
            timed_output_async(rt, |_| {})
        }),
        Contender::new("childminder-async output_async() deadline", || {
            timed_output_async(rt, |c| {
                c.deadline(UNEXPIRED);
            })
        }),
        Contender::new("childminder-async", || {
            on_runtime(rt, async {
                let t = Instant::now();
                let result = with_child(&Command::new(TRUE), async |child| {
                    child.close_stdin();
                    let (mut out, mut err) = (Vec::new(), Vec::new());
                    let (mut so, mut se) =
                        (child.stdout.take().unwrap(), child.stderr.take().unwrap());
                    let (a, b) = tokio::join!(so.read_to_end(&mut out), se.read_to_end(&mut err));
                    a.and(b).expect("draining true's output");
                    child.wait().await
                })
                .await
                .expect("spawning true");
                let elapsed = t.elapsed();
                assert!(result.success(), "{result:?}");
                micros(elapsed)
            })
        }),
        Contender::new("std", || {
            let t = Instant::now();
            let out = std::process::Command::new(TRUE)
                .stdin(StdStdio::piped())
                .stdout(StdStdio::piped())
                .stderr(StdStdio::piped())
                .output()
                .expect("spawning true");
            let elapsed = t.elapsed();
            assert!(out.status.success());
            micros(elapsed)
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async {
                let t = Instant::now();
                let out = tokio::process::Command::new(TRUE)
                    .stdin(StdStdio::piped())
                    .stdout(StdStdio::piped())
                    .stderr(StdStdio::piped())
                    .output()
                    .await
                    .expect("spawning true");
                let elapsed = t.elapsed();
                assert!(out.status.success());
                micros(elapsed)
            })
        }),
    ]
}

fn null_true() -> Command {
    let mut cmd = Command::new(TRUE);
    cmd.stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null);
    cmd
}

fn std_null_true() -> std::process::Command {
    let mut cmd = std::process::Command::new(TRUE);
    cmd.stdin(StdStdio::null())
        .stdout(StdStdio::null())
        .stderr(StdStdio::null());
    cmd
}

/// What no pidfd-based supervisor can go below: std's own spawn (the
/// same `posix_spawn`, in a new group), then the pidfd the race-free
/// guarantees rest on, a wait for it to turn readable and the reap through
/// it, with nothing else (no escalation, no group sweep, no runtime).
/// Shows how much of childminder's overhead over std is the pidfd itself.
fn pidfd_floor() -> rustix::process::WaitIdStatus {
    use rustix::event::{PollFd, PollFlags, poll};
    use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, pidfd_open, waitid};
    use std::os::unix::process::CommandExt;
    #[allow(clippy::zombie_processes, reason = "reaped through the pidfd below")]
    let child = std_null_true()
        .process_group(0)
        .spawn()
        .expect("spawning true");
    let pid = Pid::from_child(&child);
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open");
    poll(&mut [PollFd::new(&pidfd, PollFlags::IN)], None).expect("poll");
    // Reaped through the pidfd: std's `Child` is dropped without a wait.
    waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED)
        .expect("waitid")
        .expect("the child has exited")
}

fn null<'a>(rt: &'a Runtime) -> Vec<Contender<'a, f64>> {
    vec![
        Contender::new("childminder", || {
            let t = Instant::now();
            let result = with_process(&null_true(), stdin::empty(), discard, discard, |p| p.wait())
                .expect("spawning true");
            let elapsed = t.elapsed();
            assert!(result.success(), "{result:?}");
            micros(elapsed)
        }),
        Contender::new("childminder status()", || {
            let t = Instant::now();
            let result = null_true().status().expect("spawning true");
            let elapsed = t.elapsed();
            assert!(result.success(), "{result:?}");
            micros(elapsed)
        }),
        Contender::new("childminder-async status_async()", || {
            on_runtime(rt, async {
                let t = Instant::now();
                let result = null_true().status_async().await.expect("spawning true");
                let elapsed = t.elapsed();
                assert!(result.success(), "{result:?}");
                micros(elapsed)
            })
        }),
        Contender::new("childminder-async", || {
            on_runtime(rt, async {
                let t = Instant::now();
                let result = with_child(&null_true(), async |child| child.wait().await)
                    .await
                    .expect("spawning true");
                let elapsed = t.elapsed();
                assert!(result.success(), "{result:?}");
                micros(elapsed)
            })
        }),
        Contender::new("std", || {
            let t = Instant::now();
            let status = std_null_true().status().expect("spawning true");
            let elapsed = t.elapsed();
            assert!(status.success());
            micros(elapsed)
        }),
        Contender::new("floor: std spawn + pidfd", || {
            let t = Instant::now();
            let status = pidfd_floor();
            let elapsed = t.elapsed();
            assert!(status.exit_status() == Some(0), "{status:?}");
            micros(elapsed)
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async {
                let t = Instant::now();
                let status = tokio::process::Command::from(std_null_true())
                    .status()
                    .await
                    .expect("spawning true");
                let elapsed = t.elapsed();
                assert!(status.success());
                micros(elapsed)
            })
        }),
    ]
}

pub fn run(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let runs = cfg.pick(2000, 200);
    let warmup = cfg.pick(50, 10);
    let mut rows = Vec::new();
    for (scenario, mut contenders) in [
        ("spawn-wait", piped(rt)),
        ("spawn-wait null stdio", null(rt)),
    ] {
        let samples = interleave(&mut contenders, warmup, runs);
        rows.extend(
            contenders
                .iter()
                .zip(samples)
                .map(|(c, s)| Row::new(scenario, c.name.clone(), "µs", Better::Lower, &s)),
        );
    }
    rows
}
