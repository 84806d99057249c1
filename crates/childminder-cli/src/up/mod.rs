//! `childminder up`: runs a tree of processes from `childminder.toml` or a
//! `Procfile`, a presenter over [`childminder::supervisor`].

pub mod config;
pub mod events;
pub mod exit;
mod output;
pub mod prefix;
pub mod procfile;
mod tree;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use childminder::Signal;
use childminder::supervisor::{Event, EventKind, SupervisorSpec, Tree, TreeOptions};

use crate::cli::UpArgs;
use crate::run::diagnose;
use crate::signals;
use config::{ConfigError, SupervisorConfig};
use events::{EventLine, EventSink};
use output::Printer;

/// Reads the configuration `up` would run: `-f FILE` (`.toml` means TOML,
/// anything else a Procfile), else `childminder.toml`, else `Procfile`, in
/// `dir`; then keeps the entries `names` select.
///
/// # Errors
///
/// The message for the user: `FILE:LINE: KEY: what is wrong`, or which
/// file is missing.
pub fn load(file: Option<&Path>, dir: &Path, names: &[String]) -> Result<SupervisorConfig, String> {
    let path: PathBuf = match file {
        Some(f) => f.to_owned(),
        None => ["childminder.toml", "Procfile"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no childminder.toml or Procfile in {}; name one with -f FILE",
                    dir.display()
                )
            })?,
    };
    let shown = match file {
        Some(f) => f.display().to_string(),
        None => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError {
            file: shown.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read it: {e}"),
        }
        .to_string()
    })?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let mut config = if is_toml {
        config::parse_toml(&text, &shown, &path)
    } else {
        procfile::parse(&text, &shown)
    }
    .map_err(|e| e.to_string())?;
    config.select(names)?;
    Ok(config)
}

/// Runs `childminder up` and returns the exit status.
pub fn up(args: UpArgs) -> i32 {
    let config = match load(args.file.as_deref(), Path::new("."), &args.names) {
        Ok(config) => config,
        Err(message) => {
            diagnose(&message);
            return exit::EXIT_FAILURE;
        }
    };
    let sink = match args.events.as_deref().map(EventSink::open).transpose() {
        Ok(sink) => sink,
        Err(message) => {
            diagnose(&message);
            return exit::EXIT_FAILURE;
        }
    };
    let spec = tree::spec(&config);
    // The configuration was checked; the library checks again, before
    // anything starts, and finds the programs: one that is not there is
    // 127 (126: not executable), as in `childminder run`.
    if let Err(e) = spec.validate() {
        return match e.start_failure {
            Some(kind) => {
                diagnose(&format!("cannot start {e}"));
                if kind == std::io::ErrorKind::NotFound {
                    crate::run::EXIT_NOT_FOUND
                } else {
                    crate::run::EXIT_CANNOT_RUN
                }
            }
            None => {
                diagnose(&config.lines.locate(&e).to_string());
                exit::EXIT_FAILURE
            }
        };
    }
    // run's: out of fds, tokio's signal driver panics as it is built
    // (an acceptance run caught `ulimit -n 6`); this makes that an error.
    let runtime = match crate::run::event_loop() {
        Ok(runtime) => runtime,
        Err(e) => {
            diagnose(&format!("cannot start the runtime: {e}"));
            return exit::EXIT_FAILURE;
        }
    };
    match runtime.block_on(supervise(&config, &spec, sink)) {
        Ok(status) => status,
        Err(message) => {
            diagnose(&message);
            exit::EXIT_FAILURE
        }
    }
}

/// Starts the tree and presents it until it ends: output through the
/// printer thread, events to the sink and stderr, signals to the tree.
async fn supervise(
    config: &SupervisorConfig,
    spec: &SupervisorSpec,
    mut sink: Option<EventSink>,
) -> Result<i32, String> {
    let mut signals = signals::block_caught(signals::Role::Run)
        .and_then(|blocked| signals::Receiver::start(&blocked))
        .map_err(|e| format!("cannot set up the signal handlers: {e}"))?;
    // `up` is a subreaper (every process's command has it on): orphans that
    // exit while the tree runs are reaped as they do, not left zombies
    // until the sweep at the end.
    let mut child_exits = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .map_err(|e| format!("cannot set up the signal handlers: {e}"))?;
    let mut options = TreeOptions::new();
    let mut events = options.events();
    let output = options.output(OUTPUT_CHANNEL_CHUNKS);
    // Nothing outlives `up`, even SIGKILLed: the kernel kills each process
    // when the thread that spawned it (the runtime's only one, which lives
    // as long as `up`) dies. (Not a process with `ready = { fd = N }`: the
    // library cannot combine the two.)
    options.kill_on_parent_death(true);
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let printer = Printer::start(output, config.process_paths(), colour)
        .map_err(|e| format!("cannot start the output thread: {e}"))?;
    let tree =
        Tree::start_with(spec, options).map_err(|e| format!("invalid configuration: {e}"))?;

    let mut stop_requests = 0;
    let mut events_open = true;
    // Events wait here, in order, while the first is a process's end whose
    // last lines are not printed yet; signals and orphans are served
    // meanwhile.
    let mut held: VecDeque<Event> = VecDeque::new();
    let outcome = loop {
        tokio::select! {
            event = events.recv(), if events_open => match event {
                Some(event) => held.push_back(event),
                None => events_open = false,
            },
            () = after_its_output(held.front(), &printer), if !held.is_empty() => {
                if let Some(event) = held.pop_front() {
                    present(&event, &mut sink);
                }
            }
            signal = signals.recv() => {
                if signal == Signal::INT || signal == Signal::TERM {
                    stop_request(&tree, &mut stop_requests);
                } else {
                    // HUP (reload), QUIT, USR1, ... go to every process's
                    // group, as they are.
                    tree.signal(signal);
                }
            }
            _ = child_exits.recv() => {
                if let Err(e) = childminder::subreaper::reap_orphans() {
                    diagnose(&format!("warning: reaping orphans: {e}"));
                }
            }
            outcome = tree.wait() => break outcome,
        }
    };
    while let Some(event) = match held.pop_front() {
        Some(event) => Some(event),
        None => events.recv().await,
    } {
        after_its_output(Some(&event), &printer).await;
        present(&event, &mut sink);
    }
    // The last chunks are still being pumped by tasks of this runtime:
    // wait for the printer without blocking it (and without a blocking
    // thread, which the OS may refuse: tokio panics then).
    let output_failed = printer.finished().await.is_some();
    Ok(exit::with_output_failure(
        exit::exit_status(&outcome),
        output_failed,
    ))
}

/// Chunks the output channel holds before the children are slowed down.
const OUTPUT_CHANNEL_CHUNKS: usize = 64;

/// The first INT or TERM stops the tree in order; the next kills it.
fn stop_request(tree: &Tree, count: &mut u32) {
    *count += 1;
    if *count == 1 {
        diagnose("stopping every process (again to kill them at once)");
        tree.stop();
    } else {
        diagnose("killing every process");
        tree.kill();
    }
}

/// Longest a process's end message waits for its last lines to be printed,
/// counted from the end's event (so that ends that come together wait
/// that long together, not one after the other).
const LAST_LINES_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// For a process's end, waits until its last output lines are printed, so
/// that "NAME exited ..." comes after them (bounded: a stream something
/// else still holds open does not hold the message back). Any other event
/// goes at once.
async fn after_its_output(event: Option<&Event>, printer: &Printer) {
    if let Some(
        event @ Event {
            kind: EventKind::Exited { result, .. },
            ..
        },
    ) = event
    {
        let waited = event.time.elapsed().unwrap_or_default();
        printer
            .run_printed(
                &event.path,
                result.pid,
                LAST_LINES_WAIT.saturating_sub(waited),
            )
            .await;
    }
}

fn present(event: &Event, sink: &mut Option<EventSink>) {
    if let Some(message) = events::describe(event) {
        diagnose(&message);
    }
    if let Some(out) = sink {
        if let Err(e) = out.write(&EventLine::from_event(event)) {
            diagnose(&format!(
                "cannot write the events, no more will be written: {e}"
            ));
            *sink = None;
        }
    }
}
