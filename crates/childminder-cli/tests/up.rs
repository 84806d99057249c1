//! End-to-end tests of `childminder up` against the real binary.
//!
//! Each test writes a Procfile or a childminder.toml into a directory of
//! its own and runs `childminder up` there. Tests synchronise on what the
//! processes print or on `--events -` lines (a handshake), never on sleeps;
//! time bounds are generous, the machines are noisy.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::assert_dies;

/// Longest any wait of a test may take before it fails.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A fresh, empty directory for one test.
fn test_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "up-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `childminder up`: its stdout and stderr lines arrive on
/// channels as they are printed, and are kept for the end.
struct Up {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    stdout_all: Arc<Mutex<Vec<String>>>,
    stderr_all: Arc<Mutex<Vec<String>>>,
}

/// A test that fails part-way (a line or an event that never came) must
/// not leave `up` running, with what it started: some runs of a flaky
/// draft left eleven behind for an hour.
impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished `up` left.
#[derive(Debug)]
struct Finished {
    code: i32,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Finished {
    /// The `--events -` lines, parsed.
    fn events(&self) -> Vec<Value> {
        self.stderr
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// `(process, event)` of every event, in order.
    fn event_names(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .map(|e| {
                (
                    e["process"].as_str().unwrap().to_owned(),
                    e["event"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn reader(
    stream: impl std::io::Read + Send + 'static,
    all: Arc<Mutex<Vec<String>>>,
) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = channel();
    let thread = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            all.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (rx, thread)
}

impl Up {
    fn start(dir: &Path, args: &[&str]) -> Up {
        Up::start_env(dir, args, &[])
    }

    fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Up {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_childminder"));
        cmd.arg("up")
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: signal() is async-signal-safe; nothing else runs in the
        // child. The test runner may have left INT/TERM/HUP ignored, and
        // childminder keeps ignored signals ignored.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start childminder up");
        let stdout_all = Arc::new(Mutex::new(Vec::new()));
        let stderr_all = Arc::new(Mutex::new(Vec::new()));
        let (stdout, out_thread) = reader(child.stdout.take().unwrap(), stdout_all.clone());
        let (stderr, err_thread) = reader(child.stderr.take().unwrap(), stderr_all.clone());
        Up {
            child,
            stdout,
            stderr,
            readers: vec![out_thread, err_thread],
            stdout_all,
            stderr_all,
        }
    }

    /// Waits for a stdout line that `wanted` accepts.
    fn wait_stdout(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("no such stdout line ({e}); stderr: {:?}", self.stderr_all),
            }
        }
    }

    /// Waits for one stdout line matching each of `wanted`, in whatever
    /// order they arrive (processes started one after the other may still
    /// print in either order), and returns them in the order of `wanted`.
    fn wait_stdout_each(&self, wanted: &[&dyn Fn(&str) -> bool]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; wanted.len()];
        while found.iter().any(Option::is_none) {
            let line =
                self.wait_stdout(|l| wanted.iter().zip(&found).any(|(w, f)| f.is_none() && w(l)));
            let i = (0..wanted.len())
                .find(|&i| found[i].is_none() && wanted[i](&line))
                .expect("wait_stdout returned a wanted line");
            found[i] = Some(line);
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Waits for the `--events -` line of `event` for `process`.
    fn wait_event(&self, process: &str, event: &str) -> Value {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "no {event} event of {process} ({e}); stderr: {:?}",
                    self.stderr_all
                )
            });
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if value["process"] == process && value["event"] == event {
                    return value;
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill with integers; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn finish(mut self) -> Finished {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > WATCHDOG {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("childminder up still running after {WATCHDOG:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stderr = self.stderr_all.lock().unwrap().clone();
        let code = status
            .code()
            .unwrap_or_else(|| panic!("childminder up died of a signal: {status:?}; {stderr:?}"));
        Finished {
            code,
            stdout: self.stdout_all.lock().unwrap().clone(),
            stderr,
        }
    }
}

/// Runs `up` in `dir` to its end.
fn run(dir: &Path, args: &[&str]) -> Finished {
    Up::start(dir, args).finish()
}

/// The pid a process printed as `NAME | pid=N`.
fn printed_pid(line: &str) -> u32 {
    line.rsplit_once("pid=").unwrap().1.trim().parse().unwrap()
}

// ---------------------------------------------------------------------------
// Procfile
// ---------------------------------------------------------------------------

/// Caught by an acceptance run: "aa exited with code 0" (stderr, from the
/// event loop) was printed before `aa | hi` and `aa | bye` (stdout, from
/// the output thread) three times in three when `aa` wrote and exited at
/// once. Both streams go to one pipe here, as on a terminal.
#[test]
fn a_process_end_message_comes_after_its_last_lines() {
    let dir = test_dir("end-after-lines");
    fs::write(
        dir.join("Procfile"),
        "aa: echo hi; echo bye\nb: exec sleep 60\n",
    )
    .unwrap();
    for round in 0..3 {
        let (mut read, write) = std::io::pipe().unwrap();
        let mut up = common::childminder()
            .arg("up")
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(write.try_clone().unwrap())
            .stderr(write)
            .spawn()
            .unwrap();
        let mut all = String::new();
        std::io::Read::read_to_string(&mut read, &mut all).unwrap();
        up.wait().unwrap();
        let at = |needle: &str| {
            all.find(needle)
                .unwrap_or_else(|| panic!("round {round}: no {needle:?} in:\n{all}"))
        };
        assert!(at("aa | bye") < at("aa exited"), "round {round}:\n{all}");
    }
}

/// A review caught the first version of the wait above run one after the
/// other: six processes that ended together, each leaving a process that
/// held its stdout (so the wait ran out), had their messages 500 ms apart,
/// and a TERM waited behind them. The waits now run together, and signals
/// are served meanwhile.
#[test]
fn end_messages_that_wait_for_output_wait_together() {
    let dir = test_dir("ends-together");
    let mut toml = String::from(
        "auto_shutdown = \"never\"\n[[process]]\nname = \"keep\"\ncommand = \"exec sleep 30\"\n",
    );
    for n in 1..=6 {
        toml.push_str(&format!(
            "[[process]]\nname = \"p{n}\"\nrestart = \"temporary\"\n\
             command = \"setsid sleep 30 & echo hi{n}; until [ -e go ]; do sleep 0.01; done\"\n"
        ));
    }
    fs::write(dir.join("childminder.toml"), toml).unwrap();
    let mut up = common::childminder()
        .arg("up")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Every process has started once all six said hi: let them go.
    let stdout = std::io::BufReader::new(up.stdout.take().unwrap());
    let mut said_hi = 0;
    for line in std::io::BufRead::lines(stdout) {
        said_hi += usize::from(line.unwrap().contains("| hi"));
        if said_hi == 6 {
            break;
        }
    }
    fs::write(dir.join("go"), "").unwrap();
    let stderr = std::io::BufReader::new(up.stderr.take().unwrap());
    let mut lines = std::io::BufRead::lines(stderr);
    let mut exits = Vec::new();
    while exits.len() < 6 {
        let line = lines.next().expect("up's stderr ended").unwrap();
        if line.contains(" exited with code 0") {
            exits.push(std::time::Instant::now());
        }
    }
    let spread = exits[5] - exits[0];
    // SAFETY: kill takes integers; the pid is our unreaped child's.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let status = up.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        spread < std::time::Duration::from_millis(1500),
        "six end messages spread over {spread:?} (2.5 s when the waits ran one after the other)"
    );
}

#[test]
fn procfile_lines_are_prefixed_and_one_end_stops_all_with_its_status() {
    let dir = test_dir("procfile");
    fs::write(
        dir.join("Procfile"),
        "# a comment\n\nweb: echo pid=$$; exec sleep 30\n\
         worker: echo started >&2; until [ -e go ]; do sleep 0.01; done; exit 3\n",
    )
    .unwrap();
    let up = Up::start(&dir, &[]);
    let lines = up.wait_stdout_each(&[&|l| l.starts_with("web    | pid="), &|l| {
        l == "worker | started"
    }]);
    let web = printed_pid(&lines[0]);
    fs::write(dir.join("go"), "").unwrap();
    let out = up.finish();
    assert_eq!(out.code, 3, "{out:?}");
    assert_dies(web, "web");
    assert!(
        out.stderr
            .iter()
            .any(|l| l == "childminder: worker exited with code 3"),
        "{out:?}"
    );
}

#[test]
fn interleaved_partial_lines_stay_whole() {
    let dir = test_dir("partial");
    // a writes half a line, b writes whole lines while a's half waits, then
    // a finishes its line: a's line comes out whole, after b's.
    fs::write(
        dir.join("Procfile"),
        "a: printf 'par'; touch half; until [ -e b-done ]; do sleep 0.01; done; printf 'tial\\nend'\n\
         bb: until [ -e half ]; do sleep 0.01; done; printf 'one\\ntwo\\n'; touch b-done; exec sleep 30\n",
    )
    .unwrap();
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let a_lines: Vec<&String> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with("a  | "))
        .collect();
    assert_eq!(a_lines, ["a  | partial", "a  | end"], "{out:?}");
    let pos = |line: &str| out.stdout.iter().position(|l| l == line).unwrap();
    assert!(pos("bb | one") < pos("bb | two"));
    assert!(pos("bb | two") < pos("a  | partial"), "{out:?}");
}

#[test]
fn a_partial_line_is_printed_after_a_second_and_the_rest_on_its_own_line() {
    let dir = test_dir("wait");
    fs::write(
        dir.join("Procfile"),
        "p: printf 'Password: '; until [ -e go ]; do sleep 0.01; done; printf 'ok\\n'; exec sleep 30\n",
    )
    .unwrap();
    let up = Up::start(&dir, &[]);
    let started = Instant::now();
    up.wait_stdout(|l| l == "p | Password: ");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    fs::write(dir.join("go"), "").unwrap();
    up.wait_stdout(|l| l == "p | ok");
    up.signal(libc::SIGTERM);
    assert_eq!(up.finish().code, 0);
}

#[test]
fn names_start_only_those_entries() {
    let dir = test_dir("names");
    fs::write(
        dir.join("Procfile"),
        "a: echo a-ran\nb: echo b-ran\nlongname: echo c-ran\n",
    )
    .unwrap();
    let out = run(&dir, &["b"]);
    assert_eq!(out.code, 0, "{out:?}");
    // The padding is the longest name among those started.
    assert_eq!(out.stdout, ["b | b-ran"]);
    let out = run(&dir, &["nope"]);
    assert_eq!(out.code, 125);
    assert!(out.stderr.iter().any(|l| l.contains("\"nope\"")), "{out:?}");
}

#[test]
fn stdout_and_stderr_lines_of_many_writes_are_all_there_in_order() {
    let dir = test_dir("many");
    fs::write(
        dir.join("Procfile"),
        "out: i=0; while [ $i -lt 2000 ]; do echo \"o$i\"; i=$((i+1)); done; exec sleep 30\n\
         err: i=0; while [ $i -lt 2000 ]; do echo \"e$i\" >&2; i=$((i+1)); done; exec sleep 30\n",
    )
    .unwrap();
    let up = Up::start(&dir, &[]);
    let last = up.wait_stdout(|l| l == "err | e1999" || l == "out | o1999");
    let other = if last.starts_with("err") {
        "out | o1999"
    } else {
        "err | e1999"
    };
    up.wait_stdout(|l| l == other);
    up.signal(libc::SIGTERM);
    let out = up.finish();
    assert_eq!(out.code, 0);
    let outs: Vec<String> = out
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("out | ").map(str::to_owned))
        .collect();
    let errs: Vec<String> = out
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("err | ").map(str::to_owned))
        .collect();
    assert_eq!(outs, (0..2000).map(|i| format!("o{i}")).collect::<Vec<_>>());
    assert_eq!(errs, (0..2000).map(|i| format!("e{i}")).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// TOML
// ---------------------------------------------------------------------------

#[test]
fn toml_restarts_then_gives_up_with_the_tripping_status_and_events() {
    let dir = test_dir("giveup");
    fs::write(
        dir.join("childminder.toml"),
        r#"
intensity = 2
period = "1m"

[[process]]
name = "flaky"
command = ["sh", "-c", "echo try; exit 4"]
backoff = { initial = "10ms", max = "20ms" }
"#,
    )
    .unwrap();
    let out = run(&dir, &["--events", "-"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert_eq!(out.stdout, ["flaky | try"; 3]);
    let events = out.events();
    let starting = &events[0];
    assert_eq!(starting["process"], "flaky");
    assert_eq!(starting["event"], "starting");
    assert_eq!(starting["pid"], Value::Null);
    let time = starting["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "{time}"
    );
    let exited: Vec<&Value> = events.iter().filter(|e| e["event"] == "exited").collect();
    assert_eq!(exited.len(), 3);
    for e in &exited {
        assert_eq!(e["exit"], serde_json::json!({"code": 4}));
        assert_eq!(e["termination"], "clean");
        assert_eq!(e["verdict"], "abnormal");
        assert!(e["pid"].as_u64().is_some());
    }
    let restarts: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["event"] == "restarting")
        .map(|e| {
            (
                e["restart_count"].as_u64().unwrap(),
                e["restart_in_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(restarts.len(), 2, "{events:?}");
    assert_eq!((restarts[0].0, restarts[1].0), (1, 2));
    assert!((9..=11).contains(&restarts[0].1), "{restarts:?}");
    assert!((18..=22).contains(&restarts[1].1), "{restarts:?}");
    let gave_up = events.iter().find(|e| e["event"] == "gave_up").unwrap();
    assert_eq!(gave_up["process"], "");
    assert_eq!(gave_up["child"], "flaky");
    assert!(
        out.stderr.iter().any(|l| l.contains("gave up")),
        "{:?}",
        out.stderr
    );
}

#[test]
fn toml_nested_two_levels_completes_with_the_first_failure() {
    let dir = test_dir("nested");
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(
        dir.join("childminder.toml"),
        r#"
[[process]]
name = "first"
command = "echo $GREETING from $(basename $(pwd))"
restart = "temporary"
env = { GREETING = "hello" }
cwd = "sub"

[[process]]
name = "group"
restart = "temporary"

  [[process.process]]
  name = "ok"
  command = "exit 3"
  restart = "transient"
  success_exit_codes = [0, 3]

  [[process.process]]
  name = "bad"
  command = "exit 5"
  restart = "temporary"
"#,
    )
    .unwrap();
    let out = run(&dir, &["--events", "-"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stdout
            .contains(&"first     | hello from sub".to_owned()),
        "{out:?}"
    );
    let names = out.event_names();
    assert!(
        names.contains(&("group/ok".into(), "exited".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&("group/bad".into(), "exited".into())),
        "{names:?}"
    );
    let finished = out.events().into_iter().last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["outcome"], "completed");
}

#[test]
fn toml_all_succeeding_is_zero() {
    let dir = test_dir("allok");
    fs::write(
        dir.join("jobs.toml"),
        "[[process]]\nname = \"a\"\ncommand = \"true\"\nrestart = \"temporary\"\n\
         [[process]]\nname = \"b\"\ncommand = [\"true\"]\nrestart = \"transient\"\n",
    )
    .unwrap();
    assert_eq!(run(&dir, &["-f", "jobs.toml"]).code, 0);
}

/// Found in acceptance: `up > /dev/full` exited 0 with nothing said, the
/// output silently lost (`run` says so and exits 125). A closed reader
/// (`| head`) stays no failure.
#[test]
fn output_that_cannot_be_written_is_said_and_a_success_becomes_125() {
    let dir = test_dir("devfull");
    fs::write(dir.join("Procfile"), "a: echo started-a\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_childminder"))
        .arg("up")
        .current_dir(&dir)
        .stdout(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("writing the output failed: No space left on device"),
        "{stderr}"
    );
    let mut closed = Command::new(env!("CARGO_BIN_EXE_childminder"))
        .arg("up")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    assert_eq!(
        closed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    assert!(!String::from_utf8_lossy(&closed.stderr).contains("writing the output failed"));
}

#[test]
fn a_group_of_temporary_processes_runs_once_and_is_zero() {
    // Caught by an acceptance run: a nested supervisor, `permanent` by
    // default, completed when its temporary processes had run and was run
    // again, and again, until the top's intensity gave up: exit 1.
    let dir = test_dir("group-once");
    fs::write(
        dir.join("childminder.toml"),
        "[[process]]\nname = \"group\"\n\
         [[process.process]]\nname = \"once\"\nrestart = \"temporary\"\n\
         command = \"echo ran once\"\n",
    )
    .unwrap();
    let out = run(&dir, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let runs = out
        .stdout
        .iter()
        .filter(|l| l.ends_with("ran once"))
        .count();
    assert_eq!(runs, 1, "{out:?}");
}

#[test]
fn a_missing_program_is_127_and_a_start_timeout_1() {
    let dir = test_dir("startfail");
    fs::write(
        dir.join("childminder.toml"),
        "auto_shutdown = \"any_significant\"\n[[process]]\nname = \"x\"\n\
         command = [\"/no/such/program\"]\nrestart = \"temporary\"\nsignificant = true\n",
    )
    .unwrap();
    let out = run(&dir, &["--events", "-"]);
    assert_eq!(out.code, 127, "{out:?}");
    assert!(
        out.event_names()
            .contains(&("x".into(), "spawn_failed".into()))
    );

    fs::write(
        dir.join("childminder.toml"),
        "intensity = 0\n[[process]]\nname = \"slow\"\ncommand = \"exec sleep 30\"\n\
         ready = { fd = 3 }\nstart_timeout = \"200ms\"\n",
    )
    .unwrap();
    let out = run(&dir, &[]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn readiness_orders_the_start() {
    let dir = test_dir("ready");
    fs::write(
        dir.join("childminder.toml"),
        r#"
[[process]]
name = "db"
command = "until [ -e go ]; do sleep 0.01; done; echo up >&3; exec sleep 30"
ready = { fd = 3 }

[[process]]
name = "web"
command = "echo web-started; exec sleep 30"
"#,
    )
    .unwrap();
    let up = Up::start(&dir, &["--events", "-"]);
    up.wait_event("db", "starting");
    fs::write(dir.join("go"), "").unwrap();
    up.wait_event("db", "ready");
    up.wait_event("web", "starting");
    up.wait_stdout(|l| l == "web | web-started");
    up.signal(libc::SIGINT);
    let out = up.finish();
    assert_eq!(out.code, 0, "{out:?}");
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

#[test]
fn int_stops_in_reverse_order_and_exits_0() {
    let dir = test_dir("int");
    fs::write(
        dir.join("childminder.toml"),
        "[[process]]\nname = \"a\"\ncommand = \"echo pid=$$; exec sleep 30\"\n\
         [[process]]\nname = \"b\"\ncommand = \"echo pid=$$; exec sleep 30\"\n",
    )
    .unwrap();
    let up = Up::start(&dir, &["--events", "-"]);
    let lines = up.wait_stdout_each(&[&|l| l.starts_with("a | pid="), &|l| {
        l.starts_with("b | pid=")
    }]);
    let (a, b) = (printed_pid(&lines[0]), printed_pid(&lines[1]));
    up.wait_event("b", "ready");
    up.signal(libc::SIGINT);
    let out = up.finish();
    assert_eq!(out.code, 0, "{out:?}");
    let names = out.event_names();
    let at = |p: &str, e: &str| {
        names
            .iter()
            .position(|(pp, ee)| pp == p && ee == e)
            .unwrap_or_else(|| panic!("no {e} of {p}: {names:?}"))
    };
    assert!(at("b", "stopping") < at("a", "stopping"), "{names:?}");
    assert!(at("b", "exited") < at("a", "stopping"), "{names:?}");
    assert_dies(a, "a");
    assert_dies(b, "b");
}

#[test]
fn a_second_term_kills_at_once() {
    let dir = test_dir("term2");
    fs::write(
        dir.join("childminder.toml"),
        "[[process]]\nname = \"stubborn\"\ngrace = \"1m\"\n\
         command = \"trap '' TERM; echo pid=$$; while :; do sleep 0.05; done\"\n",
    )
    .unwrap();
    let up = Up::start(&dir, &["--events", "-"]);
    let pid = printed_pid(&up.wait_stdout(|l| l.contains("pid=")));
    two_terms_end_it_all(up, "stubborn", pid, "stubborn");
}

/// TERM to `up`, and once `stopping` is being stopped, a second TERM: `up`
/// ends with 0 long before the one-minute grace, and `pid` is gone.
fn two_terms_end_it_all(up: Up, stopping: &str, pid: u32, what: &str) {
    up.signal(libc::SIGTERM);
    up.wait_event(stopping, "stopping");
    let second = Instant::now();
    up.signal(libc::SIGTERM);
    let out = up.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        second.elapsed() < Duration::from_secs(30),
        "the grace (1 min) was waited for: {:?}",
        second.elapsed()
    );
    assert_dies(pid, what);
}

#[test]
fn a_second_term_kills_an_escapee_at_once_too() {
    // Caught by an acceptance run: the second TERM killed the tree's
    // processes, but a daemon that had left a process's group and ignored
    // TERM was given the rest of the grace (here a minute) before SIGKILL.
    // `d` exits only once its daemon is in a session of its own (it wrote
    // its pid), so the sweep of d's group cannot catch it before.
    let dir = test_dir("term2-escapee");
    let pidfile = dir.join("daemon.pid");
    fs::write(
        dir.join("childminder.toml"),
        format!(
            r#"[[process]]
name = "w"
grace = "1m"
command = "exec sleep 300"
[[process]]
name = "d"
restart = "temporary"
command = '''setsid sh -c 'trap "" TERM; echo $$ > {pid}; exec sleep 301' & while [ ! -s {pid} ]; do :; done'''
"#,
            pid = pidfile.display()
        ),
    )
    .unwrap();
    let up = Up::start(&dir, &["--events", "-"]);
    up.wait_event("d", "exited");
    let daemon: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    two_terms_end_it_all(up, "w", daemon, "the escapee");
}

#[test]
fn hup_is_forwarded_to_every_process() {
    let dir = test_dir("hup");
    fs::write(
        dir.join("Procfile"),
        "a: trap 'echo got-hup; exit 0' HUP; echo ready; while :; do sleep 0.05; done\n",
    )
    .unwrap();
    let up = Up::start(&dir, &[]);
    up.wait_stdout(|l| l == "a | ready");
    up.signal(libc::SIGHUP);
    up.wait_stdout(|l| l == "a | got-hup");
    assert_eq!(up.finish().code, 0);
}

#[test]
fn nothing_outlives_a_killed_up() {
    let dir = test_dir("kill9");
    fs::write(dir.join("Procfile"), "a: echo pid=$$; exec sleep 30\n").unwrap();
    let mut up = Up::start(&dir, &[]);
    let pid = printed_pid(&up.wait_stdout(|l| l.contains("pid=")));
    up.signal(libc::SIGKILL);
    let _ = up.child.wait();
    assert_dies(pid, "a");
}

// ---------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------

/// Caught by an acceptance run: the rules the library checks after the
/// file is read (a zero period, a significant permanent process, a
/// significant one under `auto_shutdown = "never"`, a backoff whose initial
/// is above its max) said `invalid configuration: ...` with no file, line
/// or key, where the README promises `FILE:LINE: KEY:` for every error.
#[test]
fn errors_found_after_parsing_still_name_file_line_and_key() {
    let dir = test_dir("spec-errors");
    let process = "[[process]]\nname = \"svc\"\ncommand = \"touch ran\"\n";
    for (extra_top, extra, expected) in [
        (
            "period = \"0s\"\n",
            "",
            "childminder.toml:1: period: period must be greater than zero",
        ),
        (
            "",
            "significant = true\n",
            "childminder.toml:4: svc: significant: a significant child must be transient",
        ),
        (
            "",
            "restart = \"transient\"\nsignificant = true\n",
            "childminder.toml:5: svc: significant: a significant child needs auto_shutdown",
        ),
        (
            "",
            "backoff = { initial = \"10s\", max = \"1s\" }\n",
            "childminder.toml:4: svc: backoff: backoff initial 10s is above max 1s",
        ),
    ] {
        fs::write(
            dir.join("childminder.toml"),
            format!("{extra_top}{process}{extra}"),
        )
        .unwrap();
        let out = run(&dir, &[]);
        assert_eq!(out.code, 125, "{out:?}");
        assert!(
            out.stderr[0].starts_with(&format!("childminder: {expected}")),
            "{out:?}"
        );
        assert!(!dir.join("ran").exists());
    }
}

#[test]
fn config_errors_are_125_with_file_line_and_key_and_nothing_runs() {
    let dir = test_dir("errors");
    fs::write(
        dir.join("childminder.toml"),
        "strategy = \"one_for_one\"\n\n[[process]]\nname = \"web\"\ncommand = \"touch ran\"\nrestrat = \"permanent\"\n",
    )
    .unwrap();
    let out = run(&dir, &[]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr[0].starts_with("childminder: childminder.toml:6: restrat: unknown key"),
        "{out:?}"
    );
    assert!(!dir.join("ran").exists());

    fs::write(
        dir.join("childminder.toml"),
        "[[process]]\nname = \"web\"\ncommand = \"touch ran\"\ngrace = \"1m30\"\n",
    )
    .unwrap();
    let out = run(&dir, &[]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr[0].starts_with("childminder: childminder.toml:4: grace: invalid duration"),
        "{out:?}"
    );

    fs::write(dir.join("Procfile.dev"), "web: touch ran\nweb touch ran\n").unwrap();
    let out = run(&dir, &["-f", "Procfile.dev"]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr[0].starts_with("childminder: Procfile.dev:2: expected `name: command`"),
        "{out:?}"
    );
    assert!(!dir.join("ran").exists());

    let empty = test_dir("none");
    let out = run(&empty, &[]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr[0].contains("no childminder.toml or Procfile"),
        "{out:?}"
    );

    let out = run(&dir, &["-f", "missing.toml"]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr[0].starts_with("childminder: missing.toml: cannot read it"),
        "{out:?}"
    );

    let out = run(
        &dir,
        &["--events", "/no/such/dir/events", "-f", "Procfile.dev"],
    );
    assert_eq!(out.code, 125);
}

#[test]
fn events_go_to_a_file_flushed_as_they_happen() {
    let dir = test_dir("eventsfile");
    fs::write(dir.join("Procfile"), "a: echo hi; exec sleep 30\n").unwrap();
    let up = Up::start(&dir, &["--events", "events.jsonl"]);
    up.wait_stdout(|l| l == "a | hi");
    // The file already holds `starting` and `ready` while `a` runs.
    let text = fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "starting");
    up.signal(libc::SIGTERM);
    assert_eq!(up.finish().code, 0);
    let text = fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exited = events.iter().find(|e| e["event"] == "exited").unwrap();
    assert_eq!(exited["verdict"], "requested");
    assert_eq!(exited["exit"]["signal_name"], "SIGTERM");
    assert_eq!(exited["termination"], "escalated");
    assert_eq!(events.last().unwrap()["outcome"], "stopped");
}

#[test]
fn no_colour_when_not_a_terminal_even_without_no_color() {
    let dir = test_dir("colour");
    fs::write(dir.join("Procfile"), "a: echo plain\n").unwrap();
    let out = Up::start_env(&dir, &[], &[]).finish();
    assert_eq!(out.stdout, ["a | plain"]);
}

#[test]
fn usr1_is_forwarded_and_up_stays() {
    let dir = test_dir("usr1");
    fs::write(
        dir.join("childminder.toml"),
        "[[process]]\nname = \"a\"\n\
         command = \"trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.05; done\"\n",
    )
    .unwrap();
    let up = Up::start(&dir, &[]);
    up.wait_stdout(|l| l == "a | ready");
    up.signal(libc::SIGUSR1);
    up.wait_stdout(|l| l == "a | got-usr1");
    up.signal(libc::SIGTERM);
    assert_eq!(up.finish().code, 0);
}

/// Caught by an acceptance run: a `setsid` escapee of a process outlived
/// an orderly end of `up`. `up` is a subreaper: the escapee is ended with
/// the tree.
#[test]
fn an_escapee_of_a_process_does_not_outlive_up() {
    let dir = test_dir("escapee");
    fs::write(
        dir.join("childminder.toml"),
        "auto_shutdown = \"any_significant\"\n[[process]]\nname = \"a\"\n\
         command = \"setsid sh -c 'echo pid=$$; exec sleep 300 >/dev/null 2>&1' & \
         until [ -e go ]; do sleep 0.01; done\"\n\
         restart = \"temporary\"\nsignificant = true\n",
    )
    .unwrap();
    let up = Up::start(&dir, &[]);
    let escapee = printed_pid(&up.wait_stdout(|l| l.contains("pid=")));
    fs::write(dir.join("go"), "").unwrap();
    let out = up.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_dies(escapee, "the escapee");
}

/// Caught by an acceptance run: a program not on `PATH`, found so by the
/// check before anything starts, was 125 ("invalid configuration") where
/// a missing absolute path is 127. Both are 127 now, and nothing starts.
#[test]
fn a_program_not_on_path_is_127_before_anything_starts() {
    let dir = test_dir("notonpath");
    fs::write(
        dir.join("childminder.toml"),
        "[[process]]\nname = \"first\"\ncommand = \"touch started\"\nrestart = \"temporary\"\n\
         [[process]]\nname = \"x\"\ncommand = [\"no-such-program-childminder-test\"]\n",
    )
    .unwrap();
    let out = run(&dir, &[]);
    assert_eq!(out.code, 127, "{out:?}");
    assert!(
        out.stderr.iter().any(|l| l.contains("not found on PATH")),
        "{out:?}"
    );
    assert!(!dir.join("started").exists());
}

/// Caught by an acceptance run: a process its supervisor stopped (here by
/// the auto-shutdown, `up` having received no signal) was reported with
/// `escalation_cause: "signal"`.
#[test]
fn a_process_the_supervisor_stopped_has_the_supervisor_as_its_escalation_cause() {
    let dir = test_dir("stopcause");
    fs::write(
        dir.join("childminder.toml"),
        "auto_shutdown = \"any_significant\"\n\
         [[process]]\nname = \"server\"\ncommand = \"exec sleep 30\"\n\
         [[process]]\nname = \"job\"\ncommand = \"exit 0\"\nrestart = \"temporary\"\n\
         significant = true\n",
    )
    .unwrap();
    let out = run(&dir, &["--events", "-"]);
    assert_eq!(out.code, 0, "{out:?}");
    let stopped = out
        .events()
        .into_iter()
        .find(|e| e["process"] == "server" && e["event"] == "exited")
        .unwrap_or_else(|| panic!("no exited event of server: {out:?}"));
    assert_eq!(stopped["verdict"], "requested", "{stopped}");
    assert_eq!(stopped["escalation_cause"], "supervisor", "{stopped}");
}
