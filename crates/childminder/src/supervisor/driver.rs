//! The driver: runs each supervisor's decision machine on a tokio task,
//! carries its actions out on real processes (the async engine) and nested
//! supervisors, and turns what happens into events and status.
//!
//! One task per supervisor ("level"). It owns its machine and its
//! children's current runs, and sleeps on one channel (reports from its
//! runs, requests from the handle or its parent) and one timer (the
//! machine's next deadline). Per process run there is one watcher task
//! (readiness, then the exit) besides the engine's own coordinator, and one
//! pump task per piped output stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::backoff::Jitter;
use super::decision::{Action, End, Finish, Input, Machine, Params};
use super::events::{ChildExit, Event, EventKind, LastRun, Outcome, OutputChunk, Verdict};
use super::handle::{ChildState, ChildStatus, Tree, TreeOptions};
use super::readiness::{Check, Listener};
use super::spec::{ChildKind, ChildSpec, Readiness, Shutdown, SupervisorSpec};
use crate::async_child::Child;
use crate::command::{Command, Stdio};
use crate::error::Stream;
use crate::signal::Signal;

/// A request to a supervisor, from the handle or its parent.
#[derive(Debug, Clone)]
pub(crate) enum Control {
    StopChild(Arc<str>),
    StartChild(Arc<str>),
    RestartChild(Arc<str>),
    Stop,
    Kill,
    Signal(Signal),
}

/// What a level's task hears about.
enum Msg {
    Control(Control),
    Spawned {
        child: usize,
        run: u64,
    },
    Ready {
        child: usize,
        run: u64,
    },
    Ended {
        child: usize,
        run: u64,
        exit: ChildExit,
    },
}

/// State of the whole tree, shared by its levels and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    status: Mutex<Vec<ChildStatus>>,
    pub(crate) ready: watch::Sender<bool>,
    /// Taken when the root ends, so the receivers see the end.
    events: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    output: Mutex<Option<mpsc::Sender<OutputChunk>>>,
    kill_on_parent_death: bool,
}

impl Shared {
    pub(crate) fn status_snapshot(&self) -> Vec<ChildStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut ChildStatus)) {
        let mut rows = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let row = &mut rows[index];
        change(row);
        row.since = SystemTime::now();
    }

    fn emit(&self, path: &Arc<str>, pid: Option<u32>, kind: EventKind) {
        tracing::debug!(path = %path, ?pid, event = kind.as_str(), "supervisor event");
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(events) = &*events {
            let _ = events.send(Event {
                time: SystemTime::now(),
                path: path.clone(),
                pid,
                kind,
            });
        }
    }

    fn output(&self) -> Option<mpsc::Sender<OutputChunk>> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The root has ended: no more events; the output channel closes once
    /// the last pump has delivered its last chunk.
    fn close(&self) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.output.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Starts the root level and returns the handle.
pub(crate) fn start_tree(spec: &SupervisorSpec, options: TreeOptions) -> Tree {
    let mut rows = Vec::new();
    let root_layout = layout(spec, "", &mut rows);
    let paths = Arc::new(rows.iter().map(|r: &ChildStatus| r.path.clone()).collect());
    let (ready, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        status: Mutex::new(rows),
        ready,
        events: Mutex::new(options.events),
        output: Mutex::new(options.output),
        kill_on_parent_death: options.kill_on_parent_death,
    });
    let (outcome_tx, outcome_rx) = watch::channel(None);
    let seed = options
        .jitter_seed
        .unwrap_or_else(Jitter::seed_from_environment);
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let level = Level::new(
        Arc::from(""),
        Arc::new(spec.clone()),
        Arc::new(root_layout),
        shared.clone(),
        Parent::Root(outcome_tx),
        seed,
        ctl_rx,
    );
    tokio::spawn(level.run_boxed());
    Tree {
        root: ctl_tx,
        shared,
        outcome: outcome_rx,
        paths,
    }
}

/// Where each child of a supervisor sits in the status table, recursively.
#[derive(Debug)]
struct Layout {
    rows: Vec<(usize, Arc<str>, Option<Arc<Layout>>)>,
}

fn layout(spec: &SupervisorSpec, prefix: &str, rows: &mut Vec<ChildStatus>) -> Layout {
    let mut mine = Vec::new();
    for child in &spec.children {
        let path: Arc<str> = Arc::from(format!("{prefix}{}", child.name));
        let index = rows.len();
        rows.push(ChildStatus {
            path: path.clone(),
            is_supervisor: child.is_supervisor(),
            state: ChildState::Pending,
            pid: None,
            restarts: 0,
            last_exit: None,
            since: SystemTime::now(),
        });
        let nested = match &child.kind {
            ChildKind::Supervisor(sub) => Some(Arc::new(layout(sub, &format!("{path}/"), rows))),
            ChildKind::Process(_) => None,
        };
        mine.push((index, path, nested));
    }
    Layout { rows: mine }
}

/// Who hears about a level's end.
enum Parent {
    Root(watch::Sender<Option<Arc<Outcome>>>),
    Level {
        tx: mpsc::UnboundedSender<Msg>,
        child: usize,
        run: u64,
    },
}

/// The current run of one child.
enum Run {
    Process {
        child: Arc<Child>,
        pid: u32,
    },
    Supervisor {
        control: mpsc::UnboundedSender<Control>,
    },
}

struct ChildRt {
    path: Arc<str>,
    row: usize,
    nested: Option<Arc<Layout>>,
    run_id: u64,
    run: Option<Run>,
    timed_out: bool,
    last_exit: Option<ChildExit>,
    last_verdict: Option<Verdict>,
}

struct Level {
    path: Arc<str>,
    spec: Arc<SupervisorSpec>,
    machine: Machine,
    children: Vec<ChildRt>,
    shared: Arc<Shared>,
    parent: Parent,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    control: mpsc::UnboundedReceiver<Control>,
    seed: u64,
}

impl Level {
    fn new(
        path: Arc<str>,
        spec: Arc<SupervisorSpec>,
        layout: Arc<Layout>,
        shared: Arc<Shared>,
        parent: Parent,
        seed: u64,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Level {
        let (tx, rx) = mpsc::unbounded_channel();
        let children = layout
            .rows
            .iter()
            .map(|(row, path, nested)| ChildRt {
                path: path.clone(),
                row: *row,
                nested: nested.clone(),
                run_id: 0,
                run: None,
                timed_out: false,
                last_exit: None,
                last_verdict: None,
            })
            .collect();
        Level {
            path,
            machine: Machine::new(Params::from_spec(&spec), seed),
            spec,
            children,
            shared,
            parent,
            tx,
            rx,
            control,
            seed,
        }
    }

    /// Boxed with an explicit type, so a level can spawn nested levels.
    fn run_boxed(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.run())
    }

    async fn run(mut self) {
        self.feed(Input::Start);
        while !self.machine.is_finished() {
            let deadline = self.machine.next_deadline();
            let msg = tokio::select! {
                Some(msg) = self.rx.recv() => msg,
                Some(control) = self.control.recv() => Msg::Control(control),
                () = sleep_until(deadline) => {
                    self.feed(Input::Tick);
                    continue;
                }
            };
            self.on_msg(msg);
        }
    }

    fn feed(&mut self, input: Input) {
        let actions = self.machine.handle(Instant::now(), input);
        for action in actions {
            self.act(action);
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Control(control) => self.on_control(control),
            Msg::Spawned { child, run } => {
                if self.children[child].run_id == run {
                    let pid = self.pid_of(child);
                    self.shared
                        .update(self.children[child].row, |s| s.pid = pid);
                }
            }
            Msg::Ready { child, run } => {
                if self.children[child].run_id == run && self.children[child].run.is_some() {
                    self.feed(Input::Ready(child));
                }
            }
            Msg::Ended { child, run, exit } => {
                let rt = &mut self.children[child];
                if rt.run_id != run {
                    return;
                }
                rt.run = None;
                let end = classify(&self.spec.children[child], &exit);
                let exit = match exit {
                    ChildExit::Exited(result) if rt.timed_out => {
                        ChildExit::StartTimeout(Some(result))
                    }
                    // A nested supervisor stopped for its start timeout
                    // ended `Stopped`: the timeout is what it ended of.
                    ChildExit::Supervisor(_) if rt.timed_out => ChildExit::StartTimeout(None),
                    other => other,
                };
                rt.timed_out = false;
                rt.last_exit = Some(exit);
                self.feed(Input::Ended(child, end));
            }
        }
    }

    fn pid_of(&self, child: usize) -> Option<u32> {
        match &self.children[child].run {
            Some(Run::Process { pid, .. }) => Some(*pid),
            _ => None,
        }
    }

    fn on_control(&mut self, control: Control) {
        let own_prefix_len = if self.path.is_empty() {
            0
        } else {
            self.path.len() + 1
        };
        let target = match &control {
            Control::StopChild(p) | Control::StartChild(p) | Control::RestartChild(p) => {
                Some(p.clone())
            }
            _ => None,
        };
        let Some(target) = target else {
            match control {
                Control::Stop => self.feed(Input::Stop),
                Control::Kill => self.feed(Input::Kill),
                Control::Signal(signal) => self.signal_all(signal),
                _ => unreachable!("handled above"),
            }
            return;
        };
        let rest = &target[own_prefix_len.min(target.len())..];
        let (name, deeper) = match rest.split_once('/') {
            Some((name, _)) => (name, true),
            None => (rest, false),
        };
        let Some(index) = self.spec.children.iter().position(|c| c.name == name) else {
            return;
        };
        if deeper {
            if let Some(Run::Supervisor { control: tx }) = &self.children[index].run {
                let _ = tx.send(control);
            }
            return;
        }
        let input = match control {
            Control::StopChild(_) => Input::StopChild(index),
            Control::StartChild(_) => Input::StartChild(index),
            Control::RestartChild(_) => Input::RestartChild(index),
            _ => unreachable!("only child requests have a target"),
        };
        self.feed(input);
    }

    fn signal_all(&self, signal: Signal) {
        for rt in &self.children {
            match &rt.run {
                Some(Run::Process { child, .. }) => {
                    if let Err(e) = child.signal_group(signal) {
                        tracing::warn!(path = %rt.path, %signal, error = %e, "signalling a child's group failed");
                    }
                }
                Some(Run::Supervisor { control }) => {
                    let _ = control.send(Control::Signal(signal));
                }
                None => {}
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Start(i) => self.start_child(i),
            Action::Stop(i) => self.stop_child(i, false),
            Action::Kill(i) => self.stop_child(i, true),
            Action::Running(i) => {
                let rt = &self.children[i];
                let pid = self.pid_of(i);
                self.shared
                    .update(rt.row, |s| s.state = ChildState::Running);
                self.shared.emit(&rt.path, pid, EventKind::Ready);
            }
            Action::StartTimedOut(i) => {
                let rt = &mut self.children[i];
                rt.timed_out = true;
                let pid = self.pid_of(i);
                self.shared
                    .emit(&self.children[i].path, pid, EventKind::StartTimeout);
            }
            Action::Judged(i, verdict) => {
                let rt = &mut self.children[i];
                rt.last_verdict = Some(verdict);
                let exit = rt.last_exit.clone();
                let (path, row) = (rt.path.clone(), rt.row);
                self.shared.update(row, |s| {
                    s.pid = None;
                    s.last_exit = exit.clone().map(|e| (e, verdict));
                });
                match exit {
                    Some(ChildExit::Exited(result))
                    | Some(ChildExit::StartTimeout(Some(result))) => {
                        let pid = Some(result.pid);
                        self.shared
                            .emit(&path, pid, EventKind::Exited { result, verdict });
                    }
                    Some(ChildExit::SpawnFailed(error)) => {
                        self.shared
                            .emit(&path, None, EventKind::SpawnFailed { error });
                    }
                    // A nested supervisor's `finished` is emitted here, by
                    // its parent, in the order the parent saw its `ready`
                    // and its end (emitted by the supervisor itself, the
                    // `finished` of one whose children were all done at
                    // once came before its `ready`: an acceptance test).
                    Some(ChildExit::Supervisor(outcome)) => {
                        self.shared
                            .emit(&path, None, EventKind::Finished { outcome });
                    }
                    Some(ChildExit::StartTimeout(None)) | None => {}
                }
            }
            Action::Restarting {
                child,
                delay,
                restart_count,
            } => {
                let rt = &self.children[child];
                self.shared.update(rt.row, |s| {
                    s.state = ChildState::Restarting;
                    s.restarts += 1;
                });
                self.shared.emit(
                    &rt.path,
                    None,
                    EventKind::Restarting {
                        delay,
                        restart_count,
                    },
                );
            }
            Action::Stopped(i) => {
                let rt = &self.children[i];
                self.shared
                    .update(rt.row, |s| s.state = ChildState::Stopped);
                self.shared.emit(&rt.path, None, EventKind::Stopped);
            }
            Action::GaveUp(i) => {
                let child = self.children[i].path.clone();
                self.shared
                    .emit(&self.path, None, EventKind::GaveUp { child });
            }
            Action::AllRunning => match &self.parent {
                Parent::Root(_) => {
                    self.shared.ready.send_replace(true);
                }
                Parent::Level { tx, child, run } => {
                    let _ = tx.send(Msg::Ready {
                        child: *child,
                        run: *run,
                    });
                }
            },
            Action::Finish(why) => self.finish(why),
        }
    }

    fn finish(&mut self, why: Finish) {
        let exit_of = |i: usize| {
            self.children[i]
                .last_exit
                .clone()
                .unwrap_or(ChildExit::StartTimeout(None))
        };
        let outcome = Arc::new(match why {
            Finish::Stopped => Outcome::Stopped,
            Finish::Killed => Outcome::Killed,
            Finish::GaveUp(i) => Outcome::GaveUp {
                child: self.children[i].path.clone(),
                exit: exit_of(i),
            },
            Finish::AutoShutdown(i) => Outcome::AutoShutdown {
                child: self.children[i].path.clone(),
                exit: exit_of(i),
                verdict: self.children[i].last_verdict.unwrap_or(Verdict::Normal),
            },
            Finish::Completed => Outcome::Completed {
                last: self
                    .children
                    .iter()
                    .map(|rt| LastRun {
                        path: rt.path.clone(),
                        exit: rt.last_exit.clone(),
                        verdict: rt.last_verdict.unwrap_or(Verdict::Normal),
                    })
                    .collect(),
            },
        });
        match &self.parent {
            Parent::Root(tx) => {
                self.shared.emit(
                    &self.path,
                    None,
                    EventKind::Finished {
                        outcome: outcome.clone(),
                    },
                );
                self.shared.close();
                tx.send_replace(Some(outcome));
            }
            Parent::Level { tx, child, run } => {
                let _ = tx.send(Msg::Ended {
                    child: *child,
                    run: *run,
                    exit: ChildExit::Supervisor(outcome),
                });
            }
        }
    }

    fn start_child(&mut self, i: usize) {
        let rt = &mut self.children[i];
        rt.run_id += 1;
        rt.timed_out = false;
        let run_id = rt.run_id;
        let (path, row) = (rt.path.clone(), rt.row);
        self.shared.update(row, |s| {
            s.state = ChildState::Starting;
            s.pid = None;
        });
        self.shared.emit(&path, None, EventKind::Starting);
        let spec = &self.spec.children[i];
        match &spec.kind {
            ChildKind::Process(cmd) => self.spawn_process(i, run_id, cmd.as_ref().clone()),
            ChildKind::Supervisor(sub) => {
                let (control_tx, control_rx) = mpsc::unbounded_channel();
                let layout = self.children[i]
                    .nested
                    .clone()
                    .expect("a supervisor child has a layout");
                self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let level = Level::new(
                    path,
                    Arc::new(sub.clone()),
                    layout,
                    self.shared.clone(),
                    Parent::Level {
                        tx: self.tx.clone(),
                        child: i,
                        run: run_id,
                    },
                    self.seed,
                    control_rx,
                );
                self.children[i].run = Some(Run::Supervisor {
                    control: control_tx,
                });
                tokio::spawn(level.run_boxed());
            }
        }
    }

    fn spawn_process(&mut self, i: usize, run_id: u64, mut cmd: Command) {
        let spec = &self.spec.children[i];
        let path = self.children[i].path.clone();
        if cmd.stdio[0] == Stdio::Piped {
            cmd.stdin(Stdio::Null);
        }
        let output = self.shared.output();
        if output.is_none() {
            for stream in 1..=2 {
                if cmd.stdio[stream] == Stdio::Piped {
                    cmd.stdio[stream] = Stdio::Inherit;
                }
            }
        }
        // The engine's fork path cannot place passed fds (the notification
        // fd): such a child goes without PR_SET_PDEATHSIG.
        if self.shared.kill_on_parent_death && !matches!(spec.readiness, Readiness::Fd(_)) {
            cmd.kill_on_parent_death(cmd.extra_fds.is_empty());
        }
        let spawned = Check::prepare(&spec.readiness, &mut cmd)
            .map_err(|source| crate::error::Error::Io {
                program: cmd.program_lossy(),
                context: "preparing the readiness check",
                source,
            })
            .and_then(|check| cmd.spawn().map(|child| (check, child)));
        // Our copies of fds passed to the child (the notification pipe's
        // write end) close here.
        drop(cmd);
        let (check, mut child) = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                let _ = self.tx.send(Msg::Ended {
                    child: i,
                    run: run_id,
                    exit: ChildExit::SpawnFailed(Arc::new(error)),
                });
                return;
            }
        };
        let pid = child.pid();
        if let Some(output) = &output {
            for (stream, pipe) in [
                (Stream::Stdout, child.stdout.take().map(|p| p.into_pipe())),
                (Stream::Stderr, child.stderr.take().map(|p| p.into_pipe())),
            ] {
                if let Some(pipe) = pipe {
                    tokio::spawn(pump(pipe, path.clone(), pid, stream, output.clone()));
                }
            }
        }
        let child = Arc::new(child);
        self.children[i].run = Some(Run::Process {
            child: child.clone(),
            pid,
        });
        let tx = self.tx.clone();
        let _ = tx.send(Msg::Spawned {
            child: i,
            run: run_id,
        });
        let immediate = check.is_immediate();
        if immediate {
            let _ = tx.send(Msg::Ready {
                child: i,
                run: run_id,
            });
        }
        tokio::spawn(async move {
            let mut listener = Listener::default();
            if !immediate {
                tokio::select! {
                    biased;
                    _ = child.wait() => {}
                    ready = check.wait() => {
                        listener = ready;
                        let _ = tx.send(Msg::Ready { child: i, run: run_id });
                    }
                }
            }
            let result = tokio::select! {
                biased;
                result = child.wait() => result,
                never = listener.discard_notifications() => match never {},
            };
            drop(listener);
            // Whatever is left of its group goes before the end is
            // reported, so a restart never overlaps the previous run.
            child.stop_now();
            child.finished().await;
            let _ = tx.send(Msg::Ended {
                child: i,
                run: run_id,
                exit: ChildExit::Exited(Box::new(result)),
            });
        });
    }

    fn stop_child(&mut self, i: usize, kill: bool) {
        let brutal = kill || self.spec.children[i].shutdown == Shutdown::BrutalKill;
        let rt = &self.children[i];
        let pid = self.pid_of(i);
        let mut already_stopping = false;
        self.shared.update(rt.row, |s| {
            already_stopping = s.state == ChildState::Stopping;
            s.state = ChildState::Stopping;
        });
        // A kill during a stop hurries that stop: no second `stopping`.
        if !already_stopping {
            self.shared.emit(&rt.path, pid, EventKind::Stopping);
        }
        match &rt.run {
            Some(Run::Process { child, .. }) => {
                if brutal {
                    child.kill();
                } else {
                    child.stop_now();
                }
            }
            Some(Run::Supervisor { control }) => {
                let _ = control.send(if brutal { Control::Kill } else { Control::Stop });
            }
            None => {}
        }
    }
}

/// How a child's end reads from its exit alone.
fn classify(spec: &ChildSpec, exit: &ChildExit) -> End {
    let success = match exit {
        ChildExit::Exited(result) => result
            .exit
            .and_then(|e| e.code())
            .is_some_and(|code| spec.success_exit_codes.contains(&code)),
        ChildExit::SpawnFailed(_) | ChildExit::StartTimeout(_) => false,
        ChildExit::Supervisor(outcome) => !outcome.is_failure(),
    };
    if success { End::Success } else { End::Failure }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Largest read from a child's output pipe.
const PUMP_CHUNK: usize = 64 * 1024;

/// Drains one output pipe into the tree's output channel. The buffer
/// exists only while there is something to read, so an idle stream costs
/// no buffer. When the channel's receiver is gone the rest is discarded,
/// but still read, so the child never blocks on a full pipe.
async fn pump(
    pipe: tokio::net::unix::pipe::Receiver,
    path: Arc<str>,
    pid: u32,
    stream: Stream,
    output: mpsc::Sender<OutputChunk>,
) {
    let mut output = Some(output);
    'outer: loop {
        if pipe.readable().await.is_err() {
            break;
        }
        let mut buf = vec![0u8; PUMP_CHUNK];
        loop {
            match pipe.try_read(&mut buf) {
                Ok(0) => break 'outer,
                Ok(n) => {
                    if let Some(tx) = &output {
                        let chunk = OutputChunk {
                            path: path.clone(),
                            pid,
                            stream,
                            bytes: buf[..n].to_vec(),
                            eof: false,
                        };
                        if tx.send(chunk).await.is_err() {
                            output = None;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break 'outer,
            }
        }
    }
    if let Some(tx) = output {
        let _ = tx
            .send(OutputChunk {
                path,
                pid,
                stream,
                bytes: Vec::new(),
                eof: true,
            })
            .await;
    }
}
