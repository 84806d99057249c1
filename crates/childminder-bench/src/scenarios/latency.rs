//! Latency of the ends: how long after a child's exit the caller learns of
//! it (exit detection), and how long the teardown of a running filter
//! takes once the caller is done with it.

use std::io::{Read, Write};
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use childminder::{Command, Stdio, discard, stdin, with_child, with_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

use super::{CAT, Config, SLEEP};
use crate::runner::{Contender, interleave, millis, on_runtime};
use crate::table::{Better, Row};

const NAP: Duration = Duration::from_millis(50);

fn sleeper() -> Command {
    let mut cmd = Command::new(SLEEP);
    cmd.arg("0.05")
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null);
    cmd
}

fn std_sleeper() -> std::process::Command {
    let mut cmd = std::process::Command::new(SLEEP);
    cmd.arg("0.05")
        .stdin(StdStdio::null())
        .stdout(StdStdio::null())
        .stderr(StdStdio::null());
    cmd
}

/// Wall time of `sleep 0.05` from before the spawn to the caller learning
/// of its exit, minus the 50 ms it sleeps.
pub fn exit_detection(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let over = |d: Duration| millis(d.saturating_sub(NAP));
    let mut contenders = vec![
        Contender::new("childminder", || {
            let t = Instant::now();
            let result = sleeper().run().expect("spawning sleep");
            let elapsed = t.elapsed();
            assert!(result.success(), "{result:?}");
            over(elapsed)
        }),
        Contender::new("childminder-async", || {
            on_runtime(rt, async move {
                let t = Instant::now();
                let result = with_child(&sleeper(), async |child| child.wait().await)
                    .await
                    .expect("spawning sleep");
                let elapsed = t.elapsed();
                assert!(result.success(), "{result:?}");
                over(elapsed)
            })
        }),
        Contender::new("std", || {
            let t = Instant::now();
            let status = std_sleeper().status().expect("spawning sleep");
            let elapsed = t.elapsed();
            assert!(status.success());
            over(elapsed)
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async move {
                let t = Instant::now();
                let status = tokio::process::Command::from(std_sleeper())
                    .status()
                    .await
                    .expect("spawning sleep");
                let elapsed = t.elapsed();
                assert!(status.success());
                over(elapsed)
            })
        }),
    ];
    let samples = interleave(&mut contenders, 2, cfg.pick(200, 20));
    contenders
        .iter()
        .zip(samples)
        .map(|(c, s)| Row::new("exit detection", c.name.clone(), "ms", Better::Lower, &s))
        .collect()
}

fn std_cat() -> std::process::Command {
    let mut cmd = std::process::Command::new(CAT);
    cmd.stdin(StdStdio::piped())
        .stdout(StdStdio::piped())
        .stderr(StdStdio::null());
    cmd
}

/// `cat` is running (it has echoed a byte back); the caller is done with it.
/// Time from then until everything is over: stdin closed, the natural exit
/// seen, the child reaped (for childminder: `with_process` / `with_child`
/// returned; for the peers: stdin dropped and `wait` returned).
pub fn teardown(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let mut cat = Command::new(CAT);
    cat.stderr(Stdio::Null);
    let cat = &cat;
    let mut contenders = vec![
        Contender::new("childminder", || {
            let (echoed_tx, echoed_rx) = std::sync::mpsc::sync_channel(1);
            let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
            let mut first = true;
            // One byte, then a producer with nothing more to say (yet): it
            // blocks, and stdin stays open until the teardown closes it.
            let input = stdin::from_fn(move || {
                if std::mem::take(&mut first) {
                    return Ok(Some(b"x".to_vec()));
                }
                let _ = hold_rx.recv();
                Ok(None)
            });
            let returned_at = with_process(
                cat,
                input,
                |_: &[u8]| {
                    let _ = echoed_tx.try_send(());
                    Ok(())
                },
                discard,
                |_| {
                    echoed_rx.recv().expect("cat echoed nothing");
                    Instant::now()
                },
            )
            .expect("spawning cat");
            let elapsed = returned_at.elapsed();
            drop(hold_tx);
            millis(elapsed)
        }),
        Contender::new("childminder-async", || {
            on_runtime(rt, async move {
                let mut cat = Command::new(CAT);
                cat.stderr(Stdio::Null);
                let returned_at = with_child(&cat, async |child| {
                    child.stdin.as_mut().unwrap().write_all(b"x").await.unwrap();
                    let mut byte = [0u8];
                    child
                        .stdout
                        .as_mut()
                        .unwrap()
                        .read_exact(&mut byte)
                        .await
                        .expect("cat echoed nothing");
                    Instant::now()
                })
                .await
                .expect("spawning cat");
                millis(returned_at.elapsed())
            })
        }),
        Contender::new("std", || {
            let mut child = std_cat().spawn().expect("spawning cat");
            child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
            let mut byte = [0u8];
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_exact(&mut byte)
                .unwrap();
            let t = Instant::now();
            drop(child.stdin.take());
            let status = child.wait().expect("waiting for cat");
            let elapsed = t.elapsed();
            assert!(status.success());
            millis(elapsed)
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async move {
                let mut child = tokio::process::Command::from(std_cat())
                    .spawn()
                    .expect("spawning cat");
                child.stdin.as_mut().unwrap().write_all(b"x").await.unwrap();
                let mut byte = [0u8];
                child
                    .stdout
                    .as_mut()
                    .unwrap()
                    .read_exact(&mut byte)
                    .await
                    .unwrap();
                let t = Instant::now();
                drop(child.stdin.take());
                let status = child.wait().await.expect("waiting for cat");
                let elapsed = t.elapsed();
                assert!(status.success());
                millis(elapsed)
            })
        }),
    ];
    let samples = interleave(&mut contenders, 5, cfg.pick(500, 30));
    contenders
        .iter()
        .zip(samples)
        .map(|(c, s)| Row::new("teardown", c.name.clone(), "ms", Better::Lower, &s))
        .collect()
}
