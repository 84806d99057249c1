//! The exit status of `childminder up`, in one place.
//!
//! | how the tree ended | status |
//! |---|---|
//! | stopped on request (SIGINT, SIGTERM) | 0 |
//! | a significant process ended and triggered the auto-shutdown | that process's status: 0 if it succeeded (its code is one of its `success_exit_codes`), else its code, or 128+N for a signal N |
//! | a supervisor gave up (too many restarts) | the status of the process whose failure tripped it; 1 if that failure was a start timeout |
//! | no process is left running and none will be restarted | 0 if the last run of every process succeeded, else the status of the first (in time) that failed |
//! | bad configuration, or childminder's own failure | 125 |
//!
//! A process that could not be started counts as failed with 127 (not
//! found) or 126 (found, not executable), as in `childminder run`.

use childminder::ExitStatus;

/// Bad configuration, or childminder's own failure.
pub const EXIT_FAILURE: i32 = 125;
/// The status of a start timeout.
pub const EXIT_START_TIMEOUT: i32 = 1;

/// How one run of a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// It ran and ended so.
    Exited(ExitStatus),
    /// It did not become ready within its start timeout (it was stopped).
    StartTimeout,
    /// It could not be started; the status `childminder run` would give
    /// (127, 126 or 125).
    StartFailed(i32),
}

/// One run of a process, as far as the exit status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub end: RunEnd,
    /// It ended with one of its success exit codes (never true for a
    /// start failure or timeout).
    pub succeeded: bool,
}

impl Run {
    /// Its status: 0 if it succeeded, else its code or 128+signal, 1 for a
    /// start timeout, the start failure's status.
    pub fn status(&self) -> i32 {
        if self.succeeded {
            return 0;
        }
        match self.end {
            RunEnd::Exited(status) => match status.shell_code() {
                // A failure that looks like success to the shell (a code
                // outside a custom success set is never 0 in practice,
                // but `success_exit_codes = [3]` makes 0 a failure).
                0 => 1,
                code => code,
            },
            RunEnd::StartTimeout => EXIT_START_TIMEOUT,
            RunEnd::StartFailed(status) => status,
        }
    }
}

/// Why the tree ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEnd {
    /// INT or TERM asked for it.
    Requested,
    /// This significant process's end triggered the auto-shutdown.
    AutoShutdown(Run),
    /// A supervisor gave up; this failure tripped it.
    GaveUp(Run),
    /// Nothing is left running or will be restarted: the last run of every
    /// process that ran, ordered by when it ended.
    Finished(Vec<Run>),
    /// childminder itself failed.
    Failed,
}

/// The exit status for `end` (see the module table).
pub fn exit_status(end: &TreeEnd) -> i32 {
    match end {
        TreeEnd::Requested => 0,
        TreeEnd::AutoShutdown(run) | TreeEnd::GaveUp(run) => run.status(),
        TreeEnd::Finished(runs) => runs.iter().find(|r| !r.succeeded).map_or(0, Run::status),
        TreeEnd::Failed => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use childminder::Signal;

    fn exited(code: i32, succeeded: bool) -> Run {
        Run {
            end: RunEnd::Exited(ExitStatus::Exited(code)),
            succeeded,
        }
    }

    fn killed(signal: Signal) -> Run {
        Run {
            end: RunEnd::Exited(ExitStatus::Signaled {
                signal,
                core_dumped: false,
            }),
            succeeded: false,
        }
    }

    #[test]
    fn on_request_zero() {
        assert_eq!(exit_status(&TreeEnd::Requested), 0);
    }

    #[test]
    fn auto_shutdown_is_the_significant_process_status() {
        assert_eq!(exit_status(&TreeEnd::AutoShutdown(exited(0, true))), 0);
        assert_eq!(exit_status(&TreeEnd::AutoShutdown(exited(3, true))), 0);
        assert_eq!(exit_status(&TreeEnd::AutoShutdown(exited(3, false))), 3);
        assert_eq!(
            exit_status(&TreeEnd::AutoShutdown(killed(Signal::TERM))),
            143
        );
        assert_eq!(
            exit_status(&TreeEnd::AutoShutdown(killed(Signal::KILL))),
            137
        );
    }

    #[test]
    fn give_up_is_the_tripping_failure() {
        assert_eq!(exit_status(&TreeEnd::GaveUp(exited(7, false))), 7);
        assert_eq!(exit_status(&TreeEnd::GaveUp(killed(Signal::SEGV))), 139);
        let timeout = Run {
            end: RunEnd::StartTimeout,
            succeeded: false,
        };
        assert_eq!(exit_status(&TreeEnd::GaveUp(timeout)), 1);
        let missing = Run {
            end: RunEnd::StartFailed(127),
            succeeded: false,
        };
        assert_eq!(exit_status(&TreeEnd::GaveUp(missing)), 127);
    }

    #[test]
    fn finished_is_zero_or_the_first_failure() {
        assert_eq!(exit_status(&TreeEnd::Finished(vec![])), 0);
        assert_eq!(
            exit_status(&TreeEnd::Finished(vec![exited(0, true), exited(3, true)])),
            0
        );
        assert_eq!(
            exit_status(&TreeEnd::Finished(vec![
                exited(0, true),
                exited(4, false),
                exited(5, false)
            ])),
            4
        );
        assert_eq!(
            exit_status(&TreeEnd::Finished(vec![
                killed(Signal::INT),
                exited(5, false)
            ])),
            130
        );
    }

    #[test]
    fn a_zero_outside_the_success_set_is_still_a_failure() {
        assert_eq!(exit_status(&TreeEnd::Finished(vec![exited(0, false)])), 1);
    }

    #[test]
    fn own_failure() {
        assert_eq!(exit_status(&TreeEnd::Failed), 125);
    }
}
