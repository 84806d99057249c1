//! The command line: `childminder run [OPTIONS] -- PROGRAM [ARGS]...`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use childminder::Signal;
use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::duration;

const ABOUT: &str = "Run a command under supervision: a deadline, a graceful escalation \
(SIGTERM, a grace period, SIGKILL) that reaches the whole process group, and a JSON report.";

const LONG_ABOUT: &str = "\
Run a command under supervision: a deadline, a graceful escalation that reaches the \
whole process group, and a JSON report. A better timeout(1) for scripts and CI.

When the command must end (deadline, or a signal childminder receives) it gets its \
first signal (SIGTERM unless -s says otherwise), a grace period, then SIGKILL. \
Nothing the command started in its process group outlives it, and if childminder \
itself is killed, even with SIGKILL, the command dies with it.";

const MAIN_EXAMPLES: &str = "\
Examples:
  # at most 10 s, then SIGTERM, then SIGKILL 5 s later
  childminder run -t 10s -- make test
  # timeout -k 2s 90s ./server, reaching the whole process group
  childminder run -t 1m30s -g 2s -- ./server
  # the JSON report on stderr when the job is done
  childminder run --report - -- ./job

See `childminder run --help` for every option and the exit statuses.";

/// The part of `run`'s and `init`'s help after the options that they share.
macro_rules! streams_and_durations {
    () => {
        "\
Streams: stdin is handed to the command as it is, whatever it is, as timeout \
does: nothing is read ahead, so what the command leaves in a pipe stays there \
(`while read l; do childminder run ...; done` keeps its input). stdout and stderr \
are handed over when they are terminals; pipes and files are streamed through \
childminder, counted in the report and copied to the last byte. With a deadline, \
childminder ends at most a grace period after the later of the deadline and the \
command's exit, even if its reader stops reading (delivery_cut_off, status 124); \
so it does a grace period after an INT, TERM, HUP or QUIT that asked the command \
to end, and one that comes after the command's exit ends it at once (status \
128+N, as it would end a cat).

DURATION: a number of seconds as timeout(1) takes it (1.5, 1e-3, inf) or parts, \
largest unit first: 500ms, 2s, 1m30s, 1e1s (units d, h, m, s, ms, us, ns). It is \
rounded up to whole nanoseconds (a positive DURATION is never 0); 100 years or more, \
and inf, mean forever.

"
    };
}

const RUN_AFTER_HELP: &str = concat!(
    "\
Exit status (GNU timeout conventions):
  N        the command exited with status N
  signal N the command was ended by signal N (and the deadline did not expire): \
childminder ends itself by the same signal, as GNU timeout does, after writing the \
report (a shell shows 128+N: 130 for Ctrl-C), so a shell loop stops on Ctrl-C
  124      the deadline expired (or SIGALRM came) and the command was escalated
           (with --preserve-status: the command's own status, 128+N for a signal),
           or the deadline's bound cut off output a reader did not take
  125      childminder itself failed (bad options, usage, report not
           creatable; out of processes, memory or file descriptors), or
           output could not be delivered (ENOSPC, EIO) by a command that
           exited 0 (or died of the SIGPIPE that failure gave it)
  126      the program was found but could not be run
  127      the program was not found

Signals sent to childminder:
  ALRM                  the deadline, now: escalate, exit 124
  INT, TERM, HUP, QUIT  the first one is sent to the command's process group and \
starts the escalation (grace period, then SIGKILL); a second INT or TERM kills at \
once; a later HUP or QUIT is passed on
  any other             passed on to the command's process group (USR1, USR2, WINCH, \
CONT, URG, the real-time signals, ...); childminder stays alive
  not caught            CHLD; TSTP, TTIN, TTOU (they stop childminder itself); PIPE \
(ignored: a closed reader is an error childminder handles); SEGV, BUS, FPE, ILL, \
TRAP, SYS (a fault of childminder's own)
Every signal received is listed in the report (signals_received). A signal ignored \
when childminder starts (nohup, background jobs) stays ignored; SIGCHLD is reset to \
its default, and SIGPIPE reaches the command as childminder got it.

",
    streams_and_durations!(),
    "\
Examples:
  # supervise, no deadline
  childminder run -- ./build.sh
  # deadline 10 s: SIGTERM, then SIGKILL 5 s later
  childminder run -t 10s -- make test
  # SIGINT at 2 minutes, SIGKILL 500 ms later
  childminder run -t 2m -g 500ms -s INT -- ./server
  # write the JSON report
  childminder run --report report.json -- ./job
  # stdin and stdout stream through, every byte
  yes | childminder run -t 1 -- head -c 1M > out"
);

const INIT_AFTER_HELP: &str = concat!(
    "\
Exit status:
  N        the command exited with status N
  128+N    the command was ended by signal N (an init exits, as tini does: PID 1 \
cannot end itself by a signal)
  124      the deadline (-t) expired and the command was escalated (with \
--preserve-status: its own status)
  125      childminder itself failed (bad options, usage, report not creatable; out \
of processes, memory or file descriptors)
  126      the program was found but could not be run
  127      the program was not found

Signals sent to childminder:
  CHLD        reap every orphan that has exited
  any other   passed on to the command's process group as it is (TERM, INT, HUP, \
QUIT, ALRM, USR1, USR2, WINCH, TSTP, CONT, ABRT, the real-time signals, ...): the \
command decides what it means, and childminder never escalates on a signal (only \
the deadline, -t, does); a second TERM is passed on too
  not caught  TTIN, TTOU, PIPE; SEGV, BUS, FPE, ILL, TRAP, SYS (a fault of \
childminder's own); as PID 1 the kernel drops them when they are sent by kill
Every signal received is listed in the report (signals_received). A signal ignored \
when childminder starts stays ignored.

When the command exits, the rest of its group gets the first signal (-s), SIGKILL \
a grace period (-g) later; then every orphan that re-parented to childminder the \
same, so what ignores the first signal can take two grace periods in all. If \
something of the group still holds the command's stdout or stderr, it has a grace \
period to finish writing; then the output is cut off and the group gets SIGKILL, \
with no first signal (with --cgroup, the whole cgroup). A process entered from \
outside (docker exec, nsenter) is not childminder's: the kernel kills it when PID 1 \
exits.

",
    streams_and_durations!(),
    "\
Examples:
  # Dockerfile
  ENTRYPOINT [\"childminder\", \"init\", \"--\"]
  # a deadline for the whole container job, and a report
  childminder init -t 1h --report - -- ./job"
);

/// `childminder`: the top-level command.
#[derive(Debug, Parser)]
#[command(
    name = "childminder",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = MAIN_EXAMPLES,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The subcommand (`run`).
    #[command(subcommand)]
    pub command: Commands,
}

/// The subcommands.
// `defer`: a subcommand's arguments are built only when that subcommand is
// parsed, not for every start-up (about a third of clap's start-up cost).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Commands {
    /// Run PROGRAM under supervision and exit with its status.
    #[command(
        override_usage = "childminder run [OPTIONS] [--] PROGRAM [ARGS]...",
        long_about = "Run PROGRAM with ARGS under supervision and exit with its status.\n\n\
            PROGRAM is found on PATH unless it contains a '/'. stdin, and a terminal \
            on stdout or stderr, are handed to it as they are; output pipes and files \
            stream through childminder, every byte in order, even when it is escalated. \
            --inherit-stdio hands all three over, --stream-stdio streams them all.",
        after_help = RUN_AFTER_HELP
    )]
    Run(RunArgs),
    /// Be the init (PID 1) of a container: run PROGRAM, forward signals, reap orphans.
    #[command(
        override_usage = "childminder init [OPTIONS] [--] PROGRAM [ARGS]...",
        long_about = "Run PROGRAM as the one job of a container or PID namespace, as its \
            init (PID 1): PROGRAM leads its own process group; every catchable signal \
            childminder receives is forwarded to that group as it is (SIGTERM from \
            `docker stop` included); every orphan that lands on childminder is reaped \
            as it exits, so no zombie accumulates; and when PROGRAM exits, whatever is \
            left gets SIGTERM, SIGKILL a grace period later, and is reaped. childminder \
            exits with PROGRAM's status (128+N when a signal N ended it). Not PID 1, \
            it is a subreaper and does the same with the orphans of PROGRAM's tree.\n\n\
            It takes run's options (deadline, grace, report, --cgroup ...) but not \
            --no-subreaper: an init always reaps.\n\n\
            Dockerfile: ENTRYPOINT [\"childminder\", \"init\", \"--\"]",
        after_help = INIT_AFTER_HELP
    )]
    Init(InitArgs),
    /// Run a set of processes from childminder.toml or a Procfile, as a supervision tree.
    #[command(
        override_usage = "childminder up [-f FILE] [--events PATH|-] [NAME]...",
        long_about = UP_LONG_ABOUT,
        after_help = UP_AFTER_HELP
    )]
    Up(UpArgs),
}

const UP_LONG_ABOUT: &str = "\
Run a set of processes, as foreman and overmind do, under a supervision tree with \
OTP's strategies, restart types and restart intensity.

The configuration is childminder.toml if there is one in the current directory, else \
Procfile (`name: command` lines; when one ends, all stop). Every line the processes \
print goes to stdout, prefixed with the process's name. childminder's own messages go \
to stderr.";

const UP_AFTER_HELP: &str = "\
Signals: SIGINT or SIGTERM stops every process in reverse start order, each with its \
grace period; a second one kills them all at once. SIGHUP, SIGQUIT and every other catchable \
signal (USR1, USR2, WINCH, ...) are forwarded to every process's group as they are.

Exit status:
  0        stopped on request (SIGINT, SIGTERM)
  N        a significant process's status when its end stopped them all (0 if it \
succeeded); the status of the failure that made a supervisor give up (1 for a start \
timeout); when all processes have ended by themselves, 0 if all succeeded, else the \
status of the first that failed (128+N for a signal N)
  125      bad configuration, or childminder's own failure; or a success whose output could not be written (> /dev/full)
  126      the program was found but could not be run
  127      the program was not found

Examples:
  # run the Procfile or childminder.toml of the current directory
  childminder up
  # only web and worker, the events as JSON lines on stderr
  childminder up --events - web worker
  childminder up -f deploy/dev.toml";

// The options of `childminder up`. (A `//` comment: a doc comment on an
// `Args` struct becomes its `about`, which, with `defer`, overrides the
// subcommand's own description in `--help`.)
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The configuration: a .toml file, or a Procfile [default: childminder.toml, else Procfile]
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        long_help = "The configuration file. A name ending in .toml is read as TOML, \
            anything else as a Procfile. [default: childminder.toml in the current \
            directory, else Procfile]\n\
            Example: -f Procfile.dev, -f deploy/services.toml"
    )]
    pub file: Option<PathBuf>,

    /// Write every state change as a line of JSON to PATH; - is stderr [example: --events -]
    #[arg(
        long = "events",
        value_name = "PATH",
        allow_hyphen_values = true,
        long_help = "Write the event stream to PATH as JSON lines, one object per event, \
            flushed as it happens: time, process, event (starting, ready, start_timeout, \
            spawn_failed, exited, restarting, gave_up, stopping, stopped, finished), pid, \
            and for exited the exit and \
            termination of `childminder run --report`. - means standard error.\n\
            Example: --events events.jsonl, --events -"
    )]
    pub events: Option<PathBuf>,

    /// Start only these processes (name paths such as web or workers/queue)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

/// The options of `childminder init`: run's, with `--no-subreaper` hidden
/// from its help (still parsed, so that `init --no-subreaper` gets its own
/// message rather than clap's "unexpected argument"). Written by hand:
/// with `defer`, a `mut_arg` on the subcommand runs before run's arguments
/// exist; here it runs right after they are added.
#[derive(Debug)]
pub struct InitArgs(pub RunArgs);

impl FromArgMatches for InitArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        RunArgs::from_arg_matches(matches).map(InitArgs)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl Args for InitArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        RunArgs::augment_args(cmd).mut_arg("no_subreaper", |arg| arg.hide(true))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        RunArgs::augment_args_for_update(cmd).mut_arg("no_subreaper", |arg| arg.hide(true))
    }
}

// The options of `childminder run` and `childminder init`. (A `//` comment,
// as for `UpArgs`: `init` shares this struct, and its doc comment would
// replace `init`'s description in `init --help`.)
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Begin the escalation this long after the start [example: -t 1m30s]
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "DURATION",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        long_help = "Deadline: this long after the start, send the first signal (-s), \
            then SIGKILL a grace period (-g) later. 0 (and inf, or 100 years or \
            more) means no deadline, as in timeout(1). Exit status 124 when the deadline expired.\n\
            Example: -t 10s, -t 1.5 (seconds), -t 1m30s"
    )]
    pub timeout: Option<Duration>,

    /// Grace period of each escalation step [default: 5s; example: -g 500ms]
    #[arg(
        short = 'g',
        long = "grace",
        visible_short_alias = 'k',
        visible_alias = "kill-after",
        value_name = "DURATION",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        long_help = "Grace period of each escalation step: how long the command has to \
            exit after the first signal before SIGKILL, and for what is left of its \
            group to close its output after it exited. 0 sends SIGKILL right after the first signal. -k and \
            --kill-after are aliases, as GNU `timeout -k` scripts spell it (but childminder \
            always ends with SIGKILL: -k 0 does not disable it; -g inf waits forever). \
            [default: 5s]\n\
            Example: -g 500ms, -k 2s"
    )]
    pub grace: Option<Duration>,

    /// First signal of the escalation [default: TERM; example: -s INT]
    #[arg(
        short = 's',
        long = "signal",
        value_name = "SIGNAL",
        value_parser = parse_first_signal,
        long_help = "First signal of the escalation on the deadline: a name with or without \
            SIG (RTMIN+N and RTMAX-N for real-time signals; IOT, POLL and CLD as \
            kill(1) takes them), or a number. 0 (or EXIT) sends \
            nothing but SIGCONT (a stopped command goes on): SIGKILL follows the grace \
            period, as GNU `timeout -s 0`. \
            [default: TERM]\n\
            Example: -s INT, -s SIGHUP, -s 15, -s RTMIN+1, -s 0"
    )]
    pub signal: Option<FirstSignal>,

    /// Keep the command in childminder's process group [example: --no-group]
    #[arg(
        long = "no-group",
        long_help = "Keep the command in childminder's process group, and signal the \
            command alone. By default it leads a process group of its own, so the \
            escalation reaches everything it started (grandchildren); on a terminal \
            that group is made the terminal's foreground group for the run (as a \
            shell does for a job), so a terminal program works either way.\n\
            Example: childminder run --no-group -- ./legacy-daemon"
    )]
    pub no_group: bool,

    /// Write the JSON report to PATH when the command has ended; - is stderr [example: --report run.json]
    #[arg(
        long = "report",
        value_name = "PATH",
        allow_hyphen_values = true,
        long_help = "After the command has ended (and all its output is copied out), \
            write a JSON report to PATH: program, args, pid, exit, termination, \
            timed_out, term_sent_after_ms, kill_sent_after_ms, runtime_ms, stdout_bytes, \
            stderr_bytes, worker_errors, supervisor_error and more. - means standard \
            error. The file is created before the command starts (a bad path: \
            status 125, nothing runs). A FIFO without a reader does not hold the \
            start; the write waits at most one grace period for a reader. A report \
            that cannot be written is a message; the exit status stays the \
            command's.\n\
            Example: --report run.json, --report -"
    )]
    pub report: Option<OsString>,

    /// Let processes that leave the command's group outlive it [example: --no-subreaper]
    #[arg(
        long = "no-subreaper",
        long_help = "Leave alone the processes that left the command's process group \
            (setsid, a daemon that double-forks). By default childminder is a child \
            subreaper: such processes re-parent to it when orphaned, and once the command \
            has ended and its group is swept, each gets the first signal, SIGKILL a grace \
            period later, and is reaped (escapees_ended in the report). For the rare job \
            that must leave a daemon running.\n\
            Example: childminder run --no-subreaper -- ./start-daemon.sh"
    )]
    pub no_subreaper: bool,

    /// Run the command in a cgroup v2 of its own; =auto falls back to the group and subreaper [example: --cgroup]
    #[arg(
        long = "cgroup",
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "on",
        value_enum,
        long_help = "Run the command in a new cgroup v2 of its own under childminder's \
            (or --cgroup-parent), entered before its first instruction: nothing it starts \
            can leave it, setsid or not. The escalation's first signal goes to every \
            process in it, SIGKILL is cgroup.kill, and the cgroup is removed afterwards; \
            the report adds its CPU time and memory peak. Without a writable cgroup v2 \
            (no delegation, read-only, v1 only) childminder exits 125 and nothing runs; \
            with --cgroup=auto it falls back to the process group and the subreaper, and \
            says so (cgroup_fallback in the report, a warning on stderr).\n\
            Example: childminder run --cgroup -t 10m -- make -j8"
    )]
    pub cgroup: Option<CgroupMode>,

    /// Create the command's cgroup under DIR instead of childminder's own [example: --cgroup-parent /sys/fs/cgroup/jobs]
    #[arg(
        long = "cgroup-parent",
        value_name = "DIR",
        requires = "cgroup",
        long_help = "The cgroup v2 directory under which the command's cgroup is made \
            (a delegated subtree, say), instead of childminder's own cgroup: an absolute \
            path inside the cgroup v2 mount (elsewhere: status 125, or with \
            --cgroup=auto the fallback, and nothing is made). Missing directories are \
            created and removed again afterwards.\n\
            Example: --cgroup --cgroup-parent /sys/fs/cgroup/unified/ci"
    )]
    pub cgroup_parent: Option<std::path::PathBuf>,

    /// Hand stdin, stdout and stderr straight to the command [example: --inherit-stdio]
    #[arg(
        long = "inherit-stdio",
        long_help = "Hand childminder's stdin, stdout and stderr straight to the command, \
            whatever they are, instead of streaming pipes and files through childminder \
            (terminals are handed over without it). stdout_bytes and stderr_bytes in the \
            report are then null.\n\
            Example: childminder run --inherit-stdio -t 1h -- ./tool"
    )]
    pub inherit_stdio: bool,

    /// Stream stdout and stderr through childminder even when they are terminals [example: --stream-stdio]
    #[arg(
        long = "stream-stdio",
        conflicts_with = "inherit_stdio",
        long_help = "Stream stdout and stderr through childminder whatever they are, \
            terminals included, so the report counts every byte (stdout_bytes, \
            stderr_bytes); stdin too, unless it is a file. The command then sees pipes, \
            not the terminal. The opposite of --inherit-stdio.\n\
            Example: childminder run --stream-stdio --report - -- make"
    )]
    pub stream_stdio: bool,

    /// On the deadline, exit with the command's status rather than 124 [example: --preserve-status]
    #[arg(
        long = "preserve-status",
        long_help = "When the deadline expired, exit with the command's own status \
            (such as 143 for SIGTERM, 137 for SIGKILL) instead of 124, as \
            `timeout --preserve-status` does. Output the deadline's bound cut \
            off undelivered is still 124: the status says output was lost.\n\
            Example: childminder run --preserve-status -t 5s -- ./server"
    )]
    pub preserve_status: bool,

    /// The program to run, and its arguments
    #[arg(
        value_name = "PROGRAM",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        long_help = "The program to run, found on PATH unless it contains a '/', and its \
            arguments, passed as they are (no shell). Put -- before it when it or its \
            arguments start with '-'.\n\
            Example: -- sh -c 'make && make test'"
    )]
    pub command: Vec<OsString>,
}

/// The value of `--cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupMode {
    /// A cgroup, or exit 125.
    On,
    /// A cgroup, or the process group and the subreaper.
    Auto,
}

impl RunArgs {
    /// The cgroup option of the library, from `--cgroup[=auto]` and
    /// `--cgroup-parent`.
    pub fn cgroup(&self) -> Option<childminder::Cgroup> {
        let mode = self.cgroup?;
        let mut cgroup = childminder::Cgroup::new().fallback(mode == CgroupMode::Auto);
        if let Some(parent) = &self.cgroup_parent {
            cgroup = cgroup.parent(parent);
        }
        Some(cgroup)
    }

    /// The grace period, with its default.
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(childminder::DEFAULT_GRACE_PERIOD)
    }

    /// The first signal, with its default; `None` for `-s 0` (send nothing).
    pub fn signal(&self) -> Option<Signal> {
        self.signal.map_or(Some(Signal::TERM), |s| s.0)
    }
}

/// The value of `-s`: a signal, or `None` for `0` (send nothing first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstSignal(pub Option<Signal>);

/// Parses `-s`: `0` (nothing) or a SIGNAL as [`parse_signal`] takes it.
///
/// # Errors
///
/// The message for the user, naming the input.
///
/// # Examples
///
/// ```
/// use childminder::Signal;
/// use childminder_cli::cli::{FirstSignal, parse_first_signal};
///
/// assert_eq!(parse_first_signal("0"), Ok(FirstSignal(None)));
/// assert_eq!(parse_first_signal("EXIT"), Ok(FirstSignal(None)));
/// assert_eq!(parse_first_signal("sigexit"), Ok(FirstSignal(None)));
/// assert_eq!(parse_first_signal("INT"), Ok(FirstSignal(Some(Signal::INT))));
/// ```
pub fn parse_first_signal(s: &str) -> Result<FirstSignal, String> {
    // `EXIT` (or `SIGEXIT`) is GNU's name for 0 (the shell's `trap ... EXIT`).
    let bare = s.trim().to_ascii_uppercase();
    if bare == "0" || bare.strip_prefix("SIG").unwrap_or(&bare) == "EXIT" {
        return Ok(FirstSignal(None));
    }
    parse_signal(s).map(|signal| FirstSignal(Some(signal)))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// Parses a SIGNAL: a name with or without `SIG`, in any case
/// (`TERM`, `SIGTERM`, `sigterm`), a real-time signal (`RTMIN+1`,
/// `RTMAX-2`), or a number from 1 to `SIGRTMAX` (64 on Linux), as
/// [`Signal`]'s `FromStr` takes it.
///
/// # Errors
///
/// The message for the user, naming the input.
///
/// # Examples
///
/// ```
/// use childminder::Signal;
/// use childminder_cli::cli::parse_signal;
///
/// assert_eq!(parse_signal("sigint"), Ok(Signal::INT));
/// assert_eq!(parse_signal("15"), Ok(Signal::TERM));
/// assert!(parse_signal("TERMX").unwrap_err().contains("\"TERMX\""));
/// ```
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    s.parse::<Signal>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut full = vec!["childminder", "run"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).map(|cli| match cli.command {
            Commands::Run(run) | Commands::Init(InitArgs(run)) => run,
            Commands::Up(_) => panic!("not run"),
        })
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let run = parse(&["--", "sleep", "1"]).unwrap();
        assert_eq!(run.grace(), Duration::from_secs(5));
        assert_eq!(run.signal(), Some(Signal::TERM));
        assert_eq!(run.timeout, None);
        assert!(!run.no_group && !run.inherit_stdio && !run.preserve_status);
        assert!(!run.no_subreaper && run.cgroup.is_none());
        assert_eq!(run.command, ["sleep", "1"]);
    }

    #[test]
    fn options_and_aliases() {
        let run = parse(&[
            "-t", "1m30s", "-k", "2", "-s", "SIGINT", "--report", "-", "--", "ls", "-l",
        ])
        .unwrap();
        assert_eq!(run.timeout, Some(Duration::from_secs(90)));
        assert_eq!(run.grace(), Duration::from_secs(2));
        assert_eq!(run.signal(), Some(Signal::INT));
        assert_eq!(run.report.as_deref(), Some("-".as_ref()));
        assert_eq!(run.command, ["ls", "-l"]);
        let run = parse(&["--kill-after=3s", "-s", "15", "true"]).unwrap();
        assert_eq!(run.grace(), Duration::from_secs(3));
        assert_eq!(run.signal(), Some(Signal::TERM));
        let run = parse(&["-s", "0", "true"]).unwrap();
        assert_eq!(run.signal(), None);
        let run = parse(&["-s", "rtmin+1", "true"]).unwrap();
        assert_eq!(run.signal().unwrap().as_raw(), libc::SIGRTMIN() + 1);
    }

    #[test]
    fn containment_options() {
        let run = parse(&["--cgroup", "--no-subreaper", "true"]).unwrap();
        assert_eq!(run.cgroup, Some(CgroupMode::On));
        assert!(run.no_subreaper);
        assert_eq!(run.cgroup(), Some(childminder::Cgroup::new()));
        let run = parse(&["--cgroup=auto", "--cgroup-parent", "/x", "true"]).unwrap();
        assert_eq!(
            run.cgroup(),
            Some(childminder::Cgroup::new().fallback(true).parent("/x"))
        );
        // `--cgroup auto` would run a program named auto: the value needs `=`.
        let run = parse(&["--cgroup", "auto"]).unwrap();
        assert_eq!(
            (run.cgroup, run.command.as_slice()),
            (Some(CgroupMode::On), &["auto".into()][..])
        );
        assert!(parse(&["--cgroup=maybe", "true"]).is_err());
        assert!(parse(&["--cgroup-parent", "/x", "true"]).is_err());
    }

    #[test]
    fn arguments_after_the_program_belong_to_it() {
        let run = parse(&["-t", "1", "ls", "-t", "--", "-g"]).unwrap();
        assert_eq!(run.timeout, Some(Duration::from_secs(1)));
        assert_eq!(run.command, ["ls", "-t", "--", "-g"]);
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--"]).is_err());
        let e = parse(&["-t", "1m30", "--", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("30 has no unit"), "{e}");
        let e = parse(&["-t", "-1s", "--", "true"]).unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
        let e = parse(&["-s", "TERMX", "--", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown signal"), "{e}");
    }
}
