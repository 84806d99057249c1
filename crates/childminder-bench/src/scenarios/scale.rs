//! Scale: N concurrent sleeping children under one supervisor. Each
//! contender runs in a fresh process of this binary (`--scale-worker`), so
//! its peak RSS and thread count are its own.
//!
//! In the worker: build the runtime, note the baseline (RSS, threads),
//! spawn N `sleep` children (stdio to /dev/null, so a child costs one pidfd
//! at most, not four fds), give each a task (a thread for std) that awaits
//! its exit, let everything settle, then measure an idle window: CPU time
//! and context switches of the whole process over it, and the thread
//! count. Then kill them all and time until every one is reaped.

use std::process::Stdio as StdStdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Config, SLEEP};
use crate::stats::Summary;
use crate::sysinfo::{self, raise_nofile, read_trimmed, self_usage, status_field};
use crate::table::{Better, Row};

/// The children sleep far longer than any window; the worker kills them.
const SLEEP_SECONDS: &str = "600";
/// From the last spawn to the start of the idle window.
const SETTLE: Duration = Duration::from_millis(500);

/// What a worker measured, sent back to the parent as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleResult {
    pub contender: String,
    pub children: usize,
    pub base_rss_kb: u64,
    pub base_threads: u64,
    pub spawn_ms: f64,
    /// Median time of one spawn (with its waiter) among the first and the
    /// last tenth of the children: growth shows a per-spawn cost in N.
    pub spawn_first_us: f64,
    pub spawn_last_us: f64,
    pub threads: u64,
    pub hwm_kb: u64,
    pub window_ms: f64,
    pub cpu_ms: f64,
    pub context_switches: u64,
    /// Children that had exited by the end of the window (should be 0).
    pub exited_early: usize,
    pub reap_ms: f64,
    pub nofile_before: u64,
    pub nofile_after: u64,
}

pub const CONTENDERS: [&str; 4] = ["childminder-async", "childminder-tree", "tokio", "std"];

/// The worker's side: runs one contender and prints a `ScaleResult`.
pub fn worker(contender: &str, children: usize, window: Duration) {
    let (nofile_before, nofile_after) = raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    // Let the runtime's threads start before the baseline.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let base_rss_kb = status_field("VmRSS").unwrap_or(0);
    let base_threads = status_field("Threads").unwrap_or(0);
    let exited = Arc::new(AtomicUsize::new(0));
    let (kill_tx, kill_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut threads = Vec::new();
    let mut pids = Vec::new();

    let mut each = Vec::with_capacity(children);
    let t = Instant::now();
    let _entered = rt.enter();
    match contender {
        "childminder-async" => {
            let mut cmd = childminder::Command::new(SLEEP);
            cmd.arg(SLEEP_SECONDS)
                .stdin(childminder::Stdio::Null)
                .stdout(childminder::Stdio::Null)
                .stderr(childminder::Stdio::Null);
            for _ in 0..children {
                let t = Instant::now();
                let child = cmd.spawn().expect("spawning sleep");
                let (exited, mut kill) = (exited.clone(), kill_rx.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        _ = child.wait() => { exited.fetch_add(1, Ordering::SeqCst); }
                        _ = kill.changed() => {
                            child.kill();
                            child.shutdown().await;
                        }
                    }
                });
                each.push(t.elapsed());
            }
        }
        "childminder-tree" => {
            // One supervisor, N permanent children: spawned in order, each
            // once the one before is running.
            let mut cmd = childminder::Command::new(SLEEP);
            cmd.arg(SLEEP_SECONDS)
                .stdin(childminder::Stdio::Null)
                .stdout(childminder::Stdio::Null)
                .stderr(childminder::Stdio::Null);
            let spec =
                childminder::supervisor::SupervisorSpec::new().children((0..children).map(|i| {
                    childminder::supervisor::ChildSpec::process(format!("s{i}"), cmd.clone())
                }));
            let mut options = childminder::supervisor::TreeOptions::new();
            let mut events = options.events();
            let t = Instant::now();
            let tree =
                childminder::supervisor::Tree::start_with(&spec, options).expect("a valid tree");
            let mut last = t;
            rt.block_on(async {
                while each.len() < children {
                    let event = events.recv().await.expect("the tree ended early");
                    if event.kind.as_str() == "ready" {
                        let now = Instant::now();
                        each.push(now - last);
                        last = now;
                    }
                }
            });
            let (exited, mut kill) = (exited.clone(), kill_rx.clone());
            tasks.spawn(async move {
                tokio::select! {
                    outcome = tree.wait() => {
                        panic!("the tree ended early: {outcome:?}");
                    }
                    _ = kill.changed() => {}
                }
                tree.kill();
                tree.wait().await;
                // Restarts are failures here (the children sleep 600 s).
                while let Some(event) = events.recv().await {
                    use childminder::supervisor::{EventKind, Verdict};
                    if matches!(event.kind, EventKind::Exited { verdict, .. } if verdict != Verdict::Requested)
                    {
                        exited.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        "tokio" => {
            for _ in 0..children {
                let t = Instant::now();
                let mut child = tokio::process::Command::new(SLEEP)
                    .arg(SLEEP_SECONDS)
                    .stdin(StdStdio::null())
                    .stdout(StdStdio::null())
                    .stderr(StdStdio::null())
                    .spawn()
                    .expect("spawning sleep");
                let (exited, mut kill) = (exited.clone(), kill_rx.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        _ = child.wait() => { exited.fetch_add(1, Ordering::SeqCst); return; }
                        _ = kill.changed() => {}
                    }
                    child.start_kill().expect("killing sleep");
                    child.wait().await.expect("waiting for sleep");
                });
                each.push(t.elapsed());
            }
        }
        "std" => {
            for _ in 0..children {
                let t = Instant::now();
                let mut child = std::process::Command::new(SLEEP)
                    .arg(SLEEP_SECONDS)
                    .stdin(StdStdio::null())
                    .stdout(StdStdio::null())
                    .stderr(StdStdio::null())
                    .spawn()
                    .expect("spawning sleep");
                pids.push(child.id() as libc::pid_t);
                let (exited, kill) = (exited.clone(), kill_rx.clone());
                threads.push(std::thread::spawn(move || {
                    child.wait().expect("waiting for sleep");
                    if !*kill.borrow() {
                        exited.fetch_add(1, Ordering::SeqCst);
                    }
                }));
                each.push(t.elapsed());
            }
        }
        other => panic!("unknown scale contender {other:?}"),
    }
    let spawn_ms = t.elapsed().as_secs_f64() * 1e3;
    let tenth = (children / 10).max(1);
    let median_us = |d: &[Duration]| {
        Summary::of(&d.iter().map(|d| d.as_secs_f64() * 1e6).collect::<Vec<_>>()).median
    };
    let spawn_first_us = median_us(&each[..tenth]);
    let spawn_last_us = median_us(&each[children - tenth..]);

    std::thread::sleep(SETTLE);
    let (cpu0, cs0) = self_usage();
    let w0 = Instant::now();
    std::thread::sleep(window / 2);
    let threads_now = status_field("Threads").unwrap_or(0);
    std::thread::sleep(window / 2);
    let (cpu1, cs1) = self_usage();
    let window_ms = w0.elapsed().as_secs_f64() * 1e3;
    let hwm_kb = status_field("VmHWM").unwrap_or(0);
    let exited_early = exited.load(Ordering::SeqCst);

    let t = Instant::now();
    kill_tx.send_replace(true);
    for pid in &pids {
        // SAFETY: kill takes plain integers; these children are unreaped
        // (their threads are still in wait), so the pids are still theirs.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    rt.block_on(async {
        while let Some(r) = tasks.join_next().await {
            r.expect("a waiter task panicked");
        }
    });
    for thread in threads {
        thread.join().expect("a waiter thread panicked");
    }
    let reap_ms = t.elapsed().as_secs_f64() * 1e3;

    let result = ScaleResult {
        contender: contender.to_owned(),
        children,
        base_rss_kb,
        base_threads,
        spawn_ms,
        spawn_first_us,
        spawn_last_us,
        threads: threads_now,
        hwm_kb,
        window_ms,
        // The main thread's two sleeps are two of the switches counted.
        cpu_ms: (cpu1 - cpu0).as_secs_f64() * 1e3,
        context_switches: cs1 - cs0,
        exited_early,
        reap_ms,
        nofile_before,
        nofile_after,
    };
    println!("{}", serde_json::to_string(&result).expect("serialising"));
}

/// The parent's side: runs a worker in a fresh process of this binary.
fn spawn_worker(contender: &str, children: usize, window: Duration) -> ScaleResult {
    let exe = std::env::current_exe().expect("finding this binary");
    let out = std::process::Command::new(exe)
        .args([
            "--scale-worker",
            contender,
            "--children",
            &children.to_string(),
            "--window-ms",
            &window.as_millis().to_string(),
        ])
        .stderr(StdStdio::inherit())
        .output()
        .expect("starting the scale worker");
    assert!(
        out.status.success(),
        "scale worker {contender} x{children} failed: {}",
        out.status
    );
    serde_json::from_slice(&out.stdout).expect("reading the scale worker's result")
}

fn rows_of(r: &ScaleResult, note: Option<String>) -> Vec<Row> {
    let n = r.children;
    let scenario = |metric: &str| format!("scale {n}: {metric}");
    let window_s = r.window_ms / 1e3;
    let beyond_base_kb = r.hwm_kb.saturating_sub(r.base_rss_kb) as f64;
    let mut rows = vec![
        Row::new(
            scenario("spawn all"),
            &r.contender,
            "ms",
            Better::Lower,
            &[r.spawn_ms],
        )
        .with_note(format!(
            "one spawn: {:.0} µs in the first tenth, {:.0} µs in the last",
            r.spawn_first_us, r.spawn_last_us
        )),
        Row::new(
            scenario("threads"),
            &r.contender,
            "count",
            Better::Lower,
            &[r.threads as f64],
        )
        .with_note(format!("{} before spawning", r.base_threads)),
        Row::new(
            scenario("threads added"),
            &r.contender,
            "count",
            Better::Lower,
            &[r.threads as f64 - r.base_threads as f64],
        ),
        Row::new(
            scenario("peak RSS"),
            &r.contender,
            "MiB",
            Better::Lower,
            &[r.hwm_kb as f64 / 1024.0],
        )
        .with_note(format!("base {:.1} MiB", r.base_rss_kb as f64 / 1024.0)),
        Row::new(
            scenario("RSS per child"),
            &r.contender,
            "KiB",
            Better::Lower,
            &[beyond_base_kb / n as f64],
        )
        .with_note("(peak - base) / N"),
        Row::new(
            scenario("idle CPU"),
            &r.contender,
            "% core",
            Better::Lower,
            &[r.cpu_ms / r.window_ms * 100.0],
        )
        .with_note(format!("{:.1} ms CPU in {window_s:.1} s", r.cpu_ms)),
        Row::new(
            scenario("idle wake-ups"),
            &r.contender,
            "/s",
            Better::Lower,
            &[r.context_switches as f64 / window_s],
        )
        .with_note("context switches, all threads, incl. the harness's 2 sleeps"),
        Row::new(
            scenario("kill+reap all"),
            &r.contender,
            "ms",
            Better::Lower,
            &[r.reap_ms],
        ),
    ];
    if r.exited_early > 0 {
        for row in &mut rows {
            row.note = Some(format!("{} children exited early!", r.exited_early));
        }
    }
    if let Some(note) = note {
        rows[0].note = Some(format!(
            "{}; {note}",
            rows[0].note.take().unwrap_or_default()
        ));
    }
    if r.contender == "std" {
        rows[1].note = Some(format!("thread per child; {} before", r.base_threads));
    }
    rows
}

pub fn run(cfg: &Config) -> (Vec<Row>, Vec<ScaleResult>) {
    let n = cfg.pick(1000, 100);
    let window = cfg.pick(Duration::from_millis(3000), Duration::from_millis(1000));
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for contender in CONTENDERS
        .into_iter()
        .filter(|c| crate::runner::selected(c))
    {
        let r = spawn_worker(contender, n, window);
        rows.extend(rows_of(&r, None));
        results.push(r);
    }
    if !cfg.quick && crate::runner::selected(CONTENDERS[0]) {
        let big = 10_000;
        let r = spawn_worker(CONTENDERS[0], big, window);
        let note = format!(
            "RLIMIT_NOFILE soft {} -> {}; pid_max {}, threads-max {}, RLIMIT_NPROC {}",
            r.nofile_before,
            r.nofile_after,
            read_trimmed("/proc/sys/kernel/pid_max"),
            read_trimmed("/proc/sys/kernel/threads-max"),
            sysinfo::rlimit(libc::RLIMIT_NPROC).0,
        );
        rows.extend(rows_of(&r, Some(note)));
        results.push(r);
    }
    (rows, results)
}
