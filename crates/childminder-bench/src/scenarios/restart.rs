//! Restart: a supervision tree restarting a permanent `/bin/true` with no
//! backoff, against a bare spawn-wait of the same program.
//!
//! One sample is the mean of [`CYCLES`] back-to-back iterations:
//!
//! - `childminder-tree`, "restart cycle": from one run's `ready` event to
//!   the next run's: the child's run, the exit seen, its group swept, the
//!   restart decided, the next child spawned — everything a bare
//!   spawn-wait does, plus the supervision;
//! - `childminder-tree`, "restart: exit seen → running": from the `exited`
//!   event to the next `ready` (the supervisor's own part);
//! - the others: spawn, wait for the exit, reap (stdio to /dev/null, as in
//!   the tree).

use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use childminder::supervisor::{Backoff, ChildSpec, SupervisorSpec, Tree, TreeOptions};
use childminder::{Command, Stdio, with_child};
use tokio::runtime::Runtime;

use super::{Config, TRUE};
use crate::runner::{Contender, interleave, micros, on_runtime};
use crate::table::{Better, Row};

/// Iterations per sample.
const CYCLES: u32 = 10;

fn null_true() -> Command {
    let mut cmd = Command::new(TRUE);
    cmd.stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null);
    cmd
}

/// Runs a tree restarting `true` for `CYCLES` cycles; returns the mean
/// cycle (ready → ready) and the mean exit-seen → ready, in µs.
async fn tree_cycles() -> (f64, f64) {
    let spec = SupervisorSpec::new()
        .intensity(u32::MAX)
        .child(ChildSpec::process("true", null_true()).backoff(Backoff::NONE));
    let mut options = TreeOptions::new();
    let mut events = options.events();
    let tree = Tree::start_with(&spec, options).expect("a valid tree");
    let mut readies = Vec::new();
    let mut exit_to_ready = Duration::ZERO;
    let mut exited_at = None;
    while readies.len() <= CYCLES as usize {
        let event = events.recv().await.expect("the tree ended early");
        let now = Instant::now();
        match event.kind.as_str() {
            "exited" => exited_at = Some(now),
            "ready" => {
                if let Some(at) = exited_at.take() {
                    exit_to_ready += now - at;
                }
                readies.push(now);
            }
            _ => {}
        }
    }
    tree.kill();
    tree.wait().await;
    let cycle = (readies[CYCLES as usize] - readies[0]) / CYCLES;
    (micros(cycle), micros(exit_to_ready / CYCLES))
}

fn contenders<'a>(
    rt: &'a Runtime,
    exit_to_ready: &'a std::cell::RefCell<Vec<f64>>,
) -> Vec<Contender<'a, f64>> {
    vec![
        Contender::new("childminder-tree", move || {
            let (cycle, latency) = on_runtime(rt, tree_cycles());
            exit_to_ready.borrow_mut().push(latency);
            cycle
        }),
        Contender::new("childminder-async", || {
            on_runtime(rt, async {
                let cmd = null_true();
                let t = Instant::now();
                for _ in 0..CYCLES {
                    let r = with_child(&cmd, async |child| child.wait().await)
                        .await
                        .expect("spawning true");
                    assert!(r.success(), "{r:?}");
                }
                micros(t.elapsed() / CYCLES)
            })
        }),
        Contender::new("std", || {
            let t = Instant::now();
            for _ in 0..CYCLES {
                let status = std::process::Command::new(TRUE)
                    .stdin(StdStdio::null())
                    .stdout(StdStdio::null())
                    .stderr(StdStdio::null())
                    .status()
                    .expect("spawning true");
                assert!(status.success());
            }
            micros(t.elapsed() / CYCLES)
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async {
                let t = Instant::now();
                for _ in 0..CYCLES {
                    let status = tokio::process::Command::new(TRUE)
                        .stdin(StdStdio::null())
                        .stdout(StdStdio::null())
                        .stderr(StdStdio::null())
                        .status()
                        .await
                        .expect("spawning true");
                    assert!(status.success());
                }
                micros(t.elapsed() / CYCLES)
            })
        }),
    ]
}

pub fn run(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let runs = cfg.pick(200, 30);
    let warmup = cfg.pick(10, 3);
    let exit_to_ready = std::cell::RefCell::new(Vec::new());
    let mut contenders = contenders(rt, &exit_to_ready);
    let samples = interleave(&mut contenders, warmup, runs);
    let mut rows: Vec<Row> = contenders
        .iter()
        .zip(samples)
        .map(|(c, s): (&Contender<'_, f64>, Vec<f64>)| {
            let row = Row::new("restart cycle", c.name.clone(), "µs", Better::Lower, &s);
            if c.name == "childminder-tree" {
                row.with_note("ready → exit → restart → ready; others: one spawn-wait")
            } else {
                row
            }
        })
        .collect();
    drop(contenders);
    let latency = exit_to_ready.into_inner();
    if !latency.is_empty() {
        // The warm-up runs come first; keep the measured ones.
        let measured = &latency[latency.len().saturating_sub(runs)..];
        rows.push(
            Row::new(
                "restart: exit seen → running",
                "childminder-tree",
                "µs",
                Better::Lower,
                measured,
            )
            .with_note("`exited` event to the next `ready` (spawn included)"),
        );
    }
    rows
}
