//! Every OS call childminder makes, and every `unsafe` block of the crate.
//!
//! The rest of the crate sees safe functions over `OwnedFd`s. Each `unsafe`
//! block wraps one call and says why it is sound. Kernel features are probed
//! once and the answer cached; a missing feature makes the caller fall back,
//! never fail, unless nothing else can do the job.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::OnceLock;

use crate::result::{ExitStatus, ResourceUsage};
use crate::signal::Signal;

// ---------------------------------------------------------------------------
// Kernel feature probes (once per process)
// ---------------------------------------------------------------------------

/// What this kernel offers for race-free signalling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Features {
    /// `pidfd_open`, `pidfd_send_signal` and `waitid(P_PIDFD)` (Linux 5.4+).
    pub pidfd: bool,
    /// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9+).
    pub pidfd_group_signal: bool,
}

impl Features {
    /// Pid-based waits and signals only.
    const WITHOUT_PIDFD: Features = Features {
        pidfd: false,
        pidfd_group_signal: false,
    };
}

/// What the kernel offers, probed once and cached.
///
/// # Errors
///
/// When the probe ran out of a resource (fds, memory): that says nothing
/// about the kernel, so nothing is cached and the next call probes again
/// (an acceptance run caught one EMFILE turning pidfds off for the rest
/// of the process). Every spawn asks this first, so a spawn out of fds is
/// a resource error rather than a child supervised without a pidfd (an
/// acceptance run caught that one too: its exit seen seconds late, and a
/// zombie left).
pub(crate) fn try_features() -> io::Result<Features> {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    if let Some(features) = FEATURES.get() {
        return Ok(*features);
    }
    let features = probe_features()?;
    Ok(*FEATURES.get_or_init(|| features))
}

/// [`try_features`], for the code that runs after a spawn, which has
/// probed already: a probe that runs out of a resource here answers
/// "no pidfd".
pub(crate) fn features() -> Features {
    try_features().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "the pidfd probe ran out of a resource: pid-based here");
        Features::WITHOUT_PIDFD
    })
}

/// Asks the kernel what it offers; `Err` only when a resource ran out, so
/// that the answer says nothing about the kernel.
fn probe_features() -> io::Result<Features> {
    // Lets the test suite exercise the fallbacks on a kernel that has it all.
    match std::env::var("CHILDMINDER_FALLBACK").as_deref() {
        Ok("pid") => {
            return Ok(Features::WITHOUT_PIDFD);
        }
        Ok("kill-pgrp") => {
            return Ok(Features {
                pidfd: true,
                pidfd_group_signal: false,
            });
        }
        _ => {}
    }
    // Probing on ourselves is harmless: signal 0 delivers nothing. An
    // unknown flag answers EINVAL before anything else is checked; a known
    // one answers 0, or ESRCH when we do not lead a process group.
    let own = match pidfd_open(std::process::id())
        .and_then(|fd| pidfd_send_signal_raw(fd.as_fd(), 0, 0).map(|()| fd))
    {
        Ok(fd) => fd,
        Err(e) if crate::error::is_resource_errno(&e) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "pidfd_open unavailable: falling back to pid-based waits and signals");
            return Ok(Features::WITHOUT_PIDFD);
        }
    };
    let group = group_flag_supported(own.as_fd());
    if !group {
        tracing::debug!(
            "PIDFD_SIGNAL_PROCESS_GROUP unavailable: group signals use kill(-pgid) while the leader is unreaped"
        );
    }
    Ok(Features {
        pidfd: true,
        pidfd_group_signal: group,
    })
}

/// Whether the kernel knows `PIDFD_SIGNAL_PROCESS_GROUP`, asked with signal
/// 0 through any pidfd (ESRCH only says that process leads no group).
fn group_flag_supported(pidfd: BorrowedFd<'_>) -> bool {
    match pidfd_send_signal_raw(pidfd, 0, libc::PIDFD_SIGNAL_PROCESS_GROUP) {
        Ok(()) => true,
        // Anything else (EINVAL: unknown flag; ENOSYS/EPERM: a seccomp
        // filter) means the group signal cannot be relied on.
        Err(e) => e.raw_os_error() == Some(libc::ESRCH),
    }
}

// ---------------------------------------------------------------------------
// pidfd
// ---------------------------------------------------------------------------

/// Opens a pidfd for `pid`. Only sound against recycling when `pid` is our
/// own unreaped child, which is how the spawn path uses it.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(
        to_pid(pid)?,
        rustix::process::PidfdFlags::NONBLOCK,
    )?)
}

fn to_pid(pid: u32) -> io::Result<rustix::process::Pid> {
    rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `WEXITED | WNOHANG`, plus `WNOWAIT` unless reaping.
fn try_wait_options(reap: bool) -> libc::c_int {
    let opts = libc::WEXITED | libc::WNOHANG;
    if reap { opts } else { opts | libc::WNOWAIT }
}

/// What the kernel reports of an exited child: its status and the
/// resources it used.
pub(crate) type Exited = (ExitStatus, ResourceUsage);

/// `waitid` through the raw system call, whose fifth argument (absent from
/// the C library's wrapper) receives the child's `struct rusage`: the
/// child's own usage plus that of the descendants it waited for, as
/// `wait4` reports. Retried on EINTR, decoded. With `WNOHANG` on a
/// `PIDFD_NONBLOCK` pidfd, "not exited yet" is EAGAIN: that is `None` too.
fn waitid(idtype: libc::idtype_t, id: libc::id_t, opts: libc::c_int) -> io::Result<Option<Exited>> {
    loop {
        let mut info = zeroed_siginfo();
        let mut usage = zeroed_rusage();
        // SAFETY: both out-pointers are valid, writable and sized for the
        // kernel's structures (zeroed, so a WNOHANG answer without a child
        // leaves si_pid 0); the other arguments are integers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                idtype,
                id,
                &mut info as *mut libc::siginfo_t,
                opts,
                &mut usage as *mut libc::rusage,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(e),
            }
        }
        // SAFETY: a waitid answer fills the SIGCHLD layout of siginfo_t (or
        // leaves it zeroed with WNOHANG), of which si_pid is a field.
        if unsafe { info.si_pid() } == 0 {
            return Ok(None);
        }
        // SAFETY: as above; si_status is the other SIGCHLD field.
        let status = unsafe { info.si_status() };
        return Ok(decode_waitid(info.si_code, status).map(|st| (st, decode_rusage(&usage))));
    }
}

fn zeroed_siginfo() -> libc::siginfo_t {
    // SAFETY: siginfo_t is plain C data; all-zero bytes are a valid value.
    unsafe { MaybeUninit::<libc::siginfo_t>::zeroed().assume_init() }
}

fn zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is plain C data; all-zero bytes are a valid value.
    unsafe { MaybeUninit::<libc::rusage>::zeroed().assume_init() }
}

fn decode_waitid(code: libc::c_int, status: libc::c_int) -> Option<ExitStatus> {
    match code {
        libc::CLD_EXITED => Some(ExitStatus::Exited(status)),
        libc::CLD_KILLED | libc::CLD_DUMPED => Some(ExitStatus::Signaled {
            signal: Signal::from_raw(status)?,
            core_dumped: code == libc::CLD_DUMPED,
        }),
        _ => None,
    }
}

fn decode_rusage(usage: &libc::rusage) -> ResourceUsage {
    let time = |tv: libc::timeval| {
        std::time::Duration::from_secs(tv.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(tv.tv_usec.clamp(0, 999_999) as u64)
    };
    ResourceUsage {
        user_time: time(usage.ru_utime),
        system_time: time(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        reported_max_rss: (usage.ru_maxrss.max(0) as u64) * 1024,
    }
}

/// This process's peak resident memory in bytes (`VmHWM`: its memory's
/// high-water mark, which a vfork child's `exec` charges to the child);
/// `None` when `/proc/self/status` cannot be read.
pub(crate) fn own_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

fn pidfd_send_signal_raw(pidfd: BorrowedFd<'_>, sig: i32, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: the fd is a live pidfd borrowed for the call; a null siginfo is
    // documented to mean "as if sent by kill(2)"; no memory is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            ptr::null::<libc::siginfo_t>(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `sig` to the process the pidfd names. ESRCH means it has been
/// reaped: a pidfd never reaches a recycled pid.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> io::Result<()> {
    pidfd_send_signal_raw(pidfd, sig.as_raw(), 0)
}

/// Sends `sig` (0 probes) to the process group led by the pidfd's process.
/// Works after the leader is reaped, as long as members remain; ESRCH once
/// none do.
pub(crate) fn pidfd_signal_group(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    pidfd_send_signal_raw(pidfd, sig, libc::PIDFD_SIGNAL_PROCESS_GROUP)
}

/// Registers a pidfd with the current tokio reactor; it turns readable
/// when the process exits. (Any fd watched for readability, like an
/// inotify fd, is registered the same way.)
pub(crate) fn register_pidfd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    Ok(register_readable(fd)?)
}

/// Registers `fd` with the current tokio reactor for readability; on
/// failure the error gives the fd back, so that what it names (a child's
/// pidfd, say) can still be dealt with.
pub(crate) fn register_readable(
    fd: OwnedFd,
) -> Result<tokio::io::unix::AsyncFd<OwnedFd>, tokio::io::unix::AsyncFdRegisterError<OwnedFd>> {
    // SAFETY: an OwnedFd is open, owned by the AsyncFd for its whole life,
    // and always reports the same raw fd.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
}

/// Which of the fds given to [`poll_readable`] are ready.
pub(crate) struct Ready {
    pub pidfd: bool,
    pub outputs: [bool; 2],
}

/// Blocks until the pidfd (the child has exited) or an output pipe (data,
/// end-of-file or an error) is ready, or `timeout` passes (`None`: no
/// limit). Interrupted by a signal, it returns nothing ready.
pub(crate) fn poll_readable(
    pidfd: Option<BorrowedFd<'_>>,
    outputs: [Option<BorrowedFd<'_>>; 2],
    timeout: Option<std::time::Duration>,
) -> io::Result<Ready> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let watched = [pidfd, outputs[0], outputs[1]];
    let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
    let mut slots = [None; 3];
    for (slot, fd) in slots.iter_mut().zip(&watched) {
        if let Some(fd) = fd {
            *slot = Some(fds.len());
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
    }
    let timeout = timeout.map(|t| {
        Timespec::try_from(t).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        })
    });
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => {
            return Ok(Ready {
                pidfd: false,
                outputs: [false; 2],
            });
        }
        Err(e) => return Err(e.into()),
    }
    let ready = |slot: Option<usize>| slot.is_some_and(|i| !fds[i].revents().is_empty());
    Ok(Ready {
        pidfd: ready(slots[0]),
        outputs: [ready(slots[1]), ready(slots[2])],
    })
}

/// Whether every write end of the pipe `fd` reads from is closed (the
/// kernel's `POLLHUP`, which comes with data still buffered too): what is
/// left in it is all there will ever be.
pub(crate) fn writers_gone(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&now)).is_ok() && fds[0].revents().contains(PollFlags::HUP)
}

/// One `read` from a non-blocking pipe appended to `into`: straight into
/// its spare room (grown by `chunk` when full), or, while it is still
/// empty, through a small stack buffer first, so an empty stream costs no
/// allocation (std's `read_to_end` does the same). `Ok(0)` at end-of-file;
/// `OutOfMemory` when the buffer cannot grow.
pub(crate) fn read_appending(
    fd: BorrowedFd<'_>,
    into: &mut Vec<u8>,
    chunk: usize,
) -> io::Result<usize> {
    let out_of_memory = |e| io::Error::new(io::ErrorKind::OutOfMemory, e);
    if into.len() == into.capacity() {
        if into.is_empty() {
            let mut probe = [0u8; 4096];
            let n = rustix::io::read(fd, &mut probe)?;
            into.try_reserve(n).map_err(out_of_memory)?;
            into.extend_from_slice(&probe[..n]);
            return Ok(n);
        }
        into.try_reserve(chunk).map_err(out_of_memory)?;
    }
    Ok(rustix::io::read(fd, rustix::buffer::spare_capacity(into))?)
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG [| WNOWAIT])`: the child's status if it
/// has exited, without blocking. With `reap == false` the zombie stays, so
/// its pid and group id cannot be recycled yet.
pub(crate) fn pidfd_try_wait(pidfd: BorrowedFd<'_>, reap: bool) -> io::Result<Option<Exited>> {
    waitid(
        libc::P_PIDFD,
        pidfd.as_raw_fd() as libc::id_t,
        try_wait_options(reap),
    )
}

/// Blocks until `fd` is readable or `limit` passes (a pidfd turns readable
/// when its process exits).
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, limit: std::time::Duration) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec::try_from(limit).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    Ok(rustix::event::poll(&mut fds, Some(&timeout))? > 0)
}

// ---------------------------------------------------------------------------
// pid-based fallbacks (kernels without pidfd)
// ---------------------------------------------------------------------------

/// `waitid(P_PID, ...)`, the fallback when there is no pidfd. Sound only on
/// our own child that nobody else reaps.
pub(crate) fn pid_try_wait(pid: u32, reap: bool) -> io::Result<Option<Exited>> {
    waitid(
        libc::P_PID,
        to_pid(pid)?.as_raw_nonzero().get() as libc::id_t,
        try_wait_options(reap),
    )
}

/// Blocks until our child `pid` exits, and reaps it: a child just sent
/// SIGKILL on an error path, or the polled one-line path's child when
/// there is nothing else to wait for. Sound only on our own child that
/// nobody else reaps (std's `wait` makes the same assumption).
pub(crate) fn pid_wait_blocking(pid: u32) -> io::Result<Option<Exited>> {
    waitid(
        libc::P_PID,
        to_pid(pid)?.as_raw_nonzero().get() as libc::id_t,
        libc::WEXITED,
    )
}

/// The process group of our child `pid` (sound while it is unreaped).
pub(crate) fn getpgid(pid: u32) -> io::Result<u32> {
    Ok(rustix::process::getpgid(Some(to_pid(pid)?))?
        .as_raw_nonzero()
        .get() as u32)
}

/// `kill(pid, sig)`; `pid` negative addresses a process group.
pub(crate) fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether any live process other than `leader` is a member of process
/// group `pgid`, read from `/proc`: where the kernel cannot tell us through
/// a pidfd (before Linux 6.9), and to tell live members from dead ones not
/// yet reaped. True ("maybe") when `/proc` cannot be read (out of fds): a
/// failed scan must not pass for an empty group, or a sweep would stop
/// with members alive.
pub(crate) fn group_has_members_besides(pgid: i32, leader: i32) -> bool {
    let mut found = false;
    let scanned = each_process(|pid, st| {
        found = pid as i32 != leader && st.pgrp == pgid && st.is_alive();
        !found
    });
    found || !scanned
}

/// The fields of `/proc/PID/stat` childminder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead) ...
    pub state: char,
    pub ppid: u32,
    pub pgrp: i32,
}

impl ProcStat {
    pub(crate) fn is_alive(self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }

    /// Parses the fields after the command name, which may itself hold
    /// ") ": they start after the last `)`.
    fn parse(stat: &[u8]) -> Option<ProcStat> {
        let close = stat.iter().rposition(|&b| b == b')')?;
        let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        Some(ProcStat { state, ppid, pgrp })
    }
}

/// Reads `stat` under `dir` (`/proc`, or `/proc/PID`) into a stack buffer:
/// one open, one read, one close, no allocation (the scans below read it
/// for every process of the system).
/// `Ok(None)` when the process is gone (or its line unreadable); `Err`
/// when this process could not open it (out of fds or memory).
fn read_stat_at(dir: BorrowedFd<'_>, path: &CStr) -> Result<Option<ProcStat>, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let fd = match rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOMEM)) => return Err(e),
        Err(_) => return Ok(None),
    };
    // A stat line is about 300 bytes; the command name is at most 64.
    let mut buf = [0u8; 1024];
    let Ok(n) = rustix::io::read(&fd, &mut buf) else {
        return Ok(None);
    };
    Ok(ProcStat::parse(&buf[..n]))
}

/// `/proc/PID/stat`, or `None` when the process is gone.
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let path = CString::new(format!("/proc/{pid}/stat")).ok()?;
    read_stat_at(rustix::fs::CWD, &path).ok().flatten()
}

/// Calls `visit` with every process of `/proc` and its stat until it
/// returns false. False when `/proc` could not be read whole (out of fds
/// or memory).
fn each_process(mut visit: impl FnMut(u32, ProcStat) -> bool) -> bool {
    use rustix::fs::{Mode, OFlags};
    let Ok(proc_dir) = rustix::fs::open(
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&proc_dir) else {
        return false;
    };
    let mut path = Vec::with_capacity(32);
    for entry in entries.flatten() {
        let name = entry.file_name().to_bytes();
        let Some(pid) = std::str::from_utf8(name)
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        path.clear();
        path.extend_from_slice(name);
        path.extend_from_slice(b"/stat\0");
        let Ok(path) = CStr::from_bytes_with_nul(&path) else {
            continue;
        };
        match read_stat_at(proc_dir.as_fd(), path) {
            Ok(Some(st)) if !visit(pid, st) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Whether this process has any child at all, running or a zombie:
/// `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)` fails with ECHILD only
/// when there is none, and reaps nothing.
pub(crate) fn has_children() -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    !matches!(
        rustix::process::waitid(WaitId::All, options),
        Err(rustix::io::Errno::CHILD)
    )
}

/// The processes whose parent is this process, zombies included: from
/// `/proc/self/task/*/children` (each thread's children, where the kernel
/// lists them: `CONFIG_PROC_CHILDREN`), one small read per thread; else by
/// reading the parent of every process in `/proc`, which costs a
/// millisecond or more on a busy machine, at the end of every supervision
/// with the subreaper.
/// `None` when `/proc` cannot be read (out of fds).
pub(crate) fn own_children() -> Option<Vec<u32>> {
    if let Some(children) = children_of_own_threads() {
        return Some(children);
    }
    let me = getpid() as u32;
    let mut children = Vec::new();
    let scanned = each_process(|pid, st| {
        if st.ppid == me {
            children.push(pid);
        }
        true
    });
    scanned.then_some(children)
}

/// A child of ours that has exited, not reaped (nor reaped by this call):
/// `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)`, which needs no fd, so it
/// answers when `/proc` cannot be read. The first the kernel finds.
pub(crate) fn an_exited_child() -> Option<u32> {
    let mut info = zeroed_siginfo();
    // SAFETY: `info` is valid, writable and sized for the kernel's
    // siginfo_t; the other arguments are integers.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: a waitid answer fills the SIGCHLD layout of siginfo_t (or
    // leaves it zeroed with WNOHANG), of which si_pid is a field.
    let pid = unsafe { info.si_pid() };
    u32::try_from(pid).ok().filter(|&pid| pid > 0)
}

// ---------------------------------------------------------------------------
// Subreaper
// ---------------------------------------------------------------------------

/// `PR_SET_CHILD_SUBREAPER`: orphaned descendants re-parent to this process
/// instead of to init. Process-wide and inherited by no one.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    let on = rustix::process::Pid::from_raw(1).expect("1 is a valid pid");
    Ok(rustix::process::set_child_subreaper(Some(on))?)
}

pub(crate) fn is_child_subreaper() -> io::Result<bool> {
    Ok(rustix::process::child_subreaper()?.is_some())
}

/// The children of each of our threads, as the kernel lists them; `None`
/// when it does not.
fn children_of_own_threads() -> Option<Vec<u32>> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let list = match std::fs::read_to_string(task.path().join("children")) {
            Ok(list) => list,
            // A thread that ended since the listing has no children left.
            Err(e) if e.kind() == io::ErrorKind::NotFound && task.path().exists() => return None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        children.extend(
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    Some(children)
}

// ---------------------------------------------------------------------------
// inotify (the cgroup's "populated" changes)
// ---------------------------------------------------------------------------

/// A non-blocking inotify fd watching `path` for modification: kernfs
/// reports a change of `cgroup.events` this way.
pub(crate) fn watch_modify(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(&fd, path, inotify::WatchFlags::MODIFY)?;
    Ok(fd)
}

/// Reads (and drops) every pending inotify event, so the fd is not
/// readable again until a new one comes.
pub(crate) fn drain_inotify(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------
// Pipes
// ---------------------------------------------------------------------------

/// A pipe with both ends close-on-exec: the child gets its ends by `dup2`,
/// which clears the flag on the copy only.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Checks that `count` more fds can be opened now, by opening that many
/// (pipes) and closing them again. `EMFILE` or `ENFILE` when they cannot.
pub(crate) fn check_free_fds(count: usize) -> io::Result<()> {
    let held: Vec<(OwnedFd, OwnedFd)> = (0..count.div_ceil(2))
        .map(|_| pipe())
        .collect::<io::Result<_>>()?;
    drop(held);
    Ok(())
}

/// Makes our end of a pipe this crate has just created non-blocking.
/// One `F_SETFL`, without reading the flags first: a new pipe end has no
/// status flag `F_SETFL` could clear (its access mode is not one).
pub(crate) fn set_new_pipe_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

pub(crate) fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Grows a pipe's kernel buffer. Best effort: a refusal (the size is above
/// `fs.pipe-max-size` for an unprivileged user) keeps the default 64 KiB.
pub(crate) fn try_set_pipe_size(fd: BorrowedFd<'_>, size: usize) {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(fd, size) {
        tracing::trace!(error = %e, size, "F_SETPIPE_SZ refused; keeping the default pipe size");
    }
}

/// The most a pipe can hold (its kernel buffer: 64 KiB unless grown).
pub(crate) fn pipe_capacity(fd: BorrowedFd<'_>) -> usize {
    rustix::pipe::fcntl_getpipe_size(fd).unwrap_or(64 * 1024)
}

/// A close-on-exec duplicate numbered at least `min`.
pub(crate) fn dup_cloexec_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, min)?)
}

pub(crate) fn open_dev_null(write: bool) -> io::Result<OwnedFd> {
    let mode = if write {
        rustix::fs::OFlags::WRONLY
    } else {
        rustix::fs::OFlags::RDONLY
    };
    Ok(rustix::fs::open(
        "/dev/null",
        mode | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

// ---------------------------------------------------------------------------
// Spawning through posix_spawn (vfork speed, no pre_exec)
// ---------------------------------------------------------------------------

/// What the child's fds 0, 1 and 2 and any extra fds become. `None` leaves
/// the parent's own fd in place (inherit).
pub(crate) struct ChildFds<'a> {
    pub stdio: [Option<BorrowedFd<'a>>; 3],
    /// `(source, target)`: the source must be numbered above every target so
    /// no `dup2` clobbers a later source (the caller arranges that).
    pub extra: Vec<(BorrowedFd<'a>, RawFd)>,
}

/// Everything `posix_spawn` needs, already NUL-checked.
pub(crate) struct SpawnRequest<'a> {
    pub path: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a crate::command::EnvBlock,
    pub cwd: Option<&'a CStr>,
    pub new_process_group: bool,
    /// SIGPIPE back to its default in the child (`Command::inherit_sigpipe`
    /// false), rather than as this process has it.
    pub reset_sigpipe: bool,
    pub fds: ChildFds<'a>,
    /// The terminal (one of fds 0-2, inherited) whose foreground group the
    /// child's new group becomes (`Command::terminal_foreground`).
    pub foreground_tty: Option<RawFd>,
}

struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<FileActions> {
        let mut raw = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        // SAFETY: init writes a valid object into the uninitialised storage.
        check_spawn(unsafe { libc::posix_spawn_file_actions_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call above.
        Ok(FileActions(unsafe { raw.assume_init() }))
    }

    fn dup2(&mut self, from: RawFd, to: RawFd) -> io::Result<()> {
        // SAFETY: self.0 is initialised; the fds are plain integers recorded
        // for the child.
        check_spawn(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) })
    }

    fn close(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: as above; glibc ignores EBADF for close actions in the child.
        check_spawn(unsafe { libc::posix_spawn_file_actions_addclose(&mut self.0, fd) })
    }

    fn tcsetpgrp(&mut self, tty: RawFd) -> io::Result<()> {
        // SAFETY: as above (glibc 2.35+: the child calls tcsetpgrp(tty, its
        // group) with every signal blocked, so SIGTTOU cannot stop it).
        check_spawn(unsafe { libc::posix_spawn_file_actions_addtcsetpgrp_np(&mut self.0, tty) })
    }

    fn close_from(&mut self, from: RawFd) -> io::Result<()> {
        // SAFETY: as above (glibc 2.34+: closes every fd >= from in the child).
        check_spawn(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(&mut self.0, from) })
    }

    fn chdir(&mut self, dir: &CStr) -> io::Result<()> {
        // SAFETY: as above; glibc copies the path string.
        check_spawn(unsafe {
            libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr())
        })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed exactly once here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    fn new() -> io::Result<SpawnAttr> {
        let mut raw = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        // SAFETY: init writes a valid object into the uninitialised storage.
        check_spawn(unsafe { libc::posix_spawnattr_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call above.
        Ok(SpawnAttr(unsafe { raw.assume_init() }))
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed exactly once here.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

fn empty_sigset() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised just above.
    unsafe { set.assume_init() }
}

fn sigset_of(signal: libc::c_int) -> libc::sigset_t {
    let mut set = empty_sigset();
    // SAFETY: the set is initialised; sigaddset only sets one bit of it.
    unsafe { libc::sigaddset(&mut set, signal) };
    set
}

/// glibc's own signals (SIGCANCEL 32 and SIGSETXID 33), which its
/// `posix_spawn` sets to SIG_IGN in the child unless they are in the
/// "set to default" set, and an ignored signal survives exec: every child
/// of the fast path (and of std's) started with both ignored, and handed
/// that on to its descendants. `sigaddset` refuses them (EINVAL), so their
/// bits are set directly; `posix_spawnattr_setsigdefault` copies the set
/// and the child tests the bits as they are.
const GLIBC_INTERNAL_SIGNALS: [usize; 2] = [32, 33];

fn add_glibc_internal_signals(set: &mut libc::sigset_t) {
    const WORD_BITS: usize = libc::c_ulong::BITS as usize;
    let words = std::ptr::from_mut(set).cast::<libc::c_ulong>();
    for signal in GLIBC_INTERNAL_SIGNALS {
        let (word, bit) = ((signal - 1) / WORD_BITS, (signal - 1) % WORD_BITS);
        // SAFETY: glibc's sigset_t is `unsigned long __val[1024 / (8 *
        // sizeof (unsigned long))]` (128 bytes), so words 0 and 1 are in
        // it, aligned as c_ulong; signal N is bit N - 1, counted through
        // the words, as glibc's __sigismember reads it.
        unsafe { *words.add(word) |= 1 << bit };
    }
}

fn check_spawn(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// The soft `RLIMIT_NOFILE`: one more than the highest fd number that can
/// be opened now ("unlimited", or beyond an fd number: `RawFd::MAX`).
pub(crate) fn soft_fd_limit() -> RawFd {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(RawFd::MAX, |n| RawFd::try_from(n).unwrap_or(RawFd::MAX))
}

/// An fd at or above `min` that is open without close-on-exec (one a
/// child would inherit), from `/proc/self/fd`: fds above the fd limit
/// exist when the limit was lowered after they were opened.
pub(crate) fn inheritable_fd_from(min: RawFd) -> Option<RawFd> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| fd >= min)
        .find(|&fd| {
            // SAFETY: F_GETFD on an fd number reads its flags and touches
            // no memory; one closed meanwhile is EBADF, and not counted.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
}

/// Spawns with `posix_spawn`, which glibc implements with
/// `clone(CLONE_VM | CLONE_VFORK)`: no page-table copy, whatever the size of
/// the parent. The child gets fds 0-2 (and the extras) and nothing else,
/// a clean signal mask, default dispositions, and optionally a new group.
pub(crate) fn posix_spawn(req: &SpawnRequest<'_>) -> io::Result<u32> {
    let mut actions = FileActions::new()?;
    for (target, fd) in req.fds.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            actions.dup2(fd.as_raw_fd(), target as RawFd)?;
        }
    }
    let mut max_target = 2;
    for (fd, target) in &req.fds.extra {
        actions.dup2(fd.as_raw_fd(), *target)?;
        max_target = max_target.max(*target);
    }
    // Everything else goes, including fds this program inherited without
    // CLOEXEC (what Python's close_fds does, but without leaving vfork).
    for fd in 3..=max_target {
        if !req.fds.extra.iter().any(|&(_, t)| t == fd) {
            actions.close(fd)?;
        }
    }
    // glibc refuses a closefrom at the fd limit (EBADF): with a target just
    // below it, nothing above can be open that was opened since the limit
    // was set, and the spawn has checked that nothing opened before it is
    // inheritable there (`inheritable_fd_from`).
    if max_target == 2 || max_target + 1 < soft_fd_limit() {
        actions.close_from(max_target + 1)?;
    }
    if let Some(tty) = req.foreground_tty.filter(|_| req.new_process_group) {
        actions.tcsetpgrp(tty)?;
    }
    if let Some(cwd) = req.cwd {
        actions.chdir(cwd)?;
    }

    let mut attr = SpawnAttr::new()?;
    let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
    if req.new_process_group {
        flags |= libc::POSIX_SPAWN_SETPGROUP;
    }
    let none = empty_sigset();
    let mut to_default = if req.reset_sigpipe {
        sigset_of(libc::SIGPIPE)
    } else {
        empty_sigset()
    };
    add_glibc_internal_signals(&mut to_default);
    // SAFETY: attr is initialised; the sets are initialised values that
    // glibc copies.
    check_spawn(unsafe { libc::posix_spawnattr_setsigmask(&mut attr.0, &none) })?;
    // SAFETY: as above. Only SIGPIPE is reset (unless inherit_sigpipe), as
    // std does: Rust ignores it for its own sake, while any other ignored
    // signal was the user's choice (`nohup` ignores SIGHUP) and exec passes
    // it on; and glibc's internal two, which no user can ignore. Handlers
    // are reset by exec anyway.
    check_spawn(unsafe { libc::posix_spawnattr_setsigdefault(&mut attr.0, &to_default) })?;
    // SAFETY: as above; 0 means "a new group whose id is the child's pid".
    check_spawn(unsafe { libc::posix_spawnattr_setpgroup(&mut attr.0, 0) })?;
    // SAFETY: as above; the flags are valid POSIX_SPAWN_* bits.
    check_spawn(unsafe { libc::posix_spawnattr_setflags(&mut attr.0, flags as libc::c_short) })?;

    let argv = null_terminated(req.argv);
    let envp = req.envp.null_terminated();
    let mut pid: libc::pid_t = 0;
    // SAFETY: path, argv and envp are NUL-terminated strings in
    // NULL-terminated arrays that outlive the call; actions and attr are
    // initialised; glibc reports exec failure (ENOENT, EACCES, ...) as the
    // return value because it waits for the vfork child to exec or fail.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            req.path.as_ptr(),
            &actions.0,
            &attr.0,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    check_spawn(rc)?;
    Ok(pid as u32)
}

fn null_terminated<S: AsRef<CStr>>(strings: &[S]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ref().as_ptr() as *mut libc::c_char)
        .chain(std::iter::once(ptr::null_mut()))
        .collect()
}

// ---------------------------------------------------------------------------
// The fork path (kill_on_parent_death, uid/gid/groups, cgroup), run inside std's pre_exec
// ---------------------------------------------------------------------------

/// Where the forked child moves itself before exec: a cgroup's
/// `cgroup.procs`, opened for writing, and the write end of a pipe on
/// which it reports a failure to move (its errno), so the parent can tell
/// that failure from one of exec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinCgroup {
    pub procs: RawFd,
    pub report: RawFd,
}

/// What the forked child does before exec besides placing its fds.
#[derive(Debug, Clone, Default)]
pub(crate) struct BeforeExec {
    pub kill_on_parent_death: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Option<Vec<libc::gid_t>>,
    /// The working directory, entered after the credentials change (so
    /// with the new user's rights, as std does with its own `uid`), when
    /// they change; else std enters it.
    pub cwd_as_new_user: Option<std::ffi::CString>,
    pub join_cgroup: Option<JoinCgroup>,
    /// SIGPIPE back to its default (else it stays as this process has it).
    pub reset_sigpipe: bool,
    /// The terminal whose foreground group the child's group becomes.
    pub foreground_tty: Option<RawFd>,
}

/// Spawns through std's fork path with `in_child_before_exec` as the
/// `pre_exec` hook: for what needs code in the child before exec.
pub(crate) fn spawn_forked(
    mut cmd: std::process::Command,
    extra: Vec<(RawFd, RawFd)>,
    before_exec: BeforeExec,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let state = ForkedChildState {
        foreground_tty: before_exec.foreground_tty,
        ttou_only: sigset_of(libc::SIGTTOU),
        parent_pid: getpid(),
        kill_on_parent_death: before_exec.kill_on_parent_death,
        uid: before_exec.uid,
        gid: before_exec.gid,
        groups: before_exec.groups,
        cwd_as_new_user: before_exec.cwd_as_new_user,
        join_cgroup: before_exec.join_cgroup,
        empty_mask: empty_sigset(),
        sigpipe: if before_exec.reset_sigpipe || !signal_is_ignored(libc::SIGPIPE) {
            libc::SIG_DFL
        } else {
            libc::SIG_IGN
        },
    };
    // SAFETY: the hook runs in the forked child and only makes the
    // async-signal-safe calls of `in_child_before_exec`; it allocates
    // nothing (`extra` and `state` were built before the fork and are only
    // read).
    unsafe {
        cmd.pre_exec(move || in_child_before_exec(&extra, &state));
    }
    cmd.spawn()
}

/// In the forked child: joins the cgroup (writing `0` to its
/// `cgroup.procs` moves the writer), before the program's first
/// instruction, so nothing it forks can start outside. Async-signal-safe.
fn join_cgroup_in_child(join: JoinCgroup) -> io::Result<()> {
    // SAFETY: write from a static byte string to an fd number.
    if unsafe { libc::write(join.procs, b"0".as_ptr().cast(), 1) } == 1 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let errno = err.raw_os_error().unwrap_or(libc::EIO).to_ne_bytes();
    // SAFETY: write from a local array to the report pipe.
    unsafe { libc::write(join.report, errno.as_ptr().cast(), errno.len()) };
    Err(err)
}

/// What the forked child sets before exec, computed before the fork.
struct ForkedChildState {
    /// The terminal to make the child's group the foreground of.
    foreground_tty: Option<RawFd>,
    /// SIGTTOU alone, blocked around that `tcsetpgrp`: from the child's
    /// new (background) group it would otherwise stop the child.
    ttou_only: libc::sigset_t,
    parent_pid: libc::pid_t,
    kill_on_parent_death: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Option<Vec<libc::gid_t>>,
    cwd_as_new_user: Option<std::ffi::CString>,
    join_cgroup: Option<JoinCgroup>,
    /// The child's signal mask: empty. std's fork path leaves the spawning
    /// thread's mask in place, so a caller that blocks SIGTERM (for
    /// `sigwait` or a signalfd) would hand the child a mask in which the
    /// escalation's SIGTERM never arrives.
    empty_mask: libc::sigset_t,
    /// SIGPIPE's disposition in the child (`SIG_DFL` or `SIG_IGN`).
    sigpipe: libc::sighandler_t,
}

/// Runs in the forked child before exec: place the extra fds, make every
/// other fd above 2 close-on-exec, take on the requested credentials, and
/// ask for SIGKILL when the spawning thread dies. Close-on-exec rather than close, so std's own exec-error
/// pipe keeps working. Only async-signal-safe calls; no allocation.
fn in_child_before_exec(extra: &[(RawFd, RawFd)], state: &ForkedChildState) -> io::Result<()> {
    if let Some(tty) = state.foreground_tty {
        // SAFETY: blocks one signal in this single-threaded forked child
        // (the mask is emptied below); async-signal-safe.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &state.ttou_only, ptr::null_mut()) };
        // SAFETY: tcsetpgrp on an fd number with our own pid, which std has
        // made a group leader (setpgid) before this hook; async-signal-safe.
        if unsafe { libc::tcsetpgrp(tty, libc::getpid()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if let Some(join) = state.join_cgroup {
        join_cgroup_in_child(join)?;
    }
    // SAFETY: sets this (single-threaded, forked) process's mask from an
    // initialised set; async-signal-safe.
    let rc =
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &state.empty_mask, ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: signal() with SIG_DFL or SIG_IGN installs no handler code;
    // async-signal-safe.
    if unsafe { libc::signal(libc::SIGPIPE, state.sigpipe) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    // glibc's own signals may be ignored here, inherited that way from a
    // parent that `posix_spawn`ed this process (see
    // GLIBC_INTERNAL_SIGNALS): back to their default, by the raw system
    // call, since glibc's `sigaction` refuses them. Its result is not
    // checked: where it fails, the child starts as std's would, and that
    // is no reason to refuse the spawn.
    let default_action = [0_u64; 4];
    for signal in GLIBC_INTERNAL_SIGNALS {
        // SAFETY: rt_sigaction with an all-zero kernel `struct sigaction`
        // (SIG_DFL is 0, no flags, an empty mask: 32 bytes cover it on
        // x86_64, aarch64 and riscv64, where the kernel's sigset is the 8
        // bytes passed; elsewhere the size is refused, EINVAL, and nothing
        // is written) and no old action to write: a plain system call,
        // async-signal-safe.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal as libc::c_long,
                default_action.as_ptr(),
                ptr::null_mut::<u64>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
    let mut max_target = 2;
    for &(from, to) in extra {
        // SAFETY: dup2 on integers; we are the single-threaded forked child.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(io::Error::last_os_error());
        }
        max_target = max_target.max(to);
    }
    for fd in 3..=max_target {
        if !extra.iter().any(|&(_, t)| t == fd) {
            // SAFETY: fcntl on an fd number; EBADF for a closed one is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    // SAFETY: close_range takes integers and only changes fd flags here.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            max_target + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Before Linux 5.11 (no CLOSE_RANGE_CLOEXEC): one fcntl per
        // possible fd number, still without allocating.
        // SAFETY: sysconf takes an integer and touches no memory.
        let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(0, 1 << 20) as RawFd;
        for fd in max_target + 1..limit {
            // SAFETY: fcntl on an fd number; EBADF for a closed one is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    // Credentials before the death signal: changing them clears it.
    set_credentials(state)?;
    if let Some(cwd) = &state.cwd_as_new_user {
        // SAFETY: chdir reads a NUL-terminated path built before the fork;
        // async-signal-safe.
        if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if state.kill_on_parent_death {
        // SAFETY: prctl with integer arguments affects only this process.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died between fork and prctl; then no signal
        // will ever come, so act on it now.
        // SAFETY: getppid has no arguments and cannot fail.
        if unsafe { libc::getppid() } != state.parent_pid {
            // No allocation here (we are the forked child): std only
            // passes the errno on anyway.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// In the forked child: supplementary groups, then the group, then the
/// user (after `setuid` the others are no longer allowed). As std does, a
/// new user without explicit groups drops the inherited supplementary
/// groups when permitted.
fn set_credentials(setup: &ForkedChildState) -> io::Result<()> {
    let groups = match (&setup.groups, setup.uid) {
        (Some(groups), _) => Some(groups.as_slice()),
        (None, Some(_)) => Some(&[][..]),
        (None, None) => None,
    };
    if let Some(groups) = groups {
        // SAFETY: setgroups reads `len` gids from a live slice.
        let rc = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
        // Dropping them is best effort (EPERM when unprivileged); setting
        // them is what was asked for.
        if rc != 0 && setup.groups.is_some() {
            return Err(io::Error::last_os_error());
        }
    }
    if let Some(gid) = setup.gid {
        // SAFETY: setgid takes an integer.
        if unsafe { libc::setgid(gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if let Some(uid) = setup.uid {
        // SAFETY: setuid takes an integer.
        if unsafe { libc::setuid(uid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lets a job that borrows for `'a` be sent to a pooled thread.
///
/// # Safety
///
/// The caller must not let `'a` end before the job has run and been
/// dropped, or been dropped unrun (what `pool::Running` waits for).
pub(crate) unsafe fn extend_job_lifetime<'a>(
    job: Box<dyn FnOnce() + Send + 'a>,
) -> Box<dyn FnOnce() + Send + 'static> {
    // SAFETY: the two types differ only in the lifetime bound, so the layout
    // is the same; the caller upholds that the borrow outlives every use.
    unsafe { std::mem::transmute(job) }
}

/// The current disposition of `signal`, or `None` if it cannot be read.
fn disposition(signal: libc::c_int) -> Option<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // a plain C struct we own.
    let rc = unsafe { libc::sigaction(signal, ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled in by sigaction on success.
    (rc == 0).then(|| unsafe { old.assume_init() })
}

/// True when `signal` is ignored (`SIG_IGN`) in this process.
pub(crate) fn signal_is_ignored(signal: libc::c_int) -> bool {
    disposition(signal).is_some_and(|a| a.sa_sigaction == libc::SIG_IGN)
}

/// True when this process has the kernel reap its children by itself:
/// SIGCHLD ignored (`SIG_IGN`) or `SA_NOCLDWAIT`. A child's exit status is
/// then lost, and every wait fails with ECHILD.
pub(crate) fn children_are_reaped_by_the_kernel() -> bool {
    disposition(libc::SIGCHLD)
        .is_some_and(|a| a.sa_sigaction == libc::SIG_IGN || a.sa_flags & libc::SA_NOCLDWAIT != 0)
}

/// Registers `handler` to run when the process calls `exit` (returning
/// from `main` does).
pub(crate) fn at_exit(handler: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `handler` is a plain function with no captured state, valid
    // for the life of the process.
    if unsafe { libc::atexit(handler) } == 0 {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::OutOfMemory))
    }
}

pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::getpid() }
}

// ---------------------------------------------------------------------------
// The terminal's foreground process group (Command::terminal_foreground)
// ---------------------------------------------------------------------------

/// The first of fds 0-2 that the child inherits (`inherited[fd]`) and that
/// is a terminal whose foreground group is ours: the terminal the child's
/// group may be given.
pub(crate) fn foreground_terminal(inherited: [bool; 3]) -> Option<RawFd> {
    let ours = own_process_group();
    // 0: our group lies outside our PID namespace (PID 1 of a container).
    if ours <= 0 {
        return None;
    }
    (0..3).find(|&fd| inherited[fd as usize] && terminal_foreground_group(fd) == Some(ours))
}

/// The foreground group of the terminal `fd`; `None` when `fd` is not a
/// terminal, or the group lies outside our PID namespace.
fn terminal_foreground_group(fd: RawFd) -> Option<libc::pid_t> {
    // SAFETY: tcgetpgrp on an fd number: EBADF or ENOTTY when it is not an
    // open terminal; touches no memory.
    let group = unsafe { libc::tcgetpgrp(fd) };
    (group > 0).then_some(group)
}

/// Our own process group, which the terminal is given back to (0 when it
/// lies outside our PID namespace).
pub(crate) fn own_process_group() -> libc::pid_t {
    // SAFETY: getpgrp has no arguments and cannot fail.
    unsafe { libc::getpgrp() }
}

/// Makes `to` the foreground group of the terminal `tty` if `holder`
/// holds it now (`None`: whoever holds it). SIGTTOU is blocked in the
/// calling thread meanwhile: from a background group, `tcsetpgrp` would
/// otherwise stop this whole process.
pub(crate) fn give_terminal(tty: BorrowedFd<'_>, holder: Option<libc::pid_t>, to: libc::pid_t) {
    let Some(now) = terminal_foreground_group(tty.as_raw_fd()) else {
        return;
    };
    if to <= 0 || now == to || holder.is_some_and(|h| h != now) {
        return;
    }
    let ttou = sigset_of(libc::SIGTTOU);
    let mut old = empty_sigset();
    // SAFETY: both sets are initialised; only this thread's mask changes.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &ttou, &mut old) };
    // SAFETY: tcsetpgrp on an open fd with a group id; touches no memory.
    let rc = unsafe { libc::tcsetpgrp(tty.as_raw_fd(), to) };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "giving the terminal back failed");
    }
    // SAFETY: restores the mask saved above, for this thread only.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap(), parts.next().unwrap()) >= (major, minor)
    }

    /// Caught a probe that asked on our own pidfd and took ESRCH (we lead no
    /// group under `cargo run`) for "unsupported", sending every teardown
    /// through the slow /proc scan.
    #[test]
    fn group_signal_probe_accepts_esrch_from_a_non_leader() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id()).unwrap();
        assert_eq!(group_flag_supported(fd.as_fd()), kernel_at_least(6, 9));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
