//! The command's own OS calls, in one place: what kind of file each of our
//! stdio fds is, a private non-blocking copy of one, `splice(2)`, the
//! terminal's foreground group, and childminder's own signal state at its
//! start and end (what it inherited: SIGPIPE, SIGCHLD; ending itself by the
//! command's signal). Every `unsafe` block wraps one call.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use childminder::Signal;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::pipe::SpliceFlags;

/// What one of childminder's stdio fds is, which decides how its bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// Not open.
    Closed,
    /// A terminal: handed to the command unless `--stream-stdio`.
    Terminal,
    /// A pipe or FIFO: `splice(2)` moves the bytes.
    Pipe,
    /// A socket.
    Socket,
    /// A regular file or a block device: never blocks for long.
    File,
    /// Anything else (`/dev/null`, another character device).
    Other,
}

/// One of our own stdio fds (0, 1 or 2), or `None` when it is not open.
pub fn stdio_fd(fd: RawFd) -> Option<BorrowedFd<'static>> {
    debug_assert!((0..=2).contains(&fd));
    // SAFETY: fcntl(F_GETFD) only inspects the fd number.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open (checked above), and childminder never closes
    // its fds 0-2, so it stays open for the life of the process.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Which of fds 0-2 were closed when the process started (bit `fd`): the
/// Rust runtime opens `/dev/null` on each before `main`, so only a probe
/// that runs earlier ([`record_closed_stdio`]) can tell.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

/// Records which of fds 0-2 the parent left closed. Called from the same
/// `.init_array` constructor as [`record_inherited_sigpipe`], before the
/// Rust runtime puts `/dev/null` in their place.
pub fn record_closed_stdio() {
    let mut closed = 0;
    for fd in 0..=2 {
        if stdio_fd(fd).is_none() {
            closed |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

/// The kind of our stdio fd `fd`: `Closed` also when the parent left it
/// closed and the Rust runtime opened `/dev/null` on it.
pub fn kind(fd: RawFd) -> FdKind {
    if CLOSED_AT_START.load(Ordering::Relaxed) & (1 << fd) != 0 {
        return FdKind::Closed;
    }
    let Some(borrowed) = stdio_fd(fd) else {
        return FdKind::Closed;
    };
    let Ok(stat) = rustix::fs::fstat(borrowed) else {
        return FdKind::Closed;
    };
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Fifo => FdKind::Pipe,
        FileType::Socket => FdKind::Socket,
        FileType::RegularFile | FileType::BlockDevice => FdKind::File,
        FileType::CharacterDevice if rustix::termios::isatty(borrowed) => FdKind::Terminal,
        _ => FdKind::Other,
    }
}

/// Registers `fd` with the current runtime's event loop.
///
/// # Errors
///
/// `EPERM` for a file that cannot be polled (a regular file, `/dev/null`);
/// the reactor's error when it is out of room.
pub fn register(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open, owned by the AsyncFd for its whole life,
    // and always reports the same raw fd.
    Ok(unsafe { tokio::io::unix::AsyncFd::register(fd) }?)
}

/// Checks that `count` more fds can be opened now, by opening that many
/// (pipes) and closing them again: `EMFILE` or `ENFILE` when they cannot.
pub fn check_free_fds(count: usize) -> io::Result<()> {
    let held = (0..count.div_ceil(2))
        .map(|_| rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC))
        .collect::<Result<Vec<_>, _>>()?;
    drop(held);
    Ok(())
}

/// A close-on-exec copy of `fd` (same open file description).
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

/// A new open file description of the same pipe, FIFO or terminal, made
/// non-blocking. Setting `O_NONBLOCK` on the fd we inherited would change
/// it for every process that shares it (the shell, the other side of a
/// pipeline); a description of our own changes nothing for them.
///
/// # Errors
///
/// `ENXIO` for a socket (or a FIFO whose reader has gone), `EACCES`, or
/// `ENOENT` without `/proc`.
pub fn reopen_nonblocking(fd: RawFd, write: bool) -> io::Result<OwnedFd> {
    let access = if write {
        OFlags::WRONLY
    } else {
        OFlags::RDONLY
    };
    Ok(rustix::fs::open(
        format!("/proc/self/fd/{fd}"),
        access | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Moves up to `len` bytes from the pipe `from` to `to` inside the kernel.
/// Non-blocking on the pipe side(s): `WouldBlock` when `from` is empty or
/// the pipe `to` is full.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    Ok(rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
    )?)
}

/// `read(2)` into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// `write(2)` of `buf`; on a socket `send(2)` with `MSG_DONTWAIT`, which
/// does not wait even though the socket we share is blocking.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8], socket: bool) -> io::Result<usize> {
    if socket {
        // SAFETY: buf is a valid slice for its length; send only reads it.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        return if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        };
    }
    Ok(rustix::io::write(fd, buf)?)
}

/// `recv(2)` with `MSG_DONTWAIT`: a non-blocking read of a socket we
/// share with others (its description stays blocking).
pub fn recv_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid, writable slice for its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What a zero-timeout `poll(2)` says about `fd` right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollNow {
    pub readable: bool,
    pub writable: bool,
    /// No writer is left (a pipe's read end): what is in it is all there
    /// will ever be.
    pub hung_up: bool,
}

/// Polls `fd` without waiting.
pub fn poll_now(fd: BorrowedFd<'_>) -> io::Result<PollNow> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN | PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    let revents = fds[0].revents();
    Ok(PollNow {
        readable: revents.contains(PollFlags::IN),
        writable: revents.contains(PollFlags::OUT),
        hung_up: revents.contains(PollFlags::HUP),
    })
}

/// Runs `f` with `signal` blocked in the calling thread: a terminal
/// operation from a background process group then fails with `EIO` (a
/// read) or proceeds (`tcsetpgrp`) instead of stopping all of childminder.
pub fn with_signal_blocked<R>(signal: libc::c_int, f: impl FnOnce() -> R) -> R {
    // SAFETY: sigemptyset initialises the set it is given.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: the set is initialised; sigaddset sets one bit of it.
    unsafe { libc::sigaddset(&mut set, signal) };
    // SAFETY: as above, a plain C struct we own.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid; only the calling thread's mask changes.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    let result = f();
    // SAFETY: restores the mask saved above, for this thread only.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result
}

/// The foreground process group of the terminal `fd`, if it is one.
pub fn foreground_group(fd: BorrowedFd<'_>) -> Option<libc::pid_t> {
    // SAFETY: tcgetpgrp on an open fd; touches no memory. 0 (a group
    // outside our PID namespace) and errors are "none".
    let group = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
    (group > 0).then_some(group)
}

/// childminder's own process group.
pub fn own_group() -> libc::pid_t {
    // SAFETY: getpgrp has no arguments and cannot fail (0 when the group
    // lies outside our PID namespace).
    unsafe { libc::getpgrp() }
}

/// Whether another child of our parent is in our process group: we are
/// one stage of a shell pipeline (the job `cat | childminder run ...`),
/// whose other stages may read or write the terminal too. Read from /proc
/// (the parent's children, then each one's group); false when unreadable.
pub fn shares_group_with_a_sibling() -> bool {
    let me = std::process::id();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let group = own_group();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
        return false;
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path().join("children");
            std::fs::read_to_string(path).ok()
        })
        .flat_map(|children| {
            children
                .split_ascii_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|&pid| pid != me)
        .any(|pid| process_group_of(pid) == Some(group))
}

/// The process group of `pid`, from `/proc/PID/stat` (the field after the
/// state and the parent), if it can be read.
fn process_group_of(pid: u32) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// Makes `to` the foreground group of the terminal `tty` if `holder` holds
/// it now, with SIGTTOU blocked (from a background group `tcsetpgrp` would
/// stop childminder).
pub fn give_terminal(tty: BorrowedFd<'_>, holder: Option<libc::pid_t>, to: libc::pid_t) {
    let now = foreground_group(tty);
    if to <= 0 || now.is_none() || now == Some(to) || holder.is_some_and(|h| Some(h) != now) {
        return;
    }
    with_signal_blocked(libc::SIGTTOU, || {
        // SAFETY: tcsetpgrp on an open fd with a group id; touches no memory.
        unsafe { libc::tcsetpgrp(tty.as_raw_fd(), to) };
    });
}

/// Consumes the report of the child `pid` having stopped, if there is one
/// (`waitid(WSTOPPED | WNOHANG)`: never reaps, never sees an exit).
pub fn take_stop_report(pid: libc::pid_t) -> bool {
    // SAFETY: a plain C struct we own, zeroed as waitid expects for "none".
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes into `info` only; WSTOPPED without WEXITED
    // leaves an exited child for the library to reap.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WSTOPPED | libc::WNOHANG,
        )
    };
    // SAFETY: waitid filled `info` (or left it zeroed); si_pid is valid
    // for SIGCHLD reports.
    rc == 0 && unsafe { info.si_pid() } == pid && info.si_code == libc::CLD_STOPPED
}

/// Stops childminder's own process group with SIGTSTP, as Ctrl-Z would
/// have, and returns once it is continued (SIGCONT). If SIGTSTP is
/// ignored (no job control), nothing stops.
pub fn stop_own_group(group: libc::pid_t) {
    // SAFETY: kill with integers; a signal to our own group is delivered to
    // us before kill returns, so we stop inside this call.
    unsafe { libc::kill(-group, libc::SIGTSTP) };
}

// ---------------------------------------------------------------------------
// childminder's own signal state
// ---------------------------------------------------------------------------

/// SIGPIPE's disposition when the process started, before the Rust runtime
/// set it to ignored for itself: unknown (never recorded), default, or
/// ignored.
static SIGPIPE_AT_START: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const DEFAULT: u8 = 1;
const IGNORED: u8 = 2;

/// The current disposition of `signal`, or `None` if it cannot be read.
fn disposition(signal: i32) -> Option<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`, a
    // plain C struct we own.
    let rc = unsafe { libc::sigaction(signal, ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled in by sigaction on success.
    (rc == 0).then(|| unsafe { old.assume_init() })
}

/// True when `signal`'s disposition is `SIG_IGN`.
pub fn is_ignored(signal: i32) -> bool {
    disposition(signal).is_some_and(|a| a.sa_sigaction == libc::SIG_IGN)
}

/// Records SIGPIPE's disposition as the parent gave it. The binary calls
/// this from an `.init_array` constructor, which glibc runs before `main`
/// and so before the Rust runtime ignores SIGPIPE (std captures `argv` on
/// Linux the same way). It only reads the disposition and stores a byte.
pub fn record_inherited_sigpipe() {
    let state = if is_ignored(libc::SIGPIPE) {
        IGNORED
    } else {
        DEFAULT
    };
    SIGPIPE_AT_START.store(state, Ordering::Relaxed);
}

/// True when the parent started childminder with SIGPIPE ignored (`trap ''
/// PIPE`): the command then gets it ignored too, as GNU `timeout` passes
/// it on. False when it was at its default, or never recorded.
pub fn sigpipe_was_ignored_at_start() -> bool {
    SIGPIPE_AT_START.load(Ordering::Relaxed) == IGNORED
}

/// Puts SIGCHLD back to its default (no `SA_NOCLDWAIT`), as GNU `timeout`
/// does at its start: started with SIGCHLD ignored (`trap '' CHLD`), the
/// kernel would reap the command by itself and its status would be lost.
/// The command inherits the default too.
///
/// # Errors
///
/// The OS error of `sigaction`.
pub fn reset_sigchld() -> std::io::Result<()> {
    // SAFETY: zeroed is a valid sigaction: SIG_DFL, no flags, empty mask.
    let default: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: installs the default disposition; no handler code is involved.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, &default, ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ends childminder by `signal`, as GNU `timeout` does when the command
/// died by a signal: core dumps off (so a SIGQUIT or SIGSEGV of the command
/// does not also dump childminder's core), the signal's default action
/// back, the signal unblocked, then raised. Returns only if that did not
/// end the process (core dumps could not be turned off, or the signal's
/// default is not to terminate); the caller then exits with 128+N.
pub fn die_by_signal(signal: Signal) {
    if !disable_core_dumps() {
        return;
    }
    let raw = signal.as_raw();
    // SAFETY: zeroed is a valid sigaction: SIG_DFL, no flags, empty mask.
    let default: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: installs the default disposition; no handler code is involved.
    unsafe { libc::sigaction(raw, &default, ptr::null_mut()) };
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised just above; sigaddset sets one bit of it.
    unsafe { libc::sigaddset(set.as_mut_ptr(), raw) };
    // SAFETY: unblocks the signal for this thread only; the set is initialised.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), ptr::null_mut()) };
    // SAFETY: raise sends the signal to this thread; its default action
    // ends the process.
    unsafe { libc::raise(raw) };
}

/// Turns core dumps off for this process: not dumpable (which also keeps
/// a piped `core_pattern` helper away), and a core size limit of 0.
fn disable_core_dumps() -> bool {
    // SAFETY: prctl with integer arguments changes only this process.
    let not_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we own.
    let no_size = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } == 0;
    not_dumpable || no_size
}

/// The set of `signals`.
fn sigset(signals: &[i32]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for &signal in signals {
        // SAFETY: initialised above; sigaddset sets one bit of it.
        unsafe { libc::sigaddset(set.as_mut_ptr(), signal) };
    }
    // SAFETY: initialised above.
    unsafe { set.assume_init() }
}

/// Blocks `signals` in the calling thread (and the threads it starts
/// from now on): they stay pending until read or unblocked.
///
/// # Errors
///
/// The OS error of `pthread_sigmask`.
pub fn block_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: the set is initialised; only the calling thread's mask changes.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// A non-blocking signalfd that receives `signals`, which the caller has
/// blocked ([`block_signals`]): a blocked signal stays pending until the
/// signalfd reads it, so no handler runs, nothing is lost between the
/// block and the first read, and a signal that arrives after the last read
/// cannot end childminder before it has written its report. The command
/// gets an empty mask (the library resets it on both spawn paths).
///
/// # Errors
///
/// The OS error of `signalfd` (out of fds).
pub fn signalfd_for(signals: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: -1 asks for a new fd; the set is initialised; the flags are
    // valid SFD_* bits.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// The next signal pending on a signalfd, or `None` when none is (EAGAIN).
///
/// # Errors
///
/// The OS error of `read`.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: reads at most `size` bytes into `info`, which we own.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                info.as_mut_ptr().cast(),
                size,
            )
        };
        if n == size as isize {
            // SAFETY: the kernel filled the whole struct.
            return Ok(Some(unsafe { info.assume_init() }.ssi_signo as i32));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------
// The report file
// ---------------------------------------------------------------------------

/// Opens (creates, truncates) the report file for writing without ever
/// waiting: a FIFO that no one reads yet fails with `ENXIO` instead of
/// blocking until a reader comes.
///
/// # Errors
///
/// The OS error of `open`; `ENXIO` for a FIFO without a reader.
pub fn open_report(path: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?)
}

/// True for a regular file (which `fsync` applies to; a FIFO or a device
/// such as `/dev/null` refuses it with `EINVAL`).
pub fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile)
}

/// `fsync(2)`.
pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fsync(fd)?)
}

/// Writes all of `bytes` to `fd`, waiting for room with `poll(2)`, but
/// not past `limit`: a reader that does not read cannot hold childminder.
/// `fd` must be non-blocking (or a socket, written with `MSG_DONTWAIT`).
///
/// # Errors
///
/// The OS error of a write (`EPIPE` when the reader has gone, `ENOSPC`),
/// or `TimedOut` when `limit` passed with bytes left.
pub fn write_all_until(
    fd: BorrowedFd<'_>,
    mut bytes: &[u8],
    socket: bool,
    limit: std::time::Instant,
) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    while !bytes.is_empty() {
        match write(fd, bytes, socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = limit.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no room: the reader is not reading",
                    ));
                }
                let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                });
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `bytes` to our stderr without blocking past `limit` when
/// it is a pipe or a socket (through a description of our own for a pipe,
/// so its flags stay as the other processes sharing it set them): a reader
/// that does not read cannot hold childminder.
///
/// # Errors
///
/// `EPIPE` when the reader has gone, `EBADF` when stderr is closed,
/// `TimedOut` when `limit` passed first.
pub fn write_stderr_until(bytes: &[u8], limit: std::time::Instant) -> io::Result<()> {
    match kind(2) {
        FdKind::Closed => Err(io::Error::from_raw_os_error(libc::EBADF)),
        FdKind::Pipe => match reopen_nonblocking(2, true) {
            Ok(fd) => write_all_until(std::os::fd::AsFd::as_fd(&fd), bytes, false, limit),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                Err(io::Error::from_raw_os_error(libc::EPIPE))
            }
            // No fd to spare (EMFILE): the shared, blocking fd 2, written a
            // pipe buffer's worth at a time once poll says there is room.
            Err(_) => {
                let fd = stdio_fd(2).ok_or(io::ErrorKind::NotFound)?;
                write_polled_until(fd, bytes, limit)
            }
        },
        FdKind::Socket => {
            let fd = stdio_fd(2).ok_or(io::ErrorKind::NotFound)?;
            write_all_until(fd, bytes, true, limit)
        }
        // A terminal, a file or a device: a write that does not wait long.
        FdKind::Terminal | FdKind::File | FdKind::Other => {
            let fd = stdio_fd(2).ok_or(io::ErrorKind::NotFound)?;
            write_all_until(fd, bytes, false, limit)
        }
    }
}

/// Writes `bytes` to a blocking pipe without an fd of our own: waits with
/// `poll(2)` (until `limit`) for room, then writes at most `PIPE_BUF`
/// bytes, which a pipe with room takes without blocking.
fn write_polled_until(
    fd: BorrowedFd<'_>,
    mut bytes: &[u8],
    limit: std::time::Instant,
) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    while !bytes.is_empty() {
        let left = limit.saturating_duration_since(std::time::Instant::now());
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no room: the reader is not reading",
                ));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        let chunk = bytes.len().min(libc::PIPE_BUF);
        match write(fd, &bytes[..chunk], false) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
