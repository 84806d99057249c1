//! The `Command` builder: what to run and how to supervise it, and its
//! validation into what the spawn path needs.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::contain::Cgroup;
use crate::error::Error;
use crate::signal::Signal;

/// Largest accepted [`Command::buffer_size`] (the seed's bound).
pub const MAX_BUFFER_SIZE: usize = 16 * 1024 * 1024;

/// Default [`Command::buffer_size`]: 64 KiB, the size of a default Linux
/// pipe buffer, so one read can drain a full pipe. Measured (see
/// `docs/bench.md`): 4 KiB chunks (the seed's) cost 1.7x the CPU per GiB;
/// above 64 KiB nothing is gained, since a read takes what the pipe holds.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// Default [`Command::grace_period`]: 5 seconds, as in the seed.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Largest accepted grace period or deadline: 100 years. Anything longer is
/// surely a unit mistake, and far-future instants overflow some clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where one of the child's standard streams goes.
///
/// The variants, and std's names for them as functions
/// ([`piped`](Self::piped), [`inherit`](Self::inherit),
/// [`null`](Self::null)); a [`File`](std::fs::File) or any
/// [`OwnedFd`] (a pipe end, a socket) converts into one, as with
/// `std::process::Stdio`.
///
/// # Examples
///
/// ```
/// use childminder::{Command, Stdio};
///
/// let log = std::fs::File::create(std::env::temp_dir().join("childminder-doc.log")).unwrap();
/// let mut cmd = Command::new("true");
/// cmd.stdin(Stdio::Null).stdout(log).stderr(Stdio::ToStdout);
/// assert!(cmd.run().unwrap().success());
/// ```
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// A pipe to the supervisor (the default): the producer or consumer, or
    /// the async child's stream.
    #[default]
    Piped,
    /// The supervisor's own stream, handed straight to the child.
    Inherit,
    /// `/dev/null`.
    Null,
    /// For stderr only: wherever stdout goes, as the shell's `2>&1`. With
    /// stdout piped, both streams share one pipe, so the stdout consumer
    /// (or the async child's `stdout`) gets everything the child wrote to
    /// either, in the order it wrote it; there is no stderr stream.
    ToStdout,
    /// An open file, pipe or socket the child gets a copy of (build it with
    /// `From<File>` or `From<OwnedFd>`). Ours stays open until the
    /// [`Command`] is dropped.
    Fd(Arc<OwnedFd>),
}

impl Stdio {
    /// [`Stdio::Piped`], by std's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Stdio::piped(), childminder::Stdio::Piped);
    /// ```
    pub fn piped() -> Stdio {
        Stdio::Piped
    }

    /// [`Stdio::Inherit`], by std's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Stdio::inherit(), childminder::Stdio::Inherit);
    /// ```
    pub fn inherit() -> Stdio {
        Stdio::Inherit
    }

    /// [`Stdio::Null`], by std's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Stdio::null(), childminder::Stdio::Null);
    /// ```
    pub fn null() -> Stdio {
        Stdio::Null
    }

    pub(crate) fn is_piped(&self) -> bool {
        matches!(self, Stdio::Piped)
    }
}

/// Equal when the same kind, and for [`Stdio::Fd`] the same descriptor.
impl PartialEq for Stdio {
    fn eq(&self, other: &Stdio) -> bool {
        match (self, other) {
            (Stdio::Fd(a), Stdio::Fd(b)) => a.as_raw_fd() == b.as_raw_fd(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for Stdio {}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Stdio {
        Stdio::Fd(Arc::new(fd))
    }
}

impl From<std::fs::File> for Stdio {
    fn from(file: std::fs::File) -> Stdio {
        Stdio::from(OwnedFd::from(file))
    }
}

impl From<std::process::ChildStdout> for Stdio {
    fn from(out: std::process::ChildStdout) -> Stdio {
        Stdio::from(OwnedFd::from(out))
    }
}

/// Another child's stderr as this one's stdin, as std's `Stdio` takes it.
///
/// # Examples
///
/// ```
/// use childminder::Command;
/// let mut first = Command::new("sh").args(["-c", "echo oops >&2"]).start().unwrap();
/// let err = first.stderr.take().unwrap();
/// let out = Command::new("cat").stdin(err).output().unwrap();
/// assert_eq!(out.stdout, b"oops\n");
/// first.wait();
/// ```
impl From<std::process::ChildStderr> for Stdio {
    fn from(err: std::process::ChildStderr) -> Stdio {
        Stdio::from(OwnedFd::from(err))
    }
}

/// Another child's stdin as this one's stdout (or stderr), as std's
/// `Stdio` takes it.
///
/// # Examples
///
/// ```
/// use childminder::Command;
/// let mut cat = Command::new("cat").start().unwrap();
/// let stdin = cat.stdin.take().unwrap();
/// Command::new("echo").arg("hi").stdout(stdin).status().unwrap();
/// assert!(cat.wait().success());
/// ```
impl From<std::process::ChildStdin> for Stdio {
    fn from(stdin: std::process::ChildStdin) -> Stdio {
        Stdio::from(OwnedFd::from(stdin))
    }
}

/// What to run, and how to supervise it: the builder of `std::process::Command`
/// plus the seed's `ProcessOptions`.
///
/// Nothing is checked until the command is run; then every option is
/// validated before anything is spawned, and a bad one is an
/// [`Error::InvalidOptions`] naming it.
///
/// # Examples
///
/// ```
/// use childminder::Command;
/// use std::time::Duration;
///
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "echo $GREETING"])
///     .env("GREETING", "hello")
///     .grace_period(Duration::from_secs(2));
/// let out = cmd.output().unwrap();
/// assert_eq!(out.stdout, b"hello\n");
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    env_clear: bool,
    env: BTreeMap<OsString, Option<OsString>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) grace_period: Duration,
    pub(crate) buffer_size: usize,
    pub(crate) flush_stdin: bool,
    pub(crate) deadline: Option<Duration>,
    pub(crate) process_group: bool,
    pub(crate) kill_on_parent_death: bool,
    pub(crate) terminal_foreground: bool,
    arg0: Option<OsString>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) groups: Option<Vec<u32>>,
    pub(crate) inherit_sigpipe: bool,
    pub(crate) subreaper: bool,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) term_signal: Option<Signal>,
    pub(crate) stdio: [Stdio; 3],
    pub(crate) pipe_capacity: Option<usize>,
    pub(crate) extra_fds: Vec<(Arc<OwnedFd>, RawFd)>,
}

impl Command {
    /// A command to run `program`, found on `PATH` if it has no `/`, with
    /// the defaults: grace period 5 s, buffer size 64 KiB, `flush_stdin`
    /// on, no deadline, its own process group, all three streams piped.
    ///
    /// # Examples
    ///
    /// ```
    /// let result = childminder::Command::new("true").run().unwrap();
    /// assert!(result.success());
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: BTreeMap::new(),
            cwd: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            buffer_size: DEFAULT_BUFFER_SIZE,
            flush_stdin: true,
            deadline: None,
            process_group: true,
            kill_on_parent_death: false,
            terminal_foreground: false,
            arg0: None,
            uid: None,
            gid: None,
            groups: None,
            inherit_sigpipe: false,
            subreaper: false,
            cgroup: None,
            term_signal: Some(Signal::TERM),
            stdio: [Stdio::Piped, Stdio::Piped, Stdio::Piped],
            pipe_capacity: None,
            extra_fds: Vec::new(),
        }
    }

    /// Appends one argument. It reaches the child byte for byte: there is
    /// no shell.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("echo").arg("$(not run)").output().unwrap();
    /// assert_eq!(out.stdout, b"$(not run)\n");
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("echo").args(["a", "b"]).output().unwrap();
    /// assert_eq!(out.stdout, b"a b\n");
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("sh")
    ///     .args(["-c", "echo $X"]).env("X", "1").output().unwrap();
    /// assert_eq!(out.stdout, b"1\n");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets several environment variables.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = childminder::Command::new("env");
    /// cmd.envs([("A", "1"), ("B", "2")]);
    /// ```
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes a variable from the child's environment.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("sh")
    ///     .args(["-c", "echo ${HOME:-unset}"]).env_remove("HOME").output().unwrap();
    /// assert_eq!(out.stdout, b"unset\n");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the child's environment empty: nothing of the parent's is
    /// passed, only what [`env`](Self::env) adds afterwards. Together they
    /// express the seed's `optEnv = Just env`.
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("/usr/bin/env").env_clear().env("ONLY", "me")
    ///     .output().unwrap();
    /// assert_eq!(out.stdout, b"ONLY=me\n");
    /// ```
    pub fn env_clear(&mut self) -> &mut Command {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Runs the child in `dir`. It must exist and be a directory (checked
    /// before spawning, as an [`Error::InvalidOptions`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("pwd").current_dir("/").output().unwrap();
    /// assert_eq!(out.stdout, b"/\n");
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// How long each escalation step waits: for a natural exit after stdin
    /// is closed, then after SIGTERM. Default 5 s. Zero is allowed (TERM at
    /// once, KILL at once after it).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// childminder::Command::new("sleep").arg("1").grace_period(Duration::from_millis(200));
    /// ```
    pub fn grace_period(&mut self, grace: Duration) -> &mut Command {
        self.grace_period = grace;
        self
    }

    /// The largest chunk handed to a stdout or stderr consumer: 1 byte to
    /// 16 MiB, default [`DEFAULT_BUFFER_SIZE`].
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("yes").buffer_size(4096);
    /// ```
    pub fn buffer_size(&mut self, bytes: usize) -> &mut Command {
        self.buffer_size = bytes;
        self
    }

    /// With `true` (the default) the stdin producer is asked for the next
    /// chunk only once the previous one is fully written into the pipe;
    /// with `false` it may produce one chunk ahead while the previous one
    /// is still being written. (Pipes have no user-space buffer, so every
    /// write reaches the pipe unbuffered either way.)
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("cat").flush_stdin(false);
    /// ```
    pub fn flush_stdin(&mut self, flush: bool) -> &mut Command {
        self.flush_stdin = flush;
        self
    }

    /// Begins the escalation this long after the spawn, whatever the action
    /// is doing: the first signal at once, then the grace period, then
    /// SIGKILL. `deadline == grace_period` reproduces the seed's timing.
    /// Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = childminder::Command::new("sleep").arg("10")
    ///     .deadline(Duration::from_millis(20)).run().unwrap();
    /// assert!(r.timed_out());
    /// ```
    pub fn deadline(&mut self, after: Duration) -> &mut Command {
        self.deadline = Some(after);
        self
    }

    /// With `true` (the default) the child leads a new process group and the
    /// escalation signals the whole group, so grandchildren end with it;
    /// nothing of the group outlives the supervision. With `false` the child
    /// stays in the caller's group and only the child is signalled.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("make").process_group(false);
    /// ```
    pub fn process_group(&mut self, own_group: bool) -> &mut Command {
        self.process_group = own_group;
        self
    }

    /// Asks the kernel to SIGKILL the child when the thread that spawned it
    /// dies (`PR_SET_PDEATHSIG`), so even a SIGKILL of the supervisor takes
    /// the child along. Default off, for two reasons:
    ///
    /// - it is per *thread*: the signal fires when the spawning thread ends,
    ///   not the process. The scoped calls ([`with_process`](crate::with_process),
    ///   [`status`](Self::status), [`output`](Self::output)) spawn on the
    ///   calling thread, which lives until the child is reaped;
    ///   [`start`](Self::start) and the async [`spawn`](Self::spawn) spawn on
    ///   the calling thread too and return at once, so a child started on a
    ///   thread that ends first (a short-lived worker thread, a tokio
    ///   `spawn_blocking` thread, which tokio ends after a while idle) is
    ///   SIGKILLed then: start it on a thread that outlives it (`main`, a
    ///   runtime worker);
    /// - it needs code in the child before `exec`, which moves the spawn
    ///   from `posix_spawn` (vfork) to `fork`: measured 0.6 ms → 9.5 ms per
    ///   spawn in a 256 MiB parent, 31 ms in a 1 GiB one.
    ///
    /// It reaches the direct child only; grandchildren are reached through
    /// the process group by the supervisor, which is gone in that case.
    /// On this path, as with std and `timeout(1)`, a file the kernel cannot
    /// execute and that has no `#!` line is run by `/bin/sh` (`execvp`'s
    /// rule); [`pass_fd`](Self::pass_fd) cannot be combined with it.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("worker").kill_on_parent_death(true);
    /// ```
    pub fn kill_on_parent_death(&mut self, enable: bool) -> &mut Command {
        self.kill_on_parent_death = enable;
        self
    }

    /// Gives the terminal to the child for its run, as a shell does for a
    /// foreground job. Default off.
    ///
    /// It applies when the child leads its own process group
    /// ([`process_group`](Self::process_group), the default) and one of
    /// the streams it inherits ([`Stdio::Inherit`]) is a terminal whose
    /// foreground process group is the caller's. Then the child's group
    /// becomes the terminal's foreground group before the program's first
    /// instruction (`posix_spawn_file_actions_addtcsetpgrp_np` on the
    /// `posix_spawn` path, `tcsetpgrp` before `exec` on the fork path), so
    /// it can read the terminal and is not stopped by `SIGTTIN`, and Ctrl-C
    /// and Ctrl-Z reach it (and not the caller). Once the child has exited
    /// (by itself or escalated), the terminal is given back to the caller's
    /// group, if the child's group still holds it. Otherwise this option
    /// does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{Command, Stdio};
    /// let mut cmd = Command::new("vim");
    /// cmd.stdin(Stdio::Inherit)
    ///     .stdout(Stdio::Inherit)
    ///     .stderr(Stdio::Inherit)
    ///     .terminal_foreground(true);
    /// ```
    pub fn terminal_foreground(&mut self, enable: bool) -> &mut Command {
        self.terminal_foreground = enable;
        self
    }

    /// Sets the child's `argv[0]`, what it sees as its own name (std's
    /// `CommandExt::arg0`); the program run is still the one given to
    /// [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// let out = childminder::Command::new("sh").arg0("my-shell").args(["-c", "echo $0"])
    ///     .output().unwrap();
    /// assert_eq!(out.stdout, b"my-shell\n");
    /// ```
    pub fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Command {
        self.arg0 = Some(arg0.as_ref().to_owned());
        self
    }

    /// Runs the child as user `uid` (`setuid` in the child; std's
    /// `CommandExt::uid`). Without [`groups`](Self::groups), the
    /// supplementary groups are dropped when permitted, as std does.
    /// Changing user needs privilege (root or `CAP_SETUID`); a refusal is a
    /// [`Error::ProcessStartFailed`] with `EPERM`.
    ///
    /// **Cost:** the credentials are set by code in the child before
    /// `exec`, which moves the spawn from `posix_spawn` (vfork) to `fork`,
    /// as [`kill_on_parent_death`](Self::kill_on_parent_death) does: measured
    /// 0.6 ms → 9.5 ms per spawn in a 256 MiB parent, 31 ms in a 1 GiB one
    /// (the page tables are copied). It cannot be combined with
    /// [`pass_fd`](Self::pass_fd). On this path, as with std, the working
    /// directory is entered and a bare program name looked up on `PATH`
    /// as the new user (a candidate that user cannot execute is skipped,
    /// as `execvp` does), and a file the kernel cannot execute and that
    /// has no `#!` line is run by `/bin/sh`. A name found nowhere on
    /// `PATH` is still `NotFound` before anything is spawned.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // As root: run a job as `nobody`.
    /// let out = childminder::Command::new("id").arg("-u").uid(65534).gid(65534)
    ///     .output().unwrap();
    /// assert_eq!(out.stdout, b"65534\n");
    /// ```
    pub fn uid(&mut self, uid: u32) -> &mut Command {
        self.uid = Some(uid);
        self
    }

    /// Runs the child with group `gid` (`setgid` in the child; std's
    /// `CommandExt::gid`). Same cost and privilege as [`uid`](Self::uid).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// childminder::Command::new("id").gid(65534);
    /// ```
    pub fn gid(&mut self, gid: u32) -> &mut Command {
        self.gid = Some(gid);
        self
    }

    /// Sets the child's supplementary groups (`setgroups` in the child;
    /// std's unstable `CommandExt::groups`); an empty list drops them all.
    /// Same cost and privilege as [`uid`](Self::uid).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// childminder::Command::new("id").uid(1000).gid(1000).groups(&[1000, 27]);
    /// ```
    pub fn groups(&mut self, groups: &[u32]) -> &mut Command {
        self.groups = Some(groups.to_vec());
        self
    }

    /// Whether the spawn needs code in the child before `exec` (fork).
    pub(crate) fn uses_fork(&self) -> bool {
        self.kill_on_parent_death || self.changes_credentials()
    }

    /// Whether the child takes on another user, group or groups.
    pub(crate) fn changes_credentials(&self) -> bool {
        self.uid.is_some() || self.gid.is_some() || self.groups.is_some()
    }

    /// Gives the child SIGPIPE as this process has it when spawning, instead
    /// of at its default (terminate).
    ///
    /// By default (`false`) the child starts with SIGPIPE at its default,
    /// as std does: the Rust runtime ignores SIGPIPE for itself before
    /// `main`, and a program that inherited that would see `EPIPE` errors
    /// where a shell pipeline's `yes | head` expects it to die quietly. With
    /// `true`, the child inherits this process's disposition: ignored stays
    /// ignored (a handler becomes the default, as `exec` makes it). Use it
    /// to pass on what your own parent gave you: a program that records
    /// SIGPIPE's disposition before the Rust runtime changes it (as the
    /// `childminder` command does with an `.init_array` constructor) and
    /// finds it was ignored sets this to `true`, so `trap '' PIPE` in a
    /// shell reaches the command as it would without the supervisor.
    ///
    /// Every other signal starts the same on both spawn paths: an empty
    /// signal mask, and the dispositions `exec` passes on (ignored stays
    /// ignored, so `nohup` works; handlers become the default).
    ///
    /// # Examples
    ///
    /// ```
    /// // The child gets SIGPIPE ignored, as a Rust program has it.
    /// childminder::Command::new("yes").inherit_sigpipe(true);
    /// ```
    pub fn inherit_sigpipe(&mut self, inherit: bool) -> &mut Command {
        self.inherit_sigpipe = inherit;
        self
    }

    /// Ends the escapees too: descendants that left the child's process
    /// group (`setsid`, `setpgid`: every daemon that double-forks) and were
    /// orphaned. Default off.
    ///
    /// The first spawn with it on makes this whole program a child
    /// subreaper for the rest of its life ([`subreaper::enable`](crate::subreaper::enable),
    /// which says what that changes): orphaned descendants re-parent to it
    /// instead of to init. When the child has ended and its group has been
    /// swept (in the teardown), every child of this program that
    /// childminder did not start is an escapee: it gets the first signal
    /// (and SIGCONT) at once, SIGKILL a grace period later, and is reaped,
    /// through a pidfd opened while it is our child, so no signal can reach
    /// a recycled pid; its own children re-parent in turn and get the same,
    /// until none is left. [`SupervisionResult::containment`](crate::SupervisionResult::containment)
    /// counts them. One still there a second after its SIGKILL (stuck in
    /// the kernel) is left to the engine, which reaps it whenever it exits.
    /// A kill asked for during the sweep ([`Child::kill`](crate::Child::kill),
    /// a supervision tree's kill) ends its grace: SIGKILL at once. A
    /// supervision whose future is dropped (a cancelled `output_async`, a
    /// runtime shut down) hands its sweep to the engine, which gives the
    /// escapees SIGKILL at once, as the child got, and reaps them.
    ///
    /// Turn it on only in a program whose children all come from
    /// childminder (a dedicated supervisor, like `childminder run`): a
    /// child started some other way cannot be told from an escapee and
    /// would be ended too. When several supervisions with it on overlap,
    /// the sweep runs at the end of the last one, so none ends another's
    /// processes while it still runs.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = childminder::Command::new("sh")
    ///     .args(["-c", "setsid sleep 30 & exit 0"])
    ///     .subreaper(true)
    ///     .run()
    ///     .unwrap();
    /// assert!(r.containment.subreaper);
    /// ```
    pub fn subreaper(&mut self, enable: bool) -> &mut Command {
        self.subreaper = enable;
        self
    }

    /// Runs the child in a new cgroup v2 of its own (see [`Cgroup`] for
    /// where), entered before the program's first instruction, so nothing
    /// it starts can be outside it, `setsid` or not. Default: none.
    ///
    /// With it, the escalation's first signal goes to every process in the
    /// cgroup and in any cgroup the child made inside it (each through a
    /// pidfd) and its SIGKILL is `cgroup.kill`; once
    /// the child has exited, "everything has ended" is the cgroup's
    /// `populated 0` event, which replaces the periodic check of the
    /// process group. The cgroup is removed afterwards (the cgroups made
    /// inside it first), and
    /// [`Containment::cgroup`](crate::Containment::cgroup) reports its CPU
    /// time and memory peak.
    ///
    /// Ended is not reaped: the members that were orphaned re-parent to
    /// init, or to this process if it is a child subreaper (see
    /// [`subreaper::enable`](crate::subreaper::enable)), where they stay
    /// zombies until [`subreaper(true)`](Self::subreaper) on this or a
    /// later supervision, or [`subreaper::reap_orphans`](crate::subreaper::reap_orphans),
    /// reaps them. `childminder run` and `init` are subreapers that do.
    ///
    /// Costs: the child must join the cgroup between fork and exec, so the
    /// spawn takes the fork path instead of `posix_spawn`'s vfork (see
    /// [`kill_on_parent_death`](Self::kill_on_parent_death) for what that
    /// costs a large parent); [`pass_fd`](Self::pass_fd) cannot be combined
    /// with it. If childminder itself is SIGKILLed, the cgroup is left
    /// behind (it is named `childminder-<pid>-<n>`; a name already taken, by
    /// such a leftover or by a childminder with the same pid in another pid
    /// namespace, is skipped).
    ///
    /// # Errors
    ///
    /// The spawn fails with [`Error::CgroupUnavailable`] when no cgroup can
    /// be made (no cgroup v2, no write access or delegation), unless
    /// [`Cgroup::fallback`] is set.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use childminder::{Cgroup, Command};
    ///
    /// let r = Command::new("sh")
    ///     .args(["-c", "setsid sleep 30 & exit 0"])
    ///     .cgroup(Cgroup::new())
    ///     .run()
    ///     .unwrap();
    /// let cgroup = r.containment.cgroup.unwrap();
    /// assert!(!cgroup.path.exists()); // removed, the daemon with it
    /// println!("CPU: {:?}", cgroup.cpu_usage);
    /// ```
    pub fn cgroup(&mut self, cgroup: Cgroup) -> &mut Command {
        self.cgroup = Some(cgroup);
        self
    }

    /// The first signal of the escalation. Default [`Signal::TERM`].
    ///
    /// `None` sends nothing at that step (GNU `timeout -s 0`): when the
    /// escalation reaches it (the deadline, for one), the step is recorded
    /// as taken (`term_sent_after` in the result, and the run counts as
    /// escalated) but no signal is sent except SIGCONT (a stopped child goes
    /// on, as under GNU `timeout -s 0`), and SIGKILL follows a grace period
    /// later. A signal asked for with [`Process::terminate`](crate::Process::terminate)
    /// (or a handle's `terminate`) is still sent: before the deadline, as
    /// the first signal; after it, once, within the grace period already
    /// running (as GNU `timeout -s 0` passes a TERM it receives on).
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{Command, Signal};
    ///
    /// Command::new("server").term_signal(Signal::INT);
    /// // Nothing at the deadline; SIGKILL 2 s later.
    /// Command::new("job")
    ///     .deadline(std::time::Duration::from_secs(60))
    ///     .grace_period(std::time::Duration::from_secs(2))
    ///     .term_signal(None);
    /// ```
    pub fn term_signal(&mut self, signal: impl Into<Option<Signal>>) -> &mut Command {
        self.term_signal = signal.into();
        self
    }

    /// Where the child's stdin comes from. Default [`Stdio::Piped`].
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("true").stdin(childminder::Stdio::Null);
    /// ```
    pub fn stdin(&mut self, stdio: impl Into<Stdio>) -> &mut Command {
        self.stdio[0] = stdio.into();
        self
    }

    /// Where the child's stdout goes. Default [`Stdio::Piped`].
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("true").stdout(childminder::Stdio::Inherit);
    /// ```
    pub fn stdout(&mut self, stdio: impl Into<Stdio>) -> &mut Command {
        self.stdio[1] = stdio.into();
        self
    }

    /// Where the child's stderr goes. Default [`Stdio::Piped`];
    /// [`Stdio::ToStdout`] merges it into stdout (`2>&1`).
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::{Command, Stdio};
    /// let out = Command::new("sh").args(["-c", "echo a; echo b >&2; echo c"])
    ///     .stderr(Stdio::ToStdout).output().unwrap();
    /// assert_eq!(out.stdout, b"a\nb\nc\n");
    /// assert!(out.stderr.is_empty());
    /// ```
    pub fn stderr(&mut self, stdio: impl Into<Stdio>) -> &mut Command {
        self.stdio[2] = stdio.into();
        self
    }

    /// Asks the kernel for pipe buffers of this size (`F_SETPIPE_SZ`) for
    /// the piped streams. Best effort: above `fs.pipe-max-size`, or over the
    /// per-user pipe quota, the default 64 KiB stays. Default: unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// childminder::Command::new("yes").pipe_capacity(1 << 20);
    /// ```
    pub fn pipe_capacity(&mut self, bytes: usize) -> &mut Command {
        self.pipe_capacity = Some(bytes);
        self
    }

    /// Passes `fd` to the child as descriptor number `target` (3 or above).
    /// Otherwise the child gets only fds 0, 1 and 2: every other descriptor
    /// of this process, close-on-exec or not, is closed in the child.
    ///
    /// Only on the `posix_spawn` path: [`validate`](Self::validate) (and so
    /// every spawn) refuses it with [`uid`](Self::uid), [`gid`](Self::gid),
    /// [`groups`](Self::groups),
    /// [`kill_on_parent_death`](Self::kill_on_parent_death) or
    /// [`cgroup`](Self::cgroup), which spawn through std's fork, whose own
    /// exec-error pipe could be the descriptor the passed fd lands on.
    ///
    /// # Errors
    ///
    /// The spawn fails with [`Error::InvalidOptions`] for a `target` below
    /// 3 or at or above the fd limit (`RLIMIT_NOFILE`), and for the last
    /// one below the limit while a descriptor above the limit (opened
    /// before the limit was lowered) is open without close-on-exec: glibc
    /// cannot close what lies above the limit in the child, and the child
    /// would inherit it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// let file: OwnedFd = std::fs::File::open("/etc/hostname").unwrap().into();
    /// let out = childminder::Command::new("cat").arg("/proc/self/fd/3")
    ///     .pass_fd(file, 3).output().unwrap();
    /// assert!(!out.stdout.is_empty());
    /// ```
    pub fn pass_fd(&mut self, fd: impl Into<OwnedFd>, target: RawFd) -> &mut Command {
        self.extra_fds.retain(|(_, t)| *t != target);
        self.extra_fds.push((Arc::new(fd.into()), target));
        self
    }

    /// The program, as given to [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Command::new("ls").get_program(), "ls");
    /// ```
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, as given.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = childminder::Command::new("ls");
    /// cmd.arg("-l");
    /// assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["-l"]);
    /// ```
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    /// Checks every option without spawning anything.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for: an empty program; a NUL byte in the
    /// program, an argument, an environment key or value, or the working
    /// directory; an environment key that is empty or holds `=`; a buffer
    /// size of 0 or over 16 MiB; a grace period or deadline over
    /// [`MAX_DURATION`]; a working directory that is not a directory; a
    /// `pass_fd` target below 3 or at or above the fd limit, or `pass_fd`
    /// together with `kill_on_parent_death` or `cgroup`.
    ///
    /// It also looks a program without `/` up on `PATH` (the child's, if
    /// set), as the spawn will: [`Error::ProcessStartFailed`] when it is not
    /// found there. A path with `/` is checked only by the spawn.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = childminder::Command::new("ls").buffer_size(0).validate().unwrap_err();
    /// assert!(err.to_string().contains("buffer_size"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        self.prepare().map(drop)
    }

    pub(crate) fn program_lossy(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidOptions {
            program: self.program_lossy(),
            reason: reason.into(),
        }
    }

    /// Validates and converts to the C strings the spawn needs.
    pub(crate) fn prepare(&self) -> Result<Prepared, Error> {
        if self.program.is_empty() {
            return Err(self.invalid("the program is empty"));
        }
        let cstring = |what: &str, s: &OsStr| {
            CString::new(s.as_bytes())
                .map_err(|_| self.invalid(format!("{what} {s:?} contains a NUL byte")))
        };
        let program = cstring("the program", &self.program)?;
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(match &self.arg0 {
            Some(arg0) => cstring("arg0", arg0)?,
            None => program.clone(),
        });
        for arg in &self.args {
            argv.push(cstring("the argument", arg)?);
        }
        if self.buffer_size == 0 {
            return Err(self.invalid("buffer_size must be at least 1 byte"));
        }
        if self.buffer_size > MAX_BUFFER_SIZE {
            return Err(self.invalid(format!(
                "buffer_size {} is over the 16 MiB limit",
                self.buffer_size
            )));
        }
        for (what, d) in [
            ("grace_period", Some(self.grace_period)),
            ("deadline", self.deadline),
        ] {
            if let Some(d) = d {
                if d > MAX_DURATION || Instant::now().checked_add(d * 3).is_none() {
                    return Err(self.invalid(format!(
                        "{what} {d:?} is too large to represent (the limit is 100 years)"
                    )));
                }
            }
        }
        // Asked only when there is something to check: validation runs on
        // every call, and most pass no fd.
        if !self.extra_fds.is_empty() {
            // At most 2^20, the kernel's default `nr_open`, whatever the
            // limit says.
            let fd_limit = crate::sys::soft_fd_limit().min(1 << 20);
            for (_, target) in &self.extra_fds {
                if *target < 3 || *target >= fd_limit {
                    return Err(self.invalid(format!(
                        "pass_fd target {target} must be from 3 (0-2 are stdio) to {} (the fd limit)",
                        fd_limit - 1
                    )));
                }
            }
        }
        for (name, stdio) in ["stdin", "stdout"].iter().zip(&self.stdio) {
            if *stdio == Stdio::ToStdout {
                return Err(self.invalid(format!("Stdio::ToStdout is for stderr only, not {name}")));
            }
        }
        if self.uses_fork() && !self.extra_fds.is_empty() {
            // The fork path's dup2 could land on std's own exec-error pipe.
            return Err(self.invalid(
                "pass_fd cannot be combined with kill_on_parent_death, uid, gid or groups",
            ));
        }
        if self.cgroup.is_some() && !self.extra_fds.is_empty() {
            // The same fork path.
            return Err(self.invalid("pass_fd cannot be combined with cgroup"));
        }
        self.check_env()?;
        // std's fork-based spawn applies `env`/`env_clear` itself and, when
        // neither was called, passes the environment on without copying it
        // (under its own environment lock). posix_spawn needs the whole
        // list built here, read through `vars_os`, which takes that lock:
        // `environ` itself would race a `set_var` in another thread.
        let envp = if self.spawns_with_fork() {
            ChildEnv::AppliedByStd
        } else {
            ChildEnv::Built(self.final_env())
        };
        let cwd = match &self.cwd {
            None => None,
            Some(dir) => {
                // The NUL first: a path with one is never a directory, and
                // "does not exist" would hide why.
                let cwd = cstring("current_dir", dir.as_os_str())?;
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(self.invalid(format!("current_dir {dir:?} is not a directory")));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        return Err(self.invalid(format!(
                            "current_dir {dir:?} does not exist or is not a directory"
                        )));
                    }
                    // Not ours to judge (a directory this process may not
                    // search, which the child's user may): the child's
                    // chdir decides, and its error is std's
                    // (`PermissionDenied`), not "does not exist".
                    Err(_) => {}
                }
                Some(cwd)
            }
        };
        let path = self.resolve_program(&program)?;
        Ok(Prepared {
            path,
            argv,
            envp,
            cwd,
        })
    }

    /// Whether the spawn goes through std's fork (see
    /// [`uses_fork`](Self::uses_fork); a cgroup is joined there too).
    pub(crate) fn spawns_with_fork(&self) -> bool {
        self.uses_fork() || self.cgroup.is_some()
    }

    /// Checks that the variables set with [`env`](Self::env) are ones
    /// `execve` can pass: a name, no `=` in it, no NUL anywhere.
    fn check_env(&self) -> Result<(), Error> {
        for (key, value) in &self.env {
            if key.is_empty() {
                return Err(self.invalid("an environment variable name is empty"));
            }
            if key.as_bytes().contains(&b'=') {
                return Err(self.invalid(format!(
                    "the environment variable name {key:?} contains '='"
                )));
            }
            if key.as_bytes().contains(&0)
                || value.as_ref().is_some_and(|v| v.as_bytes().contains(&0))
            {
                return Err(self.invalid(format!(
                    "the environment variable {key:?} contains a NUL byte"
                )));
            }
        }
        Ok(())
    }

    /// The child's whole environment, for `posix_spawn`. The variables set
    /// here were checked by [`check_env`](Self::check_env); the parent's
    /// cannot hold NUL.
    fn final_env(&self) -> EnvBlock {
        // Sized before anything is copied, so the block is allocated once
        // (growing it as it fills cost more than the copy itself).
        let mut inherited = Vec::new();
        if !self.env_clear {
            let vars = std::env::vars_os();
            inherited.reserve_exact(vars.size_hint().0);
            inherited.extend(vars.filter(|(key, _)| !self.env.contains_key(key)));
        }
        let set = self
            .env
            .iter()
            .filter_map(|(key, value)| Some((key.as_os_str(), value.as_deref()?)));
        let all = || {
            inherited
                .iter()
                .map(|(key, value)| (key.as_os_str(), value.as_os_str()))
                .chain(set.clone())
        };
        let (count, bytes) = all().fold((0, 0), |(count, bytes), (key, value)| {
            (count + 1, bytes + key.len() + value.len() + 2)
        });
        let mut block = EnvBlock::with_capacity(count, bytes);
        for (key, value) in all() {
            block.push(key, value);
        }
        block
    }

    /// The command's changes to the environment, given to std's `Command`
    /// on the fork path.
    pub(crate) fn apply_env(&self, std_cmd: &mut std::process::Command) {
        if self.env_clear {
            std_cmd.env_clear();
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => std_cmd.env(key, value),
                None => std_cmd.env_remove(key),
            };
        }
    }

    /// `path` as the child will resolve it: a relative one from its
    /// working directory ([`current_dir`](Self::current_dir)), which is
    /// not this process's when set (an acceptance run caught `./tool` with
    /// `cwd` judged by a file of the same name in the caller's directory).
    pub(crate) fn as_the_child_sees_it(&self, path: &Path) -> std::path::PathBuf {
        match &self.cwd {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// `PATH` lookup as `execvp` does it, but against the child's `PATH`
    /// when the command sets one (as std does), and done here so a missing
    /// program is a clean `NotFound` before any spawn.
    fn resolve_program(&self, program: &CString) -> Result<CString, Error> {
        if self.program.as_bytes().contains(&b'/') {
            return Ok(program.clone());
        }
        // With other credentials, what this process may execute says
        // nothing of what the child's user may (an acceptance test saw a
        // root-only file first on PATH refused where std ran the next
        // one): once a candidate exists, the child's own `execvp` (std's,
        // on the fork path these take) looks the name up as that user, in
        // the child's environment.
        let changes_credentials = self.changes_credentials();
        let child_path = self.env.get(OsStr::new("PATH"));
        let path_bytes = match child_path {
            Some(Some(p)) => p.as_bytes().to_vec(),
            // No PATH in the child's environment: its `execvp` searches
            // glibc's default (`confstr(_CS_PATH)`).
            Some(None) if changes_credentials => b"/bin:/usr/bin".to_vec(),
            None if changes_credentials && self.env_clear => b"/bin:/usr/bin".to_vec(),
            // posix_spawnp's rule, which std follows: this process's PATH.
            _ => std::env::var_os("PATH")
                .map(OsString::into_vec)
                .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec()),
        };
        let mut found_unexecutable = false;
        for dir in path_bytes.split(|&b| b == b':') {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let candidate = Path::new(OsStr::from_bytes(dir)).join(&self.program);
            // A relative entry is relative to where the child execs.
            let seen_from_here = self.as_the_child_sees_it(&candidate);
            let access = rustix::fs::access(&seen_from_here, rustix::fs::Access::EXEC_OK);
            match access {
                Ok(()) | Err(Errno::ACCESS) if changes_credentials => {
                    return Ok(program.clone());
                }
                Ok(()) if !seen_from_here.is_dir() => {
                    return Ok(CString::new(candidate.into_os_string().into_vec())
                        .expect("PATH entries hold no NUL"));
                }
                Ok(()) | Err(Errno::ACCESS) => found_unexecutable = true,
                // The errors `execvp` passes over to try the next entry.
                Err(
                    Errno::NOENT | Errno::NOTDIR | Errno::STALE | Errno::NODEV | Errno::TIMEDOUT,
                ) => {}
                // Any other (ELOOP, ENAMETOOLONG, EIO...) ends the search
                // with that error, as `execvp` does (std then reports it).
                Err(errno) => {
                    return Err(Error::ProcessStartFailed {
                        program: self.program_lossy(),
                        source: std::io::Error::from_raw_os_error(errno.raw_os_error()),
                    });
                }
            }
        }
        let kind = if found_unexecutable {
            std::io::ErrorKind::PermissionDenied
        } else {
            std::io::ErrorKind::NotFound
        };
        Err(Error::ProcessStartFailed {
            program: self.program_lossy(),
            source: std::io::Error::new(
                kind,
                if found_unexecutable {
                    "found on PATH but not executable"
                } else {
                    "not found on PATH"
                },
            ),
        })
    }
}

/// A validated command, ready for `posix_spawn`.
pub(crate) struct Prepared {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: ChildEnv,
    pub cwd: Option<CString>,
}

/// The child's environment, as the spawn path needs it.
#[derive(Debug, PartialEq)]
pub(crate) enum ChildEnv {
    /// The whole list, for `posix_spawn`.
    Built(EnvBlock),
    /// The fork path: std applies the command's changes itself.
    AppliedByStd,
}

/// `KEY=VALUE` entries for `execve`, NUL-terminated and back to back in one
/// buffer: two allocations for the whole environment rather than one per
/// variable (a third of a one-line call's allocations, with 35 variables).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct EnvBlock {
    bytes: Vec<u8>,
    /// Where each entry starts in `bytes`.
    starts: Vec<usize>,
}

impl EnvBlock {
    fn with_capacity(count: usize, bytes: usize) -> EnvBlock {
        EnvBlock {
            bytes: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, key: &OsStr, value: &OsStr) {
        self.starts.push(self.bytes.len());
        self.bytes.extend_from_slice(key.as_bytes());
        self.bytes.push(b'=');
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
    }

    /// The `envp` array `execve` takes: a pointer to each entry, then a
    /// null pointer. Valid while `self` is, unchanged.
    pub(crate) fn null_terminated(&self) -> Vec<*mut libc::c_char> {
        let mut pointers = Vec::with_capacity(self.starts.len() + 1);
        pointers.extend(
            self.starts
                .iter()
                .map(|&start| self.bytes[start..].as_ptr() as *mut libc::c_char),
        );
        pointers.push(std::ptr::null_mut());
        pointers
    }

    /// The entries, in order.
    #[cfg(test)]
    fn entries(&self) -> Vec<&std::ffi::CStr> {
        self.starts
            .iter()
            .map(|&start| {
                std::ffi::CStr::from_bytes_until_nul(&self.bytes[start..])
                    .expect("each entry ends in the NUL pushed after it")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(cmd: &Command) -> String {
        match cmd.validate().unwrap_err() {
            Error::InvalidOptions { reason, .. } => reason,
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn rejects_each_bad_option_with_its_name() {
        assert!(reason(&Command::new("")).contains("empty"));
        assert!(reason(&Command::new("a\0b")).contains("NUL"));
        assert!(reason(Command::new("true").arg("x\0")).contains("NUL"));
        assert!(reason(Command::new("true").env("A=B", "1")).contains("'='"));
        assert!(reason(Command::new("true").env("", "1")).contains("empty"));
        assert!(reason(Command::new("true").env("A", "\0")).contains("NUL"));
        assert!(reason(Command::new("true").buffer_size(0)).contains("buffer_size"));
        assert!(reason(Command::new("true").buffer_size(MAX_BUFFER_SIZE + 1)).contains("16 MiB"));
        assert!(reason(Command::new("true").grace_period(Duration::MAX)).contains("grace_period"));
        assert!(reason(Command::new("true").deadline(Duration::MAX)).contains("deadline"));
        assert!(reason(Command::new("true").current_dir("/no/such/dir")).contains("current_dir"));
        assert!(reason(Command::new("true").current_dir("/etc/hostname")).contains("current_dir"));
    }

    #[test]
    fn accepts_the_bounds() {
        Command::new("true").buffer_size(1).validate().unwrap();
        Command::new("true")
            .buffer_size(MAX_BUFFER_SIZE)
            .grace_period(MAX_DURATION)
            .deadline(Duration::ZERO)
            .validate()
            .unwrap();
    }

    #[test]
    fn env_clear_then_env_is_the_whole_environment() {
        let mut cmd = Command::new("true");
        cmd.env("DROPPED", "1").env_clear().env("ONLY", "me");
        let prepared = cmd.prepare().unwrap();
        let ChildEnv::Built(block) = prepared.envp else {
            panic!("posix_spawn gets a built environment");
        };
        assert_eq!(block.entries(), [c"ONLY=me"]);
    }

    #[test]
    fn the_environment_block_holds_every_variable_in_order() {
        let mut block = EnvBlock::default();
        block.push(OsStr::new("A"), OsStr::new("1"));
        block.push(OsStr::new("EMPTY"), OsStr::new(""));
        block.push(OsStr::new("B"), OsStr::new("x=y"));
        assert_eq!(block.entries(), [c"A=1", c"EMPTY=", c"B=x=y"]);
        let envp = block.null_terminated();
        let expected: Vec<*mut libc::c_char> = block
            .entries()
            .iter()
            .map(|entry| entry.as_ptr().cast_mut())
            .chain([std::ptr::null_mut()])
            .collect();
        assert_eq!(envp, expected);
        assert!(EnvBlock::default().entries().is_empty());
        assert_eq!(
            EnvBlock::default().null_terminated(),
            [std::ptr::null_mut()]
        );
        let ChildEnv::Built(all) = Command::new("true").prepare().unwrap().envp else {
            panic!("posix_spawn gets a built environment");
        };
        assert_eq!(all.entries().len(), std::env::vars_os().count());
    }

    #[test]
    fn path_lookup_uses_the_childs_path() {
        let mut cmd = Command::new("sh");
        cmd.env("PATH", "/nonexistent");
        let err = cmd.prepare().err().unwrap();
        assert!(err.is_not_found(), "{err}");
    }
}
