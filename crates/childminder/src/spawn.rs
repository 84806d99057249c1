//! Starting the child: pipes, `posix_spawn` (or `fork` when
//! `kill_on_parent_death` needs code before `exec`), and the pidfd opened
//! while the child is still ours and unreaped.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use crate::command::{ChildEnv, Command, Prepared, Stdio};
use crate::contain::CgroupUsage;
use crate::contain::cgroup::Leaf;
use crate::contain::subreaper;
use crate::error::{Error, is_resource_errno};
use crate::shared::Shared;
use crate::sys;
use crate::target::Target;

/// Panics, before anything is started, unless called on a tokio runtime
/// with its timers enabled: `what` names the call for the message.
///
/// Timers are checked here because without them tokio panics only inside
/// the supervising task, at its first timer: an acceptance test saw a
/// deadline turn into an immediate SIGKILL reported as "the runtime shut
/// down". Creating a `Sleep` (not polled: nothing is registered) panics
/// with tokio's own message ("timers are disabled ... `enable_time`").
pub(crate) fn require_runtime(what: &str) {
    if tokio::runtime::Handle::try_current().is_err() {
        panic!("{what} must be called inside a tokio runtime");
    }
    drop(tokio::time::sleep(std::time::Duration::ZERO));
}

/// Panics, before anything is started, unless the current runtime has IO
/// enabled, for calls with no child of their own to kill first
/// (`Tree::start`): without it, tokio panicked inside the tree's task at
/// its first child, and the caller saw an `Outcome::Killed` nobody asked
/// for. Registering a pipe's end is how to ask (tokio panics with its own
/// message, "IO is disabled ... `enable_io`"); with no fd left for the
/// pipe the check is skipped, and the tree's spawns report that shortage.
pub(crate) fn require_io() {
    if let Ok((read, _write)) = sys::pipe() {
        drop(sys::register_readable(read));
    }
}

/// Copies each fd given to `pass_fd` to a number no target uses (and above
/// 2), so no `dup2` in the child can overwrite a source that a later one
/// still needs. Copies that land on a target are held until every copy is
/// made, then closed. (Copying above every target instead failed with
/// `EINVAL` for a target just below the fd limit, where no number is left
/// above it.)
fn copy_extra_fds(cmd: &Command) -> Result<Vec<(OwnedFd, RawFd)>, Error> {
    // A target just below the fd limit leaves posix_spawn no room to close
    // what lies above it (glibc refuses a closefrom at the limit): only fds
    // opened before the limit was lowered can be there, and one the child
    // would inherit is refused rather than leaked.
    if let Some(top) = cmd.extra_fds.iter().map(|(_, t)| *t).max() {
        if top.checked_add(1) >= Some(sys::soft_fd_limit()) {
            if let Some(fd) = sys::inheritable_fd_from(top + 1) {
                return Err(cmd.invalid(format!(
                    "pass_fd target {top} is the last fd below the fd limit, and fd {fd} above it \
                     is open without close-on-exec: the child would inherit it"
                )));
            }
        }
    }
    let failed = |source| Error::PipeCreationFailed {
        program: cmd.program_lossy(),
        source,
    };
    let is_target = |fd: &OwnedFd| cmd.extra_fds.iter().any(|(_, t)| *t == fd.as_raw_fd());
    let mut on_targets = Vec::new();
    let mut copies = Vec::with_capacity(cmd.extra_fds.len());
    for (fd, target) in &cmd.extra_fds {
        let copy = loop {
            let copy = sys::dup_cloexec_at_least(fd.as_fd(), 3).map_err(failed)?;
            if !is_target(&copy) {
                break copy;
            }
            on_targets.push(copy);
        };
        copies.push((copy, *target));
    }
    Ok(copies)
}

/// A started child: its pid, its pidfd (unless the kernel has none), and the
/// parent's ends of the piped streams, already non-blocking.
pub(crate) struct Spawned {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub started: Instant,
    /// The child's own cgroup, with `Command::cgroup`.
    pub cgroup: Option<Leaf>,
    /// Why `Cgroup::fallback` had to be used.
    pub cgroup_fallback: Option<String>,
    /// Whether the escapee sweep applies: `Command::subreaper`, or the
    /// cgroup's fallback.
    pub subreaper: bool,
    /// The terminal given to the child's group
    /// (`Command::terminal_foreground`), to give back at its exit.
    pub terminal: Option<ForegroundTerminal>,
}

/// A terminal whose foreground group the child's group was made.
#[derive(Debug)]
pub(crate) struct ForegroundTerminal {
    /// Our own copy of the terminal's fd (close-on-exec).
    pub tty: OwnedFd,
    /// The group it goes back to: the caller's.
    pub owner: libc::pid_t,
}

impl ForegroundTerminal {
    /// Gives the terminal back to its owner if `holder` (the child's group)
    /// still has it.
    pub(crate) fn give_back(&self, holder: libc::pid_t) {
        sys::give_terminal(self.tty.as_fd(), Some(holder), self.owner);
    }
}

/// The terminal to give the child's group, if `Command::terminal_foreground`
/// applies: fds 0-2 it inherits, one of them a terminal in our foreground.
fn foreground_terminal(
    cmd: &Command,
    stdio: &[Stdio; 3],
) -> Result<Option<(RawFd, ForegroundTerminal)>, Error> {
    if !cmd.terminal_foreground || !cmd.process_group {
        return Ok(None);
    }
    let Some(fd) = sys::foreground_terminal(stdio.each_ref().map(|s| matches!(s, Stdio::Inherit)))
    else {
        return Ok(None);
    };
    // SAFETY: sys::foreground_terminal checked that the fd is open; it stays
    // open for this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let tty =
        sys::dup_cloexec_at_least(borrowed, 3).map_err(|source| Error::PipeCreationFailed {
            program: cmd.program_lossy(),
            source,
        })?;
    Ok(Some((
        fd,
        ForegroundTerminal {
            tty,
            owner: sys::own_process_group(),
        },
    )))
}

/// The two ends of one of the child's streams: ours and the child's.
struct StreamEnds {
    parent: Option<OwnedFd>,
    child: Option<OwnedFd>,
}

/// The ends of stream `index`. stderr following a stdout that the child
/// gets a descriptor for is the caller's (it borrows stdout's).
fn stream_ends(mode: &Stdio, index: usize, cmd: &Command) -> Result<StreamEnds, Error> {
    let pipe_err = |source| Error::PipeCreationFailed {
        program: cmd.program_lossy(),
        source,
    };
    let child_only = |fd: std::io::Result<OwnedFd>| {
        Ok(StreamEnds {
            parent: None,
            child: Some(fd.map_err(pipe_err)?),
        })
    };
    match mode {
        Stdio::Inherit => Ok(StreamEnds {
            parent: None,
            child: None,
        }),
        Stdio::Null => child_only(sys::open_dev_null(index != 0)),
        Stdio::Fd(fd) => child_only(fd.try_clone()),
        // Validation allows it for stderr only; a stdout the child gets a
        // descriptor for is shared by the caller, so here stdout is
        // inherited: this process's own.
        Stdio::ToStdout => child_only(std::io::stdout().as_fd().try_clone_to_owned()),
        Stdio::Piped => {
            let (read, write) = sys::pipe().map_err(pipe_err)?;
            let (parent, child) = if index == 0 {
                (write, read)
            } else {
                (read, write)
            };
            sys::set_new_pipe_nonblocking(parent.as_fd()).map_err(pipe_err)?;
            if let Some(size) = cmd.pipe_capacity {
                sys::try_set_pipe_size(parent.as_fd(), size);
            }
            Ok(StreamEnds {
                parent: Some(parent),
                child: Some(child),
            })
        }
    }
}

/// Validates, spawns and opens the pidfd.
///
/// # Errors
///
/// `InvalidOptions` before anything is created; `ChildrenReapedByTheKernel`
/// when this process ignores SIGCHLD; `PipeCreationFailed` when
/// the fd limit is reached; `ProcessStartFailed` when the program cannot be
/// executed; `Io` when the kernel cannot be asked for pidfds for lack of a
/// resource (before anything is created), or when the pidfd cannot be
/// opened on a kernel that has them (the child is then killed and reaped
/// before returning).
pub(crate) fn spawn(cmd: &Command, stdio: &[Stdio; 3]) -> Result<Spawned, Error> {
    let prepared = cmd.prepare()?;
    // Cached after the first answer; out of fds before it, a resource error.
    sys::try_features().map_err(|source| Error::Io {
        program: cmd.program_lossy(),
        context: "asking the kernel for pidfds",
        source,
    })?;
    if sys::children_are_reaped_by_the_kernel() {
        return Err(Error::ChildrenReapedByTheKernel {
            program: cmd.program_lossy(),
        });
    }
    let mut stdin = stream_ends(&stdio[0], 0, cmd)?;
    let mut stdout = stream_ends(&stdio[1], 1, cmd)?;
    // stderr as stdout's copy: the child's dup2 makes fd 2 from the same
    // descriptor, so ours need not be opened or duplicated again (an open
    // of /dev/null and its close are a tenth of a one-line call's overhead).
    let stderr_is_stdout = match &stdio[2] {
        Stdio::ToStdout => stdout.child.is_some(),
        Stdio::Null => stdio[1] == Stdio::Null,
        _ => false,
    };
    let mut stderr = if stderr_is_stdout {
        StreamEnds {
            parent: None,
            child: None,
        }
    } else {
        stream_ends(&stdio[2], 2, cmd)?
    };

    let extra = copy_extra_fds(cmd)?;

    let stderr_child = if stderr_is_stdout {
        &stdout.child
    } else {
        &stderr.child
    };
    let child_fds = sys::ChildFds {
        stdio: [&stdin.child, &stdout.child, stderr_child]
            .map(|fd| fd.as_ref().map(OwnedFd::as_fd)),
        extra: extra.iter().map(|(fd, t)| (fd.as_fd(), *t)).collect(),
    };
    let (cgroup, cgroup_fallback) = make_cgroup(cmd)?;
    let subreaper = cmd.subreaper || cgroup_fallback.is_some();
    if subreaper {
        subreaper::enable().map_err(|source| Error::Io {
            program: cmd.program_lossy(),
            context: "becoming a child subreaper",
            source,
        })?;
    }
    let terminal = foreground_terminal(cmd, stdio)?;
    let foreground_tty = terminal.as_ref().map(|(fd, _)| *fd);
    // No subreaper sweep may see the child before it is registered as ours.
    let gate = subreaper::spawn_gate();
    let started = Instant::now();
    let start_failed = |source| {
        // The child may have taken the terminal before its exec failed.
        if let Some((_, terminal)) = &terminal {
            sys::give_terminal(terminal.tty.as_fd(), None, terminal.owner);
        }
        Error::ProcessStartFailed {
            program: cmd.program_lossy(),
            source: explain_exec_error(source, &prepared, cmd),
        }
    };
    // A cgroup that fell back still takes the fork path: prepare decided.
    let pid = if cmd.spawns_with_fork() {
        spawn_with_fork(
            cmd,
            &prepared,
            &child_fds,
            cgroup.as_ref(),
            foreground_tty,
            start_failed,
        )?
    } else {
        let ChildEnv::Built(env) = &prepared.envp else {
            unreachable!("prepare builds the environment for posix_spawn")
        };
        sys::posix_spawn(&sys::SpawnRequest {
            path: &prepared.path,
            argv: &prepared.argv,
            envp: env,
            cwd: prepared.cwd.as_deref(),
            new_process_group: cmd.process_group,
            reset_sigpipe: !cmd.inherit_sigpipe,
            fds: child_fds,
            foreground_tty,
        })
        .map_err(start_failed)?
    };
    drop(extra);
    // The child has its copies; ours must close so EOF can happen.
    for ends in [&mut stdin, &mut stdout, &mut stderr] {
        ends.child = None;
    }

    let pidfd = open_pidfd(cmd, pid)?;
    subreaper::register(pid);
    drop(gate);
    tracing::debug!(
        program = %cmd.program_lossy(),
        pid,
        pidfd = pidfd.is_some(),
        process_group = cmd.process_group,
        "spawned"
    );
    Ok(Spawned {
        pid,
        pidfd,
        stdin: stdin.parent,
        stdout: stdout.parent,
        stderr: stderr.parent,
        started,
        cgroup,
        cgroup_fallback,
        subreaper,
        terminal: terminal.map(|(_, terminal)| terminal),
    })
}

/// Ends a child just started that no supervision has taken on yet: SIGKILL
/// to it (and its group), then the reap. Still our unreaped child, so its
/// pid (and its group's id) is still certainly its own.
pub(crate) fn end_unsupervised(pid: u32, process_group: bool) {
    let group_or_child = if process_group {
        -(pid as i32)
    } else {
        pid as i32
    };
    let _ = sys::kill(group_or_child, libc::SIGKILL);
    let _ = sys::pid_wait_blocking(pid);
    subreaper::unregister(pid);
}

/// The child's cgroup, made before the spawn; or, when none can be made
/// and the fallback is allowed, the reason, for the result.
fn make_cgroup(cmd: &Command) -> Result<(Option<Leaf>, Option<String>), Error> {
    let Some(options) = &cmd.cgroup else {
        return Ok((None, None));
    };
    match Leaf::create(options) {
        Ok(leaf) => Ok((Some(leaf), None)),
        // A resource that ran out (fds, memory) is this moment's failure,
        // not the host's lack of cgroups: an error, not a fallback.
        Err(unavailable) if options.fallback && !is_resource_errno(&unavailable.source) => {
            let reason = format!("{}: {}", unavailable.reason, unavailable.source);
            tracing::info!(program = %cmd.program_lossy(), %reason, "no cgroup: falling back to the process group and the subreaper");
            Ok((None, Some(reason)))
        }
        Err(unavailable) => Err(Error::CgroupUnavailable {
            program: cmd.program_lossy(),
            reason: unavailable.reason,
            source: unavailable.source,
        }),
    }
}

/// execve reports ENOENT both for a missing program and for a program
/// whose interpreter (`#!` line) or dynamic loader is missing. The second is
/// "found but cannot run", so it is reported as permission denied.
fn explain_exec_error(err: std::io::Error, prepared: &Prepared, cmd: &Command) -> std::io::Error {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(prepared.path.to_bytes()));
    if err.kind() == std::io::ErrorKind::NotFound && cmd.as_the_child_sees_it(path).is_file() {
        return std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} exists but cannot be executed: its interpreter (#! line) or dynamic loader is missing ({err})",
                path.display()
            ),
        );
    }
    err
}

/// Opens the pidfd right after the spawn. The child is ours and unreaped,
/// so its pid cannot have been recycled in between.
fn open_pidfd(cmd: &Command, pid: u32) -> Result<Option<OwnedFd>, Error> {
    if !sys::features().pidfd {
        return Ok(None);
    }
    match sys::pidfd_open(pid) {
        Ok(fd) => Ok(Some(fd)),
        Err(source) => {
            // Without a pidfd we cannot keep our promises about this child:
            // end it (and what it may have started in its group) now, while
            // its pid is still certainly ours.
            end_unsupervised(pid, cmd.process_group);
            Err(Error::Io {
                program: cmd.program_lossy(),
                context: "opening a pidfd for the new child",
                source,
            })
        }
    }
}

/// The slow path, for `kill_on_parent_death`, `uid`/`gid`/`groups` and `cgroup`: std's
/// fork-based spawn with our code before `exec`. A failure to join the
/// cgroup is told from one of exec by the errno the child reports on a pipe
/// of its own.
fn spawn_with_fork(
    cmd: &Command,
    prepared: &Prepared,
    fds: &sys::ChildFds<'_>,
    cgroup: Option<&Leaf>,
    foreground_tty: Option<RawFd>,
    start_failed: impl FnOnce(std::io::Error) -> Error,
) -> Result<u32, Error> {
    let io = |context, source| Error::Io {
        program: cmd.program_lossy(),
        context,
        source,
    };
    let join = match cgroup {
        Some(leaf) => {
            let procs = leaf
                .open_procs()
                .map_err(|source| Error::CgroupUnavailable {
                    program: cmd.program_lossy(),
                    reason: format!("opening cgroup.procs of {}", leaf.path().display()),
                    source,
                })?;
            let report = sys::pipe().map_err(|e| io("creating the cgroup report pipe", e))?;
            Some((procs, report))
        }
        None => None,
    };
    let before_exec = sys::BeforeExec {
        foreground_tty,
        kill_on_parent_death: cmd.kill_on_parent_death,
        uid: cmd.uid,
        gid: cmd.gid,
        groups: cmd.groups.clone(),
        cwd_as_new_user: prepared.cwd.clone().filter(|_| cmd.changes_credentials()),
        reset_sigpipe: !cmd.inherit_sigpipe,
        join_cgroup: join.as_ref().map(|(procs, (_, write))| sys::JoinCgroup {
            procs: procs.as_raw_fd(),
            report: write.as_raw_fd(),
        }),
    };
    match fork_exec(cmd, prepared, fds, before_exec) {
        Ok(pid) => Ok(pid),
        Err(source) => {
            let reported = join.and_then(|(_, (read, write))| {
                drop(write);
                sys::set_new_pipe_nonblocking(read.as_fd()).ok()?;
                let mut errno = [0u8; 4];
                let n = rustix::io::read(&read, &mut errno).ok()?;
                (n == 4).then(|| i32::from_ne_bytes(errno))
            });
            match (reported, cgroup) {
                (Some(errno), Some(leaf)) => Err(Error::CgroupUnavailable {
                    program: cmd.program_lossy(),
                    reason: format!(
                        "the child could not join the cgroup {}",
                        leaf.path().display()
                    ),
                    source: std::io::Error::from_raw_os_error(errno),
                }),
                _ => Err(start_failed(source)),
            }
        }
    }
}

fn fork_exec(
    cmd: &Command,
    prepared: &Prepared,
    fds: &sys::ChildFds<'_>,
    before_exec: sys::BeforeExec,
) -> std::io::Result<u32> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;

    let os = |c: &std::ffi::CStr| std::ffi::OsStr::from_bytes(c.to_bytes()).to_owned();
    let mut std_cmd = std::process::Command::new(os(&prepared.path));
    std_cmd.arg0(os(&prepared.argv[0]));
    std_cmd.args(prepared.argv[1..].iter().map(|a| os(a)));
    cmd.apply_env(&mut std_cmd);
    // With new credentials the hook enters it after they change: std would
    // enter it first, as this process's user (an acceptance run caught a
    // child of uid 65534 started in a root-only directory).
    if let Some(cwd) = prepared.cwd.as_ref().filter(|_| !cmd.changes_credentials()) {
        std_cmd.current_dir(os(cwd));
    }
    if cmd.process_group {
        std_cmd.process_group(0);
    }
    let stdio = |fd: Option<BorrowedFd<'_>>| -> std::io::Result<std::process::Stdio> {
        Ok(match fd {
            Some(fd) => std::process::Stdio::from(fd.try_clone_to_owned()?),
            None => std::process::Stdio::inherit(),
        })
    };
    std_cmd.stdin(stdio(fds.stdio[0])?);
    std_cmd.stdout(stdio(fds.stdio[1])?);
    std_cmd.stderr(stdio(fds.stdio[2])?);
    let extra: Vec<(RawFd, RawFd)> = fds
        .extra
        .iter()
        .map(|(fd, t)| (fd.as_raw_fd(), *t))
        .collect();
    let child = sys::spawn_forked(std_cmd, extra, before_exec)?;
    Ok(child.id())
}

/// A started child with its pidfd registered with the current tokio
/// runtime: its shared state (pidfd, stdin slot) and the parent's ends of
/// its output pipes, for whoever reads them to register on their own
/// runtime.
pub(crate) struct Started {
    pub shared: Arc<Shared>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Spawns and registers the pidfd with the current runtime. If that fails
/// (the reactor is out of room), the child is killed and reaped before the
/// error returns: nothing is left behind.
///
/// # Panics
///
/// Outside a tokio runtime context.
pub(crate) fn start(cmd: &Command) -> Result<Started, Error> {
    start_with(cmd, &cmd.stdio)
}

/// [`start`] with the streams set as `stdio` instead of as `cmd` sets them
/// (the one-line calls' meaning of [`Stdio::Piped`]), without a copy of the
/// whole command.
///
/// # Panics
///
/// As [`start`].
pub(crate) fn start_with(cmd: &Command, stdio: &[Stdio; 3]) -> Result<Started, Error> {
    let spawned = spawn(cmd, stdio)?;
    let program = cmd.program_lossy();
    let pid = spawned.pid;
    let cgroup = spawned.cgroup.map(Arc::new);
    let end_child = || {
        if let Some(cgroup) = &cgroup {
            let _ = cgroup.kill();
        }
        end_unsupervised(pid, cmd.process_group);
    };
    // tokio panics registering the pidfd on a runtime without IO: the child
    // is ended first (an acceptance run caught it left running).
    let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Target::new(
            spawned.pid,
            spawned.pidfd,
            cmd.process_group,
            cgroup.clone(),
        )
    }));
    let target = match registered {
        Ok(Ok(target)) => target,
        Ok(Err(source)) => {
            end_child();
            return Err(Error::Io {
                program,
                context: "registering the child with the runtime",
                source,
            });
        }
        Err(panic) => {
            end_child();
            std::panic::resume_unwind(panic)
        }
    };
    let mut shared = Shared::new(program, target, spawned.started, spawned.stdin);
    if spawned.subreaper {
        shared.join_subreaper_sweep();
    }
    shared.set_terminal(spawned.terminal);
    shared.update_containment(|c| {
        c.cgroup = cgroup.map(|leaf| CgroupUsage {
            path: leaf.path().to_owned(),
            ..CgroupUsage::default()
        });
        c.cgroup_fallback = spawned.cgroup_fallback;
    });
    Ok(Started {
        shared: Arc::new(shared),
        stdout: spawned.stdout,
        stderr: spawned.stderr,
    })
}
