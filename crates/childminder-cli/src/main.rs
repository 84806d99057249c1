//! `childminder`: the command-line tool of the childminder library.
//!
//! `childminder run [OPTIONS] -- PROGRAM [ARGS]...` supervises one command
//! with the library's blocking API: parse the command line, run, exit with
//! the status decided by [`run::exit_status`].

mod cli;
mod duration;
mod report;
mod run;
mod signals;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage_error_status(&e)),
    };
    let status = match cli.command {
        cli::Commands::Run(args) => run::run(args),
    };
    std::process::exit(status);
}

/// Prints clap's message and picks the status: 0 for `--help` and
/// `--version`, 125 (childminder's own failure) for every usage error,
/// instead of clap's 2, which could be mistaken for the command's status.
fn usage_error_status(error: &clap::Error) -> i32 {
    let _ = error.print();
    if error.use_stderr() {
        run::EXIT_FAILURE
    } else {
        0
    }
}
