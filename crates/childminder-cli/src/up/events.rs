//! `--events PATH`: the tree's event stream as JSON lines, one object per
//! event, written and flushed as it happens.
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `time` | string | RFC 3339, UTC, milliseconds: `2026-12-01T06:04:07.123Z` |
//! | `process` | string | the name path: `web`, or `workers/queue` in a nested supervisor |
//! | `event` | string | `starting`, `ready`, `start_timeout`, `exited`, `spawn_failed`, `restarting`, `gave_up`, `stopping`, `stopped`, `finished` (a supervisor ended) |
//! | `pid` | number or null | null where there is no process (yet), as for `starting`, and for a supervisor |
//! | `exit`, `termination`, `escalation_cause`, `runtime_ms` | | `exited` only: as in `childminder run --report`, but for `escalation_cause` `"supervisor"` (its supervisor stopped it: a shutdown, on a signal to `up` or an auto-shutdown, a restart of its siblings, a start timeout) where `run` says `"signal"` |
//! | `verdict` | string | `exited` only: `normal` (a success exit code), `abnormal`, or `requested` (stopped by its supervisor) |
//! | `restart_in_ms`, `restart_count` | number | `restarting` only: the delay (jitter included), and 1 for the first restart of the current streak |
//! | `error` | string | `spawn_failed` only: why |
//! | `child` | string | `gave_up` only: the child whose end tripped the limit |
//! | `outcome` | string | `finished` only: `stopped`, `killed`, `auto_shutdown`, `gave_up` or `completed` |
//!
//! The top-level supervisor's own events (`stopping`, `gave_up`,
//! `finished`) have an empty `process`.
//!
//! Keys are only ever added, never renamed or removed.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use childminder::supervisor::{Event, EventKind, Outcome, Verdict};
use childminder::{EscalationCause, ExitStatus};

use crate::report::{Exit, cause_name, millis, signal_name};

/// One event line. Keys that do not apply to an event are left out.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    pub time: String,
    pub process: String,
    pub event: &'static str,
    pub pid: Option<u32>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub exited: Option<ExitedFields>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub restarting: Option<RestartingFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
}

impl EventLine {
    /// The line of one of the tree's events.
    pub fn from_event(event: &Event) -> EventLine {
        let mut line = EventLine {
            time: rfc3339_millis(event.time),
            process: event.path.to_string(),
            event: event.kind.as_str(),
            pid: event.pid,
            exited: None,
            restarting: None,
            error: None,
            child: None,
            outcome: None,
        };
        match &event.kind {
            EventKind::Exited { result, verdict } => {
                line.exited = Some(ExitedFields {
                    exit: result.exit.map(Exit::from),
                    termination: result.termination.as_str(),
                    escalation_cause: result.escalation_cause.map(|cause| match cause {
                        // In `run`, a request to end is a signal childminder
                        // received; here the supervisor made it.
                        EscalationCause::Requested => "supervisor",
                        other => cause_name(other),
                    }),
                    runtime_ms: millis(result.runtime),
                    verdict: verdict_name(*verdict),
                });
            }
            EventKind::Restarting {
                delay,
                restart_count,
            } => {
                line.restarting = Some(RestartingFields {
                    restart_in_ms: millis(*delay),
                    restart_count: *restart_count,
                });
            }
            EventKind::SpawnFailed { error } => line.error = Some(error.to_string()),
            EventKind::GaveUp { child } => line.child = Some(child.to_string()),
            EventKind::Finished { outcome } => line.outcome = Some(outcome_name(outcome)),
            _ => {}
        }
        line
    }
}

/// A line for a person, on stderr, for the events worth one: the ends of
/// processes (but not those asked for), restarts, give-ups.
pub fn describe(event: &Event) -> Option<String> {
    let who = if event.path.is_empty() {
        "the tree".to_owned()
    } else {
        event.path.to_string()
    };
    Some(match &event.kind {
        EventKind::Exited { result, verdict } if *verdict != Verdict::Requested => {
            match result.exit {
                Some(ExitStatus::Exited(code)) => format!("{who} exited with code {code}"),
                Some(ExitStatus::Signaled { signal, .. }) => {
                    format!("{who} was terminated by {}", signal_name(signal))
                }
                None => format!("{who} ended; its exit was not observed"),
            }
        }
        EventKind::SpawnFailed { error } => format!("{who} could not be started: {error}"),
        EventKind::StartTimeout => format!("{who} was not ready within its start timeout"),
        EventKind::Restarting { delay, .. } => {
            format!("{who} restarting in {} ms", millis(*delay))
        }
        EventKind::GaveUp { child } => {
            format!("{who} gave up: too many restarts (the last: {child})")
        }
        _ => return None,
    })
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Normal => "normal",
        Verdict::Abnormal => "abnormal",
        Verdict::Requested => "requested",
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Stopped => "stopped",
        Outcome::AutoShutdown { .. } => "auto_shutdown",
        Outcome::GaveUp { .. } => "gave_up",
        Outcome::Completed { .. } => "completed",
        Outcome::Killed => "killed",
        _ => "other",
    }
}

/// The keys of an `exited` event.
#[derive(Debug, Clone, Serialize)]
pub struct ExitedFields {
    pub exit: Option<Exit>,
    pub termination: &'static str,
    pub escalation_cause: Option<&'static str>,
    pub runtime_ms: u64,
    pub verdict: &'static str,
}

/// The keys of a `restarting` event.
#[derive(Debug, Clone, Serialize)]
pub struct RestartingFields {
    pub restart_in_ms: u64,
    pub restart_count: u32,
}

/// Where the events go.
pub enum EventSink {
    Stderr,
    File(File),
}

impl EventSink {
    /// `-` is stderr; anything else a file, created (truncated) now, so a
    /// bad path fails before anything starts.
    ///
    /// # Errors
    ///
    /// The file cannot be created; the message names it.
    pub fn open(path: &Path) -> Result<EventSink, String> {
        if path.as_os_str() == "-" {
            return Ok(EventSink::Stderr);
        }
        File::create(path)
            .map(EventSink::File)
            .map_err(|e| format!("cannot create the events file {}: {e}", path.display()))
    }

    /// Writes one event as a line of JSON, flushed.
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn write(&mut self, event: &EventLine) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).expect("an event always serializes");
        line.push(b'\n');
        match self {
            EventSink::Stderr => {
                let mut err = io::stderr().lock();
                err.write_all(&line)?;
                err.flush()
            }
            EventSink::File(file) => {
                file.write_all(&line)?;
                file.flush()
            }
        }
    }
}

/// `time` as RFC 3339 in UTC with milliseconds: `2026-12-01T06:04:07.123Z`.
pub fn rfc3339_millis(time: SystemTime) -> String {
    // Before 1970 cannot happen for an event; show the epoch rather than panic.
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_798_761_599, 5), "2026-12-31T23:59:59.005Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        assert_eq!(at(86_399, 123), "1970-01-01T23:59:59.123Z");
    }

    #[test]
    fn every_day_round_trips() {
        // 1970 to 2400: each day follows the previous one.
        let (mut y, mut m, mut d) = civil_from_days(0);
        for days in 1..157_000 {
            let next = civil_from_days(days);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1];
            let expected = if d < month_len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            (y, m, d) = next;
        }
    }

    #[test]
    fn lines_leave_out_keys_that_do_not_apply() {
        let starting = EventLine {
            time: at(0, 0),
            process: "workers/queue".into(),
            event: "starting",
            pid: None,
            exited: None,
            restarting: None,
            error: None,
            child: None,
            outcome: None,
        };
        assert_eq!(
            serde_json::to_string(&starting).unwrap(),
            r#"{"time":"1970-01-01T00:00:00.000Z","process":"workers/queue","event":"starting","pid":null}"#
        );
        let restarting = EventLine {
            event: "restarting",
            pid: Some(42),
            restarting: Some(RestartingFields {
                restart_in_ms: 105,
                restart_count: 1,
            }),
            ..starting.clone()
        };
        let v: serde_json::Value = serde_json::to_value(&restarting).unwrap();
        assert_eq!(v["restart_in_ms"], 105);
        assert_eq!(v["restart_count"], 1);
        assert_eq!(v["pid"], 42);
        let exited = EventLine {
            event: "exited",
            exited: Some(ExitedFields {
                exit: Some(Exit::Code { code: 3 }),
                termination: "clean",
                escalation_cause: None,
                runtime_ms: 12,
                verdict: "abnormal",
            }),
            ..starting
        };
        let v: serde_json::Value = serde_json::to_value(&exited).unwrap();
        assert_eq!(v["exit"], serde_json::json!({"code": 3}));
        assert_eq!(v["termination"], "clean");
        assert!(v.get("restart_count").is_none());
    }
}
