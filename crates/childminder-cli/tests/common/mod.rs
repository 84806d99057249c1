//! What the tests of the real `childminder` binary share: starting it with
//! the signals at their defaults, talking to it (its stdout lines, signals),
//! collecting what it left, reports, and /proc checks.
//!
//! Each test file uses part of it.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any single childminder run may take before the test gives up.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// The binary, with INT, TERM, HUP and QUIT at their defaults whatever the
/// test runner left them at (childminder keeps ignored signals ignored),
/// and no core files (a child ended by SIGQUIT would write one).
pub fn childminder() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_childminder"));
    // SAFETY: signal() and setrlimit() are async-signal-safe; nothing else
    // runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            Ok(())
        });
    }
    cmd
}

/// What a finished run left.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.code.unwrap_or_else(|| {
            panic!(
                "childminder died of signal {:?}; stderr: {}",
                self.signal, self.stderr
            )
        })
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A childminder process the test talks to.
pub struct Running {
    pub child: Child,
    pub stdout: Option<BufReader<ChildStdout>>,
    pub stdout_reader: Option<JoinHandle<Vec<u8>>>,
    pub stderr: Option<JoinHandle<Vec<u8>>>,
    pub started: Instant,
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        Running::start_with(childminder().args(args).stdin(Stdio::null()))
    }

    pub fn start_with(cmd: &mut Command) -> Running {
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start childminder");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        Running {
            child,
            stdout: Some(stdout),
            stdout_reader: None,
            stderr: Some(stderr),
            started,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next line of childminder's stdout (the child's), without `\n`.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        assert!(n > 0, "childminder's stdout ended before a line came");
        line.trim_end_matches('\n').to_owned()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with integers; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Copies childminder's stdout in the background from now on, so a
    /// large stream cannot fill the pipe while the test does something else.
    pub fn drain_stdout(&mut self) {
        let mut stdout = self.stdout.take().unwrap();
        self.stdout_reader = Some(std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        }));
    }

    /// Waits for childminder to end (killing it after [`WATCHDOG`]) and
    /// collects the rest of its output.
    pub fn finish(mut self) -> Finished {
        if self.stdout.is_some() {
            self.drain_stdout();
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > WATCHDOG {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("childminder still running after {WATCHDOG:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        Finished {
            code: status.code(),
            signal: status.signal(),
            stdout: self.stdout_reader.take().unwrap().join().unwrap(),
            stderr: String::from_utf8_lossy(&self.stderr.take().unwrap().join().unwrap())
                .into_owned(),
            elapsed,
        }
    }
}

/// Runs childminder to its end with empty stdin.
pub fn run(args: &[&str]) -> Finished {
    Running::start(args).finish()
}

/// A fresh path under the target's temporary directory.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!(
        "cli-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs childminder with `--report FILE` added in front and returns the
/// run and the parsed report.
pub fn run_with_report(args: &[&str]) -> (Finished, Value) {
    let path = temp_path("report.json");
    let mut full = vec!["run", "--report", path.to_str().unwrap()];
    full.extend_from_slice(&args[1..]);
    assert_eq!(args[0], "run");
    let finished = run(&full);
    let text = fs::read_to_string(&path).expect("report written");
    let _ = fs::remove_file(&path);
    let report =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}): {text}"));
    (finished, report)
}

/// The report written with `--report -`: the last line of stderr (the
/// child's own stderr comes before it).
pub fn last_line_json(stderr: &str) -> Value {
    let line = stderr.trim_end().lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no report ({e}) in {stderr}"))
}

/// The state letter of /proc/PID/stat, or `None` when there is no such
/// process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Waits up to 2 s for `pid` to be gone (a zombie counts as gone: an
/// orphan may take a moment to be reaped by init). Kills it if not.
pub fn assert_dies(pid: u32, what: &str) {
    let start = Instant::now();
    loop {
        match proc_state(pid) {
            None | Some('Z') | Some('X') => return,
            Some(_) if start.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Some(state) => {
                // SAFETY: kill with integers; best-effort cleanup.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("{what} (pid {pid}) is still alive (state {state})");
            }
        }
    }
}
