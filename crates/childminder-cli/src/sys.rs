//! The command's own OS calls, in one place: what kind of file each of our
//! stdio fds is, a private non-blocking copy of one, `splice(2)`, and the
//! terminal's foreground group. Every `unsafe` block wraps one call.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

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

/// The kind of our stdio fd `fd`.
pub fn kind(fd: RawFd) -> FdKind {
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
                std::os::fd::AsRawFd::as_raw_fd(&fd),
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
            std::os::fd::AsRawFd::as_raw_fd(&fd),
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
