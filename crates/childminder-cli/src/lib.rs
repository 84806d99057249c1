//! `childminder`: the command-line tool of the childminder library.
//!
//! `childminder init [OPTIONS] -- PROGRAM [ARGS]...` is the same as the init
//! (PID 1) of a container: signals forwarded, orphans reaped.
//!
//! `childminder run [OPTIONS] -- PROGRAM [ARGS]...` supervises one command
//! with the library's async API on a current-thread event loop of the main
//! thread (no thread of its own): parse the command line, run, exit with
//! the status decided by `run::exit_status` (GNU `timeout` conventions).
//!
//! `childminder up [-f FILE] [--events PATH|-] [NAME]...` runs a Procfile or
//! a `childminder.toml` as a supervision tree ([`up`]).
//!
//! The binary (`src/main.rs`) only calls [`main_entry`]. The code lives in
//! this library so that tests can reach the parsers directly:
//! [`duration::parse`] for DURATION and [`cli::parse_signal`] for SIGNAL.

pub mod cli;
pub mod duration;
mod report;
mod report_sink;
mod run;
pub mod signals;
mod stdio;
mod sys;
mod terminal;
pub mod up;

use std::process::ExitCode;

use clap::Parser;

/// Runs `childminder` with the process's arguments and returns the status
/// to exit with.
pub fn main_entry() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit_code(usage_error_status(&e)),
    };
    let ending = match cli.command {
        cli::Commands::Run(args) => run::run(args),
        cli::Commands::Init(cli::InitArgs(args)) => init(args),
        cli::Commands::Up(args) => up::up(args).into(),
    };
    if let Some(signal) = ending.die_by {
        // The report is written: end the way the command ended, so a shell
        // loop stops on Ctrl-C as it would without childminder.
        sys::die_by_signal(signal);
    }
    exit_code(ending.status)
}

/// Records the signal state childminder inherited, before the Rust runtime
/// changes it (SIGPIPE). The binary calls it from an `.init_array`
/// constructor, before `main`; see `src/main.rs`.
pub fn record_inherited_signal_state() {
    sys::record_inherited_sigpipe();
    sys::record_closed_stdio();
}

/// `childminder init`: `run` as an init process. `--no-subreaper` is a
/// usage error there: an init that does not reap would let zombies pile up.
fn init(args: cli::RunArgs) -> run::Ending {
    if args.no_subreaper {
        run::diagnose("init always reaps orphans: --no-subreaper does not apply to it");
        return run::EXIT_FAILURE.into();
    }
    run::run_as(args, signals::Role::Init)
}

/// The status as `exit(3)` passes it on: its low 8 bits. Every status
/// childminder decides is already in 0..=255.
fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(status as u8)
}

/// Prints clap's message and picks the status: 0 for `--help` and
/// `--version`, 125 (childminder's own failure) for every usage error,
/// instead of clap's 2, which could be mistaken for the command's status.
fn usage_error_status(error: &clap::Error) -> i32 {
    let printed = error
        .print()
        .and_then(|()| std::io::Write::flush(&mut std::io::stdout()));
    if error.use_stderr() {
        return run::EXIT_FAILURE;
    }
    // `--help` or `--version` on stdout: a failed write (`> /dev/full`, a
    // closed pipe) is a failure, as coreutils' `timeout --help` makes it.
    match printed {
        Ok(()) => 0,
        // `childminder --help | head`: the reader had enough (ripgrep's
        // rule; coreutils would die of the SIGPIPE Rust ignores).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            run::diagnose(&format!("writing to standard output: {e}"));
            run::EXIT_FAILURE
        }
    }
}
