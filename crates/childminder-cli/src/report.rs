//! The JSON report of `childminder run --report`.
//!
//! It is an interface: scripts parse it. Keys are only ever added, never
//! renamed or removed, and a key's type never changes. One object:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `program` | string | the program as given |
//! | `args` | array of strings | its arguments (non-UTF-8 bytes replaced by U+FFFD) |
//! | `pid` | number or null | the child's pid; null when it could not be started |
//! | `exit` | object or null | `{"code": N}`, or `{"signal": N, "signal_name": "SIGTERM", "core_dumped": false}`, or null when no exit was observed |
//! | `termination` | string | `"clean"` (nothing was sent to the child), `"escalated"` (childminder sent the first signal or SIGKILL), `"indeterminate"` (no exit observed) |
//! | `timed_out` | bool | the deadline (`--timeout`) started the escalation |
//! | `escalation_cause` | string or null | what started the escalation: `"deadline"`, `"signal"` (childminder received one), `"teardown"`, or null |
//! | `term_sent_after_ms` | number or null | when the first signal was sent, in ms after the start |
//! | `kill_sent_after_ms` | number or null | when SIGKILL was sent, in ms after the start |
//! | `runtime_ms` | number | from the start to the child's exit |
//! | `user_cpu_ms`, `system_cpu_ms` | number or null | CPU time the child (with the descendants it waited for) spent in user mode and in the kernel, from the kernel at its exit; null when no exit was observed |
//! | `max_rss_bytes` | number or null | the child's peak resident memory (the largest of it and its waited-for descendants), likewise; also null for a command smaller than childminder, whose own peak the kernel does not tell apart (see `ResourceUsage::max_rss`) |
//! | `stdout_bytes`, `stderr_bytes` | number or null | bytes copied out; null with `--inherit-stdio` |
//! | `output_cut_off` | bool | something (a grandchild) kept the output open past the grace period after the child exited, and was killed |
//! | `signals_received` | array of strings | every signal childminder received, in order |
//! | `worker_errors` | array of objects | `{"stream": "stdout", "op": "consume", "error": "..."}` for each failed stdio worker |
//! | `supervisor_error` | string or null | childminder's own failure: the start error, or a supervision error |
//! | `exit_status` | number | the status childminder itself exits with; 128+N when it ends itself by the command's signal N |
//! | `inherited_streams` | array of strings | the streams handed to the command as they are (`"stdin"`, `"stdout"`, `"stderr"`): not copied, not counted |
//! | `delivery_cut_off` | bool | childminder stopped copying before all output was delivered: the deadline's bound (a grace period after the later of the deadline and the exit) passed (exit 124), or an INT, TERM, HUP or QUIT asked it to end (a grace period after the later of the signal and the exit, or at once for one after the exit; childminder then ends by that signal: 128+N) |
//! | `subreaper` | bool | childminder was a subreaper for the command (the default; `--no-subreaper` turns it off) |
//! | `escapees_ended` | number | processes that left the command's group, were orphaned to childminder and were ended and reaped at the end |
//! | `escapees_killed` | number | of those, how many needed SIGKILL |
//! | `cgroup` | string or null | the command's own cgroup (`--cgroup`), removed by the time of the report |
//! | `cgroup_cpu_ms` | number or null | CPU time of everything that ran in the cgroup |
//! | `cgroup_memory_peak_bytes` | number or null | its memory peak (`memory.peak`), where the memory controller is enabled for it |
//! | `orphans_reaped` | number | as `init`: orphans (processes re-parented to childminder) reaped as they exited, while the command ran; 0 for `run` |
//! | `cgroup_fallback` | string or null | with `--cgroup=auto`: why no cgroup could be used (the group and the subreaper contained the command instead) |

use std::time::Duration;

use childminder::{EscalationCause, ExitStatus, Signal, SupervisionResult};
use serde::Serialize;

use crate::stdio::PumpError;

type PumpOutcome = Result<(), PumpError>;

/// The report object. Field order is the order of the keys in the output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub program: String,
    pub args: Vec<String>,
    pub pid: Option<u32>,
    pub exit: Option<Exit>,
    pub termination: &'static str,
    pub timed_out: bool,
    pub escalation_cause: Option<&'static str>,
    pub term_sent_after_ms: Option<u64>,
    pub kill_sent_after_ms: Option<u64>,
    pub runtime_ms: u64,
    pub user_cpu_ms: Option<u64>,
    pub system_cpu_ms: Option<u64>,
    pub max_rss_bytes: Option<u64>,
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
    pub output_cut_off: bool,
    pub signals_received: Vec<String>,
    pub worker_errors: Vec<WorkerFailure>,
    pub supervisor_error: Option<String>,
    pub exit_status: i32,
    pub inherited_streams: Vec<&'static str>,
    pub delivery_cut_off: bool,
    pub subreaper: bool,
    pub escapees_ended: u32,
    pub escapees_killed: u32,
    pub cgroup: Option<String>,
    pub cgroup_cpu_ms: Option<u64>,
    pub cgroup_memory_peak_bytes: Option<u64>,
    pub cgroup_fallback: Option<String>,
    pub orphans_reaped: u64,
}

/// How the child ended: `{"code": N}` or `{"signal": N, ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Exit {
    Code {
        code: i32,
    },
    Signal {
        signal: i32,
        signal_name: String,
        core_dumped: bool,
    },
}

/// One failed stdio copy.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerFailure {
    pub stream: String,
    pub op: String,
    pub error: String,
    /// The error's kind, to tell a closed reader from a real failure.
    #[serde(skip)]
    pub error_kind: Option<std::io::ErrorKind>,
}

/// What the run adds to the library's result.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// Bytes delivered to our stdout and stderr; `None` when handed over.
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
    /// Signals received and acted on, in order.
    pub signals_received: Vec<Signal>,
    /// The copies that failed.
    pub worker_errors: Vec<WorkerFailure>,
    /// A process left behind held the output open past the grace period.
    pub output_cut_off: bool,
    /// The deadline's bound, or a signal after the exit, stopped the
    /// copy-out.
    pub delivery_cut_off: bool,
    /// The signal (INT, TERM, HUP, QUIT) that came after the command's
    /// exit and stopped the copy-out: childminder ends by it.
    pub ended_by: Option<Signal>,
    /// The streams handed over.
    pub inherited_streams: Vec<&'static str>,
    /// As `init`: orphans reaped as they exited.
    pub orphans_reaped: u64,
}

impl RunFacts {
    /// Records a failed copy.
    pub fn record(&mut self, stream: &str, op: &str, error: &std::io::Error) {
        self.worker_errors.push(WorkerFailure {
            stream: stream.to_owned(),
            op: op.to_owned(),
            error: error.to_string(),
            error_kind: Some(error.kind()),
        });
    }

    /// Records how the copies of stdout and stderr ended.
    pub fn record_outputs(&mut self, ends: (PumpOutcome, PumpOutcome)) {
        for (stream, end) in [("stdout", ends.0), ("stderr", ends.1)] {
            match end {
                Ok(()) => {}
                Err(PumpError::Read(e)) => self.record(stream, "read", &e),
                Err(PumpError::Deliver(e)) => self.record(stream, "consume", &e),
            }
        }
    }

    /// Output was lost for a reason other than a reader that went away
    /// (EPIPE, which the command sees as in a plain pipeline).
    pub fn undelivered(&self) -> bool {
        self.worker_errors
            .iter()
            .any(|f| f.stream != "stdin" && f.error_kind != Some(std::io::ErrorKind::BrokenPipe))
    }
}

impl Report {
    /// The report of a child that ran.
    pub fn from_result(
        args: Vec<String>,
        result: &SupervisionResult,
        facts: &RunFacts,
        exit_status: i32,
    ) -> Report {
        let cgroup = result.containment.cgroup.as_ref();
        Report {
            program: result.program.clone(),
            args,
            pid: Some(result.pid),
            exit: result.exit.map(Exit::from),
            termination: result.termination.as_str(),
            timed_out: result.timed_out(),
            escalation_cause: result.escalation_cause.map(cause_name),
            term_sent_after_ms: result.term_sent_after.map(millis),
            kill_sent_after_ms: result.kill_sent_after.map(millis),
            runtime_ms: millis(result.runtime),
            user_cpu_ms: result.resource_usage.map(|u| millis(u.user_time)),
            system_cpu_ms: result.resource_usage.map(|u| millis(u.system_time)),
            max_rss_bytes: result.resource_usage.and_then(|u| u.max_rss()),
            stdout_bytes: facts.stdout_bytes,
            stderr_bytes: facts.stderr_bytes,
            output_cut_off: result.output_cut_off || facts.output_cut_off,
            signals_received: facts
                .signals_received
                .iter()
                .map(|&s| signal_name(s))
                .collect(),
            worker_errors: result
                .worker_errors
                .iter()
                .map(|e| WorkerFailure {
                    stream: e.stream.to_string(),
                    op: e.op.to_string(),
                    error: e.source.to_string(),
                    error_kind: Some(e.source.kind()),
                })
                .chain(facts.worker_errors.iter().cloned())
                .collect(),
            supervisor_error: result.supervisor_error.as_ref().map(|e| e.to_string()),
            exit_status,
            inherited_streams: facts.inherited_streams.clone(),
            delivery_cut_off: facts.delivery_cut_off,
            subreaper: result.containment.subreaper,
            escapees_ended: result.containment.escapees_ended,
            escapees_killed: result.containment.escapees_killed,
            cgroup: cgroup.map(|c| c.path.to_string_lossy().into_owned()),
            cgroup_cpu_ms: cgroup.and_then(|c| c.cpu_usage).map(millis),
            cgroup_memory_peak_bytes: cgroup.and_then(|c| c.memory_peak),
            cgroup_fallback: result.containment.cgroup_fallback.clone(),
            orphans_reaped: facts.orphans_reaped,
        }
    }

    /// The report of a child that could not be started.
    pub fn not_started(
        program: String,
        args: Vec<String>,
        error: &childminder::Error,
        exit_status: i32,
    ) -> Report {
        Report::failed(program, args, error.to_string(), exit_status)
    }

    /// The report of a run that failed before the child started.
    pub fn failed(program: String, args: Vec<String>, error: String, exit_status: i32) -> Report {
        Report {
            program,
            args,
            pid: None,
            exit: None,
            termination: childminder::Termination::Indeterminate.as_str(),
            timed_out: false,
            escalation_cause: None,
            term_sent_after_ms: None,
            kill_sent_after_ms: None,
            runtime_ms: 0,
            user_cpu_ms: None,
            system_cpu_ms: None,
            max_rss_bytes: None,
            stdout_bytes: Some(0),
            stderr_bytes: Some(0),
            output_cut_off: false,
            signals_received: Vec::new(),
            worker_errors: Vec::new(),
            supervisor_error: Some(error),
            exit_status,
            inherited_streams: Vec::new(),
            delivery_cut_off: false,
            subreaper: false,
            escapees_ended: 0,
            escapees_killed: 0,
            cgroup: None,
            cgroup_cpu_ms: None,
            cgroup_memory_peak_bytes: None,
            cgroup_fallback: None,
            orphans_reaped: 0,
        }
    }

    /// The report as one line of JSON, with a final newline.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("the report always serializes");
        line.push('\n');
        line
    }
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        match status {
            ExitStatus::Exited(code) => Exit::Code { code },
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => Exit::Signal {
                signal: signal.as_raw(),
                signal_name: signal_name(signal),
                core_dumped,
            },
        }
    }
}

/// `SIGTERM`, or `SIGRTMIN` / `SIGRTMIN+N` for a real-time signal ([`Signal`]'s
/// `Display`).
pub fn signal_name(signal: Signal) -> String {
    signal.to_string()
}

pub(crate) fn cause_name(cause: EscalationCause) -> &'static str {
    match cause {
        EscalationCause::Deadline => "deadline",
        EscalationCause::Requested => "signal",
        EscalationCause::Teardown | EscalationCause::Shutdown => "teardown",
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_shapes() {
        let code = serde_json::to_value(Exit::from(ExitStatus::Exited(3))).unwrap();
        assert_eq!(code, serde_json::json!({"code": 3}));
        let sig = serde_json::to_value(Exit::from(ExitStatus::Signaled {
            signal: Signal::TERM,
            core_dumped: false,
        }))
        .unwrap();
        assert_eq!(
            sig,
            serde_json::json!({"signal": 15, "signal_name": "SIGTERM", "core_dumped": false})
        );
    }

    #[test]
    fn realtime_signal_names() {
        let rt = Signal::from_raw(libc::SIGRTMIN() + 2).unwrap();
        assert_eq!(signal_name(rt), "SIGRTMIN+2");
        assert_eq!(signal_name(Signal::KILL), "SIGKILL");
    }

    #[test]
    fn not_started_has_every_key() {
        let err = childminder::Command::new("/no/such/program")
            .run()
            .unwrap_err();
        let report = Report::not_started("/no/such/program".into(), vec!["a".into()], &err, 127);
        let value: serde_json::Value = serde_json::from_str(&report.to_json_line()).unwrap();
        let object = value.as_object().unwrap();
        for key in [
            "program",
            "args",
            "pid",
            "exit",
            "termination",
            "timed_out",
            "term_sent_after_ms",
            "kill_sent_after_ms",
            "runtime_ms",
            "stdout_bytes",
            "stderr_bytes",
            "worker_errors",
            "supervisor_error",
            "exit_status",
        ] {
            assert!(object.contains_key(key), "{key} missing");
        }
        assert_eq!(value["pid"], serde_json::Value::Null);
        assert_eq!(value["exit_status"], 127);
        assert!(
            value["supervisor_error"]
                .as_str()
                .unwrap()
                .contains("failed to start")
        );
    }
}
