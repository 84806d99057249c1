//! Byte throughput: the child's stdout into a counting consumer
//! (`head -c N /dev/zero`), and N bytes into `cat` and back out,
//! concurrently (echo). MB/s with MB = 10^6 bytes.
//!
//! Each run also notes the average chunk a consumer got (or a read
//! returned) and the CPU time of this whole process (every thread:
//! childminder's engine and delivery thread, the runtime's workers) per
//! GiB moved: the supervisor's side of the cost.

use std::io::Write;
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use childminder::{Command, DEFAULT_BUFFER_SIZE, Stdio, discard, stdin, with_child, with_process};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;

use super::{CAT, Config, Counted, HEAD, count_async, count_blocking};
use crate::runner::{Contender, interleave, mb_per_s, on_runtime};
use crate::stats::Summary;
use crate::sysinfo::self_usage;
use crate::table::{Better, Row};

/// The read and write chunk of the peers and of childminder's async
/// contender: the size of a default pipe buffer, as childminder's default.
const CHUNK: usize = 64 * 1024;

/// One run: throughput, average chunk, the supervisor's CPU per GiB and
/// context switches (all its threads) per MiB.
#[derive(Debug, Clone, Copy)]
struct Sample {
    mb_per_s: f64,
    avg_chunk: f64,
    cpu_s_per_gib: f64,
    switches_per_mib: f64,
}

/// Times `f` (which moves `expected` bytes and returns what it counted)
/// and the process's CPU time over it.
fn measure(expected: u64, f: impl FnOnce() -> Counted) -> Sample {
    let (cpu0, cs0) = self_usage();
    let t = Instant::now();
    let got = f();
    let elapsed = t.elapsed();
    let (cpu1, cs1) = self_usage();
    assert_eq!(got.bytes, expected, "bytes lost or invented");
    sample(expected, got, elapsed, cpu1 - cpu0, cs1 - cs0)
}

fn sample(bytes: u64, got: Counted, elapsed: Duration, cpu: Duration, switches: u64) -> Sample {
    Sample {
        switches_per_mib: switches as f64 / (bytes as f64 / f64::from(1u32 << 20)),
        mb_per_s: mb_per_s(bytes, elapsed),
        avg_chunk: bytes as f64 / got.reads.max(1) as f64,
        cpu_s_per_gib: cpu.as_secs_f64() / (bytes as f64 / f64::from(1u32 << 30)),
    }
}

/// The same, for an async contender that runs on a runtime worker.
async fn measure_async(expected: u64, f: impl AsyncFnOnce() -> Counted) -> Sample {
    let (cpu0, cs0) = self_usage();
    let t = Instant::now();
    let got = f().await;
    let elapsed = t.elapsed();
    let (cpu1, cs1) = self_usage();
    assert_eq!(got.bytes, expected, "bytes lost or invented");
    sample(expected, got, elapsed, cpu1 - cpu0, cs1 - cs0)
}

fn rows(
    scenario: &str,
    contenders: &[Contender<'_, Sample>],
    samples: Vec<Vec<Sample>>,
) -> Vec<Row> {
    contenders
        .iter()
        .zip(samples)
        .map(|(c, s)| {
            let rates: Vec<f64> = s.iter().map(|s| s.mb_per_s).collect();
            let chunk = Summary::of(&s.iter().map(|s| s.avg_chunk).collect::<Vec<_>>()).median;
            let cpu = Summary::of(&s.iter().map(|s| s.cpu_s_per_gib).collect::<Vec<_>>()).median;
            let cs = Summary::of(&s.iter().map(|s| s.switches_per_mib).collect::<Vec<_>>()).median;
            Row::new(scenario, c.name.clone(), "MB/s", Better::Higher, &rates).with_note(format!(
                "chunk {:.1}K, {cpu:.2} CPU-s/GiB, {cs:.0} cs/MiB",
                chunk / 1024.0
            ))
        })
        .collect()
}

fn head(bytes: u64) -> Command {
    let mut cmd = Command::new(HEAD);
    cmd.args(["-c", &bytes.to_string(), "/dev/zero"])
        .stdin(Stdio::Null)
        .stderr(Stdio::Null);
    cmd
}

/// childminder's blocking API with a counting consumer.
fn cm_stdout(cmd: &Command) -> Counted {
    let mut got = Counted::default();
    let result = with_process(
        cmd,
        stdin::empty(),
        |c: &[u8]| {
            got.add(c.len());
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .expect("spawning head");
    assert!(result.success(), "{result:?}");
    got
}

pub fn stdout(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let bytes: u64 = cfg.pick(1 << 30, 128 << 20);
    let runs = cfg.pick(5, 3);
    let scenario = format!("stdout {} MiB", bytes >> 20);
    let with = |buffer: Option<usize>, pipe: Option<usize>| {
        let mut cmd = head(bytes);
        if let Some(b) = buffer {
            cmd.buffer_size(b);
        }
        if let Some(p) = pipe {
            cmd.pipe_capacity(p);
        }
        cmd
    };
    let default = with(None, None);
    let variants = [
        ("childminder buf=4K", with(Some(4 << 10), None)),
        ("childminder buf=256K", with(Some(256 << 10), None)),
        ("childminder buf=1M", with(Some(1 << 20), None)),
        ("childminder pipe=1M", with(None, Some(1 << 20))),
        (
            "childminder buf=1M pipe=1M",
            with(Some(1 << 20), Some(1 << 20)),
        ),
    ];
    let mut contenders = vec![
        Contender::new("childminder", || measure(bytes, || cm_stdout(&default))),
        Contender::new("childminder-async", || {
            on_runtime(rt, async move {
                let mut buf = vec![0u8; CHUNK];
                measure_async(bytes, async || {
                    let (got, result) = with_child(&head(bytes), async |child| {
                        let got = count_async(child.stdout.as_mut().unwrap(), &mut buf).await;
                        (got, child.wait().await)
                    })
                    .await
                    .expect("spawning head");
                    assert!(result.success(), "{result:?}");
                    got
                })
                .await
            })
        }),
        Contender::new("std", || {
            let mut buf = vec![0u8; CHUNK];
            measure(bytes, || {
                let mut child = std::process::Command::new(HEAD)
                    .args(["-c", &bytes.to_string(), "/dev/zero"])
                    .stdin(StdStdio::null())
                    .stdout(StdStdio::piped())
                    .stderr(StdStdio::null())
                    .spawn()
                    .expect("spawning head");
                let got = count_blocking(child.stdout.as_mut().unwrap(), &mut buf);
                assert!(child.wait().expect("waiting for head").success());
                got
            })
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async move {
                let mut buf = vec![0u8; CHUNK];
                measure_async(bytes, async || {
                    let mut child = tokio::process::Command::new(HEAD)
                        .args(["-c", &bytes.to_string(), "/dev/zero"])
                        .stdin(StdStdio::null())
                        .stdout(StdStdio::piped())
                        .stderr(StdStdio::null())
                        .spawn()
                        .expect("spawning head");
                    let got = count_async(child.stdout.as_mut().unwrap(), &mut buf).await;
                    assert!(child.wait().await.expect("waiting for head").success());
                    got
                })
                .await
            })
        }),
    ];
    for (name, cmd) in &variants {
        contenders.push(Contender::new(*name, move || {
            measure(bytes, || cm_stdout(cmd))
        }));
    }
    let samples = interleave(&mut contenders, 1, runs);
    let mut rows = rows(&scenario, &contenders, samples);
    let note = rows[0].note.take().unwrap_or_default();
    rows[0].note = Some(format!(
        "default buf={}K; {note}",
        DEFAULT_BUFFER_SIZE >> 10
    ));
    rows
}

/// A producer of `bytes` bytes in `CHUNK`-sized chunks.
fn producer(bytes: u64) -> childminder::Input {
    let mut left = bytes;
    stdin::from_fn(move || {
        if left == 0 {
            return Ok(None);
        }
        let n = left.min(CHUNK as u64);
        left -= n;
        Ok(Some(vec![b'x'; n as usize]))
    })
}

fn cat() -> Command {
    let mut cmd = Command::new(CAT);
    cmd.stderr(Stdio::Null);
    cmd
}

/// childminder's blocking API: `input` into cat, a counting consumer out.
fn cm_echo(cmd: &Command, input: childminder::Input) -> Counted {
    let mut got = Counted::default();
    let result = with_process(
        cmd,
        input,
        |c: &[u8]| {
            got.add(c.len());
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .expect("spawning cat");
    assert!(result.success(), "{result:?}");
    got
}

/// Writes `bytes` bytes of `chunk` (repeated) with `write_all`.
async fn feed(input: &mut (impl tokio::io::AsyncWrite + Unpin), chunk: &[u8], bytes: u64) {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        input.write_all(&chunk[..n]).await.expect("writing to cat");
        left -= n as u64;
    }
}

pub fn echo(cfg: &Config, rt: &Runtime) -> Vec<Row> {
    let bytes: u64 = cfg.pick(256 << 20, 32 << 20);
    let runs = cfg.pick(5, 3);
    let scenario = format!("echo {} MiB", bytes >> 20);
    let lockstep = cat();
    let mut ahead = cat();
    ahead.flush_stdin(false);
    let mut contenders = vec![
        Contender::new("childminder", || {
            measure(bytes, || cm_echo(&lockstep, producer(bytes)))
        }),
        Contender::new("childminder-async", || {
            on_runtime(rt, async move {
                let mut buf = vec![0u8; CHUNK];
                let chunk = vec![b'x'; CHUNK];
                measure_async(bytes, async || {
                    let (got, result) = with_child(&cat(), async |child| {
                        let mut input = child.stdin.take().unwrap();
                        let output = child.stdout.as_mut().unwrap();
                        let write = async move { feed(&mut input, &chunk, bytes).await };
                        let ((), got) = tokio::join!(write, count_async(output, &mut buf));
                        (got, child.wait().await)
                    })
                    .await
                    .expect("spawning cat");
                    assert!(result.success(), "{result:?}");
                    got
                })
                .await
            })
        }),
        Contender::new("std", || {
            let mut buf = vec![0u8; CHUNK];
            let chunk = vec![b'x'; CHUNK];
            measure(bytes, || {
                let mut child = std::process::Command::new(CAT)
                    .stdin(StdStdio::piped())
                    .stdout(StdStdio::piped())
                    .stderr(StdStdio::null())
                    .spawn()
                    .expect("spawning cat");
                let mut input = child.stdin.take().unwrap();
                let got = std::thread::scope(|s| {
                    s.spawn(move || {
                        let mut left = bytes;
                        while left > 0 {
                            let n = left.min(CHUNK as u64) as usize;
                            input.write_all(&chunk[..n]).expect("writing to cat");
                            left -= n as u64;
                        }
                    });
                    count_blocking(child.stdout.as_mut().unwrap(), &mut buf)
                });
                assert!(child.wait().expect("waiting for cat").success());
                got
            })
        }),
        Contender::new("tokio", || {
            on_runtime(rt, async move {
                let mut buf = vec![0u8; CHUNK];
                let chunk = vec![b'x'; CHUNK];
                measure_async(bytes, async || {
                    let mut child = tokio::process::Command::new(CAT)
                        .stdin(StdStdio::piped())
                        .stdout(StdStdio::piped())
                        .stderr(StdStdio::null())
                        .spawn()
                        .expect("spawning cat");
                    let mut input = child.stdin.take().unwrap();
                    let mut output = child.stdout.take().unwrap();
                    let write = async move { feed(&mut input, &chunk, bytes).await };
                    let ((), got) = tokio::join!(write, count_async(&mut output, &mut buf));
                    assert!(child.wait().await.expect("waiting for cat").success());
                    got
                })
                .await
            })
        }),
        Contender::new("childminder flush_stdin=false", || {
            measure(bytes, || cm_echo(&ahead, producer(bytes)))
        }),
        Contender::new("childminder stdin::bytes", || {
            // The whole input in one buffer, built before the clock starts.
            let data = vec![b'x'; bytes as usize];
            measure(bytes, || cm_echo(&lockstep, stdin::bytes(data)))
        }),
    ];
    let samples = interleave(&mut contenders, 1, runs);
    let mut rows = rows(&scenario, &contenders, samples);
    for row in &mut rows {
        let extra = match row.contender.as_str() {
            "childminder" => "64K producer chunks, flush_stdin on; ",
            "childminder stdin::bytes" => "one write of the whole input; ",
            _ => continue,
        };
        row.note = Some(format!("{extra}{}", row.note.take().unwrap_or_default()));
    }
    rows
}
