//! Soak and load: many supervised runs mixing the faults of
//! `torture_faults.rs`, with the leak account kept run by run and at the end
//! (no fd, no zombie, no stray process), and every output byte checked at
//! its offset (the fixture's pattern) or against what was sent (echo), and
//! checksummed.
//!
//! Counts come from the environment, short by default (CI):
//!
//! - `CHILDMINDER_SOAK_RUNS` — sequential blocking runs (default 300);
//! - `CHILDMINDER_SOAK_CONCURRENT` — concurrent async children (default 200);
//! - `CHILDMINDER_SOAK_SEED` — the PRNG seed (printed; default fixed).
//!
//! The long form (10,000 runs, 1,000 concurrent children), one command; it
//! uses `cargo test` with one thread because nextest's configured
//! slow-timeout (4 × 30 s) would end a 10,000-run test:
//!
//! ```sh
//! CHILDMINDER_SOAK_RUNS=10000 CHILDMINDER_SOAK_CONCURRENT=1000 \
//!   cargo test -p childminder --release --test torture_soak -- --test-threads=1 --nocapture
//! ```

mod common;
mod torture_support;

use std::collections::BTreeMap;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use childminder::{
    EscalationCause, ExitStatus, Signal, Stream, SupervisionResult, Termination, WorkerOp, discard,
    stdin, with_child, with_process, with_process_result,
};
use common::{LeakCheck, our_children, pid_alive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Barrier, oneshot};
use torture_support::*;

const DEFAULT_SEED: u64 = 0x00C0_FFEE_50AC;

fn env_count(var: &str, default: usize) -> usize {
    let n = std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default);
    println!("{var}={n}");
    n
}

/// The escalation's grace in the soak: short, so a fault costs tens of ms.
const SOAK_GRACE: Duration = Duration::from_millis(30);

fn soak_fx<const N: usize>(args: [&str; N]) -> childminder::Command {
    let mut cmd = fx(args);
    cmd.grace_period(SOAK_GRACE);
    cmd
}

fn signal_of(r: &SupervisionResult) -> Option<Signal> {
    r.exit.and_then(ExitStatus::signal)
}

fn assert_worker_error(r: &SupervisionResult, stream: Stream, op: WorkerOp) {
    assert_eq!(r.worker_errors.len(), 1, "{r:?}");
    assert_eq!(
        (r.worker_errors[0].stream, r.worker_errors[0].op),
        (stream, op)
    );
}

// ------------------------------------------------ sequential, blocking ---

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Stdout,
    Stderr,
    Echo,
    ExitCode,
    ConsumerError,
    ConsumerPanic,
    ProducerError,
    ProducerPanic,
    ActionPanic,
    EarlyReturnEndless,
    IgnoresTerm,
    Deadline,
    OutsideKill,
    ExitBeforeStdin,
    FillsStdoutNoRead,
    ClosesStdout,
    Grandchildren,
    PipeHolder,
    Shutdown,
    Kill,
    Terminate,
}

const FAULTS: [Fault; 21] = [
    Fault::Stdout,
    Fault::Stderr,
    Fault::Echo,
    Fault::ExitCode,
    Fault::ConsumerError,
    Fault::ConsumerPanic,
    Fault::ProducerError,
    Fault::ProducerPanic,
    Fault::ActionPanic,
    Fault::EarlyReturnEndless,
    Fault::IgnoresTerm,
    Fault::Deadline,
    Fault::OutsideKill,
    Fault::ExitBeforeStdin,
    Fault::FillsStdoutNoRead,
    Fault::ClosesStdout,
    Fault::Grandchildren,
    Fault::PipeHolder,
    Fault::Shutdown,
    Fault::Kill,
    Fault::Terminate,
];

#[derive(Default)]
struct Account {
    by_fault: BTreeMap<String, usize>,
    bytes_checked: u64,
    checksum: Fnv,
    grandchildren: Vec<i32>,
}

impl Account {
    fn checked(&mut self, data: &[u8]) {
        self.bytes_checked += data.len() as u64;
        self.checksum.feed(data);
    }
}

/// A consumer that checks the pattern chunk by chunk (and the chunk bound)
/// and feeds the soak's checksum.
fn pattern_sink<'a>(
    check: &'a mut PatternCheck,
    checksum: &'a mut Fnv,
    max_chunk: usize,
) -> impl FnMut(&[u8]) -> io::Result<()> + Send + 'a {
    move |c: &[u8]| {
        assert!(
            c.len() <= max_chunk,
            "chunk {} > buffer_size {max_chunk}",
            c.len()
        );
        check.feed(c);
        checksum.feed(c);
        Ok(())
    }
}

fn one_run(fault: Fault, rng: &mut Rng, acc: &mut Account) {
    match fault {
        Fault::Stdout | Fault::Stderr => {
            let n = rng.range(0, 512 * KIB);
            let buf = rng.range(1, 128 * KIB) as usize;
            let which = if fault == Fault::Stdout { "out" } else { "err" };
            let mut cmd = soak_fx(["write", &n.to_string(), which]);
            cmd.buffer_size(buf);
            let mut check = PatternCheck::new();
            let sink = pattern_sink(&mut check, &mut acc.checksum, buf);
            let r = if fault == Fault::Stdout {
                with_process(&cmd, stdin::empty(), sink, discard, |p| p.wait())
            } else {
                with_process(&cmd, stdin::empty(), discard, sink, |p| p.wait())
            }
            .unwrap();
            assert!(r.success(), "{r:?}");
            assert_eq!(check.total, n);
            check.assert_in_order("soak output");
            acc.bytes_checked += n;
        }
        Fault::Echo => {
            let len = rng.range(0, 256 * KIB) as usize;
            let data = rng.bytes(len);
            let mut cmd = soak_fx(["cat"]);
            cmd.flush_stdin(rng.chance(1, 2));
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < data.len() {
                // Empty chunks included: they must change nothing.
                let len = (rng.range(0, 32 * KIB) as usize).min(data.len() - at);
                chunks.push(data[at..at + len].to_vec());
                at += len;
            }
            let mut chunks = chunks.into_iter();
            let mut out = Vec::with_capacity(data.len());
            let r = with_process(
                &cmd,
                stdin::from_fn(move || Ok(chunks.next())),
                |c: &[u8]| {
                    out.extend_from_slice(c);
                    Ok(())
                },
                discard,
                |p| p.wait(),
            )
            .unwrap();
            assert!(r.success(), "{r:?}");
            assert_eq!(Fnv::of(&out), Fnv::of(&data), "echo differs");
            assert_eq!(out, data);
            acc.checked(&out);
        }
        Fault::ExitCode => {
            let code = rng.below(256) as i32;
            let r = soak_fx(["exit", &code.to_string()]).run().unwrap();
            assert_eq!(r.exit, Some(ExitStatus::Exited(code)));
            assert_eq!(r.termination, Termination::Clean);
        }
        Fault::ConsumerError | Fault::ConsumerPanic => {
            let n = rng.range(256 * KIB, 2 * MIB);
            let cmd = soak_fx(["write", &n.to_string()]);
            let mut check = PatternCheck::new();
            let mut failed = false;
            let panic = fault == Fault::ConsumerPanic;
            let r = with_process(
                &cmd,
                stdin::empty(),
                |c: &[u8]| {
                    assert!(!failed, "a failed consumer was called again");
                    check.feed(c);
                    failed = true;
                    if panic {
                        panic!("torture: soak consumer panics");
                    }
                    Err(io::Error::other("torture: soak consumer fails"))
                },
                discard,
                |p| p.wait(),
            )
            .unwrap();
            check.assert_in_order("bytes before the consumer's failure");
            acc.bytes_checked += check.total;
            assert_worker_error(&r, Stream::Stdout, WorkerOp::Consume);
            assert!(matches!(r.exit, Some(ExitStatus::Exited(0 | 1))), "{r:?}");
            assert_eq!(r.termination, Termination::Clean);
        }
        Fault::ProducerError | Fault::ProducerPanic => {
            let k = rng.range(0, 8) as usize;
            let panic = fault == Fault::ProducerPanic;
            let mut calls = 0;
            let producer = move || {
                calls += 1;
                if calls > k {
                    if panic {
                        panic!("torture: soak producer panics");
                    }
                    return Err(io::Error::other("torture: soak producer fails"));
                }
                Ok(Some(vec![b'p'; 4096]))
            };
            let mut out = Vec::new();
            let r = with_process(
                &soak_fx(["count-stdin"]),
                stdin::from_fn(producer),
                |c: &[u8]| {
                    out.extend_from_slice(c);
                    Ok(())
                },
                discard,
                |p| p.wait(),
            )
            .unwrap();
            assert_eq!(out, format!("{}\n", k * 4096).as_bytes());
            assert_worker_error(&r, Stream::Stdin, WorkerOp::Produce);
            assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
        }
        Fault::ActionPanic => {
            let (lines, rx) = line_consumer();
            let mut pid = 0;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                with_process(
                    &soak_fx(["sleep", "300"]),
                    stdin::empty(),
                    lines,
                    discard,
                    |p| {
                        pid = p.pid() as i32;
                        expect_ready(&rx);
                        panic!("torture: soak action panics");
                    },
                )
            }));
            let payload = outcome.expect_err("the panic resumes");
            assert_eq!(panic_message(&*payload), "torture: soak action panics");
            assert!(!pid_alive(pid));
        }
        Fault::EarlyReturnEndless => {
            let mut check = PatternCheck::new();
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let ((), r) = with_process_result(
                &soak_fx(["write", &ENDLESS.to_string()]),
                stdin::empty(),
                |c: &[u8]| {
                    check.feed(c);
                    let _ = tx.try_send(());
                    Ok(())
                },
                discard,
                |_| {
                    rx.recv_timeout(HANDSHAKE).expect("first chunk");
                },
            )
            .unwrap();
            check.assert_in_order("endless writer");
            acc.bytes_checked += check.total;
            assert_eq!(r.termination, Termination::Escalated, "{r:?}");
            assert_eq!(signal_of(&r), Some(Signal::TERM), "{r:?}");
            assert_eq!(r.escalation_cause, Some(EscalationCause::Teardown));
        }
        Fault::IgnoresTerm => {
            let (lines, rx) = line_consumer();
            let ((), r) = with_process_result(
                &soak_fx(["ignore-term", "300"]),
                stdin::empty(),
                lines,
                discard,
                |_| {
                    expect_ready(&rx);
                },
            )
            .unwrap();
            assert_eq!(r.termination, Termination::Escalated);
            assert_eq!(signal_of(&r), Some(Signal::KILL), "{r:?}");
            assert!(r.kill_sent_after > r.term_sent_after);
        }
        Fault::Deadline => {
            let mut cmd = soak_fx(["sleep", "300"]);
            cmd.deadline(Duration::from_millis(rng.range(1, 30)));
            let r = cmd.run().unwrap();
            assert!(r.timed_out(), "{r:?}");
            assert_eq!(r.termination, Termination::Escalated);
            assert!(
                matches!(signal_of(&r), Some(Signal::TERM | Signal::KILL)),
                "{r:?}"
            );
        }
        Fault::OutsideKill => {
            let (lines, rx) = line_consumer();
            let r = with_process(
                &soak_fx(["sleep", "300"]),
                stdin::empty(),
                lines,
                discard,
                |p| {
                    expect_ready(&rx);
                    assert!(kill(p.pid() as i32, libc::SIGKILL));
                    p.wait()
                },
            )
            .unwrap();
            assert_eq!(signal_of(&r), Some(Signal::KILL));
            assert_eq!(r.termination, Termination::Clean, "{r:?}");
        }
        Fault::ExitBeforeStdin => {
            let mut cmd = soak_fx(["exit", "0"]);
            cmd.flush_stdin(rng.chance(1, 2));
            let r = with_process(
                &cmd,
                stdin::from_fn(|| Ok(Some(vec![b'e'; 64 * 1024]))),
                discard,
                discard,
                |p| p.wait(),
            )
            .unwrap();
            assert!(r.success(), "EPIPE must be quiet: {r:?}");
        }
        Fault::FillsStdoutNoRead => {
            let n = rng.range(256 * KIB, 4 * MIB);
            let mut check = PatternCheck::new();
            let r = with_process(
                &soak_fx(["fill-stdout-no-read", &n.to_string()]),
                stdin::bytes(vec![b'f'; MIB as usize]),
                pattern_sink(&mut check, &mut acc.checksum, 64 * 1024),
                discard,
                |p| p.wait(),
            )
            .unwrap();
            assert!(r.success(), "{r:?}");
            assert_eq!(check.total, n);
            check.assert_in_order("fill-stdout-no-read");
            acc.bytes_checked += n;
        }
        Fault::ClosesStdout => {
            let (lines, rx) = line_consumer();
            let ((), r) = with_process_result(
                &soak_fx(["close-stdout", "300"]),
                stdin::empty(),
                lines,
                discard,
                |_| assert_eq!(next_line(&rx), "ready"),
            )
            .unwrap();
            assert_eq!(signal_of(&r), Some(Signal::TERM), "{r:?}");
            assert_eq!(r.termination, Termination::Escalated);
        }
        Fault::Grandchildren => {
            let k = rng.range(1, 8);
            let (lines, rx) = line_consumer();
            let (pids, r) = with_process(
                &soak_fx(["grandchildren", &k.to_string(), "300", "exit"]),
                stdin::empty(),
                lines,
                discard,
                |p| (expect_ready(&rx), p.wait()),
            )
            .unwrap();
            assert!(r.success(), "{r:?}");
            assert_eq!(pids.len() as u64, k);
            acc.grandchildren.extend(pids);
        }
        Fault::PipeHolder => {
            let (lines, rx) = line_consumer();
            let (pids, r) = with_process(
                &soak_fx(["grandchild-holds-pipes", "300"]),
                stdin::empty(),
                lines,
                discard,
                |p| (expect_ready(&rx), p.wait()),
            )
            .unwrap();
            assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
            assert!(r.output_cut_off, "{r:?}");
            acc.grandchildren.extend(pids);
        }
        Fault::Shutdown | Fault::Kill | Fault::Terminate => {
            let (lines, rx) = line_consumer();
            let r = with_process(
                &soak_fx(["sleep", "300"]),
                stdin::empty(),
                lines,
                discard,
                |p| {
                    expect_ready(&rx);
                    let r = match fault {
                        Fault::Shutdown => p.shutdown(),
                        Fault::Kill => {
                            p.kill();
                            p.wait()
                        }
                        _ => {
                            p.terminate(Signal::INT);
                            p.wait()
                        }
                    };
                    assert!(!p.signal(Signal::KILL).unwrap(), "signal after the exit");
                    r
                },
            )
            .unwrap();
            let (signal, cause) = match fault {
                Fault::Shutdown => (Signal::TERM, EscalationCause::Shutdown),
                Fault::Kill => (Signal::KILL, EscalationCause::Requested),
                _ => (Signal::INT, EscalationCause::Requested),
            };
            assert_eq!(signal_of(&r), Some(signal), "{r:?}");
            assert_eq!(r.escalation_cause, Some(cause), "{r:?}");
            assert_eq!(r.termination, Termination::Escalated);
        }
    }
}

#[test]
fn sequential_runs_mixing_faults_leak_nothing_and_lose_no_byte() {
    quiet_deliberate_panics();
    let runs = env_count("CHILDMINDER_SOAK_RUNS", 300);
    let mut rng = Rng::from_env("CHILDMINDER_SOAK_SEED", DEFAULT_SEED);
    warm_up();
    let leak = LeakCheck::new();
    let fds_before = fd_count();
    let mut acc = Account::default();
    let started = Instant::now();
    for run in 0..runs {
        let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
        *acc.by_fault.entry(format!("{fault:?}")).or_default() += 1;
        let result = catch_unwind(AssertUnwindSafe(|| one_run(fault, &mut rng, &mut acc)));
        if let Err(p) = result {
            panic!(
                "run {run} ({fault:?}) failed: {}; replay with CHILDMINDER_SOAK_SEED",
                panic_message(&*p)
            );
        }
        // The account, run by run: reaped (no zombie) and no fd left.
        let children = our_children();
        assert!(
            children.is_empty(),
            "run {run} ({fault:?}) left {children:?}"
        );
        let fds = fd_count();
        assert_eq!(
            fds, fds_before,
            "run {run} ({fault:?}): fds open after return"
        );
    }
    let elapsed = started.elapsed();
    assert_all_dead(&acc.grandchildren, "grandchildren of the soak");
    leak.assert_clean();
    println!(
        "{runs} sequential runs in {elapsed:?}: {} bytes checked at their offsets (FNV-1a {:#018x}); \
         {} grandchildren swept; by fault: {:?}",
        acc.bytes_checked,
        acc.checksum.0,
        acc.grandchildren.len(),
        acc.by_fault
    );
}

/// The doc of `with_process`: "Only then, with every byte of output
/// delivered, every pipe and the pidfd closed and the child reaped, does
/// `with_process` return". Checked the instant it returns, no waiting.
#[test]
fn with_process_returns_only_after_the_pidfd_is_closed() {
    warm_up();
    let leak = LeakCheck::new();
    let runs = 400;
    let mut late = 0;
    let mut longest = Duration::ZERO;
    for i in 0..runs {
        let cmd = match i % 4 {
            0 => fx(["write", "100000"]),
            1 => fx(["exit", "0"]),
            2 => fx(["cat"]),
            _ => fx(["print-then-exit", "x", "3"]),
        };
        let wait = i % 8 >= 4;
        let ((), _) = with_process_result(&cmd, stdin::empty(), discard, discard, |p| {
            if wait {
                p.wait();
            }
        })
        .unwrap();
        let returned = Instant::now();
        if open_pidfds() > 0 {
            late += 1;
            wait_until(Duration::from_secs(1), || open_pidfds() == 0);
            longest = longest.max(returned.elapsed());
        }
    }
    leak.assert_clean();
    assert_eq!(
        late, 0,
        "in {late} of {runs} runs with_process returned with the child's pidfd still open \
         (closed up to {longest:?} later)"
    );
}

// ------------------------------------------------- concurrent, async ---

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AsyncFault {
    ReadAll,
    Echo,
    DropMidStream,
    CancelWithChild,
    Shutdown,
    ShutdownIgnoresTerm,
    Kill,
    Deadline,
    ExitCode,
    OutsideKill,
    ActionPanic,
    DropStdout,
    CancelledWait,
    GrandchildrenDropped,
}

const ASYNC_FAULTS: [AsyncFault; 14] = [
    AsyncFault::ReadAll,
    AsyncFault::Echo,
    AsyncFault::DropMidStream,
    AsyncFault::CancelWithChild,
    AsyncFault::Shutdown,
    AsyncFault::ShutdownIgnoresTerm,
    AsyncFault::Kill,
    AsyncFault::Deadline,
    AsyncFault::ExitCode,
    AsyncFault::OutsideKill,
    AsyncFault::ActionPanic,
    AsyncFault::DropStdout,
    AsyncFault::CancelledWait,
    AsyncFault::GrandchildrenDropped,
];

struct Shared {
    barrier: Barrier,
    pids: Mutex<Vec<i32>>,
    grandchildren: Mutex<Vec<i32>>,
    peak_children: Mutex<usize>,
}

impl Shared {
    fn record(&self, pid: u32) {
        self.pids.lock().unwrap().push(pid as i32);
    }

    /// Every task passes here once, with its child spawned (alive or a
    /// zombie held by its handle): the leader counts them all at once.
    async fn all_spawned(&self) {
        if self.barrier.wait().await.is_leader() {
            *self.peak_children.lock().unwrap() = our_children().len();
        }
    }
}

async fn read_ready(child: &mut childminder::Child) {
    let mut ready = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .await
        .unwrap();
    assert_eq!(&ready, b"ready\n");
}

/// One task of the load test; returns the bytes it checked.
async fn async_run(fault: AsyncFault, mut rng: Rng, sh: Arc<Shared>) -> u64 {
    let grace = Duration::from_millis(50);
    let cmd = |args: &[&str]| {
        let mut c = fx(args);
        c.grace_period(grace);
        c
    };
    match fault {
        AsyncFault::ReadAll => {
            let n = rng.range(0, 256 * KIB);
            let mut child = cmd(&["write", &n.to_string()]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let mut out = Vec::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_end(&mut out)
                .await
                .unwrap();
            let mut check = PatternCheck::new();
            check.feed(&out);
            check.assert_in_order("async read");
            assert_eq!(check.total, n);
            assert!(child.wait().await.success());
            n
        }
        AsyncFault::Echo => {
            let len = rng.range(0, 256 * KIB) as usize;
            let data = rng.bytes(len);
            let mut child = cmd(&["cat"]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let mut input = child.stdin.take().unwrap();
            let mut output = child.stdout.take().unwrap();
            let feed = async {
                input.write_all(&data).await.unwrap();
                drop(input);
            };
            let mut out = Vec::new();
            let drain = output.read_to_end(&mut out);
            let ((), read) = tokio::join!(feed, drain);
            read.unwrap();
            assert_eq!(Fnv::of(&out), Fnv::of(&data));
            assert_eq!(out, data);
            assert!(child.wait().await.success());
            out.len() as u64
        }
        AsyncFault::DropMidStream => {
            let mut child = cmd(&["write", &ENDLESS.to_string()]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let mut buf = vec![0u8; 64 * 1024];
            let n = child.stdout.as_mut().unwrap().read(&mut buf).await.unwrap();
            let mut check = PatternCheck::new();
            check.feed(&buf[..n]);
            check.assert_in_order("first chunk");
            drop(child);
            n as u64
        }
        AsyncFault::CancelWithChild => {
            let (passed_tx, passed_rx) = oneshot::channel();
            let cut = Duration::from_micros(rng.below(50_000));
            let command = cmd(&["write", &ENDLESS.to_string()]);
            let sh2 = sh.clone();
            let fut = with_child(&command, async move |c| {
                sh2.record(c.pid());
                sh2.all_spawned().await;
                let _ = passed_tx.send(());
                let mut buf = vec![0u8; 64 * 1024];
                while c.stdout.as_mut().unwrap().read(&mut buf).await.unwrap() > 0 {}
            });
            tokio::select! {
                _ = fut => panic!("an endless stream ended"),
                () = async { let _ = passed_rx.await; tokio::time::sleep(cut).await } => {}
            }
            0
        }
        AsyncFault::Shutdown | AsyncFault::ShutdownIgnoresTerm => {
            let args: &[&str] = if fault == AsyncFault::Shutdown {
                &["sleep", "300"]
            } else {
                &["ignore-term", "300"]
            };
            let mut child = cmd(args).spawn().unwrap();
            sh.record(child.pid());
            read_ready(&mut child).await;
            sh.all_spawned().await;
            let r = child.shutdown().await;
            let expected = if fault == AsyncFault::Shutdown {
                Signal::TERM
            } else {
                Signal::KILL
            };
            assert_eq!(signal_of(&r), Some(expected), "{r:?}");
            assert_eq!(r.termination, Termination::Escalated);
            assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
            assert!(!child.signal(Signal::KILL).unwrap());
            0
        }
        AsyncFault::Kill => {
            let child = cmd(&["sleep", "300"]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            child.kill();
            let r = child.wait().await;
            assert_eq!(signal_of(&r), Some(Signal::KILL));
            assert_eq!(r.termination, Termination::Escalated);
            0
        }
        AsyncFault::Deadline => {
            let mut c = cmd(&["sleep", "300"]);
            c.deadline(Duration::from_millis(rng.range(1, 200)));
            let child = c.spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let r = child.wait().await;
            assert!(r.timed_out(), "{r:?}");
            assert_eq!(r.termination, Termination::Escalated);
            0
        }
        AsyncFault::ExitCode => {
            let code = rng.below(256) as i32;
            let child = cmd(&["exit", &code.to_string()]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let r = child.wait().await;
            assert_eq!(r.exit, Some(ExitStatus::Exited(code)));
            assert_eq!(r.termination, Termination::Clean);
            0
        }
        AsyncFault::OutsideKill => {
            let mut child = cmd(&["sleep", "300"]).spawn().unwrap();
            sh.record(child.pid());
            read_ready(&mut child).await;
            sh.all_spawned().await;
            assert!(kill(child.pid() as i32, libc::SIGKILL));
            let r = child.wait().await;
            assert_eq!(signal_of(&r), Some(Signal::KILL));
            assert_eq!(r.termination, Termination::Clean, "{r:?}");
            0
        }
        AsyncFault::ActionPanic => {
            let command = cmd(&["sleep", "300"]);
            let sh2 = sh.clone();
            let _ = with_child(&command, async move |c| {
                sh2.record(c.pid());
                sh2.all_spawned().await;
                panic!("torture: async action panics");
            })
            .await;
            unreachable!("with_child resumes the action's panic")
        }
        AsyncFault::DropStdout => {
            let mut child = cmd(&["write", &(16 * MIB).to_string()]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let mut out = child.stdout.take().unwrap();
            let mut buf = vec![0u8; 4096];
            let n = out.read(&mut buf).await.unwrap();
            drop(out);
            let r = child.wait().await;
            // The reader is gone: the fixture sees EPIPE and exits 1.
            assert_eq!(r.exit, Some(ExitStatus::Exited(1)), "{r:?}");
            n as u64
        }
        AsyncFault::CancelledWait => {
            let child = cmd(&["sleep", "300"]).spawn().unwrap();
            sh.record(child.pid());
            sh.all_spawned().await;
            let cut = Duration::from_micros(rng.below(20_000));
            assert!(tokio::time::timeout(cut, child.wait()).await.is_err());
            let r = child.shutdown().await;
            assert_eq!(r.termination, Termination::Escalated);
            0
        }
        AsyncFault::GrandchildrenDropped => {
            let k = rng.range(1, 4);
            let mut child = cmd(&["grandchildren", &k.to_string(), "300", "stay"])
                .spawn()
                .unwrap();
            sh.record(child.pid());
            let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
                .await
                .unwrap();
            let pids = ready_pids(line.trim_end());
            assert_eq!(pids.len() as u64, k);
            sh.grandchildren.lock().unwrap().extend(pids);
            sh.all_spawned().await;
            drop(child);
            0
        }
    }
}

#[test]
fn concurrent_async_children_with_random_faults_leak_nothing() {
    quiet_deliberate_panics();
    let n = env_count("CHILDMINDER_SOAK_CONCURRENT", 200);
    let mut rng = Rng::from_env("CHILDMINDER_SOAK_SEED", DEFAULT_SEED);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let child = marked("true").spawn().unwrap();
        assert!(child.wait().await.success());
    });
    settle_background_teardown();
    let leak = LeakCheck::new();
    let sh = Arc::new(Shared {
        barrier: Barrier::new(n),
        pids: Mutex::new(Vec::new()),
        grandchildren: Mutex::new(Vec::new()),
        peak_children: Mutex::new(0),
    });
    let mut by_fault: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    let limit = Duration::from_secs(60) + Duration::from_millis(100) * n as u32;
    let bytes = rt.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let fault = ASYNC_FAULTS[rng.below(ASYNC_FAULTS.len() as u64) as usize];
            *by_fault.entry(format!("{fault:?}")).or_default() += 1;
            tasks.push((
                fault,
                tokio::spawn(async_run(fault, rng.fork(), sh.clone())),
            ));
        }
        tokio::time::timeout(limit, async {
            let mut bytes = 0u64;
            for (fault, task) in tasks {
                match task.await {
                    Ok(b) => bytes += b,
                    Err(e) if e.is_panic() && fault == AsyncFault::ActionPanic => {
                        let msg = panic_message(&*e.into_panic());
                        assert_eq!(msg, "torture: async action panics");
                    }
                    Err(e) => {
                        let msg = if e.is_panic() {
                            panic_message(&*e.into_panic())
                        } else {
                            e.to_string()
                        };
                        panic!("{fault:?} task failed: {msg}");
                    }
                }
            }
            bytes
        })
        .await
        .expect("the load test hung")
    });
    // Dropped children are torn down in the background: no handle is left
    // to wait on, so poll (bounded) for the last one to be reaped.
    assert!(
        wait_no_children(Duration::from_secs(60)),
        "children left: {:?}",
        our_children()
    );
    let pids = sh.pids.lock().unwrap().clone();
    assert_eq!(pids.len(), n, "every task spawned its child");
    assert_all_dead(&pids, "async children");
    let grandchildren = sh.grandchildren.lock().unwrap().clone();
    assert_all_dead(&grandchildren, "grandchildren of dropped async children");
    let peak = *sh.peak_children.lock().unwrap();
    assert_clean_after_background_teardown(&leak);
    println!(
        "{n} concurrent async children (all {peak} alive or held at once) in {:?}: {bytes} bytes checked; \
         {} grandchildren swept; by fault: {by_fault:?}",
        started.elapsed(),
        grandchildren.len()
    );
    // A child that may end before the count (its own exit, a deadline) is
    // reaped as soon as nothing is left of its group; every other child
    // exists (alive, or a zombie held by its handle) when all have spawned.
    let may_end_early: usize = ["Deadline", "ExitCode", "ReadAll"]
        .iter()
        .map(|f| by_fault.get(*f).copied().unwrap_or(0))
        .sum();
    assert!(
        peak >= n - may_end_early,
        "only {peak} of {n} children existed at once ({may_end_early} may have ended before)"
    );
    drop(rt);
}
