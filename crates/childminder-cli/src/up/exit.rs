//! The exit status of `childminder up`, in one place.
//!
//! | how the tree ended | status |
//! |---|---|
//! | stopped on request (SIGINT, SIGTERM; a second one kills) | 0 |
//! | a significant process ended and triggered the auto-shutdown | that process's status: 0 if it succeeded (its code is one of its `success_exit_codes`), else its code, or 128+N for a signal N |
//! | a supervisor gave up (too many restarts) | the status of the process whose failure tripped it; 1 if that failure was a start timeout |
//! | no process is left running and none will be restarted | 0 if the last run of every process (nested ones included) succeeded, else the status of the first (in start order) that failed |
//! | bad configuration, or childminder's own failure | 125 |
//!
//! The status of a failed process is its code, 128+N for a signal N, 1 for
//! a start timeout, and, as in `childminder run`, 127 for a program that
//! was not found and 126 for one that could not be executed. A failure
//! whose code is 0 (outside a custom success set) counts as 1.

use childminder::supervisor::{ChildExit, LastRun, Outcome, Verdict};

use crate::run::start_failure_status;

/// Bad configuration, or childminder's own failure.
pub const EXIT_FAILURE: i32 = 125;

/// The exit status for a tree that ended with `outcome`. `verdict_of`
/// gives how the last run of a process (by name path) was judged: it
/// tells whether the process that triggered an auto-shutdown succeeded.
pub fn exit_status(outcome: &Outcome, verdict_of: &dyn Fn(&str) -> Option<Verdict>) -> i32 {
    match outcome {
        Outcome::Stopped | Outcome::Killed => 0,
        Outcome::AutoShutdown { .. } => match outcome.culprit() {
            Some((path, _)) if verdict_of(path) == Some(Verdict::Normal) => 0,
            Some((_, exit)) => failure_status(exit, verdict_of),
            None => outcome.exit_code(),
        },
        Outcome::GaveUp { exit, .. } => failure_status(exit, verdict_of),
        Outcome::Completed { last } => {
            first_failure(last).map_or(0, |exit| failure_status(exit, verdict_of))
        }
        _ => outcome.exit_code(),
    }
}

/// The status of an end that counts as a failure (never 0).
fn failure_status(exit: &ChildExit, verdict_of: &dyn Fn(&str) -> Option<Verdict>) -> i32 {
    let status = match exit {
        ChildExit::SpawnFailed(error) => start_failure_status(error),
        ChildExit::Supervisor(inner) => exit_status(inner, verdict_of),
        other => other.exit_code(),
    };
    if status == 0 { 1 } else { status }
}

/// The end of the first process, in start order, whose last run failed,
/// looking inside nested supervisors that completed.
fn first_failure(last: &[LastRun]) -> Option<&ChildExit> {
    last.iter().find_map(|run| match (&run.exit, run.verdict) {
        (Some(ChildExit::Supervisor(inner)), Verdict::Normal | Verdict::Requested) => {
            match &**inner {
                Outcome::Completed { last } => first_failure(last),
                _ => None,
            }
        }
        (Some(exit), Verdict::Abnormal) => Some(exit),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spawn_error(program: &str) -> Arc<childminder::Error> {
        Arc::new(childminder::Command::new(program).run().unwrap_err())
    }

    fn no_verdicts(_: &str) -> Option<Verdict> {
        None
    }

    #[test]
    fn requests_and_kills_are_zero() {
        assert_eq!(exit_status(&Outcome::Stopped, &no_verdicts), 0);
        assert_eq!(exit_status(&Outcome::Killed, &no_verdicts), 0);
        assert_eq!(
            exit_status(&Outcome::Completed { last: vec![] }, &no_verdicts),
            0
        );
    }

    #[test]
    fn a_program_that_cannot_start_is_127_or_126_as_in_run() {
        let gave_up = Outcome::GaveUp {
            child: "web".into(),
            exit: ChildExit::SpawnFailed(spawn_error("/no/such/program")),
        };
        assert_eq!(exit_status(&gave_up, &no_verdicts), 127);
        let nested = Outcome::AutoShutdown {
            child: "group".into(),
            exit: ChildExit::Supervisor(Arc::new(Outcome::GaveUp {
                child: "group/web".into(),
                exit: ChildExit::SpawnFailed(spawn_error("/")),
            })),
        };
        assert_eq!(exit_status(&nested, &no_verdicts), 126);
    }

    #[test]
    fn a_start_timeout_is_1() {
        let gave_up = Outcome::GaveUp {
            child: "db".into(),
            exit: ChildExit::StartTimeout(None),
        };
        assert_eq!(exit_status(&gave_up, &no_verdicts), 1);
    }

    #[test]
    fn an_auto_shutdown_by_a_process_that_succeeded_is_0() {
        let shutdown = Outcome::AutoShutdown {
            child: "job".into(),
            exit: ChildExit::SpawnFailed(spawn_error("/no/such/program")),
        };
        let normal = |p: &str| (p == "job").then_some(Verdict::Normal);
        let abnormal = |p: &str| (p == "job").then_some(Verdict::Abnormal);
        assert_eq!(exit_status(&shutdown, &normal), 0);
        assert_eq!(exit_status(&shutdown, &abnormal), 127);
    }
}
