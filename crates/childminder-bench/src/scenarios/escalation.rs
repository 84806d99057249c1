//! Escalation precision: a child that ignores SIGTERM, grace 200 ms. When
//! were TERM and KILL sent, against when they were due?
//!
//! - deadline: `deadline(200 ms)`: TERM is due 200 ms after the spawn,
//!   KILL 400 ms after it. `term_sent_after` / `kill_sent_after` are
//!   measured from the spawn, so the error is exact.
//! - shutdown: once the child has said `ready`, the action calls
//!   `shutdown()`: the teardown's sequence (close stdin, a grace for a
//!   natural exit, TERM, a grace, KILL) with a handle left to read the
//!   result. TERM is due a grace after the call, KILL a grace after TERM
//!   was due. The spawn instant is not visible to the caller: the instant
//!   before `with_process` / `with_child` stands in for it, a few tens of
//!   µs earlier, so these errors read that much low.

use std::time::{Duration, Instant};

use childminder::{Command, Signal, SupervisionResult, discard, stdin, with_child, with_process};
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

use super::{Config, SH};
use crate::runner::{Contender, interleave, millis, on_runtime};
use crate::table::{Better, Row};

const GRACE: Duration = Duration::from_millis(200);
/// `exec`'d sleep inherits the ignored disposition, so the whole group
/// (just the sleep, after the exec) ignores TERM and only KILL ends it.
const SCRIPT: &str = "trap '' TERM; echo ready; exec sleep 1000";

fn stubborn(deadline: bool) -> Command {
    let mut cmd = Command::new(SH);
    cmd.args(["-c", SCRIPT]).grace_period(GRACE);
    if deadline {
        cmd.deadline(GRACE);
    }
    cmd
}

/// (TERM error, KILL error, KILL error against the TERM actually sent) in
/// ms, given when TERM was due (from the spawn). `None` for a run that did
/// not go TERM-ignored-then-KILL.
fn errors(result: &SupervisionResult, term_due: Duration) -> Option<[f64; 3]> {
    let killed = result.exit.and_then(|e| e.signal()) == Some(Signal::KILL);
    match (result.term_sent_after, result.kill_sent_after) {
        (Some(term), Some(kill)) if killed => {
            let signed = |at: Duration, due: Duration| millis(at) - millis(due);
            Some([
                signed(term, term_due),
                signed(kill, term_due + GRACE),
                signed(kill, term + GRACE),
            ])
        }
        _ => None,
    }
}

type Sample = Option<[f64; 3]>;

pub fn run(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let deadline_cmd = stubborn(true);
    let shutdown_cmd = stubborn(false);
    let mut contenders: Vec<Contender<'_, Sample>> = vec![
        Contender::new("deadline|childminder", || {
            let result = with_process(&deadline_cmd, stdin::empty(), discard, discard, |p| {
                p.wait()
            })
            .expect("spawning sh");
            errors(&result, GRACE)
        }),
        Contender::new("deadline|childminder-async", || {
            on_runtime(rt, async move {
                let result = with_child(&stubborn(true), async |child| child.wait().await)
                    .await
                    .expect("spawning sh");
                errors(&result, GRACE)
            })
        }),
        Contender::new("shutdown|childminder", || {
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            let called = Instant::now();
            let (asked_after, result) = with_process(
                &shutdown_cmd,
                stdin::empty(),
                |_: &[u8]| {
                    let _ = ready_tx.try_send(());
                    Ok(())
                },
                discard,
                |p| {
                    ready_rx.recv().expect("sh said nothing");
                    (called.elapsed(), p.shutdown())
                },
            )
            .expect("spawning sh");
            errors(&result, asked_after + GRACE)
        }),
        Contender::new("shutdown|childminder-async", || {
            on_runtime(rt, async move {
                let called = Instant::now();
                let (asked_after, result) = with_child(&stubborn(false), async |child| {
                    let mut line = [0u8; 6];
                    child
                        .stdout
                        .as_mut()
                        .unwrap()
                        .read_exact(&mut line)
                        .await
                        .expect("sh said nothing");
                    (called.elapsed(), child.shutdown().await)
                })
                .await
                .expect("spawning sh");
                errors(&result, asked_after + GRACE)
            })
        }),
    ];
    let runs = cfg.pick(20, 5);
    let samples = interleave(&mut contenders, 0, runs);
    let mut rows = Vec::new();
    for (c, s) in contenders.iter().zip(samples) {
        let (mode, who) = c.name.split_once('|').unwrap();
        let valid: Vec<[f64; 3]> = s.iter().flatten().copied().collect();
        let skipped = s.len() - valid.len();
        for (i, metric) in ["TERM error", "KILL error", "KILL after TERM error"]
            .into_iter()
            .enumerate()
        {
            let scenario = format!("escalation {mode}: {metric}");
            let values: Vec<f64> = valid.iter().map(|v| v[i]).collect();
            let mut row = if values.is_empty() {
                Row::not_applicable(scenario, who, "ms", Better::Lower, "no valid run")
            } else {
                Row::new(scenario, who, "ms", Better::Lower, &values)
            };
            if i == 2 {
                row = row.with_note("kill_sent - (term_sent + grace): one timer's lateness");
            }
            if skipped > 0 {
                row = row.with_note(format!("{skipped} run(s) not TERM-ignored-then-KILL"));
            }
            rows.push(row);
        }
    }
    for peer in crate::table::PEERS {
        rows.push(Row::not_applicable(
            "escalation deadline: TERM error",
            peer,
            "ms",
            Better::Lower,
            "no escalation: kill on request only",
        ));
    }
    rows
}
