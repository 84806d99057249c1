//! Issue 9: supervision trees on real children (the fixture). Every wait is
//! on the event stream, bounded; no sleep stands in for an event. Failures
//! are made on demand by SIGKILLing a child from outside (a signal the
//! supervisor did not send: an abnormal end).

mod common;
#[path = "common/support.rs"]
mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use childminder::supervisor::{
    AutoShutdown, Backoff, ChildExit, ChildSpec, ChildState, ControlError, Event, EventKind,
    Events, Outcome, Readiness, Restart, Shutdown, Strategy, SupervisorSpec, Tree, TreeOptions,
    Verdict,
};
use childminder::{Command, Signal, Stdio, Stream};
use common::LeakCheck;
use support::{HANDSHAKE, fixture_cmd};
use tokio::runtime::Runtime;

/// The tests of this file run one at a time, so the per-test leak check
/// sees only its own processes and fds under `cargo test` (threads) too.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> Runtime {
    support::current_thread_runtime()
}

/// Runs `body` on a fresh runtime, then checks that nothing leaked.
fn check<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    check_on(runtime, body);
}

/// As [`check`], on a runtime of two worker threads.
fn check_multi_thread<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    check_on(
        || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        },
        body,
    );
}

fn check_on<F: std::future::Future<Output = ()>>(
    runtime: impl FnOnce() -> Runtime,
    body: impl FnOnce() -> F,
) {
    let _serial = serial();
    let rt = runtime();
    support::mark_fd_baseline();
    let leaks = LeakCheck::new();
    rt.block_on(body());
    drop(rt);
    leaks.assert_clean();
}

/// The fixture with `args`, stdout and stderr to /dev/null, short grace.
fn fx(args: &[&str]) -> Command {
    let mut cmd = fixture_cmd(args);
    cmd.stdout(Stdio::Null)
        .stderr(Stdio::Null)
        .grace_period(Duration::from_secs(2));
    cmd
}

fn sleeper(name: &str) -> ChildSpec {
    ChildSpec::process(name, fx(&["sleep", "30"])).backoff(Backoff::NONE)
}

/// A tree with an event stream.
struct Run {
    tree: Tree,
    events: Events,
    /// Every event received so far.
    log: Vec<Event>,
}

impl Run {
    fn start(spec: &SupervisorSpec) -> Run {
        let mut options = TreeOptions::new();
        let events = options.events();
        options.jitter_seed(7);
        Run {
            tree: Tree::start_with(spec, options).expect("valid spec"),
            events,
            log: Vec::new(),
        }
    }

    /// Reads events until one is `path kind`; returns the events read on the
    /// way, that one included.
    async fn until(&mut self, path: &str, kind: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + HANDSHAKE;
        loop {
            let event = tokio::time::timeout_at(deadline.into(), self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no `{path} {kind}` within {HANDSHAKE:?}; saw {:?}",
                        names(&seen)
                    )
                })
                .unwrap_or_else(|| {
                    panic!("stream ended before `{path} {kind}`: {:?}", names(&seen))
                });
            let hit = &*event.path == path && event.kind.as_str() == kind;
            self.log.push(event.clone());
            seen.push(event);
            if hit {
                return seen;
            }
        }
    }

    /// Reads events until each of `wanted` (`path kind`) was seen, in any
    /// order; returns the events read.
    async fn until_all(&mut self, wanted: &[(&str, &str)]) -> Vec<Event> {
        let mut seen: Vec<Event> = Vec::new();
        for (path, kind) in wanted {
            let already = seen
                .iter()
                .any(|e| &*e.path == *path && e.kind.as_str() == *kind);
            if !already {
                seen.extend(self.until(path, kind).await);
            }
        }
        seen
    }

    /// Reads every event to the end of the stream.
    async fn rest(&mut self) -> Vec<Event> {
        self.until("", "finished").await
    }

    fn pid(&self, path: &str) -> i32 {
        self.tree
            .child_status(path)
            .unwrap()
            .pid
            .unwrap_or_else(|| panic!("{path} has no pid")) as i32
    }
}

/// Waits until `pid` ignores SIGTERM (the `ignore-term` fixture has set
/// itself up): the kernel's view, not a sleep.
fn wait_ignores_term(pid: i32) {
    let ignores = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
    };
    assert!(
        support::wait_until(HANDSHAKE, ignores),
        "{pid} never ignored TERM"
    );
}

fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.path, e.kind.as_str()))
        .collect()
}

/// Only the events of these kinds, as `path kind`.
fn only(events: &[Event], kinds: &[&str]) -> Vec<String> {
    events
        .iter()
        .filter(|e| kinds.contains(&e.kind.as_str()))
        .map(|e| format!("{} {}", e.path, e.kind.as_str()))
        .collect()
}

fn kill(pid: i32) {
    // SAFETY: kill takes integers; the pid is our unreaped child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

fn exited(event: &Event) -> (&childminder::SupervisionResult, Verdict) {
    match &event.kind {
        EventKind::Exited { result, verdict } => (result, *verdict),
        other => panic!("not an exit: {other:?}"),
    }
}

fn find<'a>(events: &'a [Event], path: &str, kind: &str) -> &'a Event {
    events
        .iter()
        .find(|e| &*e.path == path && e.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no `{path} {kind}` in {:?}", names(events)))
}

fn abc(strategy: Strategy) -> SupervisorSpec {
    SupervisorSpec::new()
        .strategy(strategy)
        .children([sleeper("a"), sleeper("b"), sleeper("c")])
}

#[test]
fn children_start_in_order_and_stop_in_reverse() {
    check(async || {
        let mut run = Run::start(&abc(Strategy::OneForOne));
        let start = run.until("c", "ready").await;
        assert_eq!(
            only(&start, &["starting", "ready"]),
            [
                "a starting",
                "a ready",
                "b starting",
                "b ready",
                "c starting",
                "c ready"
            ]
        );
        assert!(start[0].pid.is_none(), "starting comes before the spawn");
        assert!(start[1].pid.is_some());
        run.tree.running().await;
        for s in run.tree.status() {
            assert_eq!(s.state, ChildState::Running, "{s:?}");
        }
        run.tree.stop();
        let stop = run.rest().await;
        assert_eq!(
            names(&stop),
            [
                "c stopping",
                "c exited",
                "c stopped",
                "b stopping",
                "b exited",
                "b stopped",
                "a stopping",
                "a exited",
                "a stopped",
                " finished"
            ]
        );
        let (result, verdict) = exited(&stop[1]);
        assert_eq!(verdict, Verdict::Requested);
        assert_eq!(result.exit.unwrap().signal(), Some(Signal::TERM));
        assert!(result.kill_sent_after.is_none());
        assert!(matches!(*run.tree.wait().await, Outcome::Stopped));
        assert!(
            run.events.recv().await.is_none(),
            "the stream ends with the tree"
        );
    });
}

#[test]
fn one_for_one_restarts_only_the_child_that_failed() {
    check(async || {
        let mut run = Run::start(&abc(Strategy::OneForOne));
        run.until("c", "ready").await;
        let (a, c) = (run.pid("a"), run.pid("c"));
        kill(run.pid("b"));
        let events = run.until("b", "ready").await;
        assert_eq!(
            names(&events),
            ["b exited", "b restarting", "b starting", "b ready"]
        );
        let (result, verdict) = exited(&events[0]);
        assert_eq!(verdict, Verdict::Abnormal);
        assert_eq!(result.exit.unwrap().signal(), Some(Signal::KILL));
        match events[1].kind {
            EventKind::Restarting {
                restart_count,
                delay,
            } => assert_eq!((restart_count, delay), (1, Duration::ZERO)),
            ref other => panic!("{other:?}"),
        }
        assert_eq!((run.pid("a"), run.pid("c")), (a, c));
        assert_eq!(run.tree.child_status("b").unwrap().restarts, 1);
        run.tree.stop();
        run.rest().await;
    });
}

#[test]
fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    check(async || {
        let mut run = Run::start(&abc(Strategy::OneForAll));
        run.until("c", "ready").await;
        let a = run.pid("a");
        kill(run.pid("b"));
        let events = run.until("c", "ready").await;
        assert_eq!(
            names(&events),
            [
                "b exited",
                "b restarting",
                "c stopping",
                "c exited",
                "c restarting",
                "a stopping",
                "a exited",
                "a restarting",
                "a starting",
                "a ready",
                "b starting",
                "b ready",
                "c starting",
                "c ready"
            ]
        );
        assert_eq!(exited(&events[3]).1, Verdict::Requested);
        assert_ne!(run.pid("a"), a);
        run.tree.stop();
        run.rest().await;
    });
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    check(async || {
        let mut run = Run::start(&abc(Strategy::RestForOne));
        run.until("c", "ready").await;
        let a = run.pid("a");
        kill(run.pid("b"));
        let events = run.until("c", "ready").await;
        assert_eq!(
            names(&events),
            [
                "b exited",
                "b restarting",
                "c stopping",
                "c exited",
                "c restarting",
                "b starting",
                "b ready",
                "c starting",
                "c ready"
            ]
        );
        assert_eq!(run.pid("a"), a);
        run.tree.stop();
        run.rest().await;
    });
}

/// One child exiting with `code` under `restart` and `codes`: was it
/// restarted, and how was the end judged?
async fn judge(restart: Restart, codes: &[i32], code: i32) -> (bool, Verdict) {
    let child = ChildSpec::process("x", fx(&["sleep-exit", "0", &code.to_string()]))
        .restart(restart)
        .success_exit_codes(codes.iter().copied())
        .backoff(Backoff::NONE);
    let mut run = Run::start(&SupervisorSpec::new().child(sleeper("keep")).child(child));
    let events = run.until("x", "exited").await;
    let verdict = exited(events.last().unwrap()).1;
    let next = run.events.recv().await.unwrap();
    let restarted = match next.kind.as_str() {
        "restarting" => true,
        "stopped" => false,
        other => panic!("after exited: {other}"),
    };
    run.tree.stop();
    run.rest().await;
    (restarted, verdict)
}

#[test]
fn restart_types_and_success_exit_codes() {
    check(async || {
        use Restart::*;
        use Verdict::*;
        assert_eq!(judge(Permanent, &[0], 0).await, (true, Normal));
        assert_eq!(judge(Permanent, &[0], 1).await, (true, Abnormal));
        assert_eq!(judge(Transient, &[0], 0).await, (false, Normal));
        assert_eq!(judge(Transient, &[0], 1).await, (true, Abnormal));
        assert_eq!(judge(Temporary, &[0], 1).await, (false, Abnormal));
        assert_eq!(judge(Temporary, &[0], 0).await, (false, Normal));
        // The success set: 3 is a success, and 0 is not when left out.
        assert_eq!(judge(Transient, &[0, 3], 3).await, (false, Normal));
        assert_eq!(judge(Transient, &[3], 0).await, (true, Abnormal));
        assert_eq!(judge(Transient, &[], 0).await, (true, Abnormal));
    });
}

#[test]
fn a_transient_child_stopped_on_request_is_not_restarted() {
    check(async || {
        let child = ChildSpec::process("t", fx(&["sleep", "30"])).restart(Restart::Transient);
        let mut run = Run::start(&SupervisorSpec::new().child(sleeper("keep")).child(child));
        run.until("t", "ready").await;
        run.tree.stop_child("t").unwrap();
        let events = run.until("t", "stopped").await;
        assert_eq!(names(&events), ["t stopping", "t exited", "t stopped"]);
        assert_eq!(exited(&events[1]).1, Verdict::Requested);
        assert_eq!(
            run.tree.child_status("t").unwrap().state,
            ChildState::Stopped
        );
        run.tree.stop();
        run.rest().await;
    });
}

#[test]
fn intensity_trips_and_the_failure_propagates_up_a_two_level_tree() {
    check(async || {
        let crashing =
            ChildSpec::process("crash", fx(&["sleep-exit", "0", "7"])).backoff(Backoff::NONE);
        let sub = SupervisorSpec::new()
            .intensity(2)
            .period(Duration::from_secs(30))
            .child(sleeper("steady"))
            .child(crashing);
        let spec = SupervisorSpec::new()
            .intensity(0)
            .child(sleeper("first"))
            .child(ChildSpec::supervisor("sub", sub))
            .child(sleeper("last"));
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        // Two restarts are allowed; the third end gives up.
        assert_eq!(
            only(&events, &["restarting"]),
            ["sub/crash restarting", "sub/crash restarting"]
        );
        let names = names(&events);
        let gave_up = names.iter().position(|e| e == "sub gave_up").unwrap();
        // The sub stops its own children, then ends; then the root gives up
        // and stops the rest in reverse order.
        assert_eq!(
            names[gave_up..],
            [
                "sub gave_up",
                "sub/crash stopped",
                "sub/steady stopping",
                "sub/steady exited",
                "sub/steady stopped",
                "sub finished",
                " gave_up",
                "sub stopped",
                "last stopping",
                "last exited",
                "last stopped",
                "first stopping",
                "first exited",
                "first stopped",
                " finished"
            ]
        );
        let outcome = run.tree.wait().await;
        let Outcome::GaveUp { child, exit } = &*outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(&**child, "sub");
        assert!(matches!(exit, ChildExit::Supervisor(inner) if inner.is_failure()));
        let (culprit, exit) = outcome.culprit().unwrap();
        assert_eq!(&**culprit, "sub/crash");
        assert_eq!(exit.result().unwrap().exit.unwrap().code(), Some(7));
        assert_eq!(outcome.exit_code(), 7);
    });
}

#[test]
fn a_parent_with_room_restarts_a_nested_supervisor_that_gave_up() {
    check(async || {
        let sub = SupervisorSpec::new().intensity(0).child(
            ChildSpec::process("crash", fx(&["sleep-exit", "0", "1"])).backoff(Backoff::NONE),
        );
        let spec = SupervisorSpec::new()
            .intensity(1)
            .child(ChildSpec::supervisor("sub", sub).backoff(Backoff::NONE));
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        assert_eq!(
            only(&events, &["gave_up", "restarting"]),
            ["sub gave_up", "sub restarting", "sub gave_up", " gave_up"]
        );
        assert_eq!(run.tree.wait().await.exit_code(), 1);
    });
}

#[test]
fn readiness_by_notify_socket_gates_the_next_child() {
    check(async || {
        let db =
            ChildSpec::process("db", fx(&["notify-ready", "0.2", "30"])).ready(Readiness::Notify);
        let mut run = Run::start(&SupervisorSpec::new().child(db).child(sleeper("web")));
        let events = run.until("web", "ready").await;
        assert_eq!(
            names(&events),
            ["db starting", "db ready", "web starting", "web ready"]
        );
        let waited = events[1]
            .time
            .duration_since(events[0].time)
            .unwrap_or_default();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        run.tree.stop();
        run.rest().await;
    });
}

/// Caught by an acceptance test: the notify socket was closed as soon as
/// `READY=1` arrived, so what `systemd-notify --ready` sends next (a
/// barrier, then any `STATUS=`) was refused, and the service exited 1
/// about half the time. The child here sends them only after the test saw
/// it ready, so the old code fails every time.
#[test]
fn the_notify_socket_stays_open_for_status_and_barrier_after_ready() {
    check(async || {
        let dir = support::Scratch::new("notify-barrier");
        let go = dir.path().join("go");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &go,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        let svc = ChildSpec::process("svc", fx(&["notify-barrier", go.to_str().unwrap()]))
            .ready(Readiness::Notify)
            .restart(Restart::Temporary);
        let mut run = Run::start(&SupervisorSpec::new().child(svc));
        run.until("svc", "ready").await;
        // Opening a FIFO waits for its reader: on a thread, bounded here.
        let (written_tx, written) = std::sync::mpsc::channel();
        let fifo = go.clone();
        std::thread::spawn(move || written_tx.send(std::fs::write(fifo, "go\n")));
        written
            .recv_timeout(HANDSHAKE)
            .expect("the child opened its FIFO")
            .unwrap();
        let events = run.until("svc", "exited").await;
        let EventKind::Exited { result, .. } = &events.last().unwrap().kind else {
            unreachable!()
        };
        assert!(
            result.success(),
            "the service could not notify after it was ready: {result:?}"
        );
        run.rest().await;
    });
}

/// Caught by an acceptance test: a nested supervisor whose children had all
/// ended (or had none) completed, was restarted as `permanent`, ran its
/// one-shot jobs again and again, and its parent gave up with status 1
/// though every process exited 0. Its `ready` also came after its
/// `finished`. A nested supervisor is now transient by default.
#[test]
fn a_nested_supervisor_that_completes_is_not_run_again() {
    check(async || {
        let jobs = SupervisorSpec::new()
            .child(ChildSpec::process("job", fx(&["exit", "0"])).restart(Restart::Temporary));
        let spec = SupervisorSpec::new()
            .child(sleeper("a"))
            .child(ChildSpec::supervisor("jobs", jobs))
            .child(ChildSpec::supervisor("empty", SupervisorSpec::new()))
            .child(sleeper("b"));
        let mut run = Run::start(&spec);
        let mut events = run
            .until_all(&[("jobs", "finished"), ("empty", "finished"), ("b", "ready")])
            .await;
        run.tree.stop();
        events.extend(run.rest().await);
        for sub in ["jobs", "empty"] {
            let own: Vec<&str> = events
                .iter()
                .filter(|e| &*e.path == sub)
                .map(|e| e.kind.as_str())
                .collect();
            assert_eq!(own, ["starting", "ready", "finished", "stopped"], "{sub}");
        }
        let outcome = run.tree.wait().await;
        assert!(matches!(*outcome, Outcome::Stopped), "{outcome:?}");
        assert_eq!(outcome.exit_code(), 0);
    });
}

/// A review caught the first fix of the test above announcing a nested
/// supervisor's `ready` again whenever its children were all running
/// again: once per run it must be, the parent's to say.
#[test]
fn a_nested_supervisors_ready_and_finished_come_once_per_run() {
    check(async || {
        let sub = SupervisorSpec::new().child(sleeper("w"));
        let spec = SupervisorSpec::new().child(ChildSpec::supervisor("sub", sub));
        let mut run = Run::start(&spec);
        let mut events = run.until("sub", "ready").await;
        let w = events
            .iter()
            .find(|e| &*e.path == "sub/w" && e.kind.as_str() == "ready")
            .and_then(|e| e.pid)
            .unwrap();
        kill(w as i32);
        events.extend(run.until("sub/w", "restarting").await);
        events.extend(run.until("sub/w", "ready").await);
        run.tree.stop();
        events.extend(run.rest().await);
        let own: Vec<&str> = events
            .iter()
            .filter(|e| &*e.path == "sub")
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(
            own,
            ["starting", "ready", "stopping", "finished", "stopped"]
        );
    });
}

#[test]
fn readiness_by_notification_fd() {
    check(async || {
        let db =
            ChildSpec::process("db", fx(&["fd-ready", "5", "0.2", "30"])).ready(Readiness::Fd(5));
        let mut run = Run::start(&SupervisorSpec::new().child(db).child(sleeper("web")));
        let events = run.until("web", "ready").await;
        assert_eq!(
            names(&events),
            ["db starting", "db ready", "web starting", "web ready"]
        );
        let waited = events[1].time.duration_since(events[0].time).unwrap();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        run.tree.stop();
        run.rest().await;
    });
}

/// A partial line on the notification fd is not readiness (a mutant that
/// took any bytes for it survived): the child writes `rea`, lingers, and
/// exits without the newline, so it ends without ever being ready.
#[test]
fn a_notification_without_its_newline_is_not_readiness() {
    check(async || {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf rea >&5; sleep 0.3; exit 3"])
            .stdout(Stdio::Null)
            .stderr(Stdio::Null);
        let child = ChildSpec::process("x", cmd)
            .ready(Readiness::Fd(5))
            .restart(Restart::Temporary);
        let mut run = Run::start(&SupervisorSpec::new().child(child));
        let events = run.rest().await;
        let own: Vec<&str> = events
            .iter()
            .filter(|e| &*e.path == "x")
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(own, ["starting", "exited", "stopped"]);
    });
}

#[test]
fn readiness_by_tcp_port() {
    check(async || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let db = ChildSpec::process("db", fx(&["listen", &addr, "0.3", "30"]))
            .ready(Readiness::Tcp(addr.clone()));
        let mut run = Run::start(&SupervisorSpec::new().child(db).child(sleeper("web")));
        let events = run.until("web", "ready").await;
        assert_eq!(
            names(&events),
            ["db starting", "db ready", "web starting", "web ready"]
        );
        let waited = events[1].time.duration_since(events[0].time).unwrap();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        run.tree.stop();
        run.rest().await;
    });
}

#[test]
fn a_start_timeout_stops_the_child_and_counts_as_its_failure() {
    check(async || {
        let never = ChildSpec::process("never", fx(&["sleep", "30"]))
            .ready(Readiness::Notify)
            .start_timeout(Duration::from_millis(300));
        let spec = SupervisorSpec::new()
            .intensity(0)
            .child(sleeper("a"))
            .child(never)
            .child(sleeper("b"));
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        assert_eq!(
            names(&events),
            [
                "a starting",
                "a ready",
                "never starting",
                "never start_timeout",
                "never stopping",
                "never exited",
                " gave_up",
                "never stopped",
                "a stopping",
                "a exited",
                "a stopped",
                " finished"
            ]
        );
        let (result, verdict) = exited(&events[5]);
        assert_eq!(verdict, Verdict::Abnormal);
        assert_eq!(result.exit.unwrap().signal(), Some(Signal::TERM));
        let outcome = run.tree.wait().await;
        assert!(
            matches!(
                &*outcome,
                Outcome::GaveUp {
                    exit: ChildExit::StartTimeout(Some(_)),
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), 1);
    });
}

#[test]
fn any_significant_child_ending_stops_the_others() {
    check(async || {
        let job = ChildSpec::process("job", fx(&["sleep-exit", "0.1", "4"]))
            .restart(Restart::Temporary)
            .significant(true);
        let spec = SupervisorSpec::new()
            .auto_shutdown(AutoShutdown::AnySignificant)
            .child(sleeper("a"))
            .child(job)
            .child(sleeper("b"));
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        let names = names(&events);
        let end = names.iter().position(|e| e == "job exited").unwrap();
        assert_eq!(
            names[end..],
            [
                "job exited",
                "job stopped",
                "b stopping",
                "b exited",
                "b stopped",
                "a stopping",
                "a exited",
                "a stopped",
                " finished"
            ]
        );
        let outcome = run.tree.wait().await;
        let Outcome::AutoShutdown { child, .. } = &*outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(&**child, "job");
        assert_eq!(outcome.exit_code(), 4);
        // A significant child ending with one of its success codes: 0.
        let job = ChildSpec::process("job", fx(&["sleep-exit", "0", "3"]))
            .restart(Restart::Transient)
            .success_exit_codes([0, 3])
            .significant(true);
        let spec = SupervisorSpec::new()
            .auto_shutdown(AutoShutdown::AnySignificant)
            .child(sleeper("a"))
            .child(job);
        let outcome = Tree::start(&spec).unwrap().wait().await;
        assert!(
            matches!(
                &*outcome,
                Outcome::AutoShutdown {
                    verdict: Verdict::Normal,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), 0);
    });
}

#[test]
fn all_significant_waits_for_the_last_one() {
    check(async || {
        let quick = ChildSpec::process("quick", fx(&["sleep-exit", "0", "0"]))
            .restart(Restart::Transient)
            .significant(true);
        let slow = ChildSpec::process("slow", fx(&["sleep-exit", "0.3", "0"]))
            .restart(Restart::Temporary)
            .significant(true);
        let spec = SupervisorSpec::new()
            .auto_shutdown(AutoShutdown::AllSignificant)
            .child(sleeper("a"))
            .child(quick)
            .child(slow);
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        let names = names(&events);
        let quick_end = names.iter().position(|e| e == "quick stopped").unwrap();
        let slow_end = names.iter().position(|e| e == "slow stopped").unwrap();
        let a_stop = names.iter().position(|e| e == "a stopping").unwrap();
        assert!(quick_end < slow_end && slow_end < a_stop, "{names:?}");
        let outcome = run.tree.wait().await;
        assert!(
            matches!(&*outcome, Outcome::AutoShutdown { child, .. } if &**child == "slow"),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), 0);
    });
}

#[test]
fn with_auto_shutdown_never_the_tree_completes_when_nothing_is_left() {
    check(async || {
        let spec = SupervisorSpec::new()
            .child(
                ChildSpec::process("ok", fx(&["sleep-exit", "0", "0"])).restart(Restart::Temporary),
            )
            .child(
                ChildSpec::process("bad", fx(&["sleep-exit", "0.1", "3"]))
                    .restart(Restart::Temporary),
            )
            .child(
                ChildSpec::process("fine", fx(&["sleep-exit", "0.2", "0"]))
                    .restart(Restart::Transient),
            );
        let mut run = Run::start(&spec);
        run.rest().await;
        let outcome = run.tree.wait().await;
        let Outcome::Completed { last } = &*outcome else {
            panic!("{outcome:?}")
        };
        let verdicts: Vec<_> = last.iter().map(|r| (&*r.path, r.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                ("ok", Verdict::Normal),
                ("bad", Verdict::Abnormal),
                ("fine", Verdict::Normal)
            ]
        );
        assert_eq!(outcome.exit_code(), 3);
        // A failure inside a nested supervisor that completed counts too.
        let sub = SupervisorSpec::new().child(
            ChildSpec::process("bad", fx(&["sleep-exit", "0", "5"])).restart(Restart::Temporary),
        );
        let spec = SupervisorSpec::new()
            .child(
                ChildSpec::process("ok", fx(&["sleep-exit", "0", "0"])).restart(Restart::Temporary),
            )
            .child(ChildSpec::supervisor("sub", sub).restart(Restart::Temporary));
        let tree = Tree::start(&spec).unwrap();
        let outcome = tree.wait().await;
        assert!(matches!(*outcome, Outcome::Completed { .. }), "{outcome:?}");
        assert_eq!(outcome.exit_code(), 5);
        // And significant children need a mode other than `never`.
        let err = SupervisorSpec::new()
            .child(
                ChildSpec::process("s", fx(&["sleep", "1"]))
                    .restart(Restart::Temporary)
                    .significant(true),
            )
            .validate()
            .unwrap_err();
        assert!(err.reason.contains("auto_shutdown"), "{err}");
    });
}

#[test]
fn the_handle_stops_starts_and_restarts_single_children() {
    check(async || {
        let mut run = Run::start(&abc(Strategy::OneForAll));
        run.until("c", "ready").await;
        let status = run.tree.status();
        assert_eq!(
            status.iter().map(|s| &*s.path).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(status.iter().all(|s| s.pid.is_some() && s.restarts == 0));
        let (a, b) = (run.pid("a"), run.pid("b"));

        // stop_child: down and kept down, no strategy action on siblings.
        run.tree.stop_child("c").unwrap();
        let events = run.until("c", "stopped").await;
        assert_eq!(names(&events), ["c stopping", "c exited", "c stopped"]);
        let c = run.tree.child_status("c").unwrap();
        assert_eq!((c.state, c.pid), (ChildState::Stopped, None));
        assert!(matches!(
            c.last_exit,
            Some((ChildExit::Exited(_), Verdict::Requested))
        ));

        // start_child brings it back.
        run.tree.start_child("c").unwrap();
        let events = run.until("c", "ready").await;
        assert_eq!(names(&events), ["c starting", "c ready"]);

        // restart_child: a new process, uncounted by the intensity, the
        // siblings untouched even under one_for_all.
        run.tree.restart_child("b").unwrap();
        let events = run.until("b", "ready").await;
        assert_eq!(
            names(&events),
            [
                "b stopping",
                "b exited",
                "b restarting",
                "b starting",
                "b ready"
            ]
        );
        assert_ne!(run.pid("b"), b);
        assert_eq!(run.pid("a"), a);
        assert_eq!(run.tree.child_status("b").unwrap().restarts, 1);

        assert_eq!(
            run.tree.stop_child("nope"),
            Err(childminder::supervisor::ControlError::NoSuchChild(
                "nope".into()
            ))
        );
        let outcome = run.tree.shutdown().await;
        assert!(matches!(*outcome, Outcome::Stopped));
        run.rest().await;
        assert!(run.tree.stop_child("a").is_err(), "the tree has ended");
    });
}

#[test]
fn the_handle_reaches_children_of_nested_supervisors() {
    check(async || {
        let sub = SupervisorSpec::new().children([sleeper("x"), sleeper("y")]);
        let spec = SupervisorSpec::new()
            .child(sleeper("a"))
            .child(ChildSpec::supervisor("sub", sub));
        let mut run = Run::start(&spec);
        run.until("sub", "ready").await;
        let paths: Vec<_> = run
            .tree
            .status()
            .iter()
            .map(|s| s.path.to_string())
            .collect();
        assert_eq!(paths, ["a", "sub", "sub/x", "sub/y"]);
        let x = run.pid("sub/x");
        run.tree.restart_child("sub/x").unwrap();
        run.until("sub/x", "ready").await;
        assert_ne!(run.pid("sub/x"), x);
        run.tree.stop();
        let stop = run.rest().await;
        assert_eq!(
            only(&stop, &["stopping", "stopped"]),
            [
                "sub stopping",
                "sub/y stopping",
                "sub/y stopped",
                "sub/x stopping",
                "sub/x stopped",
                "sub stopped",
                "a stopping",
                "a stopped"
            ]
        );
    });
}

#[test]
fn signal_reaches_every_childs_group_and_kill_ends_the_tree_now() {
    check(async || {
        let ignores = ChildSpec::process("stubborn", {
            let mut cmd = fx(&["ignore-term", "30"]);
            cmd.grace_period(Duration::from_secs(30));
            cmd
        });
        let spec = SupervisorSpec::new()
            .child(sleeper("a"))
            .child(ignores)
            .child(ChildSpec::supervisor(
                "sub",
                SupervisorSpec::new().child(sleeper("x")),
            ));
        let mut run = Run::start(&spec);
        run.until("sub", "ready").await;
        wait_ignores_term(run.pid("stubborn"));
        run.tree.signal(Signal::HUP);
        // HUP ends the sleepers (an abnormal end: a signal we did not send)
        // and they are restarted.
        let events = run
            .until_all(&[("a", "ready"), ("stubborn", "ready"), ("sub/x", "ready")])
            .await;
        let mut hups: Vec<_> = events
            .iter()
            .filter(|e| e.kind.as_str() == "exited")
            .map(|e| (e.path.to_string(), exited(e).0.exit.unwrap().signal()))
            .collect();
        hups.sort();
        assert_eq!(
            hups,
            [
                ("a".to_string(), Some(Signal::HUP)),
                ("stubborn".to_string(), Some(Signal::HUP)),
                ("sub/x".to_string(), Some(Signal::HUP))
            ]
        );
        wait_ignores_term(run.pid("stubborn"));
        // Kill: everything at once, even the child whose grace is 30 s.
        let started = Instant::now();
        run.tree.kill();
        let events = run.rest().await;
        assert!(started.elapsed() < Duration::from_secs(10));
        for e in events.iter().filter(|e| e.kind.as_str() == "exited") {
            assert_eq!(
                exited(e).0.exit.unwrap().signal(),
                Some(Signal::KILL),
                "{e:?}"
            );
        }
        assert!(matches!(*run.tree.wait().await, Outcome::Killed));
    });
}

#[test]
fn shutdown_is_graceful_or_brutal_per_child() {
    check(async || {
        let mut graceful = fx(&["ignore-term", "30"]);
        graceful.grace_period(Duration::from_millis(200));
        let mut brutal = fx(&["ignore-term", "30"]);
        brutal.grace_period(Duration::from_secs(30));
        let spec = SupervisorSpec::new()
            .child(ChildSpec::process("graceful", graceful))
            .child(ChildSpec::process("brutal", brutal).shutdown(Shutdown::BrutalKill));
        let mut run = Run::start(&spec);
        run.until("brutal", "ready").await;
        wait_ignores_term(run.pid("graceful"));
        wait_ignores_term(run.pid("brutal"));
        run.tree.stop();
        let events = run.rest().await;
        let (brutal, _) = exited(find(&events, "brutal", "exited"));
        assert_eq!(brutal.exit.unwrap().signal(), Some(Signal::KILL));
        assert!(brutal.term_sent_after.is_none());
        let (graceful, _) = exited(find(&events, "graceful", "exited"));
        assert_eq!(graceful.exit.unwrap().signal(), Some(Signal::KILL));
        let term = graceful.term_sent_after.unwrap();
        let kill = graceful.kill_sent_after.unwrap();
        assert!(
            kill - term >= Duration::from_millis(200),
            "{term:?} {kill:?}"
        );
    });
}

#[test]
fn output_arrives_tagged_with_the_childs_path_and_stream() {
    check(async || {
        let mut cmd = fixture_cmd(["print-then-exit", "hello", "0"]);
        cmd.grace_period(Duration::from_secs(2));
        let sub = SupervisorSpec::new()
            .child(ChildSpec::process("talk", cmd).restart(Restart::Temporary));
        let spec = SupervisorSpec::new()
            .child(ChildSpec::supervisor("sub", sub).restart(Restart::Temporary));
        let mut options = TreeOptions::new();
        let mut output = options.output(4);
        let tree = Tree::start_with(&spec, options).unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = tokio::time::timeout(HANDSHAKE, output.recv())
            .await
            .unwrap()
        {
            got.push((chunk.path.to_string(), chunk.stream, chunk.bytes, chunk.eof));
        }
        got.sort_by_key(|(_, stream, _, eof)| (*stream == Stream::Stderr, *eof));
        assert_eq!(
            got,
            [
                (
                    "sub/talk".into(),
                    Stream::Stdout,
                    b"hello\n".to_vec(),
                    false
                ),
                ("sub/talk".into(), Stream::Stdout, vec![], true),
                (
                    "sub/talk".into(),
                    Stream::Stderr,
                    b"err:hello\n".to_vec(),
                    false
                ),
                ("sub/talk".into(), Stream::Stderr, vec![], true),
            ]
        );
        assert!(matches!(*tree.wait().await, Outcome::Completed { .. }));
    });
}

#[test]
fn a_slow_output_reader_never_holds_up_a_stop() {
    check(async || {
        // `write` fills the channel and then the pipe: the child blocks.
        let cmd = fixture_cmd(["write", "10000000"]);
        let spec = SupervisorSpec::new().child(ChildSpec::process("noisy", cmd));
        let mut options = TreeOptions::new();
        let output = options.output(1);
        let tree = Tree::start_with(&spec, options).unwrap();
        tree.running().await;
        // Nobody reads `output`; the stop still completes.
        let outcome = tokio::time::timeout(HANDSHAKE, tree.shutdown())
            .await
            .unwrap();
        assert!(matches!(*outcome, Outcome::Stopped));
        drop(output);
    });
}

#[test]
fn a_program_that_cannot_be_spawned_is_a_failure_that_trips_the_limit() {
    check(async || {
        let spec = SupervisorSpec::new().intensity(2).child(
            ChildSpec::process("ghost", Command::new("/nonexistent/ghost")).backoff(Backoff::NONE),
        );
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        assert_eq!(
            only(&events, &["spawn_failed", "gave_up"]),
            [
                "ghost spawn_failed",
                "ghost spawn_failed",
                "ghost spawn_failed",
                " gave_up"
            ]
        );
        let outcome = run.tree.wait().await;
        assert!(matches!(
            &*outcome,
            Outcome::GaveUp {
                exit: ChildExit::SpawnFailed(_),
                ..
            }
        ));
        assert_eq!(
            outcome.exit_code(),
            127,
            "not found, as `childminder run` says"
        );
    });
}

#[test]
fn backoff_delays_restarts_and_reports_the_delay() {
    check(async || {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(150),
            reset_after: Duration::from_secs(10),
        };
        let crash = ChildSpec::process("crash", fx(&["sleep-exit", "0", "1"])).backoff(backoff);
        let spec = SupervisorSpec::new().intensity(2).child(crash);
        let mut run = Run::start(&spec);
        let events = run.rest().await;
        let delays: Vec<(Duration, u32)> = events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Restarting {
                    delay,
                    restart_count,
                } => Some((delay, restart_count)),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 2, "{:?}", names(&events));
        assert_eq!((delays[0].1, delays[1].1), (1, 2));
        assert!(
            delays[0].0 >= Duration::from_millis(90) && delays[0].0 <= Duration::from_millis(110)
        );
        assert!(
            delays[1].0 >= Duration::from_millis(135) && delays[1].0 <= Duration::from_millis(165)
        );
        // The restart waited its delay (the event times are wall clock).
        let restarting = find(&events, "crash", "restarting").time;
        let starts: Vec<_> = events
            .iter()
            .filter(|e| e.kind.as_str() == "starting")
            .map(|e| e.time)
            .collect();
        assert!(starts[1].duration_since(restarting).unwrap() >= delays[0].0);
    });
}

#[test]
fn the_tree_runs_on_the_callers_runtime_without_threads_of_its_own() {
    check(async || {
        let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
        let before = threads();
        let spec = SupervisorSpec::new().children((0..20).map(|i| sleeper(&format!("s{i}"))));
        let tree = Tree::start(&spec).unwrap();
        tree.running().await;
        assert!(threads() <= before + 1, "{before} -> {}", threads());
        tree.shutdown().await;
    });
}

#[test]
fn every_output_byte_arrives_in_order_per_stream() {
    check(async || {
        const BYTES: u64 = 8 << 20;
        let n = BYTES.to_string();
        let spec = SupervisorSpec::new()
            .child(
                ChildSpec::process("out", fixture_cmd(["write", &n, "out"]))
                    .restart(Restart::Temporary),
            )
            .child(
                ChildSpec::process("err", fixture_cmd(["write", &n, "err"]))
                    .restart(Restart::Temporary),
            );
        let mut options = TreeOptions::new();
        let mut output = options.output(2);
        let tree = Tree::start_with(&spec, options).unwrap();
        let mut checks = [support::PatternCheck::new(), support::PatternCheck::new()];
        let mut ends = 0;
        while let Some(chunk) = tokio::time::timeout(HANDSHAKE, output.recv())
            .await
            .unwrap()
        {
            let i = usize::from(&*chunk.path == "err");
            if chunk.eof {
                assert!(chunk.bytes.is_empty());
                ends += 1;
                continue;
            }
            let expected = [Stream::Stdout, Stream::Stderr][i];
            assert_eq!(chunk.stream, expected);
            checks[i].feed(&chunk.bytes);
        }
        // Each child's other stream is empty and ends too.
        assert_eq!(ends, 4);
        for check in &checks {
            assert_eq!((check.total, check.first_mismatch), (BYTES, None));
        }
        assert_eq!(tree.wait().await.exit_code(), 0);
    });
}

#[test]
fn a_tree_on_a_multi_thread_runtime() {
    check_multi_thread(async || {
        let mut run = Run::start(&abc(Strategy::RestForOne));
        run.until("c", "ready").await;
        kill(run.pid("a"));
        let events = run.until("c", "ready").await;
        assert_eq!(
            only(&events, &["stopping", "starting"]),
            [
                "c stopping",
                "b stopping",
                "a starting",
                "b starting",
                "c starting"
            ]
        );
        run.tree.stop();
        run.rest().await;
    });
}

/// Set in the helper process of the kill-on-parent-death test.
const TREE_HOST: &str = "CHILDMINDER_TEST_TREE_HOST";

#[test]
fn kill_on_parent_death_takes_every_process_along_when_the_host_is_killed() {
    if std::env::var_os(TREE_HOST).is_some() {
        // The helper: a tree of three processes, two levels, then wait to
        // be SIGKILLed.
        let rt = runtime();
        rt.block_on(async {
            let sub = SupervisorSpec::new().child(sleeper("x"));
            let spec = SupervisorSpec::new()
                .children([sleeper("a"), sleeper("b")])
                .child(ChildSpec::supervisor("sub", sub));
            let mut options = TreeOptions::new();
            options.kill_on_parent_death(true);
            let tree = Tree::start_with(&spec, options).unwrap();
            tree.running().await;
            let pids: Vec<String> = tree
                .status()
                .iter()
                .filter_map(|s| s.pid.map(|p| p.to_string()))
                .collect();
            println!("pids: {}", pids.join(" "));
            std::future::pending::<()>().await;
        });
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_on_parent_death_takes_every_process_along_when_the_host_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TREE_HOST, "1")
        .env(common::MARKER_VAR, common::marker_value())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = host.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            // libtest may print its own words before ours on the line.
            if let Some(at) = line.find("pids: ") {
                let _ = tx.send(line[at + "pids: ".len()..].to_owned());
            }
        }
    });
    let pids: Vec<i32> = rx
        .recv_timeout(HANDSHAKE)
        .expect("the host printed its tree's pids")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.iter().all(|&p| common::pid_alive(p)));
    host.kill().unwrap();
    host.wait().unwrap();
    reader.join().unwrap();
    support::assert_all_dead(&pids);
    leaks.assert_clean();
}

/// Caught by an acceptance run: an auto-shutdown triggered by a nested
/// supervisor, itself shut down by a process that failed, read 0: the
/// nested supervisor is judged normal (it did not give up), and a normal
/// trigger read 0. Its status is its own outcome's.
#[test]
fn an_auto_shutdown_through_a_nested_supervisor_keeps_the_failure_status() {
    check(async || {
        let inner = SupervisorSpec::new()
            .auto_shutdown(AutoShutdown::AnySignificant)
            .child(
                ChildSpec::process("x", fx(&["exit", "3"]))
                    .restart(Restart::Temporary)
                    .significant(true),
            )
            .child(sleeper("y"));
        let spec = SupervisorSpec::new()
            .auto_shutdown(AutoShutdown::AnySignificant)
            .child(
                ChildSpec::supervisor("n", inner)
                    .restart(Restart::Transient)
                    .significant(true),
            )
            .child(sleeper("z"));
        let outcome = Tree::start(&spec).unwrap().wait().await;
        assert!(
            matches!(&*outcome, Outcome::AutoShutdown { child, .. } if &**child == "n"),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), 3, "{outcome:?}");
    });
}

/// Caught by an acceptance run: a nested supervisor stopped for its start
/// timeout was reported `Supervisor(Stopped)`, status 0.
#[test]
fn a_nested_supervisor_that_timed_out_ended_of_its_start_timeout() {
    check(async || {
        let inner = SupervisorSpec::new()
            .child(ChildSpec::process("slow", fx(&["sleep", "30"])).ready(Readiness::Fd(3)));
        let spec = SupervisorSpec::new()
            .intensity(0)
            .child(ChildSpec::supervisor("n", inner).start_timeout(Duration::from_millis(300)));
        let outcome = Tree::start(&spec).unwrap().wait().await;
        match &*outcome {
            Outcome::GaveUp { child, exit } => {
                assert_eq!(&**child, "n");
                assert!(matches!(exit, ChildExit::StartTimeout(None)), "{exit:?}");
                assert_eq!(exit.exit_code(), 1);
            }
            other => panic!("{other:?}"),
        }
    });
}

/// Caught by an acceptance run: `kill()` during an orderly stop ended the
/// tree `Stopped`, and the child being stopped got a second `stopping`.
#[test]
fn a_kill_during_a_stop_ends_the_tree_killed_with_one_stopping_per_child() {
    check(async || {
        let mut slow = fx(&["ignore-term", "30"]);
        slow.grace_period(Duration::from_secs(20));
        let spec = SupervisorSpec::new()
            .child(sleeper("a"))
            .child(ChildSpec::process("slow", slow).backoff(Backoff::NONE));
        let mut run = Run::start(&spec);
        run.tree.running().await;
        wait_ignores_term(run.pid("slow"));
        run.tree.stop();
        run.until("slow", "stopping").await;
        run.tree.kill();
        let rest = run.rest().await;
        let stoppings = run
            .log
            .iter()
            .filter(|e| &*e.path == "slow" && e.kind.as_str() == "stopping")
            .count();
        assert_eq!(stoppings, 1, "{:?}", names(&rest));
        assert!(
            matches!(&*run.tree.wait().await, Outcome::Killed),
            "{:?}",
            names(&rest)
        );
    });
}

/// Right after `shutdown().await` the root's task still held its receiver,
/// so the control calls were taken (and dropped) with `Ok` instead of
/// `NotRunning` (an acceptance run, 17 times in 20).
#[test]
fn control_calls_after_the_tree_ended_are_not_running() {
    // Multi-threaded, as the run that caught it: the root's task ends on
    // another worker while the caller goes on.
    check_multi_thread(async || {
        for _ in 0..20 {
            let tree = Tree::start(&SupervisorSpec::new().child(sleeper("a"))).unwrap();
            tree.running().await;
            tree.shutdown().await;
            for call in [Tree::stop_child, Tree::start_child, Tree::restart_child] {
                assert!(
                    matches!(call(&tree, "a"), Err(ControlError::NotRunning(p)) if p == "a"),
                    "a control call after the end"
                );
            }
        }
    });
}
