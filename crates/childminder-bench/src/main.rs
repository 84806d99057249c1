//! The benchmark harness of childminder: every scenario for childminder
//! (blocking and async APIs), `std::process` and `tokio::process`,
//! interleaved run by run, printed as one table and optionally written as
//! JSON. See `docs/bench.md`.
//!
//! ```text
//! cargo run --profile bench -p childminder-bench -- [--quick] [--json PATH] [--only SCENARIO]
//! ```

mod runner;
mod scenarios;
mod stats;
mod sysinfo;
mod table;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use scenarios::Config;
use table::{Meta, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    SpawnWait,
    Stdout,
    Echo,
    ExitDetection,
    Teardown,
    Escalation,
    Scale,
    UpOutput,
    Cli,
    Restart,
    Containment,
}

/// Benchmarks childminder against std::process and tokio::process.
#[derive(Debug, Parser)]
#[command(name = "childminder-bench")]
struct Args {
    /// Smaller counts and sizes: finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Also write the table (and the targets) as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Run only these scenarios (repeat, or separate with commas).
    #[arg(long, value_name = "SCENARIO", value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Run only these contenders (exact names as in the table, e.g.
    /// `childminder`, `childminder-async`, `std`, `tokio`; repeat or separate
    /// with commas). For profiling one of them.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    contender: Vec<String>,
    /// Diagnostic: hold this many extra open file descriptors (/dev/null,
    /// close-on-exec, as Rust opens them) during the run, as a busy server
    /// would; shows spawn costs that grow with the parent's fd table.
    #[arg(long, value_name = "N", default_value_t = 0)]
    hold_fds: usize,
    /// Internal: run one scale contender in this process and print its
    /// result as JSON.
    #[arg(long, hide = true, value_name = "CONTENDER")]
    scale_worker: Option<String>,
    #[arg(long, hide = true, default_value_t = 1000)]
    children: usize,
    #[arg(long, hide = true, default_value_t = 3000)]
    window_ms: u64,
}

fn main() {
    let args = Args::parse();
    if let Some(contender) = &args.scale_worker {
        scenarios::scale::worker(
            contender,
            args.children,
            Duration::from_millis(args.window_ms),
        );
        return;
    }
    let cfg = Config { quick: args.quick };
    if args.hold_fds > 0 {
        sysinfo::raise_nofile();
    }
    let _held: Vec<std::fs::File> = (0..args.hold_fds)
        .map(|_| std::fs::File::open("/dev/null").expect("opening /dev/null (fd limit?)"))
        .collect();
    runner::select_contenders(args.contender.clone());
    let wanted = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let started = Instant::now();
    let loadavg_start = sysinfo::read_trimmed("/proc/loadavg");
    let date = sysinfo::date_utc();
    eprintln!(
        "childminder-bench: {} run, {date}, load {loadavg_start}",
        if cfg.quick { "quick" } else { "full" }
    );
    if args.hold_fds > 0 {
        eprintln!("  holding {} extra open fds", args.hold_fds);
    }

    // One runtime for every async contender, tokio's and childminder's.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the runtime");

    type Step<'a> = (Scenario, &'a str, Box<dyn Fn() -> Vec<table::Row> + 'a>);
    let steps: Vec<Step<'_>> = vec![
        (
            Scenario::SpawnWait,
            "spawn-wait",
            Box::new(|| scenarios::spawn_wait::run(&cfg, &rt)),
        ),
        (
            Scenario::Stdout,
            "stdout throughput",
            Box::new(|| scenarios::throughput::stdout(&cfg, &rt)),
        ),
        (
            Scenario::Echo,
            "echo",
            Box::new(|| scenarios::throughput::echo(&cfg, &rt)),
        ),
        (
            Scenario::ExitDetection,
            "exit detection",
            Box::new(|| scenarios::latency::exit_detection(&cfg, &rt)),
        ),
        (
            Scenario::Teardown,
            "teardown",
            Box::new(|| scenarios::latency::teardown(&cfg, &rt)),
        ),
        (
            Scenario::Escalation,
            "escalation",
            Box::new(|| scenarios::escalation::run(&cfg, &rt)),
        ),
        (
            Scenario::Restart,
            "restart",
            Box::new(|| scenarios::restart::run(&cfg, &rt)),
        ),
        (
            Scenario::Containment,
            "containment",
            Box::new(|| scenarios::containment::run(&cfg)),
        ),
        (
            Scenario::Scale,
            "scale",
            Box::new(|| scenarios::scale::run(&cfg).0),
        ),
        (
            Scenario::UpOutput,
            "up output",
            Box::new(|| scenarios::up_output::run(&cfg)),
        ),
        (
            Scenario::Cli,
            "cli (the childminder command vs timeout and cat)",
            Box::new(|| scenarios::cli::run(&cfg)),
        ),
    ];
    let mut rows = Vec::new();
    for (which, name, step) in &steps {
        if !wanted(*which) {
            continue;
        }
        eprint!("  {name} ...");
        let t = Instant::now();
        rows.extend(step());
        eprintln!(" {:.1} s", t.elapsed().as_secs_f64());
    }
    table::compute_ratios(&mut rows);
    let targets = targets::evaluate(&rows);

    let report = Report {
        meta: Meta {
            date,
            mode: if cfg.quick { "quick" } else { "full" }.to_owned(),
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: sysinfo::read_trimmed("/proc/sys/kernel/osrelease"),
            cpu: sysinfo::cpu_model(),
            loadavg_start,
            loadavg_end: sysinfo::read_trimmed("/proc/loadavg"),
            wall_seconds: started.elapsed().as_secs_f64(),
            default_buffer_size: childminder::DEFAULT_BUFFER_SIZE,
            held_fds: args.hold_fds,
        },
        rows,
        targets,
    };
    let m = &report.meta;
    println!(
        "childminder-bench ({} run) {} | {} CPUs, {}, Linux {} | load {} -> {} | {:.0} s",
        m.mode, m.date, m.nproc, m.cpu, m.kernel, m.loadavg_start, m.loadavg_end, m.wall_seconds
    );
    println!(
        "ratio = childminder's median / the peer's median; ↓ lower is better, ↑ higher is better\n"
    );
    print!("{}", table::render(&report.rows));
    println!("\ntargets:");
    print!("{}", table::render_targets(&report.targets));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("serialising the report");
        std::fs::write(path, json + "\n")
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }
}
