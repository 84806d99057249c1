//! The exit status of `childminder up`, in one place.
//!
//! | how the tree ended | status |
//! |---|---|
//! | stopped on request (SIGINT, SIGTERM; a second one kills) | 0 |
//! | a significant process ended and triggered the auto-shutdown | that process's status: 0 if it succeeded (its code is one of its `success_exit_codes`), else its code, or 128+N for a signal N |
//! | a supervisor gave up (too many restarts) | the status of the process whose failure tripped it; 1 if that failure was a start timeout |
//! | no process is left running and none will be restarted | 0 if the last run of every process (nested ones included) succeeded, else the status of the first (in start order) that failed |
//! | a program not on `PATH` (or not executable there), found before anything starts | 127 (126) |
//! | bad configuration, or childminder's own failure; or a success (0) whose output could not be written (`> /dev/full`; a closed reader is not a failure) | 125 |
//!
//! The status of a failed process is its code, 128+N for a signal N, 1 for
//! a start timeout, and, as in `childminder run`, 127 for a program that
//! was not found and 126 for one that could not be executed. A failure
//! whose code is 0 (outside a custom success set) counts as 1.

use childminder::supervisor::Outcome;

/// Bad configuration, or childminder's own failure.
pub const EXIT_FAILURE: i32 = 125;

/// The exit status for a tree that ended with `outcome` (see the module
/// table): the library's [`Outcome::exit_code`], which `up` presents as it is.
pub fn exit_status(outcome: &Outcome) -> i32 {
    outcome.exit_code()
}

/// `status`, unless it is a success and the output could not be written
/// (as `childminder run`: a failure's own status stays as it is).
pub fn with_output_failure(status: i32, output_failed: bool) -> i32 {
    if status == 0 && output_failed {
        EXIT_FAILURE
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_failure_turns_only_a_success_into_125() {
        assert_eq!(with_output_failure(0, true), EXIT_FAILURE);
        assert_eq!(with_output_failure(0, false), 0);
        assert_eq!(with_output_failure(3, true), 3);
        assert_eq!(with_output_failure(3, false), 3);
    }
}
