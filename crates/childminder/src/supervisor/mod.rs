//! Supervision trees on the single-process engine: Erlang/OTP's
//! `supervisor` semantics, systemd's restart vocabulary, and readiness as
//! systemd and s6 define it, on tokio.
//!
//! A [`SupervisorSpec`] owns an ordered list of [`ChildSpec`]s; a child is a
//! process (a [`Command`](crate::Command), with everything the
//! single-process engine has) or another supervisor, to any depth.
//! [`Tree::start`] runs it: children start in order, each once the one
//! before it is *running* (ready); a supervisor stops its children in
//! reverse order. The [`Tree`] handle reports each child's status, stops,
//! starts and restarts single children, signals every process group, stops
//! or kills the whole tree, and resolves with an [`Outcome`] that says why
//! the tree ended. [`TreeOptions`] asks for the [`Events`] stream (every
//! state change, timestamped, with the engine's
//! [`SupervisionResult`](crate::SupervisionResult) for every exit) and for
//! the children's output as tagged chunks ([`Output`]).
//!
//! ```
//! use childminder::supervisor::{ChildSpec, Outcome, Restart, SupervisorSpec, Tree};
//! use childminder::Command;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut db = Command::new("sleep");
//! db.arg("30").grace_period(Duration::from_secs(2));
//! let mut migrate = Command::new("sh");
//! migrate.args(["-c", "exit 0"]);
//! let spec = SupervisorSpec::new()
//!     .child(ChildSpec::process("db", db))
//!     .child(ChildSpec::process("migrate", migrate).restart(Restart::Transient));
//! let tree = Tree::start(&spec).unwrap();
//! tree.running().await;
//! assert!(matches!(*tree.shutdown().await, Outcome::Stopped));
//! # }
//! ```
//!
//! # Vocabulary, and what it means in OTP and systemd
//!
//! | childminder | Erlang/OTP | systemd |
//! |---|---|---|
//! | [`SupervisorSpec`] | supervisor + `sup_flags` | a target with units |
//! | [`ChildSpec::process`] | worker child spec | a service unit |
//! | [`ChildSpec::supervisor`] | `type => supervisor` | (a nested target) |
//! | [`Strategy::OneForOne`] / [`OneForAll`](Strategy::OneForAll) / [`RestForOne`](Strategy::RestForOne) | `one_for_one` / `one_for_all` / `rest_for_one` | (dependencies: `BindsTo=`, `PartOf=`) |
//! | [`Restart::Permanent`] / [`Transient`](Restart::Transient) / [`Temporary`](Restart::Temporary) | `permanent` / `transient` / `temporary` | `Restart=always` / `on-failure` / `no` |
//! | [`ChildSpec::success_exit_codes`] | `normal`, `shutdown` exit reasons | `SuccessExitStatus=` |
//! | [`SupervisorSpec::intensity`] within [`period`](SupervisorSpec::period) | `intensity`, `period` | `StartLimitBurst=` within `StartLimitIntervalSec=` |
//! | [`Backoff`] | (none: immediate) | `RestartSec=`, `RestartSteps=`, `RestartMaxDelaySec=` |
//! | [`Shutdown::Graceful`] (first signal, grace, KILL) | `shutdown => Milliseconds` (`infinity` for supervisors) | `KillSignal=`, `TimeoutStopSec=` |
//! | [`Shutdown::BrutalKill`] | `brutal_kill` | `KillSignal=SIGKILL` |
//! | [`ChildSpec::significant`], [`AutoShutdown`] | `significant`, `auto_shutdown` | `SuccessAction=`/`FailureAction=` (roughly) |
//! | [`Readiness::Notify`] / [`Fd`](Readiness::Fd) | `start_link` returning `{ok, Pid}` | `Type=notify` / (s6 `notification-fd`) |
//! | [`ChildSpec::start_timeout`] | (the `start` call's timeout) | `TimeoutStartSec=` |
//! | [`Outcome::GaveUp`] | exit `reached_max_restart_intensity` (shutdown) | unit `failed` (start limit hit) |
//!
//! # Restarts and the strategy
//!
//! When a child ends by itself, its [`Restart`] type decides: a
//! permanent child is always restarted, a transient one only after an
//! abnormal end (an exit code outside its success codes, a signal we did
//! not send, a failed spawn, a start timeout, a nested supervisor giving
//! up), a temporary one never. A stop we asked for is never abnormal, and
//! a child stopped through the handle stays down. A restart applies the
//! supervisor's [`Strategy`]: `one_for_one` restarts the child alone;
//! `one_for_all` stops every other child in reverse order and restarts all
//! in order; `rest_for_one` does that for the children after it. As in
//! OTP, temporary siblings stopped by a strategy are not restarted. The
//! restarted children wait out the failed child's backoff delay, then
//! start in order, each after the one before it is running.
//!
//! # The give-up rule, with backoff
//!
//! A restart is delayed by the child's [`Backoff`]: the n-th restart of a
//! streak waits `initial × 2^(n-1)`, capped at `max`, ±10 % jitter; a child
//! that stayed up `reset_after` begins a new streak. More than `intensity`
//! restarts within `period` and the supervisor *gives up*: it stops all its
//! children in reverse order and ends with [`Outcome::GaveUp`], which its
//! parent handles as that child's abnormal end — so a failure climbs the
//! tree until a supervisor can absorb it.
//!
//! **How the period is measured.** Each counted restart is remembered; its
//! age is measured on the *run clock of the child that failed*: the time
//! since the restart, minus the time that child has since spent down,
//! waiting to be restarted. Waiting out a backoff therefore never ages a
//! restart out of the window: the give-up decision is exactly the one OTP
//! would take with no backoff at all, whatever the delays. (systemd's trap
//! — with `RestartSec=` or `RestartMaxDelaySec=` longer than
//! `StartLimitIntervalSec=`, restarts are spaced too far apart for the
//! limit ever to trip, and a crashing unit restarts forever — cannot
//! happen.) Other children's delays do not stop the clock: one child's
//! long backoff does not make a sibling's occasional failures count
//! longer.
//!
//! Worked example, with the defaults (intensity 3 within 5 s; backoff
//! 100 ms doubling, ignoring jitter) and a child that crashes 1 s after
//! every start:
//!
//! | wall time | event | run-clock ages of the restarts in the window | in window |
//! |---|---|---|---|
//! | 1.0 s | crash; restart 1 after 100 ms | 0 | 1 |
//! | 2.1 s | crash; restart 2 after 200 ms | 1 s, 0 | 2 |
//! | 3.3 s | crash; restart 3 after 400 ms | 2 s, 1 s, 0 | 3 |
//! | 4.7 s | crash: a 4th restart would exceed 3 | 3 s, 2 s, 1 s, 0 | 4 → **gives up** |
//!
//! With `initial` = 10 s and `max` = 60 s the crashes come at 1 s, 12 s, 33 s and 74 s of
//! wall time, but the ages are the same 3 s, 2 s, 1 s, 0, and it gives up
//! at the same fourth crash: a wall-clock window of 5 s (systemd's, or
//! OTP's) would never see two of them together. A child that crashes after
//! 2 s each time is different: the fourth crash sees ages 6 s, 4 s, 2 s, 0,
//! only three of them within 5 s, so it is restarted — as OTP would — with
//! the delay capped at `max`.
//!
//! # Shutdown
//!
//! A process is stopped per its [`Shutdown`] spec: its first signal
//! ([`Command::term_signal`](crate::Command::term_signal), TERM by default)
//! at once to its process group, SIGKILL after its
//! [`grace_period`](crate::Command::grace_period), and whatever is left of
//! its group is swept; there is no stdin-close-then-wait step (that suits a
//! filter, not a service). A nested supervisor stops its own children first,
//! in reverse order. A child's end is reported only once its whole group is
//! gone, so a restart never overlaps stragglers of the previous run.
//!
//! # Readiness
//!
//! A child with a [`Readiness`] check is *starting* until the check passes,
//! then *running*; the next child in order waits for it. The systemd notify
//! protocol (`NOTIFY_SOCKET`, `READY=1`), s6's notification fd (a line on
//! fd N) and a TCP port accepting a connection are supported. Without a
//! check a child is running once spawned; a nested supervisor is running
//! once all its children are. A child not ready within its
//! [`start_timeout`](ChildSpec::start_timeout) is stopped and the start
//! counts as its abnormal end.
//!
//! # Significant children
//!
//! With [`AutoShutdown::AnySignificant`], the end of any significant child
//! (one that ended by itself and will not be restarted) stops the others in
//! reverse order and ends the supervisor with [`Outcome::AutoShutdown`];
//! with [`AutoShutdown::AllSignificant`], the end of the last one does.
//! Procfile runners' "when one ends, all stop" is: every child temporary
//! and significant, `auto_shutdown = any_significant`.
//!
//! # How the tree runs
//!
//! On tokio tasks of the runtime that started it, with no thread of its
//! own: one task per supervisor, the single-process engine's task per
//! process, one task per readiness check and per output stream while it is
//! needed. Each supervisor's decisions come from a pure state machine (fed
//! events and the clock, unit-tested without processes). Nothing sleeps
//! while nothing is due: a supervisor wakes only for an event, a request,
//! a due restart or a start timeout.

mod backoff;
mod decision;
mod driver;
mod events;
mod handle;
mod readiness;
mod spec;

pub use events::{
    ChildExit, Event, EventKind, Events, LastRun, Outcome, Output, OutputChunk, Verdict,
};
pub use handle::{ChildState, ChildStatus, ControlError, Tree, TreeOptions};
pub use spec::{
    AutoShutdown, Backoff, ChildSpec, DEFAULT_INTENSITY, DEFAULT_PERIOD, DEFAULT_START_TIMEOUT,
    Readiness, Restart, Shutdown, SpecError, Strategy, SupervisorSpec,
};
